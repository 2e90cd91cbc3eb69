"""The test cloud itself, proved with boto3, real OpenSSH and the node stand-ins only (no
swiftrun code): nodes are separate hosts on their own network, security groups are enforced,
the images look like the real ones."""

from __future__ import annotations

import getpass
import gzip
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from tests.support import netns
from tests.support.cloud import (
    BAKED_AMI_ID, CANONICAL_OWNER, PROXY, UBUNTU_AMI_ID, UBUNTU_AMI_NAME, boto_client,
)
from tests.support.netns import CALLER, WEB, Network
from tests.support.nodeimage import STANDIN_NODE_DIR
from tests.support.sshd import keygen

USER = getpass.getuser()
needs_netns = pytest.mark.skipif(netns.unavailable() is not None,
                                 reason=f"nodes as hosts: {netns.unavailable()}")


# --- helpers --------------------------------------------------------------------------------------
def until(cond, timeout: float = 30.0, what: str = "condition"):
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
        env: dict | None = None, timeout: int = 10):
    argv = ["ssh", "-F", "/dev/null", "-o", "BatchMode=yes",
            "-o", f"ProxyCommand={cloud.proxy_command}",
            "-o", f"UserKnownHostsFile={tmp_path / 'known_hosts'}",
            "-o", "StrictHostKeyChecking=accept-new", "-o", f"ConnectTimeout={timeout}",
            "-i", str(key), f"{USER}@{host}", command]
    return subprocess.run(argv, capture_output=True, text=True, timeout=90, stdin=subprocess.DEVNULL,
                          check=check, env=env)


def instance(ec2, iid: str) -> dict:
    return ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]


def tcp_from(cloud, iid: str, addr: str, port: int) -> bool:
    """Can instance ``iid`` open a TCP connection to ``addr:port``?"""
    res = cloud.sim.exec(iid, f"timeout 3 bash -c 'exec 3<>/dev/tcp/{addr}/{port}' && echo open")
    return res.stdout.strip() == "open"


@pytest.fixture
def key(tmp_path: Path) -> Path:
    return keygen(tmp_path / "keys" / "id_test")


def open_group(ec2, name: str, ports=(22,)) -> str:
    """A security group letting the caller in on ``ports``."""
    gid = ec2.create_security_group(GroupName=name, Description=name)["GroupId"]
    ec2.authorize_security_group_ingress(GroupId=gid, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": p, "ToPort": p, "IpRanges": [{"CidrIp": f"{CALLER}/32"}]}
        for p in ports])
    return gid


LISTEN = ("nohup python3 -c \"import socket; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, "
          "socket.SO_REUSEADDR, 1); s.bind(('0.0.0.0', {port})); s.listen(50)\n"
          "while True: s.accept()[0].close()\" >/dev/null 2>&1 &")


