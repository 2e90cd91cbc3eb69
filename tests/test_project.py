"""load_project: swiftrun.toml and the tutorial's configs, validation messages, discovery, overrides."""

from __future__ import annotations

import dataclasses
import os
import re
import textwrap
from pathlib import Path

import pytest

from swiftrun.errors import ConfigError
from swiftrun.project import (
    LEGACY_KEYS,
    Project,
    env_overrides,
    find_project_file,
    format_duration,
    load_project,
    parse_duration,
    sanitize_cluster_name,
    setting_names,
)


@pytest.fixture(autouse=True)
def in_tmp(tmp_path, monkeypatch):
    """Run each test in its own directory, with a private HOME (so ~ and discovery are predictable)."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def error_of(*args, **kwargs) -> str:
    with pytest.raises(ConfigError) as info:
        load_project(*args, **kwargs)
    assert info.value.exit_code == 2
    message = str(info.value)
    assert "\n" not in message and "\r" not in message, message
    return message


def assert_message(message: str, *, where: str, key: str, fix: str) -> None:
    """One line naming the file (and line), the key, and a fix in parentheses at the end."""
    assert message.startswith(where + ":"), message
    assert key in message, message
    assert re.search(r"\(.+\)$", message), f"no fix in: {message}"
    assert fix in message, message


# --------------------------------------------------------------------------------------------
# Good files
# --------------------------------------------------------------------------------------------

def test_full_file_loads_to_expected_values(in_tmp):
    write(in_tmp / "creds.csv", "Access key ID,Secret access key\nAKIAEXAMPLE,abc\n")
    write(in_tmp / "scripts" / "init.sh", "echo hi\n")
    path = write(in_tmp / "swiftrun.toml", """
        [cluster]
        name = "tutorial"
        provider = "ec2"
        workers = 4
        min_workers = 2
        worker_concurrency = 8
        idle_timeout = "1h30m"
        max_lifetime = 7200
        keep = true

        [ec2]
        region = "eu-west-1"
        credentials_file = "creds.csv"
        headnode_type = "m5.xlarge"
        worker_type = "c5.2xlarge"
        image = "ami-0123456789abcdef0"
        worker_image = "ami-1e749f67"
        key_name = "mine"
        security_group = "swift_security_group1"
        ssh_cidr = "203.0.113.0/24"
        spot = true
        subnet_id = "subnet-0123abcd"
        availability_zones = ["eu-west-1a", "eu-west-1b"]
        worker_init_script = "scripts/init.sh"
        volume_size_gb = 50

        [ssh]
        user = "ec2-user"
        key_file = "~/.ssh/mine.pem"
        port = 2222
        proxy_command = "ssh -W %h:%p bastion"
        connect_timeout = 30

        [swift]
        site = "shared-fs"
        staging = "direct"
        work_directory = "/scratch/work"
        home = "/usr/local/swift"
        install_url = "https://example.org/swift-0.96.2.tar.gz"
        install_sha256 = "ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef0123456789"
        args = { steps = 10, label = "x", fast = true }

        [swift.conf]
        executionRetries = 2
        site.cloud.taskWalltime = "04:00:00"

        [sync]
        exclude = ["*.tmp", "big/"]
        outputs = ["results/"]
        warn_size_mb = 0

        [s3fs]
        bucket = "my-bucket"
        mount = "/data"
        """)
    p = load_project(path)
    assert p.path == path.resolve() and p.root == in_tmp.resolve()
    assert p.cluster == p.cluster.__class__(name="tutorial", provider="ec2", workers=4, min_workers=2,
                                            worker_concurrency=8, idle_timeout=5400, max_lifetime=7200,
                                            keep=True)
    assert p.ec2.region == "eu-west-1" and p.ec2.profile == ""   # profile: with credentials_file, refused
    assert p.ec2.credentials_file == (in_tmp / "creds.csv").resolve()
    assert p.ec2.worker_init_script == (in_tmp / "scripts" / "init.sh").resolve()
    assert p.ec2.availability_zones == ("eu-west-1a", "eu-west-1b")
    assert p.ec2.spot is True and p.ec2.volume_size_gb == 50 and p.ec2.subnet_id == "subnet-0123abcd"
    assert p.ssh.key_file == (in_tmp / "home" / ".ssh" / "mine.pem").resolve()
    assert (p.ssh.user, p.ssh.port, p.ssh.connect_timeout) == ("ec2-user", 2222, 30)
    assert p.swift.staging == "direct" and p.swift.install_sha256 == "abcdef0123456789" * 4
    assert p.swift.conf == {"executionRetries": 2, "site": {"cloud": {"taskWalltime": "04:00:00"}}}
    assert p.swift.args == {"steps": 10, "label": "x", "fast": True}
    assert p.sync.exclude == ("*.tmp", "big/") and p.sync.outputs == ("results/",)
    assert p.sync.warn_size_mb == 0
    assert (p.s3fs.bucket, p.s3fs.mount) == ("my-bucket", "/data")
    assert p.key_name == "mine" and p.security_group_name == "swift_security_group1"
    assert p.warnings == ()


def test_empty_file_gives_defaults(in_tmp):
    path = write(in_tmp / "swiftrun.toml", "# nothing yet\n")
    p = load_project(path)
    assert p == Project(root=in_tmp.resolve(), path=path.resolve())
    assert p.key_name == "swiftrun-swiftrun"


@pytest.mark.parametrize("text, seconds", [
    ('"30m"', 1800), ('"8h"', 28800), ('"1h30m"', 5400), ('"90s"', 90), ("600", 600), ("0", 0),
    ('"0"', 0), ('"2d"', 172800), ('"1h 5m"', 3900),
])
def test_durations(in_tmp, text, seconds):
    write(in_tmp / "swiftrun.toml", f"[cluster]\nidle_timeout = {text}\n")
    assert load_project(in_tmp / "swiftrun.toml").cluster.idle_timeout == seconds


def test_duration_helpers():
    assert parse_duration("1h30m") == 5400 and parse_duration(45) == 45
    assert [format_duration(s) for s in (0, 90, 1800, 5400, 28800)] == ["0", "1m30s", "30m", "1h30m", "8h"]
    for bad in ("", "h", "1x", "-5", True):
        with pytest.raises(ValueError):
            parse_duration(bad)


def test_open_ssh_cidr_is_a_warning_not_an_error(in_tmp):
    write(in_tmp / "swiftrun.toml", '[ec2]\nssh_cidr = "0.0.0.0/0"\n')
    p = load_project(in_tmp / "swiftrun.toml")
    assert p.ec2.ssh_cidr == "0.0.0.0/0"
    assert len(p.warnings) == 1 and p.warnings[0].startswith("swiftrun.toml:2:")
    assert "ssh_cidr" in p.warnings[0]


def test_bare_address_becomes_a_host_cidr(in_tmp):
    write(in_tmp / "swiftrun.toml", '[ec2]\nssh_cidr = "198.51.100.7"\n')
    assert load_project(in_tmp / "swiftrun.toml").ec2.ssh_cidr == "198.51.100.7/32"


def test_static_provider(in_tmp):
    write(in_tmp / "swiftrun.toml", """
        [cluster]
        provider = "static"
        [static]
        headnode = "10.0.0.5"
        workers = ["10.0.0.6", "10.0.0.7"]
        """)
    p = load_project(in_tmp / "swiftrun.toml")
    assert p.cluster.provider == "static" and p.static.workers == ("10.0.0.6", "10.0.0.7")


def test_dotted_keys_and_inline_sections(in_tmp):
    write(in_tmp / "swiftrun.toml", 'cluster.workers = 5\nec2 = { region = "us-east-1" }\n')
    p = load_project(in_tmp / "swiftrun.toml")
    assert p.cluster.workers == 5 and p.ec2.region == "us-east-1"


def test_bom_and_crlf_are_fine(in_tmp):
    (in_tmp / "swiftrun.toml").write_bytes(b"\xef\xbb\xbf[cluster]\r\nworkers = 3\r\n")
    assert load_project(in_tmp / "swiftrun.toml").cluster.workers == 3


def test_directory_as_path_finds_the_file_inside(in_tmp):
    write(in_tmp / "proj" / "swiftrun.toml", "[cluster]\nworkers = 1\n")
    assert load_project(in_tmp / "proj").cluster.workers == 1


def test_warnings_do_not_affect_equality(in_tmp):
    a = Project(root=in_tmp)
    assert a == dataclasses.replace(a, warnings=("x",))


def test_setting_names_cover_every_field():
    names = setting_names()
    assert "cluster.workers" in names and "s3fs.mount" in names and len(names) == len(set(names))


def test_sanitize_cluster_name():
    assert sanitize_cluster_name("My Run_1") == "my-run-1"
    assert sanitize_cluster_name("---") == "swiftrun"
    assert len(sanitize_cluster_name("a" * 80)) == 40


# --------------------------------------------------------------------------------------------
# Bad files: every message is one line with file:line, the key, and a fix
# --------------------------------------------------------------------------------------------

BAD_VALUES = [
    # (section, line as written, key, fix that must appear)
    ("cluster", "workers = -1", "workers", "set workers = 2, or 0 for a headnode only"),
    ("cluster", 'workers = "3"', "workers", "set workers = 3"),                 # string given as int
    ("cluster", "workers = 2.5", "workers", "set workers = 2"),
    ("cluster", "workers = true", "workers", "set workers = 2"),
    ("cluster", "worker_concurrency = 0", "worker_concurrency", "set worker_concurrency = 4"),
    ("cluster", 'provider = "gce"', "provider", 'set provider = "ec2"'),
    ("cluster", 'provider = "EC2"', "provider", 'set provider = "ec2"'),
    ("cluster", 'name = "My Cluster"', "name", 'set name = "my-cluster"'),
    ("cluster", 'name = "-lead"', "name", 'set name = "lead"'),
    ("cluster", f'name = "{"a" * 41}"', "name", "set name ="),
    ("cluster", "name = 42", "name", 'set name = "42"'),
    ("cluster", 'idle_timeout = "30 minutes"', "idle_timeout", 'set idle_timeout = "30m"'),
    ("cluster", "max_lifetime = -5", "max_lifetime", 'set max_lifetime = "8h"'),
    ("cluster", "max_lifetime = true", "max_lifetime", 'set max_lifetime = "8h"'),
    ("cluster", 'keep = "true"', "keep", "set keep = true"),                    # bool given as string
    ("cluster", "keep = 1", "keep", "set keep = false"),
    ("ec2", 'region = "us-west-9"', "region", "set region ="),
    ("ec2", 'region = "oregon"', "region", "set region ="),
    ("ec2", 'region = "us-west-2a"', "region", 'set region = "us-west-2"'),
    ("ec2", 'region = "US-WEST-2"', "region", 'set region = "us-west-2"'),
    ("ec2", 'headnode_type = "t3small"', "headnode_type", 'set headnode_type = "t3.small"'),
    ("ec2", 'worker_type = "C5.Large"', "worker_type", 'set worker_type = "c5.large"'),
    ("ec2", 'image = "ubuntu"', "image", 'set image = "auto"'),
    ("ec2", 'image = "ami-123"', "image", 'set image = "auto"'),
    ("ec2", 'worker_image = "ami-XYZ12345"', "worker_image", 'set worker_image = ""'),
    ("ec2", 'ssh_cidr = "1.2.3.4/33"', "ssh_cidr", 'set ssh_cidr = "auto"'),
    ("ec2", 'ssh_cidr = "10.0.0.1/8"', "ssh_cidr", 'set ssh_cidr = "10.0.0.0/8"'),
    ("ec2", 'ssh_cidr = "everyone"', "ssh_cidr", 'set ssh_cidr = "auto"'),
    ("ec2", 'spot = "yes"', "spot", "set spot = true"),
    ("ec2", 'subnet_id = "my-subnet"', "subnet_id", "set subnet_id ="),
    ("ec2", 'availability_zones = "us-west-2a"', "availability_zones", 'set availability_zones = ["us-west-2a"]'),
    ("ec2", 'availability_zones = ["us-east-1a"]', "availability_zones", "us-west-2a"),
    ("ec2", "volume_size_gb = -1", "volume_size_gb", "set volume_size_gb = 0"),
    ("ec2", 'worker_init_script = "missing.sh"', "worker_init_script", "create the script or fix the path"),
    ("ec2", 'credentials_file = "nope.csv"', "credentials_file", "IAM console"),
    ("ec2", 'security_group = "sg-0123abcd"', "security_group", "set security_group ="),
    ("ssh", "port = 70000", "port", "set port = 22"),
    ("ssh", "port = 0", "port", "set port = 22"),
    ("ssh", "connect_timeout = 0", "connect_timeout", "set connect_timeout = 10"),
    ("ssh", "user = 5", "user", 'set user = "5"'),
    ("ssh", 'user = ""', "user", 'set user = "ubuntu"'),
    ("swift", 'staging = "shared"', "staging", "set staging ="),
    ("swift", 'install_sha256 = "abc"', "install_sha256", "sha256sum"),
    ("swift", 'install_url = "swift.tar.gz"', "install_url", "set install_url ="),
    ("swift", 'install_url = "s3://b/swift.tar.gz"', "install_url", "https://BUCKET.s3.REGION"),
    ("swift", 'conf = "retries=2"', "conf", "[swift.conf]"),
    ("swift", "args = { a = [1, 2] }", "args", "write a ="),
    ("swift", 'work_directory = "work"', "work_directory", 'set work_directory = "/tmp/swiftwork"'),
    ("sync", 'exclude = "*.tmp"', "exclude", 'set exclude = ["*.tmp"]'),
    ("sync", "outputs = [1]", "outputs", "set outputs ="),
    ("sync", "warn_size_mb = -1", "warn_size_mb", "set warn_size_mb = 200"),
    ("s3fs", 'bucket = "s3://my-bucket"', "bucket", 'set bucket = "my-bucket"'),
    ("s3fs", 'mount = "s3"', "mount", 'set mount = "/s3"'),
]


@pytest.mark.parametrize("section, line, key, fix", BAD_VALUES, ids=[b[1][:30] for b in BAD_VALUES])
def test_bad_values(in_tmp, section, line, key, fix):
    write(in_tmp / "swiftrun.toml", f"# a project\n\n[{section}]\n{line}\n")
    message = error_of(in_tmp / "swiftrun.toml")
    assert_message(message, where="swiftrun.toml:4", key=f"[{section}] {key}", fix=fix)


def test_example_message_from_the_brief(in_tmp):
    write(in_tmp / "swiftrun.toml", "[cluster]\nname = \"x\"\n\n\n\n\nworkers = -1\n")
    assert error_of(in_tmp / "swiftrun.toml") == (
        "swiftrun.toml:7: [cluster] workers = -1: must be a whole number from 0 to 1000 "
        "(it is below 0) (set workers = 2, or 0 for a headnode only)")


def test_unknown_region_suggests_the_nearest(in_tmp):
    write(in_tmp / "swiftrun.toml", '[ec2]\nregion = "eu-wset-1"\n')
    message = error_of(in_tmp / "swiftrun.toml")
    assert 'set region = "eu-west-1"' in message


def test_min_workers_above_workers(in_tmp):
    write(in_tmp / "swiftrun.toml", "[cluster]\nworkers = 2\nmin_workers = 3\n")
    assert_message(error_of(in_tmp / "swiftrun.toml"), where="swiftrun.toml:3",
                   key="[cluster] min_workers = 3", fix="set min_workers = 2")


def test_static_needs_a_headnode(in_tmp):
    write(in_tmp / "swiftrun.toml", '[cluster]\nworkers = 1\nprovider = "static"\n')
    assert_message(error_of(in_tmp / "swiftrun.toml"), where="swiftrun.toml:3",
                   key="[cluster] provider", fix="[static] headnode")


def test_install_url_needs_sha256(in_tmp):
    write(in_tmp / "swiftrun.toml", '[swift]\ninstall_url = "https://example.org/swift.tar.gz"\n')
    assert_message(error_of(in_tmp / "swiftrun.toml"), where="swiftrun.toml:2",
                   key="[swift] install_url", fix="install_sha256")


def test_unknown_section(in_tmp):
    write(in_tmp / "swiftrun.toml", "[cluster]\nworkers = 1\n\n[clustr]\nname = 'x'\n")
    assert_message(error_of(in_tmp / "swiftrun.toml"), where="swiftrun.toml:4", key="[clustr]",
                   fix="did you mean [cluster]?")


def test_unknown_key_suggests_nearest(in_tmp):
    write(in_tmp / "swiftrun.toml", "[cluster]\nworker_concurency = 2\n")
    assert_message(error_of(in_tmp / "swiftrun.toml"), where="swiftrun.toml:2",
                   key="worker_concurency", fix="did you mean worker_concurrency?")


def test_key_in_the_wrong_section(in_tmp):
    write(in_tmp / "swiftrun.toml", '[cluster]\nregion = "us-west-2"\n')
    assert_message(error_of(in_tmp / "swiftrun.toml"), where="swiftrun.toml:2",
                   key="region", fix="[ec2]")


def test_legacy_key_name_in_toml(in_tmp):
    write(in_tmp / "swiftrun.toml", '[ec2]\nAWS_REGION = "us-west-2"\n')
    assert_message(error_of(in_tmp / "swiftrun.toml"), where="swiftrun.toml:2",
                   key="AWS_REGION", fix="[ec2] region")


def test_key_outside_any_section(in_tmp):
    write(in_tmp / "swiftrun.toml", "workers = 2\n")
    assert_message(error_of(in_tmp / "swiftrun.toml"), where="swiftrun.toml:1",
                   key="workers", fix="[cluster]")


def test_toml_syntax_error_is_one_line_with_line_and_column(in_tmp):
    write(in_tmp / "swiftrun.toml", "[ec2]\nspot = false\nregion = us-west-2\n")
    message = error_of(in_tmp / "swiftrun.toml")
    assert_message(message, where="swiftrun.toml:3:10", key="region", fix='region = "us-west-2"')
    assert "not valid TOML" in message


def test_toml_duplicate_key(in_tmp):
    write(in_tmp / "swiftrun.toml", "[cluster]\nworkers = 1\nworkers = 2\n")
    assert_message(error_of(in_tmp / "swiftrun.toml"), where="swiftrun.toml:3",
                   key="workers", fix="only once")


def test_toml_unclosed_bracket(in_tmp):
    write(in_tmp / "swiftrun.toml", '[cluster\nworkers = 1\n')
    message = error_of(in_tmp / "swiftrun.toml")
    assert message.startswith("swiftrun.toml:1:") and "[cluster" in message and message.endswith(")")


def test_configs_syntax_in_a_toml_file(in_tmp):
    write(in_tmp / "swiftrun.toml", "AWS_WORKER_COUNT=2\n")
    message = error_of(in_tmp / "swiftrun.toml")
    assert message.startswith("swiftrun.toml:1:") and "configs" in message and "AWS_WORKER_COUNT" in message


def test_section_given_as_a_value(in_tmp):
    write(in_tmp / "swiftrun.toml", "cluster = 3\n")
    assert_message(error_of(in_tmp / "swiftrun.toml"), where="swiftrun.toml:1", key="cluster",
                   fix="[cluster] header")


def test_missing_file(in_tmp):
    message = error_of(in_tmp / "nope.toml")
    assert message.startswith("nope.toml:") and "not found" in message and "swiftrun init" in message


def test_missing_file_outside_cwd(tmp_path):
    message = error_of(Path("/nonexistent-dir/swiftrun.toml"))
    assert message.startswith("/nonexistent-dir/swiftrun.toml:")


def test_directory_without_project_file(in_tmp):
    (in_tmp / "empty").mkdir()
    message = error_of(in_tmp / "empty")
    assert message.startswith("empty:") and "swiftrun init" in message


def _as_nobody(work):
    """``work()`` in a child process that has dropped root for nobody (root reads every file),
    its result or the AssertionError's text back through a pipe."""
    import pickle

    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:                                            # the child: never returns
        os.close(rfd)
        try:
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            result = ("ok", work())
        except BaseException as exc:  # noqa: BLE001 - the parent reports it
            result = ("error", f"{type(exc).__name__}: {exc}")
        os.write(wfd, pickle.dumps(result))
        os._exit(0)
    os.close(wfd)
    with os.fdopen(rfd, "rb") as pipe:
        data = pipe.read()
    os.waitpid(pid, 0)
    status, value = pickle.loads(data)
    assert status == "ok", value
    return value


@pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX")
def test_unreadable_file(in_tmp):
    path = write(in_tmp / "swiftrun.toml", "[cluster]\n")
    path.chmod(0)
    try:
        if os.geteuid() == 0:       # root reads everything: the load runs as nobody instead
            in_tmp.chmod(0o711)     # (its working directory, reached by a relative path)
            message = _as_nobody(lambda: error_of(Path("swiftrun.toml")))
        else:
            message = error_of(path)
    finally:
        path.chmod(0o644)
    assert message.startswith("swiftrun.toml:") and "chmod" in message


def test_unreadable_file_simulated(in_tmp, monkeypatch):
    path = write(in_tmp / "swiftrun.toml", "[cluster]\n")

    def denied(self):
        raise PermissionError(13, "Permission denied")
    monkeypatch.setattr(Path, "read_bytes", denied)
    message = error_of(path)
    assert message == "swiftrun.toml: permission denied reading the project file (chmod u+r swiftrun.toml)"


def test_not_utf8(in_tmp):
    (in_tmp / "swiftrun.toml").write_bytes(b"[cluster]\nname = \"caf\xe9\"\n")
    message = error_of(in_tmp / "swiftrun.toml")
    assert message.startswith("swiftrun.toml:2:") and "UTF-8" in message


def test_relative_paths_resolve_from_the_project_file_not_cwd(in_tmp, monkeypatch):
    write(in_tmp / "proj" / "init.sh", "true\n")
    write(in_tmp / "proj" / "swiftrun.toml", '[ec2]\nworker_init_script = "init.sh"\n')
    monkeypatch.chdir(in_tmp / "home")
    p = load_project(in_tmp / "proj" / "swiftrun.toml")
    assert p.ec2.worker_init_script == (in_tmp / "proj" / "init.sh").resolve()


