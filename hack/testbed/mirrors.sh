# Registry mirror configuration in containerd's certs.d layout, shared by
# containerd (hack/testbed/containerd.sh) and berthd (hack/critest-berthd.sh):
# the public registry names critest and the kubelet use are served by the
# test bed's local registry; 127.0.0.1:5443 is trusted with the test bed CA.
# Sourced; needs $OUT (hack/lib.sh).

# write_mirrors CERTS_DIR
write_mirrors() {
    local certs=$1 mirror=http://127.0.0.1:5000 host server
    for host in docker.io gcr.io registry.k8s.io k8s.gcr.io; do
        case $host in
            docker.io) server=https://registry-1.docker.io ;;
            *) server=https://$host ;;
        esac
        mkdir -p "$certs/$host"
        cat >"$certs/$host/hosts.toml" <<TOML
# berth test bed: $host is served by the local registry (no internet here).
server = "$server"

[host."$mirror"]
  capabilities = ["pull", "resolve"]
TOML
    done
    mkdir -p "$certs/127.0.0.1:5000" "$certs/127.0.0.1:5443"
    printf 'server = "http://127.0.0.1:5000"\n\n[host."http://127.0.0.1:5000"]\n  capabilities = ["pull", "resolve", "push"]\n' \
        >"$certs/127.0.0.1:5000/hosts.toml"
    printf 'server = "https://127.0.0.1:5443"\n\n[host."https://127.0.0.1:5443"]\n  capabilities = ["pull", "resolve", "push"]\n  ca = "%s"\n' \
        "$OUT/registry/ca.crt" >"$certs/127.0.0.1:5443/hosts.toml"
}
