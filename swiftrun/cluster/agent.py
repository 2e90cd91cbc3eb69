"""The workers' boot as the headnode's agent heard it (EC2 clusters): no connection to a worker.

Each worker reports (state, step, message, its SSH host key) to the headnode's agent, which keeps
one JSON line per worker in $STATE/workers/; one command on the headnode's connection per poll
reads them all, for any number of workers.
"""

from __future__ import annotations

import json
import time

from swiftrun import environ
from swiftrun.cloud.base import WORKER, Node
from swiftrun.errors import CloudError
from swiftrun.node.layout import STATE_DIR

BOOT_TIMEOUT = environ.seconds("SWIFTRUN_BOOT_TIMEOUT")


def workers_ready(cluster, head: Node, workers: list[Node], created: set) -> list:
    """The workers' boot as the headnode's agent heard it: one command on the headnode's
    connection per poll, for any number of workers, and no connection to any worker.

    Each worker reports (state, step, message, its SSH host key) to the agent, which keeps
    one JSON line per worker in $STATE/workers/. A worker that became ready has its host key
    pinned from that report (it came over the headnode's authenticated connection), so a
    later `connect worker0` through the headnode checks it. Returns [(worker, error)]."""
    target = cluster.target(head)
    pending = {w.id: w for w in workers}
    failed: list[tuple[Node, Exception]] = []
    last_step: dict[str, str] = {}
    deadline = time.monotonic() + BOOT_TIMEOUT
    delay = 0.3
    probe = (f"cd {STATE_DIR}/workers 2>/dev/null && for f in {' '.join(sorted(pending))}; "
             f"do [ -f \"$f\" ] && cat \"$f\"; done; true")
    while pending:
        out = cluster.remote.run(target, probe, timeout=30).stdout
        for line in out.splitlines():
            try:
                doc = json.loads(line)
            except ValueError:
                continue
            w = pending.get(str(doc.get("id", "")))
            if w is None:
                continue
            label = f"worker {w.id}"
            state, step = doc.get("state", ""), doc.get("step", "")
            if state == "ready":
                pin_reported(cluster, w, doc.get("hostkey", ""), allow_new=w.id in created)
                cluster.ui.track(w.id, WORKER, "ready")
                del pending[w.id]
            elif state == "failed":
                msg = doc.get("msg") or step or "no message"
                cluster.ui.track(w.id, WORKER, "failed", msg)
                failed.append((w, CloudError(
                    f"{label} failed to boot: {msg} (its headnode heard it; full log: "
                    f"`swiftrun logs --boot {w.id}`)")))
                del pending[w.id]
            elif step and step != last_step.get(w.id):
                cluster.ui.track(w.id, WORKER, "booting", step)
                last_step[w.id] = step
        if not pending:
            break
        if time.monotonic() > deadline:
            for w in pending.values():
                step = last_step.get(w.id)
                said = f"still booting ({step})" if step else "never reported to the headnode"
                cluster.ui.track(w.id, WORKER, "failed", f"timed out ({said})")
                failed.append((w, CloudError(
                    f"worker {w.id} {said} after {int(BOOT_TIMEOUT)}s; see `swiftrun logs "
                    f"--boot {w.id}`")))
            break
        time.sleep(delay)
        delay = min(delay * 1.5, 3.0)
    return failed


def pin_reported(cluster, node: Node, hostkey: str, *, allow_new: bool) -> None:
    """Pin a worker's host key as its boot report gave it (first contact only)."""
    parts = hostkey.split()
    if len(parts) < 2 or not node.host_key_alias:
        return
    target = cluster.target(node)
    if cluster.remote.is_pinned(target) or not allow_new:
        return
    cluster.remote.pin(node.host_key_alias, parts[0], parts[1])