def test_nested_file_error_names_its_path(in_tmp):
    write(in_tmp / "proj" / "swiftrun.toml", "[ssh]\nport = 0\n")
    assert error_of(in_tmp / "proj" / "swiftrun.toml").startswith("proj/swiftrun.toml:2: [ssh] port = 0")


def test_init_script_that_is_a_directory(in_tmp):
    (in_tmp / "scripts").mkdir()
    write(in_tmp / "swiftrun.toml", '[ec2]\nworker_init_script = "scripts"\n')
    assert "is a directory" in error_of(in_tmp / "swiftrun.toml")


# --------------------------------------------------------------------------------------------
# Discovery
# --------------------------------------------------------------------------------------------

def test_discovery_from_a_script_directory_upwards(in_tmp):
    proj = in_tmp / "home" / "proj"
    write(proj / "swiftrun.toml", "[cluster]\nworkers = 7\n")
    script_dir = proj / "part04" / "deeper"
    script_dir.mkdir(parents=True)
    p = load_project(start=script_dir)
    assert p.cluster.workers == 7
    assert p.path == (proj / "swiftrun.toml").resolve() and p.root == proj.resolve()


def test_start_may_be_the_script_itself(in_tmp):
    write(in_tmp / "home" / "proj" / "swiftrun.toml", "[cluster]\nworkers = 3\n")
    script = write(in_tmp / "home" / "proj" / "p4.swift", "trace(1);\n")
    assert find_project_file(script) == (in_tmp / "home" / "proj" / "swiftrun.toml").resolve()


