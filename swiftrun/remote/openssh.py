"""SSH to cluster nodes with OpenSSH: one multiplexed connection per node, pinned host keys.

Why OpenSSH rather than an SSH library: it moves bulk bytes at the speed of the wire, rsync runs
over it, users' bastions and agents already work with it, and its connection multiplexing
(ControlMaster) makes every command after the first a new channel on an open connection, with
no handshake. ControlPersist keeps that connection for the next swiftrun command, so a warm run
opens no connection at all. The control sockets live in a private directory (0700) of the user.

Host keys are pinned per cluster in ``<state>/clusters/<name>/known_hosts``. EC2 nodes are
pinned under their instance id (``HostKeyAlias``), so a public IP that AWS hands to another
machine later can never inherit trust. Only a node this swiftrun launched may have its key
recorded on first contact (``allow_new``: ``StrictHostKeyChecking=accept-new``); any other
first contact, and a different key later, is refused. A static host is not one swiftrun
launched: its key must be known before the first connection, in the user's own
``~/.ssh/known_hosts`` (ssh to it once) or the cluster's file.

A node may be reached through another one (``Target.via``): ``ssh -W`` over the other node's
open connection, OpenSSH's ProxyJump, with each node's key still checked under its own alias.
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import shutil
import socket
import stat
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from swiftrun import environ
from swiftrun.errors import RemoteError

# Every node-side path is under this prefix; it is empty on real nodes (see docs/internals.md).
NODE_ROOT = '"${SWIFTRUN_NODE_ROOT:-}"'
STATE_DIR = NODE_ROOT + "/var/lib/swiftrun"
# How long an idle connection is kept for the next command (seconds; 0: only while swiftrun runs).
PERSIST = environ.persist("SWIFTRUN_SSH_PERSIST")
SSH_ERROR = 255
PROXY_EXIT = "swiftrun-proxy-exit"   # the line the proxy wrapper appends when the command ends


@dataclass(frozen=True)
class Target:
    """Where and how to reach one node."""

    host: str            # address or name SSH goes to (%h)
    port: int
    user: str
    alias: str = ""      # name the host key is pinned under ("" = OpenSSH's [host]:port)
    label: str = ""      # how messages name it ("headnode i-0abc")
    via: "Target | None" = None   # reach it through this node (ProxyJump)

    @property
    def key_name(self) -> str:
        """The name OpenSSH files its host key under: the alias alone (HostKeyAlias stands for
        host and port), else host, or [host]:port off port 22."""
        if self.alias:
            return self.alias
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


class _Unreachable(RemoteError):
    """No SSH session (yet): refused, timed out, no route, the proxy failed, banner never came."""


class _Stalled(RemoteError):
    """A command, the connection's first included, that did not finish in its time (killed)."""


class _AuthFailed(RemoteError):
    """The node answered but refused the key (its authorized_keys may not be installed yet)."""


class ProxyFailed(_Unreachable):
    """``[ssh] proxy_command`` exited, or kept running without SSH ever answering through it."""

    def __init__(self, message: str, *, exited: bool):
        super().__init__(message)
        self.exited = exited


class HostKeyMismatch(RemoteError):
    """The node's host key is not the one pinned for it."""


# ssh's own failures (exit 255) by what it prints; everything else is the remote command's.
_MISMATCH = re.compile(r"REMOTE HOST IDENTIFICATION HAS CHANGED|Host key verification failed")
_AUTH = re.compile(r"Permission denied \(|Too many authentication failures|No more authentication methods")
_UNREACHABLE = re.compile(
    r"Connection (?:refused|timed out|reset|closed)|No route to host|Network is unreachable|"
    r"Could not resolve hostname|kex_exchange_identification|banner exchange|"
    r"Connection to .* closed by remote host|Broken pipe|proxy(?:command)?[: ]|"
    r"ProxyCommand|stdio forwarding failed|channel \d+: open failed|"
    r"Control socket connect|mux_client|Operation timed out|Name or service not known",
    re.I)


def runtime_dir() -> Path:
    """The private directory for control sockets (short paths: sockets have a ~100-byte limit)."""
    base = os.environ.get("XDG_RUNTIME_DIR")
    root = Path(base) / "swiftrun" if base and os.path.isdir(base) else \
        Path(tempfile.gettempdir()) / f"swiftrun-{os.getuid()}"
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = root.lstat()
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
        raise RemoteError(f"{root} must be a directory of yours that only you can use (mode 0700); "
                          "remove it and run again")
    return root


