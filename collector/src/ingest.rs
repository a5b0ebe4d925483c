//! Ingest: verify a desk's batch with the core verifier, sequence it into the log,
//! sign the new checkpoint, and answer with receipts. Also the log's read side
//! (checkpoint, tiles, proofs) over the same store.
//!
//! Invariants:
//! - a record is stored only after [`LogVerifier::push`] accepted it, in its desk
//!   log's seq order, with the prev hash of the record before it; nothing unsigned;
//! - a batch is all or nothing: one bad record rejects the batch, nothing of it is
//!   stored, and the desk log's verifier state stays at the last accepted record;
//! - re-sending accepted records (same bytes) is answered with their receipts,
//!   never stored twice; the same seq with other bytes is a fork and rejected;
//! - every rejection is logged with its reason and stored as an alert row;
//! - the collector only signs checkpoints of trees it integrated (sizes only grow).

use std::collections::HashMap;

use resetdesk::audit::record::entry_hash;
use resetdesk::audit::resolver::ResolveError;
use resetdesk::audit::verify::{signature_valid, Problem};
use resetdesk::audit::{CertificateResolver, Hash32, InclusionReceipt, KeyResolver as _, LogVerifier, Receipt};

use crate::merkle::{self, TileRequest, TreeError};
use crate::note::{KeyError, LogKey};
use crate::store::{Alert, LogStore, NewLeaf, Placed, StoreError, StoredHashes};
use crate::wire::{self, AddRecordsResponse, ConsistencyResponse, InclusionResponse, WireError};

/// Why a submission was refused: the `error` code of the JSON body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectKind {
    MalformedBody,
    BatchTooLarge,
    UntrustedCertificate,
    Gap,
    Fork,
    Backwards,
    UnknownSigner,
    RevokedSigner,
    InvalidRecord,
}

impl RejectKind {
    pub fn code(self) -> &'static str {
        match self {
            Self::MalformedBody => "malformed_body",
            Self::BatchTooLarge => "batch_too_large",
            Self::UntrustedCertificate => "untrusted_certificate",
            Self::Gap => "gap",
            Self::Fork => "fork",
            Self::Backwards => "seq_backwards",
            Self::UnknownSigner => "unknown_signer",
            Self::RevokedSigner => "revoked_signer",
            Self::InvalidRecord => "invalid_record",
        }
    }

    /// The HTTP status it is answered with.
    pub fn status(self) -> u16 {
        match self {
            Self::MalformedBody => 400,
            Self::BatchTooLarge => 413,
            Self::UntrustedCertificate | Self::UnknownSigner | Self::RevokedSigner => 403,
            Self::Gap | Self::Fork | Self::Backwards => 409,
            Self::InvalidRecord => 422,
        }
    }

    fn of_problem(p: &Problem) -> Self {
        match p {
            Problem::Gap { .. } => Self::Gap,
            Problem::Backwards { .. } => Self::Backwards,
            Problem::Signer(ResolveError::NotEnrolled(_) | ResolveError::Untrusted { .. })
            | Problem::Cosigner(ResolveError::NotEnrolled(_) | ResolveError::Untrusted { .. }) => Self::UnknownSigner,
            Problem::Revoked { .. } | Problem::BackdatedAcrossRevocation { .. } => Self::RevokedSigner,
            _ => Self::InvalidRecord,
        }
    }
}

/// A refused submission.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", kind.code())]
pub struct Rejection {
    pub kind: RejectKind,
    pub message: String,
    pub log_id: Option<Hash32>,
    pub seq: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error(transparent)]
    Rejected(#[from] Rejection),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Key(#[from] KeyError),
}

/// Why a read request failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<TreeError> for ReadError {
    fn from(e: TreeError) -> Self {
        match e {
            TreeError::BadPath(_) => ReadError::BadRequest(e.to_string()),
            TreeError::OutOfRange { .. } | TreeError::TileBeyondTree { .. } => ReadError::NotFound(e.to_string()),
            TreeError::Tlog(_) => ReadError::Store(StoreError::Tree(e)),
        }
    }
}

/// Tries of one batch when other instances keep extending its desk log meanwhile.
const MAX_ATTEMPTS: u32 = 4;

/// The collector over a store.
pub struct Collector<S: LogStore> {
    store: S,
    org_ca_pem: String,
    resolver: CertificateResolver,
    /// Certificates (DER) already accepted: a desk re-sends its signers' each batch.
    accepted_certs: std::collections::HashSet<Vec<u8>>,
    desks: HashMap<Hash32, LogVerifier>,
    key: LogKey,
    max_batch: usize,
}

