#!/usr/bin/env bash
# A real Kubernetes control plane on loopback, from the binaries
# hack/testbed/tools.sh builds (pinned k8s.io/kubernetes + etcd).
#
#   up [--full]  etcd + kube-apiserver; --full adds kube-controller-manager
#                (cluster signer = the CA, so CSRs get signed) and kube-scheduler
#   down         stop exactly what `up` started (pid files); data stays
#   status       what runs, and the apiserver's /readyz; exit 1 unless etcd and the apiserver run
#   env          BERTH_KUBECONFIG, BERTH_APISERVER, ...
#
# Endpoints (all 127.0.0.1 only):
#   etcd                     http://127.0.0.1:2379 (peer 2380), data in _output/controlplane/etcd
#   kube-apiserver           https://127.0.0.1:6443
#   kube-controller-manager  https://127.0.0.1:10257/healthz
#   kube-scheduler           https://127.0.0.1:10259/healthz
# Override with BERTH_ETCD_PORT / BERTH_ETCD_PEER_PORT / BERTH_APISERVER_PORT.
#
# PKI (openssl, made once and reused; a leaf that no longer verifies against
# the CA is remade) in _output/controlplane/pki: ca, apiserver serving cert
# (SANs 127.0.0.1, localhost, kubernetes, kubernetes.default,
# kubernetes.default.svc, kubernetes.default.svc.cluster.local, 10.96.0.1),
# apiserver -> kubelet client cert, admin (O=system:masters),
# kube-controller-manager and kube-scheduler client certs, service-account
# key pair. Kubeconfigs: _output/admin.kubeconfig (admin),
# _output/controlplane/{controller-manager,scheduler}.kubeconfig.
# No front proxy / aggregation layer; authorization Node,RBAC.
# `kubeconfig-node NAME` prints the path of a kubeconfig for node NAME
# (CN=system:node:NAME, O=system:nodes; made on first use) for kubelets.
# shellcheck disable=SC2034  # read by lib.sh
LOG_TAG=controlplane
. "$(dirname "$0")/../lib.sh"

CP=$OUT/controlplane
PKI=$CP/pki
ETCD_DATA=$CP/etcd
ADMIN_KUBECONFIG=$OUT/admin.kubeconfig
ETCD_PORT=${BERTH_ETCD_PORT:-2379}
ETCD_PEER_PORT=${BERTH_ETCD_PEER_PORT:-2380}
API_PORT=${BERTH_APISERVER_PORT:-6443}
KCM_PORT=10257
SCHED_PORT=10259
SERVICE_CIDR=10.96.0.0/16
SERVICE_IP=10.96.0.1        # first IP of SERVICE_CIDR: the `kubernetes` service
APISERVER=https://127.0.0.1:$API_PORT
ETCD_URL=http://127.0.0.1:$ETCD_PORT
# pid-file names (lib.sh bg_*), in the order `up` starts them
PROCS=(cp-etcd cp-kube-apiserver cp-kube-controller-manager cp-kube-scheduler)

# --- PKI -----------------------------------------------------------------------
ca() {
    if [ -s "$PKI/ca.key" ] && [ -s "$PKI/ca.crt" ]; then return 0; fi
    log "creating the cluster CA in $PKI"
    openssl genrsa -out "$PKI/ca.key" 2048 2>/dev/null
    openssl req -x509 -new -key "$PKI/ca.key" -sha256 -days 3650 -subj "/CN=berth-kubernetes-ca" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" \
        -out "$PKI/ca.crt"
    # everything signed by an older CA is now invalid
    find "$PKI" -name '*.crt' ! -name ca.crt -delete
}

