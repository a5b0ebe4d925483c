#!/usr/bin/env bash
# Sets up a Debian 12 machine (as root) and runs ResetDesk on the embedded default:
# the SQLite directory with the demo organisation, and — when no real YubiKey is
# plugged in — two virtual PIV cards enrolled for the demo agents:
#   reader "Virtual PCD 00 00": carol (admin agent), PIN 246810
#   reader "Virtual PCD 00 01": dave  (admin agent, the co-signer), PIN 135791
#
#   bash scripts/run-demo.sh
#
# Environment: RESETDESK_DATA_DIR (default /var/lib/resetdesk-demo),
# RESETDESK_RUN_DIR (default /tmp/resetdesk-run), RESETDESK_DEMO_DETACH=1 to start
# everything and return without running the app window (for scripts and tests; the
# virtual cards and the collector keep running: the last line names their pids),
# RESETDESK_DEMO_BIN=DIR to use already built binaries (e.g. target/debug) instead
# of building the release ones, RESETDESK_COLLECTOR_PORT (default 8443).
#
# It also runs a local audit collector (resetdesk-collector on SQLite, a demo TLS CA,
# in $RESETDESK_DATA_DIR/collector) and points the desk's [collector] at it, so the
# app's sync state is live: records go up as they are written, receipts come back.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
DATA="${RESETDESK_DATA_DIR:-/var/lib/resetdesk-demo}"
export RESETDESK_RUN_DIR="${RESETDESK_RUN_DIR:-/tmp/resetdesk-run}"
mkdir -p "$RESETDESK_RUN_DIR"
# Demo only: the organisation CA's passphrase and the demo agents' PINs/PUKs are public.
DEMO_CA_PASSPHRASE="resetdesk-demo-ca"
CAROL_PIN=246810 CAROL_PUK=97531864
DAVE_PIN=135791 DAVE_PUK=86420975

say() { printf 'run-demo: %s\n' "$*"; }
# Wait (up to 10 s) until the log has the line; fail if the process ends first.
wait_for_line() { # pid log pattern what
  for _ in $(seq 1 100); do
    grep -q "$3" "$2" && return 0
    kill -0 "$1" 2>/dev/null || { cat "$2" >&2; exit 1; }
    sleep 0.1
  done
  echo "run-demo: $4 did not start" >&2
  cat "$2" >&2
  exit 1
}


bash scripts/setup-debian.sh
# shellcheck source=ensure-rust.sh
source scripts/ensure-rust.sh && ensure_rust

if [[ -n "${RESETDESK_DEMO_BIN:-}" ]]; then
  BIN="$(cd "$RESETDESK_DEMO_BIN" && pwd)"
else
  say "building (release; the first build takes a few minutes)"
  cargo build --release --locked -p resetdesk -p resetdesk-app -p virtual-yubikey -p resetdesk-collector --bins
  BIN="$ROOT/target/release"
fi

"$BIN/resetdesk" demo init --data-dir "$DATA"
CONFIG="$DATA/resetdesk.toml"
if [[ ! -f "$DATA/ca/ca.pem" ]]; then
  printf '%s\n' "$DEMO_CA_PASSPHRASE" | "$BIN/resetdesk" ca init --data-dir "$DATA"
fi

bash scripts/pcscd.sh start

pids=()          # the virtual cards
collector_pid=""
cleanup() {
  for p in "${pids[@]}" $collector_pid; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}" $collector_pid; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

# The local audit collector (demo TLS, SQLite). Its database and key live beside the
# desk's data: a desk witnesses the collector's tree, so a fresh collector database
# under the same key would (rightly) be reported as a fork.
COLLECTOR_DIR="$DATA/collector"
COLLECTOR_PORT="${RESETDESK_COLLECTOR_PORT:-8443}"
mkdir -p "$COLLECTOR_DIR"
[[ -f "$COLLECTOR_DIR/tls/ca.pem" ]] || "$BIN/resetdesk-collector" demo-tls "$COLLECTOR_DIR/tls" >/dev/null
cat >"$COLLECTOR_DIR/collector.toml" <<TOML
listen = "127.0.0.1:$COLLECTOR_PORT"
origin = "localhost/resetdesk-demo"
database = "collector.db"
signing_key_file = "log.key"
org_ca_file = "$DATA/ca/ca.pem"
tls_cert_file = "tls/server.pem"
tls_key_file = "tls/server.key"

