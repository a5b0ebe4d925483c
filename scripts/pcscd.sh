#!/usr/bin/env bash
# pcscd with the vpcd virtual readers ("Virtual PCD 00 00" on TCP 35963, "Virtual PCD 00 01"
# on 35964), for tests, CI and the demo, on machines without systemd.
#
#   scripts/pcscd.sh start    start pcscd (or reuse a running one) and wait until the
#                             virtual readers are visible
#   scripts/pcscd.sh stop     stop the pcscd this script started (never another one)
#   scripts/pcscd.sh status   say whether pcscd runs, who started it, and list the readers
#
# Environment: RESETDESK_RUN_DIR (default /tmp/resetdesk-run) holds pcscd.pid and pcscd.log;
# PCSCD_READY_TIMEOUT seconds to wait for the readers (default 15); PCSCD_TRACE=1 logs
# every APDU and debug messages to pcscd.log.
#
# Never probe port 35963/35964 with a plain TCP connect: vpcd takes any connection as a
# card insertion.
set -euo pipefail

RUN_DIR="${RESETDESK_RUN_DIR:-/tmp/resetdesk-run}"
PID_FILE="$RUN_DIR/pcscd.pid"
LOG_FILE="$RUN_DIR/pcscd.log"
SYSTEM_PID_FILE=/run/pcscd/pcscd.pid
VPCD_CONF=/etc/reader.conf.d/vpcd
READY_TIMEOUT="${PCSCD_READY_TIMEOUT:-15}"

die() {
  echo "pcscd.sh: $*" >&2
  exit 1
}

require_tools() {
  command -v pcscd >/dev/null 2>&1 || [[ -x /usr/sbin/pcscd ]] ||
    die "pcscd is not installed; run scripts/setup-debian.sh (Debian package pcscd)"
  [[ -f "$VPCD_CONF" ]] ||
    die "the vpcd reader driver is missing ($VPCD_CONF); run scripts/setup-debian.sh (Debian package vsmartcard-vpcd)"
  command -v pcsc_scan >/dev/null 2>&1 ||
    die "pcsc_scan is missing; run scripts/setup-debian.sh (Debian package pcsc-tools)"
}

pcscd_bin() {
  command -v pcscd 2>/dev/null || echo /usr/sbin/pcscd
}

# True if $1 is the pid of a live pcscd process.
is_pcscd() {
  [[ "$1" =~ ^[0-9]+$ ]] && [[ "$(cat "/proc/$1/comm" 2>/dev/null)" == pcscd ]]
}

# Pid of the pcscd we started, if it is still alive.
our_pid() {
  local pid
  [[ -r "$PID_FILE" ]] || return 1
  pid="$(<"$PID_FILE")"
  is_pcscd "$pid" || return 1
  echo "$pid"
}

# Pid of any running pcscd (one per machine: it owns /run/pcscd).
running_pid() {
  local pid
  if [[ -r "$SYSTEM_PID_FILE" ]]; then
    pid="$(tr -dc "0-9" <"$SYSTEM_PID_FILE")" # pcscd pads the file with a NUL
    if is_pcscd "$pid"; then echo "$pid"; return 0; fi
  fi
  pid="$(pgrep -x pcscd 2>/dev/null | head -n1 || true)"
  [[ -n "$pid" ]] || return 1
  echo "$pid"
}

readers_visible() {
  timeout 3 pcsc_scan -r 2>/dev/null | grep -q "Virtual PCD"
}

# True while process $1 exists. For the pcscd this script just forked, the process is
# first a bash subshell, then nohup, then pcscd: its name says nothing until the last exec
# (checking the name there once failed a loaded CI machine), so only existence counts.
is_alive() {
  kill -0 "$1" 2>/dev/null
}

# Wait until the virtual readers show; $1 is the pcscd pid to watch for an early exit,
# $2 "child" when this script started it (then its exit status is reported).
wait_ready() {
  local pid="$1" kind="${2:-other}" deadline=$((SECONDS + READY_TIMEOUT))
  while ! readers_visible; do
    if { [[ "$kind" == child ]] && ! is_alive "$pid"; } || { [[ "$kind" != child ]] && ! is_pcscd "$pid"; }; then
      local status=unknown
      if [[ "$kind" == child ]]; then
        status=0
        wait "$pid" 2>/dev/null || status=$?
      fi
      echo "pcscd.sh: pcscd (pid $pid) exited during start-up (exit status $status); last lines of $LOG_FILE:" >&2
      tail -n 20 "$LOG_FILE" >&2 2>/dev/null || true
      echo "pcscd.sh: files in /run/pcscd:" >&2
      ls -la /run/pcscd >&2 2>/dev/null || true
      exit 1
    fi
    if (( SECONDS >= deadline )); then
      return 1
    fi
    sleep 0.2 # retry interval of a readiness probe, not synchronisation
  done
}

