//! Audit events: what goes into a record's payload, and how it is made deterministic.
//!
//! Pure. A payload is an RFC 8785 canonical JSON object, so the same facts always
//! give the same signed bytes. Every payload has a `"facts"` member carrying whatever
//! `serde::Serialize` value the caller supplies (the workflow's facts struct, a
//! session summary, ...). A reset outcome additionally names the intent it closes:
//!
//! ```json
//! {"facts":{...},"intent":{"entry_hash":"<hex>","seq":12},"outcome":{"status":"done"}}
//! {"facts":{...},"intent":{...},"outcome":{"error":"LDAP 53 unwilling","status":"failed"}}
//! ```
//!
//! Secrets never belong in a record. As a last line of defence, [`Event`] refuses
//! facts with a member whose name says it is a secret (see [`FORBIDDEN_KEYS`]).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::record::{EventType, Hash32};

/// Member names that would carry a secret. Compared case-insensitively with `-`
/// read as `_`. Facts must describe secrets (e.g. `"pin_verified": true`), never hold them.
pub const FORBIDDEN_KEYS: &[&str] = &[
    "password",
    "new_password",
    "temporary_password",
    "temp_password",
    "pin",
    "puk",
    "answer",
    "security_answer",
    "totp_secret",
    "otp",
    "one_time_code",
    "otp_code",
    "verification_code",
    "document_number",
    "management_key",
    "secret",
];

/// Why facts cannot be turned into a payload.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error("the audit facts could not be serialised ({0}); they must be plain data (no maps with non-string keys)")]
    Serialise(String),
    #[error("the audit facts contain a member named `{0}`, which would put a secret in the audit trail; record that it was checked, not its value")]
    ForbiddenKey(String),
    #[error("a reset outcome must be built with Event::reset_outcome, which links it to its intent")]
    OutcomeWithoutIntent,
    #[error("a {0} heartbeat must be written with AuditLog::heartbeat, which states the log head in it")]
    HeartbeatWithoutHead(&'static str),
}

/// How a reset intent ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum DirectoryOutcome {
    /// The directory accepted the reset.
    Done,
    /// The directory refused or could not be reached; its error, secret-free.
    Failed { error: String },
}

/// The intent a reset outcome closes: its seq and entry hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct IntentRef {
    pub seq: u64,
    #[serde(with = "hex32")]
    pub entry_hash: Hash32,
}

/// The log head a heartbeat states: the seq and entry hash of the record before it.
pub type HeadRef = IntentRef;

/// The latest collector receipt the desk held when it wrote a heartbeat: the signed
/// log thereby commits to what the collector had attested (cross-linking both logs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptRef {
    pub tree_size: u64,
    /// Entry hash of record `tree_size`, as in the receipt's checkpoint.
    #[serde(with = "hex32")]
    pub head_hash: Hash32,
    #[serde(with = "hex32")]
    pub collector_key_id: Hash32,
}

/// The collector checkpoint the desk had witnessed (checked and kept) when it wrote a
/// heartbeat: its origin, tree size and root. The desk's signed log thereby states
/// which tree the collector showed it, so an auditor can prove that tree is a prefix
/// of the one the collector shows everyone (`audit verify --collector`): a collector
/// showing this desk another tree than the world is caught by the desk's own records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointRef {
    pub origin: String,
    pub tree_size: u64,
    #[serde(with = "hex32")]
    pub root_hash: Hash32,
}

/// An event ready to be written: its type and canonical payload bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    event_type: EventType,
    payload: Vec<u8>,
    intent: Option<IntentRef>,
}

#[derive(Serialize)]
struct Body<'a, T: Serialize + ?Sized> {
    facts: &'a T,
    #[serde(skip_serializing_if = "Option::is_none")]
    intent: Option<IntentRef>,
    #[serde(skip_serializing_if = "Option::is_none")]
    outcome: Option<&'a DirectoryOutcome>,
    #[serde(skip_serializing_if = "Option::is_none")]
    head: Option<HeadRef>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_receipt: Option<ReceiptRef>,
    #[serde(skip_serializing_if = "Option::is_none")]
    collector_checkpoint: Option<&'a CheckpointRef>,
}

impl<'a, T: Serialize + ?Sized> Body<'a, T> {
    fn facts(facts: &'a T) -> Self {
        Body { facts, intent: None, outcome: None, head: None, last_receipt: None, collector_checkpoint: None }
    }
}

