#!/usr/bin/env bash
# Build, set up, and run a berth node with a demo pod, with embedded defaults.
#
#   sudo hack/up.sh          bring everything up (idempotent) and say what runs
#   sudo hack/up.sh status   what runs and how to reach it
#   sudo hack/up.sh down     stop what up started
#
# The demo pod is a web server pod: a static pod manifest that berth-kubelet
# (standalone mode) runs through berthd's CRI socket (CNI bridge network,
# host port 127.0.0.1:18080 -> pod port 80).
LOG_TAG=up
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/testbed/mirrors.sh"
. "$(dirname "$0")/testbed/berthd-config.sh"
cd "$BERTH_ROOT"

UP=$OUT/up
DEMO_PORT=${BERTH_DEMO_PORT:-18080}
BERTHD_SOCK=$UP/berthd.sock
MANIFESTS=$UP/manifests
KUBELET_ROOT=$UP/kubelet
BRIDGE=berth0
SUBNET=10.88.0
WEB_IMAGE=127.0.0.1:5000/berth/web:latest

crictl_() { "$BIN/crictl" --runtime-endpoint "unix://$BERTHD_SOCK" --image-endpoint "unix://$BERTHD_SOCK" --timeout 60s "$@" 2>/dev/null; }

status() {
    echo "berth node (hack/up.sh):"
    if bg_running berthd; then
        echo "  berthd        running, pid $(bg_pid berthd), CRI socket $BERTHD_SOCK"
        echo "                try: $BIN/crictl --runtime-endpoint unix://$BERTHD_SOCK ps"
    else
        echo "  berthd        not running"
    fi
    if bg_running berth-kubelet; then
        echo "  berth-kubelet running, pid $(bg_pid berth-kubelet), standalone, static pods from $MANIFESTS"
        echo "                pod statuses: $KUBELET_ROOT/pods/<uid>/status.json; log $LOGDIR/berth-kubelet.log"
    else
        echo "  berth-kubelet not running"
    fi
    local pod ip cid
    pod=$(crictl_ pods -q --name berth-demo --state ready | head -1)
    cid=$( [ -n "$pod" ] && crictl_ ps -q --pod "$pod" --state running | head -1)
    if [ -n "$cid" ]; then
        ip=$(crictl_ inspectp "$pod" | jq -r .status.network.ip)
        echo "  demo pod      $(crictl_ inspectp "$pod" | jq -r .status.metadata.name) (pod ${pod:0:13}, IP $ip): web container ${cid:0:13} running"
        echo "                from $WEB_IMAGE, run by berth-kubelet -> berthd -> berth-shim -> berth-runc"
        echo "                manifest: $MANIFESTS/berth-demo.yaml (edit or remove it and the kubelet follows)"
        echo "                try: curl http://127.0.0.1:$DEMO_PORT/   (host port -> pod port 80)"
    else
        echo "  demo pod      not running"
    fi
    echo "  missing       berth-kubelet joining a cluster (issue 7: Node, API pods, probes, volumes)"
}

down() {
    # The kubelet first: stopped, it leaves its pods running; berthd removes them.
    bg_stop berth-kubelet
    if bg_running berthd; then
        for p in $(crictl_ pods -q); do crictl_ rmp -f "$p" >/dev/null || true; done
    fi
    bg_stop berthd
    # berthd keeps its namespace folder a private bind mount across its own
    # restarts; with every pod gone, down takes it away too.
    mountpoint -q "$UP/state/ns" && umount "$UP/state/ns"
    ip link del "$BRIDGE" 2>/dev/null || true
    rm -rf "$KUBELET_ROOT" "$UP/pod-logs"
    log "stopped"
}

# The demo pod as a static pod manifest, and berth-kubelet in standalone
# mode running it through berthd.
start_demo() {
    mkdir -p "$MANIFESTS"
    cat >"$UP/kubelet.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
staticPodPath: $MANIFESTS
podLogsDir: $UP/pod-logs
YAML
    cat >"$MANIFESTS/.berth-demo.yaml.tmp" <<YAML
apiVersion: v1
kind: Pod
metadata:
  name: berth-demo
  labels: {app: berth-demo}
spec:
  terminationGracePeriodSeconds: 5
  containers:
  - name: web
    image: $WEB_IMAGE
    imagePullPolicy: IfNotPresent
    ports:
    - {containerPort: 80, hostPort: $DEMO_PORT, hostIP: 127.0.0.1}
YAML
    # Rewritten only when it changed (a new text is a new pod).
    if cmp -s "$MANIFESTS/.berth-demo.yaml.tmp" "$MANIFESTS/berth-demo.yaml"; then
        rm -f "$MANIFESTS/.berth-demo.yaml.tmp"
    else
        mv "$MANIFESTS/.berth-demo.yaml.tmp" "$MANIFESTS/berth-demo.yaml"
    fi
    if ! bg_running berth-kubelet; then
        bg_start berth-kubelet "$BIN/berth-kubelet" --config "$UP/kubelet.yaml" \
            --root-dir "$KUBELET_ROOT" --container-runtime-endpoint "unix://$BERTHD_SOCK"
    fi
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
    wait_for 30 "the demo web server (see $LOGDIR/berth-kubelet.log)" curl -fsS "http://127.0.0.1:$DEMO_PORT/"
    status
    ;;
status) status ;;
down) need_root; down ;;
*) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
