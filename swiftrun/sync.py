"""Incremental upload of a script directory to the headnode, and fetching what a run produced.

Everything goes over ONE already-open SSH connection, as tar streams on paramiko channels:

* ``upload`` scans the local tree, diffs it against a local manifest (a cache of what the remote
  is believed to hold) and sends only new/changed entries plus the list of deleted paths in a single
  channel. The remote side first checks ``<root>/.swiftrun/sync-id`` against the id stored in the
  manifest; if it differs (new headnode, wiped directory, another machine synced) the streamed data is
  discarded and a full upload follows on a second channel. An incremental sync is one round trip.
* ``fetch`` lists the remote tree with one ``find -printf`` (round trip 1), picks what is new or
  changed relative to the manifest (or matches ``outputs``, or lies in ``extra_dirs``; never
  ``.swiftrun/``, ``.git/``, ``__pycache__/``) and pulls it in one ``tar -c`` stream (round trip 2). Contents land in a staging directory first and are moved
  into place per file with ``os.replace`` only after the whole stream arrived and the remote tar
  exited 0, so a dropped connection never leaves a half-written file where a good one was.

Remote commands are POSIX sh + GNU coreutils/findutils/tar (Ubuntu nodes). The remote root may start
with ``~/``; that part is expanded by the remote shell, everything else is quoted.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import shutil
import socket
import stat
import tarfile
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import paramiko

from swiftrun.errors import ConfigError, RemoteError
from swiftrun.ignore import IgnoreRules, compile_glob, glob_matches

MANIFEST_VERSION = 1
MISMATCH_EXIT = 75              # remote: "sync-id differs, data discarded"
MTIME_TOLERANCE_NS = 1_000_000  # remote vs local mtime: tar/pax carry ~0.1 us; allow 1 ms
NEVER_FETCH = frozenset({".swiftrun", ".git", "__pycache__"})   # path components never brought back
RETRY_HINT = ("nothing local was replaced; run `swiftrun fetch` to try again while the cluster is up "
              "(re-run with --keep-cluster if it is torn down after each run)")


# ---------------------------------------------------------------------------------------------
# entries and the manifest


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
            with _suppress():
                os.unlink(tmp)
            raise


def _safe_rel(rel: str) -> bool:
    """A relative posix path with no '..', '.' or empty components (never escapes the root)."""
    if not rel or rel.startswith("/") or "\0" in rel:
        return False
    return all(p not in ("", ".", "..") for p in rel.split("/"))


class _suppress:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return exc[0] is not None and issubclass(exc[0], OSError)


# ---------------------------------------------------------------------------------------------
# local side


def _unreadable(path: str, exc: OSError) -> ConfigError:
    return ConfigError(f"cannot read {path} ({exc.strerror or exc}): fix its permissions or exclude it "
                       "(.swiftignore or [sync] exclude); a path skipped here would be deleted on the headnode")


def scan(local_root: Path, rules: IgnoreRules) -> dict[str, Entry]:
    """Walk ``local_root`` without following symlinks, skipping ignored paths (pruning ignored dirs).

    A directory that cannot be listed or an entry that cannot be stat'ed (other than one that
    vanished meanwhile) is a ConfigError: skipping it would make the upload delete it remotely."""
    out: dict[str, Entry] = {}
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
            entry = Entry.from_stat(st, target)
            if entry is None:
                continue
            out[rel] = entry
            if is_dir:
                stack.append((rel, de.path))
    return out


def _minimal_deletions(paths: Iterable[str]) -> list[str]:
    """Drop paths whose ancestor is deleted too (``rm -rf dir`` covers them)."""
    kept: set[str] = set()
    for p in sorted(set(paths), key=lambda p: (p.count("/"), p)):
        if not any(a in kept for a in _ancestors(p)):
            kept.add(p)
    return sorted(kept)


def _ancestors(rel: str) -> list[str]:
    parts = rel.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


@dataclass
class UploadPlan:
    """What an incremental upload would do, computed locally (no network)."""

    local: dict[str, Entry]
    send: list[str]
    delete: list[str]           # what the user deleted (a deleted directory counts once)
    carried: dict[str, Entry]   # manifest entries now ignored locally: left alone on the remote
    # What the remote side removes: every manifest-known file/link by name, then known directories
    # deepest first and only if empty by then, so content that never came from here stays.
    remove_files: list[str] = field(default_factory=list)
    remove_dirs: list[str] = field(default_factory=list)

    @property
    def bytes_to_send(self) -> int:
        return sum(self.local[r].size for r in self.send)


def plan_upload(local_root: Path | str, manifest: Manifest, rules: IgnoreRules, *, full: bool) -> UploadPlan:
    """Diff the local tree against the manifest. ``full``: send everything, delete nothing.

    Paths that changed type (file -> dir, ...) are both deleted and re-sent, deletions first, so
    tar never has to extract a file over a directory. Manifest entries that are ignored now (say a
    fetched ``run001/``) are neither deleted remotely nor forgotten. Only what the manifest knows is
    removed remotely (``remove_files`` / ``remove_dirs``): a deleted directory that holds run
    outputs stays, with just those outputs in it.
    """
    local = scan(Path(local_root), rules)
    if full:
        return UploadPlan(local, sorted(local), [], {})
    old = manifest.entries
    send, delete, carried = [], [], {}
    for rel, entry in local.items():
        prev = old.get(rel)
        if not entry.same_local(prev):
            send.append(rel)
            if prev is not None and prev.type != entry.type:
                delete.append(rel)
    for rel, prev in old.items():
        if rel in local:
            continue
        if rules.ignored(rel, prev.type == "d"):
            carried[rel] = prev
        else:
            delete.append(rel)
    files = sorted(r for r in delete if old[r].type != "d")
    dirs = sorted((r for r in delete if old[r].type == "d"), key=lambda r: (-r.count("/"), r))
    return UploadPlan(local, sorted(send), _minimal_deletions(delete), carried, files, dirs)


# ---------------------------------------------------------------------------------------------
# channels


def _transport(conn) -> paramiko.Transport:
    """The open connection's transport, with TCP_NODELAY (channel opens drop from ~43 ms to ~0.3 ms)."""
    if not conn.is_connected:
        conn.open()
    transport = conn.client.get_transport()
    sock = getattr(transport, "sock", None)
    if isinstance(sock, socket.socket):
        with _suppress():
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return transport


