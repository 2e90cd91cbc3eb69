"""The clouds: one interface (``base.Provider``) and one module per implementation.

- ``base``: the provider interface and the ``Node`` it reports;
- ``ec2``: Amazon EC2 (boto3), with ``iam`` (the s3fs instance profile), ``awserr`` (errors in
  plain words) and ``keys`` (the key pair's local half);
- ``static``: machines that already exist, reached over SSH;
- ``pricing``: what a cluster costs, before and after.

:func:`make_provider` is the one place that maps ``[cluster] provider`` to an implementation.
"""

from __future__ import annotations


def make_provider(project):
    """The provider ``project`` asks for; its module is imported only now (boto3 is slow)."""
    if project.cluster.provider == "static":
        from swiftrun.cloud.static import StaticProvider

        return StaticProvider(project)
    from swiftrun.cloud.ec2 import EC2Provider

    return EC2Provider(project)
