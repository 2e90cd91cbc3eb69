"""`swiftrun list` (alias `list_resources`): the cluster's nodes, found by tags."""

from __future__ import annotations

import click

from swiftrun.commands._common import Env, human_duration, node_doc, project_options
from swiftrun.commands.run import cluster_name_of, json_errors, run_cost


@click.command("list")
@project_options
def list_cmd(project_file, cluster_name, json_mode, yes, quiet):
    """List the cluster's nodes: name (as `connect` takes it), role, state, type, public/private
    IP, uptime (running nodes only), cost (running nodes only)."""
    env = Env(project_file, cluster_name, json_mode, yes, quiet)
    with json_errors(env, cluster=cluster_name_of(env)):
        return _list(env)


def _list(env: Env) -> int:
    from swiftrun.cloud.pricing import describe_running

    from swiftrun.commands.connect import connect_names

    cluster = env.cluster()
    found = cluster.nodes()
    names = connect_names(cluster, found)   # the names `connect` takes, not the Name tags
    nodes = [{**node_doc(n), "connect_as": names.get(n.id)} for n in found]
    cost = run_cost(env, found, live_only=True)   # live nodes only: stopped ones bill no instance hours
    if env.json_mode:
        env.emit({"cluster": cluster.name, "nodes": nodes, "cost": cost})
        return 0
    if not nodes:
        env.ui.info(f"cluster {cluster.name}: no nodes")
        return 0
    cols = ["name", "role", "state", "type", "public_ip", "private_ip", "uptime", "id"]
    rows = [[n["connect_as"] or "-", n["role"], n["state"], n["type"], n["public_ip"] or "-",
             n["private_ip"] or "-", human_duration(n["uptime_s"]), n["id"]] for n in nodes]
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(cols)]
    print("  ".join(c.upper().ljust(w) for c, w in zip(cols, widths)).rstrip())
    for r in rows:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip())
    if env.project.cluster.provider == "ec2":
        env.ui.info("cost: " + describe_running(cost))
    return 0
