"""``swiftrun SCRIPT --watch``: after the run, re-run on the same cluster whenever the script
directory changes.

What counts as a change is exactly what the next upload would send or delete (``sync.plan_upload``
against the sync manifest): so the sync ignore rules (.gitignore, .swiftignore, [sync] exclude),
``.swiftrun/``, swift's ``runNNN/`` directories and the files swiftrun itself just fetched (they
are recorded in the manifest) never trigger a run, and an edit made while a run was going is
picked up as soon as it ends. File system events (watchdog) only wake the check up; a burst of
events is debounced (``DEBOUNCE`` seconds of quiet) before it.

Ctrl-C (or SIGTERM) ends watching; then the usual dissolve rules apply: the cluster is dissolved
unless --keep-cluster or [cluster] keep (or swift is still running after an interrupted run).

``SWIFTRUN_WATCH_MAX_RUNS=N`` ends watching after N runs in all (the first one included): a
testing and CI aid, so a bounded watch ends by itself.
"""

from __future__ import annotations

import os
import re
import threading
import time
from dataclasses import replace
from pathlib import Path

from swiftrun import environ

DEBOUNCE = environ.seconds("SWIFTRUN_WATCH_DEBOUNCE")
_RUN_DIR = re.compile(r"^run\d{3,}$")
_QUIET_DIRS = {".swiftrun", ".git", "__pycache__"}


def max_runs() -> int | None:
    return environ.count("SWIFTRUN_WATCH_MAX_RUNS")


def sync_exclude(project, script_dir: Path) -> tuple[str, ...]:
    """The excludes the run's upload uses (``runner.sync_excludes``)."""
    from swiftrun.run.runner import sync_excludes

    return tuple(sync_excludes(project, script_dir))


class ChangeDetector:
    """Which paths the next upload of ``script_dir`` would send or delete."""

    def __init__(self, script_dir: Path, state_file: Path, exclude=()):
        self.script_dir = Path(script_dir)
        self.state_file = Path(state_file)
        self.exclude = tuple(exclude)

    def pending(self) -> list[str]:
        from swiftrun.sync import Manifest, plan_upload
        from swiftrun.sync.ignore import IgnoreRules

        rules = IgnoreRules.from_dir(self.script_dir, self.exclude)
        manifest = Manifest.load(self.state_file)
        plan = plan_upload(self.script_dir, manifest, rules, full=False)
        # A directory whose mtime moved only because files in it changed is no news by itself.
        sent = [r for r in plan.send
                if plan.local[r].type != "d" or r not in manifest.entries]
        return sorted(set(sent) | set(plan.delete))


def noise(rel: str) -> bool:
    """Events that can never matter (cheap pre-filter; the detector decides the rest)."""
    parts = rel.split("/")
    return (not rel or rel == "." or parts[0] in _QUIET_DIRS or bool(_RUN_DIR.match(parts[0]))
            or "__pycache__" in parts or ".git" in parts)


