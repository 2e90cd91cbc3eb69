"""One validator per setting, and the checks between settings.

Every (section, key) has a validator in ``_SCHEMA`` that checks and converts its value, knowing
where the value came from (``_Origin``: a swiftrun.toml line, a legacy ``configs`` line, a flag or
an environment variable) so its complaint names the fix in that place's own syntax. A complaint
becomes a ConfigError of one line: where, what (the key and its value), what is wrong, and in
parentheses what would fix it. ``_cross_checks`` then looks at the settings together.
"""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from swiftrun.errors import ConfigError
from swiftrun.project.keyfile import content_problem
from swiftrun.project.model import MAX_CONCURRENCY, MAX_DURATION, MAX_WORKERS, SECTIONS, Project
from swiftrun.project.values import (
    _MAX_SHOWN, _NAME_RE, _display, _legacy_text, _nearest, _short, _type_name, parse_duration,
    sanitize_cluster_name, toml_key, toml_value)

# "Everyone on the internet": only ever detected and warned about (ssh_cidr here, security group
# rules in checks/cloud.py), never written into a rule by swiftrun.
WORLD_CIDRS = ("0.0.0.0/0", "::/0")


@dataclass(frozen=True)
class _Origin:
    kind: str                 # "toml" | "legacy" | "override"
    file: str = ""            # display name of the file, or the override's label
    line: int | None = None
    legacy_key: str = ""
    raw: str = ""             # legacy: the text after '=' as written

    def where(self) -> str:
        if self.kind == "override":
            return self.file
        return f"{self.file}:{self.line}" if self.line else self.file


class _Bad(Exception):
    """A validator's complaint: ``problem`` and ``fix`` (both fragments of the final line)."""

    def __init__(self, problem: str, fix: str):
        super().__init__(problem)
        self.problem = problem
        self.fix = fix


class _Ctx:
    """What a validator knows about the value it checks."""

    def __init__(self, section: str, key: str, origin: _Origin, base_dir: Path):
        self.section, self.key, self.origin, self.base_dir = section, key, origin, base_dir
        self.coerce = origin.kind in ("legacy", "override")   # strings stand for any type there

    def set(self, example: Any) -> str:
        """'set workers = 2' in the syntax of where the value came from."""
        if self.origin.kind == "legacy" and self.origin.legacy_key:
            return f"set {self.origin.legacy_key}={_legacy_text(example)}"
        if self.origin.kind == "override":
            return f"use {self.section}.{self.key}={_legacy_text(example)}"
        return f"set {self.key} = {toml_value(example)}"


_Entries = dict[tuple[str, str], tuple[Any, _Origin]]


def _as_str(value: Any, ctx: _Ctx, example: Any) -> str:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, str):
        return value
    if ctx.coerce and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        example = str(value)
    raise _Bad(f"must be a string, not {_type_name(value)}", ctx.set(example))


def _as_int(value: Any, ctx: _Ctx, example: int) -> int:
    if isinstance(value, bool):
        raise _Bad("must be a whole number, not a boolean", ctx.set(example))
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if value.is_integer():
            raise _Bad("must be a whole number", ctx.set(int(value)))
        raise _Bad("must be a whole number", ctx.set(example))
    if isinstance(value, str):
        text = value.strip()
        if re.fullmatch(r"[+-]?\d+", text):
            if ctx.coerce:
                return int(text)
            raise _Bad("is a string; numbers are written without quotes", ctx.set(int(text)))
        raise _Bad("must be a whole number", ctx.set(example))
    raise _Bad(f"must be a whole number, not {_type_name(value)}", ctx.set(example))


_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def _v_str(example: str = "", pattern: str | None = None, problem: str = "", allow_empty: bool = True):
    rx = re.compile(pattern) if pattern else None

    def check(value, ctx):
        s = _as_str(value, ctx, example)
        if s == "" and allow_empty:
            return s
        if s == "" or (rx and not rx.fullmatch(s)):
            raise _Bad(problem or "is not valid here", ctx.set(example))
        return s
    return check


