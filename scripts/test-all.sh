#!/usr/bin/env bash
# Sets up a Debian 12 machine (as root) and runs every ResetDesk test against real
# components on loopback: pcscd + vpcd + the virtual PIV card, the real app window
# under Xvfb through tauri-driver, OpenLDAP slapd (scripts/slapd.sh: tests/ldap_openldap.rs
# and the desk's reset on slapd) and a Samba AD DC (scripts/samba-dc.sh: tests/ldap_ad.rs,
# about 25 s), each started by the test that needs it, and the services later issues add.
# With CI=true (the default here) a directory server that cannot start fails its test.
#
#   bash scripts/test-all.sh
#
# Exit status: 0 when every test passed. Services started here are stopped on exit.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export RESETDESK_RUN_DIR="${RESETDESK_RUN_DIR:-/tmp/resetdesk-run}"
mkdir -p "$RESETDESK_RUN_DIR"


step() { printf '\n== %s (%s)\n' "$*" "$(date +%T)"; }

step "system packages"
bash scripts/setup-debian.sh --test
# shellcheck source=ensure-rust.sh
source scripts/ensure-rust.sh && ensure_rust

export CARGO_INCREMENTAL=0
export CARGO_TERM_COLOR=never
export RUST_BACKTRACE=1
# End-to-end tests must not skip silently in CI.
export CI="${CI:-true}"

# PostgreSQL is stopped at exit only if this run started it.
PG_STARTED_HERE=0
cleanup() {
  bash scripts/pcscd.sh stop >/dev/null 2>&1 || true
  if [[ "$PG_STARTED_HERE" == 1 ]]; then
    bash scripts/postgres.sh stop >/dev/null 2>&1 || true
  fi
}
trap cleanup EXIT

step "axe-core for the accessibility checks (from npm; loaded by the e2e tests only, never shipped)"
if ! command -v npm >/dev/null 2>&1; then
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends npm >/dev/null
fi
if [[ ! -f "$RESETDESK_RUN_DIR/axe/node_modules/axe-core/axe.min.js" ]]; then
  npm install --prefix "$RESETDESK_RUN_DIR/axe" --no-audit --no-fund --silent axe-core@4.14.1
fi
export RESETDESK_AXE_JS="$RESETDESK_RUN_DIR/axe/node_modules/axe-core/axe.min.js"

step "pcscd with the vpcd virtual readers"
bash scripts/pcscd.sh start
export RESETDESK_E2E_EXPECT_READERS=1

step "PostgreSQL for the collector's store suite and its two-instance test (scripts/postgres.sh)"
if ! bash scripts/postgres.sh status | grep -q '^postgres.sh: running'; then
  PG_STARTED_HERE=1
fi
# The tests call `postgres.sh start` too (it reuses this cluster); with CI=true they
# fail, not skip, when it cannot run.
bash scripts/postgres.sh start >/dev/null
bash scripts/postgres.sh status

step "the core crate never depends on Tauri/GTK/WebKit"
if cargo tree --locked -p resetdesk -e normal,dev --prefix none | grep -E '^(tauri|gtk|webkit2gtk|wry)[ -]'; then
  echo "test-all.sh: the core crate pulls in a GUI crate (above); keep GUI code in src-tauri" >&2
  exit 1
fi
echo "ok: resetdesk has no tauri/gtk/webkit/wry dependency"

step "formatting (rustfmt.toml)"
cargo fmt --all -- --check

step "clippy (workspace, all targets; warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "build (workspace, all targets)"
cargo build --workspace --all-targets --locked

step "tests (workspace; the app window under Xvfb)"
xvfb-run -a -s "-screen 0 1280x800x24 -nolisten tcp" \
  cargo test --workspace --all-targets --locked -- --test-threads=2

step "the .deb: built by the Tauri bundler, installed with dpkg -i, a reset in the installed app's window"
bash scripts/test-deb.sh

step "the audit collector as an operator starts it: demo TLS CA, init, serve; its checkpoint over HTTPS only"
bash scripts/collector-smoke.sh target/debug

step "the README's run command, detached: demo agents log in with the stated PINs"
flock /tmp/resetdesk-virtual-readers.lock bash scripts/demo-smoke.sh target/debug

step "benchmarks (quick run; prints numbers and ratios)"
bash scripts/bench.sh --quick

step "done"
