"""CI use: one JSON document on stdout for run/up/list/down (errors too), the cluster name from
--cluster or SWIFTRUN_CLUSTER, nothing waits for a terminal, and `swiftrun --help` stays light."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.cli import SWIFTRUN, cluster_instances, swiftrun, toml_project

REPO = Path(__file__).resolve().parent.parent
OFFLINE = {"SWIFTRUN_OFFLINE_PRICES": "1"}
HEAVY = ("boto3", "botocore", "fabric", "paramiko", "invoke", "moto")


def loaded_after(argv: list[str]) -> dict:
    code = (
        "import json, sys\n"
        "from swiftrun.cli import main_group\n"
        "try:\n"
        f"    main_group.main(args={argv!r}, prog_name='swiftrun', standalone_mode=False)\n"
        "except SystemExit:\n"
        "    pass\n"
        f"heavy = sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})\n"
        "print(json.dumps(heavy))\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=REPO, stdin=subprocess.DEVNULL, timeout=60)
    assert res.returncode == 0, res.stderr
    out = res.stdout.strip().splitlines()
    return {"help": "\n".join(out[:-1]), "heavy": json.loads(out[-1])}


@pytest.mark.parametrize("argv", [["--help"], ["run", "--help"], ["up", "--help"],
                                  ["down", "--help"], ["list", "--help"]])
def test_help_does_not_import_boto3_or_fabric(argv):
    got = loaded_after(argv)
    assert got["heavy"] == [], f"swiftrun {' '.join(argv)} imported {got['heavy']}"
    assert "Usage:" in got["help"]


def test_help_from_the_installed_command_with_stdin_closed():
    res = subprocess.run(SWIFTRUN.split() + ["--help"], capture_output=True, text=True,
                         stdin=subprocess.DEVNULL, timeout=60)
    assert res.returncode == 0 and "swiftrun p4.swift" in res.stdout


def _prompt_calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")
            if name in ("input", "prompt", "confirm", "getpass"):
                yield node.lineno, name


def test_no_code_path_asks_the_terminal():
    """A question on stdin would hang a CI job: swiftrun asks none (--yes is for the future)."""
    found = []
    for path in sorted((REPO / "swiftrun").rglob("*.py")):
        for line, name in _prompt_calls(ast.parse(path.read_text())):
            found.append(f"{path.relative_to(REPO)}:{line} {name}()")
    assert found == []


def test_json_error_is_still_one_document(tmp_path):
    res = swiftrun("list", "--json", "-p", tmp_path / "missing.toml", cwd=tmp_path, check=False,
                   env=OFFLINE)
    assert res.returncode == 2
    doc = json.loads(res.stdout)
    assert doc["exit_code"] == 2 and "missing.toml" in doc["error"]
    assert "swiftrun: error:" in res.stderr
    (tmp_path / "x.swift").write_text("trace(1);\n")
    res = swiftrun("run", "nope.swift", "--json", cwd=tmp_path, check=False, env=OFFLINE)
    assert res.returncode == 2 and json.loads(res.stdout)["exit_code"] == 2


def test_up_list_down_json_with_cluster_from_env_and_flag(cloud, tmp_path):
    proj = tmp_path / "ci"
    toml_project(proj, cloud, name="fromfile", workers=1)
    env = {**OFFLINE, "SWIFTRUN_CLUSTER": "ci-env"}

    up = swiftrun("up", "--json", cwd=proj, env=env)
    doc = json.loads(up.stdout)
    assert doc["cluster"] == "ci-env" and len(doc["nodes"]) == 2 and not doc["reused"]
    assert {n["role"] for n in doc["nodes"]} == {"headnode", "worker"}
    # t3.small + c5.large + a public IPv4 address each ($0.005/h; stock image: the worker needs one)
    assert doc["cost"]["per_hour"] == pytest.approx(0.0208 + 0.085 + 2 * 0.005)
    assert doc["cost"]["sources"] == ["table"] and "price table" in doc["cost"]["source"]
    assert doc["cost"]["estimate_before_launch"]["per_hour"] == pytest.approx(0.0208 + 0.085 + 2 * 0.005)
    assert len(cluster_instances(cloud, "ci-env")) == 2
    assert cluster_instances(cloud, "fromfile") == []

    # --cluster wins over the project's name (no env var this time)
    listing = json.loads(swiftrun("list", "--json", "--cluster", "ci-env", cwd=proj,
                                  env=OFFLINE).stdout)
    assert listing["cluster"] == "ci-env" and len(listing["nodes"]) == 2
    assert listing["cost"]["so_far"] > 0 and listing["cost"]["per_hour"] > 0
    other = json.loads(swiftrun("list", "--json", cwd=proj, env=OFFLINE).stdout)
    assert other["cluster"] == "fromfile" and other["nodes"] == []

    # down with stdin left open and never written to: nothing may wait for an answer
    out, err = tmp_path / "down.out", tmp_path / "down.err"
    import os

    with open(out, "w") as fo, open(err, "w") as fe:
        proc = subprocess.Popen(SWIFTRUN.split() + ["down", "--json"], cwd=proj,
                                env={**os.environ, **env}, stdin=subprocess.PIPE,
                                stdout=fo, stderr=fe)
        try:
            code = proc.wait(timeout=180)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stdin.close()
    assert code == 0, err.read_text()
    down = json.loads(out.read_text())
    assert down["cluster"] == "ci-env" and len(down["terminated"]) == 2
    assert down["cost"]["so_far"] > 0 and len(down["nodes"]) == 2
    assert cluster_instances(cloud, "ci-env") == []


def test_run_json_carries_swift_exit_code_and_cost(cloud, tmp_path):
    proj = tmp_path / "bad"
    toml_project(proj, cloud, name="cifail", workers=1)
    (proj / "fail.swift").write_text(
        'type file;\n'
        'app (file o) boom () { sh "-c" "echo ci-kaboom >&2; exit 3" stdout=@o; }\n'
        'file out <"out.txt">;\nout = boom();\n')
    res = swiftrun("fail.swift", "--json", cwd=proj, check=False, env=OFFLINE)
    assert res.returncode == 2, res.stderr
    doc = json.loads(res.stdout)          # exactly one document: json.loads rejects trailing data
    assert doc["exit_code"] == 2 and doc["cluster"] == "cifail" and doc["dissolved"]
    assert doc["run_id"] and set(doc["durations"]) >= {"up", "sync", "swift", "total"}
    assert {n["role"] for n in doc["nodes"]} == {"headnode", "worker"}
    assert doc["cost"]["so_far"] > 0 and doc["cost"]["sources"] == ["table"]
    assert doc["api_calls"] >= 1
    assert "ci-kaboom" in res.stderr
    assert cluster_instances(cloud, "cifail") == []


def test_github_actions_example_always_dissolves_and_keeps_secrets_in_env():
    yaml = pytest.importorskip("yaml")
    text = (REPO / "examples" / "ci" / "github-actions.yml").read_text()
    flow = yaml.safe_load(text)
    steps = [s for job in flow["jobs"].values() for s in job["steps"]]
    runs = [s for s in steps if "swiftrun examples/p4/p4.swift --json" in s.get("run", "")]
    assert len(runs) == 1
    downs = [s for s in steps if "swiftrun down" in s.get("run", "")]
    assert downs and all(s.get("if") == "always()" for s in downs)
    # secrets only ever as step environment, never on a command line or echoed
    for s in steps:
        assert "secrets." not in s.get("run", ""), s
        for value in (s.get("env") or {}).values():
            if "secrets." in str(value):
                assert str(value).strip().startswith("${{ secrets.")
    assert "echo $AWS" not in text and "echo ${AWS" not in text
    assert any("SWIFTRUN_CLUSTER" in (job.get("env") or {}) for job in flow["jobs"].values())
