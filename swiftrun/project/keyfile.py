"""Is ``[ssh] key_file`` a private key swiftrun can use? Said once, at load, before anything runs.

EC2 needs its public half (ImportKeyPair) and every SSH connection runs OpenSSH in batch mode,
which can neither ask for a passphrase nor read a PuTTY file. What is checked here is the file's
content (no cryptography import: the header and the OpenSSH key blob are enough). ``content_problem``
is refused by the loader for every verb; ``mode_problem`` (group/other can read it, which OpenSSH
refuses) only by the verbs that connect with the key (``commands/_common.Env.will_connect``):
``down``, ``list`` and ``doctor`` never need it to connect, so they warn at most.
"""

from __future__ import annotations

import base64
import re
import shlex
import stat
from pathlib import Path

_PUBLIC = re.compile(r"^(ssh-(rsa|ed25519|dss)|ecdsa-sha2-\S+|sk-\S+@openssh\.com) AAAA")
_OPENSSH = re.compile(r"-----BEGIN OPENSSH PRIVATE KEY-----(.*?)-----END OPENSSH PRIVATE KEY-----", re.S)
_PEM = re.compile(r"-----BEGIN ((RSA|EC|DSA|ENCRYPTED) )?PRIVATE KEY-----")
_MAKE_ONE = "or leave key_file out to let swiftrun make one"


def _openssh_cipher(body: str) -> str | None:
    """The cipher name of an OpenSSH private key ("none" when unprotected); None if unreadable."""
    try:
        blob = base64.b64decode("".join(body.split()), validate=False)
    except ValueError:
        return None
    magic = b"openssh-key-v1\0"
    if not blob.startswith(magic) or len(blob) < len(magic) + 4:
        return None
    at = len(magic)
    size = int.from_bytes(blob[at:at + 4], "big")
    name = blob[at + 4:at + 4 + size]
    return name.decode("ascii", "replace") if len(name) == size else None


def content_problem(path: Path) -> tuple[str, str] | None:
    """(what is wrong, the fix) when the file is not an unprotected private key; None when it is
    one or does not exist (a missing file is the caller's business: swiftrun may create it)."""
    q = shlex.quote(str(path))
    if not path.exists() and not path.is_symlink():
        return None
    if path.is_dir():
        return "is a directory, not a private key file", "give the path of the key file itself"
    try:
        data = path.read_bytes()[:65536]
    except OSError as exc:
        return (f"cannot be read ({exc.strerror or exc})",
                f"check the path, or chmod u+r {q}")
    text = data.decode("utf-8", "replace").lstrip("\ufeff")
    head = text.lstrip()
    if not head:
        return "is empty", f"point key_file at your private key, {_MAKE_ONE}"
    if _PUBLIC.match(head) or head.startswith("---- BEGIN SSH2 PUBLIC KEY ----"):
        private = str(path)[:-4] if str(path).endswith(".pub") else "the file without .pub"
        return ("is the public half of a key (.pub); SSH needs the private one",
                f"point key_file at {private}")
    if head.startswith("PuTTY-User-Key-File-"):
        return ("is a PuTTY .ppk key, which OpenSSH cannot read",
                f"convert it: puttygen {q} -O private-openssh -o {shlex.quote(str(path.with_suffix('.pem')))}, "
                "and point key_file at the .pem")
    m = _OPENSSH.search(text)
    if m:
        cipher = _openssh_cipher(m.group(1))
        if cipher is None:
            return ("looks like an OpenSSH private key but its body is damaged",
                    f"copy the key file again, {_MAKE_ONE}")
        if cipher != "none":
            return _passphrase(q)
        return None
    pem = _PEM.search(text)
    if pem:
        if pem.group(2) == "ENCRYPTED" or re.search(r"^Proc-Type:\s*4,ENCRYPTED", text, re.M):
            return _passphrase(q)
        return None
    if "-----BEGIN CERTIFICATE-----" in text:
        return ("is a certificate, not a private key",
                f"point key_file at the private key (.pem) of the key pair, {_MAKE_ONE}")
    return ("is not a private key (no -----BEGIN ... PRIVATE KEY----- block)",
            f"point key_file at the private key (.pem) of the key pair, {_MAKE_ONE}")


def _passphrase(q: str) -> tuple[str, str]:
    return ("is protected by a passphrase, which swiftrun's SSH (batch mode) cannot type",
            f"remove it with ssh-keygen -p -N '' -f {q} on a copy and point key_file at it, {_MAKE_ONE}")


def mode_problem(path: Path) -> tuple[str, str] | None:
    """(what is wrong, the fix) when group or other may read the key: OpenSSH refuses it."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return None
    if mode & 0o077:
        q = shlex.quote(str(path))
        return (f"is mode {mode:04o}: group/other can read the private key, and OpenSSH "
                "refuses such a key", f"chmod 600 {q} (or `swiftrun doctor --fix`)")
    return None
