//! Notifications by SMTP on real components: a real reset through the desk queues
//! its messages, the outbox sender delivers them over STARTTLS to a real aiosmtpd
//! (its certificate issued by a CA the test makes), and the test reads the maildir.
//! Also: a stopped server leaves rows queued with a next attempt, a restarted one gets
//! them; the demo eml sink writes files and production refuses it. One-time codes go
//! by SMTP at once (never queued) and only to a registered address that did not change
//! recently; a temporary password is refused by its kind; the manager's approval
//! request and the security team's alerts (lockout, suspected fraud) reach their
//! addresses.
//!
//! Needs `python3-aiosmtpd` (scripts/setup-debian.sh); skipped without it outside CI.
//! The reset test also needs `scripts/pcscd.sh start` and holds the reader lock.

mod desk_support;
mod tls_support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use desk_support::{answers_json, at_desk, verified_run, Site};
use resetdesk::config::{Config, SmtpConfig, SmtpSecurity};
use resetdesk::desk::approval::ApprovalInbox;
use resetdesk::desk::mail_notifier::MailNotifier;
use resetdesk::desk::mailer::{sink_for, SmtpSink};
use resetdesk::desk::outbox::{Message, Notifier, NotifyError, Outbox, SecretKind};
use resetdesk::desk::sender::{Backoff, OutboxSender};
use resetdesk::desk::{Desk, DeskError};
use resetdesk::directory::{ContactPoint, Directory};
use resetdesk::secret::Secret;
use resetdesk::workflow::{ContactKind, Phase, WorkflowError};
use time::OffsetDateTime;
use tls_support::{free_port, pki, Listening, TestPki};
use virtual_yubikey::lock_readers;

const PYTHON: &str = "/usr/bin/python3";

/// Whether aiosmtpd can run here; outside CI a missing one skips the test.
fn aiosmtpd_available() -> bool {
    let ok = Command::new(PYTHON).args(["-c", "import aiosmtpd"]).status().is_ok_and(|s| s.success());
    if !ok {
        assert!(std::env::var_os("CI").is_none(), "CI must have python3-aiosmtpd (scripts/setup-debian.sh)");
        eprintln!("skipped: python3-aiosmtpd is not installed");
    }
    ok
}

/// aiosmtpd on a loopback port, offering STARTTLS, saving each message to a maildir.
struct MailServer {
    _server: Listening,
    maildir: PathBuf,
}

impl MailServer {
    fn start(port: u16, pki: &TestPki, maildir: &Path) -> Self {
        let mut command = Command::new(PYTHON);
        command
            .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}"), "-c", "aiosmtpd.handlers.Mailbox"])
            .arg("--tlscert")
            .arg(&pki.cert)
            .arg("--tlskey")
            .arg(&pki.key)
            .arg("--no-requiretls")
            .arg(maildir);
        Self { _server: Listening::spawn(&mut command, port, "aiosmtpd"), maildir: maildir.to_owned() }
    }

    /// Each delivered message: (recipients from X-RcptTo, the message decoded from
    /// quoted-printable).
    fn messages(&self) -> Vec<(String, String)> {
        let Ok(entries) = std::fs::read_dir(self.maildir.join("new")) else { return Vec::new() };
        entries
            .map(|e| {
                let raw = std::fs::read_to_string(e.unwrap().path()).unwrap();
                let rcpt = raw.lines().find_map(|l| l.strip_prefix("X-RcptTo: ")).unwrap_or("").trim().to_owned();
                (rcpt, unquote(&raw))
            })
            .collect()
    }
}

