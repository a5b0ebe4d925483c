//! Collector benchmarks: numbers and ratios in one run (no timed assertions).
//!
//! 1. Verified ingest on SQLite, in process: the path `POST /add-records` runs
//!    (decode, certificate and record prechecks outside the lock with
//!    `Prechecker::prepare`, then under the lock `api::ingest_locked` as the handler
//!    runs it: in-order decisions, the anomaly rules, the checkpoint signature, the
//!    receipts and the account index, all in one SQLite transaction; the answer's
//!    JSON after the lock, written out), from as many client threads as cores, each
//!    its own desk log in batches of 1,000 (`max_batch`), against the raw ECDSA P-256
//!    verify rate of the same function (`signature_valid`, ring) on every core at
//!    once, measured over a span like a run's before and after each of five runs
//!    (the median ratio counts).
//!    Goal: ≥ 0.5×. Also printed: the same load with
//!    everything under the lock (the ingest before prechecks moved out of it), batches
//!    of 100 (the commit per batch weighs more), and the disk's fsync time.
//!    PostgreSQL: the same on `PgStore`, in a fresh database on the project's cluster
//!    (`scripts/postgres.sh`, started if needed), or on `RESETDESK_BENCH_PG_URL`.
//! 2. A backlog of one desk log (100,000 records) drained over loopback TLS to the
//!    real `resetdesk-collector serve` process, in batches of 1,000 (its default
//!    `max_batch`), one after another as a desk's sync does. Goal: ≤ 30 s.
//! 3. 1,000 desks (each its own key, certificate and log) syncing at once to the real
//!    process over loopback TLS, each on its own connection; errors counted.
//!
//! `cargo bench -p resetdesk-collector --bench ingest`; `RESETDESK_BENCH_QUICK=1`
//! (scripts/bench.sh --quick) runs fewer records; `cargo test --benches` runs a smoke
//! run; `COLLECTOR_BENCH_ONLY=sqlite` stops after the SQLite ingest measurements,
//! `COLLECTOR_BENCH_ONLY=sqlite-goal` after the goal's five runs (for profiling
//! them). The clients run on the same machine, so they take part of its cores.

#[path = "../../tests/audit_support/mod.rs"]
mod audit_support;
#[path = "../tests/pg_support/mod.rs"]
mod pg_support;

use std::io::BufRead as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use audit_support::{reset_facts, Pki, SoftSigner};
use p256::ecdsa::signature::hazmat::PrehashSigner as _;
use resetdesk::audit::record::{entry_hash, signing_digest};
use resetdesk::audit::verify::{signature_valid, StoredRecord};
use resetdesk::audit::{
    verify_signed_checkpoint, CollectorKeys, DirectoryOutcome, Event, EventType, IntentRef, KeyResolver as _, Record,
};
use resetdesk::token::RecordSigner as _;
use resetdesk_collector::alerts::AlertStore;
use resetdesk_collector::anomaly::config::AnomalyConfig;
use resetdesk_collector::anomaly::rules::AnomalyState;
use resetdesk_collector::anomaly::AnomalyWatch;
use resetdesk_collector::api::ingest_locked;
use resetdesk_collector::history::store::HistoryStore;
use resetdesk_collector::ingest::Collector;
use resetdesk_collector::note::LogKey;
use resetdesk_collector::store::{LogStore, PgStore, SqliteStore};
use resetdesk_collector::wire::{encode_batch, AddRecordsResponse};
use sha2::{Digest as _, Sha256};

/// Any failure aborts the benchmark with its error: the numbers would be meaningless.
type BenchResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

const ORIGIN: &str = "bench.resetdesk/collector";

