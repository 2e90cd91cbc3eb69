"""The node boot scripts (userdata/*.sh) and their renderer (swiftrun/node/userdata.py).

Rendered scripts really run here, each on a node of its own: a network namespace with its own
address (tests/support/netns.py), a sandbox root (SWIFTRUN_NODE_ROOT) laid down from the test
images (tests/support/nodeimage.py: stock Ubuntu 24.04 without Java, or a custom image with Java 21
and the real Swift/K 0.96.2 in /opt/swift), the node stand-ins first on PATH (apt-get, mount,
mkfs.ext4, systemctl, shutdown, chown; mdadm and s3fs once "installed"), and fake /sys/block trees
that say which disks the "instance" has. Swift is downloaded with the real curl from the network's
web host; the real coaster-service and worker.pl are started by the systemctl stand-in. Nothing
leaves the namespaces.
"""

from __future__ import annotations

import base64
import getpass
import gzip
import hashlib
import io
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import subprocess
import tarfile
import time
from dataclasses import replace
from pathlib import Path

import pytest

from swiftrun.errors import ConfigError
from swiftrun.paths import data_dir
from swiftrun.project import ClusterSettings, Project, SshSettings
from swiftrun.node.layout import AGENT_PORT
from swiftrun.node.userdata import USERDATA_LIMIT, payload, render_all, render_userdata, served_files
from tests.support import netns
from tests.support.cloud import _kill_pids, _pids_with_env, nvme_disk
from tests.support.netns import WEB, Network
from tests.support.nodeimage import STANDIN_NODE_DIR, SWIFT_TARBALL_NAME, engine_unavailable

USERDATA = data_dir("userdata")
STANDINS = STANDIN_NODE_DIR
SHELLCHECK = shutil.which("shellcheck")
USER = getpass.getuser()
UID = os.getuid()
HEADNODE_IP = "10.1.2.3"
FAKE_KEY_ID = "AKIAIOSFODNN7EXAMPLE"
FAKE_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
SWIFT_URL = f"http://{WEB}/{SWIFT_TARBALL_NAME}"

needs_shellcheck = pytest.mark.skipif(SHELLCHECK is None, reason="shellcheck is not installed")


# ----------------------------------------------------------------------------- sandbox helpers

def make_project(tmp_path: Path, **over) -> Project:
    project = Project(
        root=tmp_path,
        cluster=ClusterSettings(name="tut", worker_concurrency=4, idle_timeout=1800, max_lifetime=28800),
        ssh=SshSettings(user=USER),
    )
    for section, values in over.items():
        project = replace(project, **{section: replace(getattr(project, section), **values)})
    return project


class Node:
    """One booted 'instance': its namespace, root, PATH and what happened there."""

    def __init__(self, base: Path, images, net: Network):
        self.base = base
        self.root = base / "root"
        self.root.mkdir(parents=True)
        self.home = base / "home"
        self.home.mkdir()
        self.images = images
        self.net = net
        self.host = net.add_node("node", "10.200.0.5")
        net.set_public([self.host.ip])               # it may reach the mirror and the web host
        # the headnode a worker's scripts name: a host on the network where nothing listens
        # (no agent to report to, no coaster service): connections are refused at once
        net.add_node("headnode", HEADNODE_IP)
        self.extra_bin = base / "extra-bin"          # per-test overrides, before the stand-ins
        self.extra_bin.mkdir()
        self.env: dict[str, str] = {}
        images.install("stock", self.root)

    # --- the image
    def preinstall_swift(self) -> None:
        """The custom image: Java 21 and Swift 0.96.2 (as shipped) in /opt/swift."""
        self.images.install("baked", self.root)

    def nvme(self, count: int, *, first: int = 1) -> list[str]:
        """``count`` NVMe instance-store disks, plus the EBS root nvme0n1 (not instance store)."""
        self._nvme("nvme0n1", "Amazon Elastic Block Store", partitions=["nvme0n1p1"])
        names = [f"nvme{first + i}n1" for i in range(count)]
        for name in names:
            self._nvme(name, "Amazon EC2 NVMe Instance Storage                ")
        return names

    def _nvme(self, name: str, model: str, partitions: tuple | list = ()) -> None:
        nvme_disk(self.root, name, model, partitions)

    def xvd(self, names: list[str], partitions: dict | None = None) -> list[str]:
        """Xen whole disks, plus the root xvda with a partition."""
        self._xen("xvda", ["xvda1"])
        for name in names:
            self._xen(name, (partitions or {}).get(name, []))
        return names

    def _xen(self, name: str, partitions: list[str]) -> None:
        block = self.root / "sys/block" / name
        (block / "holders").mkdir(parents=True, exist_ok=True)
        for part in partitions:
            (block / part).mkdir(exist_ok=True)
            (block / part / "partition").write_text("1\n")
        (self.root / "dev").mkdir(exist_ok=True)
        (self.root / "dev" / name).touch()

    def mounts(self, *lines: str) -> None:
        (self.root / "proc").mkdir(exist_ok=True)
        with open(self.root / "proc/mounts", "a") as fh:
            fh.writelines(line + "\n" for line in lines)

    # --- running things
    def environ(self, **extra: str) -> dict[str, str]:
        env = {"HOME": str(self.home), "USER": USER, "LOGNAME": USER, "LANG": "C.UTF-8",
               "SWIFTRUN_NODE_ROOT": str(self.root), "STANDIN_APT_MIRROR": WEB,
               "PATH": self.images.node_path(self.root, [self.extra_bin, STANDINS])}
        env.update(self.images.node_env(self.root))
        env.update(self.env)
        env.update(extra)
        return env

    def boot(self, script: str, **extra: str) -> subprocess.CompletedProcess:
        path = self.base / "userdata.sh"
        path.write_text(script)
        return subprocess.run(self.host.argv(["bash", str(path)]), env=self.environ(**extra),
                              capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL,
                              cwd=str(self.root))

    def sh(self, command: str) -> subprocess.CompletedProcess:
        """A command on the node (its network, PATH and root)."""
        return subprocess.run(self.host.argv(["bash", "-c", command]), env=self.environ(),
                              capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)

    def deadman(self, script: Path | None = None, **extra: str) -> subprocess.CompletedProcess:
        # on the test machine's own loopback: the tests play the headnode with local sockets
        script = script or USERDATA / "deadman.sh"
        return subprocess.run(["bash", str(script)], env=self.environ(**extra), capture_output=True,
                              text=True, timeout=60, stdin=subprocess.DEVNULL)

    # --- what happened
    def state(self, name: str) -> Path:
        return self.root / "var/lib/swiftrun" / name

    def calls(self, name: str | None = None) -> list[list[str]]:
        log = self.root / "var/log/standins.log"
        rows = [shlex.split(line) for line in log.read_text().splitlines()] if log.exists() else []
        return [row for row in rows if name is None or row[0] == name]

    def log(self) -> str:
        path = self.root / "var/log/swiftrun/userdata.log"
        return path.read_text() if path.exists() else ""

    def r(self, path: str) -> str:
        return f"{self.root}{path}"

    def unit_pid(self, unit: str) -> int | None:
        path = self.root / "run/standin-systemd" / f"{unit}.pid"
        return int(path.read_text()) if path.exists() else None

    def unit_cmdline(self, unit: str, timeout: float = 15.0) -> list[str]:
        """The command line of the unit's main process (its ExecStart, as started)."""
        main = self.root / "run/standin-systemd" / f"{unit}.main"
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                raw = Path(f"/proc/{int(main.read_text())}/cmdline").read_bytes()
                if raw:
                    return raw.decode().rstrip("\0").split("\0")
            except (OSError, ValueError):
                pass
            time.sleep(0.05)
        raise AssertionError(f"{unit} has no main process")

    def stop_units(self) -> None:
        for pidfile in (self.root / "run/standin-systemd").glob("*.pid"):
            pid = int(pidfile.read_text())
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        _kill_pids(_pids_with_env(f"SWIFTRUN_NODE_ROOT={self.root}".encode()))


