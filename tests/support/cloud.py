"""The test cloud: moto server (EC2 & co. over HTTP on loopback) + instances that are real hosts.

- :class:`MotoServer` runs ``python -m moto.server`` (or the fault-injecting wrapper of
  :mod:`tests.support.faults`) on a free loopback port, started and stopped by PID.
- :class:`InstanceSimulator` polls moto; every ``running`` instance becomes a host of its own:
  a network namespace holding the private IP EC2 gave it, on the test cloud's bridge
  (:mod:`tests.support.netns`), with an ingress firewall built from its security groups that
  follows their changes; a sandbox ``<base>/<instance-id>/{root,home}`` laid down from its image
  (:mod:`tests.support.nodeimage`: stock Ubuntu, or a custom image with Swift baked in); a real
  OpenSSH sshd on port 22 inside the namespace (authorized key = its key pair's public key);
  and its userdata run in the background inside the namespace with ``SWIFTRUN_NODE_ROOT=<root>``.
  Every process of a node runs in that node's own cgroup, all nodes together at a low CPU weight
  (:mod:`tests.support.nodecpu`): as on EC2, where each instance has CPUs of its own, the
  nodes' idle loops do not starve the client under test or the moto server.
  Host-map entries ``<base>/hosts/<public ip or name>`` tell :mod:`tests.support.proxy` where
  the instance is. Stopped / terminated instances lose their sshd, their SSH connections and
  every process of theirs (found by PID: userdata's process group, the stand-in systemd
  pidfiles, and any process whose environment carries ``SWIFTRUN_NODE_ROOT=<root>``); a
  terminated one also loses its namespace. At first boot apt-daily holds apt's locks for
  ``apt_lock_seconds`` (see the apt-get stand-in). Types with instance store (c5d, m6id...)
  get an NVMe instance-store disk in sysfs; a stop leaves it blank (unmounted, emptied). A start
  after a stop runs the enabled services again but not the userdata, as on EC2, and moves the
  node's clock (its ``date`` and ``touch`` stand-ins) on by ``stopped_for_seconds`` (default 0:
  the stop took no time). A ``shutdown`` by the node stand-in
  (``<root>/run/standin-shutdown``) stops or terminates the instance in moto, per its
  InstanceInitiatedShutdownBehavior.
- :class:`TestCloud` bundles both for one test (what the ``cloud`` fixture returns), with the
  web host that serves the real Swift/K distribution as the projects' ``[swift] install_url``.

Network traffic goes to 127.0.0.1 or inside the namespaces the test cloud made, nowhere else.
"""

from __future__ import annotations

import base64
import getpass
import gzip
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from . import faults as _faults
from .netns import CALLER_CIDR, WEB, Network, NodeNet, ingress_ruleset
from .nodecpu import NodeCpu
from .nodeimage import STANDIN_NODE_DIR, SWIFT_TARBALL_NAME, Images
from .sshd import LoopbackSshd, free_port

log = logging.getLogger("testcloud")

SUPPORT_DIR = Path(__file__).resolve().parent
PROXY = SUPPORT_DIR / "proxy.py"
REPO = SUPPORT_DIR.parent.parent

DUMMY_CREDS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
DEFAULT_REGION = "us-west-2"
SIM_REGIONS = ("us-west-2", "us-east-1")

# --- images -------------------------------------------------------------------------------------
CANONICAL_OWNER = "099720109477"
UBUNTU_AMI_ID = "ami-0a5c0ffee2404a001"
UBUNTU_AMI_NAME = "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-20261101"
UBUNTU_OLD_AMI_ID = "ami-0a5c0ffee2404a000"
UBUNTU_OLD_AMI_NAME = "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-20260301"
UBUNTU_ARM_AMI_ID = "ami-0a5c0ffee2404a0a1"
UBUNTU_ARM_AMI_NAME = "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-arm64-server-20261101"
# A custom image of the test account's own: Java 21 and Swift 0.96.2 in /opt/swift, unpacked as
# shipped (the launchers still pass -Djava.endorsed.dirs).
ACCOUNT_ID = "123456789012"
BAKED_AMI_ID = "ami-0b5c0ffee2404b001"
BAKED_AMI_NAME = "swift-0.96.2-java21-custom"


def _ubuntu_image(ami_id: str, name: str, arch: str, created: str) -> dict[str, Any]:
    return {
        "ami_id": ami_id, "state": "available", "public": True, "owner_id": CANONICAL_OWNER,
        "image_location": f"{CANONICAL_OWNER}/{name}", "sriov": "simple",
        "root_device_type": "ebs", "root_device_name": "/dev/sda1",
        "description": f"Canonical, Ubuntu, 24.04, {arch} noble image", "image_type": "machine",
        "platform": None, "architecture": arch, "name": name, "virtualization_type": "hvm",
        "hypervisor": "xen", "creation_date": created,
    }


TEST_IMAGES = [
    _ubuntu_image(UBUNTU_AMI_ID, UBUNTU_AMI_NAME, "x86_64", "2026-11-01T10:00:00.000Z"),
    {**_ubuntu_image(BAKED_AMI_ID, BAKED_AMI_NAME, "x86_64", "2026-11-20T10:00:00.000Z"),
     "owner_id": ACCOUNT_ID, "public": False, "image_location": f"{ACCOUNT_ID}/{BAKED_AMI_NAME}",
     "description": "Ubuntu 24.04 with Java 21 and Swift 0.96.2 in /opt/swift"},
    _ubuntu_image(UBUNTU_OLD_AMI_ID, UBUNTU_OLD_AMI_NAME, "x86_64", "2026-03-01T10:00:00.000Z"),
    _ubuntu_image(UBUNTU_ARM_AMI_ID, UBUNTU_ARM_AMI_NAME, "arm64", "2026-11-01T10:00:00.000Z"),
]


