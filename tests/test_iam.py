"""The s3fs instance profile (swiftrun/cloud/iam.py) against the moto server (IAM, S3 and EC2)."""

from __future__ import annotations

import json
import os

import boto3
import pytest

from swiftrun.cloud import iam
from swiftrun.errors import CloudError, ConfigError
from tests.support.cloud import UBUNTU_AMI_ID

REGION = "us-west-2"
CLUSTER = "demo"
NAME = "swiftrun-demo-s3fs"
# distinctive credentials, so "no key in any document" means something (moto takes any)
ACCESS_KEY = "AKIASWIFTRUN0EXAMPLE"   # shaped like AWS documentation examples: never a real key
SECRET_KEY = "swiftrunTestSecret/0123456789abcdefghijKLMN"


# --- helpers --------------------------------------------------------------------------------------
class Recorder:
    """A boto3 session whose clients report every operation they call (before-call events)."""

    def __init__(self):
        self.session = boto3.Session(region_name=REGION)
        self.ops: list[str] = []
        self.session.events.register("before-call", self._seen)

    def _seen(self, model=None, **_):
        self.ops.append(model.name)

    def since(self, mark: int) -> list[str]:
        return self.ops[mark:]


@pytest.fixture
def env(aws_env, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    return aws_env


@pytest.fixture
def rec(env) -> Recorder:
    return Recorder()


@pytest.fixture
def admin(env):
    """Clients for the test's own checks (a separate session: not recorded)."""
    session = boto3.Session(region_name=REGION)
    return {s: session.client(s) for s in ("iam", "s3", "ec2")}


def make_bucket(admin, name: str) -> str:
    admin["s3"].create_bucket(Bucket=name,
                              CreateBucketConfiguration={"LocationConstraint": REGION})
    return name


def role_names(admin) -> list[str]:
    return sorted(r["RoleName"] for r in admin["iam"].list_roles()["Roles"])


def profile_names(admin) -> list[str]:
    return sorted(p["InstanceProfileName"]
                  for p in admin["iam"].list_instance_profiles()["InstanceProfiles"])


def tags(items) -> dict:
    return {t["Key"]: t["Value"] for t in items or []}


def inline_policy(admin, role: str = NAME) -> dict:
    doc = admin["iam"].get_role_policy(RoleName=role, PolicyName=iam.POLICY_NAME)["PolicyDocument"]
    return json.loads(doc) if isinstance(doc, str) else doc


def resources(doc: dict) -> set[str]:
    out = set()
    for st in doc["Statement"]:
        res = st["Resource"]
        out.update([res] if isinstance(res, str) else res)
    return out


def actions(doc: dict) -> set[str]:
    out = set()
    for st in doc["Statement"]:
        act = st["Action"]
        out.update([act] if isinstance(act, str) else act)
    return out


# --- names ----------------------------------------------------------------------------------------
def test_profile_name():
    assert iam.profile_name("demo") == "swiftrun-demo-s3fs"
    longest = "a" + "-" * 38 + "z"
    assert len(iam.profile_name(longest)) <= 64
    for bad in ("", "Demo", "-x", "a" * 41, "a_b", "a/b", "a*"):
        with pytest.raises(ConfigError):
            iam.profile_name(bad)


def test_policy_document_is_exactly_one_bucket():
    doc = iam.s3fs_policy("my-bucket")
    assert resources(doc) == {"arn:aws:s3:::my-bucket", "arn:aws:s3:::my-bucket/*"}
    assert actions(doc) == {"s3:ListBucket", "s3:GetBucketLocation", "s3:GetObject",
                            "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload",
                            "s3:ListMultipartUploadParts"}
    by_res = {st["Resource"]: set(st["Action"]) for st in doc["Statement"]}
    assert by_res["arn:aws:s3:::my-bucket"] == {"s3:ListBucket", "s3:GetBucketLocation"}
    assert all(st["Effect"] == "Allow" for st in doc["Statement"])
    for bad in ("*", "my-*", "a/b", "", "ab", "UPPER", "x" * 64):
        with pytest.raises(ConfigError, match=r"\[s3fs\] bucket"):
            iam.s3fs_policy(bad)


# --- ensure ---------------------------------------------------------------------------------------
def test_ensure_creates_role_profile_policy_and_is_idempotent(rec, admin):
    bucket = make_bucket(admin, "swiftrun-data")
    calls = []
    arn = iam.ensure_s3fs_profile(rec.session, CLUSTER, bucket, counter=lambda: calls.append(1))
    assert arn.endswith(f":instance-profile/{NAME}")
    assert len(calls) == len(rec.ops) > 0          # the counter saw every call, once
    assert rec.ops[0] == "HeadBucket"              # the bucket is checked before anything is made
    assert {"CreateRole", "PutRolePolicy", "CreateInstanceProfile",
            "AddRoleToInstanceProfile"} <= set(rec.ops)

    role = admin["iam"].get_role(RoleName=NAME)["Role"]
    assert tags(role.get("Tags")) == {"swiftrun:cluster": CLUSTER, "swiftrun:created": "1",
                                      "swiftrun:region": REGION}
    trust = role["AssumeRolePolicyDocument"]
    trust = json.loads(trust) if isinstance(trust, str) else trust
    [st] = trust["Statement"]
    assert st["Effect"] == "Allow" and st["Principal"] == {"Service": "ec2.amazonaws.com"}
    assert st["Action"] in ("sts:AssumeRole", ["sts:AssumeRole"])

    assert admin["iam"].list_role_policies(RoleName=NAME)["PolicyNames"] == [iam.POLICY_NAME]
    assert admin["iam"].list_attached_role_policies(RoleName=NAME)["AttachedPolicies"] == []
    doc = inline_policy(admin)
    assert resources(doc) == {"arn:aws:s3:::swiftrun-data", "arn:aws:s3:::swiftrun-data/*"}
    assert "s3:*" not in actions(doc) and "*" not in actions(doc)

    profile = admin["iam"].get_instance_profile(InstanceProfileName=NAME)["InstanceProfile"]
    assert profile["Arn"] == arn
    assert [r["RoleName"] for r in profile["Roles"]] == [NAME]
    profile_tags = tags(profile.get("Tags")) or tags(
        admin["iam"].list_instance_profile_tags(InstanceProfileName=NAME)["Tags"])
    assert profile_tags == {"swiftrun:cluster": CLUSTER, "swiftrun:created": "1",
                            "swiftrun:region": REGION}

    # a second call: same ARN, nothing new, nothing written
    roles, profiles = role_names(admin), profile_names(admin)
    mark = len(rec.ops)
    assert iam.ensure_s3fs_profile(rec.session, CLUSTER, bucket) == arn
    again = rec.since(mark)
    assert not [op for op in again if op.startswith(("Create", "Put", "Add", "Update", "Remove"))], again
    assert role_names(admin) == roles == [NAME]
    assert profile_names(admin) == profiles == [NAME]


def test_missing_bucket_is_config_error_and_nothing_made(rec, admin):
    with pytest.raises(ConfigError) as info:
        iam.ensure_s3fs_profile(rec.session, CLUSTER, "no-such-bucket-here")
    text = str(info.value)
    assert text.startswith('[s3fs] bucket = "no-such-bucket-here": no such bucket or no access (')
    assert "\n" not in text
    assert rec.ops == ["HeadBucket"]
    assert role_names(admin) == [] and profile_names(admin) == []


def test_invalid_bucket_name_is_config_error_before_any_call(rec, admin):
    with pytest.raises(ConfigError, match=r"\[s3fs\] bucket"):
        iam.ensure_s3fs_profile(rec.session, CLUSTER, "bad*bucket")
    assert rec.ops == []
    assert role_names(admin) == []


def test_changed_bucket_replaces_the_policy(rec, admin):
    make_bucket(admin, "bucket-one")
    make_bucket(admin, "bucket-two")
    arn1 = iam.ensure_s3fs_profile(rec.session, CLUSTER, "bucket-one")
    assert resources(inline_policy(admin)) == {"arn:aws:s3:::bucket-one", "arn:aws:s3:::bucket-one/*"}
    mark = len(rec.ops)
    arn2 = iam.ensure_s3fs_profile(rec.session, CLUSTER, "bucket-two")
    assert arn2 == arn1
    written = [op for op in rec.since(mark) if op.startswith(("Create", "Put", "Add"))]
    assert written == ["PutRolePolicy"]
    doc = inline_policy(admin)
    assert resources(doc) == {"arn:aws:s3:::bucket-two", "arn:aws:s3:::bucket-two/*"}
    assert "bucket-one" not in json.dumps(doc)
    assert admin["iam"].list_role_policies(RoleName=NAME)["PolicyNames"] == [iam.POLICY_NAME]


def test_profile_arn_is_usable_by_run_instances(rec, admin):
    make_bucket(admin, "swiftrun-data")
    arn = iam.ensure_s3fs_profile(rec.session, CLUSTER, "swiftrun-data")
    ec2 = admin["ec2"]
    reply = iam.retry_on_profile_propagation(lambda: ec2.run_instances(
        ImageId=UBUNTU_AMI_ID, InstanceType="t3.small", MinCount=1, MaxCount=1,
        IamInstanceProfile={"Arn": arn}))
    iid = reply["Instances"][0]["InstanceId"]
    desc = ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]
    assert desc["IamInstanceProfile"]["Arn"] == arn
    assoc = ec2.describe_iam_instance_profile_associations(
        Filters=[{"Name": "instance-id", "Values": [iid]}])["IamInstanceProfileAssociations"]
    assert [a["IamInstanceProfile"]["Arn"] for a in assoc] == [arn]
    ec2.terminate_instances(InstanceIds=[iid])


