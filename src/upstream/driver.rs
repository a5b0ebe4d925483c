//! The sync driver: drives the sans-IO [`SyncSchedule`] against the desk's audit store
//! and a collector. Each step posts the next batch of records in seq order, checks
//! every receipt (signed by the configured collector key, its inclusion proof, the
//! record it names is this log's), witnesses the collector's checkpoint (consistent
//! with the one the desk holds, [`super::witness`]) and only then stores the receipts,
//! all of a batch in one transaction. A record stays queued until a stored receipt
//! covers it; after a restart the schedule starts from the stored receipts. A receipt
//! or checkpoint that fails a check is refused: nothing of the batch is stored, an
//! alert row is kept (`sync_alerts`), the error is in the state, and the records are
//! sent again after the schedule's backoff.
//!
//! Each step blocks (SQLite, one HTTPS call). The app runs the driver as a background
//! tokio task ([`SyncDriver::run_task`]: steps on the blocking pool, waits as timers);
//! `resetdesk sync --watch` on a thread ([`SyncDriver::run`]); `resetdesk sync` runs one
//! pass ([`SyncDriver::sync_once`]). The state it shows is a [`SyncReport`]
//! behind a [`SyncHandle`].

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::client::{ClientError, CollectorClient};
use super::wire::encode_batch;
use super::witness::{check_consistency, proof_needed, ForkError};
use crate::audit::log::check_receipt_matches;
use crate::audit::receipt::ReceiptError;
use crate::audit::record::{entry_hash, Record};
use crate::audit::store::{Store, StoreError, FILE_NAME};
use crate::audit::verify::StoredRecord;
use crate::audit::{verify_signed_checkpoint, AuditError, CollectorKeys, Hash32, LogCheckpoint, Receipt};
use crate::sync::{SyncAction, SyncSchedule, SyncSettings, SyncStatus};

/// Why a sync step failed. The records stay queued in every case.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("upstream sync is not set up: {0}")]
    Setup(String),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the audit log has no record {0} though its head is later; run `resetdesk audit verify`")]
    Missing(u64),
    #[error("the collector answered {got} receipt(s) for a batch of {sent}, or not in the batch's order; its answer was refused")]
    ReceiptCount { sent: usize, got: usize },
    #[error("the collector's receipt for seq {seq} was refused: {why}")]
    BadReceipt { seq: u64, why: ReceiptError },
    #[error("the collector's receipt for seq {seq} names another record than this desk's (altered in transit, or another log); it was refused")]
    ReceiptMismatch { seq: u64 },
    #[error("the collector's checkpoint was refused: {0}")]
    BadCheckpoint(ReceiptError),
    #[error("the collector checkpoint this desk holds no longer verifies with [collector] verifier_key ({0}); was the key changed?")]
    HeldCheckpoint(ReceiptError),
    #[error(transparent)]
    Fork(#[from] ForkError),
}

impl SyncError {
    /// The alert kind this failure is kept under, if it is one (a check failed, or the
    /// collector refused the desk's records), not a passing outage.
    pub fn alert_kind(&self) -> Option<&'static str> {
        match self {
            SyncError::BadReceipt { .. } | SyncError::ReceiptCount { .. } | SyncError::BadCheckpoint(_) => {
                Some("bad_receipt")
            }
            SyncError::ReceiptMismatch { .. } => Some("receipt_mismatch"),
            SyncError::Fork(_) | SyncError::HeldCheckpoint(_) => Some("fork"),
            SyncError::Client(ClientError::Refused { status: 403 | 409 | 422, .. }) => Some("refused"),
            _ => None,
        }
    }
}

/// Where the certificates of a batch's signers come from (the collector must know
/// each signer's certificate; it keeps them, re-sending is harmless).
pub trait CertificateSource {
    /// The DER certificate of the key `key_id` (SHA-256 of its SubjectPublicKeyInfo).
    fn certificate(&self, key_id: &Hash32) -> Result<Option<Vec<u8>>, String>;
}

/// The desk's token registry (`<data_dir>/tokens.sqlite`), read afresh for each batch.
pub struct RegistryCertificates {
    pub data_dir: PathBuf,
}

impl CertificateSource for RegistryCertificates {
    fn certificate(&self, key_id: &Hash32) -> Result<Option<Vec<u8>>, String> {
        let registry =
            crate::token::registry::TokenRegistry::open_existing(&self.data_dir).map_err(|e| e.to_string())?;
        Ok(registry.by_key_id(key_id).map_err(|e| e.to_string())?.map(|k| k.cert_der))
    }
}