def write_amis_file(path: Path) -> Path:
    """moto's default image list plus Canonical-owned Ubuntu 24.04 images (``MOTO_AMIS_PATH``).

    With MOTO_AMIS_PATH set moto loads exactly this list in every region (and skips its big
    per-region "latest" lists), after every reset too. The Ubuntu images: the newest amd64
    (``UBUNTU_AMI_ID``), an older amd64 and an arm64 one, so "pick the newest" is testable.
    """
    import importlib.util

    spec = importlib.util.find_spec("moto")  # locate moto's data without importing moto (slow)
    moto_dir = Path(list(spec.submodule_search_locations)[0])  # type: ignore[union-attr]
    with gzip.open(moto_dir / "ec2" / "resources" / "amis.json.gz", "rt") as f:
        images = json.load(f) + [dict(a) for a in TEST_IMAGES]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(images))
    return path


_SESSION_LOCK = threading.Lock()
_BOTOCORE_SESSION: Any = None


def _botocore_session() -> Any:
    """One botocore session for all test-cloud clients: it caches the (big) EC2 service model,
    making a client ~10 ms instead of ~250 ms. No config or credentials files are read."""
    global _BOTOCORE_SESSION
    if _BOTOCORE_SESSION is None:
        import botocore.session

        session = botocore.session.Session()
        session.set_config_variable("config_file", os.devnull)
        session.set_config_variable("credentials_file", os.devnull)
        _BOTOCORE_SESSION = session
    return _BOTOCORE_SESSION


def boto_client(service: str, endpoint_url: str, region: str = DEFAULT_REGION,
                bypass_faults: bool = False, **config: Any):
    """A boto3 client on the moto server with dummy credentials (no profile, no IMDS).
    ``config`` goes to botocore's Config (e.g. ``retries={"total_max_attempts": 1}``);
    ``bypass_faults`` marks its requests so the fault wrapper lets them through."""
    import boto3
    from botocore.config import Config

    with _SESSION_LOCK:  # creating clients from one session is not thread-safe; using them is
        session = boto3.session.Session(botocore_session=_botocore_session())
        client = session.client(service, endpoint_url=endpoint_url, region_name=region,
                                config=Config(**{"connect_timeout": 5, "read_timeout": 30, **config}),
                                **DUMMY_CREDS)
    if bypass_faults:
        def _mark(request: Any, **_: Any) -> None:
            request.headers[_faults.BYPASS_HEADER] = "1"
        client.meta.events.register("before-sign", _mark)
    return client


# =================================================================================================
class MotoServer:
    """``python -m moto.server`` on a free loopback port; with ``faults=True`` the same app runs
    behind :class:`tests.support.faults.FaultInjector` (``set_faults`` / ``clear_faults`` /
    ``fault_state``)."""

    def __init__(self, port: int | None = None, faults: bool = False,
                 workdir: Path | None = None, env: dict[str, str] | None = None,
                 amis_file: Path | None = None):
        self.port = port or free_port()
        self.faults = faults
        self.workdir = Path(workdir) if workdir else None
        self.extra_env = dict(env or {})
        self.amis_file = amis_file
        self.proc: subprocess.Popen | None = None
        self._log = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        # Always through tests/support/faults.py: it serves exactly moto.server's app, plus a fix
        # for MOTO_AMIS_PATH images with creation dates; the injector only with faults=True.
        return _faults.command(self.port, faults=self.faults)

    def start(self, timeout: float = 30.0, warm_up: Iterable[str] = (DEFAULT_REGION,)) -> "MotoServer":
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update({"MOTO_PORT": str(self.port), "PYTHONUNBUFFERED": "1"})
        if self.amis_file:
            env["MOTO_AMIS_PATH"] = str(self.amis_file)
        env.update(self.extra_env)
        if self.workdir:
            self.workdir.mkdir(parents=True, exist_ok=True)
            self._log = open(self.workdir / "moto.log", "ab")
        out = self._log or subprocess.DEVNULL
        self.proc = subprocess.Popen(self.command(), stdout=out, stderr=out,
                                     stdin=subprocess.DEVNULL, env=env, cwd=str(REPO))
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"moto server exited with {self.proc.returncode}: {self.log_tail()}")
            try:
                with urllib.request.urlopen(self.endpoint + "/moto-api/", timeout=1):
                    break
            except (urllib.error.URLError, OSError):
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"moto server did not answer within {timeout}s")
                time.sleep(0.05)
        try:
            for region in warm_up:  # the first EC2 call loads the backend (~1 s); pay it once here
                boto_client("ec2", self.endpoint, region, bypass_faults=True).describe_instances()
        except BaseException:
            self.stop()
            raise
        return self

    def log_tail(self, n: int = 3000) -> str:
        if self.workdir and (self.workdir / "moto.log").exists():
            return (self.workdir / "moto.log").read_text(errors="replace")[-n:]
        return ""

    def _request(self, method: str, path: str, body: bytes | None = None) -> bytes:
        req = urllib.request.Request(self.endpoint + path, data=body, method=method,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.read()

    def reset(self) -> None:
        """Clear all moto state (and the fault rules and counters)."""
        self._request("POST", "/moto-api/reset", b"")
        if self.faults:
            self.clear_faults()

    # -- faults (only with faults=True) ----------------------------------------------------
    def _need_faults(self) -> None:
        if not self.faults:
            raise RuntimeError("this MotoServer was started without faults=True")

    def set_faults(self, rules: dict[str, Any]) -> dict[str, Any]:
        """Replace the fault rules (see tests.support.faults); zeroes the counters."""
        self._need_faults()
        return json.loads(self._request("POST", _faults.CONTROL_PATH, json.dumps(rules).encode()))

    def clear_faults(self) -> None:
        self._need_faults()
        self._request("DELETE", _faults.CONTROL_PATH)

    def fault_state(self) -> dict[str, Any]:
        """``{"rules", "injected": {op: n}, "calls": {op: n}, "total"}``."""
        self._need_faults()
        return json.loads(self._request("GET", _faults.CONTROL_PATH))

    def stop(self) -> None:
        """Stop by PID (the Popen handle)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        if self._log:
            self._log.close()
            self._log = None


# =================================================================================================
SFTP_SERVER = "/usr/lib/openssh/sftp-server"

SESSION_SH = """#!/bin/bash
# ForceCommand of an emulated instance's sshd: start where a real login starts, in $HOME (the
# sandbox home; sshd itself would start in the test user's real home directory). No login
# profile: the test machine's /etc/profile would put its own PATH (and its Java) back.
cd "$HOME" 2>/dev/null || true
if [ -z "${SSH_ORIGINAL_COMMAND+set}" ]; then
    exec /bin/bash --noprofile --norc -i
fi
case "$SSH_ORIGINAL_COMMAND" in
    internal-sftp*|*/sftp-server*) exec %(sftp)s -d "$HOME" ;;
