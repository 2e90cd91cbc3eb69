"""Local checks: what can be told on this machine, before any cloud or node is asked.

Credentials (which source boto3 found them in), the key file (``--fix``: chmod 600), the rendered
swift.conf (every key one Swift 0.96 knows), and staging = direct against apps that name their
files literally.
"""

from __future__ import annotations

import shlex
import stat
from pathlib import Path

from swiftrun.checks.base import FAIL, OK, WARN, Check
from swiftrun.errors import ConfigError, SwiftrunError


_SOURCES = {
    "env": "environment variables (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY)",
    "shared-credentials-file": "the shared credentials file (~/.aws/credentials)",
    "config-file": "the AWS config file (~/.aws/config)",
    "sso": "AWS SSO (IAM Identity Center)",
    "assume-role": "an assumed role", "assume-role-with-web-identity": "a web-identity role",
    "iam-role": "this machine's instance role", "container-role": "the container's role",
    "custom-process": "a credential_process", "login": "aws login",
}


def check_credentials(project, provider) -> Check:
    from swiftrun.cloud.session import credential_source

    try:
        session = provider.session
    except ConfigError as exc:
        return Check("credentials", FAIL, exc.message.split(":")[0],
                     exc.message.partition(": ")[2] or exc.hint or "set up AWS credentials",
                     error=ConfigError)
    source = credential_source(session)
    if source == "explicit" and project.ec2.credentials_file:
        words = f"[ec2] credentials_file {project.ec2.credentials_file}"
    else:
        words = _SOURCES.get(source, source)
    if project.ec2.profile:
        words += f", profile {project.ec2.profile!r}"
    return Check("credentials", OK, f"found: {words} [{source}]")


def key_path(project, provider) -> Path | None:
    if hasattr(provider, "key_file"):
        return Path(provider.key_file())
    return Path(project.ssh.key_file) if project.ssh.key_file else None


def check_key_file(project, provider, *, fix: bool = False) -> Check:
    name = "key file"
    path = key_path(project, provider)
    if path is None:
        return Check(name, OK, "no [ssh] key_file: SSH uses your agent and ~/.ssh keys")
    if not path.exists():
        if provider.elastic:
            # up makes it (0600) with the key pair, as the tutorial's configs promised ("a key
            # will be generated in path if none are found"); a key pair that exists already
            # without it is the cloud check's concern (up refuses it, naming both)
            return Check(name, OK, f"{path} does not exist yet: `swiftrun up` will create it "
                         f"(0600) with key pair {project.key_name!r}")
        return Check(name, FAIL, f"{path} does not exist",
                     "set [ssh] key_file to the private key (.pem) of the key pair", error=ConfigError)
    mode = stat.S_IMODE(path.stat().st_mode)
    done = ""
    if mode & 0o077:
        if not fix:
            return Check(name, FAIL, f"{path} is mode {mode:04o}: group/other can read the private "
                         "key (OpenSSH refuses such a key)",
                         f"chmod 600 {shlex.quote(str(path))} (or `swiftrun doctor --fix`)",
                         error=ConfigError)
        path.chmod(0o600)
        done = f"; --fix: chmod 600 (was {mode:04o})"
    from swiftrun.cloud.keys import public_key_of

    public_key_of(path)                 # ConfigError when it is not a usable private key
    return Check(name, OK, f"{path} is a private key, mode 0600{done}")


def check_swift_conf(project, script_dir: Path) -> Check:
    from swiftrun.swiftconf import render_checked

    try:
        rendered = render_checked(project, script_dir=script_dir)
    except ConfigError as exc:
        return Check("swift.conf", FAIL, exc.message,
                     exc.hint or "fix the key named in the message; `swiftrun conf SCRIPT` prints "
                     "the result", error=ConfigError)
    sites = ", ".join(rendered.sites) or "none"
    return Check("swift.conf", OK, f"{len(rendered.layers)} layer(s) merged, sites {sites}: every "
                 "key and value is one Swift 0.96 knows")


def _staging_direct(project, script_dir: Path) -> bool:
    if project.swift.staging == "direct":
        return True
    try:
        from swiftrun.swiftconf import render
        from swiftrun.swiftconf.hocon import _get

        tree = render(project, script_dir=script_dir).tree
    except SwiftrunError:
        return False
    if _get(tree, ["staging"]) == "direct":
        return True
    sites = _get(tree, ["site"]) or {}
    return any(isinstance(s, dict) and _get(s, ["staging"]) == "direct" for s in sites.values())


def check_staging(project, script_dir: Path, scripts: list[Path]) -> Check:
    from swiftrun.swiftconf import script_uses_literal_filenames

    if not _staging_direct(project, script_dir):
        return Check("staging", OK, "staging is not direct: apps may name their files literally")
    if not scripts:
        return Check("staging", OK, "staging: direct; no .swift script found to look at")
    flagged = []
    for script in scripts:
        try:
            apps = script_uses_literal_filenames(script.read_text(errors="replace"))
        except OSError:
            continue
        if apps:
            flagged.append(f"{script.name}: {', '.join(apps)}")
    if flagged:
        return Check("staging", WARN,
                     "staging: direct runs each job in its own directory with absolute paths, but "
                     f"these apps name files literally and will not find them ({'; '.join(flagged)})",
                     "pass files to the app as @filename(f) (or @f) instead of a quoted name, or "
                     "use staging = \"local\"")
    names = ", ".join(s.name for s in scripts)
    return Check("staging", OK, f"staging: direct; the apps of {names} take their files as arguments")


def check_swiftrun_on_path(path_env: str | None = None) -> Check:
    """The Swift distribution ships a Perl helper named ``bin/swiftrun``. The cloud tutorial's
    setup.sh puts Swift's bin/ first on PATH, and then typing ``swiftrun`` runs that helper, not
    this tool. Judged by content: the first ``swiftrun`` on PATH must be a Python entry point."""
    import os

    entries = (path_env if path_env is not None else os.environ.get("PATH", "")).split(os.pathsep)
    first = None
    for d in entries:
        cand = Path(d or ".") / "swiftrun"
        if cand.is_file() and os.access(cand, os.X_OK):
            first = cand
            break
    if first is None:
        return Check("swiftrun on PATH", WARN, "no swiftrun on PATH (this one runs as python3 -m "
                     "swiftrun)", "put the directory pip installed swiftrun into on PATH")
    try:
        head = first.read_bytes()[:4096]
    except OSError:
        head = b""
    line = head.split(b"\n", 1)[0]
    if b"perl" in line or b"python" not in line:
        return Check("swiftrun on PATH", WARN,
                     f"{first} comes first on PATH and is not this tool (Swift's own bin/swiftrun "
                     "helper is a Perl script: Swift's bin/ is on PATH before this one)",
                     "put Swift's bin/ after the directory of this swiftrun on PATH, or run "
                     "python3 -m swiftrun")
    return Check("swiftrun on PATH", OK, f"{first}")
