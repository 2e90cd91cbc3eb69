"""The tutorial's ``configs`` file: bash-style KEY=VALUE lines read as project settings.

Read only, never written (``swiftrun init --from configs`` converts one into a swiftrun.toml).
Quotes, comments, ``export``, ``$VAR`` / ``${VAR}`` from earlier lines or the environment and ``~``
work as in bash; command substitution is refused. Each known key maps to a setting
(``LEGACY_KEYS``); the keys some tutorial versions had beyond those are translated or explained
(``_legacy_extras``) instead of being refused as unknown.
"""

from __future__ import annotations

import ast
import os
import re
from pathlib import Path
from typing import Mapping

from swiftrun.errors import ConfigError
from swiftrun.project.schema import _FALSE, _TRUE, _Entries, _Origin
from swiftrun.project.values import _nearest

LEGACY_FILE = "configs"

# The tutorial's configs keys -> (section, key).
LEGACY_KEYS: dict[str, tuple[str, str]] = {
    "AWS_CREDENTIALS_FILE": ("ec2", "credentials_file"),
    "AWS_WORKER_COUNT": ("cluster", "workers"),
    "AWS_KEYPAIR_NAME": ("ec2", "key_name"),
    "AWS_KEYPAIR_FILE": ("ssh", "key_file"),
    "AWS_USERNAME": ("ssh", "user"),
    "AWS_REGION": ("ec2", "region"),
    "SECURITY_GROUP": ("ec2", "security_group"),
    "HEADNODE_IMAGE": ("ec2", "image"),
    "WORKER_IMAGE": ("ec2", "worker_image"),
    "HEADNODE_MACHINE_TYPE": ("ec2", "headnode_type"),
    "WORKER_MACHINE_TYPE": ("ec2", "worker_type"),
    "WORKER_INIT_SCRIPT": ("ec2", "worker_init_script"),
    "WORKER_CONCURRENCY": ("cluster", "worker_concurrency"),
}
# Keys some versions of the tutorial's configs carry that have no direct setting; each is translated
# or explained (see _legacy_extras) instead of being refused as unknown.
LEGACY_EXTRA_KEYS = ("AWS_KEYPAIR_DIR", "WORKER_REQUEST", "WORKER_DISK", "SERVICE_TYPE", "AWS_DRY_RUN")


_LEGACY_LINE_RE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=(.*)$")


def _is_legacy(path: Path, text: str) -> bool:
    if path.suffix == ".toml":
        return False
    if path.name == LEGACY_FILE:
        return True
    toml_like = legacy_like = 0
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if re.match(r"^\[[^\]]+\]\s*(#.*)?$", stripped) or re.match(r"^[a-z_][a-z0-9_.-]*\s*=", stripped):
            toml_like += 1
        elif re.match(r"^(export\s+)?[A-Z_][A-Z0-9_]*=", stripped):
            legacy_like += 1
    return legacy_like > toml_like


def _looks_like_tutorial_configs(path: Path) -> bool:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")[:65536]
    except OSError:
        return False
    known = set(LEGACY_KEYS) | set(LEGACY_EXTRA_KEYS)
    return any((m := _LEGACY_LINE_RE.match(line)) and m.group(1) in known for line in text.splitlines())


_VAR_RE = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")


def _legacy_entries(text: str, display: str, base_dir: Path) -> tuple[_Entries, list[str]]:
    entries: _Entries = {}
    warnings: list[str] = []
    seen: dict[str, int] = {}
    values: dict[str, tuple[str, int, str]] = {}     # KEY -> (expanded value, line, raw)
    variables = dict(os.environ)
    variables["PWD"] = str(base_dir)
    for n, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        m = _LEGACY_LINE_RE.match(line)
        if not m:
            shown = stripped if len(stripped) <= 40 else stripped[:37] + "..."
            raise ConfigError(f"{display}:{n}: `{shown}`: not a KEY=VALUE line",
                              hint="write KEY=VALUE like AWS_WORKER_COUNT=2, or start the line with #")
        key, raw = m.group(1), m.group(2).strip()
        if key not in LEGACY_KEYS and key not in LEGACY_EXTRA_KEYS:
            near = _nearest(key, [*LEGACY_KEYS, *LEGACY_EXTRA_KEYS])
            fix = (f"did you mean {near}? Or remove the line" if near else
                   f"known keys: {', '.join(LEGACY_KEYS)}; or remove the line")
            raise ConfigError(f"{display}:{n}: {key}: unknown key in the tutorial's configs", hint=fix)
        value = _legacy_value(key, raw, n, display, variables)
        if key in seen:
            warnings.append(f"{display}:{n}: {key} is set again (first on line {seen[key]}); "
                            "the last one wins, as in bash")
        seen[key] = n
        values[key] = (value, n, raw)
        variables[key] = value
    for key, (value, n, raw) in values.items():
        if key in LEGACY_KEYS and value != "":
            section, name = LEGACY_KEYS[key]
            entries[(section, name)] = (value, _Origin("legacy", display, n, key, raw))
    _legacy_extras(values, entries, warnings, display, base_dir)
    warnings.append(f"{display}: read as the tutorial's configs format; "
                    "`swiftrun init --from configs` writes the equivalent swiftrun.toml")
    return entries, warnings


