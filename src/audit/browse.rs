//! The desk's audit log as the Audit screen lists it: each record with its time,
//! type, agent, account, outcome and co-signature, whether the offline verifier
//! accepts it and whether a collector receipt covers it.
//!
//! Every record is checked with the same [`Verifier`] that `resetdesk audit verify`
//! runs, in one pass in seq order, so the screen never says "verified" where the
//! auditor's tool would not. Rows after the first bad record are "not checked": the
//! chain is broken there.

use serde::Serialize;
use serde_json::Value;

use super::event::{parse_payload, DirectoryOutcome};
use super::receipt::CollectorKeys;
use super::record::{EventType, Record};
use super::resolver::KeyResolver;
use super::store::{Store, StoreError};
use super::verify::Verifier;

/// Which records to list.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditFilter {
    /// An event type as the format names it (`reset_intent`, `refusal`, ...).
    pub event_type: Option<String>,
    /// Part of the agent's or the account's username (case-insensitive).
    pub text: Option<String>,
}

/// Rows listed at most, newest first.
pub const MAX_ROWS: usize = 500;

/// What the verifier says of one record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum RowCheck {
    Verified,
    Failed {
        problem: String,
    },
    /// After the first bad record: the chain is broken there.
    NotChecked,
}

/// One record on the Audit screen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditRow {
    pub seq: u64,
    pub timestamp_ms: u64,
    pub kind: &'static str,
    pub agent: Option<String>,
    pub target: Option<String>,
    /// `done`, `failed: ...`, `refused: ...`, `cancelled: ...`, `locked-out`.
    pub outcome: Option<String>,
    pub cosigned: bool,
    pub check: RowCheck,
    /// A verified collector receipt covers it.
    pub receipted: bool,
}

/// The Audit screen: the rows the filter selects and the log's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditPage {
    pub rows: Vec<AuditRow>,
    pub total_records: u64,
    /// Every record verified (and every stored receipt, if any).
    pub verified: bool,
    pub first_problem: Option<String>,
    pub open_intents: Vec<u64>,
    pub receipted_up_to: u64,
    /// Upstream sync, in words.
    pub sync: String,
}

fn agent_of(facts: &Value) -> Option<String> {
    match facts.get("agent")? {
        Value::String(s) => Some(s.clone()),
        v => v.get("username").and_then(Value::as_str).map(str::to_owned),
    }
    .or_else(|| facts.get("reconciled_by").and_then(Value::as_str).map(str::to_owned))
}

fn outcome_of(kind: EventType, facts: &Value, outcome: Option<&DirectoryOutcome>) -> Option<String> {
    if let Some(o) = outcome {
        return Some(match o {
            DirectoryOutcome::Done => "done".to_owned(),
            DirectoryOutcome::Failed { error } => format!("failed: {error}"),
        });
    }
    if !matches!(kind, EventType::Refusal | EventType::Lockout) {
        return None;
    }
    let o = facts.get("outcome")?;
    let name = o.get("outcome").and_then(Value::as_str)?;
    Some(match o.get("reason").and_then(Value::as_str) {
        Some(reason) => format!("{name}: {reason}"),
        None => name.to_owned(),
    })
}

/// List the records of `store` that `filter` selects, newest first, each checked.
/// Receipts are checked against `collectors` (the desk's `[collector]` key).
pub fn browse(
    store: &Store,
    resolver: &dyn KeyResolver,
    collectors: &CollectorKeys,
    filter: &AuditFilter,
) -> Result<AuditPage, StoreError> {
    let mut verifier = Some(Verifier::new(resolver));
    let mut first_problem = None;
    let mut rows = Vec::new();
    let mut total = 0;
    let text = filter.text.as_deref().map(str::trim).filter(|t| !t.is_empty()).map(str::to_lowercase);
    store
        .for_each(|stored| {
            total += 1;
            let check = match verifier.as_mut().map(|v| v.push(&stored)) {
                Some(Ok(())) => RowCheck::Verified,
                Some(Err(bad)) => {
                    verifier = None;
                    first_problem = Some(bad.to_string());
                    RowCheck::Failed { problem: bad.problem.to_string() }
                }
                None => RowCheck::NotChecked,
            };
            let Ok(record) = Record::decode(&stored.record) else {
                rows.push(AuditRow {
                    seq: stored.row_seq,
                    timestamp_ms: 0,
                    kind: "undecodable",
                    agent: None,
                    target: None,
                    outcome: None,
                    cosigned: false,
                    check,
                    receipted: false,
                });
                return Ok::<(), ()>(());
            };
            let parsed = parse_payload(record.event_type, &record.payload).ok();
            let facts = parsed.as_ref().and_then(|p| p.value.get("facts")).cloned().unwrap_or(Value::Null);
            let row = AuditRow {
                seq: record.seq,
                timestamp_ms: record.timestamp_ms,
                kind: record.event_type.as_str(),
                agent: agent_of(&facts),
                target: facts.pointer("/target/username").and_then(Value::as_str).map(str::to_owned),
                outcome: outcome_of(record.event_type, &facts, parsed.as_ref().and_then(|p| p.outcome.as_ref())),
                cosigned: record.cosigner_key_id.is_some() && stored.cosignature.is_some(),
                check,
                receipted: false,
            };
            let type_ok = filter.event_type.as_deref().is_none_or(|t| t.is_empty() || t == row.kind);
            let text_ok = text.as_deref().is_none_or(|t| {
                [&row.agent, &row.target].iter().any(|v| v.as_deref().is_some_and(|v| v.to_lowercase().contains(t)))
            });
            if type_ok && text_ok {
                rows.push(row);
            }
            Ok(())
        })?
        .ok();

    let receipts = store.receipts()?;
    let (verified, receipted_up_to, open_intents) = match verifier {
        Some(v) => match v.finish(&receipts, collectors, &[]) {
            Ok(summary) => (true, summary.receipted_up_to, summary.open_intents),
            Err(e) => {
                first_problem = Some(e.to_string());
                (false, 0, Vec::new())
            }
        },
        None => (false, 0, Vec::new()),
    };
    for row in &mut rows {
        row.receipted = row.seq <= receipted_up_to;
    }
    rows.reverse();
    rows.truncate(MAX_ROWS);
    let sync = if receipts.is_empty() {
        "not synced: no receipt from an audit collector yet".to_owned()
    } else {
        format!("{} receipt(s); records 1..={receipted_up_to} covered", receipts.len())
    };
    Ok(AuditPage { rows, total_records: total, verified, first_problem, open_intents, receipted_up_to, sync })
}