impl Event {
    /// An event carrying `facts`, of any type but a reset outcome (see
    /// [`Event::reset_outcome`]) or a heartbeat (see `AuditLog::heartbeat`).
    pub fn new<T: Serialize + ?Sized>(event_type: EventType, facts: &T) -> Result<Self, EventError> {
        if event_type == EventType::ResetOutcome {
            return Err(EventError::OutcomeWithoutIntent);
        }
        if event_type.is_heartbeat() {
            return Err(EventError::HeartbeatWithoutHead(event_type.as_str()));
        }
        Self::build(event_type, Body::facts(facts), None)
    }

    /// A heartbeat (login, logout, lock, unlock) stating the log head it follows and
    /// the latest receipt held. Built by the log inside the append transaction.
    pub(crate) fn heartbeat<T: Serialize + ?Sized>(
        event_type: EventType,
        facts: &T,
        head: HeadRef,
        last_receipt: Option<ReceiptRef>,
        collector_checkpoint: Option<&CheckpointRef>,
    ) -> Result<Self, EventError> {
        if !event_type.is_heartbeat() {
            return Err(EventError::Serialise(format!("{} is not a heartbeat type", event_type.as_str())));
        }
        let body = Body { head: Some(head), last_receipt, collector_checkpoint, ..Body::facts(facts) };
        Self::build(event_type, body, None)
    }

    /// The record written (and made durable) before the directory is touched.
    pub fn reset_intent<T: Serialize + ?Sized>(facts: &T) -> Result<Self, EventError> {
        Self::new(EventType::ResetIntent, facts)
    }

    /// The record that closes `intent` with what the directory did.
    pub fn reset_outcome<T: Serialize + ?Sized>(
        intent: IntentRef,
        outcome: &DirectoryOutcome,
        facts: &T,
    ) -> Result<Self, EventError> {
        let body = Body { intent: Some(intent), outcome: Some(outcome), ..Body::facts(facts) };
        Self::build(EventType::ResetOutcome, body, Some(intent))
    }

    fn build<T: Serialize + ?Sized>(
        event_type: EventType,
        body: Body<'_, T>,
        intent: Option<IntentRef>,
    ) -> Result<Self, EventError> {
        let value = serde_json::to_value(&body).map_err(|e| EventError::Serialise(e.to_string()))?;
        check_no_secrets(&value)?;
        let payload = canonical_bytes(&value)?;
        Ok(Event { event_type, payload, intent })
    }

    pub fn event_type(&self) -> EventType {
        self.event_type
    }

    /// The canonical JSON payload bytes.
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// For an outcome: the intent it closes.
    pub fn intent(&self) -> Option<IntentRef> {
        self.intent
    }
}

fn canonical_bytes(value: &Value) -> Result<Vec<u8>, EventError> {
    serde_json_canonicalizer::to_vec(value).map_err(|e| EventError::Serialise(e.to_string()))
}

/// Refuse any object member (at any depth) whose name is in [`FORBIDDEN_KEYS`] and
/// whose value could be the secret itself: a string, a number or an array. An object,
/// `null` or a boolean under such a name describes the secret without holding it
/// (e.g. the workflow's `"password": {"kind": ..., "length": 16}` specification).
pub fn check_no_secrets(value: &Value) -> Result<(), EventError> {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                let norm = k.to_ascii_lowercase().replace('-', "_");
                let could_hold_secret = matches!(v, Value::String(_) | Value::Number(_) | Value::Array(_));
                if could_hold_secret && FORBIDDEN_KEYS.contains(&norm.as_str()) {
                    return Err(EventError::ForbiddenKey(k.clone()));
                }
                check_no_secrets(v)?;
            }
            Ok(())
        }
        Value::Array(items) => items.iter().try_for_each(check_no_secrets),
        _ => Ok(()),
    }
}

/// Why a stored payload does not meet the format (found by the verifier).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    #[error("payload is not JSON: {0}")]
    NotJson(String),
    #[error("payload is not in RFC 8785 canonical form")]
    NotCanonical,
    #[error("payload is not a JSON object with a \"facts\" member")]
    NoFacts,
    #[error("reset outcome payload lacks a valid \"intent\" {{seq, entry_hash}} or \"outcome\"")]
    BadOutcome,
    #[error("payload of a {0} record must not carry \"intent\"/\"outcome\"/\"head\"/\"last_receipt\"/\"collector_checkpoint\"")]
    UnexpectedLink(&'static str),
    #[error("heartbeat payload lacks a valid \"head\" {{seq, entry_hash}} or has a malformed \"last_receipt\" or \"collector_checkpoint\"")]
    BadHeartbeat,
}

