#!/bin/bash
# swiftrun node boot: the parts shared by headnode.sh and worker.sh.
# swiftrun/userdata.py renders: header (settings) + deadman function + this file + the role file.
# What only one role uses lives in that role's file (userdata counts against EC2's 16 KB).
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
        report failed "$msg"
        report_until_heard
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
    report booting
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

# Each line swiftrun adds follows a marker line, so `image build` can take exactly those out of
# a baked image (a later project's bucket would be "already mounted"): see cluster/image.py.
FSTAB_MARK="# swiftrun: the next line is this node's own (image build removes it)"
fstab_add() {  # fstab_add MOUNTPOINT LINE: once per mount point
    local fstab=$R/etc/fstab
    touch "$fstab"
    if awk -v m="$1" '$2 == m { found = 1 } END { exit !found }' "$fstab"; then
        return 0
    fi
    printf '%s\n%s\n' "$FSTAB_MARK" "$2" >>"$fstab"
}

APT_UPDATED=
# apt-daily runs at first boot: it holds the lists lock during its own update, and
# DPkg::Lock::Timeout does not cover that lock. A busy apt is waited out (up to 15 minutes);
# a failed download is tried 3 times, 10 s apart.
apt_get() {  # apt_get ARGS...
    local out rc waited=0
    while :; do
        rc=0
        out=$(apt-get -o DPkg::Lock::Timeout=600 "$@" 2>&1) || rc=$?
        printf '%s\n' "$out"
        [[ $rc != 0 && $out == *"Could not get lock"* ]] && ((waited < 900)) || return "$rc"
        ((waited)) || log "apt is busy (apt-daily at first boot?): waiting for its lock"
        sleep 3
        waited=$((waited + 3))
    done
}
apt_install() {
    local i
    if [[ -z $APT_UPDATED ]]; then
        for i in 1 2 3; do
            if apt_get update -q; then break; fi
            [[ $i == 3 ]] && die "apt-get update failed 3 times"
            sleep 10
        done
        APT_UPDATED=1
    fi
    log "installing: $*"
    apt_get install -y --no-install-recommends "$@" || die "apt-get install $* failed"
}

begin() {
    rm -f "$STATE/failed" "$STATE/ready"
    step begin
    log "boot of $ROLE in cluster $CLUSTER (node root '${R:-/}')"
    [[ -s $STATE/boot ]] || date +%s >"$STATE/boot"
    local tmp=$R/etc/swiftrun/node.env.tmp key
    for key in ROLE CLUSTER SSH_USER HEADNODE_IP WORKER_CONCURRENCY SWIFT_HOME S3FS_BUCKET S3FS_MOUNT \
        IDLE_TIMEOUT MAX_LIFETIME HEADNODE_GRACE COASTER_PORT WORKER_PORT AGENT_PORT; do
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
        local tarball=$R/var/tmp/swiftrun-swift.download unpack sum src got='' tries i
        local cached=swift-${SWIFT_SHA256,,}.tar.gz
        if [[ $ROLE == worker && -n ${HEADNODE_IP:-} ]]; then
            # The headnode keeps the tarball it downloaded for the workers, so a worker needs no
            # internet for it; one without a public IP waits longer for the headnode to have it.
            tries=10
            [[ -n ${WORKER_PUBLIC_IP:-} ]] || tries=200
            for ((i = 0; i < tries; i++)); do
                if curl -fsS --connect-timeout 3 -m 300 -o "$tarball" "http://$HEADNODE_IP:$AGENT_PORT/files/$cached" 2>/dev/null; then
                    got="the headnode"
                    break
                fi
                sleep 3
            done
        fi
        if [[ -z $got ]]; then
            log "downloading $SWIFT_URL"
            curl -fsSL --retry 5 --retry-delay 5 --retry-connrefused -o "$tarball" "$SWIFT_URL" \
                || die "download of $SWIFT_URL failed"
            got=$SWIFT_URL
        else
            log "Swift tarball from $got"
        fi
        sum=$(sha256sum "$tarball")
        sum=${sum%% *}
        [[ ${sum,,} == "${SWIFT_SHA256,,}" ]] \
            || die "SHA-256 mismatch for $got: expected $SWIFT_SHA256, got $sum"
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
        rm -rf "$unpack"
        if [[ $ROLE == headnode ]]; then
            mkdir -p "$STATE/serve"           # for the workers (swiftrun-agent serves it)
            mv -f "$tarball" "$STATE/serve/$cached"
        else
            rm -f "$tarball"
        fi
        chmod -R a+rX "$home"
        log "Swift installed in $home"
    fi
    for tool in "$@"; do
        [[ -x $home/bin/$tool ]] || die "$home/bin/$tool is missing or not executable"
    done
    fix_java_launchers "$home"
    write_profile "$home"
}

