"""How Swift gets onto the nodes: the two routes, and the rule that can be checked before launch.

1. In the image: a custom AMI (one ``swiftrun image build`` baked, say) holds Swift under
   ``[swift] home``. An image cannot be looked into before it boots, so it is taken at its word;
   the boot marker says otherwise soon enough.
2. Installed at boot: with ``[swift] install_url`` (and ``install_sha256``, which loading the
   project demands), userdata's ``install_swift`` downloads the tarball, checks its SHA-256 and
   unpacks it under ``[swift] home`` (userdata/common.sh).

``image = "auto"`` is Canonical's stock Ubuntu, which has no Swift: without an install URL every
node would boot, bill, and then fail its install step. :func:`swift_source` says so before
anything is paid for; ``up`` (through its pre-launch checks), ``doctor`` and ``plan`` all ask it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SwiftSource:
    """Where the nodes' Swift comes from; ``ok`` False when they would boot without one."""

    ok: bool
    detail: str
    fix: str = ""


def swift_source(project) -> SwiftSource:
    """How Swift reaches the nodes of ``project``. Local: no cloud call."""
    sw, ec2 = project.swift, project.ec2
    if sw.install_url:
        return SwiftSource(True, f"installed at boot from {sw.install_url} (SHA-256 pinned)")
    stock = [key for key, value in (("image", ec2.image), ("worker_image", ec2.worker_image))
             if value == "auto"]
    if stock:
        keys = " and ".join(f"[ec2] {k}" for k in stock)
        return SwiftSource(
            False, f"{keys} = \"auto\" (stock Ubuntu) has no Swift and [swift] install_url is "
                   "not set: the nodes would fail at boot, after being paid for",
            "set [swift] install_url and install_sha256 (the Swift 0.96 tarball), or [ec2] "
            f"image to an AMI with Swift in {sw.home}")
    return SwiftSource(True, f"expected under {sw.home} in the project's image (checked at boot)")


def boot_settings(project) -> dict[str, str]:
    """The userdata settings that say where Swift lives on a node and where it comes from."""
    return {"SWIFT_HOME": project.swift.home.rstrip("/") or "/",
            "SWIFT_URL": project.swift.install_url,
            "SWIFT_SHA256": project.swift.install_sha256}


# Swift 0.96's Java launchers (swift, coaster-service) pass ``-Djava.endorsed.dirs``, which every
# Java from 9 on refuses ("Could not create the Java Virtual Machine"). Nodes swiftrun boots get
# the line removed at install (userdata's fix_launchers). A static host's Swift is the user's and
# is not edited: the run wrapper and the service start go through a copy of the launcher without
# the line, in ~/.swiftrun-node/compat, with the home it would have guessed exported (the copy
# lives elsewhere, so its own guess would be wrong). 0.96 ships no lib/endorsed, so the option
# never did anything. POSIX sh; reads and may replace ``$b``, the launcher's path.
COMPAT_LAUNCHER_SH = r"""if grep -q -- '-Djava\.endorsed\.dirs' "$b" 2>/dev/null; then
  b=$(readlink -f "$b"); h=$(cd "$(dirname "$b")/.." && pwd); c="$HOME/.swiftrun-node/compat"
  n=$(basename "$b"); mkdir -p "$c"
  sed '/-Djava\.endorsed\.dirs/d' "$b" > "$c/$n.$$" && chmod 755 "$c/$n.$$" && mv -f "$c/$n.$$" "$c/$n"
  export SWIFT_HOME="$h" COG_INSTALL_PATH="$h"; b="$c/$n"
fi"""


# Swift 0.96's bin/swift joins its arguments into one string, word-splits it (globbing too),
# hands it through bin/swiftrun, and runs ``eval java ... ${CMDLINE}``: an argument is parsed by
# the shell a second time on the headnode. `a;touch x` would run `touch x`, `$(...)` would run,
# and runs of spaces collapse. Each argument is therefore passed as a word that has no
# whitespace, no glob character and no shell syntax, and that the eval turns back into exactly
# the argument: plain when it is made only of safe characters, else bash's $'...' with every
# other byte as \xNN. The run wrapper uses these words only when the launcher evaluates its
# command line (``EVAL_LAUNCHER_TEST``); any other swift gets the arguments as they are.
_SAFE_WORD = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_./=:,+-")
EVAL_LAUNCHER_TEST = "grep -q 'eval java' \"$b\" 2>/dev/null"


def launcher_word(arg: str) -> str:
    """``arg`` as one word that a bash ``eval`` turns back into ``arg``, byte for byte."""
    if arg and all(c in _SAFE_WORD for c in arg):
        return arg
    return "$'" + "".join(chr(b) if chr(b) in _SAFE_WORD else f"\\x{b:02x}"
                          for b in arg.encode("utf-8", "surrogateescape")) + "'"
