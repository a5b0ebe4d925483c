//! `resetdesk-bench`: end-to-end reset benchmark on the embedded directory.
//!
//! Each reset runs the real path except the human parts: directory lookup, workflow
//! session (verification verdicts are fed in as passed), the signed reset intent made
//! durable, temporary-password generation with the blocklist, the directory write
//! (argon2id hash + must-change), the signed outcome. The agent's 9c key is a
//! *software* P-256 key here (benchmark only; a YubiKey adds ≈ 10 ms per signature).
//! Prints p50/p99/mean per phase and resets per second, then verifies the whole log
//! offline and prints the verifier's rate. Asserts nothing about time.
//!
//! `cargo run --release --bin resetdesk-bench -- --resets 50 [--data-dir DIR]`

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use der::Encode as _;
use p256::ecdsa::signature::hazmat::PrehashSigner;
use p256::ecdsa::SigningKey;
use p256::pkcs8::EncodePublicKey as _;
use resetdesk::audit::store::Store;
use resetdesk::audit::{verify_store, AuditLog, CertificateResolver, CollectorKeys, Event, Outcome};
use resetdesk::ca::{OrgCa, CA_VALIDITY};
use resetdesk::config::Config;
use resetdesk::directory::embedded::EmbeddedDirectory;
use resetdesk::directory::Directory;
use resetdesk::policy::{AgentIdentity, Channel, PolicyConfig, RequestContext, StatedDetails};
use resetdesk::tier::{AccountTier, AgentTier};
use resetdesk::token::{RecordSigner, TokenError};
use resetdesk::verification::Verdict;
use resetdesk::workflow::{Decision, Event as WfEvent, OpenRequest, Session};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

#[derive(Debug, Parser)]
#[command(name = "resetdesk-bench", about = "End-to-end reset benchmark (software signing key; embedded directory)")]
struct Args {
    /// Number of resets.
    #[arg(long, default_value_t = 50)]
    resets: usize,
    /// Data directory to create the demo desk in (default: a fresh temporary one, removed after).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
}

/// Benchmark-only signer: a software P-256 key standing in for slot 9c.
struct SoftwareKey(SigningKey);

impl RecordSigner for SoftwareKey {
    fn key_id(&self) -> [u8; 32] {
        let spki = self.0.verifying_key().to_public_key_der().map(|d| d.as_bytes().to_vec()).unwrap_or_default();
        Sha256::digest(spki).into()
    }

    fn sign_digest(&mut self, digest: &[u8; 32]) -> Result<Vec<u8>, TokenError> {
        let sig: p256::ecdsa::Signature = self.0.sign_prehash(digest).map_err(|e| TokenError::Card(e.to_string()))?;
        Ok(sig.to_der().as_bytes().to_vec())
    }
}

const PHASES: [&str; 6] = ["lookup+workflow", "intent (sign+fsync)", "password", "directory write", "outcome (sign+fsync)", "total"];

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i.min(sorted.len().saturating_sub(1))).copied().unwrap_or_default()
}

