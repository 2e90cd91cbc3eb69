"""Issue 14 #11: every `--json` document fits its published schema (docs/schemas/), on real
outputs of the installed command: offline (plan, --dry-run, conf, doctor, report, errors) and on
one test cluster that goes through up, list, connect, add, remove, run, fetch, cancel, report,
doctor, stop-headnode and down. A command given --json that fails prints the error document."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.support.cli import swiftrun, toml_project
from tests.support.schemas import DRAFT, SCHEMA_DIR, load_schema, schema_path, validate

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

# --json options that have no schema yet, each with the reason.
NO_SCHEMA: dict[str, str] = {}


def json_commands() -> list[str]:
    """Every command of the CLI (subcommands of a group as 'group sub') with a --json option."""
    import importlib

    import click

    from swiftrun.cli import COMMANDS

    found = []

    def walk(name, cmd):
        if isinstance(cmd, click.Group):
            for sub, subcmd in cmd.commands.items():
                walk(f"{name} {sub}", subcmd)
        elif any("--json" in p.opts for p in cmd.params if isinstance(p, click.Option)):
            found.append(name)

    for verb, (module, attr) in COMMANDS.items():
        walk(verb, getattr(importlib.import_module(f"swiftrun.commands.{module}"), attr))
    return sorted(set(found))


def jrun(command: str, *args, cwd: Path, rc: int | tuple = 0, env: dict | None = None,
         timeout: float = 300):
    """Run `swiftrun <args>` (args include --json), expect exit ``rc``, and validate stdout
    (exactly one JSON document) against ``command``'s schema."""
    res = swiftrun(*args, cwd=cwd, check=False, env=env, timeout=timeout)
    want = rc if isinstance(rc, tuple) else (rc,)
    assert res.returncode in want, (f"swiftrun {' '.join(map(str, args))} exited "
                                    f"{res.returncode}\nstdout:\n{res.stdout}\nstderr:\n{res.stderr}")
    assert "Traceback" not in res.stderr, res.stderr
    try:
        doc = json.loads(res.stdout)
    except json.JSONDecodeError as exc:
        raise AssertionError(f"swiftrun {' '.join(map(str, args))}: stdout is not one JSON "
                             f"document ({exc})\nstdout:\n{res.stdout}\nstderr:\n{res.stderr}")
    validate(command, doc)
    if res.returncode != 0 and "error" in doc and isinstance(doc["error"], str):
        assert doc["exit_code"] == res.returncode
        assert doc["error"] in res.stderr.replace("\n", " ")   # the same words as the one line
    return doc


def copy_p4(dest: Path, cloud=None, **kw) -> Path:
    shutil.copytree(EXAMPLES / "p4", dest, symlinks=True)
    if cloud is not None:
        (dest / "swiftrun.toml").unlink()
        toml_project(dest, cloud, **kw)
    return dest


def test_every_json_option_has_a_schema_and_every_schema_a_command():
    commands = json_commands()
    assert {"run", "plan", "up", "down", "list", "doctor", "image build"} <= set(commands)
    missing = [c for c in commands if c not in NO_SCHEMA and not schema_path(c).is_file()]
    assert not missing, f"--json without a schema in docs/schemas/: {missing}"
    names = {schema_path(c).name for c in commands}
    stray = sorted(p.name for p in SCHEMA_DIR.glob("*.schema.json") if p.name not in names)
    assert not stray, f"schemas of no --json command: {stray}"
    for command, why in NO_SCHEMA.items():
        assert command in commands and why


def test_every_schema_is_a_valid_draft_2020_12_schema_with_the_error_document():
    import jsonschema

    for command in json_commands():
        if command in NO_SCHEMA:
            continue
        path = schema_path(command)
        schema = load_schema(command)
        assert schema.get("$schema") == DRAFT, path.name
        jsonschema.Draft202012Validator.check_schema(schema)
        assert schema.get("title") and schema.get("description"), path.name
        # every command's document may be the error document instead
        refs = [alt.get("$ref") for alt in schema.get("oneOf", [])]
        assert "#/$defs/error" in refs, f"{path.name}: no error document in oneOf"
        validate(command, {"error": "x: no such file", "exit_code": 2})


def test_offline_documents_and_errors(aws_env, tmp_path):
    proj = copy_p4(tmp_path / "p4")
    plan = jrun("plan", "plan", "p4.swift", "--json", cwd=proj)
    assert plan["instances"][1]["count"] == 2
    dry = jrun("run", "--dry-run", "p4.swift", "--json", cwd=proj)
    assert dry["script"] == str(proj / "p4.swift")
    jrun("run", "run", "p4.swift", "--dry-run", "--json", cwd=proj)
    assert "sites" in jrun("conf", "conf", "p4.swift", "--json", cwd=proj)["swift_conf"]
    static = tmp_path / "static"
    static.mkdir()
    swiftrun("init", "--provider", "static", cwd=static)
    (static / "x.swift").write_text('trace("x");\n')
    assert "hosts" in jrun("plan", "plan", "x.swift", "--json", cwd=static)

    # doctor on the moto endpoint, no cluster: a checklist (exit 1 when a check fails)
    doc = jrun("doctor", "doctor", "--json", "--timeout", "20", cwd=proj, rc=(0, 1))
    assert {c["section"] for c in doc["checks"]} >= {"local"}

    # errors: bad flags, missing files, bad input, each its one document and exit code
    for command, args in [("plan", ["plan", "missing.swift"]), ("run", ["missing.swift"]),
                          ("plan", ["plan", "p4.swift", "--bogus"]),
                          ("conf", ["conf", "missing.swift"]),
                          ("up", ["up", "-p", "missing.toml"]),
                          ("list", ["list", "--cluster", "Not A Name!"]),
                          ("doctor", ["doctor", "missing.swift"]),
                          ("report", ["report"]),
                          ("add", ["add", "0"]), ("remove", ["remove", "x"]),
                          ("stop-headnode", ["stop-headnode", "-p", "missing.toml"]),
                          ("connect", ["connect", "-p", "missing.toml"]),
                          ("cancel", ["cancel", "-p", "missing.toml"]),
                          ("fetch", ["fetch", "-p", "missing.toml"]),
                          ("down", ["down", "-p", "missing.toml"]),
                          ("image build", ["image", "build", "-p", "missing.toml"])]:
        doc = jrun(command, *args, "--json", cwd=proj, rc=2)
        assert set(doc) <= {"error", "exit_code", "cluster"}, doc