def _exec(conn, script: str, timeout: float | None) -> paramiko.Channel:
    """Start ``script`` under POSIX sh (whatever the login shell is) on a fresh channel."""
    chan = _transport(conn).open_session()
    chan.settimeout(timeout)
    chan.exec_command("sh -c " + shlex.quote(script))
    return chan


def _finish(chan: paramiko.Channel) -> tuple[int, str]:
    """Exit status and stderr of a channel whose stdout has been consumed."""
    err = b""
    with _suppress():
        err = chan.makefile_stderr("rb").read()
    rc = chan.recv_exit_status()
    chan.close()
    return rc, err.decode("utf-8", "replace").strip()


def root_expr(remote_root: str) -> str:
    """The remote root as a shell word: a leading ``~/`` becomes "$HOME"/, the rest is quoted."""
    if remote_root == "~":
        return '"$HOME"'
    if remote_root.startswith("~/"):
        rest = remote_root[2:]
        return '"$HOME"/' + shlex.quote(rest) if rest else '"$HOME"'
    return shlex.quote(remote_root)


class _ChannelWriter:
    """Minimal file object for tarfile's stream mode (it buffers in 10 KiB records itself)."""

    def __init__(self, chan: paramiko.Channel):
        self.chan = chan
        self.sent = 0

    def write(self, data: bytes) -> int:
        self.chan.sendall(data)
        self.sent += len(data)
        return len(data)


class _ExactReader:
    """Read exactly ``size`` bytes of a file being sent: zero-pad if it shrank or vanished since the
    scan, cut if it grew. The manifest keeps the scanned mtime, so the next upload resends it."""

    def __init__(self, path: str, size: int):
        self.left = size
        try:
            self.fh = open(path, "rb")
        except OSError:
            self.fh = None

    def read(self, n: int = -1) -> bytes:
        if n < 0 or n > self.left:
            n = self.left
        data = self.fh.read(n) if self.fh else b""
        if len(data) < n:
            data += b"\0" * (n - len(data))
        self.left -= n
        return data

    def close(self) -> None:
        if self.fh:
            self.fh.close()


# ---------------------------------------------------------------------------------------------
# upload


