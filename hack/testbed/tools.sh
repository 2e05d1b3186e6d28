#!/usr/bin/env bash
# Peer tools, built with Go from the pinned modules under hack/tools/:
#
#   hack/tools/k8s            kube-apiserver, kube-controller-manager,
#                             kube-scheduler, kubectl, kubelet (k8s.io/kubernetes)
#   hack/tools/etcd           etcd, etcdctl (the etcd that Kubernetes release expects)
#   hack/tools/cri-tools      crictl, critest (`go test -c` of cmd/critest)
#   hack/tools/runtime-tools  OCI runtime-tools validation suite + runtimetest
#
# into $BIN (_output/bin/) and $BIN/runtime-tools/:
#   runtime-tools/runtimetest               in-container checker (static)
#   runtime-tools/validation/<name>.t       one program per validation/<name>
#
#   up      build what is missing or stale (stamp: hash of every go.mod, go.sum,
#           *.go under hack/tools/, this script and the Go version)
#   status  each binary with its version, or "missing"
#   env     export lines (BERTH_CRITEST, BERTH_CRICTL, BERTH_RUNTIME_TOOLS, ...)
#   down    nothing: the binaries stay
#
# Works from an empty module cache and build cache (the Go module proxy is the
# only source); reuses both when present.
# shellcheck disable=SC2034  # read by lib.sh
LOG_TAG=tools
. "$(dirname "$0")/../lib.sh"

TOOLS=$BERTH_ROOT/hack/tools
RT_DIR=$BIN/runtime-tools
STAMP=$OUT/tools.stamp
BINARIES=(critest crictl kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet etcd etcdctl)

# modver DIR MODULE: the version DIR/go.mod requires of MODULE (no go call, so
# `env` and `status` stay instant and offline).
modver() {
    awk -v m="$2" '($1 == m && $2 ~ /^v/) {print $2; exit} ($1 == "require" && $2 == m) {print $3; exit}' "$TOOLS/$1/go.mod"
}
K8S_VERSION=$(modver k8s k8s.io/kubernetes)
ETCD_VERSION=$(modver etcd go.etcd.io/etcd/server/v3)
CRI_TOOLS_VERSION=$(modver cri-tools sigs.k8s.io/cri-tools)
RUNTIME_TOOLS_VERSION=$(modver runtime-tools github.com/opencontainers/runtime-tools)

stamp_value() {
    {
        go version
        (cd "$TOOLS" && find . -type f \( -name go.mod -o -name go.sum -o -name '*.go' \) -print0 \
            | LC_ALL=C sort -z | xargs -0 sha256sum)
        sha256sum "$BERTH_ROOT/hack/testbed/tools.sh"
    } | sha256sum | cut -d' ' -f1
}

rt_programs() {  # the validation programs the runtime-tools go.mod lists as tools
    sed -n 's|^[[:space:]]*github.com/opencontainers/runtime-tools/validation/\([a-z0-9_]*\)$|\1|p' "$TOOLS/runtime-tools/go.mod"
}

all_present() {
    local b p
    for b in "${BINARIES[@]}"; do [ -x "$BIN/$b" ] || return 1; done
    [ -x "$RT_DIR/runtimetest" ] || return 1
    for p in $(rt_programs); do [ -x "$RT_DIR/validation/$p.t" ] || return 1; done
}

# gomod MODULE_DIR ARGS...: `go ARGS` in hack/tools/MODULE_DIR, niced, with
# cgo off, -trimpath, the local toolchain only and go.mod/go.sum read-only.
gomod() {
    local dir=$1; shift
    (cd "$TOOLS/$dir" && nice -n 10 env CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS="-trimpath -buildvcs=false -mod=readonly" go "$@")
}