def _v_int(lo: int | None, hi: int | None, example: int, extra: str = "", why_hi: str = ""):
    if hi is None:
        rule = f"must be a whole number >= {lo}"
    else:
        rule = f"must be a whole number from {lo} to {hi}"

    def check(value, ctx):
        n = _as_int(value, ctx, example)
        if (lo is not None and n < lo) or (hi is not None and n > hi):
            crossed = (f" (it is below {lo})" if lo is not None and n < lo else
                       f" (it is above {hi}{': ' + why_hi if why_hi else ''})")
            raise _Bad(rule + crossed, ctx.set(example) + (f", {extra}" if extra else ""))
        return n
    return check


def _v_bool(example: bool):
    def check(value, ctx):
        if isinstance(value, bool):
            return value
        if isinstance(value, str):
            low = value.strip().lower()
            if low in _TRUE | _FALSE:
                if ctx.coerce:
                    return low in _TRUE
                raise _Bad("is a string; booleans are written true or false without quotes",
                           ctx.set(low in _TRUE))
        if ctx.coerce and isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise _Bad(f"must be true or false, not {_type_name(value)}", ctx.set(example))
    return check


def _v_auto_bool(value, ctx):
    """true, false or "auto"."""
    if isinstance(value, str) and value.strip().lower() == "auto":
        return "auto"
    if isinstance(value, str) and ctx.coerce and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    if isinstance(value, bool):
        return value
    raise _Bad('must be true, false or "auto"', ctx.set("auto"))


def _v_enum(choices: tuple[str, ...], what: str = ""):
    def check(value, ctx):
        s = _as_str(value, ctx, choices[0])
        if s in choices:
            return s
        if s.strip().lower() in choices:
                raise _Bad(f"must be {' or '.join(choices)}, in lower case", ctx.set(s.strip().lower()))
        guess = _nearest(s.lower(), choices, 0.4) or choices[0]
        raise _Bad(f"must be {' or '.join(choices)}" + (f"; {what}" if what else ""), ctx.set(guess))
    return check


def _v_duration(example: str):
    def check(value, ctx):
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise _Bad(f"must be a duration like \"30m\", \"8h\", \"1h30m\" or a number of seconds, "
                       f"not {_type_name(value)}", ctx.set(example) + ", or 0 for off")
        try:
            seconds = parse_duration(value)
        except ValueError:
            raise _Bad("must be a duration like \"30m\", \"8h\", \"1h30m\", \"90s\" or whole seconds",
                       ctx.set(example) + ", or 0 for off") from None
        if seconds > MAX_DURATION:
            raise _Bad("must be at most 366 days (a cluster that old is forgotten, not kept)",
                       ctx.set(example) + ", or 0 for off")
        return seconds
    return check


def _v_str_list(example: tuple[str, ...], item_pattern: str | None = None, item_problem: str = ""):
    rx = re.compile(item_pattern) if item_pattern else None

    def check(value, ctx):
        if isinstance(value, str) and ctx.coerce:
            value = [v.strip() for v in value.split(",") if v.strip()]
        if isinstance(value, str):
            raise _Bad("must be a list of strings, not a string", ctx.set([value]))
        if not isinstance(value, (list, tuple)):
            raise _Bad(f"must be a list of strings, not {_type_name(value)}", ctx.set(list(example)))
        items = []
        for item in value:
            if not isinstance(item, str):
                raise _Bad(f"must be a list of strings; {toml_value(item)} is {_type_name(item)}",
                           ctx.set([str(i) for i in value]))
            if rx and not rx.fullmatch(item):
                raise _Bad(f"{toml_value(item)} {item_problem}", ctx.set(list(example)))
            items.append(item)
        return tuple(items)
    return check


def _v_name(value, ctx):
    s = _as_str(value, ctx, "swiftrun")
    if _NAME_RE.match(s):
        return s
    raise _Bad("must be 1-40 lower-case letters, digits or '-', not starting with '-', "
               "since it names cloud resources and tags", ctx.set(sanitize_cluster_name(s)))


