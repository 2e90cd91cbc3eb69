"""What every command shares: the project/cluster options, loading, JSON output.

Heavy imports (boto3, pyhocon) happen inside functions, so `swiftrun --help` stays fast.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, is_dataclass
from datetime import datetime
from pathlib import Path

import click

from swiftrun.errors import UsageError


def project_options(f):
    """-p/--project, --cluster, --json, --yes, --quiet on a command."""
    f = click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors on stderr.")(f)
    f = click.option("--yes", "-y", is_flag=True,
                     help="Answer yes to confirmations (implied when stdin is not a terminal).")(f)
    f = click.option("--json", "json_mode", is_flag=True,
                     help="Print one JSON document on stdout.")(f)
    f = click.option("--cluster", "cluster_name", envvar="SWIFTRUN_CLUSTER", metavar="NAME",
                     help="Cluster name (default: [cluster] name; env SWIFTRUN_CLUSTER).")(f)
    f = click.option("-p", "--project", "project_file", metavar="FILE",
                     type=click.Path(dir_okay=False, path_type=Path),
                     help="Project file (swiftrun.toml or a legacy configs file).")(f)
    return f


class Env:
    """Loaded lazily from the options each command got."""

    def __init__(self, project_file=None, cluster_name=None, json_mode=False, yes=False,
                 quiet=False, start: Path | None = None):
        from swiftrun.ui import UI

        self.project_file = project_file
        self.cluster_name = cluster_name
        self.json_mode = json_mode
        self.yes = yes or not sys.stdin.isatty()
        self.start = start
        self.ui = UI(json_mode=json_mode, quiet=quiet)   # progress stays on stderr under --json
        self._project = None

    @property
    def project(self):
        if self._project is None:
            from swiftrun.project import env_overrides, load_project

            if self.project_file is not None and not self.project_file.exists():
                raise UsageError(f"-p {self.project_file}: no such file (give the path of "
                                 "swiftrun.toml, or leave -p out to search from the script's directory)")
            overrides, labels = env_overrides()
            overrides.pop("cluster.name", None)
            if self.cluster_name is not None and not self.cluster_name.strip():
                flag = "--cluster" if os.environ.get("SWIFTRUN_CLUSTER") is None else "SWIFTRUN_CLUSTER"
                raise UsageError(f"{flag} {self.cluster_name!r}: a cluster name cannot be empty "
                                 f"(give one like p4, or leave {flag} out to use [cluster] name)")
            if self.cluster_name:
                overrides["cluster.name"] = self.cluster_name
                labels["cluster.name"] = ("--cluster" if os.environ.get("SWIFTRUN_CLUSTER")
                                          != self.cluster_name else "SWIFTRUN_CLUSTER")
            self._project = load_project(self.project_file, start=self.start or Path.cwd(),
                                         overrides=overrides, override_labels=labels)
            for warning in getattr(self._project, "warnings", ()):
                self.ui.warn(warning)
        return self._project

    def will_connect(self) -> None:
        """For the verbs that SSH with [ssh] key_file: one that group/other can read is refused
        now (OpenSSH would refuse it at the first connection, after the nodes were paid for)."""
        from swiftrun.errors import ConfigError
        from swiftrun.project.keyfile import mode_problem

        key = self.project.ssh.key_file
        problem = key and mode_problem(Path(key))
        if problem:
            where = f"{self.project.path.name}: " if self.project.path else ""
            raise ConfigError(f"{where}[ssh] key_file = {str(key)!r}: {problem[0]}", hint=problem[1])

    def cluster(self):
        from swiftrun.cloud import make_provider
        from swiftrun.cluster import Cluster

        return Cluster(self.project, make_provider(self.project), self.ui)

    def emit(self, doc: dict) -> None:
        emit(doc)


_emitted = False   # one JSON document per command: an error after it prints no second one


def emit(doc: dict) -> None:
    global _emitted
    print(json.dumps(doc, indent=2, default=_jsonable, sort_keys=False), flush=True)
    _emitted = True


def emitted() -> bool:
    return _emitted


def error_doc(message: str, exit_code: int, **fields) -> dict:
    """The document every --json command prints on stdout when it fails (docs/schemas/):
    ``{"error": <the one-line message>, "exit_code": <the exit code>}`` plus what the command
    knew (e.g. ``cluster``)."""
    return {"error": message, "exit_code": exit_code, **fields}


def _jsonable(obj):
    if is_dataclass(obj):
        return asdict(obj)
    if isinstance(obj, datetime):
        return obj.isoformat()
    if isinstance(obj, Path):
        return str(obj)
    return str(obj)


def node_doc(node) -> dict:
    up = None   # not launched (yet), or stopped: no uptime (and no compute billed)
    if node.launched and node.live:
        secs = (datetime.now(node.launched.tzinfo) - node.launched).total_seconds()
        up = int(max(0, secs))
    return {"id": node.id, "name": node.name, "role": node.role, "state": node.state,
            "type": node.type, "public_ip": node.public_ip, "private_ip": node.private_ip,
            "zone": node.zone, "spot": node.spot, "uptime_s": up}


def human_duration(seconds) -> str:
    if seconds == "" or seconds is None:
        return "-"
    seconds = int(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{s:02d}s" if m else f"{s}s")
