#!/usr/bin/env bash
# Run the OCI runtime-tools validation suite against an OCI runtime binary.
#
#   hack/runtime-tools.sh RUNTIME_BINARY [--runtime-flag ...] [PROGRAM ...]
#
#   RUNTIME_BINARY  e.g. /usr/sbin/runc, /usr/bin/crun, target/release/berth-runc
#   --flag...       global runtime options put before every subcommand
#                   (e.g. --systemd-cgroup); --root is always set (see below)
#   PROGRAM...      run only these validation programs (e.g. create kill
#                   linux_cgroups_pids); default: all of them
#
# Like upstream's `make localvalidation`: every validation/<name> program runs
# with RUNTIME=<runtime> from a folder holding `runtimetest` and
# `rootfs-amd64.tar.gz`, and its TAP output is consumed by `prove` (perl).
# The rootfs is made here from Debian's busybox-static (/bin/busybox + an
# applet symlink farm in /bin, /etc/passwd, /etc/group), the same shape as
# upstream's tarball.
#
# Isolation: each run gets its own temp folder (bundles via TMPDIR) and the
# runtime is called through a wrapper that adds `--root <temp>/state`, so the
# containers of a run live in their own state root; every container left
# there is `delete -f`'d and the folder removed at exit, even on failure.
#
# Results: _output/runtime-tools/<runtime-name>/<program>.tap (stdout),
# <program>.stderr, prove.txt, summary.txt. The last line printed is exactly
#   runtime-tools: N passed, M failed
# N counts `ok` test points (skips included; they are also reported on their
# own line), M counts `not ok` points plus one for each program that exited
# non-zero without any `not ok` point (a crash must not vanish from the
# count); a program that prints no TAP at all and exits 0 counts as one pass. Exit 0 even when tests fail; non-zero only when the
# suite could not run.
# shellcheck disable=SC2034  # read by lib.sh
LOG_TAG="runtime-tools"
. "$(dirname "$0")/lib.sh"

RT_DIR=$BIN/runtime-tools
PER_PROGRAM_TIMEOUT=${BERTH_RT_TIMEOUT:-300}

[ $# -ge 1 ] || { sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
need_root "$@"
runtime_in=$1; shift
runtime=$(command -v "$runtime_in" 2>/dev/null || true)
{ [ -n "$runtime" ] && [ -x "$runtime" ]; } || die "runtime binary not found or not executable: $runtime_in"
runtime=$(readlink -f "$runtime")
rflags=() programs=()
for a in "$@"; do
    case $a in --*) rflags+=("$a") ;; *) programs+=("$a") ;; esac
done

command -v prove >/dev/null || ensure_pkgs perl
[ -x /bin/busybox ] || ensure_pkgs busybox-static
{ [ -x "$RT_DIR/runtimetest" ] && [ -d "$RT_DIR/validation" ]; } \
    || die "runtime-tools suite not built: run hack/testbed.sh tools up"