@functools.lru_cache(maxsize=1)
def known_regions() -> frozenset[str]:
    """EC2 regions botocore knows about (all partitions); empty when botocore is unavailable.

    Read from botocore's small partitions.json (7 kB) without importing botocore: the usual
    route, ``get_available_regions``, parses the 1.2 MB endpoints.json, half a second on every
    command. The slow route stays as the fallback for a botocore without that file.
    """
    import importlib.util
    import json

    try:
        spec = importlib.util.find_spec("botocore")
        for base in (spec.submodule_search_locations or []) if spec else []:
            path = Path(base) / "data" / "partitions.json"
            if path.is_file():
                regions = {name for part in json.loads(path.read_text())["partitions"]
                           for name in part.get("regions", {}) if not name.endswith("-global")}
                if regions:
                    return frozenset(regions)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass
    try:
        import botocore.session  # noqa: PLC0415 - optional and slow, only when needed
        session = botocore.session.get_session()
        regions: set[str] = set()
        for partition in session.get_available_partitions():
            regions.update(session.get_available_regions("ec2", partition_name=partition))
        return frozenset(regions)
    except Exception:  # pragma: no cover - botocore missing or broken: format check only
        return frozenset()


_REGION_RE = re.compile(r"^[a-z]{2}(-gov)?-[a-z]+-\d$")


def _v_region(value, ctx):
    s = _as_str(value, ctx, "us-west-2")
    known = known_regions()
    if s in known:
        return s
    low = s.strip().lower().replace("_", "-")
    if not _REGION_RE.match(s):
        if re.fullmatch(r"[a-z]{2}(-gov)?-[a-z]+-\d[a-z]", low):
            raise _Bad("is an availability zone, not a region", ctx.set(low[:-1]))
        if _REGION_RE.match(low):
            raise _Bad("must be written in lower case", ctx.set(low))
        guess = _nearest(low, known) or "us-west-2"
        raise _Bad("is not an AWS region name (like us-west-2)", ctx.set(guess))
    if known:
        guess = _nearest(s, known) or "us-west-2"
        raise _Bad("is not a known EC2 region", ctx.set(guess) +
                   "; or upgrade boto3 if the region is newer than it")
    return s


_INSTANCE_TYPE_RE = re.compile(r"^[a-z][a-z0-9-]*\.[a-z0-9-]+$")


def _v_instance_type(example: str):
    def check(value, ctx):
        s = _as_str(value, ctx, example)
        if _INSTANCE_TYPE_RE.match(s):
            return s
        low = s.strip().lower()
        if _INSTANCE_TYPE_RE.match(low):
            raise _Bad("instance types are lower case", ctx.set(low))
        raise _Bad("must be an EC2 instance type: family.size, like t3.small or c5.large",
                   ctx.set(example))
    return check


_AMI_RE = re.compile(r"^ami-[0-9a-f]{8,17}$")


def _v_image(allow_empty: bool):
    def check(value, ctx):
        s = _as_str(value, ctx, "auto")
        if s == "auto" or _AMI_RE.match(s) or (allow_empty and s == ""):
            return s
        low = s.strip().lower()
        if low == "auto" or _AMI_RE.match(low):
            raise _Bad("must be written in lower case", ctx.set(low))
        rule = "must be \"auto\" (the latest Ubuntu LTS) or an AMI id like ami-0123456789abcdef0"
        if allow_empty:
            return_fix = ctx.set("") + " to use the headnode's image"
            raise _Bad(rule + " or empty", return_fix)
        raise _Bad(rule, ctx.set("auto"))
    return check


def _v_cidr(value, ctx):
    s = _as_str(value, ctx, "auto").strip()
    if s == "auto":
        return s
    try:
        if "/" not in s:
            return str(ipaddress.ip_network(s))   # a bare address: that one host
        return str(ipaddress.ip_network(s, strict=True))
    except ValueError:
        try:
            net = ipaddress.ip_network(s, strict=False)
        except ValueError:
            raise _Bad("must be \"auto\" (this machine's address) or a CIDR like 203.0.113.0/24",
                       ctx.set("auto")) from None
        raise _Bad("has host bits set after the prefix", ctx.set(str(net))) from None


def _v_path(must_exist: bool, fix: str):
    def check(value, ctx):
        if value is None:
            return None
        s = str(value) if isinstance(value, Path) else _as_str(value, ctx, "path/to/file")
        if s.strip() == "":
            return None
        p = Path(os.path.expanduser(s.strip()))
        if not p.is_absolute():
            p = ctx.base_dir / p
        p = p.resolve()
        if p.is_dir():
            raise _Bad(f"{p} is a directory, not a file", fix)
        if must_exist and not p.is_file():
            raise _Bad(f"{p} does not exist", fix)
        return p
    return check


