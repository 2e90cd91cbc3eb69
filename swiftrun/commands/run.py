"""`swiftrun run SCRIPT [-name=value ...]` (also `swiftrun SCRIPT`) and `swiftrun plan SCRIPT`."""

from __future__ import annotations

from pathlib import Path

import click

from swiftrun.commands._common import Env, project_options
from swiftrun.errors import UsageError


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
        lines.append(f"launch:   {inst['count']} x {inst['role']} {inst['type']}{spot} "
                     f"image {inst['image']}")
    for key, value in doc.get("resources", {}).items():
        lines.append(f"  {key}: {value}")
    if "userdata_bytes" in doc:
        lines.append("userdata: " + ", ".join(f"{k} {v} bytes" for k, v in doc["userdata_bytes"].items()))
    lines.append(f"sync:     {doc['sync']['files']} file(s), {doc['sync']['bytes']} bytes")
    lines.append("swift.conf:")
    lines += ["  " + line for line in doc["swift_conf"].splitlines()]
    return "\n".join(lines)


def _do_plan(env: Env, script: Path) -> int:
    from swiftrun.runner import plan

    doc = plan(env.project, script)
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
@project_options
@click.pass_context
def run(ctx, script, keep_cluster, dry_run, cancel_on_interrupt, keep_on_failure, watch,
        project_file, cluster_name, json_mode, yes, quiet):
    """Run SCRIPT on the cluster: up or reuse, sync, swift, stream, fetch, dissolve.

    Arguments of the form -name=value are passed to swift. The exit code is swift's.
    """
    script = _script(script)
    env = Env(project_file, cluster_name, json_mode, yes, quiet, start=script.parent)
    if dry_run:
        return _do_plan(env, script)
    from swiftrun.runner import RunOptions, Runner

    opts = RunOptions(script=script, args=ctx.meta.get("swift_args", ()),
                      keep_cluster=keep_cluster or watch, keep_on_failure=keep_on_failure,
                      cancel_on_interrupt=cancel_on_interrupt)
    cluster = env.cluster()
    report = Runner(env.project, cluster, env.ui, opts).run()
    if watch:
        from swiftrun.watch import watch_loop

        report = watch_loop(env, cluster, opts, report, keep=keep_cluster)
    _summary(env, report)
    return report.exit_code if report.exit_code is not None else 1


def _summary(env: Env, report) -> None:
    if env.json_mode:
        env.emit({"cluster": report.cluster, "run_id": report.run_id,
                  "swift_run": report.swift_run, "exit_code": report.exit_code,
                  "nodes": [n.id for n in report.nodes], "durations": report.durations,
                  "sync": report.sync, "fetched": report.fetched,
                  "dissolved": report.dissolved, "kept_reason": report.kept_reason})
        return
    code = report.exit_code
    words = {0: "finished successfully", 1: "could not start (configuration error)",
             2: "failed", 3: "did not compile", 4: "could not find the script",
             130: "was interrupted"}.get(code, f"exited {code}")
    where = f"; logs in {report.swift_run}/" if report.swift_run else ""
    state = "dissolved" if report.dissolved else "kept (swiftrun down dissolves it)"
    env.ui.info(f"swift {words} in {report.durations.get('swift', 0):.1f}s{where}; "
                f"total {report.durations.get('total', 0):.1f}s; cluster {report.cluster} {state}")


@click.command()
@click.argument("script", type=click.Path(path_type=Path))
@project_options
def plan(script, project_file, cluster_name, json_mode, yes, quiet):
    """What `swiftrun SCRIPT` would do, offline: no credentials, no network."""
    script = _script(script)
    return _do_plan(Env(project_file, cluster_name, json_mode, yes, quiet, start=script.parent),
                    script)
