//! Manager approval the desk cannot assert: the approval-channel adapter.
//!
//! When the engine asks for the manager's approval, the desk issues a random token of
//! 128 bits through an [`ApprovalChannel`] and sends it to the manager's registered
//! address. Only SHA-256 of the token is stored. An answer counts only when it
//! presents that token, before it expires, once; the approver and the address are the
//! ones the token was sent to, never what the answer claims. The desk then feeds the
//! answer to the engine, which checks it against the manager on file.
//!
//! [`ApprovalInbox`] is the embedded channel: pending requests in
//! `<data_dir>/approvals.sqlite`. The token travels in the approval message through
//! the outbox (demo: `resetdesk outbox show`), and the manager's reply is played with
//! `resetdesk approval answer` (token on standard input). Production desks refuse it:
//! there the answer comes through the collector's approval page
//! ([`super::collector_approval::CollectorApprovals`], chosen by [`channel_for`]).

use std::path::Path;

use rand::RngCore;
use rusqlite::{params, Connection, OptionalExtension};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

use crate::secret::Secret;
use crate::verification::manager_approval::ManagerResponse;

/// File name of the embedded approval channel inside the data directory.
pub const APPROVALS_FILE: &str = "approvals.sqlite";
/// How long a token is valid by default.
pub const DEFAULT_TTL: Duration = Duration::minutes(30);
/// Token length in bytes (128 bits), hex-encoded for people.
const TOKEN_BYTES: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum ApprovalError {
    #[error(
        "the approval store {path} could not be used ({source}); check the data directory, its permissions and free disk space"
    )]
    Database {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error("that approval code is not valid: check it was copied whole from the approval message")]
    UnknownToken,
    #[error("that approval code has expired; the agent must request approval again")]
    Expired,
    #[error("that approval request was already answered")]
    AlreadyAnswered,
    #[error("the stored approval request is unusable ({0}); the agent must request approval again")]
    Corrupt(&'static str),
    /// The collector could not be reached: the approval waits for it, it is not lost.
    #[error("approval needs the collector: {0}; check the collector runs and the network, then ask again")]
    NeedsCollector(String),
    #[error("the collector refused the approval request: {0}")]
    CollectorRefused(String),
    /// The collector's answer is not a decision this desk can accept (signature, token,
    /// manager or address): a security matter, not a network one.
    #[error("the collector's approval decision was not accepted ({0}); report this to the security team")]
    BadDecision(String),
    #[error("the approval channel cannot be set up: {0}")]
    Setup(String),
}

/// One approval request, as the channel keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    pub request_id: String,
    /// Directory username of the manager the token went to.
    pub manager: String,
    /// The registered address it went to.
    pub address: String,
}

/// What the manager is asked about, as the approval page shows it (no secret).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ApprovalContext {
    /// The agent who asks: username, display name, employee ID.
    pub agent: String,
    pub agent_name: String,
    pub agent_employee_id: String,
    /// The account to be reset.
    pub account: String,
    pub account_name: String,
    /// The escalation reasons.
    pub reasons: Vec<String>,
}

/// A token issued to a manager, and until when it works.
#[derive(Debug)]
pub struct IssuedToken {
    pub token: Secret,
    pub expires_at: OffsetDateTime,
}

/// A channel that carries approval requests to managers and their answers back.
pub trait ApprovalChannel {
    /// A new token for `request_id`, to send to `manager` at `address`; only its hash
    /// is kept. An earlier token of the same request stops counting.
    fn issue(
        &mut self,
        issued: &Issued,
        about: &ApprovalContext,
        now: OffsetDateTime,
    ) -> Result<IssuedToken, ApprovalError>;

    /// The manager's answer to `request_id`, once it arrived: taken once.
    fn take_answer(&mut self, request_id: &str) -> Result<Option<ManagerResponse>, ApprovalError>;

    /// Where the manager answers with `token`: the collector's approval page, to be
    /// put in the approval mail. `None` (the embedded inbox): the mail carries the code
    /// alone and the answer is played with `resetdesk approval answer`.
    fn answer_link(&self, _token: &Secret) -> Option<String> {
        None
    }

    /// Whether production desks may use this channel (the embedded inbox: no).
    fn production_ready(&self) -> bool {
        false
    }
}

/// The approval channel of `config`: the collector's approval page when `[collector]
/// url` and `desk_key_file` are set, else the embedded inbox (demo only; production
/// desks refuse it when an approval is due).
pub fn channel_for(config: &crate::config::Config) -> Result<Box<dyn ApprovalChannel + Send>, ApprovalError> {
    let c = &config.collector;
    if !c.url.is_empty() && c.desk_key_file.is_some() {
        let channel = super::collector_approval::CollectorApprovals::open(c, &config.data_dir)?;
        return Ok(Box::new(channel));
    }
    Ok(Box::new(ApprovalInbox::open(&config.data_dir)?))
}

