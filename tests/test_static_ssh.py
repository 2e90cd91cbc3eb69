"""Issue 14 #3/#4: the static provider on a loopback sshd, as a user meets it.

- no `[ssh] key_file`: the login comes from the user's ssh-agent (one the test starts);
- a static host's key is never trusted on first contact: an unknown host is refused, in one line;
- a host that refuses connections: a short bounded retry, then one line naming host:port;
- an `[ssh] proxy_command` that exits or hangs: one line naming it (with its stderr), fast or
  bounded, never a traceback; `connect --print` prints and never connects.
"""

from __future__ import annotations

import getpass
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.support.cli import swiftrun
from tests.support.sshd import LoopbackSshd, free_port, keygen


@pytest.fixture
def host(tmp_path, monkeypatch):
    monkeypatch.setenv("SWIFTRUN_HOME", str(tmp_path / "swiftrun-home"))
    key = keygen(tmp_path / "keys" / "id_ed25519")
    sshd = LoopbackSshd(tmp_path / "sshd", Path(str(key) + ".pub")).start()
    try:
        yield key, sshd
    finally:
        sshd.stop()


@pytest.fixture
def agent(tmp_path, host):
    """An ssh-agent of the test's own, holding the host's login key; stopped by its PID."""
    key, _ = host
    sock = tmp_path / "agent.sock"
    proc = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            if sock.exists():
                break
            time.sleep(0.02)
        subprocess.run(["ssh-add", "-q", str(key)], env={**os.environ, "SSH_AUTH_SOCK": str(sock)},
                       check=True, capture_output=True)
        yield str(sock)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=5)


def project(directory: Path, headnode: str, *, key: Path | None = None, proxy: str = "",
            name: str = "lab") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    ssh = [f'user = "{getpass.getuser()}"']
    if key:
        ssh.append(f'key_file = "{key}"')
    if proxy:
        ssh.append(f"proxy_command = {json.dumps(proxy)}")
    (directory / "swiftrun.toml").write_text(
        f'[cluster]\nname = "{name}"\nprovider = "static"\nworkers = 0\n\n[ssh]\n'
        + "\n".join(ssh) + f'\n\n[static]\nheadnode = "{headnode}"\n')
    return directory


def one_line_error(res) -> str:
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith("swiftrun: error:")]
    assert "Traceback" not in res.stderr and len(lines) == 1, res.stderr
    return lines[0]


def test_static_host_without_key_file_uses_the_agent_and_must_be_known(host, agent, tmp_path):
    key, sshd = host
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    proj = project(tmp_path / "p", f"127.0.0.1:{sshd.port}")
    # no connection is kept between commands: each one logs in anew
    env = {"SSH_AUTH_SOCK": agent, "HOME": str(home), "SWIFTRUN_SSH_PERSIST": "0"}
    # first contact with a host whose key nobody knows: refused, nothing pinned
    res = swiftrun("connect", "--", "echo", "hi", cwd=proj, env=env, check=False, timeout=60)
    assert res.returncode != 0
    assert "~/.ssh/known_hosts" in one_line_error(res)
    pins = Path(os.environ["SWIFTRUN_HOME"]) / "clusters" / "lab" / "known_hosts"
    assert not pins.exists() or f"{sshd.port}" not in pins.read_text()
    # once the user knows it (ssh'd to it once), the agent's key logs in: no key_file needed
    (home / ".ssh" / "known_hosts").write_text(
        f"[127.0.0.1]:{sshd.port} ssh-ed25519 {sshd.host_key_pub}\n")
    res = swiftrun("connect", "--", "echo", "hi", cwd=proj, env=env, timeout=60)
    assert res.stdout.strip() == "hi"
    out = json.loads(swiftrun("doctor", "--json", cwd=proj, env=env, check=False).stdout)
    ssh = [c for c in out["checks"] if c["name"].endswith(": ssh")]
    assert ssh and ssh[0]["status"] == "ok", ssh
    # without the agent there is no key at all: one line naming where keys were looked for
    res = swiftrun("connect", "--", "echo", "hi", cwd=proj, check=False, timeout=60,
                   env={**env, "SSH_AUTH_SOCK": str(tmp_path / "no-agent")})
    line = one_line_error(res)
    assert "your SSH agent and ~/.ssh keys" in line and "ssh-add" in line, line
    # a host that has long been up and refuses the key is said at once, not retried as if booting
    assert "gave up after" not in line and "security group" not in line, line


def test_static_host_refusing_connections_is_one_line_after_a_short_retry(host, tmp_path):
    key, _ = host
    port = free_port()      # nothing listens there
    proj = project(tmp_path / "p", f"127.0.0.1:{port}", key=key)
    started = time.monotonic()
    res = swiftrun("up", cwd=proj, check=False, env={"SWIFTRUN_STATIC_SSH_TIMEOUT": "3"},
                   timeout=60)
    assert time.monotonic() - started < 20, "the retry is bounded by SWIFTRUN_STATIC_SSH_TIMEOUT"
    line = one_line_error(res)
    assert res.returncode == 1
    assert f"127.0.0.1:{port}" in line and "sshd" in line and "security group" not in line, line


def test_failing_proxy_command_fails_fast_in_one_line_naming_it(host, tmp_path):
    key, sshd = host
    proxy = "sh -c 'echo bastion said no >&2; exit 3'"
    proj = project(tmp_path / "p", f"127.0.0.1:{sshd.port}", key=key, proxy=proxy)
    for verb in (["up"], ["logs"], ["fetch"], ["cancel"]):
        started = time.monotonic()
        res = swiftrun(*verb, cwd=proj, check=False, timeout=60)
        assert time.monotonic() - started < 10, verb
        line = one_line_error(res)
        assert res.returncode != 0
        assert "[ssh] proxy_command exited 3" in line and "bastion said no" in line, (verb, line)
    out = json.loads(swiftrun("doctor", "--json", cwd=proj, check=False, timeout=60).stdout)
    ssh = [c for c in out["checks"] if c["name"].endswith(": ssh")][0]
    assert ssh["status"] == "fail" and "bastion said no" in ssh["detail"]
    assert "proxy_command" in ssh["fix"], ssh
    # --print prints the command and connects nowhere
    started = time.monotonic()
    res = swiftrun("connect", "--print", cwd=proj, timeout=30)
    assert time.monotonic() - started < 5
    assert res.stdout.startswith("/") and "ProxyCommand=" in res.stdout
    assert f"-p {sshd.port}" in res.stdout


def test_hanging_proxy_command_is_a_bounded_wait_and_one_line(host, tmp_path):
    key, sshd = host
    proj = project(tmp_path / "p", f"127.0.0.1:{sshd.port}", key=key, proxy="exec sleep 30")
    for verb, env in ((["logs"], {}), (["up"], {"SWIFTRUN_STATIC_SSH_TIMEOUT": "3"})):
        started = time.monotonic()
        res = swiftrun(*verb, cwd=proj, check=False, timeout=90, env=env)
        assert time.monotonic() - started < 40, verb
        line = one_line_error(res)
        assert "[ssh] proxy_command" in line and "kept running" in line, (verb, line)
