"""The strict test cloud (tests/support/strict.py): what EC2 and IAM refuse, the test cloud
refuses too, with AWS's codes and messages, whatever the request carries and however the server
was started. Each test fails against plain moto (which accepts the call, or answers with its own
code or wording).
"""

from __future__ import annotations

import base64
import gzip
import json
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from tests.support import faults, strict
from tests.support.cloud import UBUNTU_AMI_ID, MotoServer, boto_client, write_amis_file

ONE_TRY = {"retries": {"total_max_attempts": 1}}
SHORT = 0.5          # the shortest delay the strict layer takes


@pytest.fixture
def ec2(aws_env, moto_server):
    return boto_client("ec2", moto_server.endpoint, **ONE_TRY)


@pytest.fixture
def iam(aws_env, moto_server):
    return boto_client("iam", moto_server.endpoint, **ONE_TRY)


def _error(exc_info) -> tuple[str, str, int]:
    err = exc_info.value.response
    return err["Error"]["Code"], err["Error"]["Message"], err["ResponseMetadata"]["HTTPStatusCode"]


def _launch(ec2, **kwargs) -> dict:
    return ec2.run_instances(ImageId=UBUNTU_AMI_ID, InstanceType="t3.micro", MinCount=1,
                             MaxCount=1, **kwargs)["Instances"][0]


def _describe(ec2, iid: str) -> dict:
    return ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]


def _wait_past(seconds: float) -> None:
    time.sleep(seconds + 0.1)


# -- 1. user data -------------------------------------------------------------------------------
def test_user_data_over_16_kib_raw_is_refused(ec2):
    _launch(ec2, UserData="#!/bin/sh\n" + "x" * (16384 - 10))          # exactly 16384 raw: fine
    with pytest.raises(ClientError) as exc:
        _launch(ec2, UserData="#!/bin/sh\n" + "x" * (16384 - 9))
    assert _error(exc) == ("InvalidParameterValue", "User data is limited to 16384 bytes", 400)
    # the limit is on what is sent (raw, before base64): gzip is how to fit more
    _launch(ec2, UserData=gzip.compress(b"#!/bin/sh\n" + b"x" * 40000))


# -- 2. CIDR families ---------------------------------------------------------------------------
@pytest.mark.parametrize("call", ["authorize_security_group_ingress",
                                  "authorize_security_group_egress"])
def test_ipv6_belongs_in_ipv6_ranges(ec2, call):
    sg = ec2.create_security_group(GroupName="g", Description="d")["GroupId"]
    perm = {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22}
    with pytest.raises(ClientError) as exc:
        getattr(ec2, call)(GroupId=sg, IpPermissions=[{**perm, "IpRanges": [{"CidrIp": "::/0"}]}])
    assert _error(exc) == ("InvalidParameterValue", "CIDR block ::/0 is malformed", 400)
    with pytest.raises(ClientError) as exc:
        getattr(ec2, call)(GroupId=sg, IpPermissions=[
            {**perm, "Ipv6Ranges": [{"CidrIpv6": "203.0.113.0/24"}]}])
    assert _error(exc) == ("InvalidParameterValue", "CIDR block 203.0.113.0/24 is malformed", 400)
    getattr(ec2, call)(GroupId=sg, IpPermissions=[{**perm, "IpRanges": [{"CidrIp": "203.0.113.0/24"}],
                                                   "Ipv6Ranges": [{"CidrIpv6": "2001:db8::/64"}]}])


# -- 3. key types -------------------------------------------------------------------------------
def test_import_key_pair_takes_rsa_and_ed25519_only(ec2):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    def public(key) -> bytes:
        return key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                             serialization.PublicFormat.OpenSSH)

    with pytest.raises(ClientError) as exc:
        ec2.import_key_pair(KeyName="ecdsa", PublicKeyMaterial=public(ec.generate_private_key(ec.SECP256R1())))
    assert _error(exc) == ("InvalidKey.Format", "Key is not in valid OpenSSH public key format", 400)
    ec2.import_key_pair(KeyName="ed", PublicKeyMaterial=public(ed25519.Ed25519PrivateKey.generate()))
    ec2.import_key_pair(KeyName="rsa", PublicKeyMaterial=public(
        rsa.generate_private_key(public_exponent=65537, key_size=2048)))
    names = {k["KeyName"] for k in ec2.describe_key_pairs()["KeyPairs"]}
    assert names == {"ed", "rsa"}