/// The embedded approval channel (see the module doc).
pub struct ApprovalInbox {
    conn: Connection,
    path: String,
    ttl: Duration,
}

fn fmt(t: OffsetDateTime) -> String {
    // Invariant: RFC 3339 fails only outside years 0..=9999, which the workflow refuses.
    t.format(&Rfc3339).unwrap_or_else(|_| "1970-01-01T00:00:00Z".into())
}

/// `<data_dir>/approvals.sqlite` (WAL, synchronous=FULL), and its path for messages:
/// the approval channels' tables live there.
pub(super) fn open_store(data_dir: &Path) -> Result<(Connection, String), ApprovalError> {
    let path = data_dir.join(APPROVALS_FILE).display().to_string();
    let err = |source| ApprovalError::Database { path: path.clone(), source };
    let conn = Connection::open(&path).map_err(err)?;
    conn.pragma_update(None, "journal_mode", "WAL").map_err(err)?;
    conn.pragma_update(None, "synchronous", "FULL").map_err(err)?;
    conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(err)?;
    Ok((conn, path))
}

fn hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.trim().to_ascii_lowercase().as_bytes()).into()
}

impl ApprovalInbox {
    /// Open (creating if needed) `<data_dir>/approvals.sqlite`.
    pub fn open(data_dir: &Path) -> Result<Self, ApprovalError> {
        let (conn, path) = open_store(data_dir)?;
        let err = |source| ApprovalError::Database { path: path.clone(), source };
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS approvals (
                request_id  TEXT PRIMARY KEY NOT NULL,
                token_hash  BLOB NOT NULL,
                manager     TEXT NOT NULL,
                address     TEXT NOT NULL,
                issued_at   TEXT NOT NULL,
                expires_at  TEXT NOT NULL,
                approved    INTEGER CHECK (approved IN (0, 1)),
                answered_at TEXT,
                taken       INTEGER NOT NULL DEFAULT 0 CHECK (taken IN (0, 1))
            )",
        )
        .map_err(err)?;
        Ok(Self { conn, path, ttl: DEFAULT_TTL })
    }

    /// Tokens expire after `ttl` instead of [`DEFAULT_TTL`].
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    fn err(&self) -> impl Fn(rusqlite::Error) -> ApprovalError + '_ {
        move |source| ApprovalError::Database { path: self.path.clone(), source }
    }

    /// The manager's side: answer the request `token` belongs to. The token is compared
    /// in constant time against every open request's hash; it works once, until it expires.
    pub fn answer(&mut self, token: &Secret, approve: bool, now: OffsetDateTime) -> Result<Issued, ApprovalError> {
        let presented = hash(token.expose());
        let mut stmt = self
            .conn
            .prepare("SELECT request_id, token_hash, manager, address, expires_at, approved FROM approvals")
            .map_err(self.err())?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, Vec<u8>>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, Option<bool>>(5)?,
                ))
            })
            .map_err(self.err())?
            .collect::<Result<Vec<_>, _>>()
            .map_err(self.err())?;
        drop(stmt);
        let mut found = None;
        for row in rows {
            // Compare every row (no early exit): the time taken does not say which matched.
            if bool::from(row.1.as_slice().ct_eq(&presented)) {
                found = Some(row);
            }
        }
        let (request_id, _, manager, address, expires_at, approved) = found.ok_or(ApprovalError::UnknownToken)?;
        if approved.is_some() {
            return Err(ApprovalError::AlreadyAnswered);
        }
        let expires = OffsetDateTime::parse(&expires_at, &Rfc3339).map_err(|_| ApprovalError::Corrupt("expiry"))?;
        if now >= expires {
            return Err(ApprovalError::Expired);
        }
        let changed = self
            .conn
            .execute(
                "UPDATE approvals SET approved = ?2, answered_at = ?3 WHERE request_id = ?1 AND approved IS NULL",
                params![request_id, approve, fmt(now)],
            )
            .map_err(self.err())?;
        if changed != 1 {
            // Another answer got there first.
            return Err(ApprovalError::AlreadyAnswered);
        }
        Ok(Issued { request_id, manager, address })
    }
}

