//! The notifier adapter: a [`Notifier`] trait and its first implementation, the
//! [`Outbox`] — one SQLite row per message in `<data_dir>/outbox.sqlite`, delivered
//! later by the [`super::sender::OutboxSender`], which sets `delivered_at` on success
//! and, on failure, counts the attempt and sets the next one (`next_attempt_at`,
//! exponential backoff). Rows are never deleted. Each row has a channel: `mail` (an
//! e-mail, or a phone number left for another channel) or `ticketing` (a secret-free
//! summary for the ticketing webhook, [`super::ticketing`]).
//!
//! # Secrets never reach the outbox
//!
//! One-time codes and temporary passwords sent through a registered channel are
//! secrets: a queue that holds them in plaintext would be a second password store.
//! [`Notifier::deliver_secret`] therefore takes the secret, and its [`SecretKind`],
//! separately from the message. The outbox stores only the message (which never
//! contains the secret), marks it delivered *in-band* at once, and hands the secret
//! back ([`SecretDelivery::InBand`]): the caller shows it on the requester's registered
//! device (in the demo, a window that stands for that device) and drops it, which
//! zeroizes it. A notifier that sends secrets itself ([`super::mail_notifier`]) sends
//! them straight from memory and answers [`SecretDelivery::Sent`]; it never queues
//! them. Which kinds may go where is the notifier's [`Notifier::secret_route`]: a
//! temporary password never goes by e-mail.

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

/// Columns added after the first release, with their definitions: added to an older
/// outbox file when it is opened.
const ADDED_COLUMNS: [(&str, &str); 4] = [
    ("attempts", "INTEGER NOT NULL DEFAULT 0"),
    // Unix seconds; NULL: due now.
    ("next_attempt_at", "INTEGER"),
    ("last_error", "TEXT"),
    ("channel", "TEXT NOT NULL DEFAULT 'mail' CHECK (channel IN ('mail', 'ticketing'))"),
];

/// Where an outbox row goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum OutboxChannel {
    /// An e-mail (or a message to a phone number, left for another channel).
    Mail,
    /// A ticket update for the ticketing webhook: the recipient is the ticket number,
    /// the body the summary as JSON ([`super::ticketing::TicketSummary`]).
    Ticketing,
}

impl OutboxChannel {
    fn as_sql(self) -> &'static str {
        match self {
            Self::Mail => "mail",
            Self::Ticketing => "ticketing",
        }
    }

    fn from_sql(value: &str) -> Result<Self, rusqlite::Error> {
        match value {
            "mail" => Ok(Self::Mail),
            "ticketing" => Ok(Self::Ticketing),
            other => {
                Err(rusqlite::Error::InvalidColumnType(11, format!("channel {other:?}"), rusqlite::types::Type::Text))
            }
        }
    }
}

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

/// What a secret is: it decides where it may go ([`Notifier::secret_route`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SecretKind {
    /// A one-time verification code for the requester to read back to the agent:
    /// short-lived, single-use; e-mail to a registered address is a valid channel.
    OneTimeCode,
    /// The temporary password for a registered channel: never by e-mail.
    TemporaryPassword,
}

/// How a notifier would deliver a secret of a kind to an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretRoute {
    /// Sent by the notifier itself, from memory.
    OutOfBand,
    /// Handed back for the caller to show on the registered device (demo; production
    /// desks refuse it).
    InBand,
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
    #[error("a temporary password is never sent by e-mail (to {to}); hand it over in the customer window at the desk")]
    PasswordNotByMail { to: String },
    #[error("the one-time code could not be sent to {to} ({why}); no code was issued: send a new one or choose another method")]
    CodeNotSent { to: String, why: String },
}

/// Delivers notifications. Implementations are adapters: they do IO, the engine decides.
pub trait Notifier {
    /// Queue a message that holds no secret.
    fn queue(&mut self, message: &Message, now: OffsetDateTime) -> Result<(), NotifyError>;

    /// Queue several messages (one notification to all its recipients): all or none.
    fn queue_all(&mut self, messages: &[Message], now: OffsetDateTime) -> Result<(), NotifyError> {
        messages.iter().try_for_each(|m| self.queue(m, now))
    }

    /// Queue a secret-free ticket update for the ticketing webhook.
    fn queue_ticket_update(&mut self, update: &TicketUpdate, now: OffsetDateTime) -> Result<(), NotifyError>;

    /// How [`Notifier::deliver_secret`] would deliver a secret of `kind` to `to`, or
    /// the typed refusal (a temporary password to an e-mail address). The desk asks
    /// before it makes the secret: nothing is generated that cannot be delivered.
    fn secret_route(&self, kind: SecretKind, to: &str) -> Result<SecretRoute, NotifyError>;

