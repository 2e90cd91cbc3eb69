"""swift.conf for a run: site template + swiftrun's values + project overrides + the user's swift.conf.

Layers, later wins (HOCON object merge, so a layer only needs the keys it changes):

1. the site template ``site_templates/<[swift] site>.conf`` (plain HOCON a user can read);
2. the values swiftrun knows: coaster URL, ``workDirectory``, ``staging``, ``maxJobs`` (= workers),
   ``tasksPerNode`` (= worker_concurrency);
3. ``[swift] conf`` in swiftrun.toml (a dict; dotted keys allowed);
4. ``<script_dir>/swift.conf`` when the user has one.

``check`` validates a tree against Swift 0.96's keys and value types (see SWIFT-FACTS.md) so a bad key
fails here, with one line naming the layer it came from, before anything is launched. The rendered
text is ordinary HOCON (nested objects, quoted strings); substitutions such as ``${env.HOME}`` in a
user layer are passed through unresolved for Swift to resolve on the headnode.
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from pyhocon import ConfigFactory, ConfigTree, HOCONConverter
from pyhocon.config_tree import ConfigValues, NoneValue

from swiftrun.errors import ConfigError
from swiftrun.paths import data_dir

COASTER_PORT = 50010            # swift -> coaster service (the worker port 50005 is not swift's)
DEFAULT_WORK_DIRECTORY = "/tmp/swiftwork"
COASTER_TYPES = ("coaster", "coaster-persistent")

# --------------------------------------------------------------------------------------------------
# Swift 0.96's configuration schema (SWIFT-FACTS.md). A spec is one of:
#   "int" | "bool" | "num" | "str" | "throttle" | "strlist" | "sites" | "any"
#   ("enum", (values...)) | ("obj", {key: spec}) | ("map", spec)   (map: any key name -> spec)
# --------------------------------------------------------------------------------------------------

STAGING_VALUES = ("direct", "local", "service-local", "shared-fs", "swift", "wrapper")
EXECUTION_TYPES = ("local", "coaster", "coaster-persistent", "ssh", "ssh-cl", "pbs", "condor", "sge",
                   "slurm", "lsf", "ec2-cloud")

_APP = ("obj", {
    "executable": "str",
    "maxWallTime": "str",
    "options": "any",
    "env": ("map", "str"),
})

_EXECUTION_OPTIONS = ("obj", {
    "maxJobs": "int",
    "nodeGranularity": "int",
    "tasksPerNode": "int",
    "allocationStepSize": "num",
    "lowOverallocation": "num",
    "highOverallocation": "num",
    "overallocationDecayFactor": "num",
    "spread": "num",
    "exponentialSpread": "num",
    "reserve": "str",
    "maxNodesPerJob": "int",
    "maxJobTime": "str",
    "userHomeOverride": "str",
    "internalHostName": "str",
    "jobQueue": "str",
    "jobProject": "str",
    "workerLoggingLevel": "str",
    "workerLoggingDirectory": "str",
    "softImage": "str",
    "jobOptions": "any",
})

_SITE = ("obj", {
    "execution": ("obj", {
        "type": ("enum", EXECUTION_TYPES),
        "URL": "str",
        "jobManager": "str",
        "options": _EXECUTION_OPTIONS,
    }),
    "filesystem": ("obj", {"type": "str", "URL": "str", "options": "any"}),
    "workDirectory": "str",
    "staging": ("enum", STAGING_VALUES),
    "maxParallelTasks": "int",
    "initialParallelTasks": "int",
    "delayBase": "num",
    "maxSubmitRate": "num",
    "scratch": "str",
    "OS": "str",
    "app": ("map", _APP),
    "wrapperInterpreter": "str",
    "wrapperInterpreterOptions": "strlist",
    "wrapperScript": "str",
    "cleanupCommand": "str",
    "cleanupCommandOptions": "strlist",
    "wrapperParameterMode": "str",
    "keepSiteDir": "bool",
    "statusMode": "str",
})

SCHEMA = ("obj", {
    "sites": "sites",
    "staging": ("enum", STAGING_VALUES),
    "lazyErrors": "bool",
    "executionRetries": "int",
    "keepSiteDir": "bool",
    "providerStagingPinSwiftFiles": "bool",
    "alwaysTransferWrapperLog": "bool",
    "jobSubmitThrottle": "throttle",
    "hostJobSubmitThrottle": "throttle",
    "fileTransfersThrottle": "throttle",
    "fileOperationsThrottle": "throttle",
    "siteScoreThrottlingFactor": "num",
    "cachingAlgorithm": "str",
    "logProvenance": "bool",
    "replicationEnabled": "bool",
    "replicationMinQueueTime": "int",
    "replicationLimit": "int",
    "statusMode": "str",
    "wrapperParameterMode": "str",
    "wrapperInvocationMode": "str",
    "CDMBroadcastMode": "str",
    "CDMFile": "str",
    "tickerDateFormat": "str",
    "tickerPrefix": "str",
    "tickerEnabled": "bool",
    "fileGCEnabled": "bool",
    "mappingCheckerEnabled": "bool",
    "hostName": "str",
    "TCPPortRange": "str",
    "tracingEnabled": "bool",
    "wrapperStagingLocalServer": "str",
    "maxForeachThreads": "int",
    "maxThreads": "int",
    "app": ("map", _APP),
    "site": ("map", _SITE),
})

_TRUE = ("true", "yes", "on")
_FALSE = ("false", "no", "off")


class Raw:
    """A value with an unresolved substitution (``${env.HOME}"/x"``): emitted as written, unchecked."""

    def __init__(self, text: str):
        self.text = text

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Raw) and other.text == self.text

    def __repr__(self) -> str:
        return f"Raw({self.text!r})"


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


# --------------------------------------------------------------------------------------------------
# render
# --------------------------------------------------------------------------------------------------

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


# ConfigTree's [] and `in` split dotted keys; these helpers treat keys as given ("my.app" stays one key).

def as_dict(value: Any) -> Any:
    """A tree as plain dicts and lists (keys kept whole; Raw values as their HOCON text)."""
    if isinstance(value, dict):
        return {key: as_dict(child) for key, child in _items(value)}
    if isinstance(value, list):
        return [as_dict(v) for v in value]
    if isinstance(value, Raw):
        return value.text
    return value


def _items(tree: dict) -> list[tuple[str, Any]]:
    return [(key, dict.__getitem__(tree, key)) for key in list(tree.keys())]


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        out = ConfigTree()
        for key, child in _items(value):
            out[key] = _copy(child)   # ConfigTree does not override __setitem__
        return out
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def _merge(into: ConfigTree, other: ConfigTree) -> ConfigTree:
    """HOCON merge: objects merge key by key, anything else replaces."""
    for key, value in _items(other):
        current = dict.get(into, key)   # ConfigTree.get would split a dotted key
        if isinstance(current, dict) and isinstance(value, dict):
            _merge(current, value)
        else:
            into[key] = value
    return into


def parse_hocon(text: str, source: str) -> ConfigTree:
    """Parse HOCON text without resolving substitutions; syntax errors -> ConfigError with the line."""
    try:
        tree = ConfigFactory.parse_string(text, resolve=False)
    except Exception as exc:  # pyparsing ParseException family, pyhocon ConfigException
        line = getattr(exc, "lineno", None)
        found = re.search(r"found (.*?)\s+\(at char", str(exc))
        what = f"unexpected {found.group(1)}" if found else str(exc).split("\n")[0][:160]
        where = f": line {line}" if line else ""
        raise ConfigError(f"{source}{where}: HOCON syntax error: {what}",
                          hint="write key: value or key { ... }, one per line") from None
    return _normalize(tree)


def _normalize(value: Any) -> Any:
    """pyhocon values -> ConfigTree / list / scalars, unresolved substitutions -> Raw."""
    if isinstance(value, ConfigTree):
        items = _items(value)
        value.clear()
        for key, child in items:
            # pyhocon keeps the quotes of a quoted key that contains a dot ("my.app")
            if len(key) > 2 and key[0] == key[-1] == '"' and "." in key:
                key = key[1:-1]
            value[key] = _normalize(child)
        return value
    if isinstance(value, list):
        return [_normalize(v) for v in value]
    if isinstance(value, ConfigValues):
        return Raw(HOCONConverter.to_hocon(value).strip())
    if isinstance(value, NoneValue):
        return None
    return value


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


# --------------------------------------------------------------------------------------------------
# HOCON output (what real Swift's typesafe-config parser reads: no pyhocon-only syntax)
# --------------------------------------------------------------------------------------------------

_BARE_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")


def to_hocon(tree: ConfigTree, indent: int = 0) -> str:
    pad = "    " * indent
    lines = []
    for key, value in _items(tree):
        name = key if _BARE_KEY.fullmatch(key) and key not in ("true", "false", "null", "include") \
            else json.dumps(key)
        if isinstance(value, dict):
            if value:
                lines.append(f"{pad}{name} {{\n{to_hocon(value, indent + 1)}\n{pad}}}")
            else:
                lines.append(f"{pad}{name} {{}}")
        else:
            lines.append(f"{pad}{name}: {_scalar(value, indent)}")
    return "\n".join(lines)


def _scalar(value: Any, indent: int) -> str:
    if isinstance(value, Raw):
        return value.text
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, dict):
        inner = to_hocon(value, indent + 1)
        return "{\n" + inner + "\n" + "    " * indent + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_scalar(v, indent) for v in value) + "]"
    return json.dumps(str(value))


# --------------------------------------------------------------------------------------------------
# check
# --------------------------------------------------------------------------------------------------

def check(tree: ConfigTree, source: str, *, text: str | None = None, partial: bool = False,
          origin: Callable[[list[str]], str] | None = None,
          text_of: Callable[[str], str | None] | None = None) -> None:
    """Validate ``tree`` against Swift 0.96's keys; ConfigError (one line) on the first problem.

    ``partial``: a single layer (skip required keys). ``origin(path)`` names the layer that set a key
    (for a merged tree); ``text``/``text_of(source)`` give file text so messages can carry a line.
    """

    def fail(path: list[str], message: str, hint: str | None = None) -> None:
        src = origin(path) if origin else source
        body = text_of(src) if (origin and text_of) else text
        line = _find_line(body, path) if body else None
        where = f": line {line}" if line else ""
        raise ConfigError(f"{src}{where}: {message}", hint=hint)

    _walk(tree, SCHEMA, [], fail)
    if partial:
        return

    if "sites" not in tree:
        fail(["sites"], "missing property 'sites'", hint="add sites: [cloud-static] (the sites to run on)")
    sites = _sites_list(tree.get("sites"))
    if not sites:
        fail(["sites"], "property 'sites' names no site", hint="add sites: [cloud-static]")
    defined = list((tree.get("site") or {}).keys()) if isinstance(tree.get("site"), dict) else []
    for name in sites:
        if name not in defined:
            fail(["sites"], f"site '{name}' in 'sites' is not defined",
                 hint=f"add a site.{name} {{ ... }} block or list one of: {', '.join(defined) or 'none'}")
        site = _get(tree, ["site", name])
        if not isinstance(site, dict) or "workDirectory" not in site:
            fail(["site", name], f"missing property 'site.{name}.workDirectory'",
                 hint="set workDirectory to a directory the jobs can write, e.g. /tmp/swiftwork")
        if "execution" not in site or not isinstance(site["execution"], dict) \
                or "type" not in site["execution"]:
            fail(["site", name], f"missing property 'site.{name}.execution.type'",
                 hint=f"one of: {', '.join(EXECUTION_TYPES)}")


def _walk(value: Any, spec: Any, path: list[str], fail) -> None:
    dotted = ".".join(path)
    if isinstance(value, Raw) or spec == "any":
        return
    if isinstance(spec, tuple) and spec[0] in ("obj", "map"):
        if not isinstance(value, dict):
            fail(path, f"Invalid value '{_show(value)}' for property '{dotted}': expected an object",
                 hint=f"write {path[-1]} {{ ... }}")
            return
        for key, child in _items(value):
            child_path = path + [key]
            if spec[0] == "map":
                _walk(child, spec[1], child_path, fail)
                continue
            known = spec[1]
            if key not in known:
                close = difflib.get_close_matches(key, list(known), n=1)
                hint = (f"did you mean '{close[0]}'?" if close
                        else f"valid keys here: {', '.join(sorted(known))}")
                fail(child_path, f"unexpected property '{'.'.join(child_path)}'", hint=hint)
            _walk(child, known[key], child_path, fail)
        return
    if isinstance(spec, tuple) and spec[0] == "enum":
        if not isinstance(value, str) or value not in spec[1]:
            valid = ", ".join(f"'{v}'" for v in spec[1])
            fail(path, f"Invalid value '{_show(value)}' for property '{dotted}'. Valid values are: {valid}")
        return
    if spec == "int":
        if not _is_int(value):
            fail(path, f"Cannot convert value '{_show(value)}' for property '{dotted}' to integer")
    elif spec == "num":
        if not _is_num(value):
            fail(path, f"Cannot convert value '{_show(value)}' for property '{dotted}' to number")
    elif spec == "throttle":
        if not (_is_num(value) or (isinstance(value, str) and value.strip().lower() == "off")):
            fail(path, f"Cannot convert value '{_show(value)}' for property '{dotted}' to throttle",
                 hint="use a positive number or \"off\"")
    elif spec == "bool":
        if not (isinstance(value, bool) or (isinstance(value, str) and value.lower() in _TRUE + _FALSE)):
            fail(path, f"Cannot convert value '{_show(value)}' for property '{dotted}' to boolean",
                 hint="use true or false")
    elif spec == "str":
        if isinstance(value, (dict, list)) or value is None:
            fail(path, f"Invalid value '{_show(value)}' for property '{dotted}': expected a string")
    elif spec == "strlist":
        if not isinstance(value, list) or any(isinstance(v, (dict, list)) for v in value):
            fail(path, f"Invalid value '{_show(value)}' for property '{dotted}': expected a list of strings")
    elif spec == "sites":
        ok = isinstance(value, str) or (isinstance(value, list) and all(isinstance(v, str) for v in value))
        if not ok:
            fail(path, f"Invalid value '{_show(value)}' for property 'sites': expected a list of site names",
                 hint="e.g. sites: [cloud-static]")


def _is_int(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    return isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d+\s*", value) is not None


def _is_num(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float)):
        return True
    try:
        float(value)
        return isinstance(value, str)
    except (TypeError, ValueError):
        return False


def _show(value: Any) -> str:
    if isinstance(value, dict):
        return "{...}"
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, list):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    return str(value)


def _sites_list(value: Any) -> list[str]:
    if isinstance(value, str):
        return [s.strip() for s in value.split(",") if s.strip()]
    if isinstance(value, list):
        return [str(v) for v in value]
    return []


def _get(tree: Any, path: list[str]) -> Any:
    for key in path:
        if not isinstance(tree, dict) or not dict.__contains__(tree, key):
            return None
        tree = dict.__getitem__(tree, key)   # ConfigTree[...] would split a dotted key
    return tree


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


def _find_line(text: str, path: list[str]) -> int | None:
    """Best-effort line of ``path``'s last key in ``text`` (pyhocon keeps no origins)."""
    if not path:
        return None
    key = re.escape(path[-1])
    pattern = re.compile(r'(?:^|[\s{,."])"?' + key + r'"?\s*(?:[:={]|\+=|$)')
    dotted = re.compile(re.escape(path[-2]) + r'"?\s*\.\s*"?' + key) if len(path) > 1 else None
    lines = text.splitlines()
    candidates = [n for n, line in enumerate(lines, 1) if pattern.search(_strip_comment(line))]
    # prefer a line that writes the key with its parent (site.cloud-static.staging: ...)
    for n in candidates:
        if dotted and dotted.search(lines[n - 1]):
            return n
    return candidates[0] if candidates else None


