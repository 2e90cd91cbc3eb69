"""swift.conf for a run: site template + swiftrun's values + project overrides + the user's swift.conf.

Layers, later wins (HOCON object merge, so a layer only needs the keys it changes):

1. the site template ``site_templates/<[swift] site>.conf`` (plain HOCON a user can read);
2. the values swiftrun knows: coaster URL, ``workDirectory``, ``staging``, ``maxJobs`` (= workers),
   ``tasksPerNode`` (= worker_concurrency);
3. ``[swift] conf`` in swiftrun.toml (a dict; dotted keys allowed);
4. ``<script_dir>/swift.conf`` when the user has one.

``render_checked`` checks each layer on its own (so a message names the file at fault), then the
merged result (schema.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyhocon import ConfigFactory, ConfigTree

from swiftrun.errors import ConfigError
from swiftrun.node.layout import COASTER_PORT   # swift -> coaster service (worker.pl's port is not swift's)
from swiftrun.paths import data_dir
from swiftrun.swiftconf.hocon import (
    _copy, _get, _merge, _normalize, _sites_list, as_dict, parse_hocon, to_hocon)
from swiftrun.swiftconf.schema import check

DEFAULT_WORK_DIRECTORY = "/tmp/swiftwork"
COASTER_TYPES = ("coaster", "coaster-persistent")


@dataclass(frozen=True)
class Layer:
    source: str                   # e.g. "swift.conf (examples/p4/swift.conf)"
    tree: ConfigTree
    text: str | None = None       # the file text, to find line numbers for messages


@dataclass(frozen=True)
class Rendered:
    text: str                     # HOCON for `swift -config`
    tree: ConfigTree              # the merged configuration
    layers: tuple[Layer, ...] = field(default=())

    @property
    def sites(self) -> list[str]:
        return _sites_list(self.tree.get("sites", []))

    def as_dict(self) -> dict:
        return as_dict(self.tree)

    def origin(self, path: list[str] | str) -> str:
        """The source of the last layer that sets ``path`` (a key list or a dotted string)."""
        return _origin(self.layers, path)


def template_names() -> list[str]:
    return sorted(p.stem for p in data_dir("site_templates").glob("*.conf"))


def render(project, *, script_dir: Path, coaster_host: str = "127.0.0.1") -> Rendered:
    """Merge the layers for ``project``; raises ConfigError for a missing template or bad HOCON."""
    layers = [_template_layer(project.swift.site)]
    layers.append(_swiftrun_layer(project, layers[0].tree, coaster_host))
    if project.swift.conf:
        layers.append(_project_layer(project))
    user_conf = Path(script_dir) / "swift.conf"
    if user_conf.is_file():
        layers.append(_file_layer(user_conf, f"swift.conf ({_display(user_conf)})"))

    tree = ConfigTree()
    for layer in layers:
        _merge(tree, _copy(layer.tree))
    names = ", ".join(layer.source for layer in layers)
    header = (f"# swift.conf rendered by swiftrun for project '{project.cluster.name}'\n"
              f"# layers, later wins: {names}\n")
    return Rendered(text=header + to_hocon(tree) + "\n", tree=tree, layers=tuple(layers))


def render_checked(project, *, script_dir: Path, coaster_host: str = "127.0.0.1") -> Rendered:
    """``render`` then ``check``, attributing each error to the layer it came from."""
    rendered = render(project, script_dir=script_dir, coaster_host=coaster_host)
    # Keys and values: each layer on its own, so the message names the file at fault.
    for layer in rendered.layers:
        check(layer.tree, layer.source, text=layer.text, partial=True)
    # What only the merged result can tell (required keys, sites that exist).
    check(rendered.tree, "swift.conf (rendered)",
          origin=lambda path: _origin(rendered.layers, path),
          text_of=lambda source: next((l.text for l in rendered.layers if l.source == source), None))
    return rendered


def _template_layer(site: str) -> Layer:
    path = data_dir("site_templates") / f"{site}.conf"
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", site or "") or not path.is_file():
        raise ConfigError(
            f"swiftrun.toml: [swift] site '{site}' has no template site_templates/{site}.conf",
            hint=f"use one of: {', '.join(template_names())}")
    return _file_layer(path, f"site template {path.name}")


def _file_layer(path: Path, source: str) -> Layer:
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{source}: cannot read: {exc}") from None
    return Layer(source, parse_hocon(text, source), text)


def _swiftrun_layer(project, template: ConfigTree, coaster_host: str) -> Layer:
    """What swiftrun knows about the cluster, for every site the template lists."""
    sw = project.swift
    template_sites = _sites_list(template.get("sites", [])) or ["cloud-static"]
    values: dict[str, Any] = {}
    for site in template_sites:
        site_tree = _get(template, ["site", site])
        site_tree = site_tree if isinstance(site_tree, ConfigTree) else ConfigTree()
        staging = "direct" if sw.staging == "direct" else _get(site_tree, ["staging"]) or "local"
        workdir = sw.work_directory
        if staging == "direct" and project.s3fs.bucket and workdir == DEFAULT_WORK_DIRECTORY:
            workdir = f"{project.s3fs.mount.rstrip('/')}/swiftwork"
        entry: dict[str, Any] = {"workDirectory": workdir}
        if sw.staging == "direct":
            entry["staging"] = "direct"
        if _get(site_tree, ["execution", "type"]) in COASTER_TYPES:
            entry["execution"] = {
                "URL": f"http://{coaster_host}:{COASTER_PORT}",
                # workers = 0: the headnode's own worker.pl (maxJobs 0 is refused by Swift)
                "options": {"maxJobs": max(1, project.cluster.workers),
                            "tasksPerNode": project.cluster.worker_concurrency},
            }
        values[site] = entry
    tree = ConfigTree()
    tree["site"] = ConfigFactory.from_dict(values)
    return Layer("swiftrun settings (swiftrun.toml [cluster]/[swift])", tree)


def _project_layer(project) -> Layer:
    where = _display(project.path) if project.path else "swiftrun.toml"
    source = f"{where} [swift] conf"
    conf = project.swift.conf

    def plain(value: Any, key: str) -> Any:
        if isinstance(value, dict):
            return {str(k): plain(v, f"{key}.{k}") for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [plain(v, key) for v in value]
        if value is None or isinstance(value, (str, int, float, bool)):
            return value
        raise ConfigError(f"{source}: value of '{key}' is a {type(value).__name__}",
                          hint="use a string, number, boolean, list or table")

    try:
        tree = ConfigFactory.from_dict(plain(dict(conf), "conf"))
    except ConfigError:
        raise
    except Exception as exc:
        raise ConfigError(f"{source}: cannot use as swift.conf: {exc}") from None
    return Layer(source, _normalize(tree))


def _origin(layers, path: list[str] | str) -> str:
    keys = path.split(".") if isinstance(path, str) else list(path)
    for layer in reversed(list(layers)):
        if _get(layer.tree, keys) is not None:
            return layer.source
    # The key is absent everywhere (a missing required key): blame the last layer naming its parent.
    for depth in range(len(keys) - 1, 0, -1):
        for layer in reversed(list(layers)):
            if _get(layer.tree, keys[:depth]) is not None:
                return layer.source
    return "swift.conf (rendered)"


def _display(path: Path | str) -> str:
    path = Path(path)
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)
