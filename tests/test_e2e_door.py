"""Issue 13 end to end: the user's machine talks to the headnode only, at any number of workers.

Workers without a public IPv4 address boot from a baked image, report to the headnode, run the
jobs and are reached through it; port 22 on a worker answers the cluster, not the caller; a
worker that fails at boot is named with its step without any connection to it; a cluster of
many workers comes up cold and warm in a bounded number of EC2 calls and client connections.
200 workers is the bench's (bench/bench_door.py): every instance here is a namespace, an sshd, a
boot script and a worker.pl on the test machine, and CI has 2 cores and 20 minutes.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from tests.support.cli import cluster_instances, swiftrun, toml_project
from tests.test_e2e_run import copy_example

MANY = 24     # workers in the scale test (the bench goes to 200)


def tags(inst):
    return {t["Key"]: t["Value"] for t in inst.get("Tags", [])}


def calls(cloud) -> int:
    return sum(cloud.fault_state()["calls"].values())


def opened(log) -> list[str]:
    return log.read_text().split() if log.exists() else []


def test_workers_without_public_ip_boot_run_jobs_and_are_reached_through_the_headnode(cloud, tmp_path):
    proj = copy_example("p4", tmp_path / "p4", cloud, name="noip", workers=2, image=cloud.baked_ami)
    # plan says it, and counts only the headnode's address in the cost
    plan = json.loads(swiftrun("plan", "p4.swift", "--json", cwd=proj).stdout)
    assert plan["worker_public_ip"]["public"] is False and "custom" in plan["worker_public_ip"]["why"]
    assert plan["cost"]["public_ipv4"]["count"] == 1
    text = swiftrun("plan", "p4.swift", cwd=proj).stdout
    assert "workers get no public IPv4 address" in text and "1 x public IPv4" in text

    conns = tmp_path / "conns.log"
    doc = json.loads(swiftrun("p4.swift", "--keep-cluster", "--json", cwd=proj,
                              env={"TESTCLOUD_PROXY_LOG": str(conns)}).stdout)
    assert doc["exit_code"] == 0
    numbers = [int(x) for x in (proj / "unsorted.txt").read_text().split()]
    assert [int(x) for x in (proj / "sorted.txt").read_text().split()] == sorted(numbers)
    insts = cluster_instances(cloud, "noip")
    workers = [i for i in insts if tags(i)["swiftrun:role"] == "worker"]
    head = next(i for i in insts if tags(i)["swiftrun:role"] == "headnode")
    assert len(workers) == 2 and all(not w.get("PublicIpAddress") for w in workers), workers
    assert head.get("PublicIpAddress")
    # the jobs ran on the workers (swift.log names the worker blocks that ran them)
    log = (proj / "run001" / "swift.log").read_text()
    assert any(w["InstanceId"] in log for w in workers)
    assert set(opened(conns)) == {head["PublicIpAddress"]}, opened(conns)

    out = swiftrun("connect", "worker0", "--", "hostname", cwd=proj,
                   env={"TESTCLOUD_PROXY_LOG": str(conns)})
    assert out.stdout.strip()
    assert set(opened(conns)) == {head["PublicIpAddress"]}       # through the headnode
    printed = swiftrun("connect", "worker0", "--print", cwd=proj).stdout
    assert "ProxyCommand=" in printed and any(w["PrivateIpAddress"] in printed for w in workers)
    swiftrun("down", cwd=proj)
    assert cluster_instances(cloud, "noip") == []


def test_a_worker_s_port_22_answers_the_cluster_not_the_caller(cloud, tmp_path):
    """Stock image: the workers need the internet at boot, so they have a public address; still
    the caller cannot reach their sshd (only the headnode's door group opens 22 to ssh_cidr)."""
    proj = tmp_path / "proj"
    toml_project(proj, cloud, name="shut", workers=1)
    swiftrun("up", cwd=proj)
    insts = cluster_instances(cloud, "shut")
    worker = next(i for i in insts if tags(i)["swiftrun:role"] == "worker")
    head = next(i for i in insts if tags(i)["swiftrun:role"] == "headnode")
    assert worker.get("PublicIpAddress"), "a stock-image worker has a public address by default"

    def banner(host: str) -> str:
        argv = cloud.proxy_command.replace("%h", host).replace("%p", "22").split()
        try:
            res = subprocess.run(argv, input=b"", capture_output=True, timeout=20,
                                 env={"TESTCLOUD_PROXY_TIMEOUT": "3", "PATH": "/usr/bin:/bin"})
        except subprocess.TimeoutExpired as exc:
            return (exc.stdout or b"").decode(errors="replace")
        return res.stdout.decode(errors="replace")

    assert banner(head["PublicIpAddress"]).startswith("SSH-")        # the door answers
    assert not banner(worker["PublicIpAddress"]).startswith("SSH-")  # a worker does not
    # ... but the headnode reaches it (connect worker0 goes through it)
    assert swiftrun("connect", "worker0", "--", "echo", "inside", cwd=proj).stdout.strip() == "inside"
    swiftrun("down", cwd=proj)


def test_a_worker_failing_at_boot_is_named_with_its_step_without_a_connection_to_it(cloud, tmp_path):
    proj = tmp_path / "proj"
    (proj).mkdir()
    (proj / "init.sh").write_text("#!/bin/sh\necho 'no licence server' >&2\nexit 7\n")
    toml_project(proj, cloud, name="bad", workers=1, image=cloud.baked_ami)
    toml = proj / "swiftrun.toml"
    toml.write_text(toml.read_text().replace("[ec2]\n", '[ec2]\nworker_init_script = "init.sh"\n', 1))
    conns = tmp_path / "conns.log"
    res = swiftrun("up", "--keep-on-failure", cwd=proj, check=False,
                   env={"TESTCLOUD_PROXY_LOG": str(conns)})
    assert res.returncode != 0
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("swiftrun: error")]
    assert len(errors) == 1, res.stderr
    assert "worker0 (i-" in errors[0] and "at step worker_init" in errors[0], errors[0]
    assert "exited with status 7" in errors[0]
    insts = cluster_instances(cloud, "bad")
    head = next(i for i in insts if tags(i)["swiftrun:role"] == "headnode")
    worker = next(i for i in insts if tags(i)["swiftrun:role"] == "worker")
    assert worker.get("PublicIpAddress")     # an init script may download: it has one
    assert set(opened(conns)) == {head["PublicIpAddress"]}, opened(conns)   # never the worker
    # its boot log, through the headnode, with the host key it reported pinned
    boot = swiftrun("logs", "--boot", "worker0", cwd=proj, env={"TESTCLOUD_PROXY_LOG": str(conns)})
    assert "no licence server" in boot.stdout and "FAILED in step worker_init" in boot.stdout
    assert set(opened(conns)) == {head["PublicIpAddress"]}, opened(conns)
    swiftrun("down", cwd=proj)


