//! The offline verifier: every check an auditor needs, in one pass over the log.
//!
//! Sans-IO: the caller feeds stored records in seq order ([`Verifier::push`]) and then
//! hands over receipts and anchors ([`Verifier::finish`]). Per record it checks, in
//! this order: the bytes decode; seq continues by one; the row key matches; the prev
//! hash is the previous entry hash; the signer's key is enrolled, CA-issued, valid and
//! not revoked at the record's time; the ECDSA signature verifies; a declared
//! co-signer co-signed (and nobody else did) — over the approval digest recomputed
//! from the facts for a reset intent that names its co-signer, else over the record
//! ([`cosigned_digest`]) —; the payload is canonical and an outcome
//! closes an earlier, still open intent with the right hash. At the end, every
//! receipt must be signed by a trusted collector and match the log (no truncation or
//! rewrite up to it), and every anchor (a signed record held elsewhere, e.g. a
//! heartbeat the collector received) must be present unchanged.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

use p256::ecdsa::signature::hazmat::PrehashVerifier;
use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_ASN1};

use super::event::{parse_payload, HeadRef, IntentRef, ParsedPayload, PayloadError, ReceiptRef};
use super::receipt::{merkle_root, CollectorKeys, Receipt, ReceiptError};
use super::record::{entry_hash, signing_digest, EventType, Hash32, Record, RecordError};
use super::resolver::{KeyResolver, ResolveError, ResolvedKey};
use crate::ca::CertError;
use crate::verification::co_signature::{approval_of_intent, ApprovalFactsError};

/// A record as stored: the signed bytes and signatures, under its row key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecord {
    /// The seq the store keeps the record under.
    pub row_seq: u64,
    pub record: Vec<u8>,
    pub signature: Vec<u8>,
    pub cosignature: Option<Vec<u8>>,
}

/// What is wrong with one record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error("malformed: {0}")]
    Malformed(#[from] RecordError),
    #[error("seq {found} where {expected} was due: record(s) {expected}..{} are missing", .found - 1)]
    Gap { expected: u64, found: u64 },
    #[error("seq {found} where {expected} was due: a record is duplicated or out of order")]
    Backwards { expected: u64, found: u64 },
    #[error("stored under seq {row} but the signed bytes say seq {inside}")]
    RowMismatch { row: u64, inside: u64 },
    #[error(
        "prev hash does not match the entry hash of the record before it: a record was changed, removed or reordered"
    )]
    BrokenChain,
    #[error("signer: {0}")]
    Signer(ResolveError),
    #[error("co-signer: {0}")]
    Cosigner(ResolveError),
    #[error("signed at {at} ms by `{subject}`, whose certificate was not valid then: {reason}")]
    CertificateNotValid { subject: String, at: u64, reason: CertError },
    #[error("signed at {at} ms by `{subject}`, whose token was revoked at {revoked} ms")]
    Revoked { subject: String, at: u64, revoked: u64 },
    #[error("signature does not verify with the key of `{0}`: the record was altered or signed by someone else")]
    BadSignature(String),
    #[error("the record names co-signer `{0}` but has no co-signature")]
    MissingCosignature(String),
    #[error("co-signature does not verify with the key of `{0}`")]
    BadCosignature(String),
    #[error("a co-signature is stored but the record names no co-signer")]
    UnexpectedCosignature,
    #[error("the reset intent's facts name a co-signer but its header does not: the co-signature was removed")]
    CosignerNotInHeader,
    #[error("the co-signer in the header is not the one the facts name")]
    CosignerMismatch,
    #[error("co-signed approval: {0}")]
    Approval(ApprovalFactsError),
    #[error("dated {at} ms, before the revocation recorded at seq {seq} ({revoked_at} ms) that precedes it: the desk's clock was set back to sign past a revocation")]
    BackdatedAcrossRevocation { at: u64, seq: u64, revoked_at: u64 },
    #[error("the revocation record names no key it revoked, or a key id that is not 32 bytes of hex")]
    BadRevocation,
    #[error("payload: {0}")]
    Payload(#[from] PayloadError),
    #[error("outcome refers to intent seq {0}, which is not an earlier reset intent")]
    UnknownIntent(u64),
    #[error("outcome refers to intent seq {0} with a different entry hash")]
    IntentHashMismatch(u64),
    #[error("intent seq {0} already has an outcome")]
    IntentClosedTwice(u64),
    #[error("the head this heartbeat states (seq {seq}) is not the record before it")]
    HeartbeatHeadMismatch { seq: u64 },
    #[error("heartbeat refers to a receipt for records 1..={0} that does not match this log")]
    HeartbeatReceiptMismatch(u64),
}

/// The first bad record, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRecord {
    pub seq: u64,
    pub problem: Problem,
}

