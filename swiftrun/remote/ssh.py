"""SSH to cluster nodes: pinned host keys, ProxyCommand, one reused connection per node.

Host keys are pinned per cluster in ``<state>/clusters/<name>/known_hosts``. EC2 nodes are pinned
under their instance id (OpenSSH's HostKeyAlias), so a public IP that AWS hands to another
machine later can never inherit trust. The first contact with a *new* node records its key; a
different key later is refused, never accepted. Static hosts are also checked against the
user's own ~/.ssh/known_hosts.
"""

from __future__ import annotations

import shlex
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from swiftrun.errors import RemoteError
from swiftrun.remote.proxy import _ProxyCommand, expand_proxy


@dataclass(frozen=True)
class Target:
    """Where and how to reach one node."""

    host: str            # address or name SSH goes to (%h)
    port: int
    user: str
    alias: str = ""      # name the host key is pinned under ("" = OpenSSH's [host]:port)
    label: str = ""      # how messages name it ("headnode i-0abc")

    @property
    def key_name(self) -> str:
        if self.alias:
            return self.alias if self.port == 22 else f"[{self.alias}]:{self.port}"
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"


@dataclass
class Result:
    exited: int
    stdout: str
    stderr: str
    raw: bytes = b""     # stdout as bytes, when asked for (binary=True)

    @property
    def ok(self) -> bool:
        return self.exited == 0


class _PinPolicy:
    """paramiko MissingHostKeyPolicy: record a new node's key once, in the cluster's file."""

    def __init__(self, pins: "Remote", allow_new: bool):
        self.pins, self.allow_new = pins, allow_new

    def missing_host_key(self, client, hostname, key):
        if not self.allow_new:
            raise RemoteError(f"{hostname} has no pinned host key and is not a node swiftrun "
                              "launched; add it to ~/.ssh/known_hosts first (ssh to it once)")
        self.pins._pin(hostname, key)


