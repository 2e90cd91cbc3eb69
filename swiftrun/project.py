"""The project: swiftrun.toml (or a legacy tutorial ``configs`` file) as frozen dataclasses.

Everything below the CLI takes a ``Project``; nothing else reads the project file. Loading validates
every key and value and raises ConfigError with one line naming the file, line and key at fault.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import functools
import hashlib
import ipaddress
import json
import os
import re
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from swiftrun.errors import ConfigError

PROJECT_FILE = "swiftrun.toml"
LEGACY_FILE = "configs"


@dataclass(frozen=True)
class ClusterSettings:
    name: str = "swiftrun"
    provider: str = "ec2"            # "ec2" | "static"
    workers: int = 2
    min_workers: int | None = None   # accept a smaller worker set down to this (None: all asked)
    worker_concurrency: int = 4      # worker.pl -c
    idle_timeout: int = 1800         # seconds ("30m" in the file)
    max_lifetime: int = 28800        # seconds ("8h" in the file)
    keep: bool = False               # keep the cluster after a run (like --keep-cluster)


@dataclass(frozen=True)
class Ec2Settings:
    region: str = "us-west-2"
    profile: str = ""
    credentials_file: Path | None = None   # the tutorial's IAM credentials.csv
    headnode_type: str = "t3.small"
    worker_type: str = "c5.large"
    image: str = "auto"                    # "auto" (latest Ubuntu LTS) or an AMI id
    worker_image: str = ""                 # defaults to image (legacy WORKER_IMAGE)
    key_name: str = ""                     # defaults to "swiftrun-<cluster>"
    security_group: str = ""               # defaults to "swiftrun-<cluster>"
    ssh_cidr: str = "auto"                 # "auto" = this machine's public address /32
    spot: bool = False
    subnet_id: str = ""
    availability_zones: tuple[str, ...] = ()
    worker_init_script: Path | None = None
    volume_size_gb: int = 0                # 0 = the image's default root volume


@dataclass(frozen=True)
class SshSettings:
    user: str = "ubuntu"
    key_file: Path | None = None           # defaults to <state_home>/keys/<key_name>.pem
    port: int = 22
    proxy_command: str = ""                # OpenSSH ProxyCommand, %h %p %r expanded
    connect_timeout: int = 10


@dataclass(frozen=True)
class StaticSettings:
    headnode: str = ""
    workers: tuple[str, ...] = ()


@dataclass(frozen=True)
class SwiftSettings:
    site: str = "cloud-static"             # a template in site_templates/
    staging: str = "local"                 # "local" | "direct"
    work_directory: str = "/tmp/swiftwork"
    home: str = "/opt/swift"               # Swift home on the nodes (bin/swift, bin/coaster-service)
    install_url: str = ""                  # Swift tarball to install at boot (needs install_sha256)
    install_sha256: str = ""
    conf: dict = field(default_factory=dict)   # HOCON overrides, merged into swift.conf
    args: dict = field(default_factory=dict)   # passed to swift as -name=value


@dataclass(frozen=True)
class SyncSettings:
    exclude: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()          # default: new or changed files + runNNN/
    warn_size_mb: int = 200


@dataclass(frozen=True)
class S3fsSettings:
    bucket: str = ""
    mount: str = "/s3"


@dataclass(frozen=True)
class Project:
    root: Path                             # directory the project lives in (script dir)
    path: Path | None = None               # the file it came from (None: defaults only)
    cluster: ClusterSettings = field(default_factory=ClusterSettings)
    ec2: Ec2Settings = field(default_factory=Ec2Settings)
    ssh: SshSettings = field(default_factory=SshSettings)
    static: StaticSettings = field(default_factory=StaticSettings)
    swift: SwiftSettings = field(default_factory=SwiftSettings)
    sync: SyncSettings = field(default_factory=SyncSettings)
    s3fs: S3fsSettings = field(default_factory=S3fsSettings)
    # Non-fatal notes from loading (0.0.0.0/0 ssh_cidr, ignored legacy keys, ...). Not part of the
    # project's identity: two projects that differ only in warnings compare equal.
    warnings: tuple[str, ...] = field(default=(), compare=False)

    @property
    def key_name(self) -> str:
        return self.ec2.key_name or f"swiftrun-{self.cluster.name}"

    @property
    def security_group_name(self) -> str:
        return self.ec2.security_group or f"swiftrun-{self.cluster.name}"

    def instance_shape(self, role: str) -> dict:
        """The settings that shape an instance of ``role``: a change needs new instances."""
        shape = {
            "type": self.ec2.headnode_type if role == "headnode" else self.ec2.worker_type,
            "image": self.ec2.image if role == "headnode" else (self.ec2.worker_image or self.ec2.image),
            "spot": self.ec2.spot if role == "worker" else False,
            "s3fs": self.s3fs.bucket,
            "swift_home": self.swift.home,
            "swift_url": self.swift.install_url,
            "volume": self.ec2.volume_size_gb,
        }
        if role == "worker":
            shape["concurrency"] = self.cluster.worker_concurrency
            shape["init"] = _file_digest(self.ec2.worker_init_script)
        return shape

    def shape_hash(self, role: str) -> str:
        blob = json.dumps(self.instance_shape(role), sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:12]


def _file_digest(path: Path | None) -> str:
    if not path:
        return ""
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:12]
    except OSError:
        return "missing"


# ================================================================================================
# Loading and validation
#
# A file is read into "entries": (section, key) -> (value, origin). Overrides (CLI flags, env) are
# added on top. Every entry is then checked and converted by the validator for its key (the schema
# below), then the settings are checked against each other. Any problem raises ConfigError with one
# line: where (file:line, or the flag / variable), what (the key and its value), what is wrong, and
# in parentheses what would fix it.
# ================================================================================================

SECTIONS: dict[str, type] = {
    "cluster": ClusterSettings,
    "ec2": Ec2Settings,
    "ssh": SshSettings,
    "static": StaticSettings,
    "swift": SwiftSettings,
    "sync": SyncSettings,
    "s3fs": S3fsSettings,
}

# The tutorial's configs keys -> (section, key).
LEGACY_KEYS: dict[str, tuple[str, str]] = {
    "AWS_CREDENTIALS_FILE": ("ec2", "credentials_file"),
    "AWS_WORKER_COUNT": ("cluster", "workers"),
    "AWS_KEYPAIR_NAME": ("ec2", "key_name"),
    "AWS_KEYPAIR_FILE": ("ssh", "key_file"),
    "AWS_USERNAME": ("ssh", "user"),
    "AWS_REGION": ("ec2", "region"),
    "SECURITY_GROUP": ("ec2", "security_group"),
    "HEADNODE_IMAGE": ("ec2", "image"),
    "WORKER_IMAGE": ("ec2", "worker_image"),
    "HEADNODE_MACHINE_TYPE": ("ec2", "headnode_type"),
    "WORKER_MACHINE_TYPE": ("ec2", "worker_type"),
    "WORKER_INIT_SCRIPT": ("ec2", "worker_init_script"),
    "WORKER_CONCURRENCY": ("cluster", "worker_concurrency"),
}
# Keys some versions of the tutorial's configs carry that have no direct setting; each is translated
# or explained (see _legacy_extras) instead of being refused as unknown.
LEGACY_EXTRA_KEYS = ("AWS_KEYPAIR_DIR", "WORKER_REQUEST", "WORKER_DISK", "SERVICE_TYPE", "AWS_DRY_RUN")

# Environment variables the CLI may turn into overrides (see env_overrides).
ENV_OVERRIDES: dict[str, str] = {
    "SWIFTRUN_CLUSTER": "cluster.name",
    "SWIFTRUN_WORKERS": "cluster.workers",
    "SWIFTRUN_REGION": "ec2.region",
    "SWIFTRUN_PROFILE": "ec2.profile",
    "SWIFTRUN_IMAGE": "ec2.image",
    "SWIFTRUN_SWIFT_URL": "swift.install_url",
    "SWIFTRUN_SWIFT_SHA256": "swift.install_sha256",
}

_MAX_SHOWN = 60
# "Everyone on the internet": only ever detected and warned about (ssh_cidr here, security group
# rules in doctor), never written into a rule by swiftrun.
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


# ------------------------------------------------------------------------------------------------
# Small public helpers
# ------------------------------------------------------------------------------------------------

def toml_value(value: Any) -> str:
    """``value`` written as a TOML value (strings quoted, lists, inline tables)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value != value:
            return "nan"
        if value in (float("inf"), float("-inf")):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, (str, Path)):
        return json.dumps(str(value), ensure_ascii=False)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        if not value:
            return "{}"
        return "{ " + ", ".join(f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items()) + " }"
    return json.dumps(str(value))


