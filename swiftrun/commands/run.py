"""`swiftrun run SCRIPT [-name=value ...]` (also `swiftrun SCRIPT`) and `swiftrun plan SCRIPT`."""

from __future__ import annotations

import json

from contextlib import contextmanager
from pathlib import Path

import click

from swiftrun.commands._common import Env, error_doc, node_doc, project_options
from swiftrun.errors import SwiftrunError, UsageError


@contextmanager
def json_errors(env: Env, **fields):
    """With --json, an error still prints one JSON document on stdout ({"error", "exit_code"})
    before the usual one-line message on stderr, so a CI step can always parse stdout."""
    try:
        yield
    except SwiftrunError as exc:
        if env.json_mode:
            doc = error_doc(str(exc), exc.exit_code)
            for key, value in fields.items():
                try:
                    doc[key] = value() if callable(value) else value
                except Exception:  # noqa: BLE001 - best effort: the error is what matters
                    doc[key] = None
            env.emit(doc)
        raise


def cluster_name_of(env: Env):
    return lambda: env.cluster_name or env.project.cluster.name


def _script(script: Path) -> Path:
    if script.suffix != ".swift":
        raise UsageError(f"{script}: a SwiftScript file ending in .swift is expected")
    if not script.is_file():
        raise UsageError(f"{script}: no such file (give the path of your .swift script)")
    return script.resolve()


def _plan_text(doc: dict) -> str:
    lines = [f"project:  {doc['project'] or '(defaults: no swiftrun.toml found)'}",
             f"cluster:  {doc['cluster']} ({doc['provider']})"]
    for inst in doc.get("instances", []):
        spot = " spot" if inst["spot"] else ""
        ip = "" if inst.get("public_ip", True) else ", no public IPv4"
        lines.append(f"launch:   {inst['count']} x {inst['role']} {inst['type']}{spot} "
                     f"image {inst['image']}{ip}")
    if doc.get("worker_public_ip"):
        w = doc["worker_public_ip"]
        lines.append(f"network:  workers {'get a public IPv4 address' if w['public'] else 'get no public IPv4 address'}"
                     f": {w['why']} ([ec2] worker_public_ip); only the headnode takes SSH from here")
    for key, value in doc.get("resources", {}).items():
        lines.append(f"  {key}: {value}")
    if doc.get("swift_source"):
        lines.append(f"swift:    {doc['swift_source']['detail']}")
    if "userdata_bytes" in doc:
        lines.append("userdata: " + ", ".join(f"{k} {v} bytes" for k, v in doc["userdata_bytes"].items()))
    if doc.get("cost"):
        from swiftrun.cloud.pricing import describe_estimate

        lines.append(f"cost:     {describe_estimate(doc['cost'])}")
    lines.append(f"sync:     {doc['sync']['files']} file(s), {doc['sync']['bytes']} bytes")
    if doc.get("sync_links_as_files"):
        lines.append("          sent as the files they point at (links out of the directory): "
                     + ", ".join(doc["sync_links_as_files"]))
    lines.append("swift.conf:")
    lines += ["  " + line for line in doc["swift_conf"].splitlines()]
    return "\n".join(lines)


def _do_plan(env: Env, script: Path) -> int:
    from swiftrun.run.plan import plan

    from swiftrun.cloud.pricing import cluster_estimate

    doc = plan(env.project, script)
    doc["cost"] = cluster_estimate(env.project, offline=True)   # plan is offline: the table
    src = doc.get("swift_source") or {}
    if src.get("status") == "fail":
        env.ui.warn(f"`swiftrun up` would refuse this project: {src['detail']}; {src['fix']}")
    if env.json_mode:
        env.emit(doc)
    else:
        print(_plan_text(doc))
    return 0


@click.command()
@click.argument("script", type=click.Path(path_type=Path))
@click.option("--keep-cluster", is_flag=True, help="Leave the cluster up after the run.")
@click.option("--dry-run", is_flag=True,
              help="Validate, render swift.conf and userdata, print what would launch; no network.")
@click.option("--cancel-on-interrupt", is_flag=True,
              help="Ctrl-C stops swift on the headnode too (default: it keeps running).")
@click.option("--keep-on-failure", is_flag=True,
              help="If bringing the cluster up fails, keep what was launched for debugging.")
@click.option("--watch", is_flag=True, help="After the run, re-run on every change in the script directory.")
@click.option("--report", "want_report", is_flag=True,
              help="After the fetch, write the run's report and plots into runNNN/ (swiftrun report).")
@project_options
@click.pass_context
def run(ctx, script, keep_cluster, dry_run, cancel_on_interrupt, keep_on_failure, watch,
        want_report, project_file, cluster_name, json_mode, yes, quiet):
    """Run SCRIPT on the cluster: up or reuse, sync, swift, stream, fetch, dissolve.

    Arguments of the form -name=value are passed to swift. The exit code is swift's.
    """
    env = Env(project_file, cluster_name, json_mode, yes, quiet, start=script.resolve().parent)
    with json_errors(env, cluster=cluster_name_of(env)):
        script = _script(script)
        if dry_run:
            return _do_plan(env, script)
        env.will_connect()
        return _run(env, ctx, script, keep_cluster=keep_cluster, keep_on_failure=keep_on_failure,
                    cancel_on_interrupt=cancel_on_interrupt, watch=watch, want_report=want_report)