# --- tests --------------------------------------------------------------------------------------------
def test_instance_is_a_host_of_its_own(cloud, key, tmp_path):
    ec2 = cloud.ec2
    ec2.import_key_pair(KeyName="test-key", PublicKeyMaterial=Path(str(key) + ".pub").read_bytes())
    gid = open_group(ec2, "hosts")
    userdata = ('#!/bin/bash\nset -e\necho "hello from $(pwd) on $(hostname)" > "$SWIFTRUN_NODE_ROOT/hello"\n'
                'command -v java || echo "no java" > "$SWIFTRUN_NODE_ROOT/java"\n')
    iid = ec2.run_instances(ImageId=cloud.stock_ami, InstanceType="t3.micro", MinCount=1,
                            MaxCount=1, KeyName="test-key", SecurityGroupIds=[gid],
                            UserData=userdata)["Instances"][0]["InstanceId"]
    assert cloud.sim.wait_userdata(iid) == 0, cloud.sim.console(iid)
    desc = instance(ec2, iid)
    public_ip, private_ip = desc["PublicIpAddress"], desc["PrivateIpAddress"]
    root, home = cloud.sim.root(iid), cloud.sim.home(iid)
    hostname = "ip-" + private_ip.replace(".", "-")
    assert (root / "hello").read_text() == f"hello from {root} on {hostname}\n"
    # stock Ubuntu has no Java (the test machine's own must not show through)
    assert (root / "java").read_text() == "no java\n"

    out = ssh(cloud, key, public_ip,
              'echo "root=$SWIFTRUN_NODE_ROOT"; echo "home=$HOME"; pwd; hostname; '
              "ip -4 -o addr show eth0 | awk '{print $4}'; command -v systemctl", tmp_path).stdout
    assert out.splitlines() == [f"root={root}", f"home={home}", str(home), hostname,
                                f"{private_ip}/32", str(Path(__file__).parent / "standins/node/systemctl")]
    # sftp starts in the sandbox home too (relative paths never land in the real home)
    sftp = subprocess.run(["sftp", "-F", "/dev/null", "-b", "-", "-o", "BatchMode=yes",
                           "-o", f"ProxyCommand={cloud.proxy_command}",
                           "-o", f"UserKnownHostsFile={tmp_path / 'known_hosts'}",
                           "-i", str(key), f"{USER}@{public_ip}"],
                          input=f"put {key}.pub uploaded.pub\n", capture_output=True, text=True,
                          timeout=60)
    assert sftp.returncode == 0, sftp.stderr
    assert (home / "uploaded.pub").read_bytes() == Path(f"{key}.pub").read_bytes()
    # The private address does not lead in from the user's machine, as on EC2.
    private = ssh(cloud, key, private_ip, "true", tmp_path, check=False,
                  env={**os.environ, "TESTCLOUD_PROXY_WAIT": "0.2"})
    assert private.returncode == 255 and f"no route to host {private_ip}" in private.stderr
    # The test machine's own namespace has no route into the node's address.
    assert private_ip not in subprocess.run(["ip", "-4", "addr"], capture_output=True,
                                            text=True).stdout
    # a process started over SSH and detached is one of the instance's processes too
    detached = ssh(cloud, key, public_ip, "setsid sleep 999 </dev/null >/dev/null 2>&1 & echo $!",
                   tmp_path)
    ssh_pid = int(detached.stdout.strip())
    assert pid_alive(ssh_pid)
    netns_name = cloud.sim.info(iid).net.netns

    ec2.terminate_instances(InstanceIds=[iid])
    until(lambda: not (cloud.hosts_dir / public_ip).exists(), what="hosts entry removed")
    until(lambda: not pid_alive(ssh_pid), what="detached ssh process killed")
    until(lambda: netns_name not in subprocess.run(["ip", "netns", "list"], capture_output=True,
                                                   text=True).stdout, what="namespace removed")
    gone = ssh(cloud, key, public_ip, "true", tmp_path, check=False,
               env={**os.environ, "TESTCLOUD_PROXY_WAIT": "0.2"})
    assert gone.returncode == 255
    assert f"proxy: no route to host {public_ip}" in gone.stderr


def test_security_groups_are_enforced_and_followed(cloud, key, tmp_path):
    """Each node's firewall is its groups' rules: SSH from the caller's address only, nothing
    between nodes until a rule of the group allows it, and a revoked rule closes again."""
    ec2 = cloud.ec2
    ec2.import_key_pair(KeyName="k", PublicKeyMaterial=Path(str(key) + ".pub").read_bytes())
    gid = open_group(ec2, "fw")
    ids = [i["InstanceId"] for i in ec2.run_instances(
        ImageId=cloud.stock_ami, MinCount=2, MaxCount=2, KeyName="k", SecurityGroupIds=[gid],
        UserData="#!/bin/bash\n" + LISTEN.format(port=50005) + "\n")["Instances"]]
    for iid in ids:
        assert cloud.sim.wait_userdata(iid) == 0
    a, b = ids
    b_ip = instance(ec2, b)["PrivateIpAddress"]
    until(lambda: cloud.sim.exec(b, "ss -ltn | grep -q ':50005 ' && echo up").stdout.strip(),
          what="listener")
    assert ssh(cloud, key, instance(ec2, b)["PublicIpAddress"], "echo in", tmp_path).stdout == "in\n"
    assert not tcp_from(cloud, a, b_ip, 50005)     # not allowed between nodes (yet)
    assert not tcp_from(cloud, a, b_ip, 22)

    coaster = {"IpProtocol": "tcp", "FromPort": 50005, "ToPort": 50005,
               "UserIdGroupPairs": [{"GroupId": gid}]}
    ec2.authorize_security_group_ingress(GroupId=gid, IpPermissions=[coaster])
    until(lambda: tcp_from(cloud, a, b_ip, 50005), what="intra-group rule in force")
    assert not tcp_from(cloud, a, b_ip, 22)        # still only what the rule names

    ec2.revoke_security_group_ingress(GroupId=gid, IpPermissions=[coaster])
    until(lambda: not tcp_from(cloud, a, b_ip, 50005), what="revoked rule gone")

    # SSH from elsewhere than the caller's address: the rule names 198.51.100.7/32 only
    ec2.revoke_security_group_ingress(GroupId=gid, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": f"{CALLER}/32"}]}])
    ec2.authorize_security_group_ingress(GroupId=gid, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "203.0.113.9/32"}]}])
    until(lambda: "203.0.113.9" in cloud.network.nodes[b].ruleset, what="new rule in force")
    blocked = ssh(cloud, key, instance(ec2, b)["PublicIpAddress"], "true", tmp_path, check=False,
                  env={**os.environ, "TESTCLOUD_PROXY_TIMEOUT": "2"}, timeout=5)
    assert blocked.returncode == 255 and "timed out" in blocked.stderr.lower(), blocked.stderr