impl ApprovalChannel for ApprovalInbox {
    fn issue(
        &mut self,
        issued: &Issued,
        _about: &ApprovalContext,
        now: OffsetDateTime,
    ) -> Result<IssuedToken, ApprovalError> {
        let mut bytes = zeroize::Zeroizing::new([0u8; TOKEN_BYTES]);
        rand::rngs::OsRng.fill_bytes(bytes.as_mut());
        let token = Secret::new(hex::encode(bytes.as_ref()));
        self.conn
            .execute(
                "INSERT INTO approvals (request_id, token_hash, manager, address, issued_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (request_id) DO UPDATE SET token_hash = excluded.token_hash, manager = excluded.manager,
                   address = excluded.address, issued_at = excluded.issued_at, expires_at = excluded.expires_at,
                   approved = NULL, answered_at = NULL, taken = 0",
                params![
                    issued.request_id,
                    hash(token.expose()).to_vec(),
                    issued.manager,
                    issued.address,
                    fmt(now),
                    fmt(now + self.ttl)
                ],
            )
            .map_err(self.err())?;
        Ok(IssuedToken { token, expires_at: now + self.ttl })
    }

    fn take_answer(&mut self, request_id: &str) -> Result<Option<ManagerResponse>, ApprovalError> {
        let row: Option<(String, String, bool)> = self
            .conn
            .query_row(
                "SELECT manager, address, approved FROM approvals
                 WHERE request_id = ?1 AND approved IS NOT NULL AND taken = 0",
                [request_id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
            .map_err(self.err())?;
        let Some((manager, address, approved)) = row else { return Ok(None) };
        let changed = self
            .conn
            .execute("UPDATE approvals SET taken = 1 WHERE request_id = ?1 AND taken = 0", [request_id])
            .map_err(self.err())?;
        if changed != 1 {
            return Ok(None);
        }
        Ok(Some(ManagerResponse { approver: manager, via_address: address, approved, decision_note: None }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-12-01 10:00 UTC);

    fn issued() -> Issued {
        Issued { request_id: "req-1".into(), manager: "dgarcia".into(), address: "dgarcia@example.com".into() }
    }

    #[test]
    fn an_answer_counts_only_with_the_token_once_before_it_expires() {
        let dir = tempfile::tempdir().unwrap();
        let mut inbox = ApprovalInbox::open(dir.path()).unwrap();
        let token = inbox.issue(&issued(), &ApprovalContext::default(), NOW).unwrap().token;
        assert_eq!(token.expose().len(), 32, "128 bits, hex");
        assert!(inbox.take_answer("req-1").unwrap().is_none(), "nothing before the manager answers");

        let wrong = Secret::from("00112233445566778899aabbccddeeff");
        assert!(matches!(inbox.answer(&wrong, true, NOW), Err(ApprovalError::UnknownToken)));
        let who = inbox.answer(&token, true, NOW + Duration::minutes(5)).unwrap();
        assert_eq!(who, issued());
        assert!(matches!(inbox.answer(&token, false, NOW), Err(ApprovalError::AlreadyAnswered)), "once");

        let answer = inbox.take_answer("req-1").unwrap().unwrap();
        assert_eq!(
            answer,
            ManagerResponse {
                approver: "dgarcia".into(),
                via_address: "dgarcia@example.com".into(),
                approved: true,
                decision_note: None
            }
        );
        assert!(inbox.take_answer("req-1").unwrap().is_none(), "taken once");

        // Only the hash is stored.
        drop(inbox);
        let raw = std::fs::read(dir.path().join(APPROVALS_FILE)).unwrap();
        let wal = std::fs::read(dir.path().join(format!("{APPROVALS_FILE}-wal"))).unwrap_or_default();
        for bytes in [raw, wal] {
            assert!(!String::from_utf8_lossy(&bytes).contains(token.expose()), "the token is not on disk");
        }
    }

    #[test]
    fn an_expired_or_replaced_token_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut inbox = ApprovalInbox::open(dir.path()).unwrap();
        let first = inbox.issue(&issued(), &ApprovalContext::default(), NOW).unwrap().token;
        assert!(matches!(inbox.answer(&first, true, NOW + DEFAULT_TTL), Err(ApprovalError::Expired)));
        let second = inbox.issue(&issued(), &ApprovalContext::default(), NOW + Duration::minutes(40)).unwrap().token;
        assert!(matches!(inbox.answer(&first, true, NOW + Duration::minutes(41)), Err(ApprovalError::UnknownToken)));
        // A token pasted with surrounding space or in capitals still matches.
        let pasted = Secret::new(format!("  {}\n", second.expose().to_ascii_uppercase()));
        inbox.answer(&pasted, false, NOW + Duration::minutes(41)).unwrap();
        assert!(!inbox.take_answer("req-1").unwrap().unwrap().approved);
    }
}
