//! What one signed audit record says about accounts: the one rule, shared by the
//! desk's own history (`desk::history`, a fold over its audit store) and the
//! collector's account index (a row per event, across desks), so both count alike.
//!
//! Pure: a decoded [`Record`] in, its [`AccountEvent`]s out. A record names its account
//! in `facts.target.username`; it carries
//! - a **reset done**: a `reset-outcome` record whose directory outcome is `done`
//!   (with the hash of the holder's "this wasn't me" link when the desk made one);
//! - **counted failures**: each failed step (`facts.steps`) whose verdict counts
//!   toward the lockout, at the step's time;
//! - a **lockout cleared**: an admin's `clear-lockout` action;
//! - **TOTP steps** accepted (replay refusal across sessions and desks).
//!
//! The same step appears in several records of one request (the intent, then the
//! outcome; a failure record, then the lockout record): whoever counts them counts a
//! step once per [`AccountEvent::step_key`] (request id, time, method).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::Digest as _;
use time::OffsetDateTime;

use crate::audit::event::{parse_payload, ParsedPayload};
use crate::audit::{DirectoryOutcome, EventType, Record};
use crate::policy::Method;
use crate::verification::Verdict;
use crate::workflow::facts::{StepDetail, StepFact};

/// What happened to the account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum AccountEventKind {
    /// A reset was done (the directory took the password).
    ResetDone {
        /// Hex SHA-256 of the "this wasn't me" token the holder was mailed, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        report_sha256: Option<String>,
    },
    /// A failed verification step that counts toward the lockout.
    CountedFailure,
    /// An admin cleared the account's lockout: earlier failures no longer count.
    LockoutCleared,
    /// A TOTP time step was accepted.
    TotpStep { step: u64 },
}

/// One event about one account, from one record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountEvent {
    /// The account's username, lower-case.
    pub account: String,
    /// When: the step's time for steps, the record's time otherwise.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// The request the record belongs to (empty when it names none: admin actions).
    pub request_id: String,
    /// The verification method of a step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<Method>,
    #[serde(flatten)]
    pub kind: AccountEventKind,
}

impl AccountEvent {
    /// What identifies the event across the records that repeat it and across sources
    /// (this desk's log, the collector's index): request id, time, method and kind.
    pub fn step_key(&self) -> (String, i128, Option<Method>, &'static str) {
        let kind = match self.kind {
            AccountEventKind::ResetDone { .. } => "reset",
            AccountEventKind::CountedFailure => "failure",
            AccountEventKind::LockoutCleared => "cleared",
            AccountEventKind::TotpStep { .. } => "totp",
        };
        (self.request_id.clone(), self.at.unix_timestamp_nanos(), self.method, kind)
    }
}

/// The hash a reset record carries for the holder's "this wasn't me" token (the
/// link's last path segment): hex SHA-256 of the token's text. The desk and the
/// collector both compute it here.
pub fn report_token_sha256(token: &str) -> String {
    hex::encode(sha2::Sha256::digest(token.as_bytes()))
}

fn time_of_ms(ms: u64) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()
}

/// The events `record` carries, in the order the record states them. A record whose
/// payload does not parse, or that names no target account, carries none (the
/// verifier reports bad records; they never hide a failure that decodes).
pub fn events_of(record: &Record) -> Vec<AccountEvent> {
    let Ok(parsed) = parse_payload(record.event_type, &record.payload) else { return Vec::new() };
    events_of_parsed(record, &parsed)
}

