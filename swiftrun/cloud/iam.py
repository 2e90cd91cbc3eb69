"""The s3fs instance profile: nodes mount the ``[s3fs] bucket`` with an instance role.

No access key ever goes into userdata or onto a node's disk: s3fs runs with ``iam_role=auto`` and
gets short-lived credentials from the instance metadata of the role made here.

One role and one instance profile per cluster, both named ``swiftrun-<cluster>-s3fs`` and tagged
``swiftrun:cluster=<cluster>`` + ``swiftrun:created=1`` + ``swiftrun:region=<region>``. IAM is
global but clusters are per region: the region tag keeps a cluster of the same name in another
region from taking over (ConfigError) or deleting the role its nodes use. A role or profile
without the region tag (made by an older swiftrun) counts as this region's and gets the tag on
the next ``up``. The role trusts ``ec2.amazonaws.com`` only
and carries one inline policy (``swiftrun-s3fs``) that reaches exactly one bucket::

    s3:ListBucket, s3:GetBucketLocation                       on arn:<partition>:s3:::<bucket>
    s3:GetObject, s3:PutObject, s3:DeleteObject,
    s3:AbortMultipartUpload, s3:ListMultipartUploadParts      on arn:<partition>:s3:::<bucket>/*

(``<partition>`` is the region's: ``aws``, ``aws-cn`` in China, ``aws-us-gov`` in GovCloud.)

``ensure_s3fs_profile`` is idempotent (a second call only reads); ``delete_s3fs_profile`` only
deletes what carries this cluster's tag and this region (or no region), never a role or profile
of the same name made by hand or by the same-named cluster of another region.

IAM is eventually consistent: a profile made seconds ago may still be refused by RunInstances
(``InvalidParameterValue ... iamInstanceProfile``). Launch through
:func:`retry_on_profile_propagation`, which retries exactly that error for up to 60 s.

The caller's own credentials need, besides the EC2 ones: iam:GetRole, iam:CreateRole,
iam:TagRole, iam:GetRolePolicy, iam:PutRolePolicy, iam:UpdateAssumeRolePolicy,
iam:GetInstanceProfile, iam:CreateInstanceProfile, iam:TagInstanceProfile,
iam:AddRoleToInstanceProfile, iam:RemoveRoleFromInstanceProfile, iam:PassRole (for RunInstances)
and, to take down, iam:ListRolePolicies, iam:DeleteRolePolicy, iam:ListAttachedRolePolicies,
iam:DetachRolePolicy, iam:ListInstanceProfilesForRole, iam:DeleteInstanceProfile, iam:DeleteRole;
plus s3:ListBucket on the bucket (HeadBucket).
"""

from __future__ import annotations

import json
import re
import time
from typing import Any, Callable, TypeVar

from swiftrun.cloud.awserr import reaching
from swiftrun.cloud.base import TAG_CLUSTER
from swiftrun.errors import CloudError, ConfigError

TAG_CREATED = "swiftrun:created"     # the same tag the EC2 provider puts on what it made
TAG_REGION = "swiftrun:region"       # the region of the cluster that made the role / profile
POLICY_NAME = "swiftrun-s3fs"        # the one inline policy on the role
PROPAGATION_TIMEOUT = 60.0           # seconds RunInstances is retried while IAM catches up

_CLUSTER_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")
# S3's bucket name rules (as [s3fs] bucket is validated when the project loads). Checked again
# here because the name goes into ARNs: a '*' or '/' would widen the policy.
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")

