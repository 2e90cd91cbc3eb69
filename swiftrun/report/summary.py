"""The run summary: where the time went, how the workers were used, what failed, what it cost.

``summarize(run, cost_meta)`` turns a parsed swift.log (:mod:`swiftrun.report.swiftlog`) into
one JSON-able dict; ``format_text(doc)`` prints it for people.

Definitions (all times in seconds):

- *wall time*: swift's whole run, from the log's first line (the JVM is up) to ``Swift finished``.
- *task*: one attempt of one job (a retry is a second task of the same job). Its *duration* is
  how long the app ran on the worker (CoG state Active -> Stage out). *Queued* is from the job
  being ready (its inputs exist; ``JOB_INIT``/``JOB_SITE_SELECT``) until a worker took it (the
  first status naming a worker), split into *in swift* (waiting for Swift's own throttle:
  ``Selecting site`` on the console) and *at the service* (handed to the coaster service, no
  free worker slot yet).
- *idle share* of a worker: the part of the workflow's time (``RUN_START`` -> end) in which it
  had no task of this run at all (staging, running or staging out). *Slot use*: the app's
  running time summed over its tasks / (slots x that time), when ``tasksPerNode`` is known.

Cost contract: ``runNNN/swiftrun-run.json`` (written by swiftrun after the fetch; optional),
or the ``cost_meta`` argument, is::

    {"currency": "USD",
     "nodes": [{"role": "headnode", "type": "t3.medium", "price_per_hour": 0.0416},
               {"role": "worker", "type": "c5.large", "price_per_hour": 0.085,
                "block": "p6-i-0aaa"}, ...]}

``role`` is ``headnode`` or ``worker``; ``price_per_hour`` a number, or null when unknown.
``block`` (optional, workers) is the worker's coaster block id (``<cluster>-<instance id>``):
with it, a worker that never got a task is listed too (idle 100%); without it only the workers
the log names can be. Other keys are ignored. The cost is the sum of the nodes' hourly prices
times the wall time: what these nodes cost while swift ran (not the cluster's whole uptime, its
boot or the fetch, and without EC2's one-minute minimum per start). With no file, a malformed one,
or a node without a price, ``cost`` is null and ``cost_reason`` says why.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from swiftrun.report.swiftlog import SwiftRun, Task

META_FILE = "swiftrun-run.json"
DEFAULT_MAX_PARALLEL = 2      # site.<name>.maxParallelTasks when swift.conf leaves it out


def _r(x: float | None, nd: int = 3) -> float | None:
    return None if x is None else round(x, nd)


def _median(values: list[float]) -> float:
    """The median as the statistics module gives it, without importing that module (with
    fractions and decimal, ~15 ms of every run: a run writes this module's META_FILE)."""
    s = sorted(values)
    mid = len(s) // 2
    return s[mid] if len(s) % 2 else (s[mid - 1] + s[mid]) / 2


def _stats(values: list[float]) -> dict:
    if not values:
        return {"median_s": None, "max_s": None, "mean_s": None}
    return {"median_s": _r(_median(values)), "max_s": _r(max(values)),
            "mean_s": _r(math.fsum(values) / len(values))}


def _union(intervals: list[tuple[float, float]], lo: float, hi: float) -> float:
    total, cur_a, cur_b = 0.0, None, None
    for a, b in sorted((max(a, lo), min(b, hi)) for a, b in intervals):
        if b <= a:
            continue
        if cur_b is None or a > cur_b:
            if cur_b is not None:
                total += cur_b - cur_a
            cur_a, cur_b = a, b
        else:
            cur_b = max(cur_b, b)
    if cur_b is not None:
        total += cur_b - cur_a
    return total


def peak(intervals: list[tuple[float, float]]) -> int:
    """Most intervals open at once."""
    events = sorted([(a, 1) for a, _ in intervals] + [(b, -1) for _, b in intervals])
    cur = best = 0
    for _, d in events:
        cur += d
        best = max(best, cur)
    return best


def series(run: SwiftRun) -> dict:
    """Step series for the plots, in seconds since the workflow's start:
    ``active``: [(t, number of tasks in the Active state)], ``finished``/``failed``:
    [(t, cumulative count)]."""
    t0 = run.window[0]
    ev = []
    for t in run.tasks:
        stop = t.stage_out if t.stage_out is not None else t.end
        if t.active is not None and stop is not None:
            ev += [(t.active - t0, 1), (stop - t0, -1)]
    ev.sort()
    active, cur = [(0.0, 0)], 0
    for x, d in ev:
        cur += d
        active.append((max(0.0, x), cur))
    end = run.window[1] - t0
    active.append((max(end, active[-1][0]), 0 if run.finished else cur))

    def cumulative(state: str) -> list[tuple[float, int]]:
        ends = sorted(t.end - t0 for t in run.tasks if t.state == state and t.end is not None)
        pts = [(0.0, 0)] + [(max(0.0, x), i + 1) for i, x in enumerate(ends)]
        pts.append((max(end, pts[-1][0]), len(ends)))
        return pts

    return {"active": active, "finished": cumulative("ok"), "failed": cumulative("failed"),
            "end_s": end}


def load_meta(run_dir: Path) -> tuple[dict | None, str | None]:
    """(swiftrun-run.json as a dict, or None and why)."""
    path = Path(run_dir) / META_FILE
    if not path.is_file():
        return None, (f"no {META_FILE} in {Path(run_dir).name}: swiftrun writes it when it "
                      "fetches a cluster run, so a run made or fetched otherwise has no prices")
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        return None, f"{path} is not readable JSON ({exc})"
    if not isinstance(meta, dict):
        return None, f"{path}: a JSON object with \"nodes\" is expected"
    return meta, None


def cost(meta: dict | None, wall_s: float, reason: str | None = None) -> tuple[dict | None, str | None]:
    if meta is None:
        return None, reason or "no prices given"
    nodes = meta.get("nodes")
    if not isinstance(nodes, list) or not nodes:
        return None, f"{META_FILE} has no \"nodes\" list"
    missing, total, rows = [], 0.0, {}
    for node in nodes:
        if not isinstance(node, dict):
            return None, f"{META_FILE}: each node is an object with role, type, price_per_hour"
        price = node.get("price_per_hour")
        label = f"{node.get('type') or '?'} ({node.get('role') or 'node'})"
        if not isinstance(price, (int, float)) or isinstance(price, bool) or price < 0:
            missing.append(label)
            continue
        total += float(price)
        key = (node.get("role") or "node", node.get("type") or "?", float(price))
        rows[key] = rows.get(key, 0) + 1
    if missing:
        return None, "no price known for " + ", ".join(sorted(set(missing)))
    currency = str(meta.get("currency") or "USD")
    return {"amount": round(total * wall_s / 3600.0, 8), "currency": currency,
            "per_hour": round(total, 6), "wall_s": _r(wall_s),
            "nodes": [{"role": r, "type": ty, "count": n, "price_per_hour": p}
                      for (r, ty, p), n in rows.items()],
            "basis": "the nodes' hourly prices x the run's wall time"}, None


def summarize(run: SwiftRun, cost_meta: dict | None = None, *, meta_reason: str | None = None) -> dict:
    lo, hi = run.window
    span = max(hi - lo, 1e-9)
    tasks = run.tasks
    jobs: dict[str, list[Task]] = {}
    for t in tasks:
        jobs.setdefault(t.job_id, []).append(t)

    apps: dict[str, dict] = {}
    for t in tasks:
        a = apps.setdefault(t.app, {"app": t.app, "command": t.command, "tasks": 0, "ok": 0,
                                    "failed": 0, "unfinished": 0, "_d": [], "_q": []})
        a["tasks"] += 1
        a[t.state] += 1
        if t.run_s is not None:
            a["_d"].append((t.run_s, t.job_id))
            if t.run_s >= a.get("_longest", (-1.0, ""))[0]:
                a["_longest"] = (t.run_s, t.job_id)
        if t.taken is not None and t.ready is not None:
            a["_q"].append(t.taken - t.ready)
    app_rows = []
    for a in sorted(apps.values(), key=lambda a: (-a["tasks"], a["app"])):
        durations = [d for d, _ in a.pop("_d")]
        queued = a.pop("_q")
        a.update({"median_s": _r(_median(durations)) if durations else None,
                  "max_s": _r(max(durations)) if durations else None,
                  "total_s": _r(sum(durations)),
                  "queued_median_s": _r(_median(queued)) if queued else None})
        a["longest_job"] = a.pop("_longest", (None, None))[1]   # to look it up in the log
        app_rows.append(a)

    queued = [t.taken - t.ready for t in tasks if t.taken is not None and t.ready is not None]
    in_swift = [t.submitted - t.ready for t in tasks if t.submitted is not None and t.ready is not None]
    at_service = [t.taken - t.submitted for t in tasks if t.taken is not None and t.submitted is not None]

    tpn = run.site_option("execution.options.tasksPerNode")
    slots_per_worker = int(tpn) if tpn and tpn.isdigit() else None
    blocks_meta = []
    for node in (cost_meta or {}).get("nodes", []) if isinstance(cost_meta, dict) else []:
        if isinstance(node, dict) and node.get("role") == "worker" and node.get("block"):
            blocks_meta.append(str(node["block"]))
    per_worker: dict[str, list[Task]] = {}
    for t in tasks:
        per_worker.setdefault(t.worker or "(no worker)", []).append(t)
    seen_blocks = {t.block for t in tasks if t.block}
    for b in blocks_meta:
        if b not in seen_blocks:
            per_worker.setdefault(b, [])
    workers = []
    for name in sorted(per_worker, key=lambda n: (n == "(no worker)", n)):
        ts = per_worker[name]
        busy = _union([(t.taken, t.busy_until) for t in ts
                       if t.taken is not None and t.busy_until is not None], lo, hi)
        running = sum(t.run_s or 0.0 for t in ts)
        row = {"worker": name, "block": name.rsplit(":", 1)[0] if ":" in name else name,
               "tasks": len(ts), "ok": sum(t.state == "ok" for t in ts),
               "failed": sum(t.state == "failed" for t in ts),
               "busy_s": _r(busy), "idle_share": _r(1.0 - busy / span, 4),
               "running_s": _r(running),
               "slot_use": (_r(running / (slots_per_worker * span), 4)
                            if slots_per_worker and name != "(no worker)" else None)}
        if name == "(no worker)":
            row["idle_share"] = row["busy_s"] = row["slot_use"] = None
        workers.append(row)

    on_workers = [(t.taken, t.busy_until) for t in tasks if t.taken is not None and t.busy_until is not None]
    running_iv = [(t.active, t.active + t.run_s) for t in tasks if t.active is not None and t.run_s is not None]
    n_workers = sum(1 for w in workers if w["worker"] != "(no worker)")
    slots = slots_per_worker * n_workers if slots_per_worker and n_workers else None
    mpt_raw = run.site_option("maxParallelTasks")
    mpt = int(mpt_raw) if mpt_raw and mpt_raw.isdigit() else DEFAULT_MAX_PARALLEL

    failures = []
    for t in tasks:
        if t.state != "failed":
            continue
        later_ok = any(o.state == "ok" and o.attempt > t.attempt for o in jobs[t.job_id])
        failures.append({"app": t.app, "command": t.command, "job": t.job_id, "attempt": t.attempt,
                         "exit_code": t.exit_code, "worker": t.worker,
                         "message": t.message.splitlines()[0] if t.message else "",
                         "stderr": t.stderr.splitlines()[:5], "retried_ok": later_ok,
                         "at_s": _r(t.end - lo) if t.end is not None else None})

    hints = []
    throttled = [q for q in in_swift if q > 1.0]
    max_jobs = run.site_option("execution.options.maxJobs")
    configured = (int(max_jobs) * slots_per_worker
                  if max_jobs and max_jobs.isdigit() and slots_per_worker else None)
    if slots and mpt < slots and peak(on_workers) <= mpt and throttled:
        site = next((t.host for t in tasks if t.host), "<site>")
        default = "" if mpt_raw else ", the default"
        more = (f" (swift.conf allows maxJobs {max_jobs} x tasksPerNode {slots_per_worker} = "
                f"{configured})" if configured and configured > slots else "")
        hints.append(f"Swift ran at most {mpt} tasks at once (site.{site}.maxParallelTasks is "
                     f"{mpt}{default}) while the workers it used had {slots} slots{more}, and "
                     f"{len(throttled)} task(s) waited over 1 s in swift for it: set "
                     f"maxParallelTasks and initialParallelTasks to {max(slots, configured or 0)} "
                     "in swift.conf")
    idle = [w["worker"] for w in workers if w["tasks"] == 0]
    if idle:
        hints.append(f"{len(idle)} worker(s) never got a task: {', '.join(idle)}")

    if cost_meta is None and meta_reason is None:
        meta_reason = "no prices given"
    money, why = cost(cost_meta, run.wall_s, meta_reason)
    ok = sum(t.state == "ok" for t in tasks)
    failed = sum(t.state == "failed" for t in tasks)
    return {
        "run": run.name, "run_id": run.run_id, "log": str(run.path), "script": run.script, "arguments": run.arguments,
        "swift_version": run.version, "outcome": run.outcome, "finished": run.finished,
        "started": run.iso(run.first), "ended": run.iso(run.end if run.end is not None else run.last),
        "wall_s": _r(run.wall_s), "workflow_s": _r(hi - lo),
        "tasks": {"total": len(tasks), "ok": ok, "failed": failed,
                  "unfinished": len(tasks) - ok - failed, "jobs": len(jobs),
                  "retries": len(tasks) - len(jobs),
                  "peak_on_workers": peak(on_workers), "peak_running": peak(running_iv),
                  "slots": slots, "slots_configured": configured,
                  "max_parallel_tasks": mpt},
        "apps": app_rows,
        "queued": {**_stats(queued), "in_swift": _stats(in_swift), "at_service": _stats(at_service)},
        "workers": workers,
        "failures": failures,
        "cost": money, "cost_reason": why,
        "hints": hints,
        "plots": {},
    }


# -- text ----------------------------------------------------------------------------------------
def _s(x: float | None) -> str:
    if x is None:
        return "-"
    if x < 1:
        return f"{x * 1000:.0f}ms"
    if x < 10:
        return f"{x:.2f}s"
    if x < 120:
        return f"{x:.1f}s"
    m, s = divmod(int(round(x)), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x * 100:.0f}%"


def _table(header: list[str], rows: list[list[str]], indent: str = "  ") -> list[str]:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]
    out = []
    for row in [header, *rows]:
        cells = [str(c).ljust(w) if i == 0 else str(c).rjust(w)
                 for i, (c, w) in enumerate(zip(row, widths))]
        out.append(indent + "  ".join(cells).rstrip())
    return out


