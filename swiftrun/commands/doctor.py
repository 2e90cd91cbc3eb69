"""`swiftrun doctor [SCRIPT]`: a checklist of what would stop a run, each with what to do about it.

This module decides which checks run and in what order (:func:`diagnose`): the project, then the
local checks (checks/local.py), then on EC2 the pre-launch cloud checks `up` runs too
(checks/cloud.py), then, when a cluster runs, the node checks over SSH (checks/node.py). What
cannot be reached is skipped: no credentials, no cloud or node checks; an unknown region, no
node checks.
"""

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


def _scripts(project, script: Path | None) -> list[Path]:
    if script:
        return [script]
    root = Path(project.root)
    return sorted(root.glob("*.swift"))[:20] if root.is_dir() else []


def diagnose(env, *, script: Path | None = None, fix: bool = False,
             timeout: float | None = None) -> list:
    """All checks for the project ``env`` loads (a commands._common.Env); never raises for the
    project's own problems: they are failed checks."""
    from swiftrun.checks.base import FAIL, OK, Check, run_check, run_checks
    from swiftrun.checks.cloud import is_ec2, prelaunch
    from swiftrun.checks.local import (
        check_credentials, check_key_file, check_staging, check_swift_conf, check_swiftrun_on_path)
    from swiftrun.errors import SwiftrunError

    checks: list[Check] = []
    loaded: dict = {}

    def load():
        p = env.project
        loaded["project"] = p
        where = p.path or "(defaults: no swiftrun.toml found)"
        what = (f"{p.cluster.provider}" + (f" in {p.ec2.region}" if p.cluster.provider == "ec2" else ""))
        return Check("project", OK, f"{where}: cluster {p.cluster.name} ({what})")

    checks += run_check("project", load, timeout=timeout, section="local")
    project = loaded.get("project")
    if project is None:
        checks[-1].fix = checks[-1].fix or "fix the project file as the message says"
        return checks
    script_dir = script.parent if script else Path(project.root)
    try:
        cluster = env.cluster()
    except SwiftrunError as exc:
        checks.append(Check("provider", FAIL, exc.message, exc.hint or "fix the project file",
                            section="local"))
        return checks
    provider = cluster.provider
    ec2 = is_ec2(provider)
    cloud_ok = True
    local = []
    if ec2:
        local.append(("credentials", lambda: check_credentials(project, provider)))
    local += [("key file", lambda: check_key_file(project, provider, fix=fix)),
              ("swift.conf", lambda: check_swift_conf(project, script_dir)),
              ("staging", lambda: check_staging(project, script_dir, _scripts(project, script))),
              ("swiftrun on PATH", check_swiftrun_on_path)]
    got = run_checks(local, timeout=timeout, section="local")
    checks += got
    if ec2:
        if got[0].failed:
            cloud_ok = False
        else:
            cloud = prelaunch(project, provider, fix=fix, timeout=timeout)
            checks += cloud
            cloud_ok = not (cloud and cloud[0].name == "region" and cloud[0].failed)
    if cloud_ok:
        checks += _node_checks(project, cluster, script_dir=script_dir, fix=fix, timeout=timeout)
    cluster.remote.close()
    return checks


def _node_checks(project, cluster, *, script_dir: Path, fix: bool, timeout: float | None) -> list:
    """Find the cluster's nodes (itself a check: the cloud may not answer), then check them."""
    from swiftrun.checks.base import TIMEOUT, run_check
    from swiftrun.checks.node import check_nodes

    limit = TIMEOUT if timeout is None else timeout
    found: dict = {}

    def look():
        found["nodes"] = cluster.nodes()

    checks = run_check("cluster", look, timeout=limit, section="headnode")
    if checks:
        return checks
    nodes = found["nodes"]
    head = cluster.headnode_of(nodes)
    why = cluster.provider.unreachable(head) if head is not None and head.live else None
    if why:     # what `up` says at once; SSH would only time out on port 22
        from swiftrun.checks.base import FAIL, Check

        return [Check(f"headnode {head.id}: ssh", FAIL, why[0], why[1], section="headnode")]
    return check_nodes(project, cluster.headnode_of(nodes), cluster.workers_of(nodes),
                       remote=cluster.remote, target_of=cluster.target,
                       elastic=cluster.provider.elastic, script_dir=script_dir, fix=fix,
                       timeout=limit)
