"""Where things are on a node, and the ports its services listen on: each fact defined once.

The boot scripts (``userdata/*.sh``) get the ports as settings from ``node/userdata.py``; the
cluster probes the state markers; the run writes its files under ``RUNS``; the security group
opens the coaster ports inside the group; swift.conf points swift at the coaster port. The whole
contract, with the test cloud's side, is in docs/internals.md ("The node").
"""

from __future__ import annotations

import re
from pathlib import Path

# The two roles a node can have (its ``ROLE`` in node.env, its ``swiftrun:role`` tag).
HEADNODE = "headnode"
WORKER = "worker"

COASTER_PORT = 50010          # swift -> coaster service, on the headnode
WORKER_PORT = 50005           # worker.pl -> coaster service
AGENT_PORT = 50011            # workers -> the headnode's agent (boot reports, Swift, tools)
# What the security group opens inside the cluster's own group, and nowhere else (22: the
# workers are reached through the headnode, never from outside).
CLUSTER_PORTS = (WORKER_PORT, COASTER_PORT, AGENT_PORT, 22)

# Every node-side path is under this prefix; it is empty on real nodes (see docs/internals.md).
NODE_ROOT = '"${SWIFTRUN_NODE_ROOT:-}"'
STATE_DIR = NODE_ROOT + "/var/lib/swiftrun"                 # step, ready, failed, activity
BOOT_LOG = NODE_ROOT + "/var/log/swiftrun/userdata.log"     # everything userdata printed
TOOLS_DIR = STATE_DIR + "/tools/bin"                       # [swift] path tools, on the apps' PATH

# A run's files on the headnode, relative to the project's remote root: <id>.log (console),
# <id>.exit, <id>.pid, <id>.lock (flock, held by the wrapper until <id>.exit exists; absent for
# runs of older wrappers and on nodes without flock), <id>.sh (the detached wrapper), ``latest``.
RUNS = ".swiftrun/runs"
# A run id names those files and is pasted into remote commands: only these characters, ever
# (the runner makes ``20261203-053000-ab12``; ``logs --run`` and the headnode's ``latest`` file
# are checked against it before any use).
RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def remote_root(project, script_dir: Path) -> str:
    """Where the script directory lives on the headnode: ``~/swiftrun/<dir name>``."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", script_dir.resolve().name) or "project"
    return f"~/swiftrun/{name}"