# leaf NAME SUBJECT EKU [SAN]: NAME.key + NAME.crt signed by the CA, unless a
# cert that verifies against the current CA is already there.
leaf() {
    local name=$1 subj=$2 eku=$3 san=${4:-} ext
    if [ -s "$PKI/$name.key" ] && [ -s "$PKI/$name.crt" ] \
        && openssl verify -CAfile "$PKI/ca.crt" "$PKI/$name.crt" >/dev/null 2>&1; then
        return 0
    fi
    [ -s "$PKI/$name.key" ] || openssl genrsa -out "$PKI/$name.key" 2048 2>/dev/null
    ext=$(mktemp "$PKI/.ext.XXXXXX")
    {
        echo "basicConstraints=critical,CA:FALSE"
        echo "keyUsage=critical,digitalSignature,keyEncipherment"
        echo "extendedKeyUsage=$eku"
        [ -z "$san" ] || echo "subjectAltName=$san"
    } >"$ext"
    openssl req -new -key "$PKI/$name.key" -subj "$subj" 2>/dev/null \
        | openssl x509 -req -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial -sha256 -days 3650 \
            -extfile "$ext" -out "$PKI/$name.crt" 2>/dev/null
    rm -f "$ext"
}

# kubeconfig FILE NAME: a kubeconfig for $PKI/NAME.{crt,key}, certs embedded.
kubeconfig() {
    local file=$1 name=$2 tmp
    tmp=$(mktemp "$file.XXXXXX")
    cat >"$tmp" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: berth
  cluster:
    server: $APISERVER
    certificate-authority-data: $(base64 -w0 "$PKI/ca.crt")
users:
- name: $name
  user:
    client-certificate-data: $(base64 -w0 "$PKI/$name.crt")
    client-key-data: $(base64 -w0 "$PKI/$name.key")
contexts:
- name: $name@berth
  context:
    cluster: berth
    user: $name
current-context: $name@berth
EOF
    chmod 600 "$tmp"
    mv "$tmp" "$file"
}

pki() {
    mkdir -p "$PKI" "$ETCD_DATA"
    chmod 700 "$PKI" "$ETCD_DATA"
    ca
    leaf apiserver "/CN=kube-apiserver" serverAuth \
        "IP:127.0.0.1,IP:$SERVICE_IP,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
    leaf apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" clientAuth
    leaf admin "/O=system:masters/CN=berth-admin" clientAuth
    leaf controller-manager "/CN=system:kube-controller-manager" clientAuth
    leaf scheduler "/CN=system:kube-scheduler" clientAuth
    if [ ! -s "$PKI/sa.key" ] || [ ! -s "$PKI/sa.pub" ]; then
        openssl genrsa -out "$PKI/sa.key" 2048 2>/dev/null
        openssl rsa -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
    fi
    # Rewritten every time (cheap), so they always match the current certs
    # and ports.
    kubeconfig "$ADMIN_KUBECONFIG" admin
    kubeconfig "$CP/controller-manager.kubeconfig" controller-manager
    kubeconfig "$CP/scheduler.kubeconfig" scheduler
}

# --- processes -----------------------------------------------------------------
need_bin() {
    local b
    for b in "$@"; do
        [ -x "$BIN/$b" ] || die "$BIN/$b missing: run hack/testbed.sh tools up"
    done
}

# port_free_or_ours PORT NAME: fail if PORT is taken by something that is not
# the process NAME we started.
port_free_or_ours() {
    local port=$1 name=$2
    if port_listening "$port" && ! bg_running "$name"; then
        die "port $port is already in use by another process (see: ss -ltnp 'sport = :$port')"
    fi
}

ready() { "$BIN/kubectl" --kubeconfig "$ADMIN_KUBECONFIG" --request-timeout=5s get --raw /readyz 2>/dev/null | grep -qx ok; }
healthz() { curl -ksf --max-time 3 "https://127.0.0.1:$1/healthz" 2>/dev/null | grep -qx ok; }
etcd_healthy() { curl -sf --max-time 3 "$ETCD_URL/health" 2>/dev/null | grep -q '"health":"true"'; }

# wait_or_die SECS WHAT NAME CMD...: like wait_for, but give up at once when
# the process NAME exits, and show the end of its log.
wait_or_die() {
    local secs=$1 what=$2 name=$3 i; shift 3
    for i in $(seq $((secs * 5))); do
        if "$@"; then return 0; fi
        if ! bg_running "$name"; then
            tail -20 "$LOGDIR/$name.log" >&2 || true
            die "$name exited while waiting for $what (log: $LOGDIR/$name.log)"
        fi
        sleep 0.2
    done
    tail -20 "$LOGDIR/$name.log" >&2 || true
    die "timed out after ${secs}s waiting for $what (log: $LOGDIR/$name.log)"
}