def test_many_workers_cold_and_warm_up_a_run_and_down_through_one_door(cloud, tmp_path):
    proj = copy_example("p4", tmp_path / "p4", cloud, name="many", workers=MANY,
                        image=cloud.baked_ami)
    conns = tmp_path / "cold.log"
    before = calls(cloud)
    up = json.loads(swiftrun("up", "--json", cwd=proj, timeout=900,
                             env={"TESTCLOUD_PROXY_LOG": str(conns),
                                  "SWIFTRUN_BOOT_TIMEOUT": "600"}).stdout)
    cold = calls(cloud) - before
    assert len(up["created"]) == MANY + 1 and cold <= 12, (cold, cloud.fault_state()["calls"])
    assert len(opened(conns)) <= 2 and len(set(opened(conns))) == 1, opened(conns)
    assert all(n["state"] == "running" for n in up["nodes"])

    warm_log = tmp_path / "warm.log"
    before = calls(cloud)
    again = json.loads(swiftrun("up", "--json", cwd=proj, timeout=300,
                                env={"TESTCLOUD_PROXY_LOG": str(warm_log)}).stdout)
    assert again["reused"] and calls(cloud) - before == 1
    assert len(opened(warm_log)) <= 2

    run_log = tmp_path / "run.log"
    doc = json.loads(swiftrun("p4.swift", "--json", cwd=proj, timeout=600,
                              env={"TESTCLOUD_PROXY_LOG": str(run_log)}).stdout)
    assert doc["exit_code"] == 0 and doc["dissolved"]
    numbers = [int(x) for x in (proj / "unsorted.txt").read_text().split()]
    assert [int(x) for x in (proj / "sorted.txt").read_text().split()] == sorted(numbers)
    assert len(opened(run_log)) <= 2
    assert cluster_instances(cloud, "many") == []


