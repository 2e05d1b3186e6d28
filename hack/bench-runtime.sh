#!/usr/bin/env bash
# Lifecycle benchmark: create + start + wait + delete of /bin/true from a
# busybox bundle with cgroups (memory and pids limits), N times per runtime,
# berth-runc (hack/build.sh's lean build) vs runc (and crun when this host's cgroup layout lets
# it run) in the same run, plus the bare namespace floor
# (`unshare -pmuin --fork /bin/true`). Prints medians, the ratio to runc and
# to the floor, and the peak RSS of each runtime process tree.
#
#   sudo hack/bench-runtime.sh [N]        (default N=50)
#
# Each iteration is one foreground `run` (create, start, wait for exit,
# delete in one runtime invocation) and, as a second figure, the four
# separate commands `create; start; <wait>; delete` a shim issues.
LOG_TAG=bench
. "$(dirname "$0")/lib.sh"
cd "$BERTH_ROOT"
need_root
N=${1:-50}

# BERTH_RUNC=path skips the build (e.g. while another cargo holds the lock).
BERTH=${BERTH_RUNC:-}
if [ -z "$BERTH" ]; then
    log "building berth-runc (the lean build hack/build.sh installs)"
    lean_runc_build "$(nproc)" >/dev/null 2>&1 || die "building berth-runc failed"
    BERTH=$(lean_runc_path)
fi

WORK=$(mktemp -d /tmp/berth-bench.XXXXXX)
cleanup() {
    local r bin id
    for r in berth-runc berth-runc-noseal runc crun; do
        bin=/usr/sbin/runc; [ $r = crun ] && bin=/usr/bin/crun; case $r in berth-runc*) bin=$BERTH ;; esac
        for id in $(ls "$WORK/state-$r" 2>/dev/null); do
            [ -d "$WORK/state-$r/$id" ] || continue
            "$bin" --root "$WORK/state-$r" delete --force "$id" >/dev/null 2>&1 || true
        done
    done
    rm -rf "$WORK"
}
trap cleanup EXIT

mkdir -p "$WORK/bundle/rootfs/bin"
cp /bin/busybox "$WORK/bundle/rootfs/bin/"
ln -s busybox "$WORK/bundle/rootfs/bin/true"
ln -s busybox "$WORK/bundle/rootfs/bin/sh"
(cd "$WORK/bundle" && "$BERTH" spec)
python3 - "$WORK/bundle/config.json" <<'PY'
import json, sys
p = sys.argv[1]
c = json.load(open(p))
c["ociVersion"] = "1.0.2-dev"  # what crun 1.8 and runc 1.1 accept
c["process"]["terminal"] = False
c["process"]["args"] = ["/bin/true"]
c["linux"]["resources"]["memory"] = {"limit": 67108864}
c["linux"]["resources"]["pids"] = {"limit": 64}
json.dump(c, open(p, "w"), indent=1)
PY

python3 - "$N" "$WORK" "$BERTH" <<'PY'
import os, subprocess, sys, time, statistics, json

n, work, berth = int(sys.argv[1]), sys.argv[2], sys.argv[3]
bundle = f"{work}/bundle"

ENV = dict(os.environ)
CPU = 0.0  # user+sys seconds of the last timed() process tree

def timed(argv):
    """Run argv; return (seconds, exit code, peak RSS in KiB of its process tree)."""
    # stderr to a file: after `create` the container's init holds the
    # runtime's stdio, so a pipe would not see EOF until the container ends.
    with open(f"{work}/stderr", "w+") as ef:
        t0 = time.perf_counter()
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=ef, env=ENV)
        _, status, ru = os.wait4(p.pid, 0)
        dt = time.perf_counter() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
        ef.seek(0)
        err = ef.read().strip()
    global CPU
    CPU = ru.ru_utime + ru.ru_stime
    return dt, p.returncode, ru.ru_maxrss, err

