"""The project's settings as frozen dataclasses: what every layer above takes.

Everything below the CLI takes a ``Project``; nothing else reads the project file (that is
``load.py``'s job, with ``schema.py`` checking every value on the way in).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

# More workers than this is a typo, not a plan: EC2 accounts start with a few dozen vCPUs of
# on-demand quota, and one RunInstances launches at most 1000 instances.
MAX_WORKERS = 1000
# worker.pl -c: task slots per worker; more than this is beyond any instance type's cores.
MAX_CONCURRENCY = 1024
# idle_timeout and max_lifetime: a cluster that lives longer than this is forgotten, not kept.
MAX_DURATION = 366 * 86400


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
    worker_public_ip: bool | str = "auto"  # "auto": only when workers need the internet at boot


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
    path: tuple = ()                       # local tool directories, carried to every node's PATH


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
    # Non-fatal notes from loading (an ssh_cidr of 0.0.0.0/0 is the user's explicit choice, kept
    # and warned about: key-only logins and pinned host keys, see checks/cloud.py; ignored
    # legacy keys, ...). Not part of the project's identity: two projects that differ only in
    # warnings compare equal.
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


# Section name -> its dataclass, in file order (the schema has one validator per field).
SECTIONS: dict[str, type] = {
    "cluster": ClusterSettings,
    "ec2": Ec2Settings,
    "ssh": SshSettings,
    "static": StaticSettings,
    "swift": SwiftSettings,
    "sync": SyncSettings,
    "s3fs": S3fsSettings,
}


def setting_names() -> list[str]:
    """Every dotted setting name (``cluster.workers``, ...), in file order."""
    return [f"{s}.{f.name}" for s, cls in SECTIONS.items() for f in dataclasses.fields(cls)]