# Plain words for the IAM errors people meet.
_PLAIN = {
    "AccessDenied": "these AWS credentials may not do this (iam:{op}); ask for iam:{op} permission",
    "AccessDeniedException": "these AWS credentials may not do this (iam:{op}); ask for iam:{op} "
                             "permission",
    "UnauthorizedOperation": "these AWS credentials may not do this (iam:{op}); ask for iam:{op} "
                             "permission",
    "InvalidClientTokenId": "AWS rejected the credentials; check them with "
                            "`aws sts get-caller-identity`",
    "SignatureDoesNotMatch": "AWS rejected the credentials (wrong secret key); check them with "
                             "`aws sts get-caller-identity`",
    "AuthFailure": "AWS rejected the credentials; check them with `aws sts get-caller-identity`",
    "ExpiredToken": "the AWS session token has expired; refresh the credentials",
    "LimitExceeded": "an IAM quota of the account is reached (roles, instance profiles or policy "
                     "size); delete unused ones or ask AWS for a higher limit",
    "Throttling": "IAM is throttling this account's requests; try again in a minute",
    "ServiceFailure": "IAM failed on its side; try again",
    "ServiceUnavailable": "IAM is unavailable right now; try again",
    "ConcurrentModification": "another change to the same IAM role or profile was in progress; "
                              "try again",
    "DeleteConflict": "the role or instance profile is still in use",
    "UnmodifiableEntity": "the role is managed by an AWS service and cannot be changed",
    "MalformedPolicyDocument": "IAM refused the policy document",
}
_DENIED = {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation"}
_SHOW_MESSAGE = {"DeleteConflict", "MalformedPolicyDocument", "LimitExceeded", "UnmodifiableEntity"}

T = TypeVar("T")


# --- names and documents -------------------------------------------------------------------------
def profile_name(cluster: str) -> str:
    """``swiftrun-<cluster>-s3fs``: the name of both the role and the instance profile (<= 54 chars)."""
    if not isinstance(cluster, str) or not _CLUSTER_RE.match(cluster):
        raise ConfigError(f"[cluster] name = {cluster!r}: must be 1-40 lower-case letters, digits "
                          "or '-', starting with a letter or digit")
    return f"swiftrun-{cluster}-s3fs"


def trust_policy() -> dict:
    """Who may assume the role: EC2 instances, nothing else."""
    return {"Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"},
                           "Action": "sts:AssumeRole"}]}


def partition_of(region: str | None, session=None) -> str:
    """The ARN partition of ``region``: ``aws``, ``aws-cn`` (China), ``aws-us-gov`` (GovCloud)
    and others, as botocore's endpoint data says; by the region's prefix when it cannot."""
    if region and session is not None and hasattr(session, "get_partition_for_region"):
        try:
            return session.get_partition_for_region(region)
        except Exception:  # noqa: BLE001 - an unknown region: fall back to its prefix
            pass
    if region and region.startswith("cn-"):
        return "aws-cn"
    if region and region.startswith("us-gov-"):
        return "aws-us-gov"
    return "aws"


def s3fs_policy(bucket: str, partition: str = "aws") -> dict:
    """The inline policy: exactly what s3fs needs on exactly one bucket (ARNs of ``partition``)."""
    _check_bucket_name(bucket)
    return {"Version": "2012-10-17",
            "Statement": [
                {"Sid": "Bucket", "Effect": "Allow",
                 "Action": ["s3:ListBucket", "s3:GetBucketLocation"],
                 "Resource": f"arn:{partition}:s3:::{bucket}"},
                {"Sid": "Objects", "Effect": "Allow",
                 "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject",
                            "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"],
                 "Resource": f"arn:{partition}:s3:::{bucket}/*"},
            ]}


def _check_bucket_name(bucket: str) -> None:
    if not isinstance(bucket, str) or not _BUCKET_RE.match(bucket) or ".." in bucket:
        raise ConfigError(f"[s3fs] bucket = {json.dumps(str(bucket))}: must be an S3 bucket name "
                          "(3-63 lower-case letters, digits, '.' or '-')")


def _tags(cluster: str, region: str | None) -> list[dict]:
    tags = [{"Key": TAG_CLUSTER, "Value": cluster}, {"Key": TAG_CREATED, "Value": "1"}]
    if region:
        tags.append({"Key": TAG_REGION, "Value": region})
    return tags


def _tag_map(entity: dict) -> dict:
    return {t.get("Key"): t.get("Value") for t in entity.get("Tags") or []}


def _is_ours(entity: dict, cluster: str) -> bool:
    return _tag_map(entity).get(TAG_CLUSTER) == cluster


def _other_region(entity: dict, region: str | None) -> str | None:
    """The region in the entity's region tag when it is not ``region``; None when it matches, when
    the tag is missing (an older swiftrun: counts as this region) or the region is unknown."""
    tagged = _tag_map(entity).get(TAG_REGION)
    if not region or not tagged or tagged == region:
        return None
    return tagged


def _session_region(session, region: str | None) -> str | None:
    return region or getattr(session, "region_name", None) or None


def _same_doc(current: Any, wanted: dict) -> bool:
    """IAM hands documents back url-decoded into dicts by botocore; be lenient about strings."""
    if isinstance(current, str):
        try:
            from urllib.parse import unquote

            current = json.loads(unquote(current))
        except ValueError:
            return False
    return _normal(current) == _normal(wanted)


