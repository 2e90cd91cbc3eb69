#!/bin/bash
# swiftrun deadman: run every minute by swiftrun-deadman.timer (installed by the userdata as
# /usr/local/lib/swiftrun/deadman.sh). Shuts the node down (instances launch with shutdown
# behaviour "terminate") when:
#   - running time (now - boot, less the time it was stopped) >= MAX_LIFETIME     (both roles)
#   - headnode: now - last activity >= IDLE_TIMEOUT; activity = mtime of var/lib/swiftrun/activity
#     (the tool touches it), else boot; a swift run still alive on the node counts as activity,
#     and so does an open SSH connection (an upload, a fetch, `logs`, an interactive `connect`)
#   - worker: TCP connect to HEADNODE_IP:WORKER_PORT failed continuously for >= HEADNODE_GRACE s
# Settings come from etc/swiftrun/node.env; the environment wins (tests: NOW, IDLE_TIMEOUT, ...).
# 0 disables a limit.
set -Eeuo pipefail

R=${SWIFTRUN_NODE_ROOT:-}
STATE=$R/var/lib/swiftrun
ENV_FILE=$R/etc/swiftrun/node.env
LOG=$R/var/log/swiftrun/deadman.log

if [[ -r $ENV_FILE ]]; then
    while IFS='=' read -r key val; do
        case $key in
        ROLE | CLUSTER | SSH_USER | SSH_PORT | HEADNODE_IP | WORKER_PORT | AGENT_PORT | IDLE_TIMEOUT | MAX_LIFETIME | HEADNODE_GRACE)
            [[ -n ${!key:-} ]] || printf -v "$key" '%s' "$val"
            ;;
        esac
    done <"$ENV_FILE"
fi
ROLE=${ROLE:-headnode}
WORKER_PORT=${WORKER_PORT:-50005}
IDLE_TIMEOUT=${IDLE_TIMEOUT:-0}
MAX_LIFETIME=${MAX_LIFETIME:-0}
HEADNODE_GRACE=${HEADNODE_GRACE:-900}
NOW=${NOW:-$(date +%s)}

say() {
    mkdir -p "${LOG%/*}"
    printf '%s deadman[%s]: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$ROLE" "$*" | tee -a "$LOG"
}

halt() {
    say "SHUTDOWN: $*"
    shutdown -h now "swiftrun deadman: $*"
    exit 0
}

boot=
[[ -s $STATE/boot ]] && boot=$(<"$STATE/boot")
if [[ ! $boot =~ ^[0-9]+$ ]]; then
    say "no boot time in $STATE/boot yet; nothing decided"
    exit 0
fi
# A gap over GAP_MAX between minute ticks is time stopped: left out of the age, start = activity.
GAP_MAX=${GAP_MAX:-600}
stopped=0
[[ -s $STATE/stopped ]] && stopped=$(<"$STATE/stopped")
[[ $stopped =~ ^[0-9]+$ ]] || stopped=0
if [[ -s $STATE/tick ]]; then
    last_tick=$(<"$STATE/tick")
    if [[ $last_tick =~ ^[0-9]+$ ]] && ((NOW - last_tick > GAP_MAX)); then
        gap=$((NOW - last_tick - 60))
        stopped=$((stopped + gap))
        printf '%s\n' "$stopped" >"$STATE/stopped"
        touch -d "@$NOW" "$STATE/activity" 2>/dev/null || touch "$STATE/activity"
        say "started again after ${gap}s stopped: not counted in the lifetime, idle counts from now"
    fi
fi
printf '%s\n' "$NOW" >"$STATE/tick"
age=$((NOW - boot - stopped))
if ((MAX_LIFETIME > 0 && age >= MAX_LIFETIME)); then
    halt "lifetime ${age}s >= max_lifetime ${MAX_LIFETIME}s"
fi

# only-for: headnode  (userdata carries each role's part only: see node/userdata.py)
swift_running() {  # a detached swift run of the tool (runs/<id>.pid without <id>.exit) is alive
    local home pid f
    home=${SWIFTRUN_USER_HOME:-}
    if [[ -z $home && -n ${SSH_USER:-} ]]; then
        home=$(getent passwd "$SSH_USER" | cut -d: -f6) || home=
    fi
    [[ -n $home ]] || return 1
    for f in "$home"/swiftrun/*/.swiftrun/runs/*.pid; do
        [[ -f $f && ! -e ${f%.pid}.exit ]] || continue
        pid=$(<"$f")
        [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null && return 0
    done
    return 1
}

ssh_open() {  # an established connection to this node's sshd
    ss -Htn state established "( sport = :${SSH_PORT:-22} )" 2>/dev/null | grep -q .
}

if [[ $ROLE == headnode ]]; then
    if swift_running; then
        touch "$STATE/activity"
        say "a swift run is alive: counted as activity"
        exit 0
    fi
    if ssh_open; then
        touch "$STATE/activity"
        say "an SSH connection is open: counted as activity"
        exit 0
    fi
    last=$boot
    [[ -e $STATE/activity ]] && last=$(stat -c %Y "$STATE/activity")
    idle=$((NOW - last))
    if ((IDLE_TIMEOUT > 0 && idle >= IDLE_TIMEOUT)); then
        halt "idle ${idle}s >= idle_timeout ${IDLE_TIMEOUT}s"
    fi
    say "keep: age ${age}s, idle ${idle}s"
    exit 0
fi
# only-for: end

# only-for: worker
# worker: tell the headnode's agent again how this worker is (a heartbeat, and a report that got
# lost at boot still arrives)
report=$STATE/report
if [[ -n ${HEADNODE_IP:-} && -n ${AGENT_PORT:-} && -s $report/id ]]; then
    curl -fsS -m 3 -o /dev/null --data-urlencode "id@$report/id" --data-urlencode "state@$report/state" \
        --data-urlencode "step@$report/step" --data-urlencode "msg@$report/msg" \
        --data-urlencode "hostkey@$report/hostkey" --data-urlencode "seq@$report/seq" \
        "http://$HEADNODE_IP:$AGENT_PORT/report" \
        2>/dev/null || true
fi

# worker: is the headnode's coaster service still there?
since_file=$STATE/headnode-unreachable-since
if [[ -z ${HEADNODE_IP:-} ]]; then
    say "keep: age ${age}s, no HEADNODE_IP to check"
    exit 0
fi
# shellcheck disable=SC2016  # $1 $2 expand in the inner bash
if timeout 5 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$HEADNODE_IP" "$WORKER_PORT" 2>/dev/null; then
    rm -f "$since_file"
    say "keep: age ${age}s, headnode $HEADNODE_IP:$WORKER_PORT reachable"
    exit 0
fi
since=
[[ -s $since_file ]] && since=$(<"$since_file")
if [[ ! $since =~ ^[0-9]+$ ]]; then
    since=$NOW
    printf '%s\n' "$since" >"$since_file"
fi
gone=$((NOW - since))
if ((gone >= HEADNODE_GRACE)); then
    halt "headnode $HEADNODE_IP:$WORKER_PORT unreachable for ${gone}s >= ${HEADNODE_GRACE}s"
fi
say "keep: age ${age}s, headnode $HEADNODE_IP:$WORKER_PORT unreachable for ${gone}s (grace ${HEADNODE_GRACE}s)"
# only-for: end
