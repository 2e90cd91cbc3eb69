"""Fetch's bulk transport: rsync over the node's open OpenSSH master, into a staging directory.

Many outputs, or large ones, come back faster by rsync than by a tar stream read in Python:
both ends are C, the bytes go straight to disk. It only ever writes into fetch's private
staging directory (``<root>/.swiftrun/fetch-*``); everything the conflict rules decide (what
replaces what, a local edit kept aside, nothing written through a symlink) still happens in
``fetching._install``, from what was staged. Links come as links and are judged before they
are installed.

What rsync is asked for (:func:`transfer_list`): a directory whose whole subtree was selected
goes as one name that rsync recurses into, the rest as single files. Given 5 000 single names
rsync builds its whole file list before the first byte moves; given their directory it sends
the list directory by directory (incremental recursion) while the files flow: 5 000 new 1 KB
outputs came ~1.7x faster here. Directories are never needed from rsync for their own sake:
their mode and mtime are in the listing. Anything a recursed directory holds that was not
selected (a file written after the listing) lands in staging and stays there.

A new output directory nothing stands in the way of (``place``) comes by GNU tar where this
side has it: ``tar -c`` of the directory on the node, ``tar -x`` into staging here, nothing
between them but the master's channel (through a 1 MiB pipe, ``channel.widen``). For 5 000
files of 1 KB that took 84 ms [72-94] here against rsync's 180 [132-205]: rsync's processes
exchange a file list and per-file requests before the bytes of a new file flow. Whichever brought it, the staged directory is walked once before it
is renamed in (``fit_to_place``): that walk is what the manifest records, and it holds the
rules rsync was told (``INTO_PLACE``) to whatever tar wrote.
"""

from __future__ import annotations

import bisect
import os
import shlex
import shutil
import stat
import subprocess
import tempfile

from swiftrun.errors import RemoteError
from swiftrun.sync import bulk
from swiftrun.sync.channel import Pipe, _exec, last_line, root_expr, widen
from swiftrun.sync.manifest import Entry, _ancestors

NEVER_FETCH = frozenset({".swiftrun", ".git", "__pycache__"})   # path components never brought back
NO_RSYNC_EXIT = 76      # remote: no rsync there, nothing done: use the tar stream
NO_TAR_EXIT = 77        # remote: no tar there, nothing done: rsync instead
NO_ROOT_EXIT = 66       # remote: the root is gone
# Below these a tar stream on the open master is cheaper (rsync starts two processes a side).
PULL_MIN_FILES = 200
PULL_MIN_BYTES = 4 * 2**20


def worth_it(link, count: int, size: int) -> bool:
    return (hasattr(link, "rsh")
            and (bulk.gnu_tar() is not None or shutil.which("rsync") is not None)
            and (count >= PULL_MIN_FILES or size >= PULL_MIN_BYTES))


def pull(link, remote_root: str, names: list[str], dest: str, hint: str, *,
         into_place: bool = False, early: Pipe | None = None) -> str | None:
    """Bring ``names`` (a directory with all it holds) into ``dest`` (fetch's staging): by
    ``tar_pull`` where both ends have GNU tar, else (or when tar saw a file change while it
    read it) by ``rsync_pull``. Returns "complete" or "partial" (see ``rsync_pull``); None
    when neither could run (nothing was done: the caller uses the Python tar stream)."""
    done = tar_pull(link, remote_root, names, dest, hint, early=early)
    if done == "changed":       # may hold a zero-padded file: rsync brings these again
        for n in names:
            path = os.path.join(dest, n)
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)
            elif os.path.lexists(path):
                os.unlink(path)
    if done == "complete":
        return done
    if shutil.which("rsync") is None:
        return None
    return rsync_pull(link, remote_root, names, dest, hint, into_place=into_place)


def _rsync_path(root: str) -> str:
    return "; ".join([
        f"cd {root} || exit {NO_ROOT_EXIT}",
        f"command -v rsync >/dev/null 2>&1 || {{ echo swiftrun-no-rsync >&2; exit {NO_RSYNC_EXIT}; }}",
        'exec rsync "$@"'])


