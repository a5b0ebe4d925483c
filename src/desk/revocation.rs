//! Revocation as evidence: `resetdesk token revoke` revokes an agent's keys in the
//! token registry and writes a signed `revocation` audit record, signed by the admin
//! who revoked them (their card's 9c key, logged in). The record names every key it
//! revoked; its timestamp is the revocation time, so the offline verifier (store or
//! export, without the registry) refuses any later record by those keys, and any
//! record dated before the revocation that follows it in the log (a backdated clock).
//!
//! If the record cannot be written, the keys are revoked all the same (the desk
//! refuses them at once); the command says so, and revoking again writes no record
//! (nothing is left to revoke): an admin notes it by hand.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::audit::{Appended, AuditError, AuditLog, Event, EventType};
use crate::directory::Directory;
use crate::login::AgentSession;
use crate::policy::authority::same_person;
use crate::tier::AgentTier;
use crate::token::registry::{RegistryError, TokenRegistry};

/// Why a revocation was refused or not recorded.
#[derive(Debug, thiserror::Error)]
pub enum RevocationError {
    #[error("only an admin agent may revoke keys ({0} is a {1} agent); ask an admin to log in with their key")]
    NotAdmin(String, AgentTier),
    #[error("an admin may not revoke their own keys; ask another admin")]
    OwnKeys,
    #[error("{agent:?} has no active key{}", serial.map(|s| format!(" on card {s}")).unwrap_or_default())]
    NothingToRevoke { agent: String, serial: Option<u32> },
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("the logged-in admin's key cannot sign: {0}")]
    Signer(String),
    #[error("the keys ARE revoked in the registry, but the signed revocation record could not be written ({0}); note the revocation by hand")]
    NotRecorded(AuditError),
}

/// One revoked key, as the record names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevokedKey {
    pub slot: String,
    /// Hex SHA-256 of the key's SubjectPublicKeyInfo.
    pub key_id: String,
    pub serial: u32,
}

/// The facts of a `revocation` record. Secret-free.
#[derive(Debug, Clone, Serialize)]
pub struct RevocationFacts<'a> {
    pub agent: &'a str,
    pub reason: &'a str,
    pub keys: Vec<RevokedKey>,
    pub revoked_by: &'a str,
}

/// What was revoked and where the record is.
#[derive(Debug, Clone)]
pub struct Revoked {
    pub keys: Vec<RevokedKey>,
    pub record: Appended,
}

/// Whether accounts `a` and `b` are one person: the same username, or the same
/// employee ID on file in `directory` (an account it cannot read has none, so only the
/// usernames count for it). Who may not act on their own keys asks this.
pub fn same_person_on_file(directory: &dyn Directory, a: &str, b: &str) -> bool {
    let employee_id = |u: &str| directory.entry(u).map(|e| e.employee_id).unwrap_or_default();
    same_person(a, &employee_id(a), b, &employee_id(b))
}

/// Revoke the active keys of `agent` (those on card `serial`, if given) at `now`, and
/// record it signed by the logged-in `admin`. Never the admin's own keys, by username
/// or by employee ID (`directory`: a second account of the same person is the same
/// person, as for co-signing and enrolment).
#[allow(clippy::too_many_arguments)] // each is one distinct input of the revocation
pub fn revoke_signed(
    registry: &TokenRegistry,
    directory: &dyn Directory,
    audit: &mut AuditLog,
    admin: &mut AgentSession,
    agent: &str,
    serial: Option<u32>,
    reason: &str,
    now: OffsetDateTime,
) -> Result<Revoked, RevocationError> {
    let who = admin.identity().clone();
    if who.tier != AgentTier::Admin {
        return Err(RevocationError::NotAdmin(who.username, who.tier));
    }
    if same_person_on_file(directory, &who.username, agent) {
        return Err(RevocationError::OwnKeys);
    }
    let keys: Vec<RevokedKey> = registry
        .all()?
        .into_iter()
        .filter(|k| k.username == agent && k.is_active() && serial.is_none_or(|s| s == k.serial))
        .map(|k| RevokedKey { slot: k.slot.as_str().to_owned(), key_id: hex::encode(k.key_id), serial: k.serial })
        .collect();
    if keys.is_empty() {
        return Err(RevocationError::NothingToRevoke { agent: agent.to_owned(), serial });
    }
    let signer = admin.signer().map_err(|e| RevocationError::Signer(e.to_string()))?;
    registry.revoke(agent, serial, reason, now)?;
    let facts = RevocationFacts { agent, reason, keys: keys.clone(), revoked_by: &who.username };
    let record = Event::new(EventType::Revocation, &facts)
        .map_err(AuditError::from)
        .and_then(|event| audit.append(&event, signer, now))
        .map_err(RevocationError::NotRecorded)?;
    Ok(Revoked { keys, record })
}
