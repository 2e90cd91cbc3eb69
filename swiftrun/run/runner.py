"""The main job: render swift.conf, bring up or reuse the cluster, sync, run swift detached on the
headnode, stream its console, fetch the results, dissolve.

How swift is started, followed and cancelled on the headnode is run/control.py; what a run would
do without doing it is run/plan.py. This module owns the order of the phases and what happens to
the cluster when one of them ends badly: anything unforeseen keeps it (and the work on it).
"""

from __future__ import annotations

import re
import secrets
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from swiftrun.errors import ConfigError, RemoteError, SwiftrunError
from swiftrun.node.layout import TOOLS_DIR, WORKER, remote_root
from swiftrun.run.control import cancel_run, follow, run_ended, start_run

# A tree checked (check_tree) this recently is not scanned again by the upload: a warm up answers
# in well under a second; a cold one takes minutes and the tree may have moved on meanwhile.
PREPARED_FRESH_S = 10.0


def swift_args(project, extra: tuple[str, ...]) -> list[str]:
    """``[swift] args`` then command-line ``-name=value`` (which win)."""
    args = {str(k): v for k, v in project.swift.args.items()}
    for item in extra:
        if not re.fullmatch(r"-[A-Za-z_][\w.-]*=.*", item):
            raise ConfigError(f"argument {item!r}: swift arguments are -name=value "
                              "(e.g. -nsim=10); swiftrun's own options start with --")
        name, _, value = item[1:].partition("=")
        args[name] = value
    out = []
    for k, v in args.items():
        if isinstance(v, bool):
            v = "true" if v else "false"
        out.append(f"-{k}={v}")
    return out


def sync_excludes(project, script_dir: Path) -> tuple[str, ...]:
    """[sync] exclude, plus swiftrun's own state (keys!) and ~/.ssh when they sit inside the
    script directory (a script run from $HOME must never upload them)."""
    from swiftrun.sync.ignore import literal
    from swiftrun.paths import state_home

    extra = []
    private_dirs = (state_home(), Path.home() / ".ssh", Path.home() / ".aws")
    # The tutorial keeps credentials.csv and the key pair's .pem beside the scripts.
    private_files = (project.ec2.credentials_file, project.ssh.key_file)
    for private, is_dir in [(d, True) for d in private_dirs] + [(f, False) for f in private_files]:
        if not private:
            continue
        try:
            rel = Path(private).resolve().relative_to(script_dir.resolve())
        except ValueError:
            continue
        extra.append(f"/{literal(rel.as_posix())}" + ("/" if is_dir else ""))
    return tuple(project.sync.exclude) + tuple(extra)


@dataclass
class RunOptions:
    script: Path
    args: tuple[str, ...] = ()
    keep_cluster: bool = False
    keep_on_failure: bool = False
    cancel_on_interrupt: bool = False
    dry_run: bool = False


@dataclass
class RunReport:
    cluster: str
    run_id: str = ""
    swift_run: str = ""        # runNNN
    exit_code: int | None = None
    nodes: list = field(default_factory=list)
    durations: dict = field(default_factory=dict)
    sync: dict = field(default_factory=dict)
    fetched: list = field(default_factory=list)
    dissolved: bool = False
    kept_reason: str = ""


