"""`swiftrun down` (alias `dissolve`): terminate everything of the cluster, found by its tags."""

from __future__ import annotations

import click

from swiftrun.commands._common import Env, node_doc, project_options
from swiftrun.commands.run import cluster_name_of, json_errors, run_cost


@click.command()
@click.option("--delete-key", is_flag=True,
              help="Also delete the EC2 key pair swiftrun created (the local key file is kept).")
@project_options
def down(delete_key, project_file, cluster_name, json_mode, yes, quiet):
    """Terminate the cluster's instances, then delete its security group. Safe to repeat."""
    env = Env(project_file, cluster_name, json_mode, yes, quiet)
    with json_errors(env, cluster=cluster_name_of(env)):
        return _down(env, delete_key)


def _down(env: Env, delete_key: bool) -> int:
    from swiftrun.cloud.pricing import describe_running

    cluster = env.cluster()
    seen = _record_nodes(cluster)
    result = cluster.down(delete_key=delete_key)
    # What the cluster cost, LaunchTime to now, from the nodes `down` itself looked up (no extra
    # EC2 call). Only the instances it terminated count.
    gone = set(result.get("terminated", []))
    nodes = [n for n in (seen[0] if seen else []) if n.id in gone]
    cost = run_cost(env, nodes)
    if env.json_mode:
        env.emit({"cluster": cluster.name, **result, "nodes": [node_doc(n) for n in nodes],
                  "cost": cost})
    else:
        if result["stopped"]:
            for line in result["stopped"]:
                env.ui.info(f"stopped {line}")
        elif not result["terminated"] and not result["deleted"]:
            env.ui.info(f"cluster {cluster.name}: nothing to take down")
        else:
            env.ui.info(f"cluster {cluster.name}: terminated {len(result['terminated'])} "
                        f"instance(s)" + "".join(f", deleted {d}" for d in result["deleted"]))
        if nodes and env.project.cluster.provider == "ec2":
            env.ui.info("cost: " + describe_running(cost, verb="cost"))
    return 0


def _record_nodes(cluster) -> list:
    """Keep the node lists ``cluster.nodes()`` returns during ``down`` (their launch times and
    types price the cluster). Hook wanted in cluster/lifecycle.py: let ``down()`` return its nodes."""
    seen: list = []
    original = cluster.nodes

    def nodes():
        found = original()
        seen.append(found)
        return found

    cluster.nodes = nodes
    return seen