def whole_dirs(names: list[str], kinds: dict[str, str]) -> set[str]:
    """The selected directories none of whose descendants (in ``kinds``, the listing's type of
    every remote path) was left out of ``names``."""
    dirs = {n for n in names if kinds.get(n) == "d"}
    if not dirs:
        return set()
    chosen = set(names)
    partial = {a for rel in kinds if rel not in chosen for a in _ancestors(rel) if a in dirs}
    return dirs - partial


def under(rel: str, dirs: set[str]) -> bool:
    """``rel`` lies inside one of ``dirs``."""
    return any(a in dirs for a in _ancestors(rel))


def split_under(names: list[str], dirs) -> tuple[list[str], list[str]]:
    """``names`` (sorted) split into those that are one of ``dirs`` or lie inside one, and the
    rest, keeping their order. Everything inside ``d`` sorts between ``d/`` and ``d0`` ('0'
    follows '/'), so each directory costs two bisections, not a test per name."""
    inside: list[str] = []
    spans = []
    for d in sorted(dirs):
        lo, hi = bisect.bisect_left(names, d + "/"), bisect.bisect_left(names, d + "0")
        at = bisect.bisect_left(names, d)
        if at < len(names) and names[at] == d:
            spans.append((at, at + 1))
        spans.append((lo, hi))
    spans.sort()
    rest, pos = [], 0
    for lo, hi in spans:
        if lo > pos:
            rest += names[pos:lo]
        inside += names[max(lo, pos):hi]
        pos = max(pos, hi)
    rest += names[pos:]
    return inside, rest


def transfer_list(names: list[str], kinds: dict[str, str]) -> list[str]:
    """What to hand rsync for ``names``: each whole directory (``whole_dirs``) once, in place of
    its subtree; every other selected file or link by itself; partly selected directories not
    at all (their selected files bring them along)."""
    whole = whole_dirs(names, kinds)
    out = []
    for n in names:
        if whole and under(n, whole):
            continue            # under a directory that goes whole
        if n in whole or kinds.get(n) != "d":
            out.append(n)
    return out


# A new directory that goes whole (``into_place``): what the staging path's per-entry rules do,
# said to rsync, so the directory can be renamed into the project at once. Modes as the tar
# data filter leaves them (no setuid/setgid/sticky, no group or other write, the owner may read
# and write), links leading out of the tree skipped, the paths fetch never brings back left
# there, and the parents of what is named left alone (the caller made them).
INTO_PLACE = ["--chmod=Fu+rw,Fgo-w,Fug-s,F-t,Du+rwx,Dgo-w,Dug-s,D-t", "--safe-links",
              "--no-implied-dirs",
              "--exclude=.swiftrun", "--exclude=.git", "--exclude=__pycache__"]


def rsync_pull(link, remote_root: str, names: list[str], dest: str, hint: str, *,
               into_place: bool = False) -> str | None:
    """Bring ``names`` (relative to ``remote_root``; a directory with all it holds, see
    ``transfer_list``) into ``dest``, keeping their paths, modes and mtimes: "complete", or
    "partial" when some could not be read there or vanished meanwhile (exit 23, 24: the caller
    finds out which); None when the node has no rsync (nothing was done); RemoteError when
    rsync failed. ``dest`` is always fetch's staging directory (private and new), so files are
    written in place, without rsync's temporary file and rename per file (5 000 renames were
    ~5% of a 5 000-file fetch); after a partial transfer a staged file may be cut short: the
    caller then keeps only files of the size the listing said. ``into_place``: the rules of
    ``INTO_PLACE`` too (for ``place``)."""
    argv = ["rsync", "-lptr", "--files-from=-", "--from0", "--timeout=300", "--inplace",
            *(INTO_PLACE if into_place else ()),
            "-e", link.rsh, "--rsync-path",
            "sh -c " + shlex.quote(_rsync_path(root_expr(remote_root))) + " sh",
            f"{link.target.host}:.", dest + "/"]
    listing = b"".join(os.fsencode(n) + b"\0" for n in names)
    what = f"fetching results from {remote_root} failed"
    try:
        proc = subprocess.run(argv, input=listing, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE)
    except OSError as exc:
        raise RemoteError(f"{what}: {exc}", hint=hint) from exc
    err = proc.stderr.decode("utf-8", "replace")
    if "swiftrun-no-rsync" in err:
        return None
    if proc.returncode == NO_ROOT_EXIT:
        raise RemoteError(f"{what}: {remote_root} does not exist on the headnode", hint=hint)
    if proc.returncode not in (0, 23, 24):
        lines = [ln.strip() for ln in err.strip().splitlines() if ln.strip()]
        said = [ln for ln in lines if not ln.startswith("rsync error:")] or lines
        why = ("the connection dropped" if proc.returncode == 255
               else f"rsync exit {proc.returncode}: {said[0] if said else 'no message'}")
        raise RemoteError(f"{what} ({why})", hint=hint)
    return "complete" if proc.returncode == 0 else "partial"


