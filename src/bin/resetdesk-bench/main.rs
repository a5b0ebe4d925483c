//! `resetdesk-bench`: complete resets through the real desk, in the spirit of pgbench.
//!
//! Each reset goes the whole way through [`resetdesk::desk::Desk`]: history from the
//! audit store, the workflow engine, security answers and TOTP checked from scripted
//! (demo-style) requester input, the signed intent made durable, the temporary password
//! set in the embedded directory with must-change, the signed outcome, the outbox. The
//! agent signs with slot 9c of a PIV card through the token layer (pcscd). The data
//! directory is left for `resetdesk audit verify --data-dir DIR`.
//!
//! ```text
//! resetdesk-bench --data-dir DIR --resets N --reader NAME   # an enrolled card; PIN on stdin
//!                                                           # or in RESETDESK_BENCH_PIN
//! resetdesk-bench --data-dir DIR --resets N --virtual       # insert and enrol its own card
//! ```
//!
//! With `--reader`, DIR is a desk's data directory (demo directory, CA, the card enrolled
//! with `resetdesk token enroll`). With `--virtual`, DIR must not hold a CA yet: the
//! bench creates the demo directory and a CA, starts the `virtual-yubikey` binary (next
//! to this one, or `--virtual-yubikey PATH`) on the first vpcd reader and enrols it for
//! the agent. The virtual readers are shared with the test suites: hold their lock
//! while the bench runs, e.g. `flock /tmp/resetdesk-virtual-readers.lock resetdesk-bench ...`.
//!
//! Each run resets fresh standard-tier accounts `bench-<random>-<n>` that it adds to the
//! directory (as pgbench -i does), so every reset takes the same path under the
//! default policy. Prints per-stage timings and the ratio of the whole to the sum of
//! the token operations and the audit store's commits; asserts nothing about time.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use rand::RngCore;
use resetdesk::ca::OrgCa;
use resetdesk::config::Config;
use resetdesk::desk::{Desk, Reply, ResetRun, StageTimes};
use resetdesk::directory::embedded::{EmbeddedDirectory, NewAccount};
use resetdesk::directory::{ContactPoint, Directory, PasswordCheck};
use resetdesk::login::{login, AgentSession};
use resetdesk::policy::{Method, Missing};
use resetdesk::secret::Secret;
use resetdesk::token::card::PivCard;
use resetdesk::token::enrol::{enrol, EnrolRequest};
use resetdesk::token::registry::TokenRegistry;
use resetdesk::verification::totp;
use resetdesk::workflow::Phase;
use time::{Duration as TimeDuration, OffsetDateTime};

/// vpcd port of the first virtual reader ("Virtual PCD 00 00").
const VIRTUAL_PORT: &str = "35963";
/// The demo PIN the bench gives its own virtual card.
const VIRTUAL_PIN: &str = "246810";
const PET: &str = "Benchmark";
const CITY: &str = "Springfield";

#[derive(Debug, Parser)]
#[command(
    name = "resetdesk-bench",
    version,
    about = "Complete resets through the real desk, token layer and audit store; per-stage timings"
)]
struct Args {
    /// The desk's data directory (created with --virtual).
    #[arg(long, value_name = "DIR")]
    data_dir: PathBuf,
    /// Number of complete resets.
    #[arg(long, default_value_t = 20)]
    resets: usize,
    /// Reader holding the agent's enrolled card (PIN on stdin or in RESETDESK_BENCH_PIN).
    #[arg(long, value_name = "NAME", conflicts_with = "virtual_card")]
    reader: Option<String>,
    /// Insert a virtual card on the first vpcd reader and enrol it (demo/CI only).
    #[arg(long = "virtual")]
    virtual_card: bool,
    /// The virtual-yubikey binary (default: next to this one).
    #[arg(long, value_name = "PATH")]
    virtual_yubikey: Option<PathBuf>,
    /// The agent a --virtual card is enrolled for.
    #[arg(long, default_value = "alice")]
    agent: String,
}

