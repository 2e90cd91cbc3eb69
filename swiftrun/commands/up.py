"""`swiftrun up`: bring the cluster up, or check the one that is running."""

from __future__ import annotations

import click

from swiftrun.commands._common import Env, node_doc, project_options
from swiftrun.commands.run import announce_cost, cluster_name_of, json_errors, run_cost


@click.command()
@click.option("--keep-on-failure", is_flag=True,
              help="If something fails, keep what was launched for debugging.")
@project_options
def up(keep_on_failure, project_file, cluster_name, json_mode, yes, quiet):
    """Bring the cluster up (reusing it when it already runs with the same settings)."""
    env = Env(project_file, cluster_name, json_mode, yes, quiet)
    with json_errors(env, cluster=cluster_name_of(env)):
        env.will_connect()
        return _up(env, keep_on_failure)


def _up(env: Env, keep_on_failure: bool) -> int:
    from swiftrun.cloud.pricing import describe_running

    cluster = env.cluster()
    cluster.provider.preflight()
    estimate = announce_cost(env)
    result = cluster.up(keep_on_failure=keep_on_failure)
    cluster.remote.close()
    cost = run_cost(env, result.nodes)
    cost["estimate_before_launch"] = {k: estimate.get(k) for k in
                                      ("per_hour", "source", "estimate", "unknown")}
    if env.json_mode:
        env.emit({"cluster": cluster.name, "reused": result.reused, "created": result.created,
                  "nodes": [node_doc(n) for n in result.nodes],
                  "node_states": env.ui.node_states(), "api_calls": result.api_calls,
                  "seconds": round(result.seconds, 3), "cost": cost})
    else:
        head = cluster.headnode_of(result.nodes)
        verb = "is up" if result.reused else f"is up ({len(result.created)} instance(s) launched)"
        env.ui.info(f"cluster {cluster.name} {verb}: headnode {head.id} "
                    f"({head.public_ip or head.ssh_host}), {len(result.nodes) - 1} worker(s) "
                    f"in {result.seconds:.1f}s")
        if env.project.cluster.provider == "ec2":
            env.ui.info("cost: " + describe_running(cost))
    return 0
