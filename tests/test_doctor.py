"""`swiftrun doctor` and the pre-launch checks of `up`, against the test cloud.

Each test breaks something on purpose and asserts doctor names it with its fix. The workers'
reachability check is always pointed at 127.0.0.1 (SWIFTRUN_DOCTOR_HEADNODE_ADDR): the test
cloud's 10.x private addresses must never receive traffic.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import time
from pathlib import Path
import pytest

from swiftrun.checks.base import FAIL, OK, WARN, Check, run_checks
from swiftrun.cloud.keys import fingerprint_verdict
from tests.support.cli import cluster_groups, cluster_instances, swiftrun, toml_project
from tests.support.cloud import BAKED_AMI_ID, UBUNTU_AMI_ID
from tests.support.schemas import validate
from tests.test_e2e_static import hosts  # noqa: F401  (fixture: two loopback sshd "hosts")
from tests.test_e2e_static import static_project

ALL_STATES = ("pending", "running", "shutting-down", "terminated", "stopping", "stopped")


def doctor(proj: Path, *args, env: dict | None = None, addr: str | None = None):
    """Run `swiftrun doctor --json`; returns (exit code, {name: check}, full document)."""
    full = dict(env or {})
    if addr:
        full["SWIFTRUN_DOCTOR_HEADNODE_ADDR"] = addr
    res = swiftrun("doctor", "--json", *args, cwd=proj, check=False, env=full, timeout=240)
    assert "Traceback" not in res.stderr, res.stderr
    try:
        doc = json.loads(res.stdout)
    except json.JSONDecodeError:
        raise AssertionError(f"not JSON (exit {res.returncode}):\n{res.stdout}\n{res.stderr}")
    validate("doctor", doc)   # docs/schemas/doctor.schema.json
    for c in doc["checks"]:
        assert set(c) >= {"name", "status", "detail", "fix"} and c["status"] in (OK, WARN, FAIL)
    assert doc["ok"] == (res.returncode == 0)
    return res.returncode, {c["name"]: c for c in doc["checks"]}, doc


def use_group(proj: Path, name: str) -> None:
    """Name a hand-made security group in the project ([ec2] security_group), as the tutorial's
    configs did; a group that merely has swiftrun's default name is refused instead."""
    toml = proj / "swiftrun.toml"
    toml.write_text(toml.read_text().replace("[ec2]\n", f'[ec2]\nsecurity_group = "{name}"\n', 1))


def one(checks: dict, suffix: str, *, count: int = 1) -> dict:
    found = [c for name, c in checks.items() if name == suffix or name.endswith(": " + suffix)]
    assert len(found) == count, (suffix, list(checks))
    return found[0]


def failed(checks: dict) -> list[str]:
    return [name for name, c in checks.items() if c["status"] == FAIL]


def listening_socket() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    return sock


def closed_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


def tags(inst) -> dict:
    return {t["Key"]: t["Value"] for t in inst.get("Tags", [])}


# ------------------------------------------------------------------------------------------------
# no cluster: local and pre-launch checks
# ------------------------------------------------------------------------------------------------

def test_clean_project_without_cluster_is_ok(cloud, tmp_path):
    proj = tmp_path / "clean"
    toml_project(proj, cloud, name="clean", workers=1)
    code, checks, _ = doctor(proj)
    assert code == 0, checks
    assert "env" in one(checks, "credentials")["detail"]
    assert "no cluster running" in one(checks, "cluster")["detail"]
    assert one(checks, "region")["status"] == OK
    assert one(checks, "headnode image")["status"] == OK
    dry = [c for n, c in checks.items() if n.startswith("dry-run launch")]
    assert dry and all(c["status"] == OK for c in dry)
    # the dry run launched nothing
    assert cluster_instances(cloud, "clean", states=ALL_STATES) == []
    assert cloud.ec2.describe_instances()["Reservations"] == []
    # the human checklist
    res = swiftrun("doctor", cwd=proj, env={"SWIFTRUN_DOCTOR_HEADNODE_ADDR": "127.0.0.1:9"})
    assert "ok    credentials" in res.stdout and "nothing stops a run" in res.stdout


