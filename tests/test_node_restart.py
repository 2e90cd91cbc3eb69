"""Issue 12 #1: a headnode stopped and started again works as before. EC2 does not run userdata
again on a start, and an instance-store disk comes back blank: /scratch must be set up again by
the node itself, before its services, and a run afterwards gets its outputs back. A stop lasts
(the test cloud moves the node's clock on): the hours stopped are not lifetime."""

from __future__ import annotations

import json
import re

from tests.support.cli import swiftrun, toml_project

SCRIPT = """\
type file;
app (file o) note () { sh "-c" "test -d ${SWIFTRUN_NODE_ROOT:-}/scratch && echo scratch-ok" stdout=@o; }
file out <"out.txt">;
out = note();
"""

BACK = """\
type file;
app (file o) note () { echo "back" stdout=@o; }
file out <"out.txt">;
out = note();
"""


def scratch_mounted(cloud, iid) -> bool:
    mounts = cloud.sim.root(iid) / "proc/mounts"
    scratch = str(cloud.sim.root(iid) / "scratch")
    return mounts.is_file() and any(line.split()[1:2] == [scratch]
                                    for line in mounts.read_text().splitlines())


def test_instance_store_is_set_up_again_after_a_stop_and_start(cloud, tmp_path):
    proj = tmp_path / "restart"
    path = toml_project(proj, cloud, name="restart", workers=0, image=cloud.baked_ami)
    # c5d.large has one NVMe instance-store disk (the test cloud shows it in sysfs)
    path.write_text(path.read_text().replace("[ec2]\n", '[ec2]\nheadnode_type = "c5d.large"\n', 1))
    (proj / "note.swift").write_text(SCRIPT)
    up = json.loads(swiftrun("up", "--json", cwd=proj, timeout=300).stdout)
    head = next(n["id"] for n in up["nodes"] if n["role"] == "headnode")
    assert scratch_mounted(cloud, head)
    (cloud.sim.root(head) / "scratch/left-by-first-boot").write_text("x")

    assert json.loads(swiftrun("stop-headnode", "--json", cwd=proj).stdout)["stopped"] == head
    up = json.loads(swiftrun("up", "--json", cwd=proj, timeout=300).stdout)
    assert next(n["id"] for n in up["nodes"] if n["role"] == "headnode") == head
    # the start ran no userdata, yet /scratch is mounted again, blank as instance store comes back
    assert scratch_mounted(cloud, head)
    assert not (cloud.sim.root(head) / "scratch/left-by-first-boot").exists()
    boot = cloud.sim.console(head)
    assert boot.count("== step: begin") == 1          # userdata ran once, at the first boot
    log = (cloud.sim.root(head) / "var/log/swiftrun/userdata.log").read_text()
    assert "instance-store disks: nvme1n1" in log.split("node ready", 1)[1]   # after the start

    res = swiftrun("note.swift", "--json", cwd=proj, timeout=300, check=False)
    assert res.returncode == 0, res.stderr[-3000:]
    assert (proj / "out.txt").read_text().strip() == "scratch-ok"


def test_a_headnode_stopped_for_hours_before_its_first_tick_is_not_shut_down(cloud, tmp_path):
    """Issue 12: a stop shows as a gap between the deadman's minute ticks. A headnode stopped
    before its first tick (stop-headnode right after up) had no tick to measure the gap from, so
    the whole stop counted as lifetime: ten hours stopped, and the first tick after the start
    shut a headnode with an 8 h max_lifetime down. The boot's install of the deadman is its
    first tick."""
    proj = tmp_path / "clock"
    toml_project(proj, cloud, name="clock", workers=0, image=cloud.baked_ami, max_lifetime="8h")
    (proj / "note.swift").write_text(BACK)
    up = json.loads(swiftrun("up", "--json", cwd=proj, timeout=300).stdout)
    head = next(n["id"] for n in up["nodes"] if n["role"] == "headnode")
    assert json.loads(swiftrun("stop-headnode", "--json", cwd=proj).stdout)["stopped"] == head

    cloud.sim.stopped_for_seconds = 36000                    # ten hours on the node's clock
    try:
        swiftrun("up", "--json", cwd=proj, timeout=300)
    finally:
        cloud.sim.stopped_for_seconds = 0
    assert cloud.sim.clock_offset(head) == 36000
    # one deadman tick, as its timer runs it (the timer does not run in the test cloud)
    tick = cloud.sim.exec(head, "bash $SWIFTRUN_NODE_ROOT/usr/local/lib/swiftrun/deadman.sh")
    assert tick.returncode == 0, tick.stdout + tick.stderr
    assert "SHUTDOWN" not in tick.stdout, tick.stdout
    assert not (cloud.sim.root(head) / "run/standin-shutdown").exists()
    gap = re.search(r"started again after (\d+)s stopped", tick.stdout)
    # 36000 s, less the minute of a tick, plus the real seconds from the boot's install to now
    assert gap and 35900 <= int(gap[1]) <= 36600, tick.stdout

    res = swiftrun("note.swift", "--keep-cluster", "--json", cwd=proj, timeout=300, check=False)
    assert res.returncode == 0, res.stderr[-3000:]
    assert (proj / "out.txt").read_text().strip() == "back"
