#!/bin/bash
# swiftrun headnode boot (after the header and common.sh): Java + Perl, Swift (checked to run on
# this Java), scratch, s3fs, the coaster service (swiftrun-coaster.service, ready when it
# listens), worker.pl too when the project has no workers, the agent the workers report to
# (swiftrun-agent.service, started first) and the deadman timer.
set -Eeuo pipefail

# only a worker reports its boot to a headnode (worker.sh)
report() { :; }
report_until_heard() { :; }

# The headnode's agent (agent.py): the workers report their boot to it and fetch Swift (and the
# project's tools) from it; the security group opens its port to the cluster's group only.
start_agent() {
    local lib=$R/usr/local/lib/swiftrun
    mkdir -p "$lib" "$STATE/workers" "$STATE/serve"
    chown "$SSH_USER:" "$STATE/workers" "$STATE/serve"
    swiftrun_agent_script >"$lib/agent.py.tmp"
    mv -f "$lib/agent.py.tmp" "$lib/agent.py"
    write_unit swiftrun-agent.service <<UNIT
[Unit]
Description=swiftrun agent: the workers report to the headnode and fetch from it
After=network-online.target
[Service]
Type=simple
User=$SSH_USER
$(unit_env)
ExecStart=/usr/bin/python3 $lib/agent.py $STATE $AGENT_PORT
Restart=always
RestartSec=2
[Install]
WantedBy=multi-user.target
UNIT
    start_units swiftrun-agent.service
}

# The headnode's proof that Swift really runs on this node's Java (not only that files exist).
check_swift_runs() {  # check_swift_runs SWIFT_HOME
    local out rc=0
    out=$(SWIFT_USAGE_STATS=0 "$1/bin/swift" -version 2>&1) || rc=$?
    [[ $rc == 0 && $out == Swift\ * ]] \
        || die "swift -version failed (exit $rc) on this node's Java: $(printf '%s' "$out" | tail -n 2 | tr '\n' ' ')"
    log "${out%%$'\n'*}"
}

wait_listening() {  # wait_listening UNIT PORT...: every PORT accepts TCP on this node, or die
    local unit=$1 port i
    shift
    for port in "$@"; do
        for ((i = 0; i < ${SWIFTRUN_LISTEN_TIMEOUT:-120} * 4; i++)); do
            # shellcheck disable=SC2016  # $1 expands in the inner bash
            if timeout 2 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1"' _ "$port" 2>/dev/null; then
                continue 2
            fi
            systemctl is-active --quiet "$unit" || [[ $(systemctl is-active "$unit" 2>/dev/null) == activating ]] \
                || die "$unit stopped before listening on port $port (journalctl -u $unit)"
            sleep 0.25
        done
        die "$unit is not listening on port $port after ${SWIFTRUN_LISTEN_TIMEOUT:-120}s (journalctl -u $unit)"
    done
    log "$unit is listening on port(s) $*"
}

begin
start_agent     # the workers report to it from their first step on
install_packages java=default-jre-headless perl=perl
if [[ -n $HEAD_WORKER ]]; then
    install_swift swift coaster-service worker.pl
    check_worker_perl "$R$SWIFT_HOME"
else
    install_swift swift coaster-service
fi
check_swift_runs "$R$SWIFT_HOME"
setup_scratch
setup_s3fs

step services
install_deadman
mkdir -p "$STATE/coaster"
chown "$SSH_USER:" "$STATE/coaster"
write_unit swiftrun-coaster.service <<UNIT
[Unit]
Description=swiftrun coaster service (Swift/K passive coasters)
After=network-online.target
Wants=network-online.target
[Service]
Type=simple
User=$SSH_USER
WorkingDirectory=$STATE/coaster
$(unit_env)
ExecStart=$R$SWIFT_HOME/bin/coaster-service -p $COASTER_PORT -localport $WORKER_PORT -nosec -passive
Restart=on-failure
RestartSec=5
[Install]
WantedBy=multi-user.target
UNIT
start_units swiftrun-coaster.service swiftrun-deadman.timer
wait_listening swiftrun-coaster.service "$COASTER_PORT" "$WORKER_PORT"
if [[ -n $HEAD_WORKER ]]; then
    # [cluster] workers = 0: the headnode runs the apps itself, through its own worker.pl
    write_worker_unit 127.0.0.1
    start_units swiftrun-worker.service
fi

finish
