#!/usr/bin/env bash
# A throwaway Samba AD DC (4.17) for the Active Directory flavour's tests: realm
# EXAMPLE.TEST, LDAP only (ports 389/636 are fixed: one DC per machine), TLS with a
# test CA, a reset service account in Account Operators, and a few accounts:
#   jdoe      standard (Domain Users)
#   nested    in it-ops, which is in it-admins (a privileged group): tier by in-chain search
#   dadmin    in Domain Admins (highest)
#   protected adminCount=1 and no privileged group (the AdminSDHolder marker)
# with mail, mobile, telephoneNumber, employeeID and jdoe's manager = nested.
#
#   scripts/samba-dc.sh start DIR   provision DIR (6-12 s), start samba, write DIR/env
#   scripts/samba-dc.sh stop DIR    stop the DC of DIR (by its pid; never another one)
#
# Callers that may run in parallel hold /tmp/resetdesk-samba.lock (`flock`), as the
# tests do; the script refuses to start while another DC of its own runs.
set -euo pipefail
# shellcheck source=lib/test-server.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/test-server.sh"

REALM=EXAMPLE.TEST
DOMAIN=EXAMPLE
BASE_DN="DC=example,DC=test"
RUNNING=/tmp/resetdesk-samba-dc.running

die() {
  echo "samba-dc.sh: $*" >&2
  exit 1
}


user() {
  # user NAME "GIVEN SURNAME" PASSWORD EMPLOYEE-ID: created in sam.ldb now, the rest of
  # its attributes over LDAPS once samba runs (attributes_ldif).
  samba-tool user create "$1" "$3" -H "$SAM" --given-name="${2% *}" --surname="${2#* }" \
    --mail-address="$1@example.test" --telephone-number="+1 555 01${4: -2}" >/dev/null
  cat >>"$EXTRA" <<LDIF
dn: CN=$2,CN=Users,$BASE_DN
changetype: modify
replace: employeeID
employeeID: $4
-
replace: mobile
mobile: +1 555 02${4: -2}
-
replace: displayName
displayName: $2
-

LDIF
}