class Watcher:
    """watchdog on ``root`` (recursive); ``wait(detector)`` returns the changed paths."""

    def __init__(self, root: Path, *, debounce: float = DEBOUNCE):
        self.root = Path(root).resolve()
        self.debounce = debounce
        self._cond = threading.Condition()
        self._events = 0
        self._last = 0.0
        self._observer = None

    def start(self) -> "Watcher":
        import logging

        from watchdog.events import FileSystemEventHandler
        from watchdog.observers import Observer

        # watchdog logs a harmless race while its thread stops; nothing it logs helps a user.
        logging.getLogger("watchdog").setLevel(logging.CRITICAL)
        watcher = self

        class Handler(FileSystemEventHandler):
            def on_any_event(self, event):
                if event.event_type in ("opened", "closed_no_write"):
                    return
                for path in (event.src_path, getattr(event, "dest_path", "") or ""):
                    if path:
                        watcher._saw(path)

        self._observer = Observer()
        self._observer.schedule(Handler(), str(self.root), recursive=True)
        self._observer.daemon = True
        self._observer.start()
        return self

    def _saw(self, path) -> None:
        if isinstance(path, bytes):
            path = os.fsdecode(path)
        try:
            rel = Path(path).resolve().relative_to(self.root).as_posix()
        except ValueError:
            return
        if noise(rel):
            return
        with self._cond:
            self._events += 1
            self._last = time.monotonic()
            self._cond.notify_all()

    def mark(self) -> int:
        """How many events were seen so far: pass it to ``wait(since=...)``."""
        with self._cond:
            return self._events

    def wait(self, detector: ChangeDetector, *, since: int | None = None,
             timeout: float | None = None) -> list[str]:
        """Block until an event after ``since`` is followed by a quiet spell of ``debounce``
        seconds and the detector then reports changes; [] on ``timeout``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        seen = self.mark() if since is None else since
        while True:
            with self._cond:
                while self._events == seen:
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        return []
                    self._cond.wait(0.5 if left is None else min(0.5, left))
                while (quiet := time.monotonic() - self._last) < self.debounce:
                    self._cond.wait(self.debounce - quiet)
                seen = self._events
            changes = detector.pending()
            if changes:
                return changes

    def stop(self) -> None:
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)
            self._observer = None


def _names(paths: list[str], limit: int = 3) -> str:
    shown = ", ".join(paths[:limit])
    return shown + (f" and {len(paths) - limit} more" if len(paths) > limit else "")


def watch_loop(env, cluster, opts, report, *, keep: bool = False):
    """Re-run ``opts.script`` on ``cluster`` after every change; return the last RunReport.

    ``report`` is the first run's. The runs keep the cluster; when watching ends (Ctrl-C,
    SIGTERM, SWIFTRUN_WATCH_MAX_RUNS) the dissolve rules apply once, here.
    """
    from swiftrun.errors import SwiftrunError
    from swiftrun.node.layout import remote_root
    from swiftrun.run.runner import Runner

    ui, project = env.ui, env.project
    script_dir = opts.script.resolve().parent
    root = remote_root(project, script_dir)
    detector = ChangeDetector(script_dir, cluster.manifest_file(root),
                              sync_exclude(project, script_dir))
    limit = max_runs()
    runs = 1
    last = report
    interrupted = report.exit_code == 130
    watcher = None
    project_file = Path(project.path).resolve() if getattr(project, "path", None) else None
    _said(ui, report, runs)
    failed = False
    try:
        if not interrupted and (limit is None or runs < limit):
            watcher = Watcher(script_dir).start()
            while limit is None or runs < limit:
                mark = watcher.mark()
                # Edits made while the last run went on count at once; after a failure only a
                # new edit does (the unsent change is still pending: no retry loop).
                try:
                    changes = [] if failed else detector.pending()
                    if not changes:
                        ui.step(f"Watching {script_dir} for changes (Ctrl-C to stop)")
                        changes = watcher.wait(detector, since=mark)
                except SwiftrunError as exc:     # e.g. a path that cannot be read: say, wait
                    ui.error(f"{exc} (still watching; fix it and save again)")
                    failed = True
                    continue
                ui.step(f"Changed: {_names(changes)}; running again")
                if project_file and any((script_dir / c).resolve() == project_file for c in changes):
                    ui.warn(f"{project_file.name} changed: watch runs keep the settings it "
                            "started with; restart `swiftrun --watch` to apply the new ones")
                runs += 1
                try:
                    last = Runner(project, cluster, ui, replace(opts, keep_cluster=True)).run()
                    failed = False
                except SwiftrunError as exc:
                    ui.error(f"{exc} (still watching; fix it and save again)")
                    last = _failed_report(cluster, exc)
                    failed = True
                    continue
                _said(ui, last, runs)
                if last.exit_code == 130:
                    interrupted = True
                    break
    except KeyboardInterrupt:
        interrupted = True
        ui.info("watch: stopped")
    finally:
        if watcher is not None:
            watcher.stop()
    last.watch_runs = runs
    if not last.nodes:
        last.nodes = report.nodes
    _dissolve_rules(env, cluster, last, keep=keep, interrupted=interrupted)
    return last


def _said(ui, report, n: int) -> None:
    code = report.exit_code
    what = "ok" if code == 0 else ("did not finish" if code is None else f"exit {code}")
    ui.info(f"watch: run {n} ({report.swift_run or 'no swift run id'}): {what}, swift "
            f"{report.durations.get('swift', 0):.1f}s, total {report.durations.get('total', 0):.1f}s")


def _failed_report(cluster, exc):
    from swiftrun.run.runner import RunReport

    rep = RunReport(cluster=cluster.name)
    rep.error = str(exc)
    return rep


def _dissolve_rules(env, cluster, report, *, keep: bool, interrupted: bool) -> None:
    if interrupted and report.kept_reason:
        return          # swift still runs: the runner said how to reattach; never cut it off
    if keep or env.project.cluster.keep:
        report.dissolved = False
        return
    if not cluster.may_dissolve():
        report.kept_reason = "kept: another swiftrun run on this machine is using it"
        env.ui.warn(f"cluster {cluster.name} {report.kept_reason}; `swiftrun down` dissolves it")
        return
    try:
        cluster.down()
        report.dissolved = True
    except KeyboardInterrupt:
        env.ui.warn(f"interrupted while dissolving: `swiftrun down` finishes it")
    finally:
        cluster.remote.close()
