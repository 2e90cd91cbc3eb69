"""Upload: make the headnode's copy of the script directory match the local one.

``upload`` scans the local tree, diffs it against the manifest (``plan_upload``) and sends only
new/changed entries plus the list of deleted paths in a single channel. The remote side first
checks ``<root>/.swiftrun/sync-id`` against the id stored in the manifest; if it differs (new
headnode, wiped directory, another machine synced) the streamed data is discarded and a full
upload follows on a second channel. An incremental sync is one round trip. Remote files that never
came from here (run outputs) are left alone.

Two transports carry the same plan. A large upload (many files or many bytes) goes through
rsync over the node's open OpenSSH master, with the sync-id check and the removals in its
--rsync-path wrapper, so it stays one round trip; large changed files then go as deltas. A
small one goes as a tar stream on the same master (fewer processes). Without rsync on either
side, or with thousands of removals, the tar stream carries everything. A full upload (no
manifest for this remote root) where GNU tar is goes through ``bulk``: scanned, judged and
sent at once.
"""

from __future__ import annotations

import os
import secrets
import shlex
import shutil
import subprocess
import tarfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable


from swiftrun.errors import ConfigError, RemoteError
from swiftrun.node.layout import RUNS
from swiftrun.sync import bulk
from swiftrun.sync.channel import Pipe, _exec, _finish, _remote_reason, root_expr
from swiftrun.sync.heap import paused_gc
from swiftrun.sync.ignore import IgnoreRules
from swiftrun.sync.manifest import Entry, Manifest, _ancestors, scan
from swiftrun.sync.sensitive import Judge, refuse_secrets

MISMATCH_EXIT = 75              # remote: "sync-id differs, data discarded"


def _minimal_deletions(paths: Iterable[str]) -> list[str]:
    """Drop paths whose ancestor is deleted too (``rm -rf dir`` covers them)."""
    kept: set[str] = set()
    for p in sorted(set(paths), key=lambda p: (p.count("/"), p)):
        if not any(a in kept for a in _ancestors(p)):
            kept.add(p)
    return sorted(kept)


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


def plan_upload(local_root: Path | str, manifest: Manifest, rules: IgnoreRules, *, full: bool,
                stats: dict[str, os.stat_result] | None = None) -> UploadPlan:
    """Diff the local tree against the manifest. ``full``: send everything, delete nothing.

    Paths that changed type (file -> dir, ...) are both deleted and re-sent, deletions first, so
    tar never has to extract a file over a directory. Manifest entries that are ignored now (say a
    fetched ``run001/``) are neither deleted remotely nor forgotten. Only what the manifest knows is
    removed remotely (``remove_files`` / ``remove_dirs``): a deleted directory that holds run
    outputs stays, with just those outputs in it. ``stats``: see ``scan``.
    """
    local = scan(Path(local_root), rules, stats)
    if full:
        return UploadPlan(local, sorted(local), [], {})
    old = manifest.entries
    send, delete, carried = [], [], {}
    for rel, entry in local.items():
        prev = old.get(rel)
        if entry == prev:           # equal tuples (C speed): unchanged
            continue
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


class _ChannelWriter:
    """Minimal file object for tarfile's stream mode (it buffers in 10 KiB records itself)."""

    def __init__(self, chan: Pipe):
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


