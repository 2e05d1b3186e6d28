#!/usr/bin/env bash
# kubelet benchmark: berth-kubelet vs upstream's kubelet (the test bed's,
# built from the pinned k8s.io/kubernetes), in the same run, each joined to
# the test bed's control plane and each on its own isolated berthd (same
# binaries, same image present), driven through the API by
# hack/pod-latency.py (one long-lived client: one connection for the
# creates, one watch for the Running updates, so no client start-up or poll
# interval is in the figures).
# Measures, per kubelet:
#
#   1. pod creation (the POST) to phase Running in the API (the watch event), one pod
#      after another (the earlier ones keep running), median and p99 over N;
#   2. the wall time until a batch of B pods created at once are all Running;
#   3. the kubelet's RSS with no pod and with the batch running, and its CPU
#      (user + system, % of one core) over 20 s with the batch running;
#   4. the floor of (1) that no kubelet can go under on this runtime and
#      API server: berthd's own time for the pod's RunPodSandbox,
#      CreateContainer and StartContainer (means over the N pods, from
#      berthd's metrics endpoint), plus two API hops (the pod's creation
#      reaching a watch, then its status update doing the same; each taken
#      as the median POST -> watch event of the N creates);
#
# and prints a table with the ratios berth/upstream and a verdict against
# issue 7's targets (p50 <= 1/2, batch faster, RSS at B pods <= 1/3); each
# kubelet's own share of (1) is its p50 less its floor.
#
#   sudo hack/bench-kubelet.sh [--pods N] [--batch B]   (defaults 30, 100)
#   BENCH_KEEP_LOGS=1 keeps each kubelet's and berthd's log under
#   _output/bench-kubelet/<run>/ (BERTH_LOG=berth_kubelet=debug for detail)
#
# The control plane is the test bed's (hack/testbed/controlplane.sh): started
# here when it does not run, and stopped at exit only then. Pods run busybox
# `sleep`; everything this script makes (namespaces, nodes, berthd folders,
# bridges) is removed at exit.
LOG_TAG=bench-kubelet
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/testbed/mirrors.sh"
. "$(dirname "$0")/testbed/berthd-config.sh"
cd "$BERTH_ROOT"

N=30 B=100
while [ $# -gt 0 ]; do
    case $1 in
        --pods) N=$2; shift 2 ;;
        --batch) B=$2; shift 2 ;;
        -h|--help) sed -n '2,34p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument $1 (usage: $0 [--pods N] [--batch B])" ;;
    esac
done
for v in N B; do [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer"; done
[ "$B" -le 105 ] || die "--batch $B: at most 105 (maxPods is 110 per node)"
need_root
REG=127.0.0.1:5000
IMAGE=$REG/library/busybox:latest
curl -fsS -o /dev/null "http://$REG/v2/" || die "the test bed's registry ($REG) is not up: run hack/testbed.sh up"
for b in berth-kubelet berthd berth-shim berth-runc kubelet kubectl crictl; do
    [ -x "$BIN/$b" ] || die "no $BIN/$b: run hack/build.sh and hack/testbed.sh tools up"
done

CP=hack/testbed/controlplane.sh
STARTED_CP=0
if ! bash $CP status >/dev/null 2>&1; then
    log "starting the test bed's control plane"
    bash $CP up >/dev/null
    STARTED_CP=1
fi
eval "$(bash $CP env)"
K=("$BIN/kubectl" --kubeconfig "$BERTH_KUBECONFIG")
RUNID=$$
RES=$(mktemp -d /tmp/bkl-res.XXXXXX)
WORKS=()
NODES=()
PIDS=() KPIDS=()

cleanup() {
    set +e
    for n in "${NODES[@]}"; do
        "${K[@]}" delete ns "bench-$n" --wait=false >/dev/null 2>&1
    done
    # The kubelets first, then their pods through the berthds still
    # running (killing a berthd first would orphan its monitors), then the
    # berthds.
    for p in "${KPIDS[@]}"; do kill "$p" 2>/dev/null; done
    sleep 1
    for w in "${WORKS[@]}"; do
        [ -S "$w/berthd.sock" ] && "$BIN/crictl" --runtime-endpoint "unix://$w/berthd.sock" rmp -fa >/dev/null 2>&1
    done
    for p in "${KPIDS[@]}" "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    sleep 1
    for p in "${KPIDS[@]}" "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
    for n in "${NODES[@]}"; do
        "${K[@]}" delete node "$n" --ignore-not-found >/dev/null 2>&1
        "${K[@]}" -n kube-node-lease delete lease "$n" --ignore-not-found >/dev/null 2>&1
    done
    for w in "${WORKS[@]}"; do
        # BENCH_KEEP_LOGS=1: the kubelets' and berthds' logs survive the run.
        if [ -n "${BENCH_KEEP_LOGS:-}" ]; then
            mkdir -p "$OUT/bench-kubelet/$RUNID/${w##*/}"
            cp "$w"/*.log "$OUT/bench-kubelet/$RUNID/${w##*/}/" 2>/dev/null
            log "logs kept in $OUT/bench-kubelet/$RUNID/${w##*/}/"
        fi
        ip link del "$(cat "$w/bridge")" 2>/dev/null
        grep -o " $w[^ ]*" /proc/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null
        rm -rf "$w"
    done
    rm -rf "$RES"
    [ $STARTED_CP = 1 ] && bash $CP down >/dev/null
}
trap cleanup EXIT