impl fmt::Display for BadRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "record {}: {}", self.seq, self.problem)
    }
}
impl std::error::Error for BadRecord {}

/// A signed record held outside the log (e.g. a heartbeat the collector received).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anchor {
    pub record: Vec<u8>,
    pub signature: Vec<u8>,
}

/// Why the log as a whole fails against receipts or anchors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndProblem {
    #[error("receipt {index}: {source}")]
    Receipt { index: usize, source: ReceiptError },
    #[error("receipt {index} is for another log (log id {found}, this log's is {expected})")]
    OtherLog { index: usize, found: String, expected: String },
    #[error("receipt {index} covers records 1..={covered} but the log ends at seq {end}: the tail was truncated or the log rolled back")]
    Truncated { index: usize, covered: u64, end: u64 },
    #[error("receipt {index}: record {seq} differs from the one the collector received: the log was rewritten")]
    Rewritten { index: usize, seq: u64 },
    #[error("anchor {index}: {problem}")]
    Anchor { index: usize, problem: String },
    #[error(
        "anchor {index} is record {seq} but the log ends at seq {end}: the tail was truncated or the log rolled back"
    )]
    AnchorBeyondEnd { index: usize, seq: u64, end: u64 },
    #[error(
        "anchor {index}: record {seq} in the log differs from the signed copy held elsewhere: the log was rewritten"
    )]
    AnchorMismatch { index: usize, seq: u64 },
}

/// What a successful verification found.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Summary {
    pub records: u64,
    pub head_seq: u64,
    pub head_hash: Hash32,
    pub first_timestamp_ms: Option<u64>,
    pub last_timestamp_ms: Option<u64>,
    pub by_type: BTreeMap<&'static str, u64>,
    pub signers: BTreeMap<String, u64>,
    pub cosigned: u64,
    /// Intents without an outcome (to reconcile against the directory).
    pub open_intents: Vec<u64>,
    pub receipts_checked: usize,
    /// Highest seq covered by a verified receipt.
    pub receipted_up_to: u64,
    pub anchors_checked: usize,
    /// Records whose timestamp is earlier than the record before them (the desk's
    /// clock was set back): not a failure, but worth an auditor's look.
    pub clock_regressions: u64,
}

/// One-pass verifier over a resolver the caller lends: the offline form of
/// [`LogVerifier`]. See the module doc for the checks.
pub struct Verifier<'r> {
    resolver: &'r dyn KeyResolver,
    state: LogVerifier,
}

impl<'r> Verifier<'r> {
    pub fn new(resolver: &'r dyn KeyResolver) -> Self {
        Self { resolver, state: LogVerifier::new() }
    }

    /// Check the next stored record (in seq order).
    pub fn push(&mut self, stored: &StoredRecord) -> Result<(), BadRecord> {
        self.state.push(self.resolver, stored)
    }

    /// Check `records` (the next ones, in seq order) on `threads` threads: the same
    /// answer as pushing them one by one ([`LogVerifier::push_all`]).
    pub fn push_all(&mut self, records: &[StoredRecord], threads: usize) -> Result<(), BadRecord> {
        self.state.push_all(self.resolver, records, threads)
    }

    /// Check receipts and anchors against the whole log and return the summary.
    pub fn finish(
        self,
        receipts: &[Receipt],
        collectors: &CollectorKeys,
        anchors: &[Anchor],
    ) -> Result<Summary, EndProblem> {
        self.state.finish(self.resolver, receipts, collectors, anchors)
    }
}

/// The checks one record allows on its own, done ahead (possibly on another thread)
/// and read by the sequential pass in its usual order. A signature answer carries the
/// key it was checked with, so it is used only if that is the key resolved in order.
struct Precheck {
    decoded: Result<Record, RecordError>,
    hash: Hash32,
    payload: Option<Result<PayloadLinks, PayloadError>>,
    cosigned: Option<Result<Option<Hash32>, Problem>>,
    signature: Option<KeyAnswer>,
    cosignature: Option<KeyAnswer>,
}

/// What the in-order checks read of a parsed payload. The parse (a JSON tree) is
/// dropped where it was made, so a precheck thread frees it, not the collector's lock.
struct PayloadLinks {
    intent: Option<IntentRef>,
    head: Option<HeadRef>,
    last_receipt: Option<ReceiptRef>,
    /// For a `revocation` record: the keys its facts revoke (`None` if they name none
    /// well-formed, which the in-order check refuses).
    revokes: Option<Vec<Hash32>>,
}

impl PayloadLinks {
    fn of(event_type: EventType, parsed: ParsedPayload) -> Self {
        let revokes = match event_type {
            EventType::Revocation => revoked_key_ids(parsed.value.get("facts")),
            _ => None,
        };
        Self { intent: parsed.intent, head: parsed.head, last_receipt: parsed.last_receipt, revokes }
    }
}

