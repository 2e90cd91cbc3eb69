"""ProxyCommand, as OpenSSH has it: the project's ``[ssh] proxy_command`` with %h %p %r %n expanded,
run through the shell, with a paramiko ProxyCommand that notices at once when the proxy is gone.
"""

from __future__ import annotations

import os
import socket
import time


def expand_proxy(template: str, target) -> str:
    """OpenSSH's ProxyCommand tokens: %h host, %p port, %r user, %n original name, %% literal."""
    out, i = [], 0
    while i < len(template):
        ch = template[i]
        if ch == "%" and i + 1 < len(template):
            nxt = template[i + 1]
            rep = {"h": target.host, "p": str(target.port), "r": target.user,
                   "n": target.alias or target.host, "%": "%"}.get(nxt)
            if rep is not None:
                out.append(rep)
                i += 2
                continue
        out.append(ch)
        i += 1
    return "".join(out)


def _proxy_command_class():
    import paramiko

    class ProxyCommand(paramiko.ProxyCommand):
        """paramiko's ProxyCommand, but a proxy that exits ends the connection.

        paramiko's ``recv`` keeps reading the dead proxy's stdout (``b""`` forever) until its
        timeout and reports "no data yet", so a dropped connection went unnoticed until the next
        keepalive failed (30 s). Here end of file is end of the connection (``b""``), which
        paramiko's transport turns into a closed connection at once.
        """

        def recv(self, size):
            import select

            buffer = b""
            start = time.time()
            try:
                while len(buffer) < size:
                    wait = None
                    if self.timeout is not None:
                        wait = self.timeout - (time.time() - start)
                        if wait <= 0:
                            break
                    ready, _, _ = select.select([self.process.stdout], [], [], wait)
                    if ready:
                        data = os.read(self.process.stdout.fileno(), size - len(buffer))
                        if not data:        # the proxy is gone
                            return buffer
                        buffer += data
                        break               # hand over what came; paramiko asks again
            except OSError as exc:
                raise paramiko.ProxyCommandFailure(" ".join(self.cmd), exc.strerror) from None
            if not buffer:
                raise socket.timeout()
            return buffer

        def close(self):
            try:
                if self.process.poll() is None:
                    self.process.terminate()
                self.process.wait(timeout=2)   # reaped: no zombie per dropped connection
            except Exception:  # noqa: BLE001 - best effort, it may be gone already
                pass

    return ProxyCommand


def _ProxyCommand(command_line: str):
    global _PROXY_CLASS
    if _PROXY_CLASS is None:
        _PROXY_CLASS = _proxy_command_class()
    return _PROXY_CLASS(command_line)


_PROXY_CLASS = None
