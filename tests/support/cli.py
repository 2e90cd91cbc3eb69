"""Drive the installed `swiftrun` command as a user would, against the test cloud."""

from __future__ import annotations

import getpass
import os
import shutil
import subprocess
import sys
from pathlib import Path

SWIFTRUN = shutil.which("swiftrun") or f"{sys.executable} -m swiftrun"


def toml_project(directory: Path, cloud, *, name: str = "t1", workers: int = 2,
                 extra: str = "", image: str | None = "", install: bool | None = None,
                 **cluster) -> Path:
    """A swiftrun.toml that reaches the test cloud's instances through its proxy command.

    ``image``: by default the test cloud's stock Ubuntu 24.04 AMI, with ``[swift] install_url``
    and ``install_sha256`` naming the real Swift/K distribution its web host serves, so every
    node installs Swift through the userdata, as a real node does. ``cloud.baked_ami`` is a
    custom image with Swift in /opt/swift (no install URL); ``"auto"`` is the stock-Ubuntu lookup;
    None leaves ``image`` out. ``install`` forces the install URL on (True) or off (False).
    ``ssh_cidr`` is the address the nodes see swiftrun come from."""
    image = cloud.stock_ami if image == "" else image
    if install is None:
        install = image != cloud.baked_ami
    directory.mkdir(parents=True, exist_ok=True)
    lines = [
        "[cluster]", f'name = "{name}"', f"workers = {workers}",
        *[f"{k} = {v!r}".replace("'", '"') if isinstance(v, str) else f"{k} = {str(v).lower()}"
          for k, v in cluster.items()],
        "", "[ec2]", f'region = "{cloud.region}"', f'ssh_cidr = "{cloud.caller_cidr}"',
        *([f'image = "{image}"'] if image else []),
        "", "[ssh]", f'user = "{getpass.getuser()}"',
        f"proxy_command = {_toml_str(cloud.proxy_command)}",
        "",
    ]
    swift = [f"install_url = {_toml_str(cloud.install_url)}",
             f"install_sha256 = {_toml_str(cloud.install_sha256)}"] if install else []
    extra_lines = extra.splitlines()
    if swift and "[swift]" in extra_lines:
        at = extra_lines.index("[swift]") + 1
        extra_lines[at:at] = swift
    elif swift:
        lines += ["[swift]", *swift, ""]
    path = directory / "swiftrun.toml"
    path.write_text("\n".join(lines + extra_lines) + "\n")
    return path


def _toml_str(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def swiftrun(*args, cwd: Path | None = None, check: bool = True, timeout: float = 180,
             env: dict | None = None, input: str | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "SWIFTRUN_BOOT_TIMEOUT": "90", "SWIFTRUN_SSH_TIMEOUT": "60",
                **(env or {})}
    cmd = SWIFTRUN.split() + [str(a) for a in args]
    res = subprocess.run(cmd, cwd=cwd, env=full_env, capture_output=True, text=True,
                         timeout=timeout, input=input, stdin=None if input is not None else subprocess.DEVNULL)
    if check and res.returncode != 0:
        raise AssertionError(f"swiftrun {' '.join(map(str, args))} exited {res.returncode}\n"
                             f"stdout:\n{res.stdout}\nstderr:\n{res.stderr}")
    return res


def cluster_instances(cloud, name: str, states=("pending", "running")) -> list[dict]:
    reply = cloud.ec2.describe_instances(Filters=[
        {"Name": "tag:swiftrun:cluster", "Values": [name]},
        {"Name": "instance-state-name", "Values": list(states)}])
    return [i for r in reply["Reservations"] for i in r["Instances"]]


def cluster_groups(cloud, name: str) -> list[dict]:
    reply = cloud.ec2.describe_security_groups(Filters=[
        {"Name": "tag:swiftrun:cluster", "Values": [name]}])
    return reply["SecurityGroups"]
