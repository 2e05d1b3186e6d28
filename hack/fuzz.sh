#!/usr/bin/env bash
# Run the fuzz targets (fuzz/, cargo-fuzz on the nightly toolchain).
#   hack/fuzz.sh                  every target, 60 s each
#   hack/fuzz.sh layer 600        one target, 10 minutes
# Each run starts from fuzz/corpus/<target>/ (kept between runs, not in
# git) seeded with the committed inputs in fuzz/seeds/<target>/; crashes
# land in fuzz/artifacts/<target>/ and make the script fail.
LOG_TAG=fuzz
. "$(dirname "$0")/lib.sh"
cd "$BERTH_ROOT/fuzz"

secs=${2:-60}
if [ $# -ge 1 ]; then targets=("$1"); else mapfile -t targets < <(cargo +nightly fuzz list); fi
failed=()
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t"
    [ -d "seeds/$t" ] && cp -n seeds/"$t"/* "corpus/$t/" 2>/dev/null
    log "$t: ${secs}s"
    # -rss_limit_mb: the layer target may legitimately buffer a few MB.
    if ! cargo +nightly fuzz run "$t" "corpus/$t" -- -max_total_time="$secs" -rss_limit_mb=4096 >"$LOGDIR/fuzz-$t.log" 2>&1; then
        failed+=("$t")
        log "$t: FAILED (log: $LOGDIR/fuzz-$t.log; inputs: fuzz/artifacts/$t/)"
    fi
done
[ ${#failed[@]} -eq 0 ] || die "fuzz targets failed: ${failed[*]}"
log "all ${#targets[@]} targets ran ${secs}s without a crash"
