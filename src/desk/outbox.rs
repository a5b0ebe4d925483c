//! The notifier adapter: a [`Notifier`] trait and its first implementation, the
//! [`Outbox`] — one SQLite row per message in `<data_dir>/outbox.sqlite`, delivered
//! later by an SMTP sender (a later issue) that sets `delivered_at`.
//!
//! # Secrets never reach the outbox
//!
//! One-time codes and temporary passwords sent through a registered channel are
//! secrets: a queue that holds them in plaintext would be a second password store.
//! [`Notifier::deliver_secret`] therefore takes the secret separately from the
//! message. The outbox stores only the message (which never contains the secret),
//! marks it delivered *in-band* at once, and hands the secret back
//! ([`SecretDelivery::InBand`]): the caller shows it on the requester's registered
//! device (in the demo, a window that stands for that device) and drops it, which
//! zeroizes it. A real sender (SMTP/SMS) sends the secret straight from memory and
//! answers [`SecretDelivery::Sent`].

use std::path::Path;

use rusqlite::{params, Connection};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::secret::Secret;

/// File name of the outbox inside the data directory.
pub const OUTBOX_FILE: &str = "outbox.sqlite";

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS outbox (
    id                INTEGER PRIMARY KEY,
    recipient         TEXT NOT NULL,
    subject           TEXT NOT NULL,
    body              TEXT NOT NULL,
    request_id        TEXT NOT NULL,
    created_at        TEXT NOT NULL,
    delivered_at      TEXT,
    delivered_in_band INTEGER NOT NULL DEFAULT 0 CHECK (delivered_in_band IN (0, 1))
);
CREATE INDEX IF NOT EXISTS outbox_undelivered ON outbox(id) WHERE delivered_at IS NULL;
";

/// A message to one recipient. Holds no secret: secrets travel beside it
/// ([`Notifier::deliver_secret`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// An e-mail address or a phone number on file.
    pub to: String,
    pub subject: String,
    pub body: String,
    /// The reset request the message is about.
    pub request_id: String,
}

/// How a secret reached its recipient.
#[derive(Debug)]
pub enum SecretDelivery {
    /// Sent out of band; the secret is gone.
    Sent,
    /// Not sent: the caller must show it on the requester's registered device, once.
    InBand(Secret),
}

/// Why a message could not be queued.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error(
        "the outbox {path} could not be used ({source}); check the data directory, its permissions and free disk space"
    )]
    Database {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
}

/// Delivers notifications. Implementations are adapters: they do IO, the engine decides.
pub trait Notifier {
    /// Queue a message that holds no secret.
    fn queue(&mut self, message: &Message, now: OffsetDateTime) -> Result<(), NotifyError>;

    /// Queue several messages (one notification to all its recipients): all or none.
    fn queue_all(&mut self, messages: &[Message], now: OffsetDateTime) -> Result<(), NotifyError> {
        messages.iter().try_for_each(|m| self.queue(m, now))
    }

    /// Whether [`Notifier::deliver_secret`] sends secrets out of band (`false`: it
    /// hands them back for in-band delivery, which production desks refuse).
    fn sends_secrets(&self) -> bool;

    /// Deliver `secret` with `message` (which must not contain it). Implementations
    /// never store the secret.
    fn deliver_secret(
        &mut self,
        message: &Message,
        secret: Secret,
        now: OffsetDateTime,
    ) -> Result<SecretDelivery, NotifyError>;
}

/// One stored message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxRow {
    pub id: i64,
    pub recipient: String,
    pub subject: String,
    pub body: String,
    pub request_id: String,
    pub created_at: String,
    pub delivered_at: Option<String>,
    pub delivered_in_band: bool,
}

/// The SQLite outbox.
pub struct Outbox {
    conn: Connection,
    path: String,
}

fn rfc3339(t: OffsetDateTime) -> String {
    // Invariant: RFC 3339 formatting fails only for years outside 0..=9999; the
    // workflow refuses such times before anything reaches the notifier.
    t.format(&Rfc3339).unwrap_or_else(|_| "1970-01-01T00:00:00Z".into())
}