/// A payload as read back: its JSON; for outcomes, the link and result; for
/// heartbeats, the stated head and receipt.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ParsedPayload {
    pub value: Value,
    pub intent: Option<IntentRef>,
    pub outcome: Option<DirectoryOutcome>,
    pub head: Option<HeadRef>,
    pub last_receipt: Option<ReceiptRef>,
    /// A heartbeat's statement of the collector checkpoint the desk held.
    pub collector_checkpoint: Option<CheckpointRef>,
}

fn member<T: serde::de::DeserializeOwned>(obj: &serde_json::Map<String, Value>, key: &str) -> Option<T> {
    obj.get(key).and_then(|v| T::deserialize(v).ok())
}

/// Parse and check stored payload bytes for a record of `event_type`: canonical
/// JSON object with `facts`; outcomes carry a well-formed intent link and outcome.
pub fn parse_payload(event_type: EventType, bytes: &[u8]) -> Result<ParsedPayload, PayloadError> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| PayloadError::NotJson(e.to_string()))?;
    if !is_canonical(&value, bytes)? {
        return Err(PayloadError::NotCanonical);
    }
    let obj = value.as_object().ok_or(PayloadError::NoFacts)?;
    if !obj.contains_key("facts") {
        return Err(PayloadError::NoFacts);
    }
    let has_outcome_link = obj.contains_key("intent") || obj.contains_key("outcome");
    let has_head =
        obj.contains_key("head") || obj.contains_key("last_receipt") || obj.contains_key("collector_checkpoint");
    if event_type == EventType::ResetOutcome {
        if has_head {
            return Err(PayloadError::UnexpectedLink(event_type.as_str()));
        }
        let intent: IntentRef = member(obj, "intent").ok_or(PayloadError::BadOutcome)?;
        let outcome: DirectoryOutcome = member(obj, "outcome").ok_or(PayloadError::BadOutcome)?;
        return Ok(ParsedPayload { intent: Some(intent), outcome: Some(outcome), value, ..Default::default() });
    }
    if has_outcome_link {
        return Err(PayloadError::UnexpectedLink(event_type.as_str()));
    }
    if !event_type.is_heartbeat() {
        if has_head {
            return Err(PayloadError::UnexpectedLink(event_type.as_str()));
        }
        return Ok(ParsedPayload { value, ..Default::default() });
    }
    let head: HeadRef = member(obj, "head").ok_or(PayloadError::BadHeartbeat)?;
    let last_receipt = match obj.get("last_receipt") {
        None => None,
        Some(_) => Some(member::<ReceiptRef>(obj, "last_receipt").ok_or(PayloadError::BadHeartbeat)?),
    };
    let collector_checkpoint = match obj.get("collector_checkpoint") {
        None => None,
        Some(_) => Some(member::<CheckpointRef>(obj, "collector_checkpoint").ok_or(PayloadError::BadHeartbeat)?),
    };
    Ok(ParsedPayload { head: Some(head), last_receipt, collector_checkpoint, value, ..Default::default() })
}

/// Whether `bytes`, which parsed to `value`, are the RFC 8785 form of `value`.
///
/// Fast path (the common case, ~5x cheaper than canonicalising): when every number
/// is an integer of magnitude at most 2^53 and every object's keys come in strictly
/// increasing UTF-16 order, RFC 8785 output is exactly serde_json's compact output
/// (same string escapes: `\b \t \n \f \r`, `\u00xx` in lower case, nothing else), so
/// one serialisation and a byte comparison decide. Anything else (floats, huge
/// integers, other key orders) goes through the full canonicaliser.
fn is_canonical(value: &Value, bytes: &[u8]) -> Result<bool, PayloadError> {
    if plain_and_sorted(value) {
        // Serialised straight against the bytes (no copy), stopping at the first
        // difference.
        let mut same = SameBytes { expected: bytes, differs: false };
        match serde_json::to_writer(&mut same, value) {
            Ok(()) => return Ok(same.expected.is_empty()),
            Err(_) if same.differs => return Ok(false),
            Err(_) => {}
        }
    }
    let canonical = serde_json_canonicalizer::to_vec(value).map_err(|e| PayloadError::NotJson(e.to_string()))?;
    Ok(canonical == bytes)
}

/// An `io::Write` that checks what is written against `expected` (the rest of it),
/// and fails at the first byte that differs.
struct SameBytes<'a> {
    expected: &'a [u8],
    differs: bool,
}

