"""Render the boot script (EC2 userdata) of a headnode or a worker from the files in ``userdata/``.

The script is: a header of shell settings (each value quoted with shlex.quote), the deadman script
as a function (the userdata installs it), ``common.sh``, then ``headnode.sh`` or ``worker.sh``.
A worker's init script travels as text in a quoted heredoc (``swiftrun_worker_init``), so the
whole payload's gzip compresses it with the rest; one that is not plain text (or holds the
delimiter line) travels as WORKER_INIT_B64: gzip-compressed, then base64 (one line). One that
would take the worker's userdata past half of EC2's limit does not travel in it at all: `up`
puts it on the headnode (:func:`served_files`), the worker fetches it from the headnode's agent
and checks it against WORKER_INIT_SHA256, so an init script of any size works.
Indentation, full-line comments and blank lines are dropped to stay well under EC2's 16 KB userdata limit.
What the script builds on the node is the contract in docs/internals.md ("The node").

Nothing secret ever goes in: the s3fs mount uses the instance profile (``iam_role=auto``), the
credentials file is never read here, and a worker init script holding an AWS access key is refused.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import re
import shlex
from pathlib import Path

from swiftrun.errors import ConfigError
from swiftrun.node.network import worker_public_ip
from swiftrun.node.layout import AGENT_PORT, COASTER_PORT, HEADNODE, WORKER, WORKER_PORT
from swiftrun.node.swift import boot_settings
from swiftrun.paths import data_dir
from swiftrun.project import Project

ROLES = (HEADNODE, WORKER)
HEADNODE_GRACE = 900          # a worker shuts down after the headnode is unreachable this long
USERDATA_LIMIT = 16384        # EC2: raw userdata at most 16 KB
HEADNODE_IP_PLACEHOLDER = "HEADNODE_PRIVATE_IP"   # dry run, before the headnode exists

_AWS_KEY_ID = re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")
_HOST = re.compile(r"^[A-Za-z0-9_.:-]+$")
_NO_SPACE = re.compile(r"^\S+$")
_DEADMAN_EOF = "SWIFTRUN_DEADMAN_EOF"
_AGENT_EOF = "SWIFTRUN_AGENT_EOF"
_INIT_EOF = "SWIFTRUN_WORKER_INIT_EOF"


def _read(name: str) -> str:
    return (data_dir("userdata") / name).read_text(encoding="utf-8")


def _compact(text: str) -> str:
    """Drop indentation, blank lines and full-line comments (keeping ``#!`` and shellcheck
    directives). Safe for these files: no ``<<-`` heredocs, no multi-line strings."""
    out = []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        if stripped.startswith("#") and not stripped.startswith(("#!", "# shellcheck")):
            continue
        out.append(stripped)
    return "\n".join(out) + "\n"


def _for_role(text: str, role: str) -> str:
    """``text`` without the sections marked for the other role: from a line
    ``# only-for: <role>`` to ``# only-for: end`` (the file itself still runs as a whole)."""
    out, keep = [], True
    for line in text.splitlines(keepends=True):
        mark = re.match(r"\s*# only-for: (\w+)", line)
        if mark:
            keep = mark.group(1) in ("end", role)
            continue
        if keep:
            out.append(line)
    return "".join(out)


def _body(name: str) -> str:
    """A userdata/ file without its shebang and ``set`` line (the header sets them once)."""
    lines = [ln for ln in _compact(_read(name)).splitlines()
             if not ln.startswith("#!") and ln.strip() != "set -Eeuo pipefail"]
    return "\n".join(lines) + "\n"


def _worker_init(project: Project) -> tuple[str, str]:
    """(text, b64): the init script as heredoc text when it is plain text, else as base64."""
    data = _init_bytes(project)
    if not data:
        return "", ""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = ""
    if (text and text.endswith("\n") and "\0" not in text and "\r" not in text
            and _INIT_EOF not in text.splitlines()):
        return text, ""
    return "", base64.b64encode(gzip.compress(data, mtime=0)).decode("ascii")


