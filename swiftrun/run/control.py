"""The remote run protocol: start swift detached on the headnode, follow it, find it, cancel it.

swift runs under ``setsid nohup`` with its console in ``.swiftrun/runs/<id>.log`` and its exit
code in ``<id>.exit``, so losing the SSH session (or the laptop) never loses the run: the tail
reconnects and resumes at the byte it had reached, and ``swiftrun logs`` can reattach later.
Used by ``run`` (the runner), ``logs --follow`` and ``cancel``; the files are the node contract
(node/layout.py ``RUNS``, docs/internals.md "On the headnode, per project").
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import shlex
import stat
import subprocess
import sys
import time

from swiftrun import environ
from swiftrun.errors import RemoteError
from swiftrun.node.layout import RUN_ID, RUNS, STATE_DIR, TOOLS_DIR
from swiftrun.node.swift import COMPAT_LAUNCHER_SH, EVAL_LAUNCHER_TEST, launcher_word

HEARTBEAT = environ.seconds("SWIFTRUN_HEARTBEAT")


def rq(path: str) -> str:
    """Quote a remote path but let a leading ``~/`` expand."""
    if path.startswith("~/"):
        return '"$HOME"/' + shlex.quote(path[2:])
    return shlex.quote(path)


def _id(run_id: str) -> str:
    """``run_id``, known to be safe to paste into a remote command (see layout.RUN_ID)."""
    if not RUN_ID.fullmatch(run_id or ""):
        raise ValueError(f"not a run id: {run_id!r}")
    return run_id


def start_run(remote, target, root: str, run_id: str, *, swift_home: str, script: str,
              args: list[str], conf_text: str) -> None:
    """Write swift.conf and a wrapper, then start it detached from this SSH session."""
    run_id = _id(run_id)
    argv = ["-config", ".swiftrun/swift.conf", script, *args]
    swift_cmd = " ".join(shlex.quote(a) for a in argv)
    # Swift 0.96's launcher evals its command line: words that survive that (node/swift.py)
    eval_cmd = " ".join(shlex.quote(launcher_word(a)) for a in argv)
    # `swiftrun cancel` sends TERM to the wrapper's process group: swift gets it, the wrapper
    # traps it, waits for swift to end and still writes the exit code (143).
    # The wrapper holds <id>.lock (flock, fd 9) from before it writes <id>.pid until just after
    # <id>.exit exists, so a follower that sees the pid file can wait on the lock and wake the
    # moment the run ends (or the wrapper dies: the kernel lets go of a dead process's lock).
    # Nothing it starts inherits fd 9, so a process swift leaves behind cannot hold the lock.
    # Without flock(1) there is no lock file and followers poll for <id>.exit instead.
    wrapper = f"""#!/bin/sh
cd "$(dirname "$0")/../.." || exit 97
id={shlex.quote(run_id)}; runs={RUNS}
cancelled=; child=
trap 'cancelled=1; [ -n "$child" ] && kill -TERM "$child" 2>/dev/null' TERM INT HUP
if command -v flock >/dev/null 2>&1; then
  exec 9> "$runs/$id.lock"; flock 9 || {{ exec 9>&-; rm -f "$runs/$id.lock"; }}
fi
echo $$ > "$runs/$id.pid"
touch {STATE_DIR}/activity 2>/dev/null || true
# the heartbeat's sleep dies with it (a bare `while sleep 60` would leave one behind per run)
( s=; trap 'kill $s 2>/dev/null; exit 0' TERM
  while :; do sleep 60 & s=$!; wait $s; touch {STATE_DIR}/activity 2>/dev/null || true; done ) 9>&- &
beat=$!
PATH={TOOLS_DIR}:$PATH; export PATH   # [swift] path tools, for apps on the headnode
b="${{SWIFTRUN_NODE_ROOT:-}}"{shlex.quote(swift_home)}/bin/swift
[ -x "$b" ] || b="$(command -v swift || true)"
if [ -z "$b" ]; then
  echo "swiftrun: swift not found under {swift_home}/bin or on PATH on the headnode ([swift] home)" > "$runs/$id.log"
  code=127
else
{COMPAT_LAUNCHER_SH}
  if {EVAL_LAUNCHER_TEST}; then set -- {eval_cmd}; else set -- {swift_cmd}; fi
  "$b" "$@" > "$runs/$id.log" 2>&1 < /dev/null 9>&- &
  child=$!
  [ -z "$cancelled" ] || kill -TERM "$child" 2>/dev/null
  while :; do wait "$child"; code=$?; kill -0 "$child" 2>/dev/null || break; done