/// [`parse_payload`], then what the in-order checks read of it, the digest the
/// co-signer signed ([`cosigned_digest`], from the same parse when there is one), and
/// what `also` makes of the parse (`None` if the payload did not parse).
fn payload_and_cosigned<T>(
    record: &Record,
    record_bytes: &[u8],
    also: impl FnOnce(Option<&ParsedPayload>) -> T,
) -> (Result<PayloadLinks, PayloadError>, Result<Option<Hash32>, Problem>, T) {
    match parse_payload(record.event_type, &record.payload) {
        Ok(parsed) => {
            let cosigned = cosigned_digest_of(record, record_bytes, Some(&parsed.value));
            let also = also(Some(&parsed));
            (Ok(PayloadLinks::of(record.event_type, parsed)), cosigned, also)
        }
        Err(e) => (Err(e), cosigned_digest(record, record_bytes), also(None)),
    }
}

/// The prechecks of one piece of a batch, in order, each with what `also` made.
type PrecheckedPiece<T> = Vec<(Precheck, Option<T>)>;

/// The `also` of a precheck that wants nothing more than the checks.
fn nothing_more(_: &Record, _: &Hash32, _: Option<&ParsedPayload>) {}

/// How the pieces of a precheck are run: a pace is handed each piece (a few records'
/// signature checks, about a millisecond) and runs it, when it likes, on the calling
/// thread. The collector's pace lets no more pieces run at once than it has cores
/// to spare, so that the thread sequencing batches is never made to wait for them.
pub type Pace<'a> = &'a (dyn Fn(&mut dyn FnMut()) + Sync);

/// The pace that runs every piece at once.
pub fn unpaced(piece: &mut dyn FnMut()) {
    piece()
}

/// A record with the checks it allows on its own already done, apart from any log
/// state ([`LogVerifier::precheck_apart`]), to be decided later in seq order by
/// [`LogVerifier::push_prechecked_record`]. The collector prechecks a request's
/// records outside its lock, on the request's thread, and decides under the lock.
pub struct Prechecked {
    stored: StoredRecord,
    pre: Precheck,
}

impl Prechecked {
    pub fn stored(&self) -> &StoredRecord {
        &self.stored
    }

    /// The record's entry hash, as the precheck computed it (`None` if the record did
    /// not decode, when it was not computed).
    pub fn entry_hash(&self) -> Option<Hash32> {
        self.pre.decoded.is_ok().then_some(self.pre.hash)
    }
}

/// A key's answers for one record: its certificate valid at the record's time, and
/// the signature valid, as checked with this key.
struct KeyAnswer {
    key: Arc<ResolvedKey>,
    valid_then: Result<(), Problem>,
    signature_ok: bool,
}

/// The resumable state of one desk log's verification: everything the checks of the
/// next record need (seq, prev hash, open intents, revocations seen), and nothing
/// about where records come from. The offline verifier feeds it a whole log at once;
/// the collector keeps one per desk log and feeds it batch by batch, with a resolver
/// that learns certificates as desks send them. A record that fails leaves the
/// state as it was, so the next submission is checked against the same head.
#[derive(Debug, Clone, Default)]
pub struct LogVerifier {
    /// Keys resolved so far. Only successes are kept: a key unknown now may be
    /// enrolled by the time the next record arrives.
    keys: HashMap<Hash32, Arc<ResolvedKey>>,
    leaves: Vec<Hash32>,
    open_intents: BTreeMap<u64, Hash32>,
    intents: HashSet<u64>,
    /// Records per signing key; turned into subjects at the end (no per-record clone).
    per_key: HashMap<Hash32, u64>,
    /// Keys revoked by `revocation` records so far: when (UTC ms).
    revoked: HashMap<Hash32, u64>,
    /// The latest revocation so far: (seq, UTC ms). No later record may be dated before it.
    last_revocation: Option<(u64, u64)>,
    /// Keys revoked by `revocation` records of other logs (the collector learns them
    /// from every desk): when (UTC ms). Set per batch by its owner, not replayed.
    revoked_elsewhere: HashMap<Hash32, u64>,
    summary: Summary,
}

impl LogVerifier {
    pub fn new() -> Self {
        Self::default()
    }

    /// The seq the next record must carry.
    pub fn next_seq(&self) -> u64 {
        self.leaves.len() as u64 + 1
    }

    /// The entry hash of record `seq`, if it has been verified.
    pub fn entry_hash_of(&self, seq: u64) -> Option<Hash32> {
        seq.checked_sub(1).and_then(|i| self.leaves.get(usize::try_from(i).ok()?)).copied()
    }