def test_toml_wins_over_configs_in_the_same_directory(in_tmp):
    proj = in_tmp / "home" / "proj"
    write(proj / "configs", "AWS_WORKER_COUNT=5\n")
    write(proj / "swiftrun.toml", "[cluster]\nworkers = 1\n")
    assert load_project(start=proj).cluster.workers == 1


def test_nearest_directory_wins(in_tmp):
    write(in_tmp / "home" / "swiftrun.toml", "[cluster]\nworkers = 1\n")
    write(in_tmp / "home" / "proj" / "configs", "AWS_WORKER_COUNT=5\n")
    assert load_project(start=in_tmp / "home" / "proj").cluster.workers == 5


def test_unrelated_configs_is_not_taken(in_tmp):
    proj = in_tmp / "home" / "proj"
    write(proj / "configs", "some other tool's file\n")
    (proj / "sub" / "configs").mkdir(parents=True)    # a directory named configs
    write(in_tmp / "home" / "swiftrun.toml", "[cluster]\nworkers = 6\n")
    assert load_project(start=proj / "sub").cluster.workers == 6


def test_no_file_gives_defaults_rooted_at_start(in_tmp):
    bare = in_tmp / "home" / "bare"
    bare.mkdir()
    p = load_project(start=bare)
    assert p.path is None and p.root == bare.resolve()
    assert p == Project(root=bare.resolve())


