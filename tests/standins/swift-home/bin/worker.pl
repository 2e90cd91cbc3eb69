#!/usr/bin/env python3
"""Test stand-in for Swift 0.96.2's ``worker.pl`` (see SWIFT-FACTS.md). Never touches the network.

``worker.pl [-w maxwalltime] [-c concurrency] <serviceURL[,URL...]> <blockID> <logdir|NOLOGGING>``:
records its arguments as one JSON line in ``$SWIFTRUN_NODE_ROOT/var/log/worker-standin.log`` and
sleeps until killed (SIGTERM/SIGINT: exit 0). With ``-w N`` it exits after N idle seconds, like the
real worker. Bad arguments: usage on stderr, exit 1. stdlib only.
"""

import datetime
import json
import os
import signal
import sys
import time

USAGE = "Usage: worker.pl [-w maxwalltime] [-c concurrency] <serviceURL[,URL...]> <blockID> <logdir|NOLOGGING>"


def main(argv):
    walltime = concurrency = None
    rest = []
    i = 0
    try:
        while i < len(argv):
            a = argv[i]
            if a in ("-w", "-c"):
                value = int(argv[i + 1])
                if a == "-w":
                    walltime = value
                else:
                    concurrency = value
                i += 2
                continue
            if a.startswith("-") and a != "-":
                raise ValueError(a)
            rest.append(a)
            i += 1
    except (IndexError, ValueError):
        print(USAGE, file=sys.stderr)
        return 1
    if len(rest) != 3:
        print(USAGE, file=sys.stderr)
        return 1
    urls, block_id, logdir = rest
    record = {
        "time": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "pid": os.getpid(),
        "argv": argv,
        "urls": urls.split(","),
        "block_id": block_id,
        "logdir": logdir,
        "concurrency": concurrency,
        "walltime": walltime,
        "WORKER_LOGGING_LEVEL": os.environ.get("WORKER_LOGGING_LEVEL"),
    }
    root = os.environ.get("SWIFTRUN_NODE_ROOT", "")
    log_dir = os.path.join(root, "var", "log") if root else "/var/log"
    os.makedirs(log_dir, exist_ok=True)
    with open(os.path.join(log_dir, "worker-standin.log"), "a") as fh:
        fh.write(json.dumps(record) + "\n")

    signal.signal(signal.SIGTERM, lambda s, f: sys.exit(0))
    signal.signal(signal.SIGINT, lambda s, f: sys.exit(0))
    deadline = time.monotonic() + walltime if walltime else None
    while deadline is None or time.monotonic() < deadline:
        time.sleep(1 if deadline is None else max(0.05, min(1, deadline - time.monotonic())))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
