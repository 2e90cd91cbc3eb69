"""A full upload as one pipeline: scan, judge, archive and send at once.

A full upload (a new cluster's first, or one after the headnode's copy moved on) has nothing on
the headnode to send deltas against: it is a stream of whole files. Python's tarfile spent its
time per member, rsync builds its whole file list before the far side writes a file, and both
waited for the scan. Here the scan judges each directory (secrets refused by content, as ever)
and hands its names to GNU tar, which reads and archives them while the rest of the tree is
still being scanned; the stream goes over the node's open OpenSSH master into the tar stream's
own remote script (sync-id, ``tar -x``). 20 000 files of 1 KB on this machine's loopback: see
bench/bench_transfer.py's full-2k and full-20k.

A secret found part way stops the pipeline: tar and the remote end are killed before the remote
script writes a sync-id (the next upload is full again), and the error names the file. The
secret never goes; files judged clean before it may already be on the headnode, as after an
interrupted upload. The run itself refuses such a tree before anything is launched
(``Runner.check_tree``).

What tar sends is what the scan saw, read again by tar: a file changed in between goes as it is
then (tar says "file changed as we read it"), and the manifest keeps what the scan saw, so the
next upload sends it again. A link that leads out of the tree goes as the file it points at
(the scan's rule): those go in a second archive read with ``-h``, which the remote ``tar -x -i``
reads on after the first one's end.
"""

from __future__ import annotations

import functools
import operator
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Callable

from swiftrun.errors import RemoteError
from swiftrun.sync.channel import Pipe, last_line, widen
from swiftrun.sync.ignore import IgnoreRules
from swiftrun.sync.manifest import Entry, walk
from swiftrun.sync.sensitive import Judge

# posix format: mtimes to the nanosecond, so the remote listing equals the manifest tuple for
# tuple (a C compare per entry; whole seconds there made each of a 20 000-file project's
# entries a Python call in fetch's two passes: +31 ms per warm fetch, against ~100 ms once per
# cluster for a pax header per file); atime and ctime left out of its headers; 64 KiB records
# (one pipe write each, not one per 10 KiB); only the names given, verbatim (one that starts
# with "-" is a name, not an option), NUL-separated.
TAR_CREATE = ["-c", "-f", "-", "-b", "128", "--format=posix",
              "--pax-option=delete=atime,delete=ctime",
              "--no-recursion", "--verbatim-files-from", "--null", "-T", "-"]
TAR_CHANGED = 1                 # GNU tar: some file changed while it was read


@functools.lru_cache(maxsize=1)
def gnu_tar() -> str | None:
    """GNU tar's path on this machine, or None (BSD tar, busybox: the other transports)."""
    path = shutil.which("tar")
    if path is None:
        return None
    try:
        out = subprocess.run([path, "--version"], stdin=subprocess.DEVNULL, capture_output=True,
                             timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    return path if out.startswith(b"tar (GNU tar)") else None


_SIZE = operator.attrgetter("size")


def _names(rels: list[str]) -> bytes:
    return "\0".join(rels).encode("utf-8", "surrogateescape") + b"\0" if rels else b""


class TarFailed(RemoteError):
    """GNU tar on this side failed on its own (a file it could not read): its words."""


class Pipeline:
    """GNU tar reading names from this side and writing into the remote script's stdin."""

    def __init__(self, tar: str, local_root: Path, chan: Pipe):
        self.tar, self.local_root, self.chan = tar, local_root, chan
        self.err = tempfile.TemporaryFile()
        self.proc: subprocess.Popen | None = None

    def start(self, *extra: str) -> None:
        self.proc = subprocess.Popen([self.tar, *TAR_CREATE, *extra], cwd=self.local_root,
                                     stdin=subprocess.PIPE, stdout=self.chan.proc.stdin,
                                     stderr=self.err)

    def send(self, rels: list[str]) -> None:
        if rels:
            self.proc.stdin.write(_names(rels))

    def end(self) -> None:
        """All names given: wait for tar; its failure (other than a file that changed while it
        was read) is this upload's."""
        self.proc.stdin.close()
        rc = self.proc.wait()
        if rc < 0:          # killed, SIGPIPE as a rule: the far end went away; it says why
            raise BrokenPipeError(f"local tar ended by signal {-rc}")
        if rc not in (0, TAR_CHANGED):
            self.err.seek(0)
            said = last_line(self.err.read().decode("utf-8", "replace"))
            raise TarFailed(f"upload failed: local tar exited {rc}: {said}",
                              hint="check that the file named can be read, then run again; "
                                   "the next upload sends everything")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def close(self) -> None:
        self.err.close()


def stream_full(chan: Pipe, tar: str, local_root: Path, rules: IgnoreRules, judge: Judge,
                on_bytes: Callable[[int], None] | None = None) -> dict[str, Entry]:
    """Scan ``local_root``, judge and send it directory by directory into ``chan`` (a remote
    ``tar -x -i`` already started), then end ``chan``'s input. The scanned entries (what the
    manifest records). ``on_bytes(total)``: after each directory, the file bytes handed to tar
    so far. Any error kills tar and the remote end first (nothing is left half-sent that the
    remote script would take for a finished upload), except a broken pipe (OSError): ``chan``
    is then left to the caller, to hear from the remote end why (``channel._remote_reason``)."""
    local: dict[str, Entry] = {}
    stats: dict[str, os.stat_result] = {}
    as_files: list[str] = []        # links out of the tree: the files they point at (tar -h)
    pipe = Pipeline(tar, local_root, chan)
    try:
        chan.proc.stdin.flush()     # the script ahead of tar's bytes in the same pipe
        widen(chan.proc.stdin)
        pipe.start()
        total = 0
        for names in walk(local_root, rules, local, stats):
            files = [r for r in names if local[r].type == "f"]
            judge.check(files, stats)
            followed = set(files).difference(stats)     # at C speed: usually empty
            if followed:
                as_files += [r for r in files if r in followed]
                names = [r for r in names if r not in followed]
            pipe.send(names)
            if on_bytes is not None and files:
                total += sum(map(_SIZE, map(local.__getitem__, files)))
                on_bytes(total)
        pipe.end()
        if as_files:
            pipe.start("-h")
            pipe.send(as_files)
            pipe.end()
        chan.shutdown_write()
    except (OSError, EOFError):
        pipe.kill()
        raise
    except BaseException:
        pipe.kill()
        chan.kill()
        raise
    finally:
        pipe.close()
    return local
