#!/usr/bin/env bash
# critest (the CRI validation suite) against berthd, the way containerd is
# run in hack/testbed/containerd.sh: an isolated berthd with its own socket,
# folders, bridge and subnet, the test bed's registry as the mirror of the
# public registries critest pulls from, and no image flag tricks. Skips only
# the one spec that cannot pass offline ('digest': its image is pinned by a
# digest upstream and cannot be rebuilt here). Everything is removed at exit.
# Prints "critest: N passed, M failed, K skipped"; log in
# _output/log/critest-berthd.log. Extra arguments go to critest.
LOG_TAG=critest-berthd
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/testbed/mirrors.sh"
. "$(dirname "$0")/testbed/berthd-config.sh"
cd "$BERTH_ROOT"
need_root
[ -x "$BIN/critest" ] || die "no critest in $BIN: hack/testbed.sh tools up"
[ -x "$BIN/berthd" ] || die "no berthd in $BIN: hack/build.sh"

WORK=$(mktemp -d /tmp/berth-critest.XXXXXX)
# Root in a user-namespace pod is nobody to the host and must walk to the
# bundles below (as with containerd's 0711 state folders); berthd refuses
# such pods with a folder it cannot search above its own.
chmod 0711 "$WORK"
BRIDGE=bct$((RANDOM % 10000))
SUBNET=10.205.$((RANDOM % 200 + 20))
SOCK=$WORK/berthd.sock
PID=
cleanup() {
    set +e   # best effort: one step finding nothing must not skip the rest
    if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null; then
        for p in $("$BIN/crictl" --runtime-endpoint "unix://$SOCK" pods -q 2>/dev/null); do
            "$BIN/crictl" --runtime-endpoint "unix://$SOCK" rmp -f "$p" >/dev/null 2>&1 || true
        done
        kill -TERM "$PID" 2>/dev/null || true
        wait "$PID" 2>/dev/null || true
    fi
    # Shims this run started (their command lines name $WORK), by PID.
    for p in $(pgrep -f "[b]erth-shim --dir $WORK" || true); do kill -KILL "$p" 2>/dev/null || true; done
    # critest's own propagation test folders (/tmp/test<pod id>...) stay
    # mounted when a spec fails half way.
    findmnt -rn -o TARGET | grep -E '^/tmp/test[0-9a-f]{64}' | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
    grep " $WORK" /proc/mounts | awk '{print $2}' | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
    ip link del "$BRIDGE" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

mkdir -p "$LOGDIR"
write_berthd_config "$WORK" berth-critest "$BRIDGE" "$SUBNET" false
"$BIN/berthd" --config "$WORK/berthd.toml" 2>"$LOGDIR/critest-berthd-daemon.log" &
PID=$!
wait_for 10 "berthd socket" test -S "$SOCK"

logf=$LOGDIR/critest-berthd.log
log "critest against berthd; log: $logf"
rc=0
"$BIN/critest" --runtime-endpoint "unix://$SOCK" --image-endpoint "unix://$SOCK" \
    --ginkgo.skip='digest' --ginkgo.no-color --ginkgo.v "$@" >"$logf" 2>&1 || rc=$?
sed -n 's/.*-- \([0-9][0-9]*\) Passed | \([0-9][0-9]*\) Failed | [0-9]* Pending | \([0-9][0-9]*\) Skipped.*/critest: \1 passed, \2 failed, \3 skipped/p' "$logf" | tail -1
exit $rc
