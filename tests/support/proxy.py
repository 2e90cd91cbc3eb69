"""OpenSSH ProxyCommand of the test cloud: the user's machine reaching an instance over "the
internet".

    ProxyCommand python3 proxy.py <hosts-dir> %h %p

``<hosts-dir>/<host>`` (written by the InstanceSimulator for an instance's *public* IP and DNS
name only) holds ``<gateway-netns> <private-ip>``. The proxy enters that network namespace (the
gateway side of the test cloud's network, see tests/support/netns.py) and connects to
``<private-ip>:<port>`` from the caller's address (198.51.100.7), so the instance's firewall,
built from its security group, decides as EC2 would. A private address has no entry: from the
user's machine it cannot be reached, as on EC2. It never connects anywhere else.

If there is no entry (yet), it re-checks for up to ~2 s (``TESTCLOUD_PROXY_WAIT`` seconds if
that is set in its environment; ssh passes its own on), then exits 1 with
``proxy: no route to host <host>`` on stderr, as ssh does while an instance's SSH is not up.
A refused connection is retried until then too; a dropped one (security group) times out after
``TESTCLOUD_PROXY_TIMEOUT`` seconds (default 10). Otherwise it pipes stdin -> socket and
socket -> stdout (binary, unbuffered) until the socket closes. Stdlib only, few imports: it
starts for every ssh connection. Needs root (setns).

With ``TESTCLOUD_PROXY_LOG`` set in its environment it appends ``<host>`` to that file for every
connection it makes, so a test can count the SSH connections a command opened.
"""

import ctypes
import os
import select
import socket
import sys
import time

WAIT = float(os.environ.get("TESTCLOUD_PROXY_WAIT", "2.0"))  # how long to wait for a host entry
TIMEOUT = float(os.environ.get("TESTCLOUD_PROXY_TIMEOUT", "10"))
CALLER = "198.51.100.7"      # tests/support/netns.py CALLER
STEP = 0.05


def _entry(hosts_dir: str, host: str, deadline: float):
    """(netns, private ip) of ``host``, waiting for it until ``deadline``; None if none."""
    if not host or "/" in host or host in (".", ".."):
        return None
    path = os.path.join(hosts_dir, host)
    while True:
        try:
            with open(path) as f:
                parts = f.read().split()
            if len(parts) == 2:
                return parts[0], parts[1]
        except OSError:
            pass
        if time.monotonic() >= deadline:
            return None
        time.sleep(STEP)


def _enter(netns: str) -> None:
    fd = os.open(f"/run/netns/{netns}", os.O_RDONLY)
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    if libc.setns(fd, 0x40000000) != 0:                       # CLONE_NEWNET
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    os.close(fd)


def _connect(addr: str, port: int, deadline: float) -> socket.socket:
    while True:
        try:
            sock = socket.create_connection((addr, port), timeout=TIMEOUT,
                                            source_address=(CALLER, 0))
            sock.settimeout(None)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return sock
        except ConnectionRefusedError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(STEP)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def pipe(sock: socket.socket, fd_in: int = 0, fd_out: int = 1) -> None:
    """Shuttle bytes until the socket closes (stdin EOF only half-closes the socket)."""
    inputs = [sock, fd_in]
    while True:
        readable, _, _ = select.select(inputs, [], [])
        if sock in readable:
            try:
                data = sock.recv(65536)
            except ConnectionResetError:
                data = b""
            if not data:
                return
            try:
                _write_all(fd_out, data)
            except BrokenPipeError:
                return
        if fd_in in readable:
            data = os.read(fd_in, 65536)
            if data:
                try:
                    sock.sendall(data)
                except OSError:
                    return
            else:
                inputs.remove(fd_in)
                try:
                    sock.shutdown(socket.SHUT_WR)
                except OSError:
                    return


def main(argv) -> int:
    if len(argv) < 3:
        sys.stderr.write("usage: proxy.py <hosts-dir> <host> [<port>]\n")
        return 2
    hosts_dir, host = argv[1], argv[2]
    port = int(argv[3]) if len(argv) > 3 and argv[3].isdigit() else 22
    deadline = time.monotonic() + WAIT
    entry = _entry(hosts_dir, host, deadline)
    if entry is None:
        sys.stderr.write(f"proxy: no route to host {host}\n")
        return 1
    netns, addr = entry
    try:
        _enter(netns)
        sock = _connect(addr, port, deadline)
    except socket.timeout:
        sys.stderr.write(f"proxy: connect to host {host} port {port}: Connection timed out\n")
        return 1
    except OSError as exc:
        sys.stderr.write(f"proxy: connect to host {host} port {port}: {exc.strerror or exc}\n")
        return 1
    log = os.environ.get("TESTCLOUD_PROXY_LOG")
    if log:
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, f"{host}\n".encode())
        finally:
            os.close(fd)
    try:
        pipe(sock)
    finally:
        sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