def _normal(doc: Any) -> Any:
    """Single-item lists and strings compare equal, as IAM treats them."""
    if isinstance(doc, dict):
        return {k: _normal(v) for k, v in doc.items()}
    if isinstance(doc, list):
        items = [_normal(v) for v in doc]
        return items[0] if len(items) == 1 else items
    return doc


# --- calls ---------------------------------------------------------------------------------------
class _Clients:
    """IAM and S3 clients of one session, every call counted and its errors put in plain words."""

    def __init__(self, session, counter: Callable[[], Any] | None, denied_hint: str = ""):
        self.denied_hint = denied_hint   # appended to AccessDenied: what else the user can do
        from botocore.config import Config

        cfg = Config(retries={"mode": "standard", "max_attempts": 10},
                     connect_timeout=10, read_timeout=60, user_agent_extra="swiftrun")
        self.iam = session.client("iam", config=cfg)
        self.s3 = session.client("s3", config=cfg)
        if counter is not None:
            def _count(**_: Any) -> None:
                counter()
            for client, service in ((self.iam, "iam"), (self.s3, "s3")):
                client.meta.events.register(f"before-call.{service}", _count)

    def call(self, op: str, **kwargs) -> dict:
        """One IAM call; a refusal becomes a CloudError with ``.code`` set."""
        import botocore.exceptions as bex

        with reaching("IAM"):
            try:
                return getattr(self.iam, op)(**kwargs)
            except bex.ClientError as exc:
                raise _plain(exc, op, self.denied_hint) from None

    def get(self, op: str, **kwargs) -> dict | None:
        """A Get* call; None when the entity does not exist."""
        try:
            return self.call(op, **kwargs)
        except CloudError as exc:
            if getattr(exc, "code", "") == "NoSuchEntity":
                return None
            raise


def _plain(exc, op: str, denied_hint: str = "") -> CloudError:
    error = exc.response.get("Error", {})
    code, msg = error.get("Code", "Error"), error.get("Message", "")
    action = "".join(p.capitalize() for p in op.split("_"))
    plain = _PLAIN.get(code)
    text = f"IAM {action} failed: {code}"
    if plain:
        text += f": {plain.format(op=action)}"
        if code in _DENIED and denied_hint:
            text += f" {denied_hint}"
    if msg and (not plain or code in _SHOW_MESSAGE):
        text += f" ({msg})"
    err = CloudError(text)
    err.code = code
    return err