def test_no_credentials_in_any_document(rec, admin):
    make_bucket(admin, "swiftrun-data")
    iam.ensure_s3fs_profile(rec.session, CLUSTER, "swiftrun-data")
    secrets = [os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"]]
    assert secrets == [ACCESS_KEY, SECRET_KEY]
    client = admin["iam"]
    texts = [json.dumps(client.get_role(RoleName=NAME)["Role"], default=str),
             json.dumps(client.get_instance_profile(InstanceProfileName=NAME), default=str)]
    for name in client.list_role_policies(RoleName=NAME)["PolicyNames"]:
        texts.append(json.dumps(client.get_role_policy(RoleName=NAME, PolicyName=name),
                                default=str))
    for text in texts:
        for secret in secrets:
            assert secret not in text
        assert "aws_access_key_id" not in text.lower() and "aws_secret" not in text.lower()


def test_hand_made_role_of_the_same_name_is_left_alone(rec, admin):
    make_bucket(admin, "swiftrun-data")
    trust = json.dumps(iam.trust_policy())
    admin["iam"].create_role(RoleName=NAME, AssumeRolePolicyDocument=trust,
                             Tags=[{"Key": "owner", "Value": "someone"}])
    admin["iam"].put_role_policy(RoleName=NAME, PolicyName="theirs",
                                 PolicyDocument=json.dumps(iam.s3fs_policy("their-bucket")))
    with pytest.raises(CloudError, match="not made by swiftrun"):
        iam.ensure_s3fs_profile(rec.session, CLUSTER, "swiftrun-data")
    assert admin["iam"].list_role_policies(RoleName=NAME)["PolicyNames"] == ["theirs"]
    assert profile_names(admin) == []

    assert iam.delete_s3fs_profile(rec.session, CLUSTER) == []
    assert role_names(admin) == [NAME]
    assert admin["iam"].list_role_policies(RoleName=NAME)["PolicyNames"] == ["theirs"]


def test_role_of_another_cluster_is_not_deleted(rec, admin):
    make_bucket(admin, "swiftrun-data")
    iam.ensure_s3fs_profile(rec.session, "other", "swiftrun-data")
    assert iam.delete_s3fs_profile(rec.session, CLUSTER) == []
    assert role_names(admin) == ["swiftrun-other-s3fs"]


# --- delete ---------------------------------------------------------------------------------------
def test_delete_removes_everything_and_is_idempotent(rec, admin):
    make_bucket(admin, "swiftrun-data")
    iam.ensure_s3fs_profile(rec.session, CLUSTER, "swiftrun-data")
    calls = []
    done = iam.delete_s3fs_profile(rec.session, CLUSTER, counter=lambda: calls.append(1))
    assert done == [f"IAM instance profile {NAME}", f"IAM role policy {NAME}/{iam.POLICY_NAME}",
                    f"IAM role {NAME}"]
    assert calls
    assert role_names(admin) == [] and profile_names(admin) == []
    with pytest.raises(admin["iam"].exceptions.NoSuchEntityException):
        admin["iam"].get_role_policy(RoleName=NAME, PolicyName=iam.POLICY_NAME)

    assert iam.delete_s3fs_profile(rec.session, CLUSTER) == []
    assert iam.delete_s3fs_profile(rec.session, "never-made") == []


def test_delete_after_a_half_made_profile(rec, admin):
    """A role made but killed before its profile: delete still cleans up; ensure finishes it."""
    make_bucket(admin, "swiftrun-data")
    admin["iam"].create_role(RoleName=NAME, AssumeRolePolicyDocument=json.dumps(iam.trust_policy()),
                             Tags=[{"Key": "swiftrun:cluster", "Value": CLUSTER},
                                   {"Key": "swiftrun:created", "Value": "1"}])
    arn = iam.ensure_s3fs_profile(rec.session, CLUSTER, "swiftrun-data")
    assert arn.endswith(NAME)
    assert resources(inline_policy(admin)) == {"arn:aws:s3:::swiftrun-data",
                                               "arn:aws:s3:::swiftrun-data/*"}
    admin["iam"].remove_role_from_instance_profile(InstanceProfileName=NAME, RoleName=NAME)
    assert iam.ensure_s3fs_profile(rec.session, CLUSTER, "swiftrun-data") == arn
    profile = admin["iam"].get_instance_profile(InstanceProfileName=NAME)["InstanceProfile"]
    assert [r["RoleName"] for r in profile["Roles"]] == [NAME]

    admin["iam"].remove_role_from_instance_profile(InstanceProfileName=NAME, RoleName=NAME)
    admin["iam"].delete_instance_profile(InstanceProfileName=NAME)
    assert iam.delete_s3fs_profile(rec.session, CLUSTER) == [
        f"IAM role policy {NAME}/{iam.POLICY_NAME}", f"IAM role {NAME}"]
    assert role_names(admin) == []


# --- the same cluster name in two regions (IAM is global) ----------------------------------------
OTHER_REGION = "us-east-1"
WRITES = ("Create", "Put", "Add", "Update", "Remove", "Delete", "Tag", "Untag", "Detach")


class OtherRegion(Recorder):
    def __init__(self):
        super().__init__()
        self.session = boto3.Session(region_name=OTHER_REGION)
        self.session.events.register("before-call", self._seen)


def _writes(ops) -> list[str]:
    return [op for op in ops if op.startswith(WRITES)]


def _entity_tags(admin) -> tuple[dict, dict]:
    role = admin["iam"].get_role(RoleName=NAME)["Role"]
    profile = admin["iam"].get_instance_profile(InstanceProfileName=NAME)["InstanceProfile"]
    return tags(role.get("Tags")), tags(profile.get("Tags")) or tags(
        admin["iam"].list_instance_profile_tags(InstanceProfileName=NAME)["Tags"])


def test_same_cluster_name_in_another_region_is_refused_and_never_deleted(rec, admin):
    make_bucket(admin, "bucket-west")
    arn = iam.ensure_s3fs_profile(rec.session, CLUSTER, "bucket-west")
    east = OtherRegion()
    east_s3 = east.session.client("s3")
    east_s3.create_bucket(Bucket="bucket-east")
    east.ops.clear()

    # `up` in us-east-1 with another bucket: refused, nothing written, the policy keeps bucket A
    with pytest.raises(ConfigError) as info:
        iam.ensure_s3fs_profile(east.session, CLUSTER, "bucket-east")
    text = str(info.value)
    assert "\n" not in text
    assert repr(CLUSTER) in text and REGION in text
    assert "use another [cluster] name for this region, or `swiftrun down` there first" in text
    assert _writes(east.ops) == [], east.ops
    assert resources(inline_policy(admin)) == {"arn:aws:s3:::bucket-west",
                                               "arn:aws:s3:::bucket-west/*"}

    # `down` in us-east-1 (nothing running there): the us-west-2 role, profile, policy stay
    east.ops.clear()
    assert iam.delete_s3fs_profile(east.session, CLUSTER) == []
    assert _writes(east.ops) == [], east.ops
    assert role_names(admin) == [NAME] and profile_names(admin) == [NAME]
    assert admin["iam"].list_role_policies(RoleName=NAME)["PolicyNames"] == [iam.POLICY_NAME]
    profile = admin["iam"].get_instance_profile(InstanceProfileName=NAME)["InstanceProfile"]
    assert profile["Arn"] == arn and [r["RoleName"] for r in profile["Roles"]] == [NAME]

    # an explicit region wins over the session's
    with pytest.raises(ConfigError, match=REGION):
        iam.ensure_s3fs_profile(rec.session, CLUSTER, "bucket-west", region=OTHER_REGION)
    assert iam.delete_s3fs_profile(rec.session, CLUSTER, region=OTHER_REGION) == []
    assert role_names(admin) == [NAME]

    # its own region still takes it down, after which us-east-1 may use the name
    assert iam.delete_s3fs_profile(rec.session, CLUSTER) == [
        f"IAM instance profile {NAME}", f"IAM role policy {NAME}/{iam.POLICY_NAME}",
        f"IAM role {NAME}"]
    iam.ensure_s3fs_profile(east.session, CLUSTER, "bucket-east")
    assert _entity_tags(admin)[0]["swiftrun:region"] == OTHER_REGION
    assert _entity_tags(admin)[1]["swiftrun:region"] == OTHER_REGION


def test_profile_of_another_region_alone_keeps_everything(rec, admin):
    """Role untagged (older swiftrun) but the profile tagged for another region: nothing goes."""
    make_bucket(admin, "swiftrun-data")
    iam.ensure_s3fs_profile(rec.session, CLUSTER, "swiftrun-data")
    admin["iam"].untag_role(RoleName=NAME, TagKeys=[iam.TAG_REGION])
    east = OtherRegion()
    assert iam.delete_s3fs_profile(east.session, CLUSTER) == []
    assert role_names(admin) == [NAME] and profile_names(admin) == [NAME]
    with pytest.raises(ConfigError, match=REGION):
        iam.ensure_s3fs_profile(east.session, CLUSTER, "swiftrun-data")
    assert _writes(east.ops) == [], east.ops


def _make_legacy(admin) -> None:
    """Role + profile + policy as an older swiftrun made them: no region tag."""
    legacy = [{"Key": "swiftrun:cluster", "Value": CLUSTER}, {"Key": "swiftrun:created", "Value": "1"}]
    admin["iam"].create_role(RoleName=NAME, AssumeRolePolicyDocument=json.dumps(iam.trust_policy()),
                             Tags=legacy)
    admin["iam"].put_role_policy(RoleName=NAME, PolicyName=iam.POLICY_NAME,
                                 PolicyDocument=json.dumps(iam.s3fs_policy("swiftrun-data")))
    admin["iam"].create_instance_profile(InstanceProfileName=NAME, Tags=legacy)
    admin["iam"].add_role_to_instance_profile(InstanceProfileName=NAME, RoleName=NAME)


def test_untagged_role_of_an_older_swiftrun_counts_as_this_region(rec, admin):
    make_bucket(admin, "swiftrun-data")
    _make_legacy(admin)
    east = OtherRegion()
    assert iam.delete_s3fs_profile(east.session, CLUSTER) == [
        f"IAM instance profile {NAME}", f"IAM role policy {NAME}/{iam.POLICY_NAME}",
        f"IAM role {NAME}"]
    assert role_names(admin) == [] and profile_names(admin) == []


def test_untagged_role_gets_the_region_tag_on_ensure(rec, admin):
    make_bucket(admin, "swiftrun-data")
    _make_legacy(admin)
    arn = iam.ensure_s3fs_profile(rec.session, CLUSTER, "swiftrun-data")
    assert arn.endswith(NAME)
    role_tags, profile_tags = _entity_tags(admin)
    assert role_tags["swiftrun:region"] == profile_tags["swiftrun:region"] == REGION
    assert not [op for op in rec.ops if op.startswith(("Create", "Put", "Add", "Update"))], rec.ops
    # from now on the other region is refused
    with pytest.raises(ConfigError, match=REGION):
        iam.ensure_s3fs_profile(OtherRegion().session, CLUSTER, "swiftrun-data")


# --- errors ---------------------------------------------------------------------------------------
def test_access_denied_is_a_plain_cloud_error(rec, admin, moto_server):
    make_bucket(admin, "swiftrun-data")
    moto_server.set_faults({"CreateRole": {"error": "AccessDenied", "status": 403,
                                           "service": "iam",
                                           "message": "User is not authorized to perform "
                                                      "iam:CreateRole"}})
    with pytest.raises(CloudError) as info:
        iam.ensure_s3fs_profile(rec.session, CLUSTER, "swiftrun-data")
    text = str(info.value)
    assert getattr(info.value, "code", None) == "AccessDenied"
    assert "iam:CreateRole" in text and "permission" in text and "\n" not in text
    assert role_names(admin) == []


# --- eventual consistency -------------------------------------------------------------------------
def _propagation_error() -> CloudError:
    err = CloudError("EC2 RunInstances failed: InvalidParameterValue: EC2 refused a value (Value "
                     "(swiftrun-demo-s3fs) for parameter iamInstanceProfile.name is invalid. "
                     "Invalid IAM Instance Profile name)")
    err.code = "InvalidParameterValue"
    return err


def test_retry_on_profile_propagation_retries_that_error_only():
    slept: list[float] = []
    attempts = []

    def launch():
        attempts.append(1)
        if len(attempts) < 3:
            raise _propagation_error()
        return "launched"

    assert iam.retry_on_profile_propagation(launch, sleep=slept.append) == "launched"
    assert len(attempts) == 3 and len(slept) == 2 and all(s > 0 for s in slept)

    other = CloudError("EC2 RunInstances failed: InvalidParameterValue: EC2 refused a value "
                       "(bad instance type)")
    other.code = "InvalidParameterValue"
    tries = []

    def bad():
        tries.append(1)
        raise other

    with pytest.raises(CloudError, match="bad instance type"):
        iam.retry_on_profile_propagation(bad, sleep=slept.append)
    assert len(tries) == 1

    def always():
        raise _propagation_error()

    with pytest.raises(CloudError, match="iamInstanceProfile"):
        iam.retry_on_profile_propagation(always, timeout=0, sleep=slept.append)


def test_propagation_error_from_botocore_is_recognised():
    from botocore.exceptions import ClientError

    exc = ClientError({"Error": {"Code": "InvalidParameterValue",
                                 "Message": "Value (arn:aws:iam::1:instance-profile/x) for parameter "
                                            "iamInstanceProfile.arn is invalid. Invalid IAM "
                                            "Instance Profile ARN"}}, "RunInstances")
    assert iam.is_profile_propagation_error(exc)
    assert not iam.is_profile_propagation_error(
        ClientError({"Error": {"Code": "InvalidAMIID.NotFound", "Message": "iamInstanceProfile"}},
                    "RunInstances"))


def test_drifted_trust_policy_and_profile_role_are_repaired(rec, admin):
    make_bucket(admin, "swiftrun-data")
    arn = iam.ensure_s3fs_profile(rec.session, CLUSTER, "swiftrun-data")
    client = admin["iam"]
    lambda_trust = {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
        "Action": "sts:AssumeRole"}]}
    client.update_assume_role_policy(RoleName=NAME, PolicyDocument=json.dumps(lambda_trust))
    client.create_role(RoleName="intruder", AssumeRolePolicyDocument=json.dumps(iam.trust_policy()))
    client.remove_role_from_instance_profile(InstanceProfileName=NAME, RoleName=NAME)
    client.add_role_to_instance_profile(InstanceProfileName=NAME, RoleName="intruder")

    assert iam.ensure_s3fs_profile(rec.session, CLUSTER, "swiftrun-data") == arn
    trust = client.get_role(RoleName=NAME)["Role"]["AssumeRolePolicyDocument"]
    trust = json.loads(trust) if isinstance(trust, str) else trust
    assert trust["Statement"][0]["Principal"] == {"Service": "ec2.amazonaws.com"}
    profile = client.get_instance_profile(InstanceProfileName=NAME)["InstanceProfile"]
    assert [r["RoleName"] for r in profile["Roles"]] == [NAME]
    assert "intruder" in role_names(admin)      # removed from our profile, never deleted


def test_delete_access_denied_is_a_plain_cloud_error(rec, admin, moto_server):
    make_bucket(admin, "swiftrun-data")
    iam.ensure_s3fs_profile(rec.session, CLUSTER, "swiftrun-data")
    moto_server.set_faults({"DeleteRole": {"error": "AccessDenied", "status": 403, "service": "iam"}})
    with pytest.raises(CloudError) as info:
        iam.delete_s3fs_profile(rec.session, CLUSTER)
    text = str(info.value)
    assert text.startswith("IAM DeleteRole failed: AccessDenied: ") and "iam:DeleteRole" in text
    assert "by hand" in text and "[s3fs] bucket" not in text
    moto_server.clear_faults()
    assert iam.delete_s3fs_profile(rec.session, CLUSTER) == [f"IAM role {NAME}"]
    assert role_names(admin) == [] and profile_names(admin) == []
