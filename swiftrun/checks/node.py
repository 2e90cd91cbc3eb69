"""Node checks over SSH: the headnode, then every worker, when a cluster runs.

Headnode: SSH, boot markers, java and ``swift -version``, the coaster service (running and
listening), the script directory and the site workDirectory writable, free disk, mounts. Workers:
worker.pl running, a TCP connection from each worker to the headnode's worker port (the tutorial's
netcat test), mounts. One probe script per node gathers everything in one SSH round trip.

The caller finds the nodes and says how to reach them (``remote``, ``target_of``): these checks
know nodes, not clusters. ``--fix`` here: chmod u+rwx (or, with password-less sudo, chown) an
unwritable run directory.

``SWIFTRUN_DOCTOR_HEADNODE_ADDR=host:port`` makes the workers' reachability check dial that
address instead of ``<headnode private IP>:<worker port>``: for networks where workers reach the
headnode by another name (a DNS name, a NAT address, a tunnel).
"""

from __future__ import annotations

import shlex
from pathlib import Path

from swiftrun import environ
from swiftrun.checks.base import FAIL, OK, TIMEOUT, WARN, Check, run_check, run_checks
from swiftrun.errors import ConfigError, SwiftrunError
from swiftrun.node.layout import COASTER_PORT, WORKER_PORT
from swiftrun.node.swift import COMPAT_LAUNCHER_SH

LOW_DISK = 2 * 1024 ** 3
ADDR_ENV = "SWIFTRUN_DOCTOR_HEADNODE_ADDR"


_PROBE_LIB = r'''
# swiftrun-doctor-probe
R="${SWIFTRUN_NODE_ROOT:-}"
st="$R/var/lib/swiftrun"
if [ -f "$st/failed" ]; then echo "boot=failed $(head -n1 "$st/failed")"
elif [ -f "$st/ready" ]; then echo "boot=ready"
elif [ -d "$st" ]; then echo "boot=booting $(cat "$st/step" 2>/dev/null)"
else echo "boot=none"; fi
mounted() { [ -r "$R/proc/mounts" ] && awk -v m="$1" '$2 == m { f = 1 } END { exit !f }' "$R/proc/mounts"; }
sc="$R/scratch"
if [ -f "$R/etc/fstab" ] && awk -v m="$sc" '$2 == m { f = 1 } END { exit !f }' "$R/etc/fstab"; then
  if mounted "$sc"; then echo "scratch=mounted"; else echo "scratch=missing"; fi
else echo "scratch=none"; fi
if [ -n "$S3M" ]; then if mounted "$R$S3M"; then echo "s3fs=mounted"; else echo "s3fs=missing"; fi; fi
service() {  # service KEY UNIT PIDNAME PATTERN
  if [ -f "$R/etc/systemd/system/$2.service" ] && command -v systemctl >/dev/null 2>&1; then
    # activating: between two runs of a Restart= unit (RestartSec=5); give it that long
    s=$(systemctl is-active "$2" 2>/dev/null | head -n1); i=0
    while [ "$s" = activating ] && [ $i -lt 16 ]; do
      sleep 0.5; i=$((i+1)); s=$(systemctl is-active "$2" 2>/dev/null | head -n1)
    done
    echo "$1=unit $s"
  elif [ -f "$HOME/.swiftrun-node/$3.pid" ]; then
    p=$(cat "$HOME/.swiftrun-node/$3.pid")
    if kill -0 "$p" 2>/dev/null; then echo "$1=pid active $p"; else echo "$1=pid dead $p"; fi
  else
    p=
    for q in $(pgrep -u "$(id -u)" -f "$4" 2>/dev/null); do  # not this probe (its text matches)
      tr '\0' ' ' <"/proc/$q/cmdline" 2>/dev/null | grep -q swiftrun-doctor-probe && continue
      # under a node root (the test cloud: many nodes, one machine) only this node's processes
      if [ -n "$R" ]; then
        tr '\0' '\n' <"/proc/$q/environ" 2>/dev/null | grep -qxF "SWIFTRUN_NODE_ROOT=$R" || continue
      fi
      p=$q; break
    done
    if [ -n "$p" ]; then echo "$1=process active $p"; else echo "$1=none"; fi
  fi
}
'''

