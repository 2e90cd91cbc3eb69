"""The old name of the incremental-sync bench: bench_transfer.py's 2000-file case.

Run: python bench/bench_sync.py [--files 2000] [--repeat 7]
Same as `python bench/bench_transfer.py --case inc-2k --size FILES --repeat N`: swiftrun's
incremental upload of one changed file against `rsync -a --delete`, both over swiftrun's own
ControlMaster, A B interleaved (see bench_transfer.py for why that is fair).
"""

from __future__ import annotations

import argparse

from bench_transfer import main

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--files", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args()
    main(["--case", "inc-2k", "--size", str(args.files), "--repeat", str(args.repeat)])