    /// Keys revoked in other logs (key id, UTC ms of the revocation record): from now
    /// on this log's records signed or co-signed by one of them and dated at or after
    /// its revocation are refused, as if this log held the revocation record. Replaces
    /// what an earlier call set; a log replayed from storage is replayed without them
    /// (its records were accepted before the revocation was known).
    pub fn set_revoked_elsewhere(&mut self, revoked: HashMap<Hash32, u64>) {
        self.revoked_elsewhere = revoked;
    }

    /// Drop the cached keys, so that the resolver is asked again (after it learnt of a
    /// revocation, say).
    pub fn forget_keys(&mut self) {
        self.keys.clear();
    }

    /// What has been verified so far (receipts and signers are filled in by `finish`).
    pub fn summary(&self) -> &Summary {
        &self.summary
    }

    fn key(&mut self, resolver: &dyn KeyResolver, id: &Hash32) -> Result<Arc<ResolvedKey>, ResolveError> {
        if let Some(k) = self.keys.get(id) {
            return Ok(Arc::clone(k));
        }
        let k = resolver.resolve(id)?;
        self.keys.insert(*id, Arc::clone(&k));
        Ok(k)
    }

    /// Check the next stored record (in seq order) with keys from `resolver`; on
    /// success the record is part of the verified log, on failure nothing changed.
    pub fn push(&mut self, resolver: &dyn KeyResolver, stored: &StoredRecord) -> Result<(), BadRecord> {
        let (pre, _) = self.precheck(stored, &nothing_more);
        self.push_prechecked(resolver, stored, pre)
    }

    /// [`LogVerifier::push`] for each of `records` in order, with the checks a record
    /// allows on its own (decoding, hashing, the payload, and the signatures by keys
    /// already known) spread over `threads` threads, chunk by chunk. The result is the
    /// same as pushing one by one (the same first bad record and problem, the same
    /// summary): the sequential pass decides in the same order and only reads the
    /// precomputed answers, computing itself what a chunk could not know (the key of a
    /// signer first seen in it).
    pub fn push_all(
        &mut self,
        resolver: &dyn KeyResolver,
        records: &[StoredRecord],
        threads: usize,
    ) -> Result<(), BadRecord> {
        const CHUNK: usize = 1024;
        for chunk in records.chunks(CHUNK) {
            self.learn_keys(resolver, chunk);
            let prechecked = self.precheck_all(chunk, threads, &unpaced, &nothing_more);
            for (stored, (pre, _)) in chunk.iter().zip(prechecked) {
                self.push_prechecked(resolver, stored, pre)?;
            }
        }
        Ok(())
    }

    /// The prechecks of [`LogVerifier::push_all`] without a log: decoding, hashing, the
    /// payload, and the signatures by the keys `resolver` knows now, on `threads`
    /// threads. Pushing the results in order with [`LogVerifier::push_prechecked_record`]
    /// answers exactly as [`LogVerifier::push`] would: an answer checked with a key that
    /// is no longer the one resolved at push time (a certificate replaced meanwhile) is
    /// ignored and the check done again.
    pub fn precheck_apart(resolver: &dyn KeyResolver, records: Vec<StoredRecord>, threads: usize) -> Vec<Prechecked> {
        Self::precheck_apart_with(resolver, records, threads, &unpaced, &nothing_more)
            .into_iter()
            .map(|(p, _)| p)
            .collect()
    }

    /// [`LogVerifier::precheck_apart`], and for each record that decodes, what `also`
    /// makes of it, its entry hash and its parsed payload (`None` if that does not
    /// parse), on the same threads from the same parse (the collector's followers
    /// read the payload too). `None` for a record that does not decode. Each piece
    /// of the work runs through `pace`.
    pub fn precheck_apart_with<T: Send>(
        resolver: &dyn KeyResolver,
        records: Vec<StoredRecord>,
        threads: usize,
        pace: Pace<'_>,
        also: &(dyn Fn(&Record, &Hash32, Option<&ParsedPayload>) -> T + Sync),
    ) -> Vec<(Prechecked, Option<T>)> {
        let mut keys_only = LogVerifier::new();
        keys_only.learn_keys(resolver, &records);
        let pre = keys_only.precheck_all(&records, threads, pace, also);
        records.into_iter().zip(pre).map(|(stored, (pre, t))| (Prechecked { stored, pre }, t)).collect()
    }

    /// [`LogVerifier::push`] of a record prechecked apart; on success the record is
    /// part of the verified log and handed back, on failure nothing changed.
    pub fn push_prechecked_record(
        &mut self,
        resolver: &dyn KeyResolver,
        record: Prechecked,
    ) -> Result<StoredRecord, BadRecord> {
        let Prechecked { stored, pre } = record;
        self.push_prechecked(resolver, &stored, pre)?;
        Ok(stored)
    }

