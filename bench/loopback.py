"""What the transfer benches share: a loopback "headnode" and fair A/B timing.

The node is a real sshd on 127.0.0.1 (tests/support/sshd.py), reached with swiftrun's own
transport: one OpenSSH ControlMaster, opened once before anything is timed. The baseline
commands (rsync, ssh) are pointed at that same master (``Node.rsh``, ``Node.ssh``), so every
timed step on either side is a new channel on one open connection and neither side pays for a
handshake the other skips. ``Node.connections()`` counts sshd's connections, so a bench can
show that nothing opened a second one.

``interleaved`` times A and B in turns (A B, B A, A B, ...), so both sides see the same page
cache, the same load and the same remote state, and each goes first in half the pairs;
``spread`` prints median [min-max].
"""

from __future__ import annotations

import contextlib
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from swiftrun.remote import Link, Remote, Target  # noqa: E402
from tests.support.sshd import LoopbackSshd, keygen  # noqa: E402

HOST = "127.0.0.1"      # what rsync is told; the rsh script carries port, user and host key alias


@dataclass
class Node:
    sshd: LoopbackSshd
    remote: Remote
    target: Target
    link: Link

    @property
    def rsh(self) -> str:
        """rsync's ``-e``: ssh with the options of swiftrun's own master for this node."""
        return self.link.rsh

    def ssh(self, command: str) -> list[str]:
        """The ssh command line that runs ``command`` on the same master."""
        return self.remote.ssh_argv(self.target, command)

    def rsync(self, *args: str) -> None:
        """``rsync ARGS`` over the shared master (a failure raises: a bench that moved nothing
        must not print a time)."""
        res = subprocess.run(["rsync", *args], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE)
        if res.returncode != 0:
            raise RuntimeError(f"rsync {' '.join(args)} exited {res.returncode}: "
                               f"{res.stderr.decode(errors='replace')[-500:]}")

    def master_pid(self) -> int | None:
        """The ControlMaster's PID (``ssh -O check``), or None when there is none."""
        res = subprocess.run(["ssh", "-o", f"ControlPath={self.remote.control_path(self.target)}",
                              "-O", "check", "x"], capture_output=True, text=True)
        text = res.stderr + res.stdout
        if res.returncode != 0 or "pid=" not in text:
            return None
        return int(text.split("pid=", 1)[1].split(")", 1)[0])

    def connections(self) -> int:
        """How many SSH connections sshd holds: one child process per connection."""
        pid_file = self.sshd.workdir / "sshd.pid"      # sshd's own PID, below any wrapper
        me = pid_file.read_text().strip() if pid_file.exists() else str(self.sshd.proc.pid)
        count = 0
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if stat.rsplit(")", 1)[1].split()[1] == me:
                count += 1
        return count


@contextlib.contextmanager
def loopback_node(base: Path, env: dict[str, str] | None = None, argv_prefix: list[str] = ()):
    """Start an sshd, pin its key, open swiftrun's master; close the master and stop the sshd
    (by PID) on the way out, whatever happened."""
    key = keygen(base / "client" / "id_ed25519")
    auth = base / "authorized_keys"
    auth.write_text(Path(str(key) + ".pub").read_text())
    home = base / "home"
    home.mkdir(parents=True, exist_ok=True)
    sshd = LoopbackSshd(base / "sshd", auth, env={"HOME": str(home), **(env or {})},
                        argv_prefix=list(argv_prefix))
    remote = target = None
    try:
        sshd.start()
        cluster = base / "cluster"
        cluster.mkdir(mode=0o700, parents=True, exist_ok=True)
        (cluster / "known_hosts").write_text(f"node ssh-ed25519 {sshd.host_key_pub}\n")
        remote = Remote(cluster_dir=cluster, key_file=key, user=sshd.user, persist="600")
        target = Target(HOST, sshd.port, sshd.user, alias="node", label="node")
        link = remote.connect(target, allow_new=False)
        yield Node(sshd, remote, target, link)
    finally:
        if remote is not None and target is not None:
            remote.close([target])
        sshd.stop()


def interleaved(repeat: int, prepare: Callable[[int], None], run_a: Callable[[int], None],
                run_b: Callable[[int], None],
                check: Callable[[int], str | None] | None = None,
                warmup: int = 0) -> tuple[list[float], list[float], list[str]]:
    """Time ``run_a(k)`` and ``run_b(k)`` for each pair k, A first in even pairs and B first in
    odd ones (A B, B A, A B, ...); ``prepare(k)`` (untimed) sets both sides up for pair k,
    ``check(k)`` (untimed) says what went wrong in it, if anything. The first ``warmup`` pairs
    run the same way but their times are dropped.

    Before each side the page cache's dirty data is written out (``os.sync``, untimed): a
    prepare that writes 10 000 files, or a fetch that wrote 5 000, otherwise leaves the kernel's
    writeback running into the next timed side. Even so the side that runs right after a
    prepare that wrote thousands of files is the slower one here: the same rsync command on
    both sides of a fetch pair came out ~5% slower as A than as B, always A. Taking turns at
    going first gives each side that place in half the pairs."""
    times_a, times_b, problems = [], [], []

    def timed(run: Callable[[int], None], k: int, into: list[float]) -> None:
        os.sync()
        t = time.perf_counter()
        run(k)
        into.append(time.perf_counter() - t)

    for k in range(warmup + repeat):
        prepare(k)
        order = [(run_a, times_a), (run_b, times_b)]
        for run, into in (order if k % 2 == 0 else order[::-1]):
            timed(run, k, into)
        if check is not None:
            problem = check(k)
            if problem:
                problems.append(f"pair {k}: {problem}")
    return times_a[warmup:], times_b[warmup:], problems


def fmt(seconds: float) -> str:
    ms = seconds * 1000
    return f"{ms:.1f}" if ms < 100 else f"{ms:.0f}"


def spread(times: list[float]) -> str:
    """'median [min-max]' in ms."""
    return f"{fmt(statistics.median(times))} [{fmt(min(times))}-{fmt(max(times))}]"


def ratio(times_a: list[float], times_b: list[float]) -> float:
    return statistics.median(times_a) / statistics.median(times_b)


def bytecode() -> None:
    """Compile swiftrun's modules to __pycache__ as ``pip install`` does. A bench that starts
    swiftrun processes from the checkout (PYTHONPATH) under PYTHONDONTWRITEBYTECODE=1 would
    otherwise compile ~90 modules from source in every process (~90 ms) that no installed
    swiftrun pays; the baselines (rsync, ssh, the AWS CLI) are installed programs."""
    import compileall

    compileall.compile_dir(str(ROOT / "swiftrun"), quiet=1)
