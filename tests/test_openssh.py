"""swiftrun's OpenSSH transport against real sshd processes on loopback: multiplexed and kept
connections, pinned host keys, ProxyJump through another node, errors in words."""

from __future__ import annotations

import getpass
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from swiftrun.errors import RemoteError
from swiftrun.remote.openssh import HostKeyMismatch, Remote, Target, _AuthFailed, _Unreachable
from tests.support.sshd import LoopbackSshd, free_port, keygen

USER = getpass.getuser()

COUNTING_PROXY = """import os, socket, sys, select
with open(os.environ["PROXY_LOG"], "a") as f:
    f.write(sys.argv[1] + "\\n")
s = socket.create_connection(("127.0.0.1", int(sys.argv[2])))
fds = [s, 0]
while True:
    r, _, _ = select.select(fds, [], [])
    if s in r:
        d = s.recv(65536)
        if not d:
            break
        os.write(1, d)
    if 0 in r:
        d = os.read(0, 65536)
        if d:
            s.sendall(d)
        else:
            fds.remove(0)
            s.shutdown(socket.SHUT_WR)
"""


@pytest.fixture
def hosts(tmp_path):
    key = keygen(tmp_path / "id")
    auth = tmp_path / "authorized_keys"
    auth.write_text(Path(str(key) + ".pub").read_text())
    started = []
    for name in ("a", "b"):
        home = tmp_path / f"home-{name}"
        home.mkdir()
        started.append(LoopbackSshd(tmp_path / f"sshd-{name}", auth, env={"HOME": str(home)}).start())
    yield key, started
    for sshd in started:
        sshd.stop()


def remote(tmp_path, key, **kw) -> Remote:
    return Remote(cluster_dir=tmp_path / "cluster", key_file=key, user=USER, **kw)


def target(sshd, alias="i-0aaa", **kw) -> Target:
    return Target(host="127.0.0.1", port=sshd.port, user=USER, alias=alias, label=f"node {alias}", **kw)


def test_commands_share_one_connection_kept_for_the_next_process(hosts, tmp_path):
    key, (a, _) = hosts
    proxy = tmp_path / "proxy.py"
    proxy.write_text(COUNTING_PROXY)
    log = tmp_path / "connections"
    env = {**os.environ, "PROXY_LOG": str(log)}
    os.environ["PROXY_LOG"] = str(log)
    try:
        r = remote(tmp_path, key, proxy_command=f"{sys.executable} {proxy} %h {a.port}")
        t = target(a)
        r.wait(t, 30, allow_new=True)
        res = r.run(t, "echo hello; echo oops >&2; exit 3")
        assert (res.exited, res.stdout, res.stderr) == (3, "hello\n", "oops\n")
        assert r.run(t, "cat", stdin=b"bytes in").stdout == "bytes in"
        assert r.alive(t)
        # another Remote (another swiftrun process) uses the kept connection: none opened
        again = remote(tmp_path, key, proxy_command=f"{sys.executable} {proxy} %h {a.port}")
        assert again.run(t, "echo again").stdout == "again\n"
        assert log.read_text().split() == ["127.0.0.1"]
        # a remote command may exit 255 itself without being taken for ssh failing
        assert r.run(t, "exit 255").exited == 255
        r.drop(t)
        assert not r.alive(t)
    finally:
        os.environ.pop("PROXY_LOG", None)
    assert env


def test_host_keys_are_pinned_under_the_alias_and_a_change_is_refused(hosts, tmp_path):
    key, (a, _) = hosts
    r = remote(tmp_path, key, persist="0")
    t = target(a, alias="i-0pin")
    with pytest.raises(RemoteError, match="no pinned host key"):
        r.run(t, "true")                                  # first contact needs allow_new
    r.run(t, "true", allow_new=True)
    assert r.is_pinned(t)
    assert (tmp_path / "cluster/known_hosts").read_text().startswith("i-0pin ssh-ed25519 ")
    r.close()
    assert not r.alive(t)                                 # no persistence: closed

    # the same address with another host key (a replaced node): refused, never re-pinned
    a.stop()
    a.host_key.unlink()
    Path(str(a.host_key) + ".pub").unlink()
    a.start()
    with pytest.raises(HostKeyMismatch, match="does not match the one pinned"):
        r.run(t, "true", allow_new=True)
    r.forget(["i-0pin"])
    assert not r.is_pinned(t)