def _v_dir_list(value, ctx):
    """[swift] path: local directories (relative to the project file), each an existing one."""
    if isinstance(value, str) and ctx.coerce:
        value = [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise _Bad(f"must be a list of directories, not {_type_name(value)}", ctx.set(["../app"]))
    out = []
    for item in value:
        if not isinstance(item, str) or not item.strip():
            raise _Bad(f"must be a list of directory names; {toml_value(item)} is not one",
                       ctx.set(["../app"]))
        d = Path(os.path.expanduser(item.strip()))
        d = (d if d.is_absolute() else ctx.base_dir / d).resolve()
        if not d.is_dir():
            raise _Bad(f"{d} is not a directory", "give directories that exist here, relative to "
                       "the project file; their files go onto every node's PATH")
        out.append(str(d))
    if len(out) > 8:
        raise _Bad("at most 8 directories", "merge the tools into fewer directories")
    return tuple(out)


def _v_abs_remote(example: str):
    def check(value, ctx):
        s = _as_str(value, ctx, example)
        if s.startswith("/") and not re.search(r"\s", s):
            return s
        raise _Bad("must be an absolute path on the nodes (starting with /, no spaces)", ctx.set(example))
    return check


def _v_install_url(value, ctx):
    s = _as_str(value, ctx, "")
    if s.startswith("s3://"):
        # curl on the nodes cannot fetch it: every node would fail its install after being paid for
        raise _Bad("is an s3:// URL, which the nodes' curl cannot fetch",
                   "use the object's https:// URL (https://BUCKET.s3.REGION.amazonaws.com/KEY, public "
                   "or presigned), or [ec2] image = an AMI with Swift in /opt/swift")
    if s == "" or re.match(r"^(https?|file)://\S+$", s):
        return s
    raise _Bad("must be an http(s):// or file:// URL of a Swift tarball",
               ctx.set("https://example.org/swift-0.96.2.tar.gz") + ", or \"\" to use the image's Swift")


def _v_sha256(value, ctx):
    s = _as_str(value, ctx, "")
    if s == "" or re.fullmatch(r"[0-9a-fA-F]{64}", s.strip()):
        return s.strip().lower()
    raise _Bad("must be the 64 hex digits of the tarball's SHA-256",
               "run sha256sum on the tarball and " + ctx.set("<its 64 hex digits>"))


def _v_table(value, ctx):
    if isinstance(value, Mapping):
        return dict(value)
    raise _Bad(f"must be a table, not {_type_name(value)}",
               "write it as conf = { \"executionRetries\" = 2 } or as a [swift.conf] section")


def _v_args(value, ctx):
    if not isinstance(value, Mapping):
        raise _Bad(f"must be a table, not {_type_name(value)}", "write it as args = { steps = 100 }")
    for k, v in value.items():
        if isinstance(v, bool) or isinstance(v, (str, int, float)):
            continue
        raise _Bad(f"{toml_key(k)} is {_type_name(v)}; each argument must be a string, number or boolean",
                   f"write {toml_key(k)} = \"value\"; it is passed to swift as -{k}=value")
    return dict(value)


_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


def _v_bucket(value, ctx):
    s = _as_str(value, ctx, "")
    if s == "" or _BUCKET_RE.match(s):
        return s
    m = re.match(r"^s3://([^/]+)/?$", s.strip())
    if m:
        raise _Bad("is a URL; give the bucket's name only", ctx.set(m.group(1)))
    raise _Bad("must be an S3 bucket name (3-63 lower-case letters, digits, '.' or '-')",
               ctx.set("my-bucket") + ", or \"\" for no bucket")


_QUOTA = "beyond any account's EC2 quota; split the work over clusters if you truly need more"
_SCHEMA: dict[str, dict[str, Callable[[Any, _Ctx], Any]]] = {
    "cluster": {
        "name": _v_name,
        "provider": _v_enum(("ec2", "static"), "static: hosts that already exist"),
        "workers": _v_int(0, MAX_WORKERS, 2, "or 0 for a headnode only", _QUOTA),
        "min_workers": _v_int(0, MAX_WORKERS, 1, "or leave it out to wait for all workers", _QUOTA),
        "worker_concurrency": _v_int(1, MAX_CONCURRENCY, 4, why_hi="more slots than any instance has cores"),
        "idle_timeout": _v_duration("30m"),
        "max_lifetime": _v_duration("8h"),
        "keep": _v_bool(False),
    },
    "ec2": {
        "region": _v_region,
        "profile": _v_str("default", r"[A-Za-z0-9_.@+-]+", "must be an AWS profile name (no spaces)"),
        "credentials_file": _v_path(True, "download the access key CSV from the IAM console and give "
                                           "its path, or remove the line to use the standard AWS "
                                           "credential chain"),
        "headnode_type": _v_instance_type("t3.small"),
        "worker_type": _v_instance_type("c5.large"),
        "image": _v_image(allow_empty=False),
        "worker_image": _v_image(allow_empty=True),
        "key_name": _v_str("my-key", r"[\x20-\x7e]{1,255}", "must be 1-255 printable ASCII characters"),
        "security_group": _v_str("my-group", r"(?!sg-)[\x20-\x7e]{1,255}",
                                 "must be a group name (1-255 printable ASCII, not an sg- id)"),
        "ssh_cidr": _v_cidr,
        "spot": _v_bool(False),
        "subnet_id": _v_str("subnet-0123456789abcdef0", r"subnet-[0-9a-f]{8,17}",
                            "must be a subnet id like subnet-0123456789abcdef0, or empty"),
        "availability_zones": _v_str_list(("us-west-2a",), r"[a-z]{2}(-gov)?-[a-z]+-\d[a-z0-9-]*",
                                          "is not an availability zone name like us-west-2a"),
        "worker_init_script": _v_path(True, "create the script or fix the path, which is relative to "
                                            "the project file's directory; or remove the line"),
        "volume_size_gb": _v_int(0, 16384, 0),
        "worker_public_ip": _v_auto_bool,
    },
    "ssh": {
        "user": _v_str("ubuntu", r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}", "must be a login name like ubuntu",
                       allow_empty=False),
        "key_file": _v_path(False, "give the path of a private key file (it is created if missing)"),
        "port": _v_int(1, 65535, 22),
        "proxy_command": _v_str(""),
        "connect_timeout": _v_int(1, 600, 10),
    },
    "static": {
        "headnode": _v_str("headnode.example.org", r"\S+", "must be a host name or address (no spaces)"),
        "workers": _v_str_list(("worker1.example.org",), r"\S+", "must be a host name or address"),
    },
    "swift": {
        "site": _v_str("cloud-static", r"[A-Za-z0-9_-][A-Za-z0-9_.-]*",
                       "must be a site template name like cloud-static", allow_empty=False),
        "staging": _v_enum(("local", "direct"), "direct needs a shared filesystem"),
        "work_directory": _v_abs_remote("/tmp/swiftwork"),
        "home": _v_abs_remote("/opt/swift"),
        "install_url": _v_install_url,
        "install_sha256": _v_sha256,
        "conf": _v_table,
        "args": _v_args,
        "path": _v_dir_list,
    },
    "sync": {
        "exclude": _v_str_list(("*.tmp",)),
        "outputs": _v_str_list(("results/",)),
        "warn_size_mb": _v_int(0, None, 200, "or 0 for no warning"),
    },
    "s3fs": {
        "bucket": _v_bucket,
        "mount": _v_abs_remote("/s3"),
    },
}

