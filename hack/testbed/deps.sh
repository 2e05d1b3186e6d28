#!/usr/bin/env bash
# Debian packages the build and the tests need. Component scripts add their
# own with ensure_pkgs; this is the common base.
LOG_TAG=deps
. "$(dirname "$0")/../lib.sh"

BASE_PKGS=(
    build-essential pkg-config protobuf-compiler libseccomp-dev   # build
    busybox-static                                                 # test images (the dynamic busybox is extracted from its .deb, it conflicts)
    docker-registry skopeo apache2-utils openssl curl jq           # registries
    containernetworking-plugins iptables iproute2 conntrack socat ethtool  # pod networking
    runc containerd crun criu                                      # peers
    procps psmisc util-linux hyperfine xz-utils zstd               # tools
)

case "${1:-}" in
up) need_root; ensure_pkgs "${BASE_PKGS[@]}" ;;
down|env) ;;
status)
    missing=()
    for p in "${BASE_PKGS[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p"); done
    if [ ${#missing[@]} -eq 0 ]; then echo "deps: all ${#BASE_PKGS[@]} packages installed"; else echo "deps: missing ${missing[*]}"; fi
    ;;
*) echo "usage: $0 up|down|status|env" >&2; exit 2 ;;
esac
