"""follow() against a real sshd on loopback: the end of a run is seen on the wrapper's lock, the
follower's exit marker saves a round trip, older wrappers and markerless streams still work, and
a resume from a byte offset gives exactly the rest of the console.

Runs are either started with ``start_run`` (a stand-in "swift" under SWIFTRUN_NODE_ROOT) or laid
out by hand in ``.swiftrun/runs`` (the node file contract, node/layout.py ``RUNS``), with this
process holding ``<id>.lock`` as a wrapper does, so a test decides when the run ends.
"""

from __future__ import annotations

import fcntl
import io
import os
import random
import threading
import time
from pathlib import Path

import pytest

from swiftrun.errors import RemoteError
from swiftrun.remote.openssh import Remote, Target
from swiftrun.run import control
from swiftrun.run.control import follow, start_run
from tests.support.sshd import LoopbackSshd, keygen

STAND_IN = """#!/bin/sh
# stands in for swift: numbered lines, then the exit code its last argument names
for code; do :; done
i=0
while [ $i -lt 20 ]; do echo "swift: line $i"; sleep 0.01; i=$((i+1)); done
exit "$code"
"""


class UI:
    def __init__(self):
        self.notes: list[str] = []

    def node(self, label, text):
        self.notes.append(f"{label}: {text}")

    step = info = warn = node


class Counting:
    """A Remote that counts the one-shot commands follow() runs besides its stream."""

    def __init__(self, remote: Remote):
        self._remote, self.runs = remote, []

    def run(self, target, command, **kw):
        self.runs.append(command)
        return self._remote.run(target, command, **kw)

    def __getattr__(self, name):
        return getattr(self._remote, name)


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    base = tmp_path_factory.mktemp("follow")
    key = keygen(base / "client" / "id_ed25519")
    auth = base / "authorized_keys"
    auth.write_text(Path(str(key) + ".pub").read_text())
    home, node_root = base / "home", base / "node-root"
    home.mkdir()
    swift = node_root / "opt" / "swift" / "bin" / "swift"
    swift.parent.mkdir(parents=True)
    swift.write_text(STAND_IN)
    swift.chmod(0o755)
    (node_root / "var" / "lib" / "swiftrun").mkdir(parents=True)
    sshd = LoopbackSshd(base / "sshd", auth, env={"HOME": str(home),
                                                   "SWIFTRUN_NODE_ROOT": str(node_root)}).start()
    cluster = base / "cluster"
    cluster.mkdir(mode=0o700)
    (cluster / "known_hosts").write_text(f"node ssh-ed25519 {sshd.host_key_pub}\n")
    remote = Remote(cluster_dir=cluster, key_file=key, user=sshd.user)
    target = Target("127.0.0.1", sshd.port, sshd.user, alias="node", label="node")
    try:
        remote.connect(target)
        yield remote, target
    finally:
        remote.close([target])
        sshd.stop()


@pytest.fixture
def root(tmp_path) -> Path:
    """A project's directory on the node, with its runs directory."""
    (tmp_path / "project" / ".swiftrun" / "runs").mkdir(parents=True)
    return tmp_path / "project"


def runs(root: Path) -> Path:
    return root / ".swiftrun" / "runs"


class HandRun:
    """A run laid out by hand: ``<id>.pid`` (this process), ``<id>.log`` and, unless ``lock`` is
    False (a wrapper from before the lock), ``<id>.lock`` held exclusively until ``end()``."""

    def __init__(self, root: Path, run_id: str, head: bytes = b"", *, lock: bool = True):
        self.dir, self.id = runs(root), run_id
        self.lock = None
        if lock:
            self.lock = open(self.dir / f"{run_id}.lock", "w")
            fcntl.flock(self.lock, fcntl.LOCK_EX)
        (self.dir / f"{run_id}.log").write_bytes(head)
        (self.dir / f"{run_id}.pid").write_text(f"{os.getpid()}\n")

    def write(self, data: bytes) -> None:
        with open(self.dir / f"{self.id}.log", "ab") as fh:
            fh.write(data)

    def end(self, code: int | None, *, release: bool = True) -> float:
        """Write the exit code (None: die without one); let go of the lock. When it ended."""
        if code is not None:
            tmp = self.dir / f"{self.id}.exit.tmp"
            tmp.write_text(f"{code}\n")
            tmp.rename(self.dir / f"{self.id}.exit")
        if release:
            self.release()
        return time.monotonic()

    def release(self) -> None:
        if self.lock is not None:
            self.lock.close()
            self.lock = None


