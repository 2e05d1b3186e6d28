#!/usr/bin/env bash
# Cold pull+unpack benchmark: berth vs containerd (ctr, own instance) vs
# skopeo (download only), in the same run, against the test bed's plain
# registry. Prints per-run times, medians, ratios to containerd, MB/s, and
# the single-core floor (gzip -dc | tar x of the same layers, in order).
#
#   hack/bench-images.sh [runs]        (default 3; needs hack/testbed.sh up, root)
#
# The image (~300 MB compressed, 8 layers: one large incompressible file and
# ~2000 small text files each) is built once into _output/bench-images/ and
# pushed as 127.0.0.1:5000/bench/big:latest.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${BERTH_OUTPUT:-$ROOT/_output}
RUNS=${1:-3}
REG=${BERTH_REGISTRY:-127.0.0.1:5000}
IMG=$REG/bench/big:latest
BDIR=$OUT/bench-images
WORK=$(mktemp -d /var/tmp/berth-bench.XXXXXX)
CTRD_PID=
cleanup() {
    [ -n "$CTRD_PID" ] && kill "$CTRD_PID" 2>/dev/null && wait "$CTRD_PID" 2>/dev/null || true
    # containerd leaves overlay mounts of snapshots only when containers run; none here.
    rm -rf "$WORK"
}
trap cleanup EXIT

[ "$(id -u)" = 0 ] || { echo "bench-images: run as root" >&2; exit 1; }
curl -fsS "http://$REG/v2/" >/dev/null || { echo "bench-images: registry $REG down: run hack/testbed.sh up" >&2; exit 1; }
for t in skopeo ctr containerd python3; do command -v $t >/dev/null || { echo "bench-images: $t missing" >&2; exit 1; }; done

# --- the image ---------------------------------------------------------------
if [ ! -f "$BDIR/layout/index.json" ]; then
    echo "building the benchmark image in $BDIR (once)"
    mkdir -p "$BDIR"
    python3 - "$BDIR/layout" <<'EOF'
import gzip, hashlib, io, json, os, random, sys, tarfile, time
out = sys.argv[1]
os.makedirs(f"{out}/blobs/sha256", exist_ok=True)
rnd = random.Random(42)
words = [("".join(rnd.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rnd.randint(3, 9)))) for _ in range(3000)]
def blob(data):
    d = hashlib.sha256(data).hexdigest()
    open(f"{out}/blobs/sha256/{d}", "wb").write(data)
    return "sha256:" + d, len(data)
layers, diffs = [], []
for n in range(8):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        def add(name, data, mode=0o644):
            ti = tarfile.TarInfo(name); ti.size = len(data); ti.mode = mode; ti.mtime = 1767225600
            t.addfile(ti, io.BytesIO(data))
        d = tarfile.TarInfo(f"layer{n}"); d.type = tarfile.DIRTYPE; d.mode = 0o755; d.mtime = 1767225600
        t.addfile(d)
        add(f"layer{n}/big.bin", os.urandom(30 << 20))
        for i in range(2000):
            text = " ".join(rnd.choice(words) for _ in range(rnd.randint(100, 1500))).encode()
            add(f"layer{n}/d{i % 40}/f{i}.txt", text)
    raw = buf.getvalue()
    diffs.append("sha256:" + hashlib.sha256(raw).hexdigest())
    gz = gzip.compress(raw, compresslevel=6, mtime=0)
    dg, sz = blob(gz)
    layers.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": dg, "size": sz})
cfg = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["/bin/sh"]},
                  "rootfs": {"type": "layers", "diff_ids": diffs}}, sort_keys=True).encode()
cd, cs = blob(cfg)
man = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                  "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cs},
                  "layers": layers}, sort_keys=True).encode()
md, ms = blob(man)
json.dump({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
           "digest": md, "size": ms, "annotations": {"org.opencontainers.image.ref.name": "big"}}]},
          open(f"{out}/index.json", "w"))
