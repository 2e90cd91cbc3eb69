"""Issue 2 end to end: the installed `swiftrun` against moto + a real sshd per instance."""

from __future__ import annotations

import json
import os
import stat

from tests.support.cli import cluster_groups, cluster_instances, swiftrun, toml_project


def tags(inst):
    return {t["Key"]: t["Value"] for t in inst.get("Tags", [])}


def test_lifecycle_up_reuse_scale_list_connect_down(cloud, tmp_path):
    proj = tmp_path / "proj"
    toml_project(proj, cloud, name="life", workers=3)
    # An instance nobody tagged: `down` must never touch it.
    stranger = cloud.ec2.run_instances(ImageId=cloud.ami_id, MinCount=1, MaxCount=1,
                                       InstanceType="t3.micro")["Instances"][0]["InstanceId"]

    # four nodes installing the real Swift at once on a loaded 2-core CI machine: the tests'
    # 90 s boot limit (the product's is 900 s) is too tight for this, the largest cold up
    up = swiftrun("up", "--json", cwd=proj, env={"SWIFTRUN_BOOT_TIMEOUT": "240"})
    doc = json.loads(up.stdout)
    assert len(doc["created"]) == 4 and not doc["reused"]
    insts = cluster_instances(cloud, "life")
    assert len(insts) == 4
    roles = sorted(tags(i)["swiftrun:role"] for i in insts)
    assert roles == ["headnode", "worker", "worker", "worker"]
    assert all(tags(i)["Name"].startswith("life-") for i in insts)
    assert len(cluster_groups(cloud, "life")) == 2    # the cluster group and the headnode's door
    # Workers were told the headnode's private IP at launch.
    head = next(i for i in insts if tags(i)["swiftrun:role"] == "headnode")
    worker = next(i for i in insts if tags(i)["swiftrun:role"] == "worker")
    ud = cloud.ec2.describe_instance_attribute(InstanceId=worker["InstanceId"], Attribute="userData")
    import base64
    import gzip   # EC2 gets the script gzip-compressed (cloud-init unpacks it)
    assert head["PrivateIpAddress"] in gzip.decompress(base64.b64decode(ud["UserData"]["Value"])).decode()
    # The key file is private.
    home = os.environ["SWIFTRUN_HOME"]
    key = os.path.join(home, "keys", "swiftrun-life.pem")
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600

    again = json.loads(swiftrun("up", "--json", cwd=proj).stdout)
    assert again["reused"] and again["created"] == []
    assert len(cluster_instances(cloud, "life")) == 4

    swiftrun("add", "2", cwd=proj)
    assert len(cluster_instances(cloud, "life")) == 6
    swiftrun("remove", "1", cwd=proj)
    assert len(cluster_instances(cloud, "life")) == 5

    listing = swiftrun("list", cwd=proj).stdout
    assert listing.count("worker") >= 4 and "headnode" in listing
    as_json = json.loads(swiftrun("list_resources", "--json", cwd=proj).stdout)
    assert len(as_json["nodes"]) == 5

    out = swiftrun("connect", "--", "echo", "hello-from", "$SWIFTRUN_NODE_ROOT", cwd=proj).stdout
    assert out.startswith("hello-from ") and str(tmp_path) in out
    printed = swiftrun("connect", "--print", cwd=proj).stdout
    assert "StrictHostKeyChecking=yes" in printed and "HostKeyAlias=i-" in printed

    # More than exist removes all, without error.
    swiftrun("stop_n_workers", "10", cwd=proj)
    assert [tags(i)["swiftrun:role"] for i in cluster_instances(cloud, "life")] == ["headnode"]

    swiftrun("dissolve", cwd=proj)
    assert cluster_instances(cloud, "life") == []
    assert cluster_groups(cloud, "life") == []
    survivor = cloud.ec2.describe_instances(InstanceIds=[stranger])["Reservations"][0]["Instances"][0]
    assert survivor["State"]["Name"] == "running"
    # A second down is fine.
    assert "nothing to take down" in swiftrun("down", cwd=proj).stderr


def test_s3fs_bucket_gets_a_scoped_instance_profile_removed_by_down(cloud, tmp_path):
    import boto3

    session = boto3.Session(region_name=cloud.region)
    s3 = session.client("s3")
    s3.create_bucket(Bucket="swiftrun-e2e-bucket",
                     CreateBucketConfiguration={"LocationConstraint": cloud.region})
    proj = tmp_path / "s3p"
    toml_project(proj, cloud, name="s3c", workers=1,
                 extra='[s3fs]\nbucket = "swiftrun-e2e-bucket"\n')
    swiftrun("up", cwd=proj)
    iam = session.client("iam")
    prof = iam.get_instance_profile(InstanceProfileName="swiftrun-s3c-s3fs")["InstanceProfile"]
    insts = cluster_instances(cloud, "s3c")
    assert len(insts) == 2
    assert all(i["IamInstanceProfile"]["Arn"] == prof["Arn"] for i in insts)
    policy = iam.get_role_policy(RoleName="swiftrun-s3c-s3fs", PolicyName="swiftrun-s3fs")
    resources = {r for st in policy["PolicyDocument"]["Statement"] for r in
                 ([st["Resource"]] if isinstance(st["Resource"], str) else st["Resource"])}
    assert resources == {"arn:aws:s3:::swiftrun-e2e-bucket", "arn:aws:s3:::swiftrun-e2e-bucket/*"}
    # Every node mounted it with the instance role (the s3fs stand-in records the call).
    for inst in insts:
        log = (cloud.sim.root(inst["InstanceId"]) / "var/log/standins.log").read_text()
        assert "s3fs" in log and "iam_role=auto" in log and "testing" not in log
    swiftrun("down", cwd=proj)
    assert iam.list_instance_profiles()["InstanceProfiles"] == []
    assert [r for r in iam.list_roles()["Roles"] if r["RoleName"] == "swiftrun-s3c-s3fs"] == []


