"""`swiftrun SCRIPT --watch`: what counts as a change, the debounced watcher, and re-runs on the
same cluster in the test cloud (bounded with SWIFTRUN_WATCH_MAX_RUNS; ended with Ctrl-C)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

from swiftrun.run.watch import ChangeDetector, Watcher, noise
from swiftrun.sync import Manifest, scan
from swiftrun.sync.ignore import IgnoreRules
from tests.support.cli import SWIFTRUN, cluster_instances, swiftrun
from tests.support.schemas import validate
from tests.test_e2e_run import copy_example

OFFLINE = {"SWIFTRUN_OFFLINE_PRICES": "1"}


def synced(tmp_path: Path) -> tuple[Path, ChangeDetector]:
    """A script dir and a manifest saying all of it was uploaded."""
    sdir = tmp_path / "proj"
    sdir.mkdir()
    (sdir / "p.swift").write_text("trace(1);\n")
    (sdir / "data.txt").write_text("1\n")
    (sdir / "sub").mkdir()
    (sdir / "sub" / "in.txt").write_text("x\n")
    (sdir / ".swiftignore").write_text("*.tmp\nscratch/\n")
    state = tmp_path / "state.json"
    rules = IgnoreRules.from_dir(sdir, ["bulky/"])
    Manifest("~/swiftrun/proj", "sync-1", scan(sdir, rules)).save(state)
    return sdir, ChangeDetector(sdir, state, ["bulky/"])


def test_what_swiftrun_writes_or_ignores_is_no_change(tmp_path):
    sdir, det = synced(tmp_path)
    assert det.pending() == []
    (sdir / ".swiftrun").mkdir()
    (sdir / ".swiftrun" / "fetch-x").write_text("staging")
    (sdir / "run001").mkdir()
    (sdir / "run001" / "swift.log").write_text("log")
    (sdir / "editor.tmp").write_text("ignored by .swiftignore")
    (sdir / "scratch").mkdir()
    (sdir / "scratch" / "a").write_text("ignored dir")
    (sdir / "bulky").mkdir()
    (sdir / "bulky" / "b").write_text("[sync] exclude")
    (sdir / "__pycache__").mkdir()
    assert det.pending() == []


def test_fetched_outputs_recorded_in_the_manifest_are_no_change(tmp_path):
    sdir, det = synced(tmp_path)
    (sdir / "sorted.txt").write_text("1\n2\n")          # what a fetch installs ...
    manifest = Manifest.load(det.state_file)
    manifest.entries.update(scan(sdir, IgnoreRules.from_dir(sdir, ["bulky/"])))
    manifest.save(det.state_file)                       # ... and records
    assert det.pending() == []
    (sdir / "sorted.txt").write_text("edited by hand\n")
    assert det.pending() == ["sorted.txt"]


def test_edits_new_files_and_deletions_are_changes(tmp_path):
    sdir, det = synced(tmp_path)
    (sdir / "data.txt").write_text("2\n")
    (sdir / "sub" / "new.txt").write_text("n\n")
    (sdir / "sub" / "in.txt").unlink()
    assert det.pending() == ["data.txt", "sub/in.txt", "sub/new.txt"]


def test_noise_filter():
    for rel in (".swiftrun/x", "run001/swift.log", "run1234", ".git/HEAD", "a/__pycache__/b.pyc"):
        assert noise(rel), rel
    for rel in ("p4.swift", "runner.txt", "data/run001/x", "output/a.out"):
        assert not noise(rel), rel


def test_watcher_wakes_on_a_real_change_only(tmp_path):
    sdir, det = synced(tmp_path)
    w = Watcher(sdir, debounce=0.2).start()
    try:
        # swiftrun's own files: events, but no change to upload -> times out with nothing
        (sdir / ".swiftrun").mkdir()
        (sdir / ".swiftrun" / "x").write_text("1")
        (sdir / "scratch").mkdir()
        (sdir / "scratch" / "y").write_text("2")
        assert w.wait(det, timeout=1.5) == []

        def edit():
            time.sleep(0.3)
            for i in range(5):                  # a burst (an editor saving): one wake-up
                (sdir / "data.txt").write_text(f"{i}\n")
                time.sleep(0.02)

        t = threading.Thread(target=edit)
        mark = w.mark()
        t.start()
        assert w.wait(det, since=mark, timeout=60) == ["data.txt"]
        t.join()
    finally:
        w.stop()


def _start(args, cwd: Path, env: dict, out: Path, err: Path) -> subprocess.Popen:
    full = {**os.environ, "SWIFTRUN_BOOT_TIMEOUT": "90", "SWIFTRUN_SSH_TIMEOUT": "60",
            **OFFLINE, **env}
    return subprocess.Popen(SWIFTRUN.split() + list(args), cwd=cwd, env=full,
                            stdin=subprocess.DEVNULL, stdout=out.open("w"), stderr=err.open("w"))


def _wait_for(pred, proc: subprocess.Popen, err: Path, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if proc.poll() is not None:
            raise AssertionError(f"swiftrun exited {proc.returncode} early:\n{err.read_text()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting; stderr so far:\n{err.read_text()}")
        time.sleep(0.1)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:     # by PID, only the process this test started
        proc.kill()
        proc.wait()


def test_watch_reruns_after_a_change_then_dissolves(cloud, tmp_path):
    proj = copy_example("p4", tmp_path / "p4", cloud, name="watch1", workers=1)
    out, err = tmp_path / "out", tmp_path / "err"
    proc = _start(["p4.swift", "--watch", "--json"], proj, {"SWIFTRUN_WATCH_MAX_RUNS": "2"},
                  out, err)
    try:
        _wait_for(lambda: (proj / "sorted.txt").exists() and (proj / "run001").is_dir(), proc, err)
        ids = {i["InstanceId"] for i in cluster_instances(cloud, "watch1")}
        (proj / "unsorted.txt").write_text("42\n7\n19\n")
        code = proc.wait(timeout=240)
    finally:
        _stop(proc)
    assert code == 0, err.read_text()
    doc = json.loads(out.read_text())
    validate("run", doc)
    assert doc["swift_run"] == "run002" and doc["exit_code"] == 0 and doc["watch_runs"] == 2
    assert doc["sync"]["files_sent"] == 1                 # only the edited file went over
    assert {n["id"] for n in doc["nodes"]} == ids         # the same cluster
    assert (proj / "sorted.txt").read_text().split() == ["7", "19", "42"]
    assert doc["dissolved"] and cluster_instances(cloud, "watch1") == []
    assert doc["cost"]["so_far"] > 0


def test_ctrl_c_ends_watch_and_keep_cluster_keeps_it(cloud, tmp_path):
    proj = copy_example("p4", tmp_path / "p4", cloud, name="watch2", workers=1)
    out, err = tmp_path / "out", tmp_path / "err"
    proc = _start(["p4.swift", "--watch", "--keep-cluster"], proj, {}, out, err)
    try:
        _wait_for(lambda: "Watching" in err.read_text(), proc, err)
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=120)
    finally:
        _stop(proc)
    text = err.read_text()
    assert code == 0, text
    assert "watch: stopped" in text and "kept" in text and "run002" not in text
    assert len(cluster_instances(cloud, "watch2")) == 2
    down = json.loads(swiftrun("down", "--json", cwd=proj, env=OFFLINE).stdout)
    assert len(down["terminated"]) == 2 and cluster_instances(cloud, "watch2") == []


def test_failed_rerun_waits_for_a_new_edit_then_dissolves(tmp_path, monkeypatch):
    """No cloud: a Runner stand-in. A run that fails before syncing leaves the change pending;
    the loop must wait for the next edit instead of retrying at once, and end with a dissolve."""
    from types import SimpleNamespace

    import swiftrun.run.runner as runner_mod
    from swiftrun.errors import ConfigError
    from swiftrun.run.runner import RunOptions, RunReport
    from swiftrun.run.watch import watch_loop
    from swiftrun.ui import UI

    monkeypatch.setenv("SWIFTRUN_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SWIFTRUN_WATCH_MAX_RUNS", "3")
    sdir = tmp_path / "proj"
    sdir.mkdir()
    (sdir / "p.swift").write_text("trace(1);\n")
    (sdir / "data.txt").write_text("0\n")
    cdir = tmp_path / "cluster"
    Manifest("~/swiftrun/proj", "s1", scan(sdir, IgnoreRules.from_dir(sdir))).save(
        cdir / "sync" / "proj.json")
    downs = []
    cluster = SimpleNamespace(name="c", dir=cdir, down=lambda: downs.append(1),
                              manifest_file=lambda root: cdir / "sync" / "proj.json",
                              may_dissolve=lambda: True, remote=SimpleNamespace(close=lambda: None))
    project = SimpleNamespace(cluster=SimpleNamespace(keep=False), path=None,
                              sync=SimpleNamespace(exclude=()),
                              ec2=SimpleNamespace(credentials_file=None),
                              ssh=SimpleNamespace(key_file=None))
    env = SimpleNamespace(ui=UI(quiet=True), project=project)
    seen, failed_once = [], threading.Event()

    class FakeRunner:
        def __init__(self, project, cluster, ui, opts):
            assert opts.keep_cluster
        def run(self):
            seen.append((sdir / "data.txt").read_text().strip())
            if len(seen) == 1:
                failed_once.set()
                raise ConfigError("swift.conf: broken (stand-in failure)")
            return RunReport(cluster="c", exit_code=0, swift_run="run002")

    monkeypatch.setattr(runner_mod, "Runner", FakeRunner)

    def edits():
        time.sleep(0.3)
        (sdir / "data.txt").write_text("1\n")
        failed_once.wait(30)
        time.sleep(1.0)          # a retry loop would have run again by now, still seeing "1"
        (sdir / "data.txt").write_text("2\n")

    t = threading.Thread(target=edits, daemon=True)
    t.start()
    first = RunReport(cluster="c", exit_code=0, swift_run="run001")
    opts = RunOptions(script=sdir / "p.swift", keep_cluster=True)
    last = watch_loop(env, cluster, opts, first, keep=False)
    t.join(5)
    assert seen == ["1", "2"]
    assert last.swift_run == "run002" and last.watch_runs == 3
    assert last.dissolved and downs == [1]