fn reject(kind: RejectKind, message: impl Into<String>, log_id: Option<Hash32>, seq: Option<u64>) -> Rejection {
    Rejection { kind, message: message.into(), log_id, seq }
}

impl<S: LogStore> Collector<S> {
    /// Open over `store`, trusting agents' certificates issued by the CA `org_ca_pem`.
    pub fn open(mut store: S, org_ca_pem: &str, key: LogKey, max_batch: usize) -> Result<Self, OpenError> {
        let resolver = CertificateResolver::from_ca_pem(org_ca_pem).map_err(|e| OpenError::Ca(e.to_string()))?;
        // Leaves a writer sequenced and did not integrate (it stopped in between).
        let size = store.integrate()?;
        if store.checkpoint()?.is_none_or(|(s, _)| s < size) {
            let root = merkle::root(size, &StoredHashes(&store)).map_err(StoreError::from)?;
            store.set_checkpoint(size, &key.sign_checkpoint(size, &root)?)?;
        }
        let mut collector = Self {
            store,
            org_ca_pem: org_ca_pem.to_owned(),
            resolver,
            accepted_certs: std::collections::HashSet::new(),
            desks: HashMap::new(),
            key,
            max_batch,
        };
        collector.load_stored_certificates()?;
        Ok(collector)
    }