esac
exec /bin/bash -c "$SSH_ORIGINAL_COMMAND"
"""


class NodeSshd(LoopbackSshd):
    """LoopbackSshd whose sessions (commands, shells, sftp) start in the sandbox home, as on a
    real host, instead of the test user's own home: relative paths stay inside the sandbox."""

    def _config(self) -> Path:
        cfg = super()._config()
        session = self.workdir / "session.sh"
        session.write_text(SESSION_SH % {"sftp": SFTP_SERVER})
        session.chmod(0o755)
        with cfg.open("a") as f:
            f.write(f"ForceCommand {session}\n")
        return cfg


# =================================================================================================
RUNNING = "running"
GONE_STATES = {"stopping", "stopped", "shutting-down", "terminated"}


@dataclass
class SimInstance:
    id: str
    region: str
    dir: Path
    root: Path
    home: Path
    image: str = "stock"
    public_ip: str | None = None
    private_ip: str | None = None
    names: list[str] = field(default_factory=list)   # host-map entries written for it
    net: NodeNet | None = None
    sshd: LoopbackSshd | None = None
    userdata: subprocess.Popen | None = None
    had_userdata: bool = False
    up: bool = False        # sshd running (instance "running" and booted)
    failed: bool = False    # boot raised (recorded in InstanceSimulator.errors); not retried
    boots: int = 0
    groups: tuple[str, ...] = ()


