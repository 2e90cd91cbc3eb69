"""How many EC2 API calls `up` makes for 1, 10, 50 and 200 workers (and a warm `up`, and `down`).

Runs against a local moto server (started and stopped here, by PID). Readiness over SSH makes
no EC2 calls and is skipped (wait=False), so the figures are the provisioning calls alone.
Usage: python bench/bench_api_calls.py
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.support.cloud import MotoServer, write_amis_file  # noqa: E402


def count(project, action) -> int:
    from swiftrun.cloud.ec2 import EC2Provider
    from swiftrun.cluster import Cluster
    from swiftrun.ui import UI

    provider = EC2Provider(project)
    cluster = Cluster(project, provider, UI(quiet=True))
    action(cluster)
    return provider.api_calls


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="swiftrun-bench-"))
    for name in [n for n in os.environ if n.startswith("AWS_")]:
        del os.environ[name]
    (work / "empty").write_text("")
    os.environ.update({"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_CONFIG_FILE": str(work / "empty"),
                       "AWS_SHARED_CREDENTIALS_FILE": str(work / "empty"),
                       "AWS_EC2_METADATA_DISABLED": "true", "SWIFTRUN_HOME": str(work / "home")})
    server = MotoServer(faults=False, workdir=work, amis_file=write_amis_file(work / "amis.json"))
    server.start()
    os.environ["AWS_ENDPOINT_URL"] = server.endpoint
    try:
        from swiftrun.project import load_project

        rows = []
        for n in (1, 10, 50, 200):
            proj = work / f"p{n}"
            proj.mkdir()
            (proj / "swiftrun.toml").write_text(
                f'[cluster]\nname = "bench{n}"\nworkers = {n}\n'
                '[ec2]\nregion = "us-west-2"\nssh_cidr = "127.0.0.1/32"\n'
                # image = "auto" (the default lookup is counted) + a Swift tarball to install at
                # boot; nothing boots here (no simulator), so the URL is never fetched
                '[swift]\ninstall_url = "https://example.invalid/swift-0.96.tar.gz"\n'
                f'install_sha256 = "{"0" * 64}"\n')
            project = load_project(proj / "swiftrun.toml")
            cold = count(project, lambda c: c.up(wait=False))
            warm = count(project, lambda c: c.up(wait=False))
            down = count(project, lambda c: c.down())
            rows.append((n, cold, warm, down))
        print("EC2 API calls (moto server)")
        print(f"{'workers':>8} {'up (cold)':>10} {'up (warm)':>10} {'down':>6}")
        for n, cold, warm, down in rows:
            print(f"{n:>8} {cold:>10} {warm:>10} {down:>6}")
        constant = len({r[1] for r in rows}) == 1
        print(f"summary: api_calls_up={'/'.join(str(r[1]) for r in rows)} for "
              f"{'/'.join(str(r[0]) for r in rows)} workers; "
              f"warm={rows[0][2]}; constant_in_N={'yes' if constant else 'no'}")
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
