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

use time::OffsetDateTime;

use crate::account_events::{events_of, AccountEvent, AccountEventKind};
use crate::audit::store::{Store, StoreError};
use crate::audit::Record;
use crate::policy::CrossDeskFacts;

/// What the audit store says about one account.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountHistory {
    /// Times of successful resets (outcome records with status done).
    pub resets: Vec<OffsetDateTime>,
    /// Times of failed steps that count toward the lockout.
    pub failures: Vec<OffsetDateTime>,
    /// The newest TOTP time step accepted for the account.
    pub last_totp_step: Option<u64>,
    /// What the collector's cross-desk view adds: that it could not be asked, or that
    /// it flags the account. Default (nothing) for this desk's own log.
    pub cross_desk: CrossDeskFacts,
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

/// The histories of `usernames` (keyed by lower-case username) in one pass over the log.
fn histories(
    store: &Store,
    usernames: &[&str],
    exclude_request: Option<&str>,
) -> Result<BTreeMap<String, AccountHistory>, StoreError> {
    let mut events: BTreeMap<String, Vec<AccountEvent>> =
        usernames.iter().map(|u| (u.to_lowercase(), Vec::new())).collect();
    store
        .for_each(|stored| {
            let Ok(record) = Record::decode(&stored.record) else { return Ok::<(), ()>(()) };
            for event in events_of(&record) {
                if let Some(list) = events.get_mut(&event.account) {
                    list.push(event);
                }
            }
            Ok(())
        })?
        .ok();
    Ok(events.into_iter().map(|(u, e)| (u, AccountHistory::from_events(e, exclude_request))).collect())
}

/// The events of this desk's log about `usernames` (lower-case), in log order.
pub fn local_events(store: &Store, usernames: &[&str]) -> Result<Vec<AccountEvent>, StoreError> {
    let wanted: BTreeSet<String> = usernames.iter().map(|u| u.to_lowercase()).collect();
    let mut events = Vec::new();
    store
        .for_each(|stored| {
            let Ok(record) = Record::decode(&stored.record) else { return Ok::<(), ()>(()) };
            events.extend(events_of(&record).into_iter().filter(|e| wanted.contains(&e.account)));
            Ok(())
        })?
        .ok();
    Ok(events)
}

impl AccountHistory {
    /// Fold one account's events (from any sources, repeats allowed) in record order
    /// (a log's order; across desks, the collector's leaf order, then this desk's
    /// records not yet synced): each step counted once per [`AccountEvent::step_key`]
    /// where it first appears, a cleared lockout voids the failures recorded before
    /// it (not those whose clock says so: clocks differ), and the events of request
    /// `exclude_request` count only as resets (the session asking knows its steps).
    pub fn from_events(events: Vec<AccountEvent>, exclude_request: Option<&str>) -> Self {
        let mut history = AccountHistory::default();
        let mut seen = BTreeSet::new();
        for event in &events {
            if !seen.insert(event.step_key()) {
                continue;
            }
            let excluded = exclude_request.is_some_and(|r| r == event.request_id);
            match &event.kind {
                AccountEventKind::LockoutCleared => history.failures.clear(),
                AccountEventKind::ResetDone { .. } => history.resets.push(event.at),
                AccountEventKind::CountedFailure if !excluded => history.failures.push(event.at),
                AccountEventKind::TotpStep { step } if !excluded => {
                    history.last_totp_step = history.last_totp_step.max(Some(*step));
                }
                AccountEventKind::CountedFailure | AccountEventKind::TotpStep { .. } => {}
            }
        }
        history
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Method;
    use time::macros::datetime;

    fn event(request: &str, minute: u8, kind: AccountEventKind) -> AccountEvent {
        AccountEvent {
            account: "jdoe".into(),
            at: datetime!(2026-11-25 10:00 UTC) + time::Duration::minutes(minute.into()),
            request_id: request.into(),
            method: matches!(kind, AccountEventKind::CountedFailure).then_some(Method::SecurityAnswers),
            kind,
        }
    }

    #[test]
    fn a_step_seen_in_two_sources_counts_once_and_a_clearing_voids_what_came_before() {
        let fail = |r, m| event(r, m, AccountEventKind::CountedFailure);
        // The collector's copy, then this desk's own (one synced, one not).
        let events = vec![fail("req-a", 1), fail("req-b", 2), fail("req-b", 2), fail("req-c", 3)];
        assert_eq!(AccountHistory::from_events(events.clone(), None).failures.len(), 3);
        assert_eq!(AccountHistory::from_events(events.clone(), Some("req-b")).failures.len(), 2);
        let mut cleared = events;
        cleared.insert(2, event("", 9, AccountEventKind::LockoutCleared));
        let h = AccountHistory::from_events(cleared, None);
        assert_eq!(h.failures, [fail("req-c", 3).at], "only the failure recorded after the clearing counts");
        let reset = event("req-d", 4, AccountEventKind::ResetDone { report_sha256: None });
        assert_eq!(AccountHistory::from_events(vec![reset], Some("req-d")).resets.len(), 1, "resets always count");
    }
}
