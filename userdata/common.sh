#!/bin/bash
# swiftrun node boot: the parts shared by headnode.sh and worker.sh.
# swiftrun/userdata.py renders: header (settings) + deadman function + this file + the role file.
# Contract: docs/internals.md ("The node"). Every absolute path is "$R/..." (R=${SWIFTRUN_NODE_ROOT:-}).
# No secrets here, ever: s3fs uses the instance profile (iam_role=auto).
set -Eeuo pipefail
umask 022

R=${SWIFTRUN_NODE_ROOT:-}
STATE=$R/var/lib/swiftrun
LOG_DIR=$R/var/log/swiftrun
SCRATCH=$R/scratch
CURRENT_STEP=start
export DEBIAN_FRONTEND=noninteractive

mkdir -p "$STATE" "$LOG_DIR" "$R/etc/swiftrun"
# Everything printed from here on goes to the log and to the console (cloud-init output).
exec > >(tee -a "$LOG_DIR/userdata.log") 2>&1

log() { printf '%s swiftrun-%s: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$ROLE" "$*"; }

# failed = one line "<step>: <message>"; the first (innermost) failure of this run wins.
mark_failed() {
    local msg=$*
    msg=${msg//$'\n'/ }
    if [[ ! -s $STATE/failed ]]; then
        printf '%s: %s\n' "$CURRENT_STEP" "$msg" >"$STATE/failed"
    fi
}

die() {
    mark_failed "$*"
    log "FAILED in step $CURRENT_STEP: $*"
    exit 1
}

on_err() {
    local rc=$? cmd=$BASH_COMMAND line=${BASH_LINENO[0]}
    trap - ERR
    mark_failed "command failed (exit $rc, line $line): $cmd"
    log "FAILED in step $CURRENT_STEP: exit $rc: $cmd"
    exit "$rc"
}
trap on_err ERR

step() {
    CURRENT_STEP=$1
    printf '%s\n' "$1" >"$STATE/step"
    log "== step: $1"
}

is_mounted() {  # is_mounted DIR: DIR is a mount point per $R/proc/mounts
    [[ -r $R/proc/mounts ]] || return 1
    awk -v m="$1" '$2 == m { found = 1 } END { exit !found }' "$R/proc/mounts"
}

dev_in_use() {  # dev_in_use NAME: /dev/NAME is mounted or used as swap
    local f
    for f in "$R/proc/mounts" "$R/proc/swaps"; do
        [[ -r $f ]] || continue
        if awk -v a="/dev/$1" -v b="$R/dev/$1" '$1 == a || $1 == b { found = 1 } END { exit !found }' "$f"; then
            return 0
        fi
    done
    return 1
}

fstab_add() {  # fstab_add MOUNTPOINT LINE: once per mount point
    local fstab=$R/etc/fstab
    touch "$fstab"
    if awk -v m="$1" '$2 == m { found = 1 } END { exit !found }' "$fstab"; then
        return 0
    fi
    printf '%s\n' "$2" >>"$fstab"
}

APT_UPDATED=
apt_install() {
    local i
    if [[ -z $APT_UPDATED ]]; then
        for i in 1 2 3; do
            if apt-get -o DPkg::Lock::Timeout=600 update -q; then break; fi
            [[ $i == 3 ]] && die "apt-get update failed 3 times"
            sleep 10
        done
        APT_UPDATED=1
    fi
    log "installing: $*"
    apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends "$@" \
        || die "apt-get install $* failed"
}

begin() {
    rm -f "$STATE/failed" "$STATE/ready"
    step begin
    log "boot of $ROLE in cluster $CLUSTER (node root '${R:-/}')"
    [[ -s $STATE/boot ]] || date +%s >"$STATE/boot"
    local tmp=$R/etc/swiftrun/node.env.tmp key
    for key in ROLE CLUSTER SSH_USER HEADNODE_IP WORKER_CONCURRENCY SWIFT_HOME S3FS_BUCKET S3FS_MOUNT \
        IDLE_TIMEOUT MAX_LIFETIME HEADNODE_GRACE COASTER_PORT WORKER_PORT; do
        if [[ -n ${!key} ]]; then printf '%s=%q\n' "$key" "${!key}"; else printf '%s=\n' "$key"; fi
    done >"$tmp"
    mv -f "$tmp" "$R/etc/swiftrun/node.env"
    id -u "$SSH_USER" >/dev/null 2>&1 || die "SSH user '$SSH_USER' does not exist on this image ([ssh] user)"
}

install_packages() {  # install_packages CMD=PKG...: apt only for what is missing
    step packages
    local want=() pair
    [[ -z $S3FS_BUCKET ]] || set -- "$@" s3fs=s3fs
    for pair in "$@"; do
        command -v "${pair%%=*}" >/dev/null 2>&1 || want+=("${pair#*=}")
    done
    if [[ ${#want[@]} -eq 0 ]]; then
        log "packages present, apt skipped"
        return 0
    fi
    apt_install "${want[@]}"
}

install_swift() {  # install_swift TOOL...: bin/swift + the role's tools under SWIFT_HOME
    step swift
    local home=$R$SWIFT_HOME tool
    if [[ -e $home/bin/swift ]]; then
        log "Swift found in $home, download skipped"
    else
        [[ -n $SWIFT_URL ]] || die "no Swift in $SWIFT_HOME and [swift] install_url is not set"
        [[ $SWIFT_SHA256 =~ ^[0-9a-fA-F]{64}$ ]] \
            || die "[swift] install_sha256 is missing or not a SHA-256 hex digest; refusing to install $SWIFT_URL unverified"
        command -v curl >/dev/null 2>&1 || apt_install curl ca-certificates
        mkdir -p "$R/var/tmp"
        local tarball=$R/var/tmp/swiftrun-swift.download unpack sum src
        log "downloading $SWIFT_URL"
        curl -fsSL --retry 5 --retry-delay 5 --retry-connrefused -o "$tarball" "$SWIFT_URL" \
            || die "download of $SWIFT_URL failed"
        sum=$(sha256sum "$tarball")
        sum=${sum%% *}
        [[ ${sum,,} == "${SWIFT_SHA256,,}" ]] \
            || die "SHA-256 mismatch for $SWIFT_URL: expected $SWIFT_SHA256, got $sum"
        unpack=$(mktemp -d "$R/var/tmp/swiftrun-swift.XXXXXX")
        tar -xf "$tarball" -C "$unpack" || die "cannot unpack $SWIFT_URL"
        if [[ -e $unpack/bin/swift ]]; then
            src=$unpack
        else
            src=$(find "$unpack" -mindepth 3 -maxdepth 3 -path '*/bin/swift' -print -quit)
            [[ -n $src ]] || die "$SWIFT_URL holds no bin/swift"
            src=${src%/bin/swift}
        fi
        mkdir -p "$(dirname "$home")"
        rm -rf "$home"
        mv "$src" "$home"
        rm -rf "$unpack" "$tarball"
        chmod -R a+rX "$home"
        log "Swift installed in $home"
    fi
    for tool in "$@"; do
        [[ -x $home/bin/$tool ]] || die "$home/bin/$tool is missing or not executable"
    done
}

instance_disks() {  # names of the instance-store disks (found at boot, never hard-coded)
    local dir name model
    for dir in "$R"/sys/block/nvme*; do
        [[ -r $dir/device/model ]] || continue
        model=$(<"$dir/device/model")
        model=${model%"${model##*[![:space:]]}"}
        name=${dir##*/}
        [[ $model == "Amazon EC2 NVMe Instance Storage" ]] || continue
        if dev_in_use "$name" || compgen -G "$dir/holders/*" >/dev/null; then
            log "instance store $name is in use, left alone"
            continue
        fi
        printf '%s\n' "$name"
    done
    for dir in "$R"/sys/block/xvd[b-z] "$R"/sys/block/sd[b-z]; do
        [[ -d $dir ]] || continue
        name=${dir##*/}
        compgen -G "$dir/$name*/partition" >/dev/null && continue
        compgen -G "$dir/holders/*" >/dev/null && continue
        dev_in_use "$name" && continue
        printf '%s\n' "$name"
    done
}

setup_scratch() {
    step disks
    if is_mounted "$SCRATCH"; then
        log "$SCRATCH already mounted"
    else
        local disks=() dev name
        mapfile -t disks < <(instance_disks)
        if [[ ${#disks[@]} -eq 0 ]]; then
            log "no instance-store disks: no $SCRATCH"
            return 0
        fi
        log "instance-store disks: ${disks[*]}"
        if [[ ${#disks[@]} -eq 1 ]]; then
            dev=$R/dev/${disks[0]}
        else
            command -v mdadm >/dev/null 2>&1 || apt_install mdadm
            dev=$R/dev/md0
            local members=()
            for name in "${disks[@]}"; do members+=("$R/dev/$name"); done
            mdadm --create "$dev" --run --force --level=0 --raid-devices="${#disks[@]}" "${members[@]}"
        fi
        mkfs.ext4 -F -q -L swiftrun-scratch -E nodiscard "$dev"
        mkdir -p "$SCRATCH"
        mount -o defaults,noatime "$dev" "$SCRATCH"
        fstab_add "$SCRATCH" "LABEL=swiftrun-scratch $SCRATCH ext4 defaults,noatime,nofail 0 2"
    fi
    chown "$SSH_USER:" "$SCRATCH"
    chmod 0755 "$SCRATCH"
}

setup_s3fs() {
    [[ -n $S3FS_BUCKET ]] || return 0
    step s3fs
    local mnt=$R$S3FS_MOUNT uid gid opts i
    if is_mounted "$mnt"; then
        log "$mnt already mounted"
        return 0
    fi
    uid=$(id -u "$SSH_USER")
    gid=$(id -g "$SSH_USER")
    opts="iam_role=auto,allow_other,uid=$uid,gid=$gid,umask=0022"
    if [[ -d $SCRATCH ]]; then
        mkdir -p "$SCRATCH/s3fs-cache"
        opts+=",use_cache=$SCRATCH/s3fs-cache"
    fi
    mkdir -p "$mnt"
    s3fs "$S3FS_BUCKET" "$mnt" -o "$opts"
    for i in {1..30}; do
        is_mounted "$mnt" && break
        [[ $i == 30 ]] && die "s3fs mount of bucket $S3FS_BUCKET on $S3FS_MOUNT did not appear"
        sleep 1
    done
    fstab_add "$mnt" "$S3FS_BUCKET $mnt fuse.s3fs _netdev,nofail,$opts 0 0"
    log "bucket $S3FS_BUCKET mounted on $mnt"
}

write_unit() {  # write_unit NAME < content
    mkdir -p "$R/etc/systemd/system"
    cat >"$R/etc/systemd/system/$1"
}

unit_env() {  # an Environment= line for the sandbox root (nothing on a real node)
    [[ -z $R ]] || printf 'Environment=SWIFTRUN_NODE_ROOT=%s\n' "$R"
}

install_deadman() {
    local lib=$R/usr/local/lib/swiftrun
    mkdir -p "$lib"
    swiftrun_deadman_script >"$lib/deadman.sh.tmp"
    chmod 0755 "$lib/deadman.sh.tmp"
    mv -f "$lib/deadman.sh.tmp" "$lib/deadman.sh"
    write_unit swiftrun-deadman.service <<EOF
[Unit]
Description=swiftrun deadman: idle, lifetime and headnode-gone shutdown
[Service]
Type=oneshot
$(unit_env)
ExecStart=/bin/bash $lib/deadman.sh
EOF
    write_unit swiftrun-deadman.timer <<EOF
[Unit]
Description=swiftrun deadman every minute
[Timer]
OnBootSec=1min
OnUnitActiveSec=1min
AccuracySec=5s
[Install]
WantedBy=timers.target
EOF
}

start_units() {  # start_units UNIT...
    systemctl daemon-reload
    systemctl enable --now "$@"
}

wait_active() {  # wait_active UNIT: running now and still running after a settle time
    systemctl is-active --quiet "$1" || die "$1 did not start (journalctl -u $1)"
    sleep "${SWIFTRUN_UNIT_SETTLE:-3}"
    systemctl is-active --quiet "$1" || die "$1 stopped right after start (journalctl -u $1)"
    log "$1 is running"
}

finish() {
    step finish
    chown -R "$SSH_USER:" "$STATE"
    date +%s >"$STATE/ready"
    chown "$SSH_USER:" "$STATE/ready"
    log "node ready"
}
