"""Cloud checks before anything is launched (EC2): what ``up`` runs first, and ``doctor`` too.

:func:`prelaunch` runs them one after the other (later ones reuse what earlier ones cached):
region, where the nodes' Swift comes from, the key pair's fingerprint, images vs instance
architectures, instance type offerings, a ``RunInstances`` dry run, the security group, the s3fs
bucket. ``up`` raises the first failure before paying for anything (``raise_on_failure``).

``--fix`` only does what is safe and says what it did, here: revoke world-open coaster rules and
add a missing port 22 or coaster rule in the cluster's own security group.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

from swiftrun.checks.base import FAIL, OK, WARN, Check, run_check
from swiftrun.cloud.awserr import NO_CREDENTIALS
from swiftrun.cloud.keys import fingerprint_verdict
from swiftrun.errors import CloudError, ConfigError, SwiftrunError
from swiftrun.node.layout import AGENT_PORT, CLUSTER_PORTS, COASTER_PORT, WORKER_PORT
from swiftrun.project import WORLD_CIDRS



def _code(exc) -> str:
    return exc.response.get("Error", {}).get("Code", "") if hasattr(exc, "response") else ""


def check_region(project, provider) -> Check:
    region = project.ec2.region
    reply = provider._call("describe_regions", AllRegions=True)
    info = {r["RegionName"]: r for r in reply.get("Regions", [])}
    if region not in info:
        near = ", ".join(sorted(info)[:6])
        return Check("region", FAIL, f"EC2 does not know region {region!r}",
                     f"set [ec2] region to one of: {near}, ...", error=ConfigError)
    status = info[region].get("OptInStatus", "")
    if status == "not-opted-in":
        return Check("region", FAIL, f"region {region} is not enabled for this account",
                     "enable it in the AWS console (Account > AWS Regions) or pick another [ec2] region")
    return Check("region", OK, f"{region} ({status or 'enabled'})")


def _want_arch(instance_type: str) -> str:
    from swiftrun.cloud.launch import architecture

    return "arm64" if architecture(instance_type) == "arm64" else "x86_64"


def check_images(project, provider) -> list[Check]:
    from swiftrun.cloud.base import HEADNODE, WORKER
    from swiftrun.cloud.launch import image_root, root_too_small

    out = []
    seen: dict[str, dict] = {}
    for role, itype in ((HEADNODE, project.ec2.headnode_type), (WORKER, project.ec2.worker_type)):
        name = f"{role} image"
        key = "image" if role == HEADNODE or not project.ec2.worker_image else "worker_image"
        try:
            image_id = provider.resolve_image(role)
        except CloudError as exc:
            out.append(Check(name, FAIL, exc.message, exc.hint or "set [ec2] image to an AMI id "
                             "that exists in this region"))
            continue
        if image_id not in seen:
            seen[image_id] = provider.image_info(image_id)   # asked once per process
        image = seen[image_id]
        if not image:
            out.append(Check(name, FAIL, f"image {image_id} does not exist in {project.ec2.region}",
                             f"set [ec2] {key} to an AMI id of this region, or \"auto\"",
                             error=ConfigError))
            continue
        arch, want = image.get("Architecture", "?"), _want_arch(itype)
        if image.get("State", "available") != "available":
            out.append(Check(name, FAIL, f"image {image_id} is {image.get('State')}",
                             f"set [ec2] {key} to an available AMI", error=ConfigError))
        elif arch != want:
            other = "worker_image" if role == WORKER else "image"
            out.append(Check(name, FAIL,
                             f"image {image_id} is {arch} but {role} type {itype} needs {want} "
                             "(Graviton families such as a1/c7g/m6g/t4g are arm64)",
                             f"set [ec2] {other} to an {want} AMI (or \"auto\"), or pick an "
                             f"{arch} {'worker_type' if role == WORKER else 'headnode_type'}",
                             error=ConfigError))
        elif root_too_small(project, image_id, image_root(image)[1]):
            out.append(Check(name, FAIL, root_too_small(project, image_id, image_root(image)[1]),
                             "EC2 refuses a root volume smaller than its image's snapshot",
                             error=ConfigError))
        else:
            out.append(Check(name, OK, f"{image_id} ({image.get('Name') or 'unnamed'}) is {arch}, "
                             f"matches {itype}"))
    return out


def check_swift_source(project) -> Check:
    """node/swift.py's verdict on where the nodes' Swift comes from, as a pre-launch check."""
    from swiftrun.node.swift import swift_source

    src = swift_source(project)
    return Check("swift on the nodes", OK if src.ok else FAIL, src.detail, src.fix,
                 error=ConfigError)


def check_instance_types(project, provider) -> Check:
    import botocore.exceptions as bex

    types = sorted({project.ec2.headnode_type, project.ec2.worker_type})
    try:
        reply = provider.ec2.describe_instance_type_offerings(
            LocationType="region", Filters=[{"Name": "instance-type", "Values": types}])
    except (bex.ClientError, bex.BotoCoreError) as exc:
        return Check("instance types", WARN, f"could not ask which types are offered "
                     f"({_code(exc) or type(exc).__name__}); not checked",
                     "give the credentials ec2:DescribeInstanceTypeOfferings to have this checked")
    offered = {o.get("InstanceType") for o in reply.get("InstanceTypeOfferings", [])}
    if not offered:
        return Check("instance types", WARN, f"EC2 listed no offerings for {', '.join(types)}; "
                     "not checked (the endpoint may not know them)", "")
    missing = [t for t in types if t not in offered]
    if missing:
        return Check("instance types", FAIL,
                     f"{', '.join(missing)} not offered in {project.ec2.region}",
                     "pick another [ec2] headnode_type / worker_type (aws ec2 "
                     f"describe-instance-type-offerings --region {project.ec2.region})",
                     error=ConfigError)
    return Check("instance types", OK, f"{', '.join(types)} offered in {project.ec2.region}")


_DRY_FAIL = {
    "UnauthorizedOperation": "these AWS credentials may not launch instances as swiftrun does "
                             "(ec2:RunInstances, ec2:CreateTags, iam:PassRole, or a policy on "
                             "the launch's parameters)",
    "AuthFailure": "AWS rejected the credentials",
    "InstanceLimitExceeded": "the account's instance limit in this region is reached",
    "VcpuLimitExceeded": "the account's vCPU limit for this instance family is reached",
    "InsufficientInstanceCapacity": "AWS has no capacity for this type in this zone right now",
}
_DRY_FIX = {
    "UnauthorizedOperation": "ask your AWS admin for ec2:RunInstances and ec2:CreateTags (and "
                             "iam:PassRole on the s3fs role with [s3fs] bucket)",
    "AuthFailure": "check the credentials with `aws sts get-caller-identity`",
    "InstanceLimitExceeded": "terminate instances, or ask AWS for a higher limit (Service Quotas)",
    "VcpuLimitExceeded": "use a smaller type or fewer workers, or ask AWS for a higher vCPU limit",
    "InsufficientInstanceCapacity": "try another type or [ec2] availability_zones, or later",
}


def check_dry_run(project, provider, cluster: str | None = None,
                  roles: tuple[str, ...] | None = None) -> list[Check]:
    """``RunInstances`` with ``DryRun=True`` and the launch's own parameters (cloud/launch.py:
    tags, instance profile, security group, key pair, user data, metadata options), so EC2 also
    checks ec2:CreateTags and iam:PassRole. It answers DryRunOperation when it would have worked."""
    import botocore.exceptions as bex

    from swiftrun.cloud.base import HEADNODE, WORKER, LaunchSpec
    from swiftrun.cloud.launch import DRY_RUN_HEADNODE_IP, dry_run_params
    from swiftrun.node.userdata import render_userdata

    p = project
    cluster = cluster or p.cluster.name
    wants = []
    for role, itype, spot in ((HEADNODE, p.ec2.headnode_type, False),
                              (WORKER, p.ec2.worker_type, p.ec2.spot)):
        if roles is not None and role not in roles:
            continue
        image = provider.resolve_image(role)
        if any(w[1:] == (itype, spot, image) for w in wants):
            continue
        wants.append((role, itype, spot, image))
    out = []
    for role, itype, spot, image in wants:
        name = f"dry-run launch {itype}" + (" spot" if spot else "")
        spec = LaunchSpec(role=role, count=1, instance_type=itype, image=image, spot=spot,
                          shape=p.shape_hash(role), userdata=render_userdata(
                              p, role, cluster=cluster,
                              headnode_ip=None if role == HEADNODE else DRY_RUN_HEADNODE_IP))
        kwargs = dry_run_params(provider, cluster, spec)
        try:
            reply = provider.ec2.run_instances(**kwargs)
        except bex.ClientError as exc:
            code = _code(exc)
            message = exc.response.get("Error", {}).get("Message", "")
            if code == "DryRunOperation":
                out.append(Check(name, OK, f"EC2 would launch {itype} ({image}) for the {role}"))
            elif code == "InsufficientInstanceCapacity":
                out.append(Check(name, WARN, f"{_DRY_FAIL[code]} ({itype})", _DRY_FIX[code]))
            elif code in _DRY_FAIL:
                fix = _DRY_FIX[code]
                if "Encoded authorization failure message" in message:
                    fix += ("; `aws sts decode-authorization-message --encoded-message MESSAGE` "
                            "says which permission or policy refused it")
                # AWS's own words say what was refused (and carry the encoded message)
                said = f": {message}" if message else ""
                out.append(Check(name, FAIL, f"{_DRY_FAIL[code]} ({code}{said})", fix))
            else:
                err = provider._plain(exc, "run_instances")
                out.append(Check(name, FAIL, err.message, "fix what EC2 names, then try again"))
            continue
        except bex.NoCredentialsError:
            raise ConfigError(NO_CREDENTIALS) from None
        except bex.BotoCoreError as exc:
            raise CloudError(f"cannot reach EC2 in {p.ec2.region}: {exc}") from None
        # The endpoint ignored DryRun and launched: take it back at once.
        ids = [i["InstanceId"] for i in reply.get("Instances", [])]
        if ids:
            provider.ec2.terminate_instances(InstanceIds=ids)
        out.append(Check(name, WARN, "the EC2 endpoint ignored DryRun"
                         + (f" and launched {', '.join(ids)} (terminated again)" if ids else ""),
                         "check the endpoint ([ec2] / AWS_ENDPOINT_URL)"))
    return out


def check_key_pair(project, provider) -> Check:
    name, path = project.key_name, Path(provider.key_file())
    pairs = provider.key_pairs()        # asked once per process: `up` makes the pair with it
    if not pairs:
        how = "imports the public half of " + str(path) if path.exists() else "makes a new key"
        return Check("key pair", OK, f"{name} is not in {project.ec2.region} yet; `swiftrun up` {how}")
    if not path.exists():
        return Check("key pair", FAIL, f"key pair {name} exists in {project.ec2.region} but its "
                     f"private key file {path} is missing",
                     f"set [ssh] key_file to the .pem you kept, or delete the key pair (aws ec2 "
                     f"delete-key-pair --key-name {name}) so swiftrun makes a new one",
                     error=ConfigError)
    fp = pairs[0].get("KeyFingerprint", "")
    try:
        verdict = fingerprint_verdict(path, fp)
    except (ValueError, TypeError, OSError) as exc:
        return Check("key pair", WARN, f"cannot read {path} to compare fingerprints ({exc})",
                     "set [ssh] key_file to the key pair's unencrypted private key")
    if verdict == "match":
        return Check("key pair", OK, f"{name}: fingerprint {fp} matches {path}")
    if verdict == "mismatch":
        return Check("key pair", FAIL, f"key pair {name} in {project.ec2.region} (fingerprint {fp}) "
                     f"is not the key in {path}: SSH to new nodes would be refused",
                     f"set [ssh] key_file to the key pair's own .pem, or delete the key pair (aws "
                     f"ec2 delete-key-pair --key-name {name}) so `up` imports {path}",
                     error=ConfigError)
    return Check("key pair", WARN, f"{name}: cannot tell whether fingerprint {fp} belongs to {path} "
                 "(a format swiftrun does not compute)", "compare by hand with `ssh-keygen -l -f KEY`")


def _covers(perm: dict, port: int) -> bool:
    if perm.get("IpProtocol") in ("-1", "all"):
        return True
    if perm.get("IpProtocol") not in ("tcp", "6"):
        return False
    lo, hi = perm.get("FromPort"), perm.get("ToPort")
    return lo is not None and hi is not None and (lo == -1 or lo <= port <= hi)


def _ports(perm: dict) -> str:
    proto = perm.get("IpProtocol")
    if proto in ("-1", "all"):
        return "all traffic"
    lo, hi = perm.get("FromPort"), perm.get("ToPort")
    if lo in (None, -1):
        return f"all {proto}"
    return f"{proto} port {lo}" if lo == hi else f"{proto} ports {lo}-{hi}"


def _world_open(perms: list[dict]) -> list[tuple[dict, str, str]]:
    """(permission, cidr, "IpRanges"/"Ipv6Ranges") for every rule that opens a port other than
    tcp 22 to the whole internet (0.0.0.0/0 or ::/0): those are found and revoked, never granted.
    Port 22 open to the world is the user's choice ([ec2] ssh_cidr, warned about at load), and it
    opens only the headnode's door group: logins take the cluster's key only (no passwords) and
    swiftrun checks the host key pinned for each instance, so a scan of the port learns nothing."""
    found = []
    for perm in perms:
        only_ssh = (perm.get("IpProtocol") in ("tcp", "6") and perm.get("FromPort") == 22
                    and perm.get("ToPort") == 22)
        if only_ssh or perm.get("IpProtocol") in ("icmp", "1", "icmpv6", "58"):
            continue                     # ssh is meant to be reachable; ping has no ports
        for kind, key in (("IpRanges", "CidrIp"), ("Ipv6Ranges", "CidrIpv6")):
            for rng in perm.get(kind, []):
                if rng.get(key) in WORLD_CIDRS:
                    found.append((perm, rng[key], kind))
    return found


def _ssh_ok(perms: list[dict], cidr: str) -> bool:
    try:
        want = ipaddress.ip_network(cidr, strict=False)
    except ValueError:
        return False
    for perm in perms:
        if not _covers(perm, 22):
            continue
        for kind, key in (("IpRanges", "CidrIp"), ("Ipv6Ranges", "CidrIpv6")):
            for rng in perm.get(kind, []):
                try:
                    net = ipaddress.ip_network(rng.get(key, ""), strict=False)
                except ValueError:
                    continue
                if net.version == want.version and want.subnet_of(net):
                    return True
    return False


def _inside(perms: list[dict], gid: str, port: int) -> bool:
    return any(_covers(p, port) and any(g.get("GroupId") == gid for g in p.get("UserIdGroupPairs", []))
               for p in perms)


def _rule(perm: dict, **extra) -> dict:
    rule = {"IpProtocol": perm["IpProtocol"]}
    if perm.get("FromPort") is not None and perm["IpProtocol"] not in ("-1", "all"):
        rule.update(FromPort=perm["FromPort"], ToPort=perm["ToPort"])
    rule.update(extra)
    return rule


def check_security_group(project, provider, *, fix: bool = False) -> Check:
    from swiftrun.cloud.groups import door_group_name

    name, door_name = project.security_group_name, door_group_name(project)
    filters = [{"Name": "group-name", "Values": [name, door_name]}]
    vpc = provider._vpc_of_subnet()
    if vpc:
        filters.append({"Name": "vpc-id", "Values": [vpc]})
    found = provider._call("describe_security_groups", Filters=filters).get("SecurityGroups", [])
    groups = [g for g in found if g["GroupName"] == name]
    door = next((g for g in found if g["GroupName"] == door_name), None)
    if not groups:
        return Check("security group", OK, f"{name} does not exist yet; `swiftrun up` creates it "
                     f"(ports {'/'.join(map(str, CLUSTER_PORTS))} inside the group only, every node) "
                     f"and {door_name} (port 22 from [ec2] ssh_cidr, the headnode only)")
    group = groups[0]
    gid = group["GroupId"]
    owner = {t["Key"]: t["Value"] for t in group.get("Tags", [])}.get("swiftrun:cluster")
    if not project.ec2.security_group and owner != project.cluster.name:
        # swiftrun's default name on a group swiftrun did not make for this cluster: --fix
        # must not change its rules, and `up` must not adopt it
        return Check("security group", FAIL,
                     f"{name} ({gid}) exists but was not made by swiftrun for cluster "
                     f"{project.cluster.name!r} (no tag swiftrun:cluster={project.cluster.name})",
                     "delete or rename it, or set [ec2] security_group to use it on purpose")
    try:
        cidr = provider.ssh_cidr()
    except SwiftrunError as exc:
        cidr, cidr_problem = None, exc.message
    else:
        cidr_problem = ""
    did: list[str] = []
    if fix:
        perms = group.get("IpPermissions", [])
        for perm, world, kind in _world_open(perms):
            if not any(_covers(perm, port) for port in (COASTER_PORT, WORKER_PORT)):
                continue
            key = "CidrIp" if kind == "IpRanges" else "CidrIpv6"
            provider._call("revoke_security_group_ingress", GroupId=gid,
                           IpPermissions=[_rule(perm, **{kind: [{key: world}]})])
            did.append(f"revoked {_ports(perm)} from {world}")
        if did:                          # what is left after the revokes decides what to add
            group = provider._call("describe_security_groups", GroupIds=[gid])["SecurityGroups"][0]
            perms = group.get("IpPermissions", [])
        for port in CLUSTER_PORTS:
            if not _inside(perms, gid, port):
                provider._call("authorize_security_group_ingress", GroupId=gid, IpPermissions=[{
                    "IpProtocol": "tcp", "FromPort": port, "ToPort": port,
                    "UserIdGroupPairs": [{"GroupId": gid, "Description": "swiftrun, cluster only"}]}])
                did.append(f"allowed tcp {port} inside the group")
        if cidr and door and not _ssh_ok(door.get("IpPermissions", []), cidr):
            from swiftrun.cloud.sgrules import ssh_rule

            provider._call("authorize_security_group_ingress", GroupId=door["GroupId"],
                           IpPermissions=[ssh_rule(cidr)])     # stamped: counted as swiftrun's
            did.append(f"allowed tcp 22 from {cidr} in {door_name}")
            door = provider._call("describe_security_groups",
                                  GroupIds=[door["GroupId"]])["SecurityGroups"][0]
        if did:
            reply = provider._call("describe_security_groups", GroupIds=[gid])
            group = reply["SecurityGroups"][0]
    perms = group.get("IpPermissions", [])
    done = f"; --fix: {', '.join(did)}" if did else ""
    label = f"{name} ({gid})"
    world = _world_open(perms)
    if world:
        perm, src, _ = world[0]
        what = "; ".join(f"{_ports(p)} from {c}" for p, c, _ in world)
        coaster = any(_covers(p, port) for p, _, _ in world for port in (COASTER_PORT, WORKER_PORT))
        proto = perm["IpProtocol"]
        port_args = "" if proto in ("-1", "all") else f" --port {perm.get('FromPort')}" + (
            f"-{perm.get('ToPort')}" if perm.get("ToPort") != perm.get("FromPort") else "")
        how = (f"aws ec2 revoke-security-group-ingress --group-id {gid} --protocol {proto}"
               f"{port_args} --{'cidr' if ':' not in src else 'ip-permissions'} {src}")
        return Check("security group", FAIL,
                     f"{label} lets the whole internet reach {what}: the coaster service runs "
                     f"-nosec, so anyone could run jobs on the cluster{done}",
                     (f"`swiftrun doctor --fix` revokes it, or: {how}" if coaster else f"revoke it: {how}"))
    missing = [port for port in CLUSTER_PORTS if not _inside(perms, gid, port)]
    if missing:
        ports = "/".join(map(str, missing))
        return Check("security group", FAIL,
                     f"{label} does not allow tcp {ports} inside the group: workers cannot reach "
                     f"the coaster service ({WORKER_PORT}) or the headnode's agent ({AGENT_PORT}){done}",
                     f"`swiftrun doctor --fix` adds it, or: aws ec2 authorize-security-group-ingress "
                     f"--group-id {gid} --protocol tcp --port {missing[0]} --source-group {gid}")
    if cidr is None:
        return Check("security group", WARN, f"{label}: coaster ports inside the group only{done}; "
                     f"port 22 not checked: {cidr_problem}", "set [ec2] ssh_cidr to your address/32")
    if door is None:
        return Check("security group", OK, f"{label}: ports {'/'.join(map(str, CLUSTER_PORTS))} "
                     f"inside the group only; `swiftrun up` creates {door_name} (port 22 from "
                     f"{cidr}, the headnode only){done}")
    if not _ssh_ok(door.get("IpPermissions", []), cidr):
        return Check("security group", WARN, f"{door_name} does not open port 22 to {cidr}: SSH "
                     f"from here to the headnode will time out{done}",
                     "`swiftrun up` or `swiftrun doctor --fix` adds the rule for [ec2] ssh_cidr")
    return Check("security group", OK, f"{label}: ports {'/'.join(map(str, CLUSTER_PORTS))} "
                 f"inside the group only; {door_name}: port 22 from {cidr}, the headnode only{done}")


def check_s3fs_bucket(project, provider) -> Check:
    import botocore.exceptions as bex
    from botocore.config import Config

    bucket = project.s3fs.bucket
    s3 = provider.session.client("s3", config=Config(connect_timeout=10, read_timeout=20,
                                                     retries={"max_attempts": 2}))
    try:
        s3.head_bucket(Bucket=bucket)
    except bex.ClientError as exc:
        code = _code(exc)
        if code in ("404", "NoSuchBucket", "NotFound"):
            return Check("s3fs bucket", FAIL, f"bucket {bucket!r} does not exist",
                         f"create it (aws s3 mb s3://{bucket} --region {project.ec2.region}) or fix "
                         "[s3fs] bucket", error=ConfigError)
        if code in ("403", "AccessDenied", "Forbidden"):
            return Check("s3fs bucket", FAIL, f"these credentials may not read bucket {bucket!r}",
                         "grant s3:ListBucket on it, or use a bucket of this account")
        return Check("s3fs bucket", FAIL, f"HeadBucket {bucket!r} failed: {code or exc}",
                     "check [s3fs] bucket and the credentials' S3 permissions")
    except bex.BotoCoreError as exc:
        return Check("s3fs bucket", FAIL, f"cannot reach S3: {exc}", "check the network / endpoint")
    return Check("s3fs bucket", OK, f"{bucket} is reachable; nodes mount it on {project.s3fs.mount}")


def is_ec2(provider) -> bool:
    from swiftrun.cloud.ec2 import EC2Provider

    return isinstance(provider, EC2Provider)


def up_checks(project, provider, *, fresh: bool = True) -> list[Check]:
    """What `up` asks before making anything, in as few EC2 calls as it can (doctor asks the
    rest): where Swift comes from (no call), the key pair when a key file is here to compare
    (one call, which `up` then reuses), the images (one call, reused for the launch). A region
    EC2 does not know fails the very first call; an instance type not offered, a missing
    permission or a quota fail the worker dry run (after the key pair and groups are made,
    which cost nothing) or the headnode's own launch, before anything is paid for."""
    if not is_ec2(provider):
        return []
    items = [("swift on the nodes", lambda: check_swift_source(project))]
    if Path(provider.key_file()).exists():
        items.append(("key pair", lambda: check_key_pair(project, provider)))
    items.append(("images", lambda: check_images(project, provider)))
    if project.ec2.security_group or not fresh:
        # a group named in the project (made by hand), or a cluster that exists: look before
        # `prepare` touches it. swiftrun's own groups on a cold `up` are checked after (if found).
        items.append(("security group", lambda: check_security_group(project, provider)))
        provider.groups_checked = True
    out: list[Check] = []
    for name, fn in items:
        out += run_check(name, fn, section="cloud")
    return out