start() {
  local d="$1"
  command -v samba-tool >/dev/null || die "samba is missing; run scripts/setup-debian.sh (Debian packages samba winbind)"
  if [[ -f "$RUNNING" ]] && kill -0 "$(cut -d' ' -f1 "$RUNNING")" 2>/dev/null; then
    die "a DC already runs (pid $(cut -d' ' -f1 "$RUNNING"), $(cut -d' ' -f2 "$RUNNING")): one per machine"
  fi
  rm -rf "$d/etc" "$d/private" "$d/state" "$d/cache" "$d/run"
  mkdir -p "$d"
  d="$(cd "$d" && pwd)"
  [[ -f "$d/tls/server.pem" ]] || make_certs "$d" "ResetDesk test AD CA"
  printf '%s' "Adm1n-$(head -c 12 /dev/urandom | base64 | tr -d '/+=')" >"$d/admin.password"
  printf '%s' "Svc1-$(head -c 12 /dev/urandom | base64 | tr -d '/+=')" >"$d/service.password"
  chmod 600 "$d/admin.password" "$d/service.password"
  samba-tool domain provision --realm="$REALM" --domain="$DOMAIN" --server-role=dc --dns-backend=NONE \
    --host-ip=127.0.0.1 --targetdir="$d" --adminpass="$(cat "$d/admin.password")" \
    --option="interfaces=lo" --option="bind interfaces only=yes" --option="server services=ldap" \
    --option="tls enabled=yes" --option="tls certfile=$d/tls/server.pem" \
    --option="tls keyfile=$d/tls/server.key" --option="tls cafile=$d/tls/ca.pem" \
    >"$d/provision.log" 2>&1 || die "provision failed: $(tail -5 "$d/provision.log")"
  SAM="$d/private/sam.ldb"
  EXTRA="$d/attributes.ldif"
  : >"$EXTRA"
  samba-tool domain passwordsettings set -H "$SAM" --complexity=off --history-length=0 \
    --min-pwd-age=0 --min-pwd-length=8 >/dev/null
  samba-tool user create rd-service "$(cat "$d/service.password")" -H "$SAM" >/dev/null
  samba-tool group addmembers "Account Operators" rd-service -H "$SAM" >/dev/null
  user jdoe "Jane Doe" "Old-pass-jdoe1" E-1001
  user nested "Nora Nested" "Old-pass-nested1" E-1002
  user dadmin "Dan Admin" "Old-pass-dadmin1" E-1003
  user protected "Pat Protected" "Old-pass-protected1" E-1004
  samba-tool group add it-admins -H "$SAM" >/dev/null
  samba-tool group add it-ops -H "$SAM" >/dev/null
  samba-tool group addmembers it-admins it-ops -H "$SAM" >/dev/null
  samba-tool group addmembers it-ops nested -H "$SAM" >/dev/null
  samba-tool group addmembers "Domain Admins" dadmin -H "$SAM" >/dev/null
  cat >>"$EXTRA" <<LDIF
dn: CN=Pat Protected,CN=Users,$BASE_DN
changetype: modify
replace: adminCount
adminCount: 1
-

dn: CN=Jane Doe,CN=Users,$BASE_DN
changetype: modify
replace: manager
manager: CN=Nora Nested,CN=Users,$BASE_DN
-
LDIF
  samba -i -M single -s "$d/etc/smb.conf" >"$d/samba.log" 2>&1 &
  local pid=$!
  echo "$pid $d" >"$RUNNING"
  for _ in $(seq 1 200); do
    if LDAPTLS_CACERT="$d/tls/ca.pem" ldapsearch -x -H ldaps://127.0.0.1:636 -b "" -s base >/dev/null 2>&1; then
      break
    fi
    kill -0 "$pid" 2>/dev/null || die "samba exited at start: $(tail -5 "$d/samba.log")"
    sleep 0.05
  done
  echo "$pid" >"$d/samba.pid"
  LDAPTLS_CACERT="$d/tls/ca.pem" ldapmodify -x -H ldaps://127.0.0.1:636 -D "CN=Administrator,CN=Users,$BASE_DN" \
    -y "$d/admin.password" -f "$EXTRA" >/dev/null || { stop "$d"; die "loading the accounts' attributes failed"; }
  cat >"$d/env" <<ENV
SAMBA_LDAPS_URL=ldaps://127.0.0.1:636
SAMBA_BASE_DN=$BASE_DN
SAMBA_SERVICE_DN=CN=rd-service,CN=Users,$BASE_DN
SAMBA_SERVICE_PASSWORD_FILE=$d/service.password
SAMBA_ADMIN_DN=CN=Administrator,CN=Users,$BASE_DN
SAMBA_ADMIN_PASSWORD_FILE=$d/admin.password
SAMBA_CA_FILE=$d/tls/ca.pem
SAMBA_PID=$pid
ENV
  echo "samba-dc.sh: samba $pid serves $REALM on ldaps://127.0.0.1:636 ($d/env)"
}

stop() {
  local d="$1" pid
  pid="$(stop_by_pid_file "$d/samba.pid")"
  [[ -n "$pid" && -f "$RUNNING" && "$(cut -d' ' -f1 "$RUNNING")" == "$pid" ]] && rm -f "$RUNNING"
  if [[ -n "$pid" ]]; then echo "samba-dc.sh: stopped samba $pid"; else echo "samba-dc.sh: no DC runs for $d"; fi
}

case "${1:-}" in
  start) start "${2:?usage: samba-dc.sh start DIR}" ;;
  stop) stop "${2:?usage: samba-dc.sh stop DIR}" ;;
  *) die "usage: samba-dc.sh start|stop DIR" ;;
esac