def _check_bucket(clients: _Clients, bucket: str) -> None:
    """The bucket exists and these credentials reach it (HeadBucket), else a one-line ConfigError."""
    import botocore.exceptions as bex

    name = json.dumps(bucket)
    try:
        with reaching(f"S3 to check [s3fs] bucket = {name}"):
            clients.s3.head_bucket(Bucket=bucket)
    except bex.ParamValidationError as exc:
        raise ConfigError(f"[s3fs] bucket = {name}: not a valid bucket name "
                          f"({' '.join(str(exc).split())})") from None
    except bex.ClientError as exc:
        error = exc.response.get("Error", {})
        code, msg = str(error.get("Code", "")), str(error.get("Message", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        if status >= 500 or code in ("SlowDown", "Throttling", "RequestLimitExceeded"):
            raise CloudError(f"S3 HeadBucket failed on [s3fs] bucket = {name}: {code} {msg}; "
                             "try again") from None
        detail = code if msg in ("", code) else f"{code} {msg}".strip()
        raise ConfigError(f"[s3fs] bucket = {name}: no such bucket or no access ({detail})") from None


# --- ensure / delete -----------------------------------------------------------------------------
def ensure_s3fs_profile(session, cluster: str, bucket: str, *,
                        counter: Callable[[], Any] | None = None,
                        region: str | None = None) -> str:
    """Make (or bring up to date) the cluster's s3fs role + instance profile; return the profile ARN.

    Order: check the bucket (HeadBucket) before anything is made, so a wrong bucket leaves nothing
    in IAM. An existing role/profile of this name must carry ``swiftrun:cluster=<cluster>``; one
    made by hand is never modified (CloudError). On an existing role the trust policy and the
    inline policy are rewritten only when they differ (a changed bucket replaces the policy).
    ``region`` (default: the session's region) is tagged on both; when the role or profile carries
    another region's tag, nothing is changed and a ConfigError says which region uses the name.
    A freshly made profile may need seconds before RunInstances accepts it: see
    :func:`retry_on_profile_propagation`.
    """
    name = profile_name(cluster)
    _check_bucket_name(bucket)
    clients = _Clients(session, counter, denied_hint=(
        "(swiftrun makes an instance role so nodes mount the [s3fs] bucket without keys), "
        "or set [s3fs] bucket = \"\""))
    _check_bucket(clients, bucket)
    region = _session_region(session, region)

    # Both looked at before anything is written: a role or profile of the same-named cluster in
    # another region is in use there and must not change (its policy least of all).
    role = (clients.get("get_role", RoleName=name) or {}).get("Role")
    profile = (clients.get("get_instance_profile", InstanceProfileName=name) or {}).get("InstanceProfile")
    if role is not None:
        _require_ours(role, cluster, "IAM role", name, region)
    if profile is not None:
        _require_ours(profile, cluster, "IAM instance profile", name, region)

    # the role
    if role is None:
        try:
            role = clients.call("create_role", RoleName=name,
                                AssumeRolePolicyDocument=json.dumps(trust_policy()),
                                Description=f"swiftrun cluster {cluster}: s3fs mount of one bucket",
                                Tags=_tags(cluster, region))["Role"]
        except CloudError as exc:
            if getattr(exc, "code", "") != "EntityAlreadyExists":   # made meanwhile: use it
                raise
            role = clients.call("get_role", RoleName=name)["Role"]
            _require_ours(role, cluster, "IAM role", name, region)
    else:
        if region and not _tag_map(role).get(TAG_REGION):     # an older swiftrun's: claim it
            clients.call("tag_role", RoleName=name, Tags=[{"Key": TAG_REGION, "Value": region}])
        if not _same_doc(role.get("AssumeRolePolicyDocument"), trust_policy()):
            clients.call("update_assume_role_policy", RoleName=name,
                         PolicyDocument=json.dumps(trust_policy()))

    # its one inline policy (PutRolePolicy replaces a policy of the same name)
    wanted = s3fs_policy(bucket, partition_of(region, session))
    current = clients.get("get_role_policy", RoleName=name, PolicyName=POLICY_NAME)
    if current is None or not _same_doc(current.get("PolicyDocument"), wanted):
        clients.call("put_role_policy", RoleName=name, PolicyName=POLICY_NAME,
                     PolicyDocument=json.dumps(wanted))

    # the instance profile, holding exactly this role
    if profile is None:
        try:
            profile = clients.call("create_instance_profile", InstanceProfileName=name,
                                   Tags=_tags(cluster, region))["InstanceProfile"]
        except CloudError as exc:
            if getattr(exc, "code", "") != "EntityAlreadyExists":
                raise
            profile = clients.call("get_instance_profile", InstanceProfileName=name)["InstanceProfile"]
            _require_ours(profile, cluster, "IAM instance profile", name, region)
    elif region and not _tag_map(profile).get(TAG_REGION):    # an older swiftrun's: claim it
        clients.call("tag_instance_profile", InstanceProfileName=name,
                     Tags=[{"Key": TAG_REGION, "Value": region}])
    roles = [r.get("RoleName") for r in profile.get("Roles") or []]
    if roles != [name]:
        for other in roles:       # a profile holds at most one role
            if other != name:
                clients.call("remove_role_from_instance_profile", InstanceProfileName=name,
                             RoleName=other)
        if name not in roles:
            try:
                clients.call("add_role_to_instance_profile", InstanceProfileName=name, RoleName=name)
            except CloudError as exc:
                # LimitExceeded: someone added it (or another role) meanwhile
                if getattr(exc, "code", "") != "LimitExceeded":
                    raise
                now = clients.call("get_instance_profile", InstanceProfileName=name)["InstanceProfile"]
                if [r.get("RoleName") for r in now.get("Roles") or []] != [name]:
                    raise
    return profile["Arn"]


def _require_ours(entity: dict, cluster: str, what: str, name: str,
                  region: str | None = None) -> None:
    if not _is_ours(entity, cluster):
        raise CloudError(f"{what} {name} exists but was not made by swiftrun for cluster "
                         f"{cluster!r} (no tag {TAG_CLUSTER}={cluster}); swiftrun will not change "
                         "it: delete or rename it, or use another [cluster] name")
    other = _other_region(entity, region)
    if other:
        raise ConfigError(f"cluster {cluster!r} already exists in {other} and uses {what} {name} "
                          f"(IAM is global, so {region} cannot share it): use another [cluster] "
                          f"name for this region, or `swiftrun down` there first")


def delete_s3fs_profile(session, cluster: str, *,
                        counter: Callable[[], Any] | None = None,
                        region: str | None = None) -> list[str]:
    """Delete the cluster's s3fs instance profile and role; return what was deleted (plain words).

    Idempotent: nothing there is no error. Only a profile / role tagged
    ``swiftrun:cluster=<cluster>`` is deleted; one of the same name made by hand stays. When the
    role or the profile is tagged with another region than ``region`` (default: the session's),
    the same-named cluster there uses them: nothing is deleted (an empty list).
    """
    name = profile_name(cluster)
    region = _session_region(session, region)
    clients = _Clients(session, counter, denied_hint=(
        f"(to delete the s3fs role and instance profile {name}), or delete them by hand"))
    done: list[str] = []

    def _gone_ok(op: str, **kwargs) -> bool:
        try:
            clients.call(op, **kwargs)
            return True
        except CloudError as exc:
            if getattr(exc, "code", "") == "NoSuchEntity":
                return False
            raise

    profile = (clients.get("get_instance_profile", InstanceProfileName=name) or {}).get("InstanceProfile")
    role = (clients.get("get_role", RoleName=name) or {}).get("Role")
    if any(e is not None and _is_ours(e, cluster) and _other_region(e, region)
           for e in (profile, role)):
        return done       # another region's cluster of this name: its nodes use them

    if profile is not None and _is_ours(profile, cluster):
        for role in profile.get("Roles") or []:
            _gone_ok("remove_role_from_instance_profile", InstanceProfileName=name,
                     RoleName=role["RoleName"])
        if _gone_ok("delete_instance_profile", InstanceProfileName=name):
            done.append(f"IAM instance profile {name}")

    if role is not None and _is_ours(role, cluster):
        # DeleteRole needs the role out of every profile and without any policy
        for prof in _pages(clients, "list_instance_profiles_for_role", "InstanceProfiles", RoleName=name):
            _gone_ok("remove_role_from_instance_profile",
                     InstanceProfileName=prof["InstanceProfileName"], RoleName=name)
        for policy in _pages(clients, "list_role_policies", "PolicyNames", RoleName=name):
            if _gone_ok("delete_role_policy", RoleName=name, PolicyName=policy):
                done.append(f"IAM role policy {name}/{policy}")
        for att in _pages(clients, "list_attached_role_policies", "AttachedPolicies", RoleName=name):
            _gone_ok("detach_role_policy", RoleName=name, PolicyArn=att["PolicyArn"])
        if _gone_ok("delete_role", RoleName=name):
            done.append(f"IAM role {name}")
    return done


def _pages(clients: _Clients, op: str, key: str, **kwargs) -> list:
    out: list = []
    marker = None
    while True:
        args = dict(kwargs, **({"Marker": marker} if marker else {}))
        try:
            reply = clients.call(op, **args)
        except CloudError as exc:
            if getattr(exc, "code", "") == "NoSuchEntity":
                return out
            raise
        out.extend(reply.get(key) or [])
        marker = reply.get("Marker") if reply.get("IsTruncated") else None
        if not marker:
            return out


# --- eventual consistency ------------------------------------------------------------------------
def is_profile_propagation_error(exc: BaseException) -> bool:
    """RunInstances refusing a just-made profile: ``InvalidParameterValue`` naming iamInstanceProfile.

    Accepts the CloudError of the EC2 provider (``.code`` + message) and a raw botocore ClientError.
    """
    code = getattr(exc, "code", None)
    response = getattr(exc, "response", None)
    if code is None and isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        text = str(response.get("Error", {}).get("Message", "")) + " " + str(exc)
    else:
        text = str(exc)
    if code != "InvalidParameterValue":
        return False
    text = text.lower()
    return "iaminstanceprofile" in text or "iam instance profile" in text


def retry_on_profile_propagation(fn: Callable[[], T], *, timeout: float = PROPAGATION_TIMEOUT,
                                 sleep: Callable[[float], None] = time.sleep) -> T:
    """Call ``fn()`` (e.g. the launch); while it fails only because IAM has not yet propagated the
    new instance profile to EC2, wait (1 s, growing to 8 s) and call again, for up to ``timeout``
    seconds. Any other error, or this one after the timeout, is raised as it is."""
    from tenacity import Retrying, retry_if_exception, stop_after_delay, wait_exponential

    retrying = Retrying(retry=retry_if_exception(is_profile_propagation_error),
                        stop=stop_after_delay(timeout),
                        wait=wait_exponential(multiplier=1, min=1, max=8),
                        sleep=sleep, reraise=True)
    return retrying(fn)
