"""A fetch's listing made ahead (while swift runs) and caught up after: it must say what a whole
listing says, or give up; never something else. Real sshd, real GNU find, real ctimes.

The remote trees live on /dev/shm (tmpfs, a file system whose ctimes are trusted) so the ahead
path is taken wherever the tests run; one test checks that an untrusted one is refused.
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
import time
from pathlib import Path

import pytest

from swiftrun import sync
from swiftrun.run.control import run_ended
from swiftrun.sync import ahead as ahead_mod
from tests.test_follow import HandRun
from tests.test_sync import connect, node  # noqa: F401  (node: the module's sshd fixture)

SHM = Path("/dev/shm")


@pytest.fixture
def conn(node, tmp_path):
    """swiftrun's own transport to test_sync's loopback sshd (its ``node`` fixture)."""
    c = connect(node, tmp_path / "cluster")
    yield c
    c.remote.close()


@pytest.fixture(autouse=True)
def tick_margin(monkeypatch):
    """tmpfs keeps ctimes to the nanosecond: the margin for whole-second file systems (1.5 s)
    would only make each test wait; the coarse clock's tick is what is left to cover here."""
    monkeypatch.setattr(ahead_mod, "MARGIN_NS", 200_000_000)


@pytest.fixture
def remote():
    if not (SHM.is_dir() and os.access(SHM, os.W_OK)):
        pytest.skip("/dev/shm (tmpfs) is not writable here: the ahead listing needs a trusted file system")
    root = Path(tempfile.mkdtemp(prefix="ahead-", dir=SHM))
    yield root
    shutil.rmtree(root, ignore_errors=True)


def build(root: Path, dirs: int = 6, files: int = 8) -> None:
    for d in range(dirs):
        for s in range(2):
            sub = root / f"d{d}" / f"s{s}"
            sub.mkdir(parents=True)
            for f in range(files):
                (sub / f"f{f}.txt").write_text(f"{d}/{s}/{f}")
    (root / "top.txt").write_text("top")
    os.symlink("top.txt", root / "link")
    (root / ".swiftrun").mkdir()
    (root / ".swiftrun" / "state").write_text("never listed")


def ahead_of(conn, root: Path) -> sync.ListAhead:
    """The listing ahead of a tree made more than the margin before it (as a run's inputs are)."""
    time.sleep(ahead_mod.MARGIN_NS / 1e9 + 0.05)
    a = sync.ListAhead.start(conn, str(root))
    a._thread.join(30)
    assert a._got is not None, "the listing ahead gave no answer"
    return a


def test_nothing_changed_lists_next_to_nothing(conn, remote, monkeypatch):
    build(remote)
    a = ahead_of(conn, remote)
    sizes = []
    real = ahead_mod._answer

    def counted(chan, head_fields):
        got = real(chan, head_fields)
        sizes.append(len(got.entries))
        return got

    monkeypatch.setattr(ahead_mod, "_answer", counted)
    got = a.catch_up(str(remote))
    assert got == sync.remote_listing(conn, str(remote))
    assert ".swiftrun" not in got and "top.txt" in got and len(got) == 6 * (1 + 2 + 2 * 8) + 2
    assert sizes == [0]                 # the change listing held nothing: 0 of 116 entries


def test_what_changed_after_the_listing_comes_through(conn, remote):
    build(remote)
    a = ahead_of(conn, remote)
    old = remote / "d1" / "s0" / "f1.txt"
    st = old.stat()
    old.write_text("d1/s0/f!")                  # same size, in place
    os.utime(old, ns=(st.st_atime_ns, st.st_mtime_ns))  # the mtime put back: only ctime tells
    (remote / "d2" / "s1" / "f0.txt").chmod(0o600)
    (remote / "d3" / "s0" / "f2.txt").unlink()
    shutil.rmtree(remote / "d4")
    (remote / "run001" / "out").mkdir(parents=True)
    (remote / "run001" / "out" / "o.txt").write_text("new")
    os.rename(remote / "d5" / "s0" / "f0.txt", remote / "d0" / "moved.txt")
    (remote / "link").unlink()
    os.symlink("d0", remote / "link")
    got = a.catch_up(str(remote))
    assert got is not None
    assert got == sync.remote_listing(conn, str(remote))
    assert "d4" not in got and "d4/s0/f0.txt" not in got and "d3/s0/f2.txt" not in got