def test_search_stops_at_home(in_tmp):
    write(in_tmp / "swiftrun.toml", "[cluster]\nworkers = 9\n")    # above HOME: not looked at
    start = in_tmp / "home" / "work"
    start.mkdir()
    assert find_project_file(start) is None
    assert load_project(start=start).path is None


def test_discovery_defaults_to_cwd(in_tmp, monkeypatch):
    write(in_tmp / "home" / "p" / "swiftrun.toml", "[cluster]\nworkers = 4\n")
    monkeypatch.chdir(in_tmp / "home" / "p")
    assert load_project().cluster.workers == 4


def test_discovered_file_errors_still_name_the_file(in_tmp):
    write(in_tmp / "home" / "p" / "swiftrun.toml", "[cluster]\nworkers = -3\n")
    message = error_of(start=in_tmp / "home" / "p")
    assert "swiftrun.toml:2: [cluster] workers = -3" in message


# --------------------------------------------------------------------------------------------
# Overrides
# --------------------------------------------------------------------------------------------

def test_overrides_apply_after_the_file(in_tmp):
    write(in_tmp / "swiftrun.toml", '[cluster]\nname = "tutorial"\nworkers = 2\n')
    p = load_project(in_tmp / "swiftrun.toml",
                     overrides={"cluster.name": "ci-42", "cluster.keep": True, "cluster.workers": None})
    assert (p.cluster.name, p.cluster.keep, p.cluster.workers) == ("ci-42", True, 2)