/// Certificates held in memory by key id (e.g. from an export's `certs/`).
#[derive(Debug, Clone, Default)]
pub struct CertificateSet(HashMap<Hash32, Vec<u8>>);

impl CertificateSet {
    /// Add a DER certificate under its key's id.
    pub fn add_der(&mut self, der: Vec<u8>) -> Result<Hash32, String> {
        use der::{Decode as _, Encode as _};
        use sha2::Digest as _;
        let cert = x509_cert::Certificate::from_der(&der).map_err(|e| format!("not an X.509 certificate: {e}"))?;
        let spki = cert.tbs_certificate.subject_public_key_info.to_der().map_err(|e| e.to_string())?;
        let id: Hash32 = sha2::Sha256::digest(spki).into();
        self.0.insert(id, der);
        Ok(id)
    }
}

impl CertificateSource for CertificateSet {
    fn certificate(&self, key_id: &Hash32) -> Result<Option<Vec<u8>>, String> {
        Ok(self.0.get(key_id).cloned())
    }
}

/// The newest receipt the desk holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReceiptSummary {
    /// The desk-log seq it covers (records 1..=seq are vouched for).
    pub seq: u64,
    /// Its leaf in the collector's log.
    pub leaf_index: u64,
    /// The size of the collector's tree in its checkpoint.
    pub tree_size: u64,
}

/// What the app and the CLI show of the sync. Secret-free.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SyncReport {
    pub collector: String,
    #[serde(flatten)]
    pub status: SyncStatus,
    pub last_receipt: Option<ReceiptSummary>,
    /// The size of the largest collector tree the desk witnessed.
    pub witnessed_size: Option<u64>,
    /// The latest durable alert (`kind: detail`), if there ever was one.
    pub alert: Option<String>,
}

impl SyncReport {
    /// One line for a person.
    pub fn describe(&self) -> String {
        let s = &self.status;
        let mut out = match (&self.last_receipt, s.queued) {
            (Some(r), 0) => format!("synced to {}: every record up to seq {} has a receipt", self.collector, r.seq),
            (Some(r), q) => format!("{q} record(s) waiting for {} (receipts up to seq {})", self.collector, r.seq),
            (None, 0) => format!("nothing to send to {} yet (the audit log is empty)", self.collector),
            (None, q) => format!("{q} record(s) waiting for {} (no receipt yet)", self.collector),
        };
        if let Some(e) = &s.last_error {
            out.push_str(&format!("; collector unreachable or refusing ({} failure(s) in a row): {e}", s.failures));
        }
        if let Some(a) = &self.alert {
            out.push_str(&format!("; ALERT {a}"));
        }
        out
    }
}

/// The driver's state, shared with whoever shows it.
#[derive(Debug, Clone)]
pub struct SyncHandle(Arc<Mutex<SyncReport>>);

impl SyncHandle {
    pub fn report(&self) -> SyncReport {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

/// What one step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// A batch was accepted: receipts now cover records up to `covered`.
    Sent { first: u64, covered: u64 },
    /// A failure's backoff runs for this long still.
    Wait(Duration),
    /// Every record has a receipt.
    Idle,
}

/// The upstream sync of one desk's audit log.
pub struct SyncDriver {
    store: Store,
    client: CollectorClient,
    keys: CollectorKeys,
    certificates: Box<dyn CertificateSource + Send>,
    schedule: SyncSchedule,
    shared: SyncHandle,
    started: Instant,
    last_receipt: Option<ReceiptSummary>,
    witnessed_size: Option<u64>,
    alert: Option<String>,
}

/// The trusted collector keys of `[collector]`: `verifier_key`, and/or the key in
/// `receipt_key_file`.
pub fn collector_keys(config: &crate::config::CollectorConfig) -> Result<CollectorKeys, SyncError> {
    let mut keys = CollectorKeys::default();
    if let Some(k) = &config.verifier_key {
        keys.add_verifier_key(k).map_err(|e| SyncError::Setup(format!("[collector] verifier_key: {e}")))?;
    }
    if let Some(path) = &config.receipt_key_file {
        let text = std::fs::read_to_string(path).map_err(|e| {
            SyncError::Setup(format!("cannot read [collector] receipt_key_file {}: {e}", path.display()))
        })?;
        keys.add_text(&text).map_err(|e| SyncError::Setup(format!("{}: {e}", path.display())))?;
    }
    if keys.is_empty() {
        return Err(SyncError::Setup(
            "[collector] has a url but no verifier_key (or receipt_key_file): receipts could not be checked; \
             set it to what `resetdesk-collector init` printed"
                .into(),
        ));
    }
    Ok(keys)
}

fn wall_ms() -> u64 {
    crate::audit::log::unix_ms(time::OffsetDateTime::now_utc()).unwrap_or(0)
}

impl SyncDriver {
    /// The driver of `config`'s `[collector]`, over the data directory's audit log and
    /// token registry; `None` when no collector is configured.
    pub fn from_config(config: &crate::config::Config) -> Result<Option<Self>, SyncError> {
        if config.collector.url.is_empty() {
            return Ok(None);
        }
        let keys = collector_keys(&config.collector)?;
        let client = CollectorClient::from_config(&config.collector)?;
        let certificates = Box::new(RegistryCertificates { data_dir: config.data_dir.clone() });
        Self::new(&config.data_dir.join(FILE_NAME), client, keys, certificates, SyncSettings::default()).map(Some)
    }

