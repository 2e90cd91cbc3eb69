"""OpenSSH ProxyCommand of the test cloud: reach an emulated instance's sshd on loopback.

    ProxyCommand python3 proxy.py <hosts-dir> %h %p

``<hosts-dir>/<host>`` holds the loopback port of the sshd that stands in for ``<host>`` (an
instance's public or private IP or DNS name; written by the InstanceSimulator). The ssh port
argument is ignored: the map decides. The proxy connects to 127.0.0.1 only, never to ``<host>``.

If there is no entry (yet), it re-checks for up to ~2 s (``TESTCLOUD_PROXY_WAIT`` seconds if
that is set in its environment; ssh passes its own on), then exits 1 with
``proxy: no route to host <host>`` on stderr, as ssh does while an instance's SSH is not up.
Otherwise it pipes stdin -> socket and socket -> stdout (binary, unbuffered) until the socket
closes. Stdlib only, few imports: it starts for every ssh connection.

With ``TESTCLOUD_PROXY_LOG`` set in its environment it appends ``<host>`` to that file for every
connection it makes, so a test can count the SSH connections a command opened.
"""

import os
import select
import socket
import sys
import time

WAIT = float(os.environ.get("TESTCLOUD_PROXY_WAIT", "2.0"))  # how long to wait for a host entry
STEP = 0.05


def _port(hosts_dir: str, host: str, deadline: float):
    if not host or "/" in host or host in (".", ".."):
        return None
    path = os.path.join(hosts_dir, host)
    while True:
        try:
            with open(path) as f:
                text = f.read().strip()
            if text.isdigit():
                return int(text)
        except OSError:
            pass
        if time.monotonic() >= deadline:
            return None
        time.sleep(STEP)


def _connect(port: int, deadline: float) -> socket.socket:
    while True:
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            sock.settimeout(None)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return sock
        except OSError:
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
    deadline = time.monotonic() + WAIT
    port = _port(hosts_dir, host, deadline)
    if port is None:
        sys.stderr.write(f"proxy: no route to host {host}\n")
        return 1
    try:
        sock = _connect(port, deadline)
    except OSError as exc:
        sys.stderr.write(f"proxy: connect to host {host} (127.0.0.1:{port}): "
                         f"{exc.strerror or exc}\n")
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
