"""CLI start-up: `swiftrun --help` vs `python -c pass` (median of N runs; the difference is what
swiftrun's own imports cost a user on every command).

Run: python bench/bench_startup.py [--repeat 15]
Also times `swiftrun run --help` and lists which heavy modules `--help` imports (should be none
of boto3, botocore, fabric, paramiko). Prints figures; no assertions. The last line is
`BENCH_SUMMARY {json}` for bench/run_all.py.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loopback import bytecode  # noqa: E402

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "p4" / "p4.swift"
HEAVY = ("boto3", "botocore", "fabric", "paramiko", "invoke", "rich", "watchdog")


def timed(argv: list[str], repeat: int) -> float:
    subprocess.run(argv, capture_output=True, stdin=subprocess.DEVNULL)   # warm the page cache
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        subprocess.run(argv, capture_output=True, stdin=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000


def dry_run_pairs(cli: list[str], repeat: int) -> tuple[list[float], list[float]]:
    """`swiftrun --dry-run examples/p4/p4.swift` and `python -c pass`, A B interleaved."""
    a_cmd = cli + ["--dry-run", str(EXAMPLE)]
    b_cmd = [sys.executable, "-c", "pass"]
    subprocess.run(a_cmd, capture_output=True, stdin=subprocess.DEVNULL)   # warm the caches
    a, b = [], []
    for _ in range(repeat):
        for argv, acc in ((a_cmd, a), (b_cmd, b)):
            t = time.perf_counter()
            subprocess.run(argv, capture_output=True, stdin=subprocess.DEVNULL, check=True)
            acc.append(time.perf_counter() - t)
    return a, b


def heavy_imports(args: list[str]) -> list[str]:
    code = ("import sys\nfrom swiftrun.cli import main_group\ntry:\n"
            f"    main_group.main(args={args!r}, prog_name='swiftrun', standalone_mode=False)\n"
            "except SystemExit:\n    pass\n"
            f"print('HEAVY:' + ','.join(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r}))))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         stdin=subprocess.DEVNULL)
    line = [x for x in res.stdout.splitlines() if x.startswith("HEAVY:")]
    return [m for m in line[-1][6:].split(",") if m] if line else ["(could not tell)"]


def main() -> None:
    bytecode()       # as an installed swiftrun has it (see loopback.bytecode)
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=15)
    args = ap.parse_args()
    exe = shutil.which("swiftrun")
    cli = [exe] if exe else [sys.executable, "-m", "swiftrun"]
    base = timed([sys.executable, "-c", "pass"], args.repeat)
    help_ms = timed(cli + ["--help"], args.repeat)
    run_help = timed(cli + ["run", "--help"], args.repeat)
    version = timed(cli + ["--version"], args.repeat)
    print(f"median of {args.repeat} runs ({' '.join(cli)})")
    print(f"  python -c pass:        {base:7.1f} ms")
    print(f"  swiftrun --help:       {help_ms:7.1f} ms  (+{help_ms - base:.1f} ms)")
    print(f"  swiftrun --version:    {version:7.1f} ms  (+{version - base:.1f} ms)")
    print(f"  swiftrun run --help:   {run_help:7.1f} ms  (+{run_help - base:.1f} ms)")
    dry, py = dry_run_pairs(cli, max(args.repeat, 7))
    dry_ratio = statistics.median(dry) / statistics.median(py)
    print(f"  --dry-run p4.swift:    {statistics.median(dry) * 1000:7.1f} ms "
          f"[{min(dry) * 1000:.0f}-{max(dry) * 1000:.0f}] against python -c pass "
          f"{statistics.median(py) * 1000:.1f} ms [{min(py) * 1000:.0f}-{max(py) * 1000:.0f}], "
          f"interleaved: {dry_ratio:.1f}x")
    heavy = {a: heavy_imports(a.split()) for a in ("--help", "run --help")}
    for a, mods in heavy.items():
        print(f"  heavy modules imported by `swiftrun {a}`: {', '.join(mods) or 'none'}")
    print("BENCH_SUMMARY " + json.dumps({
        "python_ms": round(base, 1), "help_ms": round(help_ms, 1),
        "help_overhead_ms": round(help_ms - base, 1), "run_help_overhead_ms": round(run_help - base, 1),
        "dry_run": {"swiftrun_ms": round(statistics.median(dry) * 1000, 1),
                    "python_ms": round(statistics.median(py) * 1000, 1),
                    "ratio": round(dry_ratio, 2)},
        "heavy_imports": heavy}))


if __name__ == "__main__":
    main()
