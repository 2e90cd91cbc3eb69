"""Runner pieces that need no cloud: swift argument handling, what a sync may never upload."""

from __future__ import annotations

from pathlib import Path

import pytest

from swiftrun.errors import ConfigError
from swiftrun.node.layout import remote_root
from swiftrun.project import Project, SwiftSettings
from swiftrun.run.control import rq
from swiftrun.run.runner import swift_args, sync_excludes
from swiftrun.sync import scan
from swiftrun.sync.ignore import IgnoreRules


def _private_key() -> str:
    """A freshly made, unprotected OpenSSH private key (the loader checks key_file's content)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption()).decode()


def test_swift_args_merge_project_and_command_line():
    project = Project(root=Path("."), swift=SwiftSettings(args={"nsim": 10, "verbose": True}))
    assert swift_args(project, ()) == ["-nsim=10", "-verbose=true"]
    assert swift_args(project, ("-nsim=3", "-steps=2")) == ["-nsim=3", "-verbose=true", "-steps=2"]
    with pytest.raises(ConfigError, match="-name=value"):
        swift_args(project, ("nsim=3",))


def test_state_home_inside_script_dir_is_never_synced(tmp_path, monkeypatch):
    state = tmp_path / ".swiftrun-state"
    monkeypatch.setenv("SWIFTRUN_HOME", str(state))
    (state / "keys").mkdir(parents=True)
    (state / "keys" / "swiftrun-x.pem").write_text("PRIVATE")
    (tmp_path / "p4.swift").write_text("type file;\n")
    excludes = sync_excludes(Project(root=tmp_path), tmp_path)
    assert "/.swiftrun-state/" in excludes
    entries = scan(tmp_path, IgnoreRules.from_dir(tmp_path, extra=excludes))
    assert "p4.swift" in entries
    assert not any(rel.startswith(".swiftrun-state") for rel in entries)


def test_remote_root_is_quoted_but_home_expands(tmp_path):
    odd = tmp_path / "my dir;rm -rf"
    odd.mkdir()
    root = remote_root(Project(root=odd), odd)
    assert root.startswith("~/swiftrun/") and ";" not in root and " " not in root
    assert rq("~/a b") == '"$HOME"/\'a b\''


def test_tutorial_credentials_and_key_beside_the_script_are_never_synced(tmp_path):
    from swiftrun.project import load_project

    (tmp_path / "configs").write_text(
        "AWS_CREDENTIALS_FILE=$PWD/credentials.csv\nAWS_KEYPAIR_FILE=$PWD/pair.pem\n"
        "AWS_WORKER_COUNT=1\n")
    (tmp_path / "credentials.csv").write_text("Access key ID,Secret access key\nAKIAX,sec\n")
    (tmp_path / "pair.pem").write_text(_private_key())
    (tmp_path / "p4.swift").write_text("type file;\n")
    project = load_project(tmp_path / "configs")
    entries = scan(tmp_path, IgnoreRules.from_dir(tmp_path, extra=sync_excludes(project, tmp_path)))
    assert "p4.swift" in entries
    assert "credentials.csv" not in entries and "pair.pem" not in entries


def test_secret_files_with_glob_characters_are_never_synced(tmp_path):
    """The excludes are literal paths: a key named my[prod].pem or *.pem is not a pattern."""
    from swiftrun.project import load_project

    for key in ("my[prod].pem", "*.pem", "a?b.pem"):
        d = tmp_path / f"case{len(key)}-{key.count('[')}"
        d.mkdir()
        (d / key).write_text(_private_key())
        (d / "other.pem").write_text("not the key")
        (d / "swiftrun.toml").write_text(f'[ssh]\nkey_file = "{d / key}"\n')
        project = load_project(d / "swiftrun.toml")
        entries = scan(d, IgnoreRules.from_dir(d, extra=sync_excludes(project, d)))
        assert key not in entries, (key, sorted(entries))
        assert "other.pem" in entries, (key, sorted(entries))   # only the key itself