/// `map_err` helper: "what: error".
fn fail<E: std::fmt::Display>(what: &'static str) -> impl Fn(E) -> String {
    move |err| format!("{what}: {err}")
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("resetdesk-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<(), String> {
    let (data_dir, temporary) = match &args.data_dir {
        Some(d) => (d.clone(), false),
        None => (std::env::temp_dir().join(format!("resetdesk-bench-{}", std::process::id())), true),
    };
    std::fs::create_dir_all(&data_dir).map_err(fail("data directory"))?;
    let result = bench(args, &data_dir);
    if temporary {
        let _ = std::fs::remove_dir_all(&data_dir);
    }
    result
}

fn bench(args: &Args, data_dir: &std::path::Path) -> Result<(), String> {
    let now = OffsetDateTime::now_utc();
    let config = Config { data_dir: data_dir.to_owned(), ..Config::default() };
    let mut directory = EmbeddedDirectory::open(data_dir, &config).map_err(fail("directory"))?;
    if directory.account_count().map_err(fail("directory"))? == 0 {
        resetdesk::demo::init(&mut directory, now).map_err(fail("demo directory"))?;
    }
    let ca = OrgCa::generate(&config.organisation, now, CA_VALIDITY).map_err(fail("CA"))?;
    let mut key = SoftwareKey(SigningKey::random(&mut rand::rngs::OsRng));
    let spki = x509_cert::spki::SubjectPublicKeyInfoOwned::from_key(*key.0.verifying_key()).map_err(fail("key"))?;
    let cert = ca.issue("alice", spki, now - time::Duration::hours(1), now + time::Duration::days(1)).map_err(fail("cert"))?;
    let ca_der = ca.trust_anchor().certificate().to_der().map_err(fail("CA"))?;
    let resolver = || -> Result<CertificateResolver, String> {
        let mut r = CertificateResolver::new(&ca_der).map_err(fail("CA"))?;
        r.add_certificate_der(&cert.to_der().map_err(fail("cert"))?, None)?;
        Ok(r)
    };
    let audit_path = data_dir.join(resetdesk::audit::store::FILE_NAME);
    let mut log = AuditLog::open(&audit_path).map_err(fail("audit log"))?.with_key_check(Box::new(resolver()?));

    let candidates = ["jsmith", "ykim", "obrien", "mrossi", "dgarcia", "anovak"];
    let mut targets = Vec::new();
    for u in candidates {
        let a = directory.account(u).map_err(fail("directory"))?;
        if a.tier == AccountTier::Standard && a.agent_tier.is_none() && !a.flagged {
            targets.push(u);
        }
    }
    if targets.is_empty() {
        return Err("no standard-tier demo account to reset".into());
    }
    let policy = PolicyConfig::default();
    let agent = AgentIdentity { username: "alice".into(), tier: AgentTier::Junior, groups: vec![], key_id: key.key_id() };
    let mut samples: Vec<[Duration; 6]> = Vec::with_capacity(args.resets);

    for i in 0..args.resets {
        let t = OffsetDateTime::now_utc();
        let username = targets[i % targets.len()];
        let start = Instant::now();
        let account = directory.account(username).map_err(fail("directory"))?;
        let req = OpenRequest {
            request_id: format!("bench-{i}"),
            at: t,
            agent: agent.clone(),
            account,
            manager: None,
            context: RequestContext { channel: Channel::WalkUp, stated: StatedDetails::default(), previous_resets: vec![], previous_failures: vec![] },
            directory_backend: "embedded".into(),
            emergency_reason: None,
        };
        let (mut s, opened) = Session::open(&policy, req).map_err(fail("workflow"))?;
        if s.phase() == resetdesk::workflow::Phase::Refused {
            return Err(format!("the workflow refused to reset {username}: {opened:?}"));
        }
        s.handle(WfEvent::SecurityAnswersChecked { at: t, verdict: Verdict::Passed }).map_err(fail("workflow"))?;
        s.handle(WfEvent::TotpChecked { at: t, verdict: Verdict::Passed, accepted_step: Some(1) }).map_err(fail("workflow"))?;
        let d = s.handle(WfEvent::ResetRequested { at: t }).map_err(fail("workflow"))?;
        let Some(Decision::WriteIntent { facts }) = d.into_iter().next() else {
            return Err(format!("workflow did not ask for an intent record for {username}"));
        };
        let t_workflow = start.elapsed();

        let intent = log.append(&Event::reset_intent(facts.as_ref()).map_err(fail("facts"))?, &mut key, t).map_err(fail("intent"))?;
        let t_intent = start.elapsed();
        let d = s
            .handle(WfEvent::IntentRecorded { at: t, seq: intent.seq, entry_hash: intent.entry_hash })
            .map_err(fail("workflow"))?;
        let Some(Decision::ExecuteReset { username: user, password: spec, context_words }) = d.into_iter().next() else {
            return Err("workflow did not execute the reset after the intent".into());
        };
        let words: Vec<&str> = context_words.iter().map(String::as_str).collect();
        let password = resetdesk::password::generate(&spec, &words).map_err(fail("password"))?;
        let t_password = start.elapsed();
        directory.set_temporary_password(&user, &password).map_err(fail("directory write"))?;
        drop(password);
        let t_directory = start.elapsed();
        let d = s.handle(WfEvent::DirectoryResult { at: t, result: Ok(()) }).map_err(fail("workflow"))?;
        let facts = d
            .into_iter()
            .find_map(|x| if let Decision::WriteOutcome { facts } = x { Some(facts) } else { None })
            .ok_or("workflow did not ask for an outcome record")?;
        let outcome = Event::reset_outcome(intent.intent_ref(), &Outcome::Done, facts.as_ref()).map_err(fail("facts"))?;
        log.append(&outcome, &mut key, t).map_err(fail("outcome"))?;
        let t_total = start.elapsed();
        samples.push([t_workflow, t_intent - t_workflow, t_password - t_intent, t_directory - t_password, t_total - t_directory, t_total]);
    }
    drop(log);

    println!("resetdesk-bench: {} resets of standard-tier demo accounts (software 9c key; embedded directory)", args.resets);
    println!("{:<22} {:>9} {:>9} {:>9}", "phase", "p50 ms", "p99 ms", "mean ms");
    for (p, name) in PHASES.iter().enumerate() {
        let mut v: Vec<Duration> = samples.iter().map(|s| s[p]).collect();
        v.sort();
        let mean = v.iter().sum::<Duration>() / v.len().max(1) as u32;
        println!("{name:<22} {:>9.2} {:>9.2} {:>9.2}", ms(percentile(&v, 0.5)), ms(percentile(&v, 0.99)), ms(mean));
    }
    let total: Duration = samples.iter().map(|s| s[5]).sum();
    println!("throughput: {:.1} resets/s (one desk, sequential)", args.resets as f64 / total.as_secs_f64().max(1e-9));

    let start = Instant::now();
    let store = Store::open_read_only(&audit_path).map_err(fail("audit log"))?;
    let summary = verify_store(&store, &resolver()?, &[], &CollectorKeys::default(), &[]).map_err(fail("verify"))?;
    let took = start.elapsed();
    println!(
        "offline verify: {} records OK in {:.1} ms ({:.0} records/s)",
        summary.records,
        ms(took),
        summary.records as f64 / took.as_secs_f64().max(1e-9)
    );
    Ok(())
}
