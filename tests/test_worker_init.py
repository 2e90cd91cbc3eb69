"""Issue 12 #8: a worker init script of any size. One too big for the workers' userdata (EC2's
16 KB; swiftrun keeps half free) is put on the headnode by `up` and fetched from its agent by
each worker, checked against the SHA-256 its userdata carries. `plan --json` of a project with
s3fs, spot workers, an install URL and such a script reports userdata under 8 KB per node."""

from __future__ import annotations

import base64
import json
import os

from tests.support.cli import cluster_instances, swiftrun, toml_project


def big_init_script(path):
    # 12 KB that gzip cannot shrink: it would take the worker's userdata past 8 KB
    noise = base64.b64encode(os.urandom(9000)).decode()
    path.write_text("#!/bin/bash\nset -e\n"
                    + "".join(f"# {noise[i:i + 76]}\n" for i in range(0, len(noise), 76))
                    + 'mkdir -p "${SWIFTRUN_NODE_ROOT:-}/var/tmp"\n'
                    + 'echo "init ran on $(hostname)" > "${SWIFTRUN_NODE_ROOT:-}/var/tmp/init-ran"\n')
    return path


def test_plan_keeps_every_node_under_8_kb_with_a_big_init_script(aws_env, tmp_path):
    big_init_script(tmp_path / "init.sh")
    (tmp_path / "swiftrun.toml").write_text(
        '[cluster]\nname = "p5"\nworkers = 2\n'
        '[ec2]\nregion = "us-west-2"\nspot = true\nworker_init_script = "init.sh"\n'
        '[swift]\ninstall_url = "https://example.org/swift-0.96.2.tar.gz"\n'
        f'install_sha256 = "{"0" * 64}"\n'
        '[s3fs]\nbucket = "my-bucket"\n')
    (tmp_path / "p.swift").write_text("trace(1);\n")
    doc = json.loads(swiftrun("plan", "p.swift", "--json", cwd=tmp_path).stdout)
    assert set(doc["userdata_bytes"]) == {"headnode", "worker"}
    assert all(size < 8192 for size in doc["userdata_bytes"].values()), doc["userdata_bytes"]


def test_a_worker_fetches_a_big_init_script_from_the_headnode(cloud, tmp_path):
    proj = tmp_path / "bigi"
    path = toml_project(proj, cloud, name="bigi", workers=1, image=cloud.baked_ami)
    big_init_script(proj / "init.sh")
    path.write_text(path.read_text().replace("[ec2]\n", '[ec2]\nworker_init_script = "init.sh"\n', 1))
    swiftrun("up", cwd=proj, timeout=300)
    worker = next(i for i in cluster_instances(cloud, "bigi")
                  if {"Key": "swiftrun:role", "Value": "worker"} in i["Tags"])
    iid = worker["InstanceId"]
    assert "init ran on" in (cloud.sim.root(iid) / "var/tmp/init-ran").read_text()
    # it did not travel in the worker's userdata
    userdata = (cloud.sim.root(iid).parent / "userdata").read_text()   # as the simulator ran it
    assert "init ran on" not in userdata and "WORKER_INIT_SHA256=" in userdata
    # a second up finds it on the headnode already and changes nothing
    swiftrun("up", cwd=proj, timeout=300)
    swiftrun("down", cwd=proj)