def test_only_nodes_with_a_public_address_reach_the_internet(cloud):
    ec2 = cloud.ec2
    fetch = ('#!/bin/bash\ncurl -fsS -m 5 -o /dev/null "http://198.51.100.80/swift-0.96.2.tar.gz" '
             '&& echo fetched > "$SWIFTRUN_NODE_ROOT/net" || echo offline > "$SWIFTRUN_NODE_ROOT/net"\n')
    public = ec2.run_instances(ImageId=cloud.stock_ami, MinCount=1, MaxCount=1,
                               UserData=fetch)["Instances"][0]["InstanceId"]
    private = ec2.run_instances(ImageId=cloud.stock_ami, MinCount=1, MaxCount=1, UserData=fetch,
                                NetworkInterfaces=[{"DeviceIndex": 0,
                                                    "AssociatePublicIpAddress": False}]
                                )["Instances"][0]["InstanceId"]
    assert "PublicIpAddress" not in instance(ec2, private)
    for iid in (public, private):
        assert cloud.sim.wait_userdata(iid) == 0
    assert (cloud.sim.root(public) / "net").read_text() == "fetched\n"
    assert (cloud.sim.root(private) / "net").read_text() == "offline\n"


def no_apt_daily(cloud) -> None:
    """Boots from here on find apt's locks free (the scripts below test other things)."""
    cloud.sim.apt_lock_seconds = 0


def test_apt_stand_in_behaves_like_a_fresh_ubuntu_image(cloud):
    no_apt_daily(cloud)
    script = """#!/bin/bash
R=$SWIFTRUN_NODE_ROOT
apt-get install -y default-jre-headless >"$R/before-update" 2>&1; echo $? >>"$R/before-update"
apt-get update -q >/dev/null && echo updated >"$R/update"
apt-get install -y default-jre-headless no-such-package >"$R/unknown" 2>&1; echo $? >>"$R/unknown"
command -v java >"$R/java-after-unknown" || true
apt-get install -y default-jre-headless >/dev/null 2>&1 && java -version 2>"$R/java-version"
command -v s3fs || apt-get install -y s3fs >/dev/null && command -v s3fs >"$R/s3fs"
"""
    iid = cloud.ec2.run_instances(ImageId=cloud.stock_ami, MinCount=1, MaxCount=1,
                                  UserData=script)["Instances"][0]["InstanceId"]
    cloud.sim.wait_userdata(iid)
    root = cloud.sim.root(iid)
    assert "Unable to locate package" in (root / "before-update").read_text()   # empty lists
    assert (root / "update").read_text() == "updated\n"
    unknown = (root / "unknown").read_text()
    assert "E: Unable to locate package no-such-package" in unknown and unknown.endswith("100\n")
    assert (root / "java-after-unknown").read_text() == ""                     # all or nothing
    assert 'version "21.' in (root / "java-version").read_text()               # Ubuntu 24.04's
    assert (root / "s3fs").read_text().strip() == f"{root}/usr/bin/s3fs"


