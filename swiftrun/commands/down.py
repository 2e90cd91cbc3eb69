"""`swiftrun down` (alias `dissolve`): terminate everything of the cluster, found by its tags."""

from __future__ import annotations

import click

from swiftrun.commands._common import Env, project_options


@click.command()
@click.option("--delete-key", is_flag=True,
              help="Also delete the EC2 key pair swiftrun created (the local key file is kept).")
@project_options
def down(delete_key, project_file, cluster_name, json_mode, yes, quiet):
    """Terminate the cluster's instances, then delete its security group. Safe to repeat."""
    env = Env(project_file, cluster_name, json_mode, yes, quiet)
    cluster = env.cluster()
    result = cluster.down(delete_key=delete_key)
    if json_mode:
        env.emit({"cluster": cluster.name, **result})
    else:
        if result["stopped"]:
            for line in result["stopped"]:
                env.ui.info(f"stopped {line}")
        elif not result["terminated"] and not result["deleted"]:
            env.ui.info(f"cluster {cluster.name}: nothing to take down")
        else:
            env.ui.info(f"cluster {cluster.name}: terminated {len(result['terminated'])} "
                        f"instance(s)" + "".join(f", deleted {d}" for d in result["deleted"]))
    return 0
