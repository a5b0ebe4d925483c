#!/usr/bin/env bash
# Checks the README's run command as a newcomer would use it, without a window:
# `run-demo.sh` (detached, on already built binaries) brings up the demo directory,
# the organisation CA and two enrolled virtual cards; the demo agents log in with the
# PINs the README states; a wrong PIN reports the tries left; the audit log verifies;
# the desk's records reach the demo collector (`resetdesk sync`) and an auditor's
# `audit verify --collector` proves them in its current tree; the collector's desk
# services accept the demo desk's key; removing a card is seen
# as a removal. Run it holding the virtual-reader lock:
#   flock /tmp/resetdesk-virtual-readers.lock bash scripts/demo-smoke.sh [BIN_DIR]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
BIN="$(cd "${1:-target/debug}" && pwd)"
DATA="$(mktemp -d /tmp/resetdesk-demo-smoke.XXXXXX)"
out="$DATA/run-demo.log"

fail() { echo "demo-smoke: FAILED: $*" >&2; exit 1; }

PORT="${RESETDESK_COLLECTOR_PORT:-18443}"
RESETDESK_COLLECTOR_PORT="$PORT" RESETDESK_DATA_DIR="$DATA" RESETDESK_DEMO_DETACH=1 RESETDESK_DEMO_BIN="$BIN" bash scripts/run-demo.sh >"$out" 2>&1 ||
  { cat "$out" >&2; fail "run-demo.sh exited non-zero"; }
pids=$(sed -n "s/.*virtual cards' pids //p" "$out")
[[ -n "$pids" && "$pids" != none ]] || { cat "$out" >&2; fail "run-demo.sh started no virtual card"; }
collector_pid=$(sed -n "s/.*collector pid \([0-9]*\);.*/\1/p" "$out")
[[ -n "$collector_pid" ]] || { cat "$out" >&2; fail "run-demo.sh started no collector"; }
trap 'kill $pids $collector_pid 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$DATA"' EXIT

login() { printf '%s\n' "$2" | "$BIN/resetdesk" token check-login --data-dir "$DATA" --reader "$1" 2>&1; }

r=$(login "Virtual PCD 00 00" 246810) || fail "carol's login: $r"
grep -q "logged in as carol" <<<"$r" || fail "expected carol: $r"
grep -q "virtual token — demo only" <<<"$r" || fail "the virtual token is not labelled: $r"
echo "ok: $r"
r=$(login "Virtual PCD 00 01" 135791) || fail "dave's login: $r"
grep -q "logged in as dave" <<<"$r" || fail "expected dave: $r"
echo "ok: $r"
if r=$(login "Virtual PCD 00 00" 000000); then fail "a wrong PIN logged in: $r"; fi
grep -q "2 tries left" <<<"$r" || fail "a wrong PIN must say the tries left: $r"
echo "ok: wrong PIN refused ($r)"
r=$(login "Virtual PCD 00 00" 246810) || fail "carol's second login: $r"

s=$("$BIN/resetdesk" sync --data-dir "$DATA" 2>&1) || fail "resetdesk sync: $s"
grep -q "every record up to seq" <<<"$s" || fail "sync did not cover every record: $s"
echo "ok: sync: $s"
vkey=$(cat "$DATA/collector/log.vkey")
v=$("$BIN/resetdesk" audit verify --data-dir "$DATA" --collector-vkey "$vkey" \
  --collector "https://localhost:$PORT" --collector-ca "$DATA/collector/tls/ca.pem" 2>&1) || fail "audit verify: $v"
grep -q "every receipted record is in it" <<<"$v" || fail "audit verify --collector: $v"
echo "ok: audit verify: $(head -1 <<<"$v"); $(tail -1 <<<"$v")"

# The collector's desk services answer this desk's key (approval links, cross-desk
# history, the Admin screen's alerts), and the security team's alert listing runs.
who=$(curl -fsS --cacert "$DATA/collector/tls/ca.pem" -H "Authorization: Bearer $(cat "$DATA/collector/desk.key")" \
  "https://localhost:$PORT/desk/whoami") || fail "the demo desk key is not accepted by the collector"
grep -q '"desk":"demo-desk"' <<<"$who" || fail "the collector named another desk: $who"
grep -q '^desk_key_file = ' "$DATA/resetdesk.toml" || fail "the demo config has no [collector] desk_key_file"
a=$("$BIN/resetdesk-collector" alerts --config "$DATA/collector/collector.toml" 2>&1) || fail "resetdesk-collector alerts: $a"
echo "ok: the collector's desk services know this desk ($who); alerts listed"

first_pid=${pids%% *}
kill "$first_pid"
# Wait (up to 10 s) until pcscd reports the reader empty: the card's removal event.
# (The listing is read whole before grep looks at it: `grep -q` stops reading at the
# first match, and under pipefail the writer's broken pipe would fail the check.)
reader_empty() {
  local listing
  listing=$("$BIN/resetdesk" token list 2>/dev/null) || true
  grep -q '^Virtual PCD 00 00 \[virtual\]: empty' <<<"$listing"
}
for _ in $(seq 1 100); do
  reader_empty && break
  sleep 0.1
done
reader_empty || fail "the card was stopped but pcscd still reports it: $("$BIN/resetdesk" token list 2>&1)"
if r=$(login "Virtual PCD 00 00" 246810); then fail "a login worked after the card was removed: $r"; fi
echo "ok: removed card refused ($r)"
echo "demo-smoke: passed"
