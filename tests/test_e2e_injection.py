"""Issue 14 #1: no value a user gives reaches a remote shell as code. Driven as a user would, on
a real cluster of the test cloud with the real Swift/K 0.96.2 on the headnode.

Every hostile value tries to create a file in the headnode's home; the test proves none appears
and that the values arrive intact where they are data (Swift's own @arg sees them byte for byte:
bin/swift evals its command line, so a plainly quoted argument would run there).
"""

from __future__ import annotations

import json
import re

from tests.support.cli import swiftrun, toml_project

# each would create $HOME/PWNED-<n> if it reached a shell as code
HOSTILE = [
    'a; touch "$HOME/PWNED-1"; echo',
    "$(touch $HOME/PWNED-2)",
    "`touch $HOME/PWNED-3`",
    "x' ; touch $HOME/PWNED-4 ; '",
    "two  spaces\tand a tab * ? [ab]",
    "x\"; touch $HOME/PWNED-5; \"",
]

SCRIPT = """\
string m = @arg("msg");
string n = @arg("note");
trace(strcat("MSG[", m, "]"));
trace(strcat("NOTE[", n, "]"));
"""


def node_processes(cloud, iid) -> list[str]:
    """Command lines of the processes of that node (their environment names its root)."""
    from pathlib import Path

    marker = f"SWIFTRUN_NODE_ROOT={cloud.sim.root(iid)}".encode()
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if marker in (proc / "environ").read_bytes().split(b"\0"):
                found.append((proc / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip())
        except OSError:
            pass
    return found


def pwned(cloud, iid) -> list[str]:
    return sorted(p.name for p in cloud.sim.home(iid).glob("PWNED-*"))


def test_no_user_value_runs_on_the_headnode(cloud, tmp_path):
    proj = tmp_path / "inj"
    note = "$(touch $HOME/PWNED-6) `touch $HOME/PWNED-7`"
    toml_project(proj, cloud, name="inj", workers=0, image=cloud.baked_ami,
                 extra='[swift]\nargs = { note = "' + note.replace('"', '\\"') + '" }\n')
    (proj / "args.swift").write_text(SCRIPT)
    doc = None
    for i, value in enumerate(HOSTILE):
        res = swiftrun("args.swift", f"-msg={value}", "--keep-cluster", "--json", cwd=proj,
                       check=False, timeout=300)
        assert res.returncode == 0, res.stderr[-3000:]
        doc = json.loads(res.stdout)
        # Swift's trace prints the value it got: exactly the user's
        assert f"MSG[{value}]" in res.stderr, (value, res.stderr[-2000:])
        assert f"NOTE[{note}]" in res.stderr
    head = next(n["id"] for n in doc["nodes"] if n["role"] == "headnode")
    assert pwned(cloud, head) == []

    # run ids: refused before anything is asked of the cloud or the headnode
    for verb in (["logs", "--run"], ["logs", "--follow", "--run"]):
        res = swiftrun(*verb, HOSTILE[0], cwd=proj, check=False)
        assert res.returncode == 2 and "--run" in res.stderr and "Traceback" not in res.stderr
        assert len(res.stderr.strip().splitlines()) == 1, res.stderr
    # a well-formed id of no run: exit 2, naming the runs that exist
    res = swiftrun("logs", "--run", "19990101-000000-dead", cwd=proj, check=False)
    assert res.returncode == 2 and "no such run" in res.stderr and doc["run_id"] in res.stderr
    # the latest run's console: no stray exit code after it, the code said on stderr
    res = swiftrun("logs", cwd=proj)
    assert not re.search(r"\n0\n?$", res.stdout) and "swift exited 0" in res.stderr
    logs = json.loads(swiftrun("logs", "--json", cwd=proj).stdout)
    assert logs["run_id"] == doc["run_id"] and logs["state"] == "finished"
    assert logs["exit_code"] == 0 and "MSG[" in logs["console"]
    # hostile node names and cluster names are refused, not sent
    res = swiftrun("logs", "--boot", HOSTILE[1], cwd=proj, check=False)
    assert res.returncode != 0 and "Traceback" not in res.stderr
    res = swiftrun("connect", "--print", HOSTILE[2], cwd=proj, check=False)
    assert res.returncode != 0 and "Traceback" not in res.stderr
    assert pwned(cloud, head) == []
    # no heartbeat sleep is left behind by the runs
    assert not [c for c in node_processes(cloud, head) if c == "sleep 60"]
    swiftrun("down", "--yes", cwd=proj)
