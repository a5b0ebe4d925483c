//! Signed presence heartbeats: who was at the desk, from when to when.
//!
//! - [`record_login`]: right after a login, a `login` heartbeat signed by the agent's
//!   9c key, stating the agent, tier, reader, card serial, virtual flag and key id;
//! - [`record_logout`]: when the agent presses "Lock now" (or logs out), a `logout`
//!   heartbeat signed *before* the session locks;
//! - a lock the agent did not ask for (key removed, idle time-out, token lost) cannot
//!   be signed: the departed card is gone or its PIN was wiped at the lock. The desk
//!   keeps it as a [`SessionEnd`] and the next login record states it, with its time,
//!   under `previous_session_end`.
//!
//! Facts are secret-free (no PIN ever reaches this module). Heartbeats go through
//! [`AuditLog::heartbeat`], so each also states the log head and the latest receipt.

use std::path::Path;

use serde::Serialize;
use time::OffsetDateTime;

use crate::audit::store::FILE_NAME;
use crate::audit::{Appended, AuditError, AuditLog, EventType};
use crate::login::{AgentIdentity, AgentSession, LoginError};
use crate::session::{LockDecision, LockReason, SessionEvent};
use crate::tier::AgentTier;
use crate::token::audit_keys::{LoadError, RegistryKeys};

/// How an earlier session ended when nobody could sign it (removal, idle, lost token,
/// or a logout record that could not be written): stated in the next login record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SessionEnd {
    pub agent: String,
    /// The departed agent's audit key id (hex).
    pub key_id: String,
    pub reason: LockReason,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

impl SessionEnd {
    /// The end of `identity`'s session, locked for `reason` at `at`.
    pub fn new(identity: &AgentIdentity, reason: LockReason, at: OffsetDateTime) -> Self {
        Self { agent: identity.username.clone(), key_id: identity.signing_key_id.clone(), reason, at }
    }
}

/// Why a presence record was not written. Nothing was written in every case.
#[derive(Debug, thiserror::Error)]
pub enum PresenceError {
    #[error("the desk's audit log {path} could not be opened: {source}")]
    Open { path: String, source: AuditError },
    #[error("the enrolled keys could not be loaded to check audit signatures: {0}")]
    Keys(#[from] LoadError),
    #[error("the session locked before the {record} record was signed ({}); log in again", .reason.message())]
    Locked { record: &'static str, reason: LockReason },
    #[error("the {record} record could not be written to the audit log, so the desk stays locked: {source}")]
    Audit {
        record: &'static str,
        #[source]
        source: AuditError,
    },
}

impl PresenceError {
    /// The lock reason when the session had locked (the shell remembers it as a
    /// [`SessionEnd`]).
    pub fn lock_reason(&self) -> Option<LockReason> {
        match self {
            PresenceError::Locked { reason, .. } => Some(*reason),
            _ => None,
        }
    }
}

/// Open the desk's audit log `<data_dir>/audit.sqlite` with every signature checked
/// against the enrolled certificate before it is committed (keys enrolled later are
/// found: the registry is reloaded on a miss). `ca_file` overrides `<data_dir>/ca/ca.pem`.
pub fn open_audit_log(data_dir: &Path, ca_file: Option<&Path>) -> Result<AuditLog, PresenceError> {
    let keys = RegistryKeys::load(data_dir.to_owned(), ca_file.map(Path::to_owned))?;
    let path = data_dir.join(FILE_NAME);
    let log =
        AuditLog::open(&path).map_err(|source| PresenceError::Open { path: path.display().to_string(), source })?;
    Ok(log.with_key_check(Box::new(keys)))
}

/// The agent and key a heartbeat is about.
#[derive(Serialize)]
struct AgentFacts<'a> {
    agent: &'a str,
    tier: AgentTier,
    reader: &'a str,
    serial: u32,
    #[serde(rename = "virtual")]
    is_virtual: bool,
    key_id: &'a str,
}

impl<'a> AgentFacts<'a> {
    fn of(id: &'a AgentIdentity) -> Self {
        Self {
            agent: &id.username,
            tier: id.tier,
            reader: &id.reader,
            serial: id.serial,
            is_virtual: id.is_virtual,
            key_id: &id.signing_key_id,
        }
    }
}

#[derive(Serialize)]
struct LoginFacts<'a> {
    #[serde(flatten)]
    agent: AgentFacts<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    previous_session_end: Option<&'a SessionEnd>,
}