impl Outbox {
    /// Open (creating if needed) `<data_dir>/outbox.sqlite`.
    pub fn open(data_dir: &Path) -> Result<Self, NotifyError> {
        let path = data_dir.join(OUTBOX_FILE);
        let shown = path.display().to_string();
        let db = |source| NotifyError::Database { path: shown.clone(), source };
        let conn = Connection::open(&path).map_err(db)?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(db)?;
        conn.pragma_update(None, "synchronous", "FULL").map_err(db)?;
        conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(db)?;
        conn.execute_batch(SCHEMA).map_err(db)?;
        Ok(Self { conn, path: shown })
    }

    /// Insert `messages` in one transaction (one fsync).
    fn insert(&mut self, messages: &[Message], now: OffsetDateTime, in_band: bool) -> Result<(), NotifyError> {
        let path = self.path.clone();
        let db = |source| NotifyError::Database { path: path.clone(), source };
        let created = rfc3339(now);
        let delivered = in_band.then(|| created.clone());
        let tx = self.conn.transaction().map_err(db)?;
        for m in messages {
            tx.execute(
                "INSERT INTO outbox (recipient, subject, body, request_id, created_at, delivered_at, delivered_in_band)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![m.to, m.subject, m.body, m.request_id, created, delivered, in_band],
            )
            .map_err(db)?;
        }
        tx.commit().map_err(db)
    }

    /// Every message, oldest first (for the later SMTP sender, the CLI and tests).
    pub fn messages(&self) -> Result<Vec<OutboxRow>, NotifyError> {
        let db = |source| NotifyError::Database { path: self.path.clone(), source };
        let mut stmt = self
            .conn
            .prepare(
                "SELECT id, recipient, subject, body, request_id, created_at, delivered_at, delivered_in_band
                 FROM outbox ORDER BY id",
            )
            .map_err(db)?;
        let rows = stmt
            .query_map([], |r| {
                Ok(OutboxRow {
                    id: r.get(0)?,
                    recipient: r.get(1)?,
                    subject: r.get(2)?,
                    body: r.get(3)?,
                    request_id: r.get(4)?,
                    created_at: r.get(5)?,
                    delivered_at: r.get(6)?,
                    delivered_in_band: r.get(7)?,
                })
            })
            .map_err(db)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(db)
    }
}

impl Notifier for Outbox {
    fn queue(&mut self, message: &Message, now: OffsetDateTime) -> Result<(), NotifyError> {
        self.insert(std::slice::from_ref(message), now, false)
    }

    fn queue_all(&mut self, messages: &[Message], now: OffsetDateTime) -> Result<(), NotifyError> {
        self.insert(messages, now, false)
    }

    fn sends_secrets(&self) -> bool {
        false
    }

    /// Stores the message without the secret, marked delivered in-band, and hands the
    /// secret back to the caller.
    fn deliver_secret(
        &mut self,
        message: &Message,
        secret: Secret,
        now: OffsetDateTime,
    ) -> Result<SecretDelivery, NotifyError> {
        self.insert(std::slice::from_ref(message), now, true)?;
        Ok(SecretDelivery::InBand(secret))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg() -> Message {
        Message { to: "jane@example.com".into(), subject: "s".into(), body: "b".into(), request_id: "r1".into() }
    }

    #[test]
    fn queued_messages_wait_and_secrets_are_handed_back_not_stored() {
        let dir = tempfile::tempdir().unwrap();
        let mut outbox = Outbox::open(dir.path()).unwrap();
        let now = time::macros::datetime!(2026-11-25 10:00 UTC);
        outbox.queue(&msg(), now).unwrap();
        let back = outbox.deliver_secret(&msg(), Secret::from("483920"), now).unwrap();
        assert!(matches!(back, SecretDelivery::InBand(ref s) if s.expose() == "483920"));
        let rows = outbox.messages().unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!((rows[0].delivered_at.is_none(), rows[0].delivered_in_band), (true, false));
        assert_eq!((rows[1].delivered_at.is_some(), rows[1].delivered_in_band), (true, true));
        drop(outbox);
        let raw = std::fs::read(dir.path().join(OUTBOX_FILE)).unwrap();
        let wal = std::fs::read(dir.path().join(format!("{OUTBOX_FILE}-wal"))).unwrap_or_default();
        for bytes in [raw, wal] {
            assert!(!String::from_utf8_lossy(&bytes).contains("483920"), "the secret is not on disk");
        }
    }
}
