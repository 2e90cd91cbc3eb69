"""The RunInstances parameters of one launch, built in one place.

The launch itself (:meth:`EC2Provider.launch`) and the pre-launch dry run
(``checks/cloud.py:check_dry_run``) both call :func:`run_params`, so the dry run asks EC2 about
exactly what the launch will send: its tags (ec2:CreateTags), instance profile (iam:PassRole),
security group, key pair, user data and metadata options.
"""

from __future__ import annotations

import ipaddress
import re

from swiftrun.cloud.base import LaunchSpec, Node
from swiftrun.errors import ConfigError
from swiftrun.node.network import worker_public_ip

# IMDSv2 only (a token from PUT /latest/api/token): accounts may require it by policy, and it
# keeps a request forged through a node's web app from reading the instance role's keys. The
# hop limit stays the image's (1 on Ubuntu): nothing on the nodes runs in a container.
METADATA_OPTIONS = {"HttpTokens": "required", "HttpEndpoint": "enabled"}
SPOT_OPTIONS = {"MarketType": "spot",
                "SpotOptions": {"SpotInstanceType": "one-time",
                                "InstanceInterruptionBehavior": "terminate"}}


def architecture(instance_type: str) -> str:
    """"arm64" or "amd64" (Ubuntu's names). Graviton families carry a 'g' after the generation
    number (c7g, m6gd, t4g, c6gn); the a1 family (the first Graviton) carries none."""
    family = instance_type.split(".")[0]
    return "arm64" if family == "a1" or re.fullmatch(r"[a-z]+\d+g[a-z]*", family) else "amd64"


def image_root(image: dict) -> tuple[str, int | None]:
    """(root device name, its snapshot's size in GiB or None) of a DescribeImages entry. The
    name is the image's own (/dev/sda1 on Ubuntu, /dev/xvda on Amazon Linux and others): a
    mapping for another name attaches an extra, billed volume instead of growing the root."""
    root = image.get("RootDeviceName") or "/dev/sda1"
    for mapping in image.get("BlockDeviceMappings") or []:
        if mapping.get("DeviceName") == root and mapping.get("Ebs", {}).get("VolumeSize"):
            return root, int(mapping["Ebs"]["VolumeSize"])
    return root, None


def root_too_small(project, image_id: str, snapshot_gib: int | None) -> str | None:
    """One line when ``[ec2] volume_size_gb`` is below the image's root snapshot (EC2 refuses
    the launch with InvalidBlockDeviceMapping), else None."""
    want = project.ec2.volume_size_gb
    if not want or not snapshot_gib or want >= snapshot_gib:
        return None
    return (f"[ec2] volume_size_gb = {want} is below the {snapshot_gib} GiB root snapshot of image "
            f"{image_id}: set volume_size_gb = {snapshot_gib} or more (0 keeps the image's size)")


def run_params(project, spec: LaunchSpec, *, tags: list[dict], volume_tags: list[dict],
               key_name: str | None, security_group: list[str] | str | None,
               profile_arn: str | None,
               userdata: bytes | None, root: tuple[str, int | None] = ("/dev/sda1", None)) -> dict:
    """RunInstances keyword arguments (without ClientToken, Placement or DryRun).

    ``key_name``, ``security_group`` (the group ids the node launches in) and ``profile_arn`` are
    left out when None (a dry run before ``prepare`` made them). A worker without a public IP
    (``[ec2] worker_public_ip``) says so on its network interface: a default subnet would map
    one. ``root`` is :func:`image_root` of ``spec.image``: the root
    device ``[ec2] volume_size_gb`` resizes, and the least size EC2 takes for it."""
    kwargs: dict = {
        "ImageId": spec.image, "InstanceType": spec.instance_type,
        "MinCount": spec.min_count or spec.count, "MaxCount": spec.count,
        # A node that shuts itself down (dead-man switch) is gone, not parked and billed.
        "InstanceInitiatedShutdownBehavior": "terminate",
        "MetadataOptions": dict(METADATA_OPTIONS),
        "TagSpecifications": [{"ResourceType": "instance", "Tags": tags},
                              {"ResourceType": "volume", "Tags": volume_tags}],
    }
    if key_name:
        kwargs["KeyName"] = key_name
    groups = [security_group] if isinstance(security_group, str) else list(security_group or [])
    public = spec.role != "worker" or worker_public_ip(project)
    if project.ec2.subnet_id or not public:
        # Outside a default subnet EC2 maps a public IP only when the subnet says so (off unless
        # set): ask for one on the primary interface, which then carries subnet and group.
        nic: dict = {"DeviceIndex": 0, "AssociatePublicIpAddress": public,
                     "DeleteOnTermination": True}
        if project.ec2.subnet_id:
            nic["SubnetId"] = project.ec2.subnet_id
        if groups:
            nic["Groups"] = groups
        kwargs["NetworkInterfaces"] = [nic]
    elif groups:
        kwargs["SecurityGroupIds"] = groups
    if userdata is not None:
        kwargs["UserData"] = userdata     # gzip: cloud-init unpacks it; 16 KB limit on what is sent
    if profile_arn:
        kwargs["IamInstanceProfile"] = {"Arn": profile_arn}
    if spec.spot:
        kwargs["InstanceMarketOptions"] = SPOT_OPTIONS
    if project.ec2.volume_size_gb:
        small = root_too_small(project, spec.image, root[1])
        if small:
            raise ConfigError(small)
        kwargs["BlockDeviceMappings"] = [{"DeviceName": root[0], "Ebs": {
            "VolumeSize": project.ec2.volume_size_gb, "DeleteOnTermination": True}}]
    return kwargs