rss_mb() { awk '/VmRSS/ {printf "%.1f", $2/1024}' "/proc/$1/status"; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# lat ARGS...: hack/pod-latency.py against this run's API server.
lat() { KUBECTL=$BIN/kubectl python3 hack/pod-latency.py --kubeconfig "$BERTH_KUBECONFIG" --image "$IMAGE" "$@"; }

# bench KIND INDEX: one kubelet's run; results in $RES/KIND.*
bench() {
    local kind=$1 idx=$2 node w kc pid kpid t0 t1 i metrics
    node="bench-$kind-$RUNID"
    w=$(mktemp -d /tmp/bkl.XXXXXX)
    WORKS+=("$w")
    NODES+=("$node")
    echo "bkl$((RUNID % 1000))$idx" >"$w/bridge"
    write_berthd_config "$w" "bkl-$kind-$RUNID" "$(cat "$w/bridge")" "10.233.$((RUNID % 200 + idx))" false
    echo 'metrics_address = "127.0.0.1:0"' >>"$w/berthd.toml"
    "$BIN/berthd" --config "$w/berthd.toml" >"$w/berthd.log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    wait_for 30 "berthd socket" test -S "$w/berthd.sock"
    metrics=$(sed 's/\x1b\[[0-9;]*m//g' "$w/berthd.log" | grep -o 'metrics endpoint listening address=[0-9.:]*' | head -n1)
    metrics=${metrics##*=}
    [ -n "$metrics" ] || die "$kind: berthd did not say where its metrics endpoint listens (log $w/berthd.log)"
    kc=$(bash $CP kubeconfig-node "$node")
    if [ "$kind" = berth ]; then
        cat >"$w/kubelet.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
podLogsDir: $w/logs
# As upstream's below: no pod cgroups, so both do the same work.
cgroupsPerQOS: false
YAML
        "$BIN/berth-kubelet" --kubeconfig "$kc" --hostname-override "$node" --config "$w/kubelet.yaml" \
            --root-dir "$w/kubelet" --container-runtime-endpoint "unix://$w/berthd.sock" >"$w/kubelet.log" 2>&1 &
    else
        cat >"$w/kubelet.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
failSwapOn: false
cgroupDriver: cgroupfs
cgroupsPerQOS: false
enforceNodeAllocatable: []
authentication: {anonymous: {enabled: true}, webhook: {enabled: false}}
authorization: {mode: AlwaysAllow}
port: $((11250 + idx))
readOnlyPort: 0
healthzPort: 0
containerRuntimeEndpoint: unix://$w/berthd.sock
podLogsDir: $w/logs
serializeImagePulls: false
localStorageCapacityIsolation: false
YAML
        "$BIN/kubelet" --kubeconfig "$kc" --hostname-override "$node" --config "$w/kubelet.yaml" \
            --root-dir "$w/kubelet" --cert-dir "$w/pki" >"$w/kubelet.log" 2>&1 &
    fi
    kpid=$!
    KPIDS+=("$kpid")
    wait_for 120 "node $node registered" "${K[@]}" get node "$node"
    "${K[@]}" wait --for=condition=Ready "node/$node" --timeout=180s >/dev/null \
        || die "$kind: node $node not Ready (log $w/kubelet.log)"
    "${K[@]}" create ns "bench-$node" >/dev/null
    "${K[@]}" -n "bench-$node" create serviceaccount default >/dev/null 2>&1 || true
    sleep 10
    rss_mb "$kpid" >"$RES/$kind.rss0"
    # Warm up: the image into this berthd, the first sandbox.
    lat --namespace "bench-$node" --node "$node" --prefix warm --label set=warm --sequential 1 >/dev/null \
        || die "$kind: the warm-up pod did not run (log $w/kubelet.log)"
    "${K[@]}" -n "bench-$node" delete pod warm1 --wait=true >/dev/null
    log "$kind: $N pods one after another"
    curl -fsS "http://$metrics/metrics" >"$RES/$kind.metrics0" || die "$kind: berthd's metrics at $metrics"
    lat --namespace "bench-$node" --node "$node" --prefix s --label set=seq \
        --sequential "$N" >"$RES/$kind.seq" || die "$kind: the pods one after another did not all run"
    curl -fsS "http://$metrics/metrics" >"$RES/$kind.metrics1" || die "$kind: berthd's metrics at $metrics"
    "${K[@]}" -n "bench-$node" delete pods -l set=seq --wait=true --timeout=300s >/dev/null
    log "$kind: a batch of $B pods"
    lat --namespace "bench-$node" --node "$node" --prefix b --label set=batch \
        --batch "$B" >"$RES/$kind.batch" || die "$kind: the batch did not run"
    sleep 5
    rss_mb "$kpid" >"$RES/$kind.rssB"
    t0=$(cpu_ticks "$kpid")
    sleep 20
    t1=$(cpu_ticks "$kpid")
    echo "$t0 $t1 $(getconf CLK_TCK)" | awk '{printf "%.1f", ($2-$1)/$3/20*100}' >"$RES/$kind.cpuB"
    # The pods first, by this kubelet (no namespace controller runs unless
    # the control plane was started with --full).
    "${K[@]}" -n "bench-$node" delete pods --all --wait=true --timeout=600s >/dev/null
    "${K[@]}" delete ns "bench-$node" --wait=false >/dev/null
}

bench berth 1
bench upstream 2

python3 - "$RES" "$N" "$B" <<'PY'
import sys, statistics
res, n, b = sys.argv[1], sys.argv[2], sys.argv[3]
def read(k, f):
    return open(f"{res}/{k}.{f}").read().split()
def call_sums(k, f):
    # berth_cri_request_duration_seconds_{sum,count}{method="M"} V
    out = {}
    for line in open(f"{res}/{k}.{f}"):
        for part in ("sum", "count"):
            head = f"berth_cri_request_duration_seconds_{part}{{method=\""
            if line.startswith(head):
                method, value = line[len(head):].split("\"}")
                out[(method, part)] = float(value)
    return out
def runtime_ms(k):
    # berthd's mean time per call over the pods one after another, summed
    # over the three calls every pod start needs.
    m0, m1 = call_sums(k, "metrics0"), call_sums(k, "metrics1")
    total = 0.0
    for method in ("RunPodSandbox", "CreateContainer", "StartContainer"):
        n = m1.get((method, "count"), 0) - m0.get((method, "count"), 0)
        if n <= 0:
            sys.exit(f"bench-kubelet: {k}: no {method} call in berthd's metrics over the run")
        total += (m1[(method, "sum")] - m0.get((method, "sum"), 0)) / n * 1000
    return total
def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]
rows = []
v = {}
for k in ("berth", "upstream"):
    lines = [l.split() for l in open(f"{res}/{k}.seq") if l.strip()]
    seq = [int(l[0]) for l in lines]
    hop = statistics.median(float(l[1]) for l in lines)
    rt = runtime_ms(k)
    v[k] = {
        "p50": statistics.median(seq), "p99": pct(seq, 99),
        "runtime": rt, "api": 2 * hop, "floor": rt + 2 * hop,
        "own": statistics.median(seq) - rt - 2 * hop,
        "batch": int(read(k, "batch")[0]) / 1000,
        "rss0": float(read(k, "rss0")[0]), "rssB": float(read(k, "rssB")[0]),
        "cpuB": float(read(k, "cpuB")[0]),
    }
names = [("p50", f"create->Running p50 (ms, {n} pods)"), ("p99", "create->Running p99 (ms)"),
         ("batch", f"{b}-pod batch -> all Running (s)"), ("rss0", "kubelet RSS, 0 pods (MB)"),
         ("rssB", f"kubelet RSS, {b} pods (MB)"), ("cpuB", f"kubelet CPU, {b} pods (% core)"),
         ("runtime", "berthd's time per pod (ms)"), ("api", "API hops per pod (ms)"),
         ("floor", "floor: berthd + API (ms)"), ("own", "kubelet's own: p50 - floor (ms)")]
print(f"{'metric':<36} {'berth-kubelet':>14} {'kubelet':>10} {'ratio':>7}")
for key, label in names:
    a, u = v["berth"][key], v["upstream"][key]
    r = a / u if u else float("nan")
    print(f"{label:<36} {a:>14.1f} {u:>10.1f} {r:>7.2f}")
ok = lambda c: "met" if c else "NOT met"
print(f"target p50 <= 1/2 of upstream's: {ok(v['berth']['p50'] <= v['upstream']['p50'] / 2)}")
if v["berth"]["floor"] > v["upstream"]["p50"] / 2:
    print(f"  (out of reach in this run: the floor alone, {v['berth']['floor']:.1f} ms, is over half"
          f" of upstream's p50, {v['upstream']['p50'] / 2:.1f} ms)")
print(f"target batch faster than upstream's: {ok(v['berth']['batch'] < v['upstream']['batch'])}")
print(f"target RSS at {b} pods <= 1/3 of upstream's: {ok(v['berth']['rssB'] <= v['upstream']['rssB'] / 3)}")
PY