def _upload_script(root: str, expect: str | None, new_id: str, delete_bytes: int, rmdir_bytes: int = 0,
                   concatenated: bool = False) -> str:
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
    # concatenated: archives one after another (bulk's second one, read with -h): -i reads on
    lines += ["tar -x -p --no-same-owner -f -" + (" -i" if concatenated else ""),
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


def _send(conn, local_root: Path, remote_root: str, plan: UploadPlan, expect: str | None, new_id: str,
          timeout: float | None, early: Pipe | None = None,
          meanwhile: Callable[[], None] | None = None) -> bool:
    """One channel: plan's removal lists + tar of plan.send. False if the remote sync-id did not
    match. ``early``: a remote shell already started (``Pipe.early``) to run it on."""
    delete_blob = b"".join(os.fsencode(p) + b"\0" for p in plan.remove_files)
    rmdir_blob = b"".join(os.fsencode(p) + b"\0" for p in plan.remove_dirs)
    script = _upload_script(root_expr(remote_root), expect, new_id, len(delete_blob), len(rmdir_blob))
    chan = early
    try:
        chan = early.run(script) if early is not None else _exec(conn, script, timeout)
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
        if meanwhile is not None:
            meanwhile()             # while the remote side extracts and answers
        out = chan.makefile("rb").read()
        rc, err = _finish(chan)
    except (OSError, EOFError) as exc:
        raise _broken(remote_root, exc, chan) from exc
    if rc == MISMATCH_EXIT and b"sync-id-mismatch" in out:
        return False
    if rc != 0:
        raise _remote_exit(remote_root, rc, err)
    return True


def _broken(remote_root: str, exc: BaseException, chan: Pipe | None) -> RemoteError:
    """A pipe to the remote script broke: what the remote end said as it ended explains it."""
    why = f"{exc or type(exc).__name__}{_remote_reason(chan)}"
    return RemoteError(f"upload to {remote_root} failed: {why}",
                       hint="run the same command again; the next sync resends what is missing")


def _remote_exit(remote_root: str, rc: int, err: str) -> RemoteError:
    """The upload's remote script ended with ``rc``: its own words, and what to check."""
    return RemoteError(f"upload to {remote_root} failed (remote exit {rc}): {err[-500:] or 'no message'}",
                       hint="check free space and permissions on the headnode, then run again")


NO_RSYNC_EXIT = 76              # remote: "no rsync here", nothing changed: use the tar stream


RSYNC_MAX_REMOVALS = 32 * 1024   # bytes of names to remove that go on the remote command line
# rsync starts two processes per side; for a few small files the tar stream on the open master
# is faster (bench_transfer: 2 000 files, 1 changed). It pays off for bulk (many files, where
# Python's tarfile costs per member) and for large files (delta against the headnode's copy).
RSYNC_MIN_BYTES = 4 * 2**20
RSYNC_MIN_FILES = 200


def _rsync_path_script(root: str, expect: str | None, new_id: str, plan: UploadPlan) -> str:
    """The remote half of an rsync upload, run as rsync's --rsync-path (rsync appends its
    server arguments, "$@"). The same sync-id protocol as the tar stream: checked before
    anything changes, removed while the tree changes, the new one written once rsync is done.
    Then the same removals, before rsync runs: every manifest-known file or link the user
    deleted, then known directories deepest first and only if empty (what never came from here
    stays), so a path that changed type is free for rsync."""
    lines = [f"R={root}", 'mkdir -p "$R/.swiftrun" || exit 1', 'cd "$R" || exit 1',
             f"command -v rsync >/dev/null 2>&1 || {{ echo swiftrun-no-rsync >&2; exit {NO_RSYNC_EXIT}; }}"]
    if expect is not None:
        lines += ["cur=$(cat .swiftrun/sync-id 2>/dev/null || true)",
                  f'if [ "$cur" != {shlex.quote(expect)} ]; then echo sync-id-mismatch >&2; '
                  f"exit {MISMATCH_EXIT}; fi"]
    lines.append("rm -f .swiftrun/sync-id")
    if plan.remove_files:
        lines.append("rm -f -- " + " ".join(shlex.quote("./" + p) for p in plan.remove_files))
    for d in plan.remove_dirs:
        lines.append(f"rmdir -- {shlex.quote('./' + d)} 2>/dev/null")
    # A changed file is rewritten in place (--inplace: only its changed blocks are written, not
    # a whole new copy; a 500 MB file with one byte changed: 0.5 s against 1.6 s) unless a run
    # is live here: swift may be reading it, and rsync's default (a new file renamed over the
    # old) leaves the open one whole. An interrupted in-place upload leaves no sync-id, so the
    # next one is full, and the file's mtime tells rsync to send it again.
    lines += ["ip=--inplace",
              f"for p in {RUNS}/*.pid; do [ -e \"$p\" ] || continue; "
              '[ -e "${p%.pid}.exit" ] && continue; kill -0 "$(cat "$p")" 2>/dev/null && ip=; done',
              'rsync $ip "$@" || exit $?',
              f"printf '%s\\n' {shlex.quote(new_id)} > .swiftrun/sync-id.tmp",
              "mv -f .swiftrun/sync-id.tmp .swiftrun/sync-id"]
    return "; ".join(lines)


def _have_rsync() -> bool:
    return shutil.which("rsync") is not None


# The names to send go on rsync's command line when they fit, else on its stdin
# (--files-from). rsync reads --files-from one byte per read(2), each after a poll(2): 20 000
# names cost ~700 000 system calls, ~150 ms here (20 000 1 KB files on tmpfs: 470 ms against
# 330 ms as arguments, 300 ms for `rsync -a` of the whole directory). What execve takes is
# ARG_MAX for the arguments and the environment together (each string under 128 KiB, a name
# far less): the names get what the environment leaves of it, less 128 KiB for rsync's own
# options and what the environment may grow by before the exec. A budget of ARG_MAX/4 (512 KiB
# here) sent 20 000 names of 17 characters to stdin.
def _argv_budget() -> int:
    arg_max = os.sysconf("SC_ARG_MAX") if hasattr(os, "sysconf") else 131072
    env = sum(len(k) + len(v) + 2 + 8 for k, v in os.environb.items()) if os.name == "posix" else 32768
    return max(0, min(arg_max * 3 // 4, arg_max - env - 128 * 1024))


def _as_args(names: list[str]) -> list[str] | None:
    """The names as rsync source arguments: "./" first, so none reads as an option or a
    "host:" path and -R keeps each one relative; None when they would not fit."""
    args = ["./" + n for n in names]
    size = len("\0".join(args).encode("utf-8", "surrogateescape")) + 9 * len(args)    # + pointers
    return None if size > _argv_budget() else args


def _rsync_argv(link, script: str, sources: list[str] | None) -> list[str]:
    """rsync over the node's open OpenSSH master. Only the listed paths (no recursion): what
    changed, and what the manifest says was deleted here (missing locally: rsync deletes them
    there; a directory only if it is empty, so outputs in it stay). Links that stay inside the
    script directory go as links, links out of it as the files they point at (the scan's rule).
    Large changed files go as deltas against the headnode's copy. ``sources``: the names as
    arguments (``_as_args``), or None to read them from stdin."""
    # --modify-window=-1: mtimes compared to the nanosecond. rsync's default compares whole
    # seconds, so a file rewritten with the same size within a second of its last upload was
    # skipped (the manifest, to the nanosecond, had listed it as changed).
    head = ["rsync", "-lptd", "--modify-window=-1",
            "--copy-unsafe-links", "--no-implied-dirs", "--timeout=300",
            "-e", link.rsh, "--rsync-path", "sh -c " + shlex.quote(script) + " sh"]
    dest = f"{link.target.host}:."
    if sources is None:
        return head + ["--files-from=-", "--from0", "./", dest]
    return head + ["-R", "--", *sources, dest]


def _send_rsync(link, local_root: Path, remote_root: str, plan: UploadPlan, expect: str | None,
                new_id: str, meanwhile: Callable[[], None] | None = None) -> bool | None:
    """One rsync: plan's changes. False if the remote sync-id did not match; None when rsync is
    missing on either side (the caller falls back to the tar stream)."""
    if not _have_rsync() or not hasattr(link, "rsh"):
        return None
    if plan.bytes_to_send < RSYNC_MIN_BYTES and len(plan.send) < RSYNC_MIN_FILES:
        return None                     # a small change: the tar stream is one process fewer
    if sum(len(p) + 3 for p in plan.remove_files + plan.remove_dirs) > RSYNC_MAX_REMOVALS:
        return None                     # thousands of removals: the tar stream sends them on stdin
    sources = _as_args(plan.send)
    listing = None if sources is not None else b"".join(os.fsencode(n) + b"\0" for n in plan.send)
    script = _rsync_path_script(root_expr(remote_root), expect, new_id, plan)
    if meanwhile is not None:
        meanwhile()
    try:
        proc = subprocess.run(_rsync_argv(link, script, sources), input=listing,
                              stdin=subprocess.DEVNULL if listing is None else None, cwd=local_root,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    except OSError as exc:
        raise RemoteError(f"upload to {remote_root} failed: {exc}",
                          hint="run the same command again; the next sync resends what is missing") from exc
    err = proc.stderr.decode("utf-8", "replace")
    if "sync-id-mismatch" in err:
        return False
    if "swiftrun-no-rsync" in err:
        return None
    if proc.returncode not in (0, 24):        # 24: a file vanished while sending (sent next time)
        lines = [ln.strip() for ln in err.strip().splitlines() if ln.strip()]
        said = [ln for ln in lines if not ln.startswith("rsync error:")] or lines
        raise RemoteError(f"upload to {remote_root} failed (rsync exit {proc.returncode}): "
                          f"{said[0] if said else 'no message'}",
                          hint="check free space and permissions on the headnode, then run again")
    return True


class _Aside:
    """The new manifest, written to a temp file beside ``state_file`` while the remote side
    works, and renamed into place only once the upload succeeded. Written in this thread while
    the tar stream's remote end finishes (``now``), or in a thread while rsync runs (``start``):
    a thread started earlier fought the tar stream for the GIL (~30 ms of a 150 ms sync)."""

    def __init__(self, state_file: Path, manifest: Manifest):
        self.state_file, self.manifest = state_file, manifest
        self.pending = self.error = self.thread = None
        self.done = False

    def _write(self) -> None:
        try:
            self.pending = self.manifest.write_aside(self.state_file)
        except BaseException as exc:    # raised by commit()
            self.error = exc

    def now(self) -> None:
        if not self.done:
            self.done = True
            self._write()

    def start(self) -> None:
        if not self.done:
            self.done = True
            self.thread = threading.Thread(target=self._write, daemon=True)
            self.thread.start()

    def _join(self) -> None:
        if self.thread is not None:
            self.thread.join()

    def commit(self) -> None:
        self.now()
        self._join()
        if self.error is not None:
            raise self.error
        self.pending.commit()
        self.pending = None

    def drop(self) -> None:
        self._join()
        if self.pending is not None:
            self.pending.discard()
        self.pending = None


@dataclass
class Prepared:
    """What an upload will send, worked out and judged (secrets refused) before it starts."""

    manifest: Manifest
    plan: UploadPlan
    known: bool         # the manifest describes remote_root: an incremental upload


@paused_gc()
def prepare(local_root: Path | str, remote_root: str, state_file: Path | str,
            exclude: Iterable[str] = (), manifest: Manifest | None = None) -> Prepared:
    """Scan and plan an upload, and refuse a file that holds a secret (judged by content,
    before a byte is sent; a changed file is read again: it may be new). ``manifest``: the
    one in ``state_file``, when the caller has loaded it already."""
    local_root = Path(local_root)
    rules = IgnoreRules.from_dir(local_root, exclude)
    if manifest is None:
        manifest = Manifest.load(Path(state_file))
    known = manifest.describes(remote_root)
    if not known:
        manifest = Manifest(remote_root=remote_root)
    stats: dict[str, os.stat_result] = {}
    plan = plan_upload(local_root, manifest, rules, full=not known, stats=stats)
    refuse_secrets(local_root, [r for r in plan.send if plan.local[r].type == "f"],
                   judged=local_root / ".swiftrun" / "judged", stats=stats)
    return Prepared(manifest, plan, known)


@paused_gc()
def upload(conn, local_root: Path | str, remote_root: str, *, state_file: Path | str,
           exclude: Iterable[str] = (), warn_bytes: int = 200 * 2**20,
           timeout: float | None = 300.0,
           on_large: Callable[[int], None] | None = None,
           prepared: "Prepared | None" = None) -> UploadReport:
    """Make ``remote_root`` hold the (non-ignored) contents of ``local_root``.

    ``prepared``: the manifest and plan of a ``prepare`` made moments ago (a run checks the
    tree before the cost line, then uploads once a warm cluster answered: one scan, not two).
    A file changed since is sent by the next upload, as one changed during a scan is; if the
    headnode's copy moved on meanwhile, the sync-id check makes this a full upload.

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
    try:        # the channel opens while the tree is scanned; a failure here is met again below
        early = Pipe.early(conn)
    except (RemoteError, OSError):
        early = None
    try:
        return _upload(conn, local_root, remote_root, state_file, exclude, warn_bytes, timeout,
                       on_large, early, t0, prepared)
    finally:
        if early is not None and not early.used:
            early.close()           # not used (rsync carried it, or nothing was sent)


def _upload(conn, local_root: Path, remote_root: str, state_file: Path, exclude, warn_bytes: int,
            timeout: float | None, on_large, early: Pipe | None, t0: float,
            prepared: "Prepared | None") -> UploadReport:
    if prepared is None or prepared.manifest.remote_root != remote_root:
        manifest = Manifest.load(state_file)
        if not manifest.describes(remote_root) and early is not None:
            tar = bulk.gnu_tar()
            if tar is not None:         # a full upload: scanned, judged and sent at once
                return _upload_bulk(local_root, remote_root, state_file, exclude, warn_bytes,
                                    on_large, early, tar, t0)
        prepared = prepare(local_root, remote_root, state_file, exclude, manifest)
    manifest, plan, known = prepared.manifest, prepared.plan, prepared.known
    if on_large is not None:
        planned = sum(plan.local[r].size for r in plan.send if plan.local[r].type == "f")
        if planned > warn_bytes:
            on_large(planned)
    new_id = secrets.token_hex(16)
    full = not known
    channels = 1
    expect = manifest.sync_id if known else None
    aside = _Aside(state_file, Manifest(remote_root, new_id, {**plan.carried, **plan.local}))
    try:
        ok = _send_rsync(conn, local_root, remote_root, plan, expect, new_id, aside.start)
        via_rsync = ok is not None
        if ok is None:
            ok = _send(conn, local_root, remote_root, plan, expect, new_id, timeout, early,
                       aside.now)
        if not ok:                      # remote was wiped, replaced or synced from elsewhere
            full, channels = True, 2
            plan = UploadPlan(plan.local, sorted(plan.local), [], {})
            if not via_rsync or _send_rsync(conn, local_root, remote_root, plan, None, new_id) is None:
                _send(conn, local_root, remote_root, plan, None, new_id, timeout)
            aside.drop()
            Manifest(remote_root, new_id, dict(plan.local)).save(state_file)
        else:
            aside.commit()
    finally:
        aside.drop()
    return _report(plan.local, [plan.local[r] for r in plan.send], len(plan.delete), full,
                   warn_bytes, t0, channels)


def _report(local: dict[str, Entry], sent: list[Entry], deleted: int, full: bool, warn_bytes: int,
            t0: float, channels: int) -> UploadReport:
    files = [e for e in local.values() if e.type == "f"]
    bytes_sent = sum(e.size for e in sent)
    dirs = sum(1 for e in sent if e.type == "d")
    return UploadReport(
        files_sent=len(sent) - dirs, bytes_sent=bytes_sent, deleted=deleted,
        total_files=len(files), total_bytes=sum(e.size for e in files), full=full,
        large=bytes_sent > warn_bytes, seconds=time.monotonic() - t0, dirs_sent=dirs,
        channels=channels)


def _upload_bulk(local_root: Path, remote_root: str, state_file: Path, exclude, warn_bytes: int,
                 on_large, early: Pipe, tar: str, t0: float) -> UploadReport:
    """A full upload through ``bulk``'s pipeline, on the shell started while the manifest was
    read. ``on_large`` is told once the bytes handed to tar pass ``warn_bytes`` (the size is
    not known before the scan ends; the upload is still under way and can be stopped)."""
    rules = IgnoreRules.from_dir(local_root, exclude)
    judge = Judge(local_root, local_root / ".swiftrun" / "judged")
    new_id = secrets.token_hex(16)
    told: list[int] = []

    def on_bytes(total: int) -> None:
        if on_large is not None and not told and total > warn_bytes:
            told.append(total)
            on_large(total)

    try:
        chan = early.run(_upload_script(root_expr(remote_root), None, new_id, 0, 0,
                                        concatenated=True))
        local = bulk.stream_full(chan, tar, local_root, rules, judge, on_bytes)
    except (OSError, EOFError) as exc:      # tar or ssh gone: the remote end's exit says why
        raise _broken(remote_root, exc, early) from exc
    finally:
        judge.save()
    aside = _Aside(state_file, Manifest(remote_root, new_id, local))
    try:
        aside.start()                       # while the remote side extracts the last of it
        try:
            chan.makefile("rb").read()
            rc, err = _finish(chan)
        except (OSError, EOFError) as exc:
            raise _broken(remote_root, exc, chan) from exc
        if rc != 0:
            raise _remote_exit(remote_root, rc, err)
        aside.commit()
    finally:
        aside.drop()
    return _report(local, list(local.values()), 0, True, warn_bytes, t0, 1)