def _init_bytes(project: Project) -> bytes:
    """The worker init script's bytes (b"" without one); one holding an AWS key is refused
    (it would reach the nodes, in their userdata or on the headnode)."""
    path = project.ec2.worker_init_script
    if not path:
        return b""
    path = Path(path)
    if not path.is_absolute():
        path = project.root / path
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"[ec2] worker_init_script: cannot read {path}: {exc.strerror}") from exc
    if _AWS_KEY_ID.search(data.decode("utf-8", "replace")):
        raise ConfigError(
            f"[ec2] worker_init_script {path} contains an AWS access key; userdata is readable on "
            "the node, so keys must not go there",
            hint="give the workers an instance profile instead")
    return data


def served_name(data: bytes) -> str:
    """The file name of a served worker init script (in the headnode's ``$STATE/serve``)."""
    return f"worker-init-{hashlib.sha256(data).hexdigest()}.sh"


def served_files(project: Project) -> dict[str, bytes]:
    """What `up` must put in the headnode's serve directory before the workers need it: the
    worker init script, when it is too big to travel in the workers' userdata."""
    data = _init_bytes(project)
    if not data or not _serve_init(project, data):
        return {}
    return {served_name(data): data}


def _serve_init(project: Project, data: bytes) -> bool:
    """True when the init script inline would take the worker's userdata past half the limit."""
    try:
        inline = render_userdata(project, WORKER, cluster="c", headnode_ip="10.0.0.1", _serve=False)
    except ConfigError as exc:
        if "limit" not in str(exc):
            raise
        return True
    return len(payload(inline)) > USERDATA_LIMIT // 2


def _settings(project: Project, role: str, cluster: str, headnode_ip: str | None,
              init: tuple[str, str] = ("", ""), served: str = "") -> dict[str, str]:
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, not {role!r}")
    if role == WORKER and not headnode_ip:
        raise ValueError("a worker's userdata needs the headnode's private IP")
    if headnode_ip and not _HOST.match(headnode_ip):
        raise ValueError(f"not an IP address: {headnode_ip!r}")
    for key, value in (("[swift] home", project.swift.home), ("[s3fs] mount", project.s3fs.mount)):
        if not value.startswith("/") or not _NO_SPACE.match(value):
            raise ConfigError(f"{key} must be an absolute path without spaces, not {value!r}")
    if project.cluster.worker_concurrency < 1:
        raise ConfigError("[cluster] worker_concurrency must be at least 1")
    settings = {
        "ROLE": role,
        "CLUSTER": cluster,
        "SSH_USER": project.ssh.user,
        "HEADNODE_IP": (headnode_ip or "") if role == WORKER else "",
        "WORKER_CONCURRENCY": str(project.cluster.worker_concurrency),
        **boot_settings(project),       # where Swift lives and where it comes from
        "S3FS_BUCKET": project.s3fs.bucket,
        "S3FS_MOUNT": project.s3fs.mount.rstrip("/") or "/",
        "IDLE_TIMEOUT": str(int(project.cluster.idle_timeout)),
        "MAX_LIFETIME": str(int(project.cluster.max_lifetime)),
        "HEADNODE_GRACE": str(HEADNODE_GRACE),
        "COASTER_PORT": str(COASTER_PORT),
        "WORKER_PORT": str(WORKER_PORT),
        "AGENT_PORT": str(AGENT_PORT),
        # a worker without one cannot reach the internet: it waits for the headnode's copy
        "WORKER_PUBLIC_IP": "1" if role == WORKER and worker_public_ip(project) else "",
        # no workers: the headnode runs worker.pl itself, so the apps still have somewhere to run
        "HEAD_WORKER": "1" if role == "headnode" and project.cluster.workers == 0 else "",
    }
    if role == WORKER:
        settings["WORKER_INIT_TEXT"] = "1" if init[0] else ""
        settings["WORKER_INIT_B64"] = init[1]
        settings["WORKER_INIT_SHA256"] = served
    for key, value in settings.items():
        if "\n" in value or "\r" in value or "\0" in value:
            raise ConfigError(f"the value for {key} holds a line break: {value!r}")
    return settings


