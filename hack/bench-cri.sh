#!/usr/bin/env bash
# CRI benchmark: berthd vs containerd 1.6 (+ runc), both in the same run,
# both driven through crictl so the client overhead is the same. Measures
#
#   1. runp + create + start of one pod with one busybox `sleep 3600`
#      container (image already present), median and p99 over N runs; each
#      pod is removed (rmp -f) after its run, outside the timed part;
#   2. the wall time until P pods started at once (runp+create+start per pod,
#      --parallel at a time) all have a running container;
#   3. the RSS of the daemon plus all its monitors (berthd + berth-shim +
#      their pause processes vs containerd + containerd-shim-runc-v2 + their
#      pause processes; never the containers' own workloads) at 0, 10, 50
#      and 100 pods;
#   4. the shared floor, interleaved with (1): three crictl processes (one
#      trivial call each) plus one CNI ADD of the same plugin chain run
#      directly into a fresh namespace, which any runtime measured this way
#      pays; the verdict gives it as a ratio of containerd's median and each
#      runtime's own time (median minus the floor),
#
# and prints a table with the ratios berthd/containerd and a verdict against
# the issue's targets (median <= 1/3 of containerd's; RSS at 50 pods <= 1/10).
#
#   sudo hack/bench-cri.sh [--runs N] [--pods P] [--parallel J] [N]
#        N runs for (1), default 50; P pods for (2) and the RSS levels, default 100;
#        J pods started at once, default 10
#
# Needs the test bed's registry (hack/testbed.sh up). containerd is the test
# bed's (hack/testbed/containerd.sh): started here only if it is not running,
# and stopped at exit only then. berthd is an isolated instance (the binaries
# of target/release/, copied to a temp folder so a rebuild during the run
# does not matter) with its own socket, folders, bridge and subnet, removed at
# exit. Pods are created with PID namespace mode CONTAINER (what the kubelet
# sends by default): containerd starts a pause container for every pod,
# berthd none. Pods carry the label berth-bench=<run id>; only those are
# removed.
LOG_TAG=bench-cri
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/testbed/mirrors.sh"
cd "$BERTH_ROOT"

RUNS=50 PODS=100 PAR=10
while [ $# -gt 0 ]; do
    case $1 in
        --runs) RUNS=$2; shift 2 ;;
        --runs=*) RUNS=${1#*=}; shift ;;
        --pods) PODS=$2; shift 2 ;;
        --pods=*) PODS=${1#*=}; shift ;;
        --parallel) PAR=$2; shift 2 ;;
        --parallel=*) PAR=${1#*=}; shift ;;
        -h|--help) sed -n '2,30p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        [0-9]*) RUNS=$1; shift ;;
        *) die "unknown argument $1 (usage: $0 [--runs N] [--pods P] [--parallel J] [N])" ;;
    esac
done
for v in RUNS PODS PAR; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer, not '${!v}'"
done

need_root
REG=127.0.0.1:5000
IMAGE=$REG/library/busybox:latest
curl -fsS -o /dev/null "http://$REG/v2/" 2>/dev/null \
    || die "the test bed's registry ($REG) is not up: run hack/testbed.sh up"
CRICTL=$BIN/crictl
[ -x "$CRICTL" ] || die "no crictl in $BIN: hack/testbed.sh tools up"
for t in containerd runc python3 ip curl; do command -v $t >/dev/null || die "$t missing: hack/testbed.sh up"; done
[ -x /usr/lib/cni/bridge ] && [ -x /usr/lib/cni/host-local ] || die "CNI plugins missing in /usr/lib/cni: hack/testbed.sh up"
REL=${CARGO_TARGET_DIR:-$BERTH_ROOT/target}/release
for b in berthd berth-shim berth-runc berth-pause; do
    [ -x "$REL/$b" ] || die "no $REL/$b: build it first (cargo build --release)"
done
# Shims and pause processes use memory too: refuse what clearly does not fit
# (containerd needs ~15 MB per pod for its shim and pause).
avail_mb=$(awk '/MemAvailable/ {print int($2/1024)}' /proc/meminfo)
[ "$avail_mb" -gt $((PODS * 40 + 512)) ] || die "only ${avail_mb} MB available; --pods $PODS needs ~$((PODS * 40 + 512)) MB"