cmd_start() {
  require_tools
  local pid
  if pid="$(our_pid)"; then
    wait_ready "$pid" || die "pcscd (pid $pid, started by this script) shows no Virtual PCD reader after ${READY_TIMEOUT}s; see $LOG_FILE"
    echo "pcscd.sh: pcscd already running (pid $pid, started by this script)"
    return 0
  fi
  rm -f "$PID_FILE"
  if pid="$(running_pid)"; then
    wait_ready "$pid" ||
      die "a pcscd not started by this script (pid $pid) runs without the Virtual PCD readers; it predates vsmartcard-vpcd: stop it (systemctl stop pcscd.socket pcscd, or kill $pid) and rerun"
    echo "pcscd.sh: reusing the running pcscd (pid $pid, not started by this script)"
    return 0
  fi

  # No pcscd runs: a socket or pid file left in /run/pcscd by one that was killed (a
  # session's end kills with SIGKILL) makes a new pcscd refuse to start when the stale pid
  # now belongs to another process ("Another pcscd seems to be running").
  rm -f /run/pcscd/pcscd.comm /run/pcscd/pcscd.pid 2>/dev/null || true
  mkdir -p "$RUN_DIR"
  local -a opts=(--foreground)
  [[ "${PCSCD_TRACE:-0}" == 1 ]] && opts+=(--apdu --debug)
  local bin
  bin="$(pcscd_bin)"
  (
    # pcscd outlives this script: it must not inherit our callers' descriptors, or it
    # would hold, e.g., the test suite's reader lock (an flock) for as long as it runs.
    for fd_path in /proc/self/fd/*; do
      fd="${fd_path##*/}"
      if [[ "$fd" =~ ^[0-9]+$ ]] && ((fd > 2)); then eval "exec ${fd}>&-" 2>/dev/null || true; fi
    done
    exec nohup "$bin" "${opts[@]}" >"$LOG_FILE" 2>&1 </dev/null
  ) &
  pid=$!
  echo "$pid" >"$PID_FILE"
  if ! wait_ready "$pid" child; then
    kill "$pid" 2>/dev/null || true
    rm -f "$PID_FILE"
    die "pcscd started but showed no Virtual PCD reader within ${READY_TIMEOUT}s (stopped it again); see $LOG_FILE"
  fi
  echo "pcscd.sh: pcscd started (pid $pid), Virtual PCD readers ready; log: $LOG_FILE"
}

cmd_stop() {
  local pid
  if ! pid="$(our_pid)"; then
    rm -f "$PID_FILE"
    echo "pcscd.sh: no pcscd started by this script is running; leaving any other pcscd alone"
    return 0
  fi
  kill -TERM "$pid"
  local deadline=$((SECONDS + 10))
  while is_pcscd "$pid"; do
    if (( SECONDS >= deadline )); then
      echo "pcscd.sh: pcscd (pid $pid) ignored SIGTERM for 10s; sending SIGKILL" >&2
      kill -KILL "$pid" 2>/dev/null || true
      break
    fi
    sleep 0.1 # waiting for a process we signalled to exit
  done
  rm -f "$PID_FILE"
  echo "pcscd.sh: pcscd (pid $pid) stopped"
}

cmd_status() {
  local pid owner
  if pid="$(our_pid)"; then
    owner="started by this script"
  elif pid="$(running_pid)"; then
    owner="not started by this script"
  else
    echo "pcscd.sh: pcscd is not running"
    return 3
  fi
  echo "pcscd.sh: pcscd running (pid $pid, $owner)"
  if ! command -v pcsc_scan >/dev/null 2>&1; then
    echo "pcscd.sh: pcsc_scan missing; cannot list readers (Debian package pcsc-tools)" >&2
    return 1
  fi
  timeout 3 pcsc_scan -r 2>/dev/null | sed 's/^/  /' || true
  readers_visible || {
    echo "pcscd.sh: no Virtual PCD reader visible" >&2
    return 1
  }
}

case "${1:-}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  *)
    echo "usage: scripts/pcscd.sh start|stop|status" >&2
    exit 2
    ;;
esac
