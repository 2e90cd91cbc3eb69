"""Every bad input: one line naming the file/key/flag and the fix, exit 2, no traceback, and
nothing created in the cloud."""

from __future__ import annotations

import pytest

from tests.support.cli import swiftrun, toml_project

P4 = "type file;\nfile o <\"o.txt\">;\n"


def nothing_created(cloud):
    ec2 = cloud.ec2
    insts = [i for r in ec2.describe_instances()["Reservations"] for i in r["Instances"]]
    groups = [g for g in ec2.describe_security_groups()["SecurityGroups"] if g["GroupName"] != "default"]
    keys = ec2.describe_key_pairs()["KeyPairs"]
    return insts == [] and groups == [] and keys == []


def one_line_error(res, *needles):
    assert res.returncode == 2, (res.returncode, res.stdout, res.stderr)
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, res.stderr
    assert "Traceback" not in res.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


CASES = {
    "toml syntax": ("[cluster]\nworkers = = 3\n", ["swiftrun.toml:2"]),
    "unknown key": ("[cluster]\nworkerz = 3\n", ["workerz", "workers"]),
    "unknown section": ("[clusterr]\nworkers = 3\n", ["clusterr"]),
    "wrong type": ("[cluster]\nworkers = \"three\"\n", ["workers"]),
    "negative workers": ("[cluster]\nworkers = -1\n", ["workers", "-1"]),
    "unknown region": ("[ec2]\nregion = \"us-weest-2\"\n", ["region", "us-west-2"]),
    "bad provider": ("[cluster]\nprovider = \"gcp\"\n", ["provider"]),
    "bad duration": ("[cluster]\nidle_timeout = \"soon\"\n", ["idle_timeout"]),
    "bad staging": ("[swift]\nstaging = \"nfs\"\n", ["staging"]),
    "missing tool directory": ("[swift]\npath = [\"../nope\"]\n", ["path", "not a directory"]),
    # absurd numbers name the bound they cross
    "workers beyond any quota": ("[cluster]\nworkers = 50000\n", ["workers = 50000", "above 1000", "quota"]),
    "port beyond 65535": ("[ssh]\nport = 70000\n", ["port = 70000", "above 65535"]),
    "slots beyond any instance": ("[cluster]\nworker_concurrency = 100000\n", ["worker_concurrency", "above 1024"]),
    "lifetime beyond a year": ("[cluster]\nmax_lifetime = \"9999d\"\n", ["max_lifetime", "366 days"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_project_file(cloud, tmp_path, case):
    text, needles = CASES[case]
    (tmp_path / "swiftrun.toml").write_text(text)
    (tmp_path / "p.swift").write_text(P4)
    for argv in (["up"], ["p.swift"]):
        one_line_error(swiftrun(*argv, cwd=tmp_path, check=False), *needles)
    assert nothing_created(cloud)


def test_missing_project_file_flag(cloud, tmp_path):
    one_line_error(swiftrun("up", "-p", "nope.toml", cwd=tmp_path, check=False), "nope.toml")


def test_missing_script_and_bad_flag(cloud, tmp_path):
    one_line_error(swiftrun("gone.swift", cwd=tmp_path, check=False), "gone.swift")
    res = swiftrun("up", "--bogus", cwd=tmp_path, check=False)
    assert res.returncode == 2 and "--bogus" in res.stderr and "Traceback" not in res.stderr
    res = swiftrun("add", "-1", cwd=tmp_path, check=False)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    one_line_error(swiftrun("add", "50000", cwd=tmp_path, check=False), "COUNT", "1000")
    assert nothing_created(cloud)


def test_bad_swift_argument_and_bad_swift_conf_fail_before_launch(cloud, tmp_path):
    toml_project(tmp_path, cloud, name="badconf", workers=1)
    (tmp_path / "p.swift").write_text(P4)
    one_line_error(swiftrun("p.swift", "nsim=3", cwd=tmp_path, check=False), "nsim=3", "-name=value")
    (tmp_path / "swift.conf").write_text("bogusTopKey: 1\n")
    one_line_error(swiftrun("p.swift", cwd=tmp_path, check=False), "bogusTopKey", "swift.conf")
    # values too, as Swift's own swift.conf.schema says (StrictlyPositiveInt)
    (tmp_path / "swift.conf").write_text("site.cloud-static { maxParallelTasks: 0 }\n")
    one_line_error(swiftrun("p.swift", cwd=tmp_path, check=False), "maxParallelTasks", "positive")
    assert nothing_created(cloud)


def test_missing_credentials(cloud, tmp_path, monkeypatch):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")   # never ask an instance role here
    toml_project(tmp_path, cloud, name="nocreds", workers=1)
    one_line_error(swiftrun("up", cwd=tmp_path, check=False), "credentials")
    assert nothing_created(cloud)


def test_missing_credentials_csv(cloud, tmp_path):
    toml_project(tmp_path, cloud, name="csv", workers=1,
                 extra="") 
    text = (tmp_path / "swiftrun.toml").read_text().replace(
        "[ec2]\n", "[ec2]\ncredentials_file = \"credentials.csv\"\n")
    (tmp_path / "swiftrun.toml").write_text(text)
    one_line_error(swiftrun("up", cwd=tmp_path, check=False), "credentials.csv")
    assert nothing_created(cloud)


PEM = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n"


@pytest.mark.parametrize("case", ["secret by content", "secret through a link", "dangling link",
                                  "link out to a directory"])
def test_what_the_upload_would_refuse_is_refused_before_launch(cloud, tmp_path, case):
    proj = tmp_path / "proj"
    toml_project(proj, cloud, name="refuse", workers=1)
    (proj / "p.swift").write_text(P4)
    outside = tmp_path / "outside"
    outside.mkdir()
    if case == "secret by content":          # the name says nothing; the content does
        (proj / "notes.txt").write_text("my notes\n" + PEM)
        needles = ["notes.txt", "private key", ".swiftignore"]
    elif case == "secret through a link":    # a link leads out to a key: its content would go up
        (outside / "deploy").write_text(PEM)
        (proj / "data.txt").symlink_to(outside / "deploy")
        needles = ["data.txt", "private key"]
    elif case == "dangling link":
        (proj / "tool.sh").symlink_to("../app/tool.sh")
        needles = ["tool.sh", "dangling"]
    else:
        (proj / "bin").symlink_to(outside)
        needles = ["bin", "directory"]
    for argv in (["p.swift"], ["p.swift", "--dry-run"]):
        one_line_error(swiftrun(*argv, cwd=proj, check=False), *needles)
    assert nothing_created(cloud)


def test_an_ecdsa_key_file_is_refused_before_anything_is_made(cloud, tmp_path):
    """EC2's ImportKeyPair takes RSA and ED25519 only (the strict test cloud refuses ECDSA too)."""
    import subprocess

    toml_project(tmp_path, cloud, name="ecdsa", workers=1)
    key = tmp_path / "mine.pem"
    subprocess.run(["ssh-keygen", "-q", "-t", "ecdsa", "-N", "", "-f", str(key)], check=True)
    text = (tmp_path / "swiftrun.toml").read_text().replace("[ssh]\n", f'[ssh]\nkey_file = "{key}"\n')
    (tmp_path / "swiftrun.toml").write_text(text)
    (tmp_path / "p.swift").write_text(P4)
    one_line_error(swiftrun("up", cwd=tmp_path, check=False), "ECDSA", "ed25519")
    assert nothing_created(cloud)


@pytest.mark.parametrize("case", ["directory", "dangling link"])
def test_a_project_file_that_is_no_file_is_an_error_not_the_defaults(cloud, tmp_path, case):
    """Before: both were skipped, and the search went on up to "no swiftrun.toml found" and a
    default cluster."""
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "p.swift").write_text(P4)
    if case == "directory":
        (proj / "swiftrun.toml").mkdir()
        needles = ["swiftrun.toml", "is a directory"]
    else:
        (proj / "swiftrun.toml").symlink_to("../elsewhere/swiftrun.toml")
        needles = ["swiftrun.toml", "dangling link", "elsewhere"]
    for argv in (["up"], ["p.swift"], ["p.swift", "--dry-run"], ["list"]):
        one_line_error(swiftrun(*argv, cwd=proj, check=False), *needles)
    assert nothing_created(cloud)


def _with_key_file(proj, key) -> None:
    text = (proj / "swiftrun.toml").read_text().replace("[ssh]\n", f'[ssh]\nkey_file = "{key}"\n')
    (proj / "swiftrun.toml").write_text(text)


def test_key_files_swiftrun_cannot_use_are_refused_at_load(cloud, tmp_path):
    """The public half, a PuTTY key, a passphrase (OpenSSH and PEM), a file that is no key: each
    was taken until ImportKeyPair or the first SSH connection, after resources were made."""
    import subprocess

    keys = tmp_path / "keys"
    keys.mkdir()

    def keygen(name, *extra):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(keys / name), *extra],
                       check=True)
        return keys / name

    good = keygen("good")
    cases = {
        "public half": (keys / "good.pub", ["is the public half", str(good)]),
        "putty": (keys / "mine.ppk", ["PuTTY", "puttygen"]),
        "openssh passphrase": (keygen("locked", "-N", "secret"), ["passphrase", "ssh-keygen -p"]),
        "pem passphrase": (keys / "locked-pem", ["passphrase"]),
        "not a key": (keys / "notes.txt", ["is not a private key"]),
    }
    (keys / "mine.ppk").write_text("PuTTY-User-Key-File-3: ssh-ed25519\nEncryption: none\n")
    subprocess.run(["ssh-keygen", "-q", "-t", "rsa", "-b", "2048", "-m", "PEM", "-N", "secret",
                    "-f", str(keys / "locked-pem")], check=True)
    (keys / "notes.txt").write_text("not a key at all\n")
    for case, (key, needles) in cases.items():
        proj = tmp_path / case.replace(" ", "-")
        toml_project(proj, cloud, name="keys", workers=1)
        _with_key_file(proj, key)
        (proj / "p.swift").write_text(P4)
        for argv in (["up"], ["p.swift"]):
            one_line_error(swiftrun(*argv, cwd=proj, check=False), "[ssh] key_file", *needles)
    assert nothing_created(cloud)