    /// Learn the certificates in the database this instance has not seen (another
    /// instance on the same database may have stored them).
    fn load_stored_certificates(&mut self) -> Result<(), StoreError> {
        for der in self.store.certificates()? {
            // Stored certificates passed the same check when they came in.
            if !self.accepted_certs.contains(&der) && self.resolver.add_certificate_der(&der, None).is_ok() {
                self.accepted_certs.insert(der);
            }
        }
        Ok(())
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    /// The store, for state kept beside the log (witnesses' sizes and cosignatures).
    pub fn store_mut(&mut self) -> &mut S {
        &mut self.store
    }

    pub fn verifier_key(&self) -> &str {
        self.key.verifier_key()
    }

    /// The latest signed checkpoint note.
    pub fn checkpoint(&self) -> Result<(u64, String), StoreError> {
        // `open` signed one, and sizes only grow.
        self.store
            .checkpoint()?
            .ok_or_else(|| StoreError::Inconsistent("no checkpoint row; restart the collector to sign one".into()))
    }

    /// Keep an alert raised outside [`ingest`](Self::ingest) (e.g. an oversized body).
    pub fn record_alert(&mut self, alert: &Alert) -> Result<(), StoreError> {
        self.store.add_alert(alert)
    }

    /// Verify and append a batch body; on refusal, log it and keep an alert row.
    pub fn ingest(&mut self, body: &[u8], now_ms: u64) -> Result<AddRecordsResponse, IngestError> {
        let mut attempt = 0;
        let outcome = loop {
            attempt += 1;
            match self.try_ingest(body) {
                // Another instance extended this desk log after our state was read:
                // check the batch again on the state from the database.
                Err(IngestError::Store(StoreError::DeskMoved { .. })) if attempt < MAX_ATTEMPTS => continue,
                other => break other,
            }
        };
        match outcome {
            Err(IngestError::Rejected(r)) => {
                tracing::warn!(
                    kind = r.kind.code(),
                    log_id = r.log_id.map(hex::encode),
                    seq = r.seq,
                    "rejected: {}",
                    r.message
                );
                let alert = Alert {
                    at_ms: now_ms,
                    log_id: r.log_id,
                    seq: r.seq,
                    kind: r.kind.code().to_owned(),
                    reason: r.message.clone(),
                };
                self.store.add_alert(&alert)?;
                Err(IngestError::Rejected(r))
            }
            other => other,
        }
    }

    fn try_ingest(&mut self, body: &[u8]) -> Result<AddRecordsResponse, IngestError> {
        let batch = wire::decode_batch(body, self.max_batch).map_err(|e| {
            let kind = match e {
                WireError::TooMany { .. } | WireError::EntryTooLarge { .. } => RejectKind::BatchTooLarge,
                _ => RejectKind::MalformedBody,
            };
            reject(kind, e.to_string(), None, None)
        })?;
        let log = batch.log_id;
        for (k, der) in batch.certificates.iter().enumerate() {
            if self.accepted_certs.contains(der) {
                continue;
            }
            // Check it on its own first: a bad certificate must not displace a good
            // one for the same key in the resolver.
            let untrusted = |why: String| {
                reject(RejectKind::UntrustedCertificate, format!("certificate {}: {why}", k + 1), Some(log), None)
            };
            let mut alone = CertificateResolver::from_ca_pem(&self.org_ca_pem).map_err(|e| untrusted(e.to_string()))?;
            let key_id = alone.add_certificate_der(der, None).map_err(untrusted)?;
            self.resolver.add_certificate_der(der, None).map_err(untrusted)?;
            self.store.add_certificate(&key_id, der)?;
            self.accepted_certs.insert(der.clone());
        }

        // The desk log's state is taken out of the cache while the batch is checked.
        // It goes back if the batch is stored, or if it was refused before any record
        // of it was pushed; otherwise it is dropped and rebuilt from the database next
        // time, so a refused batch leaves no trace in it (all or nothing, no copy).
        let mut state = self.take_desk_state(&log)?;
        state.forget_keys();
        let checked = self.check_batch(&mut state, &batch);
        let new_leaves = match checked {
            Ok(leaves) => leaves,
            Err(refusal) => {
                if state.next_seq() == refusal.pushed_from {
                    self.desks.insert(log, state);
                }
                return Err(refusal.rejection.into());
            }
        };
        if !new_leaves.is_empty() {
            self.store.append_batch(&new_leaves)?;
            self.sign_latest()?;
        }
        self.desks.insert(log, state);
        let mut placed = Vec::with_capacity(batch.records.len());
        for (record, _) in &batch.records {
            let p = self.store.placed(&log, record.seq)?.ok_or_else(|| {
                StoreError::Inconsistent(format!("record {} was accepted but is not stored", record.seq))
            })?;
            placed.push((record.seq, p));
        }
        let (mut size, mut note) = self.checkpoint()?;
        if placed.iter().any(|(_, p)| p.leaf_index >= size) {
            // Re-sent records a writer sequenced but never integrated (it stopped).
            self.store.integrate()?;
            self.sign_latest()?;
            (size, note) = self.checkpoint()?;
        }
        let mut receipts = Vec::with_capacity(batch.records.len());
        for (seq, placed) in placed {
            let receipt = self.receipt(size, &note, seq, placed)?;
            // A receipt's JSON is an object of strings and numbers.
            receipts.push(serde_json::from_str(&receipt.to_json()).unwrap_or_default());
        }
        Ok(AddRecordsResponse { checkpoint: note, tree_size: size, receipts })
    }

    fn receipt(&self, size: u64, note: &str, seq: u64, placed: Placed) -> Result<Receipt, StoreError> {
        let proof = merkle::inclusion_proof(size, placed.leaf_index, &StoredHashes(&self.store))?;
        Ok(Receipt::Inclusion(InclusionReceipt {
            signed_checkpoint: note.to_owned(),
            seq,
            entry_hash: placed.entry_hash,
            leaf_index: placed.leaf_index,
            proof,
        }))
    }

    fn sign_latest(&mut self) -> Result<(), IngestError> {
        let size = self.store.tree_size()?;
        let root = merkle::root(size, &StoredHashes(&self.store)).map_err(StoreError::from)?;
        let note = self.key.sign_checkpoint(size, &root)?;
        self.store.set_checkpoint(size, &note)?;
        Ok(())
    }

    /// Check a batch's records against the desk log's state, pushing each new one.
    fn check_batch(&self, state: &mut LogVerifier, batch: &wire::Batch) -> Result<Vec<NewLeaf>, Refusal> {
        let log = batch.log_id;
        let pushed_from = state.next_seq();
        let refuse =
            |kind, msg: String, seq| Refusal { rejection: reject(kind, msg, Some(log), Some(seq)), pushed_from };
        let mut new_leaves = Vec::new();
        let mut last_seq = 0u64;
        for (record, stored) in &batch.records {
            let seq = record.seq;
            let hash = entry_hash(&stored.record);
            if seq <= last_seq {
                let msg = format!("record seq {seq} follows seq {last_seq} in the batch; send records in seq order");
                return Err(refuse(RejectKind::Backwards, msg, seq));
            }
            last_seq = seq;
            if seq == 1 && hash != log {
                let msg = "log_id is not the entry hash of the log's record 1; the batch names another log".to_owned();
                return Err(refuse(RejectKind::InvalidRecord, msg, seq));
            }
            if seq < state.next_seq() {
                if state.entry_hash_of(seq) == Some(hash) {
                    continue; // already logged: answered with its receipt
                }
                // Other bytes under a logged seq are a fork only if its signer signed
                // them; anything else is an altered copy (and no fork alert for
                // whoever can POST garbage).
                let signed = self
                    .resolver
                    .resolve(&record.key_id)
                    .is_ok_and(|key| signature_valid(&key, &stored.record, &stored.signature));
                if !signed {
                    let msg = format!(
                        "record {seq} differs from the logged record {seq} and its signature does not verify: altered in transit or forged"
                    );
                    return Err(refuse(RejectKind::InvalidRecord, msg, seq));
                }
                let msg = format!(
                    "record {seq} is validly signed but differs from the record {seq} this collector already logged for this desk: the desk log forked or was rewritten"
                );
                return Err(refuse(RejectKind::Fork, msg, seq));
            }
            state
                .push(&self.resolver, stored)
                .map_err(|bad| refuse(RejectKind::of_problem(&bad.problem), bad.to_string(), bad.seq))?;
            new_leaves.push(NewLeaf {
                log_id: log,
                seq,
                entry_hash: hash,
                record: stored.record.clone(),
                signature: stored.signature.clone(),
                cosignature: stored.cosignature.clone(),
            });
        }
        Ok(new_leaves)
    }

    /// The verifier state of a desk log, out of the cache or rebuilt from its stored
    /// records; the caller puts it back.
    ///
    /// Several instances may share the database, so a cached state is only used
    /// after checking that the stored desk log ends where it does; if another
    /// instance appended since, the state catches up on the stored records after it
    /// (verified again, as at a restart). The store refuses an append that does not
    /// continue the stored log, which closes the window between this check and it.
    fn take_desk_state(&mut self, log: &Hash32) -> Result<LogVerifier, StoreError> {
        let stored_last = self.store.desk_last_seq(log)?;
        let mut state = match self.desks.remove(log) {
            Some(state) if state.next_seq() == stored_last + 1 => return Ok(state),
            // Behind: catch up. (Ahead cannot happen: the log only grows.)
            Some(state) if state.next_seq() <= stored_last => state,
            _ => LogVerifier::new(),
        };
        // The records to replay may be signed by certificates another instance took in.
        self.load_stored_certificates()?;
        for stored in self.store.desk_records(log, state.next_seq() - 1)? {
            state.push(&self.resolver, &stored).map_err(|bad| {
                StoreError::Inconsistent(format!("stored desk log {} no longer verifies: {bad}", hex::encode(log)))
            })?;
        }
        Ok(state)
    }

    /// A C2SP tile (`tile/<L>/<N>[.p/<W>]`) or entry bundle (`tile/entries/...`).
    pub fn tile(&self, path: &str) -> Result<Vec<u8>, ReadError> {
        let req = TileRequest::parse(path)?;
        let size = self.store.tree_size()?;
        req.check_within(size)?;
        if req.is_entries() {
            let entries = self.store.entries(req.leaf_range())?;
            return Ok(merkle::entry_bundle(&entries));
        }
        Ok(req.hash_tile(size, &StoredHashes(&self.store))?)
    }

    /// Inclusion proof of the leaf with `entry_hash` in the tree of `size` leaves (the
    /// latest checkpoint's if `None`).
    pub fn inclusion(&self, entry_hash: &Hash32, size: Option<u64>) -> Result<InclusionResponse, ReadError> {
        let (latest, note) = self.checkpoint()?;
        let size = size.unwrap_or(latest);
        if size > self.store.tree_size()? {
            return Err(ReadError::NotFound(format!("tree size {size} is beyond the log")));
        }
        let (index, log_id, seq) = self
            .store
            .find_entry(entry_hash)?
            .ok_or_else(|| ReadError::NotFound(format!("no leaf has entry hash {}", hex::encode(entry_hash))))?;
        let proof = merkle::inclusion_proof(size, index, &StoredHashes(&self.store))?;
        Ok(InclusionResponse {
            tree_size: size,
            leaf_index: index,
            log_id: hex::encode(log_id),
            seq,
            proof: proof.iter().map(b64).collect(),
            checkpoint: if size == latest { note } else { String::new() },
        })
    }

    /// Consistency proof between tree sizes `old` and `new`.
    pub fn consistency(&self, old: u64, new: u64) -> Result<ConsistencyResponse, ReadError> {
        let size = self.store.tree_size()?;
        if old > new {
            return Err(ReadError::BadRequest(format!("old size {old} is larger than new size {new}")));
        }
        if new > size {
            return Err(ReadError::NotFound(format!("tree size {new} is beyond the log ({size})")));
        }
        let proof = if old == 0 || old == new {
            Vec::new()
        } else {
            merkle::consistency_proof(new, old, &StoredHashes(&self.store))?
        };
        Ok(ConsistencyResponse { old, new, proof: proof.iter().map(b64).collect() })
    }
}

fn b64(h: &Hash32) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(h)
}

/// A refused batch, and the desk state's next seq before it was checked.
struct Refusal {
    rejection: Rejection,
    pushed_from: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("organisation CA: {0}")]
    Ca(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Key(#[from] KeyError),
}