build_k8s() {
    local major minor ld
    major=${K8S_VERSION#v}; major=${major%%.*}
    minor=${K8S_VERSION#v"$major".}; minor=${minor%%.*}
    ld=""
    for pkg in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
        ld+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
    done
    log "building kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet $K8S_VERSION"
    gomod k8s build -ldflags "-s -w$ld" -o "$BIN/" \
        k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
        k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl k8s.io/kubernetes/cmd/kubelet
}

build_etcd() {
    log "building etcd etcdctl $ETCD_VERSION"
    gomod etcd build -ldflags "-s -w" -o "$BIN/etcd" go.etcd.io/etcd/server/v3
    gomod etcd build -ldflags "-s -w" -o "$BIN/etcdctl" go.etcd.io/etcd/etcdctl/v3
}

build_cri_tools() {
    local ld="-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=${CRI_TOOLS_VERSION#v}"
    log "building crictl critest $CRI_TOOLS_VERSION"
    gomod cri-tools build -ldflags "$ld" -o "$BIN/crictl" sigs.k8s.io/cri-tools/cmd/crictl
    gomod cri-tools test -c -ldflags "$ld" -o "$BIN/critest" sigs.k8s.io/cri-tools/cmd/critest
}

build_runtime_tools() {
    local tmp p pkgs=()
    log "building runtime-tools validation suite $RUNTIME_TOOLS_VERSION"
    for p in $(rt_programs); do pkgs+=("github.com/opencontainers/runtime-tools/validation/$p"); done
    [ ${#pkgs[@]} -gt 0 ] || die "no validation programs listed in hack/tools/runtime-tools/go.mod"
    tmp=$(mktemp -d "$OUT/runtime-tools-build.XXXXXX")
    mkdir -p "$tmp/validation"
    # runtimetest runs inside the container's rootfs: static, like upstream's
    # STATIC_BUILD_FLAGS (cgo is off anyway; netgo/osusergo as upstream).
    # Upstream names the programs validation/<name>/<name>.t; here they are
    # validation/<name>.t (hack/runtime-tools.sh runs them).
    if ! { gomod runtime-tools build -tags "netgo osusergo" -ldflags "-s -w" -o "$tmp/runtimetest" \
            github.com/opencontainers/runtime-tools/cmd/runtimetest \
        && gomod runtime-tools build -ldflags "-s -w" -o "$tmp/validation/" "${pkgs[@]}"; }; then
        rm -rf "$tmp"
        die "building the runtime-tools suite failed"
    fi
    for p in $(rt_programs); do mv "$tmp/validation/$p" "$tmp/validation/$p.t"; done
    rm -rf "$RT_DIR.old"
    [ ! -e "$RT_DIR" ] || mv "$RT_DIR" "$RT_DIR.old"
    mv "$tmp" "$RT_DIR"
    rm -rf "$RT_DIR.old"
    chmod 755 "$RT_DIR"
}

up() {
    command -v go >/dev/null || die "go not found (expected /usr/local/go/bin/go)"
    local want
    want=$(stamp_value)
    if all_present && [ "$(cat "$STAMP" 2>/dev/null)" = "$want" ]; then
        log "peer tools up to date (k8s $K8S_VERSION, etcd $ETCD_VERSION, cri-tools $CRI_TOOLS_VERSION)"
        return 0
    fi
    rm -f "$STAMP"
    local t0=$SECONDS
    build_runtime_tools
    build_cri_tools
    build_etcd
    build_k8s
    all_present || die "build finished but some binaries are missing"
    echo "$want" >"$STAMP"
    log "peer tools built in $((SECONDS - t0))s"
}

version_of() {  # version_of NAME: one line
    local b=$BIN/$1
    [ -x "$b" ] || { echo missing; return; }
    local args=(--version) v
    case $1 in
        kubectl) args=(version --client) ;;
        etcdctl) args=(version) ;;
    esac
    # first stdout line (crictl/critest log a config warning on stderr)
    v=$(timeout 10 "$b" "${args[@]}" 2>/dev/null | head -1 || true)
    echo "${v:-present (no version output)}"
}

status() {
    local b n p
    for b in "${BINARIES[@]}"; do printf 'tools: %-24s %s\n' "$b" "$(version_of "$b")"; done
    n=0
    for p in $(rt_programs); do [ -x "$RT_DIR/validation/$p.t" ] && n=$((n + 1)); done
    if [ -x "$RT_DIR/runtimetest" ]; then
        printf 'tools: %-24s %s (runtimetest + %d of %d validation programs)\n' runtime-tools \
            "$RUNTIME_TOOLS_VERSION" "$n" "$(rt_programs | wc -l)"
    else
        printf 'tools: %-24s missing\n' runtime-tools
    fi
    if all_present && [ "$(cat "$STAMP" 2>/dev/null)" = "$(stamp_value)" ]; then
        echo "tools: up to date"
    else
        echo "tools: stale or incomplete (run hack/testbed.sh tools up)"
    fi
}

env_lines() {
    cat <<EOF
export BERTH_CRITEST=$BIN/critest
export BERTH_CRICTL=$BIN/crictl
export BERTH_RUNTIME_TOOLS=$RT_DIR
export BERTH_KUBE_APISERVER=$BIN/kube-apiserver
export BERTH_KUBE_CONTROLLER_MANAGER=$BIN/kube-controller-manager
export BERTH_KUBE_SCHEDULER=$BIN/kube-scheduler
export BERTH_KUBECTL=$BIN/kubectl
export BERTH_UPSTREAM_KUBELET=$BIN/kubelet
export BERTH_ETCD=$BIN/etcd
export BERTH_ETCDCTL=$BIN/etcdctl
export BERTH_K8S_VERSION=$K8S_VERSION
export BERTH_ETCD_VERSION=$ETCD_VERSION
export BERTH_CRI_TOOLS_VERSION=$CRI_TOOLS_VERSION
export BERTH_RUNTIME_TOOLS_VERSION=$RUNTIME_TOOLS_VERSION
EOF
}

# crictl alone (hack/up.sh needs only it): quick next to the full build.
crictl_only() {
    [ -x "$BIN/crictl" ] && return 0
    local ld="-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=${CRI_TOOLS_VERSION#v}"
    log "building crictl $CRI_TOOLS_VERSION"
    gomod cri-tools build -ldflags "$ld" -o "$BIN/crictl" sigs.k8s.io/cri-tools/cmd/crictl
}

case "${1:-}" in
up) up ;;
crictl) crictl_only ;;
down) ;;
status) status ;;
env) env_lines ;;
*) echo "usage: $0 up|crictl|down|status|env" >&2; exit 2 ;;
esac
