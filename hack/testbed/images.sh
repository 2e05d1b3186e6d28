#!/usr/bin/env bash
# Test images: built offline and deterministically by hack/images/build.py into
# OCI image layouts under _output/images/, then pushed to both test registries
# (127.0.0.1:5000 plain, 127.0.0.1:5443 TLS+auth) with skopeo. A push is
# skipped when the registry already serves that tag at that manifest digest.
# What each image holds and which critest spec needs it: hack/images/IMAGES.md.
#
#   images.sh up       build (fetching Debian's dynamic busybox and nginx .debs once
#                      into _output/images/cache/), build the static pause and nnp
#                      binaries, push what is missing or stale
#   images.sh build    build only (no registry needed)
#   images.sh push     push only
#   images.sh down     nothing to stop (images are data; the registries own them)
#   images.sh status   every expected image and whether each registry serves it
#   images.sh env      BERTH_IMAGES_DIR, BERTH_*_IMAGE, for eval
LOG_TAG=images
. "$(dirname "$0")/../lib.sh"

IMG_DIR=$OUT/images
CACHE=$IMG_DIR/cache
LIST=$IMG_DIR/images.json
REG_DIR=$OUT/registry
PLAIN=127.0.0.1:5000
TLS=127.0.0.1:5443
WEB_BODY=berth-web-ok
PY=/usr/bin/python3; [ -x "$PY" ] || PY=python3

ACCEPT='application/vnd.oci.image.index.v1+json,application/vnd.oci.image.manifest.v1+json,application/vnd.docker.distribution.manifest.list.v2+json,application/vnd.docker.distribution.manifest.v2+json'

# --- inputs -----------------------------------------------------------------------

# deb_extract PKG: Debian's PKG .deb, downloaded once into the cache and
# extracted to $CACHE/root-PKG (binaries used only inside images; never installed).
deb_extract() {
    local pkg=$1 deb
    mkdir -p "$CACHE/debs"
    local debs=("$CACHE/debs/${pkg}_"*.deb)
    deb=${debs[0]}
    if [ ! -f "$deb" ]; then
        log "downloading Debian's $pkg .deb (used inside images only)"
        (cd "$CACHE/debs" && apt-get download -q "$pkg" >/dev/null 2>&1) \
            || { apt-get update -q >/dev/null && (cd "$CACHE/debs" && apt-get download -q "$pkg" >/dev/null 2>&1); } \
            || die "apt-get download $pkg failed"
        debs=("$CACHE/debs/${pkg}_"*.deb)
        deb=${debs[0]}
        [ -f "$deb" ] || die "apt-get download $pkg left no .deb in $CACHE/debs"
    fi
    if [ ! -d "$CACHE/root-$pkg" ] || [ "$deb" -nt "$CACHE/root-$pkg" ]; then
        rm -rf "$CACHE/root-$pkg"
        dpkg-deb -x "$deb" "$CACHE/root-$pkg"
    fi
}

# The project's pause, built static (crt-static) from the workspace into the
# normal target dir, then copied: a later plain `cargo build` may overwrite
# target/release/berth-pause with a dynamic one.
build_pause() {
    local bin=${CARGO_TARGET_DIR:-$BERTH_ROOT/target}/release/berth-pause
    log "building berth-pause (static)"
    if (cd "$BERTH_ROOT" && cargo rustc -q -p berth-cri --release --bin berth-pause -- -C target-feature=+crt-static) \
        && file "$bin" | grep -q 'static'; then
        install -m 0755 "$bin" "$CACHE/berth-pause"
    elif [ -x "$CACHE/berth-pause" ]; then
        log "warning: building berth-pause failed; reusing the last good one ($CACHE/berth-pause)"
    else
        die "cannot build a static berth-pause (cargo rustc -p berth-cri --release --bin berth-pause -- -C target-feature=+crt-static)"
    fi
    file "$CACHE/berth-pause" | grep -q static || die "$CACHE/berth-pause is not statically linked"
}

build_nnp() {
    local src=$BERTH_ROOT/hack/images/nnp.c
    if [ ! -x "$CACHE/nnp" ] || [ "$src" -nt "$CACHE/nnp" ]; then
        command -v gcc >/dev/null || ensure_pkgs build-essential
        gcc -static -O2 -s -o "$CACHE/nnp.tmp" "$src" && mv "$CACHE/nnp.tmp" "$CACHE/nnp"
    fi
}

do_build() {
    command -v skopeo >/dev/null || ensure_pkgs skopeo
    if ! { [ -x /bin/busybox ] && file -L /bin/busybox | grep -q static; }; then ensure_pkgs busybox-static; fi
    command -v pgrep >/dev/null || ensure_pkgs procps
    command -v ipcs >/dev/null || ensure_pkgs util-linux
    mkdir -p "$CACHE"
    deb_extract busybox
    deb_extract nginx
    build_pause
    build_nnp
    log "building the test images into $IMG_DIR"
    "$PY" "$BERTH_ROOT/hack/images/build.py" --out "$IMG_DIR" \
        --busybox-static /bin/busybox \
        --busybox-dynamic "$CACHE/root-busybox/bin/busybox" \
        --nginx "$CACHE/root-nginx/usr/sbin/nginx" \
        --pause "$CACHE/berth-pause" --nnp "$CACHE/nnp" \
        --web-body "$WEB_BODY" >"$IMG_DIR/build.log" \
        || die "build.py failed"
    log "built $(jq length "$LIST") image tags"
}

