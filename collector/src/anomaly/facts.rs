//! What the anomaly rules read from a verified record: pure, over the record's bytes
//! and the documented payload shapes (`docs/audit-format.md`; the workflow's reset
//! facts, the admin actions, the presence heartbeats). A record these rules do not
//! look at, or whose facts lack what a rule needs, is [`Observed::Other`].

use resetdesk::audit::{EventType, Hash32, Record};
use serde_json::Value;

/// A record an alert stands on: its desk log, seq and entry hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RecordRef {
    pub log_id: Hash32,
    pub seq: u64,
    pub entry_hash: Hash32,
}

/// One verified record as the rules see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    pub record: RecordRef,
    /// The record's timestamp (desk clock, UTC ms).
    pub at_ms: u64,
    pub what: Observed,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observed {
    /// A reset the directory accepted (a `reset_outcome` with status `done`).
    Reset {
        agent: String,
        account: String,
        /// The account's effective tier was privileged or highest.
        privileged: bool,
        /// The contact points on file the reset used (callbacks dialled, codes sent,
        /// the hand-off's registered address or number), normalised.
        contacts: Vec<String>,
    },
    /// An admin set a contact point of `account` (`admin_action` `set-contact`).
    ContactChanged {
        account: String,
        by: String,
    },
    /// A presence heartbeat (login, logout, lock, unlock).
    Presence,
    Other,
}

/// The observation of a record the collector verified and stored.
pub fn observe(log_id: Hash32, entry_hash: Hash32, record_bytes: &[u8]) -> Option<Observation> {
    let record = Record::decode(record_bytes).ok()?;
    let payload: Value = serde_json::from_slice(&record.payload).ok()?;
    Some(observe_parsed(log_id, entry_hash, &record, &payload))
}

/// [`observe`] of a decoded record whose payload is already parsed (`payload`: the
/// JSON of `record.payload`), as ingest's prechecks have it.
pub fn observe_parsed(log_id: Hash32, entry_hash: Hash32, record: &Record, payload: &Value) -> Observation {
    let what = match record.event_type {
        EventType::ResetOutcome => reset(payload).unwrap_or(Observed::Other),
        EventType::AdminAction => contact_changed(payload).unwrap_or(Observed::Other),
        t if t.is_heartbeat() => Observed::Presence,
        _ => Observed::Other,
    };
    Observation { record: RecordRef { log_id, seq: record.seq, entry_hash }, at_ms: record.timestamp_ms, what }
}

/// The member at `path` (object keys, outermost first). Not `Value::pointer`, which
/// allocates to unescape each segment: these paths have nothing to unescape, and
/// every stored record is read this way.
fn at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, key| v.get(key))
}

fn text<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    at(v, path).and_then(Value::as_str).filter(|s| !s.is_empty())
}

fn reset(payload: &Value) -> Option<Observed> {
    if text(payload, &["outcome", "status"])? != "done" {
        return None;
    }
    let agent = text(payload, &["facts", "agent", "username"])?.to_owned();
    let account = text(payload, &["facts", "target", "username"])?.to_owned();
    let privileged = matches!(text(payload, &["facts", "target", "effective_tier"]), Some("privileged" | "highest"));
    let mut contacts: Vec<String> = Vec::new();
    let steps = at(payload, &["facts", "steps"]).and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    for step in steps {
        if text(step, &["detail", "detail"]) == Some("contact") {
            contacts.extend(text(step, &["detail", "value"]).map(normalise));
        }
    }
    contacts.extend(
        [["facts", "handoff", "channel", "address"], ["facts", "handoff", "channel", "number"]]
            .iter()
            .filter_map(|p| text(payload, p).map(normalise)),
    );
    contacts.retain(|c| !c.is_empty());
    contacts.sort();
    contacts.dedup();
    Some(Observed::Reset { agent, account, privileged, contacts })
}

fn contact_changed(payload: &Value) -> Option<Observed> {
    if text(payload, &["facts", "action"])? != "set-contact" {
        return None;
    }
    let account = text(payload, &["facts", "target", "username"])?.to_owned();
    let by = text(payload, &["facts", "by"]).unwrap_or("?").to_owned();
    Some(Observed::ContactChanged { account, by })
}

/// One spelling per contact point: an address in lower case, a number as its digits
/// (with a leading `+` kept).
pub fn normalise(contact: &str) -> String {
    let c = contact.trim();
    if c.contains('@') {
        return c.to_lowercase();
    }
    let plus = if c.starts_with('+') { "+" } else { "" };
    format!("{plus}{}", c.chars().filter(char::is_ascii_digit).collect::<String>())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_done_reset_names_agent_account_tier_and_every_contact_point_used() {
        let p = json!({
            "facts": {
                "agent": {"username": "alice", "tier": "senior", "key_id": "ab"},
                "target": {"username": "jdoe", "base_tier": "standard", "effective_tier": "privileged", "department": "x"},
                "steps": [
                    {"method": "callback", "detail": {"detail": "contact", "label": "mobile", "value": "+44 20 7946-0000"}},
                    {"method": "totp", "detail": {"detail": "totp-step", "step": 4}},
                    {"method": "one-time-code", "detail": {"detail": "contact", "label": "work", "value": "J.Doe@Example.com"}}
                ],
                "handoff": {"channel": {"channel": "registered-email", "address": "j.doe@example.com"}}
            },
            "intent": {"seq": 2, "entry_hash": "00"},
            "outcome": {"status": "done"}
        });
        let Some(Observed::Reset { agent, account, privileged, contacts }) = reset(&p) else { panic!() };
        assert_eq!((agent.as_str(), account.as_str(), privileged), ("alice", "jdoe", true));
        assert_eq!(contacts, ["+442079460000", "j.doe@example.com"]);
        let failed = json!({"facts": p["facts"], "outcome": {"status": "failed", "error": "x"}});
        assert_eq!(reset(&failed), None);
    }

    #[test]
    fn only_a_set_contact_admin_action_is_a_contact_change() {
        let p = json!({"facts": {"action": "set-contact", "kind": "phone", "label": "mobile", "value": "1",
                                 "target": {"username": "jdoe"}, "reason": "r", "by": "root"}});
        assert_eq!(contact_changed(&p), Some(Observed::ContactChanged { account: "jdoe".into(), by: "root".into() }));
        let unflag = json!({"facts": {"action": "unflag", "target": {"username": "jdoe"}, "by": "root"}});
        assert_eq!(contact_changed(&unflag), None);
    }
}
