"""`swiftrun up`: bring the cluster up, or check the one that is running."""

from __future__ import annotations

import click

from swiftrun.commands._common import Env, node_doc, project_options


@click.command()
@click.option("--keep-on-failure", is_flag=True,
              help="If something fails, keep what was launched for debugging.")
@project_options
def up(keep_on_failure, project_file, cluster_name, json_mode, yes, quiet):
    """Bring the cluster up (reusing it when it already runs with the same settings)."""
    env = Env(project_file, cluster_name, json_mode, yes, quiet)
    cluster = env.cluster()
    result = cluster.up(keep_on_failure=keep_on_failure)
    cluster.remote.close()
    if json_mode:
        env.emit({"cluster": cluster.name, "reused": result.reused, "created": result.created,
                  "nodes": [node_doc(n) for n in result.nodes], "api_calls": result.api_calls,
                  "seconds": round(result.seconds, 3)})
    else:
        head = cluster.headnode_of(result.nodes)
        verb = "is up" if result.reused else f"is up ({len(result.created)} instance(s) launched)"
        env.ui.info(f"cluster {cluster.name} {verb}: headnode {head.id} "
                    f"({head.public_ip or head.ssh_host}), {len(result.nodes) - 1} worker(s) "
                    f"in {result.seconds:.1f}s")
    return 0