def test_an_old_directory_moved_in_makes_it_list_everything(conn, remote):
    build(remote)
    a = ahead_of(conn, remote)
    os.rename(remote / "d1", remote / "d0" / "inside")     # d1/s0/... now under d0/inside/
    assert a.catch_up(str(remote)) is None


def test_two_directories_swapped_are_told_apart_by_inode(conn, remote):
    build(remote)
    (remote / "d0" / "s0" / "only-in-d0").write_text("x")
    a = ahead_of(conn, remote)
    os.rename(remote / "d0", remote / "tmp")
    os.rename(remote / "d1", remote / "d0")
    os.rename(remote / "tmp", remote / "d1")
    got = a.catch_up(str(remote))
    assert got is None or got == sync.remote_listing(conn, str(remote))


def test_random_changes_always_agree_with_a_whole_listing(conn, remote):
    """Whatever mix of edits follows the listing ahead, the merge either gives up or says
    exactly what a whole listing says."""
    rng = random.Random(17)
    agreed = gave_up = 0
    for round_ in range(12):
        root = remote / f"t{round_}"
        root.mkdir()
        build(root, dirs=4, files=5)
        a = ahead_of(conn, root)
        for _ in range(rng.randint(1, 8)):
            files = [p for p in root.rglob("*") if p.is_file() and ".swiftrun" not in p.parts]
            dirs = [p for p in root.rglob("*") if p.is_dir() and ".swiftrun" not in p.parts]
            op = rng.choice(["write", "new", "rm", "rmdir", "mkdir", "mvfile", "mvdir", "chmod"])
            if op == "write" and files:
                rng.choice(files).write_text("changed")
            elif op == "new" and dirs:
                (rng.choice(dirs) / f"n{rng.randint(0, 999)}").write_text("n")
            elif op == "rm" and files:
                rng.choice(files).unlink()
            elif op == "rmdir" and dirs:
                shutil.rmtree(rng.choice(dirs), ignore_errors=True)
            elif op == "mkdir" and dirs:
                (rng.choice(dirs) / f"m{rng.randint(0, 999)}").mkdir(exist_ok=True)
            elif op == "mvfile" and files and dirs:
                dest = rng.choice(dirs) / f"mv{rng.randint(0, 999)}"
                if not dest.exists():
                    os.rename(rng.choice(files), dest)
            elif op == "mvdir" and len(dirs) > 1:
                src = rng.choice(dirs)
                dest = root / f"moved{rng.randint(0, 999)}"
                if not dest.exists():
                    os.rename(src, dest)
            elif op == "chmod" and files:
                rng.choice(files).chmod(0o640)
        got = a.catch_up(str(root))
        if got is None:
            gave_up += 1
        else:
            assert got == sync.remote_listing(conn, str(root)), f"round {round_}"
            agreed += 1
    assert agreed >= 6, (agreed, gave_up)       # giving up is for moved directories only


def test_an_untrusted_file_system_gets_no_listing_ahead(conn, remote, monkeypatch):
    monkeypatch.setattr(ahead_mod, "TRUSTED_FS", frozenset({"nfs"}))
    build(remote)
    a = sync.ListAhead.start(conn, str(remote))
    a._thread.join(30)
    assert a._got is None and a.catch_up(str(remote)) is None


def test_a_clock_that_went_back_makes_it_list_everything(conn, remote):
    build(remote)
    a = ahead_of(conn, remote)
    a._got.head[0] = str(int(a._got.head[0]) + 3600 * 10**9)   # "listed" an hour from now
    assert a.catch_up(str(remote)) is None


