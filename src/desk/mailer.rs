//! Mail: how an outbox message becomes an e-mail, and the sinks that take it.
//!
//! [`compose`] is the one place a message is built: `multipart/alternative` with the
//! stored plain text and an HTML part rendered from it (every character escaped, so
//! nothing from the directory or a note becomes markup). The stored text never holds
//! a secret; [`compose_with_code`] adds a one-time code from memory for the single
//! case where mail is the code's channel ([`super::mail_notifier`], which sends it at
//! once and never queues it).
//!
//! Sinks ([`MailSink`]):
//! - [`SmtpSink`]: `lettre`'s blocking SMTP transport, STARTTLS (default) or implicit
//!   TLS with rustls, the configured CA (`[smtp] ca_file`) or the system's roots,
//!   optional SMTP AUTH with the password read from `[smtp] password_file`; plain SMTP
//!   only with `security = "none"`, which production refuses.
//! - [`EmlSink`]: writes `<data_dir>/mail/<id>.eml` so a demo user can open what would
//!   have been sent; production refuses it (`Config` validation).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use lettre::message::{header::ContentType, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, CertificateStore, Tls, TlsParameters};
use lettre::{SmtpTransport, Transport};

use crate::config::{Config, MailDelivery, SmtpConfig, SmtpSecurity};
use crate::secret::Secret;

use super::outbox::{Message, OutboxRow};

/// Folder of the eml sink inside the data directory.
pub const MAIL_DIR: &str = "mail";

/// How long one SMTP conversation may stall before the attempt counts as failed.
const SMTP_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a message could not be built or handed over. None contains a secret.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("{0:?} is not an e-mail address; the message waits for another channel")]
    NotAnAddress(String),
    #[error("the message could not be built ({0})")]
    Build(String),
    #[error("the SMTP server refused or could not be reached ({0}); the message stays queued and is retried")]
    Smtp(String),
    #[error("the SMTP settings are unusable ({0}); fix [smtp] in resetdesk.toml")]
    Setup(String),
    #[error("{path}: cannot read ({source}); fix [smtp] in resetdesk.toml")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: cannot write the mail file ({source}); check the data directory")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("no mail delivery is configured; set [smtp] host (or delivery = \"eml\" in demo mode)")]
    NotConfigured,
    #[error(transparent)]
    Outbox(#[from] super::outbox::NotifyError),
}

/// Takes built e-mails. Adapters: they do IO.
pub trait MailSink {
    /// Hand `mail` (outbox message `id`) over for delivery.
    fn send(&mut self, id: i64, mail: &lettre::Message) -> Result<(), MailError>;
}

/// The sink the configuration asks for (`None`: none, messages wait in the outbox).
pub fn sink_for(config: &Config) -> Result<Option<Box<dyn MailSink + Send>>, MailError> {
    Ok(match config.smtp.effective_delivery(config.mode) {
        Some(MailDelivery::Smtp) => Some(Box::new(SmtpSink::new(&config.smtp)?)),
        Some(MailDelivery::Eml) => Some(Box::new(EmlSink::new(&config.data_dir))),
        None => None,
    })
}

/// Build the e-mail for an outbox row: text and HTML alternatives.
pub fn compose(from: &str, row: &OutboxRow) -> Result<lettre::Message, MailError> {
    let id = format!("outbox-{}.{}", row.id, row.request_id);
    build(from, &row.recipient, &row.subject, &id, &row.body)
}

/// The e-mail of `message` with the one-time `code` added to both parts, for
/// sending at once. The code comes from memory and is never stored; the text built
/// here is zeroized, but the returned message holds a copy in `lettre`'s buffers
/// (not zeroized): drop it as soon as it is sent.
pub fn compose_with_code(from: &str, message: &Message, code: &Secret) -> Result<lettre::Message, MailError> {
    let mut nonce = [0u8; 8];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut nonce);
    let id = format!("code-{}.{}", hex::encode(nonce), message.request_id);
    let text = zeroize::Zeroizing::new(format!("Your code: {}\n\n{}", code.expose(), message.body));
    build(from, &message.to, &message.subject, &id, &text)
}

/// A mail of plain `text` (and its escaped HTML alternative) from `from` to `to`,
/// with the message id `<id@from's domain>`: for mail that is not an outbox row
/// (the collector's alerts to the security address).
pub fn compose_text(from: &str, to: &str, subject: &str, id: &str, text: &str) -> Result<lettre::Message, MailError> {
    build(from, to, subject, id, text)
}

fn build(from: &str, to: &str, subject: &str, id: &str, text: &str) -> Result<lettre::Message, MailError> {
    let to: Mailbox = to.parse().map_err(|_| MailError::NotAnAddress(to.to_owned()))?;
    let from: Mailbox = from.parse().map_err(|e| MailError::Setup(format!("[smtp] from: {e}")))?;
    let domain = from.email.domain().to_owned();
    lettre::Message::builder()
        .from(from)
        .to(to)
        .subject(subject.to_owned())
        .message_id(Some(format!("<{id}@{domain}>")))
        .multipart(
            MultiPart::alternative()
                .singlepart(SinglePart::builder().header(ContentType::TEXT_PLAIN).body(text.to_owned()))
                .singlepart(SinglePart::builder().header(ContentType::TEXT_HTML).body(html_of(subject, text))),
        )
        .map_err(|e| MailError::Build(e.to_string()))
}

/// The HTML alternative of a plain-text body: paragraphs at blank lines, line breaks
/// kept, everything escaped.
pub fn html_of(subject: &str, text: &str) -> String {
    let paragraphs: Vec<String> = text
        .split("\n\n")
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| format!("<p>{}</p>", p.lines().map(escape_html).collect::<Vec<_>>().join("<br>\n")))
        .collect();
    format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{}</title></head>\n<body>\n{}\n</body></html>\n",
        escape_html(subject),
        paragraphs.join("\n")
    )
}