/// Sizes of one run.
struct Sizes {
    in_process_records: usize,
    backlog: usize,
    desks: usize,
    per_desk: usize,
    desk_batch: usize,
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

fn per_sec(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// A software agent key for desk `n` (any number of distinct ones).
fn agent(n: usize) -> BenchResult<SoftSigner> {
    let mut bytes: [u8; 32] = Sha256::digest([b"resetdesk-bench-agent".as_slice(), &n.to_be_bytes()].concat()).into();
    bytes[0] &= 0x7f; // well below the curve order
    Ok(SoftSigner { key: p256::ecdsa::SigningKey::from_bytes(&bytes.into())?, name: format!("agent{n}") })
}

/// A desk log of `n` records (reset intents and outcomes of about 1 KiB, as real ones),
/// encoded in order and signed on every core.
fn desk_log(signer: &SoftSigner, n: usize) -> BenchResult<Vec<StoredRecord>> {
    let at = now_ms();
    let key_id = signer.key_id();
    let mut prev = [0; 32];
    let mut open: Option<IntentRef> = None;
    let mut encoded = Vec::with_capacity(n);
    for i in 0..n {
        let seq = i as u64 + 1;
        let mut facts = reset_facts(&signer.name, &format!("user{i}"));
        // The shape the anomaly rules and the account index read (`docs/audit-format.md`),
        // so that they do their work on every outcome: one reset each of its own account.
        facts["agent"] = serde_json::json!({"username": signer.name});
        facts["target"] = serde_json::json!({"username": format!("user{}", i / 2), "effective_tier": "standard"});
        facts["detail"] = serde_json::Value::String("x".repeat(600));
        let event = match open.take() {
            None => Event::reset_intent(&facts)?,
            Some(intent) => Event::reset_outcome(intent, &DirectoryOutcome::Done, &facts)?,
        };
        let record = Record {
            event_type: event.event_type(),
            seq,
            timestamp_ms: at,
            key_id,
            cosigner_key_id: None,
            prev_hash: prev,
            payload: event.payload().to_vec(),
        }
        .encode()?;
        prev = entry_hash(&record);
        if event.event_type() == EventType::ResetIntent {
            open = Some(IntentRef { seq, entry_hash: prev });
        }
        encoded.push(record);
    }
    let per_thread = n.div_ceil(cores()).max(1);
    let parts: Vec<BenchResult<Vec<StoredRecord>>> = std::thread::scope(|s| {
        let handles: Vec<_> = encoded
            .chunks(per_thread)
            .enumerate()
            .map(|(part, chunk)| {
                s.spawn(move || {
                    chunk
                        .iter()
                        .enumerate()
                        .map(|(k, record)| {
                            let sig: p256::ecdsa::Signature = signer.key.sign_prehash(&signing_digest(record))?;
                            Ok(StoredRecord {
                                row_seq: (part * per_thread + k + 1) as u64,
                                record: record.clone(),
                                signature: sig.to_der().as_bytes().to_vec(),
                                cosignature: None,
                            })
                        })
                        .collect()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err("a signing thread panicked".into()))).collect()
    });
    let mut out = Vec::with_capacity(n);
    for part in parts {
        out.extend(part?);
    }
    Ok(out)
}

/// One desk: its log and the batches it sends (encoded ahead: the desk's cost).
struct Desk {
    bodies: Vec<Vec<u8>>,
    records: usize,
}

fn desk(pki: &Pki, signer: &SoftSigner, n: usize, batch: usize) -> BenchResult<Desk> {
    if n == 0 {
        return Err("a desk log needs at least one record".into());
    }
    let records = desk_log(signer, n)?;
    let log_id = entry_hash(&records[0].record);
    let certs = vec![pki.issue(signer)];
    let bodies = records.chunks(batch).map(|c| encode_batch(&log_id, &certs, c)).collect();
    Ok(Desk { bodies, records: n })
}

fn check_answer(answer: &AddRecordsResponse, body_records: usize) -> BenchResult<()> {
    if answer.receipts.len() != body_records {
        return Err(format!("{} receipts for {body_records} records", answer.receipts.len()).into());
    }
    Ok(())
}

/// Raw ECDSA P-256 verifies per second over `records` on `threads` threads, in five
/// passes: the best pass's rate and the rate over all five (a span about as long as
/// one of the goal's ingest runs, measured as that run is: whatever else takes the
/// machine's cores meanwhile weighs on both alike).
fn raw_verify_rates(pki: &Pki, signer: &SoftSigner, records: &[StoredRecord], threads: usize) -> BenchResult<RawRate> {
    let key = pki.resolver(&[signer]).resolve(&signer.key_id())?;
    let mut best = Duration::MAX;
    let mut all = Duration::ZERO;
    const PASSES: usize = 5;
    for _ in 0..PASSES {
        let start = Instant::now();
        let per_thread = records.len().div_ceil(threads);
        let all_ok = std::thread::scope(|s| {
            let handles: Vec<_> = records
                .chunks(per_thread)
                .map(|c| {
                    let key = &key;
                    s.spawn(move || c.iter().all(|r| signature_valid(key, &r.record, &r.signature)))
                })
                .collect();
            handles.into_iter().all(|h| h.join().unwrap_or(false))
        });
        if !all_ok {
            return Err("a record signed by this bench does not verify".into());
        }
        let took = start.elapsed();
        best = best.min(took);
        all += took;
    }
    Ok(RawRate { best: per_sec(records.len(), best), over_all: per_sec(records.len() * PASSES, all) })
}

/// Raw verifies per second: the best of five passes, and over all of them.
#[derive(Clone, Copy)]
struct RawRate {
    best: f64,
    over_all: f64,
}

/// The best pass's raw rate.
fn raw_verify_rate(pki: &Pki, signer: &SoftSigner, records: &[StoredRecord], threads: usize) -> BenchResult<f64> {
    raw_verify_rates(pki, signer, records, threads).map(|r| r.best)
}

/// What one in-process run measured.
struct IngestRun {
    records_per_sec: f64,
    /// Per record: time spent outside the lock (prepare) and holding it.
    apart_us: f64,
    locked_us: f64,
}

/// Verified ingest through the collector in process: each of `desks` sent from its
/// own thread. `apart`: prechecks outside the lock (as the HTTP handler does); else
/// everything under the lock.
fn in_process_rate<S: LogStore + HistoryStore + AnomalyState + AlertStore + Send + 'static>(
    store: S,
    pki: &Pki,
    dir: &Path,
    desks: &[Desk],
    apart: bool,
) -> BenchResult<IngestRun> {
    let key_path = tempfile::Builder::new().prefix("log-").tempdir_in(dir)?.keep().join("log.key");
    LogKey::create(&key_path, ORIGIN)?;
    // As `serve` opens it: the anomaly rules watch every batch, in their default
    // configuration but for business hours: the records are stamped with the time of
    // the run, which may be outside them, and an alert on every reset is not the load
    // this measures.
    let mut anomaly = AnomalyConfig::default();
    anomaly.business_hours.enabled = false;
    let collector = Collector::open(store, &pki.ca_pem(), LogKey::load(&key_path, ORIGIN)?, 1000)?
        .with_watcher(Box::new(AnomalyWatch::new(anomaly)));
    let prechecker = collector.prechecker();
    // A shared database (PostgreSQL) may hold earlier runs' leaves: count the growth.
    let size_before = collector.checkpoint()?.0;
    let collector = Mutex::new(collector);
    let total: usize = desks.iter().map(|d| d.records).sum();
    let start = Instant::now();
    let results: Vec<BenchResult<(Duration, Duration)>> = std::thread::scope(|s| {
        let handles: Vec<_> = desks
            .iter()
            .map(|d| {
                let (collector, prechecker) = (&collector, &prechecker);
                s.spawn(move || -> BenchResult<(Duration, Duration)> {
                    let (mut outside, mut held) = (Duration::ZERO, Duration::ZERO);
                    for body in &d.bodies {
                        let t = Instant::now();
                        let prepared = apart.then(|| prechecker.prepare(body));
                        outside += t.elapsed();
                        let mut c = collector.lock().map_err(|_| "lock poisoned")?;
                        let t = Instant::now();
                        // What the handler does under the lock (the batch, then the account index).
                        let prepared = prepared.unwrap_or_else(|| prechecker.prepare(body));
                        let answer = ingest_locked(&mut c, body, prepared, now_ms())?;
                        held += t.elapsed();
                        drop(c);
                        // The answer's JSON, after the lock, as the handler makes it.
                        std::hint::black_box(prechecker.respond(answer)?);
                    }
                    Ok((outside, held))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err("a client thread panicked".into()))).collect()
    });
    let elapsed = start.elapsed();
    let (mut outside, mut held) = (Duration::ZERO, Duration::ZERO);
    for r in results {
        let (o, h) = r?;
        outside += o;
        held += h;
    }
    let size = collector.lock().map_err(|_| "lock poisoned")?.checkpoint()?.0 - size_before;
    if size != total as u64 {
        return Err(format!("tree has {size} leaves after ingesting {total} records").into());
    }
    let us = |d: Duration| d.as_secs_f64() * 1e6 / total as f64;
    Ok(IngestRun { records_per_sec: per_sec(total, elapsed), apart_us: us(outside), locked_us: us(held) })
}

/// The median time of an fsync of a small write in `dir` (the durability cost a
/// batch pays once, at its commit), in ms.
fn fsync_ms(dir: &Path) -> BenchResult<f64> {
    use std::io::Write as _;
    let mut f = std::fs::File::create(dir.join("fsync.probe"))?;
    let mut times = Vec::with_capacity(21);
    for _ in 0..21 {
        f.write_all(&[0; 4096])?;
        let start = Instant::now();
        f.sync_data()?;
        times.push(start.elapsed());
    }
    times.sort();
    Ok(times[times.len() / 2].as_secs_f64() * 1e3)
}

/// A `resetdesk-collector serve` process on loopback (TLS with a demo CA), SQLite.
struct Server {
    dir: tempfile::TempDir,
    child: Child,
    port: u16,
    vkey: String,
}

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_resetdesk-collector"))
}

impl Server {
    fn start(pki: &Pki) -> BenchResult<Self> {
        let dir = tempfile::tempdir()?;
        std::fs::write(dir.path().join("org-ca.pem"), pki.ca_pem())?;
        let config = dir.path().join("collector.toml");
        std::fs::write(
            &config,
            format!(
                "listen = \"127.0.0.1:0\"\norigin = \"{ORIGIN}\"\ndatabase = \"collector.db\"\nsigning_key_file = \"log.key\"\n\
                 org_ca_file = \"org-ca.pem\"\ntls_cert_file = \"tls/server.pem\"\ntls_key_file = \"tls/server.key\"\n"
            ),
        )?;
        for args in
            [vec!["demo-tls".into(), dir.path().join("tls")], vec!["init".into(), "--config".into(), config.clone()]]
        {
            let out = bin().args(&args).output()?;
            if !out.status.success() {
                return Err(format!("{args:?}: {}", String::from_utf8_lossy(&out.stderr)).into());
            }
        }
        let log = std::fs::File::create(dir.path().join("collector.log"))?;
        let mut child = bin()
            .args(["serve", "--config"])
            .arg(&config)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()?;
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().ok_or("no stdout")?).read_line(&mut line)?;
        // "listening on https://127.0.0.1:PORT verifier-key VKEY"
        let words: Vec<&str> = line.split_whitespace().collect();
        let (Some(addr), Some(vkey)) = (words.get(2), words.get(4)) else {
            return Err(format!("the collector did not start: {line:?}").into());
        };
        let port = addr.rsplit(':').next().ok_or("no port")?.parse()?;
        Ok(Server { vkey: (*vkey).to_owned(), dir, child, port })
    }

    fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.port)
    }

    fn tls(&self) -> BenchResult<rustls::ClientConfig> {
        use rustls::pki_types::pem::PemObject as _;
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls::pki_types::CertificateDer::pem_file_iter(self.dir.path().join("tls/ca.pem"))? {
            roots.add(c?)?;
        }
        Ok(rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth())
    }

    fn tree_size(&self) -> BenchResult<u64> {
        let client = reqwest::blocking::Client::builder().tls_backend_preconfigured(self.tls()?).build()?;
        let note = client.get(self.url("/checkpoint")).send()?.text()?;
        let mut keys = CollectorKeys::default();
        keys.add_verifier_key(&self.vkey)?;
        Ok(verify_signed_checkpoint(&note, &keys)?.tree_size)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Drain one desk's backlog to the real process, batch after batch; its duration.
fn drain_backlog(server: &Server, desk: &Desk) -> BenchResult<Duration> {
    let client = reqwest::blocking::Client::builder()
        .tls_backend_preconfigured(server.tls()?)
        .timeout(Duration::from_secs(120))
        .build()?;
    let url = server.url("/add-records");
    let start = Instant::now();
    let mut left = desk.records;
    for body in &desk.bodies {
        let r = client.post(&url).body(body.clone()).send()?;
        let status = r.status();
        let text = r.text()?;
        if !status.is_success() {
            return Err(format!("backlog batch refused ({status}): {text}").into());
        }
        let answer: AddRecordsResponse = serde_json::from_str(&text)?;
        let n = answer.receipts.len().min(left);
        check_answer(&answer, n)?;
        left -= n;
    }
    Ok(start.elapsed())
}

/// Every desk syncs at once (one task and one connection each); (duration, errors).
fn desks_at_once(server: &Server, desks: Vec<Desk>) -> BenchResult<(Duration, usize)> {
    let tls = server.tls()?;
    let url = server.url("/add-records");
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let mut clients = Vec::with_capacity(desks.len());
        for _ in &desks {
            clients.push(
                reqwest::Client::builder()
                    .tls_backend_preconfigured(tls.clone())
                    .timeout(Duration::from_secs(300))
                    .build()?,
            );
        }
        let start = Instant::now();
        let tasks: Vec<_> = desks
            .into_iter()
            .zip(clients)
            .map(|(d, client)| {
                let url = url.clone();
                tokio::spawn(async move {
                    let mut errors = 0usize;
                    for body in d.bodies {
                        match client.post(&url).body(body).send().await {
                            Ok(r) if r.status().is_success() => {
                                if r.bytes().await.is_err() {
                                    errors += 1;
                                }
                            }
                            Ok(r) => {
                                eprintln!("desk sync refused: {} {}", r.status(), r.text().await.unwrap_or_default());
                                errors += 1;
                            }
                            Err(e) => {
                                eprintln!("desk sync failed: {e}");
                                errors += 1;
                            }
                        }
                    }
                    errors
                })
            })
            .collect();
        let mut errors = 0;
        for t in tasks {
            errors += t.await.unwrap_or(1);
        }
        Ok((start.elapsed(), errors))
    })
}

fn main() -> BenchResult<()> {
    // `cargo bench` passes --bench; `cargo test --benches` runs us too: keep that a
    // smoke run. `scripts/bench.sh --quick` (RESETDESK_BENCH_QUICK) runs fewer records.
    let smoke = std::env::args().all(|a| a != "--bench");
    let quick = std::env::var_os("RESETDESK_BENCH_QUICK").is_some();
    let sizes = match (smoke, quick) {
        (true, _) => Sizes { in_process_records: 200, backlog: 300, desks: 20, per_desk: 4, desk_batch: 2 },
        (false, true) => {
            Sizes { in_process_records: 20_000, backlog: 10_000, desks: 1_000, per_desk: 4, desk_batch: 2 }
        }
        (false, false) => Sizes {
            in_process_records: env_usize("COLLECTOR_BENCH_RECORDS", 20_000),
            backlog: env_usize("COLLECTOR_BENCH_BACKLOG", 100_000),
            desks: env_usize("COLLECTOR_BENCH_DESKS", 1_000),
            per_desk: env_usize("COLLECTOR_BENCH_PER_DESK", 20),
            desk_batch: 5,
        },
    };
    if smoke {
        println!("(smoke run under `cargo test`: unoptimised, few records; run `cargo bench -p resetdesk-collector --bench ingest` for numbers)");
    }
    let cores = cores();
    let pki = Pki::new(1);
    let scratch = tempfile::tempdir()?;

    // --- 1. verified ingest in process vs raw ECDSA verify on every core -------------
    let clients = cores.max(2);
    let per_client = sizes.in_process_records.div_ceil(clients);
    let signers = (0..clients).map(agent).collect::<BenchResult<Vec<_>>>()?;
    let desks = signers.iter().map(|s| desk(&pki, s, per_client, 1000)).collect::<BenchResult<Vec<_>>>()?;
    let small = signers.iter().map(|s| desk(&pki, s, per_client, 100)).collect::<BenchResult<Vec<_>>>()?;
    let sample = desk_log(&signers[0], per_client.min(4000))?;
    let raw_one = raw_verify_rate(&pki, &signers[0], &sample, 1)?;
    let total = clients * per_client;
    let db = |name: &str| SqliteStore::open(&scratch.path().join(name));
    // The goal's run is made five times, each on a fresh database, between two
    // measurements of the raw rate, and counted against their mean; the median of
    // the five ratios counts. The speed of this machine's cores drifts (it is a VM
    // sharing its host): a ratio of two rates measured minutes apart would measure
    // the drift, not the ingest. Each raw measurement is a rate over a span like a
    // run's, not its best pass: the best of several short passes misses whatever
    // else ran meanwhile, which the run's rate cannot. With two desks, how their
    // batches fall against each other also moves one run's rate.
    const GOAL_RUNS: usize = 5;
    let mut runs = Vec::with_capacity(GOAL_RUNS);
    let mut raw_before = raw_verify_rates(&pki, &signers[0], &sample, cores)?;
    let mut raw_best = raw_before.best;
    for k in 0..GOAL_RUNS {
        let run = in_process_rate(db(&format!("apart{k}.db"))?, &pki, scratch.path(), &desks, true)?;
        let raw_after = raw_verify_rates(&pki, &signers[0], &sample, cores)?;
        raw_best = raw_best.max(raw_after.best);
        let raw = (raw_before.over_all + raw_after.over_all) / 2.0;
        runs.push((run.records_per_sec / raw, raw, run));
        raw_before = raw_after;
    }
    runs.sort_by(|a, b| a.0.total_cmp(&b.0));
    let spread: Vec<String> =
        runs.iter().map(|(ratio, raw, r)| format!("{:.0}/{raw:.0} = {ratio:.2}x", r.records_per_sec)).collect();
    let (ratio, raw_paired, apart) = runs.swap_remove(GOAL_RUNS / 2);
    if std::env::var("COLLECTOR_BENCH_ONLY").is_ok_and(|v| v == "sqlite-goal") {
        println!("  SQLite ingest, the goal's {GOAL_RUNS} runs: {}; median ratio {ratio:.2}x", spread.join(", "));
        return Ok(());
    }
    let locked = in_process_rate(db("locked.db")?, &pki, scratch.path(), &desks, false)?;
    let apart_small = in_process_rate(db("small.db")?, &pki, scratch.path(), &small, true)?;
    let fsync = fsync_ms(scratch.path())?;
    // For the other ratios: the raw rate again after the runs, the best measured.
    let raw_all = raw_best.max(raw_verify_rate(&pki, &signers[0], &sample, cores)?);
    println!(
        "verified ingest, in process (decode, prechecks, in-order decisions, SQLite WAL+FULL, checkpoint, receipts):"
    );
    println!("  {total} records of ~1.1 KiB from {clients} desks at once, batches of 1000 (max_batch), {cores} cores");
    println!("  fsync of the database's disk: {fsync:.2} ms (one per batch: its one transaction)");
    println!("  raw ECDSA P-256 verify (signature_valid, ring), 1 core:  {raw_one:>8.0} /s");
    println!("  raw ECDSA P-256 verify, {cores} cores together:          {raw_all:>8.0} /s  (the best measured; {raw_paired:.0} /s around the median run)");
    let run = |what: &str, r: &IngestRun| {
        println!(
            "  {what:<50} {:>8.0} records/s  (per record: {:.1} µs outside the lock, {:.1} µs holding it)",
            r.records_per_sec, r.apart_us, r.locked_us
        )
    };
    run("SQLite, prechecks outside the lock (median of 5):", &apart);
    println!("  {:<50} {} (ingest/raw records/s)", "  the five runs:", spread.join(", "));
    run("SQLite, everything under the lock (before):", &locked);
    run("SQLite, prechecks outside the lock, batches of 100:", &apart_small);
    println!(
        "  ratio SQLite ingest / raw verify on {cores} cores = {ratio:.2}x  (goal >= 0.50x; the median run over the raw rate around it)"
    );
    println!("  the same over the best raw rate measured = {:.2}x", apart.records_per_sec / raw_all);
    println!("  ratio prechecks apart / all under the lock = {:.2}x", apart.records_per_sec / locked.records_per_sec);
    if std::env::var("COLLECTOR_BENCH_ONLY").is_ok_and(|v| v == "sqlite") {
        return Ok(());
    }
    // --- PostgreSQL: the same load on PgStore, in a database of its own on the project's
    // cluster (scripts/postgres.sh, started if needed), or on RESETDESK_BENCH_PG_URL ---
    let own_db = if smoke || std::env::var_os("RESETDESK_BENCH_PG_URL").is_some() {
        None
    } else {
        pg_support::PgDatabase::create()
    };
    let pg_url = std::env::var("RESETDESK_BENCH_PG_URL").ok().or_else(|| own_db.as_ref().map(|d| d.url.clone()));
    match pg_url {
        Some(url) => {
            let pg = in_process_rate(PgStore::connect(&url)?, &pki, scratch.path(), &desks, true)?;
            run("PostgreSQL, prechecks outside the lock:", &pg);
            println!("  ratio PostgreSQL ingest / raw verify on {cores} cores = {:.2}x", pg.records_per_sec / raw_all);
            println!("  ratio PostgreSQL ingest / SQLite ingest = {:.2}x", pg.records_per_sec / apart.records_per_sec);
        }
        None => println!(
            "  PostgreSQL: not measured ({}; scripts/postgres.sh start, or set RESETDESK_BENCH_PG_URL)",
            if smoke { "smoke run" } else { "no cluster" }
        ),
    }
    drop(own_db);

    // --- 2. a backlog drained over loopback to the real process -----------------------
    let alice = agent(10_000)?;
    let backlog = desk(&pki, &alice, sizes.backlog, 1000)?;
    let server = Server::start(&pki)?;
    let took = drain_backlog(&server, &backlog)?;
    let size = server.tree_size()?;
    if size != sizes.backlog as u64 {
        return Err(format!("the collector holds {size} leaves after a backlog of {}", sizes.backlog).into());
    }
    let projected = took.as_secs_f64() * 100_000.0 / sizes.backlog as f64;
    println!("backlog: {} records of one desk log, batches of 1000, over loopback TLS to resetdesk-collector serve (SQLite):", sizes.backlog);
    println!("  drained in {:.2} s = {:.0} records/s", took.as_secs_f64(), per_sec(sizes.backlog, took));
    println!(
        "  100,000 records at this rate: {projected:.1} s; ratio goal/time = {:.2}x  (goal <= 30 s)",
        30.0 / projected
    );
    drop(server);

    // --- 3. many desks syncing at once -----------------------------------------------
    let mut many = Vec::with_capacity(sizes.desks);
    for n in 0..sizes.desks {
        many.push(desk(&pki, &agent(20_000 + n)?, sizes.per_desk, sizes.desk_batch)?);
    }
    let server = Server::start(&pki)?;
    let total = sizes.desks * sizes.per_desk;
    let (took, errors) = desks_at_once(&server, many)?;
    let size = server.tree_size()?;
    println!(
        "{} desks syncing at once ({} records each in batches of {}, own key, certificate, log and TLS connection):",
        sizes.desks, sizes.per_desk, sizes.desk_batch
    );
    println!(
        "  {total} records in {:.2} s = {:.0} records/s, {} requests, errors: {errors}, tree size {size} (expected {total})",
        took.as_secs_f64(),
        per_sec(total, took),
        sizes.desks * sizes.per_desk.div_ceil(sizes.desk_batch)
    );
    if errors > 0 || size != total as u64 {
        return Err(format!("{errors} desk sync errors; the tree holds {size} of {total} records").into());
    }
    Ok(())
}