    /// Resolve the keys `records` name ahead of the checks, so that their signatures can
    /// be prechecked. Only successes are kept (as in order); a key that does not
    /// resolve is asked again, and refused, at its record.
    fn learn_keys(&mut self, resolver: &dyn KeyResolver, records: &[StoredRecord]) {
        for stored in records {
            let Ok(record) = Record::decode(&stored.record) else { continue };
            for id in std::iter::once(record.key_id).chain(record.cosigner_key_id) {
                let _unknown_now_refused_in_order = self.key(resolver, &id);
            }
        }
    }

    fn precheck_all<T: Send>(
        &self,
        records: &[StoredRecord],
        threads: usize,
        pace: Pace<'_>,
        also: &(dyn Fn(&Record, &Hash32, Option<&ParsedPayload>) -> T + Sync),
    ) -> Vec<(Precheck, Option<T>)> {
        // Threads take small pieces in turn rather than one share each: when other
        // work shares the cores (the collector's other requests), a thread slowed down
        // then holds up the batch by one piece, not by a share.
        const PIECE: usize = 16;
        let run_piece = |piece: &[StoredRecord]| {
            let mut out = Vec::new();
            pace(&mut || out = piece.iter().map(|r| self.precheck(r, also)).collect());
            out
        };
        let threads = threads.clamp(1, records.len().max(1));
        if threads == 1 {
            return records.chunks(PIECE).flat_map(run_piece).collect();
        }
        let pieces: Vec<&[StoredRecord]> = records.chunks(PIECE).collect();
        let next = std::sync::atomic::AtomicUsize::new(0);
        let mut done: Vec<(usize, PrecheckedPiece<T>)> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..threads)
                .map(|_| {
                    let (pieces, next, run_piece) = (&pieces, &next, &run_piece);
                    scope.spawn(move || {
                        let mut mine = Vec::new();
                        loop {
                            let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            let Some(piece) = pieces.get(k) else { return mine };
                            mine.push((k, run_piece(piece)));
                        }
                    })
                })
                .collect();
            workers
                .into_iter()
                .flat_map(|w| match w.join() {
                    Ok(mine) => mine,
                    // A precheck that panicked is re-raised here: it is a bug, not bad input.
                    Err(panic) => std::panic::resume_unwind(panic),
                })
                .collect()
        });
        // Back in record order.
        done.sort_unstable_by_key(|(k, _)| *k);
        done.into_iter().flat_map(|(_, piece)| piece).collect()
    }

    /// What one record allows checking without the log's state, and what `also`
    /// makes of it (if it decodes). Pure.
    fn precheck<T>(
        &self,
        stored: &StoredRecord,
        also: &(dyn Fn(&Record, &Hash32, Option<&ParsedPayload>) -> T + Sync),
    ) -> (Precheck, Option<T>) {
        let decoded = Record::decode(&stored.record);
        let Ok(record) = &decoded else {
            let pre =
                Precheck { decoded, hash: [0; 32], payload: None, cosigned: None, signature: None, cosignature: None };
            return (pre, None);
        };
        let hash = entry_hash(&stored.record);
        let known = |id: &Hash32| self.keys.get(id).cloned();
        let at = record.timestamp_ms;
        let signature = known(&record.key_id).map(|key| KeyAnswer {
            valid_then: check_key_at(&key, at),
            signature_ok: signature_valid(&key, &stored.record, &stored.signature),
            key,
        });
        let (payload, cosigned, also) = payload_and_cosigned(record, &stored.record, |p| also(record, &hash, p));
        let cosignature = match (record.cosigner_key_id, &stored.cosignature, &cosigned) {
            (Some(id), Some(sig), Ok(digest)) => known(&id).map(|key| KeyAnswer {
                valid_then: check_key_at(&key, at),
                signature_ok: signature_valid_over(&key, &digest.unwrap_or_default(), sig),
                key,
            }),
            _ => None,
        };
        let pre = Precheck { hash, payload: Some(payload), cosigned: Some(cosigned), signature, cosignature, decoded };
        (pre, Some(also))
    }

    fn push_prechecked(
        &mut self,
        resolver: &dyn KeyResolver,
        stored: &StoredRecord,
        pre: Precheck,
    ) -> Result<(), BadRecord> {
        let expected = self.leaves.len() as u64 + 1;
        // Records are named by where they are stored: that is where an auditor looks.
        let bad = |problem: Problem| BadRecord { seq: stored.row_seq, problem };
        let Precheck { decoded, hash, payload, cosigned, signature, cosignature } = pre;
        let record = decoded.map_err(|e| bad(e.into()))?;
        // Each answer counts only if it was computed with the very key resolved now.
        let answer = |pre: Option<KeyAnswer>, key: &Arc<ResolvedKey>| pre.filter(|a| Arc::ptr_eq(&a.key, key));
        let cosigned = || cosigned.clone().unwrap_or_else(|| cosigned_digest(&record, &stored.record));
        if record.seq > expected {
            return Err(bad(Problem::Gap { expected, found: record.seq }));
        }
        if record.seq < expected {
            return Err(bad(Problem::Backwards { expected, found: record.seq }));
        }
        if stored.row_seq != record.seq {
            return Err(bad(Problem::RowMismatch { row: stored.row_seq, inside: record.seq }));
        }
        let prev = self.leaves.last().copied().unwrap_or([0; 32]);
        if record.prev_hash != prev {
            return Err(bad(Problem::BrokenChain));
        }

        if let Some((seq, revoked_at)) = self.last_revocation {
            if record.timestamp_ms < revoked_at {
                return Err(bad(Problem::BackdatedAcrossRevocation { at: record.timestamp_ms, seq, revoked_at }));
            }
        }
        let signer = self.key(resolver, &record.key_id).map_err(|e| bad(Problem::Signer(e)))?;
        let signature = answer(signature, &signer);
        match &signature {
            Some(a) => a.valid_then.clone(),
            None => check_key_at(&signer, record.timestamp_ms),
        }
        .map_err(bad)?;
        self.check_not_revoked_by_record(&signer, record.timestamp_ms).map_err(bad)?;
        let valid =
            signature.map_or_else(|| signature_valid(&signer, &stored.record, &stored.signature), |a| a.signature_ok);
        if !valid {
            return Err(bad(Problem::BadSignature(signer.subject.clone())));
        }

        let parsed = payload
            .unwrap_or_else(|| {
                parse_payload(record.event_type, &record.payload).map(|p| PayloadLinks::of(record.event_type, p))
            })
            .map_err(|e| bad(e.into()))?;
        match (record.cosigner_key_id, &stored.cosignature) {
            (None, cosig) => {
                if cosig.is_some() {
                    return Err(bad(Problem::UnexpectedCosignature));
                }
                if cosigned().map_err(bad)?.is_some() {
                    return Err(bad(Problem::CosignerNotInHeader));
                }
            }
            (Some(id), cosig) => {
                let co = self.key(resolver, &id).map_err(|e| bad(Problem::Cosigner(e)))?;
                let cosignature = answer(cosignature, &co);
                match &cosignature {
                    Some(a) => a.valid_then.clone(),
                    None => check_key_at(&co, record.timestamp_ms),
                }
                .map_err(bad)?;
                self.check_not_revoked_by_record(&co, record.timestamp_ms).map_err(bad)?;
                let cosig = cosig.as_ref().ok_or_else(|| bad(Problem::MissingCosignature(co.subject.clone())))?;
                let digest = cosigned().map_err(bad)?.unwrap_or_default();
                let valid = cosignature.map_or_else(|| signature_valid_over(&co, &digest, cosig), |a| a.signature_ok);
                if !valid {
                    return Err(bad(Problem::BadCosignature(co.subject.clone())));
                }
                self.summary.cosigned += 1;
            }
        }

        match record.event_type {
            EventType::ResetIntent => {
                self.open_intents.insert(record.seq, hash);
                self.intents.insert(record.seq);
            }
            EventType::ResetOutcome => {
                // parse_payload guarantees an outcome carries its intent link.
                let Some(link) = parsed.intent else { return Err(bad(Problem::Payload(PayloadError::BadOutcome))) };
                match self.open_intents.get(&link.seq).copied() {
                    Some(h) if h == link.entry_hash => {
                        self.open_intents.remove(&link.seq);
                    }
                    Some(_) => return Err(bad(Problem::IntentHashMismatch(link.seq))),
                    None if self.intents.contains(&link.seq) => return Err(bad(Problem::IntentClosedTwice(link.seq))),
                    None => return Err(bad(Problem::UnknownIntent(link.seq))),
                }
            }
            EventType::Revocation => {
                let keys = parsed.revokes.ok_or_else(|| bad(Problem::BadRevocation))?;
                for key in keys {
                    self.revoked.entry(key).or_insert(record.timestamp_ms);
                }
                self.last_revocation = Some((record.seq, record.timestamp_ms));
            }
            t if t.is_heartbeat() => {
                // parse_payload guarantees a heartbeat states its head.
                let head = parsed.head.unwrap_or_default();
                if head.seq.checked_add(1) != Some(record.seq) || head.entry_hash != prev {
                    return Err(bad(Problem::HeartbeatHeadMismatch { seq: head.seq }));
                }
                if let Some(r) = parsed.last_receipt {
                    let at = r.tree_size.checked_sub(1).and_then(|i| self.leaves.get(i as usize));
                    if at != Some(&r.head_hash) {
                        return Err(bad(Problem::HeartbeatReceiptMismatch(r.tree_size)));
                    }
                }
            }
            _ => {}
        }

        self.leaves.push(hash);
        let s = &mut self.summary;
        s.records += 1;
        s.head_seq = record.seq;
        s.head_hash = hash;
        s.first_timestamp_ms.get_or_insert(record.timestamp_ms);
        if s.last_timestamp_ms.is_some_and(|last| record.timestamp_ms < last) {
            s.clock_regressions += 1;
        }
        s.last_timestamp_ms = Some(record.timestamp_ms);
        *s.by_type.entry(record.event_type.as_str()).or_default() += 1;
        *self.per_key.entry(record.key_id).or_default() += 1;
        Ok(())
    }

    /// A key named by an earlier `revocation` record signs nothing dated at or after it
    /// (this holds without the registry, e.g. for an export).
    fn check_not_revoked_by_record(&self, key: &ResolvedKey, at: u64) -> Result<(), Problem> {
        let here = self.revoked.get(&key.key_id).copied();
        let elsewhere = self.revoked_elsewhere.get(&key.key_id).copied();
        match here.into_iter().chain(elsewhere).min() {
            Some(revoked) if at >= revoked => Err(Problem::Revoked { subject: key.subject.clone(), at, revoked }),
            _ => Ok(()),
        }
    }

    /// Check receipts and anchors against the whole log and return the summary.
    pub fn finish(
        mut self,
        resolver: &dyn KeyResolver,
        receipts: &[Receipt],
        collectors: &CollectorKeys,
        anchors: &[Anchor],
    ) -> Result<Summary, EndProblem> {
        let end = self.leaves.len() as u64;
        let log_id = self.leaves.first().copied();
        for (i, r) in receipts.iter().enumerate() {
            let index = i + 1;
            r.verify(collectors).map_err(|source| EndProblem::Receipt { index, source })?;
            let covered = r.covered_seq();
            if covered > end {
                return Err(EndProblem::Truncated { index, covered, end });
            }
            if let Receipt::Legacy(legacy) = r {
                let cp = &legacy.checkpoint;
                // tree_size >= 1 (Checkpoint::decode) and <= end, so the log is not empty.
                let expected = log_id.unwrap_or([0; 32]);
                if cp.log_id != expected {
                    return Err(EndProblem::OtherLog {
                        index,
                        found: hex::encode(cp.log_id),
                        expected: hex::encode(expected),
                    });
                }
                if merkle_root(&self.leaves[..cp.tree_size as usize]) != cp.root_hash {
                    return Err(EndProblem::Rewritten { index, seq: cp.tree_size });
                }
            }
            // A v2 receipt proves the collector logged this entry hash; entry hashes
            // chain, so records 1..=covered must be the ones it received.
            if self.entry_hash_of(covered) != Some(r.covered_entry_hash()) {
                return Err(EndProblem::Rewritten { index, seq: covered });
            }
            self.summary.receipted_up_to = self.summary.receipted_up_to.max(covered);
        }
        self.summary.receipts_checked = receipts.len();

        for (i, a) in anchors.iter().enumerate() {
            let index = i + 1;
            let anchor_problem = |problem: String| EndProblem::Anchor { index, problem };
            let record = Record::decode(&a.record).map_err(|e| anchor_problem(e.to_string()))?;
            let key = self.key(resolver, &record.key_id).map_err(|e| anchor_problem(e.to_string()))?;
            if !signature_valid(&key, &a.record, &a.signature) {
                return Err(anchor_problem(format!("its signature does not verify with the key of `{}`", key.subject)));
            }
            if record.seq > end {
                return Err(EndProblem::AnchorBeyondEnd { index, seq: record.seq, end });
            }
            // 1 <= seq <= end: Record::decode refuses seq 0.
            if self.leaves[(record.seq - 1) as usize] != entry_hash(&a.record) {
                return Err(EndProblem::AnchorMismatch { index, seq: record.seq });
            }
        }
        self.summary.anchors_checked = anchors.len();
        for (id, n) in std::mem::take(&mut self.per_key) {
            // Every counted key resolved when its record was checked.
            let who = self.key(resolver, &id).map(|k| k.subject.clone()).unwrap_or_else(|_| hex::encode(id));
            *self.summary.signers.entry(who).or_default() += n;
        }
        self.summary.open_intents = self.open_intents.keys().copied().collect();
        Ok(self.summary)
    }
}

