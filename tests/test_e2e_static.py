"""Issue 2/3 with provider = "static": existing hosts (real loopback sshds) reached over SSH.

Nothing is launched: `up` starts coaster-service on the headnode and worker.pl on the workers,
a run works as on EC2, and `down` stops exactly those processes and leaves the hosts alone.
"""

from __future__ import annotations

import getpass
import json
import os
import shutil
import signal
from pathlib import Path

import pytest

from tests.support.cli import swiftrun
from tests.support.cloud import STANDIN_SWIFT_HOME, NodeSshd
from tests.support.sshd import keygen

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.fixture
def hosts(tmp_path, monkeypatch):
    monkeypatch.setenv("SWIFTRUN_HOME", str(tmp_path / "swiftrun-home"))
    key = keygen(tmp_path / "keys" / "id_ed25519")
    started = []
    for name in ("head", "w1"):
        root, home = tmp_path / name / "root", tmp_path / name / "home"
        root.mkdir(parents=True)
        home.mkdir(parents=True)
        env = {"HOME": str(home), "SWIFTRUN_NODE_ROOT": str(root),
               # Swift is found on PATH here (no Swift home on these hosts).
               "PATH": f"{STANDIN_SWIFT_HOME / 'bin'}:/usr/local/bin:/usr/bin:/bin"}
        sshd = NodeSshd(tmp_path / name / "sshd", Path(str(key) + ".pub"), env=env).start()
        started.append((sshd, root, home))
    yield key, started
    for sshd, root, home in started:
        for pidfile in (home / ".swiftrun-node").glob("*.pid"):
            try:
                os.killpg(int(pidfile.read_text()), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
        sshd.stop()


def _alive(pidfile: Path) -> bool:
    try:
        os.kill(int(pidfile.read_text()), 0)
        return True
    except (OSError, ValueError):
        return False


def static_project(proj: Path, hosts) -> None:
    """swiftrun.toml for cluster "lab": the two loopback sshd hosts as headnode and worker."""
    key, ((head, _, _), (w1, _, _)) = hosts
    (proj / "swiftrun.toml").write_text(f"""
[cluster]
name = "lab"
provider = "static"
workers = 1

[ssh]
user = "{getpass.getuser()}"
key_file = "{key}"

[static]
headnode = "127.0.0.1:{head.port}"
workers = ["127.0.0.1:{w1.port}"]
""")


def test_static_up_run_down(hosts, tmp_path):
    key, ((head, head_root, head_home), (w1, w1_root, w1_home)) = hosts
    proj = tmp_path / "p4"
    shutil.copytree(EXAMPLES / "p4", proj)
    static_project(proj, hosts)
    up = json.loads(swiftrun("up", "--json", cwd=proj).stdout)
    assert up["created"] == [] and len(up["nodes"]) == 2
    coaster_pid = head_home / ".swiftrun-node" / "coaster.pid"
    worker_pid = w1_home / ".swiftrun-node" / "worker.pid"
    assert _alive(coaster_pid) and _alive(worker_pid)
    # worker.pl was pointed at the headnode's coaster worker port with the concurrency asked.
    recorded = (w1_root / "var/log/worker-standin.log").read_text()
    assert "http://127.0.0.1:50005" in recorded and '"-c"' in recorded and '"4"' in recorded
    # A second up starts nothing twice.
    again = swiftrun("up", cwd=proj).stderr
    assert "already running" in again

    res = swiftrun("p4.swift", "--keep-cluster", cwd=proj)
    assert sorted(int(x) for x in (proj / "unsorted.txt").read_text().split()) == \
        [int(x) for x in (proj / "sorted.txt").read_text().split()]
    assert (proj / "run001" / "swift.log").is_file()
    assert "Final status" in res.stdout
    # Host keys were pinned in the cluster's own known_hosts.
    known = (tmp_path / "swiftrun-home" / "clusters" / "lab" / "known_hosts").read_text()
    assert f"[127.0.0.1]:{head.port}" in known

    swiftrun("down", cwd=proj)
    assert not _alive(coaster_pid) and not _alive(worker_pid)
    assert head.running and w1.running   # the hosts themselves are left alone
