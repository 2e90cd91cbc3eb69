"""The workers' boot as the headnode's agent heard it (userdata/agent.py): no SSH to any worker.

Each worker reports (state, step, message, its SSH host key) to the agent on the headnode, which
keeps one JSON line per worker in ``$STATE/workers/``. ``up`` reads them all with one command on
the headnode's open connection per poll, for any number of workers: the client's connections
and processes stay the same from 1 worker to 1000. A worker that became ready has its host key
pinned from that report (it came over the headnode's authenticated connection), so a later
``connect worker0`` through the headnode checks it; one that failed is named (``workerN``, its
id) with the step it failed in and its own message, still without a connection to it.

A worker's boot ends with worker.pl started, which is not yet worker.pl connected: the same
command lists the coaster service's established connections on the headnode (``ss``, the
worker port), and a worker counts as ready once its private address holds one. One that has
not connected ``CONNECT_GRACE`` seconds after its boot finished is said by name (jobs would
wait for it) and counted ready: worker.pl keeps trying under its supervisor.
"""

from __future__ import annotations

import json
import re
import shlex
import time
from dataclasses import replace

from swiftrun.cloud.base import HEADNODE, WORKER, Node
from swiftrun.errors import CloudError
from swiftrun.node.layout import STATE_DIR, WORKER_PORT

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")     # an instance id: i-0123456789abcdef0
_CONNS = "#worker.pl connections"       # the probe's line between the reports and ``ss``
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


def probe_command(ids) -> str:
    """One shell command printing the agent's line of each of ``ids`` that reported. One ``cat``
    for all of them (a file not there yet is a worker that has not reported), so the headnode
    forks once per poll at any size, not once per worker. Only names an instance id can have
    reach the shell, quoted."""
    names = " ".join(shlex.quote(i) for i in sorted(ids) if _NAME.fullmatch(i))
    if not names:
        return "true"
    return (f"cd {STATE_DIR}/workers 2>/dev/null && cat -- {names} 2>/dev/null; "
            f"command -v ss >/dev/null 2>&1 && {{ echo '{_CONNS}'; ss -Htn state established "
            f"'( sport = :{WORKER_PORT} )' 2>/dev/null; }}; true")


def split_probe(out: str) -> tuple[list[str], set[str] | None]:
    """(report lines, the addresses holding a connection to the worker port; None when the
    headnode has no ``ss`` and so cannot tell)."""
    lines = out.splitlines()
    if _CONNS not in lines:
        return lines, None
    cut = lines.index(_CONNS)
    peers = set()
    for line in lines[cut + 1:]:
        fields = line.split()
        if len(fields) >= 4:      # Recv-Q Send-Q local peer
            host = fields[3].rpartition(":")[0].strip("[]")
            peers.add(host.removeprefix("::ffff:"))
    return lines[:cut], peers


def workers_ready(cluster, head: Node, workers: list[Node], created: set,
                  timeout: float) -> tuple[list[tuple[Node, Exception]], list[Node]]:
    """Wait until every worker reported ready or failed (or ``timeout``). Returns
    ([(worker, error)], the workers, those that are ready marked running)."""
    target = cluster.target(head)
    names = connect_names(workers)   # workerN as `connect workerN` counts them
    pending = {w.id: w for w in workers}
    ready: set[str] = set()
    failed: list[tuple[Node, Exception]] = []
    last_step: dict[str, str] = {}
    booted: dict[str, float] = {}       # worker id -> when its boot report said ready
    deadline = time.monotonic() + timeout
    delay = 0.3
    while pending:
        out = cluster.remote.run(target, probe_command(pending), timeout=30).stdout
        reports, connected = split_probe(out)
        for line in reports:
            try:
                doc = json.loads(line)
            except ValueError:
                continue
            w = pending.get(str(doc.get("id", "")))
            if w is None:
                continue
            label = f"{names[w.id]} ({w.id})"
            state, step = doc.get("state", ""), doc.get("step", "")
            if state == "ready":
                if w.id not in booted:
                    pin_reported(cluster, w, doc.get("hostkey", ""), allow_new=w.id in created)
                    booted[w.id] = time.monotonic()
                if connected is not None and w.private_ip and w.private_ip not in connected:
                    if time.monotonic() - booted[w.id] < CONNECT_GRACE:
                        cluster.ui.track(w.id, WORKER, "booting", "worker.pl connecting")
                        continue
                    cluster.ui.warn(
                        f"{label} booted, but its worker.pl has not connected to the coaster "
                        f"service in {int(CONNECT_GRACE)}s: no job runs there until it does "
                        f"(`swiftrun logs --boot {names[w.id]}`)")
                cluster.ui.track(w.id, WORKER, "ready")
                ready.add(w.id)
                del pending[w.id]
            elif state == "failed":
                # pinned too: `logs --boot workerN` (kept with --keep-on-failure) goes through
                # the headnode and checks the key the worker reported
                pin_reported(cluster, w, doc.get("hostkey", ""), allow_new=w.id in created)
                msg = doc.get("msg") or "no message"
                cluster.ui.track(w.id, WORKER, "failed", f"{step}: {msg}" if step else msg)
                failed.append((w, CloudError(
                    f"{label} failed to boot at step {step or 'unknown'}: {msg} (its headnode "
                    f"heard it; full log: `swiftrun logs --boot {names[w.id]}`)")))
                del pending[w.id]
            elif step and step != last_step.get(w.id):
                cluster.ui.track(w.id, WORKER, "booting", step)
                last_step[w.id] = step
        if not pending:
            break
        if time.monotonic() > deadline:
            for w in pending.values():
                step = last_step.get(w.id)
                said = f"still booting (step {step})" if step else "never reported to the headnode"
                cluster.ui.track(w.id, WORKER, "failed", f"timed out ({said})")
                failed.append((w, CloudError(
                    f"{names[w.id]} ({w.id}) {said} after {int(timeout)}s; see `swiftrun logs "
                    f"--boot {names[w.id]}`")))
            break
        time.sleep(delay)
        delay = min(delay * 1.5, 3.0)
    # a worker that reported ready is running, whatever the launch's reply said
    return failed, [replace(w, state="running") if w.id in ready else w for w in workers]


def pin_reported(cluster, node: Node, hostkey: str, *, allow_new: bool) -> None:
    """Pin a worker's host key as its boot report gave it (first contact only)."""
    parts = hostkey.split()
    if len(parts) < 2 or not node.host_key_alias:
        return
    target = cluster.target(node)
    if cluster.remote.is_pinned(target) or not allow_new:
        return
    cluster.remote.pin(node.host_key_alias, parts[0], parts[1])
