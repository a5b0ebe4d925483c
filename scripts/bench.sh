#!/usr/bin/env bash
# Runs every benchmark target; each prints its numbers, goals and ratios.
#   scripts/bench.sh           full runs
#   scripts/bench.sh --quick   short runs (CI): fewer iterations, same measurements
# Needs pcscd with the vpcd readers for the token benchmarks (scripts/pcscd.sh start).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [[ "${1:-}" == "--quick" ]]; then export RESETDESK_BENCH_QUICK=1; fi
for b in benches/*.rs; do
  name="$(basename "$b" .rs)"
  echo "-- bench $name"
  cargo bench --locked --bench "$name"
done
