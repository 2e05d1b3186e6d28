#!/usr/bin/env bash
# Build, set up, and run a berth node with a demo pod, with embedded defaults.
#
#   sudo hack/up.sh          bring everything up (idempotent) and say what runs
#   sudo hack/up.sh status   what runs and how to reach it
#   sudo hack/up.sh down     stop what up started
#
# What runs depends on what the project has built so far; this script says
# exactly which layer serves the demo and which ones are still missing.
LOG_TAG=up
. "$(dirname "$0")/lib.sh"
cd "$BERTH_ROOT"

UP=$OUT/up
DEMO_ID=berth-demo-web
DEMO_PORT=${BERTH_DEMO_PORT:-18080}
RUNC_ROOT=$UP/runc-root
BERTHD_SOCK=$UP/berthd.sock

demo_runtime() { cat "$UP/demo-runtime" 2>/dev/null || echo "$BIN/berth-runc"; }

status() {
    echo "berth node (hack/up.sh):"
    if bg_running berthd; then
        echo "  berthd       running, pid $(bg_pid berthd), CRI socket $BERTHD_SOCK"
        if [ -x "$BIN/crictl" ]; then
            echo "               try: $BIN/crictl --runtime-endpoint unix://$BERTHD_SOCK version"
        fi
    else
        echo "  berthd       not running"
    fi
    local rt state
    rt=$(demo_runtime)
    state=$("$rt" --root "$RUNC_ROOT" state "$DEMO_ID" 2>/dev/null | jq -r .status 2>/dev/null || true)
    if [ "$state" = running ]; then
        echo "  demo pod     web server, container $DEMO_ID ($state, runtime $(basename "$rt"))"
        echo "               try: curl http://127.0.0.1:$DEMO_PORT/"
    else
        echo "  demo pod     not running"
    fi
    echo "  missing      berth-kubelet standalone mode (issue 7) and berthd's pod lifecycle (issue 5):"
    echo "               until they land the demo pod is an OCI bundle of the web image run"
    echo "               directly by the OCI runtime on the host network."
}

down() {
    local rt; rt=$(demo_runtime)
    if [ -x "$rt" ]; then
        "$rt" --root "$RUNC_ROOT" kill "$DEMO_ID" KILL >/dev/null 2>&1 || true
        "$rt" --root "$RUNC_ROOT" delete --force "$DEMO_ID" >/dev/null 2>&1 || true
    fi
    bg_stop berthd
    log "stopped"
}

# A runnable bundle of the web image: unpacked from the test bed's OCI layout,
# serving on loopback:$DEMO_PORT in the host network namespace.
make_bundle() {
    local bundle=$UP/web-bundle
    if [ ! -f "$bundle/config.json" ]; then
        rm -rf "$bundle"
        umoci unpack --image "$OUT/images/berth/web:latest" "$bundle" >/dev/null
    fi
    jq --arg port "127.0.0.1:$DEMO_PORT" '
        .process.args = ["httpd", "-f", "-p", $port, "-h", "/var/www"]
        | .process.terminal = false
        | .linux.namespaces |= map(select(.type != "network"))
        | .hostname = "berth-demo"' \
        "$bundle/config.json" >"$bundle/config.json.new"
    mv "$bundle/config.json.new" "$bundle/config.json"
    echo "$bundle"
}

start_demo() {
    local bundle rt=$BIN/berth-runc
    bundle=$(make_bundle)
    mkdir -p "$RUNC_ROOT"
    if [ "$("$rt" --root "$RUNC_ROOT" state "$DEMO_ID" 2>/dev/null | jq -r .status 2>/dev/null)" = running ]; then
        return 0
    fi
    "$rt" --root "$RUNC_ROOT" delete --force "$DEMO_ID" >/dev/null 2>&1 || true
    if "$rt" --root "$RUNC_ROOT" run --detach --bundle "$bundle" "$DEMO_ID" >"$LOGDIR/demo.log" 2>&1; then
        echo "$rt" >"$UP/demo-runtime"
        return 0
    fi
    log "berth-runc could not run the demo pod ($(tail -1 "$LOGDIR/demo.log")); falling back to runc"
    rt=/usr/sbin/runc
    "$rt" --root "$RUNC_ROOT" delete --force "$DEMO_ID" >/dev/null 2>&1 || true
    "$rt" --root "$RUNC_ROOT" run --detach --bundle "$bundle" "$DEMO_ID" >>"$LOGDIR/demo.log" 2>&1 \
        || die "runc could not run the demo pod either: see $LOGDIR/demo.log"
    echo "$rt" >"$UP/demo-runtime"
}

case "${1:-up}" in
up)
    need_root
    mkdir -p "$UP"
    bash hack/testbed/deps.sh up
    bash hack/build.sh
    bash hack/testbed/registry.sh up
    bash hack/testbed/images.sh up
    bg_start berthd "$BIN/berthd" --config /dev/null --socket "$BERTHD_SOCK" \
        --root "$UP/berth-root" --state "$UP/berth-state"
    wait_for 10 "berthd socket" test -S "$BERTHD_SOCK"
    start_demo
    wait_for 10 "the demo web server" curl -fsS "http://127.0.0.1:$DEMO_PORT/"
    status
    ;;
status) status ;;
down) need_root; down ;;
*) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