# Every dataclass field has a validator and every validator a field.
for _section, _cls in SECTIONS.items():
    assert set(_SCHEMA[_section]) == {f.name for f in dataclasses.fields(_cls)}, _section


def _error(origin: _Origin, section: str, key: str, value: Any, problem: str, fix: str) -> ConfigError:
    if origin.kind == "legacy":
        raw = origin.raw if len(origin.raw) <= _MAX_SHOWN else origin.raw[: _MAX_SHOWN - 3] + "..."
        what = f"{origin.legacy_key}={raw}"
    elif origin.kind == "override":
        what = f"{section}.{key} = {_short(value)}"
    else:
        what = f"[{section}] {key} = {_short(value)}"
    return ConfigError(f"{origin.where()}: {what}: {problem}", hint=fix)


def _is_ecdsa_key(path: Path) -> bool:
    """Whether a private key file holds an ECDSA key (PEM "EC PRIVATE KEY", or an OpenSSH key
    whose key type is ecdsa-sha2-*); a file that cannot be read is left to the key checks."""
    import base64

    try:
        text = path.read_text(errors="replace")
    except OSError:
        return False
    if "-----BEGIN EC PRIVATE KEY-----" in text:
        return True
    m = re.search(r"-----BEGIN OPENSSH PRIVATE KEY-----(.*?)-----END", text, re.S)
    if not m:
        return False
    try:
        blob = base64.b64decode("".join(m.group(1).split()))
    except ValueError:
        return False
    return b"ecdsa-sha2-" in blob[:200]


