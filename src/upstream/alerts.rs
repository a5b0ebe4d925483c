//! The collector's security alerts, desk side: the body of `GET /alerts` (shared with
//! `resetdesk-collector`, which serves it) and the fetch an admin's screen calls.
//!
//! An alert names the records it stands on (desk log id, seq, entry hash), each with
//! a receipt the collector computed when it listed the alert: its current signed
//! checkpoint and the record's inclusion proof. [`fetch_alerts`] checks every receipt
//! with the desk's configured collector key ([`crate::audit::CollectorKeys`]) and that
//! it is for the very record named, so what the admin sees is what the log holds.

use serde::{Deserialize, Serialize};

use super::client::{ClientError, CollectorClient};
use crate::audit::{CollectorKeys, Receipt};

/// Alerts listed per page at most (`GET /alerts?after=ID` pages on).
pub const PAGE: usize = 100;

/// `GET /alerts?after=ID`: the alerts with an id above `after`, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertList {
    pub alerts: Vec<AlertBody>,
    /// Whether more alerts follow: ask again with `after` = the last id.
    pub more: bool,
}

/// One alert as the collector lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertBody {
    pub id: u64,
    /// The rule or refusal: `agent_privileged_resets`, `account_reset_often`,
    /// `shared_contact_point`, `reset_outside_hours`, `heartbeat_missing`,
    /// `seq_backwards`, `contact_changed_after_reset`, or an ingest refusal's code
    /// (`fork`, `gap`, ...).
    pub kind: String,
    pub reason: String,
    /// When it was raised (UTC ms).
    pub at_ms: u64,
    /// The desk log it is about (hex), if one.
    pub log_id: Option<String>,
    pub seq: Option<u64>,
    /// The records it stands on, each with its receipt.
    pub records: Vec<AlertRecordBody>,
}

/// A record an alert stands on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertRecordBody {
    /// Hex desk log id.
    pub log_id: String,
    pub seq: u64,
    /// Hex entry hash.
    pub entry_hash: String,
    /// A v2 receipt (JSON object) against the collector's current checkpoint; `None`
    /// when the record is not (yet) in the signed tree.
    pub receipt: Option<serde_json::Value>,
}

/// Why the alerts could not be shown.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AlertsError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("{0}")]
    Setup(String),
    #[error("alert {alert}: the receipt of record {seq} of desk log {log_id} does not check ({why}); the collector's answer cannot be trusted, tell the security team")]
    BadReceipt { alert: u64, log_id: String, seq: u64, why: String },
}

/// A record an alert stands on, its receipt checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CitedRecord {
    pub log_id: String,
    pub seq: u64,
    pub entry_hash: String,
    /// Its leaf in the collector's log and the tree size the receipt is for; `None`
    /// when the collector had no receipt for it yet.
    pub leaf_index: Option<u64>,
    pub tree_size: Option<u64>,
}

/// An alert for the Admin screen, its records' receipts checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SecurityAlert {
    pub id: u64,
    pub kind: String,
    /// A short title for the kind ("One agent reset many privileged accounts").
    pub title: String,
    pub reason: String,
    pub at_ms: u64,
    pub log_id: Option<String>,
    pub records: Vec<CitedRecord>,
}

/// The title shown for an alert kind.
pub fn title_of(kind: &str) -> &'static str {
    match kind {
        "agent_privileged_resets" => "One agent reset many privileged accounts",
        "account_reset_often" => "One account was reset many times",
        "shared_contact_point" => "One contact point serves several accounts",
        "reset_outside_hours" => "Reset outside business hours",
        "heartbeat_missing" => "A desk stopped sending heartbeats",
        "seq_backwards" => "A desk's log went backwards",
        "contact_changed_after_reset" => "Contact details changed right after a reset",
        "fork" => "A desk's log forked",
        "gap" => "Records missing from a desk's log",
        "not-me-report" => "The account's holder reported a reset they did not ask for",
        _ => "Refused by the collector",
    }
}

