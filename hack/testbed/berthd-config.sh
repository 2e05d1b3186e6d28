# An isolated berthd's configuration, shared by the scripts that run one
# (hack/up.sh, hack/crictl-berthd.sh, hack/critest-berthd.sh): everything
# under one folder, its own CNI bridge network (bridge + host-local +
# portmap, Debian's plugins; berthd brings each pod's lo up itself), the
# test bed's registry mirrors.
# Sourced after hack/lib.sh and hack/testbed/mirrors.sh.

# write_berthd_config DIR NAME BRIDGE SUBNET(a.b.c) MASQ(true|false)
# Writes DIR/net.d/10-NAME.conflist, DIR/certs.d/ and DIR/berthd.toml
# (socket DIR/berthd.sock, root_dir DIR/root, state_dir DIR/state); callers
# append their own keys to DIR/berthd.toml.
write_berthd_config() {
    local dir=$1 name=$2 bridge=$3 subnet=$4 masq=$5
    mkdir -p "$dir/net.d"
    write_mirrors "$dir/certs.d"
    cat >"$dir/net.d/10-$name.conflist" <<JSON
{"cniVersion":"1.0.0","name":"$name","plugins":[
 {"type":"bridge","bridge":"$bridge","isGateway":true,"ipMasq":$masq,
  "ipam":{"type":"host-local","ranges":[[{"subnet":"$subnet.0/24"}]],"dataDir":"$dir/ipam"}},
 {"type":"portmap","capabilities":{"portMappings":true}}]}
JSON
    cat >"$dir/berthd.toml" <<TOML
socket = "$dir/berthd.sock"
root_dir = "$dir/root"
state_dir = "$dir/state"
cni_conf_dir = "$dir/net.d"
cni_bin_dirs = ["/usr/lib/cni", "/opt/cni/bin"]
registry_config_path = "$dir/certs.d"
TOML
}
