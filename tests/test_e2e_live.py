"""Issue 14 #5: waiting is visible. `up` on a terminal shows each node live (rich), off a terminal
one timestamped line per change; `up --json` carries the same states; a command that asks EC2
says so when the answer is slow, and an EC2 endpoint that cannot be reached fails at once, in
one line naming the endpoint and the region.

The installed command runs in a subprocess; a terminal is a real pty (``pty.openpty``).
"""

from __future__ import annotations

import json
import os
import pty
import re
import select
import socket
import subprocess
import threading
import time
from pathlib import Path

from tests.support.cli import SWIFTRUN, swiftrun, toml_project


def plain_project(directory: Path, region: str = "us-west-2") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "swiftrun.toml").write_text(
        f'[cluster]\nname = "live"\nworkers = 1\n\n[ec2]\nregion = "{region}"\n')
    return directory


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- the EC2 endpoint -----------------------------------------------------------------------------
def test_unreachable_endpoint_fails_at_once_in_one_line(aws_env, tmp_path):
    proj = plain_project(tmp_path / "proj", region="eu-north-1")
    url = f"http://127.0.0.1:{closed_port()}"
    start = time.monotonic()
    res = swiftrun("list", cwd=proj, check=False, timeout=60, env={"AWS_ENDPOINT_URL": url})
    took = time.monotonic() - start
    assert res.returncode == 1, res
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert "Traceback" not in res.stderr and "internal error" not in res.stderr
    assert "eu-north-1" in lines[0] and url in lines[0] and "refused" in lines[0], lines[0]
    assert "AWS_ENDPOINT_URL" in lines[0] and "HTTPS_PROXY" in lines[0]
    # botocore alone retries a refused connection for 13-25 s; the first call is not retried
    assert took < 10, f"took {took:.1f}s: {res.stderr}"


class SlowProxy:
    """A TCP relay to ``target`` that holds every new connection for ``delay`` seconds."""

    def __init__(self, target: str, delay: float):
        host, port = target.split("//", 1)[1].rstrip("/").split(":")
        self.target, self.delay = (host, int(port)), delay
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._relay, args=(conn,), daemon=True).start()

    def _relay(self, conn):
        time.sleep(self.delay)
        up = socket.create_connection(self.target)
        pairs = {conn: up, up: conn}
        try:
            while True:
                ready, _, _ = select.select(list(pairs), [], [], 30)
                if not ready:
                    return
                for s in ready:
                    data = s.recv(65536)
                    if not data:
                        return
                    pairs[s].sendall(data)
        except OSError:
            return
        finally:
            conn.close()
            up.close()

    def close(self):
        self.sock.close()


def test_a_slow_ec2_answer_is_announced_once(aws_env, tmp_path):
    proj = plain_project(tmp_path / "proj")
    proxy = SlowProxy(aws_env["AWS_ENDPOINT_URL"], delay=2.0)
    try:
        res = swiftrun("list", cwd=proj, timeout=60,
                       env={"AWS_ENDPOINT_URL": proxy.url, "SWIFTRUN_OFFLINE_PRICES": "1"})
    finally:
        proxy.close()
    assert res.stderr.count("asking EC2 in us-west-2 ...") == 1, res.stderr
    assert "no nodes" in res.stderr
    # a quick answer is not announced
    fast = swiftrun("list", cwd=proj, env={"SWIFTRUN_OFFLINE_PRICES": "1"})
    assert "asking EC2" not in fast.stderr, fast.stderr


# -- the nodes coming up --------------------------------------------------------------------------
STAMPED = re.compile(r"^(\d\d:\d\d:\d\d) (headnode|worker) (i-[0-9a-f]+): (.+) \((\d+)s\)$")