#[derive(Serialize)]
struct LogoutFacts<'a> {
    #[serde(flatten)]
    agent: AgentFacts<'a>,
    reason: LockReason,
}

/// Sign and write the `login` heartbeat of a session that just logged in, stating how
/// the previous session ended when the desk knows and nobody could sign it. On error
/// the shell must not let the agent in (fail closed).
pub fn record_login(
    audit: &mut AuditLog,
    session: &mut AgentSession,
    previous_end: Option<&SessionEnd>,
    now: OffsetDateTime,
) -> Result<Appended, PresenceError> {
    const RECORD: &str = "login";
    let identity = session.identity().clone();
    let facts = LoginFacts { agent: AgentFacts::of(&identity), previous_session_end: previous_end };
    write(audit, session, EventType::Login, RECORD, &facts, now)
}

/// Sign and write the `logout` heartbeat while the session is still unlocked (the agent
/// pressed "Lock now"); the shell locks the session afterwards, whatever the result.
/// A session already past its idle deadline locks here (`Locked`, reason idle): that
/// end is the shell's to remember.
pub fn record_logout(
    audit: &mut AuditLog,
    session: &mut AgentSession,
    now: OffsetDateTime,
) -> Result<Appended, PresenceError> {
    const RECORD: &str = "logout";
    if let LockDecision::Lock(reason) = session.handle(&SessionEvent::Tick { at: now }) {
        return Err(PresenceError::Locked { record: RECORD, reason });
    }
    let identity = session.identity().clone();
    let facts = LogoutFacts { agent: AgentFacts::of(&identity), reason: LockReason::Manual };
    write(audit, session, EventType::Logout, RECORD, &facts, now)
}

fn write<T: Serialize>(
    audit: &mut AuditLog,
    session: &mut AgentSession,
    kind: EventType,
    record: &'static str,
    facts: &T,
    now: OffsetDateTime,
) -> Result<Appended, PresenceError> {
    let signer = session.signer().map_err(|e| match e {
        LoginError::Locked(reason) => PresenceError::Locked { record, reason },
        // `signer()` fails only with `Locked`; any other error means no signer either.
        _ => PresenceError::Locked { record, reason: LockReason::TokenLost },
    })?;
    audit.heartbeat(kind, facts, signer, now).map_err(|source| PresenceError::Audit { record, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity() -> AgentIdentity {
        AgentIdentity {
            username: "alice".into(),
            display_name: "Alice Schmidt".into(),
            tier: AgentTier::Junior,
            reader: "Virtual PCD 00 00".into(),
            serial: 1234,
            is_virtual: true,
            signing_key_id: "ab".repeat(32),
            certificate_expires: OffsetDateTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn login_facts_name_the_key_and_state_the_previous_end() {
        let id = identity();
        let end =
            SessionEnd::new(&id, LockReason::KeyRemoved, OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(90));
        let facts = LoginFacts { agent: AgentFacts::of(&id), previous_session_end: Some(&end) };
        let v = serde_json::to_value(&facts).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "agent": "alice", "tier": "junior", "reader": "Virtual PCD 00 00", "serial": 1234,
                "virtual": true, "key_id": "ab".repeat(32),
                "previous_session_end": {"agent": "alice", "key_id": "ab".repeat(32), "reason": "key-removed", "at": "1970-01-01T00:01:30Z"}
            })
        );
        let first = LoginFacts { agent: AgentFacts::of(&id), previous_session_end: None };
        assert!(serde_json::to_value(&first).unwrap().get("previous_session_end").is_none());
    }

    #[test]
    fn a_lock_reason_is_offered_only_for_a_locked_session() {
        let locked = PresenceError::Locked { record: "logout", reason: LockReason::Idle };
        assert_eq!(locked.lock_reason(), Some(LockReason::Idle));
        assert!(locked.to_string().contains("log in again"), "{locked}");
        let other = PresenceError::Audit { record: "login", source: AuditError::NoSuchIntent(1) };
        assert_eq!(other.lock_reason(), None);
    }
}