def _legacy_value(key: str, raw: str, n: int, display: str, variables: Mapping[str, str]) -> str:
    def bad(problem: str, fix: str) -> ConfigError:
        return ConfigError(f"{display}:{n}: {key}={raw}: {problem}", hint=fix)

    quote = raw[:1] if raw[:1] in ("'", '"') else ""
    if quote:
        end = raw.find(quote, 1)
        if end < 0:
            raise bad("the quote is never closed", f"end the value with {quote}")
        value, rest = raw[1:end], raw[end + 1:].strip()
        if rest and not rest.startswith("#"):
            raise bad("text after the closing quote", "quote the whole value, or remove the extra text")
    else:
        cut = re.search(r"\s#", raw)
        value = raw[: cut.start()].rstrip() if cut else raw
    if quote != "'":
        if "$(" in value or "`" in value:
            raise bad("command substitution is not supported", "write the value out")

        def expand(m: re.Match) -> str:
            name = m.group(1) or m.group(2)
            if name not in variables:
                raise bad(f"${name} is not set", f"set {name} earlier in the file or in the environment, "
                                                  "or write the value out")
            return variables[name]
        value = _VAR_RE.sub(expand, value)
    if value == "~" or value.startswith("~/"):
        value = os.path.expanduser(value)
    return value


def _legacy_extras(values, entries: _Entries, warnings: list[str], display: str, base_dir: Path) -> None:
    """The keys some tutorial versions had beyond the ones with a direct setting."""
    def bad(key: str, problem: str, fix: str) -> ConfigError:
        value, n, raw = values[key]
        return ConfigError(f"{display}:{n}: {key}={raw}: {problem}", hint=fix)

    if "AWS_KEYPAIR_DIR" in values:
        value, n, raw = values["AWS_KEYPAIR_DIR"]
        name = values.get("AWS_KEYPAIR_NAME", ("",))[0]
        if "AWS_KEYPAIR_FILE" not in values and value and name:
            entries[("ssh", "key_file")] = (str(Path(value) / f"{name}.pem"),
                                            _Origin("legacy", display, n, "AWS_KEYPAIR_DIR", raw))
        else:
            warnings.append(f"{display}:{n}: AWS_KEYPAIR_DIR is ignored (AWS_KEYPAIR_FILE, or "
                            "AWS_KEYPAIR_NAME missing)")
    if "WORKER_REQUEST" in values:
        value, n, raw = values["WORKER_REQUEST"]
        try:
            request = ast.literal_eval(value) if value else {}
        except (ValueError, SyntaxError):
            request = None
        if not isinstance(request, dict):
            raise bad("WORKER_REQUEST", "is not a {'type': ...} dictionary",
                      "write WORKER_REQUEST={'type':'Spot'} or {'type':'OnDemand'}, or remove the line")
        kind = str(request.get("type", "OnDemand"))
        if kind.lower() not in ("spot", "ondemand"):
            raise bad("WORKER_REQUEST", f"type {kind!r} is neither Spot nor OnDemand",
                      "write WORKER_REQUEST={'type':'Spot'} or {'type':'OnDemand'}")
        entries[("ec2", "spot")] = (kind.lower() == "spot",
                                    _Origin("legacy", display, n, "WORKER_REQUEST", raw))
        extra = sorted(set(request) - {"type"})
        if extra:
            warnings.append(f"{display}:{n}: WORKER_REQUEST {', '.join(extra)} ignored: spot workers "
                            "pay the current spot price, capped at the on-demand price")
    if "WORKER_DISK" in values:
        n = values["WORKER_DISK"][1]
        warnings.append(f"{display}:{n}: WORKER_DISK is ignored: swiftrun mounts the instance-store "
                        "disks at /scratch itself; for a bigger root disk set [ec2] volume_size_gb")
    if "SERVICE_TYPE" in values:
        value = values["SERVICE_TYPE"][0]
        if value.lower() not in ("", "coasters"):
            raise bad("SERVICE_TYPE", "only coasters is supported", "set SERVICE_TYPE=coasters, or remove it")
    if "AWS_DRY_RUN" in values:
        value = values["AWS_DRY_RUN"][0]
        if value.lower() in _TRUE:
            raise bad("AWS_DRY_RUN", "dry runs are not supported",
                      "remove the line or set AWS_DRY_RUN=False; `swiftrun doctor` checks access")
        if value.lower() not in _FALSE | {""}:
            raise bad("AWS_DRY_RUN", "must be True or False", "remove the line")