def test_up_off_a_terminal_says_each_change_once_and_json_has_the_states(cloud, tmp_path):
    from tests.support.schemas import validate

    proj = tmp_path / "proj"
    toml_project(proj, cloud, name="offtty", workers=1, image=cloud.baked_ami)
    res = swiftrun("up", "--json", cwd=proj, env={"SWIFTRUN_BOOT_TIMEOUT": "240"})
    doc = json.loads(res.stdout)
    validate("up", doc)
    states = {s["id"]: s for s in doc["node_states"]}
    assert set(states) == set(doc["created"]) and len(states) == 2, doc["node_states"]
    for s in states.values():
        seen = [c["state"] for c in s["changes"]]
        assert s["state"] == "ready" and seen[-1] == "ready", s
        assert seen[0] == "pending" and "running" in seen, s
        assert all(b["at_s"] >= a["at_s"] for a, b in zip(s["changes"], s["changes"][1:])), s
    head = next(s for s in states.values() if s["role"] == "headnode")
    # the headnode is reached over SSH and read its boot steps; workers report to it
    assert "ssh" in [c["state"] for c in head["changes"]], head
    assert any(c["state"] == "booting" and c["step"] for c in head["changes"]), head

    # stderr: one timestamped line per change of a node, never the same one twice
    lines = [m.groups() for m in map(STAMPED.match, res.stderr.splitlines()) if m]
    said = [(role, node, text) for _, role, node, text, _ in lines]
    assert len(said) == len(set(said)), res.stderr
    for node, s in states.items():
        mine = [text for _, n, text in said if n == node]
        want = [c["state"] + (f": {c['step']}" if c["step"] else "") for c in s["changes"]]
        assert mine == want, (node, mine, want, res.stderr)
    assert "\x1b[" not in res.stderr     # no terminal codes off a terminal
    swiftrun("down", cwd=proj)


def run_on_a_pty(args, cwd: Path, env: dict, timeout: float = 300) -> tuple[int, str, str]:
    """`swiftrun ARGS` with stderr on a terminal (a pty of 120 columns); (exit code, what the
    terminal got, stdout)."""
    import fcntl
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    full_env = {**os.environ, "SWIFTRUN_BOOT_TIMEOUT": "240", "SWIFTRUN_SSH_TIMEOUT": "60",
                "TERM": "xterm-256color", "COLUMNS": "120", **env}
    full_env.pop("NO_COLOR", None)
    proc = subprocess.Popen(SWIFTRUN.split() + list(args), cwd=cwd, env=full_env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave)
    os.close(slave)
    got = bytearray()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 1)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:     # EIO: the child closed the terminal
                break
            if not chunk:
                break
            got += chunk
        elif proc.poll() is not None:
            break
    else:
        proc.kill()
    out = proc.stdout.read().decode()
    code = proc.wait(30)
    os.close(master)
    return code, got.decode(errors="replace"), out


def test_up_on_a_terminal_shows_the_nodes_live(cloud, tmp_path):
    proj = tmp_path / "proj"
    toml_project(proj, cloud, name="ontty", workers=1, image=cloud.baked_ami)
    code, screen, _ = run_on_a_pty(["up"], cwd=proj, env={})
    assert code == 0, screen
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen)
    # a spinner turned while waiting, and the view was redrawn in place (cursor moved up)
    assert any(ch in plain for ch in "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"), plain
    assert "\x1b[1A" in screen or "\x1b[2K" in screen, screen[-2000:]
    # the last frame: both nodes ready, with their elapsed time, and the total
    rows = [ln for ln in plain.splitlines() if re.match(r"\S\s+(headnode|worker)\s+i-[0-9a-f]+", ln)]
    last = {re.search(r"i-[0-9a-f]+", r).group(): r for r in rows}
    assert len(last) == 2 and all("✓" in r and "ready" in r and re.search(r"\d+s\s*$", r)
                                  for r in last.values()), rows[-4:]
    assert re.search(r": 2 node\(s\), 2 ready, \d+s", plain), plain[-1500:]
    swiftrun("down", cwd=proj)