def test_overrides_without_a_file(in_tmp):
    p = load_project(start=in_tmp / "home", overrides={"ec2.region": "us-east-2", "ec2.spot": "true",
                                                       "cluster.workers": "5", "sync.exclude": "a,b"})
    assert (p.ec2.region, p.ec2.spot, p.cluster.workers, p.sync.exclude) == ("us-east-2", True, 5, ("a", "b"))


def test_override_is_validated_and_named(in_tmp):
    message = error_of(start=in_tmp / "home", overrides={"cluster.name": "CI 42"},
                       override_labels={"cluster.name": "$SWIFTRUN_CLUSTER"})
    assert message.startswith("$SWIFTRUN_CLUSTER: cluster.name = \"CI 42\":")
    assert message.endswith("(use cluster.name=ci-42)")


def test_override_default_label(in_tmp):
    message = error_of(start=in_tmp / "home", overrides={"cluster.workers": -2})
    assert message.startswith("override cluster.workers: cluster.workers = -2: must be")


def test_unknown_override_key(in_tmp):
    message = error_of(start=in_tmp / "home", overrides={"cluster.worker": 3})
    assert "cluster.worker" in message and "did you mean cluster.workers?" in message


def test_override_cross_checks(in_tmp):
    write(in_tmp / "swiftrun.toml", "[cluster]\nmin_workers = 2\n")
    message = error_of(in_tmp / "swiftrun.toml", overrides={"cluster.workers": 1})
    assert message.startswith("swiftrun.toml:2: [cluster] min_workers = 2: is more than workers = 1")


def test_env_overrides():
    overrides, labels = env_overrides({"SWIFTRUN_CLUSTER": "ci-42", "SWIFTRUN_WORKERS": "", "X": "1"})
    assert overrides == {"cluster.name": "ci-42"} and labels == {"cluster.name": "$SWIFTRUN_CLUSTER"}
    overrides, _ = env_overrides({"SWIFTRUN_IMAGE": "ami-0123", "SWIFTRUN_SWIFT_URL": "https://x/s.tgz",
                                  "SWIFTRUN_SWIFT_SHA256": "ab" * 32})
    assert overrides == {"ec2.image": "ami-0123", "swift.install_url": "https://x/s.tgz",
                         "swift.install_sha256": "ab" * 32}


