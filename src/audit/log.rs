//! [`AuditLog`]: append signed records durably; report intents left open by a crash.
//!
//! The contract with the workflow: call [`AuditLog::append`] with the reset intent
//! and touch the directory only after it returned `Ok` — the record is then signed,
//! hash-chained and committed to disk. Then append the outcome
//! ([`super::event::Event::reset_outcome`]). If the process dies in between,
//! [`AuditLog::open`] lists the intent in [`AuditLog::pending_at_open`] so the app
//! can check the directory and record what actually happened.

use std::path::Path;

use time::OffsetDateTime;

use super::event::{parse_payload, Event, EventError, HeadRef, IntentRef, ReceiptRef};
use super::receipt::Receipt;
use super::record::{entry_hash, signing_digest, EventType, Hash32, Record, RecordError};
use super::resolver::KeyResolver;
use super::signer::{RecordSigner, SignError};
use super::store::{NewRow, Store, StoreError};
use super::verify::{check_key_at, cosigned_digest, signature_valid, signature_valid_over};

/// Where a record landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub seq: u64,
    pub entry_hash: Hash32,
}

impl Appended {
    /// The reference an outcome uses to close this intent.
    pub fn intent_ref(&self) -> IntentRef {
        IntentRef { seq: self.seq, entry_hash: self.entry_hash }
    }
}

/// A reset intent with no outcome: the directory may or may not have been changed.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingIntent {
    pub seq: u64,
    pub entry_hash: Hash32,
    pub timestamp_ms: u64,
    /// The agent's key id.
    pub key_id: Hash32,
    /// The intent's facts (who, which account, ...), as recorded.
    pub facts: serde_json::Value,
}

impl PendingIntent {
    pub fn intent_ref(&self) -> IntentRef {
        IntentRef { seq: self.seq, entry_hash: self.entry_hash }
    }
}

/// Why an append or open failed. Nothing was written when an append fails.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("could not sign the audit record: {0}")]
    Sign(#[from] SignError),
    #[error("could not co-sign the audit record: {0}")]
    Cosign(SignError),
    #[error("the audit record is invalid: {0}")]
    Record(#[from] RecordError),
    #[error("the audit event is invalid: {0}")]
    Event(#[from] EventError),
    #[error("the clock says {0}, before 1970; fix the system clock")]
    Clock(OffsetDateTime),
    #[error("the outcome refers to intent seq {0}, which is not a reset intent in this log")]
    NoSuchIntent(u64),
    #[error("intent seq {0} already has an outcome")]
    IntentClosed(u64),
    #[error("the audit log ends at seq {head} but a receipt from the collector covers seq {receipted}: records were deleted or the database was restored from an old copy; stop and call security")]
    RolledBack { head: u64, receipted: u64 },
    #[error("audit database row {seq} is unreadable ({why}); run `resetdesk audit verify`")]
    Corrupt { seq: u64, why: String },
    #[error("the receipt does not match this log at seq {0}; it is for another log or the log was rewritten")]
    ReceiptMismatch(u64),
    #[error(
        "the card's signature would not verify ({0}); nothing was written; re-enrol the token or check the registry"
    )]
    WouldNotVerify(String),
}

/// A co-signature the co-signer's card made earlier: over the approval digest of a
/// reset intent (see [`cosigned_digest`]), when the second agent approved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MadeCosignature {
    /// SHA-256 of the co-signer's 9c SubjectPublicKeyInfo: goes into the record header.
    pub key_id: Hash32,
    /// DER ECDSA signature: stored beside the record.
    pub signature: Vec<u8>,
}

