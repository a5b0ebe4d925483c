#!/usr/bin/env bash
# Builds the desk's Debian package with the Tauri bundler:
#
#   bash scripts/build-deb.sh
#
# prints the path of target/release/bundle/deb/ResetDesk_<version>_amd64.deb last. The
# package holds the desk app (/usr/bin/resetdesk-app, a production build: assets from the
# embedded tauri:// protocol), the admin/audit CLI (/usr/bin/resetdesk), the benchmark
# (/usr/bin/resetdesk-bench), the desktop entry and the docs; it depends on pcscd and
# WebKitGTK; xz-compressed. Install it with `dpkg -i`; the app reads /etc/resetdesk/resetdesk.toml when
# present (see README, "Installing the package").
#
# The bundler is the Tauri CLI from npm (@tauri-apps/cli, a build tool, never shipped),
# installed under $RESETDESK_RUN_DIR/tauri-cli at the version of the tauri crate in
# Cargo.lock. Needs npm (scripts/setup-debian.sh installs it).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
RUN_DIR="${RESETDESK_RUN_DIR:-/tmp/resetdesk-run}"
mkdir -p "$RUN_DIR"

# The CLI and the runtime crate are released together: take the same version.
tauri_version="$(awk '/^name = "tauri"$/ {getline; gsub(/[^0-9.]/, ""); print; exit}' Cargo.lock)"
[[ -n "$tauri_version" ]] || { echo "build-deb: no tauri crate in Cargo.lock" >&2; exit 1; }
cli="$RUN_DIR/tauri-cli/node_modules/.bin/tauri"
if [[ ! -x "$cli" ]] || [[ "$("$cli" --version 2>/dev/null)" != "tauri-cli $tauri_version" ]]; then
  command -v npm >/dev/null 2>&1 || { echo "build-deb: npm is missing; run scripts/setup-debian.sh" >&2; exit 1; }
  npm install --prefix "$RUN_DIR/tauri-cli" --no-audit --no-fund --silent "@tauri-apps/cli@$tauri_version"
fi

cargo build --release --locked -p resetdesk -p resetdesk-app --bins --features resetdesk-app/custom-protocol

out="target/release/bundle/deb"
rm -f "$out"/*.deb
# `tauri bundle` packages the binaries built above (it runs no build of its own).
CI=true "$cli" bundle --bundles deb --ci >&2
deb="$(ls "$out"/*.deb 2>/dev/null | head -n1)"
[[ -n "$deb" ]] || { echo "build-deb: the bundler made no .deb under $out" >&2; exit 1; }
# The bundler compresses with gzip; Debian's own packages use xz. Same files, same
# control data and checksums, about 40 % of the size.
repack="$(mktemp -d)"
trap 'rm -rf "$repack"' EXIT
dpkg-deb -R "$deb" "$repack/root"
dpkg-deb -Zxz -z9 --root-owner-group --build "$repack/root" "$repack/out.deb" >/dev/null
mv "$repack/out.deb" "$deb"
echo "$ROOT/$deb"