/// [`events_of`] with the record's payload already parsed (`parsed`: [`parse_payload`]
/// of `record`'s payload), as the collector's prechecks have it.
pub fn events_of_parsed(record: &Record, parsed: &ParsedPayload) -> Vec<AccountEvent> {
    let Some(facts) = parsed.value.get("facts") else { return Vec::new() };
    let Some(account) = facts.get("target").and_then(|t| t.get("username")).and_then(Value::as_str) else {
        return Vec::new();
    };
    let account = account.to_lowercase();
    let request_id = facts.get("request_id").and_then(Value::as_str).unwrap_or_default().to_owned();
    let Some(at) = time_of_ms(record.timestamp_ms) else { return Vec::new() };
    let event =
        |at, method, kind| AccountEvent { account: account.clone(), at, request_id: request_id.clone(), method, kind };
    if record.event_type == EventType::AdminAction && facts.get("action") == Some(&Value::from("clear-lockout")) {
        return vec![event(at, None, AccountEventKind::LockoutCleared)];
    }
    let mut events = Vec::new();
    if record.event_type == EventType::ResetOutcome && parsed.outcome == Some(DirectoryOutcome::Done) {
        let report_sha256 = facts.get("report_sha256").and_then(Value::as_str).map(str::to_owned);
        events.push(event(at, None, AccountEventKind::ResetDone { report_sha256 }));
    }
    let steps = facts.get("steps").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    for step in steps.iter().filter_map(|s| StepFact::deserialize(s).ok()) {
        if let StepDetail::TotpStep { step: n } = step.detail {
            events.push(event(step.at, Some(step.method), AccountEventKind::TotpStep { step: n }));
        }
        if let Verdict::Failed(reason) = step.verdict {
            if reason.counts_toward_lockout() {
                events.push(event(step.at, Some(step.method), AccountEventKind::CountedFailure));
            }
        }
    }
    events
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::Event;
    use crate::verification::FailReason;
    use time::macros::datetime;

    const AT: OffsetDateTime = datetime!(2026-11-25 10:00 UTC);

    fn record(event: &Event) -> Record {
        let ms = u64::try_from(AT.unix_timestamp() * 1000).unwrap();
        Record {
            event_type: event.event_type(),
            seq: 2,
            timestamp_ms: ms,
            key_id: [1; 32],
            cosigner_key_id: None,
            prev_hash: [2; 32],
            payload: event.payload().to_vec(),
        }
    }

    fn step(verdict: Verdict, detail: StepDetail) -> Value {
        serde_json::to_value(StepFact { at: AT, method: Method::SecurityAnswers, verdict, detail }).unwrap()
    }

    #[test]
    fn a_done_outcome_is_a_reset_with_its_report_hash_and_its_counted_failures() {
        let facts = serde_json::json!({
            "request_id": "req-1", "target": {"username": "JDoe"}, "report_sha256": "ab",
            "steps": [
                step(Verdict::Failed(FailReason::WrongAnswer), StepDetail::None),
                step(Verdict::Failed(FailReason::NotEnrolled), StepDetail::None),
                step(Verdict::Passed, StepDetail::TotpStep { step: 7 }),
            ],
        });
        let intent = crate::audit::IntentRef { seq: 1, entry_hash: [3; 32] };
        let e = Event::reset_outcome(intent, &DirectoryOutcome::Done, &facts).unwrap();
        let kinds: Vec<AccountEventKind> = events_of(&record(&e)).into_iter().map(|e| e.kind).collect();
        assert_eq!(
            kinds,
            [
                AccountEventKind::ResetDone { report_sha256: Some("ab".into()) },
                AccountEventKind::CountedFailure,
                AccountEventKind::TotpStep { step: 7 },
            ],
            "a not-enrolled step counts for nothing"
        );
        assert!(events_of(&record(&e)).iter().all(|e| e.account == "jdoe" && e.request_id == "req-1"));
        let failed = Event::reset_outcome(intent, &DirectoryOutcome::Failed { error: "x".into() }, &facts).unwrap();
        assert!(!events_of(&record(&failed)).iter().any(|e| matches!(e.kind, AccountEventKind::ResetDone { .. })));
    }

    #[test]
    fn a_clear_lockout_is_one_event_and_a_record_without_a_target_carries_none() {
        let clear = serde_json::json!({"action": "clear-lockout", "target": {"username": "jdoe"}});
        let e = Event::new(EventType::AdminAction, &clear).unwrap();
        let events = events_of(&record(&e));
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].kind, AccountEventKind::LockoutCleared);
        let other = Event::new(EventType::Refusal, &serde_json::json!({"agent": "alice"})).unwrap();
        assert!(events_of(&record(&other)).is_empty());
    }
}