fi
kill "$beat" 2>/dev/null
touch {STATE_DIR}/activity 2>/dev/null || true
echo "$code" > "$runs/$id.exit.tmp" && mv "$runs/$id.exit.tmp" "$runs/$id.exit"
exec 9>&-   # the run is over: wake the followers now, not when this shell is gone
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


KEEP_BYTES = 1 << 20     # of the console, what follow() returns: the head (swift's RunID line)
CHUNK = 1 << 20          # a read past the head: a replay wakes this process once per MiB
# the follower's last word, on stderr: swift's exit code and the log's final size in bytes
EXIT_MARK = re.compile(rb"^swiftrun-exit (-?\d+)(?: (\d+))?[ \t]*$", re.M)


def _run_waits(run_id: str) -> tuple[str, str, str]:
    """The node's three waits on run ``run_id``, sh run in its project directory, shared by
    the follower and ``run_ended``: until the wrapper has written its pid (5 s at most); until
    the run ends (``flock -s`` on the wrapper's ``<id>.lock``, woken by the kernel when the
    wrapper lets go, just after ``<id>.exit`` exists; or, for a wrapper that has no lock, an
    older swiftrun or a node without flock, a 10 ms poll for the exit file while the wrapper
    is neither dead nor a zombie); then for the exit file itself (2 s at most: a wrapper that
    died holding the lock never writes one)."""
    ex, pid, lock = (f"{RUNS}/{run_id}.{x}" for x in ("exit", "pid", "lock"))
    started = f"i=0; while [ ! -s {pid} ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i+1)); done"
    ended = (f"if [ -f {lock} ] && command -v flock >/dev/null 2>&1; then flock -s {lock} true; "
             f"else p=; read -r p 2>/dev/null < {pid}; "
             f"alive() {{ [ -r /proc/\"$1\"/stat ] && read -r _ _ s _ < /proc/\"$1\"/stat "
             f"&& [ \"$s\" != Z ]; }}; "
             f"while [ ! -f {ex} ] && alive \"$p\"; do sleep 0.01; done; fi")
    settled = f"i=0; while [ ! -f {ex} ] && [ $i -lt 20 ]; do sleep 0.1; i=$((i+1)); done"
    return started, ended, settled


def _follower(root: str, run_id: str) -> str:
    """The node side of follow(): the log from byte ``$OFFSET`` on stdout until the run ends,
    then ``swiftrun-exit CODE SIZE`` on stderr (exit 96: no project directory, 98: the wrapper
    is gone without an exit code).

    A finished run: the marker first, then the rest of the log in one go (``cat`` from the
    start). A running one: ``tail --pid=W -f``, where W is the run's end (``_run_waits``) in
    the background, which this script reaps (``wait``) the moment the run ends (a zombie
    wrapper would hold ``tail --pid`` on the wrapper itself). The client stops as soon as it
    holds SIZE bytes, without waiting for tail's last look (up to 10 ms) or for the channel to
    close. Small files are read with the ``read`` builtin (no fork).
    """
    log, ex = f"{RUNS}/{run_id}.log", f"{RUNS}/{run_id}.exit"
    started, ended, settled = _run_waits(run_id)
    mark = (f"read -r c < {ex}; z=$(stat -c %s {log} 2>/dev/null); "
            f"echo \"swiftrun-exit $c $z\" >&2")
    return (f"cd {rq(root)} || exit 96; {started}; "
            f"if [ -f {ex} ]; then {mark}; [ \"$OFFSET\" -gt 0 ] || exec cat {log}; "
            f"exec tail -c +$((OFFSET+1)) {log}; fi; "
            f"{ended} & w=$!; "
            f"tail -s 0.01 --pid=$w -c +$((OFFSET+1)) -f {log} & t=$!; "
            f"wait $w; {settled}; "
            f"test -f {ex} || {{ wait $t; exit 98; }}; {mark}; wait $t; exit 0")