def _strip_comment(line: str) -> str:
    return re.sub(r'"(?:[^"\\]|\\.)*"|(#|//).*$', lambda m: "" if m.group(1) else m.group(0), line)


def _display(path: Path | str) -> str:
    path = Path(path)
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


# --------------------------------------------------------------------------------------------------
# doctor helper
# --------------------------------------------------------------------------------------------------

_APP_RE = re.compile(r"\bapp\s*\(([^)]*)\)\s*([A-Za-z_]\w*)\s*\(([^)]*)\)\s*\{(.*?)\}", re.S)
_NON_FILE_TYPES = {"int", "string", "float", "boolean", "bool"}


def script_uses_literal_filenames(script_text: str) -> list[str]:
    """Apps whose command line names a file literally (``"unsorted.txt"``) instead of ``filename(x)``.

    With ``staging: direct`` jobs run in their own directory with absolute paths, so such an app
    fails (``sort: cannot read: unsorted.txt``). Heuristic: a quoted argument that looks like a file
    name (has an extension or a slash, is not an option), or a file input the command never uses.
    """
    # drop comments, keep string literals (which may contain '#' or '//')
    text = re.sub(r'"(?:[^"\\\n]|\\.)*"|/\*.*?\*/|//[^\n]*|#[^\n]*',
                  lambda m: m.group(0) if m.group(0).startswith('"') else " ", script_text, flags=re.S)
    flagged: list[str] = []
    for match in _APP_RE.finditer(text):
        outs, name, params, body = match.groups()
        strings = re.findall(r'"((?:[^"\\]|\\.)*)"', body)
        literal = any(_looks_like_file(s) for s in strings)
        body_code = re.sub(r'"(?:[^"\\]|\\.)*"', '""', body)
        for param in params.split(","):
            parts = param.replace("[", " [").split()
            if len(parts) < 2 or parts[0] in _NON_FILE_TYPES:
                continue
            pname = parts[1].rstrip("[]")
            if not re.search(r"\b" + re.escape(pname) + r"\b", body_code):
                literal = True
        if literal and name not in flagged:
            flagged.append(name)
    return flagged


def _looks_like_file(s: str) -> bool:
    if not s or s.startswith("-") or " " in s or re.fullmatch(r"[\d.eE+-]+", s):
        return False   # options and numbers ("0.5") are not file names
    return bool(re.fullmatch(r"[\w.+-]*[\w-]\.[A-Za-z0-9]{1,8}", s) or re.fullmatch(r"[\w.+-]*/[\w./+-]+", s))
