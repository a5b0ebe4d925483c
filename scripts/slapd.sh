#!/usr/bin/env bash
# A throwaway OpenLDAP slapd 2.5 for tests, the bench and trying the LDAP backend:
# TLS with a test CA, the ppolicy and memberof overlays, a reset service account, and
# the demo organisation (`resetdesk demo ldif`). Security answers and TOTP keys are not
# in LDAP: `resetdesk demo init --data-dir D` keeps them in D's side store.
#
#   scripts/slapd.sh start DIR   make DIR (certificates, config, database), start slapd on
#                                127.0.0.1 (ldap:// $SLAPD_PORT, ldaps:// $SLAPD_TLS_PORT),
#                                load the data, write DIR/env; about 1-2 s
#   scripts/slapd.sh stop DIR    stop the slapd of DIR (by its pid file; never another one)
#   scripts/slapd.sh env DIR     print DIR/env: the URLs, base DN, service DN, CA and
#                                password files, as shell assignments
#
# Environment: SLAPD_PORT (3389), SLAPD_TLS_PORT (3636); RESETDESK_BIN: the resetdesk
# binary that prints the demo LDIF (default target/debug/resetdesk; without one only the
# tree, the policy and the service account are loaded); SLAPD_DEMO=0 skips the demo
# people; SLAPD_LDIF=file loads that file too (the bench's 10,000 accounts).
# One instance per port pair: callers that may run in parallel hold
# /tmp/resetdesk-slapd.lock (`flock`), as the tests do.
set -euo pipefail
# shellcheck source=lib/test-server.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/test-server.sh"

BASE_DN="dc=example,dc=test"
ROOT_DN="cn=admin,$BASE_DN"
SERVICE_DN="cn=resetdesk,ou=services,$BASE_DN"
PORT="${SLAPD_PORT:-3389}"
TLS_PORT="${SLAPD_TLS_PORT:-3636}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

die() {
  echo "slapd.sh: $*" >&2
  exit 1
}

need() {
  command -v "$1" >/dev/null 2>&1 || [[ -x "/usr/sbin/$1" ]] ||
    die "$1 is missing; run scripts/setup-debian.sh (Debian packages slapd ldap-utils openssl)"
}

slapd_bin() { command -v slapd 2>/dev/null || echo /usr/sbin/slapd; }
slapadd_bin() { command -v slapadd 2>/dev/null || echo /usr/sbin/slapadd; }


config_ldif() {
  local d="$1"
  cat <<LDIF
dn: cn=config
objectClass: olcGlobal
cn: config
olcPidFile: $d/slapd.pid
olcTLSCACertificateFile: $d/tls/ca.pem
olcTLSCertificateFile: $d/tls/server.pem
olcTLSCertificateKeyFile: $d/tls/server.key

dn: cn=module{0},cn=config
objectClass: olcModuleList
cn: module{0}
olcModulePath: /usr/lib/ldap
olcModuleLoad: back_mdb
olcModuleLoad: ppolicy
olcModuleLoad: memberof

dn: cn=schema,cn=config
objectClass: olcSchemaConfig
cn: schema

include: file:///etc/ldap/schema/core.ldif
include: file:///etc/ldap/schema/cosine.ldif
include: file:///etc/ldap/schema/inetorgperson.ldif

dn: cn=resetdesk,cn=schema,cn=config
objectClass: olcSchemaConfig
cn: resetdesk
olcAttributeTypes: ( 1.3.6.1.4.1.4203.666.11.77.1 NAME 'resetdeskContactChangedAt' DESC 'when the contact details last changed' EQUALITY generalizedTimeMatch ORDERING generalizedTimeOrderingMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.24 SINGLE-VALUE )
olcAttributeTypes: ( 1.3.6.1.4.1.4203.666.11.77.2 NAME 'resetdeskHireDate' DESC 'date of hire, YYYY-MM-DD' EQUALITY caseIgnoreMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )
olcObjectClasses: ( 1.3.6.1.4.1.4203.666.11.77.3 NAME 'resetdeskPerson' AUXILIARY MAY ( resetdeskContactChangedAt \$ resetdeskHireDate ) )

dn: olcDatabase={-1}frontend,cn=config
objectClass: olcDatabaseConfig
objectClass: olcFrontendConfig
olcDatabase: {-1}frontend
olcSizeLimit: 500

dn: olcDatabase={0}config,cn=config
objectClass: olcDatabaseConfig
olcDatabase: {0}config
olcAccess: {0}to * by * none

dn: olcDatabase={1}mdb,cn=config
objectClass: olcDatabaseConfig
objectClass: olcMdbConfig
olcDatabase: {1}mdb
olcSuffix: $BASE_DN
olcRootDN: $ROOT_DN
olcRootPW: $(cat "$d/root.password")
olcDbDirectory: $d/db
olcDbMaxSize: 1073741824
olcDbIndex: objectClass eq
olcDbIndex: uid,mail,cn,employeeNumber eq,sub
olcDbIndex: member,memberOf eq
olcAccess: {0}to attrs=userPassword,pwdReset by dn.exact="$SERVICE_DN" write by self write by anonymous auth by * none
olcAccess: {1}to * by dn.exact="$SERVICE_DN" read by self read by * none

dn: olcOverlay={0}memberof,olcDatabase={1}mdb,cn=config
objectClass: olcOverlayConfig
objectClass: olcMemberOf
olcOverlay: {0}memberof
olcMemberOfRefInt: TRUE
olcMemberOfGroupOC: groupOfNames
olcMemberOfMemberAD: member
olcMemberOfMemberOfAD: memberOf

dn: olcOverlay={1}ppolicy,olcDatabase={1}mdb,cn=config
objectClass: olcOverlayConfig
objectClass: olcPPolicyConfig
olcOverlay: {1}ppolicy
olcPPolicyDefault: cn=default,ou=policies,$BASE_DN
olcPPolicyHashCleartext: TRUE
olcPPolicyUseLockout: TRUE
LDIF
}

