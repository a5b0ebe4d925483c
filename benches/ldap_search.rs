//! LDAP search latency: `Directory::search_entries` of the LDAP backend against a real
//! slapd (`scripts/slapd.sh`, LDAPS with the test CA) holding 10,000 accounts besides
//! the demo organisation. Each query is what an agent types: a username, an employee
//! number, a mail address or part of a name, every value escaped, results bounded; the
//! whole adapter path runs (search, memberOf, manager lookup, side store).
//! Goal: p99 < 20 ms. Prints p50, p99, max and the ratio p99/goal; asserts nothing.
//!
//! `cargo bench --bench ldap_search` (env: LDAP_BENCH_ENTRIES, default 10000;
//! LDAP_BENCH_QUERIES, default 2000; RESETDESK_BENCH_QUICK: 500 queries; under
//! `cargo test --all-targets`, a smoke run of 300 accounts). Holds
//! /tmp/resetdesk-slapd.lock while slapd runs.

// Shared with the tests, which use all of it.
#[allow(dead_code)]
#[path = "../tests/desk_support/server.rs"]
mod server;

use std::fmt::Write;
use std::time::{Duration, Instant};

use resetdesk::config::{Backend, Config, LdapConfig};
use resetdesk::directory::ldap::LdapDirectory;
use resetdesk::directory::Directory;

const GOAL: Duration = Duration::from_millis(20);

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// `n` accounts `bench-00000`.. in ou=people, in LDIF.
fn accounts_ldif(n: usize) -> String {
    let mut out = String::with_capacity(n * 400);
    for i in 0..n {
        // Invariant: writing to a String cannot fail.
        let _ = write!(
            out,
            "dn: uid=bench-{i:05},ou=people,dc=example,dc=test\nobjectClass: inetOrgPerson\n\
             objectClass: resetdeskPerson\nuid: bench-{i:05}\ncn: Bench Person {i:05}\nsn: Person {i:05}\n\
             displayName: Bench Person {i:05}\nemployeeNumber: B-{i:05}\nmail: bench-{i:05}@example.com\n\
             telephoneNumber: +49 30 7{i:05}\nresetdeskContactChangedAt: 20240101000000Z\n\
             userPassword: bench-pass-{i:05}\n\n"
        );
    }
    out
}

fn main() {
    // `cargo test --all-targets` runs this too (no `--bench`): a smoke run, unoptimised.
    let smoke = !std::env::args().any(|a| a == "--bench");
    let entries = env_usize("LDAP_BENCH_ENTRIES", if smoke { 300 } else { 10_000 });
    let quick = smoke || std::env::var("RESETDESK_BENCH_QUICK").is_ok_and(|v| v == "1");
    let queries = env_usize("LDAP_BENCH_QUERIES", if quick { 500 } else { 2000 });
    if smoke {
        println!("ldap_search: smoke run under `cargo test` ({entries} accounts); `cargo bench --bench ldap_search` for numbers");
    }
    let work = tempfile::tempdir().expect("a temporary directory");
    let ldif = work.path().join("bench.ldif");
    std::fs::write(&ldif, accounts_ldif(entries)).expect("write the LDIF");
    // scripts/slapd.sh loads SLAPD_LDIF after the demo organisation (edition 2021:
    // set_var is safe; nothing else reads the environment concurrently here).
    std::env::set_var("SLAPD_LDIF", &ldif);
    let t = Instant::now();
    let Some(slapd) = server::ScriptServer::start("slapd.sh", "/tmp/resetdesk-slapd.lock", "/usr/sbin/slapd") else {
        println!("ldap_search: slapd is not installed; skipped");
        return;
    };
    println!("ldap_search: slapd with {entries} accounts + the demo organisation started in {:.1?}", t.elapsed());

    let mut config = Config { data_dir: work.path().join("data"), ..Config::default() };
    config.directory.backend = Backend::Ldap;
    config.directory.ldap = LdapConfig {
        url: slapd.var("SLAPD_LDAPS_URL").to_owned(),
        base_dn: slapd.var("SLAPD_BASE_DN").to_owned(),
        bind_dn: slapd.var("SLAPD_SERVICE_DN").to_owned(),
        bind_password_file: Some(slapd.var("SLAPD_SERVICE_PASSWORD_FILE").into()),
        ca_file: Some(slapd.var("SLAPD_CA_FILE").into()),
        contact_changed_attribute: "resetdeskContactChangedAt".into(),
        ..LdapConfig::default()
    };
    let dir = LdapDirectory::open(&config).expect("open the LDAP directory");

    // What agents type, spread over the whole directory (a multiplicative walk).
    let query = |q: usize| {
        let i = (q * 7919) % entries;
        match q % 4 {
            0 => format!("bench-{i:05}"),
            1 => format!("B-{i:05}"),
            2 => format!("bench-{i:05}@example.com"),
            _ => format!("Person {i:05}"),
        }
    };
    for q in 0..50 {
        dir.search_entries(&query(q), 10).expect("warm-up search");
    }
    let mut times = Vec::with_capacity(queries);
    let mut found = 0;
    for q in 0..queries {
        let t = Instant::now();
        found += dir.search_entries(&query(q), 10).expect("search").len();
        times.push(t.elapsed());
    }
    times.sort();
    let at = |p: f64| times[((times.len() as f64 * p).ceil() as usize).saturating_sub(1).min(times.len() - 1)];
    let (p50, p99, max) = (at(0.50), at(0.99), times[times.len() - 1]);
    println!("ldap_search: {queries} searches over {entries} accounts ({found} results, bounded at 10 each)");
    println!("  p50 {p50:.2?}  p99 {p99:.2?}  max {max:.2?}");
    println!("  ratio p99/goal = {:.2}x  (goal p99 < {GOAL:?}: ratio < 1.00x)", p99.as_secs_f64() / GOAL.as_secs_f64());
}
