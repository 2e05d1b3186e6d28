#!/usr/bin/env bash
# Build the berth binaries (release) into _output/bin/.
#   hack/build.sh           all binaries
# berth-pause is linked statically (crt-static) so it runs from any image.
# berth-shim, the per-pod monitor, is built from its own package with the
# `shim` profile for musl (static, size-optimized: its size is its memory,
# paid once per pod); without the musl target, berth-cri's glibc build
# linked statically instead.
LOG_TAG=build
. "$(dirname "$0")/lib.sh"
cd "$BERTH_ROOT"

JOBS=${BERTH_BUILD_JOBS:-$(nproc)}
TARGET=${CARGO_TARGET_DIR:-target}
log "cargo build --release (jobs=$JOBS)"
cargo build --release -j "$JOBS" --workspace --bins
# Static: berth-pause runs from any image, berth-check inside any test rootfs.
cargo rustc --release -j "$JOBS" -p berth-cri --bin berth-pause -- -C target-feature=+crt-static
cargo rustc --release -j "$JOBS" -p berth-tests --bin berth-check -- -C target-feature=+crt-static
if lean_shim_build "$JOBS"; then
    install -m 0755 "$(lean_shim_path)" "$BIN/berth-shim"
else
    log "warning: no x86_64-unknown-linux-musl target; berth-shim linked statically against glibc (larger)"
    cargo rustc --release -j "$JOBS" -p berth-cri --bin berth-shim -- -C target-feature=+crt-static
    install -m 0755 "$TARGET/release/berth-shim" "$BIN/berth-shim"
fi
for b in berth-runc berthd berth-kubelet berth-pause berth-check; do
    install -m 0755 "$TARGET/release/$b" "$BIN/$b"
done
log "installed into $BIN: berth-runc berthd berth-shim berth-kubelet berth-pause berth-check"
