"""The RunInstances parameters of one launch, built in one place.

The launch itself (:meth:`EC2Provider.launch`) and the pre-launch dry run
(``checks/cloud.py:check_dry_run``) both call :func:`run_params`, so the dry run asks EC2 about
exactly what the launch will send: its tags (ec2:CreateTags), instance profile (iam:PassRole),
security group, key pair, user data and metadata options.
"""

from __future__ import annotations

from swiftrun.cloud.base import LaunchSpec

SPOT_OPTIONS = {"MarketType": "spot",
                "SpotOptions": {"SpotInstanceType": "one-time",
                                "InstanceInterruptionBehavior": "terminate"}}


def run_params(project, spec: LaunchSpec, *, tags: list[dict], volume_tags: list[dict],
               key_name: str | None, security_group: str | None, profile_arn: str | None,
               userdata: bytes | None) -> dict:
    """RunInstances keyword arguments (without ClientToken, Placement or DryRun).

    ``key_name``, ``security_group`` and ``profile_arn`` are left out when None (a dry run
    before ``prepare`` made them)."""
    kwargs: dict = {
        "ImageId": spec.image, "InstanceType": spec.instance_type,
        "MinCount": spec.min_count or spec.count, "MaxCount": spec.count,
        # A node that shuts itself down (dead-man switch) is gone, not parked and billed.
        "InstanceInitiatedShutdownBehavior": "terminate",
        "TagSpecifications": [{"ResourceType": "instance", "Tags": tags},
                              {"ResourceType": "volume", "Tags": volume_tags}],
    }
    if key_name:
        kwargs["KeyName"] = key_name
    if security_group:
        kwargs["SecurityGroupIds"] = [security_group]
    if userdata is not None:
        kwargs["UserData"] = userdata     # gzip: cloud-init unpacks it; 16 KB limit on what is sent
    if project.ec2.subnet_id:
        kwargs["SubnetId"] = project.ec2.subnet_id
    if profile_arn:
        kwargs["IamInstanceProfile"] = {"Arn": profile_arn}
    if spec.spot:
        kwargs["InstanceMarketOptions"] = SPOT_OPTIONS
    if project.ec2.volume_size_gb:
        kwargs["BlockDeviceMappings"] = [{"DeviceName": "/dev/sda1", "Ebs": {
            "VolumeSize": project.ec2.volume_size_gb, "DeleteOnTermination": True}}]
    return kwargs
