"""Static provider: machines that already exist (on-prem, a lab's servers), reached over SSH.

Nothing is launched or terminated: ``up`` starts coaster-service on the headnode and worker.pl on
the workers, ``down`` stops exactly those processes (by the PIDs it recorded) and leaves the
hosts alone.
"""

from __future__ import annotations

from swiftrun.cloud.base import HEADNODE, WORKER, Node, Provider
from swiftrun.errors import ConfigError


def parse_host(spec: str, default_user: str, default_port: int) -> tuple[str, str, int]:
    """``[user@]host[:port]`` -> (user, host, port)."""
    user, _, rest = spec.rpartition("@")
    host, port = rest, default_port
    if rest.count(":") == 1:
        host, _, p = rest.partition(":")
        if not p.isdigit() or not 0 < int(p) < 65536:
            raise ConfigError(f"[static] host {spec!r}: the port after ':' must be 1-65535")
        port = int(p)
    if not host:
        raise ConfigError(f"[static] host {spec!r} has no host name")
    return user or default_user, host, port


class StaticProvider(Provider):
    name = "static"
    elastic = False

    def __init__(self, project):
        self.project = project
        if not project.static.headnode:
            raise ConfigError("provider = \"static\" needs [static] headnode = \"host\" "
                              "(and workers = [\"host1\", ...])")

    def _node(self, spec: str, role: str) -> Node:
        user, host, port = parse_host(spec, self.project.ssh.user, self.project.ssh.port)
        ident = host if port == 22 else f"{host}:{port}"
        return Node(id=ident, role=role, state="running", name=spec, type="static",
                    public_ip=host, private_ip=host, ssh_host=host, ssh_port=port)

    def user_of(self, node: Node) -> str:
        return parse_host(node.name, self.project.ssh.user, self.project.ssh.port)[0]

    def find_nodes(self, cluster: str, *, include_gone: bool = False) -> list[Node]:
        nodes = [self._node(self.project.static.headnode, HEADNODE)]
        nodes += [self._node(w, WORKER) for w in self.project.static.workers]
        return nodes

    def describe_plan(self) -> dict:
        return {"headnode": self.project.static.headnode,
                "workers": list(self.project.static.workers)}
