"""Secrets by content: no file that holds a private key or AWS credentials goes up to a node.

Names are not enough (``id_rsa`` renamed ``key.txt``, a ``credentials.csv`` under another name, a
symlink to ``~/.aws/credentials``), so the head of every file an upload sends is read. What
counts as a secret: a PEM/OpenSSH private key block; an AWS secret access key assignment
(``aws_secret_access_key = ...``, the console's ``Secret access key`` CSV header); an access key
id (AKIA/ASIA...) next to a 40-character secret. A public key, an access key id alone, or the
word "secret" do not count. The user's way out is named in the error: leave the file out with
.swiftignore or [sync] exclude.
"""

from __future__ import annotations

import os
import re

from swiftrun.errors import ConfigError

HEAD_BYTES = 64 * 1024          # secrets sit at the top of the files that hold them

_PATTERNS = [
    ("a private key", re.compile(rb"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----")),
    ("an AWS secret access key", re.compile(
        rb"(?i)aws_secret_access_key\s*[=:]\s*['\"]?[A-Za-z0-9/+=]{40}")),
    ("AWS credentials (the console's access key CSV)", re.compile(
        rb"(?i)access key id\s*,\s*secret access key")),
    ("an AWS access key with its secret", re.compile(
        rb"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b[^\n]{0,200}?(?<![A-Za-z0-9/+])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+])")),
]


def secret_in(path: str) -> str | None:
    """What secret the file at ``path`` holds (its head), or None. Unreadable: None (the upload
    itself reports it)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(HEAD_BYTES)
    except OSError:
        return None
    return secret_in_bytes(head)


def secret_in_bytes(head: bytes) -> str | None:
    """What secret ``head`` holds, or None. Each pattern needs a literal that plain substring
    searches find at C speed, so a file without any of them costs no regex at all (the four
    regexes took 0.5 s of a 20 000-file upload; the literals ~0.02 s)."""
    if not (b"PRIVATE KEY" in head or b"AKIA" in head or b"ASIA" in head):
        low = head.lower()
        if b"aws_secret_access_key" not in low and b"access key id" not in low:
            return None
    for what, pattern in _PATTERNS:
        if pattern.search(head):
            return what
    return None


def refuse_secrets(local_root, rels) -> None:
    """ConfigError naming the first of ``rels`` (files under ``local_root``) that holds a secret."""
    for rel in rels:
        what = secret_in(os.path.join(str(local_root), rel))
        if what:
            raise ConfigError(
                f"{os.path.join(str(local_root), rel)} holds {what}: swiftrun never uploads secrets "
                "to the nodes",
                hint=f"leave it out with a line '/{rel}' in .swiftignore (or [sync] exclude), or move "
                     "it out of the script directory")
