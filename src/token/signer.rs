//! [`PivSigner`]: the audit-record signer over slot 9c of an agent's YubiKey.

use super::card::{PivCard, Slot};
use super::{RecordSigner, SignError, TokenError};
use crate::secret::Secret;

/// Signs audit records and co-signatures with slot 9c. The 9c key has PIN policy
/// "always", so the PIN (kept in a zeroizing buffer for the life of the session) is
/// verified immediately before every signature. Dropping the signer (session lock)
/// wipes the PIN and closes the card connection.
pub struct PivSigner {
    card: PivCard,
    pin: Secret,
    key_id: [u8; 32],
}

impl std::fmt::Debug for PivSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PivSigner")
            .field("card", &self.card)
            .field("key_id", &hex::encode(self.key_id))
            .finish_non_exhaustive()
    }
}

impl PivSigner {
    /// A signer for the card's 9c key whose SPKI hashes to `key_id`. The caller (login)
    /// has already validated the 9c certificate and verified `pin` on this card.
    pub fn new(card: PivCard, pin: Secret, key_id: [u8; 32]) -> Self {
        Self { card, pin, key_id }
    }

    /// The reader the card is in.
    pub fn reader(&self) -> &str {
        self.card.reader()
    }

    /// The card's serial number.
    pub fn serial(&self) -> u32 {
        self.card.serial()
    }
}

impl PivSigner {
    /// Verify the PIN, then sign with 9c. A wrong PIN here (changed on another desk)
    /// is reported, never retried.
    pub fn sign(&mut self, digest: &[u8; 32]) -> Result<Vec<u8>, TokenError> {
        self.card.verify_pin(&self.pin)?;
        self.card.sign_digest(Slot::Signature, digest)
    }
}

impl RecordSigner for PivSigner {
    fn key_id(&self) -> [u8; 32] {
        self.key_id
    }

    /// [`PivSigner::sign`].
    fn sign_digest(&mut self, digest: &[u8; 32]) -> Result<Vec<u8>, SignError> {
        Ok(self.sign(digest)?)
    }

    fn card_serial(&self) -> Option<u32> {
        Some(self.card.serial())
    }
}