def existing_group_checks(project, provider) -> list[Check]:
    """The security group check, when `up` found the cluster group already there (made by hand,
    or by an earlier `up` and changed since): one more call, never on a cold `up` of swiftrun's
    own groups."""
    if (not is_ec2(provider) or not getattr(provider, "groups_existed", False)
            or getattr(provider, "groups_checked", False)):
        return []
    return run_check("security group", lambda: check_security_group(project, provider),
                     section="cloud")


def worker_dry_run(project, provider, cluster: str) -> list[Check]:
    """The workers' launch as a dry run, once ``prepare`` made the key pair, groups and profile:
    the headnode's own launch is its check (nothing is paid for when it fails), the workers'
    must be checked before the headnode is paid for."""
    if not is_ec2(provider):
        return []
    from swiftrun.cloud.base import WORKER

    return run_check("dry-run launch",
                     lambda: check_dry_run(project, provider, cluster, roles=(WORKER,)),
                     section="cloud")


def prelaunch(project, provider, *, fix: bool = False, timeout: float | None = None,
              cluster: str | None = None) -> list[Check]:
    """The cloud checks that can fail before anything is paid for (EC2 only; [] otherwise)."""
    if not is_ec2(provider):
        return []
    cluster = cluster or project.cluster.name
    items = [("region", lambda: check_region(project, provider)),
             ("swift on the nodes", lambda: check_swift_source(project)),
             ("key pair", lambda: check_key_pair(project, provider)),
             ("images", lambda: check_images(project, provider)),
             ("instance types", lambda: check_instance_types(project, provider)),
             ("dry-run launch", lambda: check_dry_run(project, provider, cluster)),
             ("security group", lambda: check_security_group(project, provider, fix=fix))]
    if project.s3fs.bucket:
        items.append(("s3fs bucket", lambda: check_s3fs_bucket(project, provider)))
    # one after the other: later checks reuse what earlier ones cached (the resolved images)
    out: list[Check] = []
    for name, fn in items:
        out += run_check(name, fn, timeout=timeout, section="cloud")
        if name == "region" and out[-1].failed:
            break
    return out


def prepared_dry_run(project, provider, cluster: str) -> list[Check]:
    """The dry run again once ``prepare`` made the key pair, security group and instance
    profile: what the first one could not name yet (a new profile's iam:PassRole) is checked
    before the headnode is paid for. [] when not EC2."""
    if not is_ec2(provider):
        return []
    return run_check("dry-run launch", lambda: check_dry_run(project, provider, cluster),
                     section="cloud")