def test_apt_daily_holds_the_locks_at_first_boot(cloud):
    """As on a real first boot: `apt-get update` fails at once on the lists lock (no timeout
    option covers it), `install` waits for the dpkg lock only as long as DPkg::Lock::Timeout
    says, and once apt-daily is done both work."""
    cloud.sim.apt_lock_seconds = 6
    script = """#!/bin/bash
R=$SWIFTRUN_NODE_ROOT
apt-get update -q >"$R/update" 2>&1; echo $? >>"$R/update"
apt-get install -y s3fs >"$R/install" 2>&1; echo $? >>"$R/install"
apt-get -o DPkg::Lock::Timeout=20 install -y s3fs >"$R/waited" 2>&1; echo $? >>"$R/waited"
apt-get update -q >"$R/after" 2>&1; echo $? >>"$R/after"
"""
    iid = cloud.ec2.run_instances(ImageId=cloud.stock_ami, MinCount=1, MaxCount=1,
                                  UserData=script)["Instances"][0]["InstanceId"]
    cloud.sim.wait_userdata(iid)
    root = cloud.sim.root(iid)
    update = (root / "update").read_text()
    assert "E: Could not get lock /var/lib/apt/lists/lock" in update and update.endswith("100\n")
    install = (root / "install").read_text()
    assert "Could not get lock /var/lib/dpkg/lock-frontend" in install and install.endswith("100\n")
    waited = (root / "waited").read_text()
    # it waited for the lock, then found empty lists (no update has worked yet)
    assert "Waiting for cache lock" in waited and "Unable to locate package s3fs" in waited
    assert (root / "after").read_text().endswith("0\n")


def test_a_node_without_internet_cannot_install(cloud):
    no_apt_daily(cloud)
    iid = cloud.ec2.run_instances(
        ImageId=cloud.stock_ami, MinCount=1, MaxCount=1,
        NetworkInterfaces=[{"DeviceIndex": 0, "AssociatePublicIpAddress": False}],
        UserData="#!/bin/bash\napt-get update 2>\"$SWIFTRUN_NODE_ROOT/err\"\n")["Instances"][0]["InstanceId"]
    assert cloud.sim.wait_userdata(iid) == 100
    assert "Could not connect to archive.ubuntu.com" in (cloud.sim.root(iid) / "err").read_text()


def test_baked_image_has_java_21_and_swift_as_shipped(cloud):
    iid = cloud.ec2.run_instances(ImageId=BAKED_AMI_ID, MinCount=1, MaxCount=1,
                                  UserData="#!/bin/bash\njava -version 2>\"$SWIFTRUN_NODE_ROOT/v\"\n"
                                  )["Instances"][0]["InstanceId"]
    assert cloud.sim.wait_userdata(iid) == 0
    root = cloud.sim.root(iid)
    assert 'version "21.' in (root / "v").read_text()
    launcher = (root / "opt/swift/bin/swift").read_text()
    assert "-Djava.endorsed.dirs" in launcher        # unchanged, as a user's download is
    for tool in ("swift", "coaster-service", "worker.pl"):
        assert os.access(root / "opt/swift/bin" / tool, os.X_OK)


def cpu_cgroup(pid: int) -> str:
    """The cpu cgroup of a process (cgroup v1 ``cpu`` line, else the v2 one)."""
    lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if "cpu" in controllers.split(","):
            return path
    return next(line.split(":", 2)[2] for line in lines if line.startswith("0::"))


def test_node_processes_run_in_its_own_low_weight_cgroup(cloud, key, tmp_path):
    """Every process of a node (sshd, userdata, what it starts, what a login starts) runs in the
    node's own cgroup, under one nodes group of a low CPU weight; a terminated node's cgroup
    is removed. The client's side (this process) stays where it was."""
    cpu = cloud.sim.cpu
    if cpu is None or not cpu.enabled:
        pytest.skip("no writable cgroup cpu controller here")
    ec2 = cloud.ec2
    ec2.import_key_pair(KeyName="kcg", PublicKeyMaterial=Path(str(key) + ".pub").read_bytes())
    gid = open_group(ec2, "cg")
    userdata = ('#!/bin/bash\nsetsid sleep 999 </dev/null >/dev/null 2>&1 &\n'
                'echo $! > "$SWIFTRUN_NODE_ROOT/bg.pid"\necho $$ > "$SWIFTRUN_NODE_ROOT/ud.pid"\n')
    iid = ec2.run_instances(ImageId=cloud.stock_ami, MinCount=1, MaxCount=1, KeyName="kcg",
                            SecurityGroupIds=[gid], UserData=userdata)["Instances"][0]["InstanceId"]
    assert cloud.sim.wait_userdata(iid) == 0, cloud.sim.console(iid)
    root = cloud.sim.root(iid)
    group = cpu.add_node(iid)
    mine = "/" + str(group.relative_to(group.parent.parent))
    bg = int((root / "bg.pid").read_text())
    sshd = cloud.sim.sshd(iid).proc.pid
    public_ip = instance(ec2, iid)["PublicIpAddress"]
    login = int(ssh(cloud, key, public_ip,
                    "setsid sleep 999 </dev/null >/dev/null 2>&1 & echo $!", tmp_path).stdout)
    for pid in (bg, sshd, login):
        assert cpu_cgroup(pid) == mine, pid
    assert set(cpu.pids(iid)) >= {bg, sshd, login}
    assert cpu_cgroup(os.getpid()) != mine
    weights = [f for f in ("cpu.shares", "cpu.weight") if (group.parent / f).exists()]
    nodes_weight = int((group.parent / weights[0]).read_text())
    assert nodes_weight < int((group / weights[0]).read_text())

    ec2.terminate_instances(InstanceIds=[iid])
    until(lambda: not pid_alive(bg) and not pid_alive(login), what="node processes killed")
    until(lambda: not group.exists(), what="node cgroup removed")


