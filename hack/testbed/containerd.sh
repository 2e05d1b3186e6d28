#!/usr/bin/env bash
# Debian's containerd 1.6 + runc as the reference CRI runtime, fully isolated
# from any system instance: its own config, root, state, socket, runc root,
# netns folder and CNI config, all under _output/.
#
#   _output/containerd/config.toml         the config (rewritten by `up`)
#   _output/containerd/{root,state}        containerd's root and state
#   _output/containerd/containerd.sock     the CRI / containerd API socket
#   _output/containerd/certs.d/<host>/hosts.toml
#        docker.io, gcr.io, registry.k8s.io, k8s.gcr.io -> http://127.0.0.1:5000
#        (pull, resolve); 127.0.0.1:5000 plain HTTP; 127.0.0.1:5443 with the test CA
#        (its credentials are in config.toml, registry.configs)
#   _output/cni/net.d/10-berth-containerd.conflist   bridge berthcd0, host-local
#        10.89.0.0/24 (data under _output/cni/ipam), portmap; 99-loopback.conf
#
#   containerd.sh up       write the configs, start containerd, wait for the socket
#   containerd.sh down     remove its pods, stop it (by PID) and its shims, unmount
#                          what it left under _output/containerd, delete its bridge
#   containerd.sh status   running or not, CRI runtime status, pods/containers/images
#   containerd.sh env      BERTH_CONTAINERD_SOCK, BERTH_CONTAINERD_CONFIG, BERTH_CNI_CONF_DIR
#   containerd.sh critest [ARGS...]
#                          run _output/bin/critest against it (the reference result),
#                          skipping the one spec that cannot pass offline ('digest');
#                          log in _output/log/critest-containerd.log
LOG_TAG=containerd
. "$(dirname "$0")/../lib.sh"
. "$(dirname "$0")/mirrors.sh"

CTD_DIR=$OUT/containerd
CONF=$CTD_DIR/config.toml
SOCK=$CTD_DIR/containerd.sock
CERTS=$CTD_DIR/certs.d
CNI_DIR=$OUT/cni/net.d
CNI_IPAM=$OUT/cni/ipam
CNI_BIN=/usr/lib/cni
BRIDGE=berthcd0
SUBNET=10.89.0.0/24
SANDBOX_IMAGE=registry.k8s.io/pause:3.10
REG_DIR=$OUT/registry
NAME=containerd
# The OCI runtime containerd's runc shim calls: Debian's runc by default;
# BERTH_CONTAINERD_OCI_RUNTIME=$BIN/berth-runc proves berth-runc a drop-in.
OCI_RUNTIME=${BERTH_CONTAINERD_OCI_RUNTIME:-$(command -v runc || echo /usr/sbin/runc)}

crictl_() { crictl --runtime-endpoint "unix://$SOCK" --image-endpoint "unix://$SOCK" --timeout 30s "$@"; }

