"""Shared fixtures: the test cloud (moto server + instances that are real loopback sshd hosts).

- ``moto_server`` (session): one moto server for the whole run, behind the fault wrapper
  (``moto_server.set_faults(...)``), with Canonical Ubuntu 24.04 images; stopped by PID at the end.
- ``aws_env`` (function): moto reset (state and fault rules) + AWS/swiftrun environment; returns
  the variables it set (``{**os.environ, **aws_env}`` for subprocesses; os.environ already has them).
- ``node_images`` (session): the machine images of the test nodes (stock Ubuntu, a custom one
  with Swift baked in), built once: see tests/support/nodeimage.py.
- ``cloud`` (function): ``aws_env`` + its own network + a running InstanceSimulator ->
  :class:`TestCloud` (``.env .sim .proxy_command .hosts_dir .stock_ami .baked_ami .install_url
  .install_sha256 .caller_cidr .ec2 .endpoint .region .moto .set_faults ...``). Skips, saying
  why, where nodes cannot be made (not root, no nftables) or the real Swift/K engine is missing.
- ``cloud_factory`` (function): build a TestCloud with other stand-ins / regions; every cloud it
  made is stopped at teardown. Do not combine with ``cloud`` in one test (two simulators would
  both boot every instance).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Iterable

import pytest

from tests.support import netns
from tests.support.cloud import (
    DEFAULT_REGION, SIM_REGIONS, STANDIN_NODE_DIR, MotoServer, TestCloud, write_amis_file,
)
from tests.support.nodeimage import Images, engine_unavailable

REPO = Path(__file__).resolve().parent.parent

_AWS_UNSET = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN",
              "AWS_REGION", "AWS_ROLE_ARN", "AWS_ROLE_SESSION_NAME", "AWS_WEB_IDENTITY_TOKEN_FILE",
              "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
              "AWS_CONTAINER_AUTHORIZATION_TOKEN", "AWS_CA_BUNDLE", "AWS_USE_FIPS_ENDPOINT",
              "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS")


def _tree_digest(package_dir: Path, data: dict[str, Path]) -> str:
    """Digest of the package's code plus the data the wheel carries under ``_data/``."""
    import hashlib

    h = hashlib.sha256()
    roots = [("", package_dir)] + sorted(data.items())
    for prefix, root in roots:
        for f in sorted(root.rglob("*")):
            rel = f.relative_to(root)
            if (not f.is_file() or "__pycache__" in rel.parts or f.suffix == ".pyc"
                    or (prefix == "" and rel.parts[0] == "_data")):
                continue
            h.update(f"{prefix}{rel}".encode() + b"\0" + f.read_bytes())
    return h.hexdigest()


def pytest_sessionstart(session: pytest.Session) -> None:
    """The end-to-end tests drive the *installed* `swiftrun`, as a user would. If that copy is
    not this tree (a `pip install .` from an older checkout), every end-to-end result would be
    about other code: stop at once and say how to fix it."""
    import subprocess
    import sys

    if os.environ.get("PYTEST_XDIST_WORKER"):
        return      # the controller already checked
    probe = subprocess.run([sys.executable, "-c", "import swiftrun, os; "
                            "print(os.path.dirname(os.path.abspath(swiftrun.__file__)))"],
                           cwd="/", capture_output=True, text=True)
    installed = Path(probe.stdout.strip()) if probe.returncode == 0 else None
    if installed is None:
        pytest.exit("swiftrun is not installed: run `python3 -m pip install '.[test]'` first "
                    "(README, Quick start command 1)", returncode=2)
    data = ("site_templates", "userdata")
    if installed != REPO / "swiftrun" and (
            _tree_digest(installed, {f"_data/{d}/": installed / "_data" / d for d in data})
            != _tree_digest(REPO / "swiftrun", {f"_data/{d}/": REPO / d for d in data})):
        pytest.exit(f"the installed swiftrun ({installed}) is not this checkout's code: run "
                    "`python3 -m pip install '.[test]'` (or `pip install -e .`) again", returncode=2)


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory):
    work = tmp_path_factory.mktemp("moto")
    server = MotoServer(faults=True, workdir=work, amis_file=write_amis_file(work / "amis.json"))
    server.start(warm_up=SIM_REGIONS)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def aws_env(moto_server: MotoServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    moto_server.reset()
    aws_dir = tmp_path / "aws"
    aws_dir.mkdir()
    (aws_dir / "config").write_text("")
    (aws_dir / "credentials").write_text("")
    for name in list(os.environ):  # per-service endpoint overrides would bypass moto
        if name.startswith("AWS_ENDPOINT_URL_") or name in _AWS_UNSET:
            monkeypatch.delenv(name, raising=False)
    env = {
        "AWS_ENDPOINT_URL": moto_server.endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": DEFAULT_REGION,
        "AWS_CONFIG_FILE": str(aws_dir / "config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(aws_dir / "credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
        "SWIFTRUN_HOME": str(tmp_path / "swiftrun-home"),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


@pytest.fixture(scope="session")
def node_images(tmp_path_factory: pytest.TempPathFactory) -> Images:
    return Images(tmp_path_factory.mktemp("images")).prepare()


def cloud_unavailable() -> str | None:
    """Why test clouds cannot run here; None when they can."""
    return netns.unavailable() or engine_unavailable()


@pytest.fixture
def cloud_factory(moto_server: MotoServer, aws_env: dict[str, str], tmp_path: Path,
                  node_images: Images):
    why = cloud_unavailable()
    if why:
        pytest.skip(f"test cloud unavailable: {why}")
    clouds: list[TestCloud] = []

    def make(base: Path | None = None, standins_dirs: Iterable[Path] = (STANDIN_NODE_DIR,),
             regions: Iterable[str] = SIM_REGIONS) -> TestCloud:
        base = Path(base) if base else tmp_path / ("cloud" if not clouds else f"cloud{len(clouds)}")
        tc = TestCloud(moto_server, aws_env, base, node_images, standins_dirs, regions)
        clouds.append(tc)
        return tc.start()

    yield make
    errors = []
    for tc in reversed(clouds):
        try:
            tc.stop()
        except Exception as exc:
            errors.append(exc)
    if errors:
        raise errors[0]


@pytest.fixture
def cloud(cloud_factory: Callable[..., TestCloud]) -> TestCloud:
    return cloud_factory()