    /// Deliver `secret`, a `kind`, with `message` (which must not contain it).
    /// Implementations never store the secret and refuse what
    /// [`Notifier::secret_route`] refuses.
    fn deliver_secret(
        &mut self,
        message: &Message,
        kind: SecretKind,
        secret: Secret,
        now: OffsetDateTime,
    ) -> Result<SecretDelivery, NotifyError>;
}

/// A ticket update to queue: the ticket number from intake and the summary (JSON of
/// [`super::ticketing::TicketSummary`], no secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketUpdate {
    pub ticket: String,
    pub title: String,
    pub summary_json: String,
    pub request_id: String,
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
    pub channel: OutboxChannel,
    /// Failed delivery attempts so far.
    pub attempts: u32,
    /// When the sender tries again (after a failure), unix seconds.
    pub next_attempt_at: Option<i64>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
}

/// The state a row is inserted in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Queued {
    /// For the sender to deliver.
    Due,
    /// Its secret was handed back for in-band delivery.
    InBand,
    /// Already delivered by the caller.
    Delivered,
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
        migrate(&conn).map_err(db)?;
        Ok(Self { conn, path: shown })
    }

    fn db_error(&self) -> impl Fn(rusqlite::Error) -> NotifyError + '_ {
        |source| NotifyError::Database { path: self.path.clone(), source }
    }

    /// Record a message the caller has just delivered itself (a one-time code sent
    /// from memory): the row, without the secret, marked delivered (not in-band).
    pub fn record_delivered(&mut self, message: &Message, now: OffsetDateTime) -> Result<(), NotifyError> {
        self.insert(std::slice::from_ref(message), OutboxChannel::Mail, now, Queued::Delivered)
    }

    /// Insert `messages` in one transaction (one fsync).
    fn insert(
        &mut self,
        messages: &[Message],
        channel: OutboxChannel,
        now: OffsetDateTime,
        state: Queued,
    ) -> Result<(), NotifyError> {
        let path = self.path.clone();
        let db = |source| NotifyError::Database { path: path.clone(), source };
        let created = rfc3339(now);
        let delivered = (state != Queued::Due).then(|| created.clone());
        let in_band = state == Queued::InBand;
        let tx = self.conn.transaction().map_err(db)?;
        for m in messages {
            tx.execute(
                "INSERT INTO outbox (recipient, subject, body, request_id, created_at, delivered_at, delivered_in_band, channel)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![m.to, m.subject, m.body, m.request_id, created, delivered, in_band, channel.as_sql()],
            )
            .map_err(db)?;
        }
        tx.commit().map_err(db)
    }

    /// Every message, oldest first (for the CLI and tests).
    pub fn messages(&self) -> Result<Vec<OutboxRow>, NotifyError> {
        self.select("1", params![])
    }

    /// Undelivered messages whose next attempt is due at `now`, oldest first.
    pub fn due(&self, now: OffsetDateTime) -> Result<Vec<OutboxRow>, NotifyError> {
        self.select(
            "delivered_at IS NULL AND (next_attempt_at IS NULL OR next_attempt_at <= ?1)",
            params![now.unix_timestamp()],
        )
    }

    fn select(&self, filter: &str, args: &[&dyn rusqlite::ToSql]) -> Result<Vec<OutboxRow>, NotifyError> {
        let db = self.db_error();
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT id, recipient, subject, body, request_id, created_at, delivered_at, delivered_in_band,
                        attempts, next_attempt_at, last_error, channel
                 FROM outbox WHERE {filter} ORDER BY id"
            ))
            .map_err(&db)?;
        let rows = stmt
            .query_map(args, |r| {
                Ok(OutboxRow {
                    id: r.get(0)?,
                    recipient: r.get(1)?,
                    subject: r.get(2)?,
                    body: r.get(3)?,
                    request_id: r.get(4)?,
                    created_at: r.get(5)?,
                    delivered_at: r.get(6)?,
                    delivered_in_band: r.get(7)?,
                    attempts: r.get(8)?,
                    next_attempt_at: r.get(9)?,
                    last_error: r.get(10)?,
                    channel: OutboxChannel::from_sql(&r.get::<_, String>(11)?)?,
                })
            })
            .map_err(&db)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(&db)
    }

    /// Record that message `id` was handed to the mail system at `now`.
    pub fn mark_delivered(&mut self, id: i64, now: OffsetDateTime) -> Result<(), NotifyError> {
        let db = self.db_error();
        self.conn
            .execute(
                "UPDATE outbox SET delivered_at = ?2, next_attempt_at = NULL WHERE id = ?1 AND delivered_at IS NULL",
                params![id, rfc3339(now)],
            )
            .map_err(db)?;
        Ok(())
    }

    /// Record a failed attempt for message `id`: one more attempt, tried again at `next`.
    pub fn mark_failed(&mut self, id: i64, error: &str, next: OffsetDateTime) -> Result<(), NotifyError> {
        let db = self.db_error();
        self.conn
            .execute(
                "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?2, last_error = ?3
                 WHERE id = ?1 AND delivered_at IS NULL",
                params![id, next.unix_timestamp(), error],
            )
            .map_err(db)?;
        Ok(())
    }
}

