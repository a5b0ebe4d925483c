//! The notifier of a desk that sends mail over SMTP: messages without secrets are
//! queued in the [`Outbox`] (the sender delivers them later, with retries); a
//! one-time verification code to a registered e-mail address is sent **at once**, from
//! memory, over the same SMTP settings, and never queued.
//!
//! # Why a code is sent synchronously and not queued
//!
//! The outbox is a durable SQLite queue whose rows are never deleted: a code waiting
//! there would be a secret at rest (in the file, its WAL and backups) for as long as
//! the server is down. Queuing buys nothing for a code: it is valid for minutes
//! (`[policy.one_time_code] valid_minutes`), the requester is on the line waiting
//! for it, and a code that arrives an hour later is useless. So the code goes out
//! in the desk call that issues it; if the server refuses or cannot be reached, the
//! call fails with [`NotifyError::CodeNotSent`], no code counts (the desk keeps the
//! code's hash only after the send), and the agent sends a new one or chooses
//! another method. The outbox then records the message *without* the code, marked
//! delivered, like every other message.
//!
//! # What never goes by mail
//!
//! A temporary password: [`Notifier::secret_route`] refuses it for any e-mail
//! address ([`NotifyError::PasswordNotByMail`]), and the desk asks before it
//! generates one, so no password is set in the directory that would have to be
//! mailed. Secrets for a phone number are handed back in-band (no SMS sink yet), which
//! production desks refuse.
//!
//! Codes go only to the address the engine chose: a contact point on file that did
//! not change recently (the policy's `recent_contact_change` rule), never one the
//! requester offers.

use time::OffsetDateTime;

use crate::config::{Config, MailDelivery};
use crate::secret::Secret;

use super::mailer::{compose_with_code, MailError, MailSink, SmtpSink};
use super::outbox::{Message, Notifier, NotifyError, Outbox, SecretDelivery, SecretKind, SecretRoute, TicketUpdate};

/// The outbox for messages, SMTP at once for one-time codes (see the module doc).
pub struct MailNotifier {
    outbox: Outbox,
    smtp: SmtpSink,
    from: String,
}

impl MailNotifier {
    pub fn new(outbox: Outbox, smtp: SmtpSink, from: impl Into<String>) -> Self {
        Self { outbox, smtp, from: from.into() }
    }
}

/// The notifier `config` asks for: with SMTP delivery, a [`MailNotifier`]; otherwise
/// the plain [`Outbox`] (the demo's eml sink never receives a code: a code written to
/// a file would be a secret at rest, so the demo shows it in-band instead).
pub fn notifier_for(config: &Config) -> Result<Box<dyn Notifier + Send>, MailError> {
    let outbox = Outbox::open(&config.data_dir)?;
    Ok(match config.smtp.effective_delivery(config.mode) {
        Some(MailDelivery::Smtp) => {
            Box::new(MailNotifier::new(outbox, SmtpSink::new(&config.smtp)?, config.smtp.from.clone()))
        }
        Some(MailDelivery::Eml) | None => Box::new(outbox),
    })
}

fn is_mail_address(to: &str) -> bool {
    to.parse::<lettre::Address>().is_ok()
}

impl Notifier for MailNotifier {
    fn queue(&mut self, message: &Message, now: OffsetDateTime) -> Result<(), NotifyError> {
        self.outbox.queue(message, now)
    }

    fn queue_all(&mut self, messages: &[Message], now: OffsetDateTime) -> Result<(), NotifyError> {
        self.outbox.queue_all(messages, now)
    }

    fn queue_ticket_update(&mut self, update: &TicketUpdate, now: OffsetDateTime) -> Result<(), NotifyError> {
        self.outbox.queue_ticket_update(update, now)
    }

    fn secret_route(&self, kind: SecretKind, to: &str) -> Result<SecretRoute, NotifyError> {
        match (kind, is_mail_address(to)) {
            (SecretKind::TemporaryPassword, true) => Err(NotifyError::PasswordNotByMail { to: to.to_owned() }),
            (SecretKind::OneTimeCode, true) => Ok(SecretRoute::OutOfBand),
            // A phone number: no SMS sink yet.
            (_, false) => Ok(SecretRoute::InBand),
        }
    }

    fn deliver_secret(
        &mut self,
        message: &Message,
        kind: SecretKind,
        secret: Secret,
        now: OffsetDateTime,
    ) -> Result<SecretDelivery, NotifyError> {
        match self.secret_route(kind, &message.to)? {
            SecretRoute::InBand => self.outbox.deliver_secret(message, kind, secret, now),
            SecretRoute::OutOfBand => {
                let not_sent = |e: MailError| NotifyError::CodeNotSent { to: message.to.clone(), why: e.to_string() };
                let mail = compose_with_code(&self.from, message, &secret).map_err(not_sent)?;
                drop(secret);
                let sent = self.smtp.send(0, &mail);
                drop(mail);
                sent.map_err(not_sent)?;
                self.outbox.record_delivered(message, now)?;
                Ok(SecretDelivery::Sent)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SmtpConfig;

    fn notifier(dir: &std::path::Path) -> MailNotifier {
        // Port 9 on loopback: nothing listens, so any send would fail.
        let smtp = SmtpConfig { host: "127.0.0.1".into(), port: 9, ..SmtpConfig::default() };
        MailNotifier::new(Outbox::open(dir).unwrap(), SmtpSink::new(&smtp).unwrap(), "desk@example.com")
    }

    #[test]
    fn a_temporary_password_is_refused_for_any_mail_address_by_its_kind() {
        let dir = tempfile::tempdir().unwrap();
        let mut n = notifier(dir.path());
        let to = "jsmith@example.com";
        assert!(matches!(
            n.secret_route(SecretKind::TemporaryPassword, to),
            Err(NotifyError::PasswordNotByMail { .. })
        ));
        assert_eq!(n.secret_route(SecretKind::OneTimeCode, to).unwrap(), SecretRoute::OutOfBand);
        assert_eq!(n.secret_route(SecretKind::TemporaryPassword, "+44 20 7946 0000").unwrap(), SecretRoute::InBand);
        let m = Message { to: to.into(), subject: "s".into(), body: "b".into(), request_id: "r".into() };
        let now = time::macros::datetime!(2026-11-25 10:00 UTC);
        let r = n.deliver_secret(&m, SecretKind::TemporaryPassword, Secret::from("Tmp-Pass-1"), now);
        assert!(matches!(r, Err(NotifyError::PasswordNotByMail { .. })), "{r:?}");
        assert!(n.outbox.messages().unwrap().is_empty(), "nothing recorded or queued");
    }

    #[test]
    fn a_code_that_cannot_be_sent_fails_at_once_and_leaves_nothing_queued() {
        let dir = tempfile::tempdir().unwrap();
        let mut n = notifier(dir.path());
        let m =
            Message { to: "jsmith@example.com".into(), subject: "s".into(), body: "b".into(), request_id: "r".into() };
        let now = time::macros::datetime!(2026-11-25 10:00 UTC);
        let r = n.deliver_secret(&m, SecretKind::OneTimeCode, Secret::from("483920"), now);
        assert!(matches!(r, Err(NotifyError::CodeNotSent { .. })), "{r:?}");
        assert!(n.outbox.messages().unwrap().is_empty(), "a failed code is not queued for later");
    }
}