def test_world_open_group_made_by_hand_stops_up_and_fix_repairs_it(cloud, tmp_path):
    proj = tmp_path / "wo"
    toml_project(proj, cloud, name="wo", workers=1)
    # the tutorial's group, named in the project (its SECURITY_GROUP): everything from everywhere
    use_group(proj, "tutorial-wo")
    sg = cloud.ec2.create_security_group(GroupName="tutorial-wo", Description="by hand")["GroupId"]
    cloud.ec2.authorize_security_group_ingress(GroupId=sg, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]},
        {"IpProtocol": "tcp", "FromPort": 50000, "ToPort": 51000,
         "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])

    code, checks, _ = doctor(proj)
    assert code == 1
    sgc = one(checks, "security group")
    assert sgc["status"] == FAIL and "0.0.0.0/0" in sgc["detail"] and "50000-51000" in sgc["detail"]
    assert "--fix" in sgc["fix"] and sg in sgc["fix"]

    up = swiftrun("up", cwd=proj, check=False)
    assert up.returncode != 0
    assert "security group" in up.stderr and "0.0.0.0/0" in up.stderr and "--fix" in up.stderr
    assert len([ln for ln in up.stderr.splitlines() if ln.startswith("swiftrun: error")]) == 1
    assert cluster_instances(cloud, "wo", states=ALL_STATES) == []

    code, checks, _ = doctor(proj, "--fix")
    sgc = one(checks, "security group")
    assert sgc["status"] == OK and "--fix: revoked tcp ports 50000-51000 from 0.0.0.0/0" in sgc["detail"]
    assert "allowed tcp 50005 inside the group" in sgc["detail"]
    perms = cloud.ec2.describe_security_groups(GroupIds=[sg])["SecurityGroups"][0]["IpPermissions"]
    world = [p for p in perms if any(r["CidrIp"] == "0.0.0.0/0" for r in p["IpRanges"])]
    assert [(p["FromPort"], p["ToPort"]) for p in world] == [(22, 22)]
    selfref = {p["FromPort"] for p in perms if any(g["GroupId"] == sg for g in p["UserIdGroupPairs"])}
    assert selfref == {22, 50005, 50010, 50011}   # ssh via the headnode, coaster, worker.pl, agent
    code, checks, _ = doctor(proj)
    assert code == 0 and one(checks, "security group")["status"] == OK, failed(checks)


def test_all_traffic_from_the_world_is_revoked_and_ssh_kept(cloud, tmp_path):
    proj = tmp_path / "all"
    toml_project(proj, cloud, name="all", workers=1)
    use_group(proj, "tutorial-all")
    sg = cloud.ec2.create_security_group(GroupName="tutorial-all", Description="by hand")["GroupId"]
    cloud.ec2.authorize_security_group_ingress(GroupId=sg, IpPermissions=[
        {"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]},
        {"IpProtocol": "tcp", "FromPort": 8080, "ToPort": 8080, "Ipv6Ranges": [{"CidrIpv6": "::/0"}]}])
    code, checks, _ = doctor(proj)
    sgc = one(checks, "security group")
    assert code == 1 and "all traffic from 0.0.0.0/0" in sgc["detail"] and "tcp port 8080 from ::/0" in sgc["detail"]
    code, checks, _ = doctor(proj, "--fix")
    sgc = one(checks, "security group")
    # the coaster-reaching rule is revoked; port 8080 stays advice. ssh from ssh_cidr is not
    # re-opened in this group: it belongs to the headnode's door group, which `up` makes
    assert "revoked all traffic from 0.0.0.0/0" in sgc["detail"]
    assert f"allowed tcp 22 from {cloud.caller_cidr}" not in sgc["detail"]
    assert sgc["status"] == FAIL and "8080" in sgc["detail"] and "revoke it" in sgc["fix"]
    cloud.ec2.revoke_security_group_ingress(GroupId=sg, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 8080, "ToPort": 8080, "Ipv6Ranges": [{"CidrIpv6": "::/0"}]}])
    code, checks, _ = doctor(proj)
    assert code == 0 and one(checks, "security group")["status"] == OK, failed(checks)


