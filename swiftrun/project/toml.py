"""Reading swiftrun.toml: TOML syntax errors and unknown sections or keys, with their line.

The result is the same "entries" the legacy reader gives: (section, key) -> (value, origin);
``schema.py`` checks the values.
"""

from __future__ import annotations

import json
import re
import tomllib
from typing import Mapping

from swiftrun.errors import ConfigError
from swiftrun.project.legacy import LEGACY_KEYS
from swiftrun.project.schema import _SCHEMA, _Entries, _Origin
from swiftrun.project.values import _MAX_SHOWN, _nearest, _short


class _KeyLines:
    """Where each key sits in a TOML text: a simple scanner, good enough for error messages."""

    _HEADER = re.compile(r"^\s*\[\s*([^\[\]#]+?)\s*\]\s*(#.*)?$")
    _KEY = re.compile(r"""^\s*((?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*')(?:\s*\.\s*(?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*'))*)\s*=""")

    def __init__(self, text: str):
        self.lines: dict[tuple[str, ...], int] = {}
        section: tuple[str, ...] = ()
        for n, line in enumerate(text.splitlines(), 1):
            m = self._HEADER.match(line)
            if m:
                section = self._split(m.group(1))
                self.lines.setdefault(section, n)
                continue
            m = self._KEY.match(line)
            if m:
                self.lines.setdefault(section + self._split(m.group(1)), n)

    @staticmethod
    def _split(dotted: str) -> tuple[str, ...]:
        parts = re.findall(r"""[A-Za-z0-9_-]+|"[^"]*"|'[^']*'""", dotted)
        return tuple(p.strip("\"'") for p in parts)

    def find(self, *key: str) -> int | None:
        while key:
            if key in self.lines:
                return self.lines[key]
            key = key[:-1]
        return None


def _toml_syntax_error(exc: tomllib.TOMLDecodeError, text: str, display: str) -> ConfigError:
    msg = str(exc)
    line = col = None
    m = re.search(r"\s*\(at line (\d+), column (\d+)\)\s*$", msg)
    if m:
        line, col = int(m.group(1)), int(m.group(2))
        msg = msg[: m.start()]
    elif msg.endswith("(at end of document)"):
        line = max(1, len(text.splitlines()))
        msg = msg.removesuffix("(at end of document)").strip()
    where = f"{display}:{line}:{col}" if col else (f"{display}:{line}" if line else display)
    src = text.splitlines()[line - 1].strip() if line and line <= len(text.splitlines()) else ""
    shown = src if len(src) <= _MAX_SHOWN else src[: _MAX_SHOWN - 3] + "..."
    fix = "check the quotes, brackets and key = value form on that line (TOML: https://toml.io)"
    kv = re.match(r"^([A-Za-z0-9_.-]+)\s*=\s*(.*?)\s*(#.*)?$", src)
    if "overwrite" in msg or "declare" in msg:
        fix = "each key and [section] may appear only once: remove or merge the duplicate"
    elif kv and msg.startswith("Invalid value") and kv.group(2) and kv.group(2)[0] not in "\"'[{":
        fix = f"strings need double quotes: {kv.group(1)} = {json.dumps(kv.group(2))}"
    elif re.match(r"^[A-Z_][A-Z0-9_]*=", src):
        fix = ("this looks like the tutorial's configs format; name the file configs, "
               "or convert it with `swiftrun init --from configs`")
    detail = f" in `{shown}`" if shown else ""
    return ConfigError(f"{where}: not valid TOML: {msg}{detail}", hint=fix)


def _known_key_hint(key: str, section: str | None) -> str:
    """The fix for an unknown key: the nearest key in its section, else where else it exists."""
    if key.upper() in LEGACY_KEYS:
        s, k = LEGACY_KEYS[key.upper()]
        return f"{key} is the tutorial's configs name; in swiftrun.toml write [{s}] {k}"
    if section is not None:
        near = _nearest(key, _SCHEMA[section])
        if near:
            return f"did you mean {near}?"
    homes = [s for s, keys in _SCHEMA.items() if key in keys and s != section]
    if homes:
        return f"{key} belongs in the [{homes[0]}] section: move it under that header"
    if section is None:
        return f"put it under one of the sections: {', '.join('[' + s + ']' for s in _SCHEMA)}"
    return f"valid keys in [{section}]: {', '.join(_SCHEMA[section])}; or remove the line"


def _toml_entries(text: str, display: str) -> _Entries:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise _toml_syntax_error(exc, text, display) from None
    lines = _KeyLines(text)
    entries: _Entries = {}
    for section, table in data.items():
        if section not in _SCHEMA:
            line = lines.find(section)
            where = f"{display}:{line}" if line else display
            if isinstance(table, Mapping):
                near = _nearest(section, _SCHEMA)
                homes = [s for s, keys in _SCHEMA.items() if section in keys]
                if near:
                    fix = f"did you mean [{near}]?"
                elif homes:
                    fix = f"{section} is a key: write {section} = ... under [{homes[0]}]"
                else:
                    fix = f"valid sections: {', '.join('[' + s + ']' for s in _SCHEMA)}"
                raise ConfigError(f"{where}: [{section}]: unknown section", hint=fix)
            raise ConfigError(f"{where}: {section} = {_short(table)}: key outside any section",
                              hint=_known_key_hint(section, None))
        if not isinstance(table, Mapping):
            line = lines.find(section)
            where = f"{display}:{line}" if line else display
            raise ConfigError(f"{where}: {section} = {_short(table)}: [{section}] must be a section",
                              hint=f"write a [{section}] header with key = value lines under it")
        for key, value in table.items():
            line = lines.find(section, key)
            if key not in _SCHEMA[section]:
                where = f"{display}:{line}" if line else display
                raise ConfigError(f"{where}: [{section}] {key} = {_short(value)}: unknown key",
                                  hint=_known_key_hint(key, section))
            entries[(section, key)] = (value, _Origin("toml", display, line))
    return entries