open(f"{out}/oci-layout", "w").write('{"imageLayoutVersion":"1.0.0"}')
print("layers:", sum(l["size"] for l in layers) / 1e6, "MB compressed")
EOF
fi
skopeo copy -q --dest-tls-verify=false "oci:$BDIR/layout:big" "docker://$IMG"
SIZE=$(python3 -c "
import json,sys; d='$BDIR/layout'; ix=json.load(open(d+'/index.json'))
m=json.load(open(d+'/blobs/sha256/'+ix['manifests'][0]['digest'][7:]))
print(sum(l['size'] for l in m['layers']))")
LAYERS=$(python3 -c "
import json; d='$BDIR/layout'; ix=json.load(open(d+'/index.json'))
m=json.load(open(d+'/blobs/sha256/'+ix['manifests'][0]['digest'][7:]))
print(' '.join(d+'/blobs/sha256/'+l['digest'][7:] for l in m['layers']))")

# --- tools ---------------------------------------------------------------------
cargo build -q --release -p berth-images --example images --manifest-path "$ROOT/Cargo.toml"
BERTH=${CARGO_TARGET_DIR:-$ROOT/target}/release/examples/images

start_containerd() {
    local d=$1
    mkdir -p "$d"
    cat >"$d/config.toml" <<EOF
version = 2
root = "$d/root"
state = "$d/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$d/c.sock"
EOF
    containerd --config "$d/config.toml" >"$d/log" 2>&1 &
    CTRD_PID=$!
    for _ in $(seq 100); do [ -S "$d/c.sock" ] && return 0; sleep 0.1; done
    echo "containerd did not start: $(tail -5 "$d/log")" >&2; exit 1
}
stop_containerd() { kill "$CTRD_PID"; wait "$CTRD_PID" 2>/dev/null || true; CTRD_PID=; }

now() { date +%s.%N; }
declare -A T
run() { # name, command...
    local name=$1; shift
    sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true
    local a b; a=$(now); "$@" >/dev/null; b=$(now)
    T[$name]+="$(echo "$b - $a" | bc) "
}

for i in $(seq "$RUNS"); do
    echo "run $i/$RUNS"
    d=$WORK/berth-$i; run berth "$BERTH" --root "$d" --hosts-dir /nonexistent pull -q --plain-http "$REG" "$IMG"; rm -rf "$d"
    d=$WORK/berth-nosync-$i; run berth-nosync "$BERTH" --root "$d" --hosts-dir /nonexistent pull -q --no-sync --plain-http "$REG" "$IMG"; rm -rf "$d"
    d=$WORK/ctrd-$i; start_containerd "$d"
    run containerd ctr -a "$d/c.sock" -n bench images pull --plain-http "$IMG"
    stop_containerd; rm -rf "$d"
    d=$WORK/skopeo-$i; run skopeo skopeo copy -q --src-tls-verify=false "docker://$IMG" "dir:$d"; rm -rf "$d"
    d=$WORK/floor-$i; mkdir -p "$d"
    run floor bash -c "for l in $LAYERS; do gzip -dc \$l | tar x -C $d; done"; rm -rf "$d"
done

median() { tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
echo
printf "%-14s %-40s %8s %9s %8s\n" tool "runs (s)" median "MB/s" "vs ctrd"
C=$(echo "${T[containerd]}" | median)
for k in berth berth-nosync containerd skopeo floor; do
    m=$(echo "${T[$k]}" | median)
    printf "%-14s %-40s %8.2f %9.1f %8.2f\n" "$k" "${T[$k]}" "$m" "$(echo "$SIZE / 1000000 / $m" | bc -l)" "$(echo "$m / $C" | bc -l)"
done
F=$(echo "${T[floor]}" | median); B=$(echo "${T[berth]}" | median)
printf "\nimage: %.1f MB compressed, 8 layers; berth/floor = %.2f (floor = gzip -dc | tar x, one core, layers in order)\n" \
    "$(echo "$SIZE / 1000000" | bc -l)" "$(echo "$B / $F" | bc -l)"
