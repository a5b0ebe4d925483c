//! The agent's hardware token (YubiKey PIV): the root of trust.
//!
//! Everything that signs — login challenges (slot 9a), audit records and co-signatures
//! (slot 9c) — goes through [`RecordSigner`]. The PC/SC + `yubikey` adapter lives in
//! submodules; the rest of the core only sees the trait.

pub mod readers;

/// Something that signs SHA-256 digests with an ECDSA P-256 key (slot 9c of a PIV card).
pub trait RecordSigner {
    /// SHA-256 of the signer's public key (SubjectPublicKeyInfo, DER): the audit key id.
    fn key_id(&self) -> [u8; 32];

    /// ECDSA P-256 signature (DER) over a SHA-256 digest computed by the caller.
    fn sign_digest(&mut self, digest: &[u8; 32]) -> Result<Vec<u8>, TokenError>;
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("the PC/SC service (pcscd) is not running; start it (see README) and insert the key again")]
    NoService,
    #[error("no smart-card reader is connected; plug in the YubiKey")]
    NoReader,
    #[error("no YubiKey found in the readers; insert your key")]
    NoCard,
    #[error("the key was removed during the operation; insert it again and retry")]
    Removed,
    #[error("wrong PIN: {tries_left} tries left before the PIN is blocked")]
    WrongPin { tries_left: u8 },
    #[error("the PIN is blocked; an admin must unblock it with the PUK")]
    PinBlocked,
    #[error("the card answered unexpectedly ({0}); remove and reinsert the key")]
    Card(String),
    #[error("smart-card error: {0}")]
    Pcsc(String),
}
