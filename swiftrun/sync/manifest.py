"""What a tree holds, here and (as far as this machine knows) on the headnode.

An ``Entry`` is what the sync cares about for one path: type, size, mtime, mode, link target.
``scan`` reads the local tree into entries (the ignore rules applied, symlinks never followed); the
``Manifest`` is a local cache of what the remote root is believed to hold, so an upload sends only
what changed and a fetch brings back only what the run made. Losing it costs one full upload.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from swiftrun.errors import ConfigError
from swiftrun.sync.ignore import IgnoreRules

MANIFEST_VERSION = 1
MTIME_TOLERANCE_NS = 1_000_000  # remote vs local mtime: tar/pax carry ~0.1 us; allow 1 ms


@dataclass(frozen=True)
class Entry:
    """What the sync cares about for one path: type ('f', 'd', 'l'), size, mtime, mode, target."""

    type: str
    size: int
    mtime_ns: int
    mode: int
    target: str | None = None

    def to_json(self) -> list:
        return [self.type, self.size, self.mtime_ns, self.mode, self.target]

    @classmethod
    def from_json(cls, v: list) -> "Entry":
        return cls(str(v[0]), int(v[1]), int(v[2]), int(v[3]), v[4])

    @classmethod
    def from_stat(cls, st: os.stat_result, target: str | None = None) -> "Entry | None":
        if stat.S_ISLNK(st.st_mode):
            return cls("l", 0, st.st_mtime_ns, 0o777, target)
        if stat.S_ISDIR(st.st_mode):
            return cls("d", 0, st.st_mtime_ns, stat.S_IMODE(st.st_mode))
        if stat.S_ISREG(st.st_mode):
            return cls("f", st.st_size, st.st_mtime_ns, stat.S_IMODE(st.st_mode))
        return None     # fifos, sockets, devices are never synced

    def same_local(self, other: "Entry | None") -> bool:
        """Exact comparison of two local observations (upload side)."""
        if other is None or other.type != self.type:
            return False
        if self.type == "l":
            return self.target == other.target
        if self.type == "d":
            return self.mode == other.mode and self.mtime_ns == other.mtime_ns
        return (self.size, self.mtime_ns, self.mode) == (other.size, other.mtime_ns, other.mode)

    def same_remote(self, other: "Entry | None") -> bool:
        """Remote listing vs local knowledge: mtimes within tolerance (or equal at whole seconds
        when the remote file system only keeps seconds). Modes are not compared: a run that only
        chmods a file is not worth a download."""
        if other is None or other.type != self.type:
            return False
        if self.type == "l":
            return self.target == other.target
        if self.type == "f" and self.size != other.size:
            return False
        if abs(self.mtime_ns - other.mtime_ns) < MTIME_TOLERANCE_NS:
            return True
        return self.mtime_ns % 1_000_000_000 == 0 and self.mtime_ns == other.mtime_ns // 1_000_000_000 * 1_000_000_000


@dataclass
class Manifest:
    """The local cache of what ``remote_root`` holds, keyed by posix path relative to the root."""

    remote_root: str = ""
    sync_id: str | None = None
    entries: dict[str, Entry] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> "Manifest":
        """A missing or unreadable manifest is an empty one (the next upload is then full)."""
        try:
            data = json.loads(Path(path).read_text())
            if data.get("version") != MANIFEST_VERSION:
                return cls()
            entries = {k: Entry.from_json(v) for k, v in data["entries"].items() if _safe_rel(k)}
            return cls(data.get("remote_root", ""), data.get("sync_id"), entries)
        except (OSError, ValueError, KeyError, TypeError, IndexError):
            return cls()

    def save(self, path: Path) -> None:
        """Atomic write (temp file + rename) so an interrupted save leaves the old manifest."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {"version": MANIFEST_VERSION, "remote_root": self.remote_root, "sync_id": self.sync_id,
                "entries": {k: v.to_json() for k, v in sorted(self.entries.items())}}
        fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(json.dumps(data, separators=(",", ":")))  # C encoder; dump() is ~10x slower
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise


def _safe_rel(rel: str) -> bool:
    """A relative posix path with no '..', '.' or empty components (never escapes the root)."""
    if not rel or rel.startswith("/") or "\0" in rel:
        return False
    return all(p not in ("", ".", "..") for p in rel.split("/"))


def _ancestors(rel: str) -> list[str]:
    parts = rel.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


def _unreadable(path: str, exc: OSError) -> ConfigError:
    return ConfigError(f"cannot read {path} ({exc.strerror or exc}): fix its permissions or exclude it "
                       "(.swiftignore or [sync] exclude); a path skipped here would be deleted on the headnode")


def scan(local_root: Path, rules: IgnoreRules) -> dict[str, Entry]:
    """Walk ``local_root`` without following symlinks, skipping ignored paths (pruning ignored dirs).

    A directory that cannot be listed or an entry that cannot be stat'ed (other than one that
    vanished meanwhile) is a ConfigError: skipping it would make the upload delete it remotely."""
    out: dict[str, Entry] = {}
    real_root = os.path.realpath(local_root)
    stack = [("", str(local_root))]
    while stack:
        rel_dir, abs_dir = stack.pop()
        try:
            it = list(os.scandir(abs_dir))
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise _unreadable(abs_dir, exc) from exc
        for de in it:
            rel = f"{rel_dir}/{de.name}" if rel_dir else de.name
            try:
                st = de.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            except OSError as exc:
                try:
                    guess = de.is_dir(follow_symlinks=False)
                except OSError:
                    guess = False
                if rules.ignored(rel, guess):
                    continue
                raise _unreadable(de.path, exc) from exc
            is_dir = stat.S_ISDIR(st.st_mode)
            if rules.ignored(rel, is_dir):
                continue
            target = os.readlink(de.path) if stat.S_ISLNK(st.st_mode) else None
            if target is not None:
                st = _link_stat(local_root, rel, de.path, target, real_root) or st
                if not stat.S_ISLNK(st.st_mode):
                    target = None       # sent as the file it points at
            entry = Entry.from_stat(st, target)
            if entry is None:
                continue
            out[rel] = entry
            if is_dir:
                stack.append((rel, de.path))
    return out


def _link_stat(local_root, rel: str, path: str, target: str, real_root: str) -> os.stat_result | None:
    """How a symlink goes up. One that stays inside the script directory goes as a link (it
    resolves the same way on the headnode). One that leads out of it (the cloud tutorial's
    ``simulate.sh -> ../app/simulate.sh``) would dangle there: the file it points at goes in its
    place (its stat is returned). A dangling link, or one that leads out to a directory, is a
    ConfigError before anything is sent or launched."""
    resolved = os.path.realpath(path)
    where = os.path.join(str(local_root), rel)
    try:
        st = os.stat(path)
    except OSError:
        raise ConfigError(f"{where} is a dangling symlink (-> {target}): it would dangle on the "
                          "headnode too",
                          hint="fix or remove the link, or leave it out with .swiftignore or "
                               "[sync] exclude") from None
    if resolved == real_root or resolved.startswith(real_root.rstrip("/") + "/"):
        return None
    if stat.S_ISDIR(st.st_mode):
        raise ConfigError(f"{where} -> {target} leads out of the script directory to a directory: "
                          "it would dangle on the headnode",
                          hint="link the files themselves (swiftrun uploads the file a link points "
                               "at), copy the directory in, or leave it out with .swiftignore")
    return st


def _local_entry(local_root: Path, rel: str) -> Entry | None:
    path = os.path.join(local_root, rel)
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return Entry.from_stat(st, os.readlink(path) if stat.S_ISLNK(st.st_mode) else None)