start_etcd() {
    port_free_or_ours "$ETCD_PORT" cp-etcd
    port_free_or_ours "$ETCD_PEER_PORT" cp-etcd
    bg_start cp-etcd "$BIN/etcd" \
        --name berth \
        --data-dir "$ETCD_DATA" \
        --listen-client-urls "$ETCD_URL" \
        --advertise-client-urls "$ETCD_URL" \
        --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
        --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
        --initial-cluster "berth=http://127.0.0.1:$ETCD_PEER_PORT" \
        --log-level warn
    wait_or_die 60 "etcd on $ETCD_URL" cp-etcd etcd_healthy
}

# The address the apiserver publishes in the `kubernetes` Service's endpoints.
# Endpoint validation rejects loopback addresses, so this is the host's
# primary IPv4 address (the apiserver still listens on 127.0.0.1 only; nothing
# in the test bed reaches it through the Service). Loopback only when the host
# has no other address.
advertise_address() {
    local a
    a=$(ip -4 -o route get 1.0.0.0 2>/dev/null | sed -n 's/.* src \([0-9.]*\).*/\1/p')
    [ -n "$a" ] || a=$(ip -4 -o addr show scope global 2>/dev/null | awk '{sub("/.*", "", $4); print $4; exit}')
    echo "${a:-127.0.0.1}"
}

start_apiserver() {
    port_free_or_ours "$API_PORT" cp-kube-apiserver
    local adv reconciler=()
    adv=$(advertise_address)
    # A host with loopback only (e.g. a bare network namespace): the endpoint
    # reconciler refuses loopback, so run without it.
    case "$adv" in 127.*) reconciler=(--endpoint-reconciler-type none) ;; esac
    # Test nodes are named per test and resolve nowhere: the API server
    # reaches a kubelet (exec, logs, port-forward) at its InternalIP.
    bg_start cp-kube-apiserver "$BIN/kube-apiserver" \
        --etcd-servers "$ETCD_URL" \
        --bind-address 127.0.0.1 \
        --advertise-address "$adv" "${reconciler[@]}" \
        --secure-port "$API_PORT" \
        --tls-cert-file "$PKI/apiserver.crt" \
        --tls-private-key-file "$PKI/apiserver.key" \
        --client-ca-file "$PKI/ca.crt" \
        --kubelet-client-certificate "$PKI/apiserver-kubelet-client.crt" \
        --kubelet-client-key "$PKI/apiserver-kubelet-client.key" \
        --kubelet-preferred-address-types InternalIP,Hostname,ExternalIP \
        --service-account-key-file "$PKI/sa.pub" \
        --service-account-signing-key-file "$PKI/sa.key" \
        --service-account-issuer https://kubernetes.default.svc.cluster.local \
        --service-cluster-ip-range "$SERVICE_CIDR" \
        --authorization-mode Node,RBAC \
        --enable-admission-plugins NodeRestriction \
        --allow-privileged=true \
        --profiling=false
    wait_or_die 120 "kube-apiserver /readyz on $APISERVER" cp-kube-apiserver ready
}

start_controller_manager() {
    port_free_or_ours "$KCM_PORT" cp-kube-controller-manager
    bg_start cp-kube-controller-manager "$BIN/kube-controller-manager" \
        --kubeconfig "$CP/controller-manager.kubeconfig" \
        --authentication-kubeconfig "$CP/controller-manager.kubeconfig" \
        --authorization-kubeconfig "$CP/controller-manager.kubeconfig" \
        --bind-address 127.0.0.1 \
        --secure-port "$KCM_PORT" \
        --cluster-signing-cert-file "$PKI/ca.crt" \
        --cluster-signing-key-file "$PKI/ca.key" \
        --service-account-private-key-file "$PKI/sa.key" \
        --root-ca-file "$PKI/ca.crt" \
        --use-service-account-credentials=true \
        --service-cluster-ip-range "$SERVICE_CIDR" \
        --controllers '*' \
        --leader-elect=false \
        --profiling=false
    wait_or_die 60 "kube-controller-manager /healthz" cp-kube-controller-manager healthz "$KCM_PORT"
}