# --------------------------------------------------------------------------------------------
# The tutorial's configs
# --------------------------------------------------------------------------------------------

TUTORIAL = """\
# Set following config with an absolute path to the credentials file
AWS_CREDENTIALS_FILE=/path/to/credentials.csv

# Set the number of worker nodes required (limited by your account quotas)
AWS_WORKER_COUNT=2

# Set the name for the keypair used to ssh to instances
# A key will be generated in path if none are found
AWS_KEYPAIR_NAME=mykeypair
# Set following config with an absolute path to where you want the keypair file
AWS_KEYPAIR_FILE=/path/to/mykeypair.pem

#ubuntu is the default user on Ubuntu nodes
AWS_USERNAME=ubuntu

# Ubuntu Server 14.04 LTS (PV), SSD Volume Type - ami-c9d497f9 (64-bit)
HEADNODE_IMAGE=ami-c9d497f9
# Legal machine types : t1.micro | m1.small | m1.medium | m1.large
HEADNODE_MACHINE_TYPE=t1.micro

WORKER_IMAGE=ami-c9d497f9
WORKER_MACHINE_TYPE=t1.micro

# The following allows a script to executed on the worker at boot time
# WORKER_INIT_SCRIPT=foo.sh
# Do not change following parameters
AWS_REGION=us-west-2
SECURITY_GROUP=swift_security_group1
"""


def tutorial(in_tmp, **replace) -> Path:
    text = TUTORIAL.replace("/path/to/", str(in_tmp) + "/")
    for old, new in replace.items():
        text = text.replace(old, new)
    write(in_tmp / "credentials.csv", "User name,Password,Access key ID,Secret access key,Console login link\n"
                                       "u,,AKIAEXAMPLE,s3cr3t,https://x\n")
    return write(in_tmp / "configs", text)


def test_tutorial_configs_loads(in_tmp):
    p = load_project(tutorial(in_tmp))
    assert p.path == (in_tmp / "configs").resolve()
    assert p.cluster.workers == 2 and p.cluster.worker_concurrency == 4
    assert p.ec2.credentials_file == (in_tmp / "credentials.csv").resolve()
    assert p.ec2.key_name == "mykeypair" and p.ssh.key_file == (in_tmp / "mykeypair.pem").resolve()
    assert (p.ec2.image, p.ec2.worker_image) == ("ami-c9d497f9", "ami-c9d497f9")
    assert (p.ec2.headnode_type, p.ec2.worker_type) == ("t1.micro", "t1.micro")
    assert p.ec2.region == "us-west-2" and p.ec2.security_group == "swift_security_group1"
    assert p.ssh.user == "ubuntu"
    assert any("init --from configs" in w for w in p.warnings)


def test_tutorial_placeholder_credentials_path_is_reported(in_tmp):
    write(in_tmp / "configs", TUTORIAL)
    message = error_of(in_tmp / "configs")
    assert_message(message, where="configs:2", key="AWS_CREDENTIALS_FILE=/path/to/credentials.csv",
                   fix="IAM console")


def test_legacy_syntax_variants(in_tmp, monkeypatch):
    monkeypatch.setenv("KEYS", str(in_tmp / "keys"))
    write(in_tmp / "init.sh", "true\n")
    write(in_tmp / "configs", """
        export AWS_WORKER_COUNT=3   # three workers
        AWS_USERNAME="ec2-user"
        AWS_KEYPAIR_NAME='my pair'
        AWS_KEYPAIR_FILE=$KEYS/${AWS_KEYPAIR_NAME}.pem
        AWS_CREDENTIALS_FILE=
        WORKER_INIT_SCRIPT=$PWD/init.sh
        WORKER_CONCURRENCY=8
        """)
    p = load_project(in_tmp / "configs")
    assert p.cluster.workers == 3 and p.ssh.user == "ec2-user" and p.ec2.key_name == "my pair"
    assert p.ssh.key_file == (in_tmp / "keys" / "my pair.pem").resolve()
    assert p.ec2.credentials_file is None
    assert p.ec2.worker_init_script == (in_tmp / "init.sh").resolve()
    assert p.cluster.worker_concurrency == 8


def test_legacy_tilde_and_home(in_tmp):
    write(in_tmp / "configs", "AWS_KEYPAIR_FILE=~/.ssh/k.pem\nAWS_CREDENTIALS_FILE=$HOME/c.csv\n")
    write(in_tmp / "home" / "c.csv", "Access key ID,Secret access key\nA,B\n")
    p = load_project(in_tmp / "configs")
    assert p.ssh.key_file == (in_tmp / "home" / ".ssh" / "k.pem").resolve()
    assert p.ec2.credentials_file == (in_tmp / "home" / "c.csv").resolve()


