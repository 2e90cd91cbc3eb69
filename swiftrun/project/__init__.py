"""The project: swiftrun.toml (or the tutorial's legacy ``configs``) as frozen dataclasses.

- ``model``: the settings (``Project`` and one dataclass per section);
- ``load``: finding the project file, reading it, applying overrides (``load_project``);
- ``toml`` / ``legacy``: the two file formats, read into entries with where each value came from;
- ``schema``: one validator per setting and the checks between settings;
- ``values``: TOML values, durations and names as people write them;
- ``credentials``: the IAM console's credentials.csv; ``initfile``: writing a swiftrun.toml.

Loading validates every key and value and raises ConfigError with one line naming the file, line
and key at fault. Callers import from here; the modules of this package import each other.
"""

from swiftrun.project.legacy import LEGACY_EXTRA_KEYS, LEGACY_FILE, LEGACY_KEYS
from swiftrun.project.load import (
    ENV_OVERRIDES, PROJECT_FILE, env_overrides, find_project_file, load_project)
from swiftrun.project.model import (
    SECTIONS, ClusterSettings, Ec2Settings, Project, S3fsSettings, SshSettings, StaticSettings,
    SwiftSettings, SyncSettings, setting_names)
from swiftrun.project.schema import WORLD_CIDRS, known_regions
from swiftrun.project.values import (
    format_duration, parse_duration, sanitize_cluster_name, toml_key, toml_value)

__all__ = [
    "ENV_OVERRIDES", "LEGACY_EXTRA_KEYS", "LEGACY_FILE", "LEGACY_KEYS", "PROJECT_FILE", "SECTIONS",
    "WORLD_CIDRS", "ClusterSettings", "Ec2Settings", "Project", "S3fsSettings", "SshSettings",
    "StaticSettings", "SwiftSettings", "SyncSettings", "env_overrides", "find_project_file",
    "format_duration", "known_regions", "load_project", "parse_duration", "sanitize_cluster_name",
    "setting_names", "toml_key", "toml_value",
]