write_configs() {
    mkdir -p "$CTD_DIR/root" "$CTD_DIR/state" "$CTD_DIR/opt" "$CTD_DIR/runc" "$CNI_DIR" "$CNI_IPAM"
    write_mirrors "$CERTS"

    local user=berth pass=berth-test-pass
    [ -s "$REG_DIR/user" ] && user=$(cat "$REG_DIR/user")
    [ -s "$REG_DIR/pass" ] && pass=$(cat "$REG_DIR/pass")

    cat >"$CONF.tmp" <<EOF
# Written by hack/testbed/containerd.sh; rewritten on every \`up\`.
version = 2
root = "$CTD_DIR/root"
state = "$CTD_DIR/state"
oom_score = 0
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "$SOCK"

[ttrpc]
  address = ""

[debug]
  address = ""
  level = "info"

[metrics]
  address = ""

[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = "$CTD_DIR/opt"

  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = "$SANDBOX_IMAGE"
    # root here lacks CAP_SYS_RESOURCE: lowering oom_score_adj fails with EPERM.
    restrict_oom_score_adj = true
    netns_mounts_under_state_dir = true
    stream_server_address = "127.0.0.1"
    stream_server_port = "0"
    enable_selinux = false
    max_container_log_line_size = 16384

    [plugins."io.containerd.grpc.v1.cri".containerd]
      snapshotter = "overlayfs"
      default_runtime_name = "runc"

      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"

        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
          BinaryName = "$OCI_RUNTIME"
          Root = "$CTD_DIR/runc"
          SystemdCgroup = false

    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = "$CNI_BIN"
      conf_dir = "$CNI_DIR"
      max_conf_num = 1

    [plugins."io.containerd.grpc.v1.cri".registry]
      config_path = "$CERTS"

      [plugins."io.containerd.grpc.v1.cri".registry.configs."127.0.0.1:5443".auth]
        username = "$user"
        password = "$pass"
EOF
    mv "$CONF.tmp" "$CONF"

    cat >"$CNI_DIR/10-berth-containerd.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "berth-containerd",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$BRIDGE",
      "isGateway": true,
      "ipMasq": true,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{ "subnet": "$SUBNET" }]],
        "routes": [{ "dst": "0.0.0.0/0" }],
        "dataDir": "$CNI_IPAM"
      }
    },
    {
      "type": "portmap",
      "capabilities": { "portMappings": true }
    }
  ]
}
EOF
    cat >"$CNI_DIR/99-loopback.conf" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "lo",
  "type": "loopback"
}
EOF
}

check_subnet() {
    # The pod subnet must not overlap a route the host already has (other than our bridge's).
    if ip -4 route show | grep -v "dev $BRIDGE" | awk '{print $1}' | grep -qx "${SUBNET}"; then
        die "pod subnet $SUBNET is already routed on this host (ip route); change SUBNET in $0"
    fi
}

# Our shims: containerd-shim-runc-v2 processes started with -address $SOCK.
our_shims() {
    local p
    for p in /proc/[0-9]*; do
        tr '\0' ' ' 2>/dev/null <"$p/cmdline" | grep -q -- "-address $SOCK " && echo "${p#/proc/}"
    done
    return 0
}

unmount_leftovers() {
    # Deepest first; lazily, so a busy one does not block the rest.
    local m
    awk -v d="$CTD_DIR" '$5 == d || index($5, d "/") == 1 {print $5}' /proc/self/mountinfo | sort -r | while read -r m; do
        umount -l "$m" 2>/dev/null || true
    done
    awk -v d="$OUT/cni" 'index($5, d "/") == 1 {print $5}' /proc/self/mountinfo | sort -r | while read -r m; do
        umount -l "$m" 2>/dev/null || true
    done
}

case "${1:-}" in
up)
    need_root up
    command -v containerd >/dev/null || ensure_pkgs containerd
    command -v runc >/dev/null || ensure_pkgs runc
    [ -x "$CNI_BIN/bridge" ] || ensure_pkgs containernetworking-plugins
    command -v iptables >/dev/null || ensure_pkgs iptables
    check_subnet
    curl -fsS -o /dev/null http://127.0.0.1:5000/v2/ 2>/dev/null \
        || log "warning: the local registry is not up; pulls (and the sandbox image) will fail until: hack/testbed.sh up"
    write_configs
    if ! bg_running $NAME; then
        [ -S "$SOCK" ] && rm -f "$SOCK"
        log "starting containerd (config $CONF)"
        bg_start $NAME containerd --config "$CONF"
    fi
    wait_for 60 "containerd socket $SOCK (log: $LOGDIR/$NAME.log)" \
        ctr --address "$SOCK" version
    if command -v crictl >/dev/null; then
        wait_for 60 "CRI on $SOCK" crictl_ info
    fi
    log "containerd up: unix://$SOCK (sandbox image $SANDBOX_IMAGE via the mirror)"
    ;;
