"""`swiftrun list` against the AWS CLI's `aws ec2 describe-instances` with the same tag filter,
against the same endpoint (issue 17).

Run: python bench/bench_list.py [--repeat 9] [--workers 10] [--aws PATH]

A local moto server (started and stopped here, by PID) holds one cluster: a headnode and
``--workers`` workers, tagged as swiftrun tags them, plus a second cluster's nodes the filter must
leave out. Both sides are new processes with warm page caches, on the same footing: the same
endpoint, credentials and region from the environment, one DescribeInstances each with the
filters swiftrun sends (``tag:swiftrun:cluster`` and the live instance states). swiftrun also
prints its table and cost; the AWS CLI prints its JSON. A B interleaved, medians [min-max] in ms
and the ratio of medians (swiftrun / aws); no assertions. The AWS CLI is not a dependency of
swiftrun: when it is not found, install it aside (``python3 -m venv /tmp/awscli &&
/tmp/awscli/bin/pip install awscli``) and pass ``--aws /tmp/awscli/bin/aws``; without it the
bench says so and measures nothing. The last line is `BENCH_SUMMARY {json}` for bench/run_all.py.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(HERE))

from bench_warm_run import child_env, test_cloud_env  # noqa: E402
from loopback import bytecode, interleaved, ratio, spread  # noqa: E402
from tests.support.cli import SWIFTRUN  # noqa: E402
from tests.support.cloud import DEFAULT_REGION, MotoServer  # noqa: E402

STATES = "pending,running,stopping,stopped"


def find_aws(given: str | None) -> str | None:
    for candidate in (given, shutil.which("aws"), "/tmp/awscli/bin/aws"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def populate(env: dict, cluster: str, workers: int) -> None:
    """Instances tagged as `up` tags them (role, cluster, Name), and a neighbour cluster."""
    import boto3

    ec2 = boto3.client("ec2", region_name=DEFAULT_REGION, endpoint_url=env["AWS_ENDPOINT_URL"],
                       aws_access_key_id="testing", aws_secret_access_key="testing")
    image = ec2.describe_images(Owners=["amazon"], MaxResults=5)["Images"][0]["ImageId"]
    for name, count in ((cluster, workers), ("neighbour", 3)):
        for role, n in (("headnode", 1), ("worker", count)):
            tags = [{"Key": "swiftrun:cluster", "Value": name}, {"Key": "swiftrun:role", "Value": role},
                    {"Key": "Name", "Value": f"{name}-{role}"}]
            ec2.run_instances(ImageId=image, MinCount=n, MaxCount=n, InstanceType="t3.micro",
                              TagSpecifications=[{"ResourceType": "instance", "Tags": tags}])


def main() -> None:
    bytecode()       # as an installed swiftrun has it (see loopback.bytecode)
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=9, help="A/B pairs (default 9)")
    ap.add_argument("--workers", type=int, default=10)
    ap.add_argument("--aws", help="the AWS CLI to compare with (default: aws on PATH)")
    args = ap.parse_args()
    aws = find_aws(args.aws)
    if not aws:
        print("the AWS CLI is not installed here (python3 -m venv /tmp/awscli && "
              "/tmp/awscli/bin/pip install awscli): nothing measured")
        print("BENCH_SUMMARY " + json.dumps({"list": {"skipped": "no AWS CLI"}}))
        return
    base = Path(tempfile.mkdtemp(prefix="bench-list-"))
    moto = MotoServer(workdir=base).start()
    try:
        env = child_env(test_cloud_env(moto, base))
        populate(env, "bench", args.workers)
        proj = base / "proj"
        proj.mkdir()
        (proj / "swiftrun.toml").write_text(
            f'[cluster]\nname = "bench"\nworkers = {args.workers}\n\n'
            f'[ec2]\nregion = "{DEFAULT_REGION}"\nssh_cidr = "203.0.113.7/32"\n')
        a_cmd = SWIFTRUN.split() + ["list"]
        b_cmd = [aws, "ec2", "describe-instances", "--region", DEFAULT_REGION,
                 "--endpoint-url", moto.endpoint, "--filters",
                 "Name=tag:swiftrun:cluster,Values=bench", f"Name=instance-state-name,Values={STATES}"]
        outputs: dict[str, str] = {}

        def run(name, cmd):
            res = subprocess.run(cmd, cwd=proj, env=env, capture_output=True, text=True,
                                 stdin=subprocess.DEVNULL, timeout=120)
            if res.returncode != 0:
                raise RuntimeError(f"{name} exited {res.returncode}: {res.stderr[-2000:]}")
            outputs[name] = res.stdout

        def check(_k):
            found = sum(len(r["Instances"]) for r in json.loads(outputs["aws"])["Reservations"])
            want = args.workers + 1
            rows = sum(1 for line in outputs["swiftrun"].splitlines() if " i-" in line)
            if found != want or rows != want:
                return f"swiftrun listed {rows}, aws found {found}; want {want}"
            return None

        a, b, problems = interleaved(args.repeat, lambda k: None,
                                     lambda k: run("swiftrun", a_cmd), lambda k: run("aws", b_cmd),
                                     check=check, warmup=1)
    finally:
        moto.stop()
        shutil.rmtree(base, ignore_errors=True)
    print(f"{args.workers + 1} nodes, {args.repeat} interleaved pairs (after one warm-up pair)")
    print(f"  swiftrun list                  {spread(a)} ms")
    print(f"  aws ec2 describe-instances     {spread(b)} ms")
    print(f"  ratio (swiftrun / aws)         {ratio(a, b):.2f}")
    for p in problems:
        print(f"  problem: {p}")
    print("BENCH_SUMMARY " + json.dumps({"list": {
        "nodes": args.workers + 1, "swiftrun_ms": round(statistics.median(a) * 1000, 1),
        "aws_cli_ms": round(statistics.median(b) * 1000, 1), "ratio": round(ratio(a, b), 3),
        "problems": problems}}))


if __name__ == "__main__":
    main()
