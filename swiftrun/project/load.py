"""Finding and loading the project: swiftrun.toml or the tutorial's configs, then overrides.

A file is read into "entries": (section, key) -> (value, origin) (``toml.py`` or ``legacy.py``).
Overrides (CLI flags, environment variables) are added on top. Every entry is then checked and
converted by the validator for its key (``schema.py``), then the settings are checked against each
other. Any problem raises ConfigError with one line: where (file:line, or the flag / variable),
what (the key and its value), what is wrong, and in parentheses what would fix it.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Mapping

from swiftrun.errors import ConfigError
from swiftrun.project.legacy import (
    LEGACY_FILE, _is_legacy, _legacy_entries, _looks_like_tutorial_configs)
from swiftrun.project.model import SECTIONS, Project, setting_names
from swiftrun.project.schema import _SCHEMA, _Bad, _cross_checks, _Ctx, _Entries, _error, _Origin
from swiftrun.project.toml import _toml_entries
from swiftrun.project.values import _display, _nearest

PROJECT_FILE = "swiftrun.toml"

# Environment variables the CLI may turn into overrides (see env_overrides).
ENV_OVERRIDES: dict[str, str] = {
    "SWIFTRUN_CLUSTER": "cluster.name",
    "SWIFTRUN_WORKERS": "cluster.workers",
    "SWIFTRUN_REGION": "ec2.region",
    "SWIFTRUN_PROFILE": "ec2.profile",
    "SWIFTRUN_IMAGE": "ec2.image",
    "SWIFTRUN_SWIFT_URL": "swift.install_url",
    "SWIFTRUN_SWIFT_SHA256": "swift.install_sha256",
}


def env_overrides(environ: Mapping[str, str] | None = None) -> tuple[dict[str, str], dict[str, str]]:
    """(overrides, labels) for load_project from SWIFTRUN_CLUSTER, SWIFTRUN_WORKERS, ... if set."""
    environ = os.environ if environ is None else environ
    overrides, labels = {}, {}
    for var, dotted in ENV_OVERRIDES.items():
        if environ.get(var):
            overrides[dotted] = environ[var]
            labels[dotted] = f"${var}"
    return overrides, labels


def _read_text(path: Path, display: str) -> str:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{display}: project file not found",
                          hint="check the path, or create one with `swiftrun init`") from None
    except IsADirectoryError:
        raise ConfigError(f"{display}: is a directory, not a project file",
                          hint=f"give {display}/{PROJECT_FILE}, or run from that directory") from None
    except PermissionError:
        raise ConfigError(f"{display}: permission denied reading the project file",
                          hint=f"chmod u+r {display}") from None
    except OSError as exc:
        raise ConfigError(f"{display}: cannot read the project file: {exc.strerror or exc}",
                          hint="check the path and the disk") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigError(f"{display}:{line}: the project file is not UTF-8 text",
                          hint="save it as UTF-8") from None
    return text.removeprefix("\ufeff")


def _refuse_unusable(candidate: Path) -> None:
    """A swiftrun.toml that is there but is no file (a directory, a dangling link) is an error,
    never a reason to look further up or to fall back on the defaults."""
    if candidate.is_symlink() and not candidate.exists():
        import os

        shown = _display(candidate.parent) + os.sep + candidate.name
        raise ConfigError(f"{shown.removeprefix('.' + os.sep)}: a dangling link (to "
                          f"{os.readlink(candidate)}, "
                          "which does not exist)",
                          hint="point the link at a project file, or remove it")
    if candidate.exists() and not candidate.is_file():
        what = "a directory" if candidate.is_dir() else "not a regular file"
        raise ConfigError(f"{_display(candidate)}: is {what}, not a project file",
                          hint="rename it and write the project file there with `swiftrun init`")


def find_project_file(start: Path | str | None = None) -> Path | None:
    """The nearest swiftrun.toml (or a tutorial ``configs``) in ``start`` or a parent directory.

    The search stops after the user's home directory (or at the filesystem root when ``start`` is
    not under home). In each directory swiftrun.toml wins over configs; a ``configs`` that does not
    hold the tutorial's keys is not taken for a project file.
    """
    here = Path(start if start is not None else Path.cwd()).expanduser().resolve()
    if here.is_file():
        here = here.parent
    try:
        home = Path.home().resolve()
    except (RuntimeError, KeyError):
        home = None
    for directory in (here, *here.parents):
        candidate = directory / PROJECT_FILE
        if candidate.is_file():
            return candidate
        _refuse_unusable(candidate)
        candidate = directory / LEGACY_FILE
        if candidate.is_file() and _looks_like_tutorial_configs(candidate):
            return candidate
        if home is not None and directory == home:
            break
    return None


def load_project(
    path: Path | str | None = None,
    *,
    start: Path | str | None = None,
    overrides: Mapping[str, Any] | None = None,
    override_labels: Mapping[str, str] | None = None,
) -> Project:
    """Load ``path`` (swiftrun.toml or a legacy configs file), or find one from ``start`` upwards.

    With no file found, a Project with the defaults is returned whose ``root`` is ``start`` (or the
    current directory) and whose ``path`` is None. ``root`` is otherwise the file's directory.

    ``overrides`` maps dotted keys (``"cluster.name"``) to values, applied after the file with the
    same checks; a None value means "not given" and is skipped. Strings are accepted for every type
    there (environment variables). ``override_labels`` names where each came from in messages
    (``{"cluster.workers": "--workers"}``; default ``override cluster.workers``).

    Raises ConfigError (one line: file:line, key, what is wrong, the fix).
    """
    warnings: list[str] = []
    if path is not None:
        file = Path(path).expanduser()
        if file.is_dir():
            found = next((c for c in (file / PROJECT_FILE, file / LEGACY_FILE) if c.is_file()), None)
            if found is None:
                _refuse_unusable(file / PROJECT_FILE)
            if found is None:
                raise ConfigError(f"{_display(file)}: no {PROJECT_FILE} or {LEGACY_FILE} in this directory",
                                  hint="create one with `swiftrun init`, or give the file's path")
            file = found
        else:
            _refuse_unusable(file)
    else:
        file = find_project_file(start)

    entries: _Entries = {}
    if file is None:
        root = Path(start if start is not None else Path.cwd()).expanduser().resolve()
        if root.is_file():
            root = root.parent
        base_dir = root
        resolved_file = None
    else:
        display = _display(file)
        text = _read_text(file, display)
        resolved_file = file.resolve()
        root = base_dir = resolved_file.parent
        if _is_legacy(file, text):
            entries, warnings = _legacy_entries(text, display, base_dir)
        else:
            entries = _toml_entries(text, display)

    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        label = (override_labels or {}).get(dotted) or f"override {dotted}"
        section, _, key = dotted.partition(".")
        if section not in _SCHEMA or key not in _SCHEMA[section]:
            near = _nearest(dotted, setting_names())
            raise ConfigError(f"{label}: {dotted}: unknown setting",
                              hint=f"did you mean {near}?" if near else
                              "settings are named section.key, like cluster.workers")
        entries[(section, key)] = (value, _Origin("override", label))

    values: dict[str, dict[str, Any]] = {s: {} for s in _SCHEMA}
    for (section, key), (value, origin) in entries.items():
        ctx = _Ctx(section, key, origin, base_dir if origin.kind != "override" else Path.cwd())
        try:
            values[section][key] = _SCHEMA[section][key](value, ctx)
        except _Bad as bad:
            raise _error(origin, section, key, value, bad.problem, bad.fix) from None

    project = Project(
        root=root,
        path=resolved_file,
        **{s: dataclasses.replace(cls(), **values[s]) for s, cls in SECTIONS.items()},
    )
    warnings += _cross_checks(project, entries)
    return dataclasses.replace(project, warnings=tuple(warnings))