impl std::io::Write for SameBytes<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self.expected.strip_prefix(buf) {
            Some(rest) => {
                self.expected = rest;
                Ok(buf.len())
            }
            None => {
                self.differs = true;
                Err(std::io::Error::other("not the same bytes"))
            }
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Integers within ±2^53 only, and object keys in strictly increasing UTF-16 order
/// as iterated (so duplicates and any map ordering of the JSON library are covered).
fn plain_and_sorted(value: &Value) -> bool {
    const EXACT: u64 = 1 << 53;
    match value {
        Value::Null | Value::Bool(_) | Value::String(_) => true,
        Value::Number(n) => {
            n.as_u64().is_some_and(|u| u <= EXACT) || n.as_i64().is_some_and(|i| i.unsigned_abs() <= EXACT)
        }
        Value::Array(items) => items.iter().all(plain_and_sorted),
        Value::Object(map) => {
            let keys_sorted = map.keys().zip(map.keys().skip(1)).all(|(a, b)| a.encode_utf16().lt(b.encode_utf16()));
            keys_sorted && map.values().all(plain_and_sorted)
        }
    }
}

/// Serde helper: a 32-byte hash as 64 lower-case hex digits.
pub mod hex32 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let s = String::deserialize(d)?;
        let mut out = [0u8; 32];
        hex::decode_to_slice(&s, &mut out).map_err(serde::de::Error::custom)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[derive(Serialize)]
    struct Facts {
        agent: &'static str,
        target: &'static str,
        steps: Vec<(&'static str, bool)>,
    }

