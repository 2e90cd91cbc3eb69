"""The Swift stand-in (tests/standins/swift-home/bin) behaves as SWIFT-FACTS.md describes real Swift 0.96.

Runs the stand-ins as subprocesses on copies of examples/p4 and examples/p6, and feeds the stand-in a
swift.conf rendered by swiftrun.swiftconf so the product and the stand-in stay honest with each other.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BIN = REPO / "tests" / "standins" / "swift-home" / "bin"
SWIFT = BIN / "swift"
COASTER = BIN / "coaster-service"
WORKER = BIN / "worker.pl"
EXAMPLES = REPO / "examples"

LOCAL_CONF = """
sites: [cloud-static]
site.cloud-static {
    execution { type: "local" }
    filesystem { type: "local" }
    workDirectory: "/tmp/swiftwork"
    staging: "local"
    app.ALL { executable: "*" }
}
lazyErrors: false
executionRetries: 0
keepSiteDir: true
"""

COASTER_CONF = LOCAL_CONF.replace('execution { type: "local" }',
                                  'execution { type: "coaster-persistent", URL: "http://127.0.0.1:50010", '
                                  'jobManager: "local:local", options { maxJobs: 2, tasksPerNode: 4 } }')


@pytest.fixture
def env(tmp_path):
    """A sandboxed node: SWIFTRUN_NODE_ROOT and HOME inside tmp (no ~/.swift, no stray port files)."""
    home = tmp_path / "home"
    home.mkdir()
    e = dict(os.environ)
    e.pop("SWIFT_SITE_CONF", None)
    e.pop("STANDIN_SWIFT_SLOW", None)
    e.update(SWIFTRUN_NODE_ROOT=str(tmp_path / "root"), HOME=str(home))
    return e


def example(tmp_path: Path, name: str, conf: str | None = LOCAL_CONF) -> Path:
    work = tmp_path / name
    shutil.copytree(EXAMPLES / name, work)
    if conf is not None:
        (work / "swift.conf").write_text(conf)
    return work


def swift(cwd: Path, *args: str, env: dict, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([str(SWIFT), *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


class Service:
    """The coaster-service stand-in as a subprocess; stopped by PID."""

    def __init__(self, cwd: Path, env: dict):
        self.cwd, self.env = cwd, env
        self.proc = subprocess.Popen([str(COASTER), "-p", "50010", "-localport", "50005", "-nosec", "-passive"],
                                     cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines = [self.proc.stdout.readline().rstrip("\n"), self.proc.stdout.readline().rstrip("\n")]
        self.port_file = Path(env["SWIFTRUN_NODE_ROOT"]) / "run" / "coaster-service.port"

    def stop(self) -> int:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
        try:
            return self.proc.wait(timeout=10)
        finally:
            self.proc.stdout.close()
            self.proc.stderr.close()


@pytest.fixture
def service(tmp_path, env):
    svc = Service(tmp_path, env)
    yield svc
    svc.stop()


# --------------------------------------------------------------------------------------------------
# the command line
# --------------------------------------------------------------------------------------------------

def test_standins_are_independent_executables():
    for path in (SWIFT, COASTER, WORKER):
        assert os.access(path, os.X_OK), path
        text = path.read_text()
        assert text.startswith("#!/usr/bin/env python3\n")
        assert not re.search(r"^\s*(import|from)\s+swiftrun", text, re.M), f"{path.name} imports swiftrun"


def test_version(tmp_path, env):
    result = swift(tmp_path, "-version", env=env)
    assert result.returncode == 0
    assert result.stdout.startswith("Swift 0.96.2 git-rev: ")
    assert len(result.stdout.splitlines()) == 1


def test_p4_sorts_and_counts_runs(tmp_path, env):
    work = example(tmp_path, "p4")
    result = swift(work, "p4.swift", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("Swift 0.96.2 git-rev:")
    assert lines[1] == "RunID: run001"
    assert any(l.startswith("Progress: ") for l in lines)
    assert re.match(r"Final status: .*\+0000  Finished successfully:1$", lines[-1]), lines[-1]
    numbers = [int(x) for x in (work / "unsorted.txt").read_text().split()]
    assert [int(x) for x in (work / "sorted.txt").read_text().split()] == sorted(numbers)
    run = work / "run001"
    assert (run / "swift.log").read_text().splitlines()[0].endswith(f"swift.conf):")
    assert "site.cloud-static.workDirectory" in (run / "swift.log").read_text()
    assert (run / "swift.out").read_text() == result.stdout
    infos = list((run / "p4-run001.d").glob("sortdata-*.info"))
    assert len(infos) == 1
    # the job ran under the node root's workDirectory (keepSiteDir: true)
    assert list((tmp_path / "root" / "tmp" / "swiftwork" / "p4-run001" / "jobs").glob("*/sortdata-*"))

    again = swift(work, "p4.swift", env=env)
    assert again.returncode == 0
    assert "RunID: run002" in again.stdout
    assert (work / "run002" / "swift.log").exists()


def test_p6_simulations_and_average(tmp_path, env):
    work = example(tmp_path, "p6")
    result = swift(work, "p6.swift", "-nsim=3", "-steps=0", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Finished successfully:4" in result.stdout.splitlines()[-1]
    outs = sorted(p.name for p in (work / "output").glob("sim_*.out"))
    assert outs == ["sim_0.out", "sim_1.out", "sim_2.out"]
    values = [int(x) for p in (work / "output").glob("sim_*.out") for x in p.read_text().split()]
    assert len(values) == 15 and all(0 <= v < 100 for v in values)
    average = float((work / "output" / "average.out").read_text())
    assert average == pytest.approx(sum(values) / len(values), abs=0.01)
    assert "simulate.sh: host" in (work / "output" / "sim_0.log").read_text()
    assert len(list((work / "run001" / "p6-run001.d").glob("*.info"))) == 4


def test_p6_with_direct_staging(tmp_path, env):
    work = example(tmp_path, "p6", LOCAL_CONF.replace('staging: "local"', 'staging: "direct"'))
    result = swift(work, "p6.swift", "-nsim=2", "-steps=0", env=env)
    assert result.returncode == 0, result.stdout
    assert (work / "output" / "average.out").exists()


def test_app_failure(tmp_path, env):
    work = example(tmp_path, "p4")
    (work / "fail.swift").write_text("""
