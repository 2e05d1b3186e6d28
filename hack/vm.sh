#!/usr/bin/env bash
# Run a command as root inside a throw-away Linux VM with a chosen cgroup layout.
#
#   sudo hack/vm.sh run [options] -- COMMAND...   boot, run COMMAND, power off; exit with its status
#   sudo hack/vm.sh build                         build (or refresh) the cached kernel, initramfs and image
#   hack/vm.sh status                             what is cached under _output/vm/
#   sudo hack/vm.sh clean                         remove the cached image, kernel and run folders
#
# run options:
#   --cgroup v2|v1|hybrid   cgroup layout the guest mounts (default v2: cgroup2 only)
#   --init script|systemd   script (default): hack/vm/guest-init.sh is PID 1 and mounts
#                           the layout itself; systemd: systemd is PID 1 (it mounts
#                           the layout, asked for on the kernel command line) and
#                           runs COMMAND as a service, for the systemd cgroup driver
#   --mem MIB               guest memory in MiB (default 2048)
#   --cpus N                virtual CPUs (default: the host's, at most 4)
#   --timeout S             kill the VM after S seconds, exit 124 (default 3600; 0 = none)
#   --accel auto|kvm|tcg    auto: KVM if a probe boot works on this host (cached), else TCG
#   --forward PORT[,PORT]   host loopback ports the guest reaches on its own 127.0.0.1
#                           (default: the test bed's registries, 5000 and 5443, when listening)
#   --overlay               make the tree writable in the guest (overlayfs, changes
#                           discarded at power-off; the host's tree is never written)
#   --share DIR             also mount host folder DIR read-only at the same path
#                           (repeatable; $CARGO_TARGET_DIR is shared by default when
#                           it is outside the tree, so test binaries built there run)
#   -e NAME=VALUE           environment for COMMAND (repeatable)
#   -v                      copy the guest's kernel console to stderr after the run
#
# COMMAND runs from the current folder if it is inside the work tree (else the
# tree's root); the tree is mounted read-only at the same path, and
# $BERTH_VM_RESULTS (a fresh _output/vm/results/<run>/) is writable and kept.
LOG_TAG=vm
. "$(dirname "$0")/lib.sh"

VMDIR=$OUT/vm
CACHE=$VMDIR/cache
SUITE=bookworm
# What the guest image holds: the test bed's runtime packages (hack/testbed/deps.sh)
# without the build tools and registry servers, which stay on the host.
GUEST_PKGS=(
    kmod procps psmisc util-linux iproute2 iptables conntrack socat ethtool
    containernetworking-plugins runc crun containerd criu libseccomp2
    busybox-static ca-certificates curl jq skopeo xz-utils zstd
    perl   # prove, for hack/runtime-tools.sh
    # critest's AppArmor specs load their profiles with `sudo apparmor_parser`
    # (Debian's kernel enables AppArmor; the project's host kernel has none).
    apparmor sudo
    systemd  # PID 1 under --init systemd (the systemd cgroup driver's tests)
)
IMAGE_MB_FREE=3072   # free space in the root image (writes go to a per-run snapshot)

# --- helpers --------------------------------------------------------------------
# The Debian mirror apt already uses (deb822 or one-line sources); never hard-coded.
apt_mirror() {
    local f u
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        u=$(awk -v s="$SUITE" '
            /^[ \t]*$/ { if (ok && uri != "") { print uri; exit } ok = 0; uri = "" ; next }
            /^URIs:/ { uri = $2 }
            /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == s) ok = 1 }
            END { if (ok && uri != "") print uri }' "$f" | head -1)
        [ -n "$u" ] && { echo "$u"; return; }
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$f" ] || continue
        u=$(awk -v s="$SUITE" '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { if ($(i+1) == s) { print $i; exit } } }' "$f")
        [ -n "$u" ] && { echo "$u"; return; }
    done
    die "no $SUITE mirror found in apt's sources"
}

sha() { sha256sum | cut -c1-16; }

# kernel_pkg: the Debian kernel package linux-image-amd64 points at now.
kernel_pkg() {
    local p
    p=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ { print $2; exit }')
    if [ -z "$p" ]; then
        apt-get update -q >/dev/null
        p=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/ { print $2; exit }')
    fi
    [ -n "$p" ] || die "cannot resolve linux-image-amd64"
    echo "$p"
}

