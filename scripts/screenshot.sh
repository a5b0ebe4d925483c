#!/usr/bin/env bash
# Screenshot of the ResetDesk desktop app, for docs and reviews.
#   scripts/screenshot.sh OUT.png [APP ARGS...]      e.g. scripts/screenshot.sh docs/screenshot.png --config demo.toml
# Builds the app (debug), starts Xvfb when there is no DISPLAY, runs the app, waits
# until its window is mapped and its content has stopped changing, captures the screen
# (import -window root), crops it to the window, then stops everything it started.
# Needs: xvfb, x11-apps (xwininfo), imagemagick (import, compare, convert).
set -euo pipefail

out=${1:?usage: scripts/screenshot.sh OUT.png [APP ARGS...]}
shift
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
app="$target/debug/resetdesk-app"
title="ResetDesk"

work=$(mktemp -d)
xvfb_pid="" app_pid=""
cleanup() {
  local pid
  for pid in $app_pid $xvfb_pid; do
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT

# Poll CMD every 0.2 s for at most SECONDS; fail with WHAT.
wait_for() {
  local seconds=$1 what=$2; shift 2
  local deadline=$((SECONDS + seconds))
  until "$@"; do
    if ((SECONDS >= deadline)); then echo "screenshot.sh: timed out waiting for $what" >&2; return 1; fi
    sleep 0.2
  done
}

echo "screenshot.sh: building resetdesk-app"
(cd "$root" && CARGO_TARGET_DIR="$target" cargo build -q -p resetdesk-app)

if [[ -z ${DISPLAY:-} ]]; then
  n=99
  while [[ -e /tmp/.X$n-lock || -e /tmp/.X11-unix/X$n ]]; do n=$((n + 1)); done
  Xvfb ":$n" -screen 0 1280x800x24 -nolisten tcp >"$work/xvfb.log" 2>&1 &
  xvfb_pid=$!
  export DISPLAY=":$n"
  wait_for 10 "Xvfb on $DISPLAY" xwininfo -root >/dev/null 2>&1
fi

"$app" "$@" >"$work/app.log" 2>&1 &
app_pid=$!

window_id() { xwininfo -root -tree 2>/dev/null | awk -v t="\"$title\":" '$2 == t { print $1; exit }'; }
mapped() {
  local id; id=$(window_id)
  [[ -n $id ]] && xwininfo -id "$id" 2>/dev/null | grep -q "Map State: IsViewable"
}
if ! wait_for 30 "the $title window" mapped; then
  cat "$work/app.log" >&2
  exit 1
fi
wid=$(window_id)

# The web view paints after the window maps: wait until three captures 0.5 s apart match.
# "Match" allows a few hundred pixels: a focused text field's caret blinks.
same() {
  local diff
  diff=$(compare -metric AE "$1" "$2" null: 2>&1 || true)
  [[ $diff =~ ^[0-9]+$ ]] && ((diff <= 300))
}
stable() {
  import -window root "$work/c.png"
  if [[ -f $work/b.png && -f $work/a.png ]] && same "$work/a.png" "$work/c.png" && same "$work/b.png" "$work/c.png"; then
    return 0
  fi
  [[ -f $work/b.png ]] && mv "$work/b.png" "$work/a.png"
  mv "$work/c.png" "$work/b.png"
  sleep 0.3
  return 1
}
wait_for 30 "the window content to settle" stable

geom=$(xwininfo -id "$wid" | awk '/Absolute upper-left X/ {x=$4} /Absolute upper-left Y/ {y=$4} /Width:/ {w=$2} /Height:/ {h=$2} END {printf "%dx%d+%d+%d", w, h, x, y}')
mkdir -p "$(dirname "$out")"
convert "$work/c.png" -crop "$geom" +repage "$out"
echo "screenshot.sh: wrote $out ($geom)"
