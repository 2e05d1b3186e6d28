#!/bin/busybox sh
# /init of hack/vm.sh's initramfs (busybox-static + the virtio, ext4 and 9p
# modules of the Debian kernel). It loads those modules, mounts the cached
# root image (/dev/vda, a throw-away snapshot), the work tree (9p, read-only,
# at the same path as on the host) and the run's results folder (9p,
# writable), then switch_roots to hack/vm/guest-init.sh from the shared tree,
# so changing the guest side never needs an image rebuild.
/bin/busybox mkdir -p /bin /sbin /usr/bin /usr/sbin /proc /sys /dev /newroot
/bin/busybox --install -s
export PATH=/bin:/sbin:/usr/bin:/usr/sbin

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev

fail() {
    echo "berth-vm initramfs: $*" >/dev/ttyS0
    echo "berth-vm initramfs: $*" >/dev/ttyS2 2>/dev/null
    poweroff -f
}

case " $(cat /proc/cmdline) " in
*" berth.probe=1 "*) echo berth-vm-probe-ok >/dev/ttyS0; poweroff -f ;;
esac

SRC= RES= OVL=0 SHARE=
for a in $(cat /proc/cmdline); do
    case "$a" in
    berth.src=*) SRC=${a#berth.src=} ;;
    berth.res=*) RES=${a#berth.res=} ;;
    berth.overlay=*) OVL=${a#berth.overlay=} ;;
    berth.share=*) SHARE=${a#berth.share=} ;;
    esac
done
[ -n "$SRC" ] && [ -n "$RES" ] || fail "berth.src= and berth.res= missing from the kernel command line"

# Modules in dependency order (written by hack/vm.sh from modules.dep).
while read -r m; do
    insmod "/lib/modules/$m" 2>/dev/null || true
done </modules.list

i=0
while [ ! -b /dev/vda ]; do
    i=$((i + 1)); [ $i -gt 100 ] && fail "no /dev/vda after 10 s"
    sleep 0.1
done
mount -t ext4 -o noatime,noinit_itable /dev/vda /newroot || fail "cannot mount the root image"

mkdir -p "/newroot$SRC"
# cache=loose: the tree is read-only for the run, and binaries execute from
# the page cache instead of one 9p round trip per page fault.
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000,cache=loose,ro berthsrc "/newroot$SRC" \
    || fail "cannot mount the work tree (9p tag berthsrc)"
# --overlay: a writable view of the tree, its changes on the (throw-away)
# root disk; the host's tree stays read-only underneath.
if [ "$OVL" = 1 ]; then
    mkdir -p /newroot/var/lib/berth-vm/lower /newroot/var/lib/berth-vm/upper /newroot/var/lib/berth-vm/work
    mount --move "/newroot$SRC" /newroot/var/lib/berth-vm/lower
    mount -t overlay -o lowerdir=/newroot/var/lib/berth-vm/lower,upperdir=/newroot/var/lib/berth-vm/upper,workdir=/newroot/var/lib/berth-vm/work \
        overlay "/newroot$SRC" || fail "cannot mount the overlay over the work tree"
fi
# --share folders (e.g. a cargo target folder outside the tree), read-only,
# at their host paths; tag berthshare<i> is the i-th path of berth.share=.
i=0
for d in $(echo "$SHARE" | tr , ' '); do
    mkdir -p "/newroot$d"
    mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000,cache=loose,ro "berthshare$i" "/newroot$d" \
        || fail "cannot mount the shared folder $d (9p tag berthshare$i)"
    i=$((i + 1))
done
mkdir -p "/newroot$RES" 2>/dev/null
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 berthres "/newroot$RES" \
    || fail "cannot mount the results folder at $RES (it must exist in the tree)"

echo "berth-vm: [$(cut -d' ' -f1 /proc/uptime)] switching root" >/dev/ttyS0
mount --move /dev /newroot/dev
umount /proc /sys
exec switch_root /newroot /bin/bash "$SRC/hack/vm/guest-init.sh"