_HEAD_PROBE = _PROBE_LIB + r'''
echo "java=$(command -v java 2>/dev/null)"
b="$R$SWIFT_HOME/bin"
sw="$b/swift"; [ -x "$sw" ] || sw=$(command -v swift 2>/dev/null)
if [ -n "$sw" ]; then
  v=$(b=$sw; COMPAT_PLACEHOLDER
      timeout 60 "$b" -version 2>&1 </dev/null); rc=$?
  echo "swift=$rc $sw $(printf '%s\n' "$v" | head -n1)"
else echo "swift=missing"; fi
service coaster swiftrun-coaster coaster 'coaster-service|CoasterPersistentService'
tcp() { timeout 3 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null; }
if tcp 127.0.0.1 "$COASTER_PORT"; then echo "listen=$COASTER_PORT"; fi
pf="$R/run/coaster-service.port"
if [ -f "$pf" ]; then pp=$(head -n1 "$pf" | tr -dc 0-9)
  if [ -n "$pp" ] && tcp 127.0.0.1 "$pp"; then echo "listen_portfile=$pp"; else echo "portfile=$pp"; fi
fi
me=$(id -u); groups=" $(id -G) "
dircheck() {  # dircheck KEY DIR: writable by this user's permission bits (not root's override)
  d=$2; e=$d
  while [ ! -e "$e" ] && [ "$e" != / ] && [ "$e" != . ]; do e=$(dirname "$e"); done
  set -- "$1" "$d" "$e" $(stat -c '%u %g %a %U' "$e" 2>/dev/null)
  u=$4 g=$5 m=$((8#${6:-0}))
  if [ "$u" = "$me" ]; then bits=$(( (m >> 6) & 7 ))
  elif [ "${groups#* $g }" != "$groups" ]; then bits=$(( (m >> 3) & 7 ))
  else bits=$(( m & 7 )); fi
  w=no
  if [ -d "$e" ] && [ $((bits & 3)) -eq 3 ]; then t="$e/.swiftrun-doctor.$$"
    if mkdir "$t" 2>/dev/null; then rmdir "$t"; w=yes; fi; fi
  avail=$(df -Pk "$e" 2>/dev/null | awk 'NR == 2 { print $4 }')
  echo "dir_$1=$w|$e|$7|$6|${avail:-?}"
}
dircheck script "$SCRIPT_DIR"
i=0
for wd in "$@"; do dircheck "work$i" "$R$wd"; i=$((i + 1)); done
'''
# swift -version the way a run starts swift (an unpatched 0.96 launcher through the compat copy)
_HEAD_PROBE = _HEAD_PROBE.replace("COMPAT_PLACEHOLDER", COMPAT_LAUNCHER_SH)

_WORKER_PROBE = _PROBE_LIB + r'''
service worker swiftrun-worker worker 'worker\.pl'
if [ -n "$TARGET_HOST" ]; then
  timeout 5 bash -c "exec 3<>/dev/tcp/$TARGET_HOST/$TARGET_PORT" 2>/dev/null; rc=$?
  echo "reach=$rc"
fi
'''


