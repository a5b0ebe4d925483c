//! Ingest: verify a desk's batch with the core verifier, sequence it into the log,
//! sign the new checkpoint, and answer with receipts. Also the log's read side
//! (checkpoint, tiles, proofs) over the same store.
//!
//! Two halves, so that requests verify on every core while one sequences:
//! - [`Prechecker::prepare`], without the collector's lock, on the request's thread:
//!   decode the body, check certificates not seen before, and precheck each record
//!   (decode, hash, payload, signatures by keys already known; several threads for a
//!   big batch), and from the same payload parse what each record tells the anomaly
//!   rules and the account index. Nothing of the log is read or written.
//! - [`Collector::ingest_prepared`], under the lock: store new certificates, decide
//!   each record in seq order against its desk log's state (continuity, prev hash,
//!   intents, revocations, duplicates, forks), reading a precheck's answer only if it
//!   was made with the key resolved now; then the one store transaction, the anomaly
//!   rules, the signed checkpoint, and the receipts, whose proofs wait for
//!   [`Ingested::into_response`] after the lock where the store reads its hashes
//!   apart (SQLite).
//!
//! Invariants:
//! - a record is stored only after [`LogVerifier::push`] (or the same checks, as
//!   [`LogVerifier::push_prechecked_record`]) accepted it, in its desk
//!   log's seq order, with the prev hash of the record before it; nothing unsigned;
//! - a batch is all or nothing: one bad record rejects the batch, nothing of it is
//!   stored, and the desk log's verifier state stays at the last accepted record;
//! - re-sending accepted records (same bytes) is answered with their receipts,
//!   never stored twice; the same seq with other bytes is a fork and rejected;
//! - every rejection is logged with its reason and stored as an alert row;
//! - the collector only signs checkpoints of trees it integrated (sizes only grow).

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use resetdesk::account_events::{events_of_parsed, AccountEvent};
use resetdesk::audit::event::{parse_payload, ParsedPayload};
use resetdesk::audit::record::entry_hash;
use resetdesk::audit::resolver::ResolveError;
use resetdesk::audit::verify::{revocation_of, signature_valid, unpaced, Pace, Problem, StoredRecord};
use resetdesk::audit::{
    CertificateResolver, Hash32, InclusionReceipt, KeyResolver as _, LogVerifier, Prechecked, Receipt, Record,
};

use tlog_tiles::{Hash, HashReader};

use crate::anomaly::facts::{observe_parsed, Observation};
use crate::cores::Cores;
use crate::history::store::IndexRow;
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

/// The certificates requests are checked with: the resolver and, for each certificate
/// (DER) already checked and added to it, its key id.
struct Certificates {
    resolver: CertificateResolver,
    known: HashMap<Vec<u8>, Hash32>,
    /// Added to the resolver but not yet to the store: the collector stores them
    /// before it appends any record, so no stored record's signer is missing from
    /// the database (a restart rebuilds desk states from it).
    unstored: Vec<(Hash32, Vec<u8>)>,
}

/// The half of ingest that needs no log state and runs outside the collector's lock,
/// on each request's own thread, so that requests verify in parallel: decoding the
/// body, checking the certificates it brings, and the checks each record allows on its
/// own (decoding, hashing, the payload, the signatures by keys already known:
/// [`LogVerifier::precheck_apart`]). What it finds is only an answer in advance: the
/// collector, under its lock, decides every record in seq order against its desk
/// log's state and reads the answer when it was computed with the very key it resolves
/// then, else checks again ([`LogVerifier::push_prechecked_record`]). So the verdicts
/// are those of [`LogVerifier::push`] one record at a time.
pub struct Prechecker {
    org_ca_pem: String,
    max_batch: usize,
    /// Threads one request's records are prechecked on (when it has enough of them).
    threads: usize,
    /// Read while requests precheck and while the collector sequences; written only
    /// to add a certificate not seen before (lock order: the collector's lock, then
    /// this; nothing waits for the collector's lock while holding this).
    certificates: RwLock<Certificates>,
    /// One slot per core, shared by the prechecks' pieces and the sequencer.
    cores: Cores,
}

