#!/usr/bin/env bash
# Runs every benchmark target; each prints its numbers, goals and ratios.
#   scripts/bench.sh           full runs
#   scripts/bench.sh --quick   short runs (CI): fewer iterations, same measurements
# Needs pcscd with the vpcd readers for the token benchmarks (scripts/pcscd.sh start);
# benches/ldap_search.rs starts its own slapd (scripts/slapd.sh) with 10,000 accounts.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [[ "${1:-}" == "--quick" ]]; then export RESETDESK_BENCH_QUICK=1; fi
# One build for every benchmark and the binaries the runs below use: one package set,
# so Cargo resolves features once and compiles each dependency once (the bench profile
# is the release profile's settings, in target/release).
pkgs=(-p resetdesk -p resetdesk-collector -p virtual-yubikey)
cargo build --profile bench --locked "${pkgs[@]}" --bins --benches
for b in benches/*.rs; do
  name="$(basename "$b" .rs)"
  echo "-- bench $name"
  cargo bench --locked "${pkgs[@]}" --bench "$name"
done
# The audit collector (collector/benches/ingest.rs): verified ingest against the raw
# ECDSA verify rate, a backlog drained over loopback TLS, many desks syncing at once.
echo "-- bench collector ingest"
cargo bench --locked "${pkgs[@]}" --bench ingest
# resetdesk-bench: complete resets through the desk on its own virtual cards (holding
# the readers' lock), one run per account tier (the highest with a second card in the
# second reader co-signing), each followed by the offline verifier on the log it wrote.
resets=50; tier_resets=20
[[ "${RESETDESK_BENCH_QUICK:-0}" == 1 ]] && { resets=5; tier_resets=3; }
bench_dir="$(mktemp -d)"; trap 'rm -rf "$bench_dir"' EXIT
for tier in standard privileged highest; do
  n="$tier_resets"; [[ "$tier" == standard ]] && n="$resets"
  echo "-- resetdesk-bench --tier $tier ($n resets)"
  flock /tmp/resetdesk-virtual-readers.lock target/release/resetdesk-bench \
    --data-dir "$bench_dir/$tier" --resets "$n" --virtual --tier "$tier"
  target/release/resetdesk audit verify --data-dir "$bench_dir/$tier"
done
# The desk app: cold start, idle memory next to a minimal Tauri window, binary size.
echo "-- bench-app"
if [[ "${RESETDESK_BENCH_QUICK:-0}" == 1 ]]; then bash scripts/bench-app.sh --quick; else bash scripts/bench-app.sh; fi
