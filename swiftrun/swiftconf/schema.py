"""Swift 0.96's configuration keys and value types, and the check against them (SWIFT-FACTS.md).

A bad key or value fails here, before anything is launched, with one line naming the layer (and,
when it can be found, the line) it came from. A spec is one of:
``"int" | "posint" (1 or more) | "natint" (0 or more) | "bool" | "num" | "str" | "throttle" |
"strlist" | "sites" | "any"``,
``("enum", (values...))``, ``("obj", {key: spec})`` or ``("map", spec)`` (any key name -> spec).
"""

from __future__ import annotations

import difflib
import re
from typing import Any, Callable

from pyhocon import ConfigTree

from swiftrun.errors import ConfigError
from swiftrun.swiftconf.hocon import Raw, _get, _items, _sites_list

STAGING_VALUES = ("direct", "local", "service-local", "shared-fs", "swift", "wrapper")
STATUS_MODE = ("enum", ("files", "provider"))
PARAMETER_MODE = ("enum", ("args", "files"))
EXECUTION_TYPES = ("local", "coaster", "coaster-persistent", "ssh", "ssh-cl", "pbs", "condor", "sge",
                   "slurm", "lsf", "ec2-cloud")

_APP = ("obj", {
    "executable": "str",
    "maxWallTime": "str",
    "options": "any",
    "env": ("map", "str"),
})

_EXECUTION_OPTIONS = ("obj", {
    "maxJobs": "posint",
    "nodeGranularity": "posint",
    "tasksPerNode": "posint",
    "allocationStepSize": "num",
    "lowOverallocation": "posint",
    "highOverallocation": "posint",
    "overallocationDecayFactor": "num",
    "spread": "num",
    "exponentialSpread": "num",
    "reserve": "str",
    "maxNodesPerJob": "posint",
    "maxJobTime": "str",
    "userHomeOverride": "str",
    "internalHostName": "str",
    "jobQueue": "str",
    "jobProject": "str",
    "workerLoggingLevel": ("enum", ("ERROR", "WARN", "INFO", "DEBUG", "TRACE")),
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
    "maxParallelTasks": "posint",
    "initialParallelTasks": "posint",
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
    "wrapperParameterMode": PARAMETER_MODE,
    "keepSiteDir": "bool",
    "statusMode": STATUS_MODE,
})

SCHEMA = ("obj", {
    "sites": "sites",
    "staging": ("enum", STAGING_VALUES),
    "lazyErrors": "bool",
    "executionRetries": "natint",
    "keepSiteDir": "bool",
    "providerStagingPinSwiftFiles": "bool",
    "alwaysTransferWrapperLog": "bool",
    "jobSubmitThrottle": "throttle",
    "hostJobSubmitThrottle": "throttle",
    "fileTransfersThrottle": "throttle",
    "fileOperationsThrottle": "throttle",
    "siteScoreThrottlingFactor": "num",
    "cachingAlgorithm": ("enum", ("LRU",)),
    "logProvenance": "bool",
    "replicationEnabled": "bool",
    "replicationMinQueueTime": "posint",
    "replicationLimit": "posint",
    "statusMode": STATUS_MODE,
    "wrapperParameterMode": PARAMETER_MODE,
    "wrapperInvocationMode": ("enum", ("absolute", "relative")),
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
    "maxForeachThreads": "posint",
    "maxThreads": "posint",
    "app": ("map", _APP),
    "site": ("map", _SITE),
})

_TRUE = ("true", "yes", "on")
_FALSE = ("false", "no", "off")


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
    if spec in ("int", "posint", "natint"):
        if not _is_int(value):
            fail(path, f"Cannot convert value '{_show(value)}' for property '{dotted}' to integer")
        elif spec == "posint" and int(value) < 1:
            fail(path, f"Invalid value '{_show(value)}' for property '{dotted}': must be a "
                       "strictly positive integer (1 or more)")
        elif spec == "natint" and int(value) < 0:
            fail(path, f"Invalid value '{_show(value)}' for property '{dotted}': must be 0 or more")
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
