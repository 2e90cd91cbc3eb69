"""A run's console through ``swiftrun.run.control.follow`` against what a user would type, on
the same open connection.

Run: python bench/bench_stream.py [--repeat 7] [--log-mb 200] [--lines 24] [--gap 0.025]

(a) stream end lag: a short run (the stand-in "swift" prints ``--lines`` lines, one every
    ``--gap`` s) is started with ``start_run``, exactly as a run is, and followed to its end.
    The lag is the time from the wrapper writing ``.swiftrun/runs/<id>.exit`` (that file's
    mtime; node and client share a clock here) to the follower returning. swiftrun: ``follow()``.
    Baseline: ``ssh <same master> 'tail -s 0.01 -c +1 --pid=<wrapper> -f <id>.log; cat <id>.exit'``,
    which shows the whole console and the exit code as follow() does, and checks the wrapper as
    often as follow() checks for the exit file (every 10 ms; tail's own default is 1 s).
(b) replay: follow() from offset 0 of a finished run with a ``--log-mb`` console log, into a
    file, against ``ssh <same master> cat <id>.log > file`` (`swiftrun logs > console.txt`);
    each side's file is checked byte for byte after its turn.

Fair: one loopback sshd, one ControlMaster opened by swiftrun before anything is timed, and the
baselines use ``Remote.ssh_argv`` of that same master. The sides take turns (A B, B A, ...), each
with its own run and its own log of identical content. The sshd runs under bench/reaper.py, a
prompt reaper of orphans as systemd is on a node (this container's PID 1 reaps every ~2 s,
which would hold `tail --pid` on a zombie wrapper). Prints median [min-max] in ms and the
ratio of medians (swiftrun / baseline); no assertions. The last line is `BENCH_SUMMARY {json}`
for bench/run_all.py.
"""

from __future__ import annotations

import argparse
import json
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from loopback import interleaved, loopback_node, ratio, spread

from swiftrun.run.control import follow, start_run

HERE = Path(__file__).resolve().parent
MB = 1 << 20

STAND_IN = """#!/bin/sh
# stands in for swift: {lines} console lines, one every {gap} s, then exit 0
i=0
while [ $i -lt {lines} ]; do echo "swift: line $i"; sleep {gap}; i=$((i+1)); done
"""


class Lines:
    """follow()'s ``out``: counts lines (the stream must carry the whole console)."""

    def __init__(self):
        self.count = 0

    def write(self, data: bytes) -> int:
        self.count += data.count(b"\n")
        return len(data)

    def flush(self) -> None:
        pass


class QuietUI:
    """follow() reports reconnects and heartbeats here; a clean stream has none."""

    def __init__(self):
        self.notes: list[str] = []

    def node(self, label, text):
        self.notes.append(f"{label}: {text}")

    step = info = warn = node