def run_ended(root: str, run_id: str) -> str:
    """sh that returns once run ``run_id`` has ended (its exit file exists) and fails when its
    wrapper is gone without one: what the fetch's listing waits on when it is set off ahead of
    the run's end (sync.ListAhead), so that it starts the moment swift is done and never before.
    The waits are the follower's (``_run_waits``)."""
    started, ended, settled = _run_waits(_id(run_id))
    return f"( cd {rq(root)} || exit 96; {started}; {ended}; {settled}; test -f {RUNS}/{run_id}.exit )"


def _exit_mark(err: bytes) -> tuple[int, int | None] | None:
    """(exit code, log size or None) from the follower's stderr, once its line is complete."""
    m = EXIT_MARK.search(err, 0, err.rfind(b"\n") + 1)
    if not m:
        return None
    return int(m.group(1)), int(m.group(2)) if m.group(2) else None


def follow(remote, target, root: str, run_id: str, ui, *, out=None, offset: int = 0,
           reconnect_for: float = 600.0) -> tuple[int, str]:
    """Stream the run's console from byte ``offset`` until swift exits; return (exit code, the
    first MiB of what was streamed).

    A dropped connection is retried with backoff and the stream resumes at the byte reached, so
    no line is lost or printed twice. The end is the follower's exit marker (``_follower``):
    with the whole log in hand the stream's ssh is stopped at once; without a marker, one more
    round trip reads the exit file and fetches what the stream had not shown.
    """
    out = out or sys.stdout.buffer
    run_id = _id(run_id)
    seen = bytearray()
    log, ex = f"{RUNS}/{run_id}.log", f"{RUNS}/{run_id}.exit"
    script = _follower(root, run_id)
    down_since = None
    delay = 0.5
    code: int | None = None
    sink = _sink_fd(out)
    back = _read_back(sink)
    if back is not None:
        out.flush()
        try:
            return _into_file(remote, target, root, run_id, ui, sink, back, offset, reconnect_for)
        finally:
            os.close(back)
    while True:
        proc = None
        try:
            proc = remote.popen(target, f"OFFSET={offset}; " + script, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
            try:
                fd, efd = proc.stdout.fileno(), proc.stderr.fileno()
                _widen(fd)
                down_since, delay = None, 0.5
                err, mark, fds = bytearray(), None, [fd, efd]
                while fd in fds and not (mark and mark[1] is not None and offset >= mark[1]):
                    ready, _, _ = select.select(fds, [], [], HEARTBEAT)
                    if not ready:
                        # Silence is not death: say so, so a CI runner does not kill a quiet job.
                        ui.node("still running", f"no output from swift for {HEARTBEAT:.0f}s")
                        continue
                    if efd in ready:
                        data = os.read(efd, 65536)
                        if not data:
                            fds.remove(efd)         # not selected again: no spinning on EOF
                        err += data
                        mark = mark or _exit_mark(err)
                    if fd not in ready:
                        continue
                    if sink is not None and len(seen) >= KEEP_BYTES:
                        moved = _splice(fd, sink)
                        if moved is None:
                            sink = None             # not on this file: copy from here on
                            continue
                        if not moved:
                            fds.remove(fd)
                        offset += moved
                        continue
                    data = os.read(fd, 65536 if len(seen) < KEEP_BYTES else CHUNK)
                    if not data:
                        fds.remove(fd)
                        continue
                    out.write(data)
                    out.flush()
                    offset += len(data)
                    if len(seen) < KEEP_BYTES:      # the head is enough (RunID); a replay of a
                        seen += data[:KEEP_BYTES - len(seen)]   # 200 MB console stays small
                if fd in fds:                       # the whole log is here: the rest is tail's
                    _stop(proc)                     # last look and the channel's close
                    code = mark[0]
                    break
                while efd in fds:                   # the stream ended: its last words
                    data = os.read(efd, 65536)
                    if not data:
                        break
                    err += data
                status = proc.wait()
            finally:
                proc.stdout.close()
                proc.stderr.close()
            if status == 0:
                mark = _exit_mark(err)
                if mark and (mark[1] is None or offset >= mark[1]):
                    code = mark[0]
                break                               # else: the round trip below
            if status in (96, 98):
                raise _RunGone(f"run {run_id} on {target.label} has no exit code yet "
                                  "(it may have been killed); see `swiftrun logs`")
            raise OSError("stream ended early")   # connection lost: reconnect and resume
        except KeyboardInterrupt:
            _stop(proc)
            raise
        except _RunGone:
            raise
        except (OSError, EOFError, RemoteError) as exc:
            _stop(proc)
            down_since, delay = _lost(remote, target, ui, exc, down_since, delay, reconnect_for)
    if code is not None:
        return code, seen.decode(errors="replace")
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
                if len(seen) < KEEP_BYTES:
                    seen += rest.raw[: size - offset][:KEEP_BYTES - len(seen)]
                offset = size
            break
        except (RemoteError, OSError, EOFError):
            remote.drop(target)
            if attempt == 4:
                raise
            time.sleep(1 + attempt)
    return int(code_text.strip() or 1), seen.decode(errors="replace")


def _sink_fd(out) -> int | None:
    """The file descriptor of ``out`` when the console can go there without passing through
    Python (a file, /dev/null, a pipe), else None (a progress view that reads the lines)."""
    if not hasattr(os, "splice"):
        return None
    try:
        return out.fileno()
    except (AttributeError, OSError, ValueError):
        return None


def _read_back(fd: int | None) -> int | None:
    """When ``fd`` is a regular file: a descriptor that reads the same file (for the console's
    head, which ssh writes there itself, see ``_into_file``), else None."""
    if fd is None:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        return os.open(f"/proc/self/fd/{fd}", os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except OSError:             # no /proc, or a file this process may write but not read
        return None


def _into_file(remote, target, root: str, run_id: str, ui, fd: int, back: int, offset: int,
               reconnect_for: float) -> tuple[int, str]:
    """follow() into a regular file: ssh writes the console into it itself. Through a pipe and
    this process a 200 MB replay had three busy processes on two cores (ssh, sshd, swiftrun),
    ~20% slower than ``ssh cat > file`` here. How far the console got is the file's offset,
    which ssh shares, so a reconnect resumes at the byte reached; once the exit marker is in,
    the stream is stopped as soon as the file holds SIZE bytes. The head is read back."""
    script, start = _follower(root, run_id), _pos(fd)
    down_since, delay, short = None, 0.5, 0
    while True:
        proc, before, at = None, _pos(fd), offset
        try:
            proc = remote.popen(target, f"OFFSET={offset}; " + script, stdout=fd,
                                stderr=subprocess.PIPE)
            down_since, delay = None, 0.5
            err, mark, last, efd = bytearray(), None, before, proc.stderr.fileno()
            while True:
                if not select.select([efd], [], [], HEARTBEAT)[0]:
                    if _pos(fd) == last:
                        ui.node("still running", f"no output from swift for {HEARTBEAT:.0f}s")
                    last = _pos(fd)
                    continue
                data = os.read(efd, 65536)
                if not data:
                    break
                err += data
                mark = mark or _exit_mark(err)
                if mark and mark[1] is not None:
                    want = before + mark[1] - offset
                    while proc.poll() is None and _pos(fd) < want:
                        time.sleep(0.002)           # tail's last look: up to 10 ms
                    if _pos(fd) >= want:
                        break
            _stop(proc)
            status = proc.wait()
            proc.stderr.close()
            offset = at + _pos(fd) - before
            mark = mark or _exit_mark(err)
            if mark and (mark[1] is None or offset >= mark[1]):
                return mark[0], os.pread(back, KEEP_BYTES, start).decode(errors="replace")
            if status in (96, 98):
                raise _RunGone(f"run {run_id} on {target.label} has no exit code yet "
                               "(it may have been killed); see `swiftrun logs`")
            if status == 0 and short < 3:
                short += 1      # ended short of its size: the follower again, from there
                continue
            raise OSError("stream ended early")
        except KeyboardInterrupt:
            _stop(proc)
            raise
        except _RunGone:
            raise
        except (OSError, EOFError, RemoteError) as exc:
            _stop(proc)
            if proc is not None:
                proc.stderr.close()
            offset = at + max(0, _pos(fd) - before)     # what ssh wrote before it broke
            down_since, delay = _lost(remote, target, ui, exc, down_since, delay, reconnect_for)


def _lost(remote, target, ui, exc: BaseException, down_since: float | None, delay: float,
          reconnect_for: float) -> tuple[float, float]:
    """A stream broke: drop the connection, then give up (none for ``reconnect_for`` s) or say
    so and wait before the next try. Returns (down since, the next wait)."""
    remote.drop(target)
    now = time.monotonic()
    down_since = down_since or now
    if now - down_since > reconnect_for:
        if isinstance(exc, RemoteError):
            raise exc
        raise RemoteError(f"lost the connection to {target.label} for {int(reconnect_for)}s "
                          f"({exc}); swift may still be running: `swiftrun logs --follow`") from None
    if not isinstance(exc, RemoteError):
        ui.node("stream", f"connection lost ({exc or type(exc).__name__}); reconnecting")
    time.sleep(delay)
    return down_since, min(delay * 2, 10.0)


def _pos(fd: int) -> int:
    return os.lseek(fd, 0, os.SEEK_CUR)


def _widen(fd: int) -> None:
    """A 1 MiB pipe from ssh (Linux's default is 64 KiB): bulk replays wake both ends 16 times
    less often."""
    import fcntl
    with contextlib.suppress(OSError, AttributeError):
        fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), 1 << 20)


