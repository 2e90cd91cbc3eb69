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