    #[test]
    fn payload_is_canonical_whatever_the_field_order() {
        let mut a = HashMap::new();
        a.insert("zeta", 1);
        a.insert("alpha", 2);
        let e = Event::new(EventType::Refusal, &a).unwrap();
        assert_eq!(e.payload(), br#"{"facts":{"alpha":2,"zeta":1}}"#);
        let parsed = parse_payload(EventType::Refusal, e.payload()).unwrap();
        assert_eq!(parsed.value["facts"]["zeta"], 1);
    }

    #[test]
    fn secrets_are_refused_at_any_depth_and_case() {
        for key in ["password", "PIN", "totp-secret", "document_number", "Answer"] {
            let facts = serde_json::json!({"agent": "a", "steps": [{"nested": {key: "x"}}]});
            let err = Event::reset_intent(&facts).unwrap_err();
            assert!(matches!(err, EventError::ForbiddenKey(ref k) if k == key), "{key}: {err}");
        }
        for (key, value) in [("pin", serde_json::json!(123456)), ("otp", serde_json::json!(["1", "2"]))] {
            let facts = serde_json::json!({ key: value });
            assert!(matches!(Event::reset_intent(&facts), Err(EventError::ForbiddenKey(_))), "{key}");
        }
        let ok = serde_json::json!({"pin_verified": true, "document_last4": "1234", "outcome": "x",
                                    "password": {"kind": "passphrase", "length": 20}, "secret": null});
        assert!(Event::reset_intent(&ok).is_ok());
    }

    #[test]
    fn outcome_links_its_intent() {
        let intent = IntentRef { seq: 4, entry_hash: [0xab; 32] };
        let facts = Facts { agent: "alice", target: "bob", steps: vec![("badge", true)] };
        let e = Event::reset_outcome(intent, &DirectoryOutcome::Failed { error: "LDAP 53".into() }, &facts).unwrap();
        let p = parse_payload(EventType::ResetOutcome, e.payload()).unwrap();
        assert_eq!(p.intent, Some(intent));
        assert_eq!(p.outcome, Some(DirectoryOutcome::Failed { error: "LDAP 53".into() }));
        assert!(matches!(Event::new(EventType::ResetOutcome, &facts), Err(EventError::OutcomeWithoutIntent)));
    }

    #[test]
    fn heartbeats_state_the_head_and_the_latest_receipt() {
        assert!(matches!(Event::new(EventType::Logout, &()), Err(EventError::HeartbeatWithoutHead("logout"))));
        let head = HeadRef { seq: 9, entry_hash: [1; 32] };
        let receipt = ReceiptRef { tree_size: 7, head_hash: [2; 32], collector_key_id: [3; 32] };
        let checkpoint = CheckpointRef { origin: "c.example/log".into(), tree_size: 40, root_hash: [4; 32] };
        let e = Event::heartbeat(
            EventType::Lock,
            &serde_json::json!({"agent": "a"}),
            head,
            Some(receipt),
            Some(&checkpoint),
        )
        .unwrap();
        let p = parse_payload(EventType::Lock, e.payload()).unwrap();
        assert_eq!((p.head, p.last_receipt), (Some(head), Some(receipt)));
        assert_eq!(p.collector_checkpoint, Some(checkpoint));
        let e = Event::heartbeat(EventType::Login, &(), head, None, None).unwrap();
        let p = parse_payload(EventType::Login, e.payload()).unwrap();
        assert_eq!((p.last_receipt, p.collector_checkpoint), (None, None));
        assert!(Event::heartbeat(EventType::Refusal, &(), head, None, None).is_err());
        let bad = br#"{"collector_checkpoint":{"origin":"o","root_hash":"zz","tree_size":1},"facts":{},"head":{"entry_hash":"0000000000000000000000000000000000000000000000000000000000000000","seq":1}}"#;
        assert_eq!(parse_payload(EventType::Login, bad), Err(PayloadError::BadHeartbeat));
        let stray_checkpoint = br#"{"collector_checkpoint":{},"facts":{}}"#;
        assert_eq!(parse_payload(EventType::Refusal, stray_checkpoint), Err(PayloadError::UnexpectedLink("refusal")));
        assert_eq!(parse_payload(EventType::Login, br#"{"facts":{}}"#), Err(PayloadError::BadHeartbeat));
        let stray = br#"{"facts":{},"head":{"entry_hash":"00","seq":1}}"#;
        assert_eq!(parse_payload(EventType::Refusal, stray), Err(PayloadError::UnexpectedLink("refusal")));
    }

    fn json_value() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            (-1e6f64..1e6).prop_map(Value::from),
            any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
            "\\PC{0,8}".prop_map(Value::String),
            proptest::collection::vec(any::<char>(), 0..6).prop_map(|c| Value::String(c.into_iter().collect())),
        ];
        leaf.prop_recursive(3, 32, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
                proptest::collection::btree_map(
                    proptest::collection::vec(any::<char>(), 0..5).prop_map(|c| c.into_iter().collect::<String>()),
                    inner,
                    0..5
                )
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest::proptest! {
        /// The fast path never disagrees with the full RFC 8785 canonicaliser.
        #[test]
        fn canonical_check_agrees_with_the_canonicaliser(v in json_value()) {
            let canonical = serde_json_canonicalizer::to_vec(&v).unwrap();
            let reparsed: Value = serde_json::from_slice(&canonical).unwrap();
            proptest::prop_assert!(is_canonical(&reparsed, &canonical).unwrap());
            for other in [serde_json::to_vec(&v).unwrap(), serde_json::to_vec_pretty(&v).unwrap()] {
                let parsed: Value = serde_json::from_slice(&other).unwrap();
                let expected = serde_json_canonicalizer::to_vec(&parsed).unwrap() == other;
                proptest::prop_assert_eq!(is_canonical(&parsed, &other).unwrap(), expected);
            }
        }
    }

    #[test]
    fn fast_path_edges() {
        let check = |s: &str| is_canonical(&serde_json::from_str(s).unwrap(), s.as_bytes()).unwrap();
        assert!(check(r#"{"a":1,"b":[true,null,"\u001f\n"]}"#));
        assert!(!check(r#"{"b":1,"a":2}"#));
        assert!(!check(r#"{"a":1,"a":2}"#));
        assert!(!check(r#"{"a":-0}"#));
        assert!(!check(r#"{"a":"\u0041"}"#));
        assert!(!check(r#"{"a":1.50}"#));
        assert!(check(r#"{"a":1.5}"#));
        assert!(!check(r#"{"a":9007199254740993}"#), "beyond 2^53 JCS rounds to a double");
        // UTF-16 order: U+FF61 sorts after U+1F600 (a surrogate pair, 0xD83D...) in UTF-16.
        assert!(check("{\"\u{1F600}\":1,\"\u{FF61}\":2}"));
        assert!(!check("{\"\u{FF61}\":2,\"\u{1F600}\":1}"));
    }

    #[test]
    fn parse_rejects_non_canonical_and_misplaced_links() {
        assert_eq!(parse_payload(EventType::Refusal, br#"{ "facts":{}}"#), Err(PayloadError::NotCanonical));
        assert_eq!(parse_payload(EventType::Refusal, br#"{"agent":1}"#), Err(PayloadError::NoFacts));
        assert!(matches!(parse_payload(EventType::Refusal, b"\xff"), Err(PayloadError::NotJson(_))));
        assert_eq!(
            parse_payload(EventType::Login, br#"{"facts":{},"outcome":{"status":"done"}}"#),
            Err(PayloadError::UnexpectedLink("login"))
        );
        assert_eq!(parse_payload(EventType::ResetOutcome, br#"{"facts":{}}"#), Err(PayloadError::BadOutcome));
    }
}
