"""The cloud-agnostic cluster lifecycle: what ``up``, ``add``, ``remove`` and ``down`` do with a
provider, whichever cloud it is.

- ``lifecycle``: :class:`Cluster`: find by tags, up or reuse, readiness, scaling, teardown;
- ``warm``: ``nodes.json``, the last tag read, so a run can skip the cloud API;
- ``locks``: one swiftrun changing a cluster at a time, and the last run out dissolves it;
- ``services``: a static cluster's coaster-service and worker.pl, started over SSH;
- ``image``: ``swiftrun image build``: a one-node cluster baked into an AMI.

Callers import from here; the modules of this package import each other.
"""

from swiftrun.cluster.lifecycle import Cluster, ClusterMismatch, UpResult

__all__ = ["Cluster", "ClusterMismatch", "UpResult"]
