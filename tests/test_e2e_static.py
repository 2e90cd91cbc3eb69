"""Issue 2/3 with provider = "static": existing hosts, reached over SSH.

The two hosts are nodes of a test network (namespaces with their own addresses, tests/support/
netns.py) with Java 21 and the real Swift/K 0.96.2 installed (the custom test image), each with a
real sshd; swiftrun reaches them through the test proxy, from the caller's address. Nothing is
launched: `up` starts the real coaster-service on the headnode and worker.pl on the worker, a run
works as on EC2, and `down` stops exactly those processes and leaves the hosts alone.
"""

from __future__ import annotations

import getpass
import json
import os
import shutil
import signal
import sys
from pathlib import Path

import pytest

from tests.support import netns
from tests.support.cli import swiftrun
from tests.support.cloud import PROXY, NodeSshd, _kill_pids, _pids_with_env
from tests.support.nodeimage import engine_unavailable
from tests.support.schemas import validate
from tests.support.sshd import keygen

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
ADDRESSES = {"head": "10.201.0.1", "w1": "10.201.0.2"}


@pytest.fixture
def hosts(tmp_path, monkeypatch, node_images):
    why = netns.unavailable() or engine_unavailable()
    if why:
        pytest.skip(f"static test hosts unavailable: {why}")
    monkeypatch.setenv("SWIFTRUN_HOME", str(tmp_path / "swiftrun-home"))
    key = keygen(tmp_path / "keys" / "id_ed25519")
    net = netns.Network().start()
    hosts_dir = tmp_path / "hosts"
    hosts_dir.mkdir()
    started = []
    try:
        for name, ip in ADDRESSES.items():
            root, home = tmp_path / name / "root", tmp_path / name / "home"
            root.mkdir(parents=True)
            home.mkdir(parents=True)
            node_images.install("baked", root)      # Java 21 and Swift in /opt/swift
            host = net.add_node(name, ip)
            # Swift is found on PATH here: a lab machine where someone installed it
            env = {"HOME": str(home), "SWIFTRUN_NODE_ROOT": str(root),
                   "PATH": f"{root}/opt/swift/bin:" + node_images.node_path(root, [])}
            sshd = NodeSshd(tmp_path / name / "sshd", Path(str(key) + ".pub"), env=env,
                            listen="0.0.0.0", netns=host.netns, argv_prefix=host.argv([])).start()
            (hosts_dir / ip).write_text(f"{net.gw} {ip}\n")
            started.append((sshd, root, home))
        yield key, started, f"{sys.executable} {PROXY} {hosts_dir} %h %p"
    finally:
        for sshd, root, home in started:
            for pidfile in (home / ".swiftrun-node").glob("*.pid"):
                try:
                    os.killpg(int(pidfile.read_text()), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
            sshd.stop()
            _kill_pids(_pids_with_env(f"SWIFTRUN_NODE_ROOT={root}".encode()))
        net.close()


def _alive(pidfile: Path) -> bool:
    try:
        os.kill(int(pidfile.read_text()), 0)
        return True
    except (OSError, ValueError):
        return False


def static_project(proj: Path, hosts) -> None:
    """swiftrun.toml for cluster "lab": the two hosts as headnode and worker, their host keys
    known beforehand (a static host's key is never trusted on first contact)."""
    key, started, proxy = hosts
    pins = Path(os.environ["SWIFTRUN_HOME"]) / "clusters" / "lab" / "known_hosts"
    pins.parent.mkdir(parents=True, exist_ok=True)
    pins.write_text("".join(f"{ip} ssh-ed25519 {sshd.host_key_pub}\n"
                            for ip, (sshd, _, _) in zip(ADDRESSES.values(), started)))
    (proj / "swiftrun.toml").write_text(f"""
[cluster]
name = "lab"
provider = "static"
workers = 1

[ssh]
user = "{getpass.getuser()}"
key_file = "{key}"
proxy_command = {json.dumps(proxy)}

[static]
headnode = "{ADDRESSES['head']}"
workers = ["{ADDRESSES['w1']}"]
""")


def test_static_up_run_down(hosts, tmp_path):
    key, ((head, head_root, head_home), (w1, w1_root, w1_home)), _ = hosts
    proj = tmp_path / "p4"
    shutil.copytree(EXAMPLES / "p4", proj)
    static_project(proj, hosts)
    up = json.loads(swiftrun("up", "--json", cwd=proj).stdout)
    validate("up", up)   # static hosts: no prices, no API calls, the same schema
    assert up["created"] == [] and len(up["nodes"]) == 2
    coaster_pid = head_home / ".swiftrun-node" / "coaster.pid"
    worker_pid = w1_home / ".swiftrun-node" / "worker.pid"
    assert _alive(coaster_pid) and _alive(worker_pid)
    # worker.pl was pointed at the headnode's coaster worker port with the concurrency asked.
    # The pidfile names the loop that supervises worker.pl (it restarts it, as systemd does on
    # EC2 nodes); worker.pl's own arguments follow its path.
    cmdline = Path(f"/proc/{int(worker_pid.read_text())}/cmdline").read_bytes().split(b"\0")
    worker = cmdline[next(i for i, a in enumerate(cmdline) if a.endswith(b"/worker.pl")):]
    assert f"http://{ADDRESSES['head']}:50005".encode() in worker
    assert worker[worker.index(b"-c") + 1] == b"4"
    # A second up starts nothing twice.
    again = swiftrun("up", cwd=proj).stderr
    assert "already running" in again

    res = swiftrun("p4.swift", "--keep-cluster", cwd=proj)
    assert sorted(int(x) for x in (proj / "unsorted.txt").read_text().split()) == \
        [int(x) for x in (proj / "sorted.txt").read_text().split()]
    assert (proj / "run001" / "swift.log").is_file()
    assert "Final status" in res.stdout
    # The apps ran on the worker (its worker.pl's block), and host keys were pinned in the
    # cluster's own known_hosts.
    assert "workerid=lab-" in (proj / "run001" / "swift.log").read_text()
    known = (tmp_path / "swiftrun-home" / "clusters" / "lab" / "known_hosts").read_text()
    assert ADDRESSES["head"] in known

    validate("list", json.loads(swiftrun("list", "--json", cwd=proj).stdout))
    validate("down", json.loads(swiftrun("down", "--json", cwd=proj).stdout))
    assert not _alive(coaster_pid) and not _alive(worker_pid)
    assert head.running and w1.running   # the hosts themselves are left alone