class Background:
    """follow() in a thread, so a test can end the run while it streams."""

    def __init__(self, remote, target, root: Path, run_id: str, **kw):
        self.out, self.result, self.error, self.done_at = io.BytesIO(), None, None, None
        self.ui = UI()

        def go():
            try:
                self.result = follow(remote, target, str(root), run_id, self.ui, out=self.out,
                                     reconnect_for=5, **kw)
            except BaseException as exc:  # noqa: BLE001 - handed to the test
                self.error = exc
            self.done_at = time.monotonic()

        self.thread = threading.Thread(target=go, daemon=True)
        self.thread.start()

    def join(self, timeout: float = 20):
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "follow() did not return"
        if self.error is not None:
            raise self.error
        return self.result


def test_a_started_run_is_followed_to_its_end_with_its_exit_code(node, root):
    remote, target = node
    start_run(remote, target, str(root), "r-start", swift_home="/opt/swift", script="x.swift",
              args=["3"], conf_text="c\n")
    out = io.BytesIO()
    code, console = follow(remote, target, str(root), "r-start", UI(), out=out)
    returned = time.time()
    assert code == 3
    lines = [f"swift: line {i}" for i in range(20)]
    assert out.getvalue().decode().splitlines() == lines
    assert console.splitlines() == lines
    assert (runs(root) / "r-start.lock").exists()     # the wrapper took the lock
    # seen within a few polls' time of the exit file (10 ms on a quiet machine)
    assert returned - (runs(root) / "r-start.exit").stat().st_mtime < 2.0


def test_the_end_is_the_lock_not_the_exit_file(node, root):
    """With a lock, the follower waits for the wrapper to let go: an exit file alone (the
    wrapper has yet to release it) does not end the stream, the release does, promptly."""
    remote, target = node
    run = HandRun(root, "r-lock", b"first\n")
    bg = Background(remote, target, root, "r-lock")
    time.sleep(0.5)
    run.write(b"second\n")
    run.end(5, release=False)
    time.sleep(0.6)
    assert bg.thread.is_alive(), "follow() ended on the exit file, not on the lock"
    released = run.end(5)     # (the exit file is already there)
    assert bg.join() == (5, "first\nsecond\n")
    assert bg.out.getvalue() == b"first\nsecond\n"
    assert bg.done_at - released < 1.0
    assert bg.ui.notes == []


def test_a_wrapper_that_dies_holding_the_lock_is_a_run_gone(node, root):
    remote, target = node
    run = HandRun(root, "r-killed", b"partial\n")
    bg = Background(remote, target, root, "r-killed")
    time.sleep(0.3)
    run.end(None)            # the lock goes with the process; no exit code was written
    with pytest.raises(RemoteError, match="no exit code"):
        bg.join()
    assert bg.out.getvalue() == b"partial\n"


def test_an_older_wrapper_without_a_lock_is_polled(node, root):
    remote, target = node
    run = HandRun(root, "r-old", b"one\n", lock=False)
    bg = Background(remote, target, root, "r-old")
    time.sleep(0.4)
    assert bg.thread.is_alive()
    run.write(b"two\n")
    ended = run.end(0)
    assert bg.join() == (0, "one\ntwo\n")
    assert bg.out.getvalue() == b"one\ntwo\n"
    assert bg.done_at - ended < 1.0
    assert not (runs(root) / "r-old.lock").exists()


