"""HOCON in and out: parse without resolving substitutions, merge layers, write what Swift reads.

Trees are pyhocon ``ConfigTree`` objects, but ``ConfigTree``'s ``[]`` and ``in`` split dotted keys;
these helpers treat keys as given (``"my.app"`` stays one key). A value with an unresolved
substitution (``${env.HOME}``) is kept as :class:`Raw` and passed through for Swift to resolve on
the headnode. The text written is plain HOCON that Swift's typesafe-config parser reads (no
pyhocon-only syntax).
"""

from __future__ import annotations

import json
import re
import threading
from typing import Any

from pyhocon import ConfigFactory, ConfigTree, HOCONConverter
from pyhocon.config_tree import ConfigValues, NoneValue

from swiftrun.errors import ConfigError

# pyhocon's parser is not thread-safe: it keeps module-level state while it parses (pyparsing's
# shared default whitespace, its own include/substitution bookkeeping), so two threads parsing at
# once (doctor's checks render swift.conf concurrently) can lose keys ("missing property
# 'sites'"). Every parse goes through this lock.
_PARSE_LOCK = threading.Lock()


class Raw:
    """A value with an unresolved substitution (``${env.HOME}"/x"``): emitted as written, unchecked."""

    def __init__(self, text: str):
        self.text = text

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Raw) and other.text == self.text

    def __repr__(self) -> str:
        return f"Raw({self.text!r})"


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
        with _PARSE_LOCK:
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