def file_mode(mode: int) -> int:
    """What tarfile's data filter leaves of a regular file's mode: no setuid/setgid/sticky, no
    group or other write, owner read-write, and execute for others only if the owner has it."""
    mode = (mode & 0o755) | 0o600
    return mode if mode & 0o100 else mode & ~0o011


def link_stays_inside(real_root: str, rel: str, target: str) -> bool:
    """A link at ``rel`` to ``target`` is relative and resolves inside the project."""
    lands = os.path.realpath(os.path.join(real_root, os.path.dirname(rel), target))
    return not os.path.isabs(target) and os.path.commonpath([real_root, lands]) == real_root


def direct_dirs(names: list[str], listing: dict[str, Entry], kinds: dict[str, str],
                local_root: str, inside) -> list[str]:
    """The whole directories that may go into the project by one rename each (``place``): the
    topmost of ``whole_dirs``, with nothing standing at their path locally, their parents real
    directories inside the root (``inside(rel)``), every file's mode one the data filter keeps
    as it is and every link leading inside the project. A Swift run's new output directory
    is the common case; anything else is installed entry by entry under the rules there.
    ``kinds``: the listing's type of every path, as ``whole_dirs`` takes it."""
    whole = whole_dirs(names, kinds)
    ok = [d for d in whole if not under(d, whole)
          and not os.path.lexists(os.path.join(local_root, d)) and inside(d)]
    if not ok:
        return []
    real_root = os.path.realpath(local_root)
    names = sorted(names)
    chosen = []
    for d in ok:
        held, _ = split_under(names, [d])
        if all(file_mode(e.mode) == e.mode if e.type == "f" else
               e.type != "l" or link_stays_inside(real_root, n, e.target or "")
               for n, e in ((n, listing[n]) for n in held)):
            chosen.append(d)
    return sorted(chosen)


# GNU tar both ends. Create: the named directories and all they hold (what the run wrote
# after the listing too: the walk takes that out again), never the paths fetch leaves there,
# hard links as files, names verbatim and NUL-separated, in 64 KiB records (one channel write
# each, not one per 10 KiB: ~20 ms of 5 000 small files). gnu format, not posix: a pax header
# per file for its nanosecond mtime cost ~30 ms more at 5 000 files than setting the mtimes
# the listing holds afterwards (``fit_to_place``), which is also why the local tar does not
# set them (--touch). Extract: modes as archived, owned by whoever fetches; the walk after
# applies the rules to what it wrote (a path fetch never brings back among them, there only if
# the node's tar ignored its --exclude, sends the directory to the per-entry rules).
_NEVER = [f"--exclude={n}" for n in sorted(NEVER_FETCH)]
TAR_PULL_CREATE = ["-c", "-f", "-", "-b", "128", "--format=gnu", "--hard-dereference",
                   "--numeric-owner", "--ignore-failed-read", *_NEVER,
                   "--verbatim-files-from", "--null", "-T", "-"]
TAR_PULL_EXTRACT = ["-x", "-f", "-", "-b", "128", "--preserve-permissions", "--no-same-owner",
                    "--touch"]


def _tar_script(root: str) -> str:
    return "; ".join([
        f"cd {root} || exit {NO_ROOT_EXIT}",
        f"command -v tar >/dev/null 2>&1 || {{ echo swiftrun-no-tar >&2; exit {NO_TAR_EXIT}; }}",
        "exec tar " + " ".join(shlex.quote(a) for a in TAR_PULL_CREATE)])