def _cross_checks(p: Project, entries: _Entries) -> list[str]:
    """Checks between settings; returns warnings, raises ConfigError for conflicts."""
    def fail(section: str, key: str, problem: str, fix: str) -> ConfigError:
        value, origin = entries.get((section, key), (getattr(getattr(p, section), key), None))
        if origin is None:
            origin = _Origin("toml", _display(p.path) if p.path else "defaults")
        return _error(origin, section, key, value, problem, fix)

    def where(section: str, key: str) -> str:
        origin = entries.get((section, key), (None, None))[1]
        return origin.where() + ": " if origin else ""

    warnings: list[str] = []
    c = p.cluster
    if c.min_workers is not None and c.min_workers > c.workers:
        raise fail("cluster", "min_workers", f"is more than workers = {c.workers}",
                   _Ctx("cluster", "min_workers", entries[("cluster", "min_workers")][1], p.root)
                   .set(c.workers) + ", or raise workers")
    if c.provider == "static" and not p.static.headnode:
        raise fail("cluster", "provider", "needs the headnode's address in [static] headnode",
                   "add [static] headnode = \"10.0.0.5\" (and workers = [...]), or set provider = \"ec2\"")
    bad_key = p.ssh.key_file and content_problem(Path(p.ssh.key_file))
    if bad_key:
        raise fail("ssh", "key_file", *bad_key)
    if c.provider == "ec2" and p.ssh.key_file and _is_ecdsa_key(Path(p.ssh.key_file)):
        raise fail("ssh", "key_file", "is an ECDSA key, which EC2 cannot import (it takes RSA and "
                   "ED25519 keys)",
                   "make an ed25519 key (ssh-keygen -t ed25519 -f FILE) and point key_file at it, or "
                   "leave key_file out to let swiftrun make one")
    if p.ec2.credentials_file and p.ec2.profile:
        at = where("ec2", "credentials_file").rstrip(": ")
        raise fail("ec2", "profile", "is set and so is [ec2] credentials_file"
                   f"{f' ({at})' if at else ''}: only one may say whose AWS account to use",
                   "keep one: remove [ec2] profile to use the CSV's access key, or remove "
                   "[ec2] credentials_file to use the profile")
    if p.swift.path and c.provider == "static":
        raise fail("swift", "path", "is not supported with provider = \"static\" yet (the hosts "
                   "are yours: swiftrun does not change their PATH)",
                   "put the tools on the static hosts' PATH yourself and remove [swift] path")
    if p.swift.install_url and not p.swift.install_sha256:
        raise fail("swift", "install_url", "needs install_sha256, so a changed tarball is refused",
                   "add install_sha256 = \"<64 hex digits>\" (run sha256sum on the tarball)")
    for zone in p.ec2.availability_zones:
        if not zone.startswith(p.ec2.region):
            raise fail("ec2", "availability_zones", f"{zone} is not in region {p.ec2.region}",
                       f"use zones of {p.ec2.region} like {p.ec2.region}a, or change region")
    if p.ec2.ssh_cidr in WORLD_CIDRS:
        warnings.append(f"{where('ec2', 'ssh_cidr')}[ec2] ssh_cidr = \"{p.ec2.ssh_cidr}\" lets the whole "
                        "internet try SSH on the headnode (key-only, host keys pinned); \"auto\": this machine")
    if c.provider == "ec2" and (p.static.headnode or p.static.workers):
        warnings.append(f"{where('static', 'headnode') or where('static', 'workers')}"
                        "[static] is ignored with provider = \"ec2\"")
    if c.idle_timeout and c.max_lifetime and c.idle_timeout > c.max_lifetime:
        warnings.append(f"{where('cluster', 'idle_timeout')}[cluster] idle_timeout is longer than "
                        "max_lifetime, so it never takes effect")
    return warnings