def format_text(doc: dict) -> str:
    t = doc["tasks"]
    args = f" {' '.join(doc['arguments'])}" if doc.get("arguments") else ""
    state = {"ok": "finished with no errors", "failed": "finished with errors"}.get(
        doc.get("outcome") or "", "did not finish")
    lines = [f"{doc['run']}: {doc.get('script') or '?'}{args} {state} in {_s(doc['wall_s'])} "
             f"(workflow {_s(doc['workflow_s'])}, started {doc.get('started') or '?'})"]
    n_workers = sum(1 for w in doc["workers"] if w["worker"] != "(no worker)")
    retries = f", {t['retries']} retries" if t["retries"] else ""
    slots = f" of {t['slots']} slots" if t.get("slots") else ""
    lines.append(f"tasks: {t['total']} ({t['ok']} ok, {t['failed']} failed{retries}) on "
                 f"{n_workers} worker(s), at most {t['peak_on_workers']}{slots} in use at once")
    if doc["apps"]:
        lines.append("")
        lines.append("by app:")
        lines += _table(["app", "command", "tasks", "ok", "failed", "median", "longest"],
                        [[a["app"], a["command"], a["tasks"], a["ok"], a["failed"],
                          _s(a["median_s"]), _s(a["max_s"])] for a in doc["apps"]])
    q = doc["queued"]
    if q["median_s"] is not None:
        lines.append("")
        lines.append(f"queued before a worker took a task: median {_s(q['median_s'])}, longest "
                     f"{_s(q['max_s'])} (in swift: median {_s(q['in_swift']['median_s'])}, longest "
                     f"{_s(q['in_swift']['max_s'])}; at the coaster service: median "
                     f"{_s(q['at_service']['median_s'])}, longest {_s(q['at_service']['max_s'])})")
    if doc["workers"]:
        lines.append("")
        lines.append("workers:")
        total = sum(w["tasks"] for w in doc["workers"])
        lines += _table(["worker", "tasks", "ok", "failed", "busy", "idle", "slot use"],
                        [[w["worker"], w["tasks"], w["ok"], w["failed"], _s(w["busy_s"]),
                          _pct(w["idle_share"]), _pct(w["slot_use"])] for w in doc["workers"]]
                        + [["(all)", total, sum(w["ok"] for w in doc["workers"]),
                            sum(w["failed"] for w in doc["workers"]), "", "", ""]])
    lines.append("")
    if doc["failures"]:
        lines.append(f"failures ({len(doc['failures'])}):")
        for f in doc["failures"]:
            code = f"exit code {f['exit_code']}" if f["exit_code"] is not None else "no exit code"
            again = ", retried ok" if f["retried_ok"] else ""
            lines.append(f"  {f['app']} ({f['command']}) job {f['job']} attempt {f['attempt']} "
                         f"on {f['worker'] or '-'}: {code}{again}")
            for err in f["stderr"][:3]:
                lines.append(f"      stderr: {err}")
    else:
        lines.append("failures: none")
    c = doc.get("cost")
    if c:
        parts = ", ".join(f"{n['count']} x {n['type']} ({n['role']}) {n['price_per_hour']:g}/h"
                          for n in c["nodes"])
        lines.append(f"cost: {c['amount']:.4f} {c['currency']} for {_s(c['wall_s'])} of "
                     f"{parts}")
    else:
        lines.append(f"cost: unknown ({doc.get('cost_reason')})")
    for h in doc.get("hints", []):
        lines.append(f"hint: {h}")
    if doc.get("plots"):
        lines.append("plots: " + ", ".join(str(p) for p in doc["plots"].values()))
    return "\n".join(lines)
