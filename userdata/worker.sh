#!/bin/bash
# swiftrun worker boot (after the header and common.sh): Perl, Swift, scratch, s3fs, the
# project's worker init script (root, cwd $STATE, env CLUSTER HEADNODE_IP SCRATCH), worker.pl (swiftrun-worker.service) and the deadman timer.
set -Eeuo pipefail

# A worker tells the headnode how its boot goes (the headnode's agent keeps it for `swiftrun up`,
# which never connects to a worker): state, step, message and this node's SSH host key (so the
# key swiftrun pins for `connect workerN` comes over the headnode's authenticated connection, not
# from a first contact). Best effort: never fails the boot. The fields stay in $STATE/report/,
# which the deadman sends again every minute (a heartbeat).
report() {  # report STATE [MESSAGE]
    [[ $ROLE == worker && -n ${HEADNODE_IP:-} ]] || return 0
    local d=$STATE/report id=
    mkdir -p "$d"
    [[ -r $R/var/lib/cloud/data/instance-id ]] && id=$(<"$R/var/lib/cloud/data/instance-id")
    printf '%s' "${id:-$(hostname -s)}" >"$d/id"
    printf '%s' "$1" >"$d/state"
    printf '%s' "$CURRENT_STEP" >"$d/step"
    printf '%s' "${2:-}" >"$d/msg"
    local seq=0     # this worker's count of reports: the agent keeps the newest (agent.py)
    [[ -r $d/seq ]] && seq=$(<"$d/seq")
    printf '%s' "$((${seq:-0} + 1))" >"$d/seq"
    if [[ -r $R/etc/ssh/ssh_host_ed25519_key.pub ]]; then
        cp "$R/etc/ssh/ssh_host_ed25519_key.pub" "$d/hostkey"
    else
        : >"$d/hostkey"
    fi
    send_report || true
}

send_report() {
    local d=$STATE/report
    curl -fsS --connect-timeout 2 -m 3 -o /dev/null --data-urlencode "id@$d/id" --data-urlencode "state@$d/state" \
        --data-urlencode "step@$d/step" --data-urlencode "msg@$d/msg" \
        --data-urlencode "hostkey@$d/hostkey" --data-urlencode "seq@$d/seq" \
        "http://$HEADNODE_IP:$AGENT_PORT/report" 2>/dev/null
}

# The last word (ready or failed) must reach the headnode even if its agent is not up yet.
report_until_heard() {
    [[ $ROLE == worker && -n ${HEADNODE_IP:-} ]] || return 0
    # shellcheck disable=SC2016  # $@ expands in the inner bash
    setsid bash -c 'for _ in $(seq 1 400); do "$@" && exit 0; sleep 3; done' _ \
        curl -fsS --connect-timeout 2 -m 3 -o /dev/null --data-urlencode "id@$STATE/report/id" \
        --data-urlencode "state@$STATE/report/state" --data-urlencode "step@$STATE/report/step" \
        --data-urlencode "msg@$STATE/report/msg" --data-urlencode "hostkey@$STATE/report/hostkey" \
        --data-urlencode "seq@$STATE/report/seq" \
        "http://$HEADNODE_IP:$AGENT_PORT/report" </dev/null >/dev/null 2>&1 &
}

run_worker_init() {
    [[ -n $WORKER_INIT_TEXT$WORKER_INIT_B64$WORKER_INIT_SHA256 ]] || return 0
    step worker_init
    local script=$STATE/worker-init.sh done=$STATE/worker-init.done sum rc=0 i
    if [[ -n $WORKER_INIT_TEXT ]]; then
        swiftrun_worker_init >"$script.tmp"
    elif [[ -n $WORKER_INIT_B64 ]]; then
        printf '%s' "$WORKER_INIT_B64" | base64 -d | gzip -dc >"$script.tmp"
    else
        # too big for userdata: `swiftrun up` puts it on the headnode once that is up
        for i in {1..300}; do
            curl -fsS --connect-timeout 3 -m 60 -o "$script.tmp" \
                "http://$HEADNODE_IP:$AGENT_PORT/files/worker-init-$WORKER_INIT_SHA256.sh" 2>/dev/null && break
            [[ $i == 300 ]] && die "the headnode did not serve the worker init script within 15 minutes (\`swiftrun up\` puts it there): run \`swiftrun up\` again"
            sleep 3
        done
        sum=$(sha256sum "$script.tmp")
        [[ ${sum%% *} == "$WORKER_INIT_SHA256" ]] || die "the worker init script from the headnode does not match its SHA-256"
    fi
    chmod 0700 "$script.tmp"
    mv -f "$script.tmp" "$script"
    sum=$(sha256sum "$script")
    sum=${sum%% *}
    if [[ -f $done && $(<"$done") == "$sum" ]]; then
        log "worker init script already ran, skipped"
        return 0
    fi
    log "running the worker init script"
    (cd "$STATE" && CLUSTER=$CLUSTER HEADNODE_IP=$HEADNODE_IP SCRATCH=$SCRATCH "$script") </dev/null || rc=$?
    [[ $rc == 0 ]] || die "worker init script exited with status $rc"
    printf '%s\n' "$sum" >"$done"
    log "worker init script done"
}

begin
install_packages perl=perl
install_swift worker.pl
check_worker_perl "$R$SWIFT_HOME"
setup_scratch
setup_s3fs
run_worker_init

step services
install_deadman
[[ -n $HEADNODE_IP ]] || die "HEADNODE_IP is not set"
write_worker_unit "$HEADNODE_IP"
start_units swiftrun-worker.service swiftrun-deadman.timer
# "ready" (what `up` hears through the headnode) means worker.pl runs, not only that it was
# started: a run right after `up` finds every worker's slots. Not fatal: it restarts itself.
for ((i = 0; i < 240; i++)); do
    systemctl is-active --quiet swiftrun-worker.service && break
    sleep 0.25
done
systemctl is-active --quiet swiftrun-worker.service \
    || log "swiftrun-worker.service is not active yet ($(systemctl is-active swiftrun-worker.service 2>/dev/null || true)); it restarts until it reaches the headnode"

finish