down)
    if bg_running $NAME && [ -S "$SOCK" ] && command -v crictl >/dev/null; then
        # Let the CRI tear pods down properly: CNI DEL (IPs, iptables), netns, shims.
        n=$(crictl_ pods -q 2>/dev/null | wc -l || true)
        if [ "${n:-0}" -gt 0 ]; then
            log "removing $n pod sandbox(es)"
            crictl_ rmp -fa >/dev/null 2>&1 || log "warning: crictl rmp -fa failed"
        fi
    fi
    if bg_running $NAME; then log "stopping containerd (pid $(bg_pid $NAME))"; fi
    bg_stop $NAME
    # Shims left behind (pods that could not be removed): stop them and the
    # processes they run, by PID; they all carry our socket path.
    for s in $(our_shims); do
        for c in $(ps -o pid= --ppid "$s" 2>/dev/null); do kill -KILL "$c" 2>/dev/null || true; done
        kill -TERM "$s" 2>/dev/null || true
    done
    sleep 0.5
    for s in $(our_shims); do kill -KILL "$s" 2>/dev/null || true; done
    unmount_leftovers
    rm -f "$CTD_DIR"/state/io.containerd.grpc.v1.cri/netns/cni-* 2>/dev/null || true
    rm -f "$SOCK" "$SOCK.ttrpc"
    if ip link show "$BRIDGE" >/dev/null 2>&1; then ip link del "$BRIDGE" 2>/dev/null || true; fi
    ;;
status)
    if bg_running $NAME; then
        echo "containerd: running, pid $(bg_pid $NAME), unix://$SOCK"
        if command -v crictl >/dev/null; then
            crictl_ info 2>/dev/null | jq -r '.status.conditions[] | "  \(.type)=\(.status) \(.reason // "")"' || true
            echo "  pods: $(crictl_ pods -q 2>/dev/null | wc -l), containers: $(crictl_ ps -aq 2>/dev/null | wc -l), images: $(crictl_ images -q 2>/dev/null | wc -l)"
        fi
    else
        echo "containerd: not running"
    fi
    ;;
env)
    echo "export BERTH_CONTAINERD_SOCK=$SOCK"
    echo "export BERTH_CONTAINERD_ENDPOINT=unix://$SOCK"
    echo "export BERTH_CONTAINERD_CONFIG=$CONF"
    echo "export BERTH_CONTAINERD_HOSTS_DIR=$CERTS"
    echo "export BERTH_CNI_CONF_DIR=$CNI_DIR"
    echo "export BERTH_CNI_BIN_DIR=$CNI_BIN"
    ;;
critest)
    shift
    command -v critest >/dev/null || die "no critest in $BIN (hack/testbed.sh tools up)"
    bg_running $NAME || die "containerd is not running: $0 up"
    rt=$(grep -m1 BinaryName "$CONF" | sed 's/.*"\(.*\)"/\1/')
    logf=$LOGDIR/critest-containerd-$(basename "$rt").log
    log "critest against containerd + $rt; log: $logf"
    rc=0
    critest --runtime-endpoint "unix://$SOCK" --image-endpoint "unix://$SOCK" \
        --ginkgo.skip='digest' --ginkgo.no-color --ginkgo.v "$@" >"$logf" 2>&1 || rc=$?
    grep -E '^\s+\[FAIL\]|^Ran |Passed \|' "$logf" || true
    # One countable line: "critest: N passed, M failed, K skipped".
    sed -n 's/.*-- \([0-9][0-9]*\) Passed | \([0-9][0-9]*\) Failed | [0-9]* Pending | \([0-9][0-9]*\) Skipped.*/critest: \1 passed, \2 failed, \3 skipped/p' "$logf" | tail -1
    exit $rc
    ;;
*) echo "usage: $0 up|down|status|env|critest" >&2; exit 2 ;;
esac
