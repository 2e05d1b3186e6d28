#!/usr/bin/env bash
# Set up what is missing, build, and run every test tier; print a summary.
#
#   sudo hack/test.sh            all tiers (lint, unit, integration, peer suites,
#                                the runtime's integration tests in a cgroup v2 VM)
#   sudo hack/test.sh --quick    skip the peer suites, the Go-built peer tools and the VM
#   sudo hack/test.sh --vm       also run the peer suites in the cgroup v2 VM: runtime-tools
#                                with runc and berth-runc, critest against berthd (~35 min)
#   sudo hack/test.sh --vm --only 'vm-*'   set up, then only the tiers whose name
#                                matches the pattern (a shell glob)
#
# A failing tier fails the run; later tiers still run so the summary is whole.
LOG_TAG=test
. "$(dirname "$0")/lib.sh"
cd "$BERTH_ROOT"
need_root

QUICK=0
VM=0
ONLY=
while [ $# -gt 0 ]; do
    a=$1; shift
    case "$a" in
    --quick) QUICK=1 ;;
    --vm) VM=1 ;;
    --only) [ $# -gt 0 ] || die "--only wants a pattern"; ONLY=$1; shift ;;
    -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option $a" ;;
    esac
done

export CARGO_TERM_COLOR=never
ROWS=()          # "tier|result|passed|failed|seconds|note"
TOTAL_PASS=0
TOTAL_FAIL=0
FAILED=0

# cargo_counts FILE: sum the "test result:" lines of a cargo test log.
cargo_counts() {
    awk '/^test result:/ { for (i=1;i<=NF;i++) { if ($(i+1) ~ /^passed/) p+=$i; if ($(i+1) ~ /^failed/) f+=$i } }
         END { printf "%d %d\n", p, f }' "$1"
}

# wanted NAME: whether --only selects tier NAME (the set-up tiers always run).
wanted() {
    [ -z "$ONLY" ] || [ "$1" = setup ] || [ "$1" = tools ] && return 0
    # shellcheck disable=SC2254  # a pattern on purpose
    case "$1" in $ONLY) return 0 ;; *) return 1 ;; esac
}

# tier NAME NOTE CMD...: run CMD, log to _output/test/NAME.log, record a row.
# CMD may print "<suite>: N passed, M failed" lines; else cargo's counts are used.
tier() {
    local name=$1 note=$2; shift 2
    local logf="$OUT/test/$name.log" start rc p f
    wanted "$name" || return 0
    mkdir -p "$OUT/test"
    log "tier $name: $*"
    start=$(date +%s)
    set +e
    "$@" 2>&1 | tee "$logf"
    rc=${PIPESTATUS[0]}
    set -e
    read -r p f < <(cargo_counts "$logf")
    if [ "$p" = 0 ] && [ "$f" = 0 ]; then
        # "<suite>: N passed, M failed[, K skipped][ (note)]"
        read -r p f < <(awk '/^[a-z0-9 _-]+: [0-9]+ passed, [0-9]+ failed/ {
            for (i=2;i<NF;i++) { if ($(i+1) ~ /^passed/) p+=$i; if ($(i+1) ~ /^failed/) f+=$i } }
            END { printf "%d %d\n", p, f }' "$logf")
    fi
    # Only our own tests count in the totals; a peer suite's raw counts show
    # in its row, and its result is the comparison its script makes.
    if [ "${SUITE:-0}" = 0 ]; then TOTAL_PASS=$((TOTAL_PASS + p)); TOTAL_FAIL=$((TOTAL_FAIL + f)); fi
    local result=ok
    if [ "$rc" != 0 ]; then result=FAIL; FAILED=1; fi
    ROWS+=("$name|$result|$p|$f|$(( $(date +%s) - start ))|$note")
}

skip_row() { ROWS+=("$1|skipped|-|-|0|$2"); }

# parity NAME NOTE SUITE REF_TIER REF_NAME OUR_TIER OUR_NAME: a reported row,
# "ours passes at least as many of SUITE's points as the reference", read
# from the "<SUITE>: N passed" lines the two tiers logged in this run.
parity() {
    local name=$1 note=$2
    SUITE=1 tier "$name" "$note" bash -c '
        n() { grep -ho "^$1: [0-9]* passed" "$2" 2>/dev/null | tail -1 | grep -o "[0-9]*" || true; }
        r=$(n "$1" "$0/$2.log"); b=$(n "$1" "$0/$4.log")
        echo "$3 ${r:-?} passed, $5 ${b:-?} passed"
        if [ -n "$r" ] && [ -n "$b" ] && [ "$b" -ge "$r" ]; then echo "parity: 1 passed, 0 failed"
        else echo "parity: 0 passed, 1 failed ($5 below $3)"; fi' "$OUT/test" "${@:3}"
}

