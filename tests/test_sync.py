"""swiftrun.sync against a real OpenSSH sshd on loopback; the "remote" tree is a local tmp dir.

The sshd's PATH starts with a directory holding a `tar` wrapper: normally it execs the real tar;
tests switch it (via a mode file) to emit a crafted archive or to fail half-way, standing in for a
malicious or broken headnode.
"""

from __future__ import annotations

import io
import json
import os
import random
import shutil
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest

from swiftrun import sync
from swiftrun.errors import ConfigError, RemoteError
from swiftrun.remote import Link, Remote, Target
from swiftrun.sync import fetching, manifest, pulling, sensitive, uploading
from tests.support.sshd import LoopbackSshd, keygen

FAKE_TAR = """#!/bin/sh
here=$(dirname "$0")
mode=$(cat "$here/tar.mode" 2>/dev/null)
case "$mode" in
  evil) cat >/dev/null; exec cat "$here/evil.tar" ;;
  fail) /bin/tar "$@" | head -c 3000; echo "tar: simulated failure" >&2; exit 2 ;;
  skip) grep -zv unreadable | /bin/tar "$@" ;;
  *) exec /bin/tar "$@" ;;
esac
"""


FAKE_RSYNC = """#!/bin/sh
here=$(dirname "$0")
mode=$(cat "$here/tar.mode" 2>/dev/null)
case "$mode" in
  fail) echo "rsync: simulated failure" >&2; exit 11 ;;
  *) exec /usr/bin/rsync "$@" ;;
esac
"""


# ---------------------------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    """One sshd for the module: (sshd, client key, known_hosts, fakebin dir, remote HOME)."""
    base = tmp_path_factory.mktemp("node")
    key = keygen(base / "client" / "id_ed25519")
    auth = base / "authorized_keys"
    auth.write_text(Path(str(key) + ".pub").read_text())
    home = base / "home"
    home.mkdir()
    fakebin = base / "fakebin"
    fakebin.mkdir()
    (fakebin / "tar").write_text(FAKE_TAR)
    (fakebin / "tar").chmod(0o755)
    (fakebin / "rsync").write_text(FAKE_RSYNC)
    (fakebin / "rsync").chmod(0o755)
    path = f"{fakebin}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    sshd = LoopbackSshd(base / "sshd", auth, env={"HOME": str(home), "PATH": path}).start()
    known = base / "known_hosts"
    known.write_text(f"[127.0.0.1]:{sshd.port} ssh-ed25519 {sshd.host_key_pub}\n")
    try:
        yield sshd, key, known, fakebin, home
    finally:
        sshd.stop()


def connect(node, cluster_dir: Path) -> Link:
    """swiftrun's own transport (OpenSSH, multiplexed), the key pinned beforehand: never added."""
    sshd, key, known, _, _ = node
    cluster_dir.mkdir(parents=True, exist_ok=True)
    target = Target("127.0.0.1", sshd.port, sshd.user, alias="node", label="node")
    (cluster_dir / "known_hosts").write_text(f"node ssh-ed25519 {sshd.host_key_pub}\n")
    remote = Remote(cluster_dir=cluster_dir, key_file=key, user=sshd.user, persist="0")
    return remote.connect(target, allow_new=False)


@pytest.fixture(params=["rsync", "tar", "bulk"])
def conn(node, tmp_path, request, monkeypatch):
    """Each test runs on every upload transport: rsync over the master (the default for a large
    incremental upload), the tar stream it falls back to (no rsync on one side, or thousands of
    removals), and bulk's pipeline, which carries every full upload where GNU tar is (the other
    two then carry only incremental ones)."""
    if request.param != "bulk":
        monkeypatch.setattr(uploading.bulk, "gnu_tar", lambda: None)
    if request.param == "tar":
        monkeypatch.setattr(uploading, "_have_rsync", lambda: False)
        monkeypatch.setattr(pulling, "worth_it", lambda *a: False)
    elif request.param == "rsync":      # rsync for every upload and fetch, however small
        monkeypatch.setattr(uploading, "RSYNC_MIN_BYTES", 0)
        monkeypatch.setattr(uploading, "RSYNC_MIN_FILES", 0)
        monkeypatch.setattr(pulling, "PULL_MIN_BYTES", 0)
        monkeypatch.setattr(pulling, "PULL_MIN_FILES", 0)
    c = connect(node, tmp_path / "cluster")
    yield c
    c.remote.close()


@pytest.fixture
def tar_mode(node, monkeypatch):
    """The node's tar wrapper misbehaving on purpose; fetches then go by the tar stream."""
    monkeypatch.setattr(pulling, "worth_it", lambda *a: False)
    mode_file = node[3] / "tar.mode"

    def set_mode(mode: str) -> None:
        mode_file.write_text(mode)

    yield set_mode
    mode_file.unlink(missing_ok=True)


@pytest.fixture
def dirs(tmp_path):
    local, remote = tmp_path / "local", tmp_path / "remote"
    local.mkdir()
    return local, remote, tmp_path / "state" / "proj.json"


T0 = 1_600_000_000_123_456_000   # a fixed mtime in ns (sub-second on purpose)


def write(root: Path, rel: str, text: str | bytes = "x", mode: int | None = None, mtime_ns: int | None = None):
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(text.encode() if isinstance(text, str) else text)
    if mode is not None:
        p.chmod(mode)
    if mtime_ns is not None:
        os.utime(p, ns=(mtime_ns, mtime_ns))
    return p


def make_project(local: Path) -> None:
    write(local, "p4.swift", "type file;\n", mtime_ns=T0)
    write(local, "bin/sort.sh", "#!/bin/sh\nsort \"$1\"\n", mode=0o755, mtime_ns=T0 + 1000)
    write(local, "data/in.txt", "3\n1\n2\n", mode=0o640)
    (local / "empty" / "nested").mkdir(parents=True)
    os.symlink("data/in.txt", local / "input-link")
    os.symlink("../bin", local / "data" / "bin-link")


def count_tree(root: Path) -> int:
    """Files and links under ``root``, swiftrun's own ``.swiftrun/`` left out."""
    return sum(1 for p in root.rglob("*") if not p.is_dir() and ".swiftrun" not in p.relative_to(root).parts)


def up(conn, dirs, **kw):
    local, remote, state = dirs
    return sync.upload(conn, local, str(remote), state_file=state, **kw)


def down(conn, dirs, **kw):
    local, remote, state = dirs
    return sync.fetch(conn, local, str(remote), state_file=state, **kw)


# ---------------------------------------------------------------------------------------------
# upload


def test_first_upload_sends_everything_and_keeps_metadata(conn, dirs):
    local, remote, state = dirs
    make_project(local)
    rep = up(conn, dirs)
    assert rep.full and rep.files_sent == 5 and rep.total_files == 3
    assert rep.bytes_sent == rep.total_bytes == sum((local / p).stat().st_size
                                                    for p in ("p4.swift", "bin/sort.sh", "data/in.txt"))
    assert (remote / "p4.swift").read_text() == "type file;\n"
    assert stat.S_IMODE((remote / "bin/sort.sh").stat().st_mode) == 0o755
    assert stat.S_IMODE((remote / "data/in.txt").stat().st_mode) == 0o640
    assert abs((remote / "p4.swift").stat().st_mtime_ns - T0) < 1000
    assert abs((remote / "bin/sort.sh").stat().st_mtime_ns - (T0 + 1000)) < 1000
    assert os.readlink(remote / "input-link") == "data/in.txt"
    assert os.readlink(remote / "data/bin-link") == "../bin"
    assert (remote / "empty/nested").is_dir() and not any((remote / "empty/nested").iterdir())
    token = (remote / ".swiftrun/sync-id").read_text().strip()
    assert token and token == sync.Manifest.load(state).sync_id
    assert state.exists()


def test_incremental_changes_deletes_and_renames(conn, dirs):
    local, remote, _ = dirs
    make_project(local)
    up(conn, dirs)

    rep = up(conn, dirs)
    assert not rep.full and rep.files_sent == 0 and rep.bytes_sent == 0 and rep.deleted == 0

    write(local, "data/in.txt", "changed\n")
    rep = up(conn, dirs)
    assert not rep.full and rep.files_sent == 1 and rep.bytes_sent == len("changed\n")
    assert (remote / "data/in.txt").read_text() == "changed\n"

    (local / "p4.swift").unlink()
    rep = up(conn, dirs)
    assert rep.files_sent == 0 and rep.deleted == 1
    assert not (remote / "p4.swift").exists()

    (local / "bin/sort.sh").rename(local / "bin/sort2.sh")
    rep = up(conn, dirs)
    assert rep.files_sent == 1 and rep.deleted == 1
    assert not (remote / "bin/sort.sh").exists()
    assert stat.S_IMODE((remote / "bin/sort2.sh").stat().st_mode) == 0o755

    shutil.rmtree(local / "empty")
    rep = up(conn, dirs)
    assert rep.deleted == 1 and not (remote / "empty").exists()


def test_mode_and_type_changes(conn, dirs):
    local, remote, _ = dirs
    write(local, "a", "file")
    write(local, "b/c", "in dir")
    write(local, "s.sh", "echo")
    up(conn, dirs)
    (local / "s.sh").chmod(0o700)
    (local / "a").unlink()
    write(local, "a/inner", "now a dir")
    shutil.rmtree(local / "b")
    write(local, "b", "now a file")
    rep = up(conn, dirs)
    assert not rep.full
    assert stat.S_IMODE((remote / "s.sh").stat().st_mode) == 0o700
    assert (remote / "a/inner").read_text() == "now a dir"
    assert (remote / "b").read_text() == "now a file"