def _splice(src: int, dest: int) -> int | None:
    """Move what the stream's pipe holds (up to 1 MiB) to ``dest`` in the kernel: a replay of a
    200 MB console runs at ``ssh cat``'s speed. 0 at the end of the stream; None when ``dest``
    does not take splice (a terminal, an O_APPEND file): nothing was moved then."""
    try:
        return os.splice(src, dest, 1 << 20)
    except OSError:
        return None


class _RunGone(RemoteError):
    pass


def _stop(proc) -> None:
    """End a stream's ssh process (the run goes on; only the view of it stops)."""
    if proc is not None and proc.poll() is None:
        proc.kill()
        proc.wait()


def latest_run(remote, target, root: str) -> str:
    res = remote.run(target, f"cat {rq(root)}/{RUNS}/latest 2>/dev/null", timeout=30)
    run_id = res.stdout.strip()
    if not run_id:
        raise RemoteError(f"no run of this project on {target.label} ({root})")
    if not RUN_ID.fullmatch(run_id):
        raise RemoteError(f"{root}/{RUNS}/latest on {target.label} holds no run id "
                          f"({run_id[:40]!r}): name a run with --run, or start a new one")
    return run_id


def run_ids(remote, target, root: str) -> list[str]:
    """The runs of this project on the headnode, oldest first."""
    res = remote.run(target, f"cd {rq(root)}/{RUNS} 2>/dev/null && ls -1tr -- *.log 2>/dev/null",
                     timeout=30)
    names = [line[:-4] for line in res.stdout.splitlines() if line.endswith(".log")]
    return [n for n in names if RUN_ID.fullmatch(n)]


