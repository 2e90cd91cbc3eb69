"""CPU for the test cloud's nodes: each emulated node is its own cgroup, and all of them together
weigh less than the machine's own processes (the client under test, the moto server).

Why: on EC2 every instance has CPUs of its own, so 200 workers' idle loops cost the user's
machine and the EC2 API nothing. Here they all share this machine's cores, and the kernel's
autogroup scheduling (``kernel.sched_autogroup_enabled``) gives every *session* an equal share:
each node's boot script and each stand-in service supervisor runs in a session of its own, so
200 nodes were ~400 sessions against the one session that holds the client, the moto server and
the instance simulator, which then got well under 1% of the CPU (``nice`` does not help: it only
weighs a process against others of its own autogroup). A real Swift/K ``worker.pl`` polls its
socket with a 1 ms ``select`` timeout, ~2% of a core each when idle: 200 of them alone want
about four cores.

So :class:`NodeCpu` makes one cgroup ``swiftrun-testcloud-<pid>-<n>`` (cgroup v1 ``cpu``
controller at /sys/fs/cgroup/cpu, or cgroup v2 with ``cpu`` available) whose weight is
``NODES_WEIGHT`` of a default one (1/8), and in it one child per node at the default weight:
nodes compete with each other as equals (a busy worker does not starve the headnode more than
any other node does), and together they take what the machine's own processes leave, while
those are never starved by them. Nothing of a node is skipped or faked: its sshd, boot script,
services and worker.pl run exactly as before, only at a low CPU weight. Every process of a node
is started through :meth:`argv`, which joins the node's cgroup before ``exec`` (children
inherit it). Without a writable cgroup hierarchy the prefix falls back to ``nice -n 19`` (weak
under autogroup, but harmless).

Cgroups are removed by :meth:`remove_node` / :meth:`close` once empty; :func:`sweep_stale`
removes those of test processes that are gone (by the PID in their name).
"""

from __future__ import annotations

import errno
import logging
import os
import re
import threading
from pathlib import Path

from .netns import _pid_alive

log = logging.getLogger("testcloud")

V1 = Path("/sys/fs/cgroup/cpu")
V2 = Path("/sys/fs/cgroup")
NODES_WEIGHT = 1 / 8          # all nodes together vs one ordinary session of this machine
_NAME = re.compile(r"swiftrun-testcloud-(\d+)-\d+")
# worker.pl's idle loop is a select with a 1 ms timeout: ~1000 wake-ups a second per worker, so
# 200 idle workers cost this machine's scheduler more than the code under test. A timer may fire
# up to this much late (prctl PR_SET_TIMERSLACK): ~90 wake-ups a second each. The nodes' real
# timeouts (seconds) do not notice 10 ms.
TIMER_SLACK_NS = 10_000_000
# joins the cgroup whose cgroup.procs is $0 and takes that timer slack (both inherited by its
# children, kept across exec), then runs the node's command (best effort: a node whose cgroup
# is gone still runs, at the machine's normal weight)
_JOIN = (f'echo $$ 2>/dev/null >"$0"; echo {TIMER_SLACK_NS} 2>/dev/null >/proc/$$/timerslack_ns; '
         'exec "$@"')

_counter = 0
_counter_lock = threading.Lock()


def _hierarchy() -> tuple[Path, str, int] | None:
    """(root, weight file, default weight) of a usable cpu controller, or None."""
    if (V1 / "cpu.shares").is_file() and os.access(V1, os.W_OK):
        return V1, "cpu.shares", 1024
    controllers = V2 / "cgroup.controllers"
    if controllers.is_file() and "cpu" in controllers.read_text().split() and os.access(V2, os.W_OK):
        return V2, "cpu.weight", 100
    return None


def _enable_v2_cpu(group: Path) -> None:
    """cgroup v2: the cpu controller must be on in the parent's subtree_control."""
    try:
        (group / "cgroup.subtree_control").write_text("+cpu")
    except OSError:
        pass


def _rmdir(path: Path) -> bool:
    try:
        os.rmdir(path)
        return True
    except FileNotFoundError:
        return True
    except OSError as exc:
        if exc.errno == errno.EBUSY:
            log.warning("cgroup %s still has processes: left in place", path)
        return False


def sweep_stale() -> list[str]:
    """Remove test-cloud cgroups (and their node children) whose creating PID is gone."""
    found = _hierarchy()
    if found is None:
        return []
    root = found[0]
    gone = []
    for group in root.glob("swiftrun-testcloud-*"):
        m = _NAME.fullmatch(group.name)
        if not m or _pid_alive(int(m.group(1))) or not group.is_dir():
            continue
        for child in group.iterdir():
            if child.is_dir():
                _rmdir(child)
        if _rmdir(group):
            gone.append(group.name)
    return gone


class NodeCpu:
    """One test cloud's nodes cgroup (see the module docstring)."""

    def __init__(self) -> None:
        global _counter
        with _counter_lock:
            _counter += 1
            n = _counter
        self.name = f"swiftrun-testcloud-{os.getpid()}-{n}"
        self.group: Path | None = None
        self._weight_file = ""
        self._default = 0
        self._lock = threading.Lock()
        self._nodes: dict[str, Path] = {}

    @property
    def enabled(self) -> bool:
        return self.group is not None

    def start(self) -> "NodeCpu":
        found = _hierarchy()
        if found is None:
            log.warning("no writable cgroup cpu controller: nodes run at nice 19 instead")
            return self
        root, self._weight_file, self._default = found
        sweep_stale()
        group = root / self.name
        try:
            group.mkdir(exist_ok=True)
            if root == V2:
                _enable_v2_cpu(root)
                _enable_v2_cpu(group)
            weight = max(2 if root == V1 else 1, int(self._default * NODES_WEIGHT))
            (group / self._weight_file).write_text(f"{weight}\n")
        except OSError as exc:
            log.warning("cannot set up cgroup %s (%s): nodes run at nice 19 instead", group, exc)
            _rmdir(group)
            return self
        self.group = group
        return self

    def add_node(self, key: str) -> Path | None:
        """The node's own cgroup (made once); None without cgroups."""
        if self.group is None:
            return None
        with self._lock:
            path = self._nodes.get(key)
            if path is None:
                path = self.group / re.sub(r"[^\w.-]", "_", key)
                path.mkdir(exist_ok=True)
                self._nodes[key] = path
            return path

    def argv(self, key: str, argv: list[str]) -> list[str]:
        """``argv`` run in node ``key``'s cgroup (or at nice 19 without cgroups)."""
        path = self.add_node(key)
        if path is None:
            return ["nice", "-n", "19", *argv]
        return ["sh", "-c", _JOIN, str(path / "cgroup.procs"), *argv]

    def pids(self, key: str) -> list[int]:
        """PIDs in node ``key``'s cgroup (what is left of it after a power off, if anything)."""
        with self._lock:
            path = self._nodes.get(key)
        if path is None:
            return []
        try:
            return [int(p) for p in (path / "cgroup.procs").read_text().split()]
        except (OSError, ValueError):
            return []

    def remove_node(self, key: str) -> None:
        with self._lock:
            path = self._nodes.pop(key, None)
        if path is not None:
            _rmdir(path)

    def close(self) -> None:
        for key in list(self._nodes):
            self.remove_node(key)
        if self.group is not None:
            _rmdir(self.group)
            self.group = None
