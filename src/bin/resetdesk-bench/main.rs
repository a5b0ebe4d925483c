//! `resetdesk-bench`: complete resets through the real desk, in the spirit of pgbench.
//!
//! Each reset goes the whole way through [`resetdesk::desk::Desk`]: history from the
//! audit store, the workflow engine, the tier's verification steps played from scripted
//! (demo-style) input, the signed intent made durable, the temporary password
//! set in the embedded directory with must-change, the signed outcome, the outbox. The
//! agent signs with slot 9c of a PIV card through the token layer (pcscd). The data
//! directory is left for `resetdesk audit verify --data-dir DIR`.
//!
//! ```text
//! resetdesk-bench --data-dir DIR --resets N --reader NAME   # an enrolled card; PIN on stdin
//!                                                           # or in RESETDESK_BENCH_PIN
//! resetdesk-bench --data-dir DIR --resets N --virtual       # insert and enrol its own card
//! resetdesk-bench ... --tier standard|privileged|highest    # the accounts' tier (standard)
//! ```
//!
//! With `--reader`, DIR is a desk's data directory (demo directory, CA, the card enrolled
//! with `resetdesk token enroll`). With `--virtual`, DIR must not hold a CA yet: the
//! bench creates the demo directory and a CA, starts the `virtual-yubikey` binary (next
//! to this one, or `--virtual-yubikey PATH`) on the first vpcd reader and enrols it for
//! the agent (for `--tier highest` a second one on the second reader for the
//! co-signer). The virtual readers are shared with the test suites: hold their lock
//! while the bench runs, e.g. `flock /tmp/resetdesk-virtual-readers.lock resetdesk-bench ...`.
//!
//! Each run resets fresh accounts `bench-<random>-<n>` of one tier (`--tier`, default
//! standard) that it adds to the directory (as pgbench -i does), in the tier's first
//! group of `[tiers]`, so every reset takes the same path under the default policy:
//!
//! * standard: security answers and TOTP (and a callback outside business hours);
//! * privileged: TOTP and a callback, the manager's approval (by an agent who may reset
//!   privileged accounts: `bob` with `--virtual`);
//! * highest: in-person ID inspection and TOTP, the manager's approval, and a second
//!   agent's card in the second reader co-signing (`carol` acting, `dave` co-signing
//!   with `--virtual`; `--co-signer-reader NAME` with real cards, PIN on the second
//!   stdin line or in RESETDESK_BENCH_CO_SIGNER_PIN).
//!
//! The manager's approval and the co-signature go through the same adapters a person
//! uses (see `script.rs`). The wait of the tier's cooling-off is not desk work: the
//! bench's policy sets it to 0 (the configuration allows it) and says so in its output.
//! Prints per-stage and per-step timings and the ratio of the whole to the sum of the
//! token operations and the audit store's commits; asserts nothing about time.

mod report;
mod script;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::Instant;

use clap::Parser;
use rand::RngCore;
use resetdesk::ca::OrgCa;
use resetdesk::config::Config;
use resetdesk::desk::Desk;
use resetdesk::directory::embedded::{EmbeddedDirectory, NewAccount};
use resetdesk::directory::{ContactPoint, Directory};
use resetdesk::login::login;
use resetdesk::policy::PolicyConfig;
use resetdesk::secret::Secret;
use resetdesk::tier::AccountTier;
use resetdesk::token::card::PivCard;
use resetdesk::token::enrol::{enrol, EnrolRequest};
use resetdesk::token::registry::TokenRegistry;
use script::{CoSignerCard, People, CITY, PET};
use time::{Duration as TimeDuration, OffsetDateTime};

/// vpcd port of the first virtual reader ("Virtual PCD 00 00"): the acting agent's card.
const VIRTUAL_PORT: &str = "35963";
/// vpcd port of the second virtual reader ("Virtual PCD 00 01"): the co-signer's card.
const VIRTUAL_CO_SIGNER_PORT: &str = "35964";
/// The demo PINs the bench gives its own virtual cards.
const VIRTUAL_PIN: &str = "246810";
const VIRTUAL_CO_SIGNER_PIN: &str = "135791";

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
    /// The tier of the accounts reset: standard, privileged or highest.
    #[arg(long, default_value = "standard", value_parser = parse_tier)]
    tier: AccountTier,
    /// Reader holding the agent's enrolled card (PIN on stdin or in RESETDESK_BENCH_PIN).
    #[arg(long, value_name = "NAME", conflicts_with = "virtual_card")]
    reader: Option<String>,
    /// Reader holding the co-signer's enrolled card for --tier highest (PIN on the next
    /// stdin line or in RESETDESK_BENCH_CO_SIGNER_PIN).
    #[arg(long, value_name = "NAME", conflicts_with = "virtual_card")]
    co_signer_reader: Option<String>,
    /// Insert virtual cards on the vpcd readers and enrol them (demo/CI only).
    #[arg(long = "virtual")]
    virtual_card: bool,
    /// The virtual-yubikey binary (default: next to this one).
    #[arg(long, value_name = "PATH")]
    virtual_yubikey: Option<PathBuf>,
    /// The agent a --virtual card is enrolled for (default: alice for standard, bob for
    /// privileged, carol for highest).
    #[arg(long)]
    agent: Option<String>,
    /// The admin agent the second --virtual card is enrolled for (--tier highest).
    #[arg(long, default_value = "dave")]
    co_signer: String,
}

