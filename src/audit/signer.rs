//! What signs a record: the [`RecordSigner`] trait, beside the record format it signs.
//!
//! The token adapter implements it for a card's slot 9c ([`crate::token::signer`]);
//! tests and benchmarks implement it with software keys. The audit log depends only
//! on this trait, never on the card.

/// Something that signs SHA-256 digests with an ECDSA P-256 key (slot 9c of a PIV card).
pub trait RecordSigner {
    /// SHA-256 of the signer's public key (SubjectPublicKeyInfo, DER): the audit key id.
    fn key_id(&self) -> [u8; 32];

    /// ECDSA P-256 signature (DER) over a SHA-256 digest computed by the caller.
    fn sign_digest(&mut self, digest: &[u8; 32]) -> Result<Vec<u8>, SignError>;

    /// The serial of the card holding the key, if the signer is a card (`None` for
    /// software signers). A co-signer's card must be the enrolled one.
    fn card_serial(&self) -> Option<u32> {
        None
    }
}

/// Why a signer did not sign, in the signer's words (which say what to do).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    /// The key is out of reach (card removed or reset, its service stopped): a
    /// session signing with it must lock.
    #[error("{0}")]
    KeyGone(String),
    /// Anything else (a wrong PIN, a card error).
    #[error("{0}")]
    Failed(String),
}