tree_ldif() {
  printf 'dn: %s\nobjectClass: dcObject\nobjectClass: organization\ndc: example\no: Example Corp\n\n' "$BASE_DN"
  for ou in people groups services policies; do
    printf 'dn: ou=%s,%s\nobjectClass: organizationalUnit\nou: %s\n\n' "$ou" "$BASE_DN" "$ou"
  done
  cat <<LDIF
dn: cn=default,ou=policies,$BASE_DN
objectClass: device
objectClass: pwdPolicy
cn: default
pwdAttribute: userPassword
pwdMustChange: TRUE
pwdAllowUserChange: TRUE
pwdLockout: FALSE

dn: $SERVICE_DN
objectClass: organizationalRole
objectClass: simpleSecurityObject
cn: resetdesk
description: ResetDesk reset service account
userPassword: $(cat "$1/service.password")
LDIF
}

add() {
  ldapadd -x -H "ldap://127.0.0.1:$PORT" -D "$ROOT_DN" -y "$1/root.password" -f "$2" >/dev/null
}

start() {
  local d="$1"
  need openssl
  need "$(slapd_bin)"
  need ldapadd
  if [[ -f "$d/slapd.pid" ]] && kill -0 "$(cat "$d/slapd.pid")" 2>/dev/null; then
    die "a slapd of $d already runs (pid $(cat "$d/slapd.pid")); stop it first"
  fi
  rm -rf "$d/slapd.d" "$d/db"
  mkdir -p "$d/slapd.d" "$d/db"
  d="$(cd "$d" && pwd)"
  [[ -f "$d/tls/server.pem" ]] || make_certs "$d" "ResetDesk test LDAP CA"
  head -c 18 /dev/urandom | base64 | tr -d '/+=' >"$d/root.password"
  head -c 18 /dev/urandom | base64 | tr -d '/+=' >"$d/service.password"
  # ldapadd -y and ResetDesk's bind_password_file read the whole file: no newline.
  printf '%s' "$(cat "$d/root.password")" >"$d/root.password"
  printf '%s' "$(cat "$d/service.password")" >"$d/service.password"
  chmod 600 "$d/root.password" "$d/service.password"
  config_ldif "$d" >"$d/config.ldif"
  "$(slapadd_bin)" -n0 -F "$d/slapd.d" -l "$d/config.ldif" >/dev/null 2>"$d/slapadd.log" ||
    die "slapadd of the configuration failed: $(cat "$d/slapadd.log")"
  "$(slapd_bin)" -F "$d/slapd.d" -h "ldap://127.0.0.1:$PORT/ ldaps://127.0.0.1:$TLS_PORT/" -d 0 >"$d/slapd.log" 2>&1 &
  local pid=$!
  # A start that fails half-way leaves no slapd behind.
  trap 'kill "$pid" 2>/dev/null || true' ERR
  for _ in $(seq 1 100); do
    if ldapsearch -x -H "ldap://127.0.0.1:$PORT" -b "" -s base >/dev/null 2>&1; then
      break
    fi
    kill -0 "$pid" 2>/dev/null || die "slapd exited at start (port $PORT or $TLS_PORT in use?): $(tail -5 "$d/slapd.log")"
    sleep 0.05
  done
  ldapsearch -x -H "ldap://127.0.0.1:$PORT" -b "" -s base >/dev/null 2>&1 || die "slapd did not answer on port $PORT"
  tree_ldif "$d" >"$d/tree.ldif"
  add "$d" "$d/tree.ldif"
  local bin="${RESETDESK_BIN:-$ROOT/target/debug/resetdesk}"
  if [[ "${SLAPD_DEMO:-1}" != 0 && -x "$bin" ]]; then
    "$bin" demo ldif --base-dn "$BASE_DN" >"$d/demo.ldif"
    add "$d" "$d/demo.ldif"
  fi
  if [[ -n "${SLAPD_LDIF:-}" ]]; then
    add "$d" "$SLAPD_LDIF"
  fi
  trap - ERR
  cat >"$d/env" <<ENV
SLAPD_URL=ldap://127.0.0.1:$PORT
SLAPD_LDAPS_URL=ldaps://127.0.0.1:$TLS_PORT
SLAPD_BASE_DN=$BASE_DN
SLAPD_SERVICE_DN=$SERVICE_DN
SLAPD_SERVICE_PASSWORD_FILE=$d/service.password
SLAPD_ROOT_DN=$ROOT_DN
SLAPD_ROOT_PASSWORD_FILE=$d/root.password
SLAPD_CA_FILE=$d/tls/ca.pem
SLAPD_PID=$pid
ENV
  echo "slapd.sh: slapd $pid serves $BASE_DN on ldap://127.0.0.1:$PORT and ldaps://127.0.0.1:$TLS_PORT ($d/env)"
}

stop() {
  local d="$1" pid
  pid="$(stop_by_pid_file "$d/slapd.pid")"
  if [[ -n "$pid" ]]; then echo "slapd.sh: stopped slapd $pid"; else echo "slapd.sh: no slapd runs for $d"; fi
}

case "${1:-}" in
  start) start "${2:?usage: slapd.sh start DIR}" ;;
  stop) stop "${2:?usage: slapd.sh stop DIR}" ;;
  env) cat "${2:?usage: slapd.sh env DIR}/env" ;;
  *) die "usage: slapd.sh start|stop|env DIR" ;;
esac