# -- 4. root volume -----------------------------------------------------------------------------
def test_root_volume_smaller_than_its_snapshot_is_refused(ec2):
    image = ec2.describe_images(ImageIds=[UBUNTU_AMI_ID])["Images"][0]
    root = image["RootDeviceName"]
    snap = next(m["Ebs"] for m in image["BlockDeviceMappings"] if m["DeviceName"] == root)
    size = ec2.describe_snapshots(SnapshotIds=[snap["SnapshotId"]])["Snapshots"][0]["VolumeSize"]
    with pytest.raises(ClientError) as exc:
        _launch(ec2, BlockDeviceMappings=[{"DeviceName": root, "Ebs": {"VolumeSize": size - 1}}])
    assert _error(exc) == (
        "InvalidBlockDeviceMapping",
        f"Volume of size {size - 1}GB is smaller than  snapshot '{snap['SnapshotId']}', "
        f"expect size >= {size}GB", 400)
    _launch(ec2, BlockDeviceMappings=[{"DeviceName": root, "Ebs": {"VolumeSize": size}}])
    # another device name is an extra volume, not the root: no snapshot to be smaller than
    _launch(ec2, BlockDeviceMappings=[{"DeviceName": "/dev/sdf", "Ebs": {"VolumeSize": 1}}])


# -- 5. instance profile propagation ------------------------------------------------------------
def test_new_instance_profile_is_refused_for_its_first_seconds(ec2, iam, moto_server):
    strict.set_strict(moto_server.endpoint, profile_delay=SHORT)
    iam.create_role(RoleName="r", AssumeRolePolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                "Principal": {"Service": "ec2.amazonaws.com"}}]}))
    arn = iam.create_instance_profile(InstanceProfileName="p")["InstanceProfile"]["Arn"]
    with pytest.raises(ClientError) as exc:
        _launch(ec2, IamInstanceProfile={"Name": "p"})
    assert _error(exc) == ("InvalidParameterValue", "Value (p) for parameter iamInstanceProfile.name "
                           "is invalid. Invalid IAM Instance Profile name", 400)
    _wait_past(SHORT)
    _launch(ec2, IamInstanceProfile={"Arn": arn})
    iam.add_role_to_instance_profile(InstanceProfileName="p", RoleName="r")   # propagates again
    with pytest.raises(ClientError) as exc:
        _launch(ec2, IamInstanceProfile={"Arn": arn})
    assert _error(exc) == ("InvalidParameterValue", f"Value ({arn}) for parameter "
                           "iamInstanceProfile.arn is invalid. Invalid IAM Instance Profile ARN", 400)
    _wait_past(SHORT)
    _launch(ec2, IamInstanceProfile={"Name": "p"})


# -- 6. security group dependents ---------------------------------------------------------------
def test_security_group_in_use_or_just_released_cannot_be_deleted(ec2, moto_server):
    strict.set_strict(moto_server.endpoint, eni_linger=SHORT)
    sg = ec2.create_security_group(GroupName="g", Description="d")["GroupId"]
    iid = _launch(ec2, SecurityGroupIds=[sg])["InstanceId"]
    dependent = ("DependencyViolation", f"resource {sg} has a dependent object", 400)
    with pytest.raises(ClientError) as exc:           # moto itself deletes it under the instance
        ec2.delete_security_group(GroupId=sg)
    assert _error(exc) == dependent
    ec2.terminate_instances(InstanceIds=[iid])
    with pytest.raises(ClientError) as exc:           # terminated, its interface not yet gone
        ec2.delete_security_group(GroupId=sg)
    assert _error(exc) == dependent
    _wait_past(SHORT)
    ec2.delete_security_group(GroupId=sg)


def test_security_group_of_a_standalone_interface_cannot_be_deleted(ec2):
    vpc = ec2.create_vpc(CidrBlock="10.7.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.7.1.0/24")["Subnet"]["SubnetId"]
    sg = ec2.create_security_group(GroupName="g", Description="d", VpcId=vpc)["GroupId"]
    eni = ec2.create_network_interface(SubnetId=subnet, Groups=[sg])["NetworkInterface"]
    with pytest.raises(ClientError) as exc:
        ec2.delete_security_group(GroupId=sg)
    assert _error(exc)[0] == "DependencyViolation"
    ec2.delete_network_interface(NetworkInterfaceId=eni["NetworkInterfaceId"])
    ec2.delete_security_group(GroupId=sg)