def toml_key(key: Any) -> str:
    key = str(key)
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key, ensure_ascii=False)


_DURATION_RE = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


def parse_duration(text: str | int) -> int:
    """``"30m"``, ``"8h"``, ``"1h30m"``, ``"90s"``, ``"2d"``, ``"600"`` or 600 -> seconds (0 = off).

    Raises ValueError for anything else.
    """
    if isinstance(text, bool):
        raise ValueError("a boolean is not a duration")
    if isinstance(text, int):
        if text < 0:
            raise ValueError("negative duration")
        return text
    s = str(text).strip().lower().replace(" ", "")
    if s in ("off", "never", "none"):
        return 0
    if s.isdigit():
        return int(s)
    m = _DURATION_RE.match(s)
    if not s or not m or not any(m.groups()):
        raise ValueError(f"not a duration: {text!r}")
    d, h, mi, se = (int(g) if g else 0 for g in m.groups())
    return ((d * 24 + h) * 60 + mi) * 60 + se


def format_duration(seconds: int) -> str:
    """Seconds -> the shortest of ``"8h"``, ``"1h30m"``, ``"90s"`` style (``"0"`` for off)."""
    if seconds <= 0:
        return "0"
    h, rest = divmod(int(seconds), 3600)
    m, s = divmod(rest, 60)
    return "".join(f"{n}{u}" for n, u in ((h, "h"), (m, "m"), (s, "s")) if n)


