"""The main job: render swift.conf, bring up or reuse the cluster, sync, run swift detached on the
headnode, stream its console, fetch the results, dissolve.

swift runs under ``setsid nohup`` with its console in ``.swiftrun/runs/<id>.log`` and its exit
code in ``<id>.exit``, so losing the SSH session (or the laptop) never loses the run: the tail
reconnects and resumes at the byte it had reached, and ``swiftrun logs`` can reattach later.
"""

from __future__ import annotations

import os
import re
import secrets
import shlex
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from swiftrun.cloud.base import HEADNODE, WORKER
from swiftrun.errors import ConfigError, Interrupted, RemoteError, SwiftrunError
from swiftrun.remote import STATE_DIR

RUNS = ".swiftrun/runs"
HEARTBEAT = float(os.environ.get("SWIFTRUN_HEARTBEAT", "30"))


def remote_root(project, script_dir: Path) -> str:
    """Where the script directory lives on the headnode: ``~/swiftrun/<dir name>``."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", script_dir.resolve().name) or "project"
    return f"~/swiftrun/{name}"


def rq(path: str) -> str:
    """Quote a remote path but let a leading ``~/`` expand."""
    if path.startswith("~/"):
        return '"$HOME"/' + shlex.quote(path[2:])
    return shlex.quote(path)


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
    from swiftrun.ignore import literal
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


def plan(project, script: Path) -> dict:
    """What a run would do, with no credentials and no network: for --dry-run / `swiftrun plan`."""
    from swiftrun import swiftconf
    from swiftrun.cluster import make_provider
    from swiftrun.ignore import IgnoreRules
    from swiftrun.userdata import render_all

    script_dir = script.parent
    conf = swiftconf.render_checked(project, script_dir=script_dir)
    provider = make_provider(project)
    out = {"project": str(project.path) if project.path else None,
           "cluster": project.cluster.name, "provider": project.cluster.provider,
           "script": str(script), "swift_conf": conf.text, "resources": provider.describe_plan()}
    if provider.elastic:
        p = project
        out["instances"] = [
            {"role": HEADNODE, "count": 1, "type": p.ec2.headnode_type, "image": p.ec2.image,
             "spot": False},
            {"role": WORKER, "count": p.cluster.workers, "type": p.ec2.worker_type,
             "image": p.ec2.worker_image or p.ec2.image, "spot": p.ec2.spot}]
        from swiftrun.userdata import payload

        scripts = render_all(p, p.cluster.name)
        # what EC2 gets (gzip) against its 16 KB limit
        out["userdata_bytes"] = {k: len(payload(v)) for k, v in scripts.items()}
        from swiftrun.doctor import swift_source

        status, detail, fix = swift_source(p)
        out["swift_source"] = {"status": status, "detail": detail, "fix": fix}
    else:
        out["hosts"] = provider.describe_plan()
    from swiftrun.sync import scan

    rules = IgnoreRules.from_dir(script_dir, extra=sync_excludes(project, script_dir))
    entries = scan(script_dir, rules)
    out["sync"] = {"files": sum(1 for e in entries.values() if e.type == "f"),
                   "bytes": sum(e.size for e in entries.values() if e.type == "f")}
    return out


class Runner:
    def __init__(self, project, cluster, ui, opts: RunOptions):
        self.project, self.cluster, self.ui, self.opts = project, cluster, ui, opts
        self.script = opts.script.resolve()
        self.script_dir = self.script.parent
        self.root = remote_root(project, self.script_dir)
        self.report = RunReport(cluster=cluster.name)

    # -- the whole job -----------------------------------------------------------------------
    def run(self) -> RunReport:
        with self.cluster.in_use():
            return self._run()

    def _run(self) -> RunReport:
        from swiftrun.confcache import checked_text

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

    def _sync_and_start(self, conf_text: str) -> None:
        from swiftrun import sync

        t = time.monotonic()
        conn = self.cluster.remote.connect(self.target)
        self.ui.step(f"Syncing {self.script_dir} to {self.target.label}:{self.root}")
        state = self.cluster.manifest_file(self.root)
        rep = sync.upload(conn, self.script_dir, self.root, state_file=state,
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
        self.run_id = time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)
        self.report.run_id = self.run_id
        args = self.swift_args
        self.ui.step(f"Running swift {self.script.name} {' '.join(args)}".rstrip())
        start_run(self.cluster.remote, self.target, self.root, self.run_id,
                  swift_home=self.project.swift.home, script=self.script.name, args=args,
                  conf_text=conf_text)
        self.t_run = time.monotonic()

    def _follow(self) -> None:
        # With --json, stdout is reserved for the one JSON document: swift's console goes to stderr.
        out = sys.stderr.buffer if self.ui.json_mode else None
        code, console = follow(self.cluster.remote, self.target, self.root, self.run_id, self.ui,
                               out=out)
        self.report.exit_code = code
        m = re.search(r"RunID: (run\d+)", console)
        self.report.swift_run = m.group(1) if m else ""
        self.report.durations["swift"] = round(time.monotonic() - self.t_run, 3)

    def _fetch(self) -> None:
        t = time.monotonic()
        extra = (self.report.swift_run,) if self.report.swift_run else ()
        rep = fetch_outputs(self.cluster, self.target, self.project, self.script_dir, self.root,
                            extra_dirs=extra)
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


def fetch_outputs(cluster, target, project, script_dir: Path, root: str, *, extra_dirs=()):
    """Bring a run's outputs back over the cluster's connection (for `run` and `swiftrun fetch`);
    the caller reports with :func:`say_fetched`."""
    from swiftrun import sync

    return sync.fetch(cluster.remote.connect(target), script_dir, root,
                      state_file=cluster.manifest_file(root), outputs=project.sync.outputs,
                      extra_dirs=extra_dirs)


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


# -- remote run control (used by run, logs, cancel) --------------------------------------------
def start_run(remote, target, root: str, run_id: str, *, swift_home: str, script: str,
              args: list[str], conf_text: str) -> None:
    """Write swift.conf and a wrapper, then start it detached from this SSH session."""
    swift_cmd = " ".join(shlex.quote(a) for a in ["-config", ".swiftrun/swift.conf", script, *args])
    # `swiftrun cancel` sends TERM to the wrapper's process group: swift gets it, the wrapper
    # traps it, waits for swift to end and still writes the exit code (143).
    wrapper = f"""#!/bin/sh