/// Quoted-printable soft breaks and escapes undone (enough to read the bodies).
fn unquote(raw: &str) -> String {
    let joined = raw.replace("=\r\n", "").replace("=\n", "");
    let mut out = String::new();
    let mut rest = joined.as_str();
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        match u8::from_str_radix(rest.get(i + 1..i + 3).unwrap_or(""), 16) {
            Ok(b) => {
                out.push(b as char);
                rest = &rest[i + 3..];
            }
            Err(_) => {
                out.push('=');
                rest = &rest[i + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

fn smtp_config(port: u16, ca: &Path) -> SmtpConfig {
    SmtpConfig {
        host: "127.0.0.1".into(),
        port,
        security: SmtpSecurity::Starttls,
        from: "ResetDesk <resetdesk@example.com>".into(),
        ca_file: Some(ca.to_owned()),
        ..SmtpConfig::default()
    }
}

#[test]
fn a_reset_confirmation_reaches_every_registered_address_and_the_manager_over_starttls() {
    if !aiosmtpd_available() {
        return;
    }
    let _lock = lock_readers();
    let (site, _card, mut alice, mut desk) = at_desk("alice", "246810");
    // A second registered address, on file for long: both must be told.
    let long_ago = OffsetDateTime::now_utc() - time::Duration::days(400);
    let home =
        ContactPoint { value: "jordan.home@example.net".into(), label: "home".into(), changed_at: Some(long_ago) };
    site.directory().set_contact_point("jsmith", ContactKind::Email, &home).unwrap();

    let mut run = verified_run(&mut desk, &mut alice, "jsmith");
    let reply = desk
        .apply_ui_json(&mut run, r#"{"action":"request_reset"}"#, alice.signer().unwrap(), OffsetDateTime::now_utc())
        .unwrap();
    assert!(reply.warnings.is_empty(), "{reply:?}");
    let password = run.take_handoff_password().expect("the reset succeeded");

    let work = tempfile::tempdir().unwrap();
    let pki = pki(work.path());
    let port = free_port();
    let server = MailServer::start(port, &pki, &work.path().join("maildir"));
    let config = Config { smtp: smtp_config(port, &pki.ca), ..site.config.clone() };
    let sink = sink_for(&config).unwrap().expect("smtp delivery: a host is set");
    let outbox = Outbox::open(site.dir.path()).unwrap();
    let mut sender = OutboxSender::new(outbox, sink, config.smtp.from.clone(), Backoff::default());
    let report = sender.drain_once(OffsetDateTime::now_utc()).unwrap();
    assert!(report.failed.is_empty(), "{report:?}");
    assert_eq!(report.sent, 3, "two addresses of the holder and the manager: {report:?}");
    assert_eq!(report.not_mail, 2, "the desk and mobile numbers wait for another channel");

    let mails = server.messages();
    let mut to: Vec<&str> = mails.iter().map(|(r, _)| r.as_str()).collect();
    to.sort();
    assert_eq!(to, ["dgarcia@example.com", "jordan.home@example.net", "jsmith@example.com"]);
    for (rcpt, mail) in &mails {
        assert!(mail.contains("Subject: Your password was reset"), "{mail}");
        assert!(mail.contains("multipart/alternative"), "{mail}");
        assert!(mail.contains("Content-Type: text/plain") && mail.contains("Content-Type: text/html"), "{mail}");
        assert!(mail.contains("This wasn't me?") || mail.contains("This wasn&#39;t me?"), "{mail}");
        assert!(mail.contains("security@example.com"), "{mail}");
        assert!(!mail.contains(password.expose()), "no temporary password in any mail");
        let manager_notice = mail.contains("as the manager of jsmith");
        assert_eq!(manager_notice, rcpt == "dgarcia@example.com", "{rcpt}: {mail}");
    }
    let rows = site.outbox();
    let mail_rows: Vec<_> = rows.iter().filter(|r| r.recipient.contains('@')).collect();
    assert!(mail_rows.iter().all(|r| r.delivered_at.is_some() && !r.delivered_in_band), "{rows:?}");

    // A second pass sends nothing again.
    assert_eq!(sender.drain_once(OffsetDateTime::now_utc()).unwrap().sent, 0);
    assert_eq!(server.messages().len(), 3);
}

#[test]
fn a_stopped_server_leaves_messages_queued_with_backoff_and_a_restarted_one_gets_them() {
    if !aiosmtpd_available() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let pki = pki(work.path());
    let port = free_port();
    let now = OffsetDateTime::now_utc();
    let mut queue = Outbox::open(work.path()).unwrap();
    let message = |to: &str| Message {
        to: to.into(),
        subject: "Verification locked for jsmith".into(),
        body: "Too many failed identity verifications.\n".into(),
        request_id: "r-lock".into(),
    };
    queue.queue_all(&[message("security@example.com"), message("soc@example.com")], now).unwrap();

    let backoff = Backoff { first: Duration::from_secs(60), max: Duration::from_secs(600) };
    let sink = Box::new(SmtpSink::new(&smtp_config(port, &pki.ca)).unwrap());
    let mut sender = OutboxSender::new(Outbox::open(work.path()).unwrap(), sink, "resetdesk@example.com", backoff);
    // Nobody listens on the port.
    let report = sender.drain_once(now).unwrap();
    assert_eq!((report.sent, report.failed.len()), (0, 2), "{report:?}");
    let rows = queue.messages().unwrap();
    for row in &rows {
        assert!(row.delivered_at.is_none());
        assert_eq!(row.attempts, 1);
        assert_eq!(row.next_attempt_at, Some(now.unix_timestamp() + 60));
        assert!(row.last_error.as_deref().is_some_and(|e| e.contains("SMTP")), "{row:?}");
    }
    // Not due yet: nothing is tried before the backoff ends.
    assert_eq!(sender.drain_once(now + time::Duration::seconds(30)).unwrap(), Default::default());
    // A second failure doubles the delay.
    let later = now + time::Duration::seconds(60);
    assert_eq!(sender.drain_once(later).unwrap().failed.len(), 2);
    assert!(queue.messages().unwrap().iter().all(|r| r.next_attempt_at == Some(later.unix_timestamp() + 120)));

    let server = MailServer::start(port, &pki, &work.path().join("maildir"));
    let report = sender.drain_once(later + time::Duration::seconds(120)).unwrap();
    assert_eq!((report.sent, report.failed.len()), (2, 0), "{report:?}");
    let mut to: Vec<String> = server.messages().into_iter().map(|(r, _)| r).collect();
    to.sort();
    assert_eq!(to, ["security@example.com", "soc@example.com"]);
    assert!(queue.messages().unwrap().iter().all(|r| r.delivered_at.is_some()));
}

#[test]
fn a_server_certificate_from_another_ca_is_refused() {
    if !aiosmtpd_available() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let other_dir = tempfile::tempdir().unwrap();
    let (server_pki, other) = (pki(work.path()), pki(other_dir.path()));
    let port = free_port();
    let server = MailServer::start(port, &server_pki, &work.path().join("maildir"));
    let mut queue = Outbox::open(work.path()).unwrap();
    let m = Message { to: "a@example.com".into(), subject: "s".into(), body: "b".into(), request_id: "r".into() };
    queue.queue(&m, OffsetDateTime::now_utc()).unwrap();
    let sink = Box::new(SmtpSink::new(&smtp_config(port, &other.ca)).unwrap());
    let mut sender =
        OutboxSender::new(Outbox::open(work.path()).unwrap(), sink, "resetdesk@example.com", Backoff::default());
    let report = sender.drain_once(OffsetDateTime::now_utc()).unwrap();
    assert_eq!((report.sent, report.failed.len()), (0, 1), "{report:?}");
    assert!(server.messages().is_empty(), "nothing went to a server the CA did not vouch for");
}

#[test]
fn the_demo_eml_sink_writes_files_and_production_refuses_it() {
    let data = tempfile::tempdir().unwrap();
    let mut queue = Outbox::open(data.path()).unwrap();
    let m = Message {
        to: "jsmith@example.com".into(),
        subject: "Your password was reset".into(),
        body: "The password of jsmith was reset.\n".into(),
        request_id: "r-demo".into(),
    };
    queue.queue(&m, OffsetDateTime::now_utc()).unwrap();
    let resetdesk = env!("CARGO_BIN_EXE_resetdesk");
    let send = Command::new(resetdesk).args(["outbox", "send", "--data-dir"]).arg(data.path()).output().unwrap();
    assert!(send.status.success(), "{send:?}");
    let eml = std::fs::read_to_string(data.path().join("mail").join("1.eml")).unwrap();
    assert!(eml.contains("To: jsmith@example.com") && eml.contains("text/html"), "{eml}");
    assert!(queue.messages().unwrap()[0].delivered_at.is_some());

    let file = data.path().join("resetdesk.toml");
    std::fs::write(&file, "mode = \"production\"\n\n[smtp]\nhost = \"mail.example.com\"\ndelivery = \"eml\"\n")
        .unwrap();
    let check = Command::new(resetdesk).args(["config", "check", "--config"]).arg(&file).output().unwrap();
    assert_eq!(check.status.code(), Some(2), "{check:?}");
    let err = String::from_utf8_lossy(&check.stderr);
    assert!(err.contains(&format!("{}:5: smtp.delivery:", file.display())), "{err}");
}

/// The desk of `site` with SMTP delivery to the test server: the notifier the
/// configuration gives (codes by SMTP at once, the rest through the outbox).
fn smtp_desk(site: &Site, port: u16, ca: &Path) -> (Config, Desk) {
    let config = Config { smtp: smtp_config(port, ca), ..site.config.clone() };
    (config.clone(), Desk::open_embedded(config).unwrap())
}

/// A site with `username` logged in at a desk that mails through a running aiosmtpd.
/// Take the reader lock first.
struct SmtpDesk {
    site: Site,
    card: virtual_yubikey::VirtualCard,
    agent: resetdesk::login::AgentSession,
    server: MailServer,
    config: Config,
    desk: Desk,
    _work: tempfile::TempDir,
}

impl SmtpDesk {
    fn start(username: &str, pin: &str) -> Self {
        let (site, card, agent, _) = at_desk(username, pin);
        let work = tempfile::tempdir().unwrap();
        let pki = pki(work.path());
        let port = free_port();
        let server = MailServer::start(port, &pki, &work.path().join("maildir"));
        let (config, desk) = smtp_desk(&site, port, &pki.ca);
        Self { site, card, agent, server, config, desk, _work: work }
    }
}

/// One pass of the outbox sender over `site`'s outbox into the SMTP server.
fn drain(site: &Site, config: &Config) -> resetdesk::desk::sender::DrainReport {
    let sink = sink_for(config).unwrap().expect("smtp delivery");
    let outbox = Outbox::open(site.dir.path()).unwrap();
    OutboxSender::new(outbox, sink, config.smtp.from.clone(), Backoff::default())
        .drain_once(OffsetDateTime::now_utc())
        .unwrap()
}

/// The code in a code mail ("Your code: NNNNNN").
fn code_in(mail: &str) -> String {
    let rest = mail.split("Your code: ").nth(1).expect("a code in the mail");
    rest.chars().take_while(char::is_ascii_digit).collect()
}

#[test]
fn a_one_time_code_goes_by_smtp_at_once_only_to_a_registered_address_that_did_not_change_and_is_never_stored() {
    if !aiosmtpd_available() {
        return;
    }
    let _lock = lock_readers();
    let SmtpDesk { site, card, agent: mut bob, server, config, mut desk, _work } = SmtpDesk::start("bob", "135790");
    let identity = bob.identity().clone();
    let now = OffsetDateTime::now_utc;

    // nhassan: answers, and a code to the work address on file.
    let (mut run, _) =
        desk.start_reset(&identity, bob.signer().unwrap(), "nhassan", Default::default(), now()).unwrap();
    desk.apply_ui_json(&mut run, &answers_json("nhassan"), bob.signer().unwrap(), now()).unwrap();
    let request_code = r#"{"action":"request_code","to":{"kind":"email","index":0}}"#;
    let reply = desk.apply_ui_json(&mut run, request_code, bob.signer().unwrap(), now()).unwrap();
    assert!(!reply.in_band_secret_waiting && run.take_in_band_secret().is_none(), "sent, not handed back");
    // Sent in the call itself: no sender pass ran.
    let mails = server.messages();
    assert_eq!(mails.len(), 1, "{mails:?}");
    let (rcpt, mail) = &mails[0];
    assert_eq!(rcpt, "nhassan@example.com");
    assert!(mail.contains("your verification code") && mail.contains("This wasn't me?"), "{mail}");
    let code = code_in(mail);
    assert!(code.len() >= 6, "{mail}");
    let person = resetdesk::demo::DEMO_PEOPLE.iter().find(|p| p.username == "nhassan").unwrap();
    assert!(!mail.contains(person.pet) && !mail.contains(person.city), "no answer in the mail");

    // The outbox records the message without the code, delivered: the sender never sends it again.
    let rows = site.outbox();
    let row = rows.iter().find(|r| r.recipient == "nhassan@example.com" && r.subject.contains("verification code"));
    let row = row.expect("the code message is on record");
    assert!(row.delivered_at.is_some() && !row.delivered_in_band, "{row:?}");
    for file in ["outbox.sqlite", "outbox.sqlite-wal"] {
        let bytes = std::fs::read(site.dir.path().join(file)).unwrap_or_default();
        assert!(!String::from_utf8_lossy(&bytes).contains(&code), "the code is not at rest in {file}");
    }

    // The requester reads the code back; it counts; the reset completes.
    let enter = Secret::new(serde_json::json!({"action": "enter_code", "code": code}).to_string());
    desk.apply_ui_secret_json(&mut run, enter, bob.signer().unwrap(), now()).unwrap();
    desk.apply_ui_json(&mut run, r#"{"action":"request_reset"}"#, bob.signer().unwrap(), now()).unwrap();
    assert_eq!(run.phase(), Phase::Succeeded);
    let password = run.take_handoff_password().expect("handed over at the desk");
    let report = drain(&site, &config);
    assert!(report.failed.is_empty() && report.sent >= 1, "{report:?}");
    let mails = server.messages();
    assert_eq!(mails.iter().filter(|(_, m)| m.contains("Your code: ")).count(), 1, "the code went once");
    assert!(mails.iter().all(|(_, m)| !m.contains(password.expose())), "no temporary password in any mail");

    // hjansen has an address changed yesterday (her request counts as privileged, so
    // bob, a senior agent, takes it): no code goes to that address.
    let yesterday = now() - time::Duration::days(1);
    let fresh =
        ContactPoint { value: "h.jansen.new@example.net".into(), label: "home".into(), changed_at: Some(yesterday) };
    site.directory().set_contact_point("hjansen", ContactKind::Email, &fresh).unwrap();
    let index = site.directory().entry("hjansen").unwrap().emails.iter().position(|e| e.value == fresh.value).unwrap();
    let sent_before = server.messages().len();
    let (mut run, opened) =
        desk.start_reset(&identity, bob.signer().unwrap(), "hjansen", Default::default(), now()).unwrap();
    assert_eq!(run.phase(), Phase::Verifying, "{opened:?}");
    desk.apply_ui_json(&mut run, &answers_json("hjansen"), bob.signer().unwrap(), now()).unwrap();
    let to_fresh = format!(r#"{{"action":"request_code","to":{{"kind":"email","index":{index}}}}}"#);
    let err = desk.apply_ui_json(&mut run, &to_fresh, bob.signer().unwrap(), now()).unwrap_err();
    assert!(matches!(err, DeskError::Workflow(WorkflowError::ContactNotEligible)), "{err:?}");
    assert_eq!(server.messages().len(), sent_before, "nothing was sent to the changed address");
    assert!(server.messages().iter().all(|(r, _)| r != "h.jansen.new@example.net"));
    drop(bob);
    card.remove().unwrap();
}

#[test]
fn a_code_the_server_cannot_take_fails_the_call_and_leaves_the_run_usable() {
    if !aiosmtpd_available() {
        return;
    }
    let _lock = lock_readers();
    let (site, card, mut alice, _) = at_desk("alice", "246810");
    let work = tempfile::tempdir().unwrap();
    let pki = pki(work.path());
    let port = free_port();
    // No server yet.
    let (_, mut desk) = smtp_desk(&site, port, &pki.ca);
    let identity = alice.identity().clone();
    let now = OffsetDateTime::now_utc;
    let (mut run, _) =
        desk.start_reset(&identity, alice.signer().unwrap(), "nhassan", Default::default(), now()).unwrap();
    desk.apply_ui_json(&mut run, &answers_json("nhassan"), alice.signer().unwrap(), now()).unwrap();
    let request_code = r#"{"action":"request_code","to":{"kind":"email","index":0}}"#;
    let err = desk.apply_ui_json(&mut run, request_code, alice.signer().unwrap(), now()).unwrap_err();
    assert!(matches!(err, DeskError::Notify(NotifyError::CodeNotSent { .. })), "{err:?}");
    assert!(run.broken().is_none(), "the agent may send a new code or choose another method");
    assert!(site.outbox().iter().all(|r| !r.subject.contains("verification code")), "no code message queued");
    // A guessed code does not pass: none was issued.
    let guess = Secret::new(r#"{"action":"enter_code","code":"000000"}"#.to_owned());
    assert!(desk.apply_ui_secret_json(&mut run, guess, alice.signer().unwrap(), now()).is_err());
    assert_ne!(run.phase(), Phase::Succeeded);
    drop(alice);
    card.remove().unwrap();
}

#[test]
fn a_temporary_password_is_refused_by_its_kind_and_nothing_reaches_the_server() {
    if !aiosmtpd_available() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let pki = pki(work.path());
    let port = free_port();
    let server = MailServer::start(port, &pki, &work.path().join("maildir"));
    let smtp = SmtpSink::new(&smtp_config(port, &pki.ca)).unwrap();
    let mut notifier = MailNotifier::new(Outbox::open(work.path()).unwrap(), smtp, "resetdesk@example.com");
    let message = Message {
        to: "jsmith@example.com".into(),
        subject: "Example Corp: your temporary password".into(),
        body: "Use the temporary password delivered with this message once.\n".into(),
        request_id: "r-pw".into(),
    };
    let now = OffsetDateTime::now_utc();
    let refused = notifier.deliver_secret(&message, SecretKind::TemporaryPassword, Secret::from("Blue-Otter-42"), now);
    assert!(matches!(refused, Err(NotifyError::PasswordNotByMail { .. })), "{refused:?}");
    // The same notifier sends a code to the same address: the refusal is the kind's.
    notifier.deliver_secret(&message, SecretKind::OneTimeCode, Secret::from("48392017"), now).unwrap();
    let mails = server.messages();
    assert_eq!(mails.len(), 1);
    assert!(mails[0].1.contains("Your code: 48392017") && !mails[0].1.contains("Blue-Otter-42"));
}

#[test]
fn the_approval_request_reaches_the_manager_and_lockout_and_fraud_alerts_the_security_team() {
    if !aiosmtpd_available() {
        return;
    }
    let _lock = lock_readers();
    let SmtpDesk { site, card, agent: mut alice, server, config, mut desk, _work } = SmtpDesk::start("alice", "246810");
    let identity = alice.identity().clone();
    let now = OffsetDateTime::now_utc;

    // The manager's approval for jsmith: the token goes to dgarcia's registered address.
    let (mut run, _) =
        desk.start_reset(&identity, alice.signer().unwrap(), "jsmith", Default::default(), now()).unwrap();
    desk.apply_ui_json(&mut run, r#"{"action":"request_manager_approval"}"#, alice.signer().unwrap(), now()).unwrap();
    // Suspected fraud on another request; three wrong answers lock cchen.
    let (mut fraud, _) =
        desk.start_reset(&identity, alice.signer().unwrap(), "hjansen", Default::default(), now()).unwrap();
    let note = r#"{"action":"suspected_fraud","note":"caller read answers from a script"}"#;
    desk.apply_ui_json(&mut fraud, note, alice.signer().unwrap(), now()).unwrap();
    let wrong =
        r#"{"action":"security_answers","answers":[{"question":0,"answer":"Rex"},{"question":1,"answer":"Paris"}]}"#;
    let (mut locked, _) =
        desk.start_reset(&identity, alice.signer().unwrap(), "cchen", Default::default(), now()).unwrap();
    for i in 0..3 {
        desk.apply_ui_json(&mut locked, wrong, alice.signer().unwrap(), now() + time::Duration::seconds(i)).unwrap();
    }
    assert_eq!(locked.phase(), Phase::LockedOut);

    let report = drain(&site, &config);
    assert!(report.failed.is_empty(), "{report:?}");
    let mails = server.messages();
    let approval: Vec<_> = mails.iter().filter(|(_, m)| m.contains("Subject: Approval needed")).collect();
    assert_eq!(approval.len(), 1, "{mails:?}");
    assert_eq!(approval[0].0, "dgarcia@example.com");
    let body = &approval[0].1;
    assert!(body.contains("Approve or deny with this code"), "{body}");
    let token = body.split("Approval code (valid 30 minutes, once): ").nth(1).unwrap();
    let token: String = token.chars().take_while(char::is_ascii_hexdigit).collect();
    // The token in the mail is the one the approval channel counts.
    let mut inbox = ApprovalInbox::open(site.dir.path()).unwrap();
    let answered = inbox.answer(&Secret::new(token), true, now()).unwrap();
    assert_eq!(answered.address, "dgarcia@example.com");
    assert!(desk.poll_manager_answer(&mut run, alice.signer().unwrap(), now()).unwrap().is_some());

    let to_security: Vec<&str> =
        mails.iter().filter(|(r, _)| r == "security@example.com").map(|(_, m)| m.as_str()).collect();
    let fraud_alert = to_security.iter().find(|m| m.contains("Subject: Suspected fraud")).expect("fraud alert");
    assert!(fraud_alert.contains("hjansen") && fraud_alert.contains("caller read answers from a script"));
    let lock_alert = to_security.iter().find(|m| m.contains("Subject: Verification locked for cchen"));
    assert!(lock_alert.is_some(), "{to_security:?}");
    for (rcpt, m) in &mails {
        let alert = m.contains("Subject: Suspected fraud") || m.contains("Subject: Verification locked");
        assert!(!alert || rcpt == "security@example.com", "alerts only to the security team: {rcpt}");
        assert!(!m.contains("Rex") && !m.contains("Paris"), "no answer in any mail");
    }
    drop(alice);
    card.remove().unwrap();
}

#[test]
fn a_phone_request_whose_password_would_go_by_mail_is_never_written_to_the_directory() {
    if !aiosmtpd_available() {
        return;
    }
    let _lock = lock_readers();
    let SmtpDesk { site, card, agent: mut alice, server, config, desk: _, _work } = SmtpDesk::start("alice", "246810");
    // The remote-channel rule off, so that answers and TOTP suffice and the run reaches
    // the reset: the workflow then names jsmith's registered address for the password.
    let mut config = config;
    config.policy.risk.remote_channel.enabled = false;
    let mut desk = Desk::open_embedded(config).unwrap();
    let identity = alice.identity().clone();
    let now = OffsetDateTime::now_utc;
    let request =
        resetdesk::desk::StartRequest { channel: Some(resetdesk::policy::Channel::Phone), ..Default::default() };
    let (mut run, _) = desk.start_reset(&identity, alice.signer().unwrap(), "jsmith", request, now()).unwrap();
    desk.apply_ui_json(&mut run, &answers_json("jsmith"), alice.signer().unwrap(), now()).unwrap();
    desk.apply_ui_json(&mut run, &desk_support::totp_json("jsmith", now()), alice.signer().unwrap(), now()).unwrap();
    desk.apply_ui_json(&mut run, r#"{"action":"request_reset"}"#, alice.signer().unwrap(), now()).unwrap();
    assert_eq!(run.phase(), Phase::DirectoryFailed);
    site.assert_untouched("jsmith");
    let outcome = site.records().last().unwrap().1.clone();
    let message = outcome["outcome"]["message"].as_str().unwrap_or_default().to_owned();
    assert!(message.contains("never sent by e-mail"), "{outcome}");
    assert!(run.take_handoff_password().is_none() && run.take_in_band_secret().is_none());
    assert!(server.messages().iter().all(|(_, m)| !m.contains("temporary password delivered")));
    drop(alice);
    card.remove().unwrap();
}