/// What a record's co-signer signs: for a reset intent whose facts name a co-signer,
/// the approval digest recomputed from the facts (the second agent's card signed it
/// when they approved, before the record existed; the header must name the same key);
/// for any other record, the record's signing digest, like the main signature.
/// `Ok(None)` when the record declares no co-signer and its facts name none.
pub fn cosigned_digest(record: &Record, record_bytes: &[u8]) -> Result<Option<Hash32>, Problem> {
    let payload = match record.event_type {
        EventType::ResetIntent => Some(
            serde_json::from_slice::<serde_json::Value>(&record.payload)
                .map_err(|e| Problem::Payload(PayloadError::NotJson(e.to_string())))?,
        ),
        _ => None,
    };
    cosigned_digest_of(record, record_bytes, payload.as_ref())
}

/// [`cosigned_digest`] with the record's payload already parsed (`payload`: the JSON of
/// `record.payload`; read only for a reset intent, which must have it).
fn cosigned_digest_of(
    record: &Record,
    record_bytes: &[u8],
    payload: Option<&serde_json::Value>,
) -> Result<Option<Hash32>, Problem> {
    let stated = match record.event_type {
        EventType::ResetIntent => {
            let value = payload.ok_or(Problem::Payload(PayloadError::NoFacts))?;
            let facts = value.get("facts").ok_or(Problem::Payload(PayloadError::NoFacts))?;
            approval_of_intent(facts).map_err(Problem::Approval)?
        }
        _ => None,
    };
    match (stated, record.cosigner_key_id) {
        (Some(stated), Some(id)) if stated.key_id_hex.eq_ignore_ascii_case(&hex::encode(id)) => Ok(Some(stated.digest)),
        (Some(_), Some(_)) => Err(Problem::CosignerMismatch),
        (Some(stated), None) => Ok(Some(stated.digest)),
        (None, Some(_)) => Ok(Some(signing_digest(record_bytes))),
        (None, None) => Ok(None),
    }
}