def wait_for(path: Path, deadline: float = 15.0) -> Path:
    """A file a started service writes: wait for it (bounded), no assertion on how long it took."""
    end = time.monotonic() + deadline
    while not path.exists() and time.monotonic() < end:
        time.sleep(0.02)
    assert path.exists(), f"{path} never appeared"
    return path


def alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


@pytest.fixture
def web_dir(tmp_path, node_images) -> Path:
    """What the network's web host serves: the real distribution, plus what a test adds."""
    d = tmp_path / "web"
    d.mkdir()
    os.link(node_images.dist / SWIFT_TARBALL_NAME, d / SWIFT_TARBALL_NAME)
    return d


@pytest.fixture
def node(tmp_path, node_images, web_dir):
    why = netns.unavailable() or engine_unavailable()
    if why:
        pytest.skip(f"test nodes unavailable: {why}")
    net = Network().start()
    try:
        net.serve(web_dir, tmp_path / "web.log")
        n = Node(tmp_path / "node", node_images, net)
        yield n
        n.stop_units()
    finally:
        net.close()


def started_services(node: Node) -> list[list[str]]:
    """systemctl calls that started swiftrun's services, but the agent: a headnode starts its
    agent first of all, so the workers' reports reach it from their first step."""
    return [c for c in node.calls("systemctl") if "swiftrun-agent.service" not in c
            and c[1:2] != ["daemon-reload"]]


