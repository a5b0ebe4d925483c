# Sourced by run-demo.sh and test-all.sh: make sure a Rust toolchain >= 1.89 is on
# PATH. A fresh Debian 12 machine has none (Debian's own cargo is too old), so this
# installs the stable toolchain with rustup's official installer (needs curl, which
# setup-debian.sh installs, and network access to the Rust project's servers).
# shellcheck shell=bash
ensure_rust() {
  if ! command -v cargo >/dev/null 2>&1 && [[ -x "$HOME/.cargo/bin/cargo" ]]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  fi
  if ! command -v cargo >/dev/null 2>&1; then
    echo "ensure-rust: no Rust toolchain found; installing stable with rustup (minimal profile)"
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --default-toolchain stable ||
      { echo "ensure-rust: could not install Rust; install rustup by hand (Rust >= 1.89) and re-run" >&2; return 2; }
    export PATH="$HOME/.cargo/bin:$PATH"
  fi
  # The test command runs clippy and rustfmt; the minimal profile includes neither.
  if ! { cargo clippy --version && cargo fmt --version; } >/dev/null 2>&1 && command -v rustup >/dev/null 2>&1; then
    rustup component add clippy rustfmt || echo "ensure-rust: could not add clippy/rustfmt (rustup component add clippy rustfmt)" >&2
  fi
  local v
  v="$(rustc --version | sed -E 's/^rustc ([0-9]+)\.([0-9]+).*/\1 \2/')"
  read -r major minor <<<"$v"
  if (( major < 1 || (major == 1 && minor < 89) )); then
    echo "ensure-rust: $(rustc --version) is too old; ResetDesk needs Rust >= 1.89 (rustup update stable)" >&2
    return 2
  fi
}