/// The keys a verified record revokes, if it is a `revocation` record: (key ids, the
/// record's time in UTC ms). For a collector spreading revocations across desk logs.
pub fn revocation_of(record: &Record) -> Option<(Vec<Hash32>, u64)> {
    if record.event_type != EventType::Revocation {
        return None;
    }
    let parsed = parse_payload(record.event_type, &record.payload).ok()?;
    Some((revoked_key_ids(parsed.value.get("facts"))?, record.timestamp_ms))
}

/// The key ids a `revocation` record's facts name (`facts.keys[].key_id`); `None` if
/// there are none or one is not 32 bytes of hex.
fn revoked_key_ids(facts: Option<&serde_json::Value>) -> Option<Vec<Hash32>> {
    let keys = facts?.get("keys")?.as_array()?;
    let ids: Option<Vec<Hash32>> = keys
        .iter()
        .map(|k| k.get("key_id")?.as_str().and_then(|h| hex::decode(h).ok()).and_then(|b| b.try_into().ok()))
        .collect();
    ids.filter(|ids| !ids.is_empty())
}

/// ECDSA P-256 over a 32-byte digest (DER signature) with `key`.
pub fn signature_valid_over(key: &ResolvedKey, digest: &Hash32, signature: &[u8]) -> bool {
    let Ok(public) = p256::ecdsa::VerifyingKey::from_sec1_bytes(&key.public_key) else { return false };
    let Ok(signature) = p256::ecdsa::Signature::from_der(signature) else { return false };
    public.verify_prehash(digest, &signature).is_ok()
}

/// ECDSA P-256 over SHA-256(`record`), DER signature, with `key`.
pub fn signature_valid(key: &ResolvedKey, record: &[u8], signature: &[u8]) -> bool {
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, &key.public_key).verify(record, signature).is_ok()
}

/// The key's certificate (and its CA's) is valid and not revoked at `at` (UTC ms):
/// the validity rule login applies at its time ([`crate::ca::AgentCert::check_time`]).
pub fn check_key_at(key: &ResolvedKey, at: u64) -> Result<(), Problem> {
    let not_valid = |reason| Problem::CertificateNotValid { subject: key.subject.clone(), at, reason };
    let instant = i128::from(at)
        .checked_mul(1_000_000)
        .and_then(|ns| time::OffsetDateTime::from_unix_timestamp_nanos(ns).ok())
        .ok_or_else(|| not_valid(CertError::Malformed(format!("record time {at} ms is out of range"))))?;
    key.certificate.check_time(instant).map_err(not_valid)?;
    if let Some(revoked) = key.revoked_at_ms {
        if at >= revoked {
            return Err(Problem::Revoked { subject: key.subject.clone(), at, revoked });
        }
    }
    Ok(())
}