def test_stop_headnode_then_up_starts_the_same_headnode(cloud, tmp_path):
    """`stop-headnode` parks the headnode (disk kept, not billed for compute); `up` starts that
    same instance again instead of launching a new one, even while it is still stopping."""
    proj = tmp_path / "proj"
    toml_project(proj, cloud, name="park", workers=1)
    first = json.loads(swiftrun("up", "--json", cwd=proj).stdout)
    head = next(n["id"] for n in first["nodes"] if n["role"] == "headnode")

    stopped = json.loads(swiftrun("stop-headnode", "--json", cwd=proj).stdout)
    assert stopped["stopped"] == head
    listed = json.loads(swiftrun("list", "--json", cwd=proj).stdout)
    state = {n["id"]: n["state"] for n in listed["nodes"]}
    assert state[head] in ("stopping", "stopped")
    # a second stop-headnode finds nothing to stop, and says so
    again = swiftrun("stop-headnode", cwd=proj)
    assert "no running headnode" in again.stdout + again.stderr

    up = json.loads(swiftrun("up", "--json", cwd=proj).stdout)
    assert head not in up["created"]
    assert next(n["id"] for n in up["nodes"] if n["role"] == "headnode") == head
    running = {i["InstanceId"] for i in cluster_instances(cloud, "park")}
    assert head in running
    res = swiftrun("connect", "--", "echo", "back-on", cwd=proj)
    assert "back-on" in res.stdout
    swiftrun("down", cwd=proj)
    assert cluster_instances(cloud, "park", states=("pending", "running", "stopping", "stopped")) == []


def test_a_group_with_swiftrun_s_name_but_not_its_tag_is_left_alone(cloud, tmp_path):
    """A security group called swiftrun-<cluster> that swiftrun did not make for this cluster:
    `up` refuses before launching and changes none of its rules; naming it in the project
    ([ec2] security_group) is how to use it on purpose."""
    proj = tmp_path / "proj"
    toml_project(proj, cloud, name="handmade", workers=1)
    sg = cloud.ec2.create_security_group(GroupName="swiftrun-handmade", Description="by hand")["GroupId"]
    res = swiftrun("up", cwd=proj, check=False)
    assert res.returncode != 0 and "Traceback" not in res.stderr
    assert "was not made by swiftrun for cluster 'handmade'" in res.stderr, res.stderr
    assert "[ec2] security_group" in res.stderr
    assert cluster_instances(cloud, "handmade") == []
    group = cloud.ec2.describe_security_groups(GroupIds=[sg])["SecurityGroups"][0]
    assert group["IpPermissions"] == []


def test_the_headnode_is_the_only_door(cloud, tmp_path):
    """`up` learns the workers' boot from the headnode (no connection to a worker), pins their
    host keys from their reports, and `connect worker0` goes through the headnode."""
    proj = tmp_path / "proj"
    toml_project(proj, cloud, name="door", workers=2)
    conns = tmp_path / "ssh-connections.log"
    up = json.loads(swiftrun("up", "--json", cwd=proj, env={"TESTCLOUD_PROXY_LOG": str(conns)}).stdout)
    head = next(n for n in up["nodes"] if n["role"] == "headnode")
    workers = sorted((n for n in up["nodes"] if n["role"] == "worker"), key=lambda n: n["id"])
    assert len(workers) == 2
    door = head["public_ip"] or head["private_ip"]
    opened = conns.read_text().split()
    assert set(opened) == {door} and len(opened) <= 2, opened
    # each worker's key was pinned from its report (StrictHostKeyChecking=yes below)
    res = swiftrun("connect", "worker0", "--", "hostname", cwd=proj,
                   env={"TESTCLOUD_PROXY_LOG": str(conns)})
    assert res.stdout.strip(), res.stderr
    assert set(conns.read_text().split()) == {door}          # through the headnode, no door of its own
    printed = swiftrun("connect", "worker0", "--print", cwd=proj).stdout
    assert "StrictHostKeyChecking=yes" in printed and any(
        f"HostKeyAlias={w['id']}" in printed for w in workers)
    assert any(w["private_ip"] in printed for w in workers)
    swiftrun("down", cwd=proj)