def test_fetch_with_a_listing_ahead_brings_the_same_outputs(conn, remote, tmp_path):
    local = tmp_path / "local"
    local.mkdir()
    for i in range(30):
        (local / "data" / f"{i % 3}").mkdir(parents=True, exist_ok=True)
        (local / "data" / f"{i % 3}" / f"in{i}.txt").write_text(f"input {i}")
    state = tmp_path / "state.json"
    sync.upload(conn, local, str(remote), state_file=state)
    a = sync.ListAhead.start(conn, str(remote))
    (remote / "run001").mkdir()
    (remote / "run001" / "swift.log").write_text("log")
    (remote / "data" / "1" / "in1.txt").write_text("rewritten by the run")
    (remote / "sorted.txt").write_text("1 2 3")
    rep = sync.fetch(conn, local, str(remote), state_file=state, ahead=a)
    assert sorted(rep.files) == ["data/1/in1.txt", "run001/swift.log", "sorted.txt"]
    assert (local / "data" / "1" / "in1.txt").read_text() == "rewritten by the run"
    again = sync.fetch(conn, local, str(remote), state_file=state)   # a whole listing agrees
    assert again.files == []


def test_a_connection_that_fails_ahead_leaves_the_fetch_to_list_everything(capfd):
    """The thread of its own never raises into the run (no traceback on the console)."""
    from swiftrun.errors import RemoteError

    class Broken:
        def popen(self, *a, **k):
            raise RemoteError("the connection dropped")

    a = sync.ListAhead.start(Broken(), "/r")
    a._thread.join(10)
    assert a.catch_up("/r") is None
    assert "Traceback" not in capfd.readouterr().err


# -- the change listing set off ahead, waiting on the node for the run's end ------------------

def armed(conn, root: Path, run_id: str) -> sync.ListAhead:
    """A run's listing ahead with its change listing sent and waiting for ``run_id`` to end."""
    time.sleep(ahead_mod.MARGIN_NS / 1e9 + 0.05)
    a = sync.ListAhead.start(conn, str(root), until=run_ended(str(root), run_id))
    a._thread.join(30)
    assert a._got is not None and a._armed is not None, "nothing was set off ahead"
    return a


@pytest.fixture
def run_dir(remote):
    build(remote)
    (remote / ".swiftrun" / "runs").mkdir()
    return remote


@pytest.mark.parametrize("lock", [True, False], ids=["lock", "older-wrapper-polled"])
def test_a_change_listing_sent_ahead_starts_only_when_the_run_ends(conn, run_dir, lock):
    """What the run writes after the change listing was sent, and before it ended, comes
    through: the node held the listing back until the wrapper let go of its lock (or, for a
    wrapper without one, until its exit file was there)."""
    run = HandRun(run_dir, "r1", lock=lock)
    a = armed(conn, run_dir, "r1")
    time.sleep(0.5)             # long enough for a listing that did not wait to be done
    assert a._armed.proc.poll() is None, "the change listing did not wait for the run's end"
    (run_dir / "run001").mkdir()
    (run_dir / "run001" / "swift.log").write_text("log")
    (run_dir / "d0" / "s0" / "f0.txt").write_text("rewritten by the run")
    (run_dir / "sorted.txt").write_text("1 2 3")
    run.end(0)
    got = a.catch_up(str(run_dir))
    assert got is not None
    assert {"run001/swift.log", "sorted.txt"} <= set(got)
    assert got == sync.remote_listing(conn, str(run_dir))


def test_a_run_gone_without_an_exit_code_leaves_the_fetch_to_list_everything(conn, run_dir):
    run = HandRun(run_dir, "r2")
    a = armed(conn, run_dir, "r2")
    run.end(None)               # the wrapper died: the lock is let go, no exit file
    assert a.catch_up(str(run_dir)) is None


def test_a_run_that_ends_another_way_leaves_no_listing_waiting_here(conn, run_dir):
    run = HandRun(run_dir, "r3")
    a = armed(conn, run_dir, "r3")
    chan = a._armed
    a.cancel()                  # the run was interrupted before its fetch
    assert chan.proc.poll() is not None and a._armed is None
    run.end(0)