def test_arch_mismatch_refuses_up_with_zero_instances(cloud, tmp_path):
    proj = tmp_path / "arch"
    toml_project(proj, cloud, name="arch", workers=1, image=UBUNTU_AMI_ID)
    text = (proj / "swiftrun.toml").read_text().replace(
        "[ec2]\n", '[ec2]\nworker_type = "c7g.large"\n')
    (proj / "swiftrun.toml").write_text(text)

    code, checks, _ = doctor(proj)
    assert code == 1
    assert one(checks, "headnode image")["status"] == OK
    wi = one(checks, "worker image")
    assert wi["status"] == FAIL and "x86_64" in wi["detail"] and "arm64" in wi["detail"]
    assert "worker_image" in wi["fix"]

    up = swiftrun("up", cwd=proj, check=False)
    assert up.returncode == 2, up.stderr
    assert "worker image" in up.stderr and "arm64" in up.stderr and "worker_image" in up.stderr
    assert cluster_instances(cloud, "arch", states=ALL_STATES) == []
    assert cloud.ec2.describe_instances()["Reservations"] == []
    assert cluster_groups(cloud, "arch") == []            # nothing prepared either


def test_missing_image_is_named(cloud, tmp_path):
    proj = tmp_path / "noimg"
    toml_project(proj, cloud, name="noimg", workers=1, image="ami-0123456789abcdef0")
    code, checks, _ = doctor(proj)
    assert code == 1
    hi = one(checks, "headnode image")
    assert hi["status"] == FAIL and "does not exist" in hi["detail"] and "[ec2] image" in hi["fix"]


def test_key_file_mode_and_fix(cloud, tmp_path):
    from swiftrun.cloud.keys import write_new_key

    proj = tmp_path / "keyp"
    key = tmp_path / "mykey.pem"
    write_new_key(key)
    key.chmod(0o644)
    toml_project(proj, cloud, name="keyp", workers=1)
    text = (proj / "swiftrun.toml").read_text().replace("[ssh]\n", f'[ssh]\nkey_file = "{key}"\n')
    (proj / "swiftrun.toml").write_text(text)

    code, checks, _ = doctor(proj)
    assert code == 1
    kf = one(checks, "key file")
    assert kf["status"] == FAIL and "0644" in kf["detail"] and f"chmod 600 {key}" in kf["fix"]
    code, checks, _ = doctor(proj, "--fix")
    assert one(checks, "key file")["status"] == OK and "--fix: chmod 600" in one(checks, "key file")["detail"]
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    code, checks, _ = doctor(proj)
    assert code == 0, failed(checks)


def test_key_pair_fingerprint_mismatch_refuses_up(cloud, tmp_path):
    from swiftrun.cloud.keys import public_key_of, write_new_key

    mine, other = tmp_path / "mine.pem", tmp_path / "other.pem"
    write_new_key(mine)
    other_pub = write_new_key(other)
    proj = tmp_path / "fp"
    toml_project(proj, cloud, name="fp", workers=1)
    text = (proj / "swiftrun.toml").read_text().replace("[ssh]\n", f'[ssh]\nkey_file = "{mine}"\n')
    (proj / "swiftrun.toml").write_text(text)
    cloud.ec2.import_key_pair(KeyName="swiftrun-fp", PublicKeyMaterial=other_pub.encode())

    code, checks, _ = doctor(proj)
    kp = one(checks, "key pair")
    assert code == 1 and kp["status"] == FAIL and str(mine) in kp["detail"]
    assert "delete-key-pair --key-name swiftrun-fp" in kp["fix"]
    up = swiftrun("up", cwd=proj, check=False)
    assert up.returncode == 2 and "key pair" in up.stderr
    assert cluster_instances(cloud, "fp", states=ALL_STATES) == []

    cloud.ec2.delete_key_pair(KeyName="swiftrun-fp")
    cloud.ec2.import_key_pair(KeyName="swiftrun-fp", PublicKeyMaterial=public_key_of(mine).encode())
    code, checks, _ = doctor(proj)
    assert one(checks, "key pair")["status"] == OK, one(checks, "key pair")


