"""A real OpenSSH sshd on a free loopback port, started and stopped by PID.

Each instance has its own host key, its own authorized_keys file and its own environment
(``SetEnv``), so one test machine can stand in for many hosts: HOME, PATH and SWIFTRUN_NODE_ROOT
differ per "host" while the login user is the one running the tests.
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def keygen(path: Path, kind: str = "ed25519") -> Path:
    """Write an OpenSSH private key at ``path`` (and ``path.pub``) with ssh-keygen."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for p in (path, Path(str(path) + ".pub")):
        if p.exists():
            p.unlink()
    subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", "swiftrun-test", "-f", str(path)],
                   check=True)
    return path


class LoopbackSshd:
    """One sshd. ``env`` becomes SetEnv lines (applied after sshd's own HOME/PATH)."""

    def __init__(self, workdir: Path, authorized_keys: Path, env: dict[str, str] | None = None,
                 port: int | None = None, *, listen: str = "127.0.0.1", netns: str | None = None,
                 argv_prefix: list[str] | tuple = (), host_key: Path | None = None):
        """``netns``/``argv_prefix``: run inside a node's network namespace (the prefix enters
        it, e.g. ``nsenter ...``), listening on ``listen``:``port`` there."""
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.authorized_keys = Path(authorized_keys)
        self.env = dict(env or {})
        self.listen = listen
        self.netns = netns
        self.argv_prefix = list(argv_prefix)
        self.port = port or (22 if netns else free_port())
        self.user = getpass.getuser()
        # where a real host keeps it (/etc/ssh/...) when a node's root is given
        self.host_key = Path(host_key) if host_key else self.workdir / "ssh_host_ed25519_key"
        self.proc: subprocess.Popen | None = None

    @property
    def host_key_pub(self) -> str:
        return (Path(str(self.host_key) + ".pub")).read_text().split()[1]

    def _config(self) -> Path:
        if not self.host_key.exists():
            keygen(self.host_key)
        lines = [
            f"Port {self.port}",
            f"ListenAddress {self.listen}",
            f"HostKey {self.host_key}",
            f"AuthorizedKeysFile {self.authorized_keys}",
            f"PidFile {self.workdir / 'sshd.pid'}",
            "UsePAM no",
            "StrictModes no",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PermitRootLogin prohibit-password",
            "MaxStartups 100:30:200",
            "MaxSessions 100",
            "Subsystem sftp internal-sftp",
            "LogLevel ERROR",
        ]
        if self.env:
            lines.append("SetEnv " + " ".join(f'{k}="{v}"' for k, v in self.env.items()))
        cfg = self.workdir / "sshd_config"
        cfg.write_text("\n".join(lines) + "\n")
        return cfg

    def start(self, timeout: float = 10.0) -> "LoopbackSshd":
        if os.geteuid() == 0:
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        cfg = self._config()
        log = open(self.workdir / "sshd.log", "ab")
        self.proc = subprocess.Popen([*self.argv_prefix, SSHD, "-D", "-e", "-f", str(cfg)],
                                     stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sshd exited: {(self.workdir / 'sshd.log').read_text()[-2000:]}")
            try:
                if self._banner():
                    return self
            except OSError:
                pass
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"sshd on port {self.port} did not answer within {timeout}s")

    def _banner(self) -> bool:
        host = "127.0.0.1" if self.listen in ("0.0.0.0", "127.0.0.1") else self.listen
        if self.netns:
            from .netns import entered

            with entered(self.netns):
                sock = socket.create_connection((host, self.port), timeout=0.5)
        else:
            sock = socket.create_connection((host, self.port), timeout=0.5)
        with sock:
            return sock.recv(64).startswith(b"SSH-")

    def stop(self) -> None:
        """Stop by PID (the Popen handle), never by name."""
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None