class Remote:
    """Connections to the nodes of one cluster."""

    def __init__(self, *, cluster_dir: Path, key_file: Path | None, user: str,
                 proxy_command: str = "", connect_timeout: float = 10.0):
        self.known_hosts = Path(cluster_dir) / "known_hosts"
        self.key_file = Path(key_file) if key_file else None
        self.user = user
        self.proxy_command = proxy_command
        self.connect_timeout = connect_timeout
        self._conns: dict[str, object] = {}
        self._lock = threading.Lock()

    # -- host keys ---------------------------------------------------------------------------
    def _pin(self, hostname: str, key) -> None:
        import paramiko

        with self._lock:
            keys = paramiko.HostKeys()
            if self.known_hosts.exists():
                keys.load(str(self.known_hosts))
            keys.add(hostname, key.get_name(), key)
            self.known_hosts.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            tmp = self.known_hosts.with_suffix(".tmp")
            keys.save(str(tmp))
            tmp.chmod(0o600)
            tmp.replace(self.known_hosts)

    def forget(self, aliases: list[str]) -> None:
        """Drop pins of nodes that are gone (terminated instances never come back)."""
        import paramiko

        if not self.known_hosts.exists() or not aliases:
            return
        with self._lock:
            keys = paramiko.HostKeys()
            keys.load(str(self.known_hosts))
            for alias in aliases:
                for name in (alias, f"[{alias}]:22"):
                    if name in keys:
                        del keys[name]
            keys.save(str(self.known_hosts))

    def is_pinned(self, target: Target) -> bool:
        import paramiko

        if not self.known_hosts.exists():
            return False
        keys = paramiko.HostKeys()
        keys.load(str(self.known_hosts))
        return keys.lookup(target.key_name) is not None

    # -- connecting --------------------------------------------------------------------------
    def _sock(self, target: Target):
        import paramiko

        if self.proxy_command:
            cmd = expand_proxy(self.proxy_command, target)
            # OpenSSH runs ProxyCommand through the shell; so do we.
            return _ProxyCommand("/bin/sh -c " + shlex.quote("exec " + cmd))
        sock = socket.create_connection((target.host, target.port), timeout=self.connect_timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def connect(self, target: Target, *, allow_new: bool = True):
        """An open fabric Connection to ``target`` (reused while it stays up)."""
        import paramiko
        from fabric import Config, Connection

        cached = self._conns.get(target.key_name)
        if cached is not None and cached.is_connected and cached.transport.is_active():
            return cached
        if self.key_file and not self.key_file.exists():
            raise RemoteError(f"SSH key file {self.key_file} is missing; set [ssh] key_file")
        cfg = Config(overrides={"load_ssh_configs": False, "run": {"in_stream": False}})
        conn = Connection(target.alias or target.host, port=target.port, user=target.user,
                          config=cfg, connect_timeout=int(self.connect_timeout), connect_kwargs={
                              "key_filename": [str(self.key_file)] if self.key_file else None,
                              "look_for_keys": self.key_file is None,
                              "allow_agent": self.key_file is None,
                              "banner_timeout": self.connect_timeout,
                              "auth_timeout": self.connect_timeout,
                              "sock": self._sock(target)})
        client = conn.client
        client.load_system_host_keys()           # the user's ~/.ssh/known_hosts, read only
        if self.known_hosts.exists():
            client.load_host_keys(str(self.known_hosts))
            client._host_keys_filename = None     # never let paramiko rewrite our file
        client.set_missing_host_key_policy(_PinPolicy(self, allow_new))
        try:
            conn.open()
        except paramiko.BadHostKeyException:
            raise RemoteError(
                f"host key of {target.label or target.host} does not match the one pinned in "
                f"{self.known_hosts}: refusing to connect (if the node was replaced, run "
                "`swiftrun down` and `swiftrun up`; otherwise treat this as an attack)") from None
        except paramiko.AuthenticationException:
            conn.close()
            raise _AuthFailed(f"SSH login as {target.user!r} to {target.label or target.host} "
                              f"was refused with key {self.key_file}") from None
        except RemoteError:
            conn.close()
            raise
        except (OSError, EOFError, paramiko.SSHException) as exc:
            conn.close()
            raise _Unreachable(f"cannot reach {target.label or target.host} over SSH: "
                               f"{exc or type(exc).__name__}") from None
        conn.transport.set_keepalive(30)
        self._conns[target.key_name] = conn
        return conn

    def wait(self, target: Target, timeout: float, *, allow_new: bool = True):
        """Connect, retrying while the node boots (no banner yet, key not installed yet)."""
        deadline = time.monotonic() + timeout
        delay = 0.2
        last: Exception | None = None
        while True:
            try:
                return self.connect(target, allow_new=allow_new)
            except (_Unreachable, _AuthFailed) as exc:
                last = exc
            if time.monotonic() + delay > deadline:
                raise RemoteError(f"{last} (gave up after {int(timeout)}s; check the security "
                                  "group's port 22 rule with `swiftrun doctor`)")
            time.sleep(delay)
            delay = min(delay * 1.6, 5.0)

    def drop(self, target: Target) -> None:
        conn = self._conns.pop(target.key_name, None)
        if conn is not None:
            conn.close()

    def close(self) -> None:
        for conn in list(self._conns.values()):
            try:
                conn.close()
            except Exception:  # noqa: BLE001 - closing is best effort
                pass
        self._conns.clear()

    # -- commands ----------------------------------------------------------------------------
    def run(self, target: Target, command: str, *, stdin: bytes | None = None,
            timeout: float = 120.0, check: bool = False, binary: bool = False) -> Result:
        """Run ``command`` (sh syntax) and collect its output; one channel, no pty."""
        conn = self.connect(target)
        chan = conn.transport.open_session(timeout=self.connect_timeout)
        deadline = time.monotonic() + timeout
        try:
            chan.exec_command(command)
            if stdin:
                chan.sendall(stdin)
            chan.shutdown_write()
            out, err = bytearray(), bytearray()
            # Drain both streams without blocking on either, so a chatty stderr cannot stall us.
            while True:
                busy = False
                if chan.recv_ready():
                    out += chan.recv(65536)
                    busy = True
                if chan.recv_stderr_ready():
                    err += chan.recv_stderr(65536)
                    busy = True
                if busy:
                    continue
                if chan.exit_status_ready() and (chan.eof_received or chan.closed):
                    break
                if time.monotonic() > deadline:
                    raise socket.timeout()
                time.sleep(0.002)
            code = chan.recv_exit_status()
        except socket.timeout:
            raise RemoteError(f"command on {target.label or target.host} did not finish within "
                              f"{int(timeout)}s: {command[:80]}") from None
        finally:
            chan.close()
        res = Result(code, out.decode(errors="replace"), err.decode(errors="replace"),
                     bytes(out) if binary else b"")
        if check and not res.ok:
            detail = (res.stderr or res.stdout).strip().splitlines()
            raise RemoteError(f"command on {target.label or target.host} failed "
                              f"(exit {code}): {detail[-1] if detail else command[:80]}")
        return res

    def ssh_argv(self, target: Target, command: list[str] | None = None, *, tty: bool = False) -> list[str]:
        """The OpenSSH command line that reaches ``target`` with the same key, user and pins."""
        argv = ["ssh", "-p", str(target.port),
                "-o", f"UserKnownHostsFile={self.known_hosts}",
                "-o", "StrictHostKeyChecking=yes", "-o", "GlobalKnownHostsFile=/dev/null",
                "-o", f"ConnectTimeout={int(self.connect_timeout)}"]
        if self.key_file:
            argv += ["-i", str(self.key_file), "-o", "IdentitiesOnly=yes"]
        if target.alias:
            argv += ["-o", f"HostKeyAlias={target.alias}"]
        if self.proxy_command:
            argv += ["-o", f"ProxyCommand={self.proxy_command}"]
        if tty:
            argv.append("-t")
        argv.append(f"{target.user}@{target.host}")
        if command:
            argv += ["--"] + command
        return argv


class _Unreachable(RemoteError):
    pass


class _AuthFailed(RemoteError):
    pass
