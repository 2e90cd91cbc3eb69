#!/bin/bash
# swiftrun worker boot (after the header and common.sh): Perl, Swift, scratch, s3fs, the
# project's worker init script (root, cwd $STATE, env CLUSTER HEADNODE_IP SCRATCH), worker.pl (swiftrun-worker.service) and the deadman timer.
set -Eeuo pipefail

run_worker_init() {
    [[ -n $WORKER_INIT_B64 ]] || return 0
    step worker_init
    local script=$STATE/worker-init.sh done=$STATE/worker-init.done sum rc=0
    printf '%s' "$WORKER_INIT_B64" | base64 -d | gzip -dc >"$script.tmp"
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

finish
