"""One door at any size (issue 13): EC2 calls, client SSH connections, wall time and peak RSS of
`swiftrun up` (cold, then warm), a run of p4 and `down` for 1, 10, 50 and 200 workers, and the
client CPU time each takes.

Run: python bench/bench_door.py [--sizes 1 10 50 200] [--repeat 7]
Starts its own test cloud (moto server, a network namespace, an sshd, a boot script and a real
worker.pl per instance: needs root and nftables; stopped by PID at the end). Workers boot the
baked image (Swift and Perl in it), so they launch without a public IPv4 address, as
`[ec2] worker_public_ip = "auto"` decides.

Fair: a 1-worker cluster stays up the whole time, and every warm `up` of the N-worker cluster
is timed in turns with a warm `up` of that one (A B A B ..., ``--repeat`` pairs), so both see
the same machine load; medians with [min-max]. A cold `up` and a `down` are one sample each per
size (each launches or terminates N instances; the test cloud's boots dominate their time).
EC2 calls are moto's own count of the requests; client SSH connections are the test proxy's log
(one line per new connection from this machine); peak RSS is the swiftrun process's own
(``wait4``), its ssh children not included; CPU is user + system time of swiftrun and the
children it waited for (``wait4``; the ControlPersist master detaches, so it is not counted).
"CPU per extra worker" is (cold CPU at N - cold CPU at 1) / (N - 1): constant in N means the
client's work grows linearly, not worse. The run is `swiftrun p4.swift --keep-cluster` on the
cluster just brought up (one sample). No assertions; the last line is `BENCH_SUMMARY {json}`
for bench/run_all.py.

200 workers need more than 2 cores here: 200 sshd, boot scripts and worker.pl (each polling at
~1% CPU) took the load average to 160 on the 2-core machine, and the moto server behind them
stopped answering in time (read timeouts) after the cold `up` of 200 had finished.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from bench_warm_run import child_env, diff, ec2_calls, test_cloud_env  # noqa: E402
from loopback import bytecode, spread  # noqa: E402
from tests.support import netns  # noqa: E402
from tests.support.cli import SWIFTRUN, toml_project  # noqa: E402
from tests.support.cloud import SIM_REGIONS, MotoServer, TestCloud, write_amis_file  # noqa: E402
from tests.support.nodeimage import Images, engine_unavailable  # noqa: E402


def measured(args, cwd: Path, env: dict, moto: MotoServer, log: Path, timeout: float = 1800,
             profile: Path | None = None):
    """Run swiftrun ARGS: (wall s, EC2 calls, client SSH connections, peak RSS MiB, stdout,
    CPU s). ``profile``: under cProfile, its statistics written there (its CPU then counts
    the profiler's own overhead too)."""
    log.unlink(missing_ok=True)
    before = ec2_calls(moto)
    out = log.with_suffix(".out")
    argv = SWIFTRUN.split() if profile is None else [
        sys.executable, "-m", "cProfile", "-o", str(profile), "-m", "swiftrun"]
    t = time.perf_counter()
    with open(out, "w") as fh, open(log.with_suffix(".err"), "w") as err:
        proc = subprocess.Popen(argv + list(args), cwd=cwd, stdout=fh, stderr=err,
                                stdin=subprocess.DEVNULL,
                                env={**env, "TESTCLOUD_PROXY_LOG": str(log)})
        deadline = time.monotonic() + timeout
        try:
            while True:
                pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    break
                if time.monotonic() > deadline:
                    proc.kill()          # by its PID
                    pid, status, usage = os.wait4(proc.pid, 0)
                    break
                time.sleep(0.05)
        except BaseException:
            # interrupted: the swiftrun under measure goes too (an `up` left running holds the
            # cluster's lock, and the teardown's `down` would wait for it)
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            raise
    wall = time.perf_counter() - t
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"swiftrun {' '.join(args)} exited {proc.returncode}:\n"
                           f"{log.with_suffix('.err').read_text()[-3000:]}")
    calls = sum(diff(ec2_calls(moto), before).values())
    conns = len(log.read_text().split()) if log.exists() else 0
    return (wall, calls, conns, usage.ru_maxrss / 1024, out.read_text(),
            usage.ru_utime + usage.ru_stime)


def project(base: Path, tc, name: str, workers: int) -> Path:
    proj = base / name
    shutil.copytree(ROOT / "examples" / "p4", proj)
    (proj / "swiftrun.toml").unlink()
    toml_project(proj, tc, name=name, workers=workers, image=tc.baked_ami)
    return proj


