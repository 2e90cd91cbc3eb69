"""The cluster's two security groups: one door for the caller, one room for the nodes.

- the cluster group (``[ec2] security_group``, default ``swiftrun-<cluster>``), on every node:
  tcp 22 and the coaster/agent ports only from the group itself. Workers are in this group
  alone, so nothing outside the cluster reaches their port 22: the headnode (ProxyJump) does.
- the door group (``<cluster group>-door``), on the headnode only: tcp 22 from ``[ec2]
  ssh_cidr`` (this machine's latest addresses, cloud/sgrules.py).

A cold ``up`` (no instance of the cluster found) creates both without asking first, and gives
each its rules in one call: four EC2 calls. Otherwise one DescribeSecurityGroups finds both, and
only what is missing is added. A group with swiftrun's name but not its tag for this cluster is
never changed. A group of an older swiftrun still carries this machine's port 22 rule in the
cluster group, where it would let the caller reach the workers: it is revoked (swiftrun's own
stamped rules only; a rule made by hand is never touched).
"""

from __future__ import annotations

from swiftrun.cloud.base import TAG_CLUSTER
from swiftrun.errors import CloudError
from swiftrun.node.layout import CLUSTER_PORTS

INSIDE = "swiftrun, cluster only"


def door_group_name(project) -> str:
    return f"{project.security_group_name}-door"


def _inside_rules(sg: str, have: list[dict]) -> list[dict]:
    ports = {p.get("FromPort") for p in have
             if any(pair.get("GroupId") == sg for pair in p.get("UserIdGroupPairs", []))}
    return [{"IpProtocol": "tcp", "FromPort": p, "ToPort": p,
             "UserIdGroupPairs": [{"GroupId": sg, "Description": INSIDE}]}
            for p in CLUSTER_PORTS if p not in ports]


def _authorize(provider, sg: str, perms: list[dict]) -> None:
    """All of ``perms`` in one call; if one of them exists already, one by one."""
    if not perms:
        return

    def call(perms):
        # A group made a moment ago may not be known to the next call yet.
        provider._eventually(f"adding rules to security group {sg}",
                             lambda: provider._call("authorize_security_group_ingress",
                                                    GroupId=sg, IpPermissions=perms),
                             ("InvalidGroup.NotFound",))
    try:
        call(perms)
    except CloudError as exc:
        if getattr(exc, "code", "") != "InvalidPermission.Duplicate":
            raise
        for perm in perms if len(perms) > 1 else []:
            try:
                call([perm])
            except CloudError as one:
                if getattr(one, "code", "") != "InvalidPermission.Duplicate":
                    raise


def _revoke(provider, sg: str, perms: list[dict]) -> None:
    for old in perms:
        try:
            provider._call("revoke_security_group_ingress", GroupId=sg, IpPermissions=[old])
        except CloudError as exc:
            if getattr(exc, "code", "") != "InvalidPermission.NotFound":
                raise


def _create(provider, cluster: str, name: str, what: str) -> str | None:
    kwargs = {"GroupName": name, "Description": f"swiftrun cluster {cluster}: {what}",
              "TagSpecifications": [{"ResourceType": "security-group",
                                     "Tags": provider._tags(cluster)}]}
    vpc = provider._vpc_of_subnet()
    if vpc:
        kwargs["VpcId"] = vpc
    try:
        gid = provider._call("create_security_group", **kwargs)["GroupId"]
    except CloudError as exc:
        # there already (an earlier `up`, or a retried call whose first attempt went through)
        if getattr(exc, "code", "") != "InvalidGroup.Duplicate":
            raise
        return None
    provider.made.append(("security group", gid))   # a failed `up` deletes it again
    return gid


def _describe(provider, names: list[str]) -> dict[str, dict]:
    filters = [{"Name": "group-name", "Values": names}]
    vpc = provider._vpc_of_subnet()
    if vpc:     # the same name may exist in other VPCs; only the subnet's can be used
        filters.append({"Name": "vpc-id", "Values": [vpc]})
    reply = provider._call("describe_security_groups", Filters=filters)
    return {g["GroupName"]: g for g in reply.get("SecurityGroups", [])}


def _ours(provider, group: dict, cluster: str, *, named: bool) -> None:
    tags = {t["Key"]: t["Value"] for t in group.get("Tags", [])}
    if not named and tags.get(TAG_CLUSTER) != cluster:
        # swiftrun's own name, but not swiftrun's group for this cluster: changing its
        # rules (or deleting it at `down`) would touch something that is not ours
        raise CloudError(
            f"security group {group['GroupName']} ({group['GroupId']}) exists but was not made by "
            f"swiftrun for cluster {cluster!r} (no tag {TAG_CLUSTER}={cluster}): delete "
            "or rename it, or set [ec2] security_group to use it on purpose")


def ensure_groups(provider, cluster: str, *, create: bool = True,
                  fresh: bool = False) -> tuple[str | None, str | None]:
    """(cluster group id, door group id), made or mended. ``fresh``: the cluster has no
    instance, so the groups are most likely missing: create them without asking first."""
    from swiftrun.cloud.sgrules import has_ssh, ssh_rule, stale_caller_rules

    p = provider.project
    main, door = p.security_group_name, door_group_name(p)
    cidr = provider.ssh_cidr()
    ids: dict[str, str | None] = {main: None, door: None}
    if fresh and create:
        for name, what in ((main, "all nodes, ports from this group only"),
                           (door, "the headnode, port 22 from [ec2] ssh_cidr")):
            ids[name] = _create(provider, cluster, name, what)
        if all(ids.values()):
            _authorize(provider, ids[main], _inside_rules(ids[main], []))
            _authorize(provider, ids[door], [ssh_rule(cidr)])
            return ids[main], ids[door]
    found = _describe(provider, [main, door])
    # a group that was there before may have been opened by hand: `up` checks it (checks/cloud.py)
    provider.groups_existed = main in found
    for name in (main, door):
        group = found.get(name)
        if group is None:
            if not create:
                continue
            gid = ids[name] or _create(provider, cluster, name, "swiftrun")
            if gid is None:      # made between our describe and create: look once more
                group = _describe(provider, [name]).get(name)
                if group is None:
                    raise CloudError(f"security group {name} is said to exist but cannot be found")
            else:
                group = {"GroupId": gid, "GroupName": name, "IpPermissions": [],
                         "Tags": provider._tags(cluster)}
        _ours(provider, group, cluster, named=bool(p.ec2.security_group) and name == main)
        sg, have = group["GroupId"], group.get("IpPermissions", [])
        ids[name] = sg
        if name == main:
            # this machine's port 22 belongs to the door, not to every node
            _revoke(provider, sg, [r for r in stale_caller_rules(have, keep=1)])
            _authorize(provider, sg, _inside_rules(sg, have))
        elif not has_ssh(have, cidr):
            # A new address of this machine: the oldest of swiftrun's own ssh rules make room,
            # so they do not pile up to the group's rule quota (cloud/sgrules.py).
            _revoke(provider, sg, stale_caller_rules(have))
            _authorize(provider, sg, [ssh_rule(cidr)])
    return ids[main], ids[door]
