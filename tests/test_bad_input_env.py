"""Bad input from the environment: every SWIFTRUN_* variable with a bad value, an unusable home,
and AWS's own variables (AWS_PROFILE, AWS_CONFIG_FILE, AWS_SHARED_CREDENTIALS_FILE) naming
something that is not there. One line naming the variable and the fix, exit 2, no traceback,
within seconds and before anything is made in the cloud."""

from __future__ import annotations

import time

from tests.support.cli import swiftrun, toml_project
from tests.test_e2e_bad_input import P4, nothing_created, one_line_error

# variable -> (bad value, words the one line must hold)
BAD_VARIABLES = {
    "SWIFTRUN_SSH_TIMEOUT": ("abc", ["not a number of seconds", "e.g. 300", "unset it"]),
    "SWIFTRUN_BOOT_TIMEOUT": ("-5", ["below", "1 s"]),
    "SWIFTRUN_WARM_TTL": ("ten", ["not a number of seconds"]),
    "SWIFTRUN_HEARTBEAT": ("0", ["below"]),
    "SWIFTRUN_EC2_CONSISTENCY_TIMEOUT": ("2m", ["not a number of seconds"]),
    "SWIFTRUN_DOCTOR_TIMEOUT": ("nan", ["not a number of seconds"]),
    "SWIFTRUN_WATCH_DEBOUNCE": ("1e9", ["above", "3600"]),
    "SWIFTRUN_WATCH_MAX_RUNS": ("two", ["not a whole number"]),
    "SWIFTRUN_SSH_PERSIST": ("forever", ["ControlPersist"]),
    "SWIFTRUN_PRICING": ("cheap", ["api", "table"]),
    "SWIFTRUN_OFFLINE_PRICES": ("maybe", ["yes/no"]),
    "SWIFTRUN_DOCTOR_HEADNODE_ADDR": ("10.0.0.5:99999", ["host:port", "65535"]),
    "SWIFTRUN_DEBUG": ("loud", ["yes/no"]),
}


def test_every_swiftrun_variable_with_a_bad_value_is_named(cloud, tmp_path):
    toml_project(tmp_path, cloud, name="envbad", workers=1)
    (tmp_path / "p.swift").write_text(P4)
    for name, (value, needles) in sorted(BAD_VARIABLES.items()):
        for argv in (["up"], ["p.swift"], ["doctor"], ["list"]):
            started = time.monotonic()
            res = swiftrun(*argv, cwd=tmp_path, check=False, env={name: value})
            one_line_error(res, f"{name}={value!r}", *needles)
            assert time.monotonic() - started < 20, (name, argv)
    assert nothing_created(cloud)


def test_the_table_covers_every_variable_the_code_reads():
    """A new SWIFTRUN_* read must come with its row (and so its check)."""
    import re
    from pathlib import Path

    from swiftrun.environ import VARIABLES

    read = set()
    for path in (Path(__file__).resolve().parent.parent / "swiftrun").rglob("*.py"):
        if path.name == "environ.py":
            continue
        text = path.read_text()
        assert not re.search(r"(float|int)\(os\.environ", text), path
        read |= set(re.findall(r"environ\.(?:get\(|\[)\s*[\"'](SWIFTRUN_\w+)", text))
    assert read - {"SWIFTRUN_DEBUG"} <= set(VARIABLES), read - set(VARIABLES)


def test_an_unusable_home_names_its_variable(cloud, tmp_path):
    toml_project(tmp_path, cloud, name="homebad", workers=1)
    a_file = tmp_path / "afile"
    a_file.write_text("x\n")
    one_line_error(swiftrun("up", cwd=tmp_path, check=False, env={"SWIFTRUN_HOME": str(a_file)}),
                   "SWIFTRUN_HOME=", "is a file", "unset it")
    one_line_error(swiftrun("up", cwd=tmp_path, check=False,
                            env={"SWIFTRUN_HOME": str(a_file / "state")}),
                   "SWIFTRUN_HOME=", "not a directory")
    one_line_error(swiftrun("up", cwd=tmp_path, check=False,
                            env={"SWIFTRUN_HOME": "", "HOME": str(a_file)}),
                   "HOME=", ".swiftrun", "set HOME")
    one_line_error(swiftrun("up", cwd=tmp_path, check=False, env={"SWIFTRUN_HOME": "", "HOME": ""}),
                   "HOME=''", "set HOME")
    assert nothing_created(cloud)
    # --help needs no home
    res = swiftrun("--help", cwd=tmp_path, check=False, env={"SWIFTRUN_HOME": str(a_file)})
    assert res.returncode == 0, res.stderr


def test_aws_variables_naming_what_is_not_there(cloud, tmp_path):
    toml_project(tmp_path, cloud, name="awsbad", workers=1)
    broken = tmp_path / "broken-config"
    broken.write_text("[default\nregion = us-west-2\n")
    line = one_line_error(swiftrun("up", cwd=tmp_path, check=False, env={"AWS_PROFILE": "nope"}),
                          "AWS_PROFILE='nope'", "no such AWS profile", "unset it")
    assert "[ec2] profile" not in line
    one_line_error(swiftrun("up", cwd=tmp_path, check=False, env={"AWS_CONFIG_FILE": str(broken)}),
                   "AWS_CONFIG_FILE=", "not a valid AWS config file")
    one_line_error(swiftrun("list", cwd=tmp_path, check=False,
                            env={"AWS_SHARED_CREDENTIALS_FILE": str(broken)}),
                   "AWS_SHARED_CREDENTIALS_FILE=", "not a valid AWS config file")
    assert nothing_created(cloud)


def test_credentials_file_and_profile_both_set_are_refused_at_load(cloud, tmp_path):
    toml_project(tmp_path, cloud, name="both", workers=1)
    (tmp_path / "credentials.csv").write_text("Access key ID,Secret access key\n"
                                              "AKIAEXAMPLEEXAMPLE00,abcdefghijklmnopqrstuvwxyz0123456789ABCD\n")
    text = (tmp_path / "swiftrun.toml").read_text().replace(
        "[ec2]\n", '[ec2]\nprofile = "lab"\ncredentials_file = "credentials.csv"\n')
    (tmp_path / "swiftrun.toml").write_text(text)
    (tmp_path / "p.swift").write_text(P4)
    for argv in (["up"], ["p.swift", "--dry-run"]):
        one_line_error(swiftrun(*argv, cwd=tmp_path, check=False),
                       "[ec2] profile", "[ec2] credentials_file", "keep one")
    assert nothing_created(cloud)