def test_the_exit_marker_saves_the_round_trip(node, root, monkeypatch):
    """With the marker and the whole log in hand, follow() returns at once: it neither asks
    again nor waits for the node side to finish (here made to linger for 5 s)."""
    remote, target = node
    real = control._follower
    monkeypatch.setattr(control, "_follower",
                        lambda r, i: real(r, i).replace("wait $t; exit 0", "sleep 5; exit 0"))
    counting = Counting(remote)
    run = HandRun(root, "r-mark", b"a\n")
    bg = Background(counting, target, root, "r-mark")
    time.sleep(0.3)
    run.write(b"b\n")
    ended = run.end(7)
    assert bg.join() == (7, "a\nb\n")
    assert bg.done_at - ended < 2.0
    # a finished run, too: the marker and the log in one command
    out = io.BytesIO()
    assert follow(counting, target, str(root), "r-mark", UI(), out=out) == (7, "a\nb\n")
    assert out.getvalue() == b"a\nb\n"
    assert counting.runs == []


def test_without_the_marker_one_round_trip_reads_the_exit_code(node, root, monkeypatch):
    """A follower that never says its exit marker (as an older one did not say the size):
    follow() reads the exit file and the log's size afterwards, and fetches what it lacks."""
    remote, target = node
    real = control._follower
    monkeypatch.setattr(control, "_follower",
                        lambda r, i: real(r, i).replace('echo "swiftrun-exit $c $z" >&2', ":"))
    counting = Counting(remote)
    run = HandRun(root, "r-nomark", b"x\n")
    bg = Background(counting, target, root, "r-nomark")
    time.sleep(0.3)
    run.write(b"y\n")
    run.end(4)
    assert bg.join() == (4, "x\ny\n")
    assert bg.out.getvalue() == b"x\ny\n"
    assert len(counting.runs) == 1 and "stat -c %s" in counting.runs[0]


def test_a_stream_short_of_the_marked_size_is_completed_by_the_round_trip(node, root, monkeypatch):
    remote, target = node
    data = b"".join(b"line %d\n" % i for i in range(1000))
    (runs(root) / "r-short.log").write_bytes(data)
    (runs(root) / "r-short.exit").write_text("2\n")
    (runs(root) / "r-short.pid").write_text("1\n")
    real = control._follower
    # the finished-run branch sends only the first 100 bytes, then ends cleanly
    monkeypatch.setattr(control, "_follower", lambda r, i: real(r, i).replace(
        "exec cat .swiftrun/runs/r-short.log", "exec head -c 100 .swiftrun/runs/r-short.log"))
    counting = Counting(remote)
    out = io.BytesIO()
    code, _ = follow(counting, target, str(root), "r-short", UI(), out=out)
    assert (code, out.getvalue()) == (2, data)
    assert len(counting.runs) == 2     # exit code and size, then the rest of the log


@pytest.mark.parametrize("into", ["python", "file"])
def test_a_resume_from_an_offset_gives_exactly_the_rest(node, root, tmp_path, into):
    """A finished 3 MiB console of arbitrary bytes, from offsets around the 1 MiB head and the
    1 MiB reads: copied through Python (a progress view) or moved into a file by the kernel."""
    remote, target = node
    data = random.Random(17).randbytes(3 << 20)
    (runs(root) / "r-resume.log").write_bytes(data)
    (runs(root) / "r-resume.exit").write_text("0\n")
    (runs(root) / "r-resume.pid").write_text("1\n")
    for offset in (0, 1, 12345, (1 << 20) + 1, len(data) - 7, len(data)):
        if into == "python":
            out = io.BytesIO()
            code, head = follow(remote, target, str(root), "r-resume", UI(), out=out, offset=offset)
            got = out.getvalue()
        else:
            path = tmp_path / f"out-{offset}"
            with open(path, "wb") as fh:
                code, head = follow(remote, target, str(root), "r-resume", UI(), out=fh,
                                    offset=offset)
            got = path.read_bytes()
        assert code == 0
        assert len(got) == len(data) - offset and got == data[offset:], offset
        assert head == data[offset:offset + control.KEEP_BYTES].decode(errors="replace")


