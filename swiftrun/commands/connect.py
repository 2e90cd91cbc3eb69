"""`swiftrun connect [NODE] [-- COMMAND]`: OpenSSH to a node with the cluster's key and pins."""

from __future__ import annotations

import os
import shlex
import sys

import click

from swiftrun.commands._common import Env, project_options
from swiftrun.errors import ClusterNotFound, UsageError


def connect_names(cluster, nodes) -> dict[str, str]:
    """Node id -> the name `connect` takes for it; `list` shows these."""
    from swiftrun.cluster.readiness import connect_names as names

    return names(nodes)


def pick(cluster, which: str | None):
    nodes = [n for n in cluster.nodes() if n.live]
    if not nodes:
        raise ClusterNotFound(f"cluster {cluster.name!r} has no running nodes; `swiftrun up` "
                              "starts it")
    if which in (None, "headnode"):
        head = cluster.headnode_of(nodes)
        if not head:
            raise ClusterNotFound(f"cluster {cluster.name!r} has no running headnode")
        return head
    if which.startswith("worker") and which[6:].isdigit():
        ids = {name: i for i, name in connect_names(cluster, nodes).items()}
        if which not in ids:
            count = len(cluster.workers_of(nodes))
            raise UsageError(f"{which}: the cluster has {count} worker(s): worker0.."
                             f"worker{count - 1}")
        return next(n for n in nodes if n.id == ids[which])
    for n in nodes:
        if which in (n.id, n.name, n.public_ip, n.private_ip):
            return n
    raise UsageError(f"{which}: no such node; use headnode, workerN, an instance id or an IP "
                     "(see `swiftrun list`)")


@click.command(context_settings={"ignore_unknown_options": True})
@click.argument("node", required=False)
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.option("--print", "print_only", is_flag=True,
              help="Print the ssh command instead of running it (with --json, as a document).")
@project_options
@click.pass_context
def connect(ctx, node, command, print_only, project_file, cluster_name, json_mode, yes, quiet):
    """SSH to NODE (headnode by default; workerN, an instance id or IP), optionally running COMMAND."""
    command = ctx.meta.get("remote_command", ()) or command
    env = Env(project_file, cluster_name, json_mode, yes, quiet)
    env.will_connect()
    cluster = env.cluster()
    target_node = pick(cluster, node)
    target = cluster.target(target_node)
    if print_only or json_mode:
        # only the command: no connection is made (an unpinned host then fails its key check
        # until a `swiftrun up` or `swiftrun connect` has pinned it); --json implies --print
        argv = cluster.remote.ssh_argv(target, list(command) or None, tty=not command)
        if json_mode:
            env.emit({"cluster": cluster.name, "node": {"id": target_node.id, "name": target_node.name,
                                                        "role": target_node.role},
                      "argv": argv, "command": " ".join(shlex.quote(a) for a in argv)})
        else:
            print(" ".join(shlex.quote(a) for a in argv))
        return 0
    if not cluster.remote.is_pinned(target):
        # Learn and pin the key through our own checked connection first, never ssh's accept-new.
        # A static host is not one swiftrun launched: its key must be known (~/.ssh/known_hosts).
        if cluster.provider.elastic:
            cluster.remote.wait(target, 60, allow_new=True)
        else:
            cluster.remote.wait(target, 60, allow_new=False, hint=(
                f"check that sshd runs on {target.host} and listens on port {target.port}"))
        cluster.remote.close()
    argv = cluster.remote.ssh_argv(target, list(command) or None,
                                   tty=not command and sys.stdin.isatty())
    sys.stdout.flush()
    sys.stderr.flush()
    os.execvp(argv[0], argv)
