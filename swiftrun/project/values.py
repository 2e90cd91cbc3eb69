"""Settings as people write and read them: TOML values, durations, cluster names, file names.

Small and dependency-free, so the loader, the validators and ``initfile`` (which writes a
swiftrun.toml back) spell values the same way.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Mapping

_MAX_SHOWN = 60
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")


def toml_value(value: Any) -> str:
    """``value`` written as a TOML value (strings quoted, lists, inline tables)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value != value:
            return "nan"
        if value in (float("inf"), float("-inf")):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, (str, Path)):
        return json.dumps(str(value), ensure_ascii=False)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        if not value:
            return "{}"
        return "{ " + ", ".join(f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items()) + " }"
    return json.dumps(str(value))


def toml_key(key: Any) -> str:
    key = str(key)
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key, ensure_ascii=False)


_DURATION_RE = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


def parse_duration(text: str | int) -> int:
    """``"30m"``, ``"8h"``, ``"1h30m"``, ``"90s"``, ``"2d"``, ``"600"`` or 600 -> seconds (0 = off).

    Raises ValueError for anything else.
    """
    if isinstance(text, bool):
        raise ValueError("a boolean is not a duration")
    if isinstance(text, int):
        if text < 0:
            raise ValueError("negative duration")
        return text
    s = str(text).strip().lower().replace(" ", "")
    if s in ("off", "never", "none"):
        return 0
    if s.isdigit():
        return int(s)
    m = _DURATION_RE.match(s)
    if not s or not m or not any(m.groups()):
        raise ValueError(f"not a duration: {text!r}")
    d, h, mi, se = (int(g) if g else 0 for g in m.groups())
    return ((d * 24 + h) * 60 + mi) * 60 + se


def format_duration(seconds: int) -> str:
    """Seconds -> the shortest of ``"8h"``, ``"1h30m"``, ``"90s"`` style (``"0"`` for off)."""
    if seconds <= 0:
        return "0"
    h, rest = divmod(int(seconds), 3600)
    m, s = divmod(rest, 60)
    return "".join(f"{n}{u}" for n, u in ((h, "h"), (m, "m"), (s, "s")) if n)


def sanitize_cluster_name(text: str, fallback: str = "swiftrun") -> str:
    """A valid cluster name made from ``text`` (e.g. a directory name): ``My Run_1`` -> ``my-run-1``."""
    s = re.sub(r"[^a-z0-9-]+", "-", str(text).lower())
    s = re.sub(r"-{2,}", "-", s).strip("-")[:40].rstrip("-")
    return s if _NAME_RE.match(s) else fallback


def _short(value: Any) -> str:
    text = toml_value(value)
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 3] + "..."


def _legacy_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)


def _nearest(word: str, choices, cutoff: float = 0.6) -> str | None:
    import difflib      # only for a misspelt name: not in every command's start-up

    found = difflib.get_close_matches(word, list(choices), n=1, cutoff=cutoff)
    return found[0] if found else None


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "a number"
    if isinstance(value, float):
        return "a decimal number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, Mapping):
        return "a table"
    return f"a {type(value).__name__}"


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return str(path)
