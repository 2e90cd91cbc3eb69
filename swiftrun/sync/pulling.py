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
"""

from __future__ import annotations

import bisect
import os
import shlex
import shutil
import stat
import subprocess

from swiftrun.errors import RemoteError
from swiftrun.sync.channel import root_expr
from swiftrun.sync.manifest import Entry, _ancestors

NO_RSYNC_EXIT = 76      # remote: no rsync there, nothing done: use the tar stream
NO_ROOT_EXIT = 66       # remote: the root is gone
# Below these a tar stream on the open master is cheaper (rsync starts two processes a side).
PULL_MIN_FILES = 200
PULL_MIN_BYTES = 4 * 2**20


def worth_it(link, count: int, size: int) -> bool:
    return (hasattr(link, "rsh") and shutil.which("rsync") is not None
            and (count >= PULL_MIN_FILES or size >= PULL_MIN_BYTES))


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


def place(link, remote_root: str, dirs: list[str], local_root: str, staging: str, hint: str,
          placed: dict[str, Entry]) -> tuple[str | None, list[str]]:
    """rsync ``dirs`` (from ``direct_dirs``) into ``staging`` under the rules of ``INTO_PLACE``,
    then rename each whole into the project if its path there is still vacant: one rename per
    directory, so it appears complete or not at all. ``placed`` gets every entry now under
    the renamed ones. Returns ``rsync_pull``'s result (None: no rsync there, nothing done) and
    the directories left in staging (the transfer was partial, or something now stands at the
    path locally): the caller judges and installs what they hold entry by entry."""
    for d in dirs:
        os.makedirs(os.path.join(staging, os.path.dirname(d)), exist_ok=True)
    done = rsync_pull(link, remote_root, dirs, staging, hint, into_place=True)
    if done != "complete":
        return done, list(dirs) if done else []
    left = []
    for d in dirs:
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
        _record_tree(dest, d, placed)
    return done, left


def _record_tree(path: str, rel: str, into: dict[str, Entry]) -> None:
    """Every entry at and under ``path`` (named from ``rel``), as it is on disk now, links not
    followed. Each directory is read through its own descriptor, so an entry costs one
    ``fstatat`` of its bare name, not a lookup of its whole path."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        into[rel] = Entry.from_stat(os.fstat(fd))
        _record_dir(fd, rel, into)
    finally:
        os.close(fd)


def _record_dir(fd: int, rel: str, into: dict[str, Entry]) -> None:
    with os.scandir(fd) as it:
        for de in it:
            here = f"{rel}/{de.name}"
            try:
                st = de.stat(follow_symlinks=False)
                if stat.S_ISLNK(st.st_mode):
                    into[here] = Entry.from_stat(st, os.readlink(de.name, dir_fd=fd))
                    continue
                entry = Entry.from_stat(st)
                if entry is None:
                    continue
                into[here] = entry
                if entry.type == "d":
                    sub = os.open(de.name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
                    try:
                        _record_dir(sub, here, into)
                    finally:
                        os.close(sub)
            except OSError:
                continue        # gone meanwhile: not placed, the check after says so
