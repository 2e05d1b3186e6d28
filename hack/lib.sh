# Shared helpers for hack/ scripts. Source it: `. "$(dirname "$0")/lib.sh"`.
# Everything here is idempotent and touches only what the project started.

set -euo pipefail

BERTH_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=${BERTH_OUTPUT:-$BERTH_ROOT/_output}
BIN=$OUT/bin
RUNDIR=$OUT/run     # pid files of test-bed processes
LOGDIR=${BERTH_LOGDIR:-$OUT/log}   # their logs (BERTH_LOGDIR: elsewhere, e.g. in a VM run folder)
mkdir -p "$BIN" "$RUNDIR" "$LOGDIR"
export PATH="$BIN:/usr/local/go/bin:$HOME/.cargo/bin:$PATH"

log() { printf '\033[1m[%s]\033[0m %s\n' "${LOG_TAG:-berth}" "$*" >&2; }
die() { log "error: $*"; exit 1; }

need_root() { [ "$(id -u)" = 0 ] || die "run as root (sudo $0 $*)"; }

# ensure_pkgs PKG...: install the Debian packages that are missing, without
# starting their services (a policy-rc.d denies it for the install), so a
# package's own daemon never takes the ports or sockets the test bed uses.
ensure_pkgs() {
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    log "installing Debian packages: ${missing[*]}"
    local stamp=/var/lib/apt/periodic/berth-update-stamp
    if [ ! -f "$stamp" ] || [ -n "$(find "$stamp" -mmin +720)" ]; then
        apt-get update -q >/dev/null
        mkdir -p "$(dirname "$stamp")" && touch "$stamp"
    fi
    local had_policy=1
    [ -e /usr/sbin/policy-rc.d ] || { had_policy=0; printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; }
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null \
        || { [ $had_policy = 1 ] || rm -f /usr/sbin/policy-rc.d; die "apt-get install ${missing[*]} failed"; }
    [ $had_policy = 1 ] || rm -f /usr/sbin/policy-rc.d
}

# --- background processes, tracked by pid file --------------------------------
# bg_start NAME CMD...: start CMD detached, log to $LOGDIR/NAME.log, pid in
# $RUNDIR/NAME.pid. No-op if NAME is already running.
bg_start() {
    local name=$1; shift
    if bg_running "$name"; then return 0; fi
    setsid "$@" >"$LOGDIR/$name.log" 2>&1 </dev/null &
    echo $! >"$RUNDIR/$name.pid"
}

bg_pid() { cat "$RUNDIR/$1.pid" 2>/dev/null || true; }

bg_running() {
    local pid; pid=$(bg_pid "$1")
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null
}

# bg_stop NAME: SIGTERM the recorded PID (and its process group), SIGKILL
# after 10 s. Only ever signals processes this project started.
bg_stop() {
    local name=$1 pid i
    pid=$(bg_pid "$name")
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
        for i in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$RUNDIR/$name.pid"
}

# wait_for SECONDS DESCRIPTION CMD...: retry CMD until it succeeds.
wait_for() {
    local secs=$1 what=$2 i; shift 2
    for i in $(seq $((secs * 5))); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.2
    done
    die "timed out after ${secs}s waiting for $what"
}

port_listening() { ss -Hltn "sport = :$1" | grep -q .; }

# The lean per-pod monitor (see hack/build.sh and shim/Cargo.toml): static
# musl, size-optimized `lean` profile (Cargo.toml).
SHIM_TARGET=x86_64-unknown-linux-musl
lean_shim_path() { echo "${CARGO_TARGET_DIR:-$BERTH_ROOT/target}/$SHIM_TARGET/lean/berth-shim"; }
# lean_shim_build JOBS: build it; fails when the musl target cannot be had.
lean_shim_build() {
    if ! rustup target list --installed 2>/dev/null | grep -qx "$SHIM_TARGET"; then
        rustup target add "$SHIM_TARGET" >&2 || return 1
    fi
    (cd "$BERTH_ROOT" && cargo build --profile lean --target "$SHIM_TARGET" -j "$1" \
        -p berth-shim --features standalone)
}
# The lean berth-runc (glibc: it links libseccomp), as hack/build.sh installs it.
lean_runc_path() { echo "${CARGO_TARGET_DIR:-$BERTH_ROOT/target}/lean/berth-runc"; }
lean_runc_build() { # JOBS
    (cd "$BERTH_ROOT" && cargo build --profile lean -j "$1" -p berth-runtime --bin berth-runc)
}