# -- 7. the account's IMDSv2 policy -------------------------------------------------------------
def test_imdsv2_policy_denies_launches_without_required_tokens(ec2, moto_server):
    _launch(ec2)                                      # no such policy unless a test says so
    state = strict.set_strict(moto_server.endpoint, require_imdsv2=True)
    assert state["require_imdsv2"] is True
    for kwargs in ({}, {"MetadataOptions": {"HttpTokens": "optional"}}, {"DryRun": True}):
        with pytest.raises(ClientError) as exc:       # a dry run is denied, not DryRunOperation
            _launch(ec2, **kwargs)
        code, message, status = _error(exc)
        assert (code, status) == ("UnauthorizedOperation", 403)
        assert message.startswith("You are not authorized to perform this operation. "
                                  "Encoded authorization failure message: ")
    with pytest.raises(ClientError) as exc:
        _launch(ec2, DryRun=True, MetadataOptions={"HttpTokens": "required"})
    assert _error(exc)[0] == "DryRunOperation"
    iid = _launch(ec2, MetadataOptions={"HttpTokens": "required"})["InstanceId"]
    assert _describe(ec2, iid)["MetadataOptions"]["HttpTokens"] == "required"
    moto_server.reset()                               # each test starts without the policy
    assert strict.strict_state(moto_server.endpoint)["require_imdsv2"] is False
    _launch(ec2)


# -- 7b. permissions a launch needs besides ec2:RunInstances -------------------------------------
def test_denied_create_tags_or_pass_role_refuse_launches_that_need_them(ec2, iam, moto_server):
    iam.create_role(RoleName="r", AssumeRolePolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                "Principal": {"Service": "ec2.amazonaws.com"}}]}))
    iam.create_instance_profile(InstanceProfileName="p")
    iam.add_role_to_instance_profile(InstanceProfileName="p", RoleName="r")
    tagged = {"TagSpecifications": [{"ResourceType": "instance",
                                     "Tags": [{"Key": "k", "Value": "v"}]}]}
    profiled = {"IamInstanceProfile": {"Name": "p"}}
    _wait_past(strict.DEFAULTS["profile_delay"])
    _launch(ec2, **tagged, **profiled)                # no such policy unless a test says so
    strict.set_strict(moto_server.endpoint, denied_actions=["ec2:CreateTags"])
    for kwargs in (tagged, {**tagged, "DryRun": True}):   # the dry run is denied too
        with pytest.raises(ClientError) as exc:
            _launch(ec2, **kwargs)
        code, message, status = _error(exc)
        assert (code, status) == ("UnauthorizedOperation", 403)
        encoded = message.rsplit(": ", 1)[1]
        decoded = json.loads(base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)))
        assert decoded["context"]["action"] == "ec2:CreateTags"
    _launch(ec2, **profiled)                          # untagged: nothing to tag
    strict.set_strict(moto_server.endpoint, denied_actions=["iam:PassRole"])
    with pytest.raises(ClientError) as exc:
        _launch(ec2, DryRun=True, **profiled)
    assert _error(exc)[0] == "UnauthorizedOperation"
    with pytest.raises(ClientError) as exc:
        _launch(ec2, DryRun=True, **tagged)
    assert _error(exc)[0] == "DryRunOperation"
    status, _ = _post(moto_server.endpoint, {"denied_actions": ["ec2:RunInstances"]})
    assert status == 400
    moto_server.reset()
    assert strict.strict_state(moto_server.endpoint)["denied_actions"] == []


# -- 8. public addresses ------------------------------------------------------------------------
def test_public_ip_only_where_the_subnet_or_the_request_maps_one(ec2):
    def public(inst: dict) -> tuple:
        desc = _describe(ec2, inst["InstanceId"])
        return (inst.get("PublicIpAddress"), desc.get("PublicIpAddress"),
                desc.get("PublicDnsName") or None,
                desc["NetworkInterfaces"][0].get("Association", {}).get("PublicIp"))

    nothing = (None, None, None, None)
    vpc = ec2.create_vpc(CidrBlock="10.8.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.8.1.0/24")["Subnet"]
    assert subnet["MapPublicIpOnLaunch"] is False
    sg = ec2.create_security_group(GroupName="g", Description="d", VpcId=vpc)["GroupId"]
    assert public(_launch(ec2, SubnetId=subnet["SubnetId"], SecurityGroupIds=[sg])) == nothing
    inst = _launch(ec2, NetworkInterfaces=[{"DeviceIndex": 0, "SubnetId": subnet["SubnetId"],
                                            "Groups": [sg], "AssociatePublicIpAddress": True}])
    assert all(public(inst))

    default = ec2.describe_subnets(Filters=[{"Name": "default-for-az", "Values": ["true"]}])["Subnets"]
    assert all(public(_launch(ec2)))                  # a default subnet maps public IPs
    inst = _launch(ec2, NetworkInterfaces=[{"DeviceIndex": 0, "SubnetId": default[0]["SubnetId"],
                                            "AssociatePublicIpAddress": False}])
    assert public(inst) == nothing
    for sub in default:                               # ... until told not to; moto ignores that
        ec2.modify_subnet_attribute(SubnetId=sub["SubnetId"], MapPublicIpOnLaunch={"Value": False})
    inst = _launch(ec2)
    assert public(inst) == nothing
    ec2.stop_instances(InstanceIds=[inst["InstanceId"]])
    ec2.start_instances(InstanceIds=[inst["InstanceId"]])
    assert public(inst)[1:] == nothing[1:]            # nor after a stop / start