def test_a_group_readable_key_stops_the_verbs_that_connect_only(cloud, tmp_path):
    import subprocess

    key = tmp_path / "shared-key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    key.chmod(0o640)
    toml_project(tmp_path, cloud, name="keymode", workers=1)
    _with_key_file(tmp_path, key)
    (tmp_path / "p.swift").write_text(P4)
    for argv in (["up"], ["p.swift"], ["connect", "--print"], ["add", "1"]):
        one_line_error(swiftrun(*argv, cwd=tmp_path, check=False),
                       "[ssh] key_file", "mode 0640", f"chmod 600 {key}")
    assert nothing_created(cloud)
    for argv in (["list"], ["down"]):   # they never connect with it: no refusal for the mode
        res = swiftrun(*argv, cwd=tmp_path, check=False)
        assert res.returncode == 0 and "mode 0640" not in res.stderr, (argv, res.stderr)


def test_verbs_check_their_script_and_names_before_asking_the_cloud(cloud, tmp_path):
    """fetch/logs/cancel of a SCRIPT that is not there asked the headnode about a directory
    never synced; --cluster '' fell back on [cluster] name without a word; image build --name
    took what CreateImage refuses, after a node was booted for it."""
    toml_project(tmp_path, cloud, name="names", workers=1)
    images_before = len(cloud.ec2.describe_images(Owners=["self"])["Images"])
    for verb in ("fetch", "logs", "cancel"):
        one_line_error(swiftrun(verb, "gone.swift", cwd=tmp_path, check=False),
                       "gone.swift", "no such script")
    one_line_error(swiftrun("up", "--cluster", "", cwd=tmp_path, check=False),
                   "--cluster ''", "cannot be empty")
    one_line_error(swiftrun("list", "--cluster", "My Cluster!", cwd=tmp_path, check=False),
                   "--cluster", "My Cluster!", "lower-case")
    for bad in ("ab", "x" * 129, "name!with$signs", "tab\tname"):
        one_line_error(swiftrun("image", "build", "--name", bad, cwd=tmp_path, check=False),
                       "--name", "3-128")
    assert nothing_created(cloud)
    assert len(cloud.ec2.describe_images(Owners=["self"])["Images"]) == images_before


def test_init_into_a_missing_directory_says_so(tmp_path):
    (tmp_path / "afile").write_text("x\n")
    one_line_error(swiftrun("init", "-o", "nodir/swiftrun.toml", cwd=tmp_path, check=False),
                   "-o nodir/swiftrun.toml", "does not exist", "mkdir -p nodir")
    one_line_error(swiftrun("init", "-o", "afile/swiftrun.toml", cwd=tmp_path, check=False),
                   "afile", "not a directory")
    assert not (tmp_path / "nodir").exists()


def test_static_projects_asked_to_add_or_stop_the_headnode_are_bad_input(aws_env, tmp_path):
    (tmp_path / "swiftrun.toml").write_text(
        '[cluster]\nname = "mine"\nprovider = "static"\n\n[static]\nheadnode = "127.0.0.1"\n')
    for argv in (["add", "1"], ["remove", "1"], ["stop-headnode"]):
        one_line_error(swiftrun(*argv, cwd=tmp_path, check=False),
                       f"swiftrun {argv[0]}", 'provider = "ec2"', "static")
