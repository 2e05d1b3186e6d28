#!/usr/bin/env bash
# Build, set up, and run a berth node with a demo pod, with embedded defaults.
#
#   sudo hack/up.sh          bring everything up (idempotent) and say what runs
#   sudo hack/up.sh status   what runs and how to reach it
#   sudo hack/up.sh down     stop what up started
#
# The demo pod is a web server pod run by berthd (CNI bridge network, host
# port 127.0.0.1:18080 -> pod port 80), created through CRI with crictl as a
# kubelet would; the script says which layers are still missing.
LOG_TAG=up
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/testbed/mirrors.sh"
. "$(dirname "$0")/testbed/berthd-config.sh"
cd "$BERTH_ROOT"

UP=$OUT/up
DEMO_PORT=${BERTH_DEMO_PORT:-18080}
BERTHD_SOCK=$UP/berthd.sock
BRIDGE=berth0
SUBNET=10.88.0
WEB_IMAGE=127.0.0.1:5000/berth/web:latest

crictl_() { "$BIN/crictl" --runtime-endpoint "unix://$BERTHD_SOCK" --image-endpoint "unix://$BERTHD_SOCK" --timeout 60s "$@" 2>/dev/null; }

status() {
    echo "berth node (hack/up.sh):"
    if bg_running berthd; then
        echo "  berthd       running, pid $(bg_pid berthd), CRI socket $BERTHD_SOCK"
        echo "               try: $BIN/crictl --runtime-endpoint unix://$BERTHD_SOCK ps"
    else
        echo "  berthd       not running"
    fi
    local pod ip cid
    pod=$(crictl_ pods -q --name berth-demo --state ready | head -1)
    cid=$( [ -n "$pod" ] && crictl_ ps -q --pod "$pod" --state running | head -1)
    if [ -n "$cid" ]; then
        ip=$(crictl_ inspectp "$pod" | jq -r .status.network.ip)
        echo "  demo pod     berth-demo (pod ${pod:0:13}, IP $ip): web container ${cid:0:13} running"
        echo "               from $WEB_IMAGE, run by berthd -> berth-shim -> berth-runc"
        echo "               try: curl http://127.0.0.1:$DEMO_PORT/   (host port -> pod port 80)"
    else
        echo "  demo pod     not running"
    fi
    echo "  missing      berth-kubelet (issue 7): the demo pod is created with crictl, as a"
    echo "               kubelet would through CRI; streaming (exec/attach/port-forward) is issue 6."
}

down() {
    if bg_running berthd; then
        for p in $(crictl_ pods -q); do crictl_ rmp -f "$p" >/dev/null || true; done
    fi
    bg_stop berthd
    ip link del "$BRIDGE" 2>/dev/null || true
    log "stopped"
}

# The demo pod, as a kubelet would create it: a pod sandbox with a host port,
# then the web container in it.
start_demo() {
    if [ -n "$(crictl_ pods -q --name berth-demo --state ready)" ]; then
        return 0
    fi
    crictl_ pull "$WEB_IMAGE" >/dev/null || die "crictl pull $WEB_IMAGE failed"
    cat >"$UP/pod.json" <<JSON
{"metadata":{"name":"berth-demo","namespace":"default","uid":"berth-demo-uid"},
 "hostname":"berth-demo","log_directory":"$UP/pod-logs",
 "port_mappings":[{"container_port":80,"host_port":$DEMO_PORT,"host_ip":"127.0.0.1"}],
 "linux":{"security_context":{"namespace_options":{"pid":1}}}}
JSON
    cat >"$UP/web.json" <<JSON
{"metadata":{"name":"web"},"image":{"image":"$WEB_IMAGE"},"log_path":"web.log",
 "linux":{"security_context":{"namespace_options":{"pid":1}}}}
JSON
    local pod cid
    pod=$(crictl_ runp "$UP/pod.json") || die "RunPodSandbox failed: see $LOGDIR/berthd.log"
    cid=$(crictl_ create "$pod" "$UP/web.json" "$UP/pod.json") || die "CreateContainer failed: see $LOGDIR/berthd.log"
    crictl_ start "$cid" >/dev/null || die "StartContainer failed: see $LOGDIR/berthd.log"
}

case "${1:-up}" in
up)
    need_root
    mkdir -p "$UP"
    bash hack/testbed/deps.sh up
    bash hack/build.sh
    bash hack/testbed/registry.sh up
    bash hack/testbed/images.sh up
    bash hack/testbed/tools.sh crictl
    write_berthd_config "$UP" berth "$BRIDGE" "$SUBNET" true
    if ! bg_running berthd; then
        bg_start berthd "$BIN/berthd" --config "$UP/berthd.toml"
    fi
    wait_for 10 "berthd socket" test -S "$BERTHD_SOCK"
    start_demo
    wait_for 10 "the demo web server" curl -fsS "http://127.0.0.1:$DEMO_PORT/"
    status
    ;;
status) status ;;
down) need_root; down ;;
*) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