def tar_pull(link, remote_root: str, dirs: list[str], dest: str, hint: str, *,
             early: Pipe | None = None) -> str | None:
    """Bring ``dirs`` (relative to ``remote_root``) with all they hold into ``dest`` (fetch's
    private staging directory) by GNU tar on both ends: "complete"; "changed" when the remote
    tar saw a file change or shrink while it read it (it pads a shrunk file with zeros to its
    old size, so what arrived cannot be trusted: the caller takes these by rsync); None when
    either end has no tar (nothing was done); RemoteError when the transfer failed.

    What the local tar writes stays inside ``dest``: GNU tar strips a leading "/" and refuses a
    member with ".." in its name, and a link leading up or out is written as a placeholder
    until the end, so no member is written through it. What it wrote is judged by
    ``fit_to_place`` before anything leaves staging. ``early``: a shell to run it on (see
    ``channel._exec``)."""
    tar = bulk.gnu_tar()
    if tar is None:
        return None
    what = f"fetching results from {remote_root} failed"
    chan = _exec(link, _tar_script(root_expr(remote_root)), early=early)
    widen(chan.stdout)
    with tempfile.TemporaryFile() as err:
        try:
            proc = subprocess.Popen([tar, *TAR_PULL_EXTRACT, "-C", dest], stdin=chan.stdout,
                                    stdout=subprocess.DEVNULL, stderr=err)
        except OSError as exc:
            chan.kill()
            chan.finish()
            raise RemoteError(f"{what}: {exc}", hint=hint) from exc
        chan.stdout.close()         # tar reads it now; the remote end sees its going
        try:
            chan.sendall(b"".join(os.fsencode(d) + b"\0" for d in dirs))
        except OSError:
            pass                    # the remote end went: its exit status says why
        chan.shutdown_write()
        local_rc = proc.wait()
        rc, remote_err = chan.finish()
        err.seek(0)
        local_err = err.read().decode("utf-8", "replace")
    if rc == NO_TAR_EXIT and "swiftrun-no-tar" in remote_err:
        return None
    if rc == NO_ROOT_EXIT:
        raise RemoteError(f"{what}: {remote_root} does not exist on the headnode", hint=hint)
    if rc == -1:
        raise RemoteError(f"{what} (the connection dropped)", hint=hint)
    if local_rc != 0:           # first: the remote tar's own failure (a broken pipe) follows
        raise RemoteError(f"{what} (tar here exited {local_rc}: {last_line(local_err)})", hint=hint)
    if rc not in (0, bulk.TAR_CHANGED):
        raise RemoteError(f"{what} (remote tar exit {rc}: {last_line(remote_err)})", hint=hint)
    return "complete" if rc == 0 else "changed"


def place(link, remote_root: str, dirs: list[str], local_root: str, staging: str, hint: str,
          placed: dict[str, Entry], listing: dict[str, Entry], *,
          early: Pipe | None = None) -> tuple[str | None, list[str]]:
    """Bring ``dirs`` (from ``direct_dirs``) into ``staging`` (``pull``: GNU tar, or rsync told
    the rules of ``INTO_PLACE``), then rename each whole into the project if it passes
    ``fit_to_place`` and its path there is still vacant: one rename per directory, so it
    appears complete or not at all. ``placed`` gets every entry now under the renamed ones.
    Returns how the transfer went ("complete", "partial"; None: no rsync there, nothing done)
    and the directories left in staging (the transfer was partial, something there breaks the
    rules, or something now stands at the path locally): the caller judges and installs what
    they hold entry by entry."""
    for d in dirs:
        os.makedirs(os.path.join(staging, os.path.dirname(d)), exist_ok=True)
    done = pull(link, remote_root, dirs, staging, hint, into_place=True, early=early)
    if done != "complete":
        return done, list(dirs) if done else []
    left = []
    real_root = os.path.realpath(local_root)
    for d in dirs:
        got: dict[str, Entry] = {}
        if not fit_to_place(os.path.join(staging, d), d, got, real_root, listing):
            left.append(d)
            continue
        dest = os.path.join(local_root, d)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        if os.path.lexists(dest):
            left.append(d)      # made locally meanwhile: the per-entry rules decide
            continue
        try:
            os.rename(os.path.join(staging, d), dest)
        except OSError:
            left.append(d)
            continue
        placed.update(got)
    return done, left