def test_services_are_supervised_and_restarted_after_a_stop_start(cloud, key, tmp_path):
    """The systemctl stand-in restarts a service that exits (Restart=always), as systemd does;
    a stop/start runs the enabled services again, never the userdata (once per instance)."""
    ec2 = cloud.ec2
    ec2.import_key_pair(KeyName="k2", PublicKeyMaterial=Path(str(key) + ".pub").read_bytes())
    gid = open_group(ec2, "svc")
    script = b"""#!/bin/bash
set -e
R=$SWIFTRUN_NODE_ROOT
echo once >> "$R/userdata-runs"
mkdir -p "$R/etc/systemd/system"
cat > "$R/etc/systemd/system/flaky.service" <<EOF
[Service]
ExecStart=/bin/bash -c 'echo start >> $R/flaky; sleep 0.3; exit 111'
Restart=always
RestartSec=0.2
[Install]
WantedBy=multi-user.target
EOF
systemctl daemon-reload
systemctl enable --now flaky.service
"""
    # boto3 base64-encodes UserData itself; gzip is what cloud-init also accepts
    iid = ec2.run_instances(ImageId=cloud.stock_ami, MinCount=1, MaxCount=1, KeyName="k2",
                            SecurityGroupIds=[gid], UserData=gzip.compress(script)
                            )["Instances"][0]["InstanceId"]
    assert cloud.sim.wait_userdata(iid) == 0
    root = cloud.sim.root(iid)
    until(lambda: (root / "flaky").exists() and (root / "flaky").read_text().count("start") >= 3,
          what="restarts")

    ec2.stop_instances(InstanceIds=[iid])
    until(lambda: not cloud.sim.info(iid).up, what="powered off")
    stopped_count = (root / "flaky").read_text().count("start")
    ec2.start_instances(InstanceIds=[iid])
    cloud.sim.wait_for(iid)
    until(lambda: (root / "flaky").read_text().count("start") > stopped_count,
          what="enabled service started at boot")
    assert (root / "userdata-runs").read_text() == "once\n"
    assert cloud.sim.info(iid).boots == 2
    public_ip = until(lambda: instance(ec2, iid).get("PublicIpAddress"), what="public ip")
    assert ssh(cloud, key, public_ip, "cat $SWIFTRUN_NODE_ROOT/userdata-runs", tmp_path).stdout == "once\n"


def node_clock(cloud, iid: str) -> tuple[int, int, int]:
    """(node `date +%s`, mtime of a file the node touched, this machine's time) at one moment."""
    res = cloud.sim.exec(iid, 'f=$SWIFTRUN_NODE_ROOT/clock-probe; touch "$f"; '
                              'echo "$(date +%s) $(stat -c %Y "$f")"')
    assert res.returncode == 0, res.stderr
    date, mtime = map(int, res.stdout.split())
    return date, mtime, int(time.time())


def stop_start(cloud, iid: str) -> None:
    cloud.ec2.stop_instances(InstanceIds=[iid])
    until(lambda: not cloud.sim.info(iid).up, what="powered off")
    until(lambda: instance(cloud.ec2, iid)["State"]["Name"] == "stopped", what="stopped")
    cloud.ec2.start_instances(InstanceIds=[iid])
    cloud.sim.wait_for(iid)


