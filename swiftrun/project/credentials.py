"""AWS access keys from the IAM console's CSV (the tutorial's ``credentials.csv``).

Two layouts exist: the old user-creation download
``User name,Password,Access key ID,Secret access key,Console login link`` and the newer access-key
download ``Access key ID,Secret access key`` (older still: ``User Name,Access Key Id,Secret Access
Key``). Columns are found by header name, so any of them works. Excel-saved files (UTF-8 BOM,
CRLF) are fine.

Neither the secret nor the key id ever appears in an error message or a repr.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from swiftrun.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from swiftrun.project.model import Project

_ID_NAMES = {"access key id", "access key"}
_SECRET_NAMES = {"secret access key", "secret key"}
_EXPECTED = "Access key ID,Secret access key"
_FIX_DOWNLOAD = ("download a new access key CSV from the IAM console "
                 "(Security credentials > Access keys > Create access key)")


class AccessKey(NamedTuple):
    """(access key id, secret): unpacks like a tuple; its repr shows neither."""

    access_key_id: str
    secret_access_key: str

    def __repr__(self) -> str:
        return "AccessKey(access_key_id=<redacted>, secret_access_key=<redacted>)"

    __str__ = __repr__


def _norm(cell: str) -> str:
    text = cell.replace("\ufeff", "").replace("_", " ").strip().strip('"').lower()
    text = re.sub(r"\s+", " ", text)
    return text.removeprefix("aws ")


def _safe_header_names(row: list[str]) -> str:
    """The header cells that cannot be a key or a secret (letters and spaces, not all caps)."""
    shown = []
    for cell in row:
        cell = cell.replace("\ufeff", "").strip()
        if re.fullmatch(r"[A-Za-z][A-Za-z ]{0,30}", cell) and not re.fullmatch(r"[A-Z0-9]+", cell):
            shown.append(cell)
        elif cell:
            shown.append("?")
    return ",".join(shown) or "nothing"


def _looks_like_data(row: list[str]) -> bool:
    return any(re.fullmatch(r"(AKIA|ASIA)[A-Z0-9]{12,}", c.strip()) or
               re.fullmatch(r"[A-Za-z0-9/+=]{30,}", c.strip()) for c in row)


def read_credentials_csv(path: Path | str) -> AccessKey:
    """(access key id, secret access key) from an IAM console CSV. Raises ConfigError."""
    p = Path(path).expanduser()
    name = str(path)

    def bad(problem: str, fix: str) -> ConfigError:
        return ConfigError(f"{name}: {problem}", hint=fix)

    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise bad("credentials file not found",
                  f"check [ec2] credentials_file / AWS_CREDENTIALS_FILE, or {_FIX_DOWNLOAD}") from None
    except IsADirectoryError:
        raise bad("is a directory, not a credentials CSV", "give the path of the .csv file") from None
    except PermissionError:
        raise bad("permission denied reading the credentials file", f"chmod u+r {name}") from None
    except OSError as exc:
        raise bad(f"cannot read the credentials file ({exc.strerror or 'I/O error'})",
                  "check the path and the disk") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise bad("is not a text CSV file", _FIX_DOWNLOAD) from None
    try:
        rows = [r for r in csv.reader(io.StringIO(text, newline="")) if any(c.strip() for c in r)]
    except csv.Error:
        raise bad("is not a valid CSV file", _FIX_DOWNLOAD) from None

    if not rows:
        raise bad(f"is empty: no header line (expected `{_EXPECTED}`)", _FIX_DOWNLOAD)
    header = [_norm(c) for c in rows[0]]
    id_col = next((i for i, h in enumerate(header) if h in _ID_NAMES), None)
    secret_col = next((i for i, h in enumerate(header) if h in _SECRET_NAMES), None)
    if id_col is None or secret_col is None:
        if _looks_like_data(rows[0]):
            raise bad(f"has no header line (the first line holds data)",
                      f"add the line `{_EXPECTED}` at the top, or {_FIX_DOWNLOAD}")
        raise bad(f"wrong columns: found {_safe_header_names(rows[0])}, need `Access key ID` and "
                  "`Secret access key`", f"use the CSV the IAM console downloads, or {_FIX_DOWNLOAD}")
    if len(rows) < 2:
        raise bad("has a header but no data row (no access key in it)", _FIX_DOWNLOAD)
    row = rows[1]
    if len(row) <= max(id_col, secret_col):
        raise bad(f"line 2 has {len(row)} columns, the header {len(header)}",
                  "keep the file as the IAM console wrote it (commas in every row)")
    key_id, secret = row[id_col].strip(), row[secret_col].strip()
    if not key_id or not secret:
        missing = "Access key ID" if not key_id else "Secret access key"
        raise bad(f"the {missing} column of line 2 is empty", _FIX_DOWNLOAD)
    if re.search(r"\s", key_id) or re.search(r"\s", secret):
        raise bad("the access key or secret on line 2 contains spaces",
                  "keep the file as the IAM console wrote it")
    if re.fullmatch(r"(AKIA|ASIA)[A-Z0-9]{12,}", secret) and not re.fullmatch(r"(AKIA|ASIA)[A-Z0-9]{12,}", key_id):
        raise bad("the Access key ID and Secret access key columns look swapped",
                  "fix the header so each name is above its value")
    return AccessKey(key_id, secret)


def credential_source_label(project: "Project | None") -> str:
    """Where boto3's credentials come from, for messages (`doctor`, errors). Never the key itself."""
    if project is not None and project.ec2.credentials_file:
        return f"the access key in {project.ec2.credentials_file} ([ec2] credentials_file)"
    if project is not None and project.ec2.profile:
        return f"AWS profile {project.ec2.profile!r} ([ec2] profile)"
    return "the standard AWS credential chain (environment, ~/.aws, instance role)"


def session_kwargs(project: "Project") -> dict:
    """Keyword arguments for ``boto3.Session`` from the project. Holds the secret: never log it."""
    kwargs: dict = {"region_name": project.ec2.region}
    if project.ec2.credentials_file:
        key = read_credentials_csv(project.ec2.credentials_file)
        kwargs["aws_access_key_id"] = key.access_key_id
        kwargs["aws_secret_access_key"] = key.secret_access_key
    elif project.ec2.profile:
        kwargs["profile_name"] = project.ec2.profile
    return kwargs
