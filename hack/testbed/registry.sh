#!/usr/bin/env bash
# Two local OCI registries (Debian's docker-registry, distribution 2.8), run
# from our own config files, storing under _output/registry/:
#
#   127.0.0.1:5000   plain HTTP, anonymous, deletes enabled   (_output/registry/plain)
#   127.0.0.1:5443   TLS (self-signed CA) + htpasswd (bcrypt) (_output/registry/tls)
#
# Generated once and then reused: the CA (_output/registry/ca.crt), the server
# certificate (IP SAN 127.0.0.1, DNS localhost), the htpasswd file, and for the
# tests: credentials (user/pass files, auth.env, a containers auth.json) and a
# certs.d tree (_output/registry/certs.d/127.0.0.1:5443/ca.crt) for
# `skopeo --cert-dir` / containerd hosts.toml.
#
#   registry.sh up       start both (no-op for one already running), wait for /v2/
#   registry.sh down     stop exactly the two registries this script started
#   registry.sh status   each registry's catalog with tags
#   registry.sh env      BERTH_REGISTRY*, for eval
LOG_TAG=registry
. "$(dirname "$0")/../lib.sh"

REG_DIR=$OUT/registry
PLAIN_ADDR=127.0.0.1:5000
TLS_ADDR=127.0.0.1:5443
REG_USER=berth
REG_PASS=berth-test-pass
CA_CRT=$REG_DIR/ca.crt
CERT_DIR=$REG_DIR/certs.d/$TLS_ADDR     # containers-certs.d / skopeo --cert-dir layout

gen_certs() {
    [ -s "$CA_CRT" ] && [ -s "$REG_DIR/server.crt" ] && [ -s "$REG_DIR/server.key" ] && return 0
    log "generating the test CA and the server certificate"
    local tmp; tmp=$(mktemp -d)
    openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 3650 \
        -subj "/O=berth test bed/CN=berth test CA" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -keyout "$tmp/ca.key" -out "$tmp/ca.crt" 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -sha256 -subj "/O=berth test bed/CN=localhost" \
        -keyout "$tmp/server.key" -out "$tmp/server.csr" 2>/dev/null
    cat >"$tmp/ext.cnf" <<EOF
basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,DNS:localhost
EOF
    openssl x509 -req -sha256 -days 3650 -in "$tmp/server.csr" -CA "$tmp/ca.crt" -CAkey "$tmp/ca.key" \
        -CAcreateserial -extfile "$tmp/ext.cnf" -out "$tmp/server.crt" 2>/dev/null
    install -m 0600 "$tmp/ca.key" "$tmp/server.key" "$REG_DIR/"
    install -m 0644 "$tmp/ca.crt" "$tmp/server.crt" "$REG_DIR/"
    rm -rf "$tmp"
}

gen_auth() {
    # htpasswd -B: bcrypt, the only scheme distribution accepts.
    if [ ! -s "$REG_DIR/htpasswd" ] || ! htpasswd -vb "$REG_DIR/htpasswd" "$REG_USER" "$REG_PASS" >/dev/null 2>&1; then
        htpasswd -Bbc "$REG_DIR/htpasswd" "$REG_USER" "$REG_PASS" 2>/dev/null
    fi
    printf '%s\n' "$REG_USER" >"$REG_DIR/user"
    printf '%s\n' "$REG_PASS" >"$REG_DIR/pass"
    printf 'BERTH_REGISTRY_USER=%s\nBERTH_REGISTRY_PASS=%s\n' "$REG_USER" "$REG_PASS" >"$REG_DIR/auth.env"
    printf '{"auths":{"%s":{"auth":"%s"}}}\n' "$TLS_ADDR" "$(printf '%s:%s' "$REG_USER" "$REG_PASS" | base64 -w0)" >"$REG_DIR/auth.json"
    mkdir -p "$CERT_DIR"
    cp "$CA_CRT" "$CERT_DIR/ca.crt"
}

