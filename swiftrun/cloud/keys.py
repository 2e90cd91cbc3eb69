"""The cluster's SSH key on this machine: make one, read its public half, match EC2's fingerprint.

EC2 shows a key pair's fingerprint in a format that depends on how the pair was made (imported or
EC2-made, RSA or ed25519); :func:`fingerprint_verdict` says whether a local private key is the
one behind a fingerprint, and only says "mismatch" when it is sure.
"""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path

from swiftrun.errors import ConfigError


def write_new_key(path: Path) -> str:
    """Make an ed25519 key; write the private half 0600 with O_EXCL (never overwrite); return public."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                           serialization.PublicFormat.OpenSSH).decode()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(private)
    return public + " swiftrun"


def public_key_of(path: Path) -> str:
    """The OpenSSH public key line of a private key file (ed25519, RSA or ECDSA; PEM or OpenSSH)."""
    from cryptography.hazmat.primitives import serialization

    data = Path(path).read_bytes()
    try:
        try:
            key = serialization.load_ssh_private_key(data, password=None)
        except ValueError:
            key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{path}: not an unencrypted private key ({exc}); set [ssh] key_file "
                          "to the key's .pem file") from None
    return key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                         serialization.PublicFormat.OpenSSH).decode()


def _fingerprints(path: Path) -> tuple[str, dict[str, set[str]]]:
    """(key type, {"hex": {...}, "b64": {...}}) of the fingerprints EC2 may show for this key.

    Imported RSA: MD5 of the public key's DER (SubjectPublicKeyInfo). EC2-made RSA: SHA-1 of the
    private key's PKCS#8 DER. ed25519: base64 SHA-256 of the OpenSSH public key blob (what
    ``ssh-keygen -l`` shows); moto shows the SHA-256 of the DER as hex.
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

    data = path.read_bytes()
    try:
        key = serialization.load_ssh_private_key(data, password=None)
    except ValueError:
        key = serialization.load_pem_private_key(data, password=None)
    pub = key.public_key()
    der = pub.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    blob = base64.b64decode(pub.public_bytes(serialization.Encoding.OpenSSH,
                                             serialization.PublicFormat.OpenSSH).split()[1])
    kind = "rsa" if isinstance(key, RSAPrivateKey) else (
        "ed25519" if isinstance(key, Ed25519PrivateKey) else "other")
    hexes = {hashlib.md5(der).hexdigest(), hashlib.sha256(der).hexdigest()}
    if kind == "rsa":
        pk8 = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        hexes.add(hashlib.sha1(pk8).hexdigest())
    b64 = {base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("="),
           base64.b64encode(hashlib.sha256(der).digest()).decode().rstrip("=")}
    return kind, {"hex": hexes, "b64": b64}


def fingerprint_verdict(path: Path, fingerprint: str) -> str:
    """"match", "mismatch" (sure) or "unknown" (a format this code cannot vouch for)."""
    kind, cands = _fingerprints(path)
    fp = fingerprint.strip()
    if fp.upper().startswith("SHA256:"):
        fp = fp[7:]
    if ":" in fp:
        digest = fp.replace(":", "").lower()
        if digest in cands["hex"]:
            return "match"
        sure = (kind == "rsa" and len(digest) in (32, 40)) or (kind == "ed25519" and len(digest) == 64)
        return "mismatch" if sure else "unknown"
    if fp.rstrip("=") in cands["b64"]:
        return "match"
    return "mismatch" if kind == "ed25519" and len(fp.rstrip("=")) == 43 else "unknown"
