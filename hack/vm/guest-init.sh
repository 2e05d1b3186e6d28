#!/bin/bash
# PID 1 of a hack/vm.sh guest, run from the shared (read-only) work tree
# after the initramfs switch_rooted into the cached Debian image. No systemd
# (berth.init=script): this script mounts the API file systems, mounts the
# cgroup layout asked for (so systemd.unified_cgroup_hierarchy and friends
# play no part), sets up the network, runs the command from the run folder
# as root with its stdout on ttyS1 and its stderr on ttyS2 (the host's stdout
# and stderr), writes its exit status to the run folder and powers off.
#
# berth.init=systemd: this script writes a service that runs it again with
# --under-systemd and execs systemd as PID 1; systemd mounts the API file
# systems and the cgroup layout (hack/vm.sh puts the matching
# systemd.unified_cgroup_hierarchy= on the command line), and the service
# does the network, the command and the power-off as above.
#
# Kernel command line: berth.src=TREE berth.res=RUNDIR berth.cgroup=v2|v1|hybrid
#                      berth.fwd=PORT,PORT (host loopback ports to reach on 127.0.0.1)
#                      berth.init=script|systemd
set -u
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root LANG=C.UTF-8 TERM=dumb

# Setup uses busybox-static's applets: under TCG a static exec costs ~25 ms,
# a dynamically linked util-linux one ~100-150 ms.
for c in mount mkdir ln hostname ip stty sysctl mv sync awk; do
    eval "$c() { /bin/busybox $c \"\$@\"; }"
done

