"""The test cloud itself, proved with boto3 + real OpenSSH only (no swiftrun code)."""

from __future__ import annotations

import getpass
import gzip
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from tests.support.cloud import (
    CANONICAL_OWNER, PROXY, UBUNTU_AMI_ID, UBUNTU_AMI_NAME, boto_client,
)
from tests.support.sshd import keygen

USER = getpass.getuser()


# --- helpers --------------------------------------------------------------------------------------
def until(cond, timeout: float = 20.0, what: str = "condition"):
    """Wait for ``cond()`` to be truthy (a wait, not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.05)


def pid_alive(pid: int) -> bool:
    """Alive and not a zombie (pid 1 in a container may never reap orphans)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return False
    return stat[stat.rindex(b")") + 2:][:1] != b"Z"


def ssh(cloud, key: Path, host: str, command: str, tmp_path: Path, check: bool = True,
        env: dict | None = None):
    argv = ["ssh", "-F", "/dev/null", "-o", "BatchMode=yes",
            "-o", f"ProxyCommand={cloud.proxy_command}",
            "-o", f"UserKnownHostsFile={tmp_path / 'known_hosts'}",
            "-o", "StrictHostKeyChecking=accept-new", "-o", "ConnectTimeout=10",
            "-i", str(key), f"{USER}@{host}", command]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
                          check=check, env=env)


def instance(ec2, iid: str) -> dict:
    return ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]


@pytest.fixture
def key(tmp_path: Path) -> Path:
    return keygen(tmp_path / "keys" / "id_test")


SYSTEMCTL = """#!/bin/bash
# stand-in systemctl: "start" runs a long sleep as its own session and records its pid
echo "systemctl $*" >> "$SWIFTRUN_NODE_ROOT/systemctl.log"
mkdir -p "$SWIFTRUN_NODE_ROOT/run/standin-systemd"
setsid sleep 1000 </dev/null >/dev/null 2>&1 &
echo $! > "$SWIFTRUN_NODE_ROOT/run/standin-systemd/x.pid"
"""

USERDATA = """#!/bin/bash
set -e
echo "hello from $(pwd)" > "$SWIFTRUN_NODE_ROOT/hello"
systemctl start x.service
echo userdata done
"""


@pytest.fixture
def node_parts(tmp_path: Path):
    standins = tmp_path / "standins"
    standins.mkdir()
    (standins / "systemctl").write_text(SYSTEMCTL)
    (standins / "systemctl").chmod(0o755)
    swift_home = tmp_path / "swift-home"
    (swift_home / "bin").mkdir(parents=True)
    (swift_home / "bin" / "swift").write_text("#!/bin/sh\necho swift 0.96 stand-in\n")
    (swift_home / "bin" / "swift").chmod(0o755)
    return standins, swift_home


