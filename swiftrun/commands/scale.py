"""`swiftrun add N`, `swiftrun remove N`, `swiftrun stop-headnode` (the tutorial's start_n_more,
stop_n_workers, stop_headnode)."""

from __future__ import annotations

import click

from swiftrun.commands._common import Env, node_doc, project_options
from swiftrun.project.model import MAX_WORKERS


@click.command()
@click.argument("count", type=click.IntRange(min=1, max=MAX_WORKERS))
@project_options
def add(count, project_file, cluster_name, json_mode, yes, quiet):
    """Add COUNT workers to the running cluster."""
    env = Env(project_file, cluster_name, json_mode, yes, quiet)
    env.will_connect()
    cluster = env.cluster()
    nodes = cluster.add(count)
    cluster.remote.close()
    if json_mode:
        env.emit({"cluster": cluster.name, "added": [node_doc(n) for n in nodes]})
    else:
        env.ui.info(f"added {len(nodes)} worker(s): {', '.join(n.id for n in nodes)}")
    return 0


@click.command()
@click.argument("count", type=click.IntRange(min=1))
@project_options
def remove(count, project_file, cluster_name, json_mode, yes, quiet):
    """Terminate COUNT workers, newest first (more than there are removes all)."""
    env = Env(project_file, cluster_name, json_mode, yes, quiet)
    cluster = env.cluster()
    gone = cluster.remove(count)
    if json_mode:
        env.emit({"cluster": cluster.name, "removed": gone})
    else:
        env.ui.info(f"removed {len(gone)} worker(s)" + (f": {', '.join(gone)}" if gone else ""))
    return 0


@click.command("stop-headnode")
@project_options
def stop_headnode(project_file, cluster_name, json_mode, yes, quiet):
    """Stop the headnode (its disk is kept; `swiftrun up` starts it again)."""
    from swiftrun.cloud.pricing import running_cost, usd

    env = Env(project_file, cluster_name, json_mode, yes, quiet)
    cluster = env.cluster()
    stopped, workers = cluster.stop_headnode()
    per_hour = None
    if workers:     # stopping the headnode stops none of them: say what keeps billing
        per_hour = running_cost(workers, env.project.ec2.region, project=env.project)["per_hour"]
        rate = f"{usd(per_hour)}/h" if per_hour is not None else "price unknown"
        env.ui.warn(f"{len(workers)} worker(s) of cluster {cluster.name} keep running and billing "
                    f"({rate}): `swiftrun down` terminates the whole cluster, `swiftrun remove "
                    f"{len(workers)}` only the workers")
    if json_mode:
        env.emit({"cluster": cluster.name, "stopped": stopped,
                  "workers_running": [n.id for n in workers], "workers_per_hour": per_hour})
    else:
        env.ui.info(f"stopped headnode {stopped}" if stopped else "no running headnode")
    return 0
