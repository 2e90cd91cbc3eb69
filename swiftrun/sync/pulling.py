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


def transfer_list(names: list[str], kinds: dict[str, str]) -> list[str]:
    """What to hand rsync for ``names`` (selected paths, ``kinds`` the listing's type of every
    remote path): each selected directory none of whose descendants was left out, once, in
    place of its subtree; every other selected file or link by itself; partly selected
    directories not at all (their selected files bring them along)."""
    chosen = set(names)
    dirs = {n for n in names if kinds.get(n) == "d"}
    if dirs:
        partial: set[str] = set()
        for rel in kinds:
            if rel in chosen:
                continue
            parts = rel.split("/")
            for i in range(1, len(parts)):
                anc = "/".join(parts[:i])
                if anc in dirs:
                    partial.add(anc)
        whole = dirs - partial
    else:
        whole = set()
    out = []
    for n in names:         # sorted: a directory comes before what is under it
        parts = n.split("/")
        if any("/".join(parts[:i]) in whole for i in range(1, len(parts))):
            continue            # under a directory that goes whole
        if n in whole or kinds.get(n) != "d":
            out.append(n)
    return out


def rsync_pull(link, remote_root: str, names: list[str], staging: str, hint: str) -> str | None:
    """Bring ``names`` (relative to ``remote_root``; a directory with all it holds, see
    ``transfer_list``) into ``staging``, keeping their paths,
    modes and mtimes: "complete", or "partial" when some could not be read there or vanished
    meanwhile (exit 23, 24: the caller finds out which); None when the node has no rsync
    (nothing was done); RemoteError when rsync failed. Files are written in place (staging is
    private and new), so after a partial transfer a staged file may be cut short: the caller
    then keeps only files of the size the listing said."""
    argv = ["rsync", "-lptr", "--files-from=-", "--from0", "--inplace", "--timeout=300",
            "-e", link.rsh, "--rsync-path",
            "sh -c " + shlex.quote(_rsync_path(root_expr(remote_root))) + " sh",
            f"{link.target.host}:.", staging + "/"]
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
