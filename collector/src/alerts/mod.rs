//! Alerts for the security team: the alert rows (`alerts`, written by ingest's
//! refusals and by the anomaly rules) with the records each stands on (a table of
//! their own, `alert_records`: desk log id, seq, entry hash), listed with receipts
//! computed at listing time against the current checkpoint, as `/proof/inclusion`
//! computes them.
//!
//! - [`AlertStore`]: the alert side tables, for SQLite ([`sqlite`]) and PostgreSQL
//!   ([`postgres`]), which also keep the anomaly rules' memory;
//! - [`list`]: alerts after an id, with receipts (the `GET /alerts` body, shared with
//!   the desk: [`resetdesk::upstream::alerts`]);
//! - [`api`]: `GET /alerts?after=<id>` for authenticated desks;
//! - [`mail`]: each new alert mailed to the security address from a durable queue
//!   (`alert_mail` rows, never deleted; retried with backoff), apart from ingest.

pub mod api;
pub mod mail;
pub mod postgres;
pub mod sqlite;

use resetdesk::audit::{Hash32, InclusionReceipt, Receipt};
use resetdesk::upstream::alerts::{AlertBody, AlertList, AlertRecordBody};

use crate::anomaly::facts::RecordRef;
use crate::anomaly::rules::{Remembered, RuleAlert};
use crate::merkle;
use crate::store::{Alert, LogStore, StoreError};

/// An alert row with its id and the records it stands on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAlert {
    pub id: u64,
    pub alert: Alert,
    pub records: Vec<RecordRef>,
}

/// A queued alert mail due for an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueMail {
    pub alert_id: u64,
    pub attempts: u32,
}

/// The alert side tables.
pub trait AlertStore {
    /// Keep `alert` with the records it stands on; its id.
    fn raise_alert(&mut self, alert: &Alert, records: &[RecordRef]) -> Result<u64, StoreError>;
    /// Alerts with an id above `after`, oldest first, at most `limit`.
    fn alerts_after(&self, after: u64, limit: usize) -> Result<Vec<StoredAlert>, StoreError>;
    /// Queue a mail for each alert that has none yet.
    fn queue_alert_mail(&mut self) -> Result<(), StoreError>;
    /// Take up to `limit` queued mails due at `now_ms`, each held until `lease_until_ms`
    /// (so another instance does not send it meanwhile).
    fn claim_alert_mail(&mut self, now_ms: u64, lease_until_ms: u64, limit: usize) -> Result<Vec<DueMail>, StoreError>;
    fn alert_mail_sent(&mut self, alert_id: u64, at_ms: u64) -> Result<(), StoreError>;
    /// A failed attempt: counted, its error kept, the next at `next_ms`.
    fn alert_mail_failed(&mut self, alert_id: u64, next_ms: u64, error: &str) -> Result<(), StoreError>;
    /// One alert by id.
    fn alert(&self, id: u64) -> Result<Option<StoredAlert>, StoreError> {
        Ok(self.alerts_after(id.saturating_sub(1), 1)?.into_iter().find(|a| a.id == id))
    }
}

/// Keep a rule's alert, raised at `now_ms`; log it.
pub fn raise<S: AlertStore + ?Sized>(store: &mut S, a: &RuleAlert, now_ms: u64) -> Result<u64, StoreError> {
    tracing::warn!(kind = a.kind, log_id = hex::encode(a.trigger.log_id), seq = a.trigger.seq, "alert: {}", a.reason);
    let alert = Alert {
        at_ms: now_ms,
        log_id: Some(a.trigger.log_id),
        seq: Some(a.trigger.seq),
        kind: a.kind.to_owned(),
        reason: a.reason.clone(),
    };
    store.raise_alert(&alert, &a.records)
}

