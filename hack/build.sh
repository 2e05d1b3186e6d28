#!/usr/bin/env bash
# Build the berth binaries (release) into _output/bin/.
#   hack/build.sh           all binaries
# berth-pause is linked statically (crt-static) so it runs from any image.
# berth-shim, the per-pod monitor, is built from its own package with the
# `lean` profile for musl (static, size-optimized: its size is its memory,
# paid once per pod); without the musl target, berth-cri's glibc build
# linked statically instead. berth-runc is the `lean` build too (its peak
# RSS is mostly its text: 3.2 MB against the release build's 4.2 MB).
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
lean_runc_build "$JOBS"
install -m 0755 "$(lean_runc_path)" "$BIN/berth-runc"
for b in berthd berth-kubelet berth-pause berth-check; do
    install -m 0755 "$TARGET/release/$b" "$BIN/$b"
done
log "installed into $BIN: berth-runc (lean) berthd berth-shim berth-kubelet berth-pause berth-check"