# A worker's boot script names its headnode's private IP, unknown before the headnode is
# launched: the dry run sends one of the longest form instead.
DRY_RUN_HEADNODE_IP = "10.255.255.255"


def dry_run_params(provider, cluster: str, spec: LaunchSpec) -> dict:
    """What ``provider.launch(cluster, spec)`` would send, as a ``DryRun`` RunInstances, using
    only what exists already: nothing is made or changed here (doctor runs it too). Before the
    first ``up`` the key pair, security group or instance profile may not exist yet; ``up``
    runs the dry run again once ``prepare`` has made them."""
    from swiftrun.cloud.base import TAG_SHAPE

    from swiftrun.cloud.groups import door_group_name
    from swiftrun.node.userdata import payload

    project = provider.project
    if provider._sg_id:     # prepared in this process: the key pair and groups exist
        key_name, groups = project.key_name, provider.launch_groups(cluster, spec.role)
    else:
        keys = provider._call("describe_key_pairs",
                              Filters=[{"Name": "key-name", "Values": [project.key_name]}])
        key_name = project.key_name if keys.get("KeyPairs") else None
        names = [project.security_group_name] + ([door_group_name(project)]
                                                 if spec.role == "headnode" else [])
        filters = [{"Name": "group-name", "Values": names}]
        vpc = provider._vpc_of_subnet()
        if vpc:
            filters.append({"Name": "vpc-id", "Values": [vpc]})
        found = {g["GroupName"]: g["GroupId"] for g in provider._call(
            "describe_security_groups", Filters=filters).get("SecurityGroups", [])}
        groups = [found[n] for n in names if n in found] or None
    kwargs = run_params(
        project, spec, key_name=key_name,
        tags=provider._tags(cluster, spec.role, {TAG_SHAPE: spec.shape, **spec.extra_tags}),
        volume_tags=provider._tags(cluster, spec.role),
        security_group=groups,
        profile_arn=provider._profile_arn, userdata=payload(spec.userdata),
        root=provider.image_root(spec.image) if project.ec2.volume_size_gb else ("", None))
    kwargs.update(DryRun=True, MinCount=1, MaxCount=1)
    return kwargs


# Address space a machine inside the VPC (or joined to it) would connect from.
_PRIVATE = [ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16",
                                              "100.64.0.0/10", "fc00::/7")]


NO_PUBLIC_IP_FIX = ("`swiftrun down`, then `up` again: new nodes ask for a public IP; or set "
                    "[ec2] ssh_cidr to this machine's private range if it is inside the VPC")


def no_public_ip(project, node: Node) -> str | None:
    """One line when ``node`` has only a private address and this machine (``[ec2] ssh_cidr``)
    is not in private address space: SSH would wait out its timeout on an address it can never
    reach, then blame port 22."""
    if node.public_ip or not node.private_ip:
        return None
    cidr = project.ec2.ssh_cidr
    try:
        net = ipaddress.ip_network(cidr, strict=False) if cidr != "auto" else None
    except ValueError:
        net = None
    if net is not None and any(net.version == p.version and net.subnet_of(p) for p in _PRIVATE):
        return None     # this machine is inside the VPC: the private address is the way in
    where = f"subnet {project.ec2.subnet_id}" if project.ec2.subnet_id else "its subnet"
    return (f"{node.role} {node.id} has no public IP address (only {node.private_ip}; {where} "
            "maps none), so SSH from here cannot reach it")