@dataclass
class UploadReport:
    files_sent: int          # regular files and symlinks sent
    bytes_sent: int          # file content bytes sent
    deleted: int             # remote paths removed (a removed directory counts once)
    total_files: int         # regular files in the synced tree
    total_bytes: int
    full: bool               # True when everything was sent (first sync, or the remote id differed)
    large: bool              # bytes_sent > warn_bytes: the caller should say so
    seconds: float
    dirs_sent: int = 0
    channels: int = 0        # SSH channels (round trips) used


def _upload_script(root: str, expect: str | None, new_id: str, delete_bytes: int, rmdir_bytes: int = 0) -> str:
    """Remote half of an upload. stdin = NUL-separated lists of files/links to remove (delete_bytes
    long) and of directories to remove if empty (rmdir_bytes long, deepest first) + tar.

    With ``expect`` set, a different/missing sync-id makes it swallow stdin and exit 75: the local
    side then sends everything. ``head -c`` reads exactly its byte count, leaving the tar for tar.
    The id is removed before anything changes and the new one written last, so after an
    interrupted upload the remote has no id and the next upload is a full one: the remote may hold
    a mix of old and new files that the manifest cannot describe.
    """
    lines = ["set -e", f"R={root}", 'mkdir -p "$R/.swiftrun"', 'cd "$R"']
    if expect is not None:
        lines += ["cur=$(cat .swiftrun/sync-id 2>/dev/null || true)",
                  f'if [ "$cur" != {shlex.quote(expect)} ]; then cat >/dev/null; '
                  f"echo sync-id-mismatch; exit {MISMATCH_EXIT}; fi"]
    lines.append("rm -f .swiftrun/sync-id")
    if delete_bytes:
        lines.append(f"head -c {delete_bytes} | xargs -0 rm -f --")
    if rmdir_bytes:     # a directory still holding what never came from here stays
        lines.append(f"head -c {rmdir_bytes} | xargs -0 rmdir -- 2>/dev/null || :")
    lines += ["tar -x -p --no-same-owner -f -",
              f"printf '%s\\n' {shlex.quote(new_id)} > .swiftrun/sync-id.tmp",
              "mv -f .swiftrun/sync-id.tmp .swiftrun/sync-id"]
    return "\n".join(lines)


def _tarinfo(rel: str, e: Entry) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(rel)
    ti.mtime = e.mtime_ns / 1e9     # a float: PAX carries it with sub-second precision
    ti.mode = e.mode
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = ""
    if e.type == "d":
        ti.type = tarfile.DIRTYPE
    elif e.type == "l":
        ti.type, ti.linkname = tarfile.SYMTYPE, e.target or ""
    else:
        ti.size = e.size
    return ti


def _remote_reason(chan: paramiko.Channel | None) -> str:
    """'; remote exit N: <stderr>' when the remote already finished (it explains a broken pipe)."""
    if chan is None or not chan.exit_status_ready():
        return ""
    rc, err = _finish(chan)
    if rc == -1:
        return "; the connection dropped"
    return f"; remote exit {rc}" + (f": {err[-300:]}" if err else "")


