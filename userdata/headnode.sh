#!/bin/bash
# swiftrun headnode boot (after the header and common.sh): Java + Perl, Swift (checked to run on
# this Java), scratch, s3fs, the coaster service (swiftrun-coaster.service, ready when it
# listens), worker.pl too when the project has no workers, the agent the workers report to
# (swiftrun-agent.service, started first) and the deadman timer.
set -Eeuo pipefail

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
