#!/usr/bin/env bash
# Starts the built resetdesk-collector on loopback the way an operator would (demo
# TLS CA, init, serve) and fetches its signed checkpoint over HTTPS with curl,
# pinning the demo CA. Usage: bash scripts/collector-smoke.sh [TARGET_DIR]
set -euo pipefail
BIN="${1:-target/debug}/resetdesk-collector"
DIR="$(mktemp -d /tmp/resetdesk-collector-smoke.XXXXXX)"
PID=""
cleanup() {
  if [[ -n "$PID" ]]; then kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; fi
  rm -rf "$DIR"
}
trap cleanup EXIT

"$BIN" demo-tls "$DIR/tls" >/dev/null
# The demo's organisation CA: any ECDSA P-256 CA certificate will do for a smoke run.
cp "$DIR/tls/ca.pem" "$DIR/org-ca.pem"
cat >"$DIR/collector.toml" <<TOML
listen = "127.0.0.1:0"
origin = "collector.localhost/resetdesk"
database = "collector.db"
signing_key_file = "log.key"
org_ca_file = "org-ca.pem"
tls_cert_file = "tls/server.pem"
tls_key_file = "tls/server.key"
TOML
VKEY="$("$BIN" init --config "$DIR/collector.toml")"
"$BIN" serve --config "$DIR/collector.toml" >"$DIR/out" 2>"$DIR/err" &
PID=$!
for _ in $(seq 50); do grep -q listening "$DIR/out" 2>/dev/null && break; sleep 0.1; done
PORT="$(grep -o '127.0.0.1:[0-9]*' "$DIR/out" | cut -d: -f2)"
[[ -n "$PORT" ]] || { cat "$DIR/err" >&2; echo "collector-smoke: the collector did not start" >&2; exit 1; }
CP="$(curl -sS --fail --cacert "$DIR/tls/ca.pem" "https://localhost:$PORT/checkpoint")"
[[ "$(printf '%s\n' "$CP" | sed -n 1p)" == "collector.localhost/resetdesk" ]] || { echo "bad checkpoint: $CP" >&2; exit 1; }
[[ "$(printf '%s\n' "$CP" | sed -n 2p)" == "0" ]] || { echo "bad checkpoint size: $CP" >&2; exit 1; }
[[ "$(curl -sS --fail --cacert "$DIR/tls/ca.pem" "https://localhost:$PORT/verifier-key")" == "$VKEY" ]]
if curl -sS -o /dev/null "http://127.0.0.1:$PORT/checkpoint" 2>/dev/null; then
  echo "collector-smoke: the collector answered plain HTTP" >&2; exit 1
fi
echo "ok: resetdesk-collector serves a signed checkpoint over TLS only (verifier key $VKEY)"