def test_one_file_incremental_uses_one_channel(conn, dirs, request):
    local, _, _ = dirs
    for i in range(50):
        write(local, f"f/{i:03d}.txt", f"{i}\n")
    up(conn, dirs)
    write(local, "f/007.txt", "changed\n")
    opened = []
    real_popen, real_run = Remote.popen, uploading.subprocess.run

    def counting(self, *a, **kw):       # every remote command is one ssh on the open master
        opened.append(1)
        return real_popen(self, *a, **kw)

    def counting_run(argv, *a, **kw):   # or one rsync on it
        if argv and argv[0] == "rsync":
            opened.append(1)
        return real_run(argv, *a, **kw)

    Remote.popen = counting
    uploading.subprocess.run = counting_run
    try:
        rep = up(conn, dirs)
    finally:
        Remote.popen, uploading.subprocess.run = real_popen, real_run
    assert rep.files_sent == 1 and rep.channels == 1
    # the tar stream runs on the shell opened while the tree was scanned; rsync (forced here
    # for one small file) starts its own, and that early shell is closed unused
    assert len(opened) == (2 if request.node.callspec.params["conn"] == "rsync" else 1)


@pytest.mark.parametrize("damage", ["missing", "changed", "wiped"])
def test_remote_token_mismatch_forces_full_upload(conn, dirs, damage):
    local, remote, _ = dirs
    make_project(local)
    up(conn, dirs)
    write(local, "data/in.txt", "edit\n")
    if damage == "missing":
        (remote / ".swiftrun/sync-id").unlink()
    elif damage == "changed":
        (remote / ".swiftrun/sync-id").write_text("someone-else\n")
    else:
            shutil.rmtree(remote)
    rep = up(conn, dirs)
    assert rep.full and rep.files_sent == 5 and rep.channels == 2
    assert (remote / "data/in.txt").read_text() == "edit\n"
    assert (remote / "p4.swift").exists() and (remote / "empty/nested").is_dir()
    assert not up(conn, dirs).full


def test_manifest_for_other_root_or_corrupt_means_full(conn, dirs, tmp_path):
    local, remote, state = dirs
    write(local, "a.txt", "a")
    up(conn, dirs)
    state.write_text("{not json")
    rep = up(conn, dirs)
    assert rep.full and rep.channels == 1
    other = tmp_path / "remote2"
    rep = sync.upload(conn, local, str(other), state_file=state)
    assert rep.full and (other / "a.txt").read_text() == "a"


@pytest.mark.parametrize("bad", ["../victim", "/VICTIM", "x/../../victim", "x//y", "./a.txt"])
def test_a_manifest_naming_a_path_outside_the_root_is_refused_whole(conn, dirs, tmp_path, bad):
    """The upload removes what the manifest lists and the user deleted: a manifest edited to
    name a path outside the root would remove it on the headnode. Such a manifest is not
    trusted at all (a full upload follows, nothing is removed)."""
    local, remote, state = dirs
    write(local, "a.txt", "a")
    write(local, "b.txt", "b")
    up(conn, dirs)
    victim = tmp_path / "victim"
    victim.write_text("keep me")
    bad = bad.replace("VICTIM", str(victim).lstrip("/"))
    data = json.loads(state.read_text())
    assert data["version"] == manifest.MANIFEST_VERSION
    paths = data["paths"].split("\0")
    paths[paths.index("b.txt")] = bad               # as if b.txt were deleted and bad known
    data["paths"] = "\0".join(paths)
    state.write_text(json.dumps(data))
    (local / "b.txt").unlink()
    assert sync.Manifest.load(state).entries == {}
    rep = up(conn, dirs)
    assert rep.full and rep.deleted == 0 and victim.read_text() == "keep me"
    assert (remote / "a.txt").exists()


def test_a_manifest_written_by_the_previous_version_still_counts(conn, dirs):
    """Version 1 kept {path: [type, size, mtime_ns, mode, target]}: read, not a full upload."""
    local, remote, state = dirs
    make_project(local)
    up(conn, dirs)
    m = sync.Manifest.load(state)
    assert len(m.entries) > 5
    state.write_text(json.dumps({"version": 1, "remote_root": m.remote_root, "sync_id": m.sync_id,
                                 "entries": {k: list(v) for k, v in m.entries.items()}}))
    assert sync.Manifest.load(state) == m
    write(local, "data/in.txt", "edit\n")
    rep = up(conn, dirs)
    assert not rep.full and rep.files_sent == 1
    assert json.loads(state.read_text())["version"] == manifest.MANIFEST_VERSION


def test_ignore_rules_apply(conn, dirs):
    local, remote, _ = dirs
    write(local, ".gitignore", "*.log\n!keep.log\nbuild/\n/top-only.txt\n")
    write(local, ".swiftignore", "bigdata/\n!wanted.log\n")
    for rel in ("a.log", "keep.log", "wanted.log", "build/x.o", "src/build", "top-only.txt",
                "src/top-only.txt", "bigdata/huge.bin", "scratch/tmp.dat", "p.swift",
                "run001/log.txt", "sub/run002/x", ".git/HEAD", "lib/__pycache__/m.pyc", ".swiftrun/x"):
        write(local, rel, rel)
    rep = up(conn, dirs, exclude=["scratch/", "*.bak"])
    got = sorted(str(p.relative_to(remote)) for p in remote.rglob("*")
                 if p.is_file() and ".swiftrun" not in p.parts)
    assert got == sorted([".gitignore", ".swiftignore", "keep.log", "wanted.log", "src/build",
                          "src/top-only.txt", "p.swift", "sub/run002/x"])
    assert rep.files_sent == len(got)


def test_large_upload_is_reported(conn, dirs):
    local, _, _ = dirs
    write(local, "big.bin", b"\0" * 5000)
    assert up(conn, dirs, warn_bytes=4000).large
    write(local, "small.txt", "s")
    assert not up(conn, dirs, warn_bytes=4000).large


def test_large_upload_is_announced_before_anything_is_sent(conn, dirs):
    local, remote, _ = dirs
    write(local, "big.bin", b"\0" * 5000)
    write(local, "small.txt", "s")
    heard = []
    up(conn, dirs, warn_bytes=4000,
       on_large=lambda n: heard.append((n, (remote / "big.bin").exists())))
    assert heard == [(5001, False)]          # told the size, and nothing was on the node yet
    heard.clear()
    write(local, "small.txt", "t")           # a one-file change stays quiet
    up(conn, dirs, warn_bytes=4000, on_large=lambda n: heard.append(n))
    assert heard == []


def test_tilde_remote_root(conn, node, tmp_path):
    local = tmp_path / "local"
    write(local, "x y/it's.txt", "quoted")
    state = tmp_path / "s.json"
    rep = sync.upload(conn, local, "~/swiftrun/my proj", state_file=state)
    home = node[4]
    assert rep.full and (home / "swiftrun/my proj/x y/it's.txt").read_text() == "quoted"
    (home / "swiftrun/my proj/out.txt").write_text("result")
    got = sync.fetch(conn, local, "~/swiftrun/my proj", state_file=state)
    assert got.files == ["out.txt"] and (local / "out.txt").read_text() == "result"


# ---------------------------------------------------------------------------------------------
# fetch


def simulate_run(remote: Path) -> None:
    write(remote, "sorted.txt", "1\n2\n3\n", mtime_ns=T0 + 5_000_000_000)
    write(remote, "output/a.out", "A", mode=0o600)
    write(remote, "output/b.txt", "B")
    with open(remote / "data/in.txt", "a") as fh:      # the run changed an input
        fh.write("appended\n")
    write(remote, "run001/p4-run001.log", "log")
    write(remote, "run001/info/job.info", "info")
    write(remote, ".swiftrun/runs/1.log", "console")


def test_fetch_brings_back_new_and_changed_only(conn, dirs):
    local, remote, _ = dirs
    make_project(local)
    up(conn, dirs)
    simulate_run(remote)
    rep = down(conn, dirs)
    assert sorted(rep.files) == ["data/in.txt", "output/a.out", "output/b.txt", "run001/info/job.info",
                                 "run001/p4-run001.log", "sorted.txt"]
    assert (local / "data/in.txt").read_text() == "3\n1\n2\nappended\n"
    assert (local / "sorted.txt").stat().st_mtime_ns // 1000 == (T0 + 5_000_000_000) // 1000
    assert stat.S_IMODE((local / "output/a.out").stat().st_mode) == 0o600
    assert not (local / ".swiftrun/runs").exists()
    assert not list((local / ".swiftrun").glob("fetch-*"))      # staging cleaned up
    assert rep.conflicts == [] and rep.refused == []

    assert down(conn, dirs).files == []                          # nothing new: nothing fetched
    rep = up(conn, dirs)                                         # fetched files are not sent back
    assert rep.files_sent == 0 and rep.deleted == 0
    assert (remote / "run001/p4-run001.log").exists()            # ignored locally, kept remotely


def test_fetch_outputs_patterns_and_extra_dirs(conn, dirs):
    local, remote, _ = dirs
    make_project(local)
    up(conn, dirs)
    simulate_run(remote)
    rep = down(conn, dirs, outputs=["output/*.out"])
    assert rep.files == ["output/a.out"]
    rep = down(conn, dirs, outputs=["sorted.txt"], extra_dirs=["run001"])
    assert sorted(rep.files) == ["run001/info/job.info", "run001/p4-run001.log", "sorted.txt"]
    assert not (local / "output/b.txt").exists()
    assert (local / "data/in.txt").read_text() == "3\n1\n2\n"   # not matched: left alone
    (local / "run001/p4-run001.log").unlink()
    assert down(conn, dirs, outputs=["nothing"], extra_dirs=["run001/"]).files == ["run001/p4-run001.log"]


def test_fetch_without_manifest_skips_identical_local_files(conn, dirs):
    local, remote, state = dirs
    make_project(local)
    up(conn, dirs)
    state.unlink()
    write(remote, "new.txt", "n")
    assert down(conn, dirs).files == ["new.txt"]


def test_fetch_refuses_escaping_symlinks(conn, dirs, tmp_path):
    local, remote, _ = dirs
    write(local, "a.txt", "a")
    up(conn, dirs)
    write(remote, "ok.txt", "ok")
    os.symlink("../../outside", remote / "escape")
    os.symlink("/etc/passwd", remote / "abs-link")
    os.symlink("ok.txt", remote / "inside-link")
    rep = down(conn, dirs)
    assert sorted(rep.files) == ["inside-link", "ok.txt"]
    assert {r.split(":")[0] for r in rep.refused} == {"escape", "abs-link"}
    assert not os.path.lexists(local / "escape") and not os.path.lexists(local / "abs-link")
    assert os.readlink(local / "inside-link") == "ok.txt"


