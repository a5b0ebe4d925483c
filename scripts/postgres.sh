#!/usr/bin/env bash
# A throwaway PostgreSQL 15 cluster on loopback, for the collector's tests, benchmark and
# demo on machines without systemd.
#
#   scripts/postgres.sh start    create the cluster (first time) and start it, or reuse the
#                                one this script started; prints the connection URL
#   scripts/postgres.sh stop     stop the cluster this script started
#   scripts/postgres.sh url      print the connection URL (postgres://resetdesk:...@127.0.0.1:PORT/resetdesk)
#   scripts/postgres.sh status   say whether it runs
#
# Environment: RESETDESK_RUN_DIR (default /tmp/resetdesk-run) holds the cluster in
# postgres/ (data/, the socket, the log, the password file); RESETDESK_PG_PORT (default
# 55432). The cluster listens on 127.0.0.1 only and takes SCRAM passwords; the role
# `resetdesk` owns the database `resetdesk` and may create databases (each test makes its
# own). Runs as root (it drops to the `postgres` user) or as any non-root user.
set -euo pipefail

RUN_DIR="${RESETDESK_RUN_DIR:-/tmp/resetdesk-run}"
PG_DIR="$RUN_DIR/postgres"
DATA="$PG_DIR/data"
PORT="${RESETDESK_PG_PORT:-55432}"
PASS_FILE="$PG_DIR/password"
LOG_FILE="$PG_DIR/postgres.log"

die() {
  echo "postgres.sh: $*" >&2
  exit 1
}

bin_dir() {
  local d
  for d in /usr/lib/postgresql/*/bin; do
    [[ -x "$d/initdb" ]] && { echo "$d"; return 0; }
  done
  die "PostgreSQL is not installed; run scripts/setup-debian.sh (Debian package postgresql)"
}

# Run a PostgreSQL tool as the cluster's owner.
as_owner() {
  if [[ "$(id -u)" == 0 ]]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

running() {
  as_owner "$(bin_dir)/pg_ctl" -D "$DATA" status >/dev/null 2>&1
}

url() {
  [[ -r "$PASS_FILE" ]] || die "no cluster yet: run scripts/postgres.sh start"
  echo "postgres://resetdesk:$(<"$PASS_FILE")@127.0.0.1:$PORT/resetdesk"
}

init_cluster() {
  local bin
  bin="$(bin_dir)"
  mkdir -p "$PG_DIR"
  if [[ "$(id -u)" == 0 ]]; then
    id postgres >/dev/null 2>&1 || die "the postgres system user is missing; reinstall the Debian package postgresql"
    chown postgres:postgres "$PG_DIR"
    # The run dir may be private to root: the owner must reach its own directory.
    chmod o+x "$RUN_DIR"
  fi
  chmod 0700 "$PG_DIR"
  # Letters and digits only: the password goes into a URL unescaped.
  head -c 32 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 24 >"$PASS_FILE.new"
  chmod 0644 "$PASS_FILE.new"
  [[ "$(id -u)" == 0 ]] && chown postgres:postgres "$PASS_FILE.new"
  mv "$PASS_FILE.new" "$PASS_FILE"
  as_owner "$bin/initdb" -D "$DATA" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
    -E UTF8 --locale=C.UTF-8 >"$PG_DIR/initdb.log" 2>&1 ||
    die "initdb failed; see $PG_DIR/initdb.log"
}

start() {
  local bin
  bin="$(bin_dir)"
  [[ -f "$DATA/PG_VERSION" ]] || init_cluster
  if ! running; then
    as_owner "$bin/pg_ctl" -D "$DATA" -l "$LOG_FILE" -w -t 30 \
      -o "-c listen_addresses=127.0.0.1 -p $PORT -k $PG_DIR -c fsync=on -c max_connections=200" start >/dev/null ||
      die "PostgreSQL did not start on 127.0.0.1:$PORT; see $LOG_FILE (is the port taken?)"
  fi
  # The role and database (idempotent): the password is set from the file each start.
  as_owner "$bin/psql" -h "$PG_DIR" -p "$PORT" -U postgres -d postgres -v ON_ERROR_STOP=1 -q \
    -v pass="$(<"$PASS_FILE")" >/dev/null <<'SQL' || die "could not create the resetdesk role; see $LOG_FILE"
SELECT 'CREATE ROLE resetdesk LOGIN CREATEDB' WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'resetdesk') \gexec
ALTER ROLE resetdesk PASSWORD :'pass';
SELECT 'CREATE DATABASE resetdesk OWNER resetdesk' WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = 'resetdesk') \gexec
SQL
  url
}

stop() {
  running || { echo "postgres.sh: not running"; return 0; }
  as_owner "$(bin_dir)/pg_ctl" -D "$DATA" -m fast -w stop >/dev/null
  echo "postgres.sh: stopped"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  url) url ;;
  status) if running; then echo "postgres.sh: running on 127.0.0.1:$PORT"; else echo "postgres.sh: not running"; fi ;;
  *) die "usage: scripts/postgres.sh start|stop|url|status" ;;
esac
