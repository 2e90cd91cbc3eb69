"""A warm run's fetch listing, made mostly while swift runs.

A fetch compares what the headnode holds with the manifest, so it lists the whole remote tree.
For a 20 000-file project that is a listing of 20 000 entries after every run (~75 ms here),
most of them inputs that nothing touched; the hand-made `rsync` of the outputs does not pay it.
So a run lists the tree while swift works (``ListAhead.start``), and once swift has finished
asks the node only for what changed since: every entry whose ctime is not older than the start
of that listing, and every entry of a directory whose ctime is not (a directory's ctime moves
when an entry is made, removed or renamed in it). ``catch_up`` merges the two into what a full
listing would have said.

Why that is the whole truth: an entry whose own ctime and whose directory's ctime are both older
than the listing ahead was already there, unchanged, when it was listed, unless an ancestor was
renamed meanwhile. A renamed directory's ctime moves, so its children come in the change
listing; a child directory there with an old ctime at a path the listing ahead did not hold (by
inode) was moved in, whole, and the merge gives up: the caller lists everything. So does a
clock that went back, and a directory on a file system whose ctimes are not the kernel's own
(s3fs, NFS, overlay: only ext2/3/4, xfs, btrfs and tmpfs are trusted; find names each
directory's). The ctime cannot be set by a user, unlike the mtime that `cp -p` or `tar` put
back.
"""

from __future__ import annotations

import os
import shlex
import threading

from swiftrun.errors import RemoteError
from swiftrun.sync.channel import _exec, _finish, root_expr
from swiftrun.sync.heap import paused_gc
from swiftrun.sync.listing import _parse_mtime_ns, overlap
from swiftrun.sync.manifest import Entry, _new_entry

AHEAD_MIN_ENTRIES = 2000    # below this a whole listing costs less than two finds and a merge
TRUSTED_FS = frozenset({"ext2", "ext3", "ext4", "xfs", "btrfs", "tmpfs"})    # find's %F names
# A change made just after the listing ahead began may carry an older ctime: the kernel stamps
# with its coarse clock (a tick behind), and ext2/3 and small-inode ext4 keep whole seconds.
# So everything changed from this long before it is asked for again.
MARGIN_NS = 1_500_000_000

# One record per entry, NUL-terminated name and link target (any byte a name may hold comes
# through). Directories also carry their inode, ctime and file system type (%p: "./name"; the
# root is ".").
_DIR_FMT = r"d\t%s\t%T@\t%m\t%i\t%C@\t%F\t%p\0%l\0"
_ENTRY_FMT = r"%y\t%s\t%T@\t%m\t%p\0%l\0"
_RECORDS = f"\\( -type d -printf '{_DIR_FMT}' -o -printf '{_ENTRY_FMT}' \\)"


def _ahead_script(root: str) -> str:
    return "\n".join([
        f"R={root}",
        'cd "$R" || exit 66',
        r'printf "%s\0" "$(date +%s%N)"',
        f"exec find . -path ./.swiftrun -prune -o {_RECORDS}",
    ])


def _since_script(root: str, since_ns: int) -> str:
    """What changed from ``since_ns`` on, in one walk of the tree: the entries with a newer
    ctime, the directories among them also named (NUL-separated, each starting with "./") in a
    temporary file; then the older entries of those directories, all of them in one find."""
    when = shlex.quote(f"@{since_ns // 10**9}.{since_ns % 10**9:09d}")
    return "\n".join([
        f"R={root}",
        'cd "$R" || exit 66',
        f"T={when}",
        f"D='{_DIR_FMT}'",
        f"F='{_ENTRY_FMT}'",
        'tmp=$(mktemp) || exit 67',
        "trap 'rm -f \"$tmp\"' EXIT",
        r'printf "%s\0" "$(date +%s%N)"',
        'find . -path ./.swiftrun -prune -o -newerct "$T" '
        '\\( -type d -fprint0 "$tmp" -printf "$D" -o -printf "$F" \\) || exit 67',
        'xargs -0r sh -c '
        "'T=$1 D=$2 F=$3; shift 3; exec find \"$@\" -mindepth 1 -maxdepth 1 ! -path ./.swiftrun "
        "! -newerct \"$T\" \\( -type d -printf \"$D\" -o -printf \"$F\" \\)' "
        'sh "$T" "$D" "$F" < "$tmp" || exit 67',
    ])


def _digits(text: str) -> bool:
    return text.isascii() and text.isdigit()


class _Parsed:
    """Entries (the root left out), directories' (inode, ctime_ns) (the root as ""), whether
    every directory is on a trusted file system, and what came before the records."""

    def __init__(self):
        self.entries: dict[str, Entry] = {}
        self.dirs: dict[str, tuple[int, int]] = {}
        self.trusted = True
        self.head: list[str] = []


def _parse(stream, head_fields: int) -> _Parsed:
    """find's records as ``_RECORDS`` prints them, after ``head_fields`` NUL-ended header fields."""
    got = _Parsed()
    data = os.fsdecode(stream.read())
    fields = data.split("\0")
    if fields[-1] != "" or (len(fields) - 1 - head_fields) % 2:
        raise EOFError("the listing ended inside a record")
    got.head = fields[:head_fields]
    new, out, dirs = _new_entry, got.entries, got.dirs
    body = fields[head_fields:-1]
    for first, target in zip(body[0::2], body[1::2]):
        kind, rest = first[0], first[2:]
        if kind == "d":
            size, mtime, mode, ino, ctime, fs, name = rest.split("\t", 6)
            rel = "" if name == "." else name[2:]
            dirs[rel] = (int(ino), _parse_mtime_ns(ctime))
            if fs not in TRUSTED_FS:
                got.trusted = False
            if rel:
                out[rel] = new(("d", 0, _parse_mtime_ns(mtime), int(mode, 8), None))
            continue
        size, mtime, mode, name = rest.split("\t", 3)
        rel = name[2:]
        if kind == "f":
            out[rel] = new(("f", int(size), _parse_mtime_ns(mtime), int(mode, 8), None))
        elif kind == "l":
            out[rel] = new(("l", 0, _parse_mtime_ns(mtime), 0o777, target))
    return got