T0=$(date +%s)
# --- set up -------------------------------------------------------------------
tier setup "packages, registries, test images" bash -c '
    set -e
    bash hack/testbed/deps.sh up
    bash hack/build.sh
    bash hack/testbed/registry.sh up
    bash hack/testbed/images.sh up'
if [ $QUICK = 0 ]; then
    tier tools "Go-built peer tools" bash hack/testbed/tools.sh up
else
    # The integration tests drive crictl too; --quick builds it alone.
    tier tools "crictl only (--quick)" bash hack/testbed/tools.sh crictl
fi
eval "$(bash hack/testbed.sh env)"

# --- tiers --------------------------------------------------------------------
# The fuzz targets (their own workspace, built by cargo-fuzz on nightly)
# are type-checked here on stable, so an API change cannot leave one broken.
tier lint "rustfmt + clippy -D warnings + fuzz targets checked" bash -c 'cargo fmt --all --check && cargo clippy --workspace --all-targets -- -D warnings && cargo check --manifest-path fuzz/Cargo.toml --bins --target-dir target/fuzz-check'
# --no-fail-fast: one failing test binary must not hide the others' results.
tier unit "inline unit tests, no root needed" cargo test --release --no-fail-fast --workspace --lib --bins
tier integration "real namespaces, registries, CNI (root)" cargo test --release --no-fail-fast --workspace --test '*'
BERTH_SHIM_TEST_RUNTIME=$BIN/berth-runc BERTH_SHIM_BIN=$BIN/berth-shim \
    tier shim-berth-runc "the installed (lean, static) berth-shim driving berth-runc instead of runc" cargo test --release -p berth-cri --test shim

