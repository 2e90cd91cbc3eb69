"""What a tree holds, here and (as far as this machine knows) on the headnode.

An ``Entry`` is what the sync cares about for one path: type, size, mtime, mode, link target.
``scan`` reads the local tree into entries (the ignore rules applied, symlinks never followed); the
``Manifest`` is a local cache of what the remote root is believed to hold, so an upload sends only
what changed and a fetch brings back only what the run made. Losing it costs one full upload.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import stat
import tempfile
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator
from typing import NamedTuple

from swiftrun.errors import ConfigError
from swiftrun.sync.ignore import IgnoreRules

MANIFEST_VERSION = 2
MTIME_TOLERANCE_NS = 1_000_000  # remote vs local mtime: tar/pax carry ~0.1 us; allow 1 ms


class Entry(NamedTuple):
    """What the sync cares about for one path: type ('f', 'd', 'l'), size, mtime, mode, target.

    A tuple, so that a manifest of tens of thousands of entries loads (``_make``), compares
    (``==``) and saves (JSON arrays) at C speed, not one Python call per field."""

    type: str
    size: int
    mtime_ns: int
    mode: int
    target: str | None = None

    def to_json(self) -> list:
        return list(self)

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
        """Remote listing vs local knowledge, either way round: mtimes within tolerance, or
        equal at whole seconds when one side keeps only seconds (a file system that does, on
        either machine: asked only one way round, a project on such a disk here was fetched
        again on every run).
        Modes are not compared: a run that only chmods a file is not worth a download."""
        if other is None or other.type != self.type:
            return False
        if self.type == "l":
            return self.target == other.target
        if self.type == "f" and self.size != other.size:
            return False
        a, b = self.mtime_ns, other.mtime_ns
        if abs(a - b) < MTIME_TOLERANCE_NS:
            return True
        second = 1_000_000_000
        return (a % second == 0 and a == b - b % second) or (b % second == 0 and b == a - a % second)


@dataclass
class Manifest:
    """The local cache of what ``remote_root`` holds, keyed by posix path relative to the root.

    On disk: the whole manifest (``path``, columns, see ``_columns_entries``) and a journal
    beside it (``path`` + ".log"): one JSON line per later save, the entries it set and the
    paths it dropped, and the sync-id. A save that changes a few entries of 20 000 appends one
    short line (a whole rewrite was ~70 ms of a one-file upload); the whole file is rewritten
    once the journal outgrows half of it, under a new ``generation`` (a journal line of another
    generation is ignored, so a crash between the rename and the journal's removal cannot
    replay old lines). A line cut short by a crash is not applied: the manifest is the one
    before that save, and the sync-id check makes the next upload full."""

    remote_root: str = ""
    sync_id: str | None = None
    entries: dict[str, Entry] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> "Manifest":
        """A missing, unreadable or malformed manifest is an empty one (the next upload is then
        full). One that names a path outside the root (``..``, absolute, NUL) is malformed too:
        the upload removes what the manifest lists."""
        path = Path(path)
        try:
            with open(path, "rb") as fh:
                base_id = _identity(os.fstat(fh.fileno()))
                data = json.loads(fh.read())
            version = data.get("version")
            if version == MANIFEST_VERSION:
                entries = _columns_entries(data)
            elif version == 1:          # written by swiftrun before the columns
                entries = _v1_entries(data["entries"])
            else:
                return cls()
            if entries is None:
                return cls()
            m = cls(data.get("remote_root", ""), data.get("sync_id"), entries)
            generation = data.get("generation")
            journal = _read_journal(path)
            if generation is not None and journal:
                if not m._replay(journal, generation):
                    return cls()
            _ON_DISK[str(path)] = _Disk(generation, base_id, len(journal), m.remote_root,
                                        m.sync_id, dict(m.entries))
            return m
        except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError):
            return cls()

    def describes(self, remote_root: str) -> bool:
        """Whether this is the record of ``remote_root`` from a finished upload (else the next
        upload there is full)."""
        return self.remote_root == remote_root and self.sync_id is not None

    def _replay(self, journal: bytes, generation: str) -> bool:
        """Apply the journal's complete lines of ``generation``; False if one is malformed."""
        for line in journal.split(b"\n")[:-1]:         # the last piece: empty, or cut short
            doc = json.loads(line)
            if doc.get("generation") != generation:
                continue
            put = _columns_entries(doc)
            drop = doc["drop"]
            if put is None or type(drop) is not list:
                return False
            for rel in drop:
                self.entries.pop(rel, None)
            self.entries.update(put)
            self.sync_id = doc.get("sync_id")
        return True

    def save(self, path: Path) -> None:
        """Atomic: an interrupted save leaves the manifest as it was."""
        self.write_aside(path).commit()

    def write_aside(self, path: Path) -> "Pending":
        """Prepare the save without making it: an upload does this while the remote side works
        and commits it only once the upload succeeded (``discard`` otherwise). What changed
        since ``load`` read ``path`` goes in a journal line, unless the file moved meanwhile
        (another swiftrun saved it), the root changed or the journal grew too long: then the
        whole manifest goes to a temp file beside it."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        disk = _ON_DISK.get(str(path))
        if disk is not None and disk.generation is not None and disk.remote_root == self.remote_root:
            line = self._journal_line(disk)
            if line is not None and disk.journal_bytes + len(line) <= max(64 * 1024, disk.base_id[1] // 2):
                try:
                    same = (_identity(os.stat(path)) == disk.base_id
                            and _journal_size(path) == disk.journal_bytes)
                except OSError:
                    same = False
                if same:
                    return Pending(self, path, line=line)
        generation = secrets.token_hex(8)
        data = dict(_columns(self.entries), version=MANIFEST_VERSION, generation=generation,
                    remote_root=self.remote_root, sync_id=self.sync_id)
        fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(json.dumps(data, separators=(",", ":")))  # C encoder; dump() is ~10x slower
        except BaseException:
            discard(tmp)
            raise
        return Pending(self, path, tmp=tmp, generation=generation)

    def _journal_line(self, disk: "_Disk") -> bytes | None:
        old, new = disk.entries, self.entries
        # a lookup and a tuple compare per entry (~2 ms at 20 000), not a set of hashed items
        # (the items views' difference hashes every entry's five fields: ~10 ms)
        get = old.get
        put = {k: v for k, v in new.items() if get(k) != v}
        added = sum(1 for k in put if k not in old)
        drop = list(old.keys() - new.keys()) if len(new) - added != len(old) else []
        if not put and not drop and self.sync_id == disk.sync_id:
            return b""
        if len(put) + len(drop) > max(256, len(old) // 4):
            return None             # most of it changed (a fetch of a new run): whole, once
        doc = dict(_columns(put), generation=disk.generation, sync_id=self.sync_id, drop=drop)
        return json.dumps(doc, separators=(",", ":")).encode() + b"\n"


class Pending:
    """A save made aside: ``commit`` puts it in place, ``discard`` forgets it."""

    def __init__(self, manifest: Manifest, path: Path, *, line: bytes | None = None,
                 tmp: str | None = None, generation: str | None = None):
        self.manifest, self.path, self.line, self.tmp = manifest, path, line, tmp
        self.generation = generation

    def commit(self) -> None:
        m, path = self.manifest, self.path
        disk = _ON_DISK.get(str(path))
        if self.tmp is not None:
            os.replace(self.tmp, path)
            self.tmp = None
            with contextlib.suppress(OSError):      # its lines carry the old generation
                os.unlink(_journal_path(path))
            st = os.stat(path)
            _ON_DISK[str(path)] = _Disk(self.generation, _identity(st), 0, m.remote_root,
                                        m.sync_id, dict(m.entries))
            return
        if self.line:
            fd = os.open(_journal_path(path), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            with os.fdopen(fd, "ab") as fh:
                fh.write(self.line)
            disk.journal_bytes += len(self.line)
            disk.sync_id = m.sync_id
            disk.entries = dict(m.entries)

    def discard(self) -> None:
        discard(self.tmp)
        self.tmp = None


@dataclass
class _Disk:
    """What a manifest file held when this process last read or wrote it."""

    generation: str | None
    base_id: tuple              # the base file's (inode, size, mtime)
    journal_bytes: int
    remote_root: str
    sync_id: str | None
    entries: dict


_ON_DISK: dict[str, _Disk] = {}


def _identity(st: os.stat_result) -> tuple:
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def _journal_path(path: Path) -> str:
    return str(path) + ".log"


def _journal_size(path: Path) -> int:
    try:
        return os.stat(_journal_path(path)).st_size
    except FileNotFoundError:
        return 0


def _read_journal(path: Path) -> bytes:
    try:
        with open(_journal_path(path), "rb") as fh:
            return fh.read()
    except FileNotFoundError:
        return b""


def _columns(entries: dict) -> dict:
    """``entries`` as ``_columns_entries`` reads them (insertion order: sorting 20 000 paths
    costs ~5 ms)."""
    items = entries.items()
    types, sizes, mtimes, modes, targets = zip(*(e for _, e in items)) if items else ((),) * 5
    return {"paths": "\0".join(p for p, _ in items), "types": "".join(types), "sizes": sizes,
            "mtimes": mtimes, "modes": modes, "targets": targets}


def discard(tmp: str | None) -> None:
    if tmp:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


# a component that is empty, '.' or '..'; an absolute path; a NUL
_UNSAFE_REL = re.compile(r"(?:^|/)\.{0,2}(?:/|$)|\x00")
_new_entry = functools.partial(tuple.__new__, Entry)     # Entry._make without a Python call


def _columns_entries(data: dict) -> dict[str, Entry] | None:
    """The entries of a manifest as ``write_aside`` stores them: the paths as one string
    (NUL-separated, NUL is never in a path), then one JSON array per field in path order.
    Checked and built by whole columns (C loops), not entry by entry: 20 000 entries load in
    ~20 ms, where one Python check and constructor per entry took ~60 ms."""
    joined, types, targets = data["paths"], data["types"], data["targets"]
    cols = (data["sizes"], data["mtimes"], data["modes"])
    if type(joined) is not str or type(types) is not str or type(targets) is not list \
            or any(type(c) is not list for c in cols):
        return None
    paths = joined.split("\0") if joined else []
    n = len(paths)
    if len(types) != n or len(targets) != n or any(len(c) != n for c in cols):
        return None
    if types.strip("fdl") or not set(map(type, targets)) <= {str, type(None)} \
            or any(not set(map(type, c)) <= {int} for c in cols):
        return None
    # every component of every path, NUL-delimited: an empty one (absolute, "a//b", ""), "."
    # or ".." would leave the root (the upload removes what the manifest lists)
    parts = "\0" + joined.replace("/", "\0") + "\0"
    if n and ("\0\0" in parts or "\0.\0" in parts or "\0..\0" in parts):
        return None
    return dict(zip(paths, map(_new_entry, zip(types, *cols, targets))))


def _v1_entries(entries: dict) -> dict[str, Entry] | None:
    """Version 1 stored {path: [type, size, mtime_ns, mode, target]}."""
    for v in entries.values():
        if not (type(v) is list and len(v) == 5 and type(v[1]) is int and type(v[2]) is int
                and type(v[3]) is int and type(v[0]) is str and v[0] in ("f", "d", "l")
                and (v[4] is None or type(v[4]) is str)):
            return None
    return {k: Entry._make(v) for k, v in entries.items() if not _UNSAFE_REL.search(k)}


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


def scan(local_root: Path, rules: IgnoreRules,
         stats: dict[str, os.stat_result] | None = None) -> dict[str, Entry]:
    """Walk ``local_root`` without following symlinks, skipping ignored paths (pruning ignored dirs).
    ``stats``, when given, gets the stat of each regular file (the secret check's identity).

    A directory that cannot be listed or an entry that cannot be stat'ed (other than one that
    vanished meanwhile) is a ConfigError: skipping it would make the upload delete it remotely.
    The walk costs one lstat per entry and, for a directory no rule can touch, no rule check."""
    out: dict[str, Entry] = {}
    for _ in walk(local_root, rules, out, stats):
        pass
    return out


_DIR_OPEN = os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0)
_SUBDIR_OPEN = _DIR_OPEN | getattr(os, "O_NOFOLLOW", 0)


def walk(local_root: Path, rules: IgnoreRules, out: dict[str, Entry],
         stats: dict[str, os.stat_result] | None = None) -> Iterator[list[str]]:
    """``scan``, one directory at a time: after each, the names it added to ``out`` (the
    directory's entries, subdirectories before what they hold).

    Each directory is listed through a descriptor of its own, so each entry's lstat is relative
    to it (fstatat), not a whole path the kernel walks again: ~15% off a 20 000-file walk. A
    subdirectory is opened without following a link: one swapped for a link meanwhile is an
    error, never a walk outside the tree."""
    real_root = None
    make = _new_entry
    is_reg, is_dir_mode, imode = stat.S_ISREG, stat.S_ISDIR, stat.S_IMODE
    join = os.path.join
    stack = [("", str(local_root))]
    while stack:
        rel_dir, abs_dir = stack.pop()
        try:
            fd = os.open(abs_dir, _SUBDIR_OPEN if rel_dir else _DIR_OPEN)
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise _unreadable(abs_dir, exc) from exc
        prefix = rel_dir + "/" if rel_dir else ""
        added: list[str] = []
        try:
            try:
                it = list(os.scandir(fd))
            except OSError as exc:
                raise _unreadable(abs_dir, exc) from exc
            file_ignored = rules.child_check(rel_dir, False)
            dir_ignored = rules.child_check(rel_dir, True)
            for de in it:
                rel = prefix + de.name
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
                    raise _unreadable(join(abs_dir, de.name), exc) from exc
                mode = st.st_mode
                if is_reg(mode):
                    if file_ignored is None or not file_ignored(rel):
                        out[rel] = make(("f", st.st_size, st.st_mtime_ns, imode(mode), None))
                        added.append(rel)
                        if stats is not None:
                            stats[rel] = st
                    continue
                if is_dir_mode(mode):
                    if dir_ignored is None or not dir_ignored(rel):
                        out[rel] = make(("d", 0, st.st_mtime_ns, imode(mode), None))
                        added.append(rel)
                        stack.append((rel, join(abs_dir, de.name)))
                    continue
                if file_ignored is not None and file_ignored(rel):
                    continue
                if not stat.S_ISLNK(mode):
                    continue            # fifos, sockets, devices are never synced
                target = os.readlink(de.name, dir_fd=fd)
                if real_root is None:
                    real_root = os.path.realpath(local_root)
                st = _link_stat(local_root, rel, join(abs_dir, de.name), target, real_root) or st
                entry = Entry.from_stat(st, target if stat.S_ISLNK(st.st_mode) else None)
                if entry is not None:       # a link out of the root goes as the file it points at
                    out[rel] = entry
                    added.append(rel)
        finally:
            os.close(fd)
        yield added


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
