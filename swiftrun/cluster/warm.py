"""The last tag read of a cluster, kept in ``nodes.json`` so a run's warm path can skip the cloud.

Only a cache: the cloud's tags are the truth. It is written after a read that found the cluster
ready, dropped by every change to the cluster, and trusted only when it is recent (``WARM_TTL``),
of the project's region and read with the same AWS identity. ``Cluster._warm`` decides whether a
run may use it (the headnode must still answer with its pinned host key).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict
from datetime import datetime
from pathlib import Path

from swiftrun import environ
from swiftrun.cloud.base import Node

# How long the nodes last read from the tags may stand in for a new read on a run's warm path.
WARM_TTL = environ.seconds("SWIFTRUN_WARM_TTL")


class LastSeen:
    """``<cluster dir>/nodes.json``: what the tags said last, for one project's cluster."""

    def __init__(self, cluster_dir: Path, project, *, elastic: bool):
        self.file = Path(cluster_dir) / "nodes.json"
        self.project = project
        self.elastic = elastic

    def remember(self, nodes: list[Node]) -> None:
        """Keep what the tags just said. Only a cache: it lets a run on a cluster this machine
        saw a moment ago skip the cloud API, and every change to the cluster drops it."""
        if not self.elastic:
            return
        doc = {"at": time.time(), "region": self.project.ec2.region, "who": self._who(),
               "nodes": [{**asdict(n), "launched": n.launched.isoformat() if n.launched else None}
                         for n in nodes]}
        tmp = self.file.with_suffix(f".{os.getpid()}.tmp")
        try:
            tmp.write_text(json.dumps(doc))
            os.replace(tmp, self.file)
        except OSError:
            pass

    def _who(self) -> str:
        """Which AWS identity the last read was made with, as far as can be told without asking
        AWS: the same cluster name under another account must not borrow this cache."""
        ec2 = self.project.ec2
        parts = [str(ec2.profile or ""), str(ec2.credentials_file or ""),
                 os.environ.get("AWS_PROFILE", ""), os.environ.get("AWS_ACCESS_KEY_ID", ""),
                 os.environ.get("AWS_ENDPOINT_URL", "")]
        return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]

    def forget(self) -> None:
        self.file.unlink(missing_ok=True)

    def read(self) -> list[Node] | None:
        """The nodes of the last tag read, if it is recent and of this project's region."""
        try:
            doc = json.loads(self.file.read_text())
            if doc.get("region") != self.project.ec2.region or doc.get("who") != self._who():
                return None
            if not 0 <= time.time() - float(doc["at"]) <= WARM_TTL:
                return None
            return [Node(**{**n, "launched": datetime.fromisoformat(n["launched"])
                            if n.get("launched") else None}) for n in doc["nodes"]]
        except (OSError, ValueError, KeyError, TypeError):
            return None