# --- registries ---------------------------------------------------------------------

# remote_digest ADDR REPO TAG: the manifest digest the registry serves, or nothing.
remote_digest() {
    local addr=$1 repo=$2 tag=$3
    local args=(-fsSI -H "Accept: $ACCEPT")
    if [ "$addr" = "$TLS" ]; then
        args+=(--cacert "$REG_DIR/ca.crt" -u "$(cat "$REG_DIR/user"):$(cat "$REG_DIR/pass")" "https://$addr/v2/$repo/manifests/$tag")
    else
        args+=("http://$addr/v2/$repo/manifests/$tag")
    fi
    curl "${args[@]}" 2>/dev/null | tr -d '\r' | awk -F': ' 'tolower($1)=="docker-content-digest"{print $2}' || true
}

push_one() {   # push_one ADDR REPO TAG LAYOUT DIGEST
    local addr=$1 repo=$2 tag=$3 layout=$4 digest=$5 have
    have=$(remote_digest "$addr" "$repo" "$tag")
    if [ "$have" = "$digest" ]; then return 0; fi
    log "pushing $repo:$tag to $addr${have:+ (was $have)}"
    local dest=(--dest-tls-verify=false)
    if [ "$addr" = "$TLS" ]; then
        dest=(--dest-cert-dir "$REG_DIR/certs.d/$TLS" --dest-creds "$(cat "$REG_DIR/user"):$(cat "$REG_DIR/pass")")
    fi
    skopeo copy -q --all --preserve-digests "${dest[@]}" "oci:$layout:$tag" "docker://$addr/$repo:$tag" \
        || die "skopeo copy $repo:$tag -> $addr failed"
    have=$(remote_digest "$addr" "$repo" "$tag")
    [ "$have" = "$digest" ] || die "$addr serves $repo:$tag as '$have', expected $digest"
}

do_push() {
    [ -s "$LIST" ] || die "no $LIST; run: $0 build"
    curl -fsS -o /dev/null "http://$PLAIN/v2/" 2>/dev/null || bash "$BERTH_ROOT/hack/testbed/registry.sh" up
    local repo tag layout digest
    while read -r repo tag layout digest; do
        push_one "$PLAIN" "$repo" "$tag" "$layout" "$digest"
        push_one "$TLS" "$repo" "$tag" "$layout" "$digest"
    done < <(jq -r '.[] | "\(.repo) \(.tag) \(.layout) \(.digest)"' "$LIST")
    log "both registries serve all $(jq length "$LIST") image tags"
}

do_status() {
    if [ ! -s "$LIST" ]; then echo "images: not built (hack/testbed.sh images up)"; return 0; fi
    echo "images: $(jq length "$LIST") tags built under $IMG_DIR (details: hack/images/IMAGES.md)"
    printf '  %-58s %-19s %-9s %-9s %s\n' IMAGE DIGEST "$PLAIN" "$TLS" SIZE
    local repo tag digest size p t
    while read -r repo tag digest size; do
        p=$(remote_digest "$PLAIN" "$repo" "$tag"); t=$(remote_digest "$TLS" "$repo" "$tag")
        mark() { if [ "$1" = "$digest" ]; then echo ok; elif [ -n "$1" ]; then echo stale; else echo missing; fi; }
        printf '  %-58s %-19s %-9s %-9s %s\n' "$repo:$tag" "${digest:0:19}" "$(mark "$p")" "$(mark "$t")" "$size"
    done < <(jq -r '.[] | "\(.repo) \(.tag) \(.digest) \(.size)"' "$LIST")
    echo "  (not built: gcr.io/k8s-staging-cri-tools/test-image-digest@sha256:9700f9a2…, pinned by digest upstream; cannot be rebuilt offline)"
}

case "${1:-}" in
up) need_root up; do_build; do_push ;;
build) need_root build; do_build ;;
push) do_push ;;
down) ;;
status) do_status ;;
env)
    echo "export BERTH_IMAGES_DIR=$IMG_DIR"
    echo "export BERTH_IMAGES_LIST=$LIST"
    echo "export BERTH_BUSYBOX_IMAGE=$PLAIN/library/busybox:latest"
    echo "export BERTH_BUSYBOX_IMAGE_TLS=$TLS/library/busybox:latest"
    echo "export BERTH_WEB_IMAGE=$PLAIN/berth/web:latest"
    echo "export BERTH_WEB_BODY=$WEB_BODY"
    echo "export BERTH_PAUSE_IMAGE=$PLAIN/berth/pause:latest"
    echo "export BERTH_CRITEST_BUSYBOX_IMAGE=registry.k8s.io/e2e-test-images/busybox:1.29-2"
    ;;
*) echo "usage: $0 up|build|push|down|status|env" >&2; exit 2 ;;
esac