type file;
app (file out) boom (file inp) {
    sh "-c" "echo something went wrong >&2; exit 3" @inp stdout=@out;
}
file inp <"unsorted.txt">;
file out <"boom.txt">;
out = boom(inp);
""")
    result = swift(work, "fail.swift", env=env)
    assert result.returncode == 2
    out = result.stdout
    assert "Execution failed:" in out
    assert "Exception in boom:" in out
    assert "Host: cloud-static" in out
    assert re.search(r"Caused by: Application \S*/sh failed with an exit code of 3", out)
    block = out.split("------- Application STDERR --------\n", 1)[1]
    assert block.startswith("something went wrong\n-----------------------------------")
    assert (work / "run001" / "restart.log").exists()
    assert list((work / "run001").glob("boom-*.stderr"))


def test_lazy_errors_continue(tmp_path, env):
    work = example(tmp_path, "p4", LOCAL_CONF.replace("lazyErrors: false", "lazyErrors: true"))
    (work / "lazy.swift").write_text("""
type file;
app (file out) bad () { sh "-c" "echo nope >&2; exit 1" stdout=@out; }
app (file out) good () { echo "fine" stdout=@out; }
file a <"a.txt">;
file b <"b.txt">;
a = bad();
b = good();
""")
    result = swift(work, "lazy.swift", env=env)
    assert result.returncode == 2
    assert re.search(r"Final status: .*Finished successfully:1  Failed:1", result.stdout)
    assert "The following errors have occurred:" in result.stdout
    assert (work / "b.txt").read_text() == "fine\n"


def test_literal_filename_fails_with_direct_staging(tmp_path, env):
    """SWIFT-FACTS: with staging direct an app using a literal name fails (sort: cannot read)."""
    from swiftrun.swiftconf import script_uses_literal_filenames
    work = example(tmp_path, "p4", LOCAL_CONF.replace('staging: "local"', 'staging: "direct"'))
    script = (work / "p4.swift").read_text().replace("filename(unsorted)", '"unsorted.txt"')
    (work / "p4.swift").write_text(script)
    assert script_uses_literal_filenames(script) == ["sortdata"]
    result = swift(work, "p4.swift", env=env)
    assert result.returncode == 2
    assert "cannot read: unsorted.txt" in result.stdout


def test_compile_error(tmp_path, env):
    work = example(tmp_path, "p4")
    (work / "bad.swift").write_text("type file;\nint x = ;\n")
    result = swift(work, "bad.swift", env=env)
    assert result.returncode == 3
    assert re.search(r"Could not compile SwiftScript source: line 2:\d+: ", result.stdout)


@pytest.mark.parametrize("body", [
    "file f <\"a\">; f = nosuchapp(f);",
    "int x = y + 1;",
    "foreach i in [0:2] { trace(i) }",
])
def test_compile_errors_exit_3(tmp_path, env, body):
    work = example(tmp_path, "p4")
    (work / "bad.swift").write_text("type file;\n" + body + "\n")
    assert swift(work, "bad.swift", env=env).returncode == 3


def test_missing_script(tmp_path, env):
    work = example(tmp_path, "p4")
    result = swift(work, "nope.swift", env=env)
    assert result.returncode == 4
    assert "nope.swift" in result.stdout


def test_missing_argument_fails_the_run(tmp_path, env):
    work = example(tmp_path, "p4")
    (work / "a.swift").write_text('int n = toInt(arg("n"));\ntrace(n);\n')
    result = swift(work, "a.swift", env=env)
    assert result.returncode == 2
    assert "Missing command line argument: n" in result.stdout
    ok = swift(work, "a.swift", "-n=5", env=env)
    assert ok.returncode == 0 and "SwiftScript trace: 5" in ok.stdout


BAD_CONFS = [
    (LOCAL_CONF + "bogusTopKey: 1\n", r"^swift\.conf:13 unexpected property 'bogusTopKey'$"),
    (LOCAL_CONF.replace('staging: "local"', 'staging: "local"\n    bogusSiteKey: 2'),
     r"^swift\.conf:8 unexpected property 'site\.cloud-static\.bogusSiteKey'$"),
    (LOCAL_CONF + "executionRetries: abc\n",
     r"^Cannot convert value 'abc' for property 'executionRetries' to integer$"),
    (LOCAL_CONF.replace('staging: "local"', 'staging: "bogus"'),
     r"^Invalid value 'bogus' for property 'site\.cloud-static\.staging'\. Valid values are: 'direct', "
     r"'local', 'service-local', 'shared-fs', 'swift', 'wrapper'$"),
    (LOCAL_CONF + "lazyErrors = = true\n", r"^swift\.conf: 13: Expecting a value but got wrong token: '='$"),
    (LOCAL_CONF.replace("sites: [cloud-static]", "sites: [cloud-static, elsewhere]"), r"elsewhere"),
    (LOCAL_CONF.replace('workDirectory: "/tmp/swiftwork"', ""), r"site\.cloud-static\.workDirectory"),
]


@pytest.mark.parametrize("conf,pattern", BAD_CONFS,
                         ids=["top-key", "site-key", "integer", "staging", "syntax", "sites", "workdir"])
def test_config_errors_on_stdout_exit_1(tmp_path, env, conf, pattern):
    work = example(tmp_path, "p4", conf)
    result = swift(work, "p4.swift", env=env)
    assert result.returncode == 1
    assert result.stderr == ""
    assert "Swift 0.96.2" not in result.stdout       # no banner
    assert re.search(pattern, result.stdout.strip()), result.stdout
    assert not (work / "run001").exists()


def test_config_option_replaces_dot_swift_conf(tmp_path, env):
    work = example(tmp_path, "p4", "this is { not valid")
    (tmp_path / "good.conf").write_text(LOCAL_CONF)
    result = swift(work, "-config", str(tmp_path / "good.conf"), "p4.swift", env=env)
    assert result.returncode == 0, result.stdout
    assert swift(work, "p4.swift", env=env).returncode == 1


def test_sitelist(tmp_path, env):
    work = example(tmp_path, "p4")
    result = swift(work, "-sitelist", "p4.swift", env=env)
    assert result.returncode == 0
    assert result.stdout.startswith("Available sites: ") and "cloud-static" in result.stdout


def test_unwritable_script_dir(tmp_path, env):
    """The script's directory refuses the run directory (works as root too: /proc/self/fd)."""
    work = example(tmp_path, "p4")
    with open(work / "p4.swift") as script:
        fd = script.fileno()
        result = subprocess.run([str(SWIFT), f"/proc/self/fd/{fd}"], cwd=work, env=env, capture_output=True,
                                text=True, timeout=60, pass_fds=(fd,))
    assert result.returncode == 1, result.stdout
    assert "Unable to create run directory /proc/self/fd/run001" in result.stdout
    if os.geteuid() != 0:
        os.chmod(work, 0o555)
        try:
            result = swift(work, "p4.swift", env=env)
        finally:
            os.chmod(work, 0o755)
        assert result.returncode == 1
        assert f"Unable to create run directory {work}/run001" in result.stdout