start_scheduler() {
    port_free_or_ours "$SCHED_PORT" cp-kube-scheduler
    bg_start cp-kube-scheduler "$BIN/kube-scheduler" \
        --kubeconfig "$CP/scheduler.kubeconfig" \
        --authentication-kubeconfig "$CP/scheduler.kubeconfig" \
        --authorization-kubeconfig "$CP/scheduler.kubeconfig" \
        --bind-address 127.0.0.1 \
        --secure-port "$SCHED_PORT" \
        --leader-elect=false \
        --profiling=false
    wait_or_die 60 "kube-scheduler /healthz" cp-kube-scheduler healthz "$SCHED_PORT"
}

up() {
    local full=0
    case "${1:-}" in --full) full=1 ;; "") ;; *) die "usage: $0 up [--full]" ;; esac
    need_bin etcd kube-apiserver kubectl
    [ $full = 0 ] || need_bin kube-controller-manager kube-scheduler
    command -v openssl >/dev/null || ensure_pkgs openssl
    command -v curl >/dev/null || ensure_pkgs curl
    pki
    start_etcd
    start_apiserver
    if [ $full = 1 ]; then
        start_controller_manager
        start_scheduler
    fi
    log "control plane up: $APISERVER (kubeconfig $ADMIN_KUBECONFIG)$([ $full = 1 ] && echo ', with controller-manager and scheduler')"
}

down() {
    local i name
    for ((i = ${#PROCS[@]} - 1; i >= 0; i--)); do
        name=${PROCS[$i]}
        if bg_running "$name"; then log "stopping $name"; fi
        bg_stop "$name"
    done
}

status() {
    local name pid
    for name in "${PROCS[@]}"; do
        if bg_running "$name"; then pid=$(bg_pid "$name"); echo "controlplane: ${name#cp-} running (pid $pid)"
        else echo "controlplane: ${name#cp-} not running"; fi
    done
    if bg_running cp-kube-apiserver; then
        echo "controlplane: $APISERVER /readyz: $("$BIN/kubectl" --kubeconfig "$ADMIN_KUBECONFIG" --request-timeout=5s get --raw /readyz 2>&1 | head -1)"
    fi
    if bg_running cp-kube-controller-manager; then
        echo "controlplane: kube-controller-manager /healthz: $(healthz $KCM_PORT && echo ok || echo failing)"
    fi
    if bg_running cp-kube-scheduler; then
        echo "controlplane: kube-scheduler /healthz: $(healthz $SCHED_PORT && echo ok || echo failing)"
    fi
    # Exit status: 0 only when etcd and the API server run (callers start
    # the control plane when it is not).
    bg_running cp-etcd && bg_running cp-kube-apiserver
}

# kubeconfig-node NAME: a kubeconfig a kubelet of node NAME can use with the
# Node authorizer and NodeRestriction (CN=system:node:NAME, O=system:nodes).
kubeconfig_node() {
    local node=${1:-}
    [ -n "$node" ] || die "usage: $0 kubeconfig-node NODE_NAME"
    [[ $node =~ ^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$ ]] || die "invalid node name: $node"
    pki >/dev/null
    leaf "node-$node" "/O=system:nodes/CN=system:node:$node" clientAuth
    kubeconfig "$CP/node-$node.kubeconfig" "node-$node"
    echo "$CP/node-$node.kubeconfig"
}

case "${1:-}" in
up) shift; up "$@" ;;
down) down ;;
status) status ;;
env)
    echo "export BERTH_KUBECONFIG=$ADMIN_KUBECONFIG"
    echo "export BERTH_APISERVER=$APISERVER"
    echo "export BERTH_ETCD_ENDPOINT=$ETCD_URL"
    echo "export BERTH_CLUSTER_CA=$PKI/ca.crt"
    echo "export BERTH_SERVICE_CIDR=$SERVICE_CIDR"
    ;;
kubeconfig-node) shift; kubeconfig_node "$@" ;;
*) echo "usage: $0 up [--full]|down|status|env|kubeconfig-node NAME" >&2; exit 2 ;;
esac
