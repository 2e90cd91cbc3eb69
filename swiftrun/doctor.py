"""``swiftrun doctor`` and the fail-before-you-pay checks ``up`` runs before launching.

Every check gives one :class:`Check`: ok / warn / fail, what it saw, and the one thing to do about
it. Each runs under a time limit (a check that does not answer in time is a fail saying so), so a
dead endpoint or a hung SSH session never hangs the doctor.

Sections:
- local: the project file, credentials, the key file, the rendered swift.conf, staging vs scripts;
- cloud (EC2, before anything is launched; ``up`` runs these through :func:`prelaunch` and
  :func:`raise_on_failure`): region, images vs instance architectures, instance type offerings,
  a ``RunInstances`` dry run, the key pair's fingerprint, the security group, the s3fs bucket;
- headnode (when a cluster runs): SSH, boot markers, java and ``swift -version``, the coaster
  service (running and listening), the script directory and the site workDirectory writable,
  free disk, mounts;
- workers: worker.pl running, a TCP connection from each worker to the headnode's worker port
  (the tutorial's netcat test), mounts.

``--fix`` only does what is safe and says what it did: chmod 600 the key file, revoke world-open
coaster rules / add a missing port 22 or coaster rule in the cluster's security group, chmod u+rwx
(or, with password-less sudo, chown) an unwritable run directory. Everything else stays advice.

``SWIFTRUN_DOCTOR_HEADNODE_ADDR=host:port`` makes the workers' reachability check dial that
address instead of ``<headnode private IP>:50005``: for networks where workers reach the headnode
by another name (a DNS name, a NAT address, a tunnel).
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import os
import shlex
import stat
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from swiftrun.cloud.awserr import NO_CREDENTIALS
from swiftrun.errors import CloudError, ConfigError, SwiftrunError
from swiftrun.project import WORLD_CIDRS

OK, WARN, FAIL = "ok", "warn", "fail"
TIMEOUT = float(os.environ.get("SWIFTRUN_DOCTOR_TIMEOUT", "30"))
LOW_DISK = 2 * 1024 ** 3
ADDR_ENV = "SWIFTRUN_DOCTOR_HEADNODE_ADDR"
COASTER_PORT, WORKER_PORT = 50010, 50005
WORLD = WORLD_CIDRS   # detected and revoked, never granted


@dataclass
class Check:
    name: str
    status: str                 # ok | warn | fail
    detail: str
    fix: str = ""
    section: str = ""
    # what raise_on_failure raises for this check (ConfigError: the project must change)
    error: type = field(default=CloudError, repr=False, compare=False)

    @property
    def failed(self) -> bool:
        return self.status == FAIL

    def doc(self) -> dict:
        return {"name": self.name, "status": self.status, "detail": self.detail, "fix": self.fix,
                "section": self.section}


# ------------------------------------------------------------------------------------------------
# running checks under a time limit
# ------------------------------------------------------------------------------------------------

def _as_checks(name: str, result) -> list[Check]:
    if result is None:
        return []
    if isinstance(result, Check):
        return [result]
    return list(result)


def _error_check(name: str, exc: BaseException) -> Check:
    if isinstance(exc, SwiftrunError):
        err = ConfigError if isinstance(exc, ConfigError) else CloudError
        return Check(name, FAIL, exc.message, exc.hint or _default_fix(exc), error=err)
    return Check(name, FAIL, f"the check itself failed: {type(exc).__name__}: {exc}",
                 "run again with --debug and report it")


def _default_fix(exc: SwiftrunError) -> str:
    if isinstance(exc, ConfigError):
        return "fix the setting named in the message"
    return "see the message; `swiftrun doctor` again once it is fixed"


def run_checks(items: Iterable[tuple[str, Callable]], *, timeout: float | None = None,
               section: str = "") -> list[Check]:
    """Run ``(name, fn)`` items concurrently, each with ``timeout`` seconds; results in order.

    ``fn`` returns a Check, a list of Checks or None. A SwiftrunError becomes a failed check with
    its message; a check still running at its limit is a fail saying so (its thread is left
    behind as a daemon: nothing can be interrupted safely from outside).
    """
    limit = TIMEOUT if timeout is None else timeout
    jobs = []
    for name, fn in items:
        box: dict = {}

        def target(fn=fn, box=box, name=name):
            try:
                box["result"] = _as_checks(name, fn())
            except BaseException as exc:  # noqa: BLE001 - every problem becomes a check
                box["result"] = [_error_check(name, exc)]

        thread = threading.Thread(target=target, name=f"doctor {name}", daemon=True)
        thread.start()
        jobs.append((name, thread, box, time.monotonic()))
    out: list[Check] = []
    for name, thread, box, started in jobs:
        thread.join(max(0.0, started + limit - time.monotonic()))
        if thread.is_alive() or "result" not in box:
            out.append(Check(name, FAIL, f"no answer within {limit:g}s (the check timed out)",
                             "check the network path to the cloud / node; raise the limit with "
                             "SWIFTRUN_DOCTOR_TIMEOUT=<seconds> if it is only slow"))
        else:
            out.extend(box["result"])
    for check in out:
        check.section = check.section or section
    return out


def run_check(name: str, fn: Callable, *, timeout: float | None = None, section: str = "") -> list[Check]:
    return run_checks([(name, fn)], timeout=timeout, section=section)


def raise_on_failure(checks: list[Check], ui=None) -> None:
    """Warnings go to ``ui``; the first failed check is raised as one line with its fix."""
    for check in checks:
        if check.status == WARN and ui is not None:
            ui.warn(f"{check.name}: {check.detail}" + (f" ({check.fix})" if check.fix else ""))
    for check in checks:
        if check.failed:
            text = f"pre-launch check {check.name!r} failed, nothing was launched: {check.detail}"
            raise check.error(text, hint=check.fix or None)


# ------------------------------------------------------------------------------------------------
# local
# ------------------------------------------------------------------------------------------------

_SOURCES = {
    "env": "environment variables (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY)",
    "shared-credentials-file": "the shared credentials file (~/.aws/credentials)",
    "config-file": "the AWS config file (~/.aws/config)",
    "sso": "AWS SSO (IAM Identity Center)",
    "assume-role": "an assumed role", "assume-role-with-web-identity": "a web-identity role",
    "iam-role": "this machine's instance role", "container-role": "the container's role",
    "custom-process": "a credential_process", "login": "aws login",
}


def check_credentials(project, provider) -> Check:
    from swiftrun.cloud.ec2 import credential_source

    try:
        session = provider.session
    except ConfigError as exc:
        return Check("credentials", FAIL, exc.message.split(":")[0],
                     exc.message.partition(": ")[2] or exc.hint or "set up AWS credentials",
                     error=ConfigError)
    source = credential_source(session)
    if source == "explicit" and project.ec2.credentials_file:
        words = f"[ec2] credentials_file {project.ec2.credentials_file}"
    else:
        words = _SOURCES.get(source, source)
    if project.ec2.profile:
        words += f", profile {project.ec2.profile!r}"
    return Check("credentials", OK, f"found: {words} [{source}]")


def key_path(project, provider) -> Path | None:
    if hasattr(provider, "key_file"):
        return Path(provider.key_file())
    return Path(project.ssh.key_file) if project.ssh.key_file else None


def check_key_file(project, provider, *, fix: bool = False) -> Check:
    name = "key file"
    path = key_path(project, provider)
    if path is None:
        return Check(name, OK, "no [ssh] key_file: SSH uses your agent and ~/.ssh keys")
    if not path.exists():
        if provider.elastic and not project.ssh.key_file:
            return Check(name, OK, f"{path} does not exist yet; `swiftrun up` makes it (0600)")
        return Check(name, FAIL, f"{path} does not exist",
                     "set [ssh] key_file to the private key (.pem) of the key pair", error=ConfigError)
    mode = stat.S_IMODE(path.stat().st_mode)
    done = ""
    if mode & 0o077:
        if not fix:
            return Check(name, FAIL, f"{path} is mode {mode:04o}: group/other can read the private "
                         "key (OpenSSH refuses such a key)",
                         f"chmod 600 {shlex.quote(str(path))} (or `swiftrun doctor --fix`)",
                         error=ConfigError)
        path.chmod(0o600)
        done = f"; --fix: chmod 600 (was {mode:04o})"
    from swiftrun.cloud.ec2 import public_key_of

    public_key_of(path)                 # ConfigError when it is not a usable private key
    return Check(name, OK, f"{path} is a private key, mode 0600{done}")


def check_swift_conf(project, script_dir: Path) -> Check:
    from swiftrun.swiftconf import render_checked

    try:
        rendered = render_checked(project, script_dir=script_dir)
    except ConfigError as exc:
        return Check("swift.conf", FAIL, exc.message,
                     exc.hint or "fix the key named in the message; `swiftrun conf SCRIPT` prints "
                     "the result", error=ConfigError)
    sites = ", ".join(rendered.sites) or "none"
    return Check("swift.conf", OK, f"{len(rendered.layers)} layer(s) merged, sites {sites}: every "
                 "key and value is one Swift 0.96 knows")


def _staging_direct(project, script_dir: Path) -> bool:
    if project.swift.staging == "direct":
        return True
    try:
        from swiftrun.swiftconf import _get, render

        tree = render(project, script_dir=script_dir).tree
    except SwiftrunError:
        return False
    if _get(tree, ["staging"]) == "direct":
        return True
    sites = _get(tree, ["site"]) or {}
    return any(isinstance(s, dict) and _get(s, ["staging"]) == "direct" for s in sites.values())


def check_staging(project, script_dir: Path, scripts: list[Path]) -> Check:
    from swiftrun.swiftconf import script_uses_literal_filenames

    if not _staging_direct(project, script_dir):
        return Check("staging", OK, "staging is not direct: apps may name their files literally")
    if not scripts:
        return Check("staging", OK, "staging: direct; no .swift script found to look at")
    flagged = []
    for script in scripts:
        try:
            apps = script_uses_literal_filenames(script.read_text(errors="replace"))
        except OSError:
            continue
        if apps:
            flagged.append(f"{script.name}: {', '.join(apps)}")
    if flagged:
        return Check("staging", WARN,
                     "staging: direct runs each job in its own directory with absolute paths, but "
                     f"these apps name files literally and will not find them ({'; '.join(flagged)})",
                     "pass files to the app as @filename(f) (or @f) instead of a quoted name, or "
                     "use staging = \"local\"")
    names = ", ".join(s.name for s in scripts)
    return Check("staging", OK, f"staging: direct; the apps of {names} take their files as arguments")


# ------------------------------------------------------------------------------------------------
# cloud (pre-launch)
# ------------------------------------------------------------------------------------------------

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
    from swiftrun.cloud.ec2 import _arch

    return "arm64" if _arch(instance_type) == "arm64" else "x86_64"


def check_images(project, provider) -> list[Check]:
    from swiftrun.cloud.base import HEADNODE, WORKER

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
            try:
                reply = provider._call("describe_images", ImageIds=[image_id])
                seen[image_id] = (reply.get("Images") or [None])[0]
            except CloudError as exc:
                if getattr(exc, "code", "").startswith("InvalidAMIID"):
                    seen[image_id] = None
                else:
                    raise
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
                             "(Graviton families such as c7g/m6g/t4g are arm64)",
                             f"set [ec2] {other} to an {want} AMI (or \"auto\"), or pick an "
                             f"{arch} {'worker_type' if role == WORKER else 'headnode_type'}",
                             error=ConfigError))
        else:
            out.append(Check(name, OK, f"{image_id} ({image.get('Name') or 'unnamed'}) is {arch}, "
                             f"matches {itype}"))
    return out


def swift_source(project) -> tuple[str, str, str]:
    """(status, what, fix) for how Swift reaches the nodes. Local: no cloud call.

    image = "auto" is Canonical's stock Ubuntu, which has no Swift; without [swift] install_url
    every node would boot, bill, and then fail its install step. A custom AMI cannot be looked
    into before boot, so it is taken at its word (the boot marker says otherwise soon enough).
    """
    sw, ec2 = project.swift, project.ec2
    if sw.install_url:
        return OK, f"installed at boot from {sw.install_url} (SHA-256 pinned)", ""
    stock = [key for key, value in (("image", ec2.image), ("worker_image", ec2.worker_image))
             if value == "auto"]
    if stock:
        keys = " and ".join(f"[ec2] {k}" for k in stock)
        return (FAIL, f"{keys} = \"auto\" (stock Ubuntu) has no Swift and [swift] install_url is "
                      "not set: the nodes would fail at boot, after being paid for",
                "set [swift] install_url and install_sha256 (the Swift 0.96 tarball), or [ec2] "
                f"image to an AMI with Swift in {sw.home}")
    return OK, f"expected under {sw.home} in the project's image (checked at boot)", ""


def check_swift_source(project) -> Check:
    status, what, fix = swift_source(project)
    return Check("swift on the nodes", status, what, fix, error=ConfigError)


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
    "UnauthorizedOperation": "these AWS credentials may not launch instances (ec2:RunInstances)",
    "AuthFailure": "AWS rejected the credentials",
    "InstanceLimitExceeded": "the account's instance limit in this region is reached",
    "VcpuLimitExceeded": "the account's vCPU limit for this instance family is reached",
    "InsufficientInstanceCapacity": "AWS has no capacity for this type in this zone right now",
}
_DRY_FIX = {
    "UnauthorizedOperation": "ask your AWS admin for ec2:RunInstances (and ec2:CreateTags)",
    "AuthFailure": "check the credentials with `aws sts get-caller-identity`",
    "InstanceLimitExceeded": "terminate instances, or ask AWS for a higher limit (Service Quotas)",
    "VcpuLimitExceeded": "use a smaller type or fewer workers, or ask AWS for a higher vCPU limit",
    "InsufficientInstanceCapacity": "try another type or [ec2] availability_zones, or later",
}


def check_dry_run(project, provider) -> list[Check]:
    """``RunInstances`` with ``DryRun=True``: EC2 answers DryRunOperation when it would have worked."""
    import botocore.exceptions as bex

    from swiftrun.cloud.base import HEADNODE, WORKER

    p = project
    wants = []
    for role, itype, spot in ((HEADNODE, p.ec2.headnode_type, False),
                              (WORKER, p.ec2.worker_type, p.ec2.spot)):
        image = provider.resolve_image(role)
        if any(w[1:] == (itype, spot, image) for w in wants):
            continue
        wants.append((role, itype, spot, image))
    out = []
    for role, itype, spot, image in wants:
        name = f"dry-run launch {itype}" + (" spot" if spot else "")
        kwargs = {"DryRun": True, "ImageId": image, "InstanceType": itype, "MinCount": 1,
                  "MaxCount": 1}
        if p.ec2.subnet_id:
            kwargs["SubnetId"] = p.ec2.subnet_id
        if spot:
            kwargs["InstanceMarketOptions"] = {"MarketType": "spot", "SpotOptions": {
                "SpotInstanceType": "one-time", "InstanceInterruptionBehavior": "terminate"}}
        try:
            reply = provider.ec2.run_instances(**kwargs)
        except bex.ClientError as exc:
            code = _code(exc)
            if code == "DryRunOperation":
                out.append(Check(name, OK, f"EC2 would launch {itype} ({image}) for the {role}"))
            elif code == "InsufficientInstanceCapacity":
                out.append(Check(name, WARN, f"{_DRY_FAIL[code]} ({itype})", _DRY_FIX[code]))
            elif code in _DRY_FAIL:
                out.append(Check(name, FAIL, f"{_DRY_FAIL[code]} ({code})", _DRY_FIX[code]))
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


def _fingerprints(path: Path) -> tuple[str, dict[str, set[str]]]:
    """(key type, {"hex": {...}, "b64": {...}}) of the fingerprints EC2 may show for this key.

    Imported RSA: MD5 of the public key's DER (SubjectPublicKeyInfo). EC2-made RSA: SHA-1 of the
    private key's PKCS#8 DER. ed25519: base64 SHA-256 of the OpenSSH public key blob (what
    ``ssh-keygen -l`` shows); moto shows the SHA-256 of the DER as hex.
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

    data = path.read_bytes()
    try:
        key = serialization.load_ssh_private_key(data, password=None)
    except ValueError:
        key = serialization.load_pem_private_key(data, password=None)
    pub = key.public_key()
    der = pub.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    blob = base64.b64decode(pub.public_bytes(serialization.Encoding.OpenSSH,
                                             serialization.PublicFormat.OpenSSH).split()[1])
    kind = "rsa" if isinstance(key, RSAPrivateKey) else (
        "ed25519" if isinstance(key, Ed25519PrivateKey) else "other")
    hexes = {hashlib.md5(der).hexdigest(), hashlib.sha256(der).hexdigest()}
    if kind == "rsa":
        pk8 = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        hexes.add(hashlib.sha1(pk8).hexdigest())
    b64 = {base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("="),
           base64.b64encode(hashlib.sha256(der).digest()).decode().rstrip("=")}
    return kind, {"hex": hexes, "b64": b64}


