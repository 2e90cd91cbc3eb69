"""swiftrun's transfers against the rsync command a user would type, on the same footing.

Run: python bench/bench_transfer.py [--case NAME ...] [--size N] [--repeat 7] [--quick]
                                     [--work-dir DIR]

Cases (``--size`` overrides the file count, or the MB of the one-file cases):
  inc-2k       incremental sync, 2000 files, 1 changed
  inc-20k      incremental sync, 20000 files, 1 changed
  inc-big      incremental sync, one 500 MB file, 1 byte rewritten in place (size kept)
  full-2k      full upload of 2000 files into an empty directory
  full-20k     full upload of 20000 files into an empty directory
  fetch-small  fetch of 5000 new 1 KB files the "run" wrote
  fetch-big    fetch of one new 200 MB file the "run" wrote

Why it is fair: one loopback sshd, one ControlMaster opened by swiftrun before anything is
timed, and rsync is given swiftrun's own rsh script (``-e link.rsh``), so both sides run on that
same open connection (the end of the run shows sshd still holds one connection and the master
kept its PID). Each side has its own local copy and its own remote directory with identical
content (the fetch cases: two lanes the sides swap, see ``fetch_case``), does the same work in
each pair, and the sides take turns (A B, B A, ...). Every pair is
checked afterwards (untimed): both remote copies hold the change, or both local copies hold
the new outputs, so no side wins by moving nothing. swiftrun is ``sync.upload`` /
``sync.fetch`` called in this process; rsync is ``rsync -a --delete -e RSH local/
host:remote/`` (upload) and ``rsync -a --exclude=/.swiftrun -e RSH host:remote/ local/`` (fetch).

Where the trees live: in tmpfs (``/dev/shm``) when it has room, else the system's temp
directory; ``--work-dir`` chooses. Both sides write the same files into the same file system,
so the place is no side's merit, but on ext4 it drowned the sides' difference: the benches
remove 20 000-file trees between pairs, and ext4's inode allocator then skips inodes freed in
the last minutes (``recently_deleted``, 57% of the CPU under perf in a full upload), so one
pair's file creation cost 2-7 times another's, depending on what the pair before freed.

Prints median [min-max] in ms per side and the ratio of medians (swiftrun / rsync); no
assertions. The last line is `BENCH_SUMMARY {json}` for bench/run_all.py.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from loopback import HOST, Node, interleaved, loopback_node, ratio, spread

from swiftrun import sync

FILE_BYTES = 1000       # the synced trees' files: a script directory with small inputs
PER_DIR = 100
MB = 1 << 20


@dataclass
class Outcome:
    swiftrun: list[float]
    rsync: list[float]
    problems: list[str] = field(default_factory=list)
    moved: str = ""             # what swiftrun reports it moved per pair


@dataclass
class Case:
    name: str
    title: str                  # "{n}": the size
    size: int                   # files, or MB for the one-file cases
    quick: int
    run: Callable[[Node, Path, int, int], Outcome]


# -- trees ------------------------------------------------------------------------------------

def tree_name(i: int) -> str:
    return f"d{i // PER_DIR:03d}/f{i:05d}.txt"


def make_tree(root: Path, n: int) -> None:
    """``n`` files of ~1 KB, 100 to a directory."""
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        path = root / tree_name(i)
        if i % PER_DIR == 0:
            path.parent.mkdir(exist_ok=True)
        path.write_text((f"file {i:05d} " * 100)[:FILE_BYTES - 1] + "\n")


def random_file(path: Path, size: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        left = size
        while left:
            chunk = os.urandom(min(left, 8 * MB))
            fh.write(chunk)
            left -= len(chunk)


def next_second() -> None:
    """Wait for the next whole second (and a tick more) before an edit: rsync's quick check
    compares whole-second mtimes, so a same-size edit within the second of the last sync would
    look unchanged to it and it would move nothing (a user edits later than that)."""
    now = time.time()
    time.sleep(int(now) + 1.02 - now)


def count_files(root: Path) -> int:
    """Regular files under ``root``, swiftrun's own ``.swiftrun/`` left out."""
    total = 0
    for here, dirs, files in os.walk(root):
        if here == str(root) and ".swiftrun" in dirs:
            dirs.remove(".swiftrun")
        total += len(files)
    return total


def upload_rsync(node: Node, local: Path, remote: Path) -> None:
    node.rsync("-a", "--delete", "-e", node.rsh, f"{local}/", f"{HOST}:{remote}/")


