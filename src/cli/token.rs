//! `resetdesk token ...` subcommands: list, inspect, enrol and revoke agents' YubiKeys.
//!
//! # `token enroll` standard input
//!
//! Secrets never come from arguments. `resetdesk token enroll` reads up to five lines
//! from standard input (prompted when it is a terminal):
//!
//! | line | content | required |
//! | --- | --- | --- |
//! | 1 | CA passphrase (decrypts `<data_dir>/ca/ca.key.pem`) | yes |
//! | 2 | the agent's new PIN (6–8 characters, not `123456`) | yes |
//! | 3 | the new PUK (6–8 characters, not `12345678`) | yes |
//! | 4 | the card's current PIN; empty or absent: factory `123456` | no |
//! | 5 | the card's current PUK; empty or absent: factory `12345678` | no |
//!
//! Example (demo script): `printf '%s\n' "$CA_PASS" 246810 13579135 | resetdesk token
//! enroll --data-dir DIR --agent alice --reader "Virtual PCD 00 00"`.
//!
//! After the enrolment, the new card signs an `enrolment` record into
//! `<data_dir>/audit.sqlite` with the new PIN (a real YubiKey asks for a touch). If that
//! fails the card is still enrolled, the command exits 1 and says so; enrol the card
//! again (lines 4 and 5 = the new PIN and PUK) to write the record.

use std::io::{BufRead, IsTerminal};
use std::path::{Path, PathBuf};

use clap::Subcommand;

use super::{fail, load_config, EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK};
use crate::ca::{CaPaths, OrgCa, TrustAnchor};
use crate::clock::{Clock, SystemClock};
use crate::presence::open_audit_log;
use crate::secret::Secret;
use crate::session_start::SessionStarter;
use crate::token::card::{self, PivCard, Slot, DEFAULT_PIN, DEFAULT_PUK};
use crate::token::enrol::{enrol, load_attestation_bundle, EnrolRequest};
use crate::token::enrol_record::record_enrolment;
use crate::token::management::ManagementKeyInfo;
use crate::token::readers::{reader_status, ReaderStatus};
use crate::token::registry::TokenRegistry;
use crate::token::watch::CardWatcher;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Readers, whether each holds a card, and the cards' serial numbers.
    List,
    /// Each inserted key (or the one in --reader): PIN tries, certificates in 9a and 9c,
    /// and, with --data-dir, whether they chain to the organisation CA and are enrolled.
    Status {
        #[arg(long, value_name = "NAME")]
        reader: Option<String>,
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Enrol the key in a reader for an agent (secrets on stdin: see `--help` of the module docs).
    Enroll {
        #[arg(long, value_name = "DIR")]
        data_dir: PathBuf,
        /// The agent's directory username.
        #[arg(long, value_name = "USERNAME")]
        agent: String,
        /// Reader holding the key (required when several keys are inserted).
        #[arg(long, value_name = "NAME")]
        reader: Option<String>,
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Accept keys whose on-device generation cannot be attested (production refuses them otherwise).
        #[arg(long)]
        allow_unattested: bool,
    },
    /// Log in with the key in a reader exactly as the desk app does (PIN from stdin:
    /// PIN, certificates against the CA, 9a challenge, agent in the directory, enrolment),
    /// record the signed login and logout, and print the agent. Exit 0 if the login works.
    CheckLogin(super::LoginArgs),
    /// Revoke an agent's keys (all, or those on the card with --serial). An admin logs
    /// in with the key in --reader (PIN on stdin); their card signs the `revocation`
    /// audit record. Their old records still verify; none by the revoked keys after it.
    Revoke {
        #[command(flatten)]
        admin: super::LoginArgs,
        #[arg(long, value_name = "USERNAME")]
        agent: String,
        #[arg(long)]
        serial: Option<u32>,
        #[arg(long)]
        reason: String,
    },
}

pub fn run(cmd: Command) -> u8 {
    match cmd {
        Command::List => list(),
        Command::Status { reader, data_dir, config } => {
            status(reader.as_deref(), data_dir.as_deref(), config.as_deref())
        }
        Command::Enroll { data_dir, agent, reader, config, allow_unattested } => {
            enroll(&data_dir, &agent, reader.as_deref(), config.as_deref(), allow_unattested)
        }
        Command::CheckLogin(args) => check_login(&args),
        Command::Revoke { admin, agent, serial, reason } => revoke(&admin, &agent, serial, &reason),
    }
}