/// Escape text for HTML element content and attribute values (also used by the
/// collector's pages for people).
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// SMTP delivery with lettre's blocking transport.
pub struct SmtpSink {
    transport: SmtpTransport,
}

impl SmtpSink {
    pub fn new(config: &SmtpConfig) -> Result<Self, MailError> {
        let host = config.host.trim();
        if host.is_empty() {
            return Err(MailError::NotConfigured);
        }
        let tls = || -> Result<TlsParameters, MailError> {
            let mut builder = TlsParameters::builder(host.to_owned());
            if let Some(path) = &config.ca_file {
                let pem = std::fs::read(path)
                    .map_err(|source| MailError::Read { path: path.display().to_string(), source })?;
                let ca =
                    Certificate::from_pem(&pem).map_err(|e| MailError::Setup(format!("{}: {e}", path.display())))?;
                // Only the configured CA: a public CA cannot stand in for the organisation's.
                builder = builder.certificate_store(CertificateStore::None).add_root_certificate(ca);
            }
            builder.build_rustls().map_err(|e| MailError::Setup(e.to_string()))
        };
        let builder = match config.security {
            SmtpSecurity::Starttls => SmtpTransport::builder_dangerous(host).tls(Tls::Required(tls()?)),
            SmtpSecurity::Tls => SmtpTransport::builder_dangerous(host).tls(Tls::Wrapper(tls()?)),
            SmtpSecurity::None => SmtpTransport::builder_dangerous(host).tls(Tls::None),
        };
        let mut builder = builder.port(config.port).timeout(Some(SMTP_TIMEOUT));
        if let Some(path) = &config.password_file {
            let password = read_password(path)?;
            builder = builder.credentials(Credentials::new(config.username.clone(), password.expose().to_owned()));
        }
        Ok(Self { transport: builder.build() })
    }
}

fn read_password(path: &Path) -> Result<Secret, MailError> {
    let text =
        std::fs::read_to_string(path).map_err(|source| MailError::Read { path: path.display().to_string(), source })?;
    let secret = Secret::from(text.trim_end_matches(['\r', '\n']));
    drop(zeroize::Zeroizing::new(text));
    Ok(secret)
}

impl MailSink for SmtpSink {
    fn send(&mut self, _id: i64, mail: &lettre::Message) -> Result<(), MailError> {
        self.transport.send(mail).map(|_| ()).map_err(|e| MailError::Smtp(e.to_string()))
    }
}

/// Demo delivery: one `.eml` file per message.
pub struct EmlSink {
    dir: PathBuf,
}

impl EmlSink {
    pub fn new(data_dir: &Path) -> Self {
        Self { dir: data_dir.join(MAIL_DIR) }
    }
}

impl MailSink for EmlSink {
    fn send(&mut self, id: i64, mail: &lettre::Message) -> Result<(), MailError> {
        let path = self.dir.join(format!("{id}.eml"));
        let write = |source| MailError::Write { path: path.display().to_string(), source };
        std::fs::create_dir_all(&self.dir).map_err(write)?;
        // Whole or not at all: a reader never opens half a message.
        let tmp = self.dir.join(format!(".{id}.eml.tmp"));
        let mut file = std::fs::File::create(&tmp).map_err(write)?;
        file.write_all(&mail.formatted()).and_then(|()| file.sync_all()).map_err(write)?;
        std::fs::rename(&tmp, &path).map_err(write)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(body: &str) -> OutboxRow {
        OutboxRow {
            id: 7,
            recipient: "jane@example.com".into(),
            subject: "Your password was reset".into(),
            body: body.into(),
            request_id: "r1".into(),
            created_at: "t".into(),
            delivered_at: None,
            delivered_in_band: false,
            channel: super::super::outbox::OutboxChannel::Mail,
            attempts: 0,
            next_attempt_at: None,
            last_error: None,
        }
    }

    #[test]
    fn html_part_escapes_what_the_text_holds() {
        let html = html_of("a <b>", "Note: <script>alert(1)</script> & \"x\"\n\nsecond");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;x&quot;"), "{html}");
        assert!(!html.contains("<script>"));
        assert!(html.contains("<p>second</p>"));
        assert!(html.contains("<title>a &lt;b&gt;</title>"));
    }

    #[test]
    fn a_mail_has_text_and_html_alternatives_and_a_phone_number_is_not_an_address() {
        let mail = compose("ResetDesk <desk@example.com>", &row("Hello\n\nbye")).unwrap();
        let raw = String::from_utf8(mail.formatted()).unwrap();
        assert!(raw.contains("multipart/alternative"), "{raw}");
        assert!(raw.contains("text/plain") && raw.contains("text/html"), "{raw}");
        let phone = OutboxRow { recipient: "+44 20 7946 0000".into(), ..row("x") };
        assert!(matches!(compose("desk@example.com", &phone), Err(MailError::NotAnAddress(_))));
    }

    #[test]
    fn the_eml_sink_writes_one_whole_file_per_message() {
        let dir = tempfile::tempdir().unwrap();
        let mut sink = EmlSink::new(dir.path());
        sink.send(7, &compose("desk@example.com", &row("Hello")).unwrap()).unwrap();
        let eml = std::fs::read_to_string(dir.path().join(MAIL_DIR).join("7.eml")).unwrap();
        assert!(eml.contains("To: jane@example.com") && eml.contains("Hello"), "{eml}");
        let names: Vec<_> =
            std::fs::read_dir(dir.path().join(MAIL_DIR)).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["7.eml"], "no temporary file left");
    }
}