# --- tests --------------------------------------------------------------------------------------------
def test_instance_is_a_real_host(cloud_factory, node_parts, key, tmp_path):
    standins, swift_home = node_parts
    cloud = cloud_factory(swift_home_src=swift_home, standins_dirs=[standins])
    ec2 = cloud.ec2
    ec2.import_key_pair(KeyName="test-key",
                        PublicKeyMaterial=Path(str(key) + ".pub").read_bytes())
    iid = ec2.run_instances(ImageId=cloud.ami_id, InstanceType="t3.micro", MinCount=1, MaxCount=1,
                            KeyName="test-key", UserData=USERDATA)["Instances"][0]["InstanceId"]

    assert cloud.sim.wait_userdata(iid) == 0, cloud.sim.console(iid)
    root = cloud.sim.root(iid)
    assert (root / "hello").read_text() == f"hello from {root}\n"
    assert "userdata done" in cloud.sim.console(iid)
    assert (root / "systemctl.log").read_text() == "systemctl start x.service\n"
    sleep_pid = int((root / "run/standin-systemd/x.pid").read_text())
    assert pid_alive(sleep_pid)

    desc = instance(ec2, iid)
    public_ip, private_ip = desc["PublicIpAddress"], desc["PrivateIpAddress"]
    port = cloud.sim.sshd(iid).port
    assert (cloud.hosts_dir / public_ip).read_text().strip() == str(port)
    assert (cloud.hosts_dir / private_ip).read_text().strip() == str(port)

    out = ssh(cloud, key, public_ip,
              'echo "root=$SWIFTRUN_NODE_ROOT"; echo "home=$HOME"; pwd; command -v systemctl; swift',
              tmp_path).stdout.splitlines()
    home = cloud.sim.home(iid)
    assert out == [f"root={root}", f"home={home}", str(home), str(standins / "systemctl"),
                   "swift 0.96 stand-in"]
    # sftp starts in the sandbox home too (relative paths never land in the real home)
    sftp = subprocess.run(["sftp", "-F", "/dev/null", "-b", "-", "-o", "BatchMode=yes",
                           "-o", f"ProxyCommand={cloud.proxy_command}",
                           "-o", f"UserKnownHostsFile={tmp_path / 'known_hosts'}",
                           "-i", str(key), f"{USER}@{public_ip}"],
                          input=f"put {key}.pub uploaded.pub\n", capture_output=True, text=True,
                          timeout=60)
    assert sftp.returncode == 0, sftp.stderr
    assert (home / "uploaded.pub").read_bytes() == Path(f"{key}.pub").read_bytes()
    # the private address reaches the same host; a process started over SSH and detached
    # is one of the instance's processes too
    detached = ssh(cloud, key, private_ip,
                   "setsid sleep 999 </dev/null >/dev/null 2>&1 & echo $!", tmp_path)
    ssh_pid = int(detached.stdout.strip())
    assert pid_alive(ssh_pid)

    ec2.terminate_instances(InstanceIds=[iid])
    until(lambda: not (cloud.hosts_dir / public_ip).exists()
          and not (cloud.hosts_dir / private_ip).exists(), what="hosts entries removed")
    until(lambda: not cloud.sim.sshd(iid).running, what="sshd stopped")
    until(lambda: not pid_alive(sleep_pid), what="stand-in service killed")
    until(lambda: not pid_alive(ssh_pid), what="detached ssh process killed")
    gone = ssh(cloud, key, public_ip, "true", tmp_path, check=False,
               env={**os.environ, "TESTCLOUD_PROXY_WAIT": "0.2"})
    assert gone.returncode == 255
    assert f"proxy: no route to host {public_ip}" in gone.stderr


