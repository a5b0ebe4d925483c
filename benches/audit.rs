//! Audit benchmarks: numbers and ratios in one run (no timed assertions).
//!
//! 1. Verifier throughput (`verify_store`: SQLite read, decode, chain, canonical
//!    payload, certificate lookup, ECDSA verify) against a raw ECDSA P-256 verify
//!    loop of the same library (ring) over the same records. Goal: ≥ 0.8×.
//! 2. Durable append (`AuditLog::append`: encode, sign with a software P-256 key,
//!    one WAL + synchronous=FULL transaction) against a raw SQLite insert of the same
//!    bytes with the same durability, one transaction each. Goal: ≤ 1.3×.
//!
//! `cargo bench --bench audit` (env: AUDIT_BENCH_RECORDS, default 2000;
//! AUDIT_BENCH_APPENDS, default 200; RESETDESK_BENCH_QUICK: 500 and 60). Each side runs 4 times, interleaved; the best
//! run of each is compared, since the machine is shared.

#[path = "../tests/audit_support/mod.rs"]
mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use resetdesk::audit::event::parse_payload;
use resetdesk::audit::offline::verify_store_with;
use resetdesk::audit::record::entry_hash;
use resetdesk::audit::store::Store;
use resetdesk::audit::{AuditLog, CollectorKeys, DirectoryOutcome, Event, Record};
use resetdesk::token::{RecordSigner, SignError};
use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_ASN1};
use rusqlite::{params, Connection};
use support::{reset_facts, Pki, SoftSigner};

/// Any failure aborts the benchmark with its error: the numbers would be meaningless.
type BenchResult<T> = Result<T, Box<dyn std::error::Error>>;

/// Runs of each side; the best of each is compared.
const ROUNDS: usize = 4;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Reset facts padded so a record is about 1 KiB, like a real reset's.
fn facts(i: usize) -> serde_json::Value {
    let mut f = reset_facts("alice", &format!("user{i}"));
    f["detail"] = serde_json::Value::String("x".repeat(640));
    f
}

/// Wraps a signer and adds up the time spent signing, so the log's own cost can be
/// told apart from the (software) signer's.
struct Timed<'a> {
    inner: &'a mut SoftSigner,
    spent: Duration,
}

impl RecordSigner for Timed<'_> {
    fn key_id(&self) -> [u8; 32] {
        self.inner.key_id()
    }
    fn sign_digest(&mut self, digest: &[u8; 32]) -> Result<Vec<u8>, SignError> {
        let start = Instant::now();
        let sig = self.inner.sign_digest(digest);
        self.spent += start.elapsed();
        sig
    }
}

fn append_records(log: &mut AuditLog, alice: &mut dyn RecordSigner, n: usize) -> BenchResult<Duration> {
    let start = Instant::now();
    let mut i = 0;
    while i < n {
        let intent = log.append(&Event::reset_intent(&facts(i))?, alice, time::OffsetDateTime::now_utc())?;
        i += 1;
        if i < n {
            let out = Event::reset_outcome(intent.intent_ref(), &DirectoryOutcome::Done, &facts(i))?;
            log.append(&out, alice, time::OffsetDateTime::now_utc())?;
            i += 1;
        }
    }
    Ok(start.elapsed())
}

/// Remove a SQLite database and its WAL side files.
fn remove_db(path: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(p);
    }
}

fn raw_inserts(path: &Path, rows: &[(Vec<u8>, Vec<u8>)]) -> BenchResult<Duration> {
    remove_db(path);
    let db = Connection::open(path)?;
    db.pragma_update(None, "journal_mode", "WAL")?;
    db.pragma_update(None, "synchronous", "FULL")?;
    db.execute_batch("CREATE TABLE t (seq INTEGER PRIMARY KEY, record BLOB NOT NULL, signature BLOB NOT NULL)")?;
    let start = Instant::now();
    for (i, (record, sig)) in rows.iter().enumerate() {
        let tx = db.unchecked_transaction()?;
        tx.execute("INSERT INTO t (seq, record, signature) VALUES (?1, ?2, ?3)", params![i as i64 + 1, record, sig])?;
        tx.commit()?;
    }
    Ok(start.elapsed())
}

fn rows_of(path: &Path) -> BenchResult<Vec<(Vec<u8>, Vec<u8>)>> {
    let store = Store::open_read_only(path)?;
    let mut rows = Vec::new();
    store.for_each(|s| {
        rows.push((s.record, s.signature));
        Ok::<_, std::convert::Infallible>(())
    })??;
    Ok(rows)
}