def _send(conn, local_root: Path, remote_root: str, plan: UploadPlan, expect: str | None, new_id: str,
          timeout: float | None) -> bool:
    """One channel: plan's removal lists + tar of plan.send. False if the remote sync-id did not match."""
    delete_blob = b"".join(os.fsencode(p) + b"\0" for p in plan.remove_files)
    rmdir_blob = b"".join(os.fsencode(p) + b"\0" for p in plan.remove_dirs)
    script = _upload_script(root_expr(remote_root), expect, new_id, len(delete_blob), len(rmdir_blob))
    chan = None
    try:
        chan = _exec(conn, script, timeout)
        writer = _ChannelWriter(chan)
        if delete_blob:
            writer.write(delete_blob)
        if rmdir_blob:
            writer.write(rmdir_blob)
        with tarfile.open(fileobj=writer, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            for rel in plan.send:
                e = plan.local[rel]
                if e.type == "f":
                    src = _ExactReader(os.path.join(local_root, rel), e.size)
                    try:
                        tar.addfile(_tarinfo(rel, e), src)
                    finally:
                        src.close()
                else:
                    tar.addfile(_tarinfo(rel, e))
        chan.shutdown_write()
        out = chan.makefile("rb").read()
        rc, err = _finish(chan)
    except (OSError, EOFError, paramiko.SSHException) as exc:
        why = f"{exc or type(exc).__name__}{_remote_reason(chan)}"
        raise RemoteError(f"upload to {remote_root} failed: {why}",
                          hint="run the same command again; the next sync resends what is missing") from exc
    if rc == MISMATCH_EXIT and b"sync-id-mismatch" in out:
        return False
    if rc != 0:
        raise RemoteError(f"upload to {remote_root} failed (remote exit {rc}): {err[-500:] or 'no message'}",
                          hint="check free space and permissions on the headnode, then run again")
    return True


def upload(conn, local_root: Path | str, remote_root: str, *, state_file: Path | str,
           exclude: Iterable[str] = (), warn_bytes: int = 200 * 2**20,
           timeout: float | None = 300.0,
           on_large: Callable[[int], None] | None = None) -> UploadReport:
    """Make ``remote_root`` hold the (non-ignored) contents of ``local_root``.

    ``on_large(bytes)`` is called before anything is sent when the upload will exceed
    ``warn_bytes``, so the user hears of it while it can still be stopped.

    One channel when the manifest's sync-id still matches the remote; two when it does not (the
    first one's data is discarded remotely and a full upload follows). Remote files that never came
    from here (run outputs) are left alone; paths deleted locally are deleted remotely.
    """
    t0 = time.monotonic()
    local_root = Path(local_root)
    state_file = Path(state_file)
    if not local_root.is_dir():     # an empty scan would delete everything remotely
        raise ConfigError(f"script directory {local_root} does not exist or is not a directory",
                          hint="run swiftrun from the project directory or fix the project's path")
    rules = IgnoreRules.from_dir(local_root, exclude)
    manifest = Manifest.load(state_file)
    known = manifest.remote_root == remote_root and manifest.sync_id is not None
    if not known:
        manifest = Manifest(remote_root=remote_root)
    plan = plan_upload(local_root, manifest, rules, full=not known)
    if on_large is not None:
        planned = sum(plan.local[r].size for r in plan.send if plan.local[r].type == "f")
        if planned > warn_bytes:
            on_large(planned)
    new_id = secrets.token_hex(16)
    full = not known
    channels = 1
    ok = _send(conn, local_root, remote_root, plan, manifest.sync_id if known else None, new_id, timeout)
    if not ok:                      # remote was wiped, replaced or synced from elsewhere
        full, channels = True, 2
        plan = UploadPlan(plan.local, sorted(plan.local), [], {})
        _send(conn, local_root, remote_root, plan, None, new_id, timeout)
    entries = dict(plan.carried)
    entries.update(plan.local)
    Manifest(remote_root, new_id, entries).save(state_file)
    files = [e for e in plan.local.values() if e.type == "f"]
    sent = [plan.local[r] for r in plan.send]
    bytes_sent = sum(e.size for e in sent)
    return UploadReport(
        files_sent=sum(1 for e in sent if e.type != "d"), bytes_sent=bytes_sent, deleted=len(plan.delete),
        total_files=len(files), total_bytes=sum(e.size for e in files), full=full,
        large=bytes_sent > warn_bytes, seconds=time.monotonic() - t0,
        dirs_sent=sum(1 for e in sent if e.type == "d"), channels=channels)


# ---------------------------------------------------------------------------------------------
# remote listing


def _parse_mtime_ns(text: str) -> int:
    """find's %T@ ('1715000000.1234567890') to integer nanoseconds, exactly."""
    whole, _, frac = text.partition(".")
    return int(whole) * 1_000_000_000 + int((frac + "000000000")[:9] or 0)


def _listing_script(root: str) -> str:
    return "\n".join([
        f"R={root}",
        'cd "$R" || exit 66',
        "exec find . -mindepth 1 -path ./.swiftrun -prune -o -printf '%y\\t%s\\t%T@\\t%m\\t%P\\0%l\\0'",
    ])


def remote_listing(conn, remote_root: str, *, timeout: float | None = 120.0) -> dict[str, Entry]:
    """Every file, dir and symlink under ``remote_root`` (except ``.swiftrun/``), in one round trip."""
    try:
        chan = _exec(conn, _listing_script(root_expr(remote_root)), timeout)
        chan.shutdown_write()
        data = chan.makefile("rb").read()
        rc, err = _finish(chan)
    except (OSError, EOFError, paramiko.SSHException) as exc:
        raise RemoteError(f"listing {remote_root} on the headnode failed: {exc or type(exc).__name__}",
                          hint=RETRY_HINT) from exc
    if rc == 66:
        raise RemoteError(f"{remote_root} does not exist on the headnode",
                          hint="nothing was uploaded to this cluster yet, or it was replaced")
    if rc != 0:
        raise RemoteError(f"listing {remote_root} on the headnode failed (exit {rc}): {err[-500:]}",
                          hint=RETRY_HINT)
    fields = data.split(b"\0")
    out: dict[str, Entry] = {}
    for head, target in zip(fields[0::2], fields[1::2]):
        kind, size, mtime, mode, rel = head.split(b"\t", 4)
        kind = kind.decode()
        if kind not in ("f", "d", "l"):
            continue
        name = os.fsdecode(rel)
        out[name] = Entry(kind, int(size) if kind == "f" else 0, _parse_mtime_ns(mtime.decode()),
                          int(mode, 8) if kind != "l" else 0o777, os.fsdecode(target) if kind == "l" else None)
    return out


# ---------------------------------------------------------------------------------------------
# fetch


@dataclass
class FetchReport:
    files: list[str] = field(default_factory=list)      # files and symlinks installed locally
    dirs: list[str] = field(default_factory=list)       # directories created or updated
    bytes: int = 0
    refused: list[str] = field(default_factory=list)    # unsafe entries skipped (with the reason)
    conflicts: list[str] = field(default_factory=list)  # local edits since upload, overwritten
    failed: list[str] = field(default_factory=list)     # could not be written locally (with why)
    seconds: float = 0.0
    skipped: set[str] = field(default_factory=set, repr=False)   # arrived but not staged

    @property
    def files_fetched(self) -> int:
        return len(self.files)


def _local_entry(local_root: Path, rel: str) -> Entry | None:
    path = os.path.join(local_root, rel)
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return Entry.from_stat(st, os.readlink(path) if stat.S_ISLNK(st.st_mode) else None)


def select_fetch(listing: dict[str, Entry], manifest: Manifest, local_root: Path, *,
                 outputs: Iterable[str] = (), extra_dirs: Iterable[str] = ()) -> list[str]:
    """Which remote paths to bring back.

    A path is skipped when it matches what was uploaded/fetched (manifest) or what is on disk
    locally already; so inputs are never re-downloaded and a lost manifest costs nothing extra.
    With ``outputs`` only matching paths (or paths under matching dirs) qualify. Everything under
    ``extra_dirs`` qualifies unless identical locally.
    """
    outs = [compile_glob(p) for p in outputs if p.strip("/ ")]
    extras = [d.strip("/") for d in extra_dirs if d.strip("/")]
    chosen = []
    for rel, r in listing.items():
        if not _safe_rel(rel) or NEVER_FETCH.intersection(rel.split("/")):
            continue
        in_extra = any(rel == d or rel.startswith(d + "/") for d in extras)
        local = _local_entry(local_root, rel)
        if in_extra:
            if not r.same_remote(local):
                chosen.append(rel)
            continue
        if outs and not glob_matches(outs, rel):
            continue
        if r.same_remote(manifest.entries.get(rel)) or r.same_remote(local):
            continue
        chosen.append(rel)
    return sorted(chosen)


def _fetch_script(root: str) -> str:
    return "\n".join([
        f"R={root}",
        'cd "$R" || exit 66',
        "exec tar -c -f - --format=posix --no-recursion --hard-dereference --numeric-owner "
        "--ignore-failed-read --null -T -",
    ])


def _feed_names(chan: paramiko.Channel, names: list[str], errors: list[BaseException]) -> None:
    """Send the NUL-separated name list in a thread: tar may start answering before it is all read."""
    try:
        chan.sendall(b"".join(os.fsencode(n) + b"\0" for n in names))
        chan.shutdown_write()
    except BaseException as exc:  # reported by the reader side
        errors.append(exc)


@dataclass
class _Staged:
    type: str
    mtime_ns: int
    mode: int
    temp: str | None = None
    target: str | None = None


def _receive(chan: paramiko.Channel, names: list[str], local_root: Path, staging: str,
             report: FetchReport) -> dict[str, _Staged]:
    """Read the tar stream into ``staging`` (regular files, flat names); validate every member."""
    wanted = set(names)
    staged: dict[str, _Staged] = {}
    stream = chan.makefile("rb")
    with tarfile.open(fileobj=stream, mode="r|") as tar:
        for n, member in enumerate(tar):
            name = member.name.rstrip("/")
            if name.startswith("./"):
                name = name[2:]
            try:
                safe = tarfile.data_filter(member, str(local_root))
            except tarfile.FilterError as exc:
                report.skipped.add(name)
                if member.isreg() and _safe_rel(name) and name in wanted:
                    # a real output that cannot be written here safely (e.g. a local symlinked
                    # directory leads out of the project): only the headnode has it, a failure
                    report.failed.append(f"{name}: {exc}")
                else:
                    report.refused.append(f"{member.name}: {exc}")
                continue
            if safe is None or name not in wanted or not _safe_rel(name):
                report.skipped.add(name)
                report.refused.append(f"{member.name}: not a requested path")
                continue
            mtime_ns = int(round(float(member.mtime) * 1e9))
            if safe.isreg():
                temp = os.path.join(staging, f"{n:08d}")
                src = tar.extractfile(member)
                with open(temp, "wb") as fh:
                    shutil.copyfileobj(src, fh, 1 << 20)
                    if fh.tell() != member.size:
                        raise EOFError("unexpected end of data")
                staged[name] = _Staged("f", mtime_ns, safe.mode & 0o7777, temp)
                report.bytes += member.size
            elif safe.isdir():
                staged[name] = _Staged("d", mtime_ns, (member.mode & 0o755) | 0o700)  # filter leaves None
            elif safe.issym():
                staged[name] = _Staged("l", mtime_ns, 0o777, target=safe.linkname)
            else:
                report.skipped.add(name)
                report.refused.append(f"{member.name}: unsupported type (hard link or device)")
    while stream.read(1 << 16):     # the record padding after the end marker
        pass
    return staged


def _inside(local_root: str, rel: str, cache: dict[str, bool]) -> bool:
    """True if no existing ancestor of ``rel`` under the root is a symlink (nothing written through
    a link can land outside the root)."""
    for anc in _ancestors(rel):
        ok = cache.get(anc)
        if ok is None:
            ok = cache[anc] = not os.path.islink(os.path.join(local_root, anc))
        if not ok:
            return False
    return True


def _clear(path: str, keep_dir: bool) -> None:
    """Remove what stands where a new entry goes; an existing real directory stays if ``keep_dir``."""
    if os.path.islink(path) or (os.path.lexists(path) and not os.path.isdir(path)):
        os.unlink(path)
    elif os.path.isdir(path) and not keep_dir:
        shutil.rmtree(path)


def _install_one(root: str, rel: str, s: _Staged, ours: Entry | None = None) -> None:
    """Put one staged entry in place: files and symlinks by rename (atomic), dirs by mkdir.

    ``ours``: the manifest's entry for ``rel`` (what the sync itself put there)."""
    dest = os.path.join(root, rel)
    parent = os.path.dirname(dest)
    os.makedirs(parent, exist_ok=True)
    if s.type == "d":
        # A remote directory where a local file or symlink stands: the file is the user's, and so
        # is a symlink unless it is exactly the one the sync put there. Refuse rather than delete.
        if os.path.islink(dest):
            mine = ours is not None and ours.type == "l" and ours.same_local(_local_entry(Path(root), rel))
            if not mine:
                raise FileExistsError(f"a symlink stands where the directory goes (move {dest} away)")
            os.unlink(dest)
        elif os.path.lexists(dest) and not os.path.isdir(dest):
            raise FileExistsError(f"a file stands where the directory goes (move {dest} away)")
        os.makedirs(dest, exist_ok=True)
        return
    if os.path.isdir(dest) and not os.path.islink(dest):
        # A remote file where a local directory stands. An empty one goes; one with files in
        # it is the user's (nothing we synced put it there with that name), so it stays and the
        # run says so instead of deleting a tree to make room.
        with os.scandir(dest) as it:
            if next(it, None) is not None:
                raise IsADirectoryError(f"a directory with files in it stands where the file goes "
                                        f"(move {dest} away)")
        os.rmdir(dest)
    if s.type == "f":
        os.chmod(s.temp, s.mode)
        os.utime(s.temp, ns=(s.mtime_ns, s.mtime_ns))
        new = s.temp
    else:
        new = os.path.join(parent, f".swiftrun-link-{secrets.token_hex(4)}")
        os.symlink(s.target, new)
    if os.path.isdir(dest):
        _clear(dest, keep_dir=False)
    os.replace(new, dest)


def _keep_local_copy(root: str, rel: str) -> str:
    """Copy a locally edited file aside before the run's version replaces it; its new name."""
    src = os.path.join(root, rel)
    for n in range(1000):
        candidate = f"{rel}.local" + (f".{n}" if n else "")
        dest = os.path.join(root, candidate)
        if not os.path.lexists(dest):
            shutil.copy2(src, dest)
            return candidate
    raise FileExistsError(f"too many {rel}.local.* copies; clear them and fetch again")


def _install(local_root: Path, staged: dict[str, _Staged], listing: dict[str, Entry], manifest: Manifest,
             report: FetchReport) -> None:
    """Move staged entries into place (parents first), then give the directories touched their
    remote mtime/mode deepest-first, and record everything installed in the manifest."""
    root = str(local_root)
    link_cache: dict[str, bool] = {}
    touched_dirs: set[str] = set()
    blocked: set[str] = set()       # directories that could not be installed
    for rel in sorted(staged):
        s = staged[rel]
        stuck = next((a for a in _ancestors(rel) if a in blocked), None)
        if stuck is not None:
            blocked.add(rel)
            report.failed.append(f"{rel}: not written, its directory {stuck} could not be created")
            continue
        if not _inside(root, rel, link_cache):
            why = f"{rel}: a parent directory is a symlink locally"
            # a file only the headnode has is a failure (the cluster is kept); a link or a
            # directory entry is only refused
            (report.failed if s.type == "f" else report.refused).append(why)
            continue
        prev = manifest.entries.get(rel)
        local = _local_entry(local_root, rel)
        conflict = (s.type != "d" and prev is not None and local is not None
                    and not local.same_local(prev))
        try:
            if conflict and local.type == "f":
                saved = _keep_local_copy(root, rel)     # edited here and there: keep both
                report.conflicts.append(f"{rel} (your version is in {saved})")
            elif conflict:
                report.conflicts.append(rel)
            _install_one(root, rel, s, prev)
        except OSError as exc:
            blocked.add(rel)
            report.failed.append(f"{rel}: {exc}")
            continue
        link_cache.pop(rel, None)
        touched_dirs.update(_ancestors(rel))
        if s.type == "d":
            touched_dirs.add(rel)
            report.dirs.append(rel)
        else:
            manifest.entries[rel] = _local_entry(local_root, rel)
            report.files.append(rel)
    for d in sorted(touched_dirs, key=lambda p: p.count("/"), reverse=True):
        remote = listing.get(d)
        path = os.path.join(root, d)
        if os.path.islink(path) or not os.path.isdir(path):
            continue
        if remote is not None and remote.type == "d":
            with _suppress():
                os.chmod(path, (remote.mode & 0o7777) | 0o700)
                os.utime(path, ns=(remote.mtime_ns, remote.mtime_ns))
        entry = _local_entry(local_root, d)
        if entry is not None:
            manifest.entries[d] = entry


def fetch(conn, local_root: Path | str, remote_root: str, *, state_file: Path | str,
          outputs: Iterable[str] = (), extra_dirs: Iterable[str] = (),
          timeout: float | None = 300.0) -> FetchReport:
    """Bring back what the run produced (see ``select_fetch``) in one tar stream.

    Nothing in ``local_root`` is touched until the whole stream arrived and the remote tar exited
    0; then each file replaces its old version atomically. Unsafe entries (absolute names, '..',
    symlinks pointing out of the root, anything not asked for) are skipped and listed in
    ``refused``. Fetched entries are recorded in the manifest so the next upload does not send them
    back. Failures raise RemoteError saying how to retry.
    """
    t0 = time.monotonic()
    local_root = Path(local_root)
    state_file = Path(state_file)
    manifest = Manifest.load(state_file)
    if manifest.remote_root != remote_root:
        manifest = Manifest(remote_root=remote_root)
    listing = remote_listing(conn, remote_root, timeout=timeout)
    names = select_fetch(listing, manifest, local_root, outputs=outputs, extra_dirs=extra_dirs)
    report = FetchReport()
    if not names:
        if _drop_stale(manifest, listing):
            manifest.save(state_file)
        report.seconds = time.monotonic() - t0
        return report
    staging_parent = local_root / ".swiftrun"
    staging_parent.mkdir(parents=True, exist_ok=True)
    staging = tempfile.mkdtemp(prefix="fetch-", dir=staging_parent)
    installing = False
    try:
        staged = _stream(conn, remote_root, names, local_root, staging, report, timeout)
        _check_arrived(conn, remote_root, names, listing, staged, report, timeout)
        installing = True
        _install(local_root, staged, listing, manifest, report)
    finally:
        # what was asked for keeps its entry: installed it matches the listing, and if it failed
        # `swiftrun fetch` retries it (and still spots a local edit as a conflict)
        if _drop_stale(manifest, listing, keep=set(names)) or installing:
            manifest.save(state_file)
        shutil.rmtree(staging, ignore_errors=True)
    report.seconds = time.monotonic() - t0
    return report


def _drop_stale(manifest: Manifest, listing: dict[str, Entry], keep: set[str] = frozenset()) -> bool:
    """Forget manifest entries the remote no longer holds as recorded (the run changed or deleted an
    uploaded input that is not fetched back), so the next upload sends them again. Files and links
    must match; a directory only has to still be a directory (its mtime moves with its children).
    Paths in ``keep`` (asked for in this fetch) are left to the fetch."""
    stale = []
    for rel, known in manifest.entries.items():
        if rel in keep:
            continue
        remote = listing.get(rel)
        if known is None:
            stale.append(rel)
        elif known.type == "d":
            if remote is None or remote.type != "d":
                stale.append(rel)
        elif not known.same_remote(remote):
            stale.append(rel)
    for rel in stale:
        del manifest.entries[rel]
    return bool(stale)


def _vanished_script(root: str) -> str:
    """Prints (NUL-separated) which of the names on stdin no longer exist under the root."""
    return "\n".join([
        f"R={root}",
        'cd "$R" || exit 66',
        "exec xargs -0 sh -c 'for f do [ -e \"$f\" ] || [ -L \"$f\" ] || printf \"%s\\0\" \"$f\"; done' sh",
    ])


def _check_arrived(conn, remote_root: str, names: list[str], listing: dict[str, Entry],
                   staged: dict[str, _Staged], report: FetchReport, timeout: float | None) -> None:
    """Remote tar skips files it cannot read (--ignore-failed-read, so one bad file does not cost
    the rest): a requested regular file that did not arrive is a failure, unless it is gone on the
    headnode now (deleted between the listing and tar). One more channel, only when one is missing."""
    missing = [n for n in names if listing[n].type == "f" and n not in staged
               and n not in report.skipped]
    if not missing:
        return
    gone: set[str] = set()
    try:
        chan = _exec(conn, _vanished_script(root_expr(remote_root)), timeout)
        feeder = threading.Thread(target=_feed_names, args=(chan, missing, []), daemon=True)
        feeder.start()
        data = chan.makefile("rb").read()
        feeder.join(timeout or None)
        rc, _ = _finish(chan)
        if rc == 0:
            gone = {os.fsdecode(n) for n in data.split(b"\0") if n}
    except (OSError, EOFError, paramiko.SSHException):
        pass            # cannot tell: report them all
    for n in missing:
        if n not in gone:
            report.failed.append(f"{n}: could not be read on the headnode (check its permissions there)")


def _stream(conn, remote_root: str, names: list[str], local_root: Path, staging: str,
            report: FetchReport, timeout: float | None) -> dict[str, _Staged]:
    """Round trip 2: remote ``tar -c`` of ``names`` into staging; RemoteError on any failure.

    The name list goes in from a thread (tar may answer before reading it all). A failure to send
    it only matters if tar then fails too, so it is reported only as part of that failure.
    """
    errors: list[BaseException] = []
    chan = None
    what = f"fetching results from {remote_root} failed"
    try:
        chan = _exec(conn, _fetch_script(root_expr(remote_root)), timeout)
        feeder = threading.Thread(target=_feed_names, args=(chan, names, errors), daemon=True)
        feeder.start()
        staged = _receive(chan, names, local_root, staging, report)
        feeder.join(timeout or None)
        rc, err = _finish(chan)
    except (OSError, EOFError, tarfile.TarError, paramiko.SSHException) as exc:
        why = (str(exc) or type(exc).__name__) + _remote_reason(chan)
        raise RemoteError(f"{what}: {why}", hint=RETRY_HINT) from exc
    if rc != 0:
        why = "the connection dropped" if rc == -1 else f"remote tar exit {rc}: {err[-500:] or 'no message'}"
        if errors:
            why += f"; sending the file list failed: {errors[0]}"
        raise RemoteError(f"{what} ({why})", hint=RETRY_HINT)
    return staged
