"""EC2 provider (boto3): key pair, per-cluster security group, tagged launches, ordered teardown.

Every resource is created with its tags in the same call (TagSpecifications), so a process killed
at any moment leaves nothing that a tag query cannot find. Instances are only ever looked up by the
``swiftrun:cluster`` tag; nothing here lists or touches "all instances in the region".
"""

from __future__ import annotations

import os
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

from swiftrun import environ
from swiftrun.cloud.awserr import PLAIN as _PLAIN, fail_fast_until_reached, reaching
from swiftrun.cloud.base import (
    GONE_STATES, HEADNODE, TAG_CLUSTER, TAG_ROLE, TAG_SHAPE, LaunchSpec, Node, Provider)
from swiftrun.cloud.keys import public_key_of, write_new_key
from swiftrun.cloud.launch import architecture as _arch
from swiftrun.cloud.session import make_session
from swiftrun.errors import CloudError, ConfigError
from swiftrun.node.layout import CLUSTER_PORTS
from swiftrun.paths import state_home
from swiftrun.ui import slow_notice

CANONICAL_OWNER = "099720109477"
UBUNTU_NAME = "ubuntu/images/*/ubuntu-noble-24.04-{arch}-server-*"
COASTER_PORTS = CLUSTER_PORTS   # opened inside the cluster's group only
TAG_CREATED = "swiftrun:created"   # on resources swiftrun made (and may delete)
# Launch errors that mean "not here, not now": the next zone in [ec2] availability_zones may do.
CAPACITY_CODES = ("InsufficientInstanceCapacity", "Unsupported", "SpotMaxPriceTooLow",
                  "MaxSpotInstanceCountExceeded", "InsufficientCapacity")
# EC2 is eventually consistent: what was made a moment ago may be unknown to the next call for a
# while. Such answers are retried (with backoff) for this long, then reported in plain words.
CONSISTENCY_TIMEOUT = environ.seconds("SWIFTRUN_EC2_CONSISTENCY_TIMEOUT")
INSTANCE_NOT_FOUND = "InvalidInstanceID.NotFound"


def launch_time(value) -> datetime | None:
    """EC2's LaunchTime: text from our session (see cloud.session), a datetime from another."""
    if value is None or isinstance(value, datetime):
        return value
    try:
        when = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