# --------------------------------------------------------------------------------------------------
# coaster service
# --------------------------------------------------------------------------------------------------

def test_coaster_site_without_service_is_refused(tmp_path, env):
    work = example(tmp_path, "p4", COASTER_CONF)
    result = swift(work, "p4.swift", env=env)
    assert result.returncode == 2
    assert "Could not submit job" in result.stdout
    assert "ChannelException: Failed to create socket" in result.stdout
    assert "java.net.ConnectException: Connection refused" in result.stdout
    assert not (work / "sorted.txt").exists()


def test_coaster_site_with_service_runs(tmp_path, env, service):
    assert service.lines == ["Started coaster service: http://127.0.0.1:50010",
                             "Worker connection URL: http://127.0.0.1:50005"]
    port = int(service.port_file.read_text())
    assert port != 50010
    assert list(tmp_path.glob("cps-*.log"))
    work = example(tmp_path, "p4", COASTER_CONF)
    result = swift(work, "p4.swift", env=env)
    assert result.returncode == 0, result.stdout
    assert (work / "sorted.txt").exists()
    assert "connection from 127.0.0.1" in next(tmp_path.glob("cps-*.log")).read_text()
    assert service.stop() == 0
    assert not service.port_file.exists()


def test_stale_port_file_is_refused(tmp_path, env, service):
    service.stop()
    service.port_file.parent.mkdir(parents=True, exist_ok=True)
    service.port_file.write_text("1\n")              # nothing listens on port 1
    work = example(tmp_path, "p4", COASTER_CONF)
    result = swift(work, "p4.swift", env=env)
    assert result.returncode == 2
    assert "Connection refused" in result.stdout


