"""Fetch: bring back what a run produced, and never lose a file on either side doing it.

``fetch`` lists the remote tree (``listing.py``, round trip 1), picks what is new or
changed relative to the manifest (or matches ``outputs``, or lies in ``extra_dirs``; never
``.swiftrun/``, ``.git/``, ``__pycache__/``) and pulls it (round trip 2): in one ``tar -c``
stream when it is small, by GNU tar on both ends (rsync where this side has no GNU tar) over
the same open master when it is many files or many bytes (``pulling.py``); the shell for
round trip 2 starts while the node lists. Contents land in a staging directory first and are
moved into place per file with ``os.replace`` only after the whole transfer arrived and the
remote tar (or rsync) exited well, so a dropped connection never leaves a half-written file
where a good one was; a new directory nothing stands in the way of goes in whole, by one rename.

The conflict rules (``_install`` and ``_install_one``): a file edited here and changed by the run,
or made here where the run made one too, is copied aside to ``<name>.local`` before the run's
version goes in place; a local directory with
files in it, a local file where a directory goes, or a symlink the sync did not put there is never
deleted to make room (that path fails and the cluster is kept); nothing is written through a local
symlinked directory.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import stat
import tarfile
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable
from swiftrun.errors import RemoteError
from swiftrun.sync import pulling
from swiftrun.sync.ahead import ListAhead
from swiftrun.sync.channel import Pipe, _exec, _finish, _remote_reason, root_expr
from swiftrun.sync.heap import paused_gc
from swiftrun.sync.ignore import compile_glob, glob_matches
from swiftrun.sync.listing import RETRY_HINT, remote_listing
from swiftrun.sync.manifest import Entry, Manifest, _ancestors, _local_entry, _safe_rel
from swiftrun.sync.pulling import NEVER_FETCH


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
    under = tuple(d + "/" for d in extras)      # str.startswith takes them all at C speed
    chosen, known, root = [], manifest.entries, os.fspath(local_root)
    absent: dict[str, bool] = {}    # parent dir -> nothing stands there locally (a new output dir)
    fetchable: dict[str, bool] = {}     # parent dir -> what is under it may be fetched

    def local(rel: str) -> Entry | None:
        parent = rel.rpartition("/")[0]
        if parent:
            gone = absent.get(parent)
            if gone is None:
                gone = absent[parent] = not os.path.lexists(os.path.join(root, parent))
            if gone:
                return None         # 5 000 outputs in a new directory: one lstat, not 5 000
        return _local_entry(local_root, rel)

    for rel, r in listing.items():
        in_extra = bool(extras) and (rel.startswith(under) or rel in extras)
        if not in_extra:
            # what the manifest holds as it is (most of a warm run's tree) is skipped first,
            # without a local lstat: per-run work in proportion to what the run changed
            k = known.get(rel)
            if k is not None and (r == k or r.same_remote(k)):
                continue
        if not _fetchable(rel, fetchable):
            continue
        if in_extra:
            if not r.same_remote(local(rel)):
                chosen.append(rel)
            continue
        if outs and not glob_matches(outs, rel):
            continue
        if r.same_remote(local(rel)):
            continue
        chosen.append(rel)
    return sorted(chosen)


def _fetchable(rel: str, parents: dict[str, bool]) -> bool:
    """``rel`` is a safe relative path (``_safe_rel``) with no component in ``NEVER_FETCH``;
    each parent directory is judged once (``parents``), then only the last component per path."""
    parent, sep, base = rel.rpartition("/")
    if base in ("", ".", "..") or base in NEVER_FETCH or "\0" in base:
        return False
    if not sep:
        return True
    ok = parents.get(parent)
    if ok is None:
        ok = parents[parent] = _safe_rel(parent) and not NEVER_FETCH.intersection(parent.split("/"))
    return ok


def _fetch_script(root: str) -> str:
    return "\n".join([
        f"R={root}",
        'cd "$R" || exit 66',
        "exec tar -c -f - --format=posix --no-recursion --hard-dereference --numeric-owner "
        "--ignore-failed-read --null -T -",
    ])


def _feed_names(chan: Pipe, names: list[str], errors: list[BaseException]) -> None:
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
    ready: bool = False         # the staged file has this mode and mtime already (rsync set them)
    entry: Entry | None = None  # what it is once renamed into place (a rename keeps all of it)


def _receive(chan: Pipe, names: list[str], local_root: Path, staging: str,
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


def _pull(conn, remote_root: str, names: list[str], listing: dict[str, Entry], local_root: Path,
          staging: str, report: FetchReport, placed: dict[str, Entry],
          early: Pipe | None = None) -> dict[str, _Staged] | None:
    """``_receive``'s work by GNU tar or rsync (``pulling.pull``): the names land in
    ``staging`` under their own paths, then
    each is judged as the tar path judges a member (nothing through a staged symlink; links
    absolute or leading out of the root refused; modes as the data filter leaves them). After
    a partial transfer a file of another size than listed counts as not arrived (it may be cut
    short). New directories that pass those rules whole (``pulling.direct_dirs``) go into
    place with one rename each after the rest arrived (``pulling.place``); ``placed`` gets
    what they hold. None when neither GNU tar nor rsync could carry them (nothing was done:
    the Python tar stream goes instead)."""
    kinds = {rel: e.type for rel, e in listing.items()}
    cache: dict[str, bool] = {}
    root = str(local_root)
    real_root = os.path.realpath(root)
    direct = pulling.direct_dirs(names, listing, kinds, root, lambda d: _inside(root, d, cache))
    inside_direct: list[str] = []
    if direct:
        inside_direct, names = pulling.split_under(names, direct)
    staged: dict[str, _Staged] = {}
    if names:
        done = pulling.pull(conn, remote_root, pulling.transfer_list(names, kinds), staging,
                            RETRY_HINT, early=early)
        if done is None:
            return None
        _judge_staged(names, listing, staging, done, staged, report, real_root)
    if direct:
        done, left = pulling.place(conn, remote_root, direct, root, staging, RETRY_HINT, placed,
                                   listing, early=early)
        if done is None:
            return None
        if left:                # entry by entry, like the rest
            _judge_staged(pulling.split_under(inside_direct, left)[0],
                          listing, staging, done, staged, report, real_root)
    return staged


def _judge_staged(names: list[str], listing: dict[str, Entry], staging: str, done: str,
                  staged: dict[str, _Staged], report: FetchReport, real_root: str) -> None:
    cache: dict[str, bool] = {}
    for name in names:
        r = listing[name]
        if r.type == "d":       # as listed: rsync may not have been asked for it alone
            staged[name] = _Staged("d", r.mtime_ns, (r.mode & 0o755) | 0o700)
            continue
        path = os.path.join(staging, name)
        if not _inside(staging, name, cache):
            continue
        try:
            st = os.lstat(path)
        except OSError:
            continue                # not arrived: _check_arrived tells why
        if stat.S_ISREG(st.st_mode):
            if done != "complete" and st.st_size != listing[name].size:
                continue
            mode = pulling.file_mode(st.st_mode)
            mtime = st.st_mtime_ns
            if st.st_size == r.size and mtime != r.mtime_ns:
                mtime = r.mtime_ns      # the pull's tar keeps whole seconds (see fit_to_place)
            ready = mode == stat.S_IMODE(st.st_mode) and mtime == st.st_mtime_ns
            staged[name] = _Staged("f", mtime, mode, path, ready=ready,
                                   entry=Entry("f", st.st_size, mtime, mode) if ready else None)
            report.bytes += st.st_size
        elif stat.S_ISDIR(st.st_mode):
            staged[name] = _Staged("d", st.st_mtime_ns, (st.st_mode & 0o755) | 0o700)
        elif stat.S_ISLNK(st.st_mode):
            target = os.readlink(path)
            if not pulling.link_stays_inside(real_root, name, target):
                report.skipped.add(name)
                report.refused.append(f"{name}: link to {target} leads out of the project")
                continue
            staged[name] = _Staged("l", st.st_mtime_ns, 0o777, target=target)
        else:
            report.skipped.add(name)
            report.refused.append(f"{name}: unsupported type (hard link or device)")


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


def _install_one(root: str, rel: str, s: _Staged, ours: Entry | None = None, *,
                 vacant: bool = False, made: set[str] | None = None) -> None:
    """Put one staged entry in place: files and symlinks by rename (atomic), dirs by mkdir.

    ``ours``: the manifest's entry for ``rel`` (what the sync itself put there); ``vacant``:
    the caller just saw nothing at ``rel``; ``made``: parent directories known to exist."""
    dest = os.path.join(root, rel)
    parent = os.path.dirname(dest)
    if made is None or parent not in made:
        os.makedirs(parent, exist_ok=True)
        if made is not None:
            made.add(parent)
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
    if not vacant and os.path.isdir(dest) and not os.path.islink(dest):
        # A remote file where a local directory stands. An empty one goes; one with files in
        # it is the user's (nothing we synced put it there with that name), so it stays and the
        # run says so instead of deleting a tree to make room.
        with os.scandir(dest) as it:
            if next(it, None) is not None:
                raise IsADirectoryError(f"a directory with files in it stands where the file goes "
                                        f"(move {dest} away)")
        os.rmdir(dest)
    if s.type == "f":
        if not s.ready:
            os.chmod(s.temp, s.mode)
            os.utime(s.temp, ns=(s.mtime_ns, s.mtime_ns))
        new = s.temp
    else:
        new = os.path.join(parent, f".swiftrun-link-{secrets.token_hex(4)}")
        os.symlink(s.target, new)
    if not vacant and os.path.isdir(dest):
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


def _record_placed(placed: dict[str, Entry], manifest: Manifest, report: FetchReport) -> None:
    """What ``pulling.place`` renamed straight into place is fetched like the rest: in the
    manifest (so the next upload does not send it back) and in the report."""
    manifest.entries.update(placed)
    for rel in sorted(placed):
        entry = placed[rel]
        if entry.type == "d":
            report.dirs.append(rel)
        else:
            report.files.append(rel)
            report.bytes += entry.size


def _install(local_root: Path, staged: dict[str, _Staged], listing: dict[str, Entry], manifest: Manifest,
             report: FetchReport, also: Iterable[str] = ()) -> None:
    """Move staged entries into place (parents first), then give the directories touched their
    remote mtime/mode deepest-first, and record everything installed in the manifest."""
    root = str(local_root)
    link_cache: dict[str, bool] = {}
    touched_dirs: set[str] = set()
    blocked: set[str] = set()       # directories that could not be installed
    made: set[str] = set()          # parent directories known to exist
    touched_dirs.update(also)       # parents of what went straight into place
    for rel in sorted(staged):
        s = staged[rel]
        ancestors = _ancestors(rel)
        stuck = next((a for a in ancestors if a in blocked), None) if blocked else None
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
        # a local file the sync did not put there (made or edited here, or kept out of the
        # upload by an ignore rule) is the user's just as much as an edited one
        conflict = s.type != "d" and local is not None and (
            not local.same_local(prev) if prev is not None else local.type != "d")
        try:
            if conflict and local.type == "f":
                saved = _keep_local_copy(root, rel)     # edited here and there: keep both
                report.conflicts.append(f"{rel} (your version is in {saved})")
            elif conflict:
                report.conflicts.append(rel)
            _install_one(root, rel, s, prev, vacant=local is None, made=made)
        except OSError as exc:
            blocked.add(rel)
            report.failed.append(f"{rel}: {exc}")
            continue
        link_cache.pop(rel, None)
        touched_dirs.update(ancestors)
        if s.type == "d":
            touched_dirs.add(rel)
            report.dirs.append(rel)
        else:
            manifest.entries[rel] = s.entry or _local_entry(local_root, rel)
            report.files.append(rel)
    for d in sorted(touched_dirs, key=lambda p: p.count("/"), reverse=True):
        remote = listing.get(d)
        path = os.path.join(root, d)
        if os.path.islink(path) or not os.path.isdir(path):
            continue
        if remote is not None and remote.type == "d":
            with contextlib.suppress(OSError):
                os.chmod(path, (remote.mode & 0o7777) | 0o700)
                os.utime(path, ns=(remote.mtime_ns, remote.mtime_ns))
        entry = _local_entry(local_root, d)
        if entry is not None:
            manifest.entries[d] = entry


@paused_gc()
def fetch(conn, local_root: Path | str, remote_root: str, *, state_file: Path | str,
          outputs: Iterable[str] = (), extra_dirs: Iterable[str] = (),
          timeout: float | None = 300.0, ahead: "ListAhead | None" = None) -> FetchReport:
    """Bring back what the run produced (see ``select_fetch``) in one tar stream.

    Nothing in ``local_root`` is touched until the whole stream arrived and the remote tar exited
    0; then each file replaces its old version atomically. Unsafe entries (absolute names, '..',
    symlinks pointing out of the root, anything not asked for) are skipped and listed in
    ``refused``. Fetched entries are recorded in the manifest so the next upload does not send them
    back. Failures raise RemoteError saying how to retry. ``ahead``: the listing a run made
    while swift worked (``ahead.ListAhead``): only what changed since is listed now.
    """
    t0 = time.monotonic()
    local_root, state_file = Path(local_root), Path(state_file)
    loaded: list[Manifest] = []
    early: list[Pipe] = []

    def meanwhile():            # once, though a listing ahead that could not tell called it
        if loaded:
            return
        loaded.append(Manifest.load(state_file))
        # round trip 2's shell, started while the node lists: ~10 ms off a fetch's wall time
        early.append(Pipe.early(conn))

    try:
        listing = None if ahead is None else ahead.catch_up(remote_root, timeout, meanwhile)
        if listing is None:     # none ahead, or it could not tell: the whole tree, as ever
            listing = remote_listing(conn, remote_root, timeout=timeout, meanwhile=meanwhile)
        return _fetch(conn, local_root, remote_root, state_file, listing, loaded[0], early[0],
                      outputs, extra_dirs, timeout, t0)
    finally:
        if early and not early[0].used:
            early[0].discard()


def _fetch(conn, local_root: Path, remote_root: str, state_file: Path,
           listing: dict[str, Entry], manifest: Manifest, early: Pipe, outputs, extra_dirs,
           timeout: float | None, t0: float) -> FetchReport:
    if manifest.remote_root != remote_root:
        manifest = Manifest(remote_root=remote_root)
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
    placed: dict[str, Entry] = {}       # what went straight into place (pulling.place)
    try:
        staged = None
        if pulling.worth_it(conn, len(names), sum(listing[n].size for n in names)):
            staged = _pull(conn, remote_root, names, listing, local_root, staging, report, placed,
                           early)
        if staged is None:
            staged = _stream(conn, remote_root, names, local_root, staging, report, timeout, early)
        _check_arrived(conn, remote_root, names, listing, staged.keys() | placed.keys(), report,
                       timeout, early)
        installing = True
        # the parents of the directories renamed in (not of all they hold: thousands)
        tops = [d for d in placed if d.rpartition("/")[0] not in placed]
        _install(local_root, staged, listing, manifest, report,
                 also={a for d in tops for a in _ancestors(d)} - placed.keys())
    finally:
        if placed:
            installing = True
            _record_placed(placed, manifest, report)
        # what was asked for keeps its entry: installed it matches the listing, and if it failed
        # `swiftrun fetch` retries it (and still spots a local edit as a conflict)
        if _drop_stale(manifest, listing, keep=set(names) | placed.keys()) or installing:
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
        if remote == known:         # as recorded (equal tuples: C speed), most entries
            continue
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
                   staged: dict[str, _Staged], report: FetchReport, timeout: float | None,
                   early: Pipe | None = None) -> None:
    """Remote tar skips files it cannot read (--ignore-failed-read, so one bad file does not cost
    the rest): a requested regular file that did not arrive is a failure, unless it is gone on the
    headnode now (deleted between the listing and tar). One more channel, only when one is missing."""
    missing = [n for n in names if listing[n].type == "f" and n not in staged
               and n not in report.skipped]
    if not missing:
        return
    gone: set[str] = set()
    try:
        chan = _exec(conn, _vanished_script(root_expr(remote_root)), timeout, early)
        feeder = threading.Thread(target=_feed_names, args=(chan, missing, []), daemon=True)
        feeder.start()
        data = chan.makefile("rb").read()
        feeder.join(timeout or None)
        rc, _ = _finish(chan)
        if rc == 0:
            gone = {os.fsdecode(n) for n in data.split(b"\0") if n}
    except (OSError, EOFError):
        pass            # cannot tell: report them all
    for n in missing:
        if n not in gone:
            report.failed.append(f"{n}: could not be read on the headnode (check its permissions there)")


def _stream(conn, remote_root: str, names: list[str], local_root: Path, staging: str,
            report: FetchReport, timeout: float | None,
            early: Pipe | None = None) -> dict[str, _Staged]:
    """Round trip 2: remote ``tar -c`` of ``names`` into staging; RemoteError on any failure.

    The name list goes in from a thread (tar may answer before reading it all). A failure to send
    it only matters if tar then fails too, so it is reported only as part of that failure.
    """
    errors: list[BaseException] = []
    chan = None
    what = f"fetching results from {remote_root} failed"
    try:
        chan = _exec(conn, _fetch_script(root_expr(remote_root)), timeout, early)
        feeder = threading.Thread(target=_feed_names, args=(chan, names, errors), daemon=True)
        feeder.start()
        staged = _receive(chan, names, local_root, staging, report)
        feeder.join(timeout or None)
        rc, err = _finish(chan)
    except (OSError, EOFError, tarfile.TarError) as exc:
        why = (str(exc) or type(exc).__name__) + _remote_reason(chan)
        raise RemoteError(f"{what}: {why}", hint=RETRY_HINT) from exc
    if rc != 0:
        why = "the connection dropped" if rc == -1 else f"remote tar exit {rc}: {err[-500:] or 'no message'}"
        if errors:
            why += f"; sending the file list failed: {errors[0]}"
        raise RemoteError(f"{what} ({why})", hint=RETRY_HINT)
    return staged
