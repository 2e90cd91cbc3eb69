"""What a run would do, with no credentials and no network: ``--dry-run`` and ``swiftrun plan``."""

from __future__ import annotations

from pathlib import Path

from swiftrun.node.layout import HEADNODE, WORKER
from swiftrun.run.runner import sync_excludes


def plan(project, script: Path) -> dict:
    """What a run would do, with no credentials and no network: for --dry-run / `swiftrun plan`."""
    from swiftrun import swiftconf
    from swiftrun.cloud import make_provider
    from swiftrun.node.userdata import payload, render_all
    from swiftrun.sync.ignore import IgnoreRules

    script_dir = script.parent
    conf = swiftconf.render_checked(project, script_dir=script_dir)
    provider = make_provider(project)
    out = {"project": str(project.path) if project.path else None,
           "cluster": project.cluster.name, "provider": project.cluster.provider,
           "script": str(script), "swift_conf": conf.text, "resources": provider.describe_plan()}
    if provider.elastic:
        from swiftrun.node.network import worker_network

        p = project
        public, why = worker_network(p)
        out["instances"] = [
            {"role": HEADNODE, "count": 1, "type": p.ec2.headnode_type, "image": p.ec2.image,
             "spot": False, "public_ip": True},
            {"role": WORKER, "count": p.cluster.workers, "type": p.ec2.worker_type,
             "image": p.ec2.worker_image or p.ec2.image, "spot": p.ec2.spot,
             "public_ip": public}]
        out["worker_public_ip"] = {"public": public, "why": why}
        scripts = render_all(p, p.cluster.name)
        # what EC2 gets (gzip) against its 16 KB limit
        out["userdata_bytes"] = {k: len(payload(v)) for k, v in scripts.items()}
        from swiftrun.checks.base import FAIL, OK
        from swiftrun.node.swift import swift_source

        src = swift_source(p)
        out["swift_source"] = {"status": OK if src.ok else FAIL, "detail": src.detail,
                               "fix": src.fix}
    else:
        out["hosts"] = provider.describe_plan()
    from swiftrun.sync import scan

    rules = IgnoreRules.from_dir(script_dir, extra=sync_excludes(project, script_dir))
    entries = scan(script_dir, rules)
    from swiftrun.sync.sensitive import refuse_secrets

    refuse_secrets(script_dir, [r for r, e in entries.items() if e.type == "f"])
    import os

    # links out of the script directory go up as the files they point at: say which
    out["sync_links_as_files"] = sorted(
        r for r, e in entries.items() if e.type == "f" and os.path.islink(script_dir / r))
    out["sync"] = {"files": sum(1 for e in entries.values() if e.type == "f"),
                   "bytes": sum(e.size for e in entries.values() if e.type == "f")}
    return out