/// The alerts after `after` (at most `limit`), each record with a receipt against the
/// current checkpoint when the record is in its tree.
pub fn list<S: LogStore + AlertStore>(store: &S, after: u64, limit: usize) -> Result<AlertList, StoreError> {
    let mut alerts = store.alerts_after(after, limit.saturating_add(1))?;
    let more = alerts.len() > limit;
    alerts.truncate(limit);
    let checkpoint = store.checkpoint()?;
    // The proofs of one listing share most of their hashes: each is read once.
    let seen = std::cell::RefCell::new(std::collections::HashMap::new());
    let hashes = crate::ingest::MemoHashes { reader: &crate::store::StoredHashes(store), seen: &seen };
    let mut out = Vec::with_capacity(alerts.len());
    for a in alerts {
        let mut records = Vec::with_capacity(a.records.len());
        for r in &a.records {
            let receipt = match &checkpoint {
                Some((size, note)) => receipt_of(store, &hashes, r, *size, note)?,
                None => None,
            };
            records.push(AlertRecordBody {
                log_id: hex::encode(r.log_id),
                seq: r.seq,
                entry_hash: hex::encode(r.entry_hash),
                receipt,
            });
        }
        out.push(AlertBody {
            id: a.id,
            kind: a.alert.kind,
            reason: a.alert.reason,
            at_ms: a.alert.at_ms,
            log_id: a.alert.log_id.map(hex::encode),
            seq: a.alert.seq,
            records,
        });
    }
    Ok(AlertList { alerts: out, more })
}

/// The receipt of record `r` in the tree of `size` (signed by `note`), if it is there.
fn receipt_of<S: LogStore>(
    store: &S,
    hashes: &impl tlog_tiles::HashReader,
    r: &RecordRef,
    size: u64,
    note: &str,
) -> Result<Option<serde_json::Value>, StoreError> {
    let Some(placed) = store.placed(&r.log_id, r.seq)? else { return Ok(None) };
    if placed.entry_hash != r.entry_hash || placed.leaf_index >= size {
        return Ok(None);
    }
    let proof = merkle::inclusion_proof(size, placed.leaf_index, hashes)?;
    let receipt = Receipt::Inclusion(InclusionReceipt {
        signed_checkpoint: note.to_owned(),
        seq: r.seq,
        entry_hash: placed.entry_hash,
        leaf_index: placed.leaf_index,
        proof,
    });
    // A receipt's JSON is an object of strings and numbers.
    Ok(Some(receipt.to_json_value()))
}

/// Rows recalled from the rules' memory as [`Remembered`] (the topic asked for is one
/// of [`crate::anomaly::rules::topic`]'s).
pub(crate) fn remembered(topic: &str, subject: &str, rows: Vec<(String, u64, RecordRef)>) -> Vec<Remembered> {
    use crate::anomaly::rules::topic::{CONTACT, PRIVILEGED_RESET, RESET};
    let topic = [CONTACT, PRIVILEGED_RESET, RESET].into_iter().find(|t| *t == topic).unwrap_or("other");
    rows.into_iter()
        .map(|(other, at_ms, record)| Remembered { topic, subject: subject.to_owned(), other, at_ms, record })
        .collect()
}

pub(crate) fn h32(v: Vec<u8>) -> Hash32 {
    v.try_into().unwrap_or([0; 32])
}

/// The alerts as text for the security team (`resetdesk-collector alerts`).
pub fn render_text(list: &AlertList) -> String {
    let mut out = String::new();
    for a in &list.alerts {
        let at = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(a.at_ms) * 1_000_000)
            .ok()
            .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
            .unwrap_or_else(|| a.at_ms.to_string());
        out.push_str(&format!("#{} {at} {}: {}\n", a.id, a.kind, a.reason));
        if let Some(log) = &a.log_id {
            out.push_str(&format!("  desk log {log}{}\n", a.seq.map(|s| format!(" seq {s}")).unwrap_or_default()));
        }
        for r in &a.records {
            let receipt = match r.receipt.as_ref().and_then(|j| Receipt::from_json(&j.to_string()).ok()) {
                Some(Receipt::Inclusion(i)) => format!("receipt: leaf {}", i.leaf_index),
                _ => "no receipt yet".to_owned(),
            };
            out.push_str(&format!("  record {} seq {} entry {} ({receipt})\n", r.log_id, r.seq, r.entry_hash));
        }
    }
    if list.alerts.is_empty() {
        out.push_str("no alerts\n");
    }
    out
}
