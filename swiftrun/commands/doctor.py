"""`swiftrun doctor [SCRIPT]`: a checklist of what would stop a run, each with what to do about it."""

from __future__ import annotations

from pathlib import Path

import click

from swiftrun.commands._common import Env, project_options

_MARK = {"ok": "ok  ", "warn": "WARN", "fail": "FAIL"}
_SECTIONS = {"local": "Local", "cloud": "Cloud (before launching)", "headnode": "Headnode",
             "workers": "Workers"}


@click.command()
@click.argument("script", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--fix", is_flag=True,
              help="Repair what is safe to repair (key file mode, security group rules, run "
                   "directory permissions) and say what was done.")
@click.option("--timeout", type=click.FloatRange(min=1), default=None, metavar="SECONDS",
              help="Time limit of each check (default 30, env SWIFTRUN_DOCTOR_TIMEOUT).")
@project_options
def doctor(script, fix, timeout, project_file, cluster_name, json_mode, yes, quiet):
    """Check the project, credentials, cloud and running cluster; say what to fix.

    Exit 0 when nothing failed (warnings allowed), 1 otherwise. Workers' reachability check
    dials SWIFTRUN_DOCTOR_HEADNODE_ADDR=host:port when set (for networks where workers reach the
    headnode by another name), else the headnode's private IP, port 50005.
    """
    from swiftrun.doctor import diagnose

    start = None
    if script is not None:
        if script.suffix != ".swift" or not script.is_file():
            from swiftrun.errors import UsageError

            raise UsageError(f"{script}: give an existing .swift script (or no SCRIPT at all)")
        script = script.resolve()
        start = script.parent
    env = Env(project_file, cluster_name, json_mode, yes, quiet, start=start)
    checks = diagnose(env, script=script, fix=fix, timeout=timeout)
    failed = [c for c in checks if c.status == "fail"]
    warned = [c for c in checks if c.status == "warn"]
    if json_mode:
        env.emit({"checks": [c.doc() for c in checks], "ok": not failed})
        return 1 if failed else 0
    section = None
    for check in checks:
        if quiet and check.status == "ok":
            continue
        if check.section != section:
            section = check.section
            click.echo(("" if check is checks[0] else "\n") + _SECTIONS.get(section, section or "Checks"))
        click.echo(f"  {_MARK.get(check.status, check.status)}  {check.name}: {check.detail}")
        if check.fix and check.status != "ok":
            click.echo(f"        fix: {check.fix}")
    summary = (f"{len(failed)} failed, {len(warned)} warning(s), "
               f"{len(checks) - len(failed) - len(warned)} ok")
    click.echo(f"\n{summary}" + ("" if failed else ": nothing stops a run"))
    return 1 if failed else 0
