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

import os
import shlex
import shutil
import subprocess

from swiftrun.errors import RemoteError
from swiftrun.sync.channel import root_expr
from swiftrun.sync.manifest import Entry, _ancestors, _local_entry

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


# Straight into the project (``into_place``): what the staging path does by itself, said to
# rsync. Modes as the tar data filter leaves them (no setuid/setgid/sticky, no group or other
# write, the owner may read and write), links leading out of the tree skipped, the paths fetch
# never brings back left there, nothing that exists locally replaced, and the parents of what
# is named left alone (they exist: the caller made them).
INTO_PLACE = ["--chmod=Fu+rw,Fgo-w,Fug-s,F-t,Du+rwx,Dgo-w,Dug-s,D-t", "--safe-links",
              "--ignore-existing", "--no-implied-dirs",
              "--exclude=.swiftrun", "--exclude=.git", "--exclude=__pycache__"]


def rsync_pull(link, remote_root: str, names: list[str], dest: str, hint: str, *,
               into_place: bool = False) -> str | None:
    """Bring ``names`` (relative to ``remote_root``; a directory with all it holds, see
    ``transfer_list``) into ``dest``, keeping their paths, modes and mtimes: "complete", or
    "partial" when some could not be read there or vanished meanwhile (exit 23, 24: the caller
    finds out which); None when the node has no rsync (nothing was done); RemoteError when
    rsync failed. Into staging (private and new) files are written in place, so after a
    partial transfer a staged file may be cut short: the caller then keeps only files of the
    size the listing said. ``into_place``: ``dest`` is the project itself, and each file
    appears whole under its name (rsync's temporary file and rename) or not at all."""
    argv = ["rsync", "-lptr", "--files-from=-", "--from0", "--timeout=300",
            *(INTO_PLACE if into_place else ["--inplace"]),
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
    """The whole directories that may go straight into the project, skipping staging: the
    topmost of ``whole_dirs``, with nothing standing at their path locally, their parents real
    directories inside the root (``inside(rel)``), every file's mode one the data filter keeps
    as it is and every link leading inside the project. A Swift run's new output directory
    is the common case; anything else goes through staging and the per-entry rules there.
    ``kinds``: the listing's type of every path, as ``whole_dirs`` takes it."""
    whole = whole_dirs(names, kinds)
    ok = {d for d in whole if not under(d, whole)
          and not os.path.lexists(os.path.join(local_root, d)) and inside(d)}
    if not ok:
        return []
    real_root = os.path.realpath(local_root)
    for n in names:
        e = listing[n]
        if e.type == "d" or not ok:
            continue
        top = next((a for a in _ancestors(n) if a in ok), None)
        if top is None:
            continue
        if (e.type == "f" and file_mode(e.mode) != e.mode) or (
                e.type == "l" and not link_stays_inside(real_root, n, e.target or "")):
            ok.discard(top)
    return sorted(ok)


def place(link, remote_root: str, dirs: list[str], local_root: str, hint: str,
          placed: dict[str, Entry]) -> str | None:
    """rsync ``dirs`` (from ``direct_dirs``) straight into the project; ``placed`` gets every
    entry now under them (even when rsync then failed: what it put there stays, each file
    whole). The result is ``rsync_pull``'s."""
    for d in dirs:
        os.makedirs(os.path.join(local_root, os.path.dirname(d)), exist_ok=True)
    try:
        return rsync_pull(link, remote_root, dirs, local_root, hint, into_place=True)
    finally:
        for d in dirs:
            found = [d]
            for here, subdirs, files in os.walk(os.path.join(local_root, d)):
                rel_here = os.path.relpath(here, local_root)
                found += [f"{rel_here}/{name}" for name in subdirs + files]
            for rel in found:
                entry = _local_entry(local_root, rel)
                if entry is not None:
                    placed[rel] = entry
