//! A co-signer's enrolled key, as the desk needs it (checked before their card signs),
//! and their signature against it. (The audit log's pre-commit key check is
//! [`crate::token::audit_keys::RegistryKeys`].)
//!
//! Identity comes from verifiable sources only: the co-signer's username from their
//! CA-issued certificate (which must match the registry row), their agent tier from
//! the directory, the signature checked against the certified key. Nothing the
//! co-signer's shell claims is taken on trust.

use p256::ecdsa::signature::hazmat::PrehashVerifier;
use p256::ecdsa::{Signature, VerifyingKey};
use time::OffsetDateTime;

use crate::ca::TrustAnchor;
use crate::login::TokenPolicy;
use crate::token::card::Slot;
use crate::token::registry::TokenRegistry;

/// Why a co-signer's key or signature is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CoSignerKeyError {
    #[error("the co-signer's key is not enrolled; the second agent must use their own enrolled YubiKey")]
    NotEnrolled,
    #[error("the co-signer's key was revoked; the second agent needs a new key")]
    Revoked,
    #[error("the co-signer's key is not a signature (9c) key; re-enrol the key")]
    WrongSlot,
    #[error("the co-signer's key is enrolled on card {enrolled}, not on the card presented ({presented}); use the enrolled YubiKey")]
    WrongCard { enrolled: u32, presented: String },
    #[error("the co-signer's key is on a virtual (demo) token; production desks accept only hardware YubiKeys")]
    Virtual,
    #[error("the co-signer's key was not attested as generated on a YubiKey; production desks refuse such keys")]
    Unattested,
    #[error("the co-signer's certificate is not acceptable ({0}); re-enrol the key")]
    Certificate(String),
    #[error("the co-signer's signature does not verify with their enrolled certificate; remove and reinsert the key, then sign again")]
    BadSignature,
    #[error("the token registry could not be read ({0}); check the data directory")]
    Registry(String),
}

/// A co-signer's enrolled key, checked before their card signs anything.
#[derive(Debug, Clone)]
pub struct EnrolledCoSigner {
    /// From the certificate's CN (equal to the registry row's username).
    pub username: String,
    pub key_id: [u8; 32],
    public_key: VerifyingKey,
}

/// Check that `key_id` is an active, enrolled 9c key that passes the login's token
/// rules (`policy`: in production no virtual and no unattested keys), on the enrolled
/// card (`card_serial`, as the signer reports it; production requires a card), with a
/// certificate the organisation CA issued and that is valid at `now`.
pub fn enrolled_co_signer(
    registry: &TokenRegistry,
    anchor: &TrustAnchor,
    key_id: &[u8; 32],
    card_serial: Option<u32>,
    policy: TokenPolicy,
    now: OffsetDateTime,
) -> Result<EnrolledCoSigner, CoSignerKeyError> {
    let record = registry
        .by_key_id(key_id)
        .map_err(|e| CoSignerKeyError::Registry(e.to_string()))?
        .ok_or(CoSignerKeyError::NotEnrolled)?;
    if !record.is_active() {
        return Err(CoSignerKeyError::Revoked);
    }
    if record.slot != Slot::Signature {
        return Err(CoSignerKeyError::WrongSlot);
    }
    match card_serial {
        Some(s) if s == record.serial => {}
        None if !policy.refuse_virtual => {}
        other => {
            let presented = other.map_or_else(|| "none: not a card".to_owned(), |s| s.to_string());
            return Err(CoSignerKeyError::WrongCard { enrolled: record.serial, presented });
        }
    }
    if record.is_virtual && policy.refuse_virtual {
        return Err(CoSignerKeyError::Virtual);
    }
    if !record.attested && !policy.allow_unattested {
        return Err(CoSignerKeyError::Unattested);
    }
    let cert = crate::ca::parse_certificate(&record.cert_der).map_err(CoSignerKeyError::Certificate)?;
    let valid = anchor.validate(&cert, now).map_err(|e| CoSignerKeyError::Certificate(e.to_string()))?;
    if &valid.key_id != key_id || valid.username != record.username {
        return Err(CoSignerKeyError::Certificate("it does not match the registry entry".into()));
    }
    Ok(EnrolledCoSigner { username: valid.username, key_id: *key_id, public_key: valid.public_key })
}

impl EnrolledCoSigner {
    /// `signature_der` over `digest` verifies with the enrolled certificate's key.
    pub fn verify(&self, digest: &[u8; 32], signature_der: &[u8]) -> Result<(), CoSignerKeyError> {
        let signature = Signature::from_der(signature_der).map_err(|_| CoSignerKeyError::BadSignature)?;
        self.public_key.verify_prehash(digest, &signature).map_err(|_| CoSignerKeyError::BadSignature)
    }
}