    /// A driver over the audit database at `db`, starting after its stored receipts.
    pub fn new(
        db: &Path,
        client: CollectorClient,
        keys: CollectorKeys,
        certificates: Box<dyn CertificateSource + Send>,
        settings: SyncSettings,
    ) -> Result<Self, SyncError> {
        let store = Store::open(db)?;
        let head = store.head()?.map(|(seq, _)| seq).unwrap_or(0);
        let receipts = store.receipts()?;
        let acknowledged = receipts.iter().map(Receipt::covered_seq).max().unwrap_or(0);
        let last_receipt = receipts.iter().max_by_key(|r| r.covered_seq()).and_then(|r| summary(r, &keys));
        let witnessed_size = match store.latest_checkpoint_note()? {
            Some(note) => verify_signed_checkpoint(&note, &keys).ok().map(|c| c.tree_size),
            None => None,
        };
        let alert = store.alerts()?.pop().map(|a| format!("{}: {}", a.kind, a.detail));
        let schedule = SyncSchedule::new(settings, head, acknowledged);
        let report = SyncReport {
            collector: client.url().to_owned(),
            status: schedule.status(),
            last_receipt: last_receipt.clone(),
            witnessed_size,
            alert: alert.clone(),
        };
        Ok(Self {
            store,
            client,
            keys,
            certificates,
            schedule,
            shared: SyncHandle(Arc::new(Mutex::new(report))),
            started: Instant::now(),
            last_receipt,
            witnessed_size,
            alert,
        })
    }

    /// The state, for another thread to show.
    pub fn handle(&self) -> SyncHandle {
        self.shared.clone()
    }