SRC= RES= CG=v2 FWD= INIT=script
UNDER_SYSTEMD=0; [ "${1:-}" = --under-systemd ] && UNDER_SYSTEMD=1
[ $UNDER_SYSTEMD = 1 ] || mount -t proc proc /proc
read -r -a CMDLINE </proc/cmdline
for a in "${CMDLINE[@]}"; do
    case "$a" in
    berth.src=*) SRC=${a#berth.src=} ;;
    berth.res=*) RES=${a#berth.res=} ;;
    berth.cgroup=*) CG=${a#berth.cgroup=} ;;
    berth.fwd=*) FWD=${a#berth.fwd=} ;;
    berth.init=*) INIT=${a#berth.init=} ;;
    esac
done

say() { local up; read -r up _ </proc/uptime; echo "berth-vm: [$up] $*" >/dev/ttyS0; }
say "guest-init started ($INIT)"
finish() {
    echo "$1" >"$RES/status.tmp" && mv "$RES/status.tmp" "$RES/status"
    sync
    exec /bin/busybox poweroff -f
}

if [ "$INIT" = systemd ] && [ $UNDER_SYSTEMD = 0 ]; then
    mount -o remount,rw / 2>/dev/null || true
    printf '%s\n' '[Unit]' 'Description=hack/vm.sh command' 'DefaultDependencies=no' \
        '[Service]' 'Type=simple' "ExecStart=/bin/bash $SRC/hack/vm/guest-init.sh --under-systemd" \
        'StandardInput=null' 'StandardOutput=file:/dev/ttyS0' 'StandardError=file:/dev/ttyS0' \
        'TimeoutStartSec=infinity' >/etc/systemd/system/berth-vm-run.service
    say "exec systemd"
    umount /proc
    exec /lib/systemd/systemd --unit=berth-vm-run.service
fi

# --- API file systems ---------------------------------------------------------
if [ $UNDER_SYSTEMD = 0 ]; then
mount -t sysfs sysfs /sys
mkdir -p /dev/pts /dev/shm /dev/mqueue
mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts /dev/pts
ln -sf pts/ptmx /dev/ptmx 2>/dev/null || true
mount -t tmpfs -o mode=1777,nosuid,nodev shm /dev/shm
mount -t mqueue mqueue /dev/mqueue
ln -sfn /proc/self/fd /dev/fd; ln -sfn /proc/self/fd/0 /dev/stdin
ln -sfn /proc/self/fd/1 /dev/stdout; ln -sfn /proc/self/fd/2 /dev/stderr
# /tmp stays on the root disk (a per-run snapshot: clean at every boot, and
# no guest memory used); a tmpfs there would also hide a tree under /tmp.
case "$SRC/" in /run/*) ;; *) mount -t tmpfs -o mode=755,nosuid,nodev tmpfs /run ;; esac
mkdir -p /run/lock /var/tmp
mount -t securityfs securityfs /sys/kernel/security 2>/dev/null || true
mount -t bpf bpf /sys/fs/bpf 2>/dev/null || true
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null || true
mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null || true
mount -o remount,rw / 2>/dev/null || true
fi
hostname berth-vm
ulimit -n 1048576 2>/dev/null || true

say "file systems mounted"
# --- cgroups ------------------------------------------------------------------
# The controllers the kernel has, from /proc/cgroups.
controllers() { awk 'NR > 1 && $4 == 1 { print $1 }' /proc/cgroups; }
mount_v1() {
    mount -t tmpfs -o mode=755,nosuid,nodev,noexec cgroup /sys/fs/cgroup
    local c joined
    for c in $(controllers); do
        case "$c" in
        cpu|cpuacct) joined=cpu,cpuacct ;;
        net_cls|net_prio) joined=net_cls,net_prio ;;
        *) joined=$c ;;
        esac
        [ -d "/sys/fs/cgroup/$joined" ] && continue
        mkdir -p "/sys/fs/cgroup/$joined"
        mount -t cgroup -o "nosuid,nodev,noexec,$joined" cgroup "/sys/fs/cgroup/$joined"
        if [ "$joined" != "$c" ]; then
            ln -sfn "$joined" "/sys/fs/cgroup/${joined%,*}"
            ln -sfn "$joined" "/sys/fs/cgroup/${joined#*,}"
        fi
    done
    # The named hierarchy systemd keeps, as on a systemd host (runc and
    # kubelets look for it).
    mkdir -p /sys/fs/cgroup/systemd
    mount -t cgroup -o nosuid,nodev,noexec,none,name=systemd cgroup /sys/fs/cgroup/systemd
}
case "$UNDER_SYSTEMD:$CG" in
1:*) ;;   # systemd mounted it
0:v2)
    mount -t cgroup2 -o nosuid,nodev,noexec,nsdelegate,memory_recursiveprot cgroup2 /sys/fs/cgroup
    read -r -a ctrls </sys/fs/cgroup/cgroup.controllers
    for c in "${ctrls[@]}"; do
        echo "+$c" >/sys/fs/cgroup/cgroup.subtree_control || say "cannot enable the $c controller"
    done
    ;;
0:v1) mount_v1 ;;
0:hybrid)
    mount_v1
    mkdir -p /sys/fs/cgroup/unified
    mount -t cgroup2 -o nosuid,nodev,noexec,nsdelegate cgroup2 /sys/fs/cgroup/unified
    ;;
*) say "unknown cgroup layout $CG"; finish 125 ;;
esac

say "cgroups mounted ($CG)"
# --- network ------------------------------------------------------------------
# qemu user networking, restricted: the guest reaches nothing but the host
# loopback ports forwarded at 10.0.2.100 (guestfwd), relayed to the same
# ports on the guest's 127.0.0.1 so the test bed's endpoints work unchanged.
ip link set lo up
if ip link show eth0 >/dev/null 2>&1; then
    ip link set eth0 up
    ip addr add 10.0.2.15/24 dev eth0
    ip route add default via 10.0.2.2 dev eth0
fi
printf '127.0.0.1 localhost\n::1 localhost\n127.0.1.1 berth-vm\n' >/etc/hosts
: >/etc/resolv.conf
for p in ${FWD//,/ }; do
    socat "TCP-LISTEN:$p,bind=127.0.0.1,fork,reuseaddr" "TCP:10.0.2.100:$p" </dev/null >/dev/null 2>&1 &
done
sysctl -qw net.ipv4.ip_forward=1 kernel.panic_on_oops=1 2>/dev/null || true

say "network up; running the command"
# --- the command --------------------------------------------------------------
stty -F /dev/ttyS1 raw -echo 2>/dev/null
stty -F /dev/ttyS2 raw -echo 2>/dev/null
export BERTH_VM=1 BERTH_VM_RESULTS=$RES BERTH_VM_CGROUP=$CG
[ -f "$RES/env" ] && . "$RES/env"
bash "$RES/cmd" </dev/null >/dev/ttyS1 2>/dev/ttyS2
rc=$?
say "command exited $rc"
# Let the ports drain before the power goes.
exec 3>/dev/ttyS1 4>/dev/ttyS2; exec 3>&- 4>&-
finish "$rc"