def fingerprint_verdict(path: Path, fingerprint: str) -> str:
    """"match", "mismatch" (sure) or "unknown" (a format this code cannot vouch for)."""
    kind, cands = _fingerprints(path)
    fp = fingerprint.strip()
    if fp.upper().startswith("SHA256:"):
        fp = fp[7:]
    if ":" in fp:
        digest = fp.replace(":", "").lower()
        if digest in cands["hex"]:
            return "match"
        sure = (kind == "rsa" and len(digest) in (32, 40)) or (kind == "ed25519" and len(digest) == 64)
        return "mismatch" if sure else "unknown"
    if fp.rstrip("=") in cands["b64"]:
        return "match"
    return "mismatch" if kind == "ed25519" and len(fp.rstrip("=")) == 43 else "unknown"


def check_key_pair(project, provider) -> Check:
    name, path = project.key_name, Path(provider.key_file())
    reply = provider._call("describe_key_pairs", Filters=[{"Name": "key-name", "Values": [name]}])
    pairs = reply.get("KeyPairs", [])
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
    tcp 22 to the whole internet (0.0.0.0/0 or ::/0)."""
    found = []
    for perm in perms:
        only_ssh = (perm.get("IpProtocol") in ("tcp", "6") and perm.get("FromPort") == 22
                    and perm.get("ToPort") == 22)
        if only_ssh or perm.get("IpProtocol") in ("icmp", "1", "icmpv6", "58"):
            continue                     # ssh is meant to be reachable; ping has no ports
        for kind, key in (("IpRanges", "CidrIp"), ("Ipv6Ranges", "CidrIpv6")):
            for rng in perm.get(kind, []):
                if rng.get(key) in WORLD:
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
    name = project.security_group_name
    filters = [{"Name": "group-name", "Values": [name]}]
    vpc = provider._vpc_of_subnet()
    if vpc:
        filters.append({"Name": "vpc-id", "Values": [vpc]})
    groups = provider._call("describe_security_groups", Filters=filters).get("SecurityGroups", [])
    if not groups:
        return Check("security group", OK, f"{name} does not exist yet; `swiftrun up` creates it: "
                     "port 22 from [ec2] ssh_cidr, coaster ports 50005/50010 inside the group only")
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
        for port in (WORKER_PORT, COASTER_PORT):
            if not _inside(perms, gid, port):
                provider._call("authorize_security_group_ingress", GroupId=gid, IpPermissions=[{
                    "IpProtocol": "tcp", "FromPort": port, "ToPort": port,
                    "UserIdGroupPairs": [{"GroupId": gid, "Description": "coaster, cluster only"}]}])
                did.append(f"allowed tcp {port} inside the group")
        if cidr and not _ssh_ok(perms, cidr):
            provider._call("authorize_security_group_ingress", GroupId=gid, IpPermissions=[{
                "IpProtocol": "tcp", "FromPort": 22, "ToPort": 22,
                "IpRanges": [{"CidrIp": cidr, "Description": "swiftrun ssh"}]}])
            did.append(f"allowed tcp 22 from {cidr}")
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
    missing = [port for port in (WORKER_PORT, COASTER_PORT) if not _inside(perms, gid, port)]
    if missing:
        ports = "/".join(map(str, missing))
        return Check("security group", FAIL,
                     f"{label} does not allow tcp {ports} inside the group: workers cannot reach "
                     f"the coaster service{done}",
                     f"`swiftrun doctor --fix` adds it, or: aws ec2 authorize-security-group-ingress "
                     f"--group-id {gid} --protocol tcp --port {missing[0]} --source-group {gid}")
    if cidr is None:
        return Check("security group", WARN, f"{label}: coaster ports inside the group only{done}; "
                     f"port 22 not checked: {cidr_problem}", "set [ec2] ssh_cidr to your address/32")
    if not _ssh_ok(perms, cidr):
        return Check("security group", WARN, f"{label} does not open port 22 to {cidr}: SSH from "
                     f"here will time out{done}",
                     "`swiftrun up` or `swiftrun doctor --fix` adds the rule for [ec2] ssh_cidr")
    return Check("security group", OK, f"{label}: port 22 from {cidr}, coaster ports "
                 f"{WORKER_PORT}/{COASTER_PORT} inside the group only{done}")


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


def _is_ec2(provider) -> bool:
    from swiftrun.cloud.ec2 import EC2Provider

    return isinstance(provider, EC2Provider)


def prelaunch(project, provider, *, fix: bool = False, timeout: float | None = None) -> list[Check]:
    """The cloud checks that can fail before anything is paid for (EC2 only; [] otherwise)."""
    if not _is_ec2(provider):
        return []
    items = [("region", lambda: check_region(project, provider)),
             ("swift on the nodes", lambda: check_swift_source(project)),
             ("key pair", lambda: check_key_pair(project, provider)),
             ("images", lambda: check_images(project, provider)),
             ("instance types", lambda: check_instance_types(project, provider)),
             ("dry-run launch", lambda: check_dry_run(project, provider)),
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


# ------------------------------------------------------------------------------------------------
# nodes
# ------------------------------------------------------------------------------------------------

_PROBE_LIB = r'''
# swiftrun-doctor-probe
R="${SWIFTRUN_NODE_ROOT:-}"
st="$R/var/lib/swiftrun"
if [ -f "$st/failed" ]; then echo "boot=failed $(head -n1 "$st/failed")"
elif [ -f "$st/ready" ]; then echo "boot=ready"
elif [ -d "$st" ]; then echo "boot=booting $(cat "$st/step" 2>/dev/null)"
else echo "boot=none"; fi
mounted() { [ -r "$R/proc/mounts" ] && awk -v m="$1" '$2 == m { f = 1 } END { exit !f }' "$R/proc/mounts"; }
sc="$R/scratch"
if [ -f "$R/etc/fstab" ] && awk -v m="$sc" '$2 == m { f = 1 } END { exit !f }' "$R/etc/fstab"; then
  if mounted "$sc"; then echo "scratch=mounted"; else echo "scratch=missing"; fi
else echo "scratch=none"; fi
if [ -n "$S3M" ]; then if mounted "$R$S3M"; then echo "s3fs=mounted"; else echo "s3fs=missing"; fi; fi
service() {  # service KEY UNIT PIDNAME PATTERN
  if [ -f "$R/etc/systemd/system/$2.service" ] && command -v systemctl >/dev/null 2>&1; then
    echo "$1=unit $(systemctl is-active "$2" 2>/dev/null | head -n1)"
  elif [ -f "$HOME/.swiftrun-node/$3.pid" ]; then
    p=$(cat "$HOME/.swiftrun-node/$3.pid")
    if kill -0 "$p" 2>/dev/null; then echo "$1=pid active $p"; else echo "$1=pid dead $p"; fi
  else
    p=
    for q in $(pgrep -u "$(id -u)" -f "$4" 2>/dev/null); do  # not this probe (its text matches)
      tr '\0' ' ' <"/proc/$q/cmdline" 2>/dev/null | grep -q swiftrun-doctor-probe && continue
      # under a node root (the test cloud: many nodes, one machine) only this node's processes
      if [ -n "$R" ]; then
        tr '\0' '\n' <"/proc/$q/environ" 2>/dev/null | grep -qxF "SWIFTRUN_NODE_ROOT=$R" || continue
      fi
      p=$q; break
    done
    if [ -n "$p" ]; then echo "$1=process active $p"; else echo "$1=none"; fi
  fi
}
'''

_HEAD_PROBE = _PROBE_LIB + r'''
echo "java=$(command -v java 2>/dev/null)"
b="$R$SWIFT_HOME/bin"
sw="$b/swift"; [ -x "$sw" ] || sw=$(command -v swift 2>/dev/null)
if [ -n "$sw" ]; then
  v=$(timeout 60 "$sw" -version 2>&1 </dev/null); rc=$?
  echo "swift=$rc $sw $(printf '%s\n' "$v" | head -n1)"
else echo "swift=missing"; fi
service coaster swiftrun-coaster coaster 'coaster-service|CoasterPersistentService'
tcp() { timeout 3 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null; }
if tcp 127.0.0.1 50010; then echo "listen=50010"; fi
pf="$R/run/coaster-service.port"
if [ -f "$pf" ]; then pp=$(head -n1 "$pf" | tr -dc 0-9)
  if [ -n "$pp" ] && tcp 127.0.0.1 "$pp"; then echo "listen_portfile=$pp"; else echo "portfile=$pp"; fi
fi
me=$(id -u); groups=" $(id -G) "
dircheck() {  # dircheck KEY DIR: writable by this user's permission bits (not root's override)
  d=$2; e=$d
  while [ ! -e "$e" ] && [ "$e" != / ] && [ "$e" != . ]; do e=$(dirname "$e"); done
  set -- "$1" "$d" "$e" $(stat -c '%u %g %a %U' "$e" 2>/dev/null)
  u=$4 g=$5 m=$((8#${6:-0}))
  if [ "$u" = "$me" ]; then bits=$(( (m >> 6) & 7 ))
  elif [ "${groups#* $g }" != "$groups" ]; then bits=$(( (m >> 3) & 7 ))
  else bits=$(( m & 7 )); fi
  w=no
  if [ -d "$e" ] && [ $((bits & 3)) -eq 3 ]; then t="$e/.swiftrun-doctor.$$"
    if mkdir "$t" 2>/dev/null; then rmdir "$t"; w=yes; fi; fi
  avail=$(df -Pk "$e" 2>/dev/null | awk 'NR == 2 { print $4 }')
  echo "dir_$1=$w|$e|$7|$6|${avail:-?}"
}
dircheck script "$SCRIPT_DIR"
i=0
for wd in "$@"; do dircheck "work$i" "$R$wd"; i=$((i + 1)); done
'''

_WORKER_PROBE = _PROBE_LIB + r'''
service worker swiftrun-worker worker 'worker\.pl'
if [ -n "$TARGET_HOST" ]; then
  timeout 5 bash -c "exec 3<>/dev/tcp/$TARGET_HOST/$TARGET_PORT" 2>/dev/null; rc=$?
  echo "reach=$rc"
fi
'''


def _parse(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.replace("_", "").isalnum():
            out[key] = value.strip()
    return out


def _script_cmd(body: str, env: dict[str, str], args: list[str] = ()) -> str:
    assigns = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
    return (f"{assigns} bash -c {shlex.quote(body)} doctor "
            + " ".join(shlex.quote(a) for a in args))


def _boot_check(node, label: str, value: str, elastic: bool) -> Check | None:
    state, _, rest = value.partition(" ")
    name = f"{label}: boot"
    if state == "ready":
        return Check(name, OK, "userdata finished (ready marker)")
    if state == "failed":
        return Check(name, FAIL, f"userdata failed: {rest}",
                     f"`swiftrun logs --boot {node.id}` shows why; then `swiftrun down` and `up`")
    if state == "booting":
        return Check(name, WARN, f"still booting (step {rest or '?'})",
                     f"wait, or follow it with `swiftrun logs --boot {node.id}`")
    if not elastic:
        return None                     # static hosts have no userdata
    return Check(name, FAIL, "no boot markers: swiftrun's userdata never ran on this node",
                 "`swiftrun down` and `swiftrun up` to relaunch it")


def _service_check(name: str, value: str, unit: str, fix_active: str) -> Check:
    how, _, rest = value.partition(" ")
    if how == "unit":
        if rest == "active":
            return Check(name, OK, f"{unit} is active")
        return Check(name, FAIL, f"{unit} is {rest or 'not active'}", fix_active)
    if how in ("pid", "process"):
        state, _, pid = rest.partition(" ")
        if state == "active":
            return Check(name, OK, f"running (pid {pid})")
        return Check(name, FAIL, f"not running (pid {pid} is gone)", fix_active)
    return Check(name, FAIL, f"not running (no {unit} unit, no pid file, no process)", fix_active)


def _mount_checks(project, label: str, info: dict[str, str]) -> list[Check]:
    out = []
    scratch = info.get("scratch", "none")
    if scratch == "mounted":
        out.append(Check(f"{label}: /scratch", OK, "instance-store scratch is mounted"))
    elif scratch == "missing":
        out.append(Check(f"{label}: /scratch", FAIL, "/scratch is in fstab but not mounted",
                         "check `swiftrun logs --boot` (step disks); `sudo mount -a` on the node"))
    if project.s3fs.bucket:
        mnt = project.s3fs.mount
        if info.get("s3fs") == "mounted":
            out.append(Check(f"{label}: s3fs", OK, f"bucket {project.s3fs.bucket} mounted on {mnt}"))
        else:
            out.append(Check(f"{label}: s3fs", FAIL, f"bucket {project.s3fs.bucket} is not mounted "
                             f"on {mnt}", "check `swiftrun logs --boot` (step s3fs) and the bucket's "
                             "instance profile"))
    return out


def _gib(kib: str) -> str:
    try:
        return f"{int(kib) / 1024 ** 2:.1f} GiB"
    except ValueError:
        return "? GiB"


def _dir_checks(label: str, info: dict[str, str], dirs: dict[str, tuple[str, str]],
                did: dict[str, str]) -> list[Check]:
    out = []
    low: list[str] = []
    for key, (name, shown) in dirs.items():
        raw = info.get(f"dir_{key}")
        if raw is None:
            continue
        w, existing, owner, mode, avail = (raw.split("|") + ["?"] * 5)[:5]
        where = shown if existing.endswith(shown.lstrip("~")) or existing == shown else \
            f"{shown} (nearest existing: {existing})"
        done = f"; --fix: {did[key]}" if key in did else ""
        if w == "yes":
            out.append(Check(f"{label}: {name}", OK, f"{where} is writable by the SSH user{done}"))
        else:
            out.append(Check(f"{label}: {name}", FAIL,
                             f"{where} is not writable by the SSH user (owner {owner}, mode {mode}): "
                             f"swift would stop with \"Unable to create run directory\"{done}",
                             f"`swiftrun doctor --fix`, or on the node: sudo chown $USER: {existing} "
                             f"&& chmod u+rwx {existing}"))
        try:
            if int(avail) * 1024 < LOW_DISK:
                low.append(f"{existing} {_gib(avail)}")
        except ValueError:
            pass
    if low:
        out.append(Check(f"{label}: disk", WARN, f"less than 2 GiB free: {', '.join(low)}",
                         "delete old runs (~/swiftrun/*/run*) or set [ec2] volume_size_gb"))
    elif dirs:
        out.append(Check(f"{label}: disk", OK, "at least 2 GiB free where runs write"))
    return out


_FIX_DIR = r'''
d=$1 want=$2 me=$(id -un)
case "$d/" in
  "$want/"|"$HOME"/?*) ;;
  *) echo "not done: $d is not the directory itself nor under $HOME; fix it by hand"; exit 1 ;;
esac
if [ "$(stat -c %u "$d")" = "$(id -u)" ]; then chmod u+rwx "$d" && echo "chmod u+rwx $d"
elif sudo -n true 2>/dev/null; then sudo -n chown "$me:" "$d" && chmod u+rwx "$d" && echo "sudo chown $me: $d; chmod u+rwx $d"
else echo "FAILED: $d belongs to $(stat -c %U "$d") and sudo needs a password"; exit 1; fi
'''


def headnode_addr(head) -> tuple[str, int]:
    raw = os.environ.get(ADDR_ENV, "").strip()
    if raw:
        host, _, port = raw.rpartition(":")
        if not host or not port.isdigit():
            raise ConfigError(f"{ADDR_ENV}={raw!r}: expected host:port")
        return host.strip("[]"), int(port)
    return head.private_ip or "", WORKER_PORT


def _work_dirs(project, script_dir: Path) -> list[str]:
    from swiftrun.swiftconf import _get, render

    try:
        rendered = render(project, script_dir=script_dir)
    except SwiftrunError:
        return [project.swift.work_directory]
    tree = rendered.tree
    dirs = []
    for site in rendered.sites:
        wd = _get(tree, ["site", site, "workDirectory"])
        if isinstance(wd, str) and wd.startswith("/") and wd not in dirs:
            dirs.append(wd)
    return dirs


def check_cluster(project, cluster, *, script_dir: Path, fix: bool = False,
                  timeout: float | None = None) -> list[Check]:
    from swiftrun.runner import remote_root

    limit = TIMEOUT if timeout is None else timeout
    found: dict = {}

    def look():
        found["nodes"] = cluster.nodes()

    checks = run_check("cluster", look, timeout=limit, section="headnode")
    if checks:
        return checks
    nodes = found["nodes"]
    head = cluster.headnode_of(nodes)
    elastic = cluster.provider.elastic
    if not head or not head.live:
        why = f" (headnode {head.id} is {head.state}: `swiftrun up` starts it)" if head else ""
        return [Check("cluster", OK, f"no cluster running{why}; node checks skipped",
                      section="headnode")]
    remote = cluster.remote
    head_t = cluster.target(head)
    label = f"headnode {head.id}"
    out: list[Check] = []

    def ssh():
        remote.connect(head_t, allow_new=not remote.is_pinned(head_t))
        return Check(f"{label}: ssh", OK, f"{head_t.user}@{head_t.host}:{head_t.port} with key "
                     f"{remote.key_file or '(agent)'} and the pinned host key")

    got = run_check(f"{label}: ssh", ssh, timeout=limit, section="headnode")
    out += got
    if got[0].failed:
        got[0].fix = ("check the security group's port 22 rule (above), [ssh] user and key_file; "
                      "`swiftrun connect` shows SSH's own words")
        return out

    root = remote_root(project, script_dir)
    work = _work_dirs(project, script_dir)
    env = {"SWIFT_HOME": project.swift.home, "S3M": project.s3fs.mount if project.s3fs.bucket else ""}
    dirs = {"script": ("script directory", root)}
    dirs.update({f"work{i}": ("workDirectory", wd) for i, wd in enumerate(work)})
    did: dict[str, str] = {}

    def probe() -> dict[str, str]:
        script_dir_expr = root.replace("~/", "$HOME/", 1)
        cmd = (f'SCRIPT_DIR="{script_dir_expr}" '
               + _script_cmd(_HEAD_PROBE, env, work))
        res = remote.run(head_t, cmd, timeout=limit)
        return _parse(res.stdout)

    info: dict = {}

    def gather():
        info.update(probe())
        if fix:
            for key in dirs:
                raw = info.get(f"dir_{key}", "")
                if raw.startswith("no|"):
                    existing = raw.split("|")[1]
                    want = dirs[key][1]
                    want = (want.replace("~/", "$HOME/", 1) if want.startswith("~/")
                            else '"${SWIFTRUN_NODE_ROOT:-}"' + shlex.quote(want))
                    res = remote.run(head_t, f'W={want}; ' + _script_cmd(_FIX_DIR, {}, [existing])
                                     + ' "$W"', timeout=limit)
                    did[key] = (res.stdout.strip() or res.stderr.strip() or "nothing done")
            if did:
                info.clear()
                info.update(probe())

    got = run_check(f"{label}: probe", gather, timeout=limit * (3 if fix else 1), section="headnode")
    if got:
        out += got
        return out
    sec = []
    boot = _boot_check(head, label, info.get("boot", "none"), elastic)
    if boot:
        sec.append(boot)
    java = info.get("java", "")
    sec.append(Check(f"{label}: java", OK, f"java at {java}") if java else
               Check(f"{label}: java", FAIL, "java is not on PATH (swift and coaster-service need it)",
                     "install a Java runtime on the headnode (apt-get install default-jre-headless)"))
    sw = info.get("swift", "missing")
    if sw == "missing":
        sec.append(Check(f"{label}: swift", FAIL, f"no swift under {project.swift.home}/bin nor on PATH",
                         "set [swift] home to where Swift is installed on the nodes"))
    else:
        rc, _, rest = sw.partition(" ")
        path, _, line = rest.partition(" ")
        if rc == "0" and line.startswith("Swift"):
            sec.append(Check(f"{label}: swift", OK, f"{line} ({path})"))
        else:
            sec.append(Check(f"{label}: swift", FAIL, f"`{path} -version` exited {rc}: "
                             f"{line or 'no output'}", "check the Java runtime and [swift] home"))
    if elastic:
        restart = ("on the headnode: sudo systemctl restart swiftrun-coaster (`swiftrun connect -- "
                   "sudo systemctl restart swiftrun-coaster`); its log: journalctl -u swiftrun-coaster")
    else:
        restart = "`swiftrun up` starts it again (static cluster)"
    coaster = _service_check(f"{label}: coaster-service", info.get("coaster", "none"),
                             "swiftrun-coaster", restart)
    sec.append(coaster)
    if "listen" in info:
        sec.append(Check(f"{label}: coaster port", OK, "listening on 50010 (the tutorial's check)"))
    elif "listen_portfile" in info:
        sec.append(Check(f"{label}: coaster port", OK, f"listening on {info['listen_portfile']} "
                         "(the port in run/coaster-service.port; 50010 is not in use here)"))
    else:
        seen = f" (run/coaster-service.port says {info['portfile']}, nothing answers)" \
            if "portfile" in info else ""
        sec.append(Check(f"{label}: coaster port", FAIL,
                         f"nothing listens on 127.0.0.1:50010{seen}",
                         restart if not coaster.failed else "start coaster-service (above)"))
    sec += _dir_checks(label, info, dirs, did)
    sec += _mount_checks(project, label, info)
    for c in sec:
        c.section = "headnode"
    out += sec

    workers = cluster.workers_of(nodes)
    if not workers:
        return out
    try:
        host, port = headnode_addr(head)
    except ConfigError as exc:
        return out + [Check("workers", FAIL, exc.message, f"unset {ADDR_ENV} or give host:port",
                            section="workers")]
    via = f" ({ADDR_ENV})" if os.environ.get(ADDR_ENV) else ""
    out += run_checks([(f"worker {w.id}", lambda w=w: _worker(project, cluster, w, host, port, via,
                                                              elastic, limit))
                       for w in workers], timeout=limit * 2, section="workers")
    return out


def _worker(project, cluster, node, host: str, port: int, via: str, elastic: bool,
            limit: float) -> list[Check]:
    remote = cluster.remote
    target = cluster.target(node)
    label = f"worker {node.id}"
    try:
        remote.connect(target, allow_new=not remote.is_pinned(target))
    except SwiftrunError as exc:
        return [Check(f"{label}: ssh", FAIL, exc.message,
                      "check the security group's port 22 rule; `swiftrun connect --worker` "
                      "shows SSH's own words")]
    env = {"S3M": project.s3fs.mount if project.s3fs.bucket else "", "TARGET_HOST": host,
           "TARGET_PORT": str(port)}
    info = _parse(remote.run(target, _script_cmd(_WORKER_PROBE, env), timeout=limit).stdout)
    out = []
    boot = _boot_check(node, label, info.get("boot", "none"), elastic)
    if boot:
        out.append(boot)
    restart = ("on the worker: sudo systemctl restart swiftrun-worker" if elastic
               else "`swiftrun up` starts it again (static cluster)")
    out.append(_service_check(f"{label}: worker.pl", info.get("worker", "none"), "swiftrun-worker",
                              restart))
    rc = info.get("reach")
    name = f"{label}: reach headnode"
    if not host:
        out.append(Check(name, WARN, "the headnode has no private IP; not checked",
                         f"set {ADDR_ENV}=host:port to check another address"))
    elif rc == "0":
        out.append(Check(name, OK, f"TCP connection to {host}:{port}{via} works"))
    else:
        sg_fix = (f"allow tcp {port} inside the cluster's security group (`swiftrun doctor --fix` "
                  "adds the coaster rules) and check the headnode's own firewall")
        svc_fix = (f"start coaster-service on the headnode (see the headnode checks); it must "
                   f"listen on {port} for workers")
        if rc == "124":
            why, fix = "timed out (a firewall or security group drops it)", sg_fix
        elif rc == "1":
            why, fix = "was refused (nothing listens there)", svc_fix
        else:
            why, fix = f"failed (exit {rc}; no bash /dev/tcp or timeout on the worker?)", sg_fix
        out.append(Check(name, FAIL, f"TCP connection from the worker to {host}:{port}{via} {why}",
                         fix))
    out += _mount_checks(project, label, info)
    return out


# ------------------------------------------------------------------------------------------------
# everything
# ------------------------------------------------------------------------------------------------

def _scripts(project, script: Path | None) -> list[Path]:
    if script:
        return [script]
    root = Path(project.root)
    return sorted(root.glob("*.swift"))[:20] if root.is_dir() else []


def diagnose(env, *, script: Path | None = None, fix: bool = False,
             timeout: float | None = None) -> list[Check]:
    """All checks for the project ``env`` loads (a commands._common.Env); never raises for the
    project's own problems: they are failed checks."""
    checks: list[Check] = []
    loaded: dict = {}

    def load():
        p = env.project
        loaded["project"] = p
        where = p.path or "(defaults: no swiftrun.toml found)"
        what = (f"{p.cluster.provider}" + (f" in {p.ec2.region}" if p.cluster.provider == "ec2" else ""))
        return Check("project", OK, f"{where}: cluster {p.cluster.name} ({what})")

    checks += run_check("project", load, timeout=timeout, section="local")
    project = loaded.get("project")
    if project is None:
        checks[-1].fix = checks[-1].fix or "fix the project file as the message says"
        return checks
    script_dir = script.parent if script else Path(project.root)
    try:
        cluster = env.cluster()
    except SwiftrunError as exc:
        checks.append(Check("provider", FAIL, exc.message, exc.hint or "fix the project file",
                            section="local"))
        return checks
    provider = cluster.provider
    ec2 = _is_ec2(provider)
    cloud_ok = True
    local = []
    if ec2:
        local.append(("credentials", lambda: check_credentials(project, provider)))
    local += [("key file", lambda: check_key_file(project, provider, fix=fix)),
              ("swift.conf", lambda: check_swift_conf(project, script_dir)),
              ("staging", lambda: check_staging(project, script_dir, _scripts(project, script)))]
    got = run_checks(local, timeout=timeout, section="local")
    checks += got
    if ec2:
        if got[0].failed:
            cloud_ok = False
        else:
            cloud = prelaunch(project, provider, fix=fix, timeout=timeout)
            checks += cloud
            cloud_ok = not (cloud and cloud[0].name == "region" and cloud[0].failed)
    if cloud_ok:
        checks += check_cluster(project, cluster, script_dir=script_dir, fix=fix, timeout=timeout)
    cluster.remote.close()
    return checks
