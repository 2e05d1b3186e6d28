#!/usr/bin/env bash
# crictl against berthd, as a user would use it, for what berthd serves so
# far: version, info, runp, pods, inspectp, stopp, rmp (issue 5 adds the
# container and image commands). Runs an isolated berthd with its own socket,
# folders, bridge and subnet; everything is removed at exit, also on failure.
# Prints one line per check and "crictl: N passed, M failed".
LOG_TAG=crictl
. "$(dirname "$0")/lib.sh"
cd "$BERTH_ROOT"
need_root
[ -x "$BIN/crictl" ] || die "no crictl in $BIN: hack/testbed.sh tools up"
[ -x "$BIN/berthd" ] || die "no berthd in $BIN: hack/build.sh"

WORK=$(mktemp -d /tmp/berth-crictl.XXXXXX)
BRIDGE=bcr$((RANDOM % 10000))
SUBNET=10.203.$((RANDOM % 200 + 20))
SOCK=$WORK/berthd.sock
PID=
cleanup() {
    if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null; then
        for p in $(crictl_ pods -q 2>/dev/null); do crictl_ rmp -f "$p" >/dev/null 2>&1 || true; done
        kill -TERM "$PID" 2>/dev/null || true
        wait "$PID" 2>/dev/null || true
    fi
    # Shims this run started (their command lines name $WORK), by PID.
    for p in $(pgrep -f "[b]erth-shim --dir $WORK" || true); do kill -KILL "$p" 2>/dev/null || true; done
    for m in "$WORK"/state/ns/* "$WORK/state/ns"; do umount -l "$m" 2>/dev/null || true; done
    ip link del "$BRIDGE" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

crictl_() { "$BIN/crictl" --runtime-endpoint "unix://$SOCK" --image-endpoint "unix://$SOCK" --timeout 30s "$@" 2>/dev/null; }

mkdir -p "$WORK/net.d"
cat >"$WORK/net.d/10-crictl.conflist" <<JSON
{"cniVersion":"1.0.0","name":"berth-crictl","plugins":[
 {"type":"bridge","bridge":"$BRIDGE","isGateway":true,"ipMasq":false,
  "ipam":{"type":"host-local","ranges":[[{"subnet":"$SUBNET.0/24"}]],"dataDir":"$WORK/ipam"}},
 {"type":"portmap","capabilities":{"portMappings":true}},
 {"type":"loopback"}]}
JSON
cat >"$WORK/berthd.toml" <<TOML
socket = "$SOCK"
root_dir = "$WORK/root"
state_dir = "$WORK/state"
cni_conf_dir = "$WORK/net.d"
cni_bin_dirs = ["/usr/lib/cni"]
TOML
"$BIN/berthd" --config "$WORK/berthd.toml" 2>"$WORK/berthd.log" &
PID=$!
wait_for 10 "berthd socket" test -S "$SOCK"

PASS=0; FAIL=0
check() {
    local what=$1; shift
    if out=$("$@" 2>&1); then PASS=$((PASS + 1)); echo "ok    $what"
    else FAIL=$((FAIL + 1)); echo "FAIL  $what"; printf '%s\n' "$out" | tail -3 | sed 's/^/      /'; fi
}

cat >"$WORK/pod.json" <<JSON
{"metadata":{"name":"crictl-pod","namespace":"default","uid":"crictl-uid","attempt":0},
 "hostname":"crictl-host","log_directory":"$WORK/logs",
 "labels":{"app":"crictl"},
 "port_mappings":[{"protocol":0,"container_port":80,"host_port":$((30000 + RANDOM % 1000))}],
 "linux":{"security_context":{"namespace_options":{"pid":1}}}}
JSON

check "crictl version names the runtime berth" bash -c "$(declare -f crictl_); BIN=$BIN SOCK=$SOCK; crictl_ version | grep -q 'RuntimeName:  berth'"
check "crictl info reports RuntimeReady and NetworkReady" bash -c \
    "$(declare -f crictl_); BIN=$BIN SOCK=$SOCK; crictl_ info | jq -e '[.status.conditions[] | select(.status)] | length == 2'"
POD=$(crictl_ runp "$WORK/pod.json" || true)
check "crictl runp returns a sandbox id" test "${#POD}" = 64
check "crictl pods lists it as Ready" bash -c \
    "$(declare -f crictl_); BIN=$BIN SOCK=$SOCK; crictl_ pods --label app=crictl -o json | jq -e '.items[0].state == \"SANDBOX_READY\"'"
IP=$(crictl_ inspectp "$POD" | jq -r .status.network.ip)
check "crictl inspectp shows a pod IP from the CNI subnet ($IP)" bash -c "[[ '$IP' == $SUBNET.* ]]"
check "the pod IP answers ping from the host" busybox ping -c1 -W2 "$IP"
check "crictl runp of the same pod again returns the same id" bash -c \
    "[ \"\$($(declare -f crictl_); BIN=$BIN SOCK=$SOCK; crictl_ runp '$WORK/pod.json')\" = '$POD' ]"
check "crictl stopp" crictl_ stopp "$POD"
check "crictl inspectp shows NotReady after stopp" bash -c \
    "$(declare -f crictl_); BIN=$BIN SOCK=$SOCK; crictl_ inspectp $POD | jq -e '.status.state == \"SANDBOX_NOTREADY\"'"
check "a berth-shim monitors the pod" bash -c "pgrep -f '[b]erth-shim --dir $WORK' >/dev/null"
check "crictl rmp" crictl_ rmp "$POD"
check "crictl pods is empty after rmp" bash -c "$(declare -f crictl_); BIN=$BIN SOCK=$SOCK; [ -z \"\$(crictl_ pods -q)\" ]"
check "the pod's berth-shim exited after rmp" bash -c "for i in \$(seq 50); do pgrep -f '[b]erth-shim --dir $WORK' >/dev/null || exit 0; sleep 0.1; done; exit 1"
check "berthd exits 0 on SIGTERM" bash -c "kill -TERM $PID; for i in \$(seq 100); do kill -0 $PID 2>/dev/null || exit 0; sleep 0.1; done; exit 1"
rc=0; wait "$PID" || rc=$?; PID=
check "berthd exit status was 0 (got $rc)" test "$rc" = 0

echo "crictl: $PASS passed, $FAIL failed"
[ "$FAIL" = 0 ]