def sanitize_cluster_name(text: str, fallback: str = "swiftrun") -> str:
    """A valid cluster name made from ``text`` (e.g. a directory name): ``My Run_1`` -> ``my-run-1``."""
    s = re.sub(r"[^a-z0-9-]+", "-", str(text).lower())
    s = re.sub(r"-{2,}", "-", s).strip("-")[:40].rstrip("-")
    return s if _NAME_RE.match(s) else fallback


def env_overrides(environ: Mapping[str, str] | None = None) -> tuple[dict[str, str], dict[str, str]]:
    """(overrides, labels) for load_project from SWIFTRUN_CLUSTER, SWIFTRUN_WORKERS, ... if set."""
    environ = os.environ if environ is None else environ
    overrides, labels = {}, {}
    for var, dotted in ENV_OVERRIDES.items():
        if environ.get(var):
            overrides[dotted] = environ[var]
            labels[dotted] = f"${var}"
    return overrides, labels


def setting_names() -> list[str]:
    """Every dotted setting name (``cluster.workers``, ...), in file order."""
    return [f"{s}.{f.name}" for s, cls in SECTIONS.items() for f in dataclasses.fields(cls)]


# ------------------------------------------------------------------------------------------------
# Value checks
# ------------------------------------------------------------------------------------------------

def _short(value: Any) -> str:
    text = toml_value(value)
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 3] + "..."


def _legacy_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)


def _nearest(word: str, choices, cutoff: float = 0.6) -> str | None:
    found = difflib.get_close_matches(word, list(choices), n=1, cutoff=cutoff)
    return found[0] if found else None


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "a number"
    if isinstance(value, float):
        return "a decimal number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, Mapping):
        return "a table"
    return f"a {type(value).__name__}"


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


def _v_int(lo: int | None, hi: int | None, example: int, extra: str = ""):
    if hi is None:
        rule = f"must be a whole number >= {lo}"
    else:
        rule = f"must be a whole number from {lo} to {hi}"

    def check(value, ctx):
        n = _as_int(value, ctx, example)
        if (lo is not None and n < lo) or (hi is not None and n > hi):
            raise _Bad(rule, ctx.set(example) + (f", {extra}" if extra else ""))
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
            return parse_duration(value)
        except ValueError:
            raise _Bad("must be a duration like \"30m\", \"8h\", \"1h30m\", \"90s\" or whole seconds",
                       ctx.set(example) + ", or 0 for off") from None
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


