//! The tamper-evident audit trail.
//!
//! Every record is a fixed binary layout ([`record`]) carrying canonical-JSON facts
//! ([`event`]), signed by the acting agent's YubiKey (slot 9c) through
//! [`signer::RecordSigner`], and chained to its predecessor by an RFC 6962 leaf
//! hash. [`log::AuditLog`] writes records durably (SQLite WAL, synchronous=FULL,
//! [`store`]) — the reset intent before the directory is touched. The collector
//! returns signed [`receipt`]s. [`verify::Verifier`] checks all of it offline against
//! enrolled certificates ([`resolver`]); [`export`] writes a form that openssl alone
//! can check. The byte-level format is in `docs/audit-format.md`.
//!
//! Pure (sans-IO): `record`, `event`, `receipt`, `resolver`, `verify`.
//! Adapters: `store` (SQLite), `log` (store + signer), `export` (files).

pub mod browse;
pub mod event;
pub mod export;
pub mod log;
pub mod offline;
pub mod receipt;
pub mod record;
pub mod resolver;
pub mod signer;
pub mod store;
pub mod verify;

pub use event::{DirectoryOutcome, Event, IntentRef};
pub use log::{Appended, AuditError, AuditLog, MadeCosignature, PendingIntent};
pub use offline::{verify_store, VerifyFailure};
pub use receipt::{
    verify_signed_checkpoint, Checkpoint, CollectorKeys, InclusionReceipt, LegacyReceipt, LogCheckpoint, Receipt,
};
pub use record::{EventType, Hash32, Record};
pub use resolver::{CertificateResolver, KeyResolver, ResolvedKey};
pub use verify::{Anchor, BadRecord, LogVerifier, Prechecked, Summary, Verifier};