def _parse(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.replace("_", "").isalnum():
            out[key] = value.strip()
    return out


def _script_cmd(body: str, env: dict[str, str], args: list[str] = ()) -> str:
    assigns = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
    return (f"{assigns} bash -c {shlex.quote(body)} doctor "
            + " ".join(shlex.quote(a) for a in args))


def _boot_check(node, label: str, value: str, elastic: bool) -> Check | None:
    state, _, rest = value.partition(" ")
    name = f"{label}: boot"
    if state == "ready":
        return Check(name, OK, "userdata finished (ready marker)")
    if state == "failed":
        return Check(name, FAIL, f"userdata failed: {rest}",
                     f"`swiftrun logs --boot {node.id}` shows why; then `swiftrun down` and `up`")
    if state == "booting":
        return Check(name, WARN, f"still booting (step {rest or '?'})",
                     f"wait, or follow it with `swiftrun logs --boot {node.id}`")
    if not elastic:
        return None                     # static hosts have no userdata
    return Check(name, FAIL, "no boot markers: swiftrun's userdata never ran on this node",
                 "`swiftrun down` and `swiftrun up` to relaunch it")


def _service_check(name: str, value: str, unit: str, fix_active: str) -> Check:
    how, _, rest = value.partition(" ")
    if how == "unit":
        if rest == "active":
            return Check(name, OK, f"{unit} is active")
        return Check(name, FAIL, f"{unit} is {rest or 'not active'}", fix_active)
    if how in ("pid", "process"):
        state, _, pid = rest.partition(" ")
        if state == "active":
            return Check(name, OK, f"running (pid {pid})")
        return Check(name, FAIL, f"not running (pid {pid} is gone)", fix_active)
    return Check(name, FAIL, f"not running (no {unit} unit, no pid file, no process)", fix_active)


def _mount_checks(project, label: str, info: dict[str, str]) -> list[Check]:
    out = []
    scratch = info.get("scratch", "none")
    if scratch == "mounted":
        out.append(Check(f"{label}: /scratch", OK, "instance-store scratch is mounted"))
    elif scratch == "missing":
        out.append(Check(f"{label}: /scratch", FAIL, "/scratch is in fstab but not mounted",
                         "check `swiftrun logs --boot` (step disks); `sudo mount -a` on the node"))
    if project.s3fs.bucket:
        mnt = project.s3fs.mount
        if info.get("s3fs") == "mounted":
            out.append(Check(f"{label}: s3fs", OK, f"bucket {project.s3fs.bucket} mounted on {mnt}"))
        else:
            out.append(Check(f"{label}: s3fs", FAIL, f"bucket {project.s3fs.bucket} is not mounted "
                             f"on {mnt}", "check `swiftrun logs --boot` (step s3fs) and the bucket's "
                             "instance profile"))
    return out


def _gib(kib: str) -> str:
    try:
        return f"{int(kib) / 1024 ** 2:.1f} GiB"
    except ValueError:
        return "? GiB"


def _dir_checks(label: str, info: dict[str, str], dirs: dict[str, tuple[str, str]],
                did: dict[str, str]) -> list[Check]:
    out = []
    low: list[str] = []
    for key, (name, shown) in dirs.items():
        raw = info.get(f"dir_{key}")
        if raw is None:
            continue
        w, existing, owner, mode, avail = (raw.split("|") + ["?"] * 5)[:5]
        where = shown if existing.endswith(shown.lstrip("~")) or existing == shown else \
            f"{shown} (nearest existing: {existing})"
        done = f"; --fix: {did[key]}" if key in did else ""
        if w == "yes":
            out.append(Check(f"{label}: {name}", OK, f"{where} is writable by the SSH user{done}"))
        else:
            out.append(Check(f"{label}: {name}", FAIL,
                             f"{where} is not writable by the SSH user (owner {owner}, mode {mode}): "
                             f"swift would stop with \"Unable to create run directory\"{done}",
                             f"`swiftrun doctor --fix`, or on the node: sudo chown $USER: {existing} "
                             f"&& chmod u+rwx {existing}"))
        try:
            if int(avail) * 1024 < LOW_DISK:
                low.append(f"{existing} {_gib(avail)}")
        except ValueError:
            pass
    if low:
        out.append(Check(f"{label}: disk", WARN, f"less than 2 GiB free: {', '.join(low)}",
                         "delete old runs (~/swiftrun/*/run*) or set [ec2] volume_size_gb"))
    elif dirs:
        out.append(Check(f"{label}: disk", OK, "at least 2 GiB free where runs write"))
    return out


_FIX_DIR = r'''
d=$1 want=$2 me=$(id -un)
case "$d/" in
  "$want/"|"$HOME"/?*) ;;
  *) echo "not done: $d is not the directory itself nor under $HOME; fix it by hand"; exit 1 ;;
esac
if [ "$(stat -c %u "$d")" = "$(id -u)" ]; then chmod u+rwx "$d" && echo "chmod u+rwx $d"
elif sudo -n true 2>/dev/null; then sudo -n chown "$me:" "$d" && chmod u+rwx "$d" && echo "sudo chown $me: $d; chmod u+rwx $d"
else echo "FAILED: $d belongs to $(stat -c %U "$d") and sudo needs a password"; exit 1; fi
'''


def headnode_addr(head) -> tuple[str, int]:
    given = environ.hostport(ADDR_ENV)
    if given:
        return given
    return head.private_ip or "", WORKER_PORT


def _work_dirs(project, script_dir: Path) -> list[str]:
    from swiftrun.swiftconf import render
    from swiftrun.swiftconf.hocon import _get

    try:
        rendered = render(project, script_dir=script_dir)
    except SwiftrunError:
        return [project.swift.work_directory]
    tree = rendered.tree
    dirs = []
    for site in rendered.sites:
        wd = _get(tree, ["site", site, "workDirectory"])
        if isinstance(wd, str) and wd.startswith("/") and wd not in dirs:
            dirs.append(wd)
    return dirs


def check_nodes(project, head, workers, *, remote, target_of, elastic: bool, script_dir: Path,
                fix: bool = False, timeout: float | None = None) -> list[Check]:
    """The headnode's checks, then each worker's (in parallel), over ``remote``'s connections.

    ``head`` is the cluster's headnode (None, or not running: one ok check says the node checks
    are skipped), ``workers`` its live workers, ``target_of(node)`` how to reach a node, and
    ``elastic`` whether the nodes were launched with swiftrun's userdata (boot markers, units).
    """
    from swiftrun.node.layout import remote_root

    limit = TIMEOUT if timeout is None else timeout
    if not head or not head.live:
        why = f" (headnode {head.id} is {head.state}: `swiftrun up` starts it)" if head else ""
        return [Check("cluster", OK, f"no cluster running{why}; node checks skipped",
                      section="headnode")]
    head_t = target_of(head)
    label = f"headnode {head.id}"
    out: list[Check] = []

    def ssh():
        remote.connect(head_t, allow_new=elastic and not remote.is_pinned(head_t))
        return Check(f"{label}: ssh", OK, f"{head_t.user}@{head_t.host}:{head_t.port} with key "
                     f"{remote.key_file or '(agent)'} and the pinned host key")

    got = run_check(f"{label}: ssh", ssh, timeout=limit, section="headnode")
    out += got
    if got[0].failed:
        if "proxy_command" in got[0].detail:
            got[0].fix = "fix [ssh] proxy_command (`swiftrun connect --print` shows how it is run)"
        elif not elastic:
            got[0].fix = (f"check that sshd runs on {head_t.host} and listens on port {head_t.port} "
                          "([static] headnode takes host:port), [ssh] user and key_file")
        else:
            got[0].fix = ("check the security group's port 22 rule (above), [ssh] user and "
                          "key_file; `swiftrun connect` shows SSH's own words")
        return out

    root = remote_root(project, script_dir)
    work = _work_dirs(project, script_dir)
    env = {"SWIFT_HOME": project.swift.home, "S3M": project.s3fs.mount if project.s3fs.bucket else "",
           "COASTER_PORT": str(COASTER_PORT)}
    dirs = {"script": ("script directory", root)}
    dirs.update({f"work{i}": ("workDirectory", wd) for i, wd in enumerate(work)})
    did: dict[str, str] = {}

    def probe() -> dict[str, str]:
        script_dir_expr = root.replace("~/", "$HOME/", 1)
        cmd = (f'SCRIPT_DIR="{script_dir_expr}" '
               + _script_cmd(_HEAD_PROBE, env, work))
        res = remote.run(head_t, cmd, timeout=limit)
        return _parse(res.stdout)

    info: dict = {}

    def gather():
        info.update(probe())
        if fix:
            for key in dirs:
                raw = info.get(f"dir_{key}", "")
                if raw.startswith("no|"):
                    existing = raw.split("|")[1]
                    want = dirs[key][1]
                    want = (want.replace("~/", "$HOME/", 1) if want.startswith("~/")
                            else '"${SWIFTRUN_NODE_ROOT:-}"' + shlex.quote(want))
                    res = remote.run(head_t, f'W={want}; ' + _script_cmd(_FIX_DIR, {}, [existing])
                                     + ' "$W"', timeout=limit)
                    did[key] = (res.stdout.strip() or res.stderr.strip() or "nothing done")
            if did:
                info.clear()
                info.update(probe())

    got = run_check(f"{label}: probe", gather, timeout=limit * (3 if fix else 1), section="headnode")
    if got:
        out += got
        return out
    sec = []
    boot = _boot_check(head, label, info.get("boot", "none"), elastic)
    if boot:
        sec.append(boot)
    java = info.get("java", "")
    sec.append(Check(f"{label}: java", OK, f"java at {java}") if java else
               Check(f"{label}: java", FAIL, "java is not on PATH (swift and coaster-service need it)",
                     "install a Java runtime on the headnode (apt-get install default-jre-headless)"))
    sw = info.get("swift", "missing")
    if sw == "missing":
        sec.append(Check(f"{label}: swift", FAIL, f"no swift under {project.swift.home}/bin nor on PATH",
                         "set [swift] home to where Swift is installed on the nodes"))
    else:
        rc, _, rest = sw.partition(" ")
        path, _, line = rest.partition(" ")
        if rc == "0" and line.startswith("Swift"):
            sec.append(Check(f"{label}: swift", OK, f"{line} ({path})"))
        else:
            sec.append(Check(f"{label}: swift", FAIL, f"`{path} -version` exited {rc}: "
                             f"{line or 'no output'}", "check the Java runtime and [swift] home"))
    if elastic:
        restart = ("on the headnode: sudo systemctl restart swiftrun-coaster (`swiftrun connect -- "
                   "sudo systemctl restart swiftrun-coaster`); its log: journalctl -u swiftrun-coaster")
    else:
        restart = "`swiftrun up` starts it again (static cluster)"
    coaster = _service_check(f"{label}: coaster-service", info.get("coaster", "none"),
                             "swiftrun-coaster", restart)
    sec.append(coaster)
    if "listen" in info:
        sec.append(Check(f"{label}: coaster port", OK,
                         f"listening on {COASTER_PORT} (the tutorial's check)"))
    elif "listen_portfile" in info:
        sec.append(Check(f"{label}: coaster port", OK, f"listening on {info['listen_portfile']} "
                         f"(the port in run/coaster-service.port; {COASTER_PORT} is not in use here)"))
    else:
        seen = f" (run/coaster-service.port says {info['portfile']}, nothing answers)" \
            if "portfile" in info else ""
        sec.append(Check(f"{label}: coaster port", FAIL,
                         f"nothing listens on 127.0.0.1:{COASTER_PORT}{seen}",
                         restart if not coaster.failed else "start coaster-service (above)"))
    sec += _dir_checks(label, info, dirs, did)
    sec += _mount_checks(project, label, info)
    for c in sec:
        c.section = "headnode"
    out += sec

    if not workers:
        return out
    try:
        host, port = headnode_addr(head)
    except ConfigError as exc:
        return out + [Check("workers", FAIL, exc.message, f"unset {ADDR_ENV} or give host:port",
                            section="workers")]
    via = f" ({ADDR_ENV})" if environ.text(ADDR_ENV) else ""
    out += run_checks([(f"worker {w.id}", lambda w=w: _worker(project, remote, target_of(w), w, host,
                                                              port, via, elastic, limit))
                       for w in workers], timeout=limit * 2, section="workers")
    return out


def _worker(project, remote, target, node, host: str, port: int, via: str, elastic: bool,
            limit: float) -> list[Check]:
    label = f"worker {node.id}"
    try:
        remote.connect(target, allow_new=elastic and not remote.is_pinned(target))
    except SwiftrunError as exc:
        return [Check(f"{label}: ssh", FAIL, exc.message,
                      "check the security group's port 22 rule; `swiftrun connect --worker` "
                      "shows SSH's own words")]
    env = {"S3M": project.s3fs.mount if project.s3fs.bucket else "", "TARGET_HOST": host,
           "TARGET_PORT": str(port)}
    info = _parse(remote.run(target, _script_cmd(_WORKER_PROBE, env), timeout=limit).stdout)
    out = []
    boot = _boot_check(node, label, info.get("boot", "none"), elastic)
    if boot:
        out.append(boot)
    restart = ("on the worker: sudo systemctl restart swiftrun-worker" if elastic
               else "`swiftrun up` starts it again (static cluster)")
    out.append(_service_check(f"{label}: worker.pl", info.get("worker", "none"), "swiftrun-worker",
                              restart))
    rc = info.get("reach")
    name = f"{label}: reach headnode"
    if not host:
        out.append(Check(name, WARN, "the headnode has no private IP; not checked",
                         f"set {ADDR_ENV}=host:port to check another address"))
    elif rc == "0":
        out.append(Check(name, OK, f"TCP connection to {host}:{port}{via} works"))
    else:
        sg_fix = (f"allow tcp {port} inside the cluster's security group (`swiftrun doctor --fix` "
                  "adds the coaster rules) and check the headnode's own firewall")
        svc_fix = (f"start coaster-service on the headnode (see the headnode checks); it must "
                   f"listen on {port} for workers")
        if rc == "124":
            why, fix = "timed out (a firewall or security group drops it)", sg_fix
        elif rc == "1":
            why, fix = "was refused (nothing listens there)", svc_fix
        else:
            why, fix = f"failed (exit {rc}; no bash /dev/tcp or timeout on the worker?)", sg_fix
        out.append(Check(name, FAIL, f"TCP connection from the worker to {host}:{port}{via} {why}",
                         fix))
    out += _mount_checks(project, label, info)
    return out