def sides(work: Path) -> tuple[Path, Path, Path, Path, Path]:
    """swiftrun's local and remote directory, rsync's, and swiftrun's manifest."""
    return (work / "sw-local", work / "sw-remote", work / "rs-local", work / "rs-remote",
            work / "sw-state.json")


def swapped(who: str, k: int) -> int:
    """Which of two places side ``who`` ("sw" or "rs") uses in pair ``k``: they swap every two
    pairs, while ``interleaved`` flips the order every pair, so place and turn vary apart."""
    first = (k // 2) % 2
    return first if who == "sw" else 1 - first


def moved_text(files: list[int], sizes: list[int]) -> str:
    kinds = sorted(set(files))
    return (f"swiftrun moved {'/'.join(map(str, kinds))} file(s), "
            f"{max(sizes) / MB:.1f} MB at most, per pair")


# -- cases ------------------------------------------------------------------------------------

def incremental(node: Node, work: Path, n: int, repeat: int) -> Outcome:
    """Both sides hold an up-to-date copy (a warm-up full sync each); per pair one file gets
    new content in both trees and each side syncs its own tree."""
    sw_local, sw_remote, rs_local, rs_remote, state = sides(work)
    make_tree(sw_local, n)
    make_tree(rs_local, n)
    sync.upload(node.link, sw_local, str(sw_remote), state_file=state)
    upload_rsync(node, rs_local, rs_remote)
    files, sizes, text = [], [], {}

    def prepare(k: int) -> None:
        next_second()
        rel = tree_name((k * 7919 + 1) % n)
        text[k] = (rel, f"changed in pair {k} ".ljust(FILE_BYTES - 1, "x") + "\n")
        for root in (sw_local, rs_local):
            (root / rel).write_text(text[k][1])

    def run_sw(k: int) -> None:
        rep = sync.upload(node.link, sw_local, str(sw_remote), state_file=state)
        files.append(rep.files_sent)
        sizes.append(rep.bytes_sent)

    def check(k: int) -> str | None:
        rel, want = text[k]
        stale = [who for who, root in (("swiftrun", sw_remote), ("rsync", rs_remote))
                 if (root / rel).read_text() != want]
        return f"{', '.join(stale)}: remote copy of {rel} not updated" if stale else None

    a, b, problems = interleaved(repeat, prepare, run_sw,
                                 lambda k: upload_rsync(node, rs_local, rs_remote), check)
    return Outcome(a, b, problems, moved_text(files, sizes))


def incremental_big(node: Node, work: Path, mb: int, repeat: int) -> Outcome:
    """One big file, synced once (warm-up); per pair one byte is rewritten in place (size kept)
    in both copies and each side syncs it."""
    sw_local, sw_remote, rs_local, rs_remote, state = sides(work)
    size = mb * MB
    random_file(sw_local / "big.bin", size)
    rs_local.mkdir(parents=True)
    shutil.copyfile(sw_local / "big.bin", rs_local / "big.bin")
    sync.upload(node.link, sw_local, str(sw_remote), state_file=state)
    upload_rsync(node, rs_local, rs_remote)
    files, sizes, byte_at = [], [], {}

    def prepare(k: int) -> None:
        next_second()
        offset = (k * 104_729_617 + 12_345) % size
        for root in (sw_local, rs_local):
            with open(root / "big.bin", "r+b") as fh:
                fh.seek(offset)
                old = fh.read(1)
                fh.seek(offset)
                fh.write(bytes([old[0] ^ 0xFF]))
        with open(sw_local / "big.bin", "rb") as fh:
            fh.seek(offset)
            byte_at[k] = (offset, fh.read(1))

    def run_sw(k: int) -> None:
        rep = sync.upload(node.link, sw_local, str(sw_remote), state_file=state)
        files.append(rep.files_sent)
        sizes.append(rep.bytes_sent)

    def check(k: int) -> str | None:
        offset, want = byte_at[k]
        stale = []
        for who, root in (("swiftrun", sw_remote), ("rsync", rs_remote)):
            path = root / "big.bin"
            with open(path, "rb") as fh:
                fh.seek(offset)
                if fh.read(1) != want or path.stat().st_size != size:
                    stale.append(who)
        return f"{', '.join(stale)}: remote copy not updated" if stale else None

    a, b, problems = interleaved(repeat, prepare, run_sw,
                                 lambda k: upload_rsync(node, rs_local, rs_remote), check)
    return Outcome(a, b, problems, moved_text(files, sizes))


def full_upload(node: Node, work: Path, n: int, repeat: int) -> Outcome:
    """Per pair each side uploads a whole tree into a remote directory that does not exist
    yet (swiftrun with no manifest). The two local trees swap sides every other pair, as the
    fetch cases' lanes do (where a tree lies on this disk is no side's merit). One untimed
    pair first; each pair's remote directories are removed after it is checked, so every pair
    starts from the same state."""
    trees = [work / "tree0", work / "tree1"]
    for tree in trees:
        make_tree(tree, n)
    files, sizes = [], []

    def remote_of(who: str, k: int) -> Path:
        return work / f"{who}-remote-{k}"

    def tree_of(who: str, k: int) -> Path:
        return trees[swapped(who, k)]

    def run_sw(k: int) -> None:
        rep = sync.upload(node.link, tree_of("sw", k), str(remote_of("sw", k)),
                          state_file=work / f"sw-state-{k}.json")
        files.append(rep.files_sent)
        sizes.append(rep.bytes_sent)

    def check(k: int) -> str | None:
        short = [who for who, tag in (("swiftrun", "sw"), ("rsync", "rs"))
                 if count_files(remote_of(tag, k)) != n]
        for tag in ("sw", "rs"):
            shutil.rmtree(remote_of(tag, k))
        return f"{', '.join(short)}: remote tree incomplete" if short else None

    a, b, problems = interleaved(repeat, lambda k: None, run_sw,
                                 lambda k: upload_rsync(node, tree_of("rs", k), remote_of("rs", k)),
                                 check, warmup=1)
    return Outcome(a, b, problems, moved_text(files[1:], sizes[1:]))


def fetch_case(node: Node, work: Path, repeat: int, write_outputs: Callable[[Path, int], None],
               expect: Callable[[Path, int], bool], outputs_of: Callable[[int], str]) -> Outcome:
    """Two lanes, each a local copy of the same small inputs uploaded by swiftrun (its manifest
    knows them) and the remote directory it went to. Per pair the "run" writes new outputs
    under new names into both remote directories and each side fetches into one lane, the
    lanes swapping sides every other pair. Where a directory lands on this disk decides how
    fast 5 000 new files are written into it (the same rsync command into four sibling
    directories: medians 854-1307 ms, each directory the same from pair to pair), so a side
    that always wrote into its own directory was judged by where that landed. The previous
    pair's outputs are removed on both ends first (untimed), so every pair fetches the same
    amount from a tree of the same size. rsync leaves the remote ``.swiftrun/`` (swiftrun's
    token) out: less work for it, none of it a user's."""
    lanes = []
    for i in (0, 1):
        local, remote, state = work / f"lane{i}-local", work / f"lane{i}-remote", work / f"lane{i}.json"
        make_tree(local, 20)
        sync.upload(node.link, local, str(remote), state_file=state)
        lanes.append((local, remote, state))
    files, sizes = [], []

    def lane(who: str, k: int) -> tuple[Path, Path, Path]:
        return lanes[swapped(who, k)]

    def prepare(k: int) -> None:
        if k:
            for local, remote, _ in lanes:
                for root in (local, remote):
                    old = root / outputs_of(k - 1)
                    shutil.rmtree(old) if old.is_dir() else old.unlink()
        for _, remote, _ in lanes:
            write_outputs(remote, k)

    def run_sw(k: int) -> None:
        local, remote, state = lane("sw", k)
        rep = sync.fetch(node.link, local, str(remote), state_file=state)
        files.append(len(rep.files))
        sizes.append(rep.bytes)

    def run_rsync(k: int) -> None:
        local, remote, _ = lane("rs", k)
        node.rsync("-a", "--exclude=/.swiftrun", "-e", node.rsh, f"{HOST}:{remote}/", f"{local}/")

    def check(k: int) -> str | None:
        short = [who for who, tag in (("swiftrun", "sw"), ("rsync", "rs"))
                 if not expect(lane(tag, k)[0], k)]
        return f"{', '.join(short)}: outputs did not arrive" if short else None

    a, b, problems = interleaved(repeat, prepare, run_sw, run_rsync, check, warmup=1)
    return Outcome(a, b, problems, moved_text(files[1:], sizes[1:]))


def fetch_small(node: Node, work: Path, n: int, repeat: int) -> Outcome:
    def write(root: Path, k: int) -> None:
        out = root / f"out{k:03d}"
        out.mkdir()
        blob = blobs.setdefault(k, os.urandom(1024 * n))   # the same bytes on both sides
        for i in range(n):
            (out / f"o{i:05d}.dat").write_bytes(blob[i * 1024:(i + 1) * 1024])

    def arrived(root: Path, k: int) -> bool:
        out = root / f"out{k:03d}"
        return out.is_dir() and count_files(out) == n

    blobs: dict[int, bytes] = {}
    return fetch_case(node, work, repeat, write, arrived, lambda k: f"out{k:03d}")


def fetch_big(node: Node, work: Path, mb: int, repeat: int) -> Outcome:
    source = work / "source.bin"
    random_file(source, mb * MB)

    def write(root: Path, k: int) -> None:
        shutil.copyfile(source, root / f"out{k:03d}.bin")

    def arrived(root: Path, k: int) -> bool:
        path = root / f"out{k:03d}.bin"
        return path.is_file() and path.stat().st_size == mb * MB

    return fetch_case(node, work, repeat, write, arrived, lambda k: f"out{k:03d}.bin")


CASES = [
    Case("inc-2k", "incremental sync, {n} files, 1 changed", 2000, 300, incremental),
    Case("inc-20k", "incremental sync, {n} files, 1 changed", 20000, 2000, incremental),
    Case("inc-big", "incremental sync, one {n} MB file, 1 byte changed", 500, 20, incremental_big),
    Case("full-2k", "full upload, {n} files", 2000, 300, full_upload),
    Case("full-20k", "full upload, {n} files", 20000, 2000, full_upload),
    Case("fetch-small", "fetch, {n} new files of 1 KB", 5000, 500, fetch_small),
    Case("fetch-big", "fetch, one new {n} MB file", 200, 20, fetch_big),
]


def table(rows: list[tuple[str, str, str, str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = []
    for n, r in enumerate(rows):
        lines.append(f"{r[0]:<{widths[0]}}  {r[1]:>{widths[1]}}  {r[2]:>{widths[2]}}  {r[3]:>{widths[3]}}")
        if n == 0:
            lines.append("-" * len(lines[0]))
    return "\n".join(lines)


def default_work_dir() -> Path:
    """tmpfs when it is there, writable and has room for the largest case (4 GB), else the
    system's temp directory."""
    shm = Path("/dev/shm")
    try:
        if os.access(shm, os.W_OK) and shutil.disk_usage(shm).free > 4 << 30:
            return shm
    except OSError:
        pass
    return Path(tempfile.gettempdir())


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--case", action="append", choices=[c.name for c in CASES],
                    help="run only this case (repeatable); default: all")
    ap.add_argument("--size", type=int, help="files (or MB) for the selected cases")
    ap.add_argument("--repeat", type=int, default=7, help="A/B pairs per case (default 7)")
    ap.add_argument("--quick", action="store_true", help="small sizes: a smoke run of ~1 min")
    ap.add_argument("--work-dir", type=Path, default=default_work_dir(),
                    help="where the trees live (default: %(default)s; see the docstring)")
    args = ap.parse_args(argv)
    chosen = [c for c in CASES if not args.case or c.name in args.case]

    base = Path(tempfile.mkdtemp(prefix="bench-transfer-", dir=args.work_dir))
    rows = [("case", "swiftrun ms median [min-max]", "rsync ms median [min-max]", "ratio")]
    notes, summary = [], {}
    try:
        with loopback_node(base / "node") as node:
            master = node.master_pid()
            print(f"loopback sshd on port {node.sshd.port}; one ControlMaster (pid {master}) "
                  f"for both sides; {args.repeat} pairs per case, A B interleaved; trees in "
                  f"{base}", flush=True)
            for case in chosen:
                n = args.size or (case.quick if args.quick else case.size)
                title = case.title.format(n=n)
                work = base / case.name
                work.mkdir()
                t = time.perf_counter()
                out = case.run(node, work, n, args.repeat)
                shutil.rmtree(work, ignore_errors=True)
                r = ratio(out.swiftrun, out.rsync)
                rows.append((title, spread(out.swiftrun), spread(out.rsync), f"{r:.2f}"))
                notes.append(f"{title}: {out.moved}")
                notes += [f"  PROBLEM {p}" for p in out.problems]
                summary[case.name] = {"swiftrun_ms": round(statistics.median(out.swiftrun) * 1000, 1),
                                      "rsync_ms": round(statistics.median(out.rsync) * 1000, 1),
                                      "ratio": round(r, 2)}
                print(f"... {case.name} done in {time.perf_counter() - t:.0f} s", file=sys.stderr,
                      flush=True)
            same = node.master_pid() == master
            conns = node.connections()
        print(table(rows))
        print("ratio = swiftrun median / rsync median (below 1: swiftrun is faster)")
        for line in notes:
            print(line)
        print(f"shared connection: master pid {'unchanged' if same else 'CHANGED'}, sshd held "
              f"{conns} connection(s) at the end")
        print("BENCH_SUMMARY " + json.dumps(summary))
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
