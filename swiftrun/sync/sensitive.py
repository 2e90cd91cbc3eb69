"""Secrets by content: no file that holds a private key or AWS credentials goes up to a node.

Names are not enough (``id_rsa`` renamed ``key.txt``, a ``credentials.csv`` under another name, a
symlink to ``~/.aws/credentials``), so the head of every file an upload sends is read. What
counts as a secret: a PEM/OpenSSH private key block; an AWS secret access key assignment
(``aws_secret_access_key = ...``, the console's ``Secret access key`` CSV header); an access key
id (AKIA/ASIA...) next to a 40-character secret. A public key, an access key id alone, or the
word "secret" do not count. The user's way out is named in the error: leave the file out with
.swiftignore or [sync] exclude.

A file judged clean is remembered (``judged``: the upload keeps ``.swiftrun/judged`` in the
script directory, which is never synced) under what it was then: device, inode, size, mtime
and ctime, and which patterns judged it. Any write, rename over or ``touch`` moves the ctime,
which no program can set back, so an edited file is always read again (one whose ctime was
less than 2 s old when it was judged is not remembered: a write within the same clock tick
could leave the ctime as it was); an unchanged one is not read on the next upload (a cluster
dissolved after each run gets the whole tree uploaded every run: 20 000 small files were
0.29 s of reading). The memory is one string per file ("dev:ino:size:mtime:ctime:name"),
NUL-separated, looked up whole in a set: 20 000 of them load in a few ms (as JSON lists,
46 ms, and a stat per file on top, 0.16 s of a 20 000-file upload); the upload's scan hands
over the stat it already made.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from pathlib import Path

from swiftrun.errors import ConfigError

HEAD_BYTES = 64 * 1024          # secrets sit at the top of the files that hold them
RACY_NS = 2_000_000_000         # a file changed this recently is read again next time

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


# which patterns judged a file: a changed list judges every file again
_VERSION = hashlib.sha256(repr((HEAD_BYTES, [(w, p.pattern) for w, p in _PATTERNS])).encode()
                          ).hexdigest()[:16]


_HEADER = f"swiftrun-judged {_VERSION}\n"


def _key(rel: str, st: os.stat_result) -> str:
    """What a judged file was: device, inode, size, mtime, ctime, then its name (last, so a
    ":" in the name cannot be misread)."""
    return f"{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}:{rel}"


def _load_judged(path: Path) -> set[str]:
    try:
        text = path.read_bytes().decode("utf-8", "surrogateescape")
    except OSError:
        return set()
    head, _, body = text.partition("\n")
    if head + "\n" != _HEADER or not body:
        return set()            # another version's patterns (or none): judge everything again
    return set(body.split("\0"))


def remembered(path: Path) -> set[str]:
    """The names ``path`` remembers as judged clean."""
    return {k.split(":", 5)[5] for k in _load_judged(path)}


def _save_judged(path: Path, clean: set[str]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write((_HEADER + "\0".join(clean)).encode("utf-8", "surrogateescape"))
        os.replace(tmp, path)
    except OSError:
        pass            # only a cache: the next upload reads the files again


class Judge:
    """Reads what it has not judged before and refuses a secret; remembers what was clean
    (``judged``, see above) once ``save`` is called. A full upload judges directory by directory
    while what was judged clean is already on its way (``check`` per batch)."""

    def __init__(self, local_root, judged: Path | None = None):
        self.root = str(local_root)
        self.judged = judged
        self.known = _load_judged(judged) if judged is not None else set()
        self.added: list[str] = []
        self.again: set[str] = set()    # names read again: what was remembered of them is stale
        self.settled = time.time_ns() - RACY_NS

    def check(self, rels, stats: dict[str, os.stat_result] | None = None) -> None:
        """ConfigError naming the first of ``rels`` that holds a secret. ``stats``: the scan's
        stat of each regular file (a link followed out of the tree is not in it and is stat'ed
        here, through the link: what is read)."""
        root, known, stats = self.root, self.known, stats or {}
        for rel in rels:
            st = stats.get(rel)
            path = None
            if st is None:
                path = os.path.join(root, rel)
                try:
                    st = os.stat(path)
                except OSError:
                    st = None
            key = _key(rel, st) if st is not None else None
            if key is not None and key in known:
                continue            # the common case: no path built, no system call
            path = path or os.path.join(root, rel)
            self.again.add(rel)
            what = secret_in(path)
            if what:
                raise ConfigError(
                    f"{path} holds {what}: swiftrun never uploads secrets to the nodes",
                    hint=f"leave it out with a line '/{rel}' in .swiftignore (or [sync] exclude), "
                         "or move it out of the script directory")
            # a file changed after the stat gets a later ctime, unless within the clock's tick:
            # only one last changed well before this judgement is remembered ("racy git")
            if key is not None and st.st_ctime_ns < self.settled:
                self.added.append(key)

    def save(self) -> None:
        if self.judged is None or not self.added:
            # nothing new to remember; a stale record of a file read again is left for the
            # next rewrite: it names a ctime the file no longer has, so it never matches
            return
        known = self.known
        again = self.again
        if not again:
            clean = set(known)
        elif len(again) <= 64:      # a warm run's few: one C test per record, no split
            # (":" + name ends a record; one of another file whose name ends so goes too, and
            # that file is read once more: the memory is only a cache)
            ends = tuple(":" + rel for rel in again)
            clean = known.difference([k for k in known if k.endswith(ends)])
        else:
            clean = {k for k in known if k.split(":", 5)[5] not in again}
        clean.update(self.added)
        if clean != known:
            _save_judged(self.judged, clean)


def refuse_secrets(local_root, rels, *, judged: Path | None = None,
                   stats: dict[str, os.stat_result] | None = None) -> None:
    """ConfigError naming the first of ``rels`` (files under ``local_root``) that holds a secret.
    ``judged``: the file that remembers which files were clean, and as what (see above).
    ``stats``: see ``Judge.check``."""
    judge = Judge(local_root, judged)
    try:
        judge.check(rels, stats)
    finally:
        judge.save()
