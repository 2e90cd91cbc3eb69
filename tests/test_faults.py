"""Never lose, never leak: `swiftrun` against the test cloud with faults injected.

The installed command runs as a subprocess (Popen, so it can be killed or signalled at a chosen
moment); the cloud's own state is read with the never-faulted admin client. Waits are bounded,
nothing asserts how long anything took.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.support.cli import SWIFTRUN, toml_project

WAIT = 120.0   # bound on every wait for a line / a state (never an assertion about speed)

TICK_SWIFT = """type file;
app (file o) tick (int i, string pause) { sh "-c" strcat("sleep ", pause, "; echo tick ", i) stdout=@o; }
app (file o) boom () { sh "-c" "echo boom-on-stderr >&2; exit 3" stdout=@o; }
int n = toInt(arg("n", "4"));
string pause = arg("pause", "0");
foreach i in [1:n] {
    file out <single_file_mapper; file=strcat("out/tick_", i, ".txt")>;
    out = tick(i, pause);
}
"""
FAIL_LAST = """file bad <"out/bad.txt">;
bad = boom();
"""


# -- driving the command ------------------------------------------------------------------------
class Proc:
    """`swiftrun ARGS` running in the background; its stdout and stderr are collected by line."""

    def __init__(self, *args, cwd: Path, env: dict | None = None):
        full_env = {**os.environ, "SWIFTRUN_BOOT_TIMEOUT": "90", "SWIFTRUN_SSH_TIMEOUT": "60",
                    **(env or {})}
        self.args = [str(a) for a in args]
        self.proc = subprocess.Popen(SWIFTRUN.split() + self.args, cwd=cwd, env=full_env,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        self.out: list[str] = []
        self.err: list[str] = []
        self.out_bytes = bytearray()
        self._cond = threading.Condition()
        self._threads = [
            threading.Thread(target=self._read, args=(self.proc.stdout, self.out, True), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stderr, self.err, False), daemon=True)]
        for t in self._threads:
            t.start()

    def _read(self, stream, lines: list[str], raw: bool) -> None:
        for line in iter(stream.readline, b""):
            with self._cond:
                if raw:
                    self.out_bytes += line
                lines.append(line.decode(errors="replace"))
                self._cond.notify_all()
        stream.close()

    @property
    def stdout(self) -> str:
        with self._cond:
            return "".join(self.out)

    @property
    def stderr(self) -> str:
        with self._cond:
            return "".join(self.err)

    def wait_line(self, pattern: str, *, stream: str = "stderr", count: int = 1,
                  timeout: float = WAIT) -> str:
        """Block until ``count`` lines of ``stream`` match ``pattern`` (a regex); the last one."""
        rx = re.compile(pattern)
        lines = self.err if stream == "stderr" else self.out
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                hits = [ln for ln in lines if rx.search(ln)]
                if len(hits) >= count:
                    return hits[count - 1]
                if self.proc.poll() is not None and all(not t.is_alive() for t in self._threads):
                    raise AssertionError(f"swiftrun {' '.join(self.args)} exited "
                                         f"{self.proc.returncode} before {pattern!r}:\n"
                                         + self.report())
                if time.monotonic() > deadline:
                    raise AssertionError(f"no {pattern!r} after {timeout}s:\n{self.report()}")
                self._cond.wait(0.1)

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)   # by PID: the child we started

    def wait(self, timeout: float = WAIT) -> int:
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"swiftrun {' '.join(self.args)} still running after "
                                 f"{timeout}s:\n{self.report()}") from None
        for t in self._threads:
            t.join(10)
        return code

    def finish(self, expect: int | None = 0, timeout: float = WAIT) -> "Proc":
        code = self.wait(timeout)
        if expect is not None:
            assert code == expect, f"exit {code}, wanted {expect}:\n{self.report()}"
        return self

    def report(self) -> str:
        return f"--- stdout:\n{self.stdout}\n--- stderr:\n{self.stderr}"


def sr(*args, cwd: Path, expect: int | None = 0, env: dict | None = None,
       timeout: float = WAIT) -> Proc:
    """Run `swiftrun ARGS` to the end."""
    return Proc(*args, cwd=cwd, env=env).finish(expect, timeout)


# -- looking at the cloud (never faulted) ---------------------------------------------------------
LIVE = ("pending", "running", "stopping", "stopped")


def instances(cloud, name: str | None = None, states=LIVE) -> list[dict]:
    filters = [{"Name": "instance-state-name", "Values": list(states)}]
    if name:
        filters.append({"Name": "tag:swiftrun:cluster", "Values": [name]})
    reply = cloud.ec2_admin.describe_instances(Filters=filters)
    return [i for r in reply["Reservations"] for i in r["Instances"]]


def tags(res: dict) -> dict:
    return {t["Key"]: t["Value"] for t in res.get("Tags", [])}


def role_of(inst: dict) -> str:
    return tags(inst).get("swiftrun:role", "?")


def groups(cloud, name: str | None = None) -> list[dict]:
    reply = cloud.ec2_admin.describe_security_groups()
    return [g for g in reply["SecurityGroups"] if g["GroupName"] != "default"
            and (name is None or tags(g).get("swiftrun:cluster") == name)]


def key_pairs(cloud) -> list[dict]:
    return cloud.ec2_admin.describe_key_pairs()["KeyPairs"]


def head_of(cloud, name: str) -> dict:
    heads = [i for i in instances(cloud, name, ("running",)) if role_of(i) == "headnode"]
    assert len(heads) == 1, heads
    return heads[0]


def wait_until(what: str, check, timeout: float = WAIT, every: float = 0.02):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not seen within {timeout}s: {what}")
        time.sleep(every)


def assert_nothing_left(cloud, name: str) -> None:
    """No instance that is or may come back, no security group; nothing untagged either (the
    cloud is reset per test, so anything alive in the region would be a leak)."""
    assert instances(cloud, name) == []
    assert groups(cloud, name) == []
    assert instances(cloud) == [], "an instance swiftrun's tags do not name survived"
    assert groups(cloud) == []


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, (int, float)):
        return str(v)
    return json.dumps(v)   # strings and lists of strings: TOML accepts JSON's spelling


def tick_project(path: Path, cloud, *, name: str, workers: int = 1, n: int = 4,
                 slow: float = 0.0, fail_last: bool = False, ec2: dict | None = None,
                 **cluster) -> Path:
    """A project running tick.swift (n apps, one numbered output file each, each sleeping
    ``slow`` seconds on its worker first), through the test cloud; ``ec2`` adds [ec2] keys,
    other keywords [cluster] keys."""
    toml_project(path, cloud, name=name, workers=workers, **cluster)
    if ec2:
        text = (path / "swiftrun.toml").read_text()
        keys = "".join(f"{k} = {_toml_value(v)}\n" for k, v in ec2.items())
        (path / "swiftrun.toml").write_text(text.replace("[ec2]\n", "[ec2]\n" + keys, 1))
    (path / "tick.swift").write_text(TICK_SWIFT.replace('"4"', f'"{n}"')
                                     .replace('arg("pause", "0")', f'arg("pause", "{slow:g}")')
                                     + (FAIL_LAST if fail_last else ""))
    return path


# =================================================================================================
# A crash at any moment leaves nothing `swiftrun down` cannot find
# =================================================================================================
def _key_pair_made(cloud, name):
    return any(k["KeyName"] == f"swiftrun-{name}" for k in key_pairs(cloud))


def _group_made(cloud, name):
    return any(g["GroupName"] == f"swiftrun-{name}" for g in groups(cloud))


def _instance_made(cloud, name):
    return bool(instances(cloud, states=("pending", "running")))


# phase -> ("cloud", predicate polled in moto) or (stream, regex of the command's output)
KILL_PHASES = {
    "key pair imported": ("cloud", _key_pair_made),
    "security group created": ("cloud", _group_made),
    "==> Launching headnode": ("stderr", r"^==> Launching headnode"),
    "headnode instance exists": ("cloud", _instance_made),   # launched, maybe not yet recorded
    "==> Launching workers": ("stderr", r"^==> Launching \d+ worker"),
    "==> Waiting for nodes": ("stderr", r"^==> Waiting for nodes"),
    "==> Syncing": ("stderr", r"^==> Syncing"),
    "==> Running swift": ("stderr", r"^==> Running swift"),
}


@pytest.mark.parametrize("phase", list(KILL_PHASES))
def test_sigkill_at_each_phase_then_down_leaves_nothing(cloud, tmp_path, phase):
    """`swiftrun tick.swift` is SIGKILLed (no cleanup of its own can run) the moment it reaches
    ``phase``; `swiftrun down --delete-key` then finds and removes everything it had made."""
    name = "kill"
    proj = tick_project(tmp_path / "proj", cloud, name=name, workers=1, n=3, slow=0.3)
    run = Proc("tick.swift", cwd=proj)
    kind, what = KILL_PHASES[phase]
    if kind == "cloud":
        wait_until(phase, lambda: what(cloud, name) or run.proc.poll() is not None, every=0.01)
    else:
        run.wait_line(what, stream=kind)
    run.signal(signal.SIGKILL)
    assert run.wait() == -signal.SIGKILL, f"ended before the kill:\n{run.report()}"

    sr("down", "--delete-key", cwd=proj)
    assert_nothing_left(cloud, name)
    assert [k["KeyName"] for k in key_pairs(cloud)] == []
    # Root volumes go with their instances; none of this cluster is left behind.
    vols = cloud.ec2_admin.describe_volumes(Filters=[
        {"Name": "tag:swiftrun:cluster", "Values": [name]}])["Volumes"]
    assert [v for v in vols if v["State"] not in ("deleting", "deleted")] == []


# =================================================================================================
# Throttling, eventual consistency
# =================================================================================================
def test_a_third_of_ec2_calls_throttled_up_and_down_still_succeed(cloud, tmp_path):
    name = "throttled"
    proj = tick_project(tmp_path / "proj", cloud, name=name, workers=1)
    cloud.set_faults({"*": {"error": "RequestLimitExceeded", "status": 503, "rate": 0.33,
                            "seed": 1}})
    up = sr("up", "--json", cwd=proj)
    assert len(json.loads(up.stdout)["created"]) == 2
    live = instances(cloud, name)
    assert sorted(role_of(i) for i in live) == ["headnode", "worker"]
    # Everything made carries the cluster's tag from the call that made it.
    vols = cloud.ec2_admin.describe_volumes(Filters=[
        {"Name": "tag:swiftrun:cluster", "Values": [name]}])["Volumes"]
    attached = {a["InstanceId"] for v in vols for a in v["Attachments"]}
    assert attached == {i["InstanceId"] for i in live}
    assert [tags(k).get("swiftrun:cluster") for k in key_pairs(cloud)] == [name]
    # the cluster group and the headnode's door group
    assert [tags(g).get("swiftrun:cluster") for g in groups(cloud)] == [name, name]

    sr("down", cwd=proj)
    state = cloud.fault_state()
    assert state["total"] >= 3, state                     # faults really were injected ...
    assert state["injected"].get("RunInstances", 0) + state["injected"].get(
        "DescribeInstances", 0) >= 1, state               # ... on the calls that matter
    cloud.clear_faults()
    assert_nothing_left(cloud, name)


def set_workers(proj: Path, count: int) -> None:
    path = proj / "swiftrun.toml"
    path.write_text(re.sub(r"(?m)^workers = \d+$", f"workers = {count}", path.read_text(), count=1))


def cluster_group(cloud, name: str) -> dict:
    """The group every node is in (the other one, ``-door``, is the headnode's port 22)."""
    (group,) = [g for g in groups(cloud, name) if not g["GroupName"].endswith("-door")]
    return group


def launch_calls_before_workers(cloud) -> int:
    """RunInstances calls an `up` that adds workers to a running headnode makes before it
    launches them: the workers' dry run, one (an `up` without workers makes none, so the
    headnode-only `up` before cannot tell)."""
    return 1


def test_eventual_consistency_is_retried_and_the_deadline_said(cloud, tmp_path):
    """EC2 not knowing yet what was made a moment ago (group, instance) is retried; when it lasts
    past the deadline the error says so."""
    name = "laggy"
    proj = tick_project(tmp_path / "proj", cloud, name=name, workers=0)
    cloud.set_faults({"AuthorizeSecurityGroupIngress": {"error": "InvalidGroup.NotFound",
                                                        "times": 2}})
    sr("up", cwd=proj)
    assert cloud.fault_state()["injected"] == {"AuthorizeSecurityGroupIngress": 2}
    group = cluster_group(cloud, name)
    assert {p["FromPort"] for p in group["IpPermissions"]} == {22, 50005, 50010, 50011}
    before = launch_calls_before_workers(cloud)

    set_workers(proj, 1)
    cloud.set_faults({"RunInstances": {"error": "InvalidGroup.NotFound", "after": before,
                                       "times": 2}})
    sr("up", cwd=proj)
    assert cloud.fault_state()["injected"] == {"RunInstances": 2}
    assert sorted(role_of(i) for i in instances(cloud, name)) == ["headnode", "worker"]

    # TerminateInstances keeps answering "no such instance": down gives up and says why.
    cloud.set_faults({"TerminateInstances": {"error": "InvalidInstanceID.NotFound"}})
    res = sr("down", cwd=proj, expect=1, env={"SWIFTRUN_EC2_CONSISTENCY_TIMEOUT": "2"})
    assert "InvalidInstanceID.NotFound" in res.stderr and "after 2s" in res.stderr, res.report()
    assert len(instances(cloud, name)) == 2

    # A short lag is waited out.
    cloud.set_faults({"TerminateInstances": {"error": "InvalidInstanceID.NotFound", "times": 2}})
    sr("down", cwd=proj)
    assert cloud.fault_state()["injected"] == {"TerminateInstances": 2}
    cloud.clear_faults()
    assert_nothing_left(cloud, name)


def test_a_failed_up_removes_the_group_and_key_pair_it_made_and_nothing_it_found(cloud, tmp_path):
    """A failed `up` terminated its instances but left the security group and key pair it had
    made (and the key file): they go too. What an earlier `up` made stays."""
    name = "tidy"
    proj = tick_project(tmp_path / "proj", cloud, name=name, workers=1)
    key_file = Path(os.environ["SWIFTRUN_HOME"]) / "keys" / f"swiftrun-{name}.pem"
    # the headnode's launch and the workers' dry run go through; the workers' launch is refused
    cloud.set_faults({"RunInstances": {"error": "InstanceLimitExceeded", "after": 2, "times": 1}})
    res = sr("up", cwd=proj, expect=1)
    assert cloud.fault_state()["injected"] == {"RunInstances": 1}, res.report()
    assert "InstanceLimitExceeded" in res.stderr and "terminating the 1 instance(s)" in res.stderr
    assert re.search(r"deleted what this up created: .*security group sg-.*security group sg-.*"
                     r"key pair swiftrun-tidy", res.stderr), res.report()   # both groups
    assert instances(cloud, name) == [] and groups(cloud) == [], res.report()
    assert [k["KeyName"] for k in key_pairs(cloud)] == [], res.report()
    assert not key_file.exists()
    cloud.clear_faults()

    # made by an up that went well: a later failed up leaves them alone
    set_workers(proj, 0)
    sr("up", cwd=proj)
    made = sorted(g["GroupId"] for g in groups(cloud, name))     # the cluster's and the door's
    assert len(made) == 2
    set_workers(proj, 1)
    cloud.set_faults({"RunInstances": {"error": "InstanceLimitExceeded",
                                       "after": launch_calls_before_workers(cloud), "times": 1}})
    res = sr("up", cwd=proj, expect=1)
    assert cloud.fault_state()["injected"] == {"RunInstances": 1}, res.report()
    assert "deleted what this up created" not in res.stderr, res.report()
    assert sorted(g["GroupId"] for g in groups(cloud, name)) == made
    assert [k["KeyName"] for k in key_pairs(cloud)] == [f"swiftrun-{name}"] and key_file.exists()
    assert [role_of(i) for i in instances(cloud, name)] == ["headnode"]
    cloud.clear_faults()
    sr("down", "--delete-key", cwd=proj)
    assert_nothing_left(cloud, name)


# =================================================================================================
# Capacity: the next zone, then on-demand for spot workers; fewer workers above min_workers
# =================================================================================================
def test_capacity_next_zone_then_spot_falls_back_to_on_demand(cloud, tmp_path):
    name = "spot"
    proj = tick_project(tmp_path / "proj", cloud, name=name, workers=0,
                        ec2={"spot": True, "availability_zones": ["us-west-2a", "us-west-2b"]})
    sr("up", cwd=proj)
    before = launch_calls_before_workers(cloud)

    # The workers' first launch (us-west-2a) meets no capacity: us-west-2b has some.
    set_workers(proj, 1)
    cloud.set_faults({"RunInstances": {"error": "InsufficientInstanceCapacity", "after": before,
                                       "times": 1}})
    sr("up", cwd=proj)
    assert cloud.fault_state()["injected"] == {"RunInstances": 1}
    (worker,) = [i for i in instances(cloud, name) if role_of(i) == "worker"]
    assert worker["Placement"]["AvailabilityZone"] == "us-west-2b"
    assert worker.get("InstanceLifecycle") == "spot"

    # No spot capacity in any zone: on-demand workers instead, and said.
    set_workers(proj, 3)
    cloud.set_faults({"RunInstances": {"error": "InsufficientInstanceCapacity", "after": before,
                                       "times": 2}})
    up = sr("up", cwd=proj)
    assert cloud.fault_state()["injected"] == {"RunInstances": 2}
    assert re.search(r"warning: no spot capacity for 2 .* worker\(s\) in us-west-2a, us-west-2b "
                     r"\(InsufficientInstanceCapacity\): launching them on-demand", up.stderr), \
        up.report()
    new = [i for i in instances(cloud, name) if role_of(i) == "worker"
           and i["InstanceId"] != worker["InstanceId"]]
    assert len(new) == 2
    assert all(i.get("InstanceLifecycle") != "spot" for i in new)
    assert all(tags(i)["swiftrun:market"] == "on-demand-fallback" for i in new)

    # The project still asks for spot; the on-demand stand-ins are no mismatch the next time.
    cloud.clear_faults()
    again = json.loads(sr("up", "--json", cwd=proj).stdout)
    assert again["reused"] and again["created"] == []
    assert len(again["nodes"]) == 4


def test_fewer_workers_than_asked_are_accepted_above_min_workers(cloud, tmp_path):
    """min_workers = 1: EC2 giving fewer workers than asked, and a worker that fails to boot (its
    init script), are accepted and said; the failed worker is terminated. Then the cluster is
    half deleted by hand (headnode terminated, group deleted): `down` still ends well, twice."""
    name = "fewer"
    claim = tmp_path / "claim"
    proj = tmp_path / "proj"
    proj.mkdir()
    # Only the first worker ever to run it gets through.
    (proj / "init.sh").write_text(f"#!/bin/sh\nmkdir {claim} 2>/dev/null || "
                                  "{ echo 'no room for another worker' >&2; exit 7; }\n")
    tick_project(proj, cloud, name=name, workers=1, ec2={"worker_init_script": "init.sh"})
    sr("up", cwd=proj)
    (first,) = [i for i in instances(cloud, name) if role_of(i) == "worker"]

    # Two more asked, at least one needed: the test cloud, like EC2 short of capacity, gives
    # MinCount (1); that one fails to boot; the first worker alone is still enough.
    set_workers(proj, 3)
    text = (proj / "swiftrun.toml").read_text()
    (proj / "swiftrun.toml").write_text(text.replace("workers = 3\n",
                                                     "workers = 3\nmin_workers = 1\n"))
    up = sr("up", cwd=proj)
    assert "EC2 gave 1 of 2 workers (min_workers allows it)" in up.stderr, up.report()
    assert re.search(r"warning: worker i-\w+ dropped: .*failed to boot", up.stderr), up.report()
    assert "continuing with 1 of 2 workers (min_workers = 1)" in up.stderr, up.report()
    live = instances(cloud, name)
    assert sorted(role_of(i) for i in live) == ["headnode", "worker"]
    assert first["InstanceId"] in {i["InstanceId"] for i in live}
    dropped = instances(cloud, name, ("shutting-down", "terminated"))
    assert [role_of(i) for i in dropped] == ["worker"]

    head = head_of(cloud, name)
    cloud.ec2_admin.terminate_instances(InstanceIds=[head["InstanceId"]])
    group = cluster_group(cloud, name)
    try:
        cloud.ec2_admin.delete_security_group(GroupId=group["GroupId"])
    except cloud.ec2_admin.exceptions.ClientError:   # still used by the worker: a real cloud
        pass                                         # refuses as well
    sr("down", cwd=proj)
    assert "nothing to take down" in sr("down", cwd=proj).stderr
    assert_nothing_left(cloud, name)


# =================================================================================================
# Two `up` at once
# =================================================================================================
def test_two_concurrent_ups_make_one_cluster_and_down_twice_is_fine(cloud, tmp_path):
    name = "twice"
    proj = tick_project(tmp_path / "proj", cloud, name=name, workers=2)
    first, second = Proc("up", cwd=proj), Proc("up", cwd=proj)
    first.finish(0)
    second.finish(0)
    live = instances(cloud, name)
    assert sorted(role_of(i) for i in live) == ["headnode", "worker", "worker"], live
    assert len(groups(cloud, name)) == 2      # the cluster group and the door group, once each
    assert "waiting for another swiftrun" in first.stderr + second.stderr

    sr("down", cwd=proj)
    assert "nothing to take down" in sr("down", cwd=proj).stderr
    assert_nothing_left(cloud, name)


def test_a_run_that_ends_first_does_not_dissolve_under_another(cloud, tmp_path):
    """Two runs on one cluster from this machine (two script directories): the one that ends
    first keeps the cluster, the last one dissolves it after its outputs are back."""
    name = "shared"
    # 6 apps of 6 s, 4 at a time on the one worker: it outlasts the short run below
    slow = tick_project(tmp_path / "slow", cloud, name=name, workers=1, n=6, slow=6)
    fast = tick_project(tmp_path / "fast", cloud, name=name, workers=1, n=1)
    long_run = Proc("tick.swift", cwd=slow)
    long_run.wait_line(r"^Progress:", stream="stdout", count=2)
    short = sr("tick.swift", cwd=fast)
    assert "another swiftrun run on this machine is using it" in short.stderr, short.report()
    assert len(instances(cloud, name)) == 2
    long_run.finish(0)
    assert sorted(p.name for p in (slow / "out").iterdir()) == [f"tick_{i}.txt" for i in range(1, 7)]
    assert "dissolved" in long_run.stderr, long_run.report()
    assert_nothing_left(cloud, name)


# =================================================================================================
# The headnode's sshd restarts while swift runs
# =================================================================================================
def test_sshd_restart_mid_run_loses_and_repeats_no_line(cloud, tmp_path):
    name = "blip"
    n = 12
    # workers = 0: the headnode's own worker.pl runs the apps (4 at a time), ~1 s each
    proj = tick_project(tmp_path / "proj", cloud, name=name, workers=0, n=n, slow=1)
    run = Proc("tick.swift", cwd=proj)
    run.wait_line(r"^Progress:", stream="stdout", count=2)
    cloud.sim.restart_sshd(head_of(cloud, name)["InstanceId"])
    run.finish(0)

    assert "connection lost" in run.stderr and "reconnecting" in run.stderr, run.report()
    # What was streamed is swift's console exactly: the copy swift wrote itself came back.
    console = (proj / "run001" / "swift.out").read_bytes()
    assert bytes(run.out_bytes) == console
    lines = console.decode().splitlines()
    assert len(lines) == len(set(lines)), "a line arrived twice"
    assert lines[0].startswith("Swift 0.96.2") and lines[1] == "RunID: run001"
    assert lines[-1].startswith("Final status:") and f"Finished successfully:{n}" in lines[-1]
    for i in range(1, n + 1):
        assert (proj / "out" / f"tick_{i}.txt").read_text() == f"tick {i}\n"
    assert instances(cloud, name) == []   # dissolved after the outputs came back
