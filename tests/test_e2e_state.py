"""Issue 14 #7 (b-d): what keeps billing is said, a stopped node has no uptime, and `list`
names each node as `connect` takes it. The installed command against the test cloud."""

from __future__ import annotations

import json
import re

from tests.support.cli import swiftrun, toml_project
from tests.support.schemas import validate


def test_stop_headnode_warns_of_the_workers_and_list_shows_what_connect_takes(cloud, tmp_path):
    proj = tmp_path / "proj"
    toml_project(proj, cloud, name="bill", workers=2, image=cloud.baked_ami)
    swiftrun("up", cwd=proj, env={"SWIFTRUN_BOOT_TIMEOUT": "240"})

    # list names the nodes as connect takes them (not the Name tag bill-worker twice)
    doc = json.loads(swiftrun("list", "--json", cwd=proj).stdout)
    validate("list", doc)
    by_name = {n["connect_as"]: n for n in doc["nodes"]}
    assert sorted(by_name) == ["headnode", "worker0", "worker1"], doc["nodes"]
    table = swiftrun("list", cwd=proj).stdout.splitlines()
    assert [ln.split()[0] for ln in table[1:]] == ["headnode", "worker0", "worker1"], table
    for name, node in by_name.items():
        picked = json.loads(swiftrun("connect", name, "--json", cwd=proj).stdout)
        assert picked["node"]["id"] == node["id"], (name, picked, node)
        assert any(ln.split()[0] == name and node["id"] in ln for ln in table), table

    # stop-headnode says the workers keep billing, what they cost, and how to stop them
    res = swiftrun("stop-headnode", "--json", cwd=proj)
    stopped = json.loads(res.stdout)
    validate("stop-headnode", stopped)
    workers = sorted(n["id"] for n in doc["nodes"] if n["role"] == "worker")
    assert stopped["stopped"] == by_name["headnode"]["id"]
    assert sorted(stopped["workers_running"]) == workers
    rate = stopped["workers_per_hour"]
    worker_rates = [c["usd_per_hour"] for c in doc["cost"]["nodes"] if c["role"] == "worker"]
    assert rate == round(sum(worker_rates), 5) and rate > 0, (stopped, doc["cost"])
    warning = next(ln for ln in res.stderr.splitlines() if ln.startswith("warning: "))
    assert re.search(r"2 worker\(s\) of cluster bill keep running and billing \(\$[0-9.]+/h\)",
                     warning), res.stderr
    assert "`swiftrun down`" in warning and "`swiftrun remove 2`" in warning

    # the stopped headnode: no uptime, no compute in the cost, no connect name
    after = json.loads(swiftrun("list", "--json", cwd=proj).stdout)
    validate("list", after)
    head = next(n for n in after["nodes"] if n["role"] == "headnode")
    assert head["state"] in ("stopping", "stopped") and head["uptime_s"] is None, head
    assert head["connect_as"] is None
    assert all(n["uptime_s"] is not None for n in after["nodes"] if n["role"] == "worker")
    assert sorted(c["id"] for c in after["cost"]["nodes"]) == workers, after["cost"]
    assert after["cost"]["per_hour"] == rate
    line = next(ln for ln in swiftrun("list", cwd=proj).stdout.splitlines() if head["id"] in ln)
    assert line.split()[0] == "-", line     # NAME: connect cannot reach it
    cols = line.split()
    assert cols[cols.index(head["state"]) + 4] == "-", line     # UPTIME
    swiftrun("down", cwd=proj)
