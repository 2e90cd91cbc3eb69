"""A cache of checked swift.conf renders, so the warm path does not pay for pyhocon.

Rendering swift.conf means importing pyhocon (pyparsing underneath) and parsing every layer:
about 0.35 s of CPU on each `swiftrun p4.swift`, for a text that is the same run after run. The
text depends only on its inputs, so a successful, checked render is kept under
``$SWIFTRUN_HOME/cache/swiftconf/`` keyed by a digest of all of them: the project's settings,
the site template, the user's swift.conf, the coaster host, and swiftrun's own renderer and key
rules. Any change to one of them is a miss. Errors are never cached: a bad layer is rendered,
checked and reported every time.

An entry is ``<sha256 of the text>\n<text>`` and a read that does not match its own digest is a
miss: a torn or emptied file (a full disk, a crash mid-write) is rendered again, never handed to
swift as its configuration. Each writer has its own temporary file (threads of one process too),
and only a whole file is renamed into place.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
from pathlib import Path

from swiftrun import __version__
from swiftrun.paths import data_dir, state_home

_HERE = Path(__file__).resolve().parent
# swiftrun's own inputs to the text: the renderer, the key rules, and the coaster port it writes.
_RULES = (_HERE / "layers.py", _HERE / "hocon.py", _HERE / "schema.py",
          _HERE.parent / "node" / "layout.py")


def _digest(project, script_dir: Path, coaster_host: str) -> str | None:
    h = hashlib.sha256()
    h.update(f"{__version__}\0{coaster_host}\0{project!r}\0".encode())
    site = project.swift.site or ""
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", site):
        return None
    inputs = (*_RULES, data_dir("site_templates") / f"{site}.conf", Path(script_dir) / "swift.conf")
    for path in inputs:
        try:
            h.update(path.read_bytes())
        except FileNotFoundError:
            h.update(b"\0absent\0")
        except OSError:
            return None     # unreadable: let the real render say so
        h.update(b"\0")
    return h.hexdigest()


def checked_text(project, *, script_dir: Path, coaster_host: str = "127.0.0.1") -> str:
    """The text of ``layers.render_checked(...)``, from the cache when its inputs are unchanged."""
    key = _digest(project, script_dir, coaster_host)
    cache = state_home() / "cache" / "swiftconf"
    if key:
        text = _read(cache / key)
        if text is not None:
            return text
    from swiftrun.swiftconf import layers   # pyhocon: only on a miss

    text = layers.render_checked(project, script_dir=script_dir, coaster_host=coaster_host).text
    if key:
        try:
            cache.mkdir(mode=0o700, parents=True, exist_ok=True)
            _write(cache / key, text)
            _prune(cache)
        except OSError:
            pass            # a cache that cannot be written only costs time
    return text


def _read(path: Path) -> str | None:
    """The text stored at ``path``, or None when absent, unreadable or not whole."""
    try:
        digest, sep, text = path.read_text().partition("\n")
    except (OSError, UnicodeDecodeError):
        return None
    if not sep or hashlib.sha256(text.encode()).hexdigest() != digest:
        return None
    return text


def _write(path: Path, text: str) -> None:
    import tempfile     # only on a miss: the warm path does not pay for its imports

    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as out:
            out.write(hashlib.sha256(text.encode()).hexdigest() + "\n" + text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _prune(cache: Path, keep: int = 64) -> None:
    entries = sorted((p for p in cache.iterdir() if not p.name.startswith(".")),
                     key=lambda p: p.stat().st_mtime, reverse=True)
    for stale in entries[keep:]:
        stale.unlink(missing_ok=True)