def peak_rss_kb(name, binary, samples=5):
    """Peak RSS of one `run` process tree, via /usr/bin/time (a small C
    parent: a Python parent's pre-exec pages would count in ru_maxrss)."""
    root, peak = f"{work}/state-{name}", 0
    for i in range(samples):
        with open(f"{work}/rss", "w+") as ef:
            subprocess.run(["/usr/bin/time", "-f", "%M", binary, "--root", root, "run", "--bundle", bundle,
                            f"rss-{name}-{i}"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=ef, env=ENV)
            ef.seek(0)
            last = ef.read().strip().splitlines()[-1:]
        if last and last[0].isdigit():
            peak = max(peak, int(last[0]))
    return peak

def bench_run(name, binary):
    root = f"{work}/state-{name}"
    times, rss, cpu = [], 0, []
    for i in range(n):
        cid = f"bench-{name}-{i}"
        dt, rc, mx, err = timed([binary, "--root", root, "run", "--bundle", bundle, cid])
        if rc != 0:
            return None, f"{name}: run failed: {err.splitlines()[-1] if err else rc}"
        times.append(dt)
        cpu.append(CPU)
        rss = max(rss, mx)
    CPUS[name] = cpu
    return (times, rss), None

def bench_steps(name, binary):
    root = f"{work}/state-{name}"
    times, rss = [], 0
    for i in range(n):
        cid = f"step-{name}-{i}"
        total = 0.0
        for argv in (["create", "--bundle", bundle, cid], ["start", cid]):
            dt, rc, mx, err = timed([binary, "--root", root] + argv)
            if rc != 0:
                return None, f"{name}: {argv[0]} failed: {err.splitlines()[-1] if err else rc}"
            total += dt; rss = max(rss, mx)
        # wait: /bin/true exits at once; `state` until stopped (the runtime
        # has no wait command; its cost is not counted).
        for _ in range(1000):
            out = subprocess.run([binary, "--root", root, "state", cid], capture_output=True, text=True).stdout
            if '"stopped"' in out:
                break
            time.sleep(0.0005)
        dt, rc, mx, err = timed([binary, "--root", root, "delete", cid])
        if rc != 0:
            return None, f"{name}: delete failed: {err.splitlines()[-1] if err else rc}"
        total += dt; rss = max(rss, mx)
        times.append(total)
    return (times, rss), None

floor = []
for _ in range(n):
    dt, rc, _, _ = timed(["unshare", "-pmuin", "--fork", "/bin/true"])
    floor.append(dt)
floor_med = statistics.median(floor)

# "berth-runc-noseal" skips the sealed-memfd re-exec (CVE-2019-5736
# protection) to show what the protection costs.
runtimes = [("berth-runc", berth, {}), ("berth-runc-noseal", berth, {"BERTH_RUNC_UNSEALED_FOR_BENCHMARK": "1"}),
            ("runc", "/usr/sbin/runc", {}), ("crun", "/usr/bin/crun", {})]
rows, notes = [], []
CPUS = {}
res = {}
for name, binary, extra in runtimes:
    ENV = dict(os.environ, **extra)
    if not os.path.exists(binary):
        notes.append(f"{name}: not installed"); continue
    r, err = bench_run(name, binary)
    if err:
        notes.append(err); continue
    s, err2 = bench_steps(name, binary)
    r = (r[0], peak_rss_kb(name, binary))
    res[name] = (r, s)
    if err2:
        notes.append(err2)

def ms(x): return f"{x*1000:.2f}"
print()
print(f"lifecycle of /bin/true with cgroups, N={n}, median ms (p90); peak RSS of `run` (runtime + its init, /usr/bin/time %M)")
print(f"{'runtime':<18} {'run (c+s+w+d)':>16} {'p90':>8} {'4 commands':>12} {'vs runc':>8} {'vs floor':>9} {'peak RSS':>10} {'cpu ms':>8}")
runc_med = statistics.median(res["runc"][0][0]) if "runc" in res else None
for name, ((t, rss), steps) in res.items():
    med = statistics.median(t)
    p90 = sorted(t)[int(len(t) * 0.9) - 1]
    smed = ms(statistics.median(steps[0])) if steps else "-"
    srss = rss
    ratio = f"{med / runc_med:.2f}x" if runc_med else "-"
    print(f"{name:<18} {ms(med):>16} {ms(p90):>8} {smed:>12} {ratio:>8} {med / floor_med:>8.2f}x {srss/1024:>8.1f}MB {ms(statistics.median(CPUS[name])):>8}")
print(f"{'floor':<18} {ms(floor_med):>16} {ms(sorted(floor)[int(n*0.9)-1]):>8} {'':>12} {'':>8} {'1.00x':>9}   (unshare -pmuin --fork /bin/true)")
floor_cpu = []
for _ in range(n):
    timed(["unshare", "-pmuin", "--fork", "/bin/true"]); floor_cpu.append(CPU)
print(f"floor cpu (user+sys) median {ms(statistics.median(floor_cpu))} ms; 'cpu ms' = user+sys of the run's process tree,")
print("the robust figure on a busy host (wall times include waiting for a core)")
for x in notes:
    print("note:", x)
PY
# Cgroups the benchmark created under /berth-bench (runtimes leave parents).
for d in /sys/fs/cgroup/*/berth-bench /sys/fs/cgroup/berth-bench; do [ -d "$d" ] && rmdir "$d" 2>/dev/null || true; done