# Demo thresholds, so the Admin screen shows an alert within a demo's few resets: the
# second reset of one account in a day, a desk silent for 10 minutes (and, as in
# production, any reset outside 07:00-19:00 UTC on weekdays).
[anomaly.account_resets]
max = 1
window_minutes = 1440
[anomaly.heartbeat]
max_silence_seconds = 600
check_every_seconds = 30
TOML
[[ -f "$COLLECTOR_DIR/log.key" ]] || "$BIN/resetdesk-collector" init --config "$COLLECTOR_DIR/collector.toml" >/dev/null
VKEY="$(cat "$COLLECTOR_DIR/log.vkey")"
# The desk's key for the collector's desk services (manager approval by link).
[[ -f "$COLLECTOR_DIR/desk.key" ]] ||
  "$BIN/resetdesk-collector" desk-key add --config "$COLLECTOR_DIR/collector.toml" demo-desk --out "$COLLECTOR_DIR/desk.key"
if ! grep -q '^\[collector\]' "$CONFIG"; then
  printf '\n# The local demo collector started by scripts/run-demo.sh.\n[collector]\nurl = "https://localhost:%s"\nverifier_key = "%s"\nca_file = "%s"\ndesk_key_file = "%s"\n' \
    "$COLLECTOR_PORT" "$VKEY" "$COLLECTOR_DIR/tls/ca.pem" "$COLLECTOR_DIR/desk.key" >>"$CONFIG"
fi
collector_log="$RESETDESK_RUN_DIR/collector.log"
"$BIN/resetdesk-collector" serve --config "$COLLECTOR_DIR/collector.toml" >"$collector_log" 2>&1 &
collector_pid=$!
wait_for_line "$collector_pid" "$collector_log" "listening on" "the collector"
say "audit collector on https://localhost:$COLLECTOR_PORT (verifier key $VKEY; CA $COLLECTOR_DIR/tls/ca.pem)"

# A real key: any reader that is not a vpcd one and holds a PIV card.
listing=$("$BIN/resetdesk" token list 2>/dev/null) || true
if grep -v '\[virtual\]' <<<"$listing" | grep -q 'YubiKey serial'; then
  say "a real YubiKey is present: using it (enrol it with \`resetdesk token enroll\` if needed)"
else
  say "no real YubiKey found: starting two virtual PIV cards (virtual token — demo only)"
  start_card() { # port serial agent pin puk reader firmware
    local log="$RESETDESK_RUN_DIR/virtual-yubikey-$1.log"
    "$BIN/virtual-yubikey" --port "$1" --serial "$2" --firmware "$7" >"$log" 2>&1 &
    pids+=($!)
    wait_for_line "${pids[-1]}" "$log" "inserted" "the virtual card on port $1"
    # The virtual card keeps its keys in RAM: enrol it afresh at every start. The
    # previous run's keys are gone with that run's card process, so nobody can sign
    # with them; their audit records still verify. (Revoking them is an admin's
    # signed act: `resetdesk token revoke --reader ...` with an admin's card.)
    printf '%s\n' "$DEMO_CA_PASSPHRASE" "$4" "$5" |
      "$BIN/resetdesk" token enroll --data-dir "$DATA" --agent "$3" --reader "$6" --config "$CONFIG" --allow-unattested >/dev/null
    say "virtual card in \"$6\" (YubiKey $7) enrolled for $3 (PIN $4)"
  }
  # One card of each kind: 5.7 ships an AES-192 management key, 5.4 a 3DES one.
  start_card 35963 1000001 carol "$CAROL_PIN" "$CAROL_PUK" "Virtual PCD 00 00" 5.7
  start_card 35964 1000002 dave "$DAVE_PIN" "$DAVE_PUK" "Virtual PCD 00 01" 5.4
fi

if [[ "${RESETDESK_DEMO_DETACH:-0}" == 1 ]]; then
  trap - EXIT
  say "ready (detached): collector pid $collector_pid; virtual cards' pids ${pids[*]:-none}"
  exit 0
fi

say "starting the app (config $CONFIG)"
if [[ -n "${DISPLAY:-}" ]]; then
  "$BIN/resetdesk-app" --config "$CONFIG"
else
  say "no DISPLAY: running the window under Xvfb (scripts/screenshot.sh takes a picture)"
  xvfb-run -a -s "-screen 0 1280x800x24 -nolisten tcp" "$BIN/resetdesk-app" --config "$CONFIG"
fi
