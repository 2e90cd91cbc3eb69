"""Where swiftrun finds its shipped data and keeps its local cache.

The local state under ``state_home()`` is only a cache (known_hosts, last sync manifests, locks):
the cloud's tags are the truth, so deleting this directory never loses a cluster.
"""

from __future__ import annotations

from pathlib import Path

_PKG = Path(__file__).resolve().parent


def data_dir(name: str) -> Path:
    """``site_templates`` or ``userdata``: inside the wheel, or at the repo top level in a checkout."""
    for candidate in (_PKG / "_data" / name, _PKG.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"swiftrun data directory {name!r} is missing from the installation")


def state_home() -> Path:
    """``$SWIFTRUN_HOME`` or ``~/.swiftrun``; created 0700 because it holds keys and host keys.
    One that cannot be made or written is a ConfigError naming the variable (environ.py)."""
    from swiftrun.environ import check_home

    return check_home()


def cluster_dir(cluster: str) -> Path:
    path = state_home() / "clusters" / cluster
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path