CTD=$BERTH_ROOT/hack/testbed/containerd.sh
CTD_SOCK=$OUT/containerd/containerd.sock
RUNID=$(date +%s)-$$
# Short: berthd's shim sockets live under the state dir (107-byte limit).
WORK=$(mktemp -d /tmp/bcri.XXXXXX)
BRIDGE=bcri$((RANDOM % 10000))
CNI_NAME=berth-bench-$RUNID
SUBNET=
for _ in $(seq 50); do
    s=10.207.$((RANDOM % 200 + 20))
    ip -4 route show | grep -q "^$s\." || { SUBNET=$s; break; }
done
[ -n "$SUBNET" ] || die "no free 10.207.x.0/24 subnet for berthd's bridge"
BSOCK=$WORK/berthd.sock
BPID=
PYPID=
CTD_STARTED=0

crib() { "$CRICTL" --config "$WORK/crictl-berthd.yaml" "$@"; }
cric() { "$CRICTL" --config "$WORK/crictl-containerd.yaml" "$@"; }

# rm_pods berthd|containerd: remove this run's pods (label berth-bench=$RUNID), 10 at a time.
rm_pods() {
    local cfg=$WORK/crictl-$1.yaml ids
    ids=$("$CRICTL" --config "$cfg" pods -q --label "berth-bench=$RUNID" 2>/dev/null || true)
    [ -n "$ids" ] || return 0
    echo "$ids" | xargs -r -P 10 -n 1 "$CRICTL" --config "$cfg" rmp -f >/dev/null 2>&1 || true
}