def test_untagged_instance_without_key_or_userdata_is_simulated(cloud):
    ec2 = cloud.ec2
    iid = ec2.run_instances(ImageId=cloud.ami_id, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    sshd = cloud.sim.wait_for(iid)
    assert sshd.running
    assert iid in cloud.sim.instances
    assert cloud.sim.userdata_exit(iid) == 0  # nothing to run
    desc = instance(ec2, iid)
    assert "Tags" not in desc or desc["Tags"] == []
    assert (cloud.hosts_dir / desc["PublicIpAddress"]).read_text().strip() == str(sshd.port)
    assert (cloud.sim.info(iid).dir / "authorized_keys").read_text() == ""


def test_gzipped_userdata_stop_and_start(cloud_factory, node_parts, key, tmp_path):
    standins, swift_home = node_parts
    cloud = cloud_factory(swift_home_src=swift_home, standins_dirs=[standins])
    ec2 = cloud.ec2
    ec2.import_key_pair(KeyName="k2", PublicKeyMaterial=Path(str(key) + ".pub").read_bytes())
    script = b"#!/bin/bash\necho zipped > \"$SWIFTRUN_NODE_ROOT/zipped\"\nexit 3\n"
    # boto3 base64-encodes UserData itself; gzip is what cloud-init also accepts
    iid = ec2.run_instances(ImageId=cloud.ami_id, MinCount=1, MaxCount=1, KeyName="k2",
                            UserData=gzip.compress(script))["Instances"][0]["InstanceId"]
    assert cloud.sim.wait_userdata(iid) == 3
    root = cloud.sim.root(iid)
    assert (root / "zipped").read_text() == "zipped\n"
    assert (root / "opt/swift/bin/swift").exists()  # the "image" has Swift baked in

    ec2.stop_instances(InstanceIds=[iid])
    until(lambda: not cloud.sim.sshd(iid).running, what="sshd stopped")
    ec2.start_instances(InstanceIds=[iid])
    cloud.sim.wait_for(iid)
    public_ip = until(lambda: instance(ec2, iid).get("PublicIpAddress"), what="public ip")
    assert ssh(cloud, key, public_ip, "cat $SWIFTRUN_NODE_ROOT/zipped", tmp_path).stdout == "zipped\n"
    assert cloud.sim.info(iid).boots == 2  # userdata ran once (per instance, like cloud-init)

    cloud.sim.restart_sshd(iid)
    assert ssh(cloud, key, public_ip, "echo again", tmp_path).stdout == "again\n"


def test_proxy_unknown_host_exits_1(tmp_path):
    hosts = tmp_path / "hosts"
    hosts.mkdir()
    res = subprocess.run([sys.executable, str(PROXY), str(hosts), "54.1.2.3", "22"],
                         capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=30,
                         env={**os.environ, "TESTCLOUD_PROXY_WAIT": "0.3"})
    assert res.returncode == 1
    assert res.stderr.strip() == "proxy: no route to host 54.1.2.3"
    assert res.stdout == ""


def test_proxy_pipes_bytes_both_ways(tmp_path):
    import socket
    import threading

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    hosts = tmp_path / "hosts"
    hosts.mkdir()
    (hosts / "10.0.0.7").write_text(f"{server.getsockname()[1]}\n")
    payload = bytes(range(256)) * 4096  # 1 MiB, every byte value

    def echo():
        conn, _ = server.accept()
        with conn:
            while data := conn.recv(65536):
                conn.sendall(data)

    t = threading.Thread(target=echo, daemon=True)
    t.start()
    try:
        res = subprocess.run([sys.executable, str(PROXY), str(hosts), "10.0.0.7", "22"],
                             input=payload, capture_output=True, timeout=60)
    finally:
        server.close()
    assert res.returncode == 0, res.stderr
    assert res.stdout == payload


def test_fault_wrapper_fails_chosen_operation_then_succeeds(moto_server, aws_env):
    ec2 = boto_client("ec2", aws_env["AWS_ENDPOINT_URL"])
    moto_server.set_faults({
        "RunInstances": {"error": "InsufficientInstanceCapacity", "status": 400, "times": 2},
        "DescribeInstances": {"error": "RequestLimitExceeded", "status": 503, "times": 1},
    })
    for _ in range(2):
        with pytest.raises(ClientError) as err:
            ec2.run_instances(ImageId=UBUNTU_AMI_ID, MinCount=1, MaxCount=1)
        assert err.value.response["Error"]["Code"] == "InsufficientInstanceCapacity"
        assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    ec2.run_instances(ImageId=UBUNTU_AMI_ID, MinCount=1, MaxCount=1)
    # a throttle is retried by botocore itself: the call succeeds after one injected fault
    assert len(ec2.describe_instances()["Reservations"]) == 1
    state = moto_server.fault_state()
    assert state["injected"] == {"RunInstances": 2, "DescribeInstances": 1}
    assert state["calls"]["RunInstances"] == 3
    assert state["calls"]["DescribeInstances"] == 2

    # "*" with a rate and a seed, without retries: some calls fail, with the chosen code
    no_retry = boto_client("ec2", aws_env["AWS_ENDPOINT_URL"], retries={"total_max_attempts": 1})
    moto_server.set_faults({"*": {"error": "RequestLimitExceeded", "status": 503, "rate": 0.5,
                                  "seed": 1}})
    codes = []
    for _ in range(20):
        try:
            no_retry.describe_key_pairs()
            codes.append("ok")
        except ClientError as exc:
            codes.append(exc.response["Error"]["Code"])
    assert set(codes) == {"ok", "RequestLimitExceeded"}
    assert moto_server.fault_state()["injected"]["DescribeKeyPairs"] == codes.count("RequestLimitExceeded")

    moto_server.clear_faults()
    no_retry.describe_key_pairs()
    assert moto_server.fault_state()["total"] == 0


def test_bypass_and_other_services_are_not_faulted(moto_server, aws_env):
    moto_server.set_faults({"*": {"error": "RequestLimitExceeded", "status": 503}})
    # the simulator's own polling carries the bypass header
    boto_client("ec2", aws_env["AWS_ENDPOINT_URL"], bypass_faults=True).describe_instances()
    # rules apply to EC2 unless they say "service"
    boto_client("iam", aws_env["AWS_ENDPOINT_URL"]).list_roles()
    assert moto_server.fault_state()["total"] == 0


def test_ubuntu_images_in_every_region(aws_env):
    for region in ("us-west-2", "us-east-1", "eu-west-1"):
        ec2 = boto_client("ec2", aws_env["AWS_ENDPOINT_URL"], region)
        images = ec2.describe_images(Owners=[CANONICAL_OWNER], Filters=[
            {"Name": "name", "Values": ["ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-*"]},
            {"Name": "architecture", "Values": ["x86_64"]}])["Images"]
        newest = max(images, key=lambda i: i["CreationDate"])
        assert (newest["ImageId"], newest["Name"]) == (UBUNTU_AMI_ID, UBUNTU_AMI_NAME)


def test_aws_env_isolates_boto3(aws_env, tmp_path):
    import boto3

    assert os.environ["AWS_ENDPOINT_URL"] == aws_env["AWS_ENDPOINT_URL"]
    assert "AWS_PROFILE" not in os.environ
    assert os.environ["SWIFTRUN_HOME"] == str(tmp_path / "swiftrun-home")
    ec2 = boto3.client("ec2")  # plain boto3, configured by the environment only
    assert ec2.meta.region_name == "us-west-2"
    assert ec2.meta.endpoint_url == aws_env["AWS_ENDPOINT_URL"]
    assert ec2.describe_instances()["Reservations"] == []


def test_simulator_survives_moto_errors(tmp_path):
    from tests.support.cloud import InstanceSimulator
    from tests.support.sshd import free_port

    sim = InstanceSimulator(f"http://127.0.0.1:{free_port()}", "us-west-2", tmp_path / "base",
                            None, []).start()
    try:
        until(lambda: sim.poll_errors >= 2, what="failed polls")
        assert sim.error is None and sim.instances == []
    finally:
        sim.stop()


@pytest.mark.parametrize("behavior,final", [("terminate", "terminated"), (None, "stopped")])
def test_os_shutdown_stops_or_terminates(cloud, behavior, final):
    """The node stand-in `shutdown` (tests/standins/node) is acted on like EC2 does."""
    if not (Path(__file__).parent / "standins/node/shutdown").exists():
        pytest.skip("node stand-ins not there yet")
    extra = {"InstanceInitiatedShutdownBehavior": behavior} if behavior else {}
    iid = cloud.ec2.run_instances(ImageId=cloud.ami_id, MinCount=1, MaxCount=1,
                                  UserData="#!/bin/bash\nshutdown -h now\n",
                                  **extra)["Instances"][0]["InstanceId"]
    until(lambda: instance(cloud.ec2, iid)["State"]["Name"] == final, what=final)
    until(lambda: not cloud.sim.info(iid).up and not cloud.sim.sshd(iid).running, what="power off")
    root = cloud.sim.root(iid)
    assert (root / "run/standin-shutdown.done").read_text() == "-h now\n"
    assert not (root / "run/standin-shutdown").exists()