if [ ${#programs[@]} -eq 0 ]; then
    for t in "$RT_DIR"/validation/*.t; do p=${t##*/}; programs+=("${p%.t}"); done
fi
for p in "${programs[@]}"; do [ -x "$RT_DIR/validation/$p.t" ] || die "no such validation program: $p"; done

name=${runtime##*/}
results=$OUT/runtime-tools/$name
rm -rf "$results"; mkdir -p "$results"

work=$(mktemp -d /tmp/berth-rt.XXXXXX)
state=$work/state
cleanup() {
    local d
    set +e  # best effort, every step: a failed step must not skip the rest
    if [ -d "$state" ]; then
        for d in "$state"/*/; do
            [ -d "$d" ] || continue
            d=${d%/}; d=${d##*/}
            "$runtime" "${rflags[@]}" --root "$state" delete -f "$d" >/dev/null 2>&1 || true
        done
    fi
    # Bundles are plain folders; a test that failed half-way may leave a
    # mount behind in one (e.g. a bind-mounted namespace file): unmount first.
    grep -F " $work/" /proc/self/mountinfo | awk '{print $5}' | sort -r \
        | while read -r m; do umount -l "$m" 2>/dev/null; done
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
mkdir -p "$state" "$work/tmp" "$work/suite/validation"
# Bundles live under $work/tmp; a container with a user namespace must be able
# to reach its rootfs there, as under upstream's plain /tmp.
chmod 755 "$work" "$work/suite"
chmod 1777 "$work/tmp"

# The wrapper the suite knows as $RUNTIME.
quoted=""
for a in "${rflags[@]}"; do quoted+="'$a' "; done
cat >"$work/runtime" <<EOF
#!/bin/sh
exec '$runtime' $quoted--root '$state' "\$@"
EOF
chmod +x "$work/runtime"

# The rootfs tarball, as the suite expects it (rootfs-<GOARCH>.tar.gz in cwd).
rootfs=$work/rootfs
mkdir -p "$rootfs"/{bin,dev,proc,sys,etc,tmp}
cp /bin/busybox "$rootfs/bin/busybox"
for a in $(/bin/busybox --list); do [ -e "$rootfs/bin/$a" ] || ln -s busybox "$rootfs/bin/$a"; done
cat >"$rootfs/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
bin:x:2:2:bin:/bin:/bin/false
sys:x:3:3:sys:/dev:/bin/false
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
cat >"$rootfs/etc/group" <<'EOF'
root:x:0:
daemon:x:1:
bin:x:2:
sys:x:3:
adm:x:4:
tty:x:5:
disk:x:6:
users:x:100:
nogroup:x:65534:
EOF
chmod 1777 "$rootfs/tmp"
tar -C "$rootfs" --numeric-owner --owner=0 --group=0 -czf "$work/suite/rootfs-amd64.tar.gz" .
cp "$RT_DIR/runtimetest" "$work/suite/runtimetest"
for p in "${programs[@]}"; do cp "$RT_DIR/validation/$p.t" "$work/suite/validation/$p.t"; done

# Runs one program for prove and keeps its TAP and stderr. The suite writes
# its YAML diagnostics as JSON flow maps, which prove's YAMLish reader rejects
# (a parse error, then prove stops reading): prove gets the TAP without the
# diagnostic blocks; the .tap file keeps them.
cat >"$work/run-one" <<EOF
#!/bin/bash
t=\$1; n=\${t##*/}; n=\${n%.t}
timeout -k 10 $PER_PROGRAM_TIMEOUT "\$t" 2>'$results/'"\$n.stderr" | tee '$results/'"\$n.tap" \\
    | awk '/^  ---\$/ {y = 1; next} y && /^  \\.\\.\\.\$/ {y = 0; next} !y'
rc=\${PIPESTATUS[0]}
echo "\$rc" >'$results/'"\$n.rc"
exit "\$rc"
EOF
chmod +x "$work/run-one"

log "running ${#programs[@]} validation programs against $runtime (results in $results)"
cd "$work/suite"
tests=()
for p in "${programs[@]}"; do tests+=("validation/$p.t"); done
set +e
RUNTIME=$work/runtime TMPDIR=$work/tmp prove --exec "$work/run-one" "${tests[@]}" 2>&1 | tee "$results/prove.txt" | grep -v -E '^validation/.* ok$'
set -e
cd "$BERTH_ROOT"

passed=0 failed=0 skipped=0 failing=()
for p in "${programs[@]}"; do
    tap=$results/$p.tap
    ok=$(grep -c -E '^ok( |$)' "$tap" 2>/dev/null || true)
    nok=$(grep -c -E '^not ok( |$)' "$tap" 2>/dev/null || true)
    sk=$(grep -c -i -E '^ok [0-9]+.*# *skip' "$tap" 2>/dev/null || true)
    rc=$(cat "$results/$p.rc" 2>/dev/null || echo 255)
    # A program that exits non-zero without a `not ok` point failed without
    # saying so (e.g. it could not create its container): one failure. A
    # few programs print nothing at all when the runtime did what they
    # expect (process_rlimits_fail) and exit 0: one pass.
    extra=0 silent=0
    if [ "$nok" -eq 0 ] && [ "$rc" != 0 ]; then extra=1; fi
    if [ "$rc" = 0 ] && [ $((ok + nok)) -eq 0 ] && ! grep -q -E '^1\.\.[0-9]+' "$tap" 2>/dev/null; then silent=1; fi
    passed=$((passed + ok + silent)); failed=$((failed + nok + extra)); skipped=$((skipped + sk))
    if [ $((nok + extra)) -gt 0 ]; then failing+=("$p($((nok + extra)))"); fi
done
{
    echo "runtime: $runtime ${rflags[*]}"
    echo "programs: ${#programs[@]}"
    echo "failing programs: ${failing[*]:-none}"
    echo "skipped test points (counted as passed): $skipped"
    echo "runtime-tools: $passed passed, $failed failed"
} >"$results/summary.txt"
sed -n '3,4p' "$results/summary.txt"
tail -1 "$results/summary.txt"
