"""Emulated instances as separate hosts: one Linux network namespace per node, on a bridge.

One :class:`Network` per test cloud. It has a *gateway* namespace that stands for everything
outside the VPC: the bridge every node is plugged into, the address the user's machine has as
the nodes see it (:data:`CALLER`, where swiftrun's SSH connections come from), and a web host
(:data:`WEB`: package mirror, Swift download) that only nodes with a public IPv4 address may
reach, as on EC2 without a NAT gateway.

Each node (:meth:`Network.add_node`) is a namespace holding exactly the private IP that the EC2
API gave the instance (``/32``, every destination on-link over its ``eth0``), its own UTS
namespace (its hostname is EC2's ``ip-10-1-2-3``), and an ingress firewall (nftables) that the
test cloud builds from the instance's security groups (:func:`ingress_ruleset`). Processes run
inside with :meth:`NodeNet.argv` (``nsenter``).

Everything is named ``sr<pid>c<n>...`` after the test process that made it, created and removed
by the fixtures; :func:`sweep_stale` removes what a killed test process left (its PID is gone).
No route leads from the test machine's own namespace into these addresses: the only way in is
the test cloud's proxy, which enters the gateway namespace. Nothing leaves the namespaces.
Needs root, ``ip`` (iproute2), ``nft`` (nftables), ``nsenter`` and ``unshare`` (util-linux).
"""

from __future__ import annotations

import ctypes
import ipaddress
import os
import re
import shutil
import subprocess
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

CALLER = "198.51.100.7"       # the user's machine, as the nodes see it (TEST-NET-2, RFC 5737)
CALLER_CIDR = f"{CALLER}/32"
WEB = "198.51.100.80"         # "the internet": package mirror and download host
ONLINK = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")   # private space, on the bridge
UTS_DIR = Path("/run/swiftrun-testcloud/uts")
CLONE_NEWNET = 0x40000000
_TOOLS = ("ip", "nft", "nsenter", "unshare")
_counter = 0
_counter_lock = threading.Lock()


def unavailable() -> str | None:
    """Why namespaced nodes cannot be made here (None when they can)."""
    if os.geteuid() != 0:
        return "network namespaces need root (run the tests as root)"
    missing = [t for t in _TOOLS if shutil.which(t) is None]
    if missing:
        return (f"{', '.join(missing)} not installed (apt-get install iproute2 nftables "
                "util-linux; README Quick start command 1)")
    return None


def _run(argv: list[str], *, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    res = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=30)
    if check and res.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({res.returncode}): {res.stderr.strip()}")
    return res


def _ip_batch(ns: str | None, lines: Iterable[str]) -> None:
    argv = ["ip"] + (["-n", ns] if ns else []) + ["-batch", "-"]
    _run(argv, input="\n".join(lines) + "\n")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def sweep_stale() -> list[str]:
    """Delete namespaces (and UTS files) of test processes that are gone; returns their names.
    Only names of this scheme (``sr<pid>c<n>``) whose PID no longer runs are touched."""
    gone = []
    res = _run(["ip", "netns", "list"], check=False)
    for line in res.stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        m = re.fullmatch(r"sr(\d+)c\d+\w*", name)
        if m and not _pid_alive(int(m.group(1))):
            _run(["ip", "netns", "delete", name], check=False)
            gone.append(name)
    if UTS_DIR.is_dir():
        for f in UTS_DIR.iterdir():
            m = re.fullmatch(r"sr(\d+)c\d+\w*", f.name)
            if m and not _pid_alive(int(m.group(1))):
                _run(["umount", str(f)], check=False)
                f.unlink(missing_ok=True)
    return gone


# -- entering a namespace from this process (the proxy, servers) ---------------------------------
def _setns(fd: int) -> None:
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


@contextmanager
def entered(netns: str):
    """Run the body with this *thread* in ``netns``; sockets made meanwhile stay there."""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{netns}", os.O_RDONLY)
    try:
        _setns(target)
        yield
    finally:
        try:
            _setns(home)
        finally:
            os.close(target)
            os.close(home)


