#!/usr/bin/env bash
# Build the berth binaries (release) into _output/bin/.
#   hack/build.sh           all binaries
# berth-pause is linked statically (crt-static) so it runs from any image.
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
for b in berth-runc berthd berth-shim berth-kubelet berth-pause berth-check; do
    install -m 0755 "$TARGET/release/$b" "$BIN/$b"
done
log "installed into $BIN: berth-runc berthd berth-shim berth-kubelet berth-pause berth-check"
