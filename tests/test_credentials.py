"""read_credentials_csv: the IAM console's CSV layouts; no error or repr ever shows the key."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from swiftrun.errors import ConfigError
from swiftrun.project import Ec2Settings, Project
from swiftrun.project.credentials import AccessKey, credential_source_label, read_credentials_csv, session_kwargs

KEY_ID = "AKIAIOSFODNN7EXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


def csv_file(tmp_path: Path, content: str | bytes, name: str = "credentials.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


def error_of(path) -> str:
    with pytest.raises(ConfigError) as info:
        read_credentials_csv(path)
    assert info.value.exit_code == 2
    message = str(info.value)
    assert "\n" not in message and "\r" not in message
    assert SECRET not in message and KEY_ID not in message
    assert SECRET[:12] not in message and KEY_ID[4:] not in message
    assert str(path) in message                       # names the file
    assert re.search(r"\(.+\)$", message)             # and says what to do
    return message


@pytest.mark.parametrize("content", [
    # the newer access-key download
    f"Access key ID,Secret access key\n{KEY_ID},{SECRET}\n",
    # the old user-creation download
    "User name,Password,Access key ID,Secret access key,Console login link\n"
    f"swift,,{KEY_ID},{SECRET},https://123456789012.signin.aws.amazon.com/console\n",
    # the oldest: what the tutorial's configurator.py read
    f'"User Name","Access Key Id","Secret Access Key"\n"swift",{KEY_ID},{SECRET}\n',
    # Excel: BOM and CRLF; and a trailing blank line
    f"\ufeffAccess key ID,Secret access key\r\n{KEY_ID},{SECRET}\r\n\r\n",
    # columns in another order
    f"Secret access key,Access key ID\n{SECRET},{KEY_ID}\n",
])
def test_csv_variants(tmp_path, content):
    key = read_credentials_csv(csv_file(tmp_path, content))
    assert key == (KEY_ID, SECRET)
    key_id, secret = key
    assert (key.access_key_id, key.secret_access_key) == (key_id, secret) == (KEY_ID, SECRET)


def test_repr_never_shows_the_key(tmp_path):
    key = read_credentials_csv(csv_file(tmp_path, f"Access key ID,Secret access key\n{KEY_ID},{SECRET}\n"))
    for text in (repr(key), str(key), f"{key}", repr([key])):
        assert SECRET not in text and KEY_ID not in text
    assert isinstance(key, AccessKey) and isinstance(key, tuple)


def test_tilde_path(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    csv_file(tmp_path, f"Access key ID,Secret access key\n{KEY_ID},{SECRET}\n")
    assert read_credentials_csv("~/credentials.csv") == (KEY_ID, SECRET)


def test_missing_file(tmp_path):
    assert "not found" in error_of(tmp_path / "nope.csv")


def test_directory(tmp_path):
    assert "directory" in error_of(tmp_path)


def test_empty_file_has_no_header(tmp_path):
    assert "no header" in error_of(csv_file(tmp_path, ""))


def test_blank_lines_only(tmp_path):
    assert "no header" in error_of(csv_file(tmp_path, "\r\n\r\n"))


def test_header_without_data_row(tmp_path):
    assert "no data row" in error_of(csv_file(tmp_path, "Access key ID,Secret access key\n"))


def test_data_without_header(tmp_path):
    message = error_of(csv_file(tmp_path, f"{KEY_ID},{SECRET}\n"))
    assert "no header" in message and "Access key ID,Secret access key" in message


def test_data_without_header_unusual_key(tmp_path):
    # all-letter cells could be a key id: they must not be echoed either (a documentation-style
    # fake ending in EXAMPLE, like AWS's own AKIAIOSFODNN7EXAMPLE)
    error_of(csv_file(tmp_path, f"AKIAABCDEFGHIEXAMPLE,{SECRET}\n"))


def test_wrong_columns(tmp_path):
    message = error_of(csv_file(tmp_path, "User name,Password\nswift,hunter2\n"))
    assert "wrong columns" in message and "User name,Password" in message
    assert "hunter2" not in message


def test_wrong_columns_never_echo_key_like_cells(tmp_path):
    message = error_of(csv_file(tmp_path, f"name,ABCDEFGHIJKLMNOPQRST\nx,{SECRET}\n"))
    assert "wrong columns" in message and "ABCDEFGHIJKLMNOPQRST" not in message


def test_short_data_row(tmp_path):
    assert "columns" in error_of(csv_file(tmp_path, f"User name,Access key ID,Secret access key\nswift,{KEY_ID}\n"))


def test_empty_secret(tmp_path):
    assert "Secret access key" in error_of(csv_file(tmp_path, f"Access key ID,Secret access key\n{KEY_ID},\n"))


def test_swapped_columns(tmp_path):
    assert "swapped" in error_of(csv_file(tmp_path, f"Access key ID,Secret access key\n{SECRET},{KEY_ID}\n"))


def test_spaces_inside_values(tmp_path):
    error_of(csv_file(tmp_path, f"Access key ID,Secret access key\n{KEY_ID},{SECRET[:20]} {SECRET[20:]}\n"))


def test_binary_file(tmp_path):
    assert "not a text CSV" in error_of(csv_file(tmp_path, b"\xff\xfe\x00\x01" + SECRET.encode()))


def test_credential_source_label_and_session_kwargs(tmp_path):
    path = csv_file(tmp_path, f"Access key ID,Secret access key\n{KEY_ID},{SECRET}\n")
    with_file = Project(root=tmp_path, ec2=Ec2Settings(credentials_file=path, region="eu-west-1"))
    label = credential_source_label(with_file)
    assert str(path) in label and SECRET not in label and KEY_ID not in label
    assert session_kwargs(with_file) == {"region_name": "eu-west-1", "aws_access_key_id": KEY_ID,
                                         "aws_secret_access_key": SECRET}
    with_profile = Project(root=tmp_path, ec2=Ec2Settings(profile="lab"))
    assert "lab" in credential_source_label(with_profile)
    assert session_kwargs(with_profile) == {"region_name": "us-west-2", "profile_name": "lab"}
    assert "credential chain" in credential_source_label(Project(root=tmp_path))
    assert session_kwargs(Project(root=tmp_path)) == {"region_name": "us-west-2"}