# -- nodes ----------------------------------------------------------------------------------------
@dataclass
class NodeNet:
    """One node's namespaces and address."""

    netns: str
    uts: Path
    ip: str
    hostname: str
    port: str                    # its veth's name in the gateway namespace
    ruleset: str = field(default="", repr=False)

    def argv(self, argv: list[str]) -> list[str]:
        """``argv`` run inside this node (its network and hostname)."""
        return ["nsenter", f"--net=/run/netns/{self.netns}", f"--uts={self.uts}", "--", *argv]


class Network:
    """The gateway namespace plus the nodes of one test cloud (see the module docstring)."""

    def __init__(self):
        global _counter
        with _counter_lock:
            _counter += 1
            n = _counter
        self.prefix = f"sr{os.getpid()}c{n}"
        self.gw = f"{self.prefix}gw"
        self.nodes: dict[str, NodeNet] = {}
        self._seq = 0
        self._public: frozenset[str] = frozenset()
        self._lock = threading.Lock()
        self.started = False
        self._servers: list[subprocess.Popen] = []

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> "Network":
        sweep_stale()
        _run(["ip", "netns", "add", self.gw])
        self.started = True
        _ip_batch(self.gw, [
            "link set lo up",
            "link add br0 type bridge",
            "link set br0 up",
            f"addr add {CALLER}/32 dev br0",
            f"addr add {WEB}/32 dev br0",
            *[f"route add {net} dev br0" for net in ONLINK],
        ])
        self.set_public(())
        UTS_DIR.mkdir(parents=True, exist_ok=True)
        return self

    def serve(self, directory: Path, log: Path, node: str | None = None, port: int = 80) -> None:
        """An HTTP server serving ``directory``: by default the web host (gateway side, WEB:80),
        which also answers the apt stand-in's mirror check; with ``node``, one inside that node
        at its address (a stand-in headnode's agent serving its files). Stopped by PID in
        :meth:`close`."""
        import socket
        import sys
        import time

        addr = self.nodes[node].ip if node else WEB
        argv = [sys.executable, "-m", "http.server", str(port), "--bind", addr,
                "--directory", str(directory)]
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                self.nodes[node].argv(argv) if node else ["ip", "netns", "exec", self.gw, *argv],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        self._servers.append(proc)
        deadline = time.monotonic() + 10
        while True:
            try:
                with entered(self.nodes[node].netns if node else self.gw):
                    socket.create_connection((addr, port), timeout=0.5).close()
                return
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"web host {addr}:{port} did not start: {Path(log).read_text()[-500:]}")
                time.sleep(0.05)

    def close(self) -> None:
        for web in self._servers:
            if web.poll() is None:
                web.terminate()
                try:
                    web.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    web.kill()
                    web.wait()
        self._servers.clear()
        for key in list(self.nodes):
            self.remove_node(key)
        if self.started:
            _run(["ip", "netns", "delete", self.gw], check=False)
            self.started = False

    # -- nodes -----------------------------------------------------------------------------
    def add_node(self, key: str, ip: str, hostname: str | None = None) -> NodeNet:
        """A namespace for node ``key`` holding ``ip`` (a private IPv4 address)."""
        addr = ipaddress.ip_address(ip)
        if not addr.is_private or addr.version != 4:
            raise ValueError(f"not a private IPv4 address: {ip}")
        with self._lock:
            if key in self.nodes:
                return self.nodes[key]
            if any(n.ip == ip for n in self.nodes.values()):
                raise ValueError(f"{ip} is already used by another node of this network")
            self._seq += 1
            seq = self._seq
        hostname = hostname or "ip-" + ip.replace(".", "-")
        netns = f"{self.prefix}n{seq}"
        uts = UTS_DIR / netns
        port = f"v{seq}"
        _run(["ip", "netns", "add", netns])
        try:
            _run(["ip", "link", "add", port, "netns", self.gw, "type", "veth",
                  "peer", "name", "eth0", "netns", netns])
            _ip_batch(self.gw, [f"link set {port} master br0", f"link set {port} up"])
            _ip_batch(netns, ["link set lo up", "link set eth0 up", f"addr add {ip}/32 dev eth0",
                              "route add default dev eth0"])
            uts.touch()
            _run(["unshare", f"--uts={uts}", "hostname", hostname])
        except BaseException:
            _run(["ip", "netns", "delete", netns], check=False)
            raise
        node = NodeNet(netns=netns, uts=uts, ip=ip, hostname=hostname, port=port)
        with self._lock:
            self.nodes[key] = node
        return node

    def remove_node(self, key: str) -> None:
        with self._lock:
            node = self.nodes.pop(key, None)
        if node is None:
            return
        _run(["ip", "netns", "delete", node.netns], check=False)   # its veth goes with it
        _run(["umount", str(node.uts)], check=False)
        node.uts.unlink(missing_ok=True)

    # -- firewalls -------------------------------------------------------------------------
    def set_firewall(self, key: str, ruleset: str) -> bool:
        """Install ``ruleset`` (nft syntax, replacing table ``inet swiftrun``) in node ``key``;
        returns False when it was already in place."""
        node = self.nodes[key]
        if node.ruleset == ruleset:
            return False
        script = "table inet swiftrun\ndelete table inet swiftrun\n" + ruleset
        _run(["ip", "netns", "exec", node.netns, "nft", "-f", "-"], input=script)
        node.ruleset = ruleset
        return True

    def set_public(self, ips: Iterable[str]) -> None:
        """Only nodes whose private IP is in ``ips`` (they have a public IPv4 address) may open
        connections to the gateway side (the web host): there is no NAT gateway."""
        ips = frozenset(ips)
        with self._lock:
            if ips == self._public and getattr(self, "_gw_applied", False):
                return
            allow = ("  ip saddr { " + ", ".join(sorted(ips)) + " } accept\n") if ips else ""
            script = ("table inet swiftrun_gw\ndelete table inet swiftrun_gw\n"
                      "table inet swiftrun_gw {\n chain input {\n"
                      "  type filter hook input priority 0; policy accept;\n"
                      "  iif lo accept\n  ct state established,related accept\n"
                      f"{allow}"
                      "  iifname \"br0\" drop\n }\n}\n")
            _run(["ip", "netns", "exec", self.gw, "nft", "-f", "-"], input=script)
            self._public = ips
            self._gw_applied = True