def ssh_binary() -> str:
    path = shutil.which("ssh")
    if not path:
        raise RemoteError("the OpenSSH client (ssh) is not installed: install openssh-client "
                          "(Debian/Ubuntu) or openssh (macOS has it)")
    return path


def expand_proxy(template: str, target: Target) -> str:
    """OpenSSH's ProxyCommand tokens: %h host, %p port, %r user, %n original name, %% literal."""
    out, i = [], 0
    while i < len(template):
        ch = template[i]
        if ch == "%" and i + 1 < len(template):
            rep = {"h": target.host, "p": str(target.port), "r": target.user,
                   "n": target.alias or target.host, "%": "%"}.get(template[i + 1])
            if rep is not None:
                out.append(rep)
                i += 2
                continue
        out.append(ch)
        i += 1
    return "".join(out)


class Remote:
    """Connections to the nodes of one cluster (see the module docstring)."""

    def __init__(self, *, cluster_dir: Path, key_file: Path | None, user: str,
                 proxy_command: str = "", connect_timeout: float = 10.0, persist: str | None = None):
        self.known_hosts = Path(cluster_dir) / "known_hosts"
        self.key_file = Path(key_file) if key_file else None
        self.user = user
        self.proxy_command = proxy_command
        self.connect_timeout = connect_timeout
        self.persist = PERSIST if persist is None else persist
        self._cluster = str(Path(cluster_dir).resolve())
        self._ready: dict[str, Target] = {}  # targets whose connection this process has seen up

    @property
    def persistent(self) -> bool:
        return str(self.persist) not in ("", "0", "no")

    # -- OpenSSH's command line -------------------------------------------------------------
    def control_path(self, target: Target) -> Path:
        digest = hashlib.sha256(f"{self._cluster}\0{target.key_name}\0{target.host}".encode()).hexdigest()
        return runtime_dir() / digest[:20]

    def options(self, target: Target, *, allow_new: bool = False) -> list[str]:
        """Every option of a connection to ``target``, through its multiplexed connection."""
        # no persistence: kept open while this process works (close() ends it), as long as it
        # may take the longest command, then let go
        persist = self.persist if self.persistent else "1h"
        files = str(self.known_hosts)
        if not target.alias:
            # a static host: the user's own pins count too (new ones go to the cluster's file)
            files += " " + str(Path.home() / ".ssh" / "known_hosts")
        opts = ["-F", "/dev/null", "-o", "BatchMode=yes", "-o", "LogLevel=ERROR",
                "-o", f"ConnectTimeout={int(self.connect_timeout)}",
                "-o", "ServerAliveInterval=15", "-o", "ServerAliveCountMax=3",
                "-o", f"UserKnownHostsFile={files}", "-o", "GlobalKnownHostsFile=/dev/null",
                "-o", f"StrictHostKeyChecking={'accept-new' if allow_new else 'yes'}",
                "-o", "HashKnownHosts=no", "-o", "UpdateHostKeys=no", "-o", "CheckHostIP=no",
                "-o", "ControlMaster=auto", "-o", f"ControlPath={self.control_path(target)}",
                "-o", f"ControlPersist={persist}", "-p", str(target.port), "-l", target.user]
        if target.alias:
            opts += ["-o", f"HostKeyAlias={target.alias}"]
        if self.key_file:
            opts += ["-i", str(self.key_file), "-o", "IdentitiesOnly=yes"]
        if target.via is not None:
            # ProxyJump, over the jump node's own (multiplexed) connection
            jump = shlex.join([ssh_binary(), *self.options(target.via), "-W", "%h:%p",
                               target.via.host])
            opts += ["-o", f"ProxyCommand={jump}"]
        elif self.proxy_command:
            opts += ["-o", f"ProxyCommand={self._wrapped_proxy(target)}"]
        return opts

    def proxy_log(self, target: Target) -> Path:
        return self.control_path(target).with_suffix(".proxy")

    def _wrapped_proxy(self, target: Target) -> str:
        """The user's proxy command, its stderr and exit code kept in :meth:`proxy_log` (OpenSSH
        sends a ControlPersist connection's proxy stderr to /dev/null): a proxy that fails is
        then named with its own words, at once, instead of as a stalled SSH banner."""
        log = shlex.quote(str(self.proxy_log(target)))
        command = self.proxy_command.strip().rstrip(";").rstrip()
        script = f'{{ {command} ; }} 2>>{log}; echo "{PROXY_EXIT} $?" >>{log}'
        return "sh -c " + shlex.quote(script)

    def _proxy_trouble(self, target: Target, stderr: str) -> ProxyFailed | None:
        """What the proxy command of the failed attempt said: it exited, or it hung."""
        if not self.proxy_command or target.via is not None:
            return None
        path = self.proxy_log(target)
        try:
            lines = path.read_text(errors="replace").splitlines()
            path.unlink()
        except OSError:
            lines = []
        # the log may still hold a former connection's lines: keep the last attempt's
        ends = [i for i, ln in enumerate(lines) if ln.startswith(PROXY_EXIT)]
        if ends and ends[-1] == len(lines) - 1:
            start = ends[-2] + 1 if len(ends) > 1 else 0
            code = lines[-1][len(PROXY_EXIT):].strip()
            said = [ln.strip() for ln in lines[start:-1] if ln.strip()]
            tail = " | ".join(said[-3:]) or "nothing on stderr"
            return ProxyFailed(f"[ssh] proxy_command exited {code} before {target.label or target.host} "
                               f"answered over SSH: {tail} (check the command: "
                               f"{self.proxy_command!r})", exited=True)
        said = [ln.strip() for ln in lines[ends[-1] + 1 if ends else 0:] if ln.strip()]
        if re.search(r"banner exchange|timed out", stderr, re.I):
            tail = " | ".join(said[-3:]) or "nothing on stderr"
            return ProxyFailed(f"no SSH answer from {target.label or target.host} through [ssh] "
                               f"proxy_command within {int(self.connect_timeout)}s: the command "
                               f"kept running without connecting ({tail}; check "
                               f"{self.proxy_command!r})", exited=False)
        return None

    def ssh_argv(self, target: Target, command: list[str] | str | None = None, *,
                 tty: bool = False, allow_new: bool = False) -> list[str]:
        """The OpenSSH command line that reaches ``target`` with the key, user and pins."""
        argv = [ssh_binary(), *self.options(target, allow_new=allow_new)]
        if tty:
            argv.append("-t")
        argv.append(target.host)
        if command:
            argv += ["--"] + ([command] if isinstance(command, str) else list(command))
        return argv

    def rsh(self, target: Target) -> str:
        """A program that runs ``ssh <options> ARGS...`` for ``target``: for rsync's ``-e``."""
        path = self.control_path(target).with_suffix(".ssh")
        body = "#!/bin/sh\nexec " + shlex.join([ssh_binary(), *self.options(target)]) + ' "$@"\n'
        try:
            if path.read_text() == body:
                return str(path)
        except OSError:
            pass
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(body)
        tmp.chmod(0o700)
        os.replace(tmp, path)
        return str(path)

    # -- host keys ---------------------------------------------------------------------------
    def _pins(self) -> list[str]:
        try:
            return self.known_hosts.read_text().splitlines()
        except OSError:
            return []

    def _pinned_names(self) -> set[str]:
        return {name for line in self._pins() if line.strip() and not line.startswith("#")
                for name in line.split(None, 1)[0].split(",")}

    def is_pinned(self, target: Target) -> bool:
        return target.key_name in self._pinned_names()

    def pin(self, alias: str, key_type: str, key: str) -> None:
        """Record ``alias``'s host key, learnt over an authenticated path (a worker's boot report
        through its headnode): the first contact then checks it instead of trusting it."""
        self._write_pins([(alias, key_type, key)])

    def pin_many(self, pins: list[tuple[Target, str, str, str]]) -> None:
        """``pin`` for each (target, alias, key type, key) whose target is not pinned yet, with
        one read and one write of the file for all of them (a boot of 200 workers pinned one
        at a time read and rewrote it 200 times)."""
        have = self._pinned_names()
        self._write_pins([(alias, kind, key) for target, alias, kind, key in pins
                          if target.key_name not in have])

    def _write_pins(self, pins: list[tuple[str, str, str]]) -> None:
        ok = [(a, t, k) for a, t, k in pins
              if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", a)
              and re.fullmatch(r"(ssh|ecdsa-sha2)-[a-z0-9-]+", t)
              and re.fullmatch(r"[A-Za-z0-9+/=]+", k)]
        if not ok:
            return
        self.known_hosts.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        aliases = {a for a, _, _ in ok}
        lines = [ln for ln in self._pins() if (ln.split(None, 1) or [""])[0] not in aliases]
        lines += [f"{a} {t} {k}" for a, t, k in ok]
        tmp = self.known_hosts.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text("".join(f"{ln}\n" for ln in lines))
        tmp.chmod(0o600)
        os.replace(tmp, self.known_hosts)

    def forget(self, aliases: list[str]) -> None:
        """Drop pins of nodes that are gone (terminated instances never come back)."""
        if not aliases or not self.known_hosts.exists():
            return
        gone = set(aliases) | {f"[{a}]:22" for a in aliases}
        keep = [ln for ln in self._pins()
                if not (ln.strip() and set(ln.split(None, 1)[0].split(",")) & gone)]
        tmp = self.known_hosts.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text("".join(f"{ln}\n" for ln in keep))
        tmp.chmod(0o600)
        os.replace(tmp, self.known_hosts)

    # -- running commands --------------------------------------------------------------------
    def _prepare(self) -> None:
        self.known_hosts.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if self.key_file and not self.key_file.exists():
            raise RemoteError(f"SSH key file {self.key_file} is missing; set [ssh] key_file")

    def _failure(self, target: Target, stderr: str, command: str = "") -> RemoteError:
        """ssh's exit 255, in words: which of the errors above, with ssh's own last line."""
        lines = [ln.strip() for ln in stderr.strip().splitlines() if ln.strip()]
        last = lines[-1] if lines else "ssh exited 255 without a message"
        who = target.label or target.host
        where = "" if f"{target.host}:{target.port}" in who else f" ({target.host}:{target.port})"
        if "REMOTE HOST IDENTIFICATION HAS CHANGED" in stderr or (
                _MISMATCH.search(stderr) and self.is_pinned(target)):
            return HostKeyMismatch(
                f"host key of {who} does not match the one pinned in {self.known_hosts}: refusing "
                "to connect (if the node was replaced, run `swiftrun down` and `swiftrun up`; "
                "otherwise treat this as an attack)")
        if _MISMATCH.search(stderr):
            return RemoteError(f"{who} has no pinned host key and is not a node swiftrun launched; "
                               "add it to ~/.ssh/known_hosts first (ssh to it once)")
        if _AUTH.search(stderr):
            if self.key_file:
                return _AuthFailed(f"SSH login as {target.user!r} to {who} was refused with key "
                                   f"{self.key_file}")
            return _AuthFailed(f"SSH login as {target.user!r} to {who} was refused with your SSH "
                               "agent and ~/.ssh keys: load the key with `ssh-add` or set [ssh] key_file")
        return self._proxy_trouble(target, stderr) or \
            _Unreachable(f"cannot reach {who}{where} over SSH: {last}")

    def run(self, target: Target, command: str, *, stdin: bytes | None = None,
            timeout: float = 120.0, check: bool = False, binary: bool = False,
            allow_new: bool = False) -> Result:
        """Run ``command`` (sh syntax) on ``target``; its output, its exit code."""
        self._prepare()
        argv = self.ssh_argv(target, command, allow_new=allow_new)
        try:
            proc = subprocess.run(argv, input=stdin if stdin is not None else b"",
                                  capture_output=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise _Stalled(f"command on {target.label or target.host} did not finish within "
                           f"{int(timeout)}s: {command[:80]}") from None
        err = proc.stderr.decode(errors="replace")
        if proc.returncode == SSH_ERROR and self._is_ssh_error(err):
            self._ready.pop(target.key_name, None)
            raise self._failure(target, err, command)
        self._ready[target.key_name] = target
        res = Result(proc.returncode, proc.stdout.decode(errors="replace"), err,
                     proc.stdout if binary else b"")
        if check and not res.ok:
            detail = (res.stderr or res.stdout).strip().splitlines()
            raise RemoteError(f"command on {target.label or target.host} failed "
                              f"(exit {res.exited}): {detail[-1] if detail else command[:80]}")
        return res

    @staticmethod
    def _is_ssh_error(stderr: str) -> bool:
        return bool(_MISMATCH.search(stderr) or _AUTH.search(stderr) or _UNREACHABLE.search(stderr)
                    or stderr.startswith("ssh:"))

    def popen(self, target: Target, command: str, **kwargs) -> subprocess.Popen:
        """``command`` on ``target`` as a process (streams): connect first so that a failure to
        reach the node is an error here, not a 255 later."""
        self.connect(target)
        kwargs.setdefault("stdin", subprocess.DEVNULL)
        return subprocess.Popen(self.ssh_argv(target, command), **kwargs)

    def connect(self, target: Target, *, allow_new: bool = False) -> "Link":
        """Make sure the node's multiplexed connection is up (one round trip at most); the
        :class:`Link` names it for code that streams over it (sync, follow)."""
        if not (target.key_name in self._ready and self.alive(target)):
            res = self.run(target, ":", timeout=max(30.0, self.connect_timeout * 3),
                           allow_new=allow_new)
            if not res.ok:
                # ':' cannot fail: ssh itself did, without one of its known words
                self._ready.pop(target.key_name, None)
                raise self._failure(target, res.stderr)
        return Link(self, target)

    def alive(self, target: Target) -> bool:
        """Whether the node's multiplexed connection is open (a local check, no round trip)."""
        # A connect to the control socket, not ``ssh -O check``: the same answer (a master
        # process listens there) without a process start (~10 ms) before every stream.
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(5)
            sock.connect(str(self.control_path(target)))
            return True
        except OSError:         # no socket file, or a stale one nobody listens on
            return False
        finally:
            sock.close()

    def wait(self, target: Target, timeout: float, *, allow_new: bool = True,
             booting: bool = False,
             hint: str = "check the security group's port 22 rule with `swiftrun doctor`") -> "Link":
        """Connect, retrying while the node boots (no banner yet); a refused key only while it is
        ``booting`` (cloud-init may install authorized_keys after sshd starts).

        A proxy command that exits fails at once unless the node is ``booting`` (launched in this
        call: a bastion's ``ssh -W`` or ``nc`` exits while the node's sshd is not up yet)."""
        deadline = time.monotonic() + timeout
        delay = 0.2
        last: Exception | None = None
        while True:
            try:
                return self.connect(target, allow_new=allow_new)
            except ProxyFailed as exc:
                if exc.exited and not booting:
                    raise
                last = exc
            except _AuthFailed as exc:
                if not booting:     # a node up for a while refuses the key: waiting won't help
                    raise
                last = exc
            except _Unreachable as exc:
                last = exc
            except _Stalled as exc:
                # a node still booting can take a connection and then say nothing (seen under
                # load: its first ':' hung for 30 s): the stalled ssh was killed; start afresh
                if not booting:
                    raise
                self.drop(target)
                last = exc
            if time.monotonic() + delay > deadline:
                if isinstance(last, ProxyFailed):
                    raise RemoteError(f"{last} (gave up after {int(timeout)}s)")
                raise RemoteError(f"{last} (gave up after {int(timeout)}s; {hint})")
            time.sleep(delay)
            delay = min(delay * 1.6, 5.0)

    def drop(self, target: Target) -> None:
        """Close the node's connection (a broken one is made anew by the next command)."""
        self._ready.pop(target.key_name, None)
        path = self.control_path(target)
        if path.exists():
            subprocess.run([ssh_binary(), "-o", f"ControlPath={path}", "-O", "exit", "x"],
                           capture_output=True, timeout=10)

    def close(self, targets: list[Target] | tuple = ()) -> None:
        """Let go of the connections: kept for the next command (ControlPersist), closed when
        persistence is off; ``targets`` are closed in any case (nodes that are going away)."""
        mine = list(self._ready.values()) if not self.persistent else []
        for target in [*targets, *mine]:
            self.drop(target)
        self._ready.clear()


@dataclass(frozen=True)
class Link:
    """One node's open connection, for code that runs its own streams over it: ``popen`` a
    command with pipes (a new channel on the master, no handshake) or hand ``rsh`` to rsync."""

    remote: Remote
    target: Target

    def popen(self, command: str, **kwargs) -> subprocess.Popen:
        return self.remote.popen(self.target, command, **kwargs)

    @property
    def rsh(self) -> str:
        return self.remote.rsh(self.target)