def crafted_tar(outside: Path) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        def add(name, data=b"pwned", kind=tarfile.REGTYPE, link=""):
            ti = tarfile.TarInfo(name)
            ti.type, ti.linkname = kind, link
            if kind == tarfile.REGTYPE:
                ti.size = len(data)
                tar.addfile(ti, io.BytesIO(data))
            else:
                tar.addfile(ti)
        add("../evil")
        add(str(outside / "abs-evil"))
        add("esc", kind=tarfile.SYMTYPE, link=str(outside))
        add("esc/through-link")
        add("hard", kind=tarfile.LNKTYPE, link="../evil")
        add("unrequested.txt")
        add("good.txt", b"good")
    return buf.getvalue()


def test_fetch_refuses_malicious_tar_entries(conn, dirs, node, tar_mode, tmp_path):
    local, remote, _ = dirs
    write(local, "a.txt", "a")
    up(conn, dirs)
    write(remote, "good.txt", "good")
    outside = tmp_path / "outside"
    outside.mkdir()
    (node[3] / "evil.tar").write_bytes(crafted_tar(outside))
    tar_mode("evil")
    rep = down(conn, dirs)
    assert rep.files == ["good.txt"] and (local / "good.txt").read_text() == "good"
    assert len(rep.refused) == 6, rep.refused
    assert not (tmp_path / "state" / "evil").exists() and not (local.parent / "evil").exists()
    assert list(outside.iterdir()) == []
    assert not os.path.lexists(local / "esc") and not (local / "unrequested.txt").exists()


def test_remote_tar_failure_leaves_local_files_intact(conn, dirs, tar_mode):
    local, remote, _ = dirs
    write(local, "notes.txt", "original")
    up(conn, dirs)
    write(remote, "a_big.bin", os.urandom(200_000))
    write(remote, "notes.txt", "changed by the run")
    tar_mode("fail")
    with pytest.raises(RemoteError) as exc:
        down(conn, dirs)
    assert "swiftrun fetch" in str(exc.value) and "--keep-cluster" in str(exc.value)
    assert (local / "notes.txt").read_text() == "original"
    assert not (local / "a_big.bin").exists()
    assert not list((local / ".swiftrun").glob("fetch-*"))
    tar_mode("")
    rep = down(conn, dirs)                                        # a retry then works
    assert sorted(rep.files) == ["a_big.bin", "notes.txt"]


class DroppingReader:
    """Reads a stream and kills the whole SSH connection (the node's master) after ``limit`` bytes."""

    def __init__(self, inner, kill, limit):
        self.inner, self.kill, self.limit, self.seen = inner, kill, limit, 0

    def read(self, n=-1):
        if self.seen >= self.limit:
            self.kill()
        data = self.inner.read(n)
        self.seen += len(data)
        return data


def test_connection_drop_mid_fetch(node, dirs, monkeypatch, tmp_path):
    local, remote, _ = dirs
    c = connect(node, tmp_path / "cluster")
    write(local, "notes.txt", "original")
    sync.upload(c, local, str(remote), state_file=dirs[2])
    write(remote, "a_big.bin", os.urandom(8 << 20))   # more than the SSH window
    write(remote, "notes.txt", "changed by the run")
    real_exec = fetching._exec

    def exec_then_drop(conn, script, timeout, *early):
        chan = real_exec(conn, script, timeout, *early)
        if "tar -c" in script:
            real_makefile = chan.makefile
            chan.makefile = lambda *a: DroppingReader(real_makefile(*a),
                                                      lambda: c.remote.drop(c.target), 100_000)
        return chan

    monkeypatch.setattr(fetching, "_exec", exec_then_drop)
    monkeypatch.setattr(pulling, "worth_it", lambda *a: False)     # the tar stream drops here
    with pytest.raises(RemoteError, match="connection dropped.*swiftrun fetch"):
        sync.fetch(c, local, str(remote), state_file=dirs[2], timeout=10)
    assert (local / "notes.txt").read_text() == "original"
    assert not (local / "a_big.bin").exists()
    monkeypatch.undo()
    c2 = connect(node, tmp_path / "cluster")
    try:
        assert sorted(sync.fetch(c2, local, str(remote), state_file=dirs[2]).files) == ["a_big.bin", "notes.txt"]
    finally:
        c2.remote.close()
        c.remote.close()


def test_bulk_fetch_cut_short_leaves_local_files_intact(node, dirs, monkeypatch, tmp_path,
                                                        pull_by):
    """The remote tar or rsync killed mid-transfer: nothing local replaced, no staging left,
    and the retry brings everything."""
    local, remote, _ = dirs
    c = connect(node, tmp_path / "cluster")
    try:
        write(local, "notes.txt", "original")
        sync.upload(c, local, str(remote), state_file=dirs[2])
        write(remote, "a_big.bin", os.urandom(8 << 20))
        write(remote, "notes.txt", "changed by the run")
        name, program = ("_tar_script", "tar") if pull_by == "tar" else ("_rsync_path", "rsync")
        real = getattr(pulling, name)
        monkeypatch.setattr(pulling, name, lambda root: _killed_soon(real(root), program))
        with pytest.raises(RemoteError, match="swiftrun fetch"):
            sync.fetch(c, local, str(remote), state_file=dirs[2])
        assert (local / "notes.txt").read_text() == "original"
        assert not (local / "a_big.bin").exists()
        assert not list((local / ".swiftrun").glob("fetch-*"))
        monkeypatch.undo()
        rep = sync.fetch(c, local, str(remote), state_file=dirs[2])
        assert sorted(rep.files) == ["a_big.bin", "notes.txt"]
        assert (local / "a_big.bin").read_bytes() == (remote / "a_big.bin").read_bytes()
    finally:
        c.remote.close()


def test_a_file_tar_saw_change_is_brought_again_by_rsync(node, dirs, monkeypatch, tmp_path):
    """GNU tar exits 1 when a file changed or shrank while it read it (it pads a shrunk one
    with zeros): what it staged is thrown away and rsync brings those names again."""
    if pulling.bulk.gnu_tar() is None:
        pytest.skip("no GNU tar on this machine: fetch's pulls go by rsync only")
    local, remote, state = dirs
    c = connect(node, tmp_path / "cluster")
    try:
        write(local, "in.txt", "i")
        sync.upload(c, local, str(remote), state_file=state)
        write(remote, "big.bin", b"real bytes" * 100_000)
        write(remote, "other.txt", "other")
        real_tar = pulling.tar_pull
        said = []

        def padded(link, root, names, dest, hint, **kw):
            said.append(real_tar(link, root, names, dest, hint, **kw))
            with open(os.path.join(dest, "big.bin"), "r+b") as fh:
                fh.write(b"\0" * 4096)     # what a shrunk file looks like after tar
            return "changed"

        monkeypatch.setattr(pulling, "tar_pull", padded)
        monkeypatch.setattr(pulling, "PULL_MIN_FILES", 0)
        rep = sync.fetch(c, local, str(remote), state_file=state)
    finally:
        c.remote.close()
    assert said == ["complete"]
    assert sorted(rep.files) == ["big.bin", "other.txt"] and rep.failed == []
    assert (local / "big.bin").read_bytes() == b"real bytes" * 100_000
    assert (local / "other.txt").read_text() == "other"


def test_fetch_missing_remote_root(conn, dirs):
    with pytest.raises(RemoteError, match="does not exist"):
        down(conn, dirs)


def test_upload_remote_failure_is_remote_error(conn, dirs, tmp_path):
    local, _, state = dirs
    write(local, "a.txt", "a")
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a dir")
    with pytest.raises(RemoteError):
        sync.upload(conn, local, str(blocker / "sub"), state_file=state)
    assert not state.exists()


def test_many_deletions_and_odd_names(conn, dirs):
    local, remote, _ = dirs
    names = [f"d/{i:04d} with space\nnewline.txt" for i in range(300)] + ["-dash", "*star", "$x",
                                                                        "host:colon", "e/--rf"]
    for n in names:
        write(local, n, n)
    up(conn, dirs)
    assert all((remote / n).read_text() == n for n in names)
    for n in names[:200] + ["-dash", "$x"]:
        (local / n).unlink()
    rep = up(conn, dirs)
    assert rep.deleted == 202
    assert not (remote / "-dash").exists() and (remote / "*star").exists()
    assert len(list((remote / "d").iterdir())) == 100


@pytest.mark.parametrize("budget", [0, None], ids=["names-on-stdin", "names-as-arguments"])
def test_rsync_gets_exactly_the_plan_whichever_way_the_names_go(node, dirs, monkeypatch, tmp_path,
                                                                budget):
    """rsync reads --files-from a byte per system call, so names go as arguments when they
    fit: either way it sends the planned names (odd ones included) and nothing else."""
    local, remote, state = dirs
    monkeypatch.setattr(uploading, "RSYNC_MIN_FILES", 0)
    monkeypatch.setattr(uploading.bulk, "gnu_tar", lambda: None)     # rsync for a first upload
    if budget is not None:
        monkeypatch.setattr(uploading, "_argv_budget", lambda: budget)
    seen = []
    real = uploading._rsync_argv
    monkeypatch.setattr(uploading, "_rsync_argv", lambda *a: seen.append(a[2]) or real(*a))
    names = ["-n", "a:b", "x/host:y", "sp ace", "nl\nx", "*", "$(touch pwned)", "d/e/f"]
    for n in names:
        write(local, n, n)
    c = connect(node, tmp_path / "cluster")
    try:
        sync.upload(c, local, str(remote), state_file=state)
    finally:
        c.remote.close()
    assert (seen[0] is None) == (budget == 0)
    got = sorted(str(p.relative_to(remote)) for p in remote.rglob("*")
                 if p.is_file() and ".swiftrun" not in p.parts)
    assert got == sorted(names)
    assert all((remote / n).read_text() == n for n in names)
    assert not (local / "pwned").exists() and not (remote / "pwned").exists()