/// Fetch the alerts after id `after` (all pages), checking each record's receipt
/// with `trusted`.
pub fn fetch_alerts(
    client: &CollectorClient,
    trusted: &CollectorKeys,
    after: u64,
) -> Result<Vec<SecurityAlert>, AlertsError> {
    let mut out = Vec::new();
    let mut after = after;
    loop {
        let page: AlertList = client.service_get(&format!("/alerts?after={after}"))?;
        let more = page.more && !page.alerts.is_empty();
        for a in page.alerts {
            after = after.max(a.id);
            out.push(checked(a, trusted)?);
        }
        if !more {
            return Ok(out);
        }
    }
}

/// [`fetch_alerts`] with the client and collector key of `[collector]`.
pub fn fetch_configured(
    config: &crate::config::CollectorConfig,
    after: u64,
) -> Result<Vec<SecurityAlert>, AlertsError> {
    let keys = super::driver::collector_keys(config).map_err(|e| AlertsError::Setup(e.to_string()))?;
    let client = CollectorClient::from_config(config)?;
    fetch_alerts(&client, &keys, after)
}

/// `body` with each record's receipt checked: signed by a trusted key, its proof
/// leading to the signed root, and for the record named (seq and entry hash).
pub fn checked(body: AlertBody, trusted: &CollectorKeys) -> Result<SecurityAlert, AlertsError> {
    let mut records = Vec::with_capacity(body.records.len());
    for r in body.records {
        let bad = |why: String| AlertsError::BadReceipt { alert: body.id, log_id: r.log_id.clone(), seq: r.seq, why };
        let (leaf_index, tree_size) = match &r.receipt {
            None => (None, None),
            Some(json) => {
                let receipt = Receipt::from_json(&json.to_string()).map_err(|e| bad(e.to_string()))?;
                let Receipt::Inclusion(inclusion) = receipt else {
                    return Err(bad("not a v2 inclusion receipt".into()));
                };
                let cp = inclusion.verify(trusted).map_err(|e| bad(e.to_string()))?;
                if inclusion.seq != r.seq || hex::encode(inclusion.entry_hash) != r.entry_hash.to_ascii_lowercase() {
                    return Err(bad("it is for another record".into()));
                }
                (Some(inclusion.leaf_index), Some(cp.tree_size))
            }
        };
        records.push(CitedRecord { log_id: r.log_id, seq: r.seq, entry_hash: r.entry_hash, leaf_index, tree_size });
    }
    Ok(SecurityAlert {
        id: body.id,
        title: title_of(&body.kind).to_owned(),
        kind: body.kind,
        reason: body.reason,
        at_ms: body.at_ms,
        log_id: body.log_id,
        records,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_alert_without_receipts_is_shown_with_its_records_and_a_title() {
        let body = AlertBody {
            id: 3,
            kind: "reset_outside_hours".into(),
            reason: "at 03:12".into(),
            at_ms: 1,
            log_id: Some("ab".into()),
            seq: Some(4),
            records: vec![AlertRecordBody { log_id: "ab".into(), seq: 4, entry_hash: "cd".into(), receipt: None }],
        };
        let a = checked(body, &CollectorKeys::default()).unwrap();
        assert_eq!(a.title, "Reset outside business hours");
        assert_eq!(a.records[0].leaf_index, None);
    }

    #[test]
    fn a_receipt_that_is_not_one_refuses_the_whole_answer() {
        let body = AlertBody {
            id: 9,
            kind: "fork".into(),
            reason: "x".into(),
            at_ms: 1,
            log_id: None,
            seq: None,
            records: vec![AlertRecordBody {
                log_id: "ab".into(),
                seq: 4,
                entry_hash: "cd".into(),
                receipt: Some(serde_json::json!({"version": 2})),
            }],
        };
        assert!(matches!(checked(body, &CollectorKeys::default()), Err(AlertsError::BadReceipt { alert: 9, .. })));
    }
}
