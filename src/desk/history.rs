//! An account's history, read from the signed audit store: earlier successful resets,
//! earlier failed verification steps that count toward the lockout, and the last TOTP
//! time step accepted (replay refusal across sessions).
//!
//! The same step appears in several records of one request (the intent, then the
//! outcome; a failure record, then the lockout record), so steps are counted once
//! per `(request id, time, method)`. Reads every record: linear in the size of the
//! log, once for a whole page of search results ([`HistorySource::account_histories`]);
//! an index by account comes with the collector.
//!
//! [`HistorySource`] is the adapter: the desk reads its own audit store ([`Store`]
//! implements it) unless it is given another source (the collector's cross-desk view,
//! later). The desk reads it when a session opens and again before each step, so
//! failures recorded by a parallel session count at once.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;
use time::OffsetDateTime;

use crate::audit::event::parse_payload;
use crate::audit::store::{Store, StoreError};
use crate::audit::{DirectoryOutcome, EventType, Record};
use crate::verification::Verdict;
use crate::workflow::facts::{StepDetail, StepFact};

/// What the audit store says about one account.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountHistory {
    /// Times of successful resets (outcome records with status done).
    pub resets: Vec<OffsetDateTime>,
    /// Times of failed steps that count toward the lockout.
    pub failures: Vec<OffsetDateTime>,
    /// The newest TOTP time step accepted for the account.
    pub last_totp_step: Option<u64>,
}

fn time_of_ms(ms: u64) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()
}

/// The target username of a record's facts (`facts.target.username`).
fn target_of(facts: &Value) -> Option<&str> {
    facts.pointer("/target/username").and_then(Value::as_str)
}

/// Why an account's history could not be read.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("the account's history could not be read from the audit store: {0}")]
    Store(#[from] StoreError),
    #[error("the account's history is unavailable ({0}); try again, or check the connection to the collector")]
    Unavailable(String),
}

/// Where an account's earlier resets, failures and TOTP steps come from.
pub trait HistorySource {
    /// The history of `username`, without the records of request `exclude_request`
    /// (the session asking, whose own steps it already knows).
    fn account_history(&self, username: &str, exclude_request: Option<&str>) -> Result<AccountHistory, HistoryError>;

    /// The histories of several accounts at once (a page of search results), keyed by
    /// lower-case username. A source that can answer in one pass overrides this.
    fn account_histories(&self, usernames: &[&str]) -> Result<BTreeMap<String, AccountHistory>, HistoryError> {
        usernames.iter().map(|u| Ok((u.to_lowercase(), self.account_history(u, None)?))).collect()
    }
}

impl HistorySource for Store {
    fn account_history(&self, username: &str, exclude_request: Option<&str>) -> Result<AccountHistory, HistoryError> {
        Ok(account_history_except(self, username, exclude_request)?)
    }

    /// One pass over the log for all of `usernames`.
    fn account_histories(&self, usernames: &[&str]) -> Result<BTreeMap<String, AccountHistory>, HistoryError> {
        Ok(histories(self, usernames, None)?)
    }
}

/// Read the history of `username` from `store`. Records that cannot be decoded are
/// skipped here (the verifier reports them); they never hide a failure that decodes.
pub fn account_history(store: &Store, username: &str) -> Result<AccountHistory, StoreError> {
    account_history_except(store, username, None)
}

/// [`account_history`] without the records of request `exclude_request`.
pub fn account_history_except(
    store: &Store,
    username: &str,
    exclude_request: Option<&str>,
) -> Result<AccountHistory, StoreError> {
    Ok(histories(store, &[username], exclude_request)?.remove(&username.to_lowercase()).unwrap_or_default())
}

/// One account's history while it is being read, with the steps already counted.
#[derive(Default)]
struct Reading {
    history: AccountHistory,
    seen_steps: BTreeSet<(String, i128, String)>,
}

/// The histories of `usernames` (keyed by lower-case username) in one pass over the log.
fn histories(
    store: &Store,
    usernames: &[&str],
    exclude_request: Option<&str>,
) -> Result<BTreeMap<String, AccountHistory>, StoreError> {
    let mut reading: BTreeMap<String, Reading> =
        usernames.iter().map(|u| (u.to_lowercase(), Reading::default())).collect();
    store
        .for_each(|stored| {
            let Ok(record) = Record::decode(&stored.record) else { return Ok::<(), ()>(()) };
            let Ok(parsed) = parse_payload(record.event_type, &record.payload) else { return Ok(()) };
            let Some(facts) = parsed.value.get("facts") else { return Ok(()) };
            let Some(account) = target_of(facts).and_then(|t| reading.get_mut(&t.to_lowercase())) else {
                return Ok(());
            };
            let (history, seen_steps) = (&mut account.history, &mut account.seen_steps);
            // An admin cleared the lockout: the failures before it no longer count.
            if record.event_type == EventType::AdminAction && facts.get("action") == Some(&Value::from("clear-lockout"))
            {
                history.failures.clear();
                return Ok(());
            }
            if record.event_type == EventType::ResetOutcome && parsed.outcome == Some(DirectoryOutcome::Done) {
                history.resets.extend(time_of_ms(record.timestamp_ms));
            }
            let request_id = facts.get("request_id").and_then(Value::as_str).unwrap_or_default().to_owned();
            if exclude_request.is_some_and(|r| r == request_id) {
                return Ok(());
            }
            let steps = facts.get("steps").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
            for step in steps.iter().filter_map(|s| serde_json::from_value::<StepFact>(s.clone()).ok()) {
                if let StepDetail::TotpStep { step: n } = step.detail {
                    history.last_totp_step = history.last_totp_step.max(Some(n));
                }
                let key = (request_id.clone(), step.at.unix_timestamp_nanos(), step.method.as_str().to_owned());
                if !seen_steps.insert(key) {
                    continue;
                }
                if let Verdict::Failed(reason) = step.verdict {
                    if reason.counts_toward_lockout() {
                        history.failures.push(step.at);
                    }
                }
            }
            Ok(())
        })?
        .ok();
    Ok(reading.into_iter().map(|(u, r)| (u, r.history)).collect())
}