def test_whole_second_mtimes_match_either_way_round():
    """A side that keeps whole seconds (a file system on either machine) matches the other's nanoseconds within that second, whichever side the call starts from;
    another second, or nanoseconds on both sides that differ, do not."""
    ns = sync.Entry("f", 5, 1_700_000_000_123_456_789, 0o644)
    whole = ns._replace(mtime_ns=1_700_000_000_000_000_000)
    assert ns.same_remote(whole) and whole.same_remote(ns)
    later = ns._replace(mtime_ns=1_700_000_001_000_000_000)
    assert not ns.same_remote(later) and not later.same_remote(ns)
    other = ns._replace(mtime_ns=1_700_000_000_923_456_789)
    assert not ns.same_remote(other) and not other.same_remote(ns)
    assert not ns.same_remote(whole._replace(size=6))


def test_find_mtimes_parse_exactly_on_the_fast_path_and_off_it():
    """GNU find's %T@ has ten fractional digits; the fast path reads those, anything else goes
    the general way; both give the same nanoseconds as the plain decimal reading."""
    from fractions import Fraction

    from swiftrun.sync.listing import _parse_mtime_ns
    rng = random.Random(7)
    texts = ["1715000000", "1715000000.5", "1715000000.123456789", "0.0000000010"]
    texts += [f"{rng.randrange(2**34)}.{rng.randrange(10**9):09d}0" for _ in range(200)]
    for t in texts:
        assert _parse_mtime_ns(t) == int(Fraction(t) * 10**9), t


def test_the_listing_parses_the_same_however_find_s_output_is_cut():
    """Records parsed as chunks arrive: a record (two NUL-ended fields) and a multi-byte name
    split anywhere across chunks give what one read gives; a cut-short listing is an error."""
    from swiftrun.sync.listing import _parse_stream

    class Chunks:
        def __init__(self, data: bytes, sizes):
            self.data, self.sizes = data, iter(sizes)

        def read1(self, n):
            k = next(self.sizes, len(self.data)) or 1
            part, self.data = self.data[:k], self.data[k:]
            return part

    recs = [("f", 3, "1715000000.1234567890", "644", "a b.txt", ""),
            ("d", 4096, "1715000001.0000000000", "755", "dír", ""),
            ("f", 10, "1715000002.5000000000", "600", "dír/ünïcode\tname", ""),
            ("l", 7, "1715000003.0000000000", "777", "dír/link", "../a b.txt")]
    data = b"".join(f"{k}\t{s}\t{m}\t{mo}\t{n}\0{tg}\0".encode() for k, s, m, mo, n, tg in recs)
    whole: dict = {}
    _parse_stream(Chunks(data, [len(data)]), whole)
    assert sorted(whole) == ["a b.txt", "dír", "dír/link", "dír/ünïcode\tname"]
    assert whole["dír/link"].target == "../a b.txt" and whole["a b.txt"].size == 3
    rng = random.Random(3)
    for _ in range(300):
        got: dict = {}
        _parse_stream(Chunks(data, [rng.randint(1, 9) for _ in range(len(data))]), got)
        assert got == whole
    with pytest.raises(EOFError):
        _parse_stream(Chunks(data[:-5], [7] * len(data)), {})


