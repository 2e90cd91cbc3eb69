"""Writing project files: a commented swiftrun.toml for `swiftrun init`, and one converted from the
tutorial's ``configs`` for `swiftrun init --from configs`.

Both are rendered from a Project, key by key, from the dataclasses themselves: a key added to
``project/model.py`` shows up here (with a generic comment until it gets one below).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from swiftrun.errors import ConfigError
from swiftrun.project.legacy import LEGACY_KEYS, _legacy_entries
from swiftrun.project.load import _read_text, load_project
from swiftrun.project.model import SECTIONS, ClusterSettings, Project, StaticSettings
from swiftrun.project.values import (
    _NAME_RE, _display, format_duration, sanitize_cluster_name, toml_value)

SECTION_DOCS: dict[str, str] = {
    "cluster": "The cluster: how many nodes, and when it goes away by itself.",
    "ec2": "Amazon EC2 (provider = \"ec2\").",
    "ssh": "How swiftrun reaches the nodes.",
    "static": "Hosts that already exist (provider = \"static\"); ignored on EC2.",
    "swift": "Swift on the nodes and how a run is configured.",
    "sync": "What goes up to the headnode and what comes back.",
    "s3fs": "An S3 bucket mounted on every node (by the instances' role, never by keys).",
}

KEY_DOCS: dict[tuple[str, str], str] = {
    ("cluster", "name"): "every resource is tagged swiftrun:cluster=<name>",
    ("cluster", "provider"): "\"ec2\" or \"static\"",
    ("cluster", "workers"): "worker nodes (0: the headnode runs everything)",
    ("cluster", "min_workers"): "start with fewer workers if EC2 cannot give all of them",
    ("cluster", "worker_concurrency"): "tasks each worker runs at once (worker.pl -c)",
    ("cluster", "idle_timeout"): "shut down after this long with no run (\"30m\", \"1h30m\"; 0 = never)",
    ("cluster", "max_lifetime"): "... and never live longer than this (0 = no limit)",
    ("cluster", "keep"): "keep the cluster after a run (like --keep-cluster)",
    ("ec2", "region"): "AWS region, like us-west-2",
    ("ec2", "profile"): "AWS profile; empty: the standard credential chain",
    ("ec2", "credentials_file"): "optional: the IAM console's access key CSV",
    ("ec2", "headnode_type"): "instance type of the headnode",
    ("ec2", "worker_type"): "instance type of the workers",
    ("ec2", "image"): "\"auto\" (latest Ubuntu LTS) or an AMI id",
    ("ec2", "worker_image"): "AMI for workers; empty: same as image",
    ("ec2", "key_name"): "EC2 key pair; empty: swiftrun-<cluster name>",
    ("ec2", "security_group"): "security group name; empty: swiftrun-<cluster name>",
    ("ec2", "ssh_cidr"): "who may reach port 22; \"auto\": this machine's address",
    ("ec2", "spot"): "run workers as spot instances",
    ("ec2", "subnet_id"): "launch into this subnet (nodes get a public IP); empty: the default VPC",
    ("ec2", "availability_zones"): "zones to try, in order; empty: any",
    ("ec2", "worker_init_script"): "script run on every worker at boot",
    ("ec2", "worker_public_ip"): "public IPv4 for workers (billed hourly); \"auto\": only if they need the internet at boot",
    ("ec2", "volume_size_gb"): "root disk size, at least the image's (8 on Ubuntu); 0: the image's",
    ("ssh", "user"): "login user on the nodes",
    ("ssh", "key_file"): "private key; empty: ~/.swiftrun/keys/<key name>.pem (created)",
    ("ssh", "port"): "SSH port on the nodes",
    ("ssh", "proxy_command"): "OpenSSH ProxyCommand (%h %p %r expanded), for a bastion or SSM",
    ("ssh", "connect_timeout"): "seconds to wait for an SSH connection",
    ("static", "headnode"): "host name or address of the headnode",
    ("static", "workers"): "host names or addresses of the workers",
    ("swift", "site"): "a template in site_templates/",
    ("swift", "staging"): "\"local\" (provider staging) or \"direct\" (shared filesystem)",
    ("swift", "work_directory"): "Swift's work directory on the nodes",
    ("swift", "home"): "where Swift is on the nodes (bin/swift)",
    ("swift", "install_url"): "Swift tarball to install at boot; empty: the image's Swift",
    ("swift", "install_sha256"): "SHA-256 of that tarball (required with install_url)",
    ("swift", "conf"): "swift.conf overrides, e.g. { executionRetries = 2 }",
    ("swift", "args"): "script arguments, passed as -name=value",
    ("swift", "path"): "tool directories (relative to this file) put on every node's PATH",
    ("sync", "exclude"): "patterns not to upload (plus .swiftignore / .gitignore)",
    ("sync", "outputs"): "what to bring back; empty: new or changed files + runNNN/",
    ("sync", "warn_size_mb"): "warn before uploading more than this (0: never)",
    ("s3fs", "bucket"): "bucket to mount; empty: none",
    ("s3fs", "mount"): "where it is mounted on the nodes",
}

_DURATIONS = {("cluster", "idle_timeout"), ("cluster", "max_lifetime")}
_PATHS = {("ec2", "credentials_file"), ("ec2", "worker_init_script"), ("ssh", "key_file")}
_COMMENT_COLUMN = 28


def render_init(name: str, *, provider: str = "ec2") -> str:
    """A commented swiftrun.toml with every section and key, defaults filled in."""
    if not _NAME_RE.match(name or ""):
        raise ConfigError(f"cluster name {name!r}: must be 1-40 lower-case letters, digits or '-'",
                          hint=f"use {sanitize_cluster_name(name or '')!r}")
    if provider not in ("ec2", "static"):
        raise ConfigError(f"provider {provider!r}: must be ec2 or static", hint="use --provider ec2")
    project = Project(root=Path("."), cluster=ClusterSettings(name=name, provider=provider))
    header = [
        "# swiftrun project file: `swiftrun <script>.swift` in this directory (or below) uses it.",
        "# Every key is optional; the values shown are the defaults.",
    ]
    if provider == "static":
        project = dataclasses.replace(project, static=StaticSettings(
            headnode="headnode.example.org", workers=("worker1.example.org",)))
        header.append("# provider = \"static\": replace the example hosts in [static] with yours.")
    return _render(project, header=header, base_dir=None)


# What the tutorial's configs ships with and no longer works: retired PV-only instance types and
# its 2014 Ubuntu 14.04 PV AMI (HVM-only Ubuntu images and current types cannot use them).
_RETIRED_TYPE_PREFIXES = ("t1.",)
_TUTORIAL_AMIS = {"ami-c9d497f9": "the tutorial's Ubuntu 14.04 PV image from 2014"}


def _modernize(project: Project, came_from: dict) -> tuple[Project, list[str]]:
    """The tutorial's retired types and AMI replaced by today's defaults, a warning line each."""
    defaults = Project(root=project.root).ec2
    ec2, warnings = project.ec2, []
    for key in ("headnode_type", "worker_type"):
        value = getattr(ec2, key)
        if value.startswith(_RETIRED_TYPE_PREFIXES):
            new = getattr(defaults, key)
            ec2 = dataclasses.replace(ec2, **{key: new})
            was = came_from.pop(("ec2", key), key)
            warnings.append(f"{was}={value} replaced by [ec2] {key} = {new!r}: {value} is a retired "
                            "previous-generation (PV-only) type that cannot boot today's images")
    for key in ("image", "worker_image"):
        value = getattr(ec2, key)
        if value in _TUTORIAL_AMIS:
            new = getattr(defaults, key)
            ec2 = dataclasses.replace(ec2, **{key: new})
            was = came_from.pop(("ec2", key), key)
            what = repr(new) if new else "unset (the headnode's image)"
            warnings.append(f"{was}={value} replaced by [ec2] {key} = {what}: it is "
                            f"{_TUTORIAL_AMIS[value]}, which today's instance types cannot boot "
                            "(\"auto\" is the latest Ubuntu 24.04)")
    return dataclasses.replace(project, ec2=ec2), warnings


def convert_legacy(configs_path: Path | str, *, dest_dir: Path | str | None = None,
                   name: str | None = None, warnings: list[str] | None = None) -> str:
    """The swiftrun.toml equivalent to the tutorial's ``configs`` at ``configs_path``.

    Settings that differ from the defaults are written out (with the configs key they came from);
    the others stay as commented-out defaults. Paths are written relative to ``dest_dir`` (default:
    the configs file's directory, where the new file is expected to go) when inside it.
    The cluster is named ``name``, else after that directory, as ``swiftrun init`` does. The
    tutorial's retired instance types and AMI are replaced by today's defaults; ``warnings``
    gets a line for each (and the file a comment).
    Raises ConfigError if the configs file does not load.
    """
    path = Path(configs_path).expanduser()
    project = load_project(path)
    came_from: dict[tuple[str, str], str] = {}
    if project.path is not None:
        text = _read_text(path, _display(path))
        try:
            entries, _ = _legacy_entries(text, _display(path), project.path.parent)
            came_from = {k: origin.legacy_key for k, (_, origin) in entries.items()}
        except ConfigError:  # pragma: no cover - it loaded above, so it parses
            pass
    header = [f"# swiftrun.toml converted from {path.name} (the tutorial's configs format).",
              "# Settings from that file are set below; commented-out lines show the defaults."]
    for note in project.warnings:
        if "init --from" not in note:
            header.append(f"# Note: {note}")
    base = Path(dest_dir).expanduser().resolve() if dest_dir else (
        project.path.parent if project.path else Path.cwd())
    project, replaced = _modernize(project, came_from)
    header += [f"# Note: {line}" for line in replaced]
    if warnings is not None:
        warnings.extend(replaced)
    cluster_name = name or sanitize_cluster_name(base.name)
    project = dataclasses.replace(project, cluster=dataclasses.replace(project.cluster, name=cluster_name))
    return _render(project, header=header, base_dir=base, comment_defaults=True, came_from=came_from)


def _render(project: Project, *, header: list[str], base_dir: Path | None,
            comment_defaults: bool = False, came_from: dict | None = None) -> str:
    came_from = came_from or {}
    defaults = Project(root=project.root)
    out = [*header, ""]
    for section, cls in SECTIONS.items():
        out.append(f"[{section}]" + (f"{' ' * (_COMMENT_COLUMN - len(section) - 2)}# {SECTION_DOCS[section]}"
                                     if section in SECTION_DOCS else ""))
        settings, default_settings = getattr(project, section), getattr(defaults, section)
        for f in dataclasses.fields(cls):
            value = getattr(settings, f.name)
            is_default = value == getattr(default_settings, f.name)
            doc = KEY_DOCS.get((section, f.name), f"see docs ({section}.{f.name})")
            if (section, f.name) in came_from:
                doc += f" (was {came_from[(section, f.name)]})"
            if value is None and f.name == "min_workers":
                line = f"# {f.name} = 1"
            else:
                line = f"{f.name} = {_value_text(section, f.name, value, base_dir)}"
                if comment_defaults and is_default and (section, f.name) not in came_from:
                    line = "# " + line
            pad = max(2, _COMMENT_COLUMN - len(line))
            out.append(f"{line}{' ' * pad}# {doc}")
        out.append("")
    return "\n".join(out).rstrip("\n") + "\n"


def _value_text(section: str, key: str, value: Any, base_dir: Path | None) -> str:
    if (section, key) in _DURATIONS:
        return toml_value(format_duration(value)) if value else "0"
    if (section, key) in _PATHS:
        return toml_value(_path_text(value, base_dir)) if value else '""'
    return toml_value(value)


def _path_text(path: Path, base_dir: Path | None) -> str:
    path = Path(path)
    if base_dir is not None:
        try:
            return path.relative_to(base_dir).as_posix()
        except ValueError:
            pass
    try:
        home = Path.home().resolve()
        return "~/" + path.relative_to(home).as_posix()
    except (ValueError, RuntimeError):
        return os.fspath(path)


__all__ = ["render_init", "convert_legacy", "KEY_DOCS", "SECTION_DOCS", "LEGACY_KEYS"]