def render_userdata(project: Project, role: str, *, cluster: str, headnode_ip: str | None,
                    _serve: bool | None = None) -> str:
    """The complete bash boot script for ``role`` ("headnode" or "worker").

    ``headnode_ip`` is the headnode's private IP; a worker needs it. Raises ConfigError when the
    script would exceed EC2's 16 KB userdata limit (a large worker init script).
    """
    init = _worker_init(project) if role == WORKER else ("", "")
    served = ""
    if role == WORKER and any(init) and (_serve if _serve is not None else
                                         _serve_init(project, _init_bytes(project))):
        served = hashlib.sha256(_init_bytes(project)).hexdigest()
        init = ("", "")
    settings = _settings(project, role, cluster, headnode_ip, init, served)
    deadman = _compact(_for_role(_read("deadman.sh"), role))
    if _DEADMAN_EOF in deadman:
        raise AssertionError("deadman.sh contains the heredoc delimiter")
    parts = [
        "#!/bin/bash\n",
        f"# swiftrun {role} boot for cluster {shlex.quote(cluster)}: generated by swiftrun; no secrets.\n",
        # some settings are only read by name (${!key} when node.env is written)
        "# shellcheck disable=SC2034\n",
        "set -Eeuo pipefail\n",
        "".join(f"{key}={shlex.quote(value)}\n" for key, value in settings.items()),
        f"swiftrun_deadman_script() {{\ncat <<'{_DEADMAN_EOF}'\n{deadman}{_DEADMAN_EOF}\n}}\n",
        _agent() if role == "headnode" else "",
        _body("common.sh"),
        _body(f"{role}.sh"),
    ]
    if init[0]:
        parts.insert(-2, f"swiftrun_worker_init() {{\ncat <<'{_INIT_EOF}'\n{init[0]}{_INIT_EOF}\n}}\n")
    script = "".join(parts)
    size = len(payload(script))
    if size > USERDATA_LIMIT:
        init_size = len(init[1])
        if init[0]:
            init_size = size - len(payload("".join(p for p in parts
                                              if not p.startswith("swiftrun_worker_init()"))))
        why = (f"; the worker init script takes {init_size} bytes of it (compressed)"
               if init_size else "")
        raise ConfigError(
            f"the {role} userdata is {size} bytes gzip-compressed, over EC2's {USERDATA_LIMIT}-byte "
            f"limit{why}",
            hint="keep [ec2] worker_init_script small: bake large setup into the image, or fetch it "
                 "from the s3fs bucket in the init script")
    return script


def _agent() -> str:
    """The headnode's agent (userdata/agent.py) as a shell function that prints it, without its
    module docstring and comment lines (userdata is counted against EC2's limit; the file in the
    package keeps them)."""
    text = _read("agent.py")
    text = re.sub(r'\A(#![^\n]*\n)"""(?:.|\n)*?"""\n', r"\1", text)
    text = "".join(line for line in text.splitlines(keepends=True)
                   if not line.lstrip().startswith("#") or line.startswith("#!"))
    if _AGENT_EOF in text:
        raise AssertionError("agent.py contains the heredoc delimiter")
    return f"swiftrun_agent_script() {{\ncat <<'{_AGENT_EOF}'\n{text}{_AGENT_EOF}\n}}\n"


def payload(script: str) -> bytes:
    """What EC2 gets: the script gzip-compressed (cloud-init unpacks gzip user data itself; the
    16 KB limit is on these bytes, before base64). mtime=0: the same script, the same bytes."""
    return gzip.compress(script.encode("utf-8"), compresslevel=9, mtime=0)


def render_all(project: Project, cluster: str, headnode_ip: str | None = None) -> dict[str, str]:
    """Both scripts, for dry-run printing; without ``headnode_ip`` the worker's shows a placeholder."""
    return {
        HEADNODE: render_userdata(project, HEADNODE, cluster=cluster, headnode_ip=None),
        WORKER: render_userdata(project, WORKER, cluster=cluster,
                                  headnode_ip=headnode_ip or HEADNODE_IP_PLACEHOLDER),
    }