def write_log(path: Path, size: int) -> None:
    """A console log of ``size`` bytes of plain lines."""
    block = b"".join(b"%08d swift: app task %d completed, status 0\n" % (i, i) for i in range(20000))
    with open(path, "wb") as fh:
        left = size
        while left:
            piece = block[:left]
            fh.write(piece)
            left -= len(piece)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--repeat", type=int, default=7, help="A/B pairs per measure (default 7)")
    ap.add_argument("--log-mb", type=int, default=200, help="size of the replayed console log")
    ap.add_argument("--lines", type=int, default=24, help="lines the short run prints")
    ap.add_argument("--gap", type=float, default=0.025, help="seconds between them")
    args = ap.parse_args()

    base = Path(tempfile.mkdtemp(prefix="bench-stream-"))
    try:
        node_root = base / "node-root"      # SWIFTRUN_NODE_ROOT: the node's /
        swift = node_root / "opt" / "swift" / "bin" / "swift"
        swift.parent.mkdir(parents=True)
        swift.write_text(STAND_IN.format(lines=args.lines, gap=args.gap))
        swift.chmod(0o755)
        (node_root / "var" / "lib" / "swiftrun").mkdir(parents=True)
        root = base / "project"             # the project's directory on the node
        runs = root / ".swiftrun" / "runs"
        runs.mkdir(parents=True)
        reaper = [sys.executable, str(HERE / "reaper.py")]
        with loopback_node(base / "node", env={"SWIFTRUN_NODE_ROOT": str(node_root)},
                           argv_prefix=reaper) as node:
            master = node.master_pid()
            ui = QuietUI()
            rows = [("measure", "swiftrun ms median [min-max]", "baseline ms median [min-max]",
                     "ratio", "baseline")]

            # -- (a) stream end lag -----------------------------------------------------------
            lags = {"sw": [], "hand": []}
            lines = {}

            def start(run_id: str) -> None:
                start_run(node.remote, node.target, str(root), run_id, swift_home="/opt/swift",
                          script="bench.swift", args=[], conf_text="bench: conf\n")

            def lag(run_id: str, returned: float) -> float:
                return returned - (runs / f"{run_id}.exit").stat().st_mtime_ns / 1e9

            def follow_end(k: int) -> None:
                run_id = f"end-sw-{k}"
                start(run_id)
                out = Lines()
                code, _ = follow(node.remote, node.target, str(root), run_id, ui, out=out)
                lags["sw"].append(lag(run_id, time.time()))
                lines[run_id] = (code, out.count)

            def tail_end(k: int) -> None:
                run_id = f"end-hand-{k}"
                start(run_id)
                r = f".swiftrun/runs/{run_id}"
                cmd = (f"cd {shlex.quote(str(root))} && while [ ! -s {r}.pid ]; do sleep 0.01; done && "
                       f"tail -s 0.01 -c +1 --pid=$(cat {r}.pid) -f {r}.log && cat {r}.exit")
                res = subprocess.run(node.ssh(cmd), stdin=subprocess.DEVNULL, capture_output=True)
                lags["hand"].append(lag(run_id, time.time()))
                text = res.stdout.decode(errors="replace").splitlines()
                code = int(text[-1]) if res.returncode == 0 and text and text[-1].isdigit() else None
                lines[run_id] = (code, len(text) - 1)

            def check_end(k: int) -> str | None:
                bad = [f"{rid}: exit {code}, {n} of {args.lines} lines"
                       for rid in (f"end-sw-{k}", f"end-hand-{k}")
                       for code, n in [lines[rid]] if code != 0 or n != args.lines]
                return "; ".join(bad) or None

            _, _, problems = interleaved(args.repeat, lambda k: None, follow_end, tail_end, check_end)
            rows.append(("stream end lag (exit file -> follower returns)", spread(lags["sw"]),
                         spread(lags["hand"]), f"{ratio(lags['sw'], lags['hand']):.2f}",
                         "ssh tail -s 0.01 --pid -f"))

            # -- (b) replay of a finished run's console log -----------------------------------
            size = args.log_mb * MB
            write_log(runs / "replay-sw.log", size)
            shutil.copyfile(runs / "replay-sw.log", runs / "replay-hand.log")
            for side in ("sw", "hand"):
                (runs / f"replay-{side}.exit").write_text("0\n")
                (runs / f"replay-{side}.pid").write_text("1\n")
            got = {}
            # Each side writes the console into a file of its own (tmpfs when there is one:
            # no disk in the measure), emptied before its turn; the check reads it back.
            shm = Path("/dev/shm")
            outdir = Path(tempfile.mkdtemp(prefix="replay-", dir=shm if shm.is_dir() else None))
            want = (runs / "replay-sw.log").read_bytes()

            def into(side: str):
                return open(outdir / side, "wb")      # truncated: the last turn's bytes gone

            def follow_replay(k: int) -> None:
                with into("sw") as fh:
                    code, _ = follow(node.remote, node.target, str(root), "replay-sw", ui, out=fh)
                got[("sw", k)] = code

            def cat_replay(k: int) -> None:
                with into("hand") as fh:
                    res = subprocess.run(node.ssh(f"cat {shlex.quote(str(runs / 'replay-hand.log'))}"),
                                         stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.PIPE)
                got[("hand", k)] = res.returncode

            def check_replay(k: int) -> str | None:
                bad = [f"{side}: exit {got[(side, k)]}, {len(data)} of {size} bytes"
                       for side in ("sw", "hand")
                       for data in [(outdir / side).read_bytes()]
                       if got[(side, k)] != 0 or data != want]
                return "; ".join(bad) or None

            a, b, more = interleaved(args.repeat, lambda k: None, follow_replay, cat_replay,
                                     check_replay)
            shutil.rmtree(outdir, ignore_errors=True)
            problems += more
            rows.append((f"replay of a finished {args.log_mb} MB console log", spread(a), spread(b),
                         f"{ratio(a, b):.2f}", "ssh cat log > file"))
            same = node.master_pid() == master
            conns = node.connections()

        widths = [max(len(r[i]) for r in rows) for i in range(5)]
        for n, r in enumerate(rows):
            line = (f"{r[0]:<{widths[0]}}  {r[1]:>{widths[1]}}  {r[2]:>{widths[2]}}  "
                    f"{r[3]:>{widths[3]}}  {r[4]}")
            print(line)
            if n == 0:
                print("-" * len(line))
        print(f"{args.repeat} pairs each, A B interleaved; ratio = swiftrun median / baseline "
              "median (below 1: swiftrun is faster)")
        print(f"short run: {args.lines} lines every {args.gap * 1000:.0f} ms; follow() notes "
              f"(reconnects, heartbeats): {len(ui.notes)}{' ' + str(ui.notes[:2]) if ui.notes else ''}")
        print(f"peak RSS of this process (follow() keeps the whole console it streamed): "
              f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
        print(f"shared connection: master pid {'unchanged' if same else 'CHANGED'}, sshd held "
              f"{conns} connection(s) at the end")
        for p in problems:
            print(f"  PROBLEM {p}")
        print("BENCH_SUMMARY " + json.dumps({
            "end_lag_ms": {"swiftrun": round(statistics.median(lags["sw"]) * 1000, 1),
                           "baseline": round(statistics.median(lags["hand"]) * 1000, 1),
                           "ratio": round(ratio(lags["sw"], lags["hand"]), 2)},
            "replay_ms": {"swiftrun": round(statistics.median(a) * 1000, 1),
                          "baseline": round(statistics.median(b) * 1000, 1),
                          "ratio": round(ratio(a, b), 2)}}))
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