fn parse_tier(s: &str) -> Result<AccountTier, String> {
    AccountTier::ALL
        .into_iter()
        .find(|t| t.as_str() == s)
        .ok_or_else(|| format!("{s:?} is not a tier: say standard, privileged or highest"))
}

/// The demo agent who resets accounts of `tier` by default (the least that may).
fn default_agent(tier: AccountTier) -> &'static str {
    match tier {
        AccountTier::Standard => "alice",
        AccountTier::Privileged => "bob",
        AccountTier::Highest => "carol",
    }
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

fn start_virtual_card(path: Option<&Path>, port: &str) -> Result<(VirtualCardProcess, String), String> {
    let binary = match path {
        Some(p) => p.to_owned(),
        None => std::env::current_exe().map_err(fail("locating this binary"))?.with_file_name("virtual-yubikey"),
    };
    let mut serial = [0u8; 4];
    rand::rngs::OsRng.fill_bytes(&mut serial);
    let serial = 10_000_000 + u32::from_be_bytes(serial) % 80_000_000;
    let mut child = Command::new(&binary)
        .args(["--port", port, "--serial", &serial.to_string()])
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

/// A virtual card to enrol: for whom, in which reader, with which new PIN.
struct ToEnrol<'a> {
    agent: &'a str,
    reader: &'a str,
    pin: &'a str,
}