if [ $QUICK = 0 ]; then
    tier testbed "registries, images, peer tools, containerd, control plane" bash hack/check-testbed.sh
    tier crictl-berthd "crictl against berthd: pods, containers, logs, exec, images, mirror pull" bash hack/crictl-berthd.sh
    if [ -x hack/runtime-tools.sh ] && [ -d "$BIN/runtime-tools" ]; then
        SUITE=1 tier runtime-tools-runc "OCI validation suite, runc (reference)" bash hack/runtime-tools.sh /usr/sbin/runc
        SUITE=1 tier runtime-tools-berth "OCI validation suite, berth-runc" bash hack/runtime-tools.sh "$BIN/berth-runc"
        # Issue 3's acceptance: berth-runc passes at least as many points as
        # runc, on the same machine in the same run. Reported, not gating, while
        # issue 3 is open: the suite has timing-sensitive programs (killsig,
        # hooks) that flake under load, and the margin is a point or two.
        parity runtime-tools-parity "berth-runc passes >= runc's runtime-tools points (reported)" \
            runtime-tools runtime-tools-runc runc runtime-tools-berth berth-runc
    else
        skip_row runtime-tools "suite not built"
    fi
    # critest, the CRI validation suite: containerd (Debian's 1.6 + runc) as
    # the reference and berthd, same machine, same run, same mirrors. Reported,
    # not gating, while issue 5/6 are open: berthd has no streaming server yet
    # (exec/attach/port-forward specs fail), and berth-runc lacks rshared
    # propagation; each critest run's own failures are in its log.
    SUITE=1 tier critest-containerd "critest against containerd 1.6 + runc (reference)" bash -c \
        'bash hack/testbed/containerd.sh up >/dev/null && bash hack/testbed/containerd.sh critest; exit 0'
    # Issue 3's drop-in proof: containerd's runc shim calling berth-runc in
    # place of runc must pass the specs it passes with runc. containerd is
    # put back on runc afterwards for the tiers that use it.
    SUITE=1 tier critest-containerd-berth-runc "critest against containerd 1.6 + berth-runc as its runc" bash -c '
        bash hack/testbed/containerd.sh down >/dev/null
        BERTH_CONTAINERD_OCI_RUNTIME=$0 bash hack/testbed/containerd.sh up >/dev/null \
            && bash hack/testbed/containerd.sh critest
        bash hack/testbed/containerd.sh down >/dev/null
        bash hack/testbed/containerd.sh up >/dev/null; exit 0' "$BIN/berth-runc"
    parity critest-runc-parity "containerd + berth-runc passes >= containerd + runc's critest specs (reported)" \
        critest critest-containerd containerd+runc critest-containerd-berth-runc containerd+berth-runc
    SUITE=1 tier critest-berthd "critest against berthd + berth-runc" bash -c 'bash hack/critest-berthd.sh; exit 0'
    parity critest-parity "berthd passes >= containerd's critest specs (reported)" \
        critest critest-containerd containerd critest-berthd berthd
    # The streaming specs again with client-go's WebSocket clients (exec and
    # attach on v5.channel.k8s.io, port-forward as SPDY tunnelled in
    # WebSocket); every one must pass.
    SUITE=1 tier critest-berthd-websocket "critest streaming specs over WebSocket against berthd" \
        env BERTH_LOGDIR="$OUT/log/websocket" bash hack/critest-berthd.sh --ginkgo.focus=Streaming \
        --websocket-exec --websocket-attach --websocket-portforward
    # berth-kubelet joined to the test bed's real control plane (etcd,
    # kube-apiserver, kube-controller-manager, kube-scheduler on loopback,
    # started and stopped by this tier): Node, Lease, pods bound to the
    # node, deletions, mirror pods, volumes from the API, events, and the
    # workload scenario (Deployment, scaling, rollout, Job) on berthd and on
    # Debian's containerd.
    tier kubelet-apiserver "berth-kubelet joined to a real kube-apiserver" bash -c '
        bash hack/testbed/containerd.sh up >/dev/null || exit 1
        bash hack/testbed/controlplane.sh up --full >/dev/null || exit 1
        eval "$(bash hack/testbed/controlplane.sh env)"
        cargo test --release --workspace --test apiserver -- --ignored --test-threads=2
        rc=$?
        bash hack/testbed/controlplane.sh down >/dev/null
        exit $rc'
    # cgroup v2 is not this host's layout: the runtime's root tests run again
    # in a v2 VM (hack/vm.sh; the image is built once and cached).
    tier vm-image "VM kernel, initramfs, root image (cached)" bash hack/vm.sh build
    if wanted vm-v2-runtime; then
        mapfile -t RT_BINS < <(cargo test --release -p berth-runtime -p berth-tests --no-run --message-format=json 2>/dev/null \
            | jq -r 'select(.reason == "compiler-artifact" and .executable != null and (.target.kind | index("test")) and (.target.name | startswith("runtime_"))) | .executable')
        tier vm-v2-runtime "berth-runc integration tests, cgroup v2 VM" \
            bash hack/vm.sh run --cgroup v2 --timeout 1800 -- \
            hack/vm/run-tests.sh --timeout 120 "${RT_BINS[@]}"
    fi
    # The systemd cgroup driver, with systemd as the guest's PID 1 (this
    # host has no systemd), on v2 and on the hybrid layout: berth-runc's
    # scopes beside runc's, and berth-kubelet + berthd with pod slices.
    if wanted vm-systemd; then
        SD_BIN=$(cargo test --release -p berth-tests --test runtime_systemd --no-run --message-format=json 2>/dev/null \
            | jq -r 'select(.reason == "compiler-artifact" and .executable != null and .target.name == "runtime_systemd") | .executable')
        SDK_BIN=$(cargo test --release -p berth-kubelet --test security --no-run --message-format=json 2>/dev/null \
            | jq -r 'select(.reason == "compiler-artifact" and .executable != null and .target.name == "security") | .executable')
        SDC_BIN=$(cargo test --release -p berth-cri --test containers --no-run --message-format=json 2>/dev/null \
            | jq -r 'select(.reason == "compiler-artifact" and .executable != null and .target.name == "containers") | .executable')
        for cg in v2 hybrid; do
            tier "vm-systemd-$cg" "systemd cgroup driver (berth-runc, berthd, berth-kubelet), systemd as init, cgroup $cg VM" \
                bash hack/vm.sh run --init systemd --cgroup "$cg" --timeout 1200 -- bash -c \
                'hack/vm/run-tests.sh --timeout 120 --include-ignored "$0"; a=$?
                 hack/vm/run-tests.sh --timeout 300 --include-ignored --only systemd "$1"; b=$?
                 hack/vm/run-tests.sh --timeout 300 --include-ignored --only systemd_driver "$2"; c=$?
                 exit $((a | b | c))' "$SD_BIN" "$SDK_BIN" "$SDC_BIN"
        done
    fi
    # berthd in the v2 VM: an OOM kill reported as OOMKilled, a pod user
    # namespace with its idmapped rootfs on Debian's kernel, live resource
    # updates, the cAdvisor metrics with pressure stall totals (v2 only), a
    # CRIU checkpoint (the guest's Debian kernel lets criu run; this host's not).
    if wanted vm-v2-cri; then
        CRI_BIN=$(cargo test --release --workspace --test containers --no-run --message-format=json 2>/dev/null \
            | jq -r 'select(.reason == "compiler-artifact" and .executable != null and .target.name == "containers") | .executable')
        tier vm-v2-cri "berthd: OOM kill, pod user namespace, resource update, metrics, checkpoint, cgroup v2 VM" \
            bash hack/vm.sh run --cgroup v2 --timeout 1500 -- \
            hack/vm/run-tests.sh --timeout 300 --only oom_killed --only update_container_resources \
            --only pod_sandbox_metrics --only metrics_endpoint --only checkpoint --only user_namespace "$CRI_BIN"
    fi
    # berth-kubelet (standalone, on berthd) in the v2 VM: pod cgroups by QoS
    # with v2's files, and the security contexts.
    if wanted vm-v2-kubelet; then
        KL_BIN=$(cargo test --release --workspace --test security --no-run --message-format=json 2>/dev/null \
            | jq -r 'select(.reason == "compiler-artifact" and .executable != null and .target.name == "security") | .executable')
        tier vm-v2-kubelet "berth-kubelet: pod cgroups by QoS, security contexts, cgroup v2 VM" \
            bash hack/vm.sh run --cgroup v2 --timeout 1500 -- \
            hack/vm/run-tests.sh --timeout 300 "$KL_BIN"
    fi
    # --vm: the peer suites again in the v2 VM, each in its own boot (9-13 min
    # each under TCG on 2 cores). Their detailed results stay in the run
    # folder (_output/vm/results/<run>/) each row's log names.
    if [ $VM = 1 ]; then
        if [ -d "$BIN/runtime-tools" ]; then
            # --overlay: runtime-tools.sh writes its results under _output/.
            for rt in runc:/usr/sbin/runc berth:_output/bin/berth-runc; do
                SUITE=1 tier "vm-v2-runtime-tools-${rt%%:*}" "OCI validation suite, ${rt##*/}, cgroup v2 VM" \
                    bash hack/vm.sh run --cgroup v2 --overlay --timeout 2400 -- bash -c \
                    'hack/runtime-tools.sh "$0"; rc=$?; cp -r "_output/runtime-tools/${0##*/}" "$BERTH_VM_RESULTS/"
                     echo "results: $BERTH_VM_RESULTS/${0##*/}"; exit $rc' "${rt#*:}"
            done
            parity vm-v2-runtime-tools-parity "berth-runc passes >= runc's runtime-tools points, v2 VM (reported)" \
                runtime-tools vm-v2-runtime-tools-runc runc vm-v2-runtime-tools-berth berth-runc
        else
            skip_row vm-v2-runtime-tools "suite not built"
        fi
        # berthd with the CNI plugins, iptables and AppArmor of the image, the
        # test bed's registry forwarded into the guest (hack/vm.sh --forward).
        SUITE=1 tier vm-v2-critest-berthd "critest against berthd + berth-runc, cgroup v2 VM (reported)" \
            bash hack/vm.sh run --cgroup v2 --timeout 3000 -- bash -c \
            'BERTH_LOGDIR=$BERTH_VM_RESULTS hack/critest-berthd.sh; echo "log: $BERTH_VM_RESULTS/critest-berthd.log"; exit 0'
    fi
else
    skip_row peer-suites "--quick"
fi

# --- summary ------------------------------------------------------------------
{
    echo
    echo "berth test summary ($(( $(date +%s) - T0 )) s)"
    printf '%-26s %-8s %7s %7s %6s  %s\n' tier result passed failed secs note
    for r in "${ROWS[@]}"; do
        IFS='|' read -r n res p f s note <<<"$r"
        printf '%-26s %-8s %7s %7s %6s  %s\n' "$n" "$res" "$p" "$f" "$s" "$note"
    done
} | tee "$OUT/test/summary.txt"
echo "summary: $TOTAL_PASS passed, $TOTAL_FAIL failed"
exit $FAILED
