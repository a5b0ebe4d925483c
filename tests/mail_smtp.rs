//! Notifications by SMTP on real components: a real reset through the desk queues
//! its messages, the outbox sender delivers them over STARTTLS to a real aiosmtpd
//! (its certificate issued by a CA the test makes), and the test reads the maildir.
//! Also: a stopped server leaves rows queued with a next attempt, a restarted one gets
//! them; the demo eml sink writes files and production refuses it.
//!
//! Needs `python3-aiosmtpd` (scripts/setup-debian.sh); skipped without it outside CI.
//! The reset test also needs `scripts/pcscd.sh start` and holds the reader lock.

mod desk_support;

use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use desk_support::{at_desk, verified_run};
use resetdesk::config::{Config, SmtpConfig, SmtpSecurity};
use resetdesk::desk::mailer::{sink_for, SmtpSink};
use resetdesk::desk::outbox::{Message, Notifier, Outbox};
use resetdesk::desk::sender::{Backoff, OutboxSender};
use resetdesk::directory::{ContactPoint, Directory};
use resetdesk::workflow::ContactKind;
use time::OffsetDateTime;
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

/// A CA and a certificate for 127.0.0.1 issued by it, as PEM files in `dir`.
struct TestPki {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

fn pki(dir: &Path) -> TestPki {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(DnType::CommonName, "mail test CA");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.subject_alt_names.push(SanType::IpAddress(Ipv4Addr::LOCALHOST.into()));
    let cert = params.signed_by(&key, &issuer).unwrap();
    let pki = TestPki { ca: dir.join("ca.pem"), cert: dir.join("server.crt"), key: dir.join("server.key") };
    std::fs::write(&pki.ca, ca_cert.pem()).unwrap();
    std::fs::write(&pki.cert, cert.pem()).unwrap();
    std::fs::write(&pki.key, key.serialize_pem()).unwrap();
    pki
}

/// aiosmtpd on a loopback port, offering STARTTLS, saving each message to a maildir.
struct MailServer {
    child: Child,
    maildir: PathBuf,
}

impl MailServer {
    fn start(port: u16, pki: &TestPki, maildir: &Path) -> Self {
        let child = Command::new(PYTHON)
            .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}"), "-c", "aiosmtpd.handlers.Mailbox"])
            .arg("--tlscert")
            .arg(&pki.cert)
            .arg("--tlskey")
            .arg(&pki.key)
            .arg("--no-requiretls")
            .arg(maildir)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "aiosmtpd did not listen on port {port}");
            std::thread::sleep(Duration::from_millis(100));
        }
        Self { child, maildir: maildir.to_owned() }
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

impl Drop for MailServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
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

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
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