fn main() -> ExitCode {
    resetdesk::logging::init_stderr("warn");
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("resetdesk-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `map_err` helper: "what: error".
fn fail<E: std::fmt::Display>(what: &'static str) -> impl Fn(E) -> String {
    move |e| format!("{what}: {e}")
}

/// The `virtual-yubikey` child process; its card leaves the reader when dropped.
struct VirtualCardProcess(Child);

impl Drop for VirtualCardProcess {
    fn drop(&mut self) {
        // SIGTERM lets it remove the card cleanly; the pid is our own child's.
        let _ = Command::new("kill").arg("-TERM").arg(self.0.id().to_string()).status();
        let _ = self.0.wait();
    }
}

fn start_virtual_card(path: Option<&Path>) -> Result<(VirtualCardProcess, String), String> {
    let binary = match path {
        Some(p) => p.to_owned(),
        None => std::env::current_exe().map_err(fail("locating this binary"))?.with_file_name("virtual-yubikey"),
    };
    let mut serial = [0u8; 4];
    rand::rngs::OsRng.fill_bytes(&mut serial);
    let serial = 10_000_000 + u32::from_be_bytes(serial) % 80_000_000;
    let mut child = Command::new(&binary)
        .args(["--port", VIRTUAL_PORT, "--serial", &serial.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| {
            format!(
                "cannot start {} ({e}); build it with `cargo build -p virtual-yubikey` or pass --virtual-yubikey PATH",
                binary.display()
            )
        })?;
    let stdout = child.stdout.take().ok_or("the virtual card's output is not readable")?;
    let process = VirtualCardProcess(child);
    // Blocks until the card reports its reader (or exits, closing the pipe).
    for line in BufReader::new(stdout).lines() {
        let line = line.map_err(fail("reading the virtual card's output"))?;
        if let Some(rest) = line.strip_prefix("virtual PIV card inserted in ") {
            let reader = rest.split(" (serial").next().unwrap_or(rest).to_owned();
            return Ok((process, reader));
        }
    }
    Err("the virtual card stopped before it was inserted; is pcscd running (scripts/pcscd.sh start)?".into())
}

/// Demo directory, CA and the virtual card enrolled for `agent`.
fn prepare_virtual(config: &Config, agent: &str, reader: &str) -> Result<(), String> {
    if config.ca_cert_path().exists() {
        return Err(format!(
            "{} already has a CA; --virtual prepares a fresh data directory (use --reader with an enrolled card instead)",
            config.data_dir.display()
        ));
    }
    let mut passphrase = [0u8; 24];
    rand::rngs::OsRng.fill_bytes(&mut passphrase);
    // The CA key is written encrypted under a passphrase nobody keeps: this desk's CA
    // can issue no further certificates, which a benchmark desk never needs.
    let (ca, _) = OrgCa::init(
        &config.data_dir,
        &config.organisation,
        &Secret::new(hex::encode(passphrase)),
        OffsetDateTime::now_utc(),
    )
    .map_err(fail("CA"))?;
    let mut card = PivCard::open_reader(reader).map_err(fail("card"))?;
    let mut registry = TokenRegistry::open(&config.data_dir).map_err(fail("token registry"))?;
    let directory = EmbeddedDirectory::open(&config.data_dir, config).map_err(fail("directory"))?;
    let req = EnrolRequest::factory_card(agent, Secret::from(VIRTUAL_PIN), Secret::from("87654321"));
    let dir: &dyn Directory = &directory;
    enrol(&mut card, &ca, &mut registry, Some((dir, &config.agents)), &[], &req, OffsetDateTime::now_utc())
        .map_err(fail("enrolment"))?;
    Ok(())
}

/// Add `n` standard-tier accounts with known answers and TOTP keys; their usernames.
fn add_bench_accounts(directory: &mut EmbeddedDirectory, n: usize) -> Result<Vec<String>, String> {
    let now = OffsetDateTime::now_utc();
    let long_ago = now - TimeDuration::days(400);
    let mut id = [0u8; 4];
    rand::rngs::OsRng.fill_bytes(&mut id);
    let run = hex::encode(id);
    let mut names = Vec::with_capacity(n);
    for i in 0..n {
        let username = format!("bench-{run}-{i:05}");
        let contact = |value: String, label: &str| ContactPoint { value, label: label.into(), changed_at: long_ago };
        let account = NewAccount {
            username: username.clone(),
            display_name: format!("Bench User {i}"),
            employee_id: format!("BE-{run}-{i:05}"),
            department: "Facilities".into(),
            location: "Berlin HQ".into(),
            manager: Some("lschulz".into()),
            date_of_hire: time::macros::date!(2020 - 01 - 06),
            emails: vec![contact(format!("{username}@example.com"), "work")],
            phones: vec![contact(format!("+49 30 5551 {i:05}"), "desk")],
            groups: vec!["staff".into()],
            password: Some(Secret::new(format!("bench-pass-{username}"))),
            security_answers: vec![
                (resetdesk::demo::QUESTIONS[0].into(), Secret::from(PET)),
                (resetdesk::demo::QUESTIONS[1].into(), Secret::from(CITY)),
            ],
            totp_secret: Some(resetdesk::demo::demo_totp_key(&username)),
            flagged: false,
        };
        directory.create_account(&account, now).map_err(fail("adding bench accounts"))?;
        names.push(username);
    }
    Ok(names)
}

/// The requester's scripted input for whatever the engine still needs (UI messages).
fn script(username: &str, missing: &[Missing], now: OffsetDateTime) -> Result<Vec<String>, String> {
    let wants = |m: Method| {
        missing.iter().any(|x| match x {
            Missing::Step { method } => *method == m,
            Missing::Factors { choose_from, .. } => choose_from.contains(&m),
        })
    };
    if wants(Method::SecurityAnswers) {
        return Ok(vec![serde_json::json!({"action": "security_answers", "answers": [
            {"question": 0, "answer": PET}, {"question": 1, "answer": CITY}]})
        .to_string()]);
    }
    if wants(Method::Totp) {
        let key = resetdesk::demo::demo_totp_key(username);
        let code = totp::hotp(&key, totp::step_at(now).map_err(fail("clock"))?, totp::DIGITS);
        return Ok(vec![serde_json::json!({"action": "totp", "code": code.as_str()}).to_string()]);
    }
    if wants(Method::Callback) {
        // Outside business hours the policy adds a callback: the holder answers and confirms.
        return Ok(vec![
            r#"{"action":"request_callback"}"#.into(),
            r#"{"action":"callback_result","report":{"reached_account_holder":true,"holder_confirmed_request":true}}"#
                .into(),
        ]);
    }
    Err(format!("the bench has no script for the remaining steps: {missing:?}"))
}

/// One complete reset; returns the temporary password the desk handed over.
fn one_reset(
    desk: &mut Desk,
    agent: &mut AgentSession,
    identity: &resetdesk::login::AgentIdentity,
    username: &str,
) -> Result<Secret, String> {
    let signer = agent.signer().map_err(fail("signer"))?;
    let (mut run, mut reply): (ResetRun, Reply) = desk
        .start_reset(identity, signer, username, Default::default(), OffsetDateTime::now_utc())
        .map_err(fail("start"))?;
    while !reply.status.missing.is_empty() && !run.phase().is_final() {
        let now = OffsetDateTime::now_utc();
        for json in script(username, &reply.status.missing, now)? {
            let signer = agent.signer().map_err(fail("signer"))?;
            reply = desk.apply_ui_json(&mut run, &json, signer, now).map_err(fail("verification step"))?;
        }
    }
    let signer = agent.signer().map_err(fail("signer"))?;
    desk.apply_ui_json(&mut run, r#"{"action":"request_reset"}"#, signer, OffsetDateTime::now_utc())
        .map_err(fail("reset"))?;
    if run.phase() != Phase::Succeeded {
        return Err(format!("the reset of {username} ended {:?}", run.phase()));
    }
    run.take_handoff_password().ok_or_else(|| "the desk handed over no password".to_string())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn run(args: &Args) -> Result<(), String> {
    std::fs::create_dir_all(&args.data_dir).map_err(fail("data directory"))?;
    let config = resetdesk::cli::load_config(None, Some(&args.data_dir))
        .map_err(|_| "the configuration in the data directory is invalid".to_string())?;
    let mut directory = EmbeddedDirectory::open(&config.data_dir, &config).map_err(fail("directory"))?;
    resetdesk::demo::init(&mut directory, OffsetDateTime::now_utc()).map_err(fail("demo directory"))?;

    let (_card_process, reader, pin) = if args.virtual_card {
        let (process, reader) = start_virtual_card(args.virtual_yubikey.as_deref())?;
        prepare_virtual(&config, &args.agent, &reader)?;
        (Some(process), reader, Secret::from(VIRTUAL_PIN))
    } else {
        let reader = args.reader.clone().ok_or("say which card: --reader NAME (an enrolled card) or --virtual")?;
        let pin = match std::env::var("RESETDESK_BENCH_PIN") {
            Ok(p) => Secret::new(p),
            Err(_) => Secret::read_line_from(std::io::stdin().lock()).map_err(fail("reading the PIN from stdin"))?,
        };
        (None, reader, pin)
    };

    let t = Instant::now();
    let mut agent = login(&config, &directory, &reader, pin, OffsetDateTime::now_utc()).map_err(fail("login"))?;
    let login_took = t.elapsed();
    let identity = agent.identity().clone();
    let targets = add_bench_accounts(&mut directory, args.resets)?;

    let mut desk = Desk::open_embedded(config.clone()).map_err(fail("desk"))?;
    // A desk start settles the intents an earlier run left open (killed mid-reset).
    let signer = agent.signer().map_err(fail("signer"))?;
    for r in desk.reconcile(&identity, signer, OffsetDateTime::now_utc()).map_err(fail("reconcile"))? {
        eprintln!("resetdesk-bench: reconciled intent seq {} ({}): {:?}", r.intent_seq, r.target, r.finding);
    }
    desk.reset_stage_times();
    let mut per_reset = Vec::with_capacity(args.resets);
    let mut last = None;
    let whole = Instant::now();
    for username in &targets {
        let t = Instant::now();
        last = Some((username.clone(), one_reset(&mut desk, &mut agent, &identity, username)?));
        per_reset.push(t.elapsed());
    }
    let whole = whole.elapsed();
    let times = desk.stage_times();
    drop(desk);

    // The last temporary password works, with must-change, as `directory check-password` would say.
    let check = match &last {
        Some((user, password)) => Some(directory.check_password(user, password).map_err(fail("check-password"))?),
        None => None,
    };
    drop(last);
    report(args, &identity, &reader, login_took, whole, &per_reset, &times, check);
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn report(
    args: &Args,
    identity: &resetdesk::login::AgentIdentity,
    reader: &str,
    login_took: Duration,
    whole: Duration,
    per_reset: &[Duration],
    t: &StageTimes,
    check: Option<PasswordCheck>,
) {
    let n = per_reset.len().max(1) as f64;
    println!(
        "resetdesk-bench: {} complete resets by {} ({}) with the card in {reader:?}{}; data dir {}",
        per_reset.len(),
        identity.username,
        identity.tier.as_str(),
        if identity.is_virtual { " [virtual token]" } else { "" },
        args.data_dir.display()
    );
    println!("login (once, not in the totals): {:.1} ms", ms(login_took));
    let accounted = t.token + t.audit_store + t.directory + t.engine + t.history + t.notifier;
    let rows = [
        ("token (PIN verify + 9c signature)", t.token),
        ("audit store (commit, fsync)", t.audit_store),
        ("directory (incl. argon2id of the password)", t.directory),
        ("engine + answer/TOTP checks (argon2id)", t.engine),
        ("history (audit store scan)", t.history),
        ("notifier (outbox)", t.notifier),
        ("desk glue (the rest)", whole.saturating_sub(accounted)),
        ("whole", whole),
    ];
    println!("{:<44} {:>10} {:>14} {:>7}", "stage", "total ms", "per reset ms", "share");
    for (name, d) in rows {
        println!(
            "{name:<44} {:>10.1} {:>14.2} {:>6.1}%",
            ms(d),
            ms(d) / n,
            100.0 * d.as_secs_f64() / whole.as_secs_f64().max(1e-9)
        );
    }
    let mut sorted = per_reset.to_vec();
    sorted.sort();
    if let (Some(first), Some(last)) = (sorted.first(), sorted.last()) {
        println!(
            "per reset: min {:.1} ms, median {:.1} ms, max {:.1} ms",
            ms(*first),
            ms(sorted[sorted.len() / 2]),
            ms(*last)
        );
    }
    println!(
        "records appended: {} ({:.1} per reset); throughput {:.2} resets/s",
        t.records,
        f64::from(t.records) / n,
        n / whole.as_secs_f64().max(1e-9)
    );
    let floor = t.token + t.audit_store;
    println!(
        "ratio whole / (token + fsync): {:.2}x (goal <= 1.2x)",
        whole.as_secs_f64() / floor.as_secs_f64().max(1e-9)
    );
    // argon2id of the answers and of the new password is deliberate work (memory-hard
    // hashing), not overhead: the same ratio without the stages that carry it.
    let without_argon2 = whole.saturating_sub(t.engine + t.directory);
    println!(
        "ratio without the argon2id stages (engine, directory) / (token + fsync): {:.2}x",
        without_argon2.as_secs_f64() / floor.as_secs_f64().max(1e-9)
    );
    match check {
        Some(c) => println!("last temporary password: valid {}, must change {}", c.valid, c.must_change),
        None => println!("no reset run"),
    }
    println!("check the log: resetdesk audit verify --data-dir {}", args.data_dir.display());
}