/// Demo directory, CA and each virtual card enrolled for its agent.
fn prepare_virtual(config: &Config, cards: &[ToEnrol<'_>]) -> Result<(), String> {
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
    let mut registry = TokenRegistry::open(&config.data_dir).map_err(fail("token registry"))?;
    let directory = EmbeddedDirectory::open(&config.data_dir, config).map_err(fail("directory"))?;
    let dir: &dyn Directory = &directory;
    for c in cards {
        let mut card = PivCard::open_reader(c.reader).map_err(fail("card"))?;
        let req = EnrolRequest::factory_card(c.agent, Secret::from(c.pin), Secret::from("87654321"));
        enrol(&mut card, &ca, &mut registry, Some((dir, &config.agents)), &[], &req, OffsetDateTime::now_utc())
            .map_err(fail("enrolment"))?;
    }
    Ok(())
}

/// Add `n` accounts in `groups` with known answers and TOTP keys; their usernames.
fn add_bench_accounts(directory: &mut EmbeddedDirectory, n: usize, groups: &[String]) -> Result<Vec<String>, String> {
    let now = OffsetDateTime::now_utc();
    let long_ago = now - TimeDuration::days(400);
    let mut id = [0u8; 4];
    rand::rngs::OsRng.fill_bytes(&mut id);
    let run = hex::encode(id);
    let mut names = Vec::with_capacity(n);
    for i in 0..n {
        let username = format!("bench-{run}-{i:05}");
        let contact =
            |value: String, label: &str| ContactPoint { value, label: label.into(), changed_at: Some(long_ago) };
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
            groups: groups.to_vec(),
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

/// The groups that give an account `tier` under `config`'s `[tiers]`.
fn groups_for(config: &Config, tier: AccountTier) -> Result<Vec<String>, String> {
    let tier_group = match tier {
        AccountTier::Standard => None,
        AccountTier::Privileged => Some(&config.tiers.privileged_groups),
        AccountTier::Highest => Some(&config.tiers.highest_groups),
    };
    let mut groups = vec!["staff".to_owned()];
    if let Some(list) = tier_group {
        groups.push(list.first().cloned().ok_or_else(|| format!("[tiers] names no group for {tier} accounts"))?);
    }
    if config.group_rules().account_tier(&groups) != tier {
        return Err(format!("the bench accounts' groups {groups:?} are not {tier} under [tiers]"));
    }
    Ok(groups)
}

/// Set every tier's cooling-off to 0 (a higher tier may not wait less than a lower one,
/// so all of them); what `tier` had, if it waited at all.
fn shorten_cooling_off(policy: &mut PolicyConfig, tier: AccountTier) -> Option<TimeDuration> {
    let configured = policy.requirements(tier).cooling_off;
    for t in [&mut policy.standard, &mut policy.privileged, &mut policy.highest] {
        t.cooling_off_minutes = 0;
    }
    (configured > TimeDuration::ZERO).then_some(configured)
}

/// A PIN from `variable`, else the next line of standard input.
fn pin_from(variable: &str, stdin: &mut impl BufRead) -> Result<Secret, String> {
    match std::env::var(variable) {
        Ok(p) => Ok(Secret::new(p)),
        Err(_) => Secret::read_line_from(stdin).map_err(fail("reading a PIN from stdin")),
    }
}

fn run(args: &Args) -> Result<(), String> {
    std::fs::create_dir_all(&args.data_dir).map_err(fail("data directory"))?;
    let mut config = resetdesk::cli::load_config(None, Some(&args.data_dir))
        .map_err(|_| "the configuration in the data directory is invalid".to_string())?;
    let cooling_off_shortened = shorten_cooling_off(&mut config.policy, args.tier);
    let mut directory = EmbeddedDirectory::open(&config.data_dir, &config).map_err(fail("directory"))?;
    resetdesk::demo::init(&mut directory, OffsetDateTime::now_utc()).map_err(fail("demo directory"))?;
    let wants_co_signer = args.tier == AccountTier::Highest;

    let mut card_processes = Vec::new();
    let (reader, pin, co_signer) = if args.virtual_card {
        let agent = args.agent.as_deref().unwrap_or(default_agent(args.tier));
        let (process, reader) = start_virtual_card(args.virtual_yubikey.as_deref(), VIRTUAL_PORT)?;
        card_processes.push(process);
        let mut cards = vec![ToEnrol { agent, reader: &reader, pin: VIRTUAL_PIN }];
        let co_reader = if wants_co_signer {
            let (process, co_reader) = start_virtual_card(args.virtual_yubikey.as_deref(), VIRTUAL_CO_SIGNER_PORT)?;
            card_processes.push(process);
            Some(co_reader)
        } else {
            None
        };
        if let Some(r) = &co_reader {
            cards.push(ToEnrol { agent: &args.co_signer, reader: r, pin: VIRTUAL_CO_SIGNER_PIN });
        }
        prepare_virtual(&config, &cards)?;
        let co_signer = co_reader.map(|reader| CoSignerCard { reader, pin: Secret::from(VIRTUAL_CO_SIGNER_PIN) });
        (reader, Secret::from(VIRTUAL_PIN), co_signer)
    } else {
        let reader = args.reader.clone().ok_or("say which card: --reader NAME (an enrolled card) or --virtual")?;
        let mut stdin = std::io::stdin().lock();
        let pin = pin_from("RESETDESK_BENCH_PIN", &mut stdin)?;
        let co_signer = match (&args.co_signer_reader, wants_co_signer) {
            (Some(r), true) => {
                Some(CoSignerCard { reader: r.clone(), pin: pin_from("RESETDESK_BENCH_CO_SIGNER_PIN", &mut stdin)? })
            }
            (None, true) => return Err("highest-tier resets need a co-signer's card: --co-signer-reader NAME".into()),
            (_, false) => None,
        };
        (reader, pin, co_signer)
    };

    let t = Instant::now();
    let mut agent = login(&config, &directory, &reader, pin, OffsetDateTime::now_utc()).map_err(fail("login"))?;
    let login_took = t.elapsed();
    let identity = agent.identity().clone();
    let targets = add_bench_accounts(&mut directory, args.resets, &groups_for(&config, args.tier)?)?;
    let mut people = People::new(&config.data_dir, co_signer)?;

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
        last = Some((username.clone(), people.reset(&mut desk, &mut agent, &identity, username)?));
        per_reset.push(t.elapsed());
    }
    let whole = whole.elapsed();
    let stages = desk.stage_times();
    drop(desk);

    // The last temporary password works, with must-change, as `directory check-password` would say.
    let check = match &last {
        Some((user, password)) => Some(directory.check_password(user, password).map_err(fail("check-password"))?),
        None => None,
    };
    drop(last);
    report::print(&report::Measured {
        tier: args.tier,
        identity: &identity,
        reader: &reader,
        co_signer: people.co_signer(),
        cooling_off_shortened,
        data_dir: &args.data_dir,
        login_took,
        whole,
        per_reset: &per_reset,
        stages: &stages,
        steps: &people.times,
        check,
    });
    Ok(())
}
