#!/usr/bin/env bash
# The test bed's acceptance, checked the way a user would check it:
#   - both registries serve every test image (skopeo inspect), the TLS one
#     refuses anonymous pulls and accepts the test credentials;
#   - busybox is a two-platform index;
#   - the peer tools are in _output/bin and run;
#   - containerd (Debian's) pulls critest images by their original names through
#     the mirror config, and runs a pod with a CNI address;
#   - the control plane answers /readyz with "ok";
#   - each component's down leaves no process or listening port behind.
# Prints one line per check and "testbed: N passed, M failed" at the end.
LOG_TAG=check
. "$(dirname "$0")/lib.sh"
cd "$BERTH_ROOT"
need_root
eval "$(bash hack/testbed.sh env)"

PASS=0; FAIL=0
check() {
    local what=$1; shift
    if out=$("$@" 2>&1); then
        PASS=$((PASS + 1)); echo "ok    $what"
    else
        FAIL=$((FAIL + 1)); echo "FAIL  $what"; printf '%s\n' "$out" | tail -5 | sed 's/^/      /'
    fi
}

# --- registries and images ----------------------------------------------------
mapfile -t REFS < <(jq -r '.[] | "\(.repo):\(.tag)"' "$BERTH_IMAGES_LIST" | sort -u)
[ ${#REFS[@]} -gt 0 ] || die "no images listed in $BERTH_IMAGES_LIST"
for ref in "${REFS[@]}"; do
    check "plain registry serves $ref" skopeo inspect --raw --tls-verify=false "docker://$BERTH_REGISTRY/$ref"
    check "TLS registry serves $ref with credentials" skopeo inspect --raw \
        --cert-dir "$BERTH_REGISTRY_CERT_DIR" --creds "$BERTH_REGISTRY_USER:$BERTH_REGISTRY_PASS" \
        "docker://$BERTH_REGISTRY_TLS/$ref"
done
check "TLS registry refuses anonymous pulls" bash -c \
    "! skopeo inspect --raw --cert-dir '$BERTH_REGISTRY_CERT_DIR' --no-creds docker://$BERTH_REGISTRY_TLS/library/busybox:latest"
check "TLS registry refuses a wrong password" bash -c \
    "! skopeo inspect --raw --cert-dir '$BERTH_REGISTRY_CERT_DIR' --creds '$BERTH_REGISTRY_USER:wrong' docker://$BERTH_REGISTRY_TLS/library/busybox:latest"
check "busybox is an index with linux/amd64 and linux/arm64" bash -c \
    "skopeo inspect --raw --tls-verify=false docker://$BERTH_BUSYBOX_IMAGE \
     | jq -e '[.manifests[].platform.architecture] | contains([\"amd64\",\"arm64\"])'"

# --- peer tools ---------------------------------------------------------------
for t in critest crictl kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet etcd; do
    check "peer tool $t runs" bash -c "'$BIN/$t' --version 2>&1 || '$BIN/$t' version 2>&1 || '$BIN/$t' --help >/dev/null 2>&1"
done
check "runtime-tools validation programs built" bash -c "ls '$BERTH_RUNTIME_TOOLS' | grep -q ."

# --- containerd through the mirror ----------------------------------------------
ctr_check() {
    local crictl=("$BIN/crictl" --runtime-endpoint "$BERTH_CONTAINERD_ENDPOINT" --image-endpoint "$BERTH_CONTAINERD_ENDPOINT" --timeout 60s)
    "${crictl[@]}" pull gcr.io/k8s-staging-cri-tools/test-image-1 >/dev/null
    "${crictl[@]}" pull "$BERTH_CRITEST_BUSYBOX_IMAGE" >/dev/null
    local d; d=$(mktemp -d)
    local name; name="check-$$"
    cat >"$d/pod.json" <<JSON
{"metadata":{"name":"$name","namespace":"default","uid":"$name-uid","attempt":0},"log_directory":"$d/logs","linux":{}}
JSON
    cat >"$d/ctr.json" <<JSON
{"metadata":{"name":"sleeper"},"image":{"image":"$BERTH_CRITEST_BUSYBOX_IMAGE"},"command":["sleep","60"],"log_path":"sleeper.log","linux":{}}
JSON
    local pod ctr ip rc=0
    pod=$("${crictl[@]}" runp "$d/pod.json")
    {
        ctr=$("${crictl[@]}" create "$pod" "$d/ctr.json" "$d/pod.json") &&
        "${crictl[@]}" start "$ctr" >/dev/null &&
        ip=$("${crictl[@]}" inspectp "$pod" | jq -r .status.network.ip) &&
        [ -n "$ip" ] && [ "$ip" != null ] && echo "pod ip $ip"
    } || rc=1
    "${crictl[@]}" stopp "$pod" >/dev/null || true
    "${crictl[@]}" rmp -f "$pod" >/dev/null || true
    rm -rf "$d"
    return $rc
}
check "containerd comes up" bash hack/testbed/containerd.sh up
check "containerd pulls critest images by original name and runs a pod with a CNI IP" ctr_check
bash hack/testbed/containerd.sh down >/dev/null || true
check "containerd down leaves no process" bash -c "! [ -S '$BERTH_CONTAINERD_SOCK' ] || ! '$BIN/crictl' --runtime-endpoint '$BERTH_CONTAINERD_ENDPOINT' --timeout 2s version"

# --- control plane --------------------------------------------------------------
check "the control plane comes up" bash hack/testbed/controlplane.sh up
check "kube-apiserver /readyz answers ok" bash -c "[ \"\$('$BIN/kubectl' --kubeconfig '$BERTH_KUBECONFIG' get --raw /readyz)\" = ok ]"
check "kubectl get ns lists default and kube-system" bash -c "'$BIN/kubectl' --kubeconfig '$BERTH_KUBECONFIG' get ns -o name | grep -q kube-system"
bash hack/testbed/controlplane.sh down >/dev/null || true
check "control plane down leaves ports 6443 and 2379 free" bash -c "! ss -Hltn 'sport = :6443' | grep -q . && ! ss -Hltn 'sport = :2379' | grep -q ."

echo "testbed: $PASS passed, $FAIL failed"
[ "$FAIL" = 0 ]