def _run(env: Env, ctx, script: Path, *, keep_cluster, keep_on_failure, cancel_on_interrupt,
         watch, want_report: bool = False) -> int:
    from swiftrun.run.runner import RunOptions, Runner

    opts = RunOptions(script=script, args=ctx.meta.get("swift_args", ()),
                      keep_cluster=keep_cluster or watch, keep_on_failure=keep_on_failure,
                      cancel_on_interrupt=cancel_on_interrupt)
    from swiftrun.swiftconf import checked_text
    from swiftrun.run.runner import swift_args

    # Bad input is reported alone, before any cost line or cloud call.
    swift_args(env.project, opts.args)
    checked_text(env.project, script_dir=script.parent)
    cluster = env.cluster()
    if not cluster.may_skip_cloud():
        cluster.provider.preflight()   # missing credentials: said first, before the cost line
    runner = Runner(env.project, cluster, env.ui, opts)
    runner.check_tree()
    estimate = announce_cost(env)
    report = runner.run()
    run_doc = after_fetch(env, script.parent, report, want_report=want_report)
    if watch:
        from swiftrun.run.watch import watch_loop

        report = watch_loop(env, cluster, opts, report, keep=keep_cluster)
    _summary(env, report, estimate, api_calls=getattr(cluster.provider, "api_calls", None),
             run_report=run_doc)
    return report.exit_code if report.exit_code is not None else 1


def after_fetch(env: Env, script_dir: Path, report, *, want_report: bool) -> dict | None:
    """Beside the fetched ``runNNN/``: ``swiftrun-run.json`` (what each node cost per hour, for
    `swiftrun report`'s cost line), then with --report the report and its plots. A report that
    cannot be made is a warning: the run and its outputs are fine."""
    from swiftrun.errors import SwiftrunError
    from swiftrun.report.summary import META_FILE

    run_dir = script_dir / report.swift_run if report.swift_run else None
    if run_dir is None or not run_dir.is_dir():
        if want_report:
            env.ui.warn("--report: no fetched runNNN/ directory of this run to report on")
        return None
    cost = run_cost(env, report.nodes)
    if cost.get("nodes"):
        meta = {"currency": cost.get("currency", "USD"), "cluster": report.cluster,
                "nodes": [{"role": n["role"], "type": n["type"], "spot": n.get("spot", False),
                           "price_per_hour": n.get("usd_per_hour"),
                           "block": f"{report.cluster}-{n['id']}"} for n in cost["nodes"]]}
        tmp = run_dir / (META_FILE + ".tmp")
        tmp.write_text(json.dumps(meta, indent=2) + "\n")
        tmp.replace(run_dir / META_FILE)
    if not want_report:
        return None
    from swiftrun.report import write_report
    from swiftrun.report.summary import format_text

    try:
        doc = write_report(run_dir)
    except SwiftrunError as exc:
        env.ui.warn(f"--report: {exc.message}")
        return {"error": exc.message}
    if not env.json_mode:
        env.ui.info(format_text(doc))
    return doc


def announce_cost(env: Env) -> dict:
    """Say what the project's cluster costs per hour (before anything is launched)."""
    from swiftrun.cloud.pricing import cluster_estimate, describe_estimate

    estimate = cluster_estimate(env.project)
    if estimate.get("items"):
        env.ui.node("cost", describe_estimate(estimate))
    return estimate


def run_cost(env: Env, nodes, *, live_only: bool = False) -> dict:
    from swiftrun.cloud.pricing import running_cost

    p = env.project
    if p.cluster.provider != "ec2":
        return {"currency": "USD", "per_hour": None, "so_far": None, "nodes": [],
                "source": "static hosts: not billed through swiftrun"}
    return running_cost(nodes, p.ec2.region, project=p, live_only=live_only)


def _summary(env: Env, report, estimate: dict | None = None, api_calls=None,
             run_report: dict | None = None) -> None:
    from swiftrun.cloud.pricing import describe_running

    cost = run_cost(env, report.nodes)
    if estimate is not None:
        cost["estimate_before_launch"] = {k: estimate.get(k) for k in
                                          ("per_hour", "source", "estimate", "unknown")}
    if env.json_mode:
        doc = {"cluster": report.cluster, "run_id": report.run_id,
               "swift_run": report.swift_run, "exit_code": report.exit_code,
               "nodes": [node_doc(n) for n in report.nodes], "durations": report.durations,
               "sync": report.sync, "fetched": report.fetched,
               "dissolved": report.dissolved, "kept_reason": report.kept_reason,
               "cost": cost}
        if api_calls is not None:
            doc["api_calls"] = api_calls
        if run_report is not None:
            doc["report"] = run_report
        if hasattr(report, "watch_runs"):
            doc["watch_runs"] = report.watch_runs
        if getattr(report, "error", ""):
            doc["error"] = report.error
        env.emit(doc)
        return
    code = report.exit_code
    words = {0: "finished successfully", 1: "could not start (configuration error)",
             2: "failed", 3: "did not compile", 4: "could not find the script",
             130: "was interrupted"}.get(code, f"exited {code}")
    where = f"; logs in {report.swift_run}/" if report.swift_run else ""
    state = "dissolved" if report.dissolved else "kept (swiftrun down dissolves it)"
    env.ui.info(f"swift {words} in {report.durations.get('swift', 0):.1f}s{where}; "
                f"total {report.durations.get('total', 0):.1f}s; cluster {report.cluster} {state}")
    if report.nodes and env.project.cluster.provider == "ec2":
        env.ui.info("cost: " + describe_running(cost, verb="cost" if report.dissolved else "have cost"))


@click.command()
@click.argument("script", type=click.Path(path_type=Path))
@project_options
def plan(script, project_file, cluster_name, json_mode, yes, quiet):
    """What `swiftrun SCRIPT` would do, offline: no credentials, no network."""
    env = Env(project_file, cluster_name, json_mode, yes, quiet, start=script.resolve().parent)
    with json_errors(env, cluster=cluster_name_of(env)):
        return _do_plan(env, _script(script))