def _watch_here(readiness, cmd: str, cwd: Path):
    """A ``Watch`` reading ``cmd`` run by a real sh here (instead of on a headnode)."""
    proc = subprocess.Popen(["sh", "-c", cmd], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)
    remote = type("R", (), {"popen": lambda self, target, command, **kw: proc})()
    return readiness.Watch(type("C", (), {"remote": remote})(), None, [], 0), proc


def test_the_watch_sends_only_what_changed_and_quotes_the_ids(tmp_path):
    # what `up` runs on the headnode for the whole wait, run by a real sh over a reports
    # directory: the first lot holds the workers that reported, a later one only the report
    # that changed, a quiet look sends nothing; a name that is no instance id never reaches
    # the shell; closed by the client, it ends and leaves no temporary files
    from swiftrun.cluster import readiness

    reports = tmp_path / "workers"
    reports.mkdir()
    for iid in ("i-0a", "i-0c"):
        (reports / iid).write_text(json.dumps({"id": iid, "state": "booting"}) + "\n")
    (tmp_path / "secret").write_text("not a report\n")
    ids = ["i-0c", "i-0a", "i-0b", "../secret", "$(touch pwned)", "-n"]
    cmd = readiness.watch_command(ids, 100).replace(readiness.STATE_DIR + "/workers", str(reports))
    assert cmd.count("cat --") == 1 and cmd.count("ss -Htn") == 1
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    watch, proc = _watch_here(readiness, f"TMPDIR={tmp}; export TMPDIR; {cmd}", tmp_path)
    try:
        first = [json.loads(line)["id"] for line in watch.lot(10) if line.startswith("{")]
        assert first == ["i-0a", "i-0c"]
        (reports / "i-0b").write_text(json.dumps({"id": "i-0b", "state": "ready"}) + "\n")
        assert [line for line in watch.lot(10) if line.startswith("{")] == [
            json.dumps({"id": "i-0b", "state": "ready"})]
        assert [line for line in watch.lot(1.2) if line.strip()] == []
    finally:
        watch.close()
    assert proc.poll() is not None and list(tmp.iterdir()) == []
    assert not (tmp_path / "pwned").exists() and not (reports / "pwned").exists()
    assert readiness.watch_command(["../x"], 10) == "true"
    # closed without a word (its output gone), it ends by itself within ten quiet looks
    proc = subprocess.Popen(["sh", "-c", f"TMPDIR={tmp}; export TMPDIR; {cmd}"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    proc.stdout.readline()
    proc.stdout.close()
    assert proc.wait(timeout=30) == 0 and list(tmp.iterdir()) == []


def test_two_lots_in_one_read_are_both_delivered(tmp_path):
    # the headnode can print a second lot before the client reads the first: both arrive, in
    # order (a lost lot is a report never seen again: the watch sends only what is new)
    from swiftrun.cluster import readiness

    watch, proc = _watch_here(readiness, "printf '{\\n#lot\\n[\\n]\\n#lot\\n'; sleep 30", tmp_path)
    try:
        time.sleep(0.3)                 # both lots are in the pipe before the first read
        assert watch.lot(10) == ["{"]
        assert watch.lot(10) == ["[", "]"]
        assert watch.lot(0.2) == []
    finally:
        watch.close()


def test_a_watch_that_keeps_ending_fails_the_wait_with_what_ssh_said(monkeypatch):
    # the watch restarts after it ends (a dropped connection), once a second at most; three
    # ends in a row without a lot fail the wait with the last line ssh printed
    from swiftrun.cluster import readiness
    from swiftrun.errors import RemoteError

    started = []

    class Remote:
        def popen(self, target, command, **kw):
            started.append(command)
            return subprocess.Popen(["sh", "-c", "echo 'ssh: connect to host: refused' >&2; "
                                     "exit 255"], **kw)

    watch = readiness.Watch(type("C", (), {"remote": Remote()})(), None, ["i-0a"], 10)
    monkeypatch.setattr(readiness.time, "sleep", lambda s: None)
    clock = [0.0]
    monkeypatch.setattr(readiness.time, "monotonic", lambda: clock[0])
    with pytest.raises(RemoteError, match=r"ended 3 times in a row \(exit 255\): ssh: connect"):
        for _ in range(10):
            watch.lot(5.0)
            clock[0] += 1.0
    assert len(started) == 3


class _Lots:
    """The watch's lots as scripted, the clock moving as the test says."""

    def __init__(self, lots, clock):
        self.lots, self.clock, self.closed, self.read = list(lots), clock, False, 0

    def lot(self, timeout):
        self.read += 1
        self.clock[0] += 1.0
        return self.lots.pop(0) if self.lots else []

    def close(self):
        self.closed = True


def test_a_booted_worker_is_ready_once_its_worker_pl_holds_a_connection(monkeypatch):
    # the headnode's lots: the reports, then the connections as `ss` prints them. The worker
    # whose address holds no connection to the worker port waits (its worker.pl is still
    # connecting), then is named in a warning once the grace is over; an IPv4-mapped peer
    # counts as its IPv4 address; each lot's host keys are pinned in one write
    from types import SimpleNamespace

    from swiftrun.cloud.base import Node
    from swiftrun.cluster import readiness
    from swiftrun.ui import UI

    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE"
    reports = [json.dumps({"id": i, "state": "ready", "hostkey": key}) for i in ("i-a", "i-b")]
    clock = [0.0]
    lots = _Lots([[readiness._SS, *reports],
                  ["0 0 [::ffff:10.0.0.9]:50005 [::ffff:10.0.0.1]:41000"]], clock)
    pinned = []

    class Remote:
        def pin_many(self, pins):
            pinned.append([alias for _, alias, _, _ in pins])

    ui = UI(quiet=True)
    cluster = SimpleNamespace(remote=Remote(), ui=ui, target=lambda n: n.id)
    head = Node(id="i-h", role="headnode", state="running", private_ip="10.0.0.9")
    workers = [Node(id=i, role="worker", state="running", private_ip=ip, host_key_alias=f"w-{i}")
               for i, ip in (("i-a", "10.0.0.1"), ("i-b", "10.0.0.2"))]
    monkeypatch.setattr(readiness.time, "monotonic", lambda: clock[0])
    failed, out = readiness.workers_ready(cluster, head, workers, {"i-a", "i-b"}, timeout=1000,
                                          watch=lots)
    assert failed == [] and [w.state for w in out] == ["running", "running"]
    assert pinned == [["w-i-a", "w-i-b"]] and lots.closed
    assert lots.read == readiness.CONNECT_GRACE + 1      # i-b waited out the grace, a look a second
    assert len(ui.warnings) == 1 and "i-b" in ui.warnings[0] and "worker.pl" in ui.warnings[0]
    states = {s["id"]: [c["step"] for c in s["changes"]] for s in ui.node_states()}
    assert states["i-a"] == ["worker.pl connecting", None]
    assert states["i-b"] == ["worker.pl connecting", None]
    # a headnode without ss cannot tell: the reports alone decide, at the first lot
    clock[0] = 0.0
    lots = _Lots([reports], clock)
    failed, out = readiness.workers_ready(cluster, head, workers, set(), timeout=1000, watch=lots)
    assert failed == [] and lots.read == 1 and [w.state for w in out] == ["running", "running"]


def test_the_agent_keeps_a_worker_s_newest_report_when_an_older_one_arrives_late(tmp_path):
    # a report can wait in the agent's backlog after its curl gave up, and be read after the
    # worker's next one: a late "booting" must not undo "ready" (a 200-worker up waited on one)
    import socket
    import sys
    import time
    import urllib.parse
    import urllib.request
    from pathlib import Path

    from tests.support.sshd import free_port

    agent = Path(__file__).resolve().parents[1] / "userdata" / "agent.py"
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(agent), str(tmp_path), str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline and proc.poll() is None, "agent did not start"
                time.sleep(0.05)

        def report(**fields):
            body = urllib.parse.urlencode({"id": "i-0w", "msg": "", "hostkey": "", **fields})
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/report", body.encode(),
                                        timeout=10) as resp:
                assert resp.status == 204

        def kept() -> dict:
            return json.loads((tmp_path / "workers" / "i-0w").read_text())

        report(state="booting", step="begin", seq="1")
        report(state="ready", step="finish", seq="5")
        report(state="booting", step="begin", seq="1")          # late
        assert (kept()["state"], kept()["seq"]) == ("ready", 5)
        report(state="ready", step="finish", seq="5")           # the heartbeat: same count
        assert kept()["state"] == "ready"
        report(state="booting", step="begin", seq="6")          # a new boot counts on
        assert (kept()["state"], kept()["seq"]) == ("booting", 6)
        report(state="failed", step="swift")                    # an older worker: no count
        assert kept()["state"] == "failed"
    finally:
        proc.kill()             # by its PID
        proc.wait()
