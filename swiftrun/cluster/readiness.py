"""The workers' boot as the headnode's agent heard it (userdata/agent.py): no SSH to any worker.

Each worker reports (state, step, message, its SSH host key) to the agent on the headnode, which
keeps one JSON line per worker in ``$STATE/workers/``. ``up`` watches them with one command on
the headnode's open connection for the whole wait (``watch_command``): the headnode looks
twice a second and sends only what changed, so the client's connections, processes and CPU
grow with the workers and their reports, not with the seconds the boot takes (one ssh and a
parse of every pending report per poll did: 50 polls at 200 workers). A worker that became
ready has its host key pinned from that report (it came over the headnode's authenticated
connection), so a later ``connect worker0`` through the headnode checks it; one that failed
is named (``workerN``, its id) with the step it failed in and its own message, still without
a connection to it.

A worker's boot ends with worker.pl started, which is not yet worker.pl connected: the same
command watches the coaster service's established connections on the headnode (``ss``, the
worker port), and a worker counts as ready once its private address holds one. One that has
not connected ``CONNECT_GRACE`` seconds after its boot finished is said by name (jobs would
wait for it) and counted ready: worker.pl keeps trying under its supervisor.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import select
import shlex
import subprocess
import tempfile
import time
from dataclasses import replace

from swiftrun.cloud.base import HEADNODE, WORKER, Node
from swiftrun.errors import CloudError, RemoteError
from swiftrun.node.layout import STATE_DIR, WORKER_PORT

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")     # an instance id: i-0123456789abcdef0
_SS = "#ss"             # the watch's first line when the headnode can list connections
_BATCH = "#lot"         # the watch's line after each lot of new lines
WATCH_EVERY = 0.5       # seconds between the watch's looks on the headnode
CONNECT_GRACE = 60.0    # seconds a booted worker's worker.pl has to reach the coaster service


def connect_names(nodes: list[Node]) -> dict[str, str]:
    """Node id -> the name `connect` takes (headnode, worker0..N-1), for the running nodes:
    workers counted oldest launch first, then by id. `list`, `connect` and `up` all use it."""
    live = [n for n in nodes if n.live]
    names: dict[str, str] = {}
    heads = [n for n in live if n.role == HEADNODE]
    if heads:
        names[heads[0].id] = "headnode"
    workers = sorted((n for n in live if n.role == WORKER),
                     key=lambda n: (str(n.launched or ""), n.id))
    names.update({w.id: f"worker{i}" for i, w in enumerate(workers)})
    return names


def watch_command(ids, rounds: int) -> str:
    """One shell command that watches the agent's lines of ``ids`` and the coaster service's
    established connections (``ss``, the worker port), looking every ``WATCH_EVERY`` seconds
    for at most ``rounds`` looks, and prints only the lines that are new since its last look,
    each lot ended by ``_BATCH``: what the client reads grows with what changed, not with the
    workers times the seconds the boot takes. One ``cat`` for all reports (a worker that has
    not reported has no file), one ``ss``; ``_SS`` first when the headnode has ``ss`` (without
    it the reports alone decide). Only names an instance id can have reach the shell, quoted.
    It ends within ``10 * WATCH_EVERY`` seconds of its output going (the client closed it: an
    empty line every tenth quiet look finds out), or after ``rounds`` looks."""
    names = " ".join(shlex.quote(i) for i in sorted(ids) if _NAME.fullmatch(i))
    if not names:
        return "true"
    return (
        "t=$(mktemp -d) || exit 1; trap 'rm -rf \"$t\"' EXIT; trap 'exit 0' HUP INT PIPE TERM; "
        ": > \"$t/seen\"; ss=; "
        f"if command -v ss >/dev/null 2>&1; then ss=1; echo '{_SS}' || exit 0; fi; n=0; "
        f"while [ $n -lt {int(rounds)} ]; do n=$((n+1)); "
        f"{{ (cd {STATE_DIR}/workers 2>/dev/null && cat -- {names} 2>/dev/null); "
        f"[ -n \"$ss\" ] && ss -Htn state established '( sport = :{WORKER_PORT} )' 2>/dev/null; }}"
        " > \"$t/now\"; "
        f"if grep -vxF -f \"$t/seen\" \"$t/now\"; then echo '{_BATCH}' || exit 0; "
        # an empty line now and then: a client that went away is noticed (a write fails)
        "elif [ $((n % 10)) -eq 0 ]; then echo || exit 0; fi; "
        f"mv -f \"$t/now\" \"$t/seen\"; sleep {WATCH_EVERY}; done")


def peer_of(line: str) -> str | None:
    """The peer address of one ``ss -Htn`` line (Recv-Q Send-Q local peer), IPv4-mapped
    addresses as their IPv4 address; None for a line that is no connection."""
    fields = line.split()
    if len(fields) < 4:
        return None
    return fields[3].rpartition(":")[0].strip("[]").removeprefix("::ffff:") or None


class Watch:
    """``watch_command`` running on the headnode's open connection, read a lot at a time. One
    ssh process for the whole wait, asleep while nothing changes; if it ends (a dropped
    connection) the next ``lot`` starts another, at most once a second, and after
    ``GIVE_UP`` ends in a row that said nothing the wait fails with what ssh said."""

    GIVE_UP = 3

    def __init__(self, cluster, target, ids, rounds: int):
        self._err = None

        def start():
            if self._err is not None:
                self._err.close()
            self._err = tempfile.TemporaryFile()
            return cluster.remote.popen(target, watch_command(ids, rounds),
                                        stdout=subprocess.PIPE, stderr=self._err)

        self._start = start
        self._proc = None
        self._buf = b""
        self._lines: list[str] = []
        self._started = 0.0
        self._failed = 0            # ends in a row without a lot

    def lot(self, timeout: float) -> list[str]:
        """The lines of the next lot (reports, ``ss`` lines, ``_SS``), or [] when nothing new
        came within ``timeout`` seconds."""
        end = time.monotonic() + max(0.0, timeout)
        lot = self._take()
        if lot is not None:
            return lot
        while True:
            if self._proc is None:
                wait = self._started + 1.0 - time.monotonic()
                if wait > 0:
                    time.sleep(min(wait, max(0.0, end - time.monotonic())))
                    if time.monotonic() < self._started + 1.0:
                        return []
                self._started = time.monotonic()
                self._proc, self._buf, self._lines = self._start(), b"", []
            left = end - time.monotonic()
            fd = self._proc.stdout.fileno()
            ready, _, _ = select.select([fd], [], [], max(0.0, left))
            if not ready:
                return []
            chunk = os.read(fd, 1 << 16)
            if not chunk:               # it ended: the next call starts another
                self._ended()
                return []
            self._buf += chunk
            *done, self._buf = self._buf.split(b"\n")
            self._lines += [raw.decode("utf-8", "replace") for raw in done]
            lot = self._take()
            if lot is not None:
                return lot

    def _take(self) -> list[str] | None:
        """The first whole lot read so far (its lines and its end marker taken off), or None.
        A read may hold more than one lot: the rest stays for the next call."""
        if _BATCH not in self._lines:
            return None
        cut = self._lines.index(_BATCH)
        lot, self._lines = self._lines[:cut], self._lines[cut + 1:]
        self._failed = 0
        return lot

    def _ended(self) -> None:
        proc = self._proc
        self.close()
        self._failed += 1
        if self._failed < self.GIVE_UP:
            return
        said = ""
        if self._err is not None:
            with contextlib.suppress(OSError, ValueError):
                self._err.seek(0)
                lines = self._err.read().decode("utf-8", "replace").strip().splitlines()
                said = f": {lines[-1]}" if lines else ""
        raise RemoteError(f"watching the workers' boot on the headnode ended {self._failed} times "
                          f"in a row (exit {proc.returncode if proc else '?'}){said}",
                          hint="check the headnode with `swiftrun doctor`, then run `swiftrun up` "
                               "again: it finds the cluster and waits for the workers still booting")

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        with contextlib.suppress(OSError):
            proc.stdout.close()
        if proc.poll() is None:
            proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def workers_ready(cluster, head: Node, workers: list[Node], created: set,
                  timeout: float, watch: Watch | None = None
                  ) -> tuple[list[tuple[Node, Exception]], list[Node]]:
    """Wait until every worker reported ready or failed (or ``timeout``). Returns
    ([(worker, error)], the workers, those that are ready marked running). ``watch``: where
    the lots come from (a ``Watch`` on the headnode unless given)."""
    target = cluster.target(head)
    names = connect_names(workers)   # workerN as `connect workerN` counts them
    pending = {w.id: w for w in workers}
    ready: set[str] = set()
    failed: list[tuple[Node, Exception]] = []
    last_step: dict[str, str] = {}
    booted: dict[str, float] = {}       # worker id -> when its boot report said ready
    connected: set[str] = set()         # addresses that held a connection to the worker port
    has_ss = False                      # the headnode can tell (``ss``)
    deadline = time.monotonic() + timeout
    if watch is None:
        watch = Watch(cluster, target, list(pending), int(timeout / WATCH_EVERY) + 20)
    pins: list[tuple[Node, str]] = []

    def now_ready(w: Node) -> None:
        cluster.ui.track(w.id, WORKER, "ready")
        ready.add(w.id)
        del pending[w.id]

    try:
        while pending:
            lot = watch.lot(min(1.0, max(0.0, deadline - time.monotonic())))
            for line in lot:
                if line == _SS:
                    has_ss = True
                    continue
                if not line.startswith("{"):
                    peer = peer_of(line)
                    if peer:
                        connected.add(peer)
                    continue
                try:
                    doc = json.loads(line)
                except ValueError:
                    continue
                w = pending.get(str(doc.get("id", "")))
                if w is None:
                    continue
                state, step = doc.get("state", ""), doc.get("step", "")
                if state == "ready":
                    if w.id not in booted:
                        pins.append((w, doc.get("hostkey", "")))
                        booted[w.id] = time.monotonic()
                elif state == "failed":
                    # pinned too: `logs --boot workerN` (kept with --keep-on-failure) goes
                    # through the headnode and checks the key the worker reported
                    pins.append((w, doc.get("hostkey", "")))
                    msg = doc.get("msg") or "no message"
                    cluster.ui.track(w.id, WORKER, "failed", f"{step}: {msg}" if step else msg)
                    failed.append((w, CloudError(
                        f"{names[w.id]} ({w.id}) failed to boot at step {step or 'unknown'}: "
                        f"{msg} (its headnode heard it; full log: `swiftrun logs --boot "
                        f"{names[w.id]}`)")))
                    del pending[w.id]
                    booted.pop(w.id, None)
                elif step and step != last_step.get(w.id):
                    cluster.ui.track(w.id, WORKER, "booting", step)
                    last_step[w.id] = step
            if pins:
                pin_reported(cluster, pins, created)
                pins = []
            # booted workers: ready once their worker.pl holds a connection (or the grace ends)
            for wid in [i for i in booted if i in pending]:
                w = pending[wid]
                if not has_ss or (w.private_ip and w.private_ip in connected):
                    now_ready(w)
                elif time.monotonic() - booted[wid] >= CONNECT_GRACE:
                    cluster.ui.warn(
                        f"{names[wid]} ({wid}) booted, but its worker.pl has not connected to "
                        f"the coaster service in {int(CONNECT_GRACE)}s: no job runs there until "
                        f"it does (`swiftrun logs --boot {names[wid]}`)")
                    now_ready(w)
                elif last_step.get(wid) != "worker.pl connecting":
                    cluster.ui.track(wid, WORKER, "booting", "worker.pl connecting")
                    last_step[wid] = "worker.pl connecting"
            if pending and time.monotonic() > deadline:
                for w in pending.values():
                    step = last_step.get(w.id)
                    said = (f"still booting (step {step})" if step
                            else "never reported to the headnode")
                    cluster.ui.track(w.id, WORKER, "failed", f"timed out ({said})")
                    failed.append((w, CloudError(
                        f"{names[w.id]} ({w.id}) {said} after {int(timeout)}s; see `swiftrun "
                        f"logs --boot {names[w.id]}`")))
                break
    finally:
        watch.close()
    # a worker that reported ready is running, whatever the launch's reply said
    return failed, [replace(w, state="running") if w.id in ready else w for w in workers]


def pin_reported(cluster, reports: list[tuple[Node, str]], created: set) -> None:
    """Pin each worker's host key as its boot report gave it (first contact only, and only for
    workers this ``up`` launched): one read and one write of the pins for the whole lot, not
    one per worker (quadratic in workers)."""
    todo = []
    for node, hostkey in reports:
        parts = hostkey.split()
        if len(parts) < 2 or not node.host_key_alias or node.id not in created:
            continue
        todo.append((cluster.target(node), node.host_key_alias, parts[0], parts[1]))
    if todo:
        cluster.remote.pin_many(todo)
