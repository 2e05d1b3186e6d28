#!/usr/bin/env bash
# crictl against berthd, as a user would use it: version, info, pull (a
# local registry name and a registry.k8s.io name through the test bed's
# mirror), images, inspecti, imagefsinfo, runp, pods, inspectp, create,
# metricdescs, metricsp,
# start, ps, inspect, logs, exec -s, attach -i, stop, rm, stopp, rmp, rmi, and a pod
# with the shared PID namespace (pause is PID 1). Runs an isolated berthd
# with its own socket, folders, bridge, subnet, cgroup parent and mirror
# configuration; everything (containers, mounts, cgroups too) is removed at
# exit, also on failure. Prints one line per check and
# "crictl: N passed, M failed".
LOG_TAG=crictl
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/testbed/mirrors.sh"
. "$(dirname "$0")/testbed/berthd-config.sh"
cd "$BERTH_ROOT"
need_root
[ -x "$BIN/crictl" ] || die "no crictl in $BIN: hack/testbed.sh tools up"
[ -x "$BIN/berthd" ] || die "no berthd in $BIN: hack/build.sh"

WORK=$(mktemp -d /tmp/berth-crictl.XXXXXX)
BRIDGE=bcr$((RANDOM % 10000))
SUBNET=10.203.$((RANDOM % 200 + 20))
SOCK=$WORK/berthd.sock
CGROUP=/${WORK##*/}
LOCAL_IMAGE=127.0.0.1:5000/library/busybox:latest
MIRROR_IMAGE=registry.k8s.io/e2e-test-images/busybox:1.29-2
PID=
cleanup() {
    set +e   # best effort: one step finding nothing must not skip the rest
    if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null; then
        for c in $(crictl_ ps -aq 2>/dev/null); do crictl_ rm -f "$c" >/dev/null 2>&1 || true; done
        for p in $(crictl_ pods -q 2>/dev/null); do crictl_ rmp -f "$p" >/dev/null 2>&1 || true; done
        kill -TERM "$PID" 2>/dev/null || true
        wait "$PID" 2>/dev/null || true
    fi
    # Shims this run started (their command lines name $WORK), by PID.
    for p in $(pgrep -f "[b]erth-shim --dir $WORK" || true); do kill -KILL "$p" 2>/dev/null || true; done
    # Container processes left when berthd could not stop them (it died):
    # everything in this run's own cgroup parent, then the cgroups.
    for d in $(find /sys/fs/cgroup -maxdepth 2 -type d -name "${CGROUP#/}" 2>/dev/null); do
        for p in $(cat $(find "$d" -name cgroup.procs) 2>/dev/null); do kill -KILL "$p" 2>/dev/null || true; done
    done
    sleep 0.2
    for d in $(find /sys/fs/cgroup -maxdepth 2 -type d -name "${CGROUP#/}" 2>/dev/null); do
        find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null || true
    done
    # Container root filesystems, namespace files: deepest first.
    grep " $WORK" /proc/mounts | awk '{print $2}' | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
    ip link del "$BRIDGE" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

# A crictl.yaml of its own: no warning about a missing /etc/crictl.yaml, and
# stderr stays free for the real error when a check fails.
cat >"$WORK/crictl.yaml" <<YAML
runtime-endpoint: unix://$SOCK
image-endpoint: unix://$SOCK
timeout: 30
YAML
cr() { "$BIN/crictl" --config "$WORK/crictl.yaml" "$@"; }
crictl_() { cr "$@" 2>/dev/null; }

mkdir -p "$WORK/logs"
write_berthd_config "$WORK" berth-crictl "$BRIDGE" "$SUBNET" false
echo "cgroup_parent = \"$CGROUP\"" >>"$WORK/berthd.toml"
"$BIN/berthd" --config "$WORK/berthd.toml" 2>"$WORK/berthd.log" &
PID=$!
wait_for 10 "berthd socket" test -S "$SOCK"

PASS=0; FAIL=0
check() {
    local what=$1; shift
    if out=$("$@" 2>&1); then PASS=$((PASS + 1)); echo "ok    $what"
    else FAIL=$((FAIL + 1)); echo "FAIL  $what"; printf '%s\n' "$out" | tail -3 | sed 's/^/      /'; fi
}
# t CODE: CODE, run in the check's subshell (sees this script's functions
# and variables).
t() { eval "$1"; }
# jqe FILTER CRICTL-ARGS...: crictl's JSON output satisfies FILTER.
jqe() { local f=$1; shift; cr "$@" | jq -e "$f" >/dev/null; }
# image_listed REF: `crictl images` lists REF (repository and tag columns).
image_listed() { cr images | awk -v r="${1%:*}" -v t="${1##*:}" '$1 == r && $2 == t { f = 1 } END { exit !f }'; }
shims_gone() {
    for _ in $(seq 50); do pgrep -f "[b]erth-shim --dir $WORK" >/dev/null || return 0; sleep 0.1; done
    pgrep -af "[b]erth-shim --dir $WORK"; return 1
}

# --- runtime and images -------------------------------------------------------
check "crictl version names the runtime berth" t 'cr version | grep "RuntimeName:  berth" >/dev/null'
check "crictl info reports RuntimeReady and NetworkReady" \
    jqe '[.status.conditions[] | select(.status)] | length == 2' info
check "crictl pull $LOCAL_IMAGE" cr pull "$LOCAL_IMAGE"
check "crictl images lists $LOCAL_IMAGE" image_listed "$LOCAL_IMAGE"
check "crictl pull $MIRROR_IMAGE (through the mirror)" cr pull "$MIRROR_IMAGE"
check "crictl images lists $MIRROR_IMAGE" image_listed "$MIRROR_IMAGE"
check "crictl inspecti $LOCAL_IMAGE names its tag" \
    jqe ".status.repoTags | index(\"$LOCAL_IMAGE\") != null" inspecti "$LOCAL_IMAGE"
check "crictl imagefsinfo shows used bytes > 0" \
    jqe '.status.imageFilesystems[0].usedBytes.value | tonumber > 0' imagefsinfo

# --- a pod with its own PID namespace per container ---------------------------
cat >"$WORK/pod.json" <<JSON
{"metadata":{"name":"crictl-pod","namespace":"default","uid":"crictl-uid","attempt":0},
 "hostname":"crictl-host","log_directory":"$WORK/logs",
 "labels":{"app":"crictl"},
 "port_mappings":[{"protocol":0,"container_port":80,"host_port":$((30000 + RANDOM % 1000))}],
 "linux":{"security_context":{"namespace_options":{"pid":1}}}}
JSON
cat >"$WORK/ctr.json" <<JSON
{"metadata":{"name":"crictl-ctr","attempt":0},
 "image":{"image":"$LOCAL_IMAGE"},
 "command":["sh","-c","echo hello-crictl; sleep 300"],
 "labels":{"app":"crictl-ctr"},
 "log_path":"crictl-ctr.log",
 "linux":{"security_context":{"namespace_options":{"pid":1}}}}
JSON

POD=$(crictl_ runp "$WORK/pod.json" || true)
check "crictl runp returns a sandbox id" test "${#POD}" = 64
check "crictl pods lists it as Ready" \
    jqe '.items[0].state == "SANDBOX_READY"' pods --label app=crictl -o json
IP=$(crictl_ inspectp "$POD" | jq -r .status.network.ip)
check "crictl inspectp shows a pod IP from the CNI subnet ($IP)" t '[[ $IP == $SUBNET.* ]]'
check "the pod IP answers ping from the host" busybox ping -c1 -W2 "$IP"
check "crictl runp of the same pod again returns the same id" t '[ "$(cr runp "$WORK/pod.json")" = "$POD" ]'

# crictl events, running through the create and start below.
cr events --output json >"$WORK/events.json" 2>"$WORK/events.err" &
EVENTS=$!
sleep 0.5
CTR=$(crictl_ create "$POD" "$WORK/ctr.json" "$WORK/pod.json" || true)
check "crictl create returns a container id" test "${#CTR}" = 64
check "crictl ps -a lists it as Created" \
    jqe ".containers[] | select(.id == \"$CTR\") | .state == \"CONTAINER_CREATED\"" ps -a -o json
check "crictl start" cr start "$CTR"
sleep 0.5
kill "$EVENTS" 2>/dev/null || true; wait "$EVENTS" 2>/dev/null || true
check "crictl events streamed the container's CREATED and STARTED events" \
    t 'cat "$WORK/events.err"; jq -s -e --arg id "$CTR" "[.[] | select(.containerId == \$id) | .containerEventType] == [\"CONTAINER_CREATED_EVENT\", \"CONTAINER_STARTED_EVENT\"]" "$WORK/events.json"'
check "crictl ps shows it Running" t 'out=$(cr ps --id "$CTR"); echo "$out"; grep -q "^${CTR:0:13} .* Running " <<<"$out"'
check "crictl metricdescs describes the cAdvisor set (container_memory_working_set_bytes)" \
    jqe '[.descriptors[].name] | index("container_memory_working_set_bytes") != null' metricdescs -o json
check "crictl metricsp reports the running container's working set > 0" \
    jqe ".podMetrics[] | select(.podSandboxId == \"$POD\") | .containerMetrics[] | select(.containerId == \"$CTR\")
         | .metrics[] | select(.name == \"container_memory_working_set_bytes\") | .value.value | tonumber > 0" metricsp -o json
check "crictl logs prints hello-crictl" \
    t 'for i in $(seq 50); do cr logs "$CTR" | grep -x hello-crictl >/dev/null && exit 0; sleep 0.1; done; cr logs "$CTR"; exit 1'
check "crictl exec -s <ctr> echo x prints x" t '[ "$(cr exec -s --timeout 10 "$CTR" echo x)" = x ]'
# crictl 1.36 reports a non-zero exit code of exec -s in its error text
# ("command '...' exited with 3") and exits 1 itself; an older crictl exits
# with the code. Either way the code is the one berthd returned.
check "crictl exec -s <ctr> sh -c 'exit 3' exits 3" \
    t 'out=$(cr exec -s --timeout 10 "$CTR" sh -c "exit 3" 2>&1); rc=$?; echo "exit status $rc: $out"
       [ $rc = 3 ] || { [ $rc != 0 ] && grep -q "exited with 3:" <<<"$out"; }'
# busybox sh execs the last command of -c: PID 1 is "sleep 300".
check "crictl exec -s sees the container's own PID namespace (PID 1: sleep 300)" \
    t 'out=$(cr exec -s --timeout 10 "$CTR" cat /proc/1/cmdline | tr "\0" " "); echo "[$out]"; [ "$out" = "sleep 300 " ]'
# attach: a container with stdin (stdin_once) gets what crictl attach -i
# sends, and ends when that input ends; its output comes back.
cat >"$WORK/attach.json" <<JSON
{"metadata":{"name":"crictl-attach","attempt":0},
 "image":{"image":"$LOCAL_IMAGE"},
 "command":["sh","-c","cat; echo attach-done"],
 "stdin":true,"stdin_once":true,
 "log_path":"crictl-attach.log",
 "linux":{"security_context":{"namespace_options":{"pid":1}}}}
JSON
ACTR=$(crictl_ create "$POD" "$WORK/attach.json" "$WORK/pod.json" || true)
check "crictl attach -i <ctr with stdin_once> echoes the input and ends with it" \
    t 'cr start "$ACTR" && out=$(printf "via-attach\n" | timeout 30 "$BIN/crictl" --config "$WORK/crictl.yaml" attach -i "$ACTR" 2>"$WORK/attach.err"); echo "[$out]"; cat "$WORK/attach.err"
       [ "$out" = "$(printf "via-attach\nattach-done")" ]'
check "crictl rm of the attached container" t 'for i in $(seq 50); do cr rm "$ACTR" >/dev/null 2>&1 && exit 0; sleep 0.1; done; exit 1'
check "crictl inspect: CONTAINER_RUNNING, image $LOCAL_IMAGE, its labels" \
    jqe ".status.state == \"CONTAINER_RUNNING\" and .status.image.image == \"$LOCAL_IMAGE\" and .status.labels.app == \"crictl-ctr\"" inspect "$CTR"
check "crictl ps --pod lists it under its pod" t '[ "$(cr ps -q --pod "$POD")" = "$CTR" ]'
check "crictl stop --timeout 2 (PID 1 ignores SIGTERM: killed after 2s)" cr stop --timeout 2 "$CTR"
check "crictl ps -a shows it Exited" t 'out=$(cr ps -a --id "$CTR"); echo "$out"; grep -q "^${CTR:0:13} .* Exited " <<<"$out"'
check "crictl inspect shows CONTAINER_EXITED with exit code 137" \
    jqe '.status.state == "CONTAINER_EXITED" and .status.exitCode == 137' inspect "$CTR"
check "crictl ps (running only) no longer lists it" t 'out=$(cr ps -q --id "$CTR") && [ -z "$out" ]'
check "crictl rm" cr rm "$CTR"
check "crictl ps -a no longer lists it" t 'out=$(cr ps -aq) && [ -z "$out" ]'
check "crictl stopp" cr stopp "$POD"
check "crictl inspectp shows NotReady after stopp" \
    jqe '.status.state == "SANDBOX_NOTREADY"' inspectp "$POD"
check "a berth-shim monitors the pod" t 'pgrep -f "[b]erth-shim --dir $WORK" >/dev/null'
check "crictl rmp" cr rmp "$POD"
check "crictl pods is empty after rmp" t 'out=$(cr pods -q) && [ -z "$out" ]'
check "the pod's berth-shim exited after rmp" shims_gone

# --- a pod with the default, shared PID namespace: pause is PID 1 -------------
cat >"$WORK/pod2.json" <<JSON
{"metadata":{"name":"crictl-shared","namespace":"default","uid":"crictl-shared-uid","attempt":0},
 "hostname":"crictl-shared","log_directory":"$WORK/logs","labels":{"app":"crictl-shared"}}
JSON
cat >"$WORK/ctr2.json" <<JSON
{"metadata":{"name":"crictl-shared-ctr","attempt":0},
 "image":{"image":"$MIRROR_IMAGE"},
 "command":["sleep","300"],
 "log_path":"crictl-shared-ctr.log"}
JSON
POD2=$(crictl_ runp "$WORK/pod2.json" || true)
check "crictl runp of a pod with the shared PID namespace" test "${#POD2}" = 64
CTR2=$(crictl_ create "$POD2" "$WORK/ctr2.json" "$WORK/pod2.json" || true)
check "crictl create + start of $MIRROR_IMAGE in it" t '[ ${#CTR2} = 64 ] && cr start "$CTR2"'
check "crictl exec -s <ctr> cat /proc/1/cmdline shows /pause" \
    t 'out=$(cr exec -s --timeout 10 "$CTR2" cat /proc/1/cmdline | tr "\0" " "); echo "$out"; [[ $out == /pause* ]]'
check "crictl exec -s <ctr> finds its sleep in the pod's PID namespace" \
    t 'cr exec -s --timeout 10 "$CTR2" pgrep -x sleep'
check "crictl rmp -f removes the running pod and its container" \
    t 'cr rmp -f "$POD2" && out=$(cr ps -aq) && [ -z "$out" ] && out=$(cr pods -q) && [ -z "$out" ]'

# --- images away --------------------------------------------------------------
check "crictl rmi $LOCAL_IMAGE" cr rmi "$LOCAL_IMAGE"
check "crictl images no longer lists $LOCAL_IMAGE" t '! image_listed "$LOCAL_IMAGE"'
check "crictl rmi $MIRROR_IMAGE" cr rmi "$MIRROR_IMAGE"
check "crictl images no longer lists $MIRROR_IMAGE" t '! image_listed "$MIRROR_IMAGE"'
check "the pods' berth-shims exited" shims_gone

check "berthd exits 0 on SIGTERM" t 'kill -TERM $PID; for i in $(seq 100); do kill -0 $PID 2>/dev/null || exit 0; sleep 0.1; done; exit 1'
rc=0; wait "$PID" || rc=$?; PID=
check "berthd exit status was 0 (got $rc)" test "$rc" = 0

echo "crictl: $PASS passed, $FAIL failed"
[ "$FAIL" = 0 ]
