#!/usr/bin/env bash
# The package test (issue: the agent's desktop app, "Packaging"): builds the .deb with
# scripts/build-deb.sh, checks what it holds and needs, installs it with `dpkg -i`, and
# runs a desk reset end to end in the *installed* app's real window (the e2e test of a
# standard reset, pointed at /usr/bin/resetdesk-app and /usr/bin/resetdesk through
# RESETDESK_E2E_APP). Removes the package again unless RESETDESK_KEEP_DEB=1.
#
#   bash scripts/test-deb.sh        (as root; pcscd with the virtual readers running,
#                                    the e2e test binary built: scripts/test-all.sh does both)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PKG=reset-desk
fail() { echo "test-deb: FAIL: $*" >&2; exit 1; }

deb="$(bash scripts/build-deb.sh)"
echo "test-deb: built $deb ($(($(stat -c %s "$deb") / 1024)) KiB)"

# What the package says about itself.
field() { dpkg-deb --field "$deb" "$1"; }
[[ "$(field Package)" == "$PKG" ]] || fail "package name is $(field Package), expected $PKG"
for dep in pcscd libwebkit2gtk-4.1-0 libgtk-3-0; do
  field Depends | tr ',' '\n' | grep -qw -- "$dep" || fail "Depends lacks $dep: $(field Depends)"
done
contents="$(dpkg-deb --contents "$deb")"
for f in usr/bin/resetdesk-app usr/bin/resetdesk usr/bin/resetdesk-bench usr/share/applications/ResetDesk.desktop \
  usr/share/doc/reset-desk/README.md; do
  grep -q " \./$f\$\| $f\$" <<<"$contents" || fail "$f is not in the package"
done
if grep -E 'virtual-yubikey|\.pdb$|/target/' <<<"$contents"; then fail "the package carries a test or build artefact (above)"; fi

# Install, then the installed binaries must be the ones that run.
keep="${RESETDESK_KEEP_DEB:-0}"
cleanup() { [[ "$keep" == 1 ]] || dpkg -r "$PKG" >/dev/null 2>&1 || true; }
trap cleanup EXIT
dpkg -i "$deb" >/dev/null || fail "dpkg -i refused the package"
dpkg -s "$PKG" | grep -q '^Status: install ok installed' || fail "dpkg does not list $PKG as installed"
/usr/bin/resetdesk --version | grep -q '^resetdesk ' || fail "the installed CLI does not run"
/usr/bin/resetdesk-app --version | grep -q '^resetdesk-app ' || fail "the installed app does not run"
grep -q '^Exec=resetdesk-app' /usr/share/applications/ResetDesk.desktop || fail "the desktop entry does not start the app"

# The installed app in a real window: a standard reset done with the keyboard alone,
# the password only on the customer screen, the directory and the signed log checked
# with the installed CLI. (`--workspace`: the feature set of the test run before, so
# nothing is compiled again.)
echo "test-deb: a standard reset in the installed app's window"
RESETDESK_E2E_APP=/usr/bin/resetdesk-app xvfb-run -a -s "-screen 0 1280x800x24 -nolisten tcp" \
  cargo test --locked --workspace --test e2e -- --exact \
  a_standard_reset_is_done_with_the_keyboard_alone_and_the_password_shows_only_on_the_customer_screen
echo "test-deb: ok ($PKG installed, its app reset a password end to end)"