    pub fn report(&self) -> SyncReport {
        self.shared.report()
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn publish(&self) {
        let report = SyncReport {
            collector: self.client.url().to_owned(),
            status: self.schedule.status(),
            last_receipt: self.last_receipt.clone(),
            witnessed_size: self.witnessed_size,
            alert: self.alert.clone(),
        };
        *self.shared.0.lock().unwrap_or_else(PoisonError::into_inner) = report;
    }

    /// A failure: the schedule backs off; a failed check is kept as an alert row.
    fn failed(&mut self, e: SyncError) -> SyncError {
        let now = self.now_ms();
        self.schedule.failed(now, e.to_string(), rand::random::<f64>());
        if let Some(kind) = e.alert_kind() {
            let detail = e.to_string();
            let alert = format!("{kind}: {detail}");
            tracing::error!(kind, "upstream sync alert: {detail}");
            // The same alert again (each retry of a lasting fork) is one row, not one per retry.
            if self.alert.as_ref() != Some(&alert) {
                if let Err(store) = self.store.add_alert(wall_ms(), kind, &detail) {
                    tracing::error!("the sync alert could not be stored: {store}");
                }
            }
            self.alert = Some(alert);
        } else {
            tracing::warn!("upstream sync: {e}");
        }
        self.publish();
        e
    }

    /// One step of the schedule: send the next batch if one is due.
    pub fn step(&mut self) -> Result<Step, SyncError> {
        let head = match self.store.head() {
            Ok(h) => h.map(|(seq, _)| seq).unwrap_or(0),
            Err(e) => return Err(e.into()),
        };
        self.schedule.appended(head);
        let now = self.now_ms();
        let step = match self.schedule.poll(now) {
            SyncAction::Send { first, last } => match self.send(first, last) {
                Ok(covered) => {
                    self.schedule.accepted(covered);
                    Step::Sent { first, covered }
                }
                Err(e) => return Err(self.failed(e)),
            },
            SyncAction::WaitUntil { at_ms } => Step::Wait(Duration::from_millis(at_ms.saturating_sub(now))),
            // Sends are synchronous here: nothing is ever left in flight between steps.
            SyncAction::AwaitAnswer => Step::Wait(Duration::ZERO),
            SyncAction::Idle => Step::Idle,
        };
        self.publish();
        Ok(step)
    }

    /// One pass for scripts: send everything queued (stopping at the first failure),
    /// then witness the collector's current checkpoint.
    pub fn sync_once(&mut self) -> Result<SyncReport, SyncError> {
        while let Step::Sent { .. } = self.step()? {}
        self.witness_current()?;
        Ok(self.report())
    }

    /// Run until `stop` on this thread: send as records appear (looking every `poll`),
    /// back off after failures as the schedule says, and witness the collector's
    /// checkpoint every `witness_every` while idle. [`run_task`](Self::run_task) is the
    /// same loop as a tokio task.
    pub fn run(&mut self, poll: Duration, witness_every: Duration, stop: &AtomicBool) {
        let mut pace = Pace::new(poll, witness_every);
        while !stop.load(Ordering::Relaxed) {
            let step = self.step();
            match pace.after(&step) {
                Next::Step => {}
                Next::Witness => {
                    // A failure is in the state (and the alerts) already.
                    let _ = self.witness_current();
                    sleep(poll, stop);
                }
                Next::Sleep(d) => sleep(d, stop),
            }
        }
    }

    /// The driver as a background tokio task, until `stop` says `true` (or its sender
    /// is dropped): the loop of [`run`](Self::run), with each step's blocking work (the
    /// store, the HTTPS call) on the runtime's blocking pool and the waits as timers,
    /// so it takes no thread while it waits. Gives the driver back when it stops.
    pub async fn run_task(
        mut self,
        poll: Duration,
        witness_every: Duration,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) -> Result<Self, tokio::task::JoinError> {
        let mut pace = Pace::new(poll, witness_every);
        while !*stop.borrow() {
            let (driver, next) = tokio::task::spawn_blocking(move || {
                let step = self.step();
                let next = match pace.after(&step) {
                    Next::Witness => {
                        let _ = self.witness_current();
                        Next::Sleep(poll)
                    }
                    next => next,
                };
                (self, (next, pace))
            })
            .await?;
            self = driver;
            let (next, paced) = next;
            pace = paced;
            if let Next::Sleep(d) = next {
                tokio::select! {
                    _ = tokio::time::sleep(d) => {}
                    changed = stop.changed() => if changed.is_err() { break },
                }
            }
        }
        Ok(self)
    }

    /// Fetch the collector's checkpoint and witness it.
    pub fn witness_current(&mut self) -> Result<LogCheckpoint, SyncError> {
        let result = self.client.checkpoint().map_err(SyncError::from).and_then(|note| self.witness(&note));
        match result {
            Ok(cp) => {
                self.publish();
                Ok(cp)
            }
            Err(e) => Err(self.failed(e)),
        }
    }

    /// Accept `note` only if it is signed by a trusted collector key and consistent
    /// with the checkpoint the desk holds; keep it if it is the largest yet.
    fn witness(&mut self, note: &str) -> Result<LogCheckpoint, SyncError> {
        let new = verify_signed_checkpoint(note, &self.keys).map_err(SyncError::BadCheckpoint)?;
        let held = match self.store.latest_checkpoint_note()? {
            Some(n) => Some(verify_signed_checkpoint(&n, &self.keys).map_err(SyncError::HeldCheckpoint)?),
            None => None,
        };
        if let Some(held) = &held {
            prove_consistent(&self.client, held, &new)?;
        }
        if held.as_ref().is_none_or(|h| new.tree_size > h.tree_size) {
            self.store.add_checkpoint(note, &new, wall_ms())?;
            self.witnessed_size = Some(new.tree_size);
        }
        Ok(new)
    }

    /// Post records `first..=last`; check, witness and store their receipts. Returns
    /// the highest seq the stored receipts cover.
    fn send(&mut self, first: u64, last: u64) -> Result<u64, SyncError> {
        let mut records = self.store.range(first, last)?;
        if let Some(gap) = (first..=last).zip(&records).find(|(seq, r)| r.row_seq != *seq).map(|(s, _)| s) {
            return Err(SyncError::Missing(gap));
        }
        if (records.len() as u64) < last - first + 1 {
            return Err(SyncError::Missing(first + records.len() as u64));
        }
        records.truncate(within_body_limit(&records));
        let log_id = match self.store.get(1)? {
            Some(r) => entry_hash(&r.record),
            None => return Err(SyncError::Missing(1)),
        };
        let certificates = self.certificates_of(&records);
        let answer = self.client.add_records(&encode_batch(&log_id, &certificates, &records))?;
        let count_err = || SyncError::ReceiptCount { sent: records.len(), got: answer.receipts.len() };
        if answer.receipts.len() != records.len() {
            return Err(count_err());
        }
        let mut receipts = Vec::with_capacity(records.len());
        let mut notes = BTreeSet::new();
        for (value, stored) in answer.receipts.iter().zip(&records) {
            let seq = stored.row_seq;
            let receipt = Receipt::from_json(&value.to_string()).map_err(|why| SyncError::BadReceipt { seq, why })?;
            if receipt.covered_seq() != seq {
                return Err(count_err());
            }
            let Receipt::Inclusion(inclusion) = &receipt else {
                return Err(SyncError::BadReceipt { seq, why: ReceiptError::BadCheckpointText });
            };
            inclusion.verify(&self.keys).map_err(|why| SyncError::BadReceipt { seq, why })?;
            match check_receipt_matches(&self.store, &receipt) {
                Ok(()) => {}
                Err(AuditError::Store(e)) => return Err(e.into()),
                Err(_) => return Err(SyncError::ReceiptMismatch { seq }),
            }
            notes.insert(inclusion.signed_checkpoint.clone());
            receipts.push(receipt);
        }
        notes.insert(answer.checkpoint.clone());
        for note in &notes {
            self.witness(note)?;
        }
        self.store.add_receipts(&receipts)?;
        let newest = receipts.iter().max_by_key(|r| r.covered_seq());
        self.last_receipt = newest.and_then(|r| summary(r, &self.keys)).or(self.last_receipt.take());
        Ok(newest.map(Receipt::covered_seq).unwrap_or(first - 1))
    }

    /// The certificates of every signer and co-signer in `records` the source knows.
    fn certificates_of(&self, records: &[StoredRecord]) -> Vec<Vec<u8>> {
        let mut ids = BTreeSet::new();
        for r in records {
            // A record that does not decode is sent as it is; the collector names it.
            if let Ok(rec) = Record::decode(&r.record) {
                ids.insert(rec.key_id);
                ids.extend(rec.cosigner_key_id);
            }
        }
        ids.iter()
            .filter_map(|id| match self.certificates.certificate(id) {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!("certificate of key {} unavailable: {e}", hex::encode(id));
                    None
                }
            })
            .collect()
    }
}

/// Fetch the proof that joins `held` and `new` from the collector and check it. A
/// collector that shows a smaller tree and cannot prove it a prefix of the one it
/// signed before has rolled back: that is a fork too.
pub(super) fn prove_consistent(
    client: &CollectorClient,
    held: &LogCheckpoint,
    new: &LogCheckpoint,
) -> Result<(), SyncError> {
    let Some((old, larger)) = proof_needed(held, new)? else { return Ok(()) };
    let proof = match client.consistency(old, larger) {
        Ok(p) => p,
        Err(ClientError::Refused { .. } | ClientError::Status { .. }) if new.tree_size < held.tree_size => {
            return Err(ForkError::Behind { held: held.tree_size, new: new.tree_size }.into())
        }
        Err(e) => return Err(e.into()),
    };
    check_consistency(held, new, &proof)?;
    Ok(())
}

fn summary(receipt: &Receipt, keys: &CollectorKeys) -> Option<ReceiptSummary> {
    let Receipt::Inclusion(r) = receipt else { return None };
    let cp = verify_signed_checkpoint(&r.signed_checkpoint, keys).ok()?;
    Some(ReceiptSummary { seq: r.seq, leaf_index: r.leaf_index, tree_size: cp.tree_size })
}

/// The largest body a batch is given (the collector's default limit is 8 MiB): a
/// batch of large records is cut short and the rest goes next.
const MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;

/// How many of `records` (at least one) fit in [`MAX_BATCH_BYTES`] once base64-encoded.
fn within_body_limit(records: &[StoredRecord]) -> usize {
    let mut total = 0usize;
    let fits = records
        .iter()
        .take_while(|r| {
            let raw = r.record.len() + r.signature.len() + r.cosignature.as_ref().map_or(0, Vec::len);
            total = total.saturating_add(raw.div_ceil(3) * 4 + 64);
            total <= MAX_BATCH_BYTES
        })
        .count();
    fits.max(1)
}

/// What the loop does after a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    /// Step again at once (a batch went; more may be due).
    Step,
    /// Idle and the last witnessing is old: witness the checkpoint, then wait `poll`.
    Witness,
    Sleep(Duration),
}