def test_a_cluster_through_every_verb(cloud, tmp_path):
    proj = copy_p4(tmp_path / "p4", cloud, name="schemas", workers=1)
    (proj / "broken.swift").write_text("this is not swift\n")
    up = jrun("up", "up", "--json", cwd=proj, env={"SWIFTRUN_BOOT_TIMEOUT": "240"})
    assert len(up["created"]) == 2 and not up["reused"]
    assert jrun("up", "up", "--json", cwd=proj)["reused"]
    listed = jrun("list", "list", "--json", cwd=proj)
    assert sorted(n["role"] for n in listed["nodes"]) == ["headnode", "worker"]
    # strict enough to catch a changed shape: an unknown state, a missing or an extra key
    for broken in ({**listed, "nodes": [{**listed["nodes"][0], "state": "exploded"}]},
                   {k: v for k, v in listed.items() if k != "cost"}, {**listed, "extra": 1}):
        with pytest.raises(AssertionError, match="does not fit"):
            validate("list", broken)
    conn = jrun("connect", "connect", "--print", "--json", cwd=proj)
    assert conn["node"]["role"] == "headnode" and conn["argv"][0].endswith("ssh")
    assert jrun("connect", "connect", "worker0", "--json", cwd=proj)["node"]["role"] == "worker"
    jrun("connect", "connect", "worker7", "--json", cwd=proj, rc=2)
    added = jrun("add", "add", "1", "--json", cwd=proj, env={"SWIFTRUN_BOOT_TIMEOUT": "240"})
    assert len(added["added"]) == 1
    assert len(jrun("remove", "remove", "1", "--json", cwd=proj)["removed"]) == 1

    ran = jrun("run", "p4.swift", "--keep-cluster", "--report", "--json", cwd=proj)
    assert ran["exit_code"] == 0 and ran["swift_run"] == "run001" and not ran["dissolved"]
    assert ran["report"]["tasks"]["total"] >= 1
    # an output that cannot be written here (a directory of mine in its way, kept out of the
    # sync): the run fails at its fetch and keeps the cluster; fetch's document then says what
    # did not come back, with the error
    (proj / ".swiftignore").write_text("sorted.txt\n")
    (proj / "unsorted.txt").write_text("3\n1\n2\n")
    (proj / "sorted.txt").unlink()
    (proj / "sorted.txt").mkdir()
    (proj / "sorted.txt" / "mine").write_text("in the way\n")
    jrun("run", "p4.swift", "--keep-cluster", "--json", cwd=proj, rc=1)
    blocked = jrun("fetch", "fetch", "p4.swift", "--json", cwd=proj, rc=1)
    assert blocked["failed"] and "swiftrun fetch" in blocked["error"]
    shutil.rmtree(proj / "sorted.txt")
    fetched = jrun("fetch", "fetch", "p4.swift", "--json", cwd=proj)
    assert "sorted.txt" in fetched["fetched"] and fetched["failed"] == []
    bad = jrun("run", "broken.swift", "--keep-cluster", "--json", cwd=proj, rc=3)
    assert bad["exit_code"] == 3
    fetched = jrun("fetch", "fetch", "p4.swift", "--json", cwd=proj)
    assert fetched["failed"] == [] and fetched["fetched"] == []   # the run brought all back
    assert jrun("cancel", "cancel", "p4.swift", "--json", cwd=proj)["cancelled"] is False
    logs = jrun("logs", "logs", "p4.swift", "--json", cwd=proj)
    assert logs["state"] == "finished" and logs["exit_code"] == 3
    followed = jrun("logs", "logs", "p4.swift", "--follow", "--json", cwd=proj, rc=3)
    assert followed["exit_code"] == 3 and followed["console"]
    boot = jrun("logs", "logs", "--boot", "headnode", "--json", cwd=proj)
    assert boot["ok"] and "node ready" in boot["boot_log"]
    jrun("logs", "logs", "--run", "19990101-000000-dead", "--json", cwd=proj, rc=2)
    rep = jrun("report", "report", "run001", "--json", "--no-plots", cwd=proj)
    assert rep["tasks"]["ok"] >= 1
    doc = jrun("doctor", "doctor", "p4.swift", "--json", "--timeout", "30", cwd=proj, rc=(0, 1))
    assert "headnode" in {c["section"] for c in doc["checks"]}
    stopped = jrun("stop-headnode", "stop-headnode", "--json", cwd=proj)
    assert stopped["stopped"].startswith("i-")
    assert "stopped" in {n["state"] for n in jrun("list", "list", "--json", cwd=proj)["nodes"]}
    jrun("connect", "connect", "--json", cwd=proj, rc=(1, 2))
    gone = jrun("down", "down", "--json", cwd=proj)
    assert len(gone["terminated"]) == 2
    assert jrun("list", "list", "--json", cwd=proj)["nodes"] == []
    assert jrun("down", "down", "--json", cwd=proj)["terminated"] == []
    jrun("cancel", "cancel", "--json", cwd=proj, rc=(1, 2))
