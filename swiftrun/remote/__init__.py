"""Reaching the nodes over SSH: one reused connection per node, host keys pinned per cluster.

- ``ssh``: ``Remote`` (connect, run a command, the OpenSSH command line) and ``Target``;
- ``proxy``: ``[ssh] proxy_command``, OpenSSH style.

Callers import from here; the modules of this package import each other.
"""

from swiftrun.remote.ssh import Remote, Result, Target

__all__ = ["Remote", "Result", "Target"]
