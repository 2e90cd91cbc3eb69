"""Interrupting `swiftrun run` (SIGINT, as Ctrl-C sends it) while swift runs on the headnode.

- once: swift keeps running, the cluster stays up, the command says how to reattach / cancel /
  dissolve and exits 130; `swiftrun logs --follow` reattaches and exits with swift's own code.
- twice within 3 s: swift is cancelled (its exit code, 143, still recorded on the headnode).
- with --cancel-on-interrupt: swift is cancelled and the cluster dissolved.
- during `up`: what that `up` launched is terminated.

The signal is sent once swift's first progress line has been streamed, so swift is running;
no assertion depends on how long anything takes.
"""

from __future__ import annotations

import signal

from tests.test_faults import (
    Proc, assert_nothing_left, groups, head_of, instances, key_pairs, role_of, sr, tick_project)


def run_files(cloud, head_id: str, suffix: str) -> dict[str, str]:
    """{run id: content} of the headnode's .swiftrun/runs/*.<suffix> (the project is `proj`)."""
    runs = cloud.sim.home(head_id) / "swiftrun" / "proj" / ".swiftrun" / "runs"
    return {p.name[: -len(suffix) - 1]: p.read_text().strip() for p in runs.glob(f"*.{suffix}")}


def test_first_sigint_keeps_swift_running_and_logs_follow_reattaches(cloud, tmp_path):
    name = "intr"
    # The last app fails, so swift's exit code (2) is told apart from any of swiftrun's own.
    proj = tick_project(tmp_path / "proj", cloud, name=name, workers=1, n=6, slow=2,
                        fail_last=True)
    run = Proc("tick.swift", cwd=proj)
    run.wait_line(r"^Progress:", stream="stdout")
    run.signal(signal.SIGINT)
    run.finish(130)
    err = run.stderr
    assert "swift keeps running on the headnode and the cluster stays up" in err, run.report()
    for hint in ("swiftrun logs --follow tick.swift", "swiftrun cancel tick.swift",
                 "swiftrun down"):
        assert hint in err, run.report()
    assert "Terminating" not in err
    live = instances(cloud, name)
    assert sorted(role_of(i) for i in live) == ["headnode", "worker"]

    # Reattach: the whole console, to the end, and swift's exit code: the failing app ended
    # the run (2), so swift was never cancelled (143).
    logs = sr("logs", "--follow", "tick.swift", cwd=proj, expect=2)
    assert logs.stdout.startswith("Swift 0.96.2"), logs.report()
    assert "Execution failed:" in logs.stdout and "boom-on-stderr" in logs.stdout, logs.report()
    assert list(run_files(cloud, head_of(cloud, name)["InstanceId"], "exit").values()) == ["2"]

    # Again on the same cluster, kept: a second Ctrl-C within 3 s cancels swift.
    run = Proc("tick.swift", "--keep-cluster", "-n=40", cwd=proj)
    run.wait_line(r"^Progress:", stream="stdout")
    run.signal(signal.SIGINT)
    run.wait_line(r"press Ctrl-C again within 3 s")
    run.signal(signal.SIGINT)
    run.finish(130)
    assert "swift cancelled on the headnode" in run.stderr, run.report()
    assert len(instances(cloud, name)) == 2
    logs = sr("logs", "--follow", "tick.swift", cwd=proj, expect=143)
    assert "Finished successfully:40" not in logs.stdout


def test_cancel_on_interrupt_stops_swift_and_dissolves(cloud, tmp_path):
    name = "cancel"
    proj = tick_project(tmp_path / "proj", cloud, name=name, workers=0, n=40, slow=0.5)
    run = Proc("tick.swift", "--cancel-on-interrupt", cwd=proj)
    run.wait_line(r"^Progress:", stream="stdout")
    head_id = head_of(cloud, name)["InstanceId"]
    run.signal(signal.SIGINT)
    run.finish(130)
    assert "swift cancelled on the headnode" in run.stderr, run.report()
    assert "press Ctrl-C again" not in run.stderr
    assert_nothing_left(cloud, name)
    # swift was stopped by the cancel (TERM: 143), not by the instance going away: the run's
    # wrapper outlived it and wrote its exit code.
    assert list(run_files(cloud, head_id, "exit").values()) == ["143"]


def test_sigint_during_up_terminates_what_it_launched(cloud, tmp_path):
    name = "upint"
    proj = tick_project(tmp_path / "proj", cloud, name=name, workers=1)
    up = Proc("up", cwd=proj)
    up.wait_line(r"^==> Waiting for nodes")
    up.signal(signal.SIGINT)
    up.finish(130)
    assert "up interrupted: terminating the 2 instance(s) it created" in up.stderr, up.report()
    assert instances(cloud, name) == []
    # and the security group and key pair that this up made (issue 14 #7a)
    assert groups(cloud, name) == [] and key_pairs(cloud) == [], up.report()