cleanup() {
    local rc=$? p kids chain
    trap - EXIT INT TERM
    set +e
    log "cleaning up"
    # The measuring process first, and the crictl calls it has under way, by PID.
    if [ -n "$PYPID" ] && kill -0 "$PYPID" 2>/dev/null; then
        kids=$(ps -o pid= --ppid "$PYPID" 2>/dev/null)
        kill -TERM "$PYPID" 2>/dev/null
        for p in $kids; do kill -TERM "$p" 2>/dev/null; done
        wait "$PYPID" 2>/dev/null
        sleep 1
    fi
    if [ -S "$CTD_SOCK" ] && [ -f "$WORK/crictl-containerd.yaml" ]; then
        rm_pods containerd
        rm_pods containerd  # a runp that was finishing during the first pass
    fi
    if [ -n "$BPID" ] && kill -0 "$BPID" 2>/dev/null; then
        rm_pods berthd
        rm_pods berthd
        kill -TERM "$BPID" 2>/dev/null
        for _ in $(seq 100); do kill -0 "$BPID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$BPID" 2>/dev/null
        wait "$BPID" 2>/dev/null
    fi
    # berth-shims of this instance (their command lines name $WORK), by PID,
    # with what they still run.
    for p in $(pgrep -f "berth-shim --dir $WORK/" || true); do
        for c in $(ps -o pid= --ppid "$p" 2>/dev/null); do kill -KILL "$c" 2>/dev/null; done
        kill -KILL "$p" 2>/dev/null
    done
    awk -v d="$WORK" 'index($5, d "/") == 1 {print $5}' /proc/self/mountinfo | sort -r | while read -r m; do
        umount -l "$m" 2>/dev/null
    done
    ip link del "$BRIDGE" 2>/dev/null
    # Masquerade rules of pods berthd could not remove (it died): the bridge
    # plugin names the network in each rule's comment.
    if command -v iptables >/dev/null; then
        iptables -t nat -S POSTROUTING 2>/dev/null | grep -F "name: \\\"$CNI_NAME\\\"" | while read -r _ _ rest; do
            chain=${rest##* }
            # shellcheck disable=SC2086
            eval "iptables -t nat -D POSTROUTING $rest" 2>/dev/null
            iptables -t nat -F "$chain" 2>/dev/null; iptables -t nat -X "$chain" 2>/dev/null
        done
    fi
    # berthd's cgroup parent of this run, deepest first (empty by now).
    for d in /sys/fs/cgroup/berth-bench-$RUNID /sys/fs/cgroup/*/berth-bench-$RUNID; do
        [ -d "$d" ] && find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null
    done
    if [ $CTD_STARTED = 1 ]; then
        log "stopping the containerd this run started"
        bash "$CTD" down >/dev/null 2>&1
    fi
    rm -rf "$WORK"
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

for e in berthd containerd; do
    s=$BSOCK; [ $e = containerd ] && s=$CTD_SOCK
    printf 'runtime-endpoint: unix://%s\nimage-endpoint: unix://%s\ntimeout: 120\npull-image-on-create: false\n' \
        "$s" "$s" >"$WORK/crictl-$e.yaml"
done

# --- containerd ------------------------------------------------------------------
if bash "$CTD" status 2>/dev/null | grep -q '^containerd: running'; then
    log "using the running test-bed containerd"
else
    log "starting the test-bed containerd (stopped again at exit)"
    CTD_STARTED=1
    bash "$CTD" up >&2 || die "hack/testbed/containerd.sh up failed"
fi
CTD_PID=$(bg_pid containerd)
[ -n "$CTD_PID" ] && kill -0 "$CTD_PID" 2>/dev/null || die "containerd has no live pid in $RUNDIR/containerd.pid"
# Pods that were there before this run: their shims are not counted.
CTD_PRE=$(cric pods -q 2>/dev/null | tr '\n' ' ' || true)
[ -z "$CTD_PRE" ] || log "warning: containerd already has pods ($(echo $CTD_PRE | wc -w)); their shims are left out of the RSS figures"

# --- berthd ----------------------------------------------------------------------
mkdir -p "$WORK/bin" "$WORK/net.d" "$WORK/logs"
for b in berthd berth-shim berth-runc berth-pause; do cp "$REL/$b" "$WORK/bin/"; done
# The monitor as hack/build.sh installs it (static musl, size-optimized),
# when it has been built; else berth-cri's development build.
if [ -x "$(lean_shim_path)" ]; then
    cp "$(lean_shim_path)" "$WORK/bin/berth-shim"
    SHIM_BUILD="berth-shim: the lean build ($(lean_shim_path))"
else
    SHIM_BUILD="berth-shim: berth-cri's development build, not the lean one (run hack/build.sh)"
    log "warning: $SHIM_BUILD"
fi
# berth-runc likewise.
if [ -x "$(lean_runc_path)" ]; then
    cp "$(lean_runc_path)" "$WORK/bin/berth-runc"
    SHIM_BUILD="$SHIM_BUILD; berth-runc: the lean build"
fi
write_mirrors "$WORK/certs.d"
# The same plugin chain as the test bed's containerd (bridge with masquerade
# and hairpin, portmap). Neither lists loopback: containerd runs that plugin
# on its own, berthd brings lo up itself when it makes the namespace.
cat >"$WORK/net.d/10-bench.conflist" <<JSON
{"cniVersion":"1.0.0","name":"$CNI_NAME","plugins":[
 {"type":"bridge","bridge":"$BRIDGE","isGateway":true,"ipMasq":true,"hairpinMode":true,
  "ipam":{"type":"host-local","ranges":[[{"subnet":"$SUBNET.0/24"}]],"routes":[{"dst":"0.0.0.0/0"}],"dataDir":"$WORK/ipam"}},
 {"type":"portmap","capabilities":{"portMappings":true}}]}
JSON
cat >"$WORK/berthd.toml" <<TOML
socket = "$BSOCK"
root_dir = "$WORK/root"
state_dir = "$WORK/state"
cni_conf_dir = "$WORK/net.d"
cni_bin_dirs = ["/usr/lib/cni"]
registry_config_path = "$WORK/certs.d"
cgroup_parent = "/berth-bench-$RUNID"
TOML
# Its own session: a Ctrl-C in the terminal must not stop it before its pods are removed.
setsid "$WORK/bin/berthd" --config "$WORK/berthd.toml" --log-level warn 2>"$WORK/berthd.log" &
BPID=$!
wait_for 15 "berthd socket (log: $WORK/berthd.log)" test -S "$BSOCK"
kill -0 "$BPID" 2>/dev/null || die "berthd exited: $(tail -3 "$WORK/berthd.log")"

# --- images ------------------------------------------------------------------------
log "pulling $IMAGE (and containerd's sandbox image) before timing"
cric pull "$IMAGE" >/dev/null || die "containerd: crictl pull $IMAGE failed"
cric pull registry.k8s.io/pause:3.10 >/dev/null || die "containerd: crictl pull registry.k8s.io/pause:3.10 failed"
BERTH_PULL="crictl pull"
if ! out=$(crib pull "$IMAGE" 2>&1); then
    log "berthd: crictl pull failed ($(echo "$out" | tail -1)); pulling with berthd images"
    BERTH_PULL="berthd images pull (crictl pull failed: $(echo "$out" | tail -1 | sed 's/^.*level=fatal msg=//'))"
    "$WORK/bin/berthd" images --root "$WORK/root/images" --hosts-dir "$WORK/certs.d" \
        pull -q --plain-http "$REG" "$IMAGE" >&2 || die "berthd images pull $IMAGE failed"
fi

# --- the measurements ----------------------------------------------------------
log "runs=$RUNS pods=$PODS parallel=$PAR; berthd pid $BPID (subnet $SUBNET.0/24), containerd pid $CTD_PID"
python3 - "$WORK" "$CRICTL" "$RUNID" "$IMAGE" "$RUNS" "$PODS" "$PAR" "$BPID" "$CTD_PID" "$CTD_SOCK" \
    "$CTD_PRE" "$BERTH_PULL" "$SHIM_BUILD" <<'PY' &
import concurrent.futures as cf, json, math, os, statistics, subprocess, sys, time

(work, crictl, runid, image, runs, pods, par, bpid, cpid, csock, cpre, berth_pull, shim_build) = sys.argv[1:]
runs, pods, par, bpid, cpid = int(runs), int(pods), int(par), int(bpid), int(cpid)
cpre = set(cpre.split())
notes = []


def cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return []


def ppid(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return 0


def rss_kb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def pss_kb(pid):
    """Proportional set size: pages shared by the shims (their binary's text,
    libraries) are split among them instead of counted once per process."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def pids():
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def is_pause(argv):
    return bool(argv) and os.path.basename(argv[0]) in ("pause", "berth-pause")


def instance(rt):
    """The daemon, its monitors, and the pause processes they run: (pids, shims, pauses)."""
    all_pids = pids()
    if rt == "berthd":
        daemon = bpid
        shims = [p for p in all_pids
                 if (lambda a: len(a) > 2 and os.path.basename(a[0]) == "berth-shim"
                     and a[1] == "--dir" and a[2].startswith(work + "/"))(cmdline(p))]
    else:
        daemon = cpid
        shims = []
        for p in all_pids:
            a = cmdline(p)
            if not a or os.path.basename(a[0]) != "containerd-shim-runc-v2":
                continue
            if "-address" not in a or a[a.index("-address") + 1] != csock:
                continue
            sid = a[a.index("-id") + 1] if "-id" in a else ""
            if sid in cpre:
                continue
            shims.append(p)
    sset = set(shims)
    pauses = [p for p in all_pids if ppid(p) in sset and is_pause(cmdline(p))]
    return daemon, shims, pauses


def rss(rt):
    """Summed VmRSS (KiB) of the instance, median of 3 samples 0.5 s apart;
    (shims, pause processes, daemon's RSS, summed PSS) of the last one."""
    samples, last = [], None
    for i in range(3):
        if i:
            time.sleep(0.5)
        d, s, p = instance(rt)
        samples.append(sum(rss_kb(x) for x in [d] + s + p))
        last = (len(s), len(p), rss_kb(d), sum(pss_kb(x) for x in [d] + s + p))
    return statistics.median(samples), last


CFG = {rt: f"{work}/crictl-{rt}.yaml" for rt in ("berthd", "containerd")}


def cri(rt, *args, timeout=180):
    p = subprocess.run([crictl, "--config", CFG[rt], *args], capture_output=True, text=True, timeout=timeout)
    if p.returncode != 0:
        err = (p.stderr.strip().splitlines() or ["exit %d" % p.returncode])[-1]
        raise RuntimeError(f"{rt}: crictl {args[0]}: {err}")
    return p.stdout.strip()


def configs(rt, name):
    d = f"{work}/cfg/{rt}"
    os.makedirs(d, exist_ok=True)
    logdir = f"{work}/logs/{rt}/{name}"
    os.makedirs(logdir, exist_ok=True)
    ns = {"security_context": {"namespace_options": {"pid": 1}}}  # CONTAINER
    pod = {"metadata": {"name": name, "uid": f"{runid}-{name}", "namespace": "berth-bench", "attempt": 0},
           "labels": {"berth-bench": runid}, "log_directory": logdir, "linux": ns}
    ctr = {"metadata": {"name": "sleep", "attempt": 0}, "image": {"image": image},
           "command": ["sleep", "3600"], "labels": {"berth-bench": runid}, "log_path": "sleep.log", "linux": ns}
    pp, cp = f"{d}/{name}-pod.json", f"{d}/{name}-ctr.json"
    json.dump(pod, open(pp, "w"))
    json.dump(ctr, open(cp, "w"))
    return pp, cp


def start_pod(rt, name):
    """runp + create + start through crictl: (pod id, [t_runp, t_create, t_start])."""
    pp, cp = configs(rt, name)
    t = []
    t0 = time.perf_counter()
    pod = cri(rt, "runp", pp)
    t1 = time.perf_counter()
    c = cri(rt, "create", "--no-pull", pod, cp, pp)
    t2 = time.perf_counter()
    cri(rt, "start", c)
    t3 = time.perf_counter()
    return pod, [t1 - t0, t2 - t1, t3 - t2]


def rm_pod(rt, pod):
    cri(rt, "rmp", "-f", pod)


CONFLIST = json.load(open(f"{work}/net.d/10-bench.conflist"))


def cni_chain(cmd, cid, netns, prev=None):
    """One CNI command of the bench's plugin chain, run directly (no runtime):
    ADD in order, each plugin getting the previous result; DEL in reverse."""
    plugins = CONFLIST["plugins"] if cmd == "ADD" else CONFLIST["plugins"][::-1]
    env = dict(os.environ, CNI_COMMAND=cmd, CNI_CONTAINERID=cid, CNI_NETNS=netns,
               CNI_IFNAME="eth0", CNI_PATH="/usr/lib/cni")
    for plugin in plugins:
        conf = dict(plugin, name=CONFLIST["name"], cniVersion=CONFLIST["cniVersion"])
        if prev is not None:
            conf["prevResult"] = prev
        p = subprocess.run([f"/usr/lib/cni/{plugin['type']}"], input=json.dumps(conf), env=env,
                           capture_output=True, text=True, timeout=60)
        if p.returncode != 0:
            raise RuntimeError(f"CNI {cmd} {plugin['type']}: {p.stdout.strip()} {p.stderr.strip()}")
        if cmd == "ADD":
            prev = json.loads(p.stdout)
    return prev


def shared_floor(i):
    """What both runtimes pay whatever they do: three crictl processes (each
    with one trivial call) and one CNI ADD of the same chain into a fresh
    namespace. A runtime that took no time at all would measure this."""
    t0 = time.perf_counter()
    for _ in range(3):
        cri("berthd", "version")
    t1 = time.perf_counter()
    name = f"bfloor-{runid}-{i}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        t2 = time.perf_counter()
        prev = cni_chain("ADD", f"floor-{runid}-{i}", f"/var/run/netns/{name}")
        t3 = time.perf_counter()
        cni_chain("DEL", f"floor-{runid}-{i}", f"/var/run/netns/{name}", prev)
    finally:
        subprocess.run(["ip", "netns", "del", name])
    return [t1 - t0, t3 - t2]


def rm_all(rt):
    ids = cri(rt, "pods", "-q", "--label", f"berth-bench={runid}").split()
    with cf.ThreadPoolExecutor(par) as ex:
        list(ex.map(lambda p: rm_pod(rt, p), ids))


def running(rt):
    return len(cri(rt, "ps", "-q", "--state", "running", "--label", f"berth-bench={runid}").split())


RTS = ("berthd", "containerd")
res = {rt: {} for rt in RTS}
failed = {}

# 1. latency, interleaved (the order alternates) so load from elsewhere on the
#    host hits both alike; two untimed warm-up runs each.
lat = {rt: [] for rt in RTS}
floor = []
for i in range(-2, runs):
    try:
        f = shared_floor(i + 2)
        if i >= 0:
            floor.append(f)
    except Exception as e:  # noqa: BLE001 - reported in the table
        notes.append(f"shared floor, run {i}: {e}")
    for rt in (RTS if i % 2 == 0 else RTS[::-1]):
        if rt in failed:
            continue
        try:
            pod, t = start_pod(rt, f"lat-{rt[0]}{i + 2}")
            rm_pod(rt, pod)
        except Exception as e:  # noqa: BLE001 - reported in the table
            failed[rt] = str(e)
            notes.append(f"{rt}: latency run {i}: {e}")
            continue
        if i >= 0:
            lat[rt].append(t)
    if i >= 0 and (i + 1) % 10 == 0:
        print(f"[bench-cri] latency: {i + 1}/{runs}", file=sys.stderr)

for rt in RTS:
    if not lat[rt]:
        continue
    tot = sorted(sum(t) for t in lat[rt])
    res[rt]["median"] = statistics.median(tot)
    res[rt]["p99"] = tot[math.ceil(0.99 * len(tot)) - 1]
    for k, name in enumerate(("runp", "create", "start")):
        res[rt][name] = statistics.median(t[k] for t in lat[rt])

if floor:
    res["floor"] = {"crictl": statistics.median(f[0] for f in floor),
                    "cni": statistics.median(f[1] for f in floor),
                    "total": statistics.median(sum(f) for f in floor)}

# 2. P pods at once, per runtime (one after the other: they share 2 cores).
# 3. RSS at 0, 10, 50, 100 pods (those <= P), filled in batches of `par`.
levels = sorted({x for x in (0, 10, 50, 100) if x <= pods} | {pods})
for rt in RTS:
    if rt in failed:
        continue
    try:
        rm_all(rt)
        time.sleep(2)
        res[rt]["rss0"], _ = rss(rt)
        print(f"[bench-cri] {rt}: {pods} pods at once, {par} at a time", file=sys.stderr)
        t0 = time.perf_counter()
        with cf.ThreadPoolExecutor(par) as ex:
            list(ex.map(lambda i: start_pod(rt, f"burst-{rt[0]}{i}"), range(pods)))
        res[rt]["wall"] = time.perf_counter() - t0
        n = running(rt)
        if n != pods:
            notes.append(f"{rt}: {n} of {pods} containers running after the burst")
        print(f"[bench-cri] {rt}: removing {pods} pods", file=sys.stderr)
        t0 = time.perf_counter()
        rm_all(rt)
        res[rt]["rmwall"] = time.perf_counter() - t0
        have = 0
        for lv in levels:
            if lv:
                with cf.ThreadPoolExecutor(par) as ex:
                    list(ex.map(lambda i: start_pod(rt, f"rss-{rt[0]}{i}"), range(have, lv)))
                have = lv
                time.sleep(2)
            kb, (ns_, np_, dk, pss) = rss(rt)
            res[rt][f"rss{lv}"] = kb
            res[rt][f"pss{lv}"] = pss
            res[rt][f"procs{lv}"] = (ns_, np_, dk)
            print(f"[bench-cri] {rt}: {lv} pods: {kb / 1024:.1f} MB ({ns_} shims, {np_} pause)", file=sys.stderr)
        rm_all(rt)
    except Exception as e:  # noqa: BLE001
        failed[rt] = str(e)
        notes.append(f"{rt}: {e}")
        try:
            rm_all(rt)
        except Exception:  # noqa: BLE001
            pass


def fmt(rt, key, unit):
    v = res[rt].get(key)
    if v is None:
        return "-"
    if unit == "ms":
        return f"{v * 1000:.1f} ms"
    if unit == "s":
        return f"{v:.2f} s"
    return f"{v / 1024:.1f} MB"


def ratio(key):
    b, c = res["berthd"].get(key), res["containerd"].get(key)
    if b is None or c is None or c == 0:
        return None
    return b / c


rows = [("runp+create+start median", "median", "ms"), ("runp+create+start p99", "p99", "ms"),
        ("  runp median", "runp", "ms"), ("  create median", "create", "ms"), ("  start median", "start", "ms"),
        (f"{pods} pods at once ({par} parallel)", "wall", "s"), (f"  rmp -f of the {pods}", "rmwall", "s")]
rows += [(f"RSS daemon+monitors @{lv} pods", f"rss{lv}", "MB") for lv in levels]
rows += [(f"  PSS @{lv} pods", f"pss{lv}", "MB") for lv in levels]

print()
print(f"berthd vs containerd 1.6 + runc through crictl; busybox `sleep 3600`, PID mode CONTAINER; "
      f"N={runs} runs, {pods} pods; {os.cpu_count()} cores")
w = max([len(r[0]) for r in rows] + [len("shared floor (3 crictl + CNI ADD)")])
print(f"{'metric':<{w}} | {'berthd':>11} | {'containerd':>11} | {'ratio':>6}")
print(f"{'-' * w}-+-{'-' * 11}-+-{'-' * 11}-+-{'-' * 6}")
for label, key, unit in rows:
    r = ratio(key)
    print(f"{label:<{w}} | {fmt('berthd', key, unit):>11} | {fmt('containerd', key, unit):>11} | "
          f"{(f'{r:.2f}' if r is not None else '-'):>6}")
fl = res.get("floor")
if fl:
    print(f"{'shared floor (3 crictl + CNI ADD)':<{w}} | {fl['total'] * 1000:>8.1f} ms |"
          f" {'':>11} | {(fl['total'] / res['containerd']['median']) if res['containerd'].get('median') else 0:>6.2f}")
    print(f"{'  3 crictl calls':<{w}} | {fl['crictl'] * 1000:>8.1f} ms |")
    print(f"{'  CNI chain ADD':<{w}} | {fl['cni'] * 1000:>8.1f} ms |")
print()
top = max(levels)
for rt in RTS:
    p = res[rt].get(f"procs{top}")
    if p:
        per = ""
        if top and "rss0" in res[rt]:
            per = f"; {(res[rt][f'rss{top}'] - res[rt]['rss0']) / top / 1024:.1f} MB RSS per pod"
        print(f"{rt} @{top} pods: daemon {p[2] / 1024:.1f} MB + {p[0]} shims + {p[1]} pause processes{per}")
print("RSS = summed VmRSS (the issue's measure; shared pages count once per process); "
      "PSS splits shared pages among the processes")
print("note: containerd starts a pause container for every pod; berthd starts none when pid=CONTAINER")
print(f"note: berthd's image was pulled with {berth_pull}")
print(f"note: {shim_build}")
for n in notes:
    print("note:", n)

verdict = []
r = ratio("median")
verdict.append(f"median {'n/a' if r is None else f'{r:.2f}x'} (target <= 0.33x: "
               f"{'n/a' if r is None else ('met' if r <= 1 / 3 else 'NOT met')})")
if fl and res["containerd"].get("median"):
    verdict[-1] += (f"; the shared floor alone is {fl['total'] / res['containerd']['median']:.2f}x, "
                    f"berthd's own time {(res['berthd'].get('median', 0) - fl['total']) * 1000:.0f} ms vs "
                    f"containerd's {(res['containerd']['median'] - fl['total']) * 1000:.0f} ms "
                    f"({(res['berthd'].get('median', 0) - fl['total']) / (res['containerd']['median'] - fl['total']):.2f}x)")
r = ratio("rss50")
verdict.append(f"RSS@50 {'n/a' if r is None else f'{r:.3f}x'} (target <= 0.10x: "
               f"{'not measured (--pods < 50)' if r is None else ('met' if r <= 0.1 else 'NOT met')})")
r = ratio("pss50")
if r is not None:
    verdict[-1] += f", PSS@50 {r:.3f}x"
print("verdict: " + "; ".join(verdict))
sys.exit(1 if failed else 0)
PY
# In the background so that Ctrl-C or a TERM runs the cleanup at once.
PYPID=$!
wait "$PYPID"
