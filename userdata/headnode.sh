#!/bin/bash
# swiftrun headnode boot (after the header and common.sh): Java + Perl, Swift, scratch, s3fs,
# the coaster service (swiftrun-coaster.service) and the deadman timer.
set -Eeuo pipefail

begin
install_packages java=default-jre-headless perl=perl
install_swift swift coaster-service
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
wait_active swiftrun-coaster.service

finish