def test_port_file_falls_back_to_home(tmp_path, env):
    env = dict(env, SWIFTRUN_NODE_ROOT="/proc/swiftrun-standin-no-such-dir")
    svc = Service(tmp_path, env)
    try:
        fallback = Path(env["HOME"]) / ".swiftrun-standin" / "coaster-service.port"
        assert fallback.exists()
        work = example(tmp_path, "p4", COASTER_CONF.replace('"/tmp/swiftwork"', '"swiftwork"'))
        result = swift(work, "p4.swift", env=env)
        assert result.returncode == 0, result.stdout
    finally:
        assert svc.stop() == 0
    assert not fallback.exists()


# --------------------------------------------------------------------------------------------------
# swiftrun's rendered swift.conf, run by the stand-in
# --------------------------------------------------------------------------------------------------

def _project(work: Path, site: str = "cloud-static", staging: str = "local"):
    from swiftrun.project import ClusterSettings, Project, SwiftSettings
    import tomllib
    data = tomllib.loads((work / "swiftrun.toml").read_text())
    return Project(root=work, path=work / "swiftrun.toml",
                   cluster=ClusterSettings(**data["cluster"]),
                   swift=SwiftSettings(**{**data["swift"], "site": site, "staging": staging}))


@pytest.mark.parametrize("site", ["cloud-static", "shared-fs", "local"])
def test_rendered_conf_runs_p4(tmp_path, env, site):
    from swiftrun.swiftconf import render_checked
    work = example(tmp_path, "p4", conf=None)
    rendered = render_checked(_project(work, site=site), script_dir=work)
    conf = tmp_path / "rendered.conf"
    conf.write_text(rendered.text)
    svc = Service(tmp_path, env) if site != "local" else None
    try:
        result = swift(work, "-config", str(conf), "p4.swift", env=env)
    finally:
        if svc:
            svc.stop()
    assert result.returncode == 0, result.stdout
    numbers = sorted(int(x) for x in (work / "unsorted.txt").read_text().split())
    assert [int(x) for x in (work / "sorted.txt").read_text().split()] == numbers
    log = (work / "run001" / "swift.log").read_text()
    assert "site.cloud-static.execution.options.maxJobs: 2" in log or site == "local"


