"""render_init and convert_legacy: the files they write load back to the intended Project."""

from __future__ import annotations

import dataclasses
import json
import tomllib
from pathlib import Path

import pytest

from swiftrun.errors import ConfigError
from swiftrun.project import SECTIONS, ClusterSettings, Project, load_project, sanitize_cluster_name
from swiftrun.project.initfile import KEY_DOCS, convert_legacy, render_init


@pytest.fixture(autouse=True)
def in_tmp(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_init_file_loads_to_the_defaults(in_tmp):
    text = render_init("tutorial")
    (in_tmp / "swiftrun.toml").write_text(text)
    p = load_project(in_tmp / "swiftrun.toml")
    expected = Project(root=in_tmp.resolve(), path=(in_tmp / "swiftrun.toml").resolve(),
                       cluster=ClusterSettings(name="tutorial"))
    assert p == expected
    assert p.warnings == ()


def test_init_file_has_every_section_and_key_with_a_comment():
    text = render_init("tutorial")
    data = tomllib.loads(text)
    keys_by_section: dict[str, list[str]] = {}
    section = None
    for line in text.splitlines():
        if line.startswith("["):
            section = line.split("]")[0].strip("[")
            keys_by_section[section] = []
        elif section and " = " in line:
            assert "  # " in line, line                      # a comment on every key
            keys_by_section[section].append(line.lstrip("# ").split(" = ")[0])
    assert list(keys_by_section) == list(SECTIONS)
    for name, cls in SECTIONS.items():
        assert keys_by_section[name] == [f.name for f in dataclasses.fields(cls)]
        for f in dataclasses.fields(cls):
            assert (name, f.name) in KEY_DOCS
            if f.name != "min_workers":                       # no TOML null: shown commented out
                assert f.name in data[name]
    assert data["cluster"]["idle_timeout"] == "30m" and data["cluster"]["max_lifetime"] == "8h"


def test_static_init_file_loads(in_tmp):
    (in_tmp / "swiftrun.toml").write_text(render_init("lab", provider="static"))
    p = load_project(in_tmp / "swiftrun.toml")
    assert p.cluster.provider == "static" and p.static.headnode


@pytest.mark.parametrize("name", ["My Project", "", "-x", "a" * 41])
def test_init_refuses_bad_names(name):
    with pytest.raises(ConfigError) as info:
        render_init(name)
    assert "\n" not in str(info.value) and "use " in str(info.value)


def test_init_refuses_bad_provider():
    with pytest.raises(ConfigError):
        render_init("x", provider="gce")


CONFIGS = """\
# the tutorial's configs, as edited by a user
AWS_CREDENTIALS_FILE=$PWD/credentials.csv
AWS_WORKER_COUNT=5
AWS_KEYPAIR_NAME=swift-test-pair
AWS_KEYPAIR_FILE=~/.ssh/swift-test-pair.pem
AWS_USERNAME=ubuntu
AWS_REGION=us-east-1
SECURITY_GROUP=swift_security_group1
HEADNODE_IMAGE=ami-e7b8c0d7
WORKER_IMAGE=ami-8bb8c0bb
HEADNODE_MACHINE_TYPE=c3.xlarge
WORKER_MACHINE_TYPE=m1.small
WORKER_INIT_SCRIPT=scripts/init.sh
WORKER_CONCURRENCY=2
WORKER_REQUEST={'type':'Spot', 'price':'1.0'}
"""


def make_configs(tmp: Path) -> Path:
    (tmp / "scripts").mkdir()
    (tmp / "scripts" / "init.sh").write_text("true\n")
    (tmp / "credentials.csv").write_text("Access key ID,Secret access key\nAKIAEXAMPLE,secret\n")
    path = tmp / "configs"
    path.write_text(CONFIGS)
    return path


def same_but_the_name(converted, legacy) -> bool:
    cluster = dataclasses.replace(converted.cluster, name=legacy.cluster.name)
    return dataclasses.replace(converted, root=legacy.root, path=legacy.path, cluster=cluster) == legacy


def test_convert_legacy_round_trip(in_tmp):
    configs = make_configs(in_tmp)
    legacy = load_project(configs)
    text = convert_legacy(configs)
    (in_tmp / "swiftrun.toml").write_text(text)
    converted = load_project(in_tmp / "swiftrun.toml")
    # the cluster is named after the directory, as `swiftrun init` does; all else is the configs'
    assert converted.cluster.name == sanitize_cluster_name(in_tmp.name)
    assert same_but_the_name(converted, legacy)
    assert converted.cluster.workers == 5 and converted.ec2.spot is True
    assert converted.ssh.key_file == (in_tmp / "home" / ".ssh" / "swift-test-pair.pem").resolve()
    # explicit settings are written out, with the configs key they came from
    assert "workers = 5" in text and "(was AWS_WORKER_COUNT)" in text
    assert 'region = "us-east-1"' in text and 'credentials_file = "credentials.csv"' in text
    assert 'key_file = "home/.ssh/swift-test-pair.pem"' in text    # inside the project: relative
    # untouched defaults stay commented out, so later defaults still apply
    assert '# site = "cloud-static"' in text
    assert "price ignored" in text                             # notes carried over as comments


def test_convert_legacy_to_another_directory(in_tmp):
    configs = make_configs(in_tmp)
    elsewhere = in_tmp / "elsewhere"
    elsewhere.mkdir()
    text = convert_legacy(configs, dest_dir=elsewhere)
    (elsewhere / "swiftrun.toml").write_text(text)
    converted = load_project(elsewhere / "swiftrun.toml")
    legacy = load_project(configs)
    assert converted.cluster.name == "elsewhere" and same_but_the_name(converted, legacy)


def test_convert_writes_paths_under_home_with_a_tilde(in_tmp):
    proj = in_tmp / "home" / "proj"
    proj.mkdir()
    (proj / "configs").write_text("AWS_KEYPAIR_FILE=~/.ssh/k.pem\n")
    text = convert_legacy(proj / "configs")
    assert 'key_file = "~/.ssh/k.pem"' in text
    (proj / "swiftrun.toml").write_text(text)
    assert load_project(proj / "swiftrun.toml").ssh.key_file == (in_tmp / "home" / ".ssh" / "k.pem").resolve()


def test_convert_the_defaults_only_file(in_tmp):
    (in_tmp / "configs").write_text("# nothing set\nAWS_USERNAME=ubuntu\n")
    text = convert_legacy(in_tmp / "configs")
    (in_tmp / "swiftrun.toml").write_text(text)
    assert load_project(in_tmp / "swiftrun.toml").ssh.user == "ubuntu"


def test_convert_legacy_reports_bad_configs(in_tmp):
    (in_tmp / "configs").write_text("AWS_WORKER_COUNT=-1\n")
    with pytest.raises(ConfigError) as info:
        convert_legacy(in_tmp / "configs")
    assert str(info.value).startswith("configs:1: AWS_WORKER_COUNT=-1")


def test_init_from_the_tutorial_configs_replaces_what_no_longer_boots(tmp_path, aws_env):
    """Issue 14 #9 and #8: `init --from configs` on the tutorial's own file. Its t1.micro and its
    2014 PV AMI are replaced by today's defaults, a warning line each; the cluster is named after
    the directory, as plain `init` does; and doctor says `up` will create the key file the
    configs names (its comment promises "a key will be generated in path")."""
    from tests.support.cli import swiftrun
    from tests.test_project import TUTORIAL

    proj = tmp_path / "My Tutorial"
    proj.mkdir()
    (proj / "credentials.csv").write_text("Access key ID,Secret access key\nAKIAEXAMPLE,secret\n")
    key = tmp_path / "keys" / "mykeypair.pem"
    (proj / "configs").write_text(TUTORIAL.replace("/path/to/credentials.csv", "credentials.csv")
                                  .replace("/path/to/mykeypair.pem", str(key)))
    res = swiftrun("init", "--from", "configs", cwd=proj, env=aws_env)
    warnings = [ln for ln in res.stderr.splitlines() if ln.startswith("warning:")]
    assert len(warnings) == 4, res.stderr
    assert sum("t1.micro" in w and "retired" in w for w in warnings) == 2
    assert sum("ami-c9d497f9" in w and "2014" in w for w in warnings) == 2
    loaded = load_project(proj / "swiftrun.toml")
    assert (loaded.ec2.headnode_type, loaded.ec2.worker_type) == ("t3.small", "c5.large")
    assert loaded.ec2.image == "auto" and loaded.ec2.worker_image == ""
    assert loaded.cluster.name == "my-tutorial"
    out = swiftrun("doctor", "--json", cwd=proj, env=aws_env, check=False, timeout=120)
    checks = {c["name"]: c for c in json.loads(out.stdout)["checks"]}
    assert checks["key file"]["status"] == "ok", checks["key file"]
    assert "will create it" in checks["key file"]["detail"] and not key.exists()
