//! The agent's hardware token (YubiKey PIV): the root of trust.
//!
//! Everything that signs — login challenges (slot 9a), audit records and co-signatures
//! (slot 9c) — goes through the card; audit records through [`RecordSigner`], the
//! audit log's trait, which [`signer::PivSigner`] implements. The PC/SC + `yubikey` adapter lives in
//! submodules; the rest of the core only sees the trait.
//!
//! - [`card`]: the only code that talks to a card (open by reader/serial, PIN, sign,
//!   certificates, key generation, attestation), errors mapped to [`TokenError`];
//! - [`signer`]: [`signer::PivSigner`], the slot-9c [`RecordSigner`] (PIN before each signature);
//! - [`watch`]: insertion/removal events from PC/SC status changes;
//! - [`registry`]: enrolled keys in `<data_dir>/tokens.sqlite`, looked up by key id;
//! - [`attestation`]: PIV attestation chain verification (pure);
//! - [`management`]: the management key (9B): algorithm (3DES, AES-192 on firmware 5.7+),
//!   mutual authentication, a random PIN-protected replacement;
//! - [`enrol`]: enrolment of a card for an agent; [`enrol_record`]: its signed audit record;
//! - [`readers`]: reader status for the lock screen.

pub mod attestation;
pub mod audit_keys;
pub mod card;
pub mod enrol;
pub mod enrol_record;
pub mod management;
pub mod readers;
pub mod registry;
pub mod signer;
pub mod watch;

pub use crate::audit::signer::{RecordSigner, SignError};

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
    #[error("wrong PUK: {tries_left} tries left before the PUK is blocked")]
    WrongPuk { tries_left: u8 },
    #[error("the PUK is blocked; the PIV application must be reset (`ykman piv reset`) and the key enrolled again")]
    PukBlocked,
    #[error("the card answered unexpectedly ({0}); remove and reinsert the key")]
    Card(String),
    #[error("smart-card error: {0}")]
    Pcsc(String),
    #[error("no reader named {0:?}; run `resetdesk token list` to see the readers")]
    UnknownReader(String),
    #[error("no YubiKey with serial {0} is inserted; run `resetdesk token list`")]
    UnknownSerial(u32),
    #[error("the card in {0:?} has no PIV application; use a YubiKey (or the virtual card in demo mode)")]
    NotPiv(String),
    #[error("another program reset the key; remove and reinsert it, then log in again")]
    Reset,
    #[error("another program is using the key exclusively; close it and retry")]
    Busy,
    #[error("a PIN has 6 to 8 characters; nothing was sent to the key")]
    PinFormat,
    #[error("the PIN must be verified first; log in again")]
    PinRequired,
    #[error("the management key was refused; the key is not enrolled by this ResetDesk or was changed elsewhere (reset the PIV application with `ykman piv reset` and enrol again)")]
    ManagementKey,
    #[error("slot {0} holds no certificate; enrol the key with `resetdesk token enroll`")]
    NoCertificate(&'static str),
    #[error("the certificate in slot {slot} is unreadable ({message}); enrol the key again")]
    BadCertificate { slot: &'static str, message: String },
    #[error("the key does not support {0}")]
    NotSupported(&'static str),
}

impl From<TokenError> for SignError {
    fn from(e: TokenError) -> Self {
        match e {
            TokenError::Removed | TokenError::Reset | TokenError::NoService => SignError::KeyGone(e.to_string()),
            e => SignError::Failed(e.to_string()),
        }
    }
}