def test_reported_keys_are_pinned_in_one_write_and_a_pinned_one_is_kept(tmp_path, monkeypatch):
    # a lot of boot reports pins every new worker with one read and one write of the file; a
    # worker already pinned keeps its key; a malformed alias or key never reaches the file
    r = remote(tmp_path, None)
    r.pin("i-0old", "ssh-ed25519", "AAAAold")
    writes = []
    real = os.replace
    monkeypatch.setattr(os, "replace", lambda a, b: (writes.append(b), real(a, b)))
    pins = [(Target("10.0.0.1", 22, USER, alias="i-0old"), "i-0old", "ssh-ed25519", "AAAAnew")]
    pins += [(Target(f"10.0.0.{k}", 22, USER, alias=f"i-0w{k}"), f"i-0w{k}", "ssh-ed25519",
              f"AAAA{k}") for k in range(2, 6)]
    pins += [(Target("10.0.0.9", 22, USER, alias="x"), "-oProxy", "ssh-ed25519", "AAAA9"),
             (Target("10.0.0.8", 22, USER, alias="y"), "i-0bad", "ssh-ed25519", "AA AA;rm")]
    r.pin_many(pins)
    assert len(writes) == 1
    lines = (tmp_path / "cluster/known_hosts").read_text().splitlines()
    assert lines == ["i-0old ssh-ed25519 AAAAold"] + [f"i-0w{k} ssh-ed25519 AAAA{k}"
                                                      for k in range(2, 6)]
    assert stat.S_IMODE((tmp_path / "cluster/known_hosts").stat().st_mode) == 0o600


def test_refused_key_and_unreachable_node_are_told_apart(hosts, tmp_path):
    key, (a, _) = hosts
    other = keygen(tmp_path / "other")
    r = remote(tmp_path, other)
    with pytest.raises(_AuthFailed, match=f"SSH login as '{USER}' to node i-0aaa was refused"):
        r.run(target(a), "true", allow_new=True)
    nobody = Target(host="127.0.0.1", port=free_port(), user=USER, alias="i-0gone", label="node x")
    r2 = remote(tmp_path, key)
    with pytest.raises(_Unreachable, match=r"cannot reach node x \(127\.0\.0\.1:\d+\) over SSH: .*refused"):
        r2.run(nobody, "true", allow_new=True)
    with pytest.raises(RemoteError, match="gave up after 1s"):
        r2.wait(nobody, 1)
    missing = remote(tmp_path, tmp_path / "no-such-key")
    with pytest.raises(RemoteError, match="key file .* is missing"):
        missing.run(target(a), "true")


def test_a_node_reached_through_another_keeps_its_own_pin(hosts, tmp_path):
    """ProxyJump semantics: b over a's open connection; b's key is checked under b's alias."""
    key, (a, b) = hosts
    proxy = tmp_path / "proxy.py"
    proxy.write_text(COUNTING_PROXY)
    log = tmp_path / "connections"
    os.environ["PROXY_LOG"] = str(log)
    try:
        r = remote(tmp_path, key, proxy_command=f"{sys.executable} {proxy} %h %p")
        head = target(a, alias="i-0head")
        worker = Target(host="127.0.0.1", port=b.port, user=USER, alias="i-0work", label="worker",
                        via=head)
        r.wait(head, 30, allow_new=True)
        assert r.run(worker, "echo via", allow_new=True).stdout == "via\n"
        assert r.is_pinned(worker) and r.is_pinned(head)
        assert r.run(worker, "echo again").stdout == "again\n"
        # only the head's connection went through the proxy (the user's machine -> headnode)
        assert log.read_text().split() == ["127.0.0.1"]
    finally:
        os.environ.pop("PROXY_LOG", None)
        if "r" in locals():     # both masters: the one through the proxy outlived the test
            r.close([head, worker])


def test_rsync_runs_over_the_same_connection(hosts, tmp_path):
    key, (a, _) = hosts
    r = remote(tmp_path, key)
    t = target(a)
    r.wait(t, 30, allow_new=True)
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    (src / "d" / "f.txt").write_text("payload\n")
    dest = tmp_path / "dest"
    res = subprocess.run(["rsync", "-a", "-e", r.rsh(t), f"{src}/", f"{t.host}:{dest}/"],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert (dest / "d" / "f.txt").read_text() == "payload\n"
    assert len(str(r.control_path(t))) < 100
    r.close([t])                # the master would outlive the test (and its sshd)


def test_a_booting_node_whose_first_connection_stalls_is_tried_again(tmp_path, monkeypatch):
    """Seen in CI under load: a node just booted took the connection and said nothing, its first
    ':' hit the 30 s limit, and `up` gave up with time to spare. A stall (the ssh was killed)
    is now tried afresh while the node is booting; on a node up for a while it still fails."""
    from swiftrun.remote import openssh

    r = Remote(cluster_dir=tmp_path, key_file=None, user=USER, persist="0")
    t = Target("127.0.0.1", free_port(), USER, alias="node", label="node")
    calls, dropped = [], []

    def connect(target, *, allow_new=False):
        calls.append(target)
        if len(calls) == 1:
            raise openssh._Stalled("command on node did not finish within 30s: :")
        return "link"

    monkeypatch.setattr(r, "connect", connect)
    monkeypatch.setattr(r, "drop", lambda target: dropped.append(target))
    assert r.wait(t, 30, booting=True) == "link" and len(calls) == 2 and dropped == [t]
    calls.clear()
    with pytest.raises(RemoteError, match="did not finish within 30s"):
        r.wait(t, 30, booting=False)