class EC2Provider(Provider):
    name = "ec2"
    elastic = True

    def __init__(self, project, *, session=None):
        self.project = project
        self._session = session
        self._ec2 = None
        self._sg_id: str | None = None
        self._door_id: str | None = None
        self._key_pairs: list[dict] | None = None
        self._image_docs: dict[str, dict | None] = {}
        self._images: dict[str, str] = {}
        self._profile_arn: str | None = None
        self.api_calls = 0
        self.reached = False     # EC2 answered once: from then on a lost connection is retried
        self.made: list[tuple[str, str]] = []   # (kind, id) that prepare() created, in order

    # -- plumbing --------------------------------------------------------------------------
    def preflight(self) -> None:
        """Credentials resolve (no API call): a missing one is the first and only thing said."""
        self.session  # noqa: B018 - building the session is the check

    @property
    def session(self):
        if self._session is None:
            self._session = make_session(self.project)
        return self._session

    @property
    def ec2(self):
        if self._ec2 is None:
            from botocore.config import Config

            cfg = Config(retries={"mode": "standard", "max_attempts": 10},
                         connect_timeout=5, read_timeout=60, user_agent_extra="swiftrun")
            self._ec2 = self.session.client("ec2", config=cfg)
            self._ec2.meta.events.register("before-call.ec2", self._count)
            self._ec2.meta.events.register_first("needs-retry.ec2", fail_fast_until_reached(self))
        return self._ec2

    def _count(self, **_):
        self.api_calls += 1

    def _call(self, op: str, **kwargs):
        """One EC2 call with its errors put in plain words; a wait over a second is said."""
        import botocore.exceptions as bex

        region = self.project.ec2.region
        with reaching(f"EC2 in {region}", lambda: self.ec2.meta.endpoint_url), slow_notice(f"asking EC2 in {region} ..."):
            try:
                reply = getattr(self.ec2, op)(**kwargs)
                self.reached = True
                return reply
            except bex.ClientError as exc:
                self.reached = True     # it answered
                raise self._plain(exc, op) from None

    def _plain(self, exc, op: str) -> CloudError:
        code = exc.response.get("Error", {}).get("Code", "Error")
        msg = exc.response.get("Error", {}).get("Message", "")
        action = "".join(p.capitalize() for p in op.split("_"))
        plain = _PLAIN.get(code)
        text = f"EC2 {action} failed: {code}"
        if plain:
            text += f": {plain.format(op=action)}"
        if msg and (not plain or code in ("InvalidParameterValue", "UnauthorizedOperation")):
            text += f" ({msg})"     # AWS's own words: which value, or the encoded denial
        hint = ("`aws sts decode-authorization-message --encoded-message MESSAGE` says which "
                "permission or policy refused it") if "Encoded authorization" in msg else None
        err = CloudError(text, hint=hint)
        err.code = code
        return err

    def _tags(self, cluster: str, role: str | None = None, extra: dict | None = None) -> list[dict]:
        tags = {TAG_CLUSTER: cluster, TAG_CREATED: "1"}
        if role:
            tags[TAG_ROLE] = role
            tags["Name"] = f"{cluster}-{role}"
        tags.update(extra or {})
        return [{"Key": k, "Value": str(v)} for k, v in tags.items()]

    def _eventually(self, what: str, fn, codes: tuple[str, ...], *, timeout: float | None = None):
        """``fn()``, retried while EC2 answers one of ``codes`` because it has not caught up yet
        with a resource made moments ago (eventual consistency). After ``timeout`` seconds the
        last answer is raised as a CloudError that says what was being waited for."""
        from tenacity import (
            RetryError, Retrying, retry_if_exception, stop_after_delay, wait_exponential)

        timeout = CONSISTENCY_TIMEOUT if timeout is None else timeout
        retrying = Retrying(
            retry=retry_if_exception(lambda e: isinstance(e, CloudError)
                                     and getattr(e, "code", "") in codes),
            stop=stop_after_delay(timeout), wait=wait_exponential(multiplier=0.25, min=0.25, max=5))
        try:
            return retrying(fn)
        except RetryError as exc:
            last = exc.last_attempt.exception()
            code = getattr(last, "code", "") or "an error"
            err = CloudError(f"{what}: EC2 still answered {code} after {int(timeout)}s of "
                             f"retrying (it can lag behind for a few seconds, not this long); {last}")
            err.code = getattr(last, "code", "")
            raise err from None

    # -- finding -----------------------------------------------------------------------------
    def find_nodes(self, cluster: str, *, include_gone: bool = False) -> list[Node]:
        states = ["pending", "running", "stopping", "stopped"]
        if include_gone:
            states += list(GONE_STATES)
        filters = [{"Name": f"tag:{TAG_CLUSTER}", "Values": [cluster]},
                   {"Name": "instance-state-name", "Values": states}]
        nodes: list[Node] = []
        token = None
        while True:
            kwargs = {"Filters": filters, "MaxResults": 1000}
            if token:
                kwargs["NextToken"] = token
            reply = self._call("describe_instances", **kwargs)
            for res in reply.get("Reservations", []):
                nodes.extend(self._node(i) for i in res.get("Instances", []))
            token = reply.get("NextToken")
            if not token:
                break
        return sorted(nodes, key=lambda n: (n.role != HEADNODE, n.launched or 0, n.id))

    def _node(self, inst: dict) -> Node:
        tags = {t["Key"]: t["Value"] for t in inst.get("Tags", [])}
        public, private = inst.get("PublicIpAddress"), inst.get("PrivateIpAddress")
        return Node(
            id=inst["InstanceId"], role=tags.get(TAG_ROLE, "?"), state=inst["State"]["Name"],
            name=tags.get("Name", ""), type=inst.get("InstanceType", ""), public_ip=public,
            private_ip=private, launched=launch_time(inst.get("LaunchTime")),
            shape=tags.get(TAG_SHAPE, ""),
            spot=inst.get("InstanceLifecycle") == "spot",
            zone=inst.get("Placement", {}).get("AvailabilityZone", ""),
            ssh_host=public or private, ssh_port=self.project.ssh.port,
            host_key_alias=inst["InstanceId"])

    # -- shared resources --------------------------------------------------------------------
    def key_file(self) -> Path:
        if self.project.ssh.key_file:
            return Path(self.project.ssh.key_file)
        return state_home() / "keys" / f"{self.project.key_name}.pem"

    def ensure_key_pair(self, cluster: str) -> Path:
        """The key pair exists in the region and its private key is on disk (0600, never overwritten).

        A new key is made here and only its public half is sent (ImportKeyPair), so the private
        key never crosses the network.
        """
        name, path = self.project.key_name, self.key_file()
        missing = (f"key pair {name!r} exists in {self.project.ec2.region} but its private key "
                   f"file {path} is missing: set [ssh] key_file to the .pem you kept, or delete the "
                   f"key pair (aws ec2 delete-key-pair --key-name {name}) so swiftrun can make a "
                   "new one")
        made = False
        if path.exists():       # a key pair made for it before, most likely: ask first
            if self.key_pairs():
                return path
            public = public_key_of(path)
            if public.startswith("ecdsa-"):     # the loader refuses it first; ImportKeyPair would
                raise ConfigError(f"[ssh] key_file {path} is an ECDSA key, which EC2 cannot import",
                                  hint="make an ed25519 key (ssh-keygen -t ed25519) and use that")
        else:                   # no key here: import a new one without asking first
            public, made = write_new_key(path), True
            self.made.append(("key file", str(path)))
        try:
            self._call("import_key_pair", KeyName=name, PublicKeyMaterial=public.encode(),
                       TagSpecifications=[{"ResourceType": "key-pair",
                                           "Tags": self._tags(cluster)}])
        except CloudError as exc:
            if getattr(exc, "code", "") != "InvalidKeyPair.Duplicate":
                raise
            # A retried call whose first attempt went through (its reply was lost) is ours; a
            # pair made elsewhere is not, and the key just made here is of no use for it.
            from swiftrun.cloud.keys import fingerprint_verdict

            self._key_pairs = None
            pairs = self.key_pairs()
            if made and not (pairs and fingerprint_verdict(
                    path, pairs[0].get("KeyFingerprint", "")) == "match"):
                path.unlink(missing_ok=True)
                self.made.remove(("key file", str(path)))
                raise ConfigError(missing) from None
            if not made:
                return path
        self.made.append(("key pair", name))     # a failed `up` deletes it again (undo_prepare)
        return path

    def key_pairs(self) -> list[dict]:
        """DescribeKeyPairs for the project's key name, asked once per process."""
        if self._key_pairs is None:
            reply = self._call("describe_key_pairs", Filters=[
                {"Name": "key-name", "Values": [self.project.key_name]}])
            self._key_pairs = reply.get("KeyPairs", [])
        return self._key_pairs

    def security_group(self, cluster: str, *, create: bool = True, fresh: bool = False) -> str | None:
        """The cluster group, on every node (cloud/groups.py); the door group is found or made
        in the same pass."""
        if not self._sg_id:
            from swiftrun.cloud.groups import ensure_groups

            self._sg_id, self._door_id = ensure_groups(self, cluster, create=create, fresh=fresh)
        return self._sg_id

    def launch_groups(self, cluster: str, role: str) -> list[str]:
        """The groups a node of ``role`` launches in: the headnode in both, a worker in the
        cluster group alone (its port 22 answers the cluster only)."""
        sg = self.security_group(cluster)
        return [sg] + ([self._door_id] if role == HEADNODE and self._door_id else [])

    def _vpc_of_subnet(self) -> str | None:
        if not self.project.ec2.subnet_id:
            return None
        if getattr(self, "_vpc", None) is None:
            reply = self._call("describe_subnets", SubnetIds=[self.project.ec2.subnet_id])
            self._vpc = reply["Subnets"][0]["VpcId"]
        return self._vpc

    def ssh_cidr(self) -> str:
        cidr = self.project.ec2.ssh_cidr
        if cidr != "auto":
            return cidr
        from swiftrun.cloud.sgrules import public_address

        return f"{public_address()}/32"

    def prepare(self, cluster: str, *, fresh: bool = False) -> None:
        """Key pair, security groups, instance profile. ``fresh``: the cluster has no instance
        (a cold `up`), so what is missing is made without asking first."""
        self.ensure_key_pair(cluster)
        self.security_group(cluster, fresh=fresh)
        if self.project.s3fs.bucket:
            from swiftrun.cloud.iam import ensure_s3fs_profile

            # Nodes mount the bucket with this scoped role: no keys in userdata or on disk.
            self._profile_arn = ensure_s3fs_profile(self.session, cluster, self.project.s3fs.bucket,
                                                    counter=self._count)

    def resolve_image(self, role: str) -> str:
        image = self.project.ec2.image
        if role != HEADNODE and self.project.ec2.worker_image:
            image = self.project.ec2.worker_image
        if image != "auto":
            return image
        itype = self.project.ec2.headnode_type if role == HEADNODE else self.project.ec2.worker_type
        arch = _arch(itype)
        if arch not in self._images:
            reply = self._call("describe_images", Owners=[CANONICAL_OWNER], Filters=[
                {"Name": "name", "Values": [UBUNTU_NAME.format(arch=arch)]},
                {"Name": "state", "Values": ["available"]}])
            images = sorted(reply.get("Images", []), key=lambda i: i.get("CreationDate", ""))
            if not images:
                raise CloudError(f"no Ubuntu 24.04 {arch} image found in {self.project.ec2.region}; "
                                 "set [ec2] image to an AMI id")
            self._images[arch] = images[-1]["ImageId"]
            self._image_docs[images[-1]["ImageId"]] = images[-1]    # its root device too
        return self._images[arch]

    def image_info(self, image_id: str) -> dict | None:
        """The DescribeImages entry of ``image_id`` (None: no such image), asked once."""
        if image_id not in self._image_docs:
            try:
                reply = self._call("describe_images", ImageIds=[image_id])
                self._image_docs[image_id] = (reply.get("Images") or [None])[0]
            except CloudError as exc:
                if not getattr(exc, "code", "").startswith("InvalidAMIID"):
                    raise
                self._image_docs[image_id] = None
        return self._image_docs[image_id]

    def unreachable(self, node: Node) -> tuple[str, str] | None:
        from swiftrun.cloud.launch import NO_PUBLIC_IP_FIX, no_public_ip

        why = no_public_ip(self.project, node)
        return (why, NO_PUBLIC_IP_FIX) if why else None

    # -- launching ---------------------------------------------------------------------------
    def launch_params(self, cluster: str, spec: LaunchSpec) -> dict:
        """RunInstances parameters of ``spec`` (cloud/launch.py), shared with the dry run."""
        from swiftrun.cloud.launch import run_params

        return run_params(
            self.project, spec, key_name=self.project.key_name,
            tags=self._tags(cluster, spec.role, {TAG_SHAPE: spec.shape, **spec.extra_tags}),
            volume_tags=self._tags(cluster, spec.role),
            security_group=self.launch_groups(cluster, spec.role), profile_arn=self._profile_arn,
            userdata=_payload(spec.userdata),
            root=self.image_root(spec.image) if self.project.ec2.volume_size_gb else ("", None))

    def image_root(self, image_id: str) -> tuple[str, int | None]:
        """The image's root device and its snapshot size (cloud/launch.py:image_root)."""
        from swiftrun.cloud.launch import image_root

        return image_root(self.image_info(image_id) or {})

    def launch(self, cluster: str, spec: LaunchSpec) -> list[Node]:
        if spec.count <= 0:
            return []
        kwargs = self.launch_params(cluster, spec)
        zones = list(self.project.ec2.availability_zones) or [None]
        last: CloudError | None = None
        for zone in zones:
            if zone:
                kwargs["Placement"] = {"AvailabilityZone": zone}

            def run(kwargs=dict(kwargs)):
                # A fresh token per attempt of ours; botocore's own retries (throttling, 5xx)
                # resend the same one, so a request that went through is not launched twice.
                return self._call("run_instances", ClientToken=uuid.uuid4().hex, **kwargs)

            def consistent(run=run):
                # The key pair and group were made moments ago: EC2 may not know them yet.
                return self._eventually(f"launching {spec.role}s", run,
                                        ("InvalidGroup.NotFound", "InvalidKeyPair.NotFound"))
            try:
                if self._profile_arn:
                    from swiftrun.cloud.iam import retry_on_profile_propagation

                    # A new instance profile takes a few seconds to be usable by RunInstances.
                    reply = retry_on_profile_propagation(consistent)
                else:
                    reply = consistent()
                return [self._node(i) for i in reply.get("Instances", [])]
            except CloudError as exc:
                last = exc
                if getattr(exc, "code", "") not in CAPACITY_CODES:
                    raise
        assert last is not None
        if len(zones) > 1:
            err = CloudError(f"{last} (tried zones {', '.join(zones)})")
            err.code = getattr(last, "code", "")
            raise err
        raise last

    def wait_running(self, cluster: str, ids: list[str], timeout: float = 600,
                     also: list[str] = ()) -> list[Node]:
        """Poll until every id is running; ids not yet visible (eventual consistency) are waited
        for. ``also``: described in the same calls and returned as they are, not waited for."""
        deadline = time.monotonic() + timeout
        delay = 0.2
        while True:
            nodes = {n.id: n for n in self._describe(list(ids) + list(also))}
            if nodes and all(nodes.get(i) and nodes[i].state == "running" for i in ids):
                return [nodes[i] for i in ids] + [nodes[i] for i in also if i in nodes]
            dead = [n for n in nodes.values() if n.state in GONE_STATES]
            if dead:
                raise CloudError(f"instance {dead[0].id} went {dead[0].state} while starting "
                                 "(spot reclaimed, or a boot failure: see `swiftrun list`)")
            if time.monotonic() > deadline:
                raise CloudError(f"instances not running after {int(timeout)}s: "
                                 + ", ".join(f"{i}={nodes[i].state if i in nodes else '?'}" for i in ids))
            time.sleep(delay)
            delay = min(delay * 1.5, 5.0)

    def _describe(self, ids: list[str]) -> list[Node]:
        try:
            reply = self._call("describe_instances", InstanceIds=ids)
        except CloudError as exc:
            if getattr(exc, "code", "") == "InvalidInstanceID.NotFound":
                return []
            raise
        return [self._node(i) for r in reply.get("Reservations", []) for i in r.get("Instances", [])]

    # -- taking down -------------------------------------------------------------------------
    def terminate(self, cluster: str, ids: list[str]) -> None:
        """Terminate ``ids``. An instance launched moments ago may still be unknown to
        TerminateInstances (eventual consistency): that is retried, never taken for "gone"."""
        for chunk in _chunks(ids, 500):
            try:
                self._eventually(f"terminating {', '.join(chunk)}",
                                 lambda chunk=chunk: self._call("terminate_instances",
                                                                InstanceIds=chunk),
                                 (INSTANCE_NOT_FOUND,))
            except CloudError as exc:
                if getattr(exc, "code", "") != INSTANCE_NOT_FOUND:
                    raise
                # One unknown id fails the whole call: terminate the others one by one.
                unknown = []
                for iid in chunk:
                    try:
                        self._call("terminate_instances", InstanceIds=[iid])
                    except CloudError as one:
                        if getattr(one, "code", "") != INSTANCE_NOT_FOUND:
                            raise
                        unknown.append(iid)
                if unknown:
                    err = CloudError(
                        f"EC2 still does not know instance(s) {', '.join(unknown)} "
                        f"({INSTANCE_NOT_FOUND}) after {int(CONSISTENCY_TIMEOUT)}s of retrying, so "
                        "they could not be terminated; "
                        "if they show up in `swiftrun list`, `swiftrun down` terminates them")
                    err.code = INSTANCE_NOT_FOUND
                    raise err from None

    def start(self, cluster: str, ids: list[str], timeout: float = 600) -> None:
        """Start stopped instances; one still stopping is waited for first (EC2 refuses to
        start it with IncorrectInstanceState until it has stopped)."""
        deadline = time.monotonic() + timeout
        delay = 0.5
        while True:
            stopping = [n.id for n in self._describe(ids) if n.state == "stopping"]
            if not stopping:
                break
            if time.monotonic() > deadline:
                raise CloudError(f"{', '.join(stopping)} still stopping after {int(timeout)}s; "
                                 "run `swiftrun up` again in a minute")
            time.sleep(delay)
            delay = min(delay * 1.5, 5.0)
        self._call("start_instances", InstanceIds=ids)

    def stop(self, cluster: str, ids: list[str]) -> None:
        self._call("stop_instances", InstanceIds=ids)

    def wait_gone(self, cluster: str, ids: list[str], timeout: float = 600) -> None:
        deadline = time.monotonic() + timeout
        delay = 0.2
        while ids:
            ids = [n.id for n in self._describe(ids) if n.state != "terminated"]
            if not ids:
                return
            if time.monotonic() > deadline:
                raise CloudError(f"instances still not terminated after {int(timeout)}s: "
                                 f"{', '.join(ids)}; run `swiftrun down` again later")
            time.sleep(delay)
            delay = min(delay * 1.5, 5.0)

    def cleanup(self, cluster: str, *, delete_key: bool = False, timeout: float = 300) -> list[str]:
        """Delete the security group (retrying while ENIs let go of it) and, if asked, the key pair.

        Only resources carrying this cluster's tag are deleted: a group or key named in the
        project but made by hand stays.
        """
        reply = self._call("describe_security_groups", Filters=[
            {"Name": f"tag:{TAG_CLUSTER}", "Values": [cluster]}])
        deadline = time.monotonic() + timeout
        done = [f"security group {g['GroupName']} ({g['GroupId']})"
                for g in reply.get("SecurityGroups", []) if self._delete_group(g["GroupId"], deadline)]
        self._sg_id = self._door_id = None
        from swiftrun.cloud.iam import delete_s3fs_profile

        # Always look: the bucket may have been dropped from the project since `up`. Without s3fs
        # in the project, credentials that may not read IAM are no reason to fail a teardown.
        try:
            done += delete_s3fs_profile(self.session, cluster, counter=self._count)
        except (CloudError, ConfigError):
            if self.project.s3fs.bucket:
                raise
        if delete_key:
            reply = self._call("describe_key_pairs", Filters=[
                {"Name": "key-name", "Values": [self.project.key_name]},
                {"Name": f"tag:{TAG_CLUSTER}", "Values": [cluster]}])
            for kp in reply.get("KeyPairs", []):
                self._call("delete_key_pair", KeyName=kp["KeyName"])
                done.append(f"key pair {kp['KeyName']} (the local key file is kept)")
        return done

    def _delete_group(self, group_id: str, deadline: float) -> bool:
        """Delete a security group, retrying while ENIs of terminated instances let go of it."""
        delay = 1.0
        while True:
            try:
                self._call("delete_security_group", GroupId=group_id)
                return True
            except CloudError as exc:
                code = getattr(exc, "code", "")
                if code == "InvalidGroup.NotFound":
                    return False
                if code != "DependencyViolation" or time.monotonic() > deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 15)

    def undo_prepare(self, cluster: str, timeout: float = 300) -> list[str]:
        """Delete what ``prepare`` created in this process (a failed `up`'s security group, key
        pair and key file), newest first; never a group or key pair that was there before."""
        done, deadline = [], time.monotonic() + timeout
        while self.made:
            kind, what = self.made.pop()
            if kind == "security group" and self._delete_group(what, deadline):
                self._sg_id = self._door_id = None
            elif kind == "key pair":
                self._call("delete_key_pair", KeyName=what)
            elif kind == "key file":
                Path(what).unlink(missing_ok=True)
            done.append(f"{kind} {what}")
        return done

    def describe_plan(self) -> dict:
        p = self.project
        return {"region": p.ec2.region, "key_pair": p.key_name, "key_file": str(self.key_file()),
                "security_group": p.security_group_name, "ssh_cidr": p.ec2.ssh_cidr,
                "door_group": f"{p.security_group_name}-door",
                "coaster_ports": list(COASTER_PORTS)}


def _payload(userdata: str | bytes) -> bytes:
    if isinstance(userdata, bytes):
        return userdata
    from swiftrun.node.userdata import payload

    return payload(userdata)


def _chunks(items: list, size: int):
    for i in range(0, len(items), size):
        yield items[i:i + size]