/// The loop's pacing, shared by the thread and the task: how long to wait after each
/// step, and when to witness while idle.
#[derive(Debug, Clone, Copy)]
struct Pace {
    poll: Duration,
    witness_every: Duration,
    witnessed: Option<Instant>,
}

impl Pace {
    fn new(poll: Duration, witness_every: Duration) -> Self {
        Self { poll, witness_every, witnessed: None }
    }

    fn after(&mut self, step: &Result<Step, SyncError>) -> Next {
        match step {
            Ok(Step::Sent { .. }) => Next::Step,
            Ok(Step::Wait(d)) => Next::Sleep((*d).min(self.poll)),
            Ok(Step::Idle) => {
                if self.witnessed.is_none_or(|t| t.elapsed() >= self.witness_every) {
                    self.witnessed = Some(Instant::now());
                    Next::Witness
                } else {
                    Next::Sleep(self.poll)
                }
            }
            Err(_) => Next::Sleep(self.poll),
        }
    }
}

/// Sleep `d` in short slices, returning early when `stop` is set.
fn sleep(d: Duration, stop: &AtomicBool) {
    let until = Instant::now() + d;
    while !stop.load(Ordering::Relaxed) {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        std::thread::sleep(left.min(Duration::from_millis(100)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(len: usize) -> StoredRecord {
        StoredRecord { row_seq: 1, record: vec![0; len], signature: vec![0; 72], cosignature: None }
    }

    #[test]
    fn the_pace_steps_on_after_a_send_waits_at_most_poll_and_witnesses_when_idle_and_due() {
        let poll = Duration::from_millis(50);
        let mut pace = Pace::new(poll, Duration::from_secs(3600));
        assert_eq!(pace.after(&Ok(Step::Sent { first: 1, covered: 2 })), Next::Step);
        assert_eq!(pace.after(&Ok(Step::Wait(Duration::from_secs(9)))), Next::Sleep(poll));
        assert_eq!(pace.after(&Ok(Step::Wait(Duration::from_millis(5)))), Next::Sleep(Duration::from_millis(5)));
        assert_eq!(pace.after(&Ok(Step::Idle)), Next::Witness, "the first idle step witnesses");
        assert_eq!(pace.after(&Ok(Step::Idle)), Next::Sleep(poll), "not again before witness_every");
        assert_eq!(pace.after(&Err(SyncError::Missing(3))), Next::Sleep(poll));
        let mut eager = Pace::new(poll, Duration::ZERO);
        assert_eq!(eager.after(&Ok(Step::Idle)), Next::Witness);
        assert_eq!(eager.after(&Ok(Step::Idle)), Next::Witness);
    }

    #[test]
    fn a_batch_of_large_records_is_cut_to_the_body_limit_but_never_to_nothing() {
        let big: Vec<_> = (0..200).map(|_| record(60_000)).collect();
        let n = within_body_limit(&big);
        assert!(n > 1 && n < 200, "{n}");
        assert!(n * (60_072 / 3 * 4) <= MAX_BATCH_BYTES);
        assert_eq!(
            within_body_limit(&[record(10 * 1024 * 1024)]),
            1,
            "one record always goes (the collector judges it)"
        );
        let small: Vec<_> = (0..256).map(|_| record(900)).collect();
        assert_eq!(within_body_limit(&small), 256);
    }
}
