"""The wire: every sync round trip is one remote command on the node's open OpenSSH connection.

A round trip is ``ssh`` on the node's multiplexed connection (a new channel, no handshake), with
pipes: the command's stdin and stdout carry the tar stream and the name lists, its stderr goes to
a temporary file read at the end (a pipe could fill and stall the remote side). OpenSSH moves
the bytes, so bulk transfers run at its speed.

Remote commands are POSIX sh + GNU coreutils/findutils/tar (Ubuntu nodes). The remote root may
start with ``~/``; that part is expanded by the remote shell, everything else is quoted.
"""

from __future__ import annotations

import contextlib
import fcntl
import shlex
import subprocess
import tempfile

SSH_LOST = 255          # ssh's own exit code: the connection failed or dropped
WIDE_PIPE = 1 << 20     # bytes: Linux's default pipe-max-size, what anyone may ask for


def widen(pipe) -> None:
    """Give the pipe ``pipe`` (a file object or descriptor, either end) 1 MiB instead of Linux's
    64 KiB, where the system allows it. Between OpenSSH and a tar on this side, a 64 KiB pipe
    makes the two take turns (fill, wake, drain) some 80 times for 5 000 small files; at
    1 MiB the pull of them took 84 ms [72-94] against 128 [78-173] here. Elsewhere, or when
    this user's pipe quota is spent, the pipe stays as it is."""
    op = getattr(fcntl, "F_SETPIPE_SZ", None)
    if op is None:
        return
    with contextlib.suppress(OSError, ValueError):
        fcntl.fcntl(pipe if isinstance(pipe, int) else pipe.fileno(), op, WIDE_PIPE)


def last_line(text: str) -> str:
    """The last non-blank line of a tool's stderr (what it said last is why it stopped)."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1] if lines else "no message"


# A remote shell whose script comes first on its stdin: a line with the script's length, then
# the script (``read`` takes one byte at a time from a pipe and ``head -c`` no more than it is
# told, so what follows stays on stdin for the script itself).
_SCRIPT_ON_STDIN = 'IFS= read -r n || exit 0; s=$(head -c "$n") && eval "$s"'


class Pipe:
    """One remote ``sh -c SCRIPT`` with pipes: the calls the upload and fetch code make."""

    @classmethod
    def early(cls, link) -> "Pipe":
        """A remote shell started before its script is known (``run`` sends it): the ssh
        process, the channel on the master and the remote sh start while this side still scans
        the tree, instead of after it (~20-30 ms of an incremental sync). ``close`` ends one
        that was not needed."""
        return cls(link, _SCRIPT_ON_STDIN)

    def run(self, script: str) -> "Pipe":
        self.used = True
        body = script.encode()
        self.sendall(b"%d\n" % len(body) + body)
        return self

    def close(self) -> None:
        """End an ``early`` shell that was given no script (EOF: it exits at once)."""
        with contextlib.suppress(OSError, ValueError):
            self.finish()

    def discard(self) -> None:
        """End an ``early`` shell that was given no script without waiting for the far end to
        say so (a round trip): the master closes its channel when this ssh goes."""
        self.kill()
        self.close()

    def __init__(self, link, script: str):
        self._err = tempfile.TemporaryFile()
        self.proc = link.popen("sh -c " + shlex.quote(script), stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=self._err, bufsize=1 << 16)
        self.stdout = self.proc.stdout
        self.used = script != _SCRIPT_ON_STDIN     # an early shell is used once given a script

    def makefile(self, mode: str = "rb"):
        return self.stdout

    def sendall(self, data: bytes) -> None:
        self.proc.stdin.write(data)

    def shutdown_write(self) -> None:
        with contextlib.suppress(OSError):
            self.proc.stdin.close()

    def exit_status_ready(self) -> bool:
        return self.proc.poll() is not None

    def finish(self) -> tuple[int, str]:
        """Exit status (-1: the connection dropped) and stderr, once stdout has been read."""
        self.shutdown_write()
        with contextlib.suppress(OSError):
            self.proc.stdout.close()
        rc = self.proc.wait()
        self._err.seek(0)
        err = self._err.read().decode("utf-8", "replace").strip()
        self._err.close()
        return (-1 if rc == SSH_LOST else rc), err

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def _exec(link, script: str, timeout: float | None = None, early: Pipe | None = None) -> Pipe:
    """Start ``script`` under POSIX sh (whatever the login shell is) on the node of ``link``;
    on ``early`` (``Pipe.early``) when that was given no script yet. ``timeout`` is kept for
    the callers' sake: a dead connection is noticed by OpenSSH's ServerAlive probes (45 s), a
    stuck remote command by the caller's own limits."""
    if early is not None and not early.used:
        return early.run(script)
    return Pipe(link, script)


def _finish(chan: Pipe) -> tuple[int, str]:
    return chan.finish()


def root_expr(remote_root: str) -> str:
    """The remote root as a shell word: a leading ``~/`` becomes "$HOME"/, the rest is quoted."""
    if remote_root == "~":
        return '"$HOME"'
    if remote_root.startswith("~/"):
        rest = remote_root[2:]
        return '"$HOME"/' + shlex.quote(rest) if rest else '"$HOME"'
    return shlex.quote(remote_root)


def _remote_reason(chan: Pipe | None) -> str:
    """'; remote exit N: <stderr>' when the remote already finished (it explains a broken pipe)."""
    if chan is None:
        return ""
    try:
        chan.proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        chan.kill()
    rc, err = _finish(chan)
    if rc == -1:
        return "; the connection dropped" + (f": {err[-300:]}" if err else "")
    return f"; remote exit {rc}" + (f": {err[-300:]}" if err else "")