/// Add the columns an older outbox file lacks.
fn migrate(conn: &Connection) -> Result<(), rusqlite::Error> {
    let mut stmt = conn.prepare("SELECT name FROM pragma_table_info('outbox')")?;
    let present = stmt.query_map([], |r| r.get::<_, String>(0))?.collect::<Result<Vec<_>, _>>()?;
    for (name, definition) in ADDED_COLUMNS {
        if !present.iter().any(|p| p == name) {
            conn.execute_batch(&format!("ALTER TABLE outbox ADD COLUMN {name} {definition}"))?;
        }
    }
    Ok(())
}

impl Notifier for Outbox {
    fn queue(&mut self, message: &Message, now: OffsetDateTime) -> Result<(), NotifyError> {
        self.insert(std::slice::from_ref(message), OutboxChannel::Mail, now, Queued::Due)
    }

    fn queue_all(&mut self, messages: &[Message], now: OffsetDateTime) -> Result<(), NotifyError> {
        self.insert(messages, OutboxChannel::Mail, now, Queued::Due)
    }

    fn queue_ticket_update(&mut self, update: &TicketUpdate, now: OffsetDateTime) -> Result<(), NotifyError> {
        let row = Message {
            to: update.ticket.clone(),
            subject: update.title.clone(),
            body: update.summary_json.clone(),
            request_id: update.request_id.clone(),
        };
        self.insert(&[row], OutboxChannel::Ticketing, now, Queued::Due)
    }

    /// The outbox sends no secret itself: every kind is handed back in-band.
    fn secret_route(&self, _kind: SecretKind, _to: &str) -> Result<SecretRoute, NotifyError> {
        Ok(SecretRoute::InBand)
    }

    /// Stores the message without the secret, marked delivered in-band, and hands the
    /// secret back to the caller.
    fn deliver_secret(
        &mut self,
        message: &Message,
        _kind: SecretKind,
        secret: Secret,
        now: OffsetDateTime,
    ) -> Result<SecretDelivery, NotifyError> {
        self.insert(std::slice::from_ref(message), OutboxChannel::Mail, now, Queued::InBand)?;
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
    fn an_outbox_of_the_first_schema_gains_the_retry_columns_and_keeps_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        let first = "CREATE TABLE outbox (id INTEGER PRIMARY KEY, recipient TEXT NOT NULL, subject TEXT NOT NULL,
             body TEXT NOT NULL, request_id TEXT NOT NULL, created_at TEXT NOT NULL, delivered_at TEXT,
             delivered_in_band INTEGER NOT NULL DEFAULT 0);
             INSERT INTO outbox (recipient, subject, body, request_id, created_at) VALUES ('a@x', 's', 'b', 'r', 't');";
        Connection::open(dir.path().join(OUTBOX_FILE)).unwrap().execute_batch(first).unwrap();
        let mut outbox = Outbox::open(dir.path()).unwrap();
        let now = time::macros::datetime!(2026-11-25 10:00 UTC);
        assert_eq!(outbox.due(now).unwrap().len(), 1);
        outbox.mark_failed(1, "refused", now + time::Duration::minutes(1)).unwrap();
        assert!(outbox.due(now).unwrap().is_empty(), "not due before its next attempt");
        let row = &outbox.due(now + time::Duration::minutes(1)).unwrap()[0];
        assert_eq!((row.attempts, row.last_error.as_deref()), (1, Some("refused")));
        outbox.mark_delivered(1, now).unwrap();
        assert!(outbox.due(now + time::Duration::days(1)).unwrap().is_empty());
        assert_eq!(outbox.messages().unwrap().len(), 1, "rows are never deleted");
    }

    #[test]
    fn queued_messages_wait_and_secrets_are_handed_back_not_stored() {
        let dir = tempfile::tempdir().unwrap();
        let mut outbox = Outbox::open(dir.path()).unwrap();
        let now = time::macros::datetime!(2026-11-25 10:00 UTC);
        outbox.queue(&msg(), now).unwrap();
        let back = outbox.deliver_secret(&msg(), SecretKind::OneTimeCode, Secret::from("483920"), now).unwrap();
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