write_config() {   # write_config NAME ADDR [tls]
    local name=$1 addr=$2 tls=${3:-}
    mkdir -p "$REG_DIR/$name"
    {
        cat <<EOF
version: 0.1
log:
  level: info
  formatter: text
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $REG_DIR/$name
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: $addr
  secret: berth-testbed-$name
  headers:
    X-Content-Type-Options: [nosniff]
  debug:
    addr: ""
EOF
        if [ -n "$tls" ]; then
            cat <<EOF
  tls:
    certificate: $REG_DIR/server.crt
    key: $REG_DIR/server.key
auth:
  htpasswd:
    realm: berth-testbed
    path: $REG_DIR/htpasswd
EOF
        fi
    } >"$REG_DIR/$name.yml"
}

plain_up() { curl -fsS -o /dev/null "http://$PLAIN_ADDR/v2/"; }
tls_up() { curl -fsS -o /dev/null --cacert "$CA_CRT" -u "$REG_USER:$REG_PASS" "https://$TLS_ADDR/v2/"; }

start_one() {   # start_one NAME ADDR
    local name=$1 addr=$2
    if bg_running "registry-$name"; then return 0; fi
    port_listening "${addr##*:}" && die "port ${addr##*:} is taken by a process this test bed did not start (ss -ltnp 'sport = :${addr##*:}')"
    log "starting registry-$name on $addr"
    bg_start "registry-$name" docker-registry serve "$REG_DIR/$name.yml"
}

# curl_reg NAME PATH: GET a registry API path with the right address, CA and credentials.
curl_reg() {
    case $1 in
    plain) curl -fsS "http://$PLAIN_ADDR$2" ;;
    tls) curl -fsS --cacert "$CA_CRT" -u "$REG_USER:$REG_PASS" "https://$TLS_ADDR$2" ;;
    esac
}

show_catalog() {   # show_catalog NAME ADDR
    local name=$1 addr=$2 repos r tags
    if ! bg_running "registry-$name"; then echo "registry $name ($addr): not running"; return 0; fi
    echo "registry $name ($addr): running, pid $(bg_pid "registry-$name")"
    repos=$(curl_reg "$name" "/v2/_catalog?n=1000" | jq -r '.repositories[]?') || { echo "  (catalog unreadable)"; return 0; }
    [ -n "$repos" ] || { echo "  (empty)"; return 0; }
    for r in $repos; do
        tags=$(curl_reg "$name" "/v2/$r/tags/list" | jq -r '(.tags // []) | sort | join(" ")')
        printf '  %-60s %s\n' "$r" "$tags"
    done
}

case "${1:-}" in
up)
    need_root up
    command -v docker-registry >/dev/null || ensure_pkgs docker-registry
    command -v htpasswd >/dev/null || ensure_pkgs apache2-utils
    command -v openssl >/dev/null || ensure_pkgs openssl
    mkdir -p "$REG_DIR"
    gen_certs
    gen_auth
    write_config plain "$PLAIN_ADDR"
    write_config tls "$TLS_ADDR" tls
    start_one plain "$PLAIN_ADDR"
    start_one tls "$TLS_ADDR"
    wait_for 30 "registry on $PLAIN_ADDR (log: $LOGDIR/registry-plain.log)" plain_up
    wait_for 30 "registry on $TLS_ADDR (log: $LOGDIR/registry-tls.log)" tls_up
    log "registries up: http://$PLAIN_ADDR, https://$TLS_ADDR (CA $CA_CRT, user $REG_USER)"
    ;;
down)
    for n in plain tls; do
        if bg_running "registry-$n"; then log "stopping registry-$n"; fi
        bg_stop "registry-$n"
    done
    ;;
status)
    show_catalog plain "$PLAIN_ADDR"
    show_catalog tls "$TLS_ADDR"
    ;;
env)
    echo "export BERTH_REGISTRY=$PLAIN_ADDR"
    echo "export BERTH_REGISTRY_TLS=$TLS_ADDR"
    echo "export BERTH_REGISTRY_CA=$CA_CRT"
    echo "export BERTH_REGISTRY_CERT_DIR=$CERT_DIR"
    echo "export BERTH_REGISTRY_USER=$REG_USER"
    echo "export BERTH_REGISTRY_PASS=$REG_PASS"
    echo "export BERTH_REGISTRY_AUTHFILE=$REG_DIR/auth.json"
    ;;
*) echo "usage: $0 up|down|status|env" >&2; exit 2 ;;
esac
