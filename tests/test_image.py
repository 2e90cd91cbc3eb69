"""`swiftrun image build` against the test cloud: an AMI from a scrubbed, ready node."""

from __future__ import annotations

import json

from tests.support.cli import cluster_groups, cluster_instances, swiftrun, toml_project
from tests.support.schemas import validate


def test_image_build_makes_a_tagged_ami_from_a_scrubbed_node_and_cleans_up(cloud, tmp_path):
    import boto3

    boto3.Session(region_name=cloud.region).client("s3").create_bucket(
        Bucket="swiftrun-bake-bucket", CreateBucketConfiguration={"LocationConstraint": cloud.region})
    toml_project(tmp_path, cloud, name="bakery", workers=2,
                 extra='[s3fs]\nbucket = "swiftrun-bake-bucket"\n')
    res = swiftrun("image", "build", "--name", "swiftrun-test-image", "--json", cwd=tmp_path)
    doc = json.loads(res.stdout)
    validate("image build", doc)   # docs/schemas/image-build.schema.json
    image = cloud.ec2.describe_images(ImageIds=[doc["image_id"]])["Images"][0]
    tags = {t["Key"]: t["Value"] for t in image.get("Tags", [])}
    assert image["Name"] == "swiftrun-test-image"
    assert tags["swiftrun:cluster"] == "bakery-image" and tags["swiftrun:image-of"] == "bakery"
    # The bake instance (headnode only, no workers) is gone, and so is its security group.
    baked = cluster_instances(cloud, "bakery-image", states=("pending", "running", "stopped",
                                                             "shutting-down", "terminated"))
    assert len(baked) == 1 and baked[0]["State"]["Name"] == "terminated"
    assert cluster_groups(cloud, "bakery-image") == []
    # It was scrubbed: no readiness marker, no units, no node identity left to copy.
    root = cloud.sim.root(baked[0]["InstanceId"])
    assert not (root / "var/lib/swiftrun").exists()
    assert not list((root / "etc/systemd/system").glob("swiftrun-*"))
    assert not (cloud.sim.home(baked[0]["InstanceId"]) / ".ssh" / "authorized_keys").exists()
    # The bake mounted the project's bucket (fstab said so), and the image keeps none of it:
    # only the image's own root line is left (a later project's bucket is not "already mounted")
    assert "s3fs" in (root / "var/log/standins.log").read_text()
    assert [line.split()[:2] for line in (root / "etc/fstab").read_text().splitlines()] == [
        ["LABEL=cloudimg-rootfs", "/"]]
    # The node really booted the project's userdata before the scrub (the boot log says so).
    assert "node ready" in cloud.sim.console(baked[0]["InstanceId"])
    assert cluster_instances(cloud, "bakery") == []


def test_image_build_never_bakes_on_a_cluster_that_already_exists(cloud, tmp_path):
    """The bake scrubs its node and ends with `down`; a cluster that carries the bake's name
    (a user's own `x-image`, or a leftover bake) is refused, untouched. A 40-character project
    name no longer turns into itself when `-image` is cut off."""
    long_name = "a" * 40
    toml_project(tmp_path, cloud, name=long_name, workers=0)
    bake = "a" * 34 + "-image"
    other = cloud.ec2.run_instances(
        ImageId=cloud.ami_id, MinCount=1, MaxCount=1, InstanceType="t3.micro",
        TagSpecifications=[{"ResourceType": "instance", "Tags": [
            {"Key": "swiftrun:cluster", "Value": bake}, {"Key": "swiftrun:role", "Value": "headnode"}]}],
    )["Instances"][0]["InstanceId"]
    res = swiftrun("image", "build", cwd=tmp_path, check=False)
    assert res.returncode == 2, res.stderr
    assert f"cluster '{bake}' already has 1 instance(s) ({other})" in res.stderr
    assert f"swiftrun down --cluster {bake}" in res.stderr and "Traceback" not in res.stderr
    assert [i["InstanceId"] for i in cluster_instances(cloud, bake)] == [other]
    assert cluster_instances(cloud, long_name) == []      # nothing launched for the bake