fn revoke(admin: &super::LoginArgs, agent: &str, serial: Option<u32>, reason: &str) -> u8 {
    let (config, directory, pin) = match super::login_inputs(admin) {
        Ok(inputs) => inputs,
        Err(code) => return code,
    };
    let mut session = match crate::login::login(&config, directory.as_ref(), &admin.reader, pin, SystemClock.now()) {
        Ok(session) => session,
        Err(e) => return fail(e),
    };
    let registry = match TokenRegistry::open_existing(&admin.data_dir) {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    let mut audit = match open_audit_log(&admin.data_dir, config.ca.cert_file.as_deref()) {
        Ok(a) => a,
        Err(e) => return fail(e),
    };
    let now = SystemClock.now();
    match crate::desk::revocation::revoke_signed(
        &registry,
        directory.as_ref(),
        &mut audit,
        &mut session,
        agent,
        serial,
        reason,
        now,
    ) {
        Ok(done) => {
            println!(
                "revoked {} key(s) of {agent:?}; revocation record seq {} signed by {}",
                done.keys.len(),
                done.record.seq,
                session.identity().username
            );
            EXIT_OK
        }
        Err(e) => fail(e),
    }
}

/// Log in and write the login record as the desk app does ([`SessionStarter`]: the
/// key must stay in the reader throughout), then the logout record.
fn check_login(args: &super::LoginArgs) -> u8 {
    let (data_dir, reader) = (args.data_dir.as_path(), args.reader.as_str());
    let (config, directory, pin) = match super::login_inputs(args) {
        Ok(inputs) => inputs,
        Err(code) => return code,
    };
    let mut audit = match open_audit_log(data_dir, config.ca.cert_file.as_deref()) {
        Ok(a) => a,
        Err(e) => return fail(e),
    };
    // No watcher thread here: pcscd's own reader state tells whether the key left.
    let removals = match CardWatcher::new() {
        Ok(w) => w,
        Err(e) => return fail(e),
    };
    let starter =
        SessionStarter { config: &config, directory: directory.as_ref(), removals: &removals, clock: &SystemClock };
    let mut session = match starter.start(&mut audit, reader, pin, None) {
        Ok(started) => started.session,
        Err(e) => return fail(e),
    };
    let id = session.identity().clone();
    println!(
        "{}: logged in as {} ({}, {} agent) with key serial {}{}",
        reader,
        id.username,
        id.display_name,
        id.tier,
        id.serial,
        if id.is_virtual { " [virtual token — demo only]" } else { "" }
    );
    match crate::presence::record_logout(&mut audit, &mut session, SystemClock.now()) {
        Ok(_) => EXIT_OK,
        Err(e) => fail(format!("logged out, but the signed logout record could not be written: {e}")),
    }
}

fn list() -> u8 {
    match reader_status() {
        ReaderStatus::NoService => fail(
            "the PC/SC service (pcscd) is not running; start it (`scripts/pcscd.sh start` for the virtual readers)",
        ),
        ReaderStatus::NoReaders => {
            println!("no smart-card readers");
            EXIT_OK
        }
        ReaderStatus::Readers { readers } => {
            let cards = card::list_cards().unwrap_or_default();
            for r in readers {
                let virt = if r.is_virtual { " [virtual]" } else { "" };
                match cards.iter().find(|c| c.reader == r.name) {
                    Some(c) => println!(
                        "{}{virt}: YubiKey serial {} (PIV {}, management key {})",
                        r.name,
                        c.serial,
                        c.version,
                        management_key_text(c.management_key.as_ref())
                    ),
                    None if r.card_present => println!("{}{virt}: card present (not PIV)", r.name),
                    None => println!("{}{virt}: empty", r.name),
                }
            }
            EXIT_OK
        }
    }
}

/// "AES-192", "3DES, factory default", or "unknown" when the card's answer was unreadable.
fn management_key_text(info: Option<&ManagementKeyInfo>) -> String {
    match info {
        None => "unknown".to_owned(),
        Some(ManagementKeyInfo { algorithm, is_default: Some(true) }) => format!("{algorithm}, factory default"),
        Some(ManagementKeyInfo { algorithm, .. }) => algorithm.to_string(),
    }
}

fn status(reader: Option<&str>, data_dir: Option<&Path>, config: Option<&Path>) -> u8 {
    let cards = match card::list_cards() {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let chosen: Vec<_> = cards.iter().filter(|c| reader.iter().all(|r| *r == c.reader)).collect();
    if chosen.is_empty() {
        return fail(match reader {
            Some(r) => format!("no key in reader {r:?}; run `resetdesk token list`"),
            None => "no key inserted".to_owned(),
        });
    }
    let (anchor, registry) = match data_dir {
        Some(d) => {
            let config = match load_config(config, Some(d)) {
                Ok(c) => c,
                Err(code) => return code,
            };
            (TrustAnchor::load(&config.ca_cert_path()).ok(), TokenRegistry::open_existing(d).ok())
        }
        None => (None, None),
    };
    if let (Some(d), None) = (data_dir, &registry) {
        println!("(no token registry in {}: no key has been enrolled there)", d.display());
    }
    let now = SystemClock.now();
    for info in chosen {
        let mut c = match PivCard::open_reader(&info.reader) {
            Ok(c) => c,
            Err(e) => return fail(e),
        };
        println!(
            "{}: serial {}, PIV {}{}",
            info.reader,
            info.serial,
            info.version,
            if info.is_virtual { ", virtual" } else { "" }
        );
        println!("  management key: {}", management_key_text(info.management_key.as_ref()));
        match c.pin_retries() {
            Ok(n) => println!("  PIN tries left: {n}"),
            Err(e) => println!("  PIN tries left: unknown ({e})"),
        }
        for slot in [Slot::Authentication, Slot::Signature] {
            match c.certificate(slot) {
                Ok(None) => println!("  {slot}: no certificate"),
                Err(e) => println!("  {slot}: {e}"),
                Ok(Some(cert)) => {
                    let (from, to) = crate::ca::validity(&cert.tbs_certificate.validity);
                    let kid = crate::ca::key_id(&cert.tbs_certificate.subject_public_key_info)
                        .map(hex::encode)
                        .unwrap_or_else(|e| format!("? ({e})"));
                    println!("  {slot}: subject {}", cert.tbs_certificate.subject);
                    println!("      issuer  {}", cert.tbs_certificate.issuer);
                    println!("      valid   {from} to {to}");
                    println!("      key id  {kid}");
                    if let Some(a) = &anchor {
                        match a.validate(&cert, now) {
                            Ok(_) => println!("      chains to the organisation CA: yes"),
                            Err(e) => println!("      chains to the organisation CA: no ({e})"),
                        }
                    }
                    if let (Some(reg), Ok(kid)) =
                        (&registry, crate::ca::key_id(&cert.tbs_certificate.subject_public_key_info))
                    {
                        match reg.by_key_id(&kid) {
                            Ok(Some(r)) if r.is_active() => println!(
                                "      enrolled for {} on {} (attested: {}, PIN {}, touch {})",
                                r.username, r.enrolled_at, r.attested, r.pin_policy, r.touch_policy
                            ),
                            Ok(Some(r)) => {
                                println!("      REVOKED for {} ({})", r.username, r.revoked_reason.unwrap_or_default())
                            }
                            Ok(None) => println!("      not in the token registry"),
                            Err(e) => println!("      registry: {e}"),
                        }
                    }
                }
            }
        }
    }
    EXIT_OK
}

/// Lines 1–5 of the enrolment stdin format (see the module docs).
struct EnrolSecrets {
    ca_passphrase: Secret,
    new_pin: Secret,
    new_puk: Secret,
    current_pin: Secret,
    current_puk: Secret,
}

fn read_enrol_secrets(mut input: impl BufRead, interactive: bool) -> Result<EnrolSecrets, String> {
    let mut line = |what: &str, required: bool, default: &str| -> Result<Secret, String> {
        if interactive {
            eprint!("{what}{}: ", if required { "" } else { " (empty: factory default)" });
        }
        let s = Secret::read_line_from(&mut input)
            .map_err(|e| format!("could not read the {what} from standard input: {e}"))?;
        match (s.is_empty(), required) {
            (false, _) => Ok(s),
            (true, false) => Ok(Secret::from(default)),
            (true, true) => Err(format!(
                "no {what} on standard input; give the lines CA passphrase, new PIN, new PUK[, current PIN, current PUK]"
            )),
        }
    };
    Ok(EnrolSecrets {
        ca_passphrase: line("CA passphrase", true, "")?,
        new_pin: line("new PIN", true, "")?,
        new_puk: line("new PUK", true, "")?,
        current_pin: line("current PIN", false, DEFAULT_PIN)?,
        current_puk: line("current PUK", false, DEFAULT_PUK)?,
    })
}

fn enroll(data_dir: &Path, agent: &str, reader: Option<&str>, config: Option<&Path>, allow_unattested: bool) -> u8 {
    let config = match load_config(config, Some(data_dir)) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let stdin = std::io::stdin();
    let interactive = stdin.is_terminal();
    let secrets = match read_enrol_secrets(stdin.lock(), interactive) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_BAD_INPUT;
        }
    };
    let ca = match OrgCa::load(&CaPaths::in_data_dir(data_dir), &secrets.ca_passphrase) {
        Ok(ca) => ca,
        Err(e) => return fail(e),
    };
    let directory = match crate::directory::open(&config) {
        Ok(d) => d,
        Err(e) => return fail(e),
    };
    let mut registry = match TokenRegistry::open(data_dir) {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    let bundle = match load_attestation_bundle(data_dir) {
        Ok(b) => b,
        Err(e) => return fail(e),
    };
    let mut card = match reader.map_or_else(PivCard::open_single, PivCard::open_reader) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let req = EnrolRequest {
        current_pin: secrets.current_pin,
        current_puk: secrets.current_puk,
        ..EnrolRequest::factory_card(agent, secrets.new_pin, secrets.new_puk)
    }
    .under_rules_of(&config, allow_unattested);
    let dir: &dyn crate::directory::Directory = directory.as_ref();
    match enrol(&mut card, &ca, &mut registry, Some((dir, &config.agents)), &bundle, &req, SystemClock.now()) {
        Ok(r) => {
            let recorded =
                write_enrolment_record(data_dir, config.ca.cert_file.as_deref(), &registry, card, req.new_pin, &r);
            println!(
                "enrolled {} on {} (serial {}{}): 9a key {}, 9c key {}",
                r.username,
                r.reader,
                r.serial,
                if r.is_virtual { ", virtual" } else { "" },
                r.key_id_9a,
                r.key_id_9c
            );
            match (r.attested, r.attestation_note) {
                (true, _) => println!("  keys attested as generated on a YubiKey"),
                (false, Some(n)) => println!("  not attested: {n}"),
                (false, None) => println!("  not attested"),
            }
            println!(
                "  PIN and PUK changed; management key replaced by a random PIN-protected {} key",
                r.management_key
            );
            match recorded {
                Ok(seq) => {
                    println!("  enrolment record {seq} signed by the new key and written to the audit log");
                    EXIT_OK
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    eprintln!(
                        "error: the card IS enrolled, but the audit log has no record of it; fix the cause above, then enrol the card again with the new PIN and PUK as lines 4 and 5 (current PIN, current PUK): that writes the record"
                    );
                    EXIT_FAILED
                }
            }
        }
        Err(e) => fail(e),
    }
}

/// The signed `enrolment` record (see [`crate::token::enrol_record`]); its seq, or why not.
fn write_enrolment_record(
    data_dir: &Path,
    ca_file: Option<&Path>,
    registry: &TokenRegistry,
    card: PivCard,
    new_pin: Secret,
    report: &crate::token::enrol::EnrolReport,
) -> Result<u64, String> {
    let mut audit = open_audit_log(data_dir, ca_file).map_err(|e| e.to_string())?;
    if !report.is_virtual {
        eprintln!("touch the key to sign the enrolment record");
    }
    let appended =
        record_enrolment(&mut audit, registry, card, new_pin, report, SystemClock.now()).map_err(|e| e.to_string())?;
    Ok(appended.seq)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enrol_stdin_defaults_the_current_pin_and_puk() {
        let s = read_enrol_secrets(&b"ca pass phrase!\n246810\n13579135\n"[..], false).unwrap();
        assert_eq!(s.ca_passphrase.expose(), "ca pass phrase!");
        assert_eq!((s.new_pin.expose(), s.new_puk.expose()), ("246810", "13579135"));
        assert_eq!((s.current_pin.expose(), s.current_puk.expose()), (DEFAULT_PIN, DEFAULT_PUK));
        let s = read_enrol_secrets(&b"p\n111111\n22222222\n333333\n\n"[..], false).unwrap();
        assert_eq!((s.current_pin.expose(), s.current_puk.expose()), ("333333", DEFAULT_PUK));
    }

    #[test]
    fn enrol_stdin_requires_the_first_three_lines() {
        let e = read_enrol_secrets(&b"ca pass phrase!\n246810\n"[..], false).err().unwrap();
        assert!(e.contains("new PUK"), "{e}");
    }
}