def _answer(chan, head_fields: int) -> _Parsed | None:
    """The records ``chan`` prints; None when it did not give a whole answer."""
    try:
        got = _parse(chan.makefile("rb"), head_fields)
        rc, _ = _finish(chan)
    except (OSError, EOFError, ValueError, IndexError):
        return None
    return got if rc == 0 else None


class ListAhead:
    """The listing a run makes while swift works, in a thread of its own."""

    def __init__(self, conn, remote_root: str, until: str | None = None):
        self.conn, self.remote_root, self.until = conn, remote_root, until
        self._got: _Parsed | None = None
        self._children: dict[str, list[str]] = {}
        self._chan = None
        self._armed = None      # the change listing, set off to start when ``until`` returns
        self._thread = threading.Thread(target=self._list, daemon=True, name="list-ahead")

    @classmethod
    def start(cls, conn, remote_root: str, until: str | None = None) -> "ListAhead":
        """``until``: sh that returns once the run has ended and fails if it cannot tell. With
        it, the change listing is sent as soon as the listing ahead is in, and waits on the
        node: it starts the moment swift is done, not one round trip after this side heard of
        it (~20 ms of a warm fetch)."""
        ahead = cls(conn, remote_root, until)
        ahead._thread.start()
        return ahead

    @paused_gc()
    def _list(self) -> None:
        try:
            self._chan = _exec(self.conn, _ahead_script(root_expr(self.remote_root)))
            self._chan.shutdown_write()
        except Exception:       # a thread of its own: whatever went wrong, the fetch lists all
            return
        got = _answer(self._chan, 1)
        if got is None or not got.trusted or not _digits(got.head[0]) or "" not in got.dirs:
            return
        if self.until is not None:
            try:        # a run that never ends well fails ``until``: no answer, a whole listing
                self._armed = self._since(int(got.head[0]), f"{self.until} || exit 99")
            except (OSError, RemoteError):
                self._armed = None
        kids: dict[str, list[str]] = {}
        for rel in got.entries:
            kids.setdefault(rel.rpartition("/")[0], []).append(rel)
        self._children = kids
        self._got = got

    def _since(self, t0: int, first: str = ""):
        chan = _exec(self.conn, first + "\n" + _since_script(root_expr(self.remote_root),
                                                               t0 - MARGIN_NS))
        chan.shutdown_write()
        return chan

    def catch_up(self, remote_root: str, timeout: float | None = None,
                 meanwhile=None) -> dict[str, Entry] | None:
        """What the remote tree holds now, from the listing ahead and one listing of what
        changed since; None when that cannot be told for sure (the caller lists everything;
        ``meanwhile`` has then been called already). Whatever the answer, nothing of this
        listing is left running."""
        try:
            return self._catch_up(remote_root, timeout, meanwhile)
        finally:
            self.cancel()

    def _catch_up(self, remote_root: str, timeout: float | None, meanwhile) -> dict[str, Entry] | None:
        if remote_root != self.remote_root:
            return None
        self._thread.join(timeout)
        if self._thread.is_alive():         # the node is slow to list: ask it the usual way
            return None
        got = self._got
        if got is None:
            return None
        self._got = None                    # used once: its entries become the answer
        t0 = int(got.head[0])
        chan, self._armed = self._armed, None
        try:
            chan = chan or self._since(t0)
        except (OSError, RemoteError):      # the whole listing meets it again and says why
            return None
        try:
            overlap(chan, meanwhile)
            delta = _answer(chan, 1)
        finally:
            chan.kill()                     # a no-op once it has answered
        if delta is None or not delta.trusted or not _digits(delta.head[0]) \
                or int(delta.head[0]) < t0:
            return None     # no whole answer, an untrusted file system, or the clock went back
        return _merge(got, self._children, delta, t0 - MARGIN_NS)

    def cancel(self) -> None:
        """Stop a listing still under way or waiting for the run's end (the run ended another
        way). A change listing already on the node then waits there until the run ends (a
        shared lock on the wrapper's), finds its channel gone and exits."""
        chan = self._chan
        if chan is not None and self._thread.is_alive():
            chan.kill()
        self._thread.join(5)
        armed, self._armed = self._armed, None
        if armed is not None:
            armed.kill()


def _merge(got: _Parsed, kids: dict[str, list[str]], delta: _Parsed,
           since: int) -> dict[str, Entry] | None:
    out = got.entries
    for rel, (ino, ctime) in delta.dirs.items():
        if ctime < since and got.dirs.get(rel, (None,))[0] != ino:
            return None                     # an old directory moved in: its subtree is unknown
    seen = delta.entries
    for rel, (_, ctime) in delta.dirs.items():
        if ctime >= since:                  # all its entries were listed: the rest are gone
            for child in kids.get(rel, ()):
                if child not in seen:
                    _drop(out, kids, child)
    out.update(seen)
    return out


def _drop(out: dict[str, Entry], kids: dict[str, list[str]], rel: str) -> None:
    """``rel`` and, for a directory, everything the listing ahead held under it."""
    stack = [rel]
    while stack:
        here = stack.pop()
        if out.pop(here, None) is not None:
            stack.extend(kids.get(here, ()))