def test_fingerprint_formats(cloud, tmp_path):
    """RSA: EC2 shows the MD5 of the public DER; ed25519: what moto / EC2 show. Both recognised."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    from swiftrun.cloud.keys import public_key_of, write_new_key

    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    rsa_path = tmp_path / "rsa.pem"
    rsa_path.write_bytes(rsa_key.private_bytes(serialization.Encoding.PEM,
                                               serialization.PrivateFormat.TraditionalOpenSSL,
                                               serialization.NoEncryption()))
    ed_path = tmp_path / "ed.pem"
    write_new_key(ed_path)
    for name, path in (("r", rsa_path), ("e", ed_path)):
        fp = cloud.ec2.import_key_pair(KeyName=name, PublicKeyMaterial=public_key_of(path).encode())
        assert fingerprint_verdict(path, fp["KeyFingerprint"]) == "match"
    fp_rsa = cloud.ec2.describe_key_pairs(KeyNames=["r"])["KeyPairs"][0]["KeyFingerprint"]
    assert fingerprint_verdict(ed_path, fp_rsa) in ("mismatch", "unknown")
    fp_ed = cloud.ec2.describe_key_pairs(KeyNames=["e"])["KeyPairs"][0]["KeyFingerprint"]
    assert fingerprint_verdict(ed_path.with_name("ed.pem"), fp_ed) == "match"
    other = tmp_path / "other.pem"
    write_new_key(other)
    assert fingerprint_verdict(other, fp_ed) == "mismatch"
    # EC2's own ed25519 form: base64 SHA-256 of the OpenSSH public key blob
    import base64
    import hashlib
    blob = base64.b64decode(public_key_of(ed_path).split()[1])
    assert fingerprint_verdict(ed_path, base64.b64encode(hashlib.sha256(blob).digest()).decode()) == "match"
    assert fingerprint_verdict(other, base64.b64encode(hashlib.sha256(blob).digest()).decode()) == "mismatch"


def test_bad_swift_conf_key_and_literal_file_names(cloud, tmp_path):
    proj = tmp_path / "conf"
    toml_project(proj, cloud, name="conf", workers=1, extra='[swift]\nstaging = "direct"\n')
    (proj / "swift.conf").write_text("bogusTopKey: 1\n")
    (proj / "sort.swift").write_text(
        'type file;\napp (file o) sortit (file i) {\n  sort "unsorted.txt" stdout=@o;\n}\n'
        'file out <"sorted.txt">;\nfile inp <"unsorted.txt">;\nout = sortit(inp);\n')
    code, checks, _ = doctor(proj)
    assert code == 1
    sc = one(checks, "swift.conf")
    assert sc["status"] == FAIL and "bogusTopKey" in sc["detail"] and sc["fix"]
    st = one(checks, "staging")
    assert st["status"] == WARN and "sortit" in st["detail"] and "@filename" in st["fix"]
    # given a script, only that script is looked at; a good conf passes
    (proj / "swift.conf").unlink()
    code, checks, _ = doctor(proj, str(proj / "sort.swift"))
    assert code == 0 and one(checks, "swift.conf")["status"] == OK, failed(checks)


def test_every_check_has_a_time_limit():
    def slow():
        time.sleep(5)
        return Check("slow", OK, "never seen")

    start = time.monotonic()
    out = run_checks([("slow", slow), ("fast", lambda: Check("fast", OK, "quick"))], timeout=0.5)
    assert time.monotonic() - start < 2
    assert [(c.name, c.status) for c in out] == [("slow", FAIL), ("fast", OK)]
    assert "timed out" in out[0].detail and out[0].fix


def test_project_load_error_is_a_failed_check(tmp_path):
    (tmp_path / "swiftrun.toml").write_text("[cluster]\nworkers = \"many\"\n")
    res = swiftrun("doctor", "--json", cwd=tmp_path, check=False)
    doc = json.loads(res.stdout)
    assert res.returncode == 1 and not doc["ok"]
    assert doc["checks"][0]["name"] == "project" and doc["checks"][0]["status"] == FAIL
    assert "workers" in doc["checks"][0]["detail"]


# ------------------------------------------------------------------------------------------------
# a running cluster: break the headnode and a worker
# ------------------------------------------------------------------------------------------------

def test_running_cluster_broken_on_purpose_then_fixed(cloud, tmp_path):
    proj = tmp_path / "proj"
    toml_project(proj, cloud, name="doc", workers=1)
    swiftrun("up", cwd=proj)
    insts = cluster_instances(cloud, "doc")
    head = next(i for i in insts if tags(i)["swiftrun:role"] == "headnode")
    worker = next(i for i in insts if tags(i)["swiftrun:role"] == "worker")["InstanceId"]
    head, head_ip = head["InstanceId"], head["PrivateIpAddress"]
    # healthy first: the worker reaches the real coaster service at the headnode's private IP
    code, checks, _ = doctor(proj)
    assert code == 0, {n: c for n, c in checks.items() if c["status"] != OK}
    for suffix in ("ssh", "java", "swift", "coaster-service", "coaster port",
                   "script directory", "workDirectory", "disk"):
        check = one(checks, suffix)
        assert check["status"] == OK and f"headnode {head}: {suffix}" in checks, check
    assert one(checks, f"worker {worker}: boot")["status"] == OK
    assert one(checks, f"headnode {head}: boot")["status"] == OK
    assert "listening on" in one(checks, "coaster port")["detail"]
    assert one(checks, "worker.pl")["status"] == OK
    assert f"{head_ip}:50005" in one(checks, "reach headnode")["detail"]

    # break: world-open coaster port, key file 0644, unwritable run directory,
    # coaster-service stopped (so the worker cannot reach the headnode port either)
    sg = cluster_groups(cloud, "doc")[0]["GroupId"]
    cloud.ec2.authorize_security_group_ingress(GroupId=sg, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 50010, "ToPort": 50010,
         "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
    key = Path(os.environ["SWIFTRUN_HOME"]) / "keys" / "swiftrun-doc.pem"
    key.chmod(0o644)
    rundir = cloud.sim.home(head) / "swiftrun" / "proj"
    rundir.mkdir(parents=True)
    rundir.chmod(0o500)
    stop = cloud.sim.exec(head, "systemctl stop swiftrun-coaster.service")
    assert stop.returncode == 0, stop.stderr

    code, checks, _ = doctor(proj)
    assert code == 1
    sgc = one(checks, "security group")
    assert sgc["status"] == FAIL and "tcp port 50010 from 0.0.0.0/0" in sgc["detail"]
    assert "--fix" in sgc["fix"]
    kf = one(checks, "key file")
    assert kf["status"] == FAIL and "0644" in kf["detail"] and "chmod 600" in kf["fix"]
    sd = one(checks, "script directory")
    assert sd["status"] == FAIL and "~/swiftrun/proj" in sd["detail"] and "500" in sd["detail"]
    assert "Unable to create run directory" in sd["detail"] and "chmod u+rwx" in sd["fix"]
    cs = one(checks, "coaster-service")
    assert cs["status"] == FAIL and "inactive" in cs["detail"]
    assert "systemctl restart swiftrun-coaster" in cs["fix"]
    cp = one(checks, "coaster port")
    assert cp["status"] == FAIL and "50010" in cp["detail"]
    reach = one(checks, "reach headnode")
    assert reach["status"] == FAIL and f"{head_ip}:50005" in reach["detail"]
    assert "refused" in reach["detail"] and "coaster-service" in reach["fix"]

    # the human checklist names them too
    text = swiftrun("doctor", cwd=proj, check=False).stdout
    assert "FAIL  security group" in text and "fix: `swiftrun doctor --fix`" in text
    assert f"FAIL  worker {worker}: reach headnode" in text

    # --fix repairs the permission and security group cases and says so
    code, checks, _ = doctor(proj, "--fix")
    assert "--fix: revoked tcp port 50010 from 0.0.0.0/0" in one(checks, "security group")["detail"]
    assert "--fix: chmod 600" in one(checks, "key file")["detail"]
    sd = one(checks, "script directory")
    assert sd["status"] == OK and "--fix: chmod u+rwx" in sd["detail"]
    assert stat.S_IMODE(rundir.stat().st_mode) & 0o700 == 0o700
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    # coaster-service and the network stay advice
    assert one(checks, "coaster-service")["status"] == FAIL

    code, checks, _ = doctor(proj)
    for suffix in ("security group", "key file", "script directory"):
        assert one(checks, suffix)["status"] == OK, one(checks, suffix)
    # without its service the worker's worker.pl keeps giving up (and systemd keeps starting
    # it again), so that check may fail too, depending on the moment
    still = {n.split(": ")[-1] for n in failed(checks)} - {"worker.pl"}
    assert still == {"coaster port", "coaster-service", "reach headnode"}, failed(checks)

    # started again, the worker's worker.pl reconnects and the headnode is reachable
    assert cloud.sim.exec(head, "systemctl start swiftrun-coaster.service").returncode == 0
    # systemd starts the worker's worker.pl again every 5 s (RestartSec), and its registration
    # can be refused a few times while the service settles: give it some rounds
    deadline = time.monotonic() + 90
    while True:
        code, checks, _ = doctor(proj)
        if code == 0 or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert code == 0, failed(checks)


def test_missing_intra_group_coaster_rule_keeps_workers_out(cloud, tmp_path):
    """Without the security group's rule for port 50005 from the group itself, worker.pl cannot
    reach the coaster service (as on EC2, the packets are dropped): no worker registers, and
    doctor names the missing rule."""
    proj = tmp_path / "proj"
    toml_project(proj, cloud, name="norule", workers=1)
    swiftrun("up", cwd=proj)
    insts = cluster_instances(cloud, "norule")
    head = next(i for i in insts if tags(i)["swiftrun:role"] == "headnode")["InstanceId"]
    worker = next(i for i in insts if tags(i)["swiftrun:role"] == "worker")["InstanceId"]
    cps = lambda: "".join(p.read_text(errors="replace")  # noqa: E731
                          for p in (cloud.sim.root(head) / "var/lib/swiftrun/coaster").glob("cps-*.log"))
    deadline = time.monotonic() + 60
    while f"blockid = norule-{worker}" not in cps() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert f"blockid = norule-{worker}" in cps()        # with the rule the worker registered

    sg = cluster_groups(cloud, "norule")[0]
    rule = next(p for p in sg["IpPermissions"] if p.get("FromPort") == 50005)
    cloud.ec2.revoke_security_group_ingress(GroupId=sg["GroupId"], IpPermissions=[rule])
    # a worker.pl (re)starting now cannot get through
    deadline = time.monotonic() + 20
    while "50005" in cloud.network.nodes[head].ruleset and time.monotonic() < deadline:
        time.sleep(0.1)
    before = cps().count(f"blockid = norule-{worker}")
    head_ip = next(i for i in insts if i["InstanceId"] == head)["PrivateIpAddress"]
    assert cloud.sim.exec(worker, "systemctl restart swiftrun-worker.service").returncode == 0
    # worker.pl's connection attempt gets no answer at all (dropped, not refused): it hangs in
    # SYN-SENT, as it would on EC2
    syn_sent = lambda: cloud.sim.exec(  # noqa: E731
        worker, f"ss -Htn state syn-sent dst {head_ip}:50005").stdout.strip()
    deadline = time.monotonic() + 30
    while not syn_sent() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert syn_sent(), "worker.pl never tried to connect"
    assert cps().count(f"blockid = norule-{worker}") == before

    code, checks, _ = doctor(proj, env={"SWIFTRUN_DOCTOR_TIMEOUT": "20"})
    assert code == 1
    sgc = one(checks, "security group")
    assert sgc["status"] == FAIL and "50005" in sgc["detail"] and "inside the group" in sgc["detail"]
    reach = one(checks, "reach headnode")
    assert reach["status"] == FAIL, reach
    swiftrun("down", cwd=proj)


# ------------------------------------------------------------------------------------------------
# static hosts (no cloud): the node checks alone
# ------------------------------------------------------------------------------------------------


def test_static_hosts_before_and_after_up(hosts, tmp_path):
    proj = tmp_path / "lab"
    proj.mkdir()
    static_project(proj, hosts)
    try:
        code, checks, _ = doctor(proj)
        assert code == 1
        assert not [n for n in checks if n in ("credentials", "region", "security group")]
        cs = one(checks, "coaster-service")
        assert cs["status"] == FAIL and "`swiftrun up`" in cs["fix"], cs
        assert one(checks, "worker.pl")["status"] == FAIL
        assert one(checks, "swift")["status"] == OK          # found on PATH
        # nothing listens on the headnode's worker port before `up` (the real service)
        assert one(checks, "reach headnode")["status"] == FAIL
        assert not [n for n in checks if n.endswith(": boot")]  # static hosts have no userdata

        swiftrun("up", cwd=proj)
        code, checks, _ = doctor(proj)
        assert code == 0, failed(checks)
        assert "pid" in one(checks, "coaster-service")["detail"]
        assert one(checks, "reach headnode")["status"] == OK
    finally:
        swiftrun("down", cwd=proj, check=False)


def test_stock_image_without_swift_install_refuses_up_and_env_can_fix_it(cloud, tmp_path):
    """image = "auto" is stock Ubuntu: with no [swift] install_url every node would fail its
    boot after being paid for. `up` says so before launching; the env overrides CI uses fix it."""
    proj = tmp_path / "stock"
    toml_project(proj, cloud, name="stock", workers=1, image="auto", install=False)
    code, checks, _ = doctor(proj)
    sw = one(checks, "swift on the nodes")
    assert code == 1 and sw["status"] == FAIL
    assert '[ec2] image = "auto"' in sw["detail"] and "install_url" in sw["fix"]

    up = swiftrun("up", cwd=proj, check=False)
    assert up.returncode == 2, up.stderr
    assert "install_url" in up.stderr and "Traceback" not in up.stderr
    assert cloud.ec2.describe_instances()["Reservations"] == []
    assert cluster_groups(cloud, "stock") == []

    (proj / "p.swift").write_text("trace(1);\n")
    plan = swiftrun("--dry-run", "p.swift", cwd=proj, check=False)
    assert plan.returncode == 0 and "`swiftrun up` would refuse" in plan.stderr

    # a custom AMI (the test cloud's, which has Swift in /opt/swift) is taken at its word ...
    code, checks, _ = doctor(proj, env={"SWIFTRUN_IMAGE": BAKED_AMI_ID})
    assert one(checks, "swift on the nodes")["status"] == OK
    # ... and so is a pinned tarball
    code, checks, _ = doctor(proj, env={"SWIFTRUN_SWIFT_URL": "https://example.org/swift-0.96.tar.gz",
                                        "SWIFTRUN_SWIFT_SHA256": "ab" * 32})
    sw = one(checks, "swift on the nodes")
    assert sw["status"] == OK and "SHA-256 pinned" in sw["detail"]


def test_swifts_own_bin_swiftrun_shadowing_this_tool_is_named(tmp_path):
    """The distribution's bin/swiftrun (a Perl helper), taken from the real tarball, first on
    PATH as the tutorial's setup.sh puts it: doctor says so and how to fix it."""
    import shutil as _shutil
    import tarfile

    from swiftrun.checks.local import check_swiftrun_on_path
    from tests.support.nodeimage import SWIFT_TARBALL

    if not SWIFT_TARBALL.is_file():
        pytest.skip(f"needs the Swift/K distribution at {SWIFT_TARBALL}")
    with tarfile.open(SWIFT_TARBALL) as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith("/bin/swiftrun"))
        (tmp_path / "swiftbin").mkdir()
        (tmp_path / "swiftbin" / "swiftrun").write_bytes(tar.extractfile(member).read())
    (tmp_path / "swiftbin" / "swiftrun").chmod(0o755)
    ours = Path(_shutil.which("swiftrun")).parent
    bad = check_swiftrun_on_path(f"{tmp_path / 'swiftbin'}:{ours}")
    assert bad.status == WARN and "Perl" in bad.detail and "swiftbin" in bad.detail, bad
    assert "after" in bad.fix
    good = check_swiftrun_on_path(f"{ours}:{tmp_path / 'swiftbin'}")
    assert good.status == OK, good


