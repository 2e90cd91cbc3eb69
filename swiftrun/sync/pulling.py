"""Fetch's bulk transport: rsync over the node's open OpenSSH master, into a staging directory.

Many outputs, or large ones, come back faster by rsync than by a tar stream read in Python:
both ends are C, the bytes go straight to disk. It only ever writes into fetch's private
staging directory (``<root>/.swiftrun/fetch-*``); everything the conflict rules decide (what
replaces what, a local edit kept aside, nothing written through a symlink) still happens in
``fetching._install``, from what was staged. Only the listed paths come (no recursion), as
``tar --no-recursion`` did; links come as links and are judged before they are installed.
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


def rsync_pull(link, remote_root: str, names: list[str], staging: str, hint: str) -> str | None:
    """Bring ``names`` (relative to ``remote_root``) into ``staging``, keeping their paths,
    modes and mtimes: "complete", or "partial" when some could not be read there or vanished
    meanwhile (exit 23, 24: the caller finds out which); None when the node has no rsync
    (nothing was done); RemoteError when rsync failed. Files are written in place (staging is
    private and new), so after a partial transfer a staged file may be cut short: the caller
    then keeps only files of the size the listing said."""
    argv = ["rsync", "-lptd", "--files-from=-", "--from0", "--inplace", "--timeout=300",
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