# Modules the initramfs loads, in dependency order: virtio PCI, block, net,
# ext4 and 9p.
INITRD_MODULES=(virtio_pci virtio_blk virtio_net ext4 9pnet_virtio 9p overlay)

# --- kernel -------------------------------------------------------------------
# ensure_kernel: extract vmlinuz and the modules from Debian's kernel package
# into $VMDIR/kernel/<version>/ (not installed on the host); sets KVER, KDIR.
ensure_kernel() {
    local pkg; pkg=$(kernel_pkg)
    KVER=${pkg#linux-image-}
    KDIR=$VMDIR/kernel/$KVER
    [ -f "$KDIR/vmlinuz" ] && [ -f "$KDIR/lib/modules/$KVER/modules.dep" ] && return 0
    log "fetching $pkg"
    mkdir -p "$CACHE" "$VMDIR/kernel"
    (cd "$CACHE" && apt-get download -qq "$pkg" 2>&1 | grep -v -e '^W: Download is performed unsandboxed' -e '^Get:' -e '^Fetched' >&2) || true
    local deb; deb=$(ls -t "$CACHE/${pkg}"_*.deb 2>/dev/null | head -1)
    [ -n "$deb" ] || die "apt-get download $pkg failed"
    rm -rf "$KDIR.tmp" && mkdir -p "$KDIR.tmp"
    dpkg-deb -x "$deb" "$KDIR.tmp/x"
    mv "$KDIR.tmp/x/boot/vmlinuz-$KVER" "$KDIR.tmp/vmlinuz"
    mkdir -p "$KDIR.tmp/lib/modules"
    mv "$KDIR.tmp/x/lib/modules/$KVER" "$KDIR.tmp/lib/modules/"
    # Under TCG, decompressing the xz bzImage takes the guest 5-8 s. The
    # kernel is built with CONFIG_PVH, so qemu can start the uncompressed ELF
    # vmlinux directly: pull it out of the bzImage once, here.
    if grep -q '^CONFIG_PVH=y' "$KDIR.tmp/x/boot/config-$KVER"; then
        local off
        off=$( { LC_ALL=C grep -obUaP '\xfd7zXZ\x00' "$KDIR.tmp/vmlinuz" || true; } | head -1 | cut -d: -f1)
        # xz stops after its stream; tail's SIGPIPE is expected.
        if [ -n "$off" ] && { tail -c +"$((off + 1))" "$KDIR.tmp/vmlinuz" || true; } | xz -dc --single-stream >"$KDIR.tmp/vmlinux" 2>/dev/null \
            && [ "$(head -c 4 "$KDIR.tmp/vmlinux" | od -An -c | tr -d ' ')" = 177ELF ]; then
            :
        else
            rm -f "$KDIR.tmp/vmlinux"
        fi
    fi
    rm -rf "$KDIR.tmp/x"
    depmod -b "$KDIR.tmp" "$KVER"
    rm -rf "$KDIR" && mv "$KDIR.tmp" "$KDIR"
}

# --- initramfs ----------------------------------------------------------------
# ensure_initramfs: busybox-static, /init (hack/vm/initramfs-init.sh) and the
# modules above, as an uncompressed cpio (decompression is slow under TCG).
ensure_initramfs() {
    INITRD=$VMDIR/initramfs.img
    local stamp
    stamp=$( { cat "$BERTH_ROOT/hack/vm/initramfs-init.sh"; echo "$KVER ${INITRD_MODULES[*]}"; dpkg-query -W busybox-static; } | sha)
    [ -f "$INITRD" ] && [ "$(cat "$INITRD.stamp" 2>/dev/null)" = "$stamp" ] && return 0
    log "building the initramfs"
    local d=$VMDIR/initramfs.tmp
    rm -rf "$d" && mkdir -p "$d/bin" "$d/lib/modules"
    cp /bin/busybox "$d/bin/busybox"
    install -m 755 "$BERTH_ROOT/hack/vm/initramfs-init.sh" "$d/init"
    local m
    modprobe -d "$KDIR" -S "$KVER" --show-depends -a "${INITRD_MODULES[@]}" \
        | awk '$1 == "insmod" { print $2 }' | awk '!seen[$0]++' | while read -r m; do
        m=${m#"$KDIR/lib/modules/"}
        mkdir -p "$d/lib/modules/$(dirname "$m")"
        cp "$KDIR/lib/modules/$m" "$d/lib/modules/$m"
        echo "$m" >>"$d/modules.list"
    done
    (cd "$d" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0) >"$INITRD.tmp"
    mv "$INITRD.tmp" "$INITRD"
    echo "$stamp" >"$INITRD.stamp"
    rm -rf "$d"
}

# --- root image ---------------------------------------------------------------
# build_rootfs DIR: the recipe. Its text is part of the image's stamp, so any
# change here (or to GUEST_PKGS or the kernel) rebuilds the image.
build_rootfs() {
    local dir=$1 mirror; mirror=$(apt_mirror)
    mkdir -p "$CACHE/debs"
    # The mirror's name goes into no file: the log gets "<apt mirror>".
    local st=0
    debootstrap --variant=minbase --cache-dir="$CACHE/debs" \
        --include="$(IFS=,; echo "${GUEST_PKGS[*]}")" "$SUITE" "$dir" "$mirror" 2>&1 \
        | sed -u "s|$mirror|<apt mirror>|g" >"$VMDIR/debootstrap.log" || st=$?
    [ $st = 0 ] || { tail -20 "$VMDIR/debootstrap.log" >&2; die "debootstrap failed (log: $VMDIR/debootstrap.log)"; }
    mkdir -p "$dir/usr/lib/modules"
    cp -a "$KDIR/lib/modules/$KVER" "$dir/usr/lib/modules/"
    echo berth-vm >"$dir/etc/hostname"
    : >"$dir/etc/fstab"
    # No sources of any mirror inside the image: the guest has no internet.
    rm -f "$dir/etc/apt/sources.list" "$dir/etc/apt/sources.list.d/"*
    rm -rf "$dir/var/cache/apt/archives/"*.deb "$dir/var/cache/apt/"*.bin "$dir/var/lib/apt/lists/"* \
        "$dir/var/log/apt" "$dir/var/log/bootstrap.log" "$dir/usr/share/doc" "$dir/usr/share/man"
    # What the build wrote (Debian's own package files under /usr may quote
    # the default mirror's name in their documentation; they are not ours).
    local host=${mirror#*://}; host=${host%%/*}
    local named
    named=$(grep -rlIF "$host" "$dir/etc" "$dir/var" "$dir/root" 2>/dev/null || true)
    if [ -n "$named" ]; then
        printf '  %s\n' "${named//$dir/}" >&2
        log "warning: the files above still name the apt mirror"
    fi
}

umount_under() {
    local d=$1 m
    [ -d "$d" ] || return 0
    for m in $(awk -v d="$d" '$2 == d || index($2, d "/") == 1 { print $2 }' /proc/self/mounts | sort -r); do
        umount -l "$m" 2>/dev/null || true
    done
}

ensure_image() {
    IMAGE=$VMDIR/rootfs.img
    local stamp
    stamp=$( { declare -f build_rootfs; echo "$SUITE ${GUEST_PKGS[*]} $KVER $IMAGE_MB_FREE"; } | sha)
    [ -f "$IMAGE" ] && [ "$(cat "$IMAGE.stamp" 2>/dev/null)" = "$stamp" ] && return 0
    log "building the root image (debootstrap $SUITE, once; log: $VMDIR/debootstrap.log)"
    local t0=$SECONDS dir=$VMDIR/rootfs.tmp
    BUILD_DIR=$dir
    umount_under "$dir"; rm -rf --one-file-system "$dir"
    build_rootfs "$dir"
    umount_under "$dir"
    local mb; mb=$(du -sm "$dir" | cut -f1)
    rm -f "$IMAGE.tmp"
    truncate -s "$((mb + mb / 4 + IMAGE_MB_FREE))M" "$IMAGE.tmp"
    mkfs.ext4 -q -F -L berth-root -d "$dir" "$IMAGE.tmp" >/dev/null
    mv "$IMAGE.tmp" "$IMAGE"
    echo "$stamp" >"$IMAGE.stamp"
    rm -rf --one-file-system "$dir"
    BUILD_DIR=
    log "root image built in $((SECONDS - t0)) s ($mb MiB used)"
}

ensure_all() {
    need_root
    ensure_pkgs qemu-system-x86 debootstrap busybox-static kmod cpio e2fsprogs socat xz-utils
    mkdir -p "$VMDIR/results"
    exec 9>"$VMDIR/build.lock"
    flock 9
    ensure_kernel
    ensure_initramfs
    ensure_image
    flock -u 9
}

# --- accelerator --------------------------------------------------------------
# KVM is used only if a probe boot reaches the initramfs within 20 s; the
# answer is cached per host kernel and qemu version. /dev/kvm may exist and
# still not run a guest (nested virtualization), as on the project's VM.
pick_accel() {
    case "$ACCEL" in tcg|kvm) echo "$ACCEL"; return ;; esac
    [ -r /dev/kvm ] && [ -w /dev/kvm ] || { echo tcg; return; }
    local key f=$VMDIR/kvm-probe out
    key="$(uname -r) $(qemu-system-x86_64 --version | head -1) $KVER"
    if [ "$(sed -n 1p "$f" 2>/dev/null)" = "$key" ]; then sed -n 2p "$f"; return; fi
    log "probing KVM (once per host kernel, up to 20 s)"
    out=$(timeout 20 qemu-system-x86_64 -accel kvm -M q35 -cpu host -m 256 -nodefaults -no-user-config \
        -display none -serial stdio -no-reboot -kernel "$KDIR/vmlinuz" -initrd "$INITRD" \
        -append "console=ttyS0 quiet panic=-1 berth.probe=1" </dev/null 2>&1 || true)
    local a=tcg; case "$out" in *berth-vm-probe-ok*) a=kvm ;; esac
    printf '%s\n%s\n' "$key" "$a" >"$f"
    [ $a = kvm ] || log "KVM does not boot a guest here; using TCG (software emulation)"
    echo $a
}

# --- run ----------------------------------------------------------------------
QPID= CPID= TMP= BUILD_DIR=
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    set +e
    if [ -n "$QPID" ] && kill -0 "$QPID" 2>/dev/null; then
        kill -TERM -- "-$QPID" 2>/dev/null || kill -TERM "$QPID" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$QPID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL -- "-$QPID" 2>/dev/null || kill -KILL "$QPID" 2>/dev/null || true
    fi
    if [ -n "$CPID" ]; then kill "$CPID" 2>/dev/null || true; fi
    if [ -n "$TMP" ]; then rm -rf "$TMP" || true; fi
    if [ -n "$BUILD_DIR" ]; then
        umount_under "$BUILD_DIR"
        rm -rf --one-file-system "$BUILD_DIR" "$VMDIR/rootfs.img.tmp" || true
    fi
    exit "$rc"
}