# -- the layer itself ---------------------------------------------------------------------------
def test_bypass_header_does_not_exempt_writes(aws_env, moto_server):
    ec2 = boto_client("ec2", moto_server.endpoint, bypass_faults=True, **ONE_TRY)
    assert strict.BYPASS_HEADER == faults.BYPASS_HEADER
    with pytest.raises(ClientError) as exc:
        _launch(ec2, UserData="x" * 20000)
    assert _error(exc)[0] == "InvalidParameterValue"
    sg = ec2.create_security_group(GroupName="g", Description="d")["GroupId"]
    _launch(ec2, SecurityGroupIds=[sg])
    with pytest.raises(ClientError) as exc:
        ec2.delete_security_group(GroupId=sg)
    assert _error(exc)[0] == "DependencyViolation"
    assert strict.strict_state(moto_server.endpoint)["enforced"] == {
        "userdata-size": 1, "sg-dependency": 1}


def _post(endpoint: str, payload) -> tuple[int, dict]:
    req = urllib.request.Request(endpoint + strict.CONTROL_PATH, data=json.dumps(payload).encode(),
                                 method="POST", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_strict_layer_is_served_without_faults_and_cannot_be_switched_off(tmp_path: Path):
    # the app faults.py serves has the layer with and without the injector in front of it
    # (the change counter sits in front of both: it only counts, see the test below)
    assert type(faults.build_app(faults=False).app).__name__ == "StrictCloud"
    assert type(faults.build_app(faults=True).app.app).__name__ == "StrictCloud"
    server = MotoServer(faults=False, workdir=tmp_path,
                        amis_file=write_amis_file(tmp_path / "amis.json")).start()
    try:
        assert "--no-faults" in server.command()
        for attempt in ({"enabled": False}, {"rules": []}, {"userdata-size": False},
                        {"profile_delay": 0}, {"eni_linger": -1}, {"require_imdsv2": "no"}, []):
            status, reply = _post(server.endpoint, attempt)
            assert status == 400 and reply["error"], attempt
        req = urllib.request.Request(server.endpoint + strict.CONTROL_PATH, method="DELETE")
        with urllib.request.urlopen(req, timeout=10) as resp:   # DELETE only restores defaults
            assert json.loads(resp.read())["rules"] == list(strict.RULES)
        ec2 = boto_client("ec2", server.endpoint, **ONE_TRY)
        with pytest.raises(ClientError) as exc:
            _launch(ec2, UserData="x" * 20000)
        assert _error(exc) == ("InvalidParameterValue", "User data is limited to 16384 bytes", 400)
        assert strict.strict_state(server.endpoint) == {
            **strict.DEFAULTS, "rules": list(strict.RULES), "enforced": {"userdata-size": 1}}
    finally:
        server.stop()


def _changes(endpoint: str) -> int:
    with urllib.request.urlopen(endpoint + faults.CHANGES_PATH, timeout=10) as resp:
        return json.loads(resp.read())["changes"]


def test_the_change_count_moves_with_state_changing_requests_only(aws_env, moto_server):
    # the instance simulator re-reads moto's instances only when this count moved: a change it
    # missed would leave a launched instance unbooted, a read counted as a change costs only time
    ec2 = boto_client("ec2", moto_server.endpoint, **ONE_TRY)
    start = _changes(moto_server.endpoint)
    ec2.describe_instances()
    ec2.describe_security_groups()
    assert _changes(moto_server.endpoint) == start
    iid = _launch(ec2)["InstanceId"]
    assert _changes(moto_server.endpoint) == start + 1
    # counted once done: whoever sees the new count sees the instance stopped
    ec2.stop_instances(InstanceIds=[iid])
    assert _changes(moto_server.endpoint) == start + 2
    assert _describe(ec2, iid)["State"]["Name"] == "stopped"
    ec2.terminate_instances(InstanceIds=[iid])
    assert _changes(moto_server.endpoint) == start + 3


def test_settings_take_only_allowed_values_and_a_reset_restores_them(aws_env, moto_server):
    state = strict.set_strict(moto_server.endpoint, profile_delay=3, eni_linger=SHORT)
    assert (state["profile_delay"], state["eni_linger"]) == (3.0, SHORT)
    status, _ = _post(moto_server.endpoint, {"profile_delay": 1000})
    assert status == 400
    assert strict.strict_state(moto_server.endpoint)["profile_delay"] == 3.0   # unchanged
    moto_server.reset()
    state = strict.strict_state(moto_server.endpoint)
    assert {k: state[k] for k in strict.DEFAULTS} == strict.DEFAULTS
