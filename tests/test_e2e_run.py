"""Issue 3 end to end: `swiftrun p4.swift` against the test cloud (moto, and every instance a
host of its own with a real sshd), with the real Swift/K 0.96.2 on the nodes: swift on the
headnode, the coaster service, worker.pl on the workers."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from tests.support.cli import cluster_groups, cluster_instances, swiftrun, toml_project

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def copy_example(example: str, dest: Path, cloud, **kw) -> Path:
    """The example as shipped: its links stay links (p6's scripts link to ../app/, which is
    copied beside it)."""
    shutil.copytree(EXAMPLES / example, dest, symlinks=True)
    if not (dest.parent / "app").exists():
        shutil.copytree(EXAMPLES / "app", dest.parent / "app", symlinks=True)
    (dest / "swiftrun.toml").unlink()
    toml_project(dest, cloud, **kw)
    return dest


def test_p4_round_trip_keep_reuse_and_dissolve(cloud, tmp_path):
    proj = copy_example("p4", tmp_path / "p4", cloud, name="p4run", workers=1)
    from swiftrun.sync import AHEAD_MIN_ENTRIES
    for i in range(AHEAD_MIN_ENTRIES):      # inputs enough that a warm run lists them ahead
        (proj / "data" / f"{i % 20}").mkdir(parents=True, exist_ok=True)
        (proj / "data" / f"{i % 20}" / f"in{i}").write_text(str(i))
    first = tmp_path / "ssh-connections-first.log"
    res = swiftrun("p4.swift", "--keep-cluster", "--json", cwd=proj,
                   env={"TESTCLOUD_PROXY_LOG": str(first)})
    doc = json.loads(res.stdout)
    assert doc["exit_code"] == 0
    head = next(n for n in doc["nodes"] if n["role"] == "headnode")
    # the cold run connected to the headnode (the proxy log sees new connections)
    assert (head["public_ip"] or head["private_ip"]) in first.read_text().split()
    # swift's own console came through the stream
    assert "RunID: run001" in res.stderr
    numbers = [int(x) for x in (proj / "unsorted.txt").read_text().split()]
    assert [int(x) for x in (proj / "sorted.txt").read_text().split()] == sorted(numbers)
    assert (proj / "run001" / "swift.log").is_file()
    assert doc["sync"]["full"] is True
    ids = {i["InstanceId"] for i in cluster_instances(cloud, "p4run")}
    assert len(ids) == 2 and not doc["dissolved"]

    # Second run on the kept cluster: no new instance, only the changed file goes over.
    (proj / "unsorted.txt").write_text("5\n3\n9\n1\n")
    calls_before = cloud.fault_state()["calls"]
    conns = tmp_path / "ssh-connections.log"
    doc2 = json.loads(swiftrun("run", "p4.swift", "--keep-cluster", "--json", cwd=proj,
                               env={"TESTCLOUD_PROXY_LOG": str(conns)}).stdout)
    assert doc2["exit_code"] == 0 and doc2["swift_run"] == "run002"
    # the warm path: the cluster this machine just saw answered with its pinned key, no EC2
    # call, and no new SSH connection: the headnode's connection the first run left open
    # (OpenSSH ControlPersist) carried the check, sync, run, stream and fetch
    assert cloud.fault_state()["calls"] == calls_before and doc2["api_calls"] == 0
    assert not conns.exists() or conns.read_text().split() == []
    assert doc2["sync"]["files_sent"] == 1 and not doc2["sync"]["full"]
    assert {i["InstanceId"] for i in cluster_instances(cloud, "p4run")} == ids
    assert (proj / "sorted.txt").read_text().split() == ["1", "3", "5", "9"]
    assert (proj / "run002").is_dir() and (proj / "run002" / "swift.log").is_file()

    # Third run without --keep-cluster dissolves it after the outputs are back.
    (proj / "unsorted.txt").write_text("2\n1\n")
    doc3 = json.loads(swiftrun("p4.swift", "--json", cwd=proj).stdout)
    assert doc3["exit_code"] == 0 and doc3["dissolved"]
    assert (proj / "sorted.txt").read_text().split() == ["1", "2"]
    assert cluster_instances(cloud, "p4run") == []
    assert cluster_groups(cloud, "p4run") == []


def test_failing_app_and_compile_error_keep_swift_exit_codes(cloud, tmp_path):
    proj = tmp_path / "bad"
    toml_project(proj, cloud, name="badrun", workers=1)
    (proj / "fail.swift").write_text(
        'type file;\n'
        'app (file o) boom () { sh "-c" "echo kaboom-on-stderr >&2; exit 3" stdout=@o; }\n'
        'file out <"out.txt">;\nout = boom();\n')
    res = swiftrun("fail.swift", "--keep-cluster", cwd=proj, check=False)
    assert res.returncode == 2, res.stderr
    assert "kaboom-on-stderr" in res.stdout + res.stderr
    (proj / "syntax.swift").write_text("type file;\nthis is not swift (\n")
    res = swiftrun("syntax.swift", cwd=proj, check=False)
    assert res.returncode == 3, res.stderr
    # the run without --keep-cluster dissolved it
    assert cluster_instances(cloud, "badrun") == []


def test_swift_arguments_reach_swift(cloud, tmp_path):
    proj = copy_example("p6", tmp_path / "p6", cloud, name="p6run", workers=1)
    assert (proj / "simulate.sh").is_symlink()      # as the tutorial keeps it: -> ../app/
    plan = json.loads(swiftrun("p6.swift", "--dry-run", "--json", cwd=proj).stdout)
    assert plan["sync_links_as_files"] == ["simulate.sh", "stats.sh"]   # the plan says so
    res = swiftrun("p6.swift", "-nsim=3", cwd=proj)
    outs = sorted(p.name for p in (proj / "output").glob("sim_*.out"))
    assert outs == ["sim_0.out", "sim_1.out", "sim_2.out"], res.stderr
    assert (proj / "output" / "average.out").is_file()
    assert (proj / "simulate.sh").is_symlink()      # the fetch left the link alone


def test_sites_local_example_runs_on_the_headnode_alone(cloud, tmp_path):
    """examples/local: site local, no workers, the apps by name from [swift] path."""
    proj = tmp_path / "local"
    shutil.copytree(EXAMPLES / "local", proj, symlinks=True)
    shutil.copytree(EXAMPLES / "app", tmp_path / "app", symlinks=True)
    (proj / "swiftrun.toml").unlink()
    toml_project(proj, cloud, name="localsite", workers=0,
                 extra='[swift]\nsite = "local"\npath = ["../app"]\n')
    doc = json.loads(swiftrun("p2.swift", "--json", cwd=proj).stdout)
    assert doc["exit_code"] == 0 and [n["role"] for n in doc["nodes"]] == ["headnode"]
    produced = [p for p in proj.rglob("*.out") if "run0" not in str(p)]
    assert produced and all(p.read_text().strip() for p in produced), sorted(proj.rglob("*"))


def test_warm_path_notices_a_headnode_replaced_behind_its_back(cloud, tmp_path):
    """The warm path trusts the last tag read only while the headnode answers with its pinned
    key. A headnode terminated by hand makes the next run ask the tags, launch a new headnode,
    and replace the workers that still point at the old one."""
    proj = copy_example("p4", tmp_path / "p4", cloud, name="p4gone", workers=1)
    first = json.loads(swiftrun("p4.swift", "--keep-cluster", "--json", cwd=proj).stdout)
    old = {n["role"]: n["id"] for n in first["nodes"]}
    cloud.ec2.terminate_instances(InstanceIds=[old["headnode"]])
    deadline = time.monotonic() + 30
    while cloud.sim.info(old["headnode"]).up and time.monotonic() < deadline:
        time.sleep(0.2)      # the simulator takes the terminated node's sshd down

    (proj / "unsorted.txt").write_text("8\n2\n")
    res = swiftrun("p4.swift", "--keep-cluster", "--json", cwd=proj)
    doc = json.loads(res.stdout)
    new = {n["role"]: n["id"] for n in doc["nodes"]}
    assert doc["exit_code"] == 0 and doc["api_calls"] >= 1
    assert new["headnode"] != old["headnode"] and new["worker"] != old["worker"]
    assert "headnode of cluster 'p4gone' is gone" in res.stderr
    live = {i["InstanceId"] for i in cluster_instances(cloud, "p4gone")}
    assert live == set(new.values())
    assert (proj / "sorted.txt").read_text().split() == ["2", "8"]

    # the project now asks for one more worker: the warm path does not apply, one is added
    toml = proj / "swiftrun.toml"
    toml.write_text(toml.read_text().replace("workers = 1", "workers = 2"))
    doc = json.loads(swiftrun("p4.swift", "--keep-cluster", "--json", cwd=proj).stdout)
    assert doc["exit_code"] == 0 and doc["api_calls"] >= 1
    assert len(cluster_instances(cloud, "p4gone")) == 3
    swiftrun("down", cwd=proj)
    assert cluster_instances(cloud, "p4gone") == []


def test_failed_fetch_keeps_the_cluster_and_fetch_retries(cloud, tmp_path):
    """Outputs that cannot be written here keep the cluster (the only copy is on it) and say
    how to retry; `swiftrun fetch` then brings them back, and only then is it dissolved."""
    proj = copy_example("p4", tmp_path / "p4", cloud, name="p4fetch", workers=1)
    # a directory where the output file must go, kept out of the upload
    (proj / "sorted.txt").mkdir()
    (proj / "sorted.txt" / "keep").write_text("mine\n")
    (proj / ".swiftignore").write_text("sorted.txt\n")
    res = swiftrun("p4.swift", cwd=proj, check=False)
    assert res.returncode != 0 and "Traceback" not in res.stderr
    assert "swiftrun fetch p4.swift" in res.stderr and "swiftrun down" in res.stderr
    assert (proj / "sorted.txt" / "keep").read_text() == "mine\n"   # never deleted to make room
    assert len(cluster_instances(cloud, "p4fetch")) == 2          # kept: nothing lost

    still = swiftrun("fetch", "p4.swift", cwd=proj, check=False)     # not fixed yet: says so
    assert still.returncode != 0 and "could not write" in still.stderr, still.stderr
    shutil.rmtree(proj / "sorted.txt")
    again = swiftrun("fetch", "p4.swift", cwd=proj)
    assert (proj / "run001" / "swift.log").is_file(), again.stderr
    assert (proj / "sorted.txt").is_file()
    swiftrun("down", cwd=proj)
    assert cluster_instances(cloud, "p4fetch") == []


def test_a_failed_up_leaves_no_cache_a_run_could_trust(cloud, tmp_path):
    """An `up` that fails (a worker that cannot boot, terminated again) must not leave behind a
    record of that worker as running: the next run asks the tags and gets a real worker."""
    flag = tmp_path / "fail-worker-init"
    proj = copy_example("p4", tmp_path / "p4", cloud, name="p4stale", workers=1)
    (proj / "init.sh").write_text(f"#!/bin/sh\nif [ -e {flag} ]; then echo 'init refuses' >&2; exit 7; fi\n")
    toml = proj / "swiftrun.toml"
    toml.write_text(toml.read_text().replace("[ec2]\n", '[ec2]\nworker_init_script = "init.sh"\n', 1))
    swiftrun("p4.swift", "--keep-cluster", cwd=proj)
    swiftrun("remove", "1", cwd=proj)

    flag.write_text("")
    failed = swiftrun("up", cwd=proj, check=False)
    assert failed.returncode != 0 and "failed to boot" in failed.stderr, failed.stderr
    gone = cluster_instances(cloud, "p4stale", states=("shutting-down", "terminated"))
    bad = max(gone, key=lambda i: i["LaunchTime"])["InstanceId"]    # the worker that failed

    flag.unlink()
    doc = json.loads(swiftrun("p4.swift", "--keep-cluster", "--json", cwd=proj).stdout)
    assert doc["exit_code"] == 0 and doc["api_calls"] >= 1
    workers = [n["id"] for n in doc["nodes"] if n["role"] == "worker"]
    assert len(workers) == 1 and workers[0] != bad
    assert workers[0] in {i["InstanceId"] for i in cluster_instances(cloud, "p4stale")}
    swiftrun("down", cwd=proj)


def test_outputs_refused_here_keep_the_cluster(cloud, tmp_path):
    """p6 writes output/; here `output` is a symlink to a directory outside the project (kept
    out of the upload). Writing through it is refused, so those outputs exist only on the
    headnode: the run keeps the cluster and says how to fetch them once that is fixed."""
    proj = copy_example("p6", tmp_path / "p6", cloud, name="p6refuse", workers=1)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (proj / "output").symlink_to(elsewhere)
    (proj / ".swiftignore").write_text("output\n")
    res = swiftrun("p6.swift", "-nsim=2", cwd=proj, check=False)
    assert res.returncode != 0 and "Traceback" not in res.stderr
    assert "could not write" in res.stderr and "swiftrun fetch p6.swift" in res.stderr, res.stderr
    assert list(elsewhere.iterdir()) == []                   # nothing written outside
    assert len(cluster_instances(cloud, "p6refuse")) == 2     # kept: the outputs are there

    (proj / "output").unlink()
    swiftrun("fetch", "p6.swift", cwd=proj)
    assert sorted(p.name for p in (proj / "output").glob("sim_*.out")) == ["sim_0.out", "sim_1.out"]
    swiftrun("down", cwd=proj)
    assert cluster_instances(cloud, "p6refuse") == []


def test_run_with_report_writes_cost_metadata_report_and_plots_after_the_fetch(cloud, tmp_path):
    """`swiftrun SCRIPT --report` on the real engine: the fetched runNNN/ gets swiftrun-run.json
    (each node's price, blocks named as worker.pl registered them) and the report made from it."""
    proj = copy_example("p4", tmp_path / "p4", cloud, name="p4rep", workers=1)
    res = swiftrun("p4.swift", "--report", "--json", cwd=proj)
    doc = json.loads(res.stdout)
    assert doc["exit_code"] == 0 and doc["dissolved"]
    run_dir = proj / doc["swift_run"]
    meta = json.loads((run_dir / "swiftrun-run.json").read_text())
    roles = sorted(n["role"] for n in meta["nodes"])
    assert roles == ["headnode", "worker"] and all(n["price_per_hour"] > 0 for n in meta["nodes"])
    worker = next(n for n in doc["nodes"] if n["role"] == "worker")
    assert {n["block"] for n in meta["nodes"]} >= {f"p4rep-{worker['id']}"}
    rep = doc["report"]
    assert rep["log"] == str(run_dir / "swift.log")
    # p4 is one sort job, and it ran on the cluster's one worker
    assert sum(w["tasks"] for w in rep["workers"]) == 1
    assert rep["cost"] is not None and rep["cost"]["per_hour"] > 0
    for name in ("activeplot.png", "cumulativeplot.png", "workersplot.png"):
        assert (run_dir / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_swift_path_puts_the_tools_on_the_workers_path_p3(cloud, tmp_path):
    """The tutorial's p3 calls `simulate` and `stats` by name; [swift] path = ["../app"] carries
    app/ to every node's PATH, and the real engine runs the apps on the worker."""
    shutil.copytree(EXAMPLES / "app", tmp_path / "app", symlinks=True)
    proj = tmp_path / "p3"
    shutil.copytree(EXAMPLES / "p3", proj)
    (proj / "swiftrun.toml").unlink()
    toml_project(proj, cloud, name="p3path", workers=1,
                 extra='[swift]\npath = ["../app"]\nargs = { nsim = 3 }\n')
    doc = json.loads(swiftrun("p3.swift", "--json", "--keep-cluster", cwd=proj).stdout)
    assert doc["exit_code"] == 0, doc
    sims = sorted((proj / "output").glob("sim_*.out"))
    assert len(sims) == 3 and all(s.read_text().split() for s in sims)
    assert (proj / "output" / "average.out").read_text().strip()
    # the apps came from the worker's tools directory: nothing else on its PATH has them
    worker = next(n["id"] for n in doc["nodes"] if n["role"] == "worker")
    found = cloud.sim.exec(worker, 'ls "$SWIFTRUN_NODE_ROOT/var/lib/swiftrun/tools/bin"; '
                                   'PATH=/usr/bin:/bin command -v simulate || echo none')
    assert found.stdout.split() == ["simulate", "simulate.sh", "stats", "stats.sh", "none"], found
    # a tool removed here is gone there after the next run
    (tmp_path / "app" / "stats.sh").unlink()
    again = swiftrun("p3.swift", "--keep-cluster", cwd=proj, check=False)
    left = cloud.sim.exec(worker, 'ls "$SWIFTRUN_NODE_ROOT/var/lib/swiftrun/tools/bin"')
    assert "stats.sh" not in left.stdout.split() and "simulate" in left.stdout.split(), again.stderr
    swiftrun("down", cwd=proj)
