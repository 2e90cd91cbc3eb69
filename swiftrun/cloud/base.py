"""The provider interface: what the cloud-agnostic lifecycle (cluster/) needs from a cloud.

A provider knows how to find a cluster's nodes (by tags: the cloud is the truth, local state is
only a cache), make the shared resources a cluster needs, launch nodes of a role, and take
everything down again. It knows nothing about SSH sessions, swift or the project's scripts.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import datetime

from swiftrun.node.layout import HEADNODE, WORKER  # noqa: F401 - the roles a Node has, for providers

TAG_CLUSTER = "swiftrun:cluster"
TAG_ROLE = "swiftrun:role"
TAG_SHAPE = "swiftrun:shape"

LIVE_STATES = ("pending", "running")
GONE_STATES = ("shutting-down", "terminated")


@dataclass(frozen=True)
class Node:
    """One machine of a cluster as the provider sees it."""

    id: str                      # instance id (EC2) or host[:port] (static)
    role: str                    # HEADNODE | WORKER
    state: str                   # pending | running | stopping | stopped | shutting-down | terminated
    name: str = ""
    type: str = ""
    public_ip: str | None = None
    private_ip: str | None = None
    launched: datetime | None = None
    shape: str = ""              # hash of the settings it was launched with
    spot: bool = False
    zone: str = ""
    ssh_host: str | None = None  # where SSH goes (public IP, static host name)
    ssh_port: int = 22
    host_key_alias: str = ""     # the name its host key is pinned under

    @property
    def live(self) -> bool:
        return self.state in LIVE_STATES


@dataclass(frozen=True)
class LaunchSpec:
    """What one launch call needs: role, count, the rendered boot script and the shape tag."""

    role: str
    count: int
    instance_type: str
    image: str
    userdata: str
    shape: str
    spot: bool = False
    min_count: int | None = None
    extra_tags: dict = field(default_factory=dict)


class Provider(ABC):
    """A place clusters live. ``elastic`` providers can launch and terminate machines."""

    name = "base"
    elastic = True

    @abstractmethod
    def find_nodes(self, cluster: str, *, include_gone: bool = False) -> list[Node]:
        """Every node tagged with ``cluster`` (live and stopped; gone ones only if asked)."""

    def preflight(self) -> None:
        """Cheap checks that fail before anything is created (credentials, region, image)."""

    def prepare(self, cluster: str, *, fresh: bool = False) -> None:
        """Create (or find) the shared resources a launch needs: key pair, security group."""

    def launch(self, cluster: str, spec: LaunchSpec) -> list[Node]:
        raise NotImplementedError(f"the {self.name} provider cannot launch machines")

    def wait_running(self, cluster: str, ids: list[str], timeout: float = 600,
                     also: list[str] = ()) -> list[Node]:
        return [n for n in self.find_nodes(cluster) if n.id in ids or n.id in also]

    def terminate(self, cluster: str, ids: list[str]) -> None:
        raise NotImplementedError(f"the {self.name} provider cannot terminate machines")

    def start(self, cluster: str, ids: list[str]) -> None:
        raise NotImplementedError(f"the {self.name} provider cannot start machines")

    def stop(self, cluster: str, ids: list[str]) -> None:
        raise NotImplementedError(f"the {self.name} provider cannot stop machines")

    def wait_gone(self, cluster: str, ids: list[str], timeout: float) -> None:
        """Block until ``ids`` are terminated (so dependent resources can be deleted)."""

    def cleanup(self, cluster: str, *, delete_key: bool = False) -> list[str]:
        """Delete the cluster's shared resources; returns what was deleted. Idempotent."""
        return []

    def undo_prepare(self, cluster: str) -> list[str]:
        """Delete what ``prepare`` created in this process (after a failed launch); returns what
        was deleted. Never what was there before."""
        return []

    def resolve_image(self, role: str) -> str:
        return ""

    def unreachable(self, node: Node) -> tuple[str, str] | None:
        """(why, fix) when SSH from this machine cannot reach ``node`` at all, else None."""
        return None

    def describe_plan(self) -> dict:
        """What would be created, for --dry-run; no network."""
        return {}