class Runner:
    def __init__(self, project, cluster, ui, opts: RunOptions):
        self.project, self.cluster, self.ui, self.opts = project, cluster, ui, opts
        self.script = opts.script.resolve()
        self.script_dir = self.script.parent
        self.root = remote_root(project, self.script_dir)
        self.report = RunReport(cluster=cluster.name)
        self._prepared = (None, 0.0)    # check_tree's upload plan and when it was made
        self._ahead = None              # the fetch's listing, made while swift runs

    # -- the whole job -----------------------------------------------------------------------
    def run(self) -> RunReport:
        with self.cluster.in_use():
            return self._run()

    def _run(self) -> RunReport:
        from swiftrun.swiftconf import checked_text

        t0 = time.monotonic()
        conf_text = checked_text(self.project, script_dir=self.script_dir)
        if not self.script.is_file():
            raise ConfigError(f"{self.opts.script}: no such SwiftScript file")
        self.swift_args = swift_args(self.project, self.opts.args)   # bad input: before launching
        up = self.cluster.up(keep_on_failure=self.opts.keep_on_failure, check_workers=False)
        self.report.nodes = up.nodes
        self.report.durations["up"] = round(time.monotonic() - t0, 3)
        head = self.cluster.headnode_of(up.nodes)
        self.target = self.cluster.target(head)
        # Anything unforeseen that ends the run keeps the cluster (and the work on it).
        keep_reason = "kept: the run ended unexpectedly"
        try:
            self._sync_and_start(conf_text)
            self._follow()
            self.phase = "fetch"
            self._fetch()
            keep_reason = ""
        except KeyboardInterrupt:
            keep_reason = self._interrupted()
        except SwiftrunError as exc:
            keep_reason = f"kept because the run could not finish: {exc}"
            self.report.kept_reason = keep_reason
            raise
        finally:
            self._finish(keep_reason)
        self.report.durations["total"] = round(time.monotonic() - t0, 3)
        return self.report

    def check_tree(self) -> None:
        """What the upload would refuse, refused before anything is launched (the caller asks
        before the cost line): links that would dangle on the headnode, unreadable entries,
        files that hold secrets."""
        from swiftrun.sync import prepare

        # only what the upload would send is read (a warm run reads only the changed files);
        # the upload reuses this scan when the cluster answers soon after (a warm run)
        self._prepared = (prepare(self.script_dir, self.root, self.cluster.manifest_file(self.root),
                                  sync_excludes(self.project, self.script_dir)), time.monotonic())

    def _sync_and_start(self, conf_text: str) -> None:
        from swiftrun import sync

        t = time.monotonic()
        conn = self.cluster.remote.connect(self.target)
        self.ui.step(f"Syncing {self.script_dir} to {self.target.label}:{self.root}")
        state = self.cluster.manifest_file(self.root)
        prepared, at = self._prepared
        self._prepared = None, 0.0          # once: a re-run (watch) scans again
        if time.monotonic() - at > PREPARED_FRESH_S:
            prepared = None                 # a cold up took a while: what it saw may be old
        rep = sync.upload(conn, self.script_dir, self.root, state_file=state, prepared=prepared,
                          exclude=sync_excludes(self.project, self.script_dir),
                          warn_bytes=self.project.sync.warn_size_mb * 2**20,
                          on_large=None if self.project.sync.warn_size_mb <= 0 else lambda n: self.ui.warn(
                              f"uploading {n / 2**20:.0f} MiB (more than [sync] warn_size_mb = "
                              f"{self.project.sync.warn_size_mb}); exclude what swift does not need "
                              "with .swiftignore or [sync] exclude"))
        self.ui.node("sync", f"{rep.files_sent} file(s), {rep.bytes_sent} bytes sent"
                     f"{' (full)' if rep.full else ''}, {rep.deleted} deleted")
        self.report.sync = {"files_sent": rep.files_sent, "bytes_sent": rep.bytes_sent,
                            "deleted": rep.deleted, "full": rep.full}
        self.report.durations["sync"] = round(time.monotonic() - t, 3)
        if self.project.swift.path:
            self._push_tools()
        self.run_id = time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)
        self.report.run_id = self.run_id
        args = self.swift_args
        self.ui.step(f"Running swift {self.script.name} {' '.join(args)}".rstrip())
        start_run(self.cluster.remote, self.target, self.root, self.run_id,
                  swift_home=self.project.swift.home, script=self.script.name, args=args,
                  conf_text=conf_text)
        self.t_run = time.monotonic()
        # a warm run's fetch then lists only what changed (after a full upload nearly all did)
        if rep.total_files >= sync.AHEAD_MIN_ENTRIES and not rep.full:
            self._ahead = sync.ListAhead.start(conn, self.root,
                                               until=run_ended(self.root, self.run_id))

    def _push_tools(self) -> None:
        """[swift] path: the files of those directories (the first directory wins a name) into
        every node's tools directory, which is on the apps' PATH (worker.pl's environment, the
        run wrapper's). Replaced whole on each run: a tool removed here is gone there too."""
        from concurrent.futures import ThreadPoolExecutor

        from swiftrun.sync.tools import tools_tar

        blob, names = tools_tar(self.project.swift.path)
        cmd = (f"d={TOOLS_DIR}; rm -rf \"$d.new\" && mkdir -p \"$d.new\" && "
               f"tar -x -C \"$d.new\" && rm -rf \"$d\" && mv \"$d.new\" \"$d\"")
        nodes = [n for n in self.report.nodes if n.live]
        remote = self.cluster.remote

        def push(node):
            remote.run(self.cluster.target(node), cmd, stdin=blob, timeout=120, check=True)

        with ThreadPoolExecutor(max_workers=16) as pool:
            list(pool.map(push, nodes))
        self.ui.node("tools", f"{len(names)} file(s) of [swift] path on the PATH of "
                     f"{len(nodes)} node(s)")

    def _follow(self) -> None:
        # With --json, stdout is reserved for the one JSON document: swift's console goes to stderr.
        from swiftrun.report.progress import ProgressView
        from swiftrun.report.swiftlog import expected_tasks

        raw = sys.stderr.buffer if self.ui.json_mode else sys.stdout.buffer
        # the bar's total: the job count of the newest finished run of the same script and args
        try:
            total = expected_tasks(self.script_dir, self.script.name, list(self.swift_args))
        except OSError:
            total = None
        workers = sum(1 for n in self.report.nodes if getattr(n, "role", "") == WORKER) or None
        view = ProgressView(raw, status=sys.stderr, total=total, workers=workers,
                            terminal=None if not self.ui.json_mode else False)
        try:
            code, console = follow(self.cluster.remote, self.target, self.root, self.run_id,
                                   self.ui, out=view)
        finally:
            view.close()
        self.report.exit_code = code
        m = re.search(r"RunID: (run\d+)", console)
        self.report.swift_run = m.group(1) if m else ""
        self.report.durations["swift"] = round(time.monotonic() - self.t_run, 3)

    def _fetch(self) -> None:
        t = time.monotonic()
        extra = (self.report.swift_run,) if self.report.swift_run else ()
        ahead, self._ahead = self._ahead, None
        rep = fetch_outputs(self.cluster, self.target, self.project, self.script_dir, self.root,
                            extra_dirs=extra, ahead=ahead)
        self.report.fetched = list(rep.files)
        say_fetched(self.ui, rep, self._script_arg())
        self.ui.node("fetch", f"{rep.files_fetched} file(s) back, {rep.bytes} bytes")
        self.report.durations["fetch"] = round(time.monotonic() - t, 3)

    def _script_arg(self) -> str:
        """The script as the user can paste it into the next command, from where they are."""
        script = self.opts.script
        try:
            script = script.resolve().relative_to(Path.cwd().resolve())
        except (OSError, ValueError):
            pass
        return shlex.quote(str(script))

    def _interrupted(self) -> str:
        """Ctrl-C (or SIGTERM) while the run goes on: say how to come back and keep swift and the
        cluster, unless --cancel-on-interrupt or a second Ctrl-C within 3 s asks to cancel."""
        remote, target = self.cluster.remote, self.target
        self.report.exit_code = 130
        if not getattr(self, "run_id", ""):
            return "interrupted before swift started"
        if getattr(self, "phase", "") == "fetch":
            # swift is done; its outputs may be only half back: never dissolve over them.
            self.ui.warn("interrupted while fetching the outputs: swift has finished")
            self.ui.info(f"fetch:    swiftrun fetch {self._script_arg()}\n"
                         "dissolve: swiftrun down  (after fetching)")
            return "kept: the outputs were not all fetched"
        if hasattr(self, "t_run"):
            self.report.durations["swift"] = round(time.monotonic() - self.t_run, 3)
        if not self.opts.cancel_on_interrupt:
            script = self._script_arg()
            try:   # a second Ctrl-C from here on (even while these lines print) cancels
                self.ui.warn("interrupted: swift keeps running on the headnode and the cluster "
                             "stays up")
                self.ui.info(f"reattach: swiftrun logs --follow {script}\n"
                             f"cancel:   swiftrun cancel {script}\n"
                             f"dissolve: swiftrun down  (after fetching: swiftrun fetch {script})")
                self.ui.info("press Ctrl-C again within 3 s to cancel swift now")
                time.sleep(3)
            except KeyboardInterrupt:
                self.opts.cancel_on_interrupt = True
        if self.opts.cancel_on_interrupt:
            done = cancel_run(remote, target, self.root, self.run_id)
            self.ui.info("swift cancelled on the headnode" if done else
                         "swift had already finished on the headnode")
            return ""   # normal dissolve rules apply
        return "kept: swift is still running"

    def _finish(self, keep_reason: str) -> None:
        if self._ahead is not None:         # the run ended before its fetch
            self._ahead.cancel()
            self._ahead = None
        keep = self.opts.keep_cluster or self.project.cluster.keep
        if keep_reason:
            self.report.kept_reason = keep_reason
            self.ui.warn(f"cluster {self.cluster.name} {keep_reason}; `swiftrun down` dissolves it")
        elif not keep and not self.cluster.may_dissolve():
            self.report.kept_reason = "kept: another swiftrun run on this machine is using it"
            self.ui.warn(f"cluster {self.cluster.name} {self.report.kept_reason}; the last one "
                         "to finish dissolves it (or `swiftrun down`)")
        elif not keep:
            self.cluster.down()
            self.report.dissolved = True
        self.cluster.remote.close()


def fetch_outputs(cluster, target, project, script_dir: Path, root: str, *, extra_dirs=(),
                  ahead=None):
    """Bring a run's outputs back over the cluster's connection (for `run` and `swiftrun fetch`);
    the caller reports with :func:`say_fetched`."""
    from swiftrun import sync

    return sync.fetch(cluster.remote.connect(target), script_dir, root,
                      state_file=cluster.manifest_file(root), outputs=project.sync.outputs,
                      extra_dirs=extra_dirs, ahead=ahead)


def say_fetched(ui, rep, script_arg: str) -> None:
    """Warn about what a fetch skipped or kept both ways; raise when outputs did not come back
    (the caller keeps the cluster: only the headnode has them)."""
    for path in rep.refused:
        ui.warn(f"not fetched (unsafe path or link): {path}")
    for path in rep.conflicts:
        ui.warn(f"{path} changed here and on the headnode; the headnode's copy is in place")
    if rep.failed:
        raise RemoteError(f"could not write {len(rep.failed)} fetched file(s) "
                          f"(first: {rep.failed[0]}); retry with `swiftrun fetch {script_arg}`")
