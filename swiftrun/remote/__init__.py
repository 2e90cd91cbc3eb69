"""Reaching the nodes over SSH: OpenSSH, one multiplexed connection per node, host keys pinned
per cluster.

- ``openssh``: ``Remote`` (run a command, stream one, the command line for ``connect`` and rsync),
  ``Target`` (a node: address, port, user, the alias its key is pinned under, a jump node) and
  ``Link`` (one node's open connection, for streams).

Callers import from here; the modules of this package import each other.
"""

from swiftrun.remote.openssh import HostKeyMismatch, Link, Remote, Result, Target

__all__ = ["HostKeyMismatch", "Link", "Remote", "Result", "Target"]
