"""A static cluster's services: coaster-service on the headnode, worker.pl on each worker.

Static hosts already exist and boot no userdata, so ``up`` starts the two services over SSH
(once: a pidfile in ``~/.swiftrun-node`` says one runs) and ``down`` stops exactly those processes,
leaving the hosts alone. The binaries are found under ``[swift] home``, else on PATH.
"""

from __future__ import annotations

import shlex

from swiftrun.errors import CloudError, SwiftrunError
from swiftrun.node.layout import COASTER_PORT, HEADNODE, WORKER_PORT
from swiftrun.node.swift import COMPAT_LAUNCHER_SH


def start_services(cluster, nodes) -> None:
    """Start coaster-service on the headnode of ``nodes``, then worker.pl on each worker."""
    head = cluster.headnode_of(nodes)
    home = shlex.quote(cluster.project.swift.home)
    run = cluster.remote.run(cluster.target(head), _start_service(
        "coaster", home, "coaster-service",
        f"-p {COASTER_PORT} -localport {WORKER_PORT} -nosec -passive"), timeout=60)
    if not run.ok:
        raise CloudError(f"could not start coaster-service on {head.id}: "
                         f"{(run.stderr or run.stdout).strip()}")
    cluster.ui.node(f"headnode {head.id}", run.stdout.strip())
    url = f"http://{head.private_ip}:{WORKER_PORT}"
    for w in cluster.workers_of(nodes):
        args = (f"-c {int(cluster.project.cluster.worker_concurrency)} {shlex.quote(url)} "
                f"{shlex.quote(cluster.name + '-' + w.id)} \"$d/worker-logs\"")
        run = cluster.remote.run(cluster.target(w), _start_service("worker", home, "worker.pl", args, supervise=True),
                                 timeout=60)
        if not run.ok:
            raise CloudError(f"could not start worker.pl on {w.id}: "
                             f"{(run.stderr or run.stdout).strip()}")
        cluster.ui.node(f"worker {w.id}", run.stdout.strip())


def stop_services(cluster) -> list[str]:
    """Stop the services ``start_services`` started; what each host said."""
    stopped = []
    for node in cluster.nodes():
        name = "coaster" if node.role == HEADNODE else "worker"
        try:
            res = cluster.remote.run(cluster.target(node), _stop_service(name), timeout=30)
            stopped.append(f"{node.role} {node.id}: {res.stdout.strip() or 'nothing running'}")
        except SwiftrunError as exc:
            cluster.ui.warn(f"{node.id}: {exc}")
    return stopped


def _start_service(name: str, swift_home: str, binary: str, args: str, *, supervise: bool = False) -> str:
    """Shell that starts ``binary`` detached once (pidfile in ~/.swiftrun-node), finding it under
    the Swift home or on PATH. ``supervise``: start it again 5 s after it exits, as systemd's
    ``Restart=always`` does on the nodes swiftrun boots (worker.pl gives up after ~3 s without a
    service, and its first registration with a passive service can be refused: it relies on its
    supervisor). ``stop`` ends the whole process group, the loop with it."""
    loop = "sh -c 'while :; do \"$@\"; sleep 5; done' sh " if supervise else ""
    return f"""set -e
d="$HOME/.swiftrun-node"; mkdir -p "$d" "$d/worker-logs"
if [ -f "$d/{name}.pid" ] && kill -0 "$(cat "$d/{name}.pid")" 2>/dev/null; then
  echo "{binary} already running (pid $(cat "$d/{name}.pid"))"; exit 0; fi
b="${{SWIFTRUN_NODE_ROOT:-}}"{swift_home}/bin/{binary}
[ -x "$b" ] || b="$(command -v {binary} || true)"
[ -n "$b" ] || {{ echo "{binary} not found under {swift_home}/bin or on PATH ([swift] home)" >&2; exit 127; }}
{COMPAT_LAUNCHER_SH}
cd "$d"
setsid nohup {loop}"$b" {args} > "$d/{name}.log" 2>&1 < /dev/null &
echo $! > "$d/{name}.pid"
echo "started {binary} (pid $!)"
"""


def _stop_service(name: str) -> str:
    return f"""d="$HOME/.swiftrun-node"
if [ -f "$d/{name}.pid" ]; then p="$(cat "$d/{name}.pid")"
  if kill -0 "$p" 2>/dev/null; then kill -TERM -- "-$p" 2>/dev/null || kill -TERM "$p"; echo "stopped pid $p"; fi
  rm -f "$d/{name}.pid"; fi
"""
