//! The signed `enrolment` audit record written after a successful enrolment.
//!
//! It is signed by the newly enrolled card's own 9c key, with the new PIN: proof that
//! the card holding the certified key is the one enrolled. Its facts come from the
//! token registry as just recorded (not from the caller): agent, card serial, reader,
//! virtual flag, both key ids with their certificates' SHA-256 fingerprints and PIN/
//! touch policies, attestation with its note, and the keys of an earlier enrolment of
//! the same card that this one revoked. No secret is in them.
//!
//! If the record cannot be written, the card is enrolled all the same (the registry
//! has its keys, PIN and PUK are changed). The remedy is to fix the cause and enrol the
//! card again (current PIN and PUK = the new ones): that writes a fresh record.

use serde::Serialize;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use super::card::PivCard;
use super::enrol::EnrolReport;
use super::registry::{KeyRecord, RegistryError, TokenRegistry};
use super::signer::PivSigner;
use crate::audit::{Appended, AuditError, AuditLog, Event, EventType};
use crate::secret::Secret;

/// Why the enrolment record was not written (the enrolment itself stands).
#[derive(Debug, thiserror::Error)]
pub enum EnrolRecordError {
    #[error("the token registry has no {slot} key {key_id} from this enrolment; check the data directory")]
    NotInRegistry { slot: &'static str, key_id: String },
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("the enrolment record could not be signed by the new card and written to the audit log: {0}")]
    Audit(#[from] AuditError),
}

#[derive(Serialize)]
struct KeyFacts<'a> {
    slot: &'static str,
    key_id: String,
    cert_sha256: String,
    pin_policy: &'a str,
    touch_policy: &'a str,
}

impl<'a> KeyFacts<'a> {
    fn of(k: &'a KeyRecord) -> Self {
        Self {
            slot: k.slot.as_str(),
            key_id: hex::encode(k.key_id),
            cert_sha256: hex::encode(Sha256::digest(&k.cert_der)),
            pin_policy: &k.pin_policy,
            touch_policy: &k.touch_policy,
        }
    }
}

#[derive(Serialize)]
struct RevokedFacts<'a> {
    agent: &'a str,
    slot: &'static str,
    key_id: String,
}

#[derive(Serialize)]
struct EnrolmentFacts<'a> {
    agent: &'a str,
    serial: u32,
    reader: &'a str,
    #[serde(rename = "virtual")]
    is_virtual: bool,
    attested: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    attestation_note: Option<&'a str>,
    keys: [KeyFacts<'a>; 2],
    revoked_keys: Vec<RevokedFacts<'a>>,
}

/// Append the `enrolment` record for `report`, signed by `card`'s new 9c key with
/// `new_pin` (the card the enrolment just finished on). On a real YubiKey the 9c key
/// wants a touch.
pub fn record_enrolment(
    audit: &mut AuditLog,
    registry: &TokenRegistry,
    card: PivCard,
    new_pin: Secret,
    report: &EnrolReport,
    now: OffsetDateTime,
) -> Result<Appended, EnrolRecordError> {
    let key = |slot: &'static str, hex_id: &str| -> Result<KeyRecord, EnrolRecordError> {
        let missing = || EnrolRecordError::NotInRegistry { slot, key_id: hex_id.to_owned() };
        let id: [u8; 32] = hex::decode(hex_id).ok().and_then(|v| v.try_into().ok()).ok_or_else(missing)?;
        registry.by_key_id(&id)?.filter(|k| k.is_active() && k.serial == report.serial).ok_or_else(missing)
    };
    let a = key("9a", &report.key_id_9a)?;
    let c = key("9c", &report.key_id_9c)?;
    // `record_enrolment` revokes the card's earlier keys with the enrolment's own time.
    let all = registry.all()?;
    let revoked: Vec<_> = all
        .iter()
        .filter(|k| k.serial == report.serial && k.revoked_at == Some(c.enrolled_at))
        .map(|k| RevokedFacts { agent: &k.username, slot: k.slot.as_str(), key_id: hex::encode(k.key_id) })
        .collect();
    let facts = EnrolmentFacts {
        agent: &report.username,
        serial: report.serial,
        reader: &report.reader,
        is_virtual: report.is_virtual,
        attested: report.attested,
        attestation_note: report.attestation_note.as_deref(),
        keys: [KeyFacts::of(&a), KeyFacts::of(&c)],
        revoked_keys: revoked,
    };
    let event = Event::new(EventType::Enrolment, &facts).map_err(AuditError::from)?;
    let mut signer = PivSigner::new(card, new_pin, c.key_id);
    Ok(audit.append(&event, &mut signer, now)?)
}