def test_the_argument_budget_holds_a_20k_tree_and_execs():
    """A budget of ARG_MAX/4 sent the bench's 20 000 names (17 characters each) to stdin. The
    budget now takes what the environment leaves of ARG_MAX: such a tree goes as arguments,
    and a command line that fills the whole budget still execs."""
    arg_max = os.sysconf("SC_ARG_MAX")
    if arg_max < 2 * 1024 * 1024:
        pytest.skip(f"ARG_MAX is {arg_max} here; the 20 000-name case needs Linux's usual 2 MiB")
    assert uploading._as_args([f"d{i // 100:03d}/f{i:05d}.txt" for i in range(20000)]) is not None
    budget = uploading._argv_budget()
    name = "n" * 200
    args = uploading._as_args([name] * (budget // (len("./" + name) + 1 + 9)))   # + NUL, pointer
    assert args is not None
    subprocess.run(["true", *args], check=True)


def test_interrupted_upload_makes_the_next_one_full(conn, dirs, tar_mode):
    local, remote, _ = dirs
    make_project(local)
    up(conn, dirs)
    write(local, "data/in.txt", "new")
    tar_mode("fail")                      # remote tar exits 2, remote rsync 11
    with pytest.raises(RemoteError, match=r"remote exit 2|rsync: simulated failure"):
        up(conn, dirs)
    assert not (remote / ".swiftrun/sync-id").exists()
    tar_mode("")
    rep = up(conn, dirs)
    assert rep.full and (remote / "data/in.txt").read_text() == "new"


def test_missing_local_root_is_refused_not_mirrored(conn, dirs, tmp_path):
    from swiftrun.errors import ConfigError
    local, remote, state = dirs
    write(local, "a.txt", "a")
    up(conn, dirs)
    with pytest.raises(ConfigError):
        sync.upload(conn, tmp_path / "nope", str(remote), state_file=state)
    assert (remote / "a.txt").exists()


def test_fetch_skips_caches_and_vcs(conn, dirs):
    local, remote, _ = dirs
    write(local, "m.py", "x = 1")
    up(conn, dirs)
    write(remote, "__pycache__/m.cpython-311.pyc", "pyc")
    write(remote, ".git/HEAD", "ref")
    write(remote, "out.txt", "o")
    assert down(conn, dirs).files == ["out.txt"]


def test_rsync_is_asked_for_whole_directories_and_single_files_only():
    kinds = {"new": "d", "new/a": "f", "new/sub": "d", "new/sub/b": "f",
             "old": "d", "old/in.txt": "f", "old/out.txt": "f",
             "mixed": "d", "mixed/__pycache__": "d", "mixed/__pycache__/x.pyc": "f",
             "mixed/r.txt": "f", "empty": "d", "touched": "d", "touched/in.txt": "f"}
    names = sorted(["new", "new/a", "new/sub", "new/sub/b", "old/out.txt", "mixed",
                    "mixed/r.txt", "empty", "touched"])
    # new/ and the empty dir go whole; old/ only by its new file; mixed/ holds a cache that was
    # not selected, so only its file goes; touched/ changed only its mtime: nothing to pull
    assert pulling.transfer_list(names, kinds) == ["empty", "mixed/r.txt", "new", "old/out.txt"]
    assert pulling.transfer_list(["f1", "f2"], {"f1": "f", "f2": "f"}) == ["f1", "f2"]


def test_names_are_split_by_directory_as_a_test_per_name_would_split_them():
    # split_under bisects the sorted names; "out-x" and "out0" sort around "out/..." and
    # must stay outside
    names = sorted(["out", "out-x", "out.txt", "out/a", "out/sub/b", "out0", "outer/c", "z/out/d",
                    "new", "new/x"])
    assert pulling.split_under(names, ["out", "new"]) == (
        ["new", "new/x", "out", "out/a", "out/sub/b"],
        ["out-x", "out.txt", "out0", "outer/c", "z/out/d"])
    rng = random.Random(7)
    for _ in range(500):
        names = sorted({"/".join(rng.choice(["a", "a-b", "a0", "b", "ä", "c d"])
                                 for _ in range(rng.randint(1, 3))) for _ in range(25)})
        dirs = set(rng.sample(names, rng.randint(0, 3)))
        inside = [n for n in names if n in dirs or pulling.under(n, dirs)]
        assert pulling.split_under(names, dirs) == (inside, [n for n in names if n not in inside])


@pytest.fixture(params=["tar", "rsync"])
def pull_by(request, monkeypatch):
    """How fetch's bulk pulls go (``pulling.pull``): GNU tar both ends, or rsync where this
    side has no GNU tar."""
    if request.param == "tar" and pulling.bulk.gnu_tar() is None:
        pytest.skip("no GNU tar on this machine: the rsync case carries the pull")
    if request.param == "rsync":
        monkeypatch.setattr(pulling.bulk, "gnu_tar", lambda: None)
    return request.param


def _uploaded_over_rsync(node, tmp_path, monkeypatch):
    """A one-file project uploaded, fetches going by rsync however small: (link, local, remote,
    manifest)."""
    monkeypatch.setattr(pulling, "PULL_MIN_FILES", 0)
    monkeypatch.setattr(pulling, "PULL_MIN_BYTES", 0)
    c = connect(node, tmp_path / "cluster")
    local, remote, state = tmp_path / "local", tmp_path / "remote", tmp_path / "state.json"
    local.mkdir()
    write(local, "in.txt", "i")
    sync.upload(c, local, str(remote), state_file=state)
    return c, local, remote, state


def _before_each_pull(monkeypatch, hook):
    """Call ``hook(names, into_place)`` just before each of fetch's GNU tar or rsync pulls."""
    real = pulling.pull

    def after_the_hook(link, root, names, dest, hint, **kw):
        hook(list(names), kw.get("into_place", False))
        return real(link, root, names, dest, hint, **kw)

    monkeypatch.setattr(pulling, "pull", after_the_hook)


def _fetch_and_close(c, local, remote, state):
    try:
        return sync.fetch(c, local, str(remote), state_file=state)
    finally:
        c.remote.close()


def test_a_new_output_directory_goes_straight_into_place_under_the_same_rules(node, tmp_path,
                                                                          monkeypatch, pull_by):
    # a new directory selected whole skips the per-entry install: GNU tar (or rsync) brings it
    # into staging, one walk applies the rules there (modes, links, the paths never fetched)
    # and records it, one rename puts it in place. One with a link out of the project or a
    # setuid file goes through the per-entry rules instead.
    c, local, remote, state = _uploaded_over_rsync(node, tmp_path, monkeypatch)
    for k in range(30):
        write(remote, f"out/part{k:02d}.txt", f"{k}")
    write(remote, "out/sub/deep.txt", "d", mode=0o640)
    write(remote, "build/__pycache__/m.pyc", "pyc")        # build/ holds only a cache
    write(remote, "risky/ok.txt", "ok")
    os.symlink("/etc/passwd", remote / "risky/escape")
    write(remote, "suid/tool", "#!/bin/sh\n", mode=0o4755)
    asked = []

    def spy(names, into_place):
        asked.append((names, into_place))
        if into_place:                      # the run writes on after the listing
            write(remote, "out/late.txt", "late")
            write(remote, "out/__pycache__/x.pyc", "pyc")
            write(remote, "out/setuid", "s", mode=0o6755)

    _before_each_pull(monkeypatch, spy)
    rep = _fetch_and_close(c, local, remote, state)
    assert asked == [(["risky", "suid"], False), (["out"], True)]
    assert (local / "out/part07.txt").read_text() == "7"
    assert stat.S_IMODE((local / "out/sub/deep.txt").stat().st_mode) == 0o640
    assert {"out/part00.txt", "out/sub/deep.txt"} <= set(rep.files)
    assert not (local / "risky/escape").exists() and "risky/escape" in " ".join(rep.refused)
    assert stat.S_IMODE((local / "suid/tool").stat().st_mode) == 0o755
    assert (local / "build").is_dir() and not (local / "build/__pycache__").exists()
    assert not list((local / ".swiftrun").glob("fetch-*"))      # staging cleaned up
    # what the node wrote after the listing is left to the next fetch (its listing has the
    # mtimes the manifest must record), under the same rules; it never brings a cache
    assert not (local / "out/late.txt").exists() and not (local / "out/setuid").exists()
    monkeypatch.undo()
    c = connect(node, tmp_path / "cluster")
    try:
        rep = sync.fetch(c, local, str(remote), state_file=state)
        assert sorted(rep.files) == ["out/late.txt", "out/setuid"]
        assert (local / "out/late.txt").read_text() == "late"
        assert stat.S_IMODE((local / "out/setuid").stat().st_mode) == 0o755
        assert not (local / "out/__pycache__").exists()
        # all recorded in the manifest: the next upload sends nothing back, the next fetch
        # brings nothing
        assert sync.upload(c, local, str(remote), state_file=state).files_sent == 0
        assert sync.fetch(c, local, str(remote), state_file=state).files == []
    finally:
        c.remote.close()


def test_a_new_directory_appearing_locally_meanwhile_loses_neither_version(node, tmp_path,
                                                                           monkeypatch, pull_by):
    # the user writes into the output directory's path between the listing and the transfer:
    # the directory no longer goes in whole; entry by entry, the user's file is kept aside as
    # a conflict and the run's version and its sibling arrive
    c, local, remote, state = _uploaded_over_rsync(node, tmp_path, monkeypatch)
    write(remote, "out/a.txt", "remote a")
    write(remote, "out/b.txt", "remote b")
    _before_each_pull(monkeypatch, lambda names, into_place: write(local, "out/a.txt",
                                                                   "the user's own a"))
    rep = _fetch_and_close(c, local, remote, state)
    assert (local / "out/a.txt.local").read_text() == "the user's own a"
    assert (local / "out/a.txt").read_text() == "remote a"
    assert (local / "out/b.txt").read_text() == "remote b"
    assert rep.conflicts == ["out/a.txt (your version is in out/a.txt.local)"]
    assert not list((local / ".swiftrun").glob("fetch-*"))


def test_a_new_directory_turned_unsafe_after_the_listing_goes_in_entry_by_entry(
        node, tmp_path, monkeypatch, pull_by):
    # between the listing and the transfer the node swaps a listed file for a link out of the
    # project and adds a fifo and a setuid file: the walk in staging sees it, the directory is
    # not renamed in, and the per-entry rules refuse the link; the rest arrives, modes fixed
    c, local, remote, state = _uploaded_over_rsync(node, tmp_path, monkeypatch)
    write(remote, "out/a.txt", "a")
    write(remote, "out/turns.txt", "t")
    write(remote, "out/tool", "x", mode=0o755)

    def swap(names, into_place):
        if into_place:
            (remote / "out/turns.txt").unlink()
            os.symlink("/etc/passwd", remote / "out/turns.txt")
            os.mkfifo(remote / "out/pipe")
            os.chmod(remote / "out/tool", 0o4755)

    _before_each_pull(monkeypatch, swap)
    rep = _fetch_and_close(c, local, remote, state)
    assert (local / "out/a.txt").read_text() == "a"
    assert not (local / "out/turns.txt").exists() and not (local / "out/turns.txt").is_symlink()
    # refused when it arrived as the link (tar); rsync's --safe-links leaves it out, so it
    # counts as not read on the headnode (a failure: the cluster is kept)
    assert "out/turns.txt" in " ".join(rep.refused if pull_by == "tar" else rep.failed)
    assert not (local / "out/pipe").exists()
    assert stat.S_IMODE((local / "out/tool").stat().st_mode) == 0o755
    assert not list((local / ".swiftrun").glob("fetch-*"))


def _killed_soon(script: str, program: str) -> str:
    """``script`` with its ``exec PROGRAM ...`` run in the background (stdin kept) and killed
    50 ms later, the script exiting 12."""
    head, sep, tail = script.partition(f"exec {program} ")
    assert sep, script
    return f"{head}{{ {program} {tail} <&0 & p=$!; sleep 0.05; kill -9 $p; exit 12; }}"


def test_a_new_output_directory_arrives_whole_or_not_at_all(node, tmp_path, monkeypatch,
                                                            pull_by):
    # the transfer killed part way: nothing of the directory locally (it is renamed in only
    # once it all arrived), no staging left, and the retry brings it all
    c, local, remote, state = _uploaded_over_rsync(node, tmp_path, monkeypatch)
    for k in range(50):
        write(remote, f"out/part{k:02d}.bin", os.urandom(256 << 10))
    name, program = ("_tar_script", "tar") if pull_by == "tar" else ("_rsync_path", "rsync")
    real = getattr(pulling, name)
    monkeypatch.setattr(pulling, name, lambda root: _killed_soon(real(root), program))
    try:
        with pytest.raises(RemoteError, match="swiftrun fetch"):
            sync.fetch(c, local, str(remote), state_file=state)
        assert not (local / "out").exists()
        assert not list((local / ".swiftrun").glob("fetch-*"))
        monkeypatch.setattr(pulling, name, real)
        rep = sync.fetch(c, local, str(remote), state_file=state)
    finally:
        c.remote.close()
    assert len(rep.files) == 50 and rep.failed == []
    assert (local / "out/part07.bin").read_bytes() == (remote / "out/part07.bin").read_bytes()


def test_a_new_output_directory_transferred_in_part_goes_in_entry_by_entry(node, tmp_path,
                                                                         monkeypatch, pull_by):
    # rsync says some files did not come whole (exit 23/24): the directory is not renamed in;
    # what arrived at its listed size is installed entry by entry, the one cut short is a
    # failure (the cluster is kept) and the retry brings it. GNU tar saying a file changed
    # while it read it (it pads a shrunk one with zeros) sends the directory to rsync first.
    c, local, remote, state = _uploaded_over_rsync(node, tmp_path, monkeypatch)
    for name in ("a", "b", "sub/c"):
        write(remote, f"out/{name}.txt", name * 100)
    real, real_tar = pulling.rsync_pull, pulling.tar_pull
    tar_said = []

    def cut_short(link, root, names, dest, hint, **kw):
        assert real(link, root, names, dest, hint, **kw) == "complete"
        os.truncate(os.path.join(dest, "out/b.txt"), 10)
        return "partial"

    def changed(link, root, names, dest, hint, **kw):
        tar_said.append(real_tar(link, root, names, dest, hint, **kw))
        return "changed" if tar_said[-1] == "complete" else tar_said[-1]

    monkeypatch.setattr(pulling, "rsync_pull", cut_short)
    monkeypatch.setattr(pulling, "tar_pull", changed)
    try:
        rep = sync.fetch(c, local, str(remote), state_file=state)
        assert tar_said == (["complete"] if pull_by == "tar" else [None])
        assert sorted(rep.files) == ["out/a.txt", "out/sub/c.txt"]
        assert [f.split(":")[0] for f in rep.failed] == ["out/b.txt"]
        assert (local / "out/sub/c.txt").read_text() == "sub/c" * 100
        assert not (local / "out/b.txt").exists()
        assert not list((local / ".swiftrun").glob("fetch-*"))
        monkeypatch.setattr(pulling, "rsync_pull", real)
        assert sync.fetch(c, local, str(remote), state_file=state).files == ["out/b.txt"]
    finally:
        c.remote.close()
    assert (local / "out/b.txt").read_text() == "b" * 100


def test_a_file_made_here_where_the_run_made_one_is_kept_aside(conn, dirs):
    # not in the manifest (made after the upload, or kept out of it by an ignore rule), so not
    # the sync's to replace: both versions stay
    local, remote, _ = dirs
    write(local, ".swiftignore", "notes.txt\n")
    write(local, "notes.txt", "mine")
    up(conn, dirs)
    write(remote, "notes.txt", "the run's")
    rep = down(conn, dirs)
    assert (local / "notes.txt").read_text() == "the run's"
    assert (local / "notes.txt.local").read_text() == "mine"
    assert rep.conflicts == ["notes.txt (your version is in notes.txt.local)"]
    assert down(conn, dirs).files == []


# ---------------------------------------------------------------------------------------------
# data safety: fetch never deletes local files/links to make room, upload never deletes unknown
# remote content, the manifest follows what the run did, nothing unreadable goes unnoticed


def test_fetch_refuses_a_directory_over_a_local_file(conn, dirs):
    local, remote, _ = dirs
    write(local, "a.txt", "a")
    up(conn, dirs)
    write(local, "out", "my notes")                      # made here after the upload
    write(remote, "out/a.txt", "A")
    write(remote, "out/sub/b.txt", "B")
    write(remote, "other.txt", "o")
    rep = down(conn, dirs)
    assert (local / "out").read_text() == "my notes"
    assert rep.files == ["other.txt"]
    assert sorted(f.split(":")[0] for f in rep.failed) == ["out", "out/a.txt", "out/sub", "out/sub/b.txt"]
    assert "a file stands where the directory goes" in rep.failed[0] and "move" in rep.failed[0]
    (local / "out").rename(local / "out.mine")           # what the message says; then a retry works
    rep = down(conn, dirs)
    assert rep.failed == [] and sorted(rep.files) == ["out/a.txt", "out/sub/b.txt"]


def test_fetch_refuses_a_directory_over_a_local_symlink(conn, dirs):
    local, remote, _ = dirs
    write(local, "data/in.txt", "in")
    up(conn, dirs)
    os.symlink("data", local / "results")                # not synced: the user's own link
    write(remote, "results/r.txt", "R")
    rep = down(conn, dirs)
    assert os.readlink(local / "results") == "data" and not (local / "data/r.txt").exists()
    assert sorted(f.split(":")[0] for f in rep.failed) == ["results", "results/r.txt"]
    assert "a symlink stands where the directory goes" in rep.failed[0]
    assert rep.files == []


def test_fetch_replaces_a_synced_symlink_with_the_runs_directory(conn, dirs):
    local, remote, _ = dirs
    write(local, "data/in.txt", "in")
    os.symlink("data", local / "results")
    os.symlink("data", local / "edited")
    up(conn, dirs)
    for name in ("results", "edited"):                   # the run swaps both links for directories
        (remote / name).unlink()
        write(remote, f"{name}/r.txt", "R")
    (local / "edited").unlink()                          # ... while this one was changed here
    os.symlink("data/in.txt", local / "edited")
    rep = down(conn, dirs)
    assert not (local / "results").is_symlink() and (local / "results/r.txt").read_text() == "R"
    assert "results" in rep.dirs and "results/r.txt" in rep.files
    assert os.readlink(local / "edited") == "data/in.txt"
    assert sorted(f.split(":")[0] for f in rep.failed) == ["edited", "edited/r.txt"]


def test_upload_deleting_a_directory_keeps_what_never_came_from_here(conn, dirs):
    local, remote, _ = dirs
    write(local, "keep.txt", "k")
    write(local, "out/a.txt", "a")
    write(local, "out/sub/b.txt", "b")
    (local / "out/empty").mkdir()
    write(local, "gone/x.txt", "x")
    up(conn, dirs)
    write(remote, "out/result.dat", "unfetched output")
    write(remote, "out/sub/r2.dat", "another")
    shutil.rmtree(local / "out")
    shutil.rmtree(local / "gone")
    rep = up(conn, dirs)
    assert rep.deleted == 2 and not rep.full
    assert (remote / "out/result.dat").read_text() == "unfetched output"
    assert (remote / "out/sub/r2.dat").read_text() == "another"
    assert not (remote / "out/a.txt").exists() and not (remote / "out/sub/b.txt").exists()
    assert not (remote / "out/empty").exists() and not (remote / "gone").exists()
    assert (remote / "keep.txt").exists()
    assert not up(conn, dirs).full                       # the sync-id was written: all went well


def test_fetch_forgets_inputs_the_run_changed_but_did_not_bring_back(conn, dirs):
    local, remote, _ = dirs
    make_project(local)
    up(conn, dirs)
    with open(remote / "data/in.txt", "a") as fh:        # the run edits an input ...
        fh.write("appended\n")
    (remote / "p4.swift").unlink()                       # ... deletes another
    (remote / "input-link").unlink()
    os.symlink("p4.swift", remote / "input-link")        # ... re-points a link
    shutil.rmtree(remote / "empty")                      # ... and removes a directory
    write(remote, "out/res.txt", "r")
    rep = down(conn, dirs, outputs=["out/"])             # none of them is fetched
    assert rep.files == ["out/res.txt"]
    rep = up(conn, dirs)                                 # so the next upload puts them back
    assert not rep.full and rep.files_sent == 3 and rep.dirs_sent == 2
    assert (remote / "data/in.txt").read_text() == "3\n1\n2\n"
    assert (remote / "p4.swift").read_text() == "type file;\n"
    assert os.readlink(remote / "input-link") == "data/in.txt"
    assert (remote / "empty/nested").is_dir()
    (remote / "data/in.txt").unlink()                    # also when the fetch has nothing to bring
    assert down(conn, dirs, outputs=["out/"]).files == []
    assert up(conn, dirs).files_sent == 1 and (remote / "data/in.txt").exists()


def test_one_file_change_after_a_fetch_sends_that_file(conn, dirs):
    local, remote, _ = dirs
    make_project(local)
    up(conn, dirs)
    simulate_run(remote)
    down(conn, dirs)
    write(local, "p4.swift", "type file; // edited\n")
    rep = up(conn, dirs)
    assert rep.files_sent == 1 and rep.dirs_sent == 0 and rep.deleted == 0


class _FakeDirEntry:
    """A DirEntry whose stat() fails (DirEntry itself cannot be patched)."""

    def __init__(self, de):
        self._de, self.name, self.path = de, de.name, de.path

    def is_dir(self, follow_symlinks=True):
        return self._de.is_dir(follow_symlinks=follow_symlinks)

    def stat(self, follow_symlinks=True):
        raise PermissionError(13, "Permission denied", self.path)


def _deny(monkeypatch, local: Path, rel: str, how: str) -> None:
    """As root every file is readable, so the walk's own calls are made to fail: it opens each
    directory by path (``list``: that open is denied) and lists it through the descriptor, each
    entry stat'ed relative to it (``stat``: the entry's stat is denied)."""
    real_open, real_scandir = os.open, os.scandir
    target = str(local / rel)
    parent, name = os.path.split(target)
    opened: dict[int, str] = {}

    def opener(path, flags, *args, **kwargs):
        if how == "list" and str(path) == target:
            raise PermissionError(13, "Permission denied", str(path))
        fd = real_open(path, flags, *args, **kwargs)
        opened[fd] = str(path)
        return fd

    def scandir(path="."):
        entries = list(real_scandir(path))
        if isinstance(path, int) and opened.get(path) == parent:
            return [_FakeDirEntry(e) if e.name == name else e for e in entries]
        return entries

    monkeypatch.setattr(manifest.os, "open", opener)     # the os module's own: patched for all
    monkeypatch.setattr(manifest.os, "scandir", scandir)


@pytest.mark.parametrize("how", ["list", "stat"])
def test_unreadable_local_path_is_an_error_not_a_deletion(conn, dirs, monkeypatch, how):
    local, remote, state = dirs
    write(local, "a.txt", "a")
    write(local, "secret/s.txt", "s")
    up(conn, dirs)
    before = state.read_text()
    _deny(monkeypatch, local, "secret", how)
    with pytest.raises(ConfigError) as exc:
        up(conn, dirs)
    msg = str(exc.value)
    assert str(local / "secret") in msg and "permissions" in msg and ".swiftignore" in msg
    assert "\n" not in msg
    assert (remote / "secret/s.txt").exists() and state.read_text() == before
    rep = up(conn, dirs, exclude=["secret/"])            # excluded: no error, and nothing deleted
    assert rep.deleted == 0 and (remote / "secret/s.txt").exists()


def test_fetch_reports_files_the_headnode_could_not_read(conn, dirs, tar_mode, monkeypatch):
    local, remote, _ = dirs
    write(local, "a.txt", "a")
    up(conn, dirs)
    write(remote, "ok.txt", "ok")
    write(remote, "unreadable.txt", "u")                 # the tar wrapper leaves it out
    write(remote, "vanishing.txt", "v")                  # deleted between listing and tar
    real_exec = fetching._exec

    def exec_and_delete(conn, script, timeout, *early):
        if "tar -c" in script:
            (remote / "vanishing.txt").unlink()
        return real_exec(conn, script, timeout, *early)

    monkeypatch.setattr(fetching, "_exec", exec_and_delete)
    tar_mode("skip")
    rep = down(conn, dirs)
    assert rep.files == ["ok.txt"]
    assert rep.failed == ["unreadable.txt: could not be read on the headnode (check its permissions there)"]
    assert not (local / "unreadable.txt").exists()
    monkeypatch.undo()
    tar_mode("")
    assert down(conn, dirs).files == ["unreadable.txt"]  # asked again by the retry


def test_a_file_edited_here_and_by_the_run_keeps_both(conn, dirs):
    """The run's version goes in place; the local edit is copied aside, never just overwritten."""
    local, remote, _ = dirs
    write(local, "params.txt", "v1\n")
    up(conn, dirs)
    write(remote, "params.txt", "run's version\n")
    write(local, "params.txt", "my edit\n")
    rep = down(conn, dirs)
    assert (local / "params.txt").read_text() == "run's version\n"
    assert (local / "params.txt.local").read_text() == "my edit\n"
    assert rep.conflicts == ["params.txt (your version is in params.txt.local)"]
    # a second conflict does not overwrite the first copy
    write(remote, "params.txt", "run's second\n")
    write(local, "params.txt", "my second edit\n")
    down(conn, dirs)
    assert (local / "params.txt.local").read_text() == "my edit\n"
    assert (local / "params.txt.local.1").read_text() == "my second edit\n"


def test_a_link_out_of_the_script_directory_goes_up_as_the_file_it_points_at(conn, dirs, tmp_path):
    """The cloud tutorial's p5-p7 keep simulate.sh as a link to ../app/simulate.sh: uploaded as a
    link it would dangle on the headnode. Links inside the directory stay links."""
    local, remote, _ = dirs
    app = tmp_path / "app"
    write(app, "simulate.sh", "#!/bin/sh\necho sim\n", mode=0o755)
    os.symlink("../app/simulate.sh", local / "simulate.sh")
    write(local, "data/in.txt", "1\n")
    os.symlink("data/in.txt", local / "inside-link")
    rep = up(conn, dirs)
    assert rep.files_sent == 3
    sent = remote / "simulate.sh"
    assert not sent.is_symlink() and sent.read_text() == "#!/bin/sh\necho sim\n"
    assert stat.S_IMODE(sent.stat().st_mode) == 0o755
    assert os.readlink(remote / "inside-link") == "data/in.txt"
    # an edit of the file the link points at is an edit of the project
    write(app, "simulate.sh", "#!/bin/sh\necho sim v2\n", mode=0o755)
    rep = up(conn, dirs)
    assert rep.files_sent == 1 and sent.read_text() == "#!/bin/sh\necho sim v2\n"


# AWS's documented example key id, put together here so that no key-shaped literal is committed
EXAMPLE_KEY_ID = "AKIA" + "IOSFODNN7EXAMPLE"
EXAMPLE_SECRET = "wJalrXUtnFEMI/K7MDENG/" + "bPxRfiCYEXAMPLEKEY"      # AWS's documented example


@pytest.mark.parametrize("body,refused", [
    ("-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----\n", True),
    (f"[default]\naws_access_key_id = {EXAMPLE_KEY_ID}\n"
     f"aws_secret_access_key = {EXAMPLE_SECRET}\n", True),
    ("User name,Password,Access key ID,Secret access key\n", True),
    ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGx8 me@host\n", False),      # a public key
    (f"the access key id is {EXAMPLE_KEY_ID}\n", False),                # an id alone
])
def test_secrets_are_judged_by_content_and_never_go(conn, dirs, body, refused):
    # an incremental upload (rsync, tar stream) judges everything before a byte goes; a full
    # one (bulk) judges each directory before its names reach tar, so clean files judged
    # earlier may be on the headnode: the secret never is, and the refused upload leaves no
    # sync-id there and no manifest here (the next one is full)
    local, remote, state = dirs
    write(local, "a.swift", "type file;\n")
    write(local, "innocent.txt", body)
    if refused:
        with pytest.raises(ConfigError, match="innocent.txt.*never uploads secrets"):
            up(conn, dirs)
        assert not (remote / "innocent.txt").exists() and not state.exists()
        assert not (remote / ".swiftrun/sync-id").exists()
        (local / ".swiftignore").write_text("/innocent.txt\n")    # the way out the error names
    rep = up(conn, dirs)
    assert (remote / "innocent.txt").exists() is (not refused) and rep.files_sent >= 1


def _spy_bulk(monkeypatch) -> list:
    calls = []
    real = uploading.bulk.stream_full
    monkeypatch.setattr(uploading.bulk, "stream_full", lambda *a, **k: calls.append(a) or real(*a, **k))
    return calls


def test_a_full_upload_goes_through_the_pipeline_and_keeps_what_the_scan_saw(node, dirs, tmp_path,
                                                                             monkeypatch):
    """bulk: GNU tar reads the names verbatim (an option-looking name, a newline, bytes that
    are not UTF-8, shell syntax), links inside the tree go as links, a link out of it as the
    file (a second archive, read on by tar -i), modes and nanosecond mtimes arrive as the
    manifest records them (the remote listing equals it, so the next fetch brings nothing
    back), and the next upload is incremental, not another full one."""
    if uploading.bulk.gnu_tar() is None:
        pytest.skip("GNU tar is not installed here (bulk's pipeline needs it)")
    local, remote, state = dirs
    calls = _spy_bulk(monkeypatch)
    names = ["-n", "--to-command=touch pwned", "nl\nx", os.fsdecode(b"caf\xe9"), "$(touch pwned)",
             "a:b", "d/e/f.txt", "sp ace"]
    for i, n in enumerate(names):
        write(local, n, os.fsencode(n), mode=0o640 if i % 2 else 0o755, mtime_ns=T0 + i)
    write(tmp_path / "app", "sim.sh", "#!/bin/sh\n", mode=0o755)
    os.symlink(str(tmp_path / "app" / "sim.sh"), local / "sim.sh")
    os.symlink("d/e/f.txt", local / "inside")
    c = connect(node, tmp_path / "cluster")
    try:
        rep = sync.upload(c, local, str(remote), state_file=state)
        assert len(calls) == 1 and rep.full and rep.files_sent == len(names) + 2
        for i, n in enumerate(names):
            st = (remote / n).lstat()
            assert (remote / n).read_bytes() == os.fsencode(n) and st.st_mtime_ns == T0 + i
            assert stat.S_IMODE(st.st_mode) == (0o640 if i % 2 else 0o755)
        assert not (remote / "sim.sh").is_symlink() and (remote / "sim.sh").read_text() == "#!/bin/sh\n"
        assert os.readlink(remote / "inside") == "d/e/f.txt"
        assert not (local / "pwned").exists() and not (remote / "pwned").exists()
        assert not list(remote.rglob("PaxHeaders*"))
        listing = sync.remote_listing(c, str(remote))
        recorded = sync.Manifest.load(state).entries
        assert all(listing[r] == recorded[r] for r in names)
        assert sync.fetch(c, local, str(remote), state_file=state).files == []
        write(local, "d/e/f.txt", "changed")
        rep = sync.upload(c, local, str(remote), state_file=state)
        assert len(calls) == 1 and not rep.full and rep.files_sent == 1
    finally:
        c.remote.close()


def test_a_secret_found_part_way_stops_the_pipeline(node, dirs, tmp_path, monkeypatch):
    """Many clean files go first (more than tar's 10 KiB records, so bytes are on the wire), the
    secret sits in a directory the walk reaches later: the upload stops with the file named,
    the secret is not on the headnode, no sync-id is there and no manifest here, no tar is
    left running, and once the file is left out the next upload is full and complete."""
    if uploading.bulk.gnu_tar() is None:
        pytest.skip("GNU tar is not installed here (bulk's pipeline needs it)")
    local, remote, state = dirs
    for i in range(300):
        write(local, f"a/{i:03d}.txt", os.urandom(256).hex())
    write(local, "a/zz/key.pem", "-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbn\n")   # after a/
    started = []
    real_popen = uploading.bulk.subprocess.Popen
    monkeypatch.setattr(uploading.bulk.subprocess, "Popen",
                        lambda *a, **k: started.append(real_popen(*a, **k)) or started[-1])
    order = []
    real_walk = uploading.bulk.walk
    monkeypatch.setattr(uploading.bulk, "walk", lambda *a: (order.append(b) or b for b in real_walk(*a)))
    c = connect(node, tmp_path / "cluster")
    try:
        with pytest.raises(ConfigError, match=r"a/zz/key\.pem holds a private key"):
            sync.upload(c, local, str(remote), state_file=state)
        assert any("a/000.txt" in b for b in order[:-1])        # the clean ones went first
        assert started and all(p.poll() is not None for p in started)
        assert not (remote / "a/zz/key.pem").exists() and not (remote / ".swiftrun/sync-id").exists()
        assert not state.exists()
        (local / ".swiftignore").write_text("/a/zz/key.pem\n")
        rep = sync.upload(c, local, str(remote), state_file=state)
        assert rep.full and rep.files_sent == 301
        assert count_tree(remote) == 301 and (remote / ".swiftrun/sync-id").exists()
    finally:
        c.remote.close()


@pytest.mark.parametrize("n", [50, 3000])
def test_a_full_upload_that_fails_remotely_says_why_and_records_nothing(node, dirs, tmp_path,
                                                                         tar_mode, n):
    # 3000 names: the pipes break while this side still writes (tar gone, ssh gone); the
    # error is still the remote end's own, not a broken pipe
    if uploading.bulk.gnu_tar() is None:
        pytest.skip("GNU tar is not installed here (bulk's pipeline needs it)")
    local, remote, state = dirs
    for i in range(n):
        write(local, f"a{i // 100}/{i:04d}.txt", os.urandom(512).hex())
    tar_mode("fail")
    c = connect(node, tmp_path / "cluster")
    try:
        with pytest.raises(RemoteError, match="remote exit 2"):
            sync.upload(c, local, str(remote), state_file=state)
        assert not state.exists() and not (remote / ".swiftrun/sync-id").exists()
        tar_mode("")
        rep = sync.upload(c, local, str(remote), state_file=state)
        assert rep.full and count_tree(remote) == n
    finally:
        c.remote.close()


def test_a_file_judged_clean_is_read_again_only_once_it_changed(conn, dirs, monkeypatch):
    # every upload to a new remote (a cluster dissolved after each run) judged every file by
    # reading it; a file judged clean is remembered by device, inode, size, mtime and ctime.
    # An edit (even with size and mtime put back) or a file renamed over it moves the ctime,
    # so it is read again and a secret in it is refused; the memory never goes up
    local, remote, state = dirs
    monkeypatch.setattr(sensitive, "RACY_NS", 0)
    secret = f"aws_secret_access_key={EXAMPLE_SECRET}\n"
    key_pair = f"{EXAMPLE_KEY_ID} {EXAMPLE_SECRET}".ljust(len(secret) - 1, ".") + "\n"

    def clean(k):
        return f"clean {k:02d}".ljust(len(secret) - 1, ".") + "\n"

    for k in range(20):
        write(local, f"data/f{k:02d}.txt", clean(k), mtime_ns=T0)
    read = []
    real = sensitive.secret_in
    monkeypatch.setattr(sensitive, "secret_in", lambda path: (read.append(path), real(path))[1])
    up(conn, dirs)
    assert len(read) == 20
    judged = local / ".swiftrun" / "judged"
    assert stat.S_IMODE(judged.stat().st_mode) == 0o600
    assert sensitive.remembered(judged) == {f"data/f{k:02d}.txt" for k in range(20)}
    read.clear()
    sync.upload(conn, local, str(remote) + "-2", state_file=state.with_name("other.json"))
    assert read == []                                   # unchanged: nothing read again
    assert not (remote / ".swiftrun/judged").exists()

    def again():
        read.clear()
        with pytest.raises(ConfigError, match="never uploads secrets"):
            sync.upload(conn, local, str(remote) + "-3", state_file=state.with_name("3.json"))

    edited = local / "data/f03.txt"
    edited.write_text(secret)                           # same size, mtime put back
    os.utime(edited, ns=(T0, T0))
    again()
    assert read == [str(edited)]
    write(local, "data/f03.txt", clean(3), mtime_ns=T0)
    write(local, "incoming.tmp", key_pair, mtime_ns=T0)
    os.replace(local / "incoming.tmp", local / "data/f07.txt")     # same size and mtime
    again()
    assert read == [str(local / "data/f03.txt"), str(local / "data/f07.txt")]


def test_a_file_changed_just_before_it_was_judged_is_not_remembered(tmp_path):
    # within the clock's tick a second write could leave the ctime unchanged: a file whose
    # ctime is under RACY_NS old when judged is read again next time
    write(tmp_path, "fresh.txt", "just written\n")
    judged = tmp_path / "judged.json"
    write(tmp_path, "old.txt", "written long ago\n")
    real_ns = sensitive.time.time_ns
    sensitive.refuse_secrets(tmp_path, ["fresh.txt"], judged=judged)
    assert not judged.exists()                  # nothing to remember
    # seen from 10 s later, both are settled and remembered
    sensitive.time.time_ns = lambda: real_ns() + 10_000_000_000
    try:
        sensitive.refuse_secrets(tmp_path, ["fresh.txt", "old.txt"], judged=judged)
    finally:
        sensitive.time.time_ns = real_ns
    assert sensitive.remembered(judged) == {"fresh.txt", "old.txt"}


def test_the_judged_memory_keeps_odd_names_and_one_record_per_file(tmp_path, monkeypatch):
    # the memory is "dev:ino:size:mtime:ctime:name" strings: a name with ":" or a newline or
    # bytes that are not UTF-8 is remembered as itself, and a file read again (edited) leaves
    # one record, its new one, not the stale one beside it
    monkeypatch.setattr(sensitive, "RACY_NS", 0)
    names = ["a:b:c:d:e:f.txt", "line\nbreak.txt", os.fsdecode(b"caf\xe9.txt"), "plain.txt"]
    for n in names:
        (tmp_path / n).write_text(f"clean {n!r}\n")
    judged = tmp_path / ".swiftrun" / "judged"
    sensitive.refuse_secrets(tmp_path, names, judged=judged)
    assert sensitive.remembered(judged) == set(names)
    read = []
    real = sensitive.secret_in
    monkeypatch.setattr(sensitive, "secret_in", lambda path: (read.append(path), real(path))[1])
    (tmp_path / "plain.txt").write_text("edited, still clean\n")
    sensitive.refuse_secrets(tmp_path, names, judged=judged)
    assert read == [os.path.join(str(tmp_path), "plain.txt")]
    records = judged.read_bytes().split(b"\n", 1)[1].split(b"\0")
    assert len(records) == len(names)
    # given the scan's stats, nothing is stat'ed again
    stats = {n: os.stat(tmp_path / n) for n in names}
    monkeypatch.setattr(sensitive.os, "stat", lambda *a, **k: pytest.fail("stat'ed again"))
    read.clear()
    sensitive.refuse_secrets(tmp_path, names, judged=judged, stats=stats)
    assert read == []


def test_the_literal_prefilter_never_hides_what_the_patterns_find():
    """secret_in_bytes skips the regexes when none of their literals is in the head: for every
    kind of secret (in any letter case the pattern allows) and near misses, it says what the
    four patterns alone say."""
    from swiftrun.sync import sensitive

    def by_patterns(head: bytes):
        return next((what for what, p in sensitive._PATTERNS if p.search(head)), None)

    bodies = [
        "-----BEGIN OPENSSH PRIVATE KEY-----\nb3Bl\n", "-----BEGIN PGP PRIVATE KEY BLOCK-----\n",
        "-----BEGIN EC PRIVATE KEY-----", "-----begin rsa private key-----",
        f"AWS_SECRET_ACCESS_KEY={EXAMPLE_SECRET}", f"Aws_Secret_Access_Key : '{EXAMPLE_SECRET}'",
        f"export aws_secret_access_key=\"{EXAMPLE_SECRET}\"", "aws_secret_access_key = short",
        "ACCESS KEY ID , SECRET ACCESS KEY\n", "access key id,secret access key",
        f"{EXAMPLE_KEY_ID},{EXAMPLE_SECRET}\n", f"id {EXAMPLE_KEY_ID} secret {EXAMPLE_SECRET}",
        f"ASIA{EXAMPLE_KEY_ID[4:]}\t{EXAMPLE_SECRET}", f"akia{EXAMPLE_KEY_ID[4:]} {EXAMPLE_SECRET}",
        f"{EXAMPLE_KEY_ID} alone", "ssh-rsa AAAAB3Nza me@host", "", "x" * 70000,
        "PUBLIC KEY-----", "the word secret, and a key",
    ]
    found = 0
    for body in bodies:
        head = body.encode()
        assert sensitive.secret_in_bytes(head) == by_patterns(head), body[:60]
        found += by_patterns(head) is not None
    assert found >= 10          # the corpus does hold secrets of every kind


def test_a_changed_file_is_rewritten_in_place_unless_a_run_is_live(node, dirs, monkeypatch, tmp_path):
    """rsync upload: with no run live on the headnode a changed file is updated in place (only
    its changed blocks written: a 500 MB file with one byte changed syncs in a third of the time).
    While a run is live (a wrapper's pid alive, no exit file) swift may be reading it, so rsync's
    default goes instead: a new file renamed over the old, and a reader keeps the old one whole."""
    import subprocess as sp

    monkeypatch.setattr(uploading, "RSYNC_MIN_BYTES", 0)
    monkeypatch.setattr(uploading, "RSYNC_MIN_FILES", 0)
    local, remote, _state = dirs
    body = bytearray(os.urandom(1 << 20))
    write(local, "big.bin", bytes(body), mtime_ns=T0)
    conn = connect(node, tmp_path / "cluster")
    try:
        up(conn, dirs)
        target = remote / "big.bin"

        def change(at: int, mtime_ns: int) -> None:
            body[at] ^= 0xFF
            write(local, "big.bin", bytes(body), mtime_ns=mtime_ns)

        inode = target.stat().st_ino
        change(4096 * 7, T0 + 10**9)
        up(conn, dirs)
        assert target.read_bytes() == body and target.stat().st_ino == inode   # in place

        runs = remote / ".swiftrun" / "runs"
        runs.mkdir(parents=True, exist_ok=True)
        live = sp.Popen(["sleep", "60"])
        try:
            (runs / "r1.pid").write_text(f"{live.pid}\n")
            before = bytes(body)
            with open(target, "rb") as reader:      # swift reading its input
                change(4096 * 100, T0 + 2 * 10**9)
                up(conn, dirs)
                assert target.read_bytes() == body and target.stat().st_ino != inode
                assert reader.read() == before      # the open file is whole and unchanged
            (runs / "r1.exit").write_text("0\n")    # the run ended
            inode = target.stat().st_ino
            change(4096 * 200, T0 + 3 * 10**9)
            up(conn, dirs)
            assert target.read_bytes() == body and target.stat().st_ino == inode
        finally:
            live.kill()
            live.wait()
    finally:
        conn.remote.close()


def test_a_prepared_upload_scans_once_and_a_later_edit_goes_next_time(conn, dirs, monkeypatch):
    """A run checks the tree before its cost line and uploads from that plan (one scan): a file
    edited in between is not lost, the next upload sends it; if the headnode's copy moved on
    meanwhile (another machine synced), the sync-id check makes it a full upload."""
    local, remote, state = dirs
    write(local, "a.txt", "a")
    write(local, "b.txt", "b")
    up(conn, dirs)
    write(local, "a.txt", "a2")
    prepared = uploading.prepare(local, str(remote), state)
    assert prepared.plan.send == ["a.txt"]
    write(local, "b.txt", "b2 edited after the check")
    scans = []
    real = uploading.plan_upload
    monkeypatch.setattr(uploading, "plan_upload", lambda *a, **kw: scans.append(1) or real(*a, **kw))
    rep = sync.upload(conn, local, str(remote), state_file=state, prepared=prepared)
    assert scans == [] and rep.files_sent == 1 and not rep.full
    assert (remote / "a.txt").read_text() == "a2" and (remote / "b.txt").read_text() == "b"
    rep = up(conn, dirs)                                    # scans: b.txt's edit goes now
    assert scans == [1] and rep.files_sent == 1
    assert (remote / "b.txt").read_text() == "b2 edited after the check"

    write(local, "a.txt", "a4", mtime_ns=T0)
    up(conn, dirs)
    # the same size, the same second: rsync's quick check at whole seconds would skip it
    write(local, "a.txt", "a3", mtime_ns=T0 + 1000)
    prepared = uploading.prepare(local, str(remote), state)
    (remote / ".swiftrun/sync-id").write_text("another-machine\n")
    rep = sync.upload(conn, local, str(remote), state_file=state, prepared=prepared)
    assert rep.full and (remote / "a.txt").read_text() == "a3"


def test_the_scan_never_follows_a_directory_swapped_for_a_link_meanwhile(tmp_path, monkeypatch):
    """Each directory is opened without following a link: one replaced by a link to somewhere
    else between its listing and its turn is an error naming it, not a walk outside the tree."""
    root, outside = tmp_path / "proj", tmp_path / "outside"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "a.txt").write_text("a")
    outside.mkdir()
    (outside / "not-yours.txt").write_text("secret-ish")
    real_open = os.open
    swapped = []

    def swap_then_open(path, flags, *a, **k):     # os.open is the os module's: patched for all
        if str(path).endswith("/sub") and not swapped:
            swapped.append(path)
            os.unlink(root / "sub" / "a.txt")
            os.rmdir(root / "sub")
            os.symlink(outside, root / "sub")
        return real_open(path, flags, *a, **k)

    rules = manifest.IgnoreRules.from_dir(root)
    monkeypatch.setattr(os, "open", swap_then_open)
    try:
        with pytest.raises(ConfigError, match="cannot read .*sub"):
            manifest.scan(root, rules)
    finally:
        monkeypatch.setattr(os, "open", real_open)
    assert swapped
    with pytest.raises(ConfigError, match="leads out of the script directory"):
        manifest.scan(root, rules)          # scanned afresh, the link is judged as any link
