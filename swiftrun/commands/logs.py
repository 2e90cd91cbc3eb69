"""`swiftrun logs [--follow]`, `swiftrun cancel`, `swiftrun fetch`: a run that outlived its
terminal (Ctrl-C, a dropped laptop) is reattached, stopped or collected from here."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from swiftrun.commands._common import Env, project_options
from swiftrun.commands.connect import pick


def _script_dir(script: Path | None) -> Path:
    """SCRIPT's directory (a .swift file, or a directory); a SCRIPT that is not there is a usage
    error now, not a question to the headnode about a directory that was never synced."""
    from swiftrun.errors import UsageError

    if script is None:
        return Path.cwd()
    if not script.exists():
        kind = "script" if script.suffix == ".swift" else "script or directory"
        raise UsageError(f"SCRIPT {script}: no such {kind} here (give the .swift file of the run, "
                         "or its directory; leave it out for the current directory)")
    return (script.parent if script.suffix == ".swift" else script).resolve()


def _setup(script, project_file, cluster_name, json_mode, yes, quiet):
    from swiftrun.node.layout import remote_root

    sdir = _script_dir(script)
    env = Env(project_file, cluster_name, json_mode, yes, quiet, start=sdir)
    env.will_connect()
    cluster = env.cluster()
    head = pick(cluster, "headnode")
    return env, cluster, cluster.target(head), remote_root(env.project, sdir), sdir


@click.command()
@click.argument("script", required=False, type=click.Path(path_type=Path))
@click.option("-f", "--follow", is_flag=True, help="Keep streaming until swift exits.")
@click.option("--boot", "boot_node", metavar="NODE", help="Show NODE's boot (userdata) log instead.")
@click.option("--run", "run_id", metavar="ID", help="A run id other than the latest.")
@project_options
def logs(script, follow, boot_node, run_id, project_file, cluster_name, json_mode, yes, quiet):
    """Show the console of the latest run of SCRIPT's directory (default: the current one)."""
    from swiftrun.node.layout import BOOT_LOG, RUNS
    from swiftrun.run.control import follow as follow_run, latest_run, rq

    if boot_node:
        env = Env(project_file, cluster_name, json_mode, yes, quiet, start=_script_dir(script))
        env.will_connect()
        cluster = env.cluster()
        target = cluster.target(pick(cluster, boot_node))
        res = cluster.remote.run(target, f"cat {BOOT_LOG}", timeout=60)
        sys.stdout.write(res.stdout)
        return 0 if res.ok else 1
    env, cluster, target, root, _ = _setup(script, project_file, cluster_name, json_mode, yes, quiet)
    run_id = run_id or latest_run(cluster.remote, target, root)
    if follow:
        code, _ = follow_run(cluster.remote, target, root, run_id, env.ui)
        env.ui.info(f"run {run_id}: swift exited {code}")
        return code
    res = cluster.remote.run(target, f"cd {rq(root)} && cat {RUNS}/{run_id}.log; "
                             f"cat {RUNS}/{run_id}.exit 2>/dev/null || echo running >&2", timeout=60)
    text = res.stdout
    sys.stdout.write(text)
    state = res.stderr.strip()
    env.ui.info(f"run {run_id}: " + ("still running (--follow to stream it)" if state == "running"
                                     else "finished"))
    return 0


@click.command()
@click.argument("script", required=False, type=click.Path(path_type=Path))
@project_options
def cancel(script, project_file, cluster_name, json_mode, yes, quiet):
    """Stop the swift run going on the headnode for SCRIPT's directory."""
    from swiftrun.run.control import cancel_run, latest_run

    env, cluster, target, root, _ = _setup(script, project_file, cluster_name, json_mode, yes, quiet)
    run_id = latest_run(cluster.remote, target, root)
    done = cancel_run(cluster.remote, target, root, run_id)
    env.ui.info(f"run {run_id}: " + ("cancelled" if done else "was not running"))
    return 0


@click.command()
@click.argument("script", required=False, type=click.Path(path_type=Path))
@project_options
def fetch(script, project_file, cluster_name, json_mode, yes, quiet):
    """Bring the outputs of the latest run back into SCRIPT's directory."""
    import shlex

    from swiftrun.run.runner import fetch_outputs, say_fetched

    env, cluster, target, root, sdir = _setup(script, project_file, cluster_name, json_mode, yes, quiet)
    rep = fetch_outputs(cluster, target, env.project, sdir, root)
    try:
        say_fetched(env.ui, rep, shlex.quote(str(script or sdir)))
    finally:
        if json_mode:
            env.emit({"fetched": rep.files, "bytes": rep.bytes, "failed": rep.failed,
                      "refused": rep.refused, "conflicts": rep.conflicts})
    if not json_mode:
        env.ui.info(f"fetched {rep.files_fetched} file(s), {rep.bytes} bytes")
    return 0
