"""Run every benchmark as its own process and print one table of their figures.

Run: python bench/run_all.py [--quick] [--only NAME ...] [--timeout 1800]
Each bench prints figures (no assertions); a bench whose last line is `BENCH_SUMMARY {json}` gets
its figures flattened into the table, any other (bench_api_calls.py) gets its printed output
quoted under the table. Every figure named ``ratio`` (swiftrun / the baseline a user would
type, timed on the same footing) is listed once more at the end. A bench that is missing is
listed as such; one that fails or times out is reported with its exit code and stderr tail, and
the others still run.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

# name -> (file, normal args, --quick args)
BENCHES = {
    "startup": ("bench_startup.py", [], ["--repeat", "5"]),
    "list": ("bench_list.py", [], ["--repeat", "5"]),
    "transfer": ("bench_transfer.py", [], ["--quick"]),
    "stream": ("bench_stream.py", [], ["--log-mb", "20"]),
    "warm_run": ("bench_warm_run.py", [], ["--repeat", "3"]),
    "warm_run_20k": ("bench_warm_run.py", ["--files", "20000"], ["--files", "20000", "--repeat", "3"]),
    "api_calls": ("bench_api_calls.py", [], []),
    "door": ("bench_door.py", [], ["--sizes", "1", "10", "--repeat", "3"]),
}


def flatten(doc, prefix: str = "") -> list[str]:
    """{"a": {"b": 1}, "c": [1, 2]} -> ["a.b=1", "c=[1, 2]"]."""
    if isinstance(doc, dict) and doc:
        out = []
        for k, v in doc.items():
            out += flatten(v, f"{prefix}{k}.")
        return out
    return [f"{prefix[:-1]}={doc if isinstance(doc, str) else json.dumps(doc)}"]


def run_one(name: str, quick: bool, timeout: float) -> dict:
    file, normal, fast = BENCHES[name]
    path = HERE / file
    if not path.exists():
        return {"name": name, "status": "missing", "seconds": 0.0, "figures": [], "output": ""}
    argv = [sys.executable, str(path), *(fast if quick else normal)]
    t = time.perf_counter()
    try:
        res = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                             stdin=subprocess.DEVNULL, cwd=HERE.parent)
    except subprocess.TimeoutExpired as exc:     # subprocess.run killed it (by its PID)
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else exc.stdout
        return {"name": name, "status": f"timeout {timeout:.0f}s", "figures": [],
                "seconds": time.perf_counter() - t, "output": (out or "")[-2000:]}
    secs = time.perf_counter() - t
    lines = res.stdout.rstrip().splitlines()
    summary = next((ln for ln in reversed(lines) if ln.startswith("BENCH_SUMMARY ")), None)
    figures = flatten(json.loads(summary[len("BENCH_SUMMARY "):])) if summary else []
    body = "\n".join(ln for ln in lines if not ln.startswith("BENCH_SUMMARY "))
    status = "ok" if res.returncode == 0 else f"exit {res.returncode}"
    if res.returncode != 0:
        body += "\n[stderr] " + "\n[stderr] ".join(res.stderr.strip().splitlines()[-15:])
    return {"name": name, "status": status, "seconds": secs, "figures": figures, "output": body}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer repeats (a smoke run)")
    ap.add_argument("--only", nargs="*", choices=list(BENCHES), help="run only these")
    ap.add_argument("--timeout", type=float, default=1800.0, help="per bench, seconds")
    args = ap.parse_args()
    names = args.only or list(BENCHES)
    results = []
    for name in names:
        print(f"... {name}", file=sys.stderr, flush=True)
        results.append(run_one(name, args.quick, args.timeout))

    width = max(len(r["name"]) for r in results)
    print(f"{'bench'.ljust(width)}  {'status':<10}  {'time':>7}  figures")
    for r in results:
        figs = r["figures"] or (["(see its output below)"] if r["status"] == "ok" else [])
        first, *rest = figs or [""]
        print(f"{r['name'].ljust(width)}  {r['status']:<10}  {r['seconds']:6.1f}s  {first}")
        for f in rest:
            print(f"{'':{width}}  {'':<10}  {'':>7}  {f}")
    for r in results:
        if r["output"].strip() and r["status"] != "missing":
            print(f"\n--- {r['name']} ({BENCHES[r['name']][0]}) ---")
            print(r["output"].rstrip())
    ratios = [(r["name"], f) for r in results for f in r["figures"]
              if f.split("=", 1)[0].rsplit(".", 1)[-1] == "ratio"]
    if ratios:
        print("\nratios (swiftrun / baseline; below 1: swiftrun is faster)")
        for name, f in ratios:
            key, value = f.split("=", 1)
            print(f"  {name}.{key}: {value}")
    failed = [r["name"] for r in results if r["status"] not in ("ok", "missing")]
    if failed:
        print(f"\nfailed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