def main() -> None:
    bytecode()       # as an installed swiftrun has it (see loopback.bytecode)
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="*", default=[1, 10, 50, 200])
    ap.add_argument("--repeat", type=int, default=7, help="warm A/B pairs per size (default 7)")
    ap.add_argument("--profile", type=Path, metavar="DIR",
                    help="also run each cold up under cProfile, its statistics in DIR/up-N.prof "
                         "(where the client's time goes as N grows); not for the figures")
    args = ap.parse_args()
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    why = netns.unavailable() or engine_unavailable()
    if why:
        print(f"test cloud unavailable here ({why}): nothing measured")
        return
    base = Path(tempfile.mkdtemp(prefix="bench-door-"))
    moto = tc = None
    kept: list[Path] = []
    env = None
    rows = []
    try:
        moto = MotoServer(faults=True, workdir=base / "moto",
                          amis_file=write_amis_file(base / "amis.json"))
        moto.start(warm_up=SIM_REGIONS)
        cenv = test_cloud_env(moto, base)
        os.environ.update(cenv)
        tc = TestCloud(moto, cenv, base / "cloud", Images(base / "images").prepare()).start()
        env = child_env({**cenv, "SWIFTRUN_BOOT_TIMEOUT": "1200", "SWIFTRUN_SSH_TIMEOUT": "300"})
        logs = base / "logs"
        logs.mkdir()
        ref = project(base, tc, "doorref", 1)        # the 1-worker cluster the warm ups pair with
        kept.append(ref)
        ref_cold = measured(["up"], ref, env, moto, logs / "ref-cold.log")
        for n in args.sizes:
            proj = project(base, tc, f"door{n}", n)
            kept.append(proj)
            cold = measured(["up", "--json"], proj, env, moto, logs / f"{n}-cold.log",
                            profile=args.profile / f"up-{n}.prof" if args.profile else None)
            warm, ref_warm = [], []
            for k in range(args.repeat):        # A B A B: N workers, then the 1-worker cluster
                warm.append(measured(["up", "--json"], proj, env, moto, logs / f"{n}-warm{k}.log"))
                ref_warm.append(measured(["up", "--json"], ref, env, moto,
                                         logs / f"{n}-ref{k}.log"))
            run = measured(["p4.swift", "--keep-cluster"], proj, env, moto, logs / f"{n}-run.log")
            down = measured(["down"], proj, env, moto, logs / f"{n}-down.log")
            kept.remove(proj)
            rows.append({
                "workers": n,
                "cold": {"calls": cold[1], "ssh": cold[2], "s": round(cold[0], 2),
                         "rss_mib": round(cold[3], 1), "cpu_s": round(cold[5], 3),
                         "cpu_per_extra_worker_ms": round(1000 * (cold[5] - ref_cold[5])
                                                          / (n - 1), 2) if n > 1 else None},
                "warm": {"calls": max(w[1] for w in warm), "ssh": max(w[2] for w in warm),
                         "s": [round(w[0], 3) for w in warm],
                         "rss_mib": round(max(w[3] for w in warm), 1),
                         "cpu_s": [round(w[5], 3) for w in warm]},
                "run": {"calls": run[1], "ssh": run[2], "s": round(run[0], 2),
                        "cpu_s": round(run[5], 3)},
                "warm_1": [round(w[0], 3) for w in ref_warm],
                "down": {"calls": down[1], "ssh": down[2], "s": round(down[0], 2),
                         "rss_mib": round(down[3], 1)},
            })
            # said at once: a size that does not finish (the test cloud starved) keeps the others
            print(f"... {n} workers: {json.dumps(rows[-1])}", flush=True)
    finally:
        # a second Ctrl-C (or timeout's SIGINT after ours) must not cut the teardown short: 200
        # nodes' processes and namespaces would outlive the bench
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        for proj in kept:
            if env is not None:
                subprocess.run(SWIFTRUN.split() + ["down"], cwd=proj, env=env, capture_output=True,
                               stdin=subprocess.DEVNULL, timeout=900)
        if tc is not None:
            tc.stop()
        if moto is not None:
            moto.stop()
        shutil.rmtree(base, ignore_errors=True)

    print(f"swiftrun up/down on the test cloud (baked image, workers without public IPv4); warm: "
          f"{args.repeat} pairs interleaved with a 1-worker cluster's warm up, median [min-max]")
    print(f"{'workers':>7}  {'cold calls':>10} {'ssh':>4} {'wall s':>7} {'CPU s':>6} "
          f"{'CPU/+worker ms':>14} {'RSS MiB':>8}  {'warm calls':>10} {'ssh':>4} "
          f"{'warm ms (N)':>22} {'warm ms (1 worker)':>22} {'RSS MiB':>8}  {'run s':>6} {'ssh':>4}  "
          f"{'down calls':>10} {'ssh':>4} {'wall s':>7}")
    for r in rows:
        c, w, u, d = r["cold"], r["warm"], r["run"], r["down"]
        per = "-" if c["cpu_per_extra_worker_ms"] is None else f"{c['cpu_per_extra_worker_ms']:.1f}"
        print(f"{r['workers']:>7}  {c['calls']:>10} {c['ssh']:>4} {c['s']:>7.1f} {c['cpu_s']:>6.2f} "
              f"{per:>14} {c['rss_mib']:>8.1f}  {w['calls']:>10} {w['ssh']:>4} {spread(w['s']):>22} "
              f"{spread(r['warm_1']):>22} {w['rss_mib']:>8.1f}  {u['s']:>6.1f} {u['ssh']:>4}  "
              f"{d['calls']:>10} {d['ssh']:>4} {d['s']:>7.1f}")
    summary = {f"n{r['workers']}": {
        "cold_calls": r["cold"]["calls"], "cold_ssh": r["cold"]["ssh"], "cold_s": r["cold"]["s"],
        "cold_rss_mib": r["cold"]["rss_mib"], "warm_calls": r["warm"]["calls"],
        "warm_ssh": r["warm"]["ssh"], "warm_s": statistics.median(r["warm"]["s"]),
        "warm_1_worker_s": statistics.median(r["warm_1"]),
        "warm_vs_1_worker": round(statistics.median(r["warm"]["s"])
                                  / statistics.median(r["warm_1"]), 2),
        "warm_rss_mib": r["warm"]["rss_mib"], "cold_cpu_s": r["cold"]["cpu_s"],
        "cpu_per_extra_worker_ms": r["cold"]["cpu_per_extra_worker_ms"],
        "run_s": r["run"]["s"], "run_ssh": r["run"]["ssh"],
        "down_calls": r["down"]["calls"], "down_ssh": r["down"]["ssh"]} for r in rows}
    print("BENCH_SUMMARY " + json.dumps(summary))


if __name__ == "__main__":
    main()
