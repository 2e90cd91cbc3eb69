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


def _check_run_id(run_id: str | None) -> None:
    from swiftrun.errors import UsageError
    from swiftrun.node.layout import RUN_ID

    if run_id is not None and not RUN_ID.fullmatch(run_id):
        raise UsageError(f"--run {run_id!r}: not a run id (letters, digits, '.', '_', '-', "
                         "like 20261203-053000-ab12); leave --run out for the latest run")


@click.command()
@click.argument("script", required=False, type=click.Path(path_type=Path))
@click.option("-f", "--follow", is_flag=True, help="Keep streaming until swift exits.")
@click.option("--boot", "boot_node", metavar="NODE", help="Show NODE's boot (userdata) log instead.")
@click.option("--run", "run_id", metavar="ID", help="A run id other than the latest.")
@project_options
def logs(script, follow, boot_node, run_id, project_file, cluster_name, json_mode, yes, quiet):
    """Show the console of the latest run of SCRIPT's directory (default: the current one).

    Exit status: 0 when the console was shown (the run's own exit code is on stderr, and in
    --json), 2 for a run id that does not exist; with --follow, swift's exit code."""
    import io

    from swiftrun.errors import UsageError
    from swiftrun.node.layout import BOOT_LOG
    from swiftrun.run.control import follow as follow_run, latest_run, run_ids, run_logs

    _check_run_id(run_id)
    if boot_node:
        env = Env(project_file, cluster_name, json_mode, yes, quiet, start=_script_dir(script))
        env.will_connect()
        cluster = env.cluster()
        node = pick(cluster, boot_node)
        res = cluster.remote.run(cluster.target(node), f"cat {BOOT_LOG}", timeout=60)
        if json_mode:
            env.emit({"cluster": cluster.name, "node": node.name, "boot_log": res.stdout,
                      "ok": bool(res.ok)})
        else:
            sys.stdout.write(res.stdout)
        return 0 if res.ok else 1
    env, cluster, target, root, _ = _setup(script, project_file, cluster_name, json_mode, yes, quiet)
    run_id = run_id or latest_run(cluster.remote, target, root)
    if follow:
        sink = io.BytesIO() if json_mode else None
        code, _ = follow_run(cluster.remote, target, root, run_id, env.ui, out=sink)
        if json_mode:
            env.emit({"cluster": cluster.name, "run_id": run_id, "state": "finished", "exit_code": code,
                      "console": sink.getvalue().decode(errors="replace")})
        env.ui.info(f"run {run_id}: swift exited {code}")
        return code
    state, code, text = run_logs(cluster.remote, target, root, run_id)
    if state == "missing":
        known = run_ids(cluster.remote, target, root)
        listed = ", ".join(known[-5:]) if known else "none yet"
        raise UsageError(f"--run {run_id}: no such run of this project on {target.label} "
                         f"(runs here, latest last: {listed})")
    if json_mode:
        env.emit({"cluster": cluster.name, "run_id": run_id, "state": state, "exit_code": code,
                  "console": text})
    else:
        sys.stdout.write(text)
        if text and not text.endswith("\n"):
            sys.stdout.write("\n")
    env.ui.info(f"run {run_id}: " + ("still running (--follow to stream it)" if state == "running"
                                     else f"finished, swift exited {code}"))
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
    if json_mode:
        env.emit({"cluster": cluster.name, "run_id": run_id, "cancelled": bool(done)})
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
    from swiftrun.commands._common import error_doc
    from swiftrun.errors import SwiftrunError

    rep = fetch_outputs(cluster, target, env.project, sdir, root)
    doc = {"cluster": cluster.name, "fetched": rep.files, "bytes": rep.bytes,
           "failed": rep.failed, "refused": rep.refused, "conflicts": rep.conflicts}
    try:
        say_fetched(env.ui, rep, shlex.quote(str(script or sdir)))
    except SwiftrunError as exc:   # what came back, and why the rest did not
        if json_mode:
            env.emit({**doc, **error_doc(str(exc), exc.exit_code)})
        raise
    if json_mode:
        env.emit(doc)
    if not json_mode:
        env.ui.info(f"fetched {rep.files_fetched} file(s), {rep.bytes} bytes")
    return 0