/// Who co-signs a record being appended.
enum Cosigner<'a> {
    /// A card present now: it signs what [`cosigned_digest`] says.
    Card(&'a mut dyn RecordSigner),
    /// A signature made earlier.
    Made(&'a MadeCosignature),
}

/// What the signature `sig` by `key_id` must verify over.
enum Signed<'a> {
    Record(&'a [u8]),
    Digest(&'a Hash32),
}

fn check_signer(
    resolver: &dyn KeyResolver,
    key_id: &Hash32,
    at: u64,
    signed: Signed<'_>,
    sig: &[u8],
) -> Result<(), AuditError> {
    let key = resolver.resolve(key_id).map_err(|e| AuditError::WouldNotVerify(e.to_string()))?;
    check_key_at(&key, at).map_err(|p| AuditError::WouldNotVerify(p.to_string()))?;
    let valid = match signed {
        Signed::Record(record) => signature_valid(&key, record, sig),
        Signed::Digest(digest) => signature_valid_over(&key, digest, sig),
    };
    if !valid {
        return Err(AuditError::WouldNotVerify(format!(
            "signature does not match the certificate of `{}`",
            key.subject
        )));
    }
    Ok(())
}

/// The desk's audit log.
pub struct AuditLog {
    store: Store,
    pending_at_open: Vec<PendingIntent>,
    key_check: Option<Box<dyn KeyResolver + Send>>,
}

/// UTC milliseconds since the Unix epoch.
pub fn unix_ms(t: OffsetDateTime) -> Result<u64, AuditError> {
    u64::try_from(t.unix_timestamp_nanos() / 1_000_000).map_err(|_| AuditError::Clock(t))
}

impl AuditLog {
    /// Open (or create) the log at `path` (normally `<data_dir>/audit.sqlite`).
    /// Checks the head record is readable and not behind a stored receipt, and
    /// collects intents without an outcome.
    pub fn open(path: &Path) -> Result<Self, AuditError> {
        let store = Store::open(path)?;
        let head = store.head()?.map(|(s, _)| s).unwrap_or(0);
        if let Some(stored) = store.get(head)? {
            Record::decode(&stored.record).map_err(|e| AuditError::Corrupt { seq: head, why: e.to_string() })?;
        }
        let receipted = store.receipts()?.iter().map(Receipt::covered_seq).max().unwrap_or(0);
        if receipted > head {
            return Err(AuditError::RolledBack { head, receipted });
        }
        let mut log = Self { store, pending_at_open: Vec::new(), key_check: None };
        log.pending_at_open = log.pending_intents()?;
        if !log.pending_at_open.is_empty() {
            tracing::warn!(
                count = log.pending_at_open.len(),
                "reset intents without an outcome; reconcile them against the directory"
            );
        }
        Ok(log)
    }

    /// Check every signature (and co-signature) against the signer's enrolled
    /// certificate before committing, so that a record the verifier would reject (a
    /// card holding another key than the one enrolled, a revoked or expired
    /// certificate) is refused instead of written.
    pub fn with_key_check(mut self, resolver: Box<dyn KeyResolver + Send>) -> Self {
        self.key_check = Some(resolver);
        self
    }

    /// Intents that had no outcome when the log was opened.
    pub fn pending_at_open(&self) -> &[PendingIntent] {
        &self.pending_at_open
    }

    /// Intents that have no outcome now.
    pub fn pending_intents(&self) -> Result<Vec<PendingIntent>, AuditError> {
        self.store
            .open_intents()?
            .into_iter()
            .map(|s| {
                let seq = s.row_seq;
                let corrupt = |why: String| AuditError::Corrupt { seq, why };
                let r = Record::decode(&s.record).map_err(|e| corrupt(e.to_string()))?;
                let p = parse_payload(r.event_type, &r.payload).map_err(|e| corrupt(e.to_string()))?;
                Ok(PendingIntent {
                    seq: r.seq,
                    entry_hash: entry_hash(&s.record),
                    timestamp_ms: r.timestamp_ms,
                    key_id: r.key_id,
                    facts: p.value.get("facts").cloned().unwrap_or_default(),
                })
            })
            .collect()
    }

    /// The last record, if any.
    pub fn head(&self) -> Result<Option<Appended>, AuditError> {
        Ok(self.store.head()?.map(|(seq, entry_hash)| Appended { seq, entry_hash }))
    }

    /// Sign `event` with `signer` and commit it durably before returning.
    pub fn append(
        &mut self,
        event: &Event,
        signer: &mut dyn RecordSigner,
        now: OffsetDateTime,
    ) -> Result<Appended, AuditError> {
        self.append_inner(|_| Ok(event.clone()), signer, None, now)
    }

    /// Append a heartbeat (login, logout, lock, unlock): its payload states the log
    /// head it follows (`"head": {seq, entry_hash}`) and the latest receipt the desk
    /// holds (`"last_receipt"`), so whoever receives it can later detect truncation.
    pub fn heartbeat<T: serde::Serialize + ?Sized>(
        &mut self,
        kind: EventType,
        facts: &T,
        signer: &mut dyn RecordSigner,
        now: OffsetDateTime,
    ) -> Result<Appended, AuditError> {
        let latest = self.store.receipts()?.into_iter().max_by_key(Receipt::covered_seq);
        let last_receipt = latest.map(|r| ReceiptRef {
            tree_size: r.covered_seq(),
            head_hash: r.covered_entry_hash(),
            collector_key_id: r.collector_key_id(),
        });
        // Checked against the trusted collector key before it was kept (the sync driver).
        let checkpoint = match self.store.latest_checkpoint_note()? {
            Some(note) => crate::audit::receipt::checkpoint_ref(&note),
            None => None,
        };
        let build = |head: HeadRef| {
            Event::heartbeat(kind, facts, head, last_receipt, checkpoint.as_ref()).map_err(AuditError::Event)
        };
        self.append_inner(build, signer, None, now)
    }

    /// As [`append`](Self::append), with a second agent's co-signature over the same
    /// record hash; the record names the co-signer, so the co-signature cannot be
    /// dropped unnoticed.
    pub fn append_cosigned(
        &mut self,
        event: &Event,
        signer: &mut dyn RecordSigner,
        cosigner: &mut dyn RecordSigner,
        now: OffsetDateTime,
    ) -> Result<Appended, AuditError> {
        self.append_inner(|_| Ok(event.clone()), signer, Some(Cosigner::Card(cosigner)), now)
    }

    /// As [`append`](Self::append), with a co-signature made earlier: for a reset
    /// intent whose facts name the co-signer, their card's signature over the approval
    /// digest ([`cosigned_digest`]). The header names the co-signer's key and the
    /// signature is stored beside the record; both are checked before the commit when
    /// the log has a key check, and by the verifier.
    pub fn append_with_cosignature(
        &mut self,
        event: &Event,
        signer: &mut dyn RecordSigner,
        cosignature: &MadeCosignature,
        now: OffsetDateTime,
    ) -> Result<Appended, AuditError> {
        self.append_inner(|_| Ok(event.clone()), signer, Some(Cosigner::Made(cosignature)), now)
    }

    /// One append transaction; `event_for` builds the event once the head is known.
    fn append_inner(
        &mut self,
        event_for: impl FnOnce(HeadRef) -> Result<Event, AuditError>,
        signer: &mut dyn RecordSigner,
        cosigner: Option<Cosigner<'_>>,
        now: OffsetDateTime,
    ) -> Result<Appended, AuditError> {
        let timestamp_ms = unix_ms(now)?;
        let tx = self.store.begin_append()?;
        let (seq, prev_hash) = match tx.head()? {
            Some((s, h)) => (s + 1, h),
            None => (1, [0; 32]),
        };
        // With the key check, a record the verifier would reject for its date is refused too.
        if let Some(revoked_at) = if self.key_check.is_some() { tx.latest_revocation_ms()? } else { None } {
            if timestamp_ms < revoked_at {
                return Err(AuditError::WouldNotVerify(format!(
                    "the desk's clock ({timestamp_ms} ms) is before a revocation recorded at {revoked_at} ms; fix the system clock"
                )));
            }
        }
        let event = &event_for(HeadRef { seq: seq - 1, entry_hash: prev_hash })?;
        if let Some(intent) = event.intent() {
            let bytes = tx.record(intent.seq)?.ok_or(AuditError::NoSuchIntent(intent.seq))?;
            let is_intent = Record::decode(&bytes).map(|r| r.event_type == EventType::ResetIntent).unwrap_or(false);
            if !is_intent || entry_hash(&bytes) != intent.entry_hash {
                return Err(AuditError::NoSuchIntent(intent.seq));
            }
            if tx.has_outcome_for(intent.seq)? {
                return Err(AuditError::IntentClosed(intent.seq));
            }
        }
        let record = Record {
            event_type: event.event_type(),
            seq,
            timestamp_ms,
            key_id: signer.key_id(),
            cosigner_key_id: cosigner.as_ref().map(|c| match c {
                Cosigner::Card(card) => card.key_id(),
                Cosigner::Made(made) => made.key_id,
            }),
            prev_hash,
            payload: event.payload().to_vec(),
        };
        let record_bytes = record.encode()?;
        let digest = signing_digest(&record_bytes);
        let co_digest =
            cosigned_digest(&record, &record_bytes).map_err(|p| AuditError::WouldNotVerify(p.to_string()))?;
        if cosigner.is_none() && co_digest.is_some() {
            return Err(AuditError::WouldNotVerify(
                "the reset intent's facts name a co-signer but no co-signature was given".into(),
            ));
        }
        let signature = signer.sign_digest(&digest)?;
        let cosignature = match (cosigner, co_digest) {
            (Some(Cosigner::Card(c)), Some(d)) => Some(c.sign_digest(&d).map_err(AuditError::Cosign)?),
            (Some(Cosigner::Made(made)), Some(_)) => Some(made.signature.clone()),
            // cosigned_digest is Some whenever the header names a co-signer.
            _ => None,
        };
        let record = record_bytes;
        if let Some(resolver) = &self.key_check {
            let rec = Record::decode(&record)?;
            check_signer(resolver.as_ref(), &rec.key_id, rec.timestamp_ms, Signed::Record(&record), &signature)?;
            if let (Some(id), Some(cosig), Some(d)) = (rec.cosigner_key_id, &cosignature, &co_digest) {
                check_signer(resolver.as_ref(), &id, rec.timestamp_ms, Signed::Digest(d), cosig)?;
            }
        }
        tx.insert(&NewRow {
            seq,
            record: &record,
            signature: &signature,
            cosignature: cosignature.as_deref(),
            event_type: event.event_type(),
            timestamp_ms,
            intent_seq: event.intent().map(|i| i.seq),
        })?;
        tx.commit()?;
        Ok(Appended { seq, entry_hash: entry_hash(&record) })
    }

    /// Keep a collector receipt after checking it matches this log (the same record
    /// at the seq it covers; for a v1 receipt also the same log id). The collector's
    /// signature is checked by the sync adapter and again by the verifier.
    pub fn add_receipt(&mut self, receipt: &Receipt) -> Result<(), AuditError> {
        check_receipt_matches(&self.store, receipt)?;
        self.store.add_receipt(receipt)?;
        Ok(())
    }

    /// The underlying store (read access for verification and export).
    pub fn store(&self) -> &Store {
        &self.store
    }
}

/// A receipt is for this log: the record at the seq it covers has the entry hash it
/// states (for a v1 receipt also the same log id). Its signature is another check
/// ([`Receipt::verify`]), done by the sync driver and again by the verifier.
pub fn check_receipt_matches(store: &Store, receipt: &Receipt) -> Result<(), AuditError> {
    let seq = receipt.covered_seq();
    let at = store.get(seq)?.map(|s| entry_hash(&s.record));
    let same_log = match receipt {
        Receipt::Legacy(r) => store.get(1)?.map(|s| entry_hash(&s.record)) == Some(r.checkpoint.log_id),
        Receipt::Inclusion(_) => true,
    };
    if !same_log || at != Some(receipt.covered_entry_hash()) {
        return Err(AuditError::ReceiptMismatch(seq));
    }
    Ok(())
}
