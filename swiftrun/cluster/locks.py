"""Who may change a cluster, and who is still using it (flock files, this machine only).

``<cluster dir>/lock``: one swiftrun at a time may change the cluster (a second ``up`` would
launch twice). ``<cluster dir>/runs.lock``: every run holds it shared from start to end, and a
run dissolves the cluster only if it can take it exclusively, so the last run to finish
dissolves and none cuts off another's swift or outputs.
"""

from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path


class ClusterLocks:
    def __init__(self, cluster_dir: Path, name: str, ui):
        self.dir = Path(cluster_dir)
        self.name = name
        self.ui = ui
        self._use_fd = None

    @contextmanager
    def change(self):
        """One swiftrun at a time may change this cluster (a second `up` would launch twice)."""
        path = self.dir / "lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                self.ui.info(f"waiting for another swiftrun working on cluster {self.name!r}...")
                fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    @contextmanager
    def in_use(self):
        """Held (shared) by every run on this cluster from start to end, so one run's dissolve
        cannot cut off another's swift or outputs (`may_dissolve`). Same machine only."""
        fd = os.open(self.dir / "runs.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
            self._use_fd = fd
            yield
        finally:
            self._use_fd = None
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def may_dissolve(self) -> bool:
        """True when no other run on this machine uses the cluster. Drops this run's own hold
        first (a shared lock cannot be upgraded while others hold it too)."""
        fd = self._use_fd
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)
        probe = os.open(self.dir / "runs.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        else:
            fcntl.flock(probe, fcntl.LOCK_UN)
            return True
        finally:
            os.close(probe)
