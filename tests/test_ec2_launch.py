"""Issue 12: what EC2 itself refuses or bills at launch, against the strict test cloud.

Most tests drive the EC2 provider and the pre-launch checks in this process against the moto
server (``aws_env``: no instance boots); the one that needs nodes runs a workflow end to end.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path

import pytest

from swiftrun.checks.base import FAIL, OK
from swiftrun.checks.cloud import check_dry_run
from swiftrun.cloud.base import HEADNODE, WORKER, LaunchSpec
from swiftrun.cloud.ec2 import EC2Provider
from swiftrun.errors import CloudError
from swiftrun.node.userdata import render_userdata
from swiftrun.project.load import load_project
from tests.support import strict
from tests.support.cli import cluster_instances, swiftrun, toml_project
from tests.support.cloud import BAKED_AMI_ID, DEFAULT_REGION, boto_client

CALLER = "198.51.100.7/32"


def project(tmp_path: Path, *ec2: str, extra: str = "", name: str = "lt", workers: int = 1,
            image: str = BAKED_AMI_ID):
    proj = tmp_path / name
    proj.mkdir(parents=True, exist_ok=True)
    (proj / "swiftrun.toml").write_text("\n".join([
        "[cluster]", f'name = "{name}"', f"workers = {workers}", "",
        "[ec2]", f'region = "{DEFAULT_REGION}"', f'ssh_cidr = "{CALLER}"', f'image = "{image}"',
        *ec2, "", extra, ""]))
    return load_project(proj / "swiftrun.toml")


def ec2_client(moto_server):
    return boto_client("ec2", moto_server.endpoint, retries={"total_max_attempts": 1})


def private_subnet(ec2) -> tuple[str, str]:
    """A VPC subnet as CreateSubnet makes it: MapPublicIpOnLaunch off. (vpc id, subnet id)"""
    vpc = ec2.create_vpc(CidrBlock="10.8.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.8.1.0/24")["Subnet"]
    assert subnet["MapPublicIpOnLaunch"] is False
    return vpc, subnet["SubnetId"]


def spec_for(p, role: str, cluster: str = "lt", headnode_ip: str | None = None) -> LaunchSpec:
    itype = p.ec2.headnode_type if role == HEADNODE else p.ec2.worker_type
    return LaunchSpec(role=role, count=1, instance_type=itype, image=p.ec2.image,
                      shape=p.shape_hash(role), spot=p.ec2.spot and role == WORKER,
                      userdata=render_userdata(p, role, cluster=cluster, headnode_ip=headnode_ip))


def describe(ec2, iid: str) -> dict:
    return ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]


# -- #3: a subnet that maps no public IP ----------------------------------------------------------
def test_launch_in_a_private_subnet_asks_for_a_public_ip(aws_env, moto_server, tmp_path):
    ec2 = ec2_client(moto_server)
    vpc, subnet = private_subnet(ec2)
    p = project(tmp_path, f'subnet_id = "{subnet}"')
    prov = EC2Provider(p)
    prov.prepare("lt")
    node = prov.launch("lt", spec_for(p, HEADNODE))[0]
    desc = describe(ec2, node.id)
    assert node.public_ip and desc.get("PublicIpAddress") == node.public_ip
    assert desc["SubnetId"] == subnet and desc["VpcId"] == vpc
    groups = {g["GroupId"] for nic in desc["NetworkInterfaces"] for g in nic["Groups"]}
    # the headnode is in the cluster group and the door group (port 22 from ssh_cidr)
    assert groups == set(prov.launch_groups("lt", HEADNODE)) and len(groups) == 2


def test_a_headnode_without_public_ip_is_named_at_once(aws_env, moto_server, tmp_path):
    """A headnode that has only a private address (launched by an older swiftrun into such a
    subnet) is said to be unreachable at once, not after SWIFTRUN_SSH_TIMEOUT of port 22."""
    ec2 = ec2_client(moto_server)
    _, subnet = private_subnet(ec2)
    p = project(tmp_path, f'subnet_id = "{subnet}"', workers=0)
    prov = EC2Provider(p)
    prov.prepare("lt")
    kwargs = prov.launch_params("lt", spec_for(p, HEADNODE))
    kwargs.pop("NetworkInterfaces", None)       # as launched before: no public IP asked for
    kwargs.update(SubnetId=subnet, SecurityGroupIds=[prov.security_group("lt")])
    iid = ec2.run_instances(**kwargs)["Instances"][0]["InstanceId"]
    assert "PublicIpAddress" not in describe(ec2, iid)
    started = time.monotonic()
    res = swiftrun("up", cwd=p.root, check=False, env={"SWIFTRUN_SSH_TIMEOUT": "300"}, timeout=120)
    assert time.monotonic() - started < 60
    assert res.returncode == 1, res.stderr
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("swiftrun: error")]
    assert len(errors) == 1 and f"headnode {iid} has no public IP address" in errors[0], res.stderr
    assert "port 22" not in res.stderr
    res = swiftrun("doctor", "--json", cwd=p.root, check=False, timeout=120,
                   env={"SWIFTRUN_SSH_TIMEOUT": "300", "SWIFTRUN_DOCTOR_HEADNODE_ADDR": "127.0.0.1:9"})
    checks = {c["name"]: c for c in __import__("json").loads(res.stdout)["checks"]}
    ssh = checks[f"headnode {iid}: ssh"]
    assert ssh["status"] == FAIL and "no public IP address" in ssh["detail"]
    assert "swiftrun down" in ssh["fix"]


def test_run_in_a_subnet_without_public_ips_works(cloud, tmp_path):
    from tests.test_e2e_run import copy_example

    _, subnet = private_subnet(cloud.ec2)
    strict.set_strict(cloud.endpoint, require_imdsv2=True)     # and an account requiring IMDSv2
    proj = copy_example("p4", tmp_path / "p4", cloud, name="sub", workers=1,
                        image=cloud.baked_ami)
    toml = proj / "swiftrun.toml"
    toml.write_text(toml.read_text().replace("[ec2]\n", f'[ec2]\nsubnet_id = "{subnet}"\n', 1))
    doc = __import__("json").loads(swiftrun("p4.swift", "--json", "--keep-cluster", cwd=proj).stdout)
    assert doc["exit_code"] == 0
    numbers = [int(x) for x in (proj / "unsorted.txt").read_text().split()]
    assert [int(x) for x in (proj / "sorted.txt").read_text().split()] == sorted(numbers)
    insts = cluster_instances(cloud, "sub")
    assert len(insts) == 2 and all(i["SubnetId"] == subnet for i in insts)
    head = next(i for i in insts if any(t["Value"] == "headnode" for t in i["Tags"]))
    assert head.get("PublicIpAddress")
    assert all(i["MetadataOptions"]["HttpTokens"] == "required" for i in insts)
    swiftrun("down", cwd=proj)


# -- #6: the dry run sends what the launch sends --------------------------------------------------
def test_dry_run_sends_the_launch_s_own_parameters(aws_env, moto_server, tmp_path):
    import boto3

    from swiftrun.cloud.launch import DRY_RUN_HEADNODE_IP

    boto3.client("s3", region_name=DEFAULT_REGION).create_bucket(
        Bucket="lt-bucket", CreateBucketConfiguration={"LocationConstraint": DEFAULT_REGION})
    p = project(tmp_path, 'worker_type = "c5.large"', extra='[s3fs]\nbucket = "lt-bucket"\n')
    prov = EC2Provider(p)
    prov.prepare("lt")
    sent: list[dict] = []
    prov.ec2.meta.events.register("provide-client-params.ec2.RunInstances",
                                  lambda params, **_: sent.append(copy.deepcopy(params)))
    checks = check_dry_run(p, prov)
    assert [c.status for c in checks] == [OK, OK], checks
    assert len(sent) == 2 and all(s["DryRun"] is True for s in sent)
    for dry, role, ip in ((sent[0], HEADNODE, None), (sent[1], WORKER, DRY_RUN_HEADNODE_IP)):
        launch = prov.launch_params("lt", spec_for(p, role, headnode_ip=ip))
        assert {k: v for k, v in dry.items() if k != "DryRun"} == launch
        assert dry["KeyName"] == p.key_name
        assert dry["SecurityGroupIds"] == prov.launch_groups("lt", role)
        assert dry["IamInstanceProfile"]["Arn"].endswith("/swiftrun-lt-s3fs")    # iam:PassRole
        tags = {t["Key"]: t["Value"] for t in dry["TagSpecifications"][0]["Tags"]}
        assert tags["swiftrun:cluster"] == "lt" and tags["swiftrun:role"] == role  # ec2:CreateTags
        assert dry["UserData"] and dry["MetadataOptions"]["HttpTokens"] == "required"


def test_an_account_requiring_imdsv2_takes_the_dry_run_and_the_launch(aws_env, moto_server, tmp_path):
    strict.set_strict(moto_server.endpoint, require_imdsv2=True)
    p = project(tmp_path)
    prov = EC2Provider(p)
    checks = check_dry_run(p, prov)      # before prepare: no key pair nor group yet
    assert len(checks) == 2 and all(c.status == OK for c in checks), checks
    prov.prepare("lt")
    node = prov.launch("lt", spec_for(p, HEADNODE))[0]
    options = describe(ec2_client(moto_server), node.id)["MetadataOptions"]
    assert (options["HttpTokens"], options["HttpEndpoint"]) == ("required", "enabled")


@pytest.mark.parametrize("action", ["ec2:CreateTags", "iam:PassRole"])
def test_dry_run_is_refused_what_the_launch_would_be_refused(aws_env, moto_server, tmp_path, action):
    import boto3

    boto3.client("s3", region_name=DEFAULT_REGION).create_bucket(
        Bucket="lt-bucket", CreateBucketConfiguration={"LocationConstraint": DEFAULT_REGION})
    p = project(tmp_path, extra='[s3fs]\nbucket = "lt-bucket"\n')
    prov = EC2Provider(p)
    prov.prepare("lt")
    strict.set_strict(moto_server.endpoint, denied_actions=[action])
    checks = check_dry_run(p, prov)
    assert checks and all(c.status == FAIL and "UnauthorizedOperation" in c.detail
                          and "Encoded authorization failure message" in c.detail for c in checks)
    assert all("decode-authorization-message" in c.fix for c in checks)


DENIED = ("You are not authorized to perform this operation. Encoded authorization failure "
          "message: Zm9yYmlkZGVuLWJ5LXBvbGljeQ")


def test_unauthorized_launch_keeps_aws_s_words_and_the_decode_hint(aws_env, moto_server, tmp_path):
    moto_server.set_faults({"RunInstances": {"error": "UnauthorizedOperation", "status": 403,
                                             "message": DENIED}})
    p = project(tmp_path)
    prov = EC2Provider(p)
    check = check_dry_run(p, prov)[0]
    assert check.status == FAIL and DENIED in check.detail
    assert "aws sts decode-authorization-message" in check.fix
    prov.prepare("lt")
    with pytest.raises(CloudError) as exc:
        prov.launch("lt", spec_for(p, HEADNODE))
    assert DENIED in exc.value.message and "decode-authorization-message" in exc.value.hint


# -- #7: root volume, architecture ----------------------------------------------------------------
AMAZON_LINUX_AMI = "ami-04681a1dbd79675a5"     # moto's amzn2 image: root /dev/xvda, 15 GiB snapshot


def test_volume_size_resizes_the_image_s_own_root_device(aws_env, moto_server, tmp_path):
    ec2 = ec2_client(moto_server)
    image = ec2.describe_images(ImageIds=[AMAZON_LINUX_AMI])["Images"][0]
    assert image["RootDeviceName"] == "/dev/xvda"
    p = project(tmp_path, "volume_size_gb = 20", image=AMAZON_LINUX_AMI)
    prov = EC2Provider(p)
    prov.prepare("lt")
    node = prov.launch("lt", spec_for(p, HEADNODE))[0]
    # one volume, the root: not the root as the image made it plus a blank /dev/sda1
    assert [m["DeviceName"] for m in describe(ec2, node.id)["BlockDeviceMappings"]] == ["/dev/xvda"]
    (volume,) = ec2.describe_volumes(Filters=[{"Name": "attachment.instance-id",
                                               "Values": [node.id]}])["Volumes"]
    assert volume["Size"] == 20


def test_volume_below_the_image_s_snapshot_is_refused_before_launch(aws_env, moto_server, tmp_path):
    p = project(tmp_path, "volume_size_gb = 10", workers=0)
    res = swiftrun("up", cwd=p.root, check=False, timeout=120)
    assert res.returncode == 2, res.stderr
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("swiftrun: error")]
    assert len(errors) == 1, res.stderr
    assert "volume_size_gb = 10" in errors[0] and "volume_size_gb = 15 or more" in errors[0]
    ec2 = ec2_client(moto_server)
    assert ec2.describe_instances(Filters=[{"Name": "tag:swiftrun:cluster",
                                            "Values": ["lt"]}])["Reservations"] == []


def test_a1_types_are_arm64(aws_env, tmp_path):
    from tests.support.cloud import UBUNTU_AMI_ID, UBUNTU_ARM_AMI_ID

    p = project(tmp_path, 'headnode_type = "a1.large"', 'worker_type = "c5.large"', image="auto")
    prov = EC2Provider(p)
    assert prov.resolve_image(HEADNODE) == UBUNTU_ARM_AMI_ID
    assert prov.resolve_image(WORKER) == UBUNTU_AMI_ID


@pytest.mark.parametrize("region, partition", [("cn-north-1", "aws-cn"),
                                               ("us-gov-west-1", "aws-us-gov"),
                                               (DEFAULT_REGION, "aws")])
def test_s3fs_policy_names_the_bucket_in_the_region_s_partition(aws_env, region, partition):
    import boto3

    from swiftrun.cloud.iam import POLICY_NAME, ensure_s3fs_profile, profile_name

    session = boto3.Session(region_name=region)
    session.client("s3").create_bucket(Bucket="lt-bucket",
                                       CreateBucketConfiguration={"LocationConstraint": region})
    ensure_s3fs_profile(session, "lt", "lt-bucket")
    doc = session.client("iam").get_role_policy(RoleName=profile_name("lt"),
                                                PolicyName=POLICY_NAME)["PolicyDocument"]
    resources = {st["Resource"] for st in doc["Statement"]}
    assert resources == {f"arn:{partition}:s3:::lt-bucket", f"arn:{partition}:s3:::lt-bucket/*"}


# -- #7: one more /32 for every new address of this machine -----------------------------------------
def test_only_a_few_ssh_rules_of_swiftrun_are_kept_for_a_moving_caller(aws_env, moto_server, tmp_path):
    import dataclasses

    from swiftrun.cloud.sgrules import KEEP_CALLER_RULES

    ec2 = ec2_client(moto_server)
    p = project(tmp_path)
    first = EC2Provider(p)
    first.security_group("lt")
    sg = first._door_id           # this machine's port 22 is in the door group (headnode only)
    by_hand = {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22,
               "IpRanges": [{"CidrIp": "192.0.2.10/32", "Description": "office"}]}
    ec2.authorize_security_group_ingress(GroupId=sg, IpPermissions=[by_hand])
    addresses = [f"203.0.113.{n}/32" for n in range(1, 8)]
    for cidr in addresses:
        time.sleep(0.01)                              # stamped to the millisecond
        moved = dataclasses.replace(p, ec2=dataclasses.replace(p.ec2, ssh_cidr=cidr))
        EC2Provider(moved).security_group("lt")
    (group,) = ec2.describe_security_groups(GroupIds=[sg])["SecurityGroups"]
    ssh = {r["CidrIp"]: r.get("Description", "") for perm in group["IpPermissions"]
           if perm.get("FromPort") == 22 for r in perm.get("IpRanges", [])}
    # the newest addresses, and the rule swiftrun did not make; the first address's went first
    assert set(ssh) == {"192.0.2.10/32", *addresses[-KEEP_CALLER_RULES:]}
    assert ssh["192.0.2.10/32"] == "office"
    assert 1 < KEEP_CALLER_RULES <= 5
