#!/usr/bin/env bash
# Installs every system package ResetDesk needs to build, run and test on Debian 12.
# Idempotent: re-running it only installs what is missing. Must run as root.
#   scripts/setup-debian.sh            packages for building and running the app
#   scripts/setup-debian.sh --test     plus the services the test suite starts
set -euo pipefail

want_test=0
[[ "${1:-}" == "--test" ]] && want_test=1

if [[ $(id -u) -ne 0 ]]; then
  echo "setup-debian.sh: run as root (it installs Debian packages)" >&2
  exit 2
fi

RUN_PKGS=(
  build-essential pkg-config file ca-certificates curl openssl sqlite3
  libssl-dev libclang-dev
  # Tauri v2 / WebKitGTK
  libwebkit2gtk-4.1-dev libgtk-3-dev libxdo-dev libayatana-appindicator3-dev librsvg2-dev
  # smart cards: pcscd + the vpcd virtual reader driver
  pcscd libpcsclite-dev vsmartcard-vpcd pcsc-tools yubico-piv-tool opensc
  # display for the demo/tests when there is none
  xvfb xauth
)
TEST_PKGS=(
  webkit2gtk-driver imagemagick x11-apps
  slapd ldap-utils openssl
  # the Active Directory flavour's tests (scripts/samba-dc.sh); the provision files,
  # the directory database modules and the VFS modules (acl_xattr, which provision
  # sets on sysvol) are only Recommends of samba, which --no-install-recommends
  # leaves out
  samba winbind samba-ad-provision samba-dsdb-modules samba-vfs-modules
  python3-aiosmtpd
  postgresql
)

pkgs=("${RUN_PKGS[@]}")
(( want_test )) && pkgs+=("${TEST_PKGS[@]}")

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if (( ${#missing[@]} )); then
  echo "setup-debian.sh: installing ${#missing[@]} packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=600 update -qq
  apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "setup-debian.sh: all system packages present"
fi

# The Rust toolchain (rustup) when the machine has none.
# shellcheck source=ensure-rust.sh
source "$(dirname "${BASH_SOURCE[0]}")/ensure-rust.sh" && ensure_rust

if (( want_test )); then
  if ! command -v tauri-driver >/dev/null 2>&1; then
    echo "setup-debian.sh: installing tauri-driver (cargo install, about 80 s)"
    cargo install tauri-driver --locked --version '^2' --quiet
  fi
fi
