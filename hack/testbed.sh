#!/usr/bin/env bash
# The test bed: everything the tests talk to, brought up offline and pinned.
#
#   hack/testbed.sh up            packages, peer tools, registries, test images
#   hack/testbed.sh down          stop everything the test bed started
#   hack/testbed.sh status        what is running, which images each registry serves
#   hack/testbed.sh env           shell exports the tests read (eval "$(hack/testbed.sh env)")
#   hack/testbed.sh controlplane up|down|status   etcd + kube-apiserver (+ kubeconfig)
#   hack/testbed.sh containerd up|down|status     Debian's containerd, mirrors -> local registry
#
# Each component is hack/testbed/<name>.sh with the verbs up|down|status|env.
LOG_TAG=testbed
. "$(dirname "$0")/lib.sh"

COMPONENTS_UP=(deps tools registry images)     # what `up` brings, in order
COMPONENTS_ALL=(deps tools registry images containerd controlplane)

comp() { local c=$1; shift; bash "$BERTH_ROOT/hack/testbed/$c.sh" "$@"; }

case "${1:-}" in
up)
    need_root up
    for c in "${COMPONENTS_UP[@]}"; do comp "$c" up; done
    log "test bed is up"
    ;;
down)
    # Reverse order; every component's down is safe when it is not up.
    for ((i=${#COMPONENTS_ALL[@]}-1; i>=0; i--)); do comp "${COMPONENTS_ALL[$i]}" down; done
    ;;
status)
    for c in "${COMPONENTS_ALL[@]}"; do comp "$c" status || true; done
    ;;
env)
    echo "export BERTH_OUTPUT=$OUT"
    echo "export BERTH_BIN=$BIN"
    for c in "${COMPONENTS_ALL[@]}"; do comp "$c" env; done
    ;;
controlplane|containerd|registry|images|tools|deps)
    c=$1; shift; comp "$c" "${@:-status}"
    ;;
*)
    sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