def test_rendered_conf_with_user_overrides_runs_p6(tmp_path, env):
    from swiftrun.swiftconf import render_checked
    work = example(tmp_path, "p6", conf="site.cloud-static.execution.type: local\nlazyErrors: true\n")
    rendered = render_checked(_project(work), script_dir=work)
    (tmp_path / "rendered.conf").write_text(rendered.text)
    result = swift(work, "-config", str(tmp_path / "rendered.conf"), "p6.swift", "-nsim=2", "-steps=0", env=env)
    assert result.returncode == 0, result.stdout
    assert (work / "output" / "average.out").exists()


def test_slow_run_can_be_interrupted(tmp_path, env):
    work = example(tmp_path, "p6")
    proc = subprocess.Popen([str(SWIFT), "p6.swift", "-nsim=5", "-steps=0"], cwd=work,
                            env=dict(env, STANDIN_SWIFT_SLOW="0.5"), stdout=subprocess.PIPE, text=True)
    try:
        seen = []
        while True:
            line = proc.stdout.readline()
            assert line, "swift ended before it was interrupted"
            seen.append(line)
            if "Finished successfully:1" in line:
                break
        started = time.monotonic()
        os.kill(proc.pid, signal.SIGTERM)
        code = proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
    assert code != 0
    assert time.monotonic() - started < 5
    assert not (work / "output" / "average.out").exists()
    assert seen[1].startswith("RunID: run001")


# --------------------------------------------------------------------------------------------------
# worker.pl
# --------------------------------------------------------------------------------------------------

def test_worker_records_args_and_sleeps_until_killed(tmp_path, env):
    proc = subprocess.Popen([str(WORKER), "-w", "3600", "-c", "4", "http://10.0.0.7:50005,http://10.0.0.8:50005",
                             "block-1", "/var/log/swiftrun-worker"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    log = tmp_path / "root" / "var" / "log" / "worker-standin.log"
    for _ in range(100):
        if log.exists() and log.read_text():
            break
        time.sleep(0.05)
    record = json.loads(log.read_text().splitlines()[-1])
    assert record["urls"] == ["http://10.0.0.7:50005", "http://10.0.0.8:50005"]
    assert (record["concurrency"], record["walltime"], record["block_id"]) == (4, 3600, "block-1")
    assert record["logdir"] == "/var/log/swiftrun-worker"
    assert proc.poll() is None
    os.kill(proc.pid, signal.SIGTERM)
    assert proc.wait(timeout=10) == 0
    proc.stdout.close()
    proc.stderr.close()


def test_worker_idle_walltime_and_bad_args(tmp_path, env):
    done = subprocess.run([str(WORKER), "-w", "1", "http://10.0.0.7:50005", "b", "NOLOGGING"], env=env,
                          capture_output=True, timeout=10)
    assert done.returncode == 0
    bad = subprocess.run([str(WORKER), "-c"], env=env, capture_output=True, text=True, timeout=10)
    assert bad.returncode == 1 and "Usage: worker.pl" in bad.stderr


def test_worker_never_touches_the_network():
    text = WORKER.read_text()
    assert "socket" not in text and "urllib" not in text and "http.client" not in text