/// Tries of one batch when other instances keep extending its desk log meanwhile.
const MAX_ATTEMPTS: u32 = 4;

/// Below this many records per thread a request is prechecked on its own thread
/// (a thread costs more than it saves).
const MIN_RECORDS_PER_THREAD: usize = 32;

/// A batch decoded, its certificates checked, its records prechecked: ready for
/// [`Collector::ingest_prepared`].
pub struct Prepared {
    log_id: Hash32,
    /// The records as decoded by the wire layer, each with its prechecks and (if its
    /// payload parsed) what it tells the followers.
    records: Vec<(Record, Prechecked, Option<Told>)>,
}

/// What a record tells the collector's followers (the anomaly rules, the account
/// index), worked out with its prechecks, outside the lock, from their parse of its
/// payload.
struct Told {
    observation: Observation,
    events: Vec<AccountEvent>,
}

impl Told {
    fn of(log_id: Hash32, entry_hash: Hash32, record: &Record, parsed: &ParsedPayload) -> Self {
        Self {
            observation: observe_parsed(log_id, entry_hash, record, &parsed.value),
            events: events_of_parsed(record, parsed),
        }
    }

    /// For an accepted record prechecked without a parse (none is: acceptance needs
    /// its payload to parse), from its bytes.
    fn from_record(log_id: Hash32, entry_hash: Hash32, record: &Record) -> Self {
        match parse_payload(record.event_type, &record.payload) {
            Ok(parsed) => Self::of(log_id, entry_hash, record, &parsed),
            Err(_) => Self {
                observation: Observation {
                    record: crate::anomaly::facts::RecordRef { log_id, seq: record.seq, entry_hash },
                    at_ms: record.timestamp_ms,
                    what: crate::anomaly::facts::Observed::Other,
                },
                events: Vec::new(),
            },
        }
    }
}

fn read(lock: &RwLock<Certificates>) -> std::sync::RwLockReadGuard<'_, Certificates> {
    // Writers only insert complete entries: a panic elsewhere leaves nothing half-done.
    lock.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The prechecks' resolver: read under the lock for each key it is asked, not across
/// a batch's prechecks (the sequencer may have a certificate to store meanwhile). A
/// key replaced in between only voids the prechecks made with it: they are done
/// again in order.
struct SharedResolver<'a>(&'a RwLock<Certificates>);

impl resetdesk::audit::KeyResolver for SharedResolver<'_> {
    fn resolve(&self, key_id: &Hash32) -> Result<Arc<resetdesk::audit::ResolvedKey>, ResolveError> {
        read(self.0).resolver.resolve(key_id)
    }
}