def fit_to_place(path: str, rel: str, into: dict[str, Entry], real_root: str,
                 listing: dict[str, Entry]) -> bool:
    """Record the staged tree at ``path`` (named from ``rel``) into ``into`` and say whether it
    may go into the project as it is: only regular files, directories and links that lead
    inside ``real_root``, none of the paths fetch never brings back. False: the per-entry rules
    decide (they refuse what breaks them, by name). Changed here, in staging, on the way
    (``_Walk``): modes to what the data filter leaves; the mtime the ``listing`` holds on every
    file of the listed size and every listed directory (tar's gnu format keeps whole seconds
    only, and the local tar leaves them to this); and what the listing does not hold (written
    on the node after it) taken out, as the per-entry path leaves it in staging: the next
    fetch brings it, with its own listing's mtime. So the manifest records what the next
    listing compares with. A file the node rewrote after the listing at the same size gets
    the listed mtime too: the next listing then differs from the manifest and the next fetch
    replaces it (the local copy is as recorded, so that is no conflict); one rewritten while
    tar read it makes tar say so, and rsync brings the directory instead (``place``)."""
    walk = _Walk(into, listing)
    try:
        walk.tree(path, rel)
    except OSError:
        return False
    if walk.odd:
        return False
    return all(link_stays_inside(real_root, n, into[n].target or "") for n in walk.links)


class _Walk:
    """One walk of a staged tree: each directory read through its own descriptor, so an entry
    costs one ``fstatat`` of its bare name (and, where needed, one ``fchmodat``/``utimensat``),
    not a lookup of its whole path."""

    def __init__(self, into: dict[str, Entry], listing: dict[str, Entry]):
        self.into, self.listing = into, listing
        self.links: list[str] = []
        self.odd: list[str] = []        # neither file, directory nor link; or a NEVER_FETCH name

    def tree(self, path: str, rel: str) -> None:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        try:
            self._dir(fd, rel)
            self.into[rel] = self._fit_dir(os.fstat(fd), rel, fd)
        finally:
            os.close(fd)

    def _fit_dir(self, st: os.stat_result, rel: str, fd: int) -> Entry:
        """The entry for the directory open as ``fd`` (``st``) at ``rel``, after the rules."""
        mode = stat.S_IMODE(st.st_mode)
        want = (mode & 0o755) | 0o700
        r = self.listing.get(rel)
        mtime = r.mtime_ns if r is not None and r.type == "d" else st.st_mtime_ns
        if want != mode:
            os.fchmod(fd, want)
        if mtime != st.st_mtime_ns:
            os.utime(fd, ns=(mtime, mtime))
        return Entry("d", 0, mtime, want)

    def _dir(self, fd: int, rel: str) -> None:
        into, listing, utime = self.into, self.listing, os.utime
        with os.scandir(fd) as it:
            for de in it:
                name = de.name
                here = f"{rel}/{name}"
                if name in NEVER_FETCH:
                    self.odd.append(here)
                    continue
                st = de.stat(follow_symlinks=False)
                r = listing.get(here)
                if r is None:           # written after the listing
                    if stat.S_ISDIR(st.st_mode):
                        shutil.rmtree(name, dir_fd=fd)
                    else:
                        os.unlink(name, dir_fd=fd)
                    continue
                if stat.S_ISREG(st.st_mode):
                    # file_mode, inline: one call fewer for each of thousands of files
                    mode = st.st_mode & 0o7777
                    want = (mode & 0o755) | 0o600
                    if not want & 0o100:
                        want &= ~0o011
                    if want != mode:
                        os.chmod(name, want, dir_fd=fd)
                    size = st.st_size
                    mtime = st.st_mtime_ns
                    if r[0] == "f" and r[1] == size and r[2] != mtime:
                        mtime = r[2]
                        utime(name, ns=(mtime, mtime), dir_fd=fd)
                    into[here] = Entry("f", size, mtime, want)
                elif stat.S_ISDIR(st.st_mode):
                    sub = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
                    try:
                        self._dir(sub, here)        # its entries first: removals move its mtime
                        into[here] = self._fit_dir(os.fstat(sub), here, sub)
                    finally:
                        os.close(sub)
                elif stat.S_ISLNK(st.st_mode):
                    into[here] = Entry.from_stat(st, os.readlink(name, dir_fd=fd))
                    self.links.append(here)
                else:
                    self.odd.append(here)