def test_an_ipv6_ssh_cidr_becomes_an_ipv6_rule(cloud, tmp_path):
    """EC2 refuses an IPv6 range in CidrIp (the strict test cloud too): the SSH rule for an IPv6
    ssh_cidr goes in Ipv6Ranges."""
    from swiftrun.cloud import make_provider
    from swiftrun.project import load_project

    proj = tmp_path / "v6"
    toml_project(proj, cloud, name="v6", workers=1)
    text = (proj / "swiftrun.toml").read_text()
    (proj / "swiftrun.toml").write_text(text.replace(f'ssh_cidr = "{cloud.caller_cidr}"',
                                                     'ssh_cidr = "2001:db8::7/128"'))
    provider = make_provider(load_project(proj / "swiftrun.toml"))
    provider.security_group("v6")
    group = next(g for g in cloud.ec2.describe_security_groups()["SecurityGroups"]
                 if g["GroupName"] == provider.project.security_group_name + "-door")
    ssh = [p for p in group["IpPermissions"] if p.get("FromPort") == 22]
    assert [r["CidrIpv6"] for p in ssh for r in p.get("Ipv6Ranges", [])] == ["2001:db8::7/128"]
    assert not [r for p in ssh for r in p.get("IpRanges", [])]
    provider.security_group("v6")          # again: the rule is found, not added twice
    group = next(g for g in cloud.ec2.describe_security_groups()["SecurityGroups"]
                 if g["GroupId"] == group["GroupId"])
    assert sum(len(p.get("Ipv6Ranges", [])) for p in group["IpPermissions"]) == 1