fn write(lock: &RwLock<Certificates>) -> std::sync::RwLockWriteGuard<'_, Certificates> {
    lock.write().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Prechecker {
    /// Decode `body`, check the certificates it brings (adding new good ones to the
    /// resolver) and precheck its records, outside the collector's lock: the pieces
    /// of prechecks wait for slots of the cores (the sequencer goes first). Refusals
    /// here are those of the body and of its certificates;
    /// [`Collector::ingest_prepared`] logs them and keeps an alert.
    pub fn prepare(&self, body: &[u8]) -> Result<Prepared, Rejection> {
        self.prepare_paced(body, &|piece| self.cores.run_piece(piece))
    }

    /// The body of `/add-records` for an ingested batch, as JSON: its receipts'
    /// proofs and their encoding, made holding a slot of the cores like a piece of
    /// prechecks (so that it too leaves the sequencer its core).
    pub fn respond(&self, ingested: Ingested) -> Result<Vec<u8>, StoreError> {
        self.cores.run(|| ingested.into_json())
    }

    /// Hold a core for the sequencer (under the collector's lock) while this lives.
    pub fn sequencing(&self) -> crate::cores::Slot<'_> {
        self.cores.sequencer()
    }

    fn prepare_paced(&self, body: &[u8], pace: Pace<'_>) -> Result<Prepared, Rejection> {
        let batch = wire::decode_batch(body, self.max_batch).map_err(|e| {
            let kind = match e {
                WireError::TooMany { .. } | WireError::EntryTooLarge { .. } => RejectKind::BatchTooLarge,
                _ => RejectKind::MalformedBody,
            };
            reject(kind, e.to_string(), None, None)
        })?;
        let log = batch.log_id;
        for (k, der) in batch.certificates.into_iter().enumerate() {
            if read(&self.certificates).known.contains_key(&der) {
                continue;
            }
            // Check it on its own first: a bad certificate must not displace a good
            // one for the same key in the resolver.
            let untrusted = |why: String| {
                reject(RejectKind::UntrustedCertificate, format!("certificate {}: {why}", k + 1), Some(log), None)
            };
            let mut alone = CertificateResolver::from_ca_pem(&self.org_ca_pem).map_err(|e| untrusted(e.to_string()))?;
            let key_id = alone.add_certificate_der(&der, None).map_err(untrusted)?;
            let mut certs = write(&self.certificates);
            // Another request may have added it meanwhile: adding it again would only
            // replace its key, and so void prechecks made with it.
            if !certs.known.contains_key(&der) {
                certs.resolver.add_certificate_der(&der, None).map_err(untrusted)?;
                certs.known.insert(der.clone(), key_id);
                certs.unstored.push((key_id, der));
            }
        }
        let (decoded, stored): (Vec<Record>, Vec<StoredRecord>) = batch.records.into_iter().unzip();
        let threads = self.threads.min(stored.len().div_ceil(MIN_RECORDS_PER_THREAD)).max(1);
        let told = |record: &Record, hash: &Hash32, parsed: Option<&ParsedPayload>| {
            parsed.map(|p| Told::of(log, *hash, record, p))
        };
        let resolver = SharedResolver(&self.certificates);
        let prechecked = LogVerifier::precheck_apart_with(&resolver, stored, threads, pace, &told);
        let records = decoded.into_iter().zip(prechecked).map(|(r, (p, told))| (r, p, told.flatten())).collect();
        Ok(Prepared { log_id: log, records })
    }
}

/// The collector over a store: the sequencing half of ingest, run under one lock.
pub struct Collector<S: LogStore> {
    store: S,
    prechecker: Arc<Prechecker>,
    desks: HashMap<Hash32, LogVerifier>,
    key: LogKey,
    /// Told of each stored batch (the anomaly rules).
    watcher: Option<Box<dyn crate::anomaly::Watcher<S>>>,
    /// Certificates stored in the open ingest transaction: to store again if it
    /// does not commit.
    certificates_in_unit: Vec<(Hash32, Vec<u8>)>,
}

fn reject(kind: RejectKind, message: impl Into<String>, log_id: Option<Hash32>, seq: Option<u64>) -> Rejection {
    Rejection { kind, message: message.into(), log_id, seq }
}