def run_logs(remote, target, root: str, run_id: str) -> tuple[str, int | None, str]:
    """(state, exit code, console) of one run: state is ``missing``, ``running`` or
    ``finished``. The exit code comes back on stderr, never mixed into the console."""
    run_id = _id(run_id)
    log, ex = f"{RUNS}/{run_id}.log", f"{RUNS}/{run_id}.exit"
    res = remote.run(target, f"cd {rq(root)} 2>/dev/null && [ -f {log} ] || "
                             f"{{ echo swiftrun-missing >&2; exit 0; }}; cat {log}; "
                             f"if [ -f {ex} ]; then read -r c < {ex}; echo \"swiftrun-exit $c\" >&2; "
                             f"else echo swiftrun-running >&2; fi", timeout=60)
    marks = res.stderr.split()
    if "swiftrun-missing" in marks:
        return "missing", None, ""
    if "swiftrun-exit" in marks:
        i = marks.index("swiftrun-exit")
        code = marks[i + 1] if i + 1 < len(marks) else ""
        return "finished", int(code) if code.lstrip("-").isdigit() else None, res.stdout
    if "swiftrun-running" in marks:
        return "running", None, res.stdout
    raise RemoteError(f"could not read run {run_id} on {target.label}: "
                      f"{res.stderr.strip()[-200:] or 'no answer'}")


def cancel_run(remote, target, root: str, run_id: str) -> bool:
    """Stop swift (the wrapper's whole process group); the wrapper still writes an exit code."""
    run_id = _id(run_id)
    cmd = (f"cd {rq(root)} && read -r p 2>/dev/null < {RUNS}/{run_id}.pid && [ -n \"$p\" ] && "
           f"[ ! -f {RUNS}/{run_id}.exit ] && kill -TERM -- -$p 2>/dev/null && echo cancelled")
    res = remote.run(target, cmd, timeout=30)
    return "cancelled" in res.stdout