def test_a_stop_start_moves_the_node_clock_on_by_stopped_for_seconds(cloud):
    """A real stop lasts; the deadman tells a stop from its ticks' gap. stopped_for_seconds is
    how long a simulated one lasts on the node's clock (date and touch, so a touched file's mtime
    agrees with date); by default a stop takes no time."""
    iid = cloud.ec2.run_instances(ImageId=cloud.stock_ami, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    cloud.sim.wait_for(iid)
    assert cloud.sim.clock_offset(iid) == 0
    date, mtime, real = node_clock(cloud, iid)
    assert abs(date - real) <= 5 and abs(mtime - real) <= 5

    stop_start(cloud, iid)                                   # default: the clock stays
    assert cloud.sim.clock_offset(iid) == 0
    date, mtime, real = node_clock(cloud, iid)
    assert abs(date - real) <= 5 and abs(mtime - real) <= 5

    cloud.sim.stopped_for_seconds = 36000
    try:
        stop_start(cloud, iid)
        assert cloud.sim.clock_offset(iid) == 36000
        date, mtime, real = node_clock(cloud, iid)
        assert abs(date - (real + 36000)) <= 5 and abs(mtime - (real + 36000)) <= 5
        stop_start(cloud, iid)                               # stops add up
    finally:
        cloud.sim.stopped_for_seconds = 0
    assert cloud.sim.clock_offset(iid) == 72000
    date, mtime, real = node_clock(cloud, iid)
    assert abs(date - (real + 72000)) <= 5
    # a time of its own is the real one; formats show the node's clock
    res = cloud.sim.exec(iid, 'date -d @0 +%s; date -u +%Y-%m-%dT%H; f=$SWIFTRUN_NODE_ROOT/t; '
                              'touch -d @1000 "$f"; stat -c %Y "$f"')
    assert res.stdout.split()[0::2] == ["0", "1000"], res.stdout + res.stderr
    assert res.stdout.split()[1] == time.strftime("%Y-%m-%dT%H", time.gmtime(time.time() + 72000))


def test_the_clock_stand_ins_shift_only_now(tmp_path):
    """No offset file (every node before a lasting stop): date and touch are the real ones. With
    one, now moves (either way), and a time given (-d, -r) stays what it is."""
    env = {"SWIFTRUN_NODE_ROOT": str(tmp_path), "PATH": f"{STANDIN_NODE_DIR}:/usr/bin:/bin",
           "LANG": "C.UTF-8"}
    out = subprocess.run(["bash", "-c", "date +%s; touch f; stat -c %Y f; date -d @7 +%s"],
                         env=env, cwd=tmp_path, capture_output=True, text=True, check=True).stdout.split()
    assert abs(int(out[0]) - time.time()) <= 5 and abs(int(out[1]) - time.time()) <= 5 and out[2] == "7"
    (tmp_path / "var/lib/standin-clock").mkdir(parents=True)
    (tmp_path / "var/lib/standin-clock/offset").write_text("-3600\n")
    out = subprocess.run(["bash", "-c", "date +%s; touch f; stat -c %Y f; touch -r /bin/bash g"],
                         env=env, cwd=tmp_path, capture_output=True, text=True, check=True).stdout.split()
    assert abs(int(out[0]) - (time.time() - 3600)) <= 5 and abs(int(out[1]) - (time.time() - 3600)) <= 5
    assert int(os.stat(tmp_path / "g").st_mtime) == int(os.stat("/bin/bash").st_mtime)


def test_untagged_instance_without_key_or_userdata_is_simulated(cloud):
    ec2 = cloud.ec2
    iid = ec2.run_instances(ImageId=cloud.stock_ami, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    sshd = cloud.sim.wait_for(iid)
    assert sshd.running
    assert iid in cloud.sim.instances
    assert cloud.sim.userdata_exit(iid) == 0  # nothing to run
    desc = instance(ec2, iid)
    assert "Tags" not in desc or desc["Tags"] == []
    assert (cloud.hosts_dir / desc["PublicIpAddress"]).read_text().split() == [
        cloud.network.gw, desc["PrivateIpAddress"]]
    assert (cloud.sim.info(iid).dir / "authorized_keys").read_text() == ""


@needs_netns
def test_proxy_unknown_host_exits_1(tmp_path):
    hosts = tmp_path / "hosts"
    hosts.mkdir()
    res = subprocess.run([sys.executable, str(PROXY), str(hosts), "54.1.2.3", "22"],
                         capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=30,
                         env={**os.environ, "TESTCLOUD_PROXY_WAIT": "0.3"})
    assert res.returncode == 1
    assert res.stderr.strip() == "proxy: no route to host 54.1.2.3"
    assert res.stdout == ""


@needs_netns
def test_proxy_pipes_bytes_both_ways_into_a_node(tmp_path):
    """From the caller's address, through the gateway, to a server inside a node."""
    net = Network().start()
    try:
        node = net.add_node("echo", "10.99.1.2")
        net.set_firewall("echo", netns.ingress_ruleset(
            [{"IpPermissions": [{"IpProtocol": "tcp", "FromPort": 7, "ToPort": 7,
                                 "IpRanges": [{"CidrIp": f"{CALLER}/32"}]}]}], {}))
        server = subprocess.Popen(node.argv([sys.executable, "-c", (
            "import socket; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1);"
            "s.bind(('0.0.0.0', 7)); s.listen(1); c, a = s.accept(); print(a[0], flush=True)\n"
            "while (d := c.recv(65536)): c.sendall(d)\n")]), stdout=subprocess.PIPE, text=True)
        hosts = tmp_path / "hosts"
        hosts.mkdir()
        (hosts / "54.9.9.9").write_text(f"{net.gw} 10.99.1.2\n")
        payload = bytes(range(256)) * 4096  # 1 MiB, every byte value
        res = subprocess.run([sys.executable, str(PROXY), str(hosts), "54.9.9.9", "7"],
                             input=payload, capture_output=True, timeout=60,
                             env={**os.environ, "TESTCLOUD_PROXY_WAIT": "5"})
        assert res.returncode == 0, res.stderr
        assert res.stdout == payload
        assert server.stdout.readline().strip() == CALLER   # seen as the user's machine
        server.wait(timeout=10)
    finally:
        net.close()


@needs_netns
def test_network_cleans_up_and_sweeps_only_dead_owners(tmp_path):
    def names() -> str:
        return subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout

    net = Network().start()
    net.add_node("a", "10.99.2.1")
    assert net.gw in names() and net.nodes["a"].netns in names()
    # A leftover of a test process that died (its PID is gone) is swept; ours stays.
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = f"sr{dead.pid}c1gw"
    subprocess.run(["ip", "netns", "add", stale], check=True)
    try:
        assert stale in netns.sweep_stale()
        assert stale not in names() and net.gw in names()
    finally:
        subprocess.run(["ip", "netns", "delete", stale], capture_output=True)
        net.close()
    assert f"{net.prefix}" not in names()


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


@needs_netns
def test_simulator_survives_moto_errors(tmp_path, node_images):
    from tests.support.cloud import InstanceSimulator
    from tests.support.sshd import free_port

    net = Network().start()
    sim = InstanceSimulator(f"http://127.0.0.1:{free_port()}", "us-west-2", tmp_path / "base",
                            node_images, net).start()
    try:
        until(lambda: sim.poll_errors >= 2, what="failed polls")
        assert sim.error is None and sim.instances == []
    finally:
        sim.stop()
        net.close()


@pytest.mark.parametrize("behavior,final", [("terminate", "terminated"), (None, "stopped")])
def test_os_shutdown_stops_or_terminates(cloud, behavior, final):
    """The node stand-in `shutdown` (tests/standins/node) is acted on like EC2 does."""
    extra = {"InstanceInitiatedShutdownBehavior": behavior} if behavior else {}
    iid = cloud.ec2.run_instances(ImageId=cloud.stock_ami, MinCount=1, MaxCount=1,
                                  UserData="#!/bin/bash\nshutdown -h now\n",
                                  **extra)["Instances"][0]["InstanceId"]
    until(lambda: instance(cloud.ec2, iid)["State"]["Name"] == final, what=final)
    until(lambda: not cloud.sim.info(iid).up and not cloud.sim.sshd(iid).running, what="power off")
    root = cloud.sim.root(iid)
    assert (root / "run/standin-shutdown.done").read_text() == "-h now\n"
    assert not (root / "run/standin-shutdown").exists()