fn per_sec(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

fn main() -> BenchResult<()> {
    // `cargo bench` passes --bench; `cargo test --benches` runs us too: keep that a
    // smoke run. `scripts/bench.sh --quick` (RESETDESK_BENCH_QUICK) runs fewer records.
    let smoke = std::env::args().all(|a| a != "--bench");
    let quick = std::env::var_os("RESETDESK_BENCH_QUICK").is_some();
    let (n, m) = match (smoke, quick) {
        (true, _) => (50, 10),
        (false, true) => (500, 60),
        (false, false) => (env_usize("AUDIT_BENCH_RECORDS", 2000), env_usize("AUDIT_BENCH_APPENDS", 200)),
    };
    if smoke {
        println!(
            "(smoke run under `cargo test`: unoptimised, few records; run `cargo bench --bench audit` for numbers)"
        );
    }
    let pki = Pki::new(1);
    let mut alice = SoftSigner::from_seed("alice", 1);
    let resolver = pki.resolver(&[&alice]);
    let pubkey = alice.key.verifying_key().to_encoded_point(false).as_bytes().to_vec();

    // --- 1. verifier vs raw verify -------------------------------------------------
    // Built where fsync is cheap if possible (/dev/shm): this part measures reading.
    let shm = Path::new("/dev/shm");
    let build_dir = if shm.is_dir() { tempfile::tempdir_in(shm)? } else { tempfile::tempdir()? };
    let vpath = build_dir.path().join("audit.sqlite");
    let mut log = AuditLog::open(&vpath)?;
    append_records(&mut log, &mut alice, n)?;
    drop(log);
    let rows = rows_of(&vpath)?;
    let avg_len = rows.iter().map(|r| r.0.len()).sum::<usize>() / rows.len();

    let mut best_verifier = Duration::MAX;
    let mut best_raw = Duration::MAX;
    for _ in 0..ROUNDS {
        let start = Instant::now();
        for (record, sig) in &rows {
            UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, &pubkey)
                .verify(record, sig)
                .map_err(|_| "a record written by this bench does not verify with ring")?;
        }
        best_raw = best_raw.min(start.elapsed());

        let start = Instant::now();
        let store = Store::open_read_only(&vpath)?;
        let summary = verify_store_with(&store, &resolver, &[], &CollectorKeys::default(), &[], 1)?;
        best_verifier = best_verifier.min(start.elapsed());
        assert_eq!(summary.records as usize, n);
    }
    let (v, r) = (per_sec(n, best_verifier), per_sec(n, best_raw));
    println!("verify: {n} records of ~{avg_len} B");
    println!("  raw ring ECDSA P-256 verify loop: {r:>9.0} records/s ({:.1} µs each)", 1e6 / r);
    println!("  verify_store, one core (all checks): {v:>6.0} records/s ({:.1} µs each)", 1e6 / v);
    println!("  ratio verifier/raw = {:.2}x  (goal >= 0.80x, both on one core)", v / r);
    // Where the verifier's time beyond ECDSA goes (per record, best of the rounds).
    type RowCheck<'a> = &'a dyn Fn(&(Vec<u8>, Vec<u8>)) -> BenchResult<()>;
    let cost = |what: &str, f: RowCheck| -> BenchResult<()> {
        let mut best = Duration::MAX;
        for _ in 0..ROUNDS {
            let start = Instant::now();
            rows.iter().try_for_each(f)?;
            best = best.min(start.elapsed());
        }
        println!("    of which {what:<34} {:>6.2} µs", best.as_secs_f64() * 1e6 / n as f64);
        Ok(())
    };
    cost("decode the fixed layout", &|(rec, _)| {
        std::hint::black_box(Record::decode(rec)?);
        Ok(())
    })?;
    cost("entry hash (SHA-256)", &|(rec, _)| {
        std::hint::black_box(entry_hash(rec));
        Ok(())
    })?;
    cost("payload: JSON parse only", &|(rec, _)| {
        let v: serde_json::Value = serde_json::from_slice(&rec[136..])?;
        std::hint::black_box(v);
        Ok(())
    })?;
    cost("payload: parse + canonical check", &|(rec, _)| {
        let r = Record::decode(rec)?;
        std::hint::black_box(parse_payload(r.event_type, &r.payload)?);
        Ok(())
    })?;
    let start = Instant::now();
    let store = Store::open_read_only(&vpath)?;
    store.for_each(|s| {
        std::hint::black_box(s);
        Ok::<_, std::convert::Infallible>(())
    })??;
    println!(
        "    of which {:<34} {:>6.2} µs",
        "SQLite read of the rows",
        start.elapsed().as_secs_f64() * 1e6 / n as f64
    );

    // --- 1b. the verifier on every core vs one core, over a long log ----------------
    let big = match (smoke, quick) {
        (true, _) => 200,
        (false, true) => 5_000,
        (false, false) => env_usize("AUDIT_BENCH_VERIFY_RECORDS", 100_000),
    };
    let cores = resetdesk::audit::offline::default_threads();
    let big_dir = if shm.is_dir() { tempfile::tempdir_in(shm)? } else { tempfile::tempdir()? };
    let bpath = big_dir.path().join("audit.sqlite");
    let mut log = AuditLog::open(&bpath)?;
    append_records(&mut log, &mut alice, big)?;
    drop(log);
    let timed_verify = |threads: usize| -> BenchResult<Duration> {
        let mut best = Duration::MAX;
        for _ in 0..2 {
            let start = Instant::now();
            let store = Store::open_read_only(&bpath)?;
            let summary = verify_store_with(&store, &resolver, &[], &CollectorKeys::default(), &[], threads)?;
            best = best.min(start.elapsed());
            assert_eq!(summary.records as usize, big);
        }
        Ok(best)
    };
    let (one, all) = (timed_verify(1)?, timed_verify(cores)?);
    println!("audit verify of a {big}-record log (SQLite read and every check):");
    println!("  one core:        {:>9.0} records/s ({:.2} s)", per_sec(big, one), one.as_secs_f64());
    println!("  {cores} cores:         {:>9.0} records/s ({:.2} s)", per_sec(big, all), all.as_secs_f64());
    println!(
        "  ratio {cores} cores/one core = {:.2}x  (goal >= 1.6x on two cores)",
        one.as_secs_f64() / all.as_secs_f64()
    );

    // --- 2. durable append vs raw FULL insert ---------------------------------------
    let disk_dir = tempfile::tempdir()?;
    let apath = disk_dir.path().join("audit.sqlite");
    let rpath = disk_dir.path().join("raw.sqlite");
    let mut best_append = Duration::MAX;
    let mut best_unsigned = Duration::MAX;
    let mut best_insert = Duration::MAX;
    let mut same_bytes = Vec::new();
    for round in 0..ROUNDS {
        // Alternate which side goes first, so neither always gets the warmer disk.
        if round % 2 == 1 && !same_bytes.is_empty() {
            best_insert = best_insert.min(raw_inserts(&rpath, &same_bytes)?);
        }
        remove_db(&apath);
        let mut log = AuditLog::open(&apath)?;
        let mut timed = Timed { inner: &mut alice, spent: Duration::ZERO };
        let total = append_records(&mut log, &mut timed, m)?;
        best_append = best_append.min(total);
        best_unsigned = best_unsigned.min(total.saturating_sub(timed.spent));
        drop(log);
        same_bytes = rows_of(&apath)?;
        if round % 2 == 0 {
            best_insert = best_insert.min(raw_inserts(&rpath, &same_bytes)?);
        }
    }
    let (a, i) = (per_sec(m, best_append), per_sec(m, best_insert));
    println!(
        "append: {m} records, WAL + synchronous=FULL, one transaction each (disk under {})",
        disk_dir.path().display()
    );
    println!("  raw SQLite insert of the same bytes: {i:>7.0} records/s ({:.2} ms each)", 1e3 / i);
    println!("  AuditLog::append (software signer):  {a:>7.0} records/s ({:.2} ms each)", 1e3 / a);
    let u = per_sec(m, best_unsigned);
    println!("  AuditLog::append minus signing time: {u:>7.0} records/s ({:.2} ms each)", 1e3 / u);
    println!(
        "  ratio append/raw time, signing excluded = {:.2}x  (goal <= 1.30x)",
        best_unsigned.as_secs_f64() / best_insert.as_secs_f64()
    );
    println!(
        "  ratio append/raw time, software P-256 signing included = {:.2}x",
        best_append.as_secs_f64() / best_insert.as_secs_f64()
    );
    println!("  (a YubiKey 9c signature adds ~10 ms per record on top; see AUDIT-DESIGN.md)");
    Ok(())
}