def assert_ready(node: Node, proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == 0, f"boot failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    assert node.state("ready").exists()
    assert not node.state("failed").exists()
    assert node.state("step").read_text().strip() == "finish"


def assert_failed(node: Node, proc: subprocess.CompletedProcess, step: str, *fragments: str) -> str:
    assert proc.returncode != 0, proc.stdout
    assert not node.state("ready").exists()
    text = node.state("failed").read_text()
    assert text.count("\n") == 1 and text.endswith("\n"), repr(text)
    assert text.startswith(f"{step}: "), text
    for fragment in fragments:
        assert fragment in text, text
    return text


# ----------------------------------------------------------------------------- shellcheck

@needs_shellcheck
def test_shellcheck_sources():
    files = sorted(str(p) for p in USERDATA.glob("*.sh"))
    assert {Path(f).name for f in files} >= {"common.sh", "headnode.sh", "worker.sh", "deadman.sh"}
    proc = subprocess.run([SHELLCHECK, "-s", "bash", *files], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout


@needs_shellcheck
def test_shellcheck_standins():
    files = [str(p) for d in (STANDINS, STANDINS.parent / "packages") for p in d.iterdir()
             if p.read_text().startswith("#!/bin/bash")]
    proc = subprocess.run([SHELLCHECK, "-s", "bash", *files], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout


@needs_shellcheck
@pytest.mark.parametrize("role", ["headnode", "worker"])
@pytest.mark.parametrize("full", [False, True], ids=["defaults", "everything"])
def test_shellcheck_rendered(tmp_path, role, full):
    over = {}
    if full:
        init = tmp_path / "init.sh"
        init.write_text("#!/bin/bash\napt-get install -y r-base\n")
        over = dict(s3fs={"bucket": "my-bucket"}, ec2={"worker_init_script": init},
                    swift={"install_url": SWIFT_URL, "install_sha256": "a" * 64})
    script = render_userdata(make_project(tmp_path, **over), role, cluster="tut",
                             headnode_ip=HEADNODE_IP if role == "worker" else None)
    path = tmp_path / f"{role}.sh"
    path.write_text(script)
    proc = subprocess.run([SHELLCHECK, "-s", "bash", str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout


# ----------------------------------------------------------------------------- the renderer

def test_render_header(tmp_path):
    project = make_project(tmp_path, s3fs={"bucket": "my-bucket", "mount": "/data/s3"},
                           swift={"home": "/opt/swift-0.96", "install_url": SWIFT_URL,
                                  "install_sha256": "b" * 64})
    script = render_userdata(project, "worker", cluster="it's", headnode_ip=HEADNODE_IP)
    assert script.startswith("#!/bin/bash\n")
    # EC2 gets it gzip-compressed (cloud-init unpacks it), with half its 16 KB limit to spare
    assert payload(script)[:2] == b"\x1f\x8b" and len(payload(script)) < USERDATA_LIMIT // 2
    for line in ["ROLE=worker", "CLUSTER='it'\"'\"'s'", f"SSH_USER={USER}", f"HEADNODE_IP={HEADNODE_IP}",
                 "WORKER_CONCURRENCY=4", "SWIFT_HOME=/opt/swift-0.96", f"SWIFT_URL={SWIFT_URL}",
                 f"SWIFT_SHA256={'b' * 64}", "S3FS_BUCKET=my-bucket", "S3FS_MOUNT=/data/s3",
                 "IDLE_TIMEOUT=1800", "MAX_LIFETIME=28800", "COASTER_PORT=50010", "WORKER_PORT=50005"]:
        assert f"\n{line}\n" in script, line
    # the pieces: deadman heredoc, common functions, the role's steps
    assert "swiftrun_deadman_script()" in script and "setup_scratch()" in script
    assert "run_worker_init" in script and "bin/coaster-service" not in script
    head = render_userdata(project, "headnode", cluster="tut", headnode_ip=None)
    assert "swiftrun-coaster.service" in head and "WORKER_INIT_B64" not in head
    assert "\nHEADNODE_IP=''\n" in head


def test_render_arguments(tmp_path):
    project = make_project(tmp_path)
    with pytest.raises(ValueError, match="private IP"):
        render_userdata(project, "worker", cluster="tut", headnode_ip=None)
    with pytest.raises(ValueError, match="role"):
        render_userdata(project, "bastion", cluster="tut", headnode_ip=None)
    with pytest.raises(ValueError):
        render_userdata(project, "worker", cluster="tut", headnode_ip="10.0.0.1; reboot")
    with pytest.raises(ConfigError, match="absolute"):
        render_userdata(make_project(tmp_path, s3fs={"bucket": "b", "mount": "s3"}), "headnode",
                        cluster="tut", headnode_ip=None)
    both = render_all(project, "tut")
    assert set(both) == {"headnode", "worker"}
    assert "HEADNODE_IP=HEADNODE_PRIVATE_IP" in both["worker"]
    assert f"HEADNODE_IP={HEADNODE_IP}" in render_all(project, "tut", HEADNODE_IP)["worker"]


def test_render_worker_init_encoding_and_limit(tmp_path):
    init = tmp_path / "init.sh"
    init.write_text("#!/bin/bash\necho hi\n")
    project = make_project(tmp_path, ec2={"worker_init_script": Path("init.sh")})  # relative to root
    script = render_userdata(project, "worker", cluster="tut", headnode_ip=HEADNODE_IP)
    # plain text travels as text (the payload's gzip compresses it with the rest) ...
    assert "\nWORKER_INIT_TEXT=1\n" in script and "\nWORKER_INIT_B64=''\n" in script
    body = re.search(r"^swiftrun_worker_init\(\) \{\ncat <<'(\w+)'\n(.*?)^\1$", script, re.M | re.S)
    assert body.group(2) == init.read_text()
    # ... anything else (no final newline, binary, the delimiter line) as gzip + base64
    for data in (b"#!/bin/bash\necho no-newline", b"#!/bin/sh\n\x00\xff\n",
                 b"#!/bin/bash\ncat <<'SWIFTRUN_WORKER_INIT_EOF'\nx\nSWIFTRUN_WORKER_INIT_EOF\n"):
        init.write_bytes(data)
        script = render_userdata(project, "worker", cluster="tut", headnode_ip=HEADNODE_IP)
        b64 = re.search(r"^WORKER_INIT_B64=(\S+)$", script, re.M).group(1)
        assert gzip.decompress(base64.b64decode(b64)) == data
        assert "swiftrun_worker_init()" not in script

    # too big to travel in userdata (incompressible): it does not; `up` puts it on the headnode
    # and the worker fetches it from there, checked against its SHA-256
    init.write_bytes(b"#!/bin/bash\n# " + base64.b64encode(os.urandom(15000)) + b"\n")
    script = render_userdata(project, "worker", cluster="tut", headnode_ip=HEADNODE_IP)
    assert len(payload(script)) < USERDATA_LIMIT // 2
    sha = hashlib.sha256(init.read_bytes()).hexdigest()
    assert f"\nWORKER_INIT_SHA256={sha}\n" in script and "swiftrun_worker_init()" not in script
    assert served_files(project) == {f"worker-init-{sha}.sh": init.read_bytes()}
    init.write_text("#!/bin/bash\necho small\n")
    assert served_files(project) == {}
    # the headnode does not carry the init script
    assert len(payload(render_userdata(project, "headnode", cluster="tut", headnode_ip=None))) \
        < USERDATA_LIMIT // 2

    with pytest.raises(ConfigError, match="cannot read"):
        render_userdata(make_project(tmp_path, ec2={"worker_init_script": tmp_path / "nope.sh"}),
                        "worker", cluster="tut", headnode_ip=HEADNODE_IP)


def test_render_refuses_aws_key_in_init_script(tmp_path):
    init = tmp_path / "init.sh"
    init.write_text(f"export AWS_ACCESS_KEY_ID={FAKE_KEY_ID}\n")
    with pytest.raises(ConfigError, match="AWS access key"):
        render_userdata(make_project(tmp_path, ec2={"worker_init_script": init}), "worker",
                        cluster="tut", headnode_ip=HEADNODE_IP)


def test_no_secret_in_userdata_or_logs(tmp_path, node):
    creds = tmp_path / "credentials.csv"
    creds.write_text("User name,Password,Access key ID,Secret access key,Console login link\n"
                     f"swift,,{FAKE_KEY_ID},{FAKE_SECRET},https://example.invalid/console\n")
    project = make_project(tmp_path, ec2={"credentials_file": creds}, s3fs={"bucket": "my-bucket"})
    scripts = render_all(project, "tut", HEADNODE_IP)
    for script in scripts.values():
        assert FAKE_KEY_ID not in script and FAKE_SECRET not in script
        assert "credentials" not in script.lower()
    node.preinstall_swift()
    assert_ready(node, node.boot(scripts["headnode"]))
    seen = [node.log(), (node.root / "var/log/standins.log").read_text(),
            (node.root / "etc/swiftrun/node.env").read_text(), (node.root / "etc/fstab").read_text()]
    seen += [p.read_text() for p in (node.root / "etc/systemd/system").iterdir() if p.is_file()]
    for text in seen:
        assert FAKE_KEY_ID not in text and FAKE_SECRET not in text
    assert "iam_role=auto" in node.calls("s3fs")[0][-1]


# ----------------------------------------------------------------------------- headnode boot

def test_headnode_boot(tmp_path, node):
    node.preinstall_swift()
    before = int(time.time())
    proc = node.boot(render_userdata(make_project(tmp_path), "headnode", cluster="tut", headnode_ip=None))
    assert_ready(node, proc)

    # markers, node.env, log
    assert before <= int(node.state("boot").read_text()) <= int(time.time())
    env = dict(line.split("=", 1) for line in (node.root / "etc/swiftrun/node.env").read_text().splitlines())
    assert env["ROLE"] == "headnode" and env["CLUSTER"] == "tut" and env["SSH_USER"] == USER
    assert env["IDLE_TIMEOUT"] == "1800" and env["MAX_LIFETIME"] == "28800" and env["HEADNODE_IP"] == ""
    log = node.log()
    assert "== step: swift" in log and "node ready" in log and "Swift found" in log
    assert "node ready" in proc.stdout                          # ... and on the console
    # the image's Swift was made to run on its Java 21, and proved to
    assert "removed -Djava.endorsed.dirs" in log and "Swift 0.96.2 git-rev:" in log
    assert "-Djava.endorsed.dirs" not in (node.root / "opt/swift/bin/swift").read_text()
    assert "-Djava.endorsed.dirs" in (node.root / "opt/swift/bin/swift.swiftrun-orig").read_text()
    assert "swiftrun-coaster.service is listening on port(s) 50010 50005" in log

    # nothing installed, no disks, no s3fs
    assert not node.calls("apt-get") and not node.calls("mkfs.ext4") and not node.calls("s3fs")
    assert not (node.root / "scratch").exists()

    # units
    units = node.root / "etc/systemd/system"
    coaster = (units / "swiftrun-coaster.service").read_text()
    assert (f"ExecStart={node.r('/opt/swift/bin/coaster-service')} -p 50010 -localport 50005 -nosec -passive"
            in coaster)
    assert f"User={USER}" in coaster and "Restart=on-failure" in coaster
    assert f"WorkingDirectory={node.r('/var/lib/swiftrun/coaster')}" in coaster
    assert "OnUnitActiveSec=1min" in (units / "swiftrun-deadman.timer").read_text()
    deadman = node.root / "usr/local/lib/swiftrun/deadman.sh"
    assert os.access(deadman, os.X_OK)
    assert f"ExecStart=/bin/bash {deadman}" in (units / "swiftrun-deadman.service").read_text()
    systemctl = node.calls("systemctl")
    assert ["systemctl", "daemon-reload"] in systemctl
    assert ["systemctl", "enable", "--now", "swiftrun-coaster.service", "swiftrun-deadman.timer"] in systemctl

    # the real coaster service runs, with the right arguments, and answers on both ports
    pid = node.unit_pid("swiftrun-coaster.service")
    assert alive(pid)
    cmdline = node.unit_cmdline("swiftrun-coaster.service")
    assert cmdline[-7:] == [node.r("/opt/swift/bin/coaster-service"), "-p", "50010", "-localport",
                            "50005", "-nosec", "-passive"]
    for port in (50010, 50005):
        assert node.sh(f"exec 3<>/dev/tcp/127.0.0.1/{port}").returncode == 0
    assert list(node.state("coaster").glob("cps-*.log"))          # it writes in its directory
    assert not node.unit_pid("swiftrun-deadman.timer")             # timers are not run
    # logins get swift on PATH, and Swift's usage report stays off
    profile = (node.root / "etc/profile.d/swiftrun.sh").read_text()
    assert "export SWIFT_USAGE_STATS=0" in profile and "/opt/swift/bin" in profile

    # the tool may touch activity: var/lib/swiftrun belongs to the SSH user
    uid = pwd.getpwnam(USER).pw_uid
    assert node.state("").stat().st_uid == uid and node.state("ready").stat().st_uid == uid

    # its install is the deadman's first tick: a stop before the timer's first run is a gap
    assert before <= int(node.state("tick").read_text()) <= int(time.time())
    # the installed deadman works: a node that ran (ticking every minute) past max_lifetime ->
    # shutdown. (A NOW 8 h on from the install tick alone is a stop now, not lifetime.)
    late = int(time.time()) + 28800
    node.state("tick").write_text(f"{late - 60}\n")
    dm = node.deadman(deadman, NOW=str(late))
    assert dm.returncode == 0, dm.stderr
    assert node.calls("shutdown") and "lifetime" in node.calls("shutdown")[0][-1]


def test_headnode_idempotent_rerun(tmp_path, node):
    node.preinstall_swift()
    disks = node.nvme(2)
    script = render_userdata(make_project(tmp_path, s3fs={"bucket": "my-bucket"}), "headnode",
                             cluster="tut", headnode_ip=None)
    assert_ready(node, node.boot(script))
    boot = node.state("boot").read_text()
    pid = node.unit_pid("swiftrun-coaster.service")
    calls = node.calls()

    proc = node.boot(script)
    assert_ready(node, proc)
    assert node.state("boot").read_text() == boot
    assert node.unit_pid("swiftrun-coaster.service") == pid and alive(pid)     # not restarted
    for name in ("mdadm", "mkfs.ext4", "mount", "s3fs"):
        assert len(node.calls(name)) == 1, name
    assert len(node.calls()) > len(calls)                                      # it did run again
    assert [d for d in disks if any(node.r(f"/dev/{d}") in c for c in node.calls("mdadm")[0])]
    lines = (node.root / "etc/fstab").read_text().splitlines()
    assert lines[0].startswith("LABEL=cloudimg-rootfs")               # the image's own line
    fstab = [line for line in lines[1:] if not line.startswith("#")]
    assert len(fstab) == 2 and len(set(fstab)) == 2, lines
    # each added line follows swiftrun's marker (what image build takes out of an image)
    assert [lines[i + 1] for i, line in enumerate(lines) if line.startswith("# swiftrun:")] == fstab
    assert "already mounted" in node.log()


# ----------------------------------------------------------------------------- disks

@pytest.mark.parametrize("kind,count", [("nvme", 0), ("nvme", 1), ("nvme", 2), ("nvme", 4),
                                        ("xvd", 0), ("xvd", 1), ("xvd", 2), ("xvd", 4)])
def test_instance_store_disks(tmp_path, node, kind, count):
    node.preinstall_swift()
    if kind == "nvme":
        disks = node.nvme(count)
    else:
        disks = node.xvd([f"xvd{chr(ord('b') + i)}" for i in range(count)])
    node.mounts(f"{node.r('/dev/')}{'nvme0n1p1' if kind == 'nvme' else 'xvda1'} / ext4 rw 0 0")
    proc = node.boot(render_userdata(make_project(tmp_path), "worker", cluster="tut",
                                     headnode_ip=HEADNODE_IP))
    assert_ready(node, proc)
    devs = [node.r(f"/dev/{d}") for d in disks]
    mkfs, mdadm, mount = node.calls("mkfs.ext4"), node.calls("mdadm"), node.calls("mount")
    scratch = node.r("/scratch")
    if count == 0:
        assert not mkfs and not mdadm and not mount
        assert not (node.root / "scratch").exists()
        assert "no instance-store disks" in node.log()
        return
    target = devs[0] if count == 1 else node.r("/dev/md0")
    if count == 1:
        assert not mdadm
    else:
        assert len(mdadm) == 1
        call = mdadm[0]
        assert call[1:3] == ["--create", target]
        assert "--level=0" in call and f"--raid-devices={count}" in call
        assert call[-count:] == devs
    assert len(mkfs) == 1 and mkfs[0][-1] == target
    assert mount == [["mount", "-o", "defaults,noatime", target, scratch]]
    assert f"{target} {scratch} ext4" in (node.root / "proc/mounts").read_text()
    fstab = (node.root / "etc/fstab").read_text()
    assert fstab.count(f" {scratch} ") == 1
    assert (node.root / "scratch").stat().st_uid == pwd.getpwnam(USER).pw_uid


def test_disks_in_use_are_left_alone(tmp_path, node):
    """Partitioned, mounted, swap and RAID-member disks are not instance stores to format."""
    node.preinstall_swift()
    node.xvd(["xvdb", "xvdc", "xvdd", "sde", "sdf"], partitions={"xvdb": ["xvdb1"]})
    (node.root / "sys/block/sdf/holders/md127").mkdir()
    node.mounts(f"{node.r('/dev/xvda1')} / ext4 rw 0 0", "/dev/xvdc /mnt ext4 rw 0 0")
    (node.root / "proc/swaps").write_text("Filename Type Size Used Priority\n/dev/xvdd partition 1 0 -2\n")
    node.nvme(0)
    ebs = node.root / "sys/block/nvme5n1"              # another EBS volume, not instance store
    (ebs / "device").mkdir(parents=True)
    (ebs / "device/model").write_text("Amazon Elastic Block Store\n")
    proc = node.boot(render_userdata(make_project(tmp_path), "headnode", cluster="tut", headnode_ip=None))
    assert_ready(node, proc)
    assert node.calls("mkfs.ext4") == [["mkfs.ext4", "-F", "-q", "-L", "swiftrun-scratch", "-E", "nodiscard",
                                        node.r("/dev/sde")]]
    assert not node.calls("mdadm")


def test_disk_command_failure_marks_step(tmp_path, node):
    node.preinstall_swift()
    node.nvme(1)
    bad = node.extra_bin / "mkfs.ext4"
    bad.write_text("#!/bin/bash\necho 'mkfs.ext4: Device size reported to be zero' >&2\nexit 1\n")
    bad.chmod(0o755)
    proc = node.boot(render_userdata(make_project(tmp_path), "headnode", cluster="tut", headnode_ip=None))
    assert_failed(node, proc, "disks", "mkfs.ext4")
    assert "Device size reported to be zero" in node.log()
    assert not started_services(node)


# ----------------------------------------------------------------------------- s3fs

@pytest.mark.parametrize("with_scratch", [False, True], ids=["no-scratch", "scratch"])
def test_s3fs_mount(tmp_path, node, with_scratch):
    node.preinstall_swift()
    if with_scratch:
        node.nvme(1)
    project = make_project(tmp_path, s3fs={"bucket": "my-bucket", "mount": "/s3"})
    proc = node.boot(render_userdata(project, "worker", cluster="tut", headnode_ip=HEADNODE_IP))
    assert_ready(node, proc)
    (call,) = node.calls("s3fs")
    assert call[1:4] == ["my-bucket", node.r("/s3"), "-o"]
    opts = call[4].split(",")
    user = pwd.getpwnam(USER)
    assert {"iam_role=auto", "allow_other", f"uid={user.pw_uid}", f"gid={user.pw_gid}"} <= set(opts)
    cache = f"use_cache={node.r('/scratch/s3fs-cache')}"
    assert (cache in opts) is with_scratch
    assert (node.root / "scratch/s3fs-cache").is_dir() is with_scratch
    assert (node.root / "s3").is_dir()
    assert "my-bucket " + node.r("/s3") + " fuse.s3fs" in (node.root / "etc/fstab").read_text()
    # s3fs comes after the disks
    names = [c[0] for c in node.calls()]
    if with_scratch:
        assert names.index("mkfs.ext4") < names.index("s3fs")


# ----------------------------------------------------------------------------- packages

def stock_project(tmp_path, node_images, **over) -> Project:
    """Stock Ubuntu: Swift from the web host's copy of the real distribution."""
    swift = {"install_url": SWIFT_URL, "install_sha256": node_images.sha256, **over.pop("swift", {})}
    return make_project(tmp_path, swift=swift, **over)


def test_packages_installed_when_missing(tmp_path, node, node_images):
    script = render_userdata(stock_project(tmp_path, node_images), "headnode", cluster="tut",
                             headnode_ip=None)
    assert_ready(node, node.boot(script))
    apt = node.calls("apt-get")
    assert ["apt-get", "-o", "DPkg::Lock::Timeout=600", "install", "-y", "--no-install-recommends",
            "default-jre-headless"] in apt
    assert any("update" in c for c in apt)
    # Ubuntu 24.04's default Java is 21; swift ran on it
    assert 'version "21.' in node.sh("java -version").stderr
    assert "Swift 0.96.2 git-rev:" in node.log()
    # installed: the next boot skips apt
    assert (node.root / "usr/bin/java").exists()
    assert_ready(node, node.boot(script))
    assert node.calls("apt-get") == apt


def test_first_boot_waits_out_apt_daily(tmp_path, node, node_images):
    """apt-daily holds the lists lock at first boot (the stand-in refuses `update` until the
    time in lock.held-until): the boot waits for it instead of failing after three tries."""
    import time
    lists = node.root / "var/lib/apt/lists"
    lists.mkdir(parents=True, exist_ok=True)
    (lists / "lock.held-until").write_text(f"{int(time.time()) + 25}\n")
    script = render_userdata(stock_project(tmp_path, node_images), "headnode", cluster="tut",
                             headnode_ip=None)
    assert_ready(node, node.boot(script))
    assert "apt is busy" in node.log()
    updates = [c for c in node.calls("apt-get") if "update" in c]
    assert len(updates) > 3            # more tries than the 3 a failed download gets


def headnode_keeps_the_tarball(tmp_path, node, node_images) -> None:
    """The headnode's agent serving the Swift tarball it downloaded (files/swift-SHA.tar.gz), as
    a real headnode's does for its workers; nothing else of the agent is there."""
    files = tmp_path / "headnode-files"
    (files / "files").mkdir(parents=True)
    os.link(node_images.dist / SWIFT_TARBALL_NAME,
            files / "files" / f"swift-{node_images.sha256.lower()}.tar.gz")
    node.net.serve(files, tmp_path / "headnode.log", node="headnode", port=AGENT_PORT)


def test_worker_installs_nothing_on_stock_ubuntu(tmp_path, node, node_images):
    """Ubuntu has Perl with its modules: a worker needs neither apt nor Java, nor the internet
    for Swift: it takes the tarball the headnode keeps."""
    headnode_keeps_the_tarball(tmp_path, node, node_images)
    proc = node.boot(render_userdata(stock_project(tmp_path, node_images), "worker", cluster="tut",
                                     headnode_ip=HEADNODE_IP))
    assert_ready(node, proc)
    assert "Swift tarball from the headnode" in node.log() and served(tmp_path, SWIFT_TARBALL_NAME) == 0
    assert not node.calls("apt-get")
    assert "java" not in node.sh("command -v java || echo none").stdout.replace("none", "")


HIDE_PERL_MODULES = """package HidePerlModules;
# an image with perl-base only: Getopt::Std, File::Copy & co. (perl-modules) are not there,
# until the apt-get stand-in has installed `perl`
@INC = grep { !m{/share/perl/} } @INC
    unless -e "$ENV{SWIFTRUN_NODE_ROOT}/var/lib/dpkg/installed/perl";
1;
"""


def test_worker_perl_modules_are_checked_and_installed(tmp_path, node, node_images):
    """perl-base alone lacks what worker.pl uses: the boot compiles worker.pl, installs the
    `perl` package when a module is missing, and fails with Perl's own words otherwise."""
    (node.extra_bin / "HidePerlModules.pm").write_text(HIDE_PERL_MODULES)
    hide = {"PERL5LIB": str(node.extra_bin), "PERL5OPT": "-MHidePerlModules"}
    script = render_userdata(stock_project(tmp_path, node_images), "worker", cluster="tut",
                             headnode_ip=HEADNODE_IP)
    headnode_keeps_the_tarball(tmp_path, node, node_images)
    assert_ready(node, node.boot(script, **hide))
    log = node.log()
    assert "worker.pl needs Perl modules this image lacks: Can't locate" in log
    assert "is not active yet" not in log              # the service's worker.pl compiles too
    installs = [c for c in node.calls("apt-get") if "install" in c]
    assert installs == [["apt-get", "-o", "DPkg::Lock::Timeout=600", "install", "-y",
                         "--no-install-recommends", "perl"]]


def test_apt_failure(tmp_path, node, node_images):
    proc = node.boot(render_userdata(stock_project(tmp_path, node_images), "headnode", cluster="tut",
                                     headnode_ip=None),
                     STANDIN_APT_FAIL="install")
    assert_failed(node, proc, "packages", "apt-get install default-jre-headless failed")


# ----------------------------------------------------------------------------- Swift

def flat_tarball(node_images, dest: Path) -> Path:
    """The distribution repacked without its top directory (bin/, lib/ at the root)."""
    with tarfile.open(dest, "w") as tar:
        for entry in sorted(node_images.unpacked.iterdir()):
            tar.add(entry, arcname=entry.name)
    return dest


def served(tmp_path: Path, name: str) -> int:
    """How often the web host served ``name``."""
    return (tmp_path / "web.log").read_text().count(f"GET /{name} ")


@pytest.mark.parametrize("top", ["swift-0.96.2/", ""], ids=["top-dir", "flat"])
def test_swift_downloaded_and_verified(tmp_path, node, node_images, web_dir, top):
    name = SWIFT_TARBALL_NAME if top else "swift-flat.tar"
    path = web_dir / name if not top else web_dir / SWIFT_TARBALL_NAME
    if not top:
        flat_tarball(node_images, path)
    project = make_project(tmp_path, swift={
        "install_url": f"http://{WEB}/{name}",
        "install_sha256": hashlib.sha256(path.read_bytes()).hexdigest().upper()})
    proc = node.boot(render_userdata(project, "headnode", cluster="tut", headnode_ip=None))
    assert_ready(node, proc)
    assert f"downloading http://{WEB}/{name}" in node.log() and served(tmp_path, name) == 1
    for tool in ("swift", "coaster-service", "worker.pl"):
        assert os.access(node.root / "opt/swift/bin" / tool, os.X_OK)
    assert not list((node.root / "var/tmp").iterdir())          # download and unpack dir removed
    assert alive(node.unit_pid("swiftrun-coaster.service"))
    # a re-run finds Swift installed
    assert_ready(node, node.boot(render_userdata(project, "headnode", cluster="tut", headnode_ip=None)))
    assert served(tmp_path, name) == 1


def test_preinstalled_swift_must_have_the_role_tools(tmp_path, node):
    node.preinstall_swift()
    (node.root / "opt/swift/bin/coaster-service").unlink()
    proc = node.boot(render_userdata(make_project(tmp_path), "headnode", cluster="tut", headnode_ip=None))
    assert_failed(node, proc, "swift", "bin/coaster-service is missing")


@pytest.mark.parametrize("case", ["wrong", "missing", "no-url", "404"])
def test_swift_download_refused(tmp_path, node, node_images, case):
    swift = {"install_url": SWIFT_URL, "install_sha256": node_images.sha256}
    expect = "SHA-256 mismatch"
    if case == "wrong":
        swift["install_sha256"] = hashlib.sha256(b"something else").hexdigest()
    elif case == "missing":
        swift["install_sha256"] = ""
        expect = "install_sha256 is missing"
    elif case == "no-url":
        swift = {}
        expect = "install_url is not set"
    else:
        swift["install_url"] = SWIFT_URL.replace("0.96.2", "9.9")
        expect = "download of"
    proc = node.boot(render_userdata(make_project(tmp_path, swift=swift), "headnode", cluster="tut",
                                     headnode_ip=None))
    assert_failed(node, proc, "swift", expect)
    assert not (node.root / "opt/swift/bin/swift").exists()
    assert not started_services(node)
    assert "FAILED in step swift: " in node.log() and expect in node.log()


# ----------------------------------------------------------------------------- worker

def test_worker_boot_with_init_script(tmp_path, node):
    node.preinstall_swift()
    node.nvme(1)
    init = tmp_path / "init.sh"
    init.write_text('#!/bin/bash\nset -e\necho "hello from the init script of $CLUSTER as $(id -u)"\n'
                    'echo worker-init >> "$SWIFTRUN_NODE_ROOT/var/log/standins.log"\n'
                    'touch "$SCRATCH/init-was-here"\n')
    project = make_project(tmp_path, ec2={"worker_init_script": init}, s3fs={"bucket": "my-bucket"})
    script = render_userdata(project, "worker", cluster="tut", headnode_ip=HEADNODE_IP)
    assert_ready(node, node.boot(script))
    assert f"hello from the init script of tut as {UID}" in node.log()
    assert (node.root / "scratch/init-was-here").exists()
    names = [c[0] for c in node.calls()]
    services = next(i for i, c in enumerate(node.calls()) if c[:3] == ["systemctl", "enable", "--now"])
    assert names.index("mount") < names.index("s3fs") < names.index("worker-init") < services
    # instance store: a oneshot unit sets /scratch up again at every later boot (enabled, not run)
    assert ["systemctl", "enable", "swiftrun-scratch.service"] in node.calls()

    unit = (node.root / "etc/systemd/system/swiftrun-worker.service").read_text()
    assert "Restart=always" in unit and "RestartSec=5" in unit and f"User={USER}" in unit
    pid = node.unit_pid("swiftrun-worker.service")
    assert alive(pid)
    logdir = node.r("/var/log/swiftrun/worker")
    args = node.unit_cmdline("swiftrun-worker.service")
    assert args[-6:-2] == [node.r("/opt/swift/bin/worker.pl"), "-c", "4", f"http://{HEADNODE_IP}:50005"]
    assert args[-2].startswith("tut-") and args[-1] == logdir
    assert ["systemctl", "enable", "--now", "swiftrun-worker.service",
            "swiftrun-deadman.timer"] in node.calls("systemctl")
    env = (node.root / "etc/swiftrun/node.env").read_text()
    assert f"HEADNODE_IP={HEADNODE_IP}\n" in env and "ROLE=worker\n" in env

    # re-run: the init script does not run twice
    assert_ready(node, node.boot(script))
    assert names.count("worker-init") == 1 and [c[0] for c in node.calls()].count("worker-init") == 1
    assert "already ran" in node.log()


def test_worker_init_script_failure(tmp_path, node):
    node.preinstall_swift()
    init = tmp_path / "init.sh"
    init.write_text("#!/bin/bash\necho about to fail\nexit 7\n")
    project = make_project(tmp_path, ec2={"worker_init_script": init})
    proc = node.boot(render_userdata(project, "worker", cluster="tut", headnode_ip=HEADNODE_IP))
    assert_failed(node, proc, "worker_init", "exited with status 7")
    assert "about to fail" in node.log()
    assert not node.unit_pid("swiftrun-worker.service")
    assert not started_services(node)


# ----------------------------------------------------------------------------- the systemctl stand-in

def test_systemctl_standin_start_stop(node):
    unit = node.root / "etc/systemd/system/demo.service"
    unit.parent.mkdir(parents=True)
    (node.base / "wd").mkdir()
    unit.write_text(f"[Service]\nWorkingDirectory={node.base / 'wd'}\nEnvironment=GREETING=hi\n"
                    f"ExecStart=/bin/bash -c 'echo $GREETING > out; exec sleep 600'\n")
    env = node.environ()
    run = lambda *a: subprocess.run(["systemctl", *a], env=env, capture_output=True, text=True)  # noqa: E731
    assert run("is-active", "--quiet", "demo").returncode == 3
    assert run("enable", "--now", "demo.service", "demo.timer").returncode == 0
    pid = node.unit_pid("demo.service")
    assert alive(pid) and not node.unit_pid("demo.timer")
    assert wait_for(node.base / "wd/out").read_text() == "hi\n"
    assert run("start", "demo").returncode == 0 and node.unit_pid("demo.service") == pid
    assert run("is-active", "demo").stdout.strip() == "active"
    assert run("stop", "demo").returncode == 0
    assert not alive(pid) and run("is-active", "--quiet", "demo").returncode == 3
    assert run("start", "missing.service").returncode == 5
    assert ["systemctl", "stop", "demo"] in node.calls("systemctl")


# ----------------------------------------------------------------------------- deadman

def write_env(node: Node, **values) -> None:
    base = dict(ROLE="headnode", CLUSTER="tut", SSH_USER=USER, HEADNODE_IP="", WORKER_PORT="50005",
                IDLE_TIMEOUT="1800", MAX_LIFETIME="28800", HEADNODE_GRACE="900")
    base.update({k: str(v) for k, v in values.items()})
    path = node.root / "etc/swiftrun/node.env"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{k}={v}\n" for k, v in base.items()))


def set_boot(node: Node, when: int) -> None:
    node.state("").mkdir(parents=True, exist_ok=True)
    node.state("boot").write_text(f"{when}\n")


def touch(path: Path, when: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()
    os.utime(path, (when, when))


def shutdowns(node: Node) -> list[str]:
    return [c[-1] for c in node.calls("shutdown")]


def unused_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_deadman(node: Node, **env) -> subprocess.CompletedProcess:
    # the deadman runs on this machine's own network: by default it watches a port nobody uses
    # for SSH connections (this machine's port 22 may well have some)
    env.setdefault("SSH_PORT", unused_port())
    proc = node.deadman(SWIFTRUN_USER_HOME=str(node.base / "home"), **{k: str(v) for k, v in env.items()})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def test_deadman_headnode_idle(node):
    now = int(time.time())
    write_env(node, IDLE_TIMEOUT=600)
    set_boot(node, now - 5000)
    touch(node.state("activity"), now - 601)
    proc = run_deadman(node, NOW=now)
    assert len(shutdowns(node)) == 1 and "idle 601s" in shutdowns(node)[0]
    assert node.calls("shutdown")[0][1:3] == ["-h", "now"]
    assert "SHUTDOWN: idle" in proc.stdout
    assert "SHUTDOWN: idle" in (node.root / "var/log/swiftrun/deadman.log").read_text()


def test_deadman_headnode_active(node):
    now = int(time.time())
    write_env(node, IDLE_TIMEOUT=600)
    set_boot(node, now - 5000)
    touch(node.state("activity"), now - 100)
    proc = run_deadman(node, NOW=now)
    assert not shutdowns(node)
    assert "keep: age 5000s, idle 100s" in proc.stdout


def test_deadman_idle_counts_from_boot_without_activity(node):
    now = int(time.time())
    write_env(node)
    set_boot(node, now - 100)
    run_deadman(node, NOW=now, IDLE_TIMEOUT=100)          # the environment wins over node.env
    assert shutdowns(node) and "idle 100s" in shutdowns(node)[0]


def test_deadman_running_swift_counts_as_activity(node):
    now = int(time.time())
    write_env(node, IDLE_TIMEOUT=600)
    set_boot(node, now - 5000)
    touch(node.state("activity"), now - 5000)
    runs = node.base / "home/swiftrun/p4/.swiftrun/runs"
    runs.mkdir(parents=True)
    (runs / "r1.pid").write_text(f"{os.getpid()}\n")
    run_deadman(node, NOW=now)
    assert not shutdowns(node)
    assert node.state("activity").stat().st_mtime > now - 100
    # once the run has ended (exit file), idle counts again
    (runs / "r1.exit").write_text("0\n")
    touch(node.state("activity"), now - 5000)
    run_deadman(node, NOW=now)
    assert len(shutdowns(node)) == 1


def test_deadman_open_ssh_connection_counts_as_activity(node):
    """An upload, a fetch, `logs` or an interactive `connect` near the idle limit: the headnode
    is not shut down under it; once the connection is closed, idle counts again."""
    import socket

    now = int(time.time())
    write_env(node, IDLE_TIMEOUT=600)
    set_boot(node, now - 5000)
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        client = socket.create_connection(("127.0.0.1", port))
        conn, _ = server.accept()
        try:
            touch(node.state("activity"), now - 5000)
            proc = run_deadman(node, NOW=now, SSH_PORT=port)
            assert not shutdowns(node) and "SSH connection is open" in proc.stdout
        finally:
            conn.close()
            client.close()
    touch(node.state("activity"), now - 5000)
    run_deadman(node, NOW=now, SSH_PORT=port)
    assert len(shutdowns(node)) == 1


@pytest.mark.parametrize("role", ["headnode", "worker"])
def test_deadman_lifetime(node, role):
    now = int(time.time())
    write_env(node, ROLE=role, MAX_LIFETIME=3600, HEADNODE_IP="127.0.0.1")
    set_boot(node, now - 3599)
    touch(node.state("activity"), now)
    with socket.socket() as srv:                             # headnode reachable: only the lifetime counts
        srv.bind(("127.0.0.1", 0))
        srv.listen(5)
        port = srv.getsockname()[1]
        run_deadman(node, NOW=now, WORKER_PORT=port)
        assert not shutdowns(node)
        run_deadman(node, NOW=now + 1, WORKER_PORT=port)
    assert len(shutdowns(node)) == 1 and "lifetime 3600s" in shutdowns(node)[0]


def test_deadman_disabled_limits(node):
    now = int(time.time())
    write_env(node, IDLE_TIMEOUT=0, MAX_LIFETIME=0)
    set_boot(node, now - 10 ** 6)
    run_deadman(node, NOW=now)
    assert not shutdowns(node)


def test_deadman_headnode_gone(node):
    now = int(time.time())
    with socket.socket() as reserved:                        # bound, never listening: connect refused
        reserved.bind(("127.0.0.1", 0))
        port = reserved.getsockname()[1]
        write_env(node, ROLE="worker", HEADNODE_IP="127.0.0.1", WORKER_PORT=port, HEADNODE_GRACE=300)
        set_boot(node, now - 1000)
        run_deadman(node, NOW=now)
        assert not shutdowns(node)
        assert node.state("headnode-unreachable-since").read_text().strip() == str(now)
        proc = run_deadman(node, NOW=now + 299)
        assert not shutdowns(node) and "unreachable for 299s" in proc.stdout
        run_deadman(node, NOW=now + 300)
    assert len(shutdowns(node)) == 1 and "unreachable for 300s" in shutdowns(node)[0]


def test_deadman_headnode_back_resets_grace(node):
    now = int(time.time())
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        port = srv.getsockname()[1]
        write_env(node, ROLE="worker", HEADNODE_IP="127.0.0.1", WORKER_PORT=port, HEADNODE_GRACE=300)
        set_boot(node, now - 1000)
        run_deadman(node, NOW=now)                           # refused: grace starts
        assert node.state("headnode-unreachable-since").exists()
        srv.listen(5)
        proc = run_deadman(node, NOW=now + 200)              # reachable again: grace cleared
        assert "reachable" in proc.stdout
        assert not node.state("headnode-unreachable-since").exists()
    assert not shutdowns(node)


def test_deadman_before_boot_marker(node):
    write_env(node)
    proc = run_deadman(node)
    assert not shutdowns(node) and "no boot time" in proc.stdout


def test_deadman_a_headnode_started_again_does_not_count_its_stopped_hours(node):
    """stop-headnode, then up ten hours later: the first tick must not see a lifetime or an
    idle time that includes the hours it was stopped (issue 12, the worst of its list)."""
    now = int(time.time())
    write_env(node, IDLE_TIMEOUT=600, MAX_LIFETIME=7200)
    set_boot(node, now - 3000)
    touch(node.state("activity"), now - 10)
    run_deadman(node, NOW=now)                               # a tick while it runs
    later = now + 36000                                      # stopped for ten hours
    proc = run_deadman(node, NOW=later)
    assert not shutdowns(node), proc.stdout
    assert "started again after 35940s stopped" in proc.stdout
    assert "keep: age 3060s" in proc.stdout                  # 3000 s before, one tick's minute after
    run_deadman(node, NOW=later + 300)
    assert not shutdowns(node)
    run_deadman(node, NOW=later + 600)                       # idle counts from the start
    assert len(shutdowns(node)) == 1 and "idle 600s" in shutdowns(node)[0]