# -- security groups -> nftables -----------------------------------------------------------------
def _ports(perm: dict) -> tuple[str, str | None]:
    """(protocol match, port match) of one IpPermission."""
    proto = str(perm.get("IpProtocol", "-1"))
    proto = {"6": "tcp", "17": "udp", "1": "icmp"}.get(proto, proto)
    if proto in ("-1", "all"):
        return "", None
    lo, hi = perm.get("FromPort"), perm.get("ToPort")
    if proto in ("tcp", "udp"):
        if lo is None or lo == -1 or (lo == 0 and hi in (65535, None)):
            return f"meta l4proto {proto}", None
        ports = str(lo) if lo == hi else f"{lo}-{hi}"
        return f"{proto} dport", ports
    return f"meta l4proto {proto}", None


def ingress_ruleset(groups: list[dict], members: dict[str, list[str]]) -> str:
    """The nftables input chain of a node in ``groups`` (DescribeSecurityGroups entries):
    established traffic and loopback pass; a new connection passes when a rule of one of the
    groups allows its protocol, port and source (a CIDR, or a group: the private IPs of
    ``members[group_id]``); everything else is dropped, as a security group does."""
    rules: list[str] = []
    for group in groups:
        for perm in group.get("IpPermissions", []):
            proto, ports = _ports(perm)
            match = f"{proto} {ports}" if ports else proto
            sources: list[str] = []
            for rng in perm.get("IpRanges", []):
                sources.append(f"ip saddr {rng['CidrIp']}")
            for rng in perm.get("Ipv6Ranges", []):
                sources.append(f"ip6 saddr {rng['CidrIpv6']}")
            for pair in perm.get("UserIdGroupPairs", []):
                ips = sorted(set(members.get(pair.get("GroupId", ""), [])))
                if ips:
                    sources.append("ip saddr { " + ", ".join(ips) + " }")
            for src in sources:
                rules.append(f"  {src} {match} accept".rstrip())
    body = "\n".join(rules)
    return ("table inet swiftrun {\n chain input {\n"
            "  type filter hook input priority 0; policy drop;\n"
            "  iif lo accept\n  ct state established,related accept\n"
            "  ct state invalid drop\n"
            f"{body}\n }}\n}}\n")