class InstanceSimulator:
    """Makes moto's EC2 instances real hosts (see the module docstring)."""

    FULL_READ_S = 10.0      # the instance list is read at least this often, changes or not

    def __init__(self, endpoint_url: str, regions: Iterable[str] | str, base_dir: Path,
                 images: Images, network: Network, standins_dirs: Iterable[Path] = (STANDIN_NODE_DIR,),
                 image_of: dict[str, str] | None = None, poll_interval: float = 0.15,
                 cpu: NodeCpu | None = None):
        self.endpoint_url = endpoint_url
        self.regions = [regions] if isinstance(regions, str) else list(regions)
        self.base = Path(base_dir)
        self.hosts_dir = self.base / "hosts"
        self.images = images
        self.network = network
        self.standins_dirs = [Path(p) for p in standins_dirs]
        self.image_of = dict(image_of or {})          # AMI id -> test image ("stock", "baked")
        self.poll_interval = poll_interval
        # every node's processes run in a cgroup of its own, all of them at a low CPU weight
        # (tests/support/nodecpu.py); made in start() unless given
        self.cpu = cpu
        self._own_cpu = cpu is None
        self.error: BaseException | None = None      # first unexpected error of the thread
        self.errors: list[str] = []                  # every unexpected error, formatted
        self.poll_errors = 0                         # moto errors while polling (tolerated)
        self._lock = threading.RLock()
        self._instances: dict[str, SimInstance] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._clients: dict[str, Any] = {}
        self.polls = 0
        self._seen_changes: int | None = None     # moto's change count at the last full read
        self._last_read = 0.0
        self.firewall_updates = 0
        # apt-daily starts with a first boot and holds apt's locks for a while (a real Ubuntu
        # image: often a minute); the apt-get stand-in refuses an update meanwhile
        self.apt_lock_seconds = 3.0
        # how long a simulated stop lasts on the node's clock: each start after a stop moves the
        # node's clock (the date and touch stand-ins) on by this much; see clock_offset
        self.stopped_for_seconds = 0

    # -- public API ----------------------------------------------------------------------
    def start(self) -> "InstanceSimulator":
        self.hosts_dir.mkdir(parents=True, exist_ok=True)
        if self.cpu is None:
            self.cpu = NodeCpu().start()
        for region in self.regions:
            self._clients[region] = boto_client("ec2", self.endpoint_url, region, bypass_faults=True,
                                                retries={"total_max_attempts": 1})
        self._thread = threading.Thread(target=self._run, name="instance-simulator", daemon=True)
        self._thread.start()
        return self

    def stop(self, raise_errors: bool = True) -> None:
        """Power off every instance (sshd, connections, processes) and end the thread.
        Re-raises the thread's first unexpected error, if any."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        with self._lock:
            for inst in list(self._instances.values()):
                try:
                    self._power_off(inst, terminated=True)
                except Exception as exc:  # keep going: clean up the others
                    self._record(exc, f"power off {inst.id}")
        if self._own_cpu and self.cpu is not None:
            self.cpu.close()
            self.cpu = None
        if raise_errors and self.error is not None:
            raise RuntimeError("instance simulator failed:\n" + "\n".join(self.errors)) from self.error

    @property
    def instances(self) -> list[str]:
        with self._lock:
            return list(self._instances)

    def info(self, instance_id: str) -> SimInstance:
        with self._lock:
            return self._instances[instance_id]

    def wait_for(self, instance_id: str, timeout: float = 20.0) -> LoopbackSshd:
        """Wait until the instance's sshd is up (its userdata may still be running)."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                inst = self._instances.get(instance_id)
                if inst is not None and inst.up and inst.sshd is not None:
                    return inst.sshd
                if inst is not None and inst.failed:
                    raise RuntimeError(f"instance {instance_id} failed to boot:\n" + "\n".join(self.errors))
            if self.error is not None:
                raise RuntimeError("instance simulator failed:\n" + "\n".join(self.errors)) from self.error
            if self._thread is None or not self._thread.is_alive():
                raise RuntimeError("instance simulator is not running")
            if time.monotonic() > deadline:
                raise TimeoutError(f"instance {instance_id} not up after {timeout}s "
                                   f"(known: {self.instances}, poll errors: {self.poll_errors})")
            time.sleep(0.05)

    def wait_userdata(self, instance_id: str, timeout: float = 90.0) -> int:
        """Wait until the instance is up and its userdata ended; return its exit code."""
        deadline = time.monotonic() + timeout
        self.wait_for(instance_id, timeout)
        while True:
            code = self.userdata_exit(instance_id)
            if code is not None:
                return code
            if time.monotonic() > deadline:
                raise TimeoutError(f"userdata of {instance_id} still running after {timeout}s")
            time.sleep(0.05)

    def sshd(self, instance_id: str) -> LoopbackSshd:
        inst = self.info(instance_id)
        if inst.sshd is None:
            raise KeyError(f"{instance_id} has no sshd (not up)")
        return inst.sshd

    def root(self, instance_id: str) -> Path:
        return self.info(instance_id).root

    def clock_offset(self, instance_id: str) -> int:
        """Seconds the node's clock (its date and touch stand-ins) is ahead of this machine's."""
        return _read_clock_offset(self.info(instance_id).root)

    def home(self, instance_id: str) -> Path:
        return self.info(instance_id).home

    def userdata_exit(self, instance_id: str) -> int | None:
        """Exit code of the userdata run; None while it runs (or before it started);
        0 when the instance had no userdata."""
        inst = self.info(instance_id)
        if inst.userdata is None:
            return 0 if (inst.boots and not inst.had_userdata) else None
        return inst.userdata.poll()

    def console(self, instance_id: str) -> str:
        path = self.info(instance_id).dir / "userdata.console"
        return path.read_text(errors="replace") if path.exists() else ""

    def exec(self, instance_id: str, command: str, *, timeout: float = 60.0) -> subprocess.CompletedProcess:
        """Run ``command`` (bash) on the node as its own processes do (its namespaces, PATH,
        HOME, node root): what a test would otherwise need a console login for."""
        inst = self.info(instance_id)
        if inst.net is None:
            raise KeyError(f"{instance_id} has no network yet")
        return subprocess.run(self._argv(inst, ["bash", "-c", command]), env=self._env(inst),
                              cwd=str(inst.home), capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)

    def restart_sshd(self, instance_id: str, drop_connections: bool = True) -> None:
        """Stop and start the instance's sshd on the same port (fault tests). With
        ``drop_connections`` the open SSH connections die too (like a network blip); without,
        they survive as on a real ``systemctl restart ssh``."""
        with self._lock:
            inst = self._instances[instance_id]
            if inst.sshd is None:
                raise KeyError(f"{instance_id} has no sshd (not up)")
            _stop_sshd(inst.sshd, drop_connections=drop_connections)
            inst.sshd.start()

    def drop_connections(self, instance_id: str) -> int:
        """Kill the instance's open SSH connections (sshd keeps listening); returns how many."""
        with self._lock:
            inst = self._instances[instance_id]
            if inst.sshd is None or inst.sshd.proc is None:
                return 0
            kids = _descendants(inst.sshd.proc.pid)
            _kill_pids(kids)
            return len(kids)

    # -- the thread ------------------------------------------------------------------------
    def _record(self, exc: BaseException, what: str) -> None:
        import traceback

        text = f"{what}: " + "".join(traceback.format_exception(exc))
        log.error("%s", text)
        self.errors.append(text)
        if self.error is None:
            self.error = exc

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll_once()
            except Exception as exc:
                self._record(exc, "poll")
            self._stop.wait(self.poll_interval)

    def _describe(self, region: str) -> dict[str, dict] | None:
        """{instance-id: instance} of a region, or None when moto did not answer well."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            found = {}
            for page in self._clients[region].get_paginator("describe_instances").paginate():
                for res in page.get("Reservations", []):
                    for inst in res.get("Instances", []):
                        found[inst["InstanceId"]] = inst
            return found
        except (BotoCoreError, ClientError, OSError, _parse_error()) as exc:
            self.poll_errors += 1
            log.warning("describe_instances in %s failed: %s", region, exc)
            return None

    def _groups(self, region: str) -> dict[str, dict] | None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            reply = self._clients[region].describe_security_groups()
            return {g["GroupId"]: g for g in reply.get("SecurityGroups", [])}
        except (BotoCoreError, ClientError, OSError, _parse_error()) as exc:
            self.poll_errors += 1
            log.warning("describe_security_groups in %s failed: %s", region, exc)
            return None

    def _changes(self) -> int | None:
        """moto's count of state-changing requests (tests/support/faults.py), None if unknown."""
        try:
            with urllib.request.urlopen(self.endpoint_url + _faults.CHANGES_PATH, timeout=5) as r:
                return int(json.loads(r.read())["changes"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def poll_once(self) -> None:
        """Follow moto's instances. The instance list is read again only when a state-changing
        request went to moto since the last read (or ``FULL_READ_S`` passed): rendering every
        instance several times a second cost moto a core at 200 instances. A node's own files
        (its shutdown request) are looked at on every poll."""
        self.polls += 1
        mark = self._changes()
        fresh = (mark is None or mark != self._seen_changes
                 or time.monotonic() - self._last_read > self.FULL_READ_S)
        all_read = True
        for region in self.regions:
            if self._stop.is_set():
                return
            if fresh:
                all_read = self._follow(region) and all_read
            with self._lock:
                up = [i for i in self._instances.values() if i.region == region and i.up]
            for inst in up:
                self._check_shutdown(inst)
        if fresh and all_read:
            self._seen_changes, self._last_read = mark, time.monotonic()
        self._update_public()

    def _follow(self, region: str) -> bool:
        """Boot, power off and firewall the nodes of ``region`` as moto's instances say; False
        when moto did not answer."""
        found = self._describe(region)
        if found is None:
            return False
        groups = self._groups(region)
        for iid, desc in found.items():
            state = desc.get("State", {}).get("Name")
            with self._lock:
                inst = self._instances.get(iid)
            if state == RUNNING and (inst is None or not (inst.up or inst.failed)):
                try:
                    self._boot(region, desc, groups)
                except Exception as exc:
                    with self._lock:
                        if iid in self._instances:
                            self._instances[iid].failed = True
                    self._record(exc, f"boot {iid}")
            elif state in GONE_STATES and inst is not None and (inst.up or inst.failed or inst.net):
                self._power_off(inst, terminated=state in ("shutting-down", "terminated"))
        if groups is not None:
            self._firewalls(region, found, groups)
        with self._lock:  # vanished (e.g. moto reset): power off
            gone = [i for i in self._instances.values()
                    if i.region == region and i.id not in found and (i.up or i.failed or i.net)]
        for inst in gone:
            self._power_off(inst, terminated=True)
        return groups is not None

    # -- security groups ---------------------------------------------------------------------
    def _firewalls(self, region: str, found: dict[str, dict], groups: dict[str, dict]) -> None:
        """Each node's ingress firewall follows its security groups (rules and members)."""
        members: dict[str, list[str]] = {}
        for desc in found.values():
            if desc.get("State", {}).get("Name") not in ("pending", "running"):
                continue
            ip = desc.get("PrivateIpAddress")
            for g in instance_groups(desc):
                if ip:
                    members.setdefault(g["GroupId"], []).append(ip)
        with self._lock:
            insts = [i for i in self._instances.values() if i.region == region and i.net is not None]
        for inst in insts:
            desc = found.get(inst.id)
            if desc is None:
                continue
            mine = [groups[g["GroupId"]] for g in instance_groups(desc) if g["GroupId"] in groups]
            inst.groups = tuple(g["GroupId"] for g in mine)
            if self.network.set_firewall(inst.id, ingress_ruleset(mine, members)):
                self.firewall_updates += 1

    def _update_public(self) -> None:
        with self._lock:
            ips = [i.private_ip for i in self._instances.values()
                   if i.net is not None and i.up and i.public_ip and i.private_ip]
        self.network.set_public(ips)

    def _check_shutdown(self, inst: SimInstance) -> None:
        """The node stand-in ``shutdown`` leaves ``$R/run/standin-shutdown`` (its arguments, one
        call a line): act on the last call as EC2 does on an OS shutdown, i.e. stop or terminate
        the instance per its InstanceInitiatedShutdownBehavior (default stop). ``-c`` cancels,
        ``-r`` (reboot) is ignored. Delays (``+5``) are not waited for. The file is moved to
        ``standin-shutdown.done`` once handled."""
        from botocore.exceptions import BotoCoreError, ClientError

        flag = inst.root / "run" / "standin-shutdown"
        try:
            text = flag.read_text()
        except FileNotFoundError:
            return
        lines = [line.split() for line in text.splitlines() if line.strip()]
        args = lines[-1] if lines else []
        client = self._clients[inst.region]
        try:
            if "-c" in args or "-r" in args or "--reboot" in args:
                action = "none"
            else:
                attr = client.describe_instance_attribute(
                    InstanceId=inst.id, Attribute="instanceInitiatedShutdownBehavior")
                behavior = (attr.get("InstanceInitiatedShutdownBehavior") or {}).get("Value") or "stop"
                action = "terminate" if behavior == "terminate" else "stop"
                if action == "terminate":
                    client.terminate_instances(InstanceIds=[inst.id])
                else:
                    client.stop_instances(InstanceIds=[inst.id])
        except (BotoCoreError, ClientError, OSError, _parse_error()) as exc:  # retry next poll
            self.poll_errors += 1
            log.warning("acting on shutdown of %s: %s", inst.id, exc)
            return
        with open(flag.with_name("standin-shutdown.done"), "a") as f:
            f.write(text)
        flag.unlink(missing_ok=True)
        log.info("instance %s: OS shutdown %s -> %s", inst.id, " ".join(args), action)

    # -- boot / power off ------------------------------------------------------------------
    def _argv(self, inst: SimInstance, argv: list[str]) -> list[str]:
        """``argv`` run as one of the node's own processes: its cgroup (CPU weight), its
        network namespace and hostname."""
        assert inst.net is not None
        inner = inst.net.argv(argv)
        return self.cpu.argv(inst.id, inner) if self.cpu is not None else inner

    def _env(self, inst: SimInstance) -> dict[str, str]:
        env = {"HOME": str(inst.home), "SWIFTRUN_NODE_ROOT": str(inst.root),
               "PATH": self.images.node_path(inst.root, self.standins_dirs), "LANG": "C.UTF-8",
               "STANDIN_APT_MIRROR": WEB}
        env.update(self.images.node_env(inst.root))
        return env

    def _boot(self, region: str, desc: dict, groups: dict[str, dict] | None) -> None:
        iid = desc["InstanceId"]
        client = self._clients[region]
        private_ip = desc.get("PrivateIpAddress")
        if not private_ip:
            return                                     # not addressed yet: next poll
        with self._lock:
            inst = self._instances.get(iid)
            first = inst is None
            if first:
                d = self.base / iid
                inst = SimInstance(iid, region, d, d / "root", d / "home",
                                   image=self.image_of.get(desc.get("ImageId", ""), "stock"))
                self._instances[iid] = inst
        script = b""
        if first:
            inst.root.mkdir(parents=True, exist_ok=True)
            inst.home.mkdir(parents=True, exist_ok=True)
            self.images.install(inst.image, inst.root)
            _instance_store(inst.root, desc.get("InstanceType", ""))
            if self.apt_lock_seconds > 0:
                lists = inst.root / "var/lib/apt/lists"
                lists.mkdir(parents=True, exist_ok=True)
                (lists / "lock.held-until").write_text(f"{int(time.time() + self.apt_lock_seconds + 1)}\n")
            keys = inst.dir / "authorized_keys"
            keys.write_text(self._public_key(client, desc.get("KeyName")))
            keys.chmod(0o600)
            # cloud-init runs user scripts once per instance, not on every start
            from botocore.exceptions import BotoCoreError, ClientError
            try:
                script = self._userdata(client, iid)
            except (BotoCoreError, ClientError, OSError, _parse_error()) as exc:  # moto hiccup: retry next poll
                self.poll_errors += 1
                log.warning("userdata of %s: %s (will retry)", iid, exc)
                with self._lock:
                    del self._instances[iid]
                return
            inst.had_userdata = bool(script.strip())
            (inst.dir / "cloud").mkdir(exist_ok=True)
        elif self.stopped_for_seconds:
            # a start after a stop: the node's clock has moved on by the time it was stopped,
            # before anything of it (sshd, its services) runs again
            _move_clock(inst.root, int(self.stopped_for_seconds))
        if inst.net is None:
            inst.net = self.network.add_node(iid, private_ip)
            (inst.root / "var/lib/cloud/data").mkdir(parents=True, exist_ok=True)
            (inst.root / "var/lib/cloud/data/instance-id").write_text(iid + "\n")
        # the security group is in force before anything listens
        if groups is not None:
            mine = [groups[g["GroupId"]] for g in instance_groups(desc) if g["GroupId"] in groups]
            members: dict[str, list[str]] = {}
            with self._lock:
                known = [(i.private_ip, i.groups) for i in self._instances.values() if i.up]
            for ip, gids in known:
                for gid in gids:
                    members.setdefault(gid, []).append(ip)
            for g in mine:
                members.setdefault(g["GroupId"], []).append(private_ip)
            inst.groups = tuple(g["GroupId"] for g in mine)
            self.network.set_firewall(iid, ingress_ruleset(mine, members))
        if inst.sshd is None:
            inst.sshd = NodeSshd(inst.dir / "sshd", inst.dir / "authorized_keys", env=self._env(inst),
                                 listen="0.0.0.0", netns=inst.net.netns, argv_prefix=self._argv(inst, []),
                                 host_key=inst.root / "etc/ssh/ssh_host_ed25519_key")
        # a node's sshd runs at the nodes' low CPU weight (nodecpu): with 200 of them booting on
        # a busy machine it may take a while to answer; EC2's own boots take longer still
        inst.sshd.start(timeout=60.0)
        inst.public_ip = desc.get("PublicIpAddress")
        inst.private_ip = private_ip
        # Only public names lead in from outside (the proxy): a private address is not
        # reachable from the user's machine, as on EC2.
        names = [n for n in (inst.public_ip, desc.get("PublicDnsName")) if n]
        inst.names = names
        for name in names:
            _atomic_write(self.hosts_dir / name, f"{self.network.gw} {private_ip}\n")
        if inst.public_ip:
            # its way out (a public address, no NAT) is open before its userdata runs, not after
            # the whole poll has booted every other new instance (a loaded machine: 30 s and more)
            with self._lock:
                ips = [i.private_ip for i in self._instances.values()
                       if i.net is not None and i.up and i.public_ip and i.private_ip]
            self.network.set_public([*ips, private_ip])
        if first and inst.had_userdata:
            path = inst.dir / "userdata"
            path.write_bytes(script)
            console = open(inst.dir / "userdata.console", "ab")
            env = {**self._env(inst), "USER": getpass.getuser(), "LOGNAME": getpass.getuser(),
                   "SHELL": "/bin/bash"}
            try:
                inst.userdata = subprocess.Popen(self._argv(inst, ["bash", str(path)]), cwd=str(inst.root),
                                                 env=env, stdin=subprocess.DEVNULL, stdout=console,
                                                 stderr=subprocess.STDOUT, start_new_session=True)
            finally:
                console.close()
        elif not first:
            # a start after a stop: systemd starts the enabled units; userdata does not run again
            subprocess.Popen(self._argv(inst, ["systemctl", "--standin-boot"]), env=self._env(inst),
                             cwd=str(inst.root), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)
        with self._lock:
            inst.boots += 1
            inst.up = True
        log.info("instance %s up: %s in %s for %s", iid, private_ip, inst.net.netns, names)

    def _public_key(self, client: Any, key_name: str | None) -> str:
        if not key_name:
            return ""
        try:
            resp = client.describe_key_pairs(KeyNames=[key_name], IncludePublicKey=True)
            return "".join(k.get("PublicKey", "").strip() + "\n" for k in resp.get("KeyPairs", []))
        except Exception as exc:  # key pair deleted already: nobody can log in
            log.warning("no public key for key pair %s: %s", key_name, exc)
            return ""

    def _userdata(self, client: Any, iid: str) -> bytes:
        resp = client.describe_instance_attribute(InstanceId=iid, Attribute="userData")
        value = (resp.get("UserData") or {}).get("Value") or ""
        if not value:
            return b""
        data = base64.b64decode(value)
        if data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
        return data

    def _power_off(self, inst: SimInstance, *, terminated: bool) -> None:
        """Host map entries, sshd (and its connections), userdata, stand-in services, then
        any process still carrying this instance's SWIFTRUN_NODE_ROOT. A terminated instance
        also loses its network and its disk (the root volume is deleted on termination; the
        logs are kept for the test to read)."""
        with self._lock:
            inst.up = inst.failed = False
            for name in inst.names:
                path = self.hosts_dir / name
                try:
                    if path.read_text().split()[-1:] == [str(inst.private_ip)]:
                        path.unlink()
                except FileNotFoundError:
                    pass
            inst.names = []
            if inst.sshd is not None:
                _stop_sshd(inst.sshd, drop_connections=True)
            groups = []
            if inst.userdata is not None:
                groups.append(inst.userdata.pid)
            for pidfile in sorted((inst.root / "run" / "standin-systemd").glob("*.pid")):
                try:
                    groups.append(int(pidfile.read_text().split()[0]))
                except (OSError, ValueError, IndexError):
                    pass
            marker = f"SWIFTRUN_NODE_ROOT={inst.root}".encode()
            for pgid in groups:
                _kill_group(pgid, marker)
            _kill_pids(_pids_with_env(marker))
            if self.cpu is not None:    # whatever else is still in the node's cgroup
                _kill_pids(self.cpu.pids(inst.id))
            if inst.userdata is not None:
                try:
                    inst.userdata.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    pass
            # a powered-off machine runs no services: pidfiles of a stopped instance are stale
            shutil.rmtree(inst.root / "run" / "standin-systemd", ignore_errors=True)
            if not terminated:
                _instance_store_lost(inst.root)
            if terminated and inst.net is not None:
                self.network.remove_node(inst.id)
                inst.net = None
                if self.cpu is not None:
                    self.cpu.remove_node(inst.id)
                for big in ("opt/swift", "usr/lib/jvm", "var/tmp"):
                    shutil.rmtree(inst.root / big, ignore_errors=True)
            log.info("instance %s powered off%s", inst.id, " and terminated" if terminated else "")


def _parse_error() -> type:
    """botocore's error for a reply it cannot parse (moto's HTML 500 page when it is overloaded):
    not a BotoCoreError, yet as much a hiccup of the test cloud's API as a refused connection."""
    from botocore.parsers import ResponseParserError

    return ResponseParserError


# --- disks -----------------------------------------------------------------------------------
_INSTANCE_STORE_TYPE = re.compile(r"[a-z]+\d+[a-z]*d[a-z]*\.\w+")    # c5d.large, m6id.xlarge, ...


def _instance_store(root: Path, instance_type: str) -> None:
    """The disks an instance boots with, as Nitro shows them in sysfs: the EBS root nvme0n1 and,
    for the types that have instance store (a ``d`` in the family: c5d, m6id...), one NVMe
    instance-store disk nvme1n1."""
    disks = [("nvme0n1", "Amazon Elastic Block Store", ["nvme0n1p1"])]
    if _INSTANCE_STORE_TYPE.fullmatch(instance_type):
        disks.append(("nvme1n1", "Amazon EC2 NVMe Instance Storage", []))
    for name, model, parts in disks:
        nvme_disk(root, name, model, parts)


def nvme_disk(root: Path, name: str, model: str, partitions: Iterable[str] = ()) -> None:
    """An NVMe disk as sysfs and /dev show it under a node root (the boot scripts read both)."""
    block = root / "sys/block" / name
    (block / "device").mkdir(parents=True, exist_ok=True)
    (block / "device/model").write_text(model + "\n")
    (block / "holders").mkdir(exist_ok=True)
    for part in partitions:
        (block / part).mkdir(exist_ok=True)
        (block / part / "partition").write_text("1\n")
    (root / "dev").mkdir(exist_ok=True)
    (root / "dev" / name).touch()


def _instance_store_lost(root: Path) -> None:
    """A stop: instance store comes back blank at the next start, not mounted and empty (the
    mount point itself is on the root volume and stays)."""
    mounts = root / "proc/mounts"
    scratch = root / "scratch"
    if mounts.is_file():
        keep = [line for line in mounts.read_text().splitlines(keepends=True)
                if line.split()[1:2] != [str(scratch)]]
        mounts.write_text("".join(keep))
    if scratch.is_dir():
        for entry in scratch.iterdir():
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)


# --- the node's clock ---------------------------------------------------------------------------
CLOCK_OFFSET = "var/lib/standin-clock/offset"     # read by the date and touch stand-ins


def _read_clock_offset(root: Path) -> int:
    try:
        return int((root / CLOCK_OFFSET).read_text().strip() or 0)
    except (FileNotFoundError, ValueError):
        return 0


def _move_clock(root: Path, seconds: int) -> None:
    path = root / CLOCK_OFFSET
    path.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write(path, f"{_read_clock_offset(root) + seconds}\n")


# --- process helpers (everything by PID) --------------------------------------------------------
def instance_groups(desc: dict) -> list[dict]:
    """An instance's security groups as EC2 lists them: those of its network interfaces too
    (moto leaves ``SecurityGroups`` empty for a launch that named them on
    ``NetworkInterfaces``, where EC2 lists the primary interface's groups there)."""
    seen: dict[str, dict] = {g["GroupId"]: g for g in desc.get("SecurityGroups", [])}
    for nic in desc.get("NetworkInterfaces", []):
        for g in nic.get("Groups", []):
            seen.setdefault(g["GroupId"], g)
    return list(seen.values())


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
            ppid = int(stat[stat.rindex(b")") + 2:].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        kids.setdefault(ppid, []).append(int(entry))
    return kids


def _descendants(pid: int) -> list[int]:
    kids, out, todo = _children_map(), [], [pid]
    while todo:
        for child in kids.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        return stat[stat.rindex(b")") + 2:stat.rindex(b")") + 3] != b"Z"
    except (OSError, ValueError):
        return False


def _kill_pids(pids: Iterable[int], grace: float = 2.0) -> None:
    pids = [p for p in set(pids) if p != os.getpid()]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except (ProcessLookupError, PermissionError):
                pass
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(_alive(p) for p in pids):
            time.sleep(0.02)
        pids = [p for p in pids if _alive(p)]
        if not pids:
            return


def _environ_has(pid: int, marker: bytes) -> bool | None:
    """True/False whether /proc/<pid>/environ holds ``marker`` exactly; None if unreadable."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return marker in f.read().split(b"\0")
    except (OSError, ValueError):
        return None


def _pids_with_env(marker: bytes) -> list[int]:
    me = os.getpid()
    return [int(e) for e in os.listdir("/proc")
            if e.isdigit() and int(e) != me and _environ_has(int(e), marker)]


def _kill_group(pgid: int, marker: bytes) -> None:
    """SIGTERM then SIGKILL a process group. If its leader still lives it must be one of this
    instance's processes (environment marker), so a recycled PID is never hit."""
    if pgid <= 1 or pgid == os.getpgid(0):
        return
    if _alive(pgid) and _environ_has(pgid, marker) is False:
        log.warning("not killing process group %s: its leader is not this instance's", pgid)
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pgid, sig)
        except (ProcessLookupError, PermissionError):
            return
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            try:
                os.killpg(pgid, 0)
            except (ProcessLookupError, PermissionError):
                return
            if not _group_has_live(pgid):
                return
            time.sleep(0.02)


def _group_has_live(pgid: int) -> bool:
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
            fields = stat[stat.rindex(b")") + 2:].split()
            if int(fields[2]) == pgid and fields[0] != b"Z":
                return True
        except (OSError, ValueError, IndexError):
            continue
    return False


def _stop_sshd(sshd: LoopbackSshd, drop_connections: bool = True) -> None:
    kids = _descendants(sshd.proc.pid) if (drop_connections and sshd.proc is not None) else []
    sshd.stop()
    if kids:
        _kill_pids(kids)


# =================================================================================================
class TestCloud:
    """One test's cloud: a reset moto + its own network + an InstanceSimulator under ``base``.

    ``stock_ami`` is Canonical's Ubuntu 24.04 (nothing installed: projects give ``install_url``
    + ``install_sha256``, served by the web host inside the network); ``baked_ami`` is a custom
    image with Java 21 and Swift already in /opt/swift. ``caller_cidr`` is the address the nodes
    see swiftrun's connections come from (what ``[ec2] ssh_cidr`` must allow)."""

    __test__ = False  # not a pytest test class

    def __init__(self, moto: MotoServer, env: dict[str, str], base: Path, images: Images,
                 standins_dirs: Iterable[Path] = (STANDIN_NODE_DIR,),
                 regions: Iterable[str] = SIM_REGIONS):
        self.moto = moto
        self.env = dict(env)
        self.endpoint = moto.endpoint
        self.base = Path(base)
        self.hosts_dir = self.base / "hosts"
        self.region = self.env.get("AWS_DEFAULT_REGION", DEFAULT_REGION)
        self.images = images
        self.stock_ami = UBUNTU_AMI_ID
        self.baked_ami = BAKED_AMI_ID
        self.ami_id = UBUNTU_AMI_ID
        self.caller_cidr = CALLER_CIDR
        self.install_url = f"http://{WEB}/{SWIFT_TARBALL_NAME}"
        self.install_sha256 = images.sha256 or ""
        self.network = Network()
        self.sim = InstanceSimulator(self.endpoint, regions, self.base, images, self.network,
                                     standins_dirs,
                                     image_of={UBUNTU_AMI_ID: "stock", UBUNTU_OLD_AMI_ID: "stock",
                                               UBUNTU_ARM_AMI_ID: "stock", BAKED_AMI_ID: "baked"})
        self.proxy_command = f"{sys.executable} {PROXY} {self.hosts_dir} %h %p"
        self.ec2 = boto_client("ec2", self.endpoint, self.region)
        # the same, but never faulted: for a test's own checks while faults are set
        self.ec2_admin = boto_client("ec2", self.endpoint, self.region, bypass_faults=True)

    def start(self) -> "TestCloud":
        self.images.prepare()
        self.network.start()
        try:
            self.base.mkdir(parents=True, exist_ok=True)
            # the internet as the nodes see it: the Swift/K distribution, the package mirror
            self.network.serve(self.images.dist, self.base / "web.log")
            self.sim.start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        try:
            self.sim.stop()
        finally:
            self.network.close()

    def client(self, service: str, region: str | None = None):
        return boto_client(service, self.endpoint, region or self.region)

    # fault injection (the session moto server runs behind the wrapper)
    def set_faults(self, rules: dict[str, Any]) -> dict[str, Any]:
        return self.moto.set_faults(rules)

    def clear_faults(self) -> None:
        self.moto.clear_faults()

    def fault_state(self) -> dict[str, Any]:
        return self.moto.fault_state()