/// Threads a batch is prechecked on: the machine's cores.
fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
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
        let threads = default_threads();
        let prechecker = Prechecker {
            org_ca_pem: org_ca_pem.to_owned(),
            max_batch,
            threads,
            cores: Cores::new(threads),
            certificates: RwLock::new(Certificates { resolver, known: HashMap::new(), unstored: Vec::new() }),
        };
        let collector = Self {
            store,
            prechecker: Arc::new(prechecker),
            desks: HashMap::new(),
            key,
            watcher: None,
            certificates_in_unit: Vec::new(),
        };
        collector.load_stored_certificates()?;
        Ok(collector)
    }

    /// Learn the certificates in the database this instance has not seen (another
    /// instance on the same database may have stored them).
    fn load_stored_certificates(&self) -> Result<(), StoreError> {
        let stored = self.store.certificates()?;
        let mut certs = write(&self.prechecker.certificates);
        for der in stored {
            // Stored certificates passed the same check when they came in.
            if !certs.known.contains_key(&der) {
                if let Ok(key_id) = certs.resolver.add_certificate_der(&der, None) {
                    certs.known.insert(der, key_id);
                }
            }
        }
        Ok(())
    }

    /// Tell `watcher` of every batch stored from now on (after its transaction).
    pub fn with_watcher(mut self, watcher: Box<dyn crate::anomaly::Watcher<S>>) -> Self {
        self.watcher = Some(watcher);
        self
    }

    /// The lock-free half of ingest, for callers that precheck outside the lock.
    pub fn prechecker(&self) -> Arc<Prechecker> {
        Arc::clone(&self.prechecker)
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    /// The store, for state kept beside the log (witnesses' sizes and cosignatures).
    pub fn store_mut(&mut self) -> &mut S {
        &mut self.store
    }

    /// The log's signing key (for the collector's other signed answers).
    pub fn log_key(&self) -> &LogKey {
        &self.key
    }

    pub fn verifier_key(&self) -> &str {
        self.key.verifier_key()
    }

    /// The log's checkpoint key (it also signs the desk services' answers).
    pub fn key(&self) -> &LogKey {
        &self.key
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

    /// Verify and append a batch body; on refusal, log it and keep an alert row. The
    /// same as [`Prechecker::prepare`] then [`ingest_prepared`](Self::ingest_prepared),
    /// all on this thread.
    pub fn ingest(&mut self, body: &[u8], now_ms: u64) -> Result<AddRecordsResponse, IngestError> {
        let prepared = self.prechecker.prepare(body);
        Ok(self.ingest_prepared(body, prepared, now_ms)?.into_response()?)
    }

    /// Decide and append `body`'s batch as `prepared` by [`Prechecker::prepare`] (or
    /// keep the refusal it made); on refusal, log it and keep an alert row. The answer's
    /// JSON is made by [`Ingested::into_response`], after the lock is released.
    pub fn ingest_prepared(
        &mut self,
        body: &[u8],
        prepared: Result<Prepared, Rejection>,
        now_ms: u64,
    ) -> Result<Ingested, IngestError> {
        let mut outcome = prepared.map_err(IngestError::from).and_then(|p| self.try_ingest(p));
        let mut attempt = 1;
        // Another instance extended this desk log after our state was read: check the
        // batch again (prechecked again, under the lock: rare) on the state from the
        // database.
        while matches!(outcome, Err(IngestError::Store(StoreError::DeskMoved { .. }))) && attempt < MAX_ATTEMPTS {
            attempt += 1;
            // Under the sequencer's slot: the prechecks run unpaced.
            outcome = self
                .prechecker
                .prepare_paced(body, &unpaced)
                .map_err(IngestError::from)
                .and_then(|p| self.try_ingest(p));
        }
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

    fn try_ingest(&mut self, batch: Prepared) -> Result<Ingested, IngestError> {
        let log = batch.log_id;
        self.store_new_certificates()?;
        // The desk log's state is taken out of the cache while the batch is checked.
        // It goes back if the batch is stored, or if it was refused before any record
        // of it was pushed; otherwise it is dropped and rebuilt from the database next
        // time, so a refused batch leaves no trace in it (all or nothing, no copy).
        let mut state = self.take_desk_state(&log)?;
        state.forget_keys();
        // Keys revoked in any desk log (by this instance or another) sign nothing here
        // from their revocation's time on.
        state.set_revoked_elsewhere(self.store.revocations()?);
        let prechecker = Arc::clone(&self.prechecker);
        let certs = read(&prechecker.certificates);
        let resolver = &certs.resolver;
        let seqs: Vec<u64> = batch.records.iter().map(|(r, _, _)| r.seq).collect();
        let checked = Self::check_batch(resolver, &mut state, log, batch.records);
        drop(certs);
        let (new_leaves, told): (Vec<NewLeaf>, Vec<Told>) = match checked {
            Ok(leaves) => leaves.into_iter().unzip(),
            Err(refusal) => {
                if state.next_seq() == refusal.pushed_from {
                    self.desks.insert(log, state);
                }
                return Err(refusal.rejection.into());
            }
        };
        // Where the new records went, without asking the store again.
        let mut placed_now = HashMap::with_capacity(new_leaves.len());
        let mut account_rows = None;
        if !new_leaves.is_empty() {
            let indexes = self.store.append_batch(&new_leaves)?;
            let (observations, events): (Vec<Observation>, Vec<Vec<AccountEvent>>) =
                told.into_iter().map(|t| (t.observation, t.events)).unzip();
            if let Some(w) = self.watcher.as_mut() {
                w.stored(&mut self.store, &observations);
            }
            let mut rows = Vec::new();
            for ((leaf, &leaf_index), events) in new_leaves.iter().zip(&indexes).zip(events) {
                placed_now.insert(leaf.seq, Placed { leaf_index, entry_hash: leaf.entry_hash });
                rows.extend(crate::history::rows_of_events(leaf.log_id, leaf.seq, leaf_index, leaf.entry_hash, events));
            }
            if let (Some(first), Some(last)) = (indexes.first(), indexes.last()) {
                account_rows = Some((*first..*last + 1, rows));
            }
        }
        self.desks.insert(log, state);
        // The batch's proofs share most of their hashes: each is read once.
        let seen = RefCell::new(HashMap::new());
        if !new_leaves.is_empty() {
            let size = self.store.tree_size()?;
            let root = merkle::root(size, &MemoHashes { reader: &StoredHashes(&self.store), seen: &seen })
                .map_err(StoreError::from)?;
            let note = self.key.sign_checkpoint(size, &root)?;
            self.store.set_checkpoint(size, &note)?;
        }
        let mut placed = Vec::with_capacity(seqs.len());
        for seq in seqs {
            let p = match placed_now.get(&seq) {
                Some(p) => *p,
                None => self
                    .store
                    .placed(&log, seq)?
                    .ok_or_else(|| StoreError::Inconsistent(format!("record {seq} was accepted but is not stored")))?,
            };
            placed.push((seq, p));
        }
        let signed_size = self.checkpoint()?.0;
        if placed.iter().any(|(_, p)| p.leaf_index >= signed_size) {
            // Re-sent records a writer sequenced but never integrated (it stopped).
            let size = self.store.integrate()?;
            let root = merkle::root(size, &StoredHashes(&self.store)).map_err(StoreError::from)?;
            self.store.set_checkpoint(size, &self.key.sign_checkpoint(size, &root)?)?;
            seen.borrow_mut().clear();
        }
        let (size, note) = self.checkpoint()?;
        // Committed hashes never change: where the store can read them without the
        // lock, the proofs are made after it is released (Ingested::receipts).
        let receipts = match self.store.hashes_apart() {
            Some(apart) => {
                seen.borrow_mut().extend(apart.known.into_iter().map(|(ix, h)| (ix, Hash(h))));
                Receipts::Apart { placed, seen, source: apart.source }
            }
            None => {
                let hashes = MemoHashes { reader: &StoredHashes(&self.store), seen: &seen };
                let mut receipts = Vec::with_capacity(placed.len());
                for (seq, placed) in placed {
                    receipts.push(receipt(size, &note, seq, placed, &hashes)?);
                }
                Receipts::Made(receipts)
            }
        };
        Ok(Ingested { checkpoint: note, tree_size: size, receipts, account_rows })
    }

    /// Store the certificates requests added to the resolver since the last time.
    fn store_new_certificates(&mut self) -> Result<(), StoreError> {
        // Most batches bring none: no write lock (it would wait for every request
        // that is reading the resolver).
        if read(&self.prechecker.certificates).unstored.is_empty() {
            return Ok(());
        }
        let unstored = std::mem::take(&mut write(&self.prechecker.certificates).unstored);
        for (k, (key_id, der)) in unstored.iter().enumerate() {
            if let Err(e) = self.store.add_certificate(key_id, der) {
                write(&self.prechecker.certificates).unstored.extend_from_slice(&unstored[k..]);
                return Err(e);
            }
        }
        self.certificates_in_unit.extend(unstored);
        Ok(())
    }

    /// Begin the one store transaction of a batch's ingest ([`LogStore::begin_unit`]):
    /// the batch, its checkpoint, its alerts, and what the followers write of it.
    pub fn begin_unit(&mut self) -> Result<(), StoreError> {
        // (Ingests made without a unit, as `ingest` does, left theirs here: stored.)
        self.certificates_in_unit.clear();
        self.store.begin_unit()
    }

    /// Commit it. If that fails nothing of it was kept, so what this collector
    /// cached of it is forgotten: the desk logs' states (rebuilt from the database
    /// when next needed) and the certificates it stored (stored again next time).
    pub fn commit_unit(&mut self) -> Result<(), StoreError> {
        let stored = std::mem::take(&mut self.certificates_in_unit);
        let committed = self.store.commit_unit();
        if committed.is_err() {
            self.desks.clear();
            write(&self.prechecker.certificates).unstored.extend(stored);
        }
        committed
    }

    /// Check a batch's records against the desk log's state in seq order, pushing each
    /// new one (with its prechecks).
    fn check_batch(
        resolver: &CertificateResolver,
        state: &mut LogVerifier,
        log: Hash32,
        records: Vec<(Record, Prechecked, Option<Told>)>,
    ) -> Result<Vec<(NewLeaf, Told)>, Refusal> {
        let pushed_from = state.next_seq();
        let refuse =
            |kind, msg: String, seq| Refusal { rejection: reject(kind, msg, Some(log), Some(seq)), pushed_from };
        let mut new_leaves = Vec::new();
        let mut last_seq = 0u64;
        for (record, prechecked, told) in records {
            let seq = record.seq;
            let stored = prechecked.stored();
            let hash = prechecked.entry_hash().unwrap_or_else(|| entry_hash(&stored.record));
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
                let signed = resolver
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
            let stored = state
                .push_prechecked_record(resolver, prechecked)
                .map_err(|bad| refuse(RejectKind::of_problem(&bad.problem), bad.to_string(), bad.seq))?;
            let (revokes, timestamp_ms) = revocation_of(&record).unwrap_or((Vec::new(), record.timestamp_ms));
            let told = told.unwrap_or_else(|| Told::from_record(log, hash, &record));
            let leaf = NewLeaf {
                log_id: log,
                seq,
                entry_hash: hash,
                revokes,
                timestamp_ms,
                record: stored.record,
                signature: stored.signature,
                cosignature: stored.cosignature,
            };
            new_leaves.push((leaf, told));
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
        let stored = self.store.desk_records(log, state.next_seq() - 1)?;
        // Stored records were accepted under the revocations known then: replay them so.
        state.set_revoked_elsewhere(HashMap::new());
        let certs = read(&self.prechecker.certificates);
        state.push_all(&certs.resolver, &stored, self.prechecker.threads).map_err(|bad| {
            StoreError::Inconsistent(format!("stored desk log {} no longer verifies: {bad}", hex::encode(log)))
        })?;
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

fn receipt<R: HashReader>(size: u64, note: &str, seq: u64, placed: Placed, hashes: &R) -> Result<Receipt, StoreError> {
    let proof = merkle::inclusion_proof(size, placed.leaf_index, hashes)?;
    Ok(Receipt::Inclusion(InclusionReceipt {
        signed_checkpoint: note.to_owned(),
        seq,
        entry_hash: placed.entry_hash,
        leaf_index: placed.leaf_index,
        proof,
    }))
}

/// Stored hashes through `reader`, each read at most once: a stored hash never changes
/// once written (the tree only grows), so one request may keep what it read.
pub(crate) struct MemoHashes<'a> {
    pub(crate) reader: &'a dyn HashReader,
    pub(crate) seen: &'a RefCell<HashMap<u64, Hash>>,
}

impl HashReader for MemoHashes<'_> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog_tiles::Error> {
        let mut seen = self.seen.borrow_mut();
        let missing: Vec<u64> = indexes.iter().copied().filter(|i| !seen.contains_key(i)).collect();
        if !missing.is_empty() {
            let read = self.reader.read_hashes(&missing)?;
            seen.extend(missing.into_iter().zip(read));
        }
        indexes
            .iter()
            .map(|i| seen.get(i).copied().ok_or_else(|| tlog_tiles::Error::InvalidInput(format!("no stored hash {i}"))))
            .collect()
    }
}

/// An accepted batch: the signed checkpoint and one receipt per record, in the batch's
/// order. Made under the collector's lock, but for what needs nothing of it: the
/// proofs where the store reads its hashes apart, and the JSON
/// ([`Ingested::into_response`]).
pub struct Ingested {
    pub checkpoint: String,
    pub tree_size: u64,
    receipts: Receipts,
    /// The leaves this batch added and their account index rows, made from the
    /// prechecks' parse ([`crate::history::after_indexed_batch`] stores them).
    pub(crate) account_rows: Option<(std::ops::Range<u64>, Vec<IndexRow>)>,
}

/// A batch's receipts, made or to be made from the stored hashes read apart.
enum Receipts {
    Made(Vec<Receipt>),
    /// The hashes already read or written under the lock, and a reader for the others.
    Apart {
        placed: Vec<(u64, Placed)>,
        seen: RefCell<HashMap<u64, Hash>>,
        source: Box<dyn HashReader + Send>,
    },
}

impl Ingested {
    /// One receipt per record of the batch, in its order (the proofs made now if the
    /// lock did not make them).
    pub fn into_receipts(self) -> Result<Vec<Receipt>, StoreError> {
        match self.receipts {
            Receipts::Made(receipts) => Ok(receipts),
            Receipts::Apart { placed, seen, source } => {
                let hashes = MemoHashes { reader: &*source, seen: &seen };
                placed
                    .iter()
                    .map(|&(seq, placed)| receipt(self.tree_size, &self.checkpoint, seq, placed, &hashes))
                    .collect()
            }
        }
    }

    /// The body of `/add-records` as JSON text: what [`Ingested::into_response`]
    /// serialises to, written straight from the receipts.
    pub fn into_json(self) -> Result<Vec<u8>, StoreError> {
        /// [`AddRecordsResponse`], borrowed: the same fields in the same order.
        #[derive(serde::Serialize)]
        struct Answer<'a> {
            checkpoint: &'a str,
            tree_size: u64,
            receipts: &'a [Receipt],
        }
        let (checkpoint, tree_size) = (self.checkpoint.clone(), self.tree_size);
        let receipts = self.into_receipts()?;
        let answer = Answer { checkpoint: &checkpoint, tree_size, receipts: &receipts };
        serde_json::to_vec(&answer).map_err(|e| StoreError::Inconsistent(format!("an answer's JSON: {e}")))
    }

    /// The body of `/add-records`.
    pub fn into_response(self) -> Result<AddRecordsResponse, StoreError> {
        let (checkpoint, tree_size) = (self.checkpoint.clone(), self.tree_size);
        // A receipt's JSON is an object of strings and numbers.
        let receipts = self.into_receipts()?.iter().map(Receipt::to_json_value).collect();
        Ok(AddRecordsResponse { checkpoint, tree_size, receipts })
    }
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