def test_a_resume_while_the_run_goes_on_gives_exactly_the_rest(node, root):
    remote, target = node
    first = b"".join(b"early %d\n" % i for i in range(500))
    run = HandRun(root, "r-live", first)
    offset = 1234
    bg = Background(remote, target, root, "r-live", offset=offset)
    time.sleep(0.3)
    later = b"".join(b"later %d\n" % i for i in range(500))
    run.write(later)
    run.end(0)
    assert bg.join()[0] == 0
    assert bg.out.getvalue() == (first + later)[offset:]


class CutOnce:
    """A Remote whose first stream stops after ``cut`` bytes of the console and fails, as a
    connection lost in the middle of it would (its exit marker has come through already)."""

    def __init__(self, remote: Remote, cut: int):
        self._remote, self.cut, self.streams = remote, cut, 0

    def popen(self, target, command, **kw):
        if "OFFSET=" in command:
            self.streams += 1
            if self.streams == 1:
                command = f"{{ {command}; }} | head -c {self.cut}; exit 1"
        return self._remote.popen(target, command, **kw)

    def __getattr__(self, name):
        return getattr(self._remote, name)


@pytest.fixture
def big_run(root):
    data = random.Random(23).randbytes(12 << 20)
    (runs(root) / "r-big.log").write_bytes(data)
    (runs(root) / "r-big.exit").write_text("4\n")
    (runs(root) / "r-big.pid").write_text("1\n")
    return data


def test_into_a_file_ssh_writes_the_console_itself(node, root, tmp_path, big_run, monkeypatch):
    """Into a regular file the console goes from ssh straight there, not through a pipe and
    this process; every byte once, in order, after what the file held; the head read back."""
    remote, target = node
    monkeypatch.setattr(control, "_splice", lambda *a: pytest.fail("went through this process"))
    monkeypatch.setattr(os, "read", lambda fd, n, real=os.read: (
        pytest.fail("console read here") if n > 65536 else real(fd, n)))
    path = tmp_path / "console"
    with open(path, "wb") as fh:
        fh.write(b"before\n")
        code, head = follow(remote, target, str(root), "r-big", UI(), out=fh, offset=5)
    assert code == 4
    assert path.read_bytes() == b"before\n" + big_run[5:]
    assert head == big_run[5:5 + control.KEEP_BYTES].decode(errors="replace")


def test_into_a_file_a_live_run_ends_with_its_last_bytes(node, root, tmp_path):
    """A run still going: tail -f writes into the file; the end (the lock let go) comes with
    every byte written before it, and promptly."""
    remote, target = node
    run = HandRun(root, "r-file", b"first\n")
    path = tmp_path / "console"
    result = {}

    def go():
        with open(path, "wb") as fh:
            result["r"] = follow(remote, target, str(root), "r-file", UI(), out=fh)
        result["at"] = time.monotonic()

    t = threading.Thread(target=go, daemon=True)
    t.start()
    time.sleep(0.4)
    run.write(b"second\n")
    ended = run.end(6)
    t.join(20)
    assert not t.is_alive() and result["r"] == (6, "first\nsecond\n")
    assert path.read_bytes() == b"first\nsecond\n"
    assert result["at"] - ended < 1.0


def test_a_replay_cut_in_the_middle_resumes_at_the_byte_reached(node, root, tmp_path, big_run):
    remote, target = node
    cutting = CutOnce(remote, cut=3 << 20)
    ui = UI()
    path = tmp_path / "console"
    with open(path, "wb") as fh:
        code, _ = follow(cutting, target, str(root), "r-big", ui, out=fh, reconnect_for=10)
    assert code == 4 and cutting.streams == 2
    assert path.read_bytes() == big_run            # nothing lost, nothing twice
    assert any("connection lost" in n for n in ui.notes)


def test_a_pipe_a_terminal_or_dev_null_keeps_the_stream_through_this_process():
    """There the head could not be read back, nor a broken stream tell how far it got."""
    r, w = os.pipe()
    try:
        assert control._read_back(w) is None and control._read_back(None) is None
    finally:
        os.close(r)
        os.close(w)
    with open(os.devnull, "wb") as null:
        assert control._read_back(null.fileno()) is None