# Swift 0.96's launchers pass -Djava.endorsed.dirs, which every Java from 9 on refuses ("is not
# supported", the JVM does not start): Ubuntu 24.04's Java is 21. The option only pointed at
# lib/endorsed, which 0.96 does not ship, so the line goes (a copy of each launcher is kept as
# <name>.swiftrun-orig). Runs for a downloaded Swift and for one an image already had.
fix_java_launchers() {  # fix_java_launchers SWIFT_HOME
    local f n=0
    for f in "$1"/bin/*; do
        [[ -f $f && $f != *.bat && $f != *.swiftrun-orig ]] || continue
        grep -q -- '-Djava\.endorsed\.dirs' "$f" || continue
        [[ -e $f.swiftrun-orig ]] || cp -p "$f" "$f.swiftrun-orig"
        sed -i '/-Djava\.endorsed\.dirs/d' "$f"
        n=$((n + 1))
    done
    [[ $n == 0 ]] || log "removed -Djava.endorsed.dirs (refused by Java 9+) from $n Swift launcher(s)"
}

# Logins (`swiftrun connect`) find swift on PATH, and Swift's anonymous usage report (a UDP
# packet to a public host from every run) stays off unless the project turned it on.
write_profile() {  # write_profile SWIFT_HOME
    mkdir -p "$R/etc/profile.d"
    {
        printf 'export SWIFT_USAGE_STATS=%q\n' "${SWIFT_USAGE_STATS:-0}"
        # shellcheck disable=SC2016  # $PATH expands when a login reads the file
        printf 'case ":$PATH:" in *:%s/bin:*) ;; *) PATH="$PATH:%s/bin" ;; esac\n' "$SWIFT_HOME" "$SWIFT_HOME"
    } >"$R/etc/profile.d/swiftrun.sh"
}

# worker.pl needs more of Perl than perl-base has (Getopt::Std, File::Copy, ...): compile it.
check_worker_perl() {  # check_worker_perl SWIFT_HOME
    local out
    if out=$(perl -c "$1/bin/worker.pl" 2>&1); then
        return 0
    fi
    if [[ $out == *"Can't locate"* ]]; then
        log "worker.pl needs Perl modules this image lacks: ${out%%$'\n'*}"
        apt_install perl
        out=$(perl -c "$1/bin/worker.pl" 2>&1) \
            || die "worker.pl does not compile after installing perl: ${out%%$'\n'*}"
        return 0
    fi
    die "worker.pl does not compile: ${out%%$'\n'*}"
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
    [[ -n ${PER_BOOT:-} ]] || step disks
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
        [[ -n ${PER_BOOT:-} ]] || scratch_unit
    fi
    [[ -z $S3FS_BUCKET ]] || mkdir -p "$SCRATCH/s3fs-cache"
    chown "$SSH_USER:" "$SCRATCH"
    chmod 0755 "$SCRATCH"
}

# Instance store comes back blank after a stop and start, and userdata does not run again: a
# oneshot unit runs this script's setup_scratch (PER_BOOT, the end of this file) at every boot,
# before the services that use /scratch.
scratch_unit() {
    local lib=$R/usr/local/lib/swiftrun
    mkdir -p "$lib"
    cp "$0" "$lib/boot.sh"
    write_unit swiftrun-scratch.service <<UNIT
[Unit]
Description=swiftrun scratch on instance store, blank after a stop and start
Before=swiftrun-coaster.service swiftrun-worker.service
[Service]
Type=oneshot
Environment=PER_BOOT=1
$(unit_env)
ExecStart=/bin/bash $lib/boot.sh
[Install]
WantedBy=multi-user.target
UNIT
    systemctl daemon-reload
    systemctl enable swiftrun-scratch.service
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
    # Its first tick: a stop before the timer's first run is still a gap between ticks (time
    # stopped), not lifetime. The same $STATE/tick the deadman reads and writes.
    date +%s >"$STATE/tick"
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

# worker.pl under systemd, connected to the coaster service at HOST (the headnode's private IP;
# 127.0.0.1 on a headnode that runs its own worker because the project asks for no workers).
# worker.pl gives up after 3 tries in ~3 s (exit 111) while the service is not up yet:
# Restart=always brings it back, as its authors intended.
write_worker_unit() {  # write_worker_unit HOST
    local block=
    [[ -r $R/var/lib/cloud/data/instance-id ]] && block=$(<"$R/var/lib/cloud/data/instance-id")
    block=$CLUSTER-${block:-$(hostname -s)}
    mkdir -p "$LOG_DIR/worker" "$STATE/tools/bin" "$R/usr/local/lib/swiftrun"
    chown "$SSH_USER:" "$LOG_DIR/worker" "$STATE/tools" "$STATE/tools/bin"
    # The project's [swift] path tools (swiftrun puts them in $STATE/tools/bin before a run) are
    # on the apps' PATH: worker.pl's jobs inherit its environment.
    local run=$R/usr/local/lib/swiftrun/worker-run
    # shellcheck disable=SC2016  # $PATH and $@ expand when worker-run runs
    printf '#!/bin/sh\nPATH=%q/tools/bin:$PATH\nexport PATH\nexec "$@"\n' "$STATE" >"$run"
    chmod 755 "$run"
    write_unit swiftrun-worker.service <<UNIT
[Unit]
Description=swiftrun worker (worker.pl -> coaster service on $1)
After=network-online.target
Wants=network-online.target
StartLimitIntervalSec=0
[Service]
Type=simple
User=$SSH_USER
WorkingDirectory=$LOG_DIR/worker
$(unit_env)
ExecStart=$run $R$SWIFT_HOME/bin/worker.pl -c $WORKER_CONCURRENCY http://$1:$WORKER_PORT $block $LOG_DIR/worker
Restart=always
RestartSec=5
[Install]
WantedBy=multi-user.target
UNIT
}

start_units() {  # start_units UNIT...
    systemctl daemon-reload
    systemctl enable --now "$@"
}


finish() {
    step finish
    report ready
    report_until_heard
    chown -R "$SSH_USER:" "$STATE"
    date +%s >"$STATE/ready"
    chown "$SSH_USER:" "$STATE/ready"
    log "node ready"
}

if [[ -n ${PER_BOOT:-} ]]; then
    report() { :; }
    report_until_heard() { :; }
    setup_scratch
    exit 0
fi