def test_legacy_extras_from_later_tutorial_versions(in_tmp):
    write(in_tmp / "configs", """
        AWS_KEYPAIR_NAME=swift-test-pair
        AWS_KEYPAIR_DIR=./keys
        WORKER_REQUEST={'type':'Spot', 'price':'1.0'}
        WORKER_DISK=500 /dev/sdb1 /scratch
        SERVICE_TYPE=coasters
        AWS_DRY_RUN=False
        WORKER_IMAGE=ami-c9d497f9
        WORKER_IMAGE=ami-5189a661
        """)
    p = load_project(in_tmp / "configs")
    assert p.ec2.spot is True and p.ec2.worker_image == "ami-5189a661"
    assert p.ssh.key_file == (in_tmp / "keys" / "swift-test-pair.pem").resolve()
    notes = " ".join(p.warnings)
    assert "configs:3: WORKER_REQUEST price ignored" in notes
    assert "configs:4: WORKER_DISK is ignored" in notes
    assert "configs:8: WORKER_IMAGE is set again" in notes


@pytest.mark.parametrize("line, key, fix", [
    ("AWS_WORKER_COUNT=-1", "AWS_WORKER_COUNT=-1", "set AWS_WORKER_COUNT=2, or 0 for a headnode only"),
    ("AWS_WORKER_COUNT=two", "AWS_WORKER_COUNT=two", "set AWS_WORKER_COUNT=2"),
    ("WORKER_CONCURRENCY=0", "WORKER_CONCURRENCY=0", "set WORKER_CONCURRENCY=4"),
    ("AWS_REGION=oregon", "AWS_REGION=oregon", "set AWS_REGION="),
    ("HEADNODE_MACHINE_TYPE=large", "HEADNODE_MACHINE_TYPE=large", "set HEADNODE_MACHINE_TYPE=t3.small"),
    ("HEADNODE_IMAGE=ubuntu", "HEADNODE_IMAGE=ubuntu", "set HEADNODE_IMAGE=auto"),
    ("WORKER_INIT_SCRIPT=foo.sh", "WORKER_INIT_SCRIPT=foo.sh", "create the script"),
    ("AWS_WORKER_COUNTS=2", "AWS_WORKER_COUNTS", "did you mean AWS_WORKER_COUNT?"),
    ("GCE_PROJECTID=x", "GCE_PROJECTID", "known keys:"),
    ("just some words", "just some words", "KEY=VALUE"),
    ('AWS_USERNAME="ubuntu', "AWS_USERNAME", "end the value with"),
    ("AWS_KEYPAIR_FILE=$NOPE_NOT_SET/k.pem", "$NOPE_NOT_SET", "set NOPE_NOT_SET earlier"),
    ("AWS_KEYPAIR_FILE=$(pwd)/k.pem", "AWS_KEYPAIR_FILE", "write the value out"),
    ("AWS_DRY_RUN=True", "AWS_DRY_RUN", "remove the line"),
    ("SERVICE_TYPE=slurm", "SERVICE_TYPE", "SERVICE_TYPE=coasters"),
    ("WORKER_REQUEST=spot please", "WORKER_REQUEST", "{'type':'Spot'}"),
])
def test_bad_legacy_lines(in_tmp, monkeypatch, line, key, fix):
    monkeypatch.delenv("NOPE_NOT_SET", raising=False)
    write(in_tmp / "configs", f"# tutorial\nAWS_USERNAME=ubuntu\n{line}\n")
    message = error_of(in_tmp / "configs")
    assert_message(message, where="configs:3", key=key, fix=fix)


def test_legacy_file_detected_by_content(in_tmp):
    write(in_tmp / "cluster.env", "AWS_WORKER_COUNT=5\n# comment\n")
    assert load_project(in_tmp / "cluster.env").cluster.workers == 5


def test_toml_detected_by_content_without_suffix(in_tmp):
    write(in_tmp / "project.cfg", "[cluster]\nworkers = 5\n")
    assert load_project(in_tmp / "project.cfg").cluster.workers == 5


def test_legacy_keys_cover_the_brief():
    assert set(LEGACY_KEYS) == {
        "AWS_CREDENTIALS_FILE", "AWS_WORKER_COUNT", "AWS_KEYPAIR_NAME", "AWS_KEYPAIR_FILE", "AWS_USERNAME",
        "AWS_REGION", "SECURITY_GROUP", "HEADNODE_IMAGE", "WORKER_IMAGE", "HEADNODE_MACHINE_TYPE",
        "WORKER_MACHINE_TYPE", "WORKER_INIT_SCRIPT", "WORKER_CONCURRENCY"}


def test_legacy_with_overrides(in_tmp):
    p = load_project(tutorial(in_tmp), overrides={"cluster.name": "ci-1", "cluster.workers": 0})
    assert (p.cluster.name, p.cluster.workers) == ("ci-1", 0)
