"""What the headnode holds: the remote tree listed in one round trip, for fetch to choose from.

One ``find -printf`` on the node's open connection prints type, size, mtime (to the
nanosecond), mode and name of every entry (``.swiftrun/`` left out); names and link targets
end in NUL, so any byte a file name may hold comes through.
"""

from __future__ import annotations

import os

from swiftrun.errors import RemoteError
from swiftrun.sync.channel import _exec, _finish, root_expr
from swiftrun.sync.manifest import Entry, _new_entry

RETRY_HINT = ("nothing local was replaced; run `swiftrun fetch` to try again while the cluster is up "
              "(re-run with --keep-cluster if it is torn down after each run)")


def _parse_mtime_ns(text: str) -> int:
    """find's %T@ ('1715000000.1234567890') to integer nanoseconds, exactly. GNU find prints ten
    fractional digits: two slices and two ints (a third of the general way's cost, a fifth of
    a 5 000-entry listing's parse); any other shape goes the general way."""
    if len(text) > 11 and text[-11] == ".":
        return int(text[:-11]) * 1_000_000_000 + int(text[-10:-1])
    whole, _, frac = text.partition(".")
    return int(whole) * 1_000_000_000 + int((frac + "000000000")[:9] or 0)


def _listing_script(root: str) -> str:
    return "\n".join([
        f"R={root}",
        'cd "$R" || exit 66',
        "exec find . -mindepth 1 -path ./.swiftrun -prune -o -printf '%y\\t%s\\t%T@\\t%m\\t%P\\0%l\\0'",
    ])


def remote_listing(conn, remote_root: str, *, timeout: float | None = 120.0,
                   meanwhile=None) -> dict[str, Entry]:
    """Every file, dir and symlink under ``remote_root`` (except ``.swiftrun/``), in one round trip.
    ``meanwhile``: local work to do while the headnode lists (it overlaps the round trip)."""
    try:
        chan = _exec(conn, _listing_script(root_expr(remote_root)), timeout)
        chan.shutdown_write()
    except OSError as exc:
        raise RemoteError(f"listing {remote_root} on the headnode failed: {exc}",
                          hint=RETRY_HINT) from exc
    overlap(chan, meanwhile)
    out: dict[str, Entry] = {}
    try:
        _parse_stream(chan.makefile("rb"), out)
        rc, err = _finish(chan)
    except (OSError, EOFError) as exc:
        raise RemoteError(f"listing {remote_root} on the headnode failed: {exc or type(exc).__name__}",
                          hint=RETRY_HINT) from exc
    if rc == 66:
        raise RemoteError(f"{remote_root} does not exist on the headnode",
                          hint="nothing was uploaded to this cluster yet, or it was replaced")
    if rc != 0:
        raise RemoteError(f"listing {remote_root} on the headnode failed (exit {rc}): {err[-500:]}",
                          hint=RETRY_HINT)
    return out


def overlap(chan, meanwhile) -> None:
    """Do ``meanwhile`` (local work) while the node answers on ``chan``; if it fails, the
    channel is ended before the failure goes on."""
    if meanwhile is None:
        return
    try:
        meanwhile()
    except BaseException:
        chan.kill()
        _finish(chan)
        raise


def _parse_stream(stream, out: dict[str, Entry]) -> None:
    """Parse find's records into ``out`` as they arrive, chunk by chunk: the parse of what came
    overlaps find's listing of the rest (~8 ms of a 5 000-entry listing here). Each chunk is
    cut after its last NUL and decoded once, not per name (NUL and TAB never sit inside a
    multi-byte sequence); a record's two fields may fall into two chunks."""
    rest = b""
    head = None                 # a record's first field whose second is still to come
    new = _new_entry
    while True:
        chunk = stream.read1(1 << 16)
        if not chunk:
            break
        rest += chunk
        cut = rest.rfind(b"\0")
        if cut < 0:
            continue
        fields = os.fsdecode(rest[:cut]).split("\0")
        rest = rest[cut + 1:]
        if head is not None:
            fields.insert(0, head)
        head = fields.pop() if len(fields) % 2 else None
        for first, target in zip(fields[0::2], fields[1::2]):
            kind, size, mtime, mode, rel = first.split("\t", 4)
            if kind == "f":
                out[rel] = new((kind, int(size), _parse_mtime_ns(mtime), int(mode, 8), None))
            elif kind == "d":
                out[rel] = new((kind, 0, _parse_mtime_ns(mtime), int(mode, 8), None))
            elif kind == "l":
                out[rel] = new((kind, 0, _parse_mtime_ns(mtime), 0o777, target))
    if rest or head is not None:
        raise EOFError("the listing ended inside a record")