cd "$(dirname "$0")/../.." || exit 97
id={shlex.quote(run_id)}; runs={RUNS}
cancelled=; child=
trap 'cancelled=1; [ -n "$child" ] && kill -TERM "$child" 2>/dev/null' TERM INT HUP
echo $$ > "$runs/$id.pid"
touch {STATE_DIR}/activity 2>/dev/null || true
( while sleep 60; do touch {STATE_DIR}/activity 2>/dev/null || true; done ) &
beat=$!
b="${{SWIFTRUN_NODE_ROOT:-}}"{shlex.quote(swift_home)}/bin/swift
[ -x "$b" ] || b="$(command -v swift || true)"
if [ -z "$b" ]; then
  echo "swiftrun: swift not found under {swift_home}/bin or on PATH on the headnode ([swift] home)" > "$runs/$id.log"
  code=127
else
  "$b" {swift_cmd} > "$runs/$id.log" 2>&1 < /dev/null &
  child=$!
  [ -z "$cancelled" ] || kill -TERM "$child" 2>/dev/null
  while :; do wait "$child"; code=$?; kill -0 "$child" 2>/dev/null || break; done
fi
kill "$beat" 2>/dev/null
touch {STATE_DIR}/activity 2>/dev/null || true
echo "$code" > "$runs/$id.exit.tmp" && mv "$runs/$id.exit.tmp" "$runs/$id.exit"
"""
    cmd = (f"cd {rq(root)} && mkdir -p {RUNS} && cat > .swiftrun/swift.conf.tmp && "
           f"mv .swiftrun/swift.conf.tmp .swiftrun/swift.conf && "
           f"printf '%s' {shlex.quote(wrapper)} > {RUNS}/{run_id}.sh && : > {RUNS}/{run_id}.log && "
           f"echo {shlex.quote(run_id)} > {RUNS}/latest && "
           # Only the wrapper goes to the background (braces): a bare `a && b & c` would run the
           # whole chain in the background, with stdin from /dev/null (an empty swift.conf) and
           # this session held open until swift ends.
           f"{{ setsid nohup sh {RUNS}/{run_id}.sh > /dev/null 2>&1 < /dev/null & }} && "
           f"echo started")
    remote.run(target, cmd, stdin=conf_text.encode(), timeout=60, check=True)


def follow(remote, target, root: str, run_id: str, ui, *, out=None, offset: int = 0,
           reconnect_for: float = 600.0) -> tuple[int, str]:
    """Stream the run's console from byte ``offset`` until swift exits; return (exit code, text).

    A dropped connection is retried with backoff and the stream resumes at the byte reached, so
    no line is lost or printed twice.
    """
    out = out or sys.stdout.buffer
    seen = bytearray()
    log = f"{RUNS}/{run_id}.log"
    ex, pid = f"{RUNS}/{run_id}.exit", f"{RUNS}/{run_id}.pid"
    # Follow until the exit file appears (or the wrapper is dead or a zombie: `tail --pid` would
    # wait for the zombie to be reaped, which can take seconds). The client then checks the
    # log's size, so bytes tail had not yet shown are still delivered.
    tail = (f"cd {rq(root)} || exit 96; i=0; while [ ! -s {pid} ] && [ $i -lt 100 ]; "
            f"do sleep 0.05; i=$((i+1)); done; "
            f"if [ -f {ex} ]; then tail -c +$((OFFSET+1)) {log}; exit 0; fi; "
            f"alive() {{ s=$(ps -o stat= -p \"$1\" 2>/dev/null) && [ \"${{s#Z}}\" = \"$s\" ]; }}; "
            f"tail -s 0.2 -c +$((OFFSET+1)) -f {log} & t=$!; p=$(cat {pid}); "
            f"while [ ! -f {ex} ] && alive \"$p\"; do sleep 0.05; done; "
            f"kill $t 2>/dev/null; wait $t 2>/dev/null; "
            f"i=0; while [ ! -f {ex} ] && [ $i -lt 20 ]; do sleep 0.1; i=$((i+1)); done; "
            f"test -f {ex} || exit 98; exit 0")
    down_since = None
    delay = 0.5
    while True:
        try:
            conn = remote.connect(target)
            chan = conn.transport.open_session(timeout=30)
            chan.exec_command(f"OFFSET={offset}; " + tail)
            chan.shutdown_write()
            down_since, delay = None, 0.5
            chan.settimeout(HEARTBEAT)
            while True:
                try:
                    data = chan.recv(65536)
                except socket.timeout:
                    # Silence is not death: say so, so a CI runner does not kill a quiet job.
                    ui.node("still running", f"no output from swift for {HEARTBEAT:.0f}s")
                    continue
                if not data:
                    break
                out.write(data)
                out.flush()
                offset += len(data)
                seen += data
            # The exit status may arrive just after the end of the output: wait for it a little.
            if not chan.exit_status_ready():
                chan.status_event.wait(10)
            status = chan.recv_exit_status() if chan.exit_status_ready() else -1
            chan.close()
            if status == 0:
                break
            if status in (96, 98):
                raise _RunGone(f"run {run_id} on {target.label} has no exit code yet "
                                  "(it may have been killed); see `swiftrun logs`")
            raise OSError("stream ended early")   # connection lost: reconnect and resume
        except (OSError, EOFError) as exc:
            remote.drop(target)
            now = time.monotonic()
            down_since = down_since or now
            if now - down_since > reconnect_for:
                raise RemoteError(f"lost the connection to {target.label} for {int(reconnect_for)}s "
                                  f"({exc}); swift may still be running: `swiftrun logs --follow`") from None
            ui.node("stream", f"connection lost ({exc or type(exc).__name__}); reconnecting")
            time.sleep(delay)
            delay = min(delay * 2, 10.0)
        except _RunGone:
            raise
        except RemoteError:
            remote.drop(target)
            now = time.monotonic()
            down_since = down_since or now
            if now - down_since > reconnect_for:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 10.0)
    for attempt in range(5):   # the connection may blip right at the end too
        try:
            res = remote.run(target, f"cd {rq(root)} && cat {ex} && stat -c %s {log}",
                             timeout=30, check=True)
            code_text, _, size_text = res.stdout.strip().partition("\n")
            size = int(size_text.strip() or 0)
            if size > offset:   # what the tail had not shown yet when it was stopped
                rest = remote.run(target, f"cd {rq(root)} && tail -c +{offset + 1} {log}",
                                  timeout=60, check=True, binary=True)
                out.write(rest.raw[: size - offset])
                out.flush()
                seen += rest.raw[: size - offset]
                offset = size
            break
        except (RemoteError, OSError, EOFError):
            remote.drop(target)
            if attempt == 4:
                raise
            time.sleep(1 + attempt)
    return int(code_text.strip() or 1), seen.decode(errors="replace")


class _RunGone(RemoteError):
    pass


def latest_run(remote, target, root: str) -> str:
    res = remote.run(target, f"cat {rq(root)}/{RUNS}/latest 2>/dev/null", timeout=30)
    run_id = res.stdout.strip()
    if not run_id:
        raise RemoteError(f"no run of this project on {target.label} ({root})")
    return run_id


def cancel_run(remote, target, root: str, run_id: str) -> bool:
    """Stop swift (the wrapper's whole process group); the wrapper still writes an exit code."""
    cmd = (f"cd {rq(root)} && p=$(cat {RUNS}/{run_id}.pid 2>/dev/null) && [ -n \"$p\" ] && "
           f"[ ! -f {RUNS}/{run_id}.exit ] && kill -TERM -- -$p 2>/dev/null && echo cancelled")
    res = remote.run(target, cmd, timeout=30)
    return "cancelled" in res.stdout
