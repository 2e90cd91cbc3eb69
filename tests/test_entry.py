"""The `swiftrun` program leaves without the interpreter's teardown (cli.entry): what it
printed must still all be there, with main()'s exit code."""

from __future__ import annotations

import os
import subprocess
import sys

from swiftrun import __version__


def buffered_env(**extra: str) -> dict[str, str]:
    """Output to a pipe block-buffered, as a user's shell gives it (this machine sets
    PYTHONUNBUFFERED, which would hide a missing flush)."""
    return {**{k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}, **extra}


def program(*args: str, **kw) -> subprocess.CompletedProcess:
    env = buffered_env(SWIFTRUN_HOME=kw.pop("home"))
    return subprocess.run([sys.executable, "-m", "swiftrun", *args], capture_output=True,
                          text=True, env=env, stdin=subprocess.DEVNULL, timeout=60, **kw)


def test_output_to_a_pipe_is_all_there_and_the_code_is_mains(tmp_path):
    res = program("--version", home=str(tmp_path / "home"))
    assert (res.returncode, res.stdout) == (0, f"swiftrun, version {__version__}\n")
    helped = program("--help", home=str(tmp_path / "home"))
    assert helped.returncode == 0 and helped.stdout.startswith("Usage:")
    assert helped.stdout.endswith("\n") and "down" in helped.stdout


def test_a_usage_error_keeps_its_exit_code_and_its_one_line(tmp_path):
    res = program("p4.swift", "--keep-clustr", home=str(tmp_path / "home"), cwd=tmp_path)
    assert res.returncode == 2
    assert res.stderr.count("\n") == 1 and "--keep-cluster" in res.stderr
    assert "Traceback" not in res.stderr


def test_what_main_printed_without_a_flush_is_flushed_before_leaving(tmp_path):
    """print() to a pipe is block-buffered: os._exit alone would drop it."""
    code = ("import sys\nimport swiftrun.cli as cli\n"
            "def fake():\n    print('printed, never flushed ' * 40)\n    sys.exit(3)\n"
            "cli.main = fake\ncli.entry()\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=buffered_env(), stdin=subprocess.DEVNULL, timeout=60)
    assert res.returncode == 3
    assert res.stdout == "printed, never flushed " * 40 + "\n"