cmd_run() {
    local CG=v2 MEM=2048 CPUS TIMEOUT=3600 FWD=auto VERBOSE=0 ENVS=() OVERLAY=0 SHARES=() INIT=script
    ACCEL=auto
    CPUS=$(nproc); [ "$CPUS" -gt 4 ] && CPUS=4
    while [ $# -gt 0 ]; do
        case "$1" in
        --cgroup) CG=$2; shift 2 ;;
        --init) INIT=$2; shift 2 ;;
        --mem) MEM=$2; shift 2 ;;
        --cpus) CPUS=$2; shift 2 ;;
        --timeout) TIMEOUT=$2; shift 2 ;;
        --accel) ACCEL=$2; shift 2 ;;
        --forward) FWD=$2; shift 2 ;;
        -e) ENVS+=("$2"); shift 2 ;;
        -v) VERBOSE=1; shift ;;
        --overlay) OVERLAY=1; shift ;;
        --share) SHARES+=("$2"); shift 2 ;;
        --) shift; break ;;
        *) die "unknown option $1 (usage: hack/vm.sh run [options] -- COMMAND...)" ;;
        esac
    done
    [ $# -gt 0 ] || die "no COMMAND (usage: hack/vm.sh run [options] -- COMMAND...)"
    case "$CG" in v2|v1|hybrid) ;; *) die "--cgroup must be v2, v1 or hybrid" ;; esac
    # systemd mounts the layout its command line asks for.
    local sd_args=
    case "$INIT:$CG" in
    script:*) ;;
    systemd:v2) sd_args="systemd.unified_cgroup_hierarchy=1" ;;
    systemd:hybrid) sd_args="systemd.unified_cgroup_hierarchy=0 systemd.legacy_systemd_cgroup_controller=0" ;;
    systemd:v1) sd_args="systemd.unified_cgroup_hierarchy=0 systemd.legacy_systemd_cgroup_controller=1" ;;
    *) die "--init must be script or systemd" ;;
    esac
    case "$BERTH_ROOT" in *[[:space:]]*) die "the work tree's path must not contain spaces" ;; esac
    # A cargo target folder of its own (worktrees) holds the test binaries.
    if [ -n "${CARGO_TARGET_DIR:-}" ] && [ -d "$CARGO_TARGET_DIR" ]; then
        case "$(realpath "$CARGO_TARGET_DIR")/" in "$BERTH_ROOT"/*) ;; *) SHARES+=("$CARGO_TARGET_DIR") ;; esac
    fi
    local shares=() d
    for d in ${SHARES[@]+"${SHARES[@]}"}; do
        [ -d "$d" ] || die "--share $d: not a folder"
        d=$(realpath "$d")
        case "$d" in
        *[[:space:],]*) die "--share $d: the path must not contain spaces or commas" ;;
        /|/proc|/proc/*|/sys|/sys/*|/dev|/dev/*|/run|/run/*) die "--share $d: not a folder the guest can take from the host" ;;
        esac
        case "$d/" in "$BERTH_ROOT"/*) continue ;; esac   # in the tree already
        shares+=("$d")
    done
    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    ensure_all

    local accel; accel=$(pick_accel)
    local id; id=$(date +%Y%m%d-%H%M%S)-$$
    local res=$VMDIR/results/$id
    mkdir -p "$res"
    # Keep the last 50 run folders.
    ls -1d "$VMDIR/results/"*/ 2>/dev/null | head -n -50 | xargs -r rm -rf
    local cwd=$BERTH_ROOT
    case "$PWD/" in "$BERTH_ROOT"/*) cwd=$PWD ;; esac
    {
        printf 'cd %q || exit 125\n' "$cwd"
        printf 'exec'; printf ' %q' "$@"; printf '\n'
    } >"$res/cmd"
    : >"$res/env"
    local e
    for e in ${ENVS[@]+"${ENVS[@]}"}; do
        [[ $e == *=* ]] || die "-e wants NAME=VALUE"
        printf 'export %s=%q\n' "${e%%=*}" "${e#*=}" >>"$res/env"
    done

    # Forwards: the guest reaches host loopback port P at 10.0.2.100:P, one
    # socat per connection (guestfwd cmd:); nothing else is reachable
    # (restrict=on).
    local ports=() p netdev="user,id=n0,restrict=on"
    if [ "$FWD" = auto ]; then
        for p in 5000 5443; do port_listening "$p" && ports+=("$p"); done
    elif [ -n "$FWD" ]; then
        IFS=, read -r -a ports <<<"$FWD"
    fi
    for p in ${ports[@]+"${ports[@]}"}; do
        [[ $p =~ ^[0-9]+$ ]] || die "bad port $p"
        netdev+=",guestfwd=tcp:10.0.2.100:$p-cmd:socat - TCP:127.0.0.1:$p"
    done
    local fwdlist; fwdlist=$(IFS=,; echo "${ports[*]-}")

    TMP=$(mktemp -d /tmp/berth-vm.XXXXXX)
    mkfifo "$TMP/stderr"
    cat "$TMP/stderr" >&2 &
    CPID=$!

    # The uncompressed PVH kernel when there is one (see ensure_kernel).
    local kernel=$KDIR/vmlinuz
    [ -f "$KDIR/vmlinux" ] && kernel=$KDIR/vmlinux
    local accel_args=(-accel "tcg,thread=multi" -cpu max)
    [ "$accel" = kvm ] && accel_args=(-accel kvm -cpu host)
    local q=(
        qemu-system-x86_64 "${accel_args[@]}" -M q35 -m "$MEM" -smp "$CPUS"
        -nodefaults -no-user-config -display none -vga none -no-reboot
        -bios /usr/share/qemu/qboot.rom
        -kernel "$kernel" -initrd "$INITRD"
        -append "console=ttyS0 quiet loglevel=4 panic=-1 mitigations=off no_timer_check $( [ "$CG" = v2 ] && echo cgroup_no_v1=all psi=1 ) berth.src=$BERTH_ROOT berth.res=$res berth.cgroup=$CG berth.fwd=$fwdlist berth.overlay=$OVERLAY berth.share=$(IFS=,; echo "${shares[*]-}") berth.init=$INIT $sd_args ${BERTH_VM_APPEND:-}"
        -drive "file=$IMAGE,if=none,id=root,format=raw,snapshot=on,cache=unsafe"
        -device virtio-blk-pci,drive=root
        -virtfs "local,path=$BERTH_ROOT,mount_tag=berthsrc,security_model=none,readonly=on"
        -virtfs "local,path=$res,mount_tag=berthres,security_model=none"
    )
    local i
    for i in "${!shares[@]}"; do
        q+=(-virtfs "local,path=${shares[$i]},mount_tag=berthshare$i,security_model=none,readonly=on")
    done
    q+=(
        -netdev "$netdev" -device virtio-net-pci,netdev=n0,romfile=
        -chardev "file,id=con,path=$res/console.log"
        -chardev "stdio,id=out,signal=off"
        -chardev "file,id=err,path=$TMP/stderr"
        -serial chardev:con -serial chardev:out -serial chardev:err
    )
    local t0=$SECONDS
    [ "${BERTH_VM_DEBUG:-0}" = 1 ] && log "${q[*]}"
    log "booting ($accel, init $INIT, cgroup $CG, ${MEM} MiB, $CPUS cpus); run folder $res"
    TMPDIR=$TMP setsid "${q[@]}" </dev/null 2>"$res/qemu.log" &
    QPID=$!
    # Poll rather than a timer process: nothing is left behind to kill.
    local timed_out=0 t_st=
    while kill -0 "$QPID" 2>/dev/null; do
        if [ -z "$t_st" ] && [ -f "$res/status" ]; then t_st=$((SECONDS - t0)); fi
        if [ "$TIMEOUT" != 0 ] && [ $((SECONDS - t0)) -ge "$TIMEOUT" ]; then
            timed_out=1
            kill -TERM -- "-$QPID" 2>/dev/null || true
        fi
        sleep 0.2
    done
    wait "$QPID" || true
    QPID=
    wait "$CPID" 2>/dev/null || true
    CPID=
    [ "$VERBOSE" = 1 ] && { log "guest console:"; cat "$res/console.log" >&2; }
    if [ -f "$res/status" ]; then
        local st; st=$(cat "$res/status")
        log "exit status $st after $((SECONDS - t0)) s (command done at ${t_st:-$((SECONDS - t0))} s)"
        exit "$st"
    fi
    if [ $timed_out = 1 ]; then
        log "timed out after ${TIMEOUT}s; VM stopped (console: $res/console.log)"
        exit 124
    fi
    log "the VM stopped without an exit status; console ($res/console.log) ends with:"
    tail -20 "$res/console.log" >&2
    [ -s "$res/qemu.log" ] && { log "qemu said:"; cat "$res/qemu.log" >&2; }
    exit 125
}

case "${1:-}" in
run) shift; cmd_run "$@" ;;
build)
    trap cleanup EXIT; trap 'exit 130' INT; trap 'exit 143' TERM
    ensure_all; log "kernel $KVER, $INITRD, $IMAGE"
    ;;
status)
    for f in "$VMDIR"/kernel/*/vmlinuz "$VMDIR/initramfs.img" "$VMDIR/rootfs.img"; do
        [ -f "$f" ] && printf '%-60s %s\n' "$f" "$(du -h --apparent-size "$f" | cut -f1) ($(du -h "$f" | cut -f1) on disk)"
    done
    echo "runs kept: $(ls -1d "$VMDIR/results/"*/ 2>/dev/null | wc -l)"
    [ -f "$VMDIR/kvm-probe" ] && echo "accelerator: $(sed -n 2p "$VMDIR/kvm-probe")"
    true
    ;;
clean)
    need_root
    rm -rf --one-file-system "$VMDIR/kernel" "$VMDIR/results" "$VMDIR"/initramfs.* "$VMDIR"/rootfs.* "$VMDIR/kvm-probe"
    log "removed the VM image, kernel and runs (the package cache $CACHE stays)"
    ;;
*) sed -n '2,27p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