_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")


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


def _v_abs_remote(example: str):
    def check(value, ctx):
        s = _as_str(value, ctx, example)
        if s.startswith("/") and not re.search(r"\s", s):
            return s
        raise _Bad("must be an absolute path on the nodes (starting with /, no spaces)", ctx.set(example))
    return check


def _v_install_url(value, ctx):
    s = _as_str(value, ctx, "")
    if s == "" or re.match(r"^(https?|s3|file)://\S+$", s):
        return s
    raise _Bad("must be an http(s)://, s3:// or file:// URL of a Swift tarball",
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


_SCHEMA: dict[str, dict[str, Callable[[Any, _Ctx], Any]]] = {
    "cluster": {
        "name": _v_name,
        "provider": _v_enum(("ec2", "static"), "static: hosts that already exist"),
        "workers": _v_int(0, None, 2, "or 0 for a headnode only"),
        "min_workers": _v_int(0, None, 1, "or leave it out to wait for all workers"),
        "worker_concurrency": _v_int(1, None, 4),
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


# ------------------------------------------------------------------------------------------------
# Reading files
# ------------------------------------------------------------------------------------------------

def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return str(path)


def _read_text(path: Path, display: str) -> str:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{display}: project file not found",
                          hint="check the path, or create one with `swiftrun init`") from None
    except IsADirectoryError:
        raise ConfigError(f"{display}: is a directory, not a project file",
                          hint=f"give {display}/{PROJECT_FILE}, or run from that directory") from None
    except PermissionError:
        raise ConfigError(f"{display}: permission denied reading the project file",
                          hint=f"chmod u+r {display}") from None
    except OSError as exc:
        raise ConfigError(f"{display}: cannot read the project file: {exc.strerror or exc}",
                          hint="check the path and the disk") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigError(f"{display}:{line}: the project file is not UTF-8 text",
                          hint="save it as UTF-8") from None
    return text.removeprefix("\ufeff")


_LEGACY_LINE_RE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=(.*)$")


def _is_legacy(path: Path, text: str) -> bool:
    if path.suffix == ".toml":
        return False
    if path.name == LEGACY_FILE:
        return True
    toml_like = legacy_like = 0
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if re.match(r"^\[[^\]]+\]\s*(#.*)?$", stripped) or re.match(r"^[a-z_][a-z0-9_.-]*\s*=", stripped):
            toml_like += 1
        elif re.match(r"^(export\s+)?[A-Z_][A-Z0-9_]*=", stripped):
            legacy_like += 1
    return legacy_like > toml_like


def _looks_like_tutorial_configs(path: Path) -> bool:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")[:65536]
    except OSError:
        return False
    known = set(LEGACY_KEYS) | set(LEGACY_EXTRA_KEYS)
    return any((m := _LEGACY_LINE_RE.match(line)) and m.group(1) in known for line in text.splitlines())


def find_project_file(start: Path | str | None = None) -> Path | None:
    """The nearest swiftrun.toml (or a tutorial ``configs``) in ``start`` or a parent directory.

    The search stops after the user's home directory (or at the filesystem root when ``start`` is
    not under home). In each directory swiftrun.toml wins over configs; a ``configs`` that does not
    hold the tutorial's keys is not taken for a project file.
    """
    here = Path(start if start is not None else Path.cwd()).expanduser().resolve()
    if here.is_file():
        here = here.parent
    try:
        home = Path.home().resolve()
    except (RuntimeError, KeyError):
        home = None
    for directory in (here, *here.parents):
        candidate = directory / PROJECT_FILE
        if candidate.is_file():
            return candidate
        candidate = directory / LEGACY_FILE
        if candidate.is_file() and _looks_like_tutorial_configs(candidate):
            return candidate
        if home is not None and directory == home:
            break
    return None


class _KeyLines:
    """Where each key sits in a TOML text: a simple scanner, good enough for error messages."""

    _HEADER = re.compile(r"^\s*\[\s*([^\[\]#]+?)\s*\]\s*(#.*)?$")
    _KEY = re.compile(r"""^\s*((?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*')(?:\s*\.\s*(?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*'))*)\s*=""")

    def __init__(self, text: str):
        self.lines: dict[tuple[str, ...], int] = {}
        section: tuple[str, ...] = ()
        for n, line in enumerate(text.splitlines(), 1):
            m = self._HEADER.match(line)
            if m:
                section = self._split(m.group(1))
                self.lines.setdefault(section, n)
                continue
            m = self._KEY.match(line)
            if m:
                self.lines.setdefault(section + self._split(m.group(1)), n)

    @staticmethod
    def _split(dotted: str) -> tuple[str, ...]:
        parts = re.findall(r"""[A-Za-z0-9_-]+|"[^"]*"|'[^']*'""", dotted)
        return tuple(p.strip("\"'") for p in parts)

    def find(self, *key: str) -> int | None:
        while key:
            if key in self.lines:
                return self.lines[key]
            key = key[:-1]
        return None


def _toml_syntax_error(exc: tomllib.TOMLDecodeError, text: str, display: str) -> ConfigError:
    msg = str(exc)
    line = col = None
    m = re.search(r"\s*\(at line (\d+), column (\d+)\)\s*$", msg)
    if m:
        line, col = int(m.group(1)), int(m.group(2))
        msg = msg[: m.start()]
    elif msg.endswith("(at end of document)"):
        line = max(1, len(text.splitlines()))
        msg = msg.removesuffix("(at end of document)").strip()
    where = f"{display}:{line}:{col}" if col else (f"{display}:{line}" if line else display)
    src = text.splitlines()[line - 1].strip() if line and line <= len(text.splitlines()) else ""
    shown = src if len(src) <= _MAX_SHOWN else src[: _MAX_SHOWN - 3] + "..."
    fix = "check the quotes, brackets and key = value form on that line (TOML: https://toml.io)"
    kv = re.match(r"^([A-Za-z0-9_.-]+)\s*=\s*(.*?)\s*(#.*)?$", src)
    if "overwrite" in msg or "declare" in msg:
        fix = "each key and [section] may appear only once: remove or merge the duplicate"
    elif kv and msg.startswith("Invalid value") and kv.group(2) and kv.group(2)[0] not in "\"'[{":
        fix = f"strings need double quotes: {kv.group(1)} = {json.dumps(kv.group(2))}"
    elif re.match(r"^[A-Z_][A-Z0-9_]*=", src):
        fix = ("this looks like the tutorial's configs format; name the file configs, "
               "or convert it with `swiftrun init --from configs`")
    detail = f" in `{shown}`" if shown else ""
    return ConfigError(f"{where}: not valid TOML: {msg}{detail}", hint=fix)


_Entries = dict[tuple[str, str], tuple[Any, _Origin]]


def _known_key_hint(key: str, section: str | None) -> str:
    """The fix for an unknown key: the nearest key in its section, else where else it exists."""
    if key.upper() in LEGACY_KEYS:
        s, k = LEGACY_KEYS[key.upper()]
        return f"{key} is the tutorial's configs name; in swiftrun.toml write [{s}] {k}"
    if section is not None:
        near = _nearest(key, _SCHEMA[section])
        if near:
            return f"did you mean {near}?"
    homes = [s for s, keys in _SCHEMA.items() if key in keys and s != section]
    if homes:
        return f"{key} belongs in the [{homes[0]}] section: move it under that header"
    if section is None:
        return f"put it under one of the sections: {', '.join('[' + s + ']' for s in _SCHEMA)}"
    return f"valid keys in [{section}]: {', '.join(_SCHEMA[section])}; or remove the line"


def _toml_entries(text: str, display: str) -> _Entries:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise _toml_syntax_error(exc, text, display) from None
    lines = _KeyLines(text)
    entries: _Entries = {}
    for section, table in data.items():
        if section not in _SCHEMA:
            line = lines.find(section)
            where = f"{display}:{line}" if line else display
            if isinstance(table, Mapping):
                near = _nearest(section, _SCHEMA)
                homes = [s for s, keys in _SCHEMA.items() if section in keys]
                if near:
                    fix = f"did you mean [{near}]?"
                elif homes:
                    fix = f"{section} is a key: write {section} = ... under [{homes[0]}]"
                else:
                    fix = f"valid sections: {', '.join('[' + s + ']' for s in _SCHEMA)}"
                raise ConfigError(f"{where}: [{section}]: unknown section", hint=fix)
            raise ConfigError(f"{where}: {section} = {_short(table)}: key outside any section",
                              hint=_known_key_hint(section, None))
        if not isinstance(table, Mapping):
            line = lines.find(section)
            where = f"{display}:{line}" if line else display
            raise ConfigError(f"{where}: {section} = {_short(table)}: [{section}] must be a section",
                              hint=f"write a [{section}] header with key = value lines under it")
        for key, value in table.items():
            line = lines.find(section, key)
            if key not in _SCHEMA[section]:
                where = f"{display}:{line}" if line else display
                raise ConfigError(f"{where}: [{section}] {key} = {_short(value)}: unknown key",
                                  hint=_known_key_hint(key, section))
            entries[(section, key)] = (value, _Origin("toml", display, line))
    return entries


# --- the tutorial's configs ---------------------------------------------------------------------

_VAR_RE = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")


def _legacy_entries(text: str, display: str, base_dir: Path) -> tuple[_Entries, list[str]]:
    entries: _Entries = {}
    warnings: list[str] = []
    seen: dict[str, int] = {}
    values: dict[str, tuple[str, int, str]] = {}     # KEY -> (expanded value, line, raw)
    variables = dict(os.environ)
    variables["PWD"] = str(base_dir)
    for n, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        m = _LEGACY_LINE_RE.match(line)
        if not m:
            shown = stripped if len(stripped) <= 40 else stripped[:37] + "..."
            raise ConfigError(f"{display}:{n}: `{shown}`: not a KEY=VALUE line",
                              hint="write KEY=VALUE like AWS_WORKER_COUNT=2, or start the line with #")
        key, raw = m.group(1), m.group(2).strip()
        if key not in LEGACY_KEYS and key not in LEGACY_EXTRA_KEYS:
            near = _nearest(key, [*LEGACY_KEYS, *LEGACY_EXTRA_KEYS])
            fix = (f"did you mean {near}? Or remove the line" if near else
                   f"known keys: {', '.join(LEGACY_KEYS)}; or remove the line")
            raise ConfigError(f"{display}:{n}: {key}: unknown key in the tutorial's configs", hint=fix)
        value = _legacy_value(key, raw, n, display, variables)
        if key in seen:
            warnings.append(f"{display}:{n}: {key} is set again (first on line {seen[key]}); "
                            "the last one wins, as in bash")
        seen[key] = n
        values[key] = (value, n, raw)
        variables[key] = value
    for key, (value, n, raw) in values.items():
        if key in LEGACY_KEYS and value != "":
            section, name = LEGACY_KEYS[key]
            entries[(section, name)] = (value, _Origin("legacy", display, n, key, raw))
    _legacy_extras(values, entries, warnings, display, base_dir)
    warnings.append(f"{display}: read as the tutorial's configs format; "
                    "`swiftrun init --from configs` writes the equivalent swiftrun.toml")
    return entries, warnings


def _legacy_value(key: str, raw: str, n: int, display: str, variables: Mapping[str, str]) -> str:
    def bad(problem: str, fix: str) -> ConfigError:
        return ConfigError(f"{display}:{n}: {key}={raw}: {problem}", hint=fix)

    quote = raw[:1] if raw[:1] in ("'", '"') else ""
    if quote:
        end = raw.find(quote, 1)
        if end < 0:
            raise bad("the quote is never closed", f"end the value with {quote}")
        value, rest = raw[1:end], raw[end + 1:].strip()
        if rest and not rest.startswith("#"):
            raise bad("text after the closing quote", "quote the whole value, or remove the extra text")
    else:
        cut = re.search(r"\s#", raw)
        value = raw[: cut.start()].rstrip() if cut else raw
    if quote != "'":
        if "$(" in value or "`" in value:
            raise bad("command substitution is not supported", "write the value out")

        def expand(m: re.Match) -> str:
            name = m.group(1) or m.group(2)
            if name not in variables:
                raise bad(f"${name} is not set", f"set {name} earlier in the file or in the environment, "
                                                  "or write the value out")
            return variables[name]
        value = _VAR_RE.sub(expand, value)
    if value == "~" or value.startswith("~/"):
        value = os.path.expanduser(value)
    return value


def _legacy_extras(values, entries: _Entries, warnings: list[str], display: str, base_dir: Path) -> None:
    """The keys some tutorial versions had beyond the ones with a direct setting."""
    def bad(key: str, problem: str, fix: str) -> ConfigError:
        value, n, raw = values[key]
        return ConfigError(f"{display}:{n}: {key}={raw}: {problem}", hint=fix)

    if "AWS_KEYPAIR_DIR" in values:
        value, n, raw = values["AWS_KEYPAIR_DIR"]
        name = values.get("AWS_KEYPAIR_NAME", ("",))[0]
        if "AWS_KEYPAIR_FILE" not in values and value and name:
            entries[("ssh", "key_file")] = (str(Path(value) / f"{name}.pem"),
                                            _Origin("legacy", display, n, "AWS_KEYPAIR_DIR", raw))
        else:
            warnings.append(f"{display}:{n}: AWS_KEYPAIR_DIR is ignored (AWS_KEYPAIR_FILE, or "
                            "AWS_KEYPAIR_NAME missing)")
    if "WORKER_REQUEST" in values:
        value, n, raw = values["WORKER_REQUEST"]
        try:
            request = ast.literal_eval(value) if value else {}
        except (ValueError, SyntaxError):
            request = None
        if not isinstance(request, dict):
            raise bad("WORKER_REQUEST", "is not a {'type': ...} dictionary",
                      "write WORKER_REQUEST={'type':'Spot'} or {'type':'OnDemand'}, or remove the line")
        kind = str(request.get("type", "OnDemand"))
        if kind.lower() not in ("spot", "ondemand"):
            raise bad("WORKER_REQUEST", f"type {kind!r} is neither Spot nor OnDemand",
                      "write WORKER_REQUEST={'type':'Spot'} or {'type':'OnDemand'}")
        entries[("ec2", "spot")] = (kind.lower() == "spot",
                                    _Origin("legacy", display, n, "WORKER_REQUEST", raw))
        extra = sorted(set(request) - {"type"})
        if extra:
            warnings.append(f"{display}:{n}: WORKER_REQUEST {', '.join(extra)} ignored: spot workers "
                            "pay the current spot price, capped at the on-demand price")
    if "WORKER_DISK" in values:
        n = values["WORKER_DISK"][1]
        warnings.append(f"{display}:{n}: WORKER_DISK is ignored: swiftrun mounts the instance-store "
                        "disks at /scratch itself; for a bigger root disk set [ec2] volume_size_gb")
    if "SERVICE_TYPE" in values:
        value = values["SERVICE_TYPE"][0]
        if value.lower() not in ("", "coasters"):
            raise bad("SERVICE_TYPE", "only coasters is supported", "set SERVICE_TYPE=coasters, or remove it")
    if "AWS_DRY_RUN" in values:
        value = values["AWS_DRY_RUN"][0]
        if value.lower() in _TRUE:
            raise bad("AWS_DRY_RUN", "dry runs are not supported",
                      "remove the line or set AWS_DRY_RUN=False; `swiftrun doctor` checks access")
        if value.lower() not in _FALSE | {""}:
            raise bad("AWS_DRY_RUN", "must be True or False", "remove the line")


# ------------------------------------------------------------------------------------------------
# load_project
# ------------------------------------------------------------------------------------------------

def load_project(
    path: Path | str | None = None,
    *,
    start: Path | str | None = None,
    overrides: Mapping[str, Any] | None = None,
    override_labels: Mapping[str, str] | None = None,
) -> Project:
    """Load ``path`` (swiftrun.toml or a legacy configs file), or find one from ``start`` upwards.

    With no file found, a Project with the defaults is returned whose ``root`` is ``start`` (or the
    current directory) and whose ``path`` is None. ``root`` is otherwise the file's directory.

    ``overrides`` maps dotted keys (``"cluster.name"``) to values, applied after the file with the
    same checks; a None value means "not given" and is skipped. Strings are accepted for every type
    there (environment variables). ``override_labels`` names where each came from in messages
    (``{"cluster.workers": "--workers"}``; default ``override cluster.workers``).

    Raises ConfigError (one line: file:line, key, what is wrong, the fix).
    """
    warnings: list[str] = []
    if path is not None:
        file = Path(path).expanduser()
        if file.is_dir():
            found = next((c for c in (file / PROJECT_FILE, file / LEGACY_FILE) if c.is_file()), None)
            if found is None:
                raise ConfigError(f"{_display(file)}: no {PROJECT_FILE} or {LEGACY_FILE} in this directory",
                                  hint="create one with `swiftrun init`, or give the file's path")
            file = found
    else:
        file = find_project_file(start)

    entries: _Entries = {}
    if file is None:
        root = Path(start if start is not None else Path.cwd()).expanduser().resolve()
        if root.is_file():
            root = root.parent
        base_dir = root
        resolved_file = None
    else:
        display = _display(file)
        text = _read_text(file, display)
        resolved_file = file.resolve()
        root = base_dir = resolved_file.parent
        if _is_legacy(file, text):
            entries, warnings = _legacy_entries(text, display, base_dir)
        else:
            entries = _toml_entries(text, display)

    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        label = (override_labels or {}).get(dotted) or f"override {dotted}"
        section, _, key = dotted.partition(".")
        if section not in _SCHEMA or key not in _SCHEMA[section]:
            near = _nearest(dotted, setting_names())
            raise ConfigError(f"{label}: {dotted}: unknown setting",
                              hint=f"did you mean {near}?" if near else
                              "settings are named section.key, like cluster.workers")
        entries[(section, key)] = (value, _Origin("override", label))

    values: dict[str, dict[str, Any]] = {s: {} for s in _SCHEMA}
    for (section, key), (value, origin) in entries.items():
        ctx = _Ctx(section, key, origin, base_dir if origin.kind != "override" else Path.cwd())
        try:
            values[section][key] = _SCHEMA[section][key](value, ctx)
        except _Bad as bad:
            raise _error(origin, section, key, value, bad.problem, bad.fix) from None

    project = Project(
        root=root,
        path=resolved_file,
        **{s: dataclasses.replace(cls(), **values[s]) for s, cls in SECTIONS.items()},
    )
    warnings += _cross_checks(project, entries)
    return dataclasses.replace(project, warnings=tuple(warnings))


def _error(origin: _Origin, section: str, key: str, value: Any, problem: str, fix: str) -> ConfigError:
    if origin.kind == "legacy":
        raw = origin.raw if len(origin.raw) <= _MAX_SHOWN else origin.raw[: _MAX_SHOWN - 3] + "..."
        what = f"{origin.legacy_key}={raw}"
    elif origin.kind == "override":
        what = f"{section}.{key} = {_short(value)}"
    else:
        what = f"[{section}] {key} = {_short(value)}"
    return ConfigError(f"{origin.where()}: {what}: {problem}", hint=fix)


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
    if p.swift.install_url and not p.swift.install_sha256:
        raise fail("swift", "install_url", "needs install_sha256, so a changed tarball is refused",
                   "add install_sha256 = \"<64 hex digits>\" (run sha256sum on the tarball)")
    for zone in p.ec2.availability_zones:
        if not zone.startswith(p.ec2.region):
            raise fail("ec2", "availability_zones", f"{zone} is not in region {p.ec2.region}",
                       f"use zones of {p.ec2.region} like {p.ec2.region}a, or change region")
    if p.ec2.ssh_cidr in WORLD_CIDRS:
        warnings.append(f"{where('ec2', 'ssh_cidr')}[ec2] ssh_cidr = \"{p.ec2.ssh_cidr}\" lets the whole "
                        "internet try SSH on the nodes; \"auto\" allows only this machine")
    if c.provider == "ec2" and (p.static.headnode or p.static.workers):
        warnings.append(f"{where('static', 'headnode') or where('static', 'workers')}"
                        "[static] is ignored with provider = \"ec2\"")
    if c.idle_timeout and c.max_lifetime and c.idle_timeout > c.max_lifetime:
        warnings.append(f"{where('cluster', 'idle_timeout')}[cluster] idle_timeout is longer than "
                        "max_lifetime, so it never takes effect")
    return warnings
