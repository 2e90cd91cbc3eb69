"""Run a command as a prompt reaper of orphans, as systemd is on a real node.

Usage: python bench/reaper.py COMMAND [ARGS...]   (TERM, INT and HUP are passed on to COMMAND)

A run's wrapper is started with ``setsid nohup ... &``, so when the SSH session that started it
ends it is re-parented to the nearest "child subreaper" above it, else to PID 1. On a node PID 1
is systemd and reaps a dead wrapper at once; in a container PID 1 may reap only every few
seconds, and until then the wrapper is a zombie that ``kill -0`` (so ``tail --pid``) takes for
alive. bench_stream.py runs its sshd under this script so that both of its sides get a real
node's reaping, not the container's.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys

PR_SET_CHILD_SUBREAPER = 36


def main() -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        print(f"reaper: prctl failed: {os.strerror(ctypes.get_errno())}", file=sys.stderr)
        return 1
    child = subprocess.Popen(sys.argv[1:])
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda signum, _frame: os.kill(child.pid, signum))
    while True:
        try:
            pid, status = os.wait()         # any child: the command, or an orphan handed to us
        except ChildProcessError:
            return 0
        if pid == child.pid:
            code = os.waitstatus_to_exitcode(status)
            return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(main())
