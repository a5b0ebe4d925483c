//! Cross-desk history: the collector's signed answer of what happened to accounts
//! at every desk (`POST /history`), and [`CollectorHistory`], the desk's
//! [`HistorySource`] over it.
//!
//! The collector keeps an index of the account events ([`crate::account_events`]) of
//! every record it verified. The desk asks for some accounts since a time and gets
//! the answer's JSON bytes with a C2SP signed note by the collector's checkpoint key
//! over them ([`answer_note_text`]): the desk checks the note with its configured
//! verifier key, the answer's hash and the nonce it sent, then merges the events with
//! its own log's (records not synced yet count too; the same step in both counts
//! once, by request id, time and method).
//!
//! When the collector cannot be asked or its answer does not check, the history is
//! this desk's own, marked [`CrossDeskFacts::unavailable`]: the policy then treats
//! the account as recently reset and recently failed. Never "no history".

use std::collections::BTreeMap;
use std::path::Path;

use rand::RngCore as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::client::{ClientError, CollectorClient};
use crate::account_events::AccountEvent;
use crate::audit::store::Store;
use crate::audit::CollectorKeys;
use crate::clock::{Clock, SystemClock};
use crate::desk::history::{local_events, AccountHistory, HistoryError, HistorySource};
use crate::policy::{CrossDeskFacts, CrossDeskFlag};

/// Most accounts one request may ask for (a page of search results).
pub const MAX_USERNAMES: usize = 100;
/// The first line of a history answer's signed note: no checkpoint begins so.
pub const ANSWER_NOTE_HEADER: &str = "resetdesk cross-desk history answer v1";

/// `POST /history`: what the desk asks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryRequest {
    /// The accounts (at most [`MAX_USERNAMES`]).
    pub usernames: Vec<String>,
    /// Events since this time (Unix ms): the oldest the desk's windows reach.
    pub since_ms: u64,
    /// The desk's random nonce (hex), repeated in the answer.
    pub nonce: String,
}

/// One account in an answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountAnswer {
    /// Lower-case username.
    pub username: String,
    /// Its events at every desk since `since_ms`, each with the desk log and seq of
    /// the record it came from.
    pub events: Vec<IndexedEvent>,
    /// The collector's flag of the account, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flag: Option<CrossDeskFlag>,
}

/// An account event as the collector's index holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexedEvent {
    /// The desk log (hex of its log id).
    pub desk_log: String,
    pub seq: u64,
    #[serde(flatten)]
    pub event: AccountEvent,
}

/// The answer (its JSON bytes are what the note covers).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryAnswer {
    pub nonce: String,
    pub since_ms: u64,
    /// When the collector answered (Unix ms).
    pub at_ms: u64,
    /// The collector's tree size the index covered.
    pub tree_size: u64,
    pub accounts: Vec<AccountAnswer>,
}

/// What `POST /history` returns: the answer's JSON and the signed note over it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedHistory {
    pub answer: String,
    pub note: String,
}

/// The text of the signed note over an answer: a header no checkpoint has, the
/// collector's origin, the tree size, and the SHA-256 of the answer's bytes.
pub fn answer_note_text(origin: &str, tree_size: u64, answer: &[u8]) -> String {
    format!("{ANSWER_NOTE_HEADER}\n{origin}\n{tree_size}\n{}\n", hex::encode(Sha256::digest(answer)))
}

/// Why a history answer was not used.
#[derive(Debug, thiserror::Error)]
pub enum AnswerError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("the collector's history answer does not check ({0}); is [collector] verifier_key the collector's key?")]
    Unverified(String),
}

/// Check a signed answer against the trusted keys and the request it answers.
pub fn check_answer(
    signed: &SignedHistory,
    keys: &CollectorKeys,
    request: &HistoryRequest,
) -> Result<HistoryAnswer, AnswerError> {
    let bad = |why: String| AnswerError::Unverified(why);
    let (text, origin) = keys.verified_note_text(&signed.note).map_err(|e| bad(e.to_string()))?;
    let answer: HistoryAnswer = serde_json::from_str(&signed.answer).map_err(|e| bad(e.to_string()))?;
    if text != answer_note_text(&origin, answer.tree_size, signed.answer.as_bytes()) {
        return Err(bad("the signed note is not over this answer".into()));
    }
    if answer.nonce != request.nonce || answer.since_ms != request.since_ms {
        return Err(bad("the answer is for another request (nonce or window differ)".into()));
    }
    let asked: Vec<String> = request.usernames.iter().map(|u| u.to_lowercase()).collect();
    if let Some(a) = answer.accounts.iter().find(|a| !asked.contains(&a.username)) {
        return Err(bad(format!("the answer names account {:?}, not asked for", a.username)));
    }
    if let Some(e) = answer
        .accounts
        .iter()
        .flat_map(|a| a.events.iter().map(move |e| (a, e)))
        .find(|(a, e)| e.event.account != a.username)
    {
        return Err(bad(format!("an event of {:?} is listed under {:?}", e.1.event.account, e.0.username)));
    }
    Ok(answer)
}

/// What the collector last said about one account: its events and its flag.
type CollectorSaid = (Vec<AccountEvent>, Option<CrossDeskFlag>);

/// The desk's [`HistorySource`] over the collector's cross-desk index and this desk's
/// own log.
pub struct CollectorHistory {
    client: CollectorClient,
    keys: CollectorKeys,
    local: Store,
    /// How far back the desk's rules look (the longest window).
    window: time::Duration,
    clock: Box<dyn Clock>,
    /// The collector's events and flag of each account from its last good answer:
    /// while it cannot be asked, what it said before still counts (a session that saw
    /// another desk's failures keeps counting them).
    last_known: std::sync::Mutex<BTreeMap<String, CollectorSaid>>,
}

impl CollectorHistory {
    pub fn new(client: CollectorClient, keys: CollectorKeys, local: Store, window: time::Duration) -> Self {
        Self { client, keys, local, window, clock: Box::new(SystemClock), last_known: Default::default() }
    }

    /// The source `config` asks for: `Some` when `[collector] url` and `desk_key_file`
    /// are set (the desk services), reading this desk's own log at `audit_db`.
    pub fn from_config(config: &crate::config::Config, audit_db: &Path) -> Result<Option<Self>, HistoryError> {
        let c = &config.collector;
        if c.url.trim().is_empty() || c.desk_key_file.is_none() {
            return Ok(None);
        }
        let setup = |e: String| HistoryError::Unavailable(format!("cross-desk history setup: {e}"));
        let client = CollectorClient::from_config(c).map_err(|e| setup(e.to_string()))?;
        let keys = super::driver::collector_keys(c).map_err(|e| setup(e.to_string()))?;
        let local = Store::open_read_only(audit_db)?;
        Ok(Some(Self::new(client, keys, local, longest_window(&config.policy))))
    }

    /// Use `clock` for the windows' start (tests).
    pub fn with_clock(mut self, clock: Box<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Ask the collector about `usernames` and check its answer.
    pub fn ask(&self, usernames: &[&str]) -> Result<HistoryAnswer, AnswerError> {
        let since = self.clock.now() - self.window;
        let since_ms = u64::try_from(since.unix_timestamp_nanos() / 1_000_000).unwrap_or(0);
        let mut nonce = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let request = HistoryRequest {
            usernames: usernames.iter().map(|u| u.to_lowercase()).collect(),
            since_ms,
            nonce: hex::encode(nonce),
        };
        let signed: SignedHistory = self.client.service_post("/history", &request)?;
        check_answer(&signed, &self.keys, &request)
    }
}

/// The longest window the desk's rules read history over.
pub fn longest_window(policy: &crate::policy::PolicyConfig) -> time::Duration {
    let r = &policy.risk;
    let hours = i64::from(r.recent_reset.hours.max(r.earlier_failures.hours));
    time::Duration::hours(hours).max(time::Duration::minutes(i64::from(policy.lockout.window_minutes)))
}

impl HistorySource for CollectorHistory {
    fn account_history(&self, username: &str, exclude_request: Option<&str>) -> Result<AccountHistory, HistoryError> {
        Ok(self.histories(&[username], exclude_request)?.remove(&username.to_lowercase()).unwrap_or_default())
    }

    fn account_histories(&self, usernames: &[&str]) -> Result<BTreeMap<String, AccountHistory>, HistoryError> {
        self.histories(usernames, None)
    }
}

impl CollectorHistory {
    fn histories(
        &self,
        usernames: &[&str],
        exclude_request: Option<&str>,
    ) -> Result<BTreeMap<String, AccountHistory>, HistoryError> {
        // The collector's events first, in its leaf order, then this desk's own (those
        // not synced yet count; the synced ones were seen already and count once).
        let mut events: BTreeMap<String, Vec<AccountEvent>> =
            usernames.iter().map(|u| (u.to_lowercase(), Vec::new())).collect();
        let mut cross = BTreeMap::new();
        let mut unavailable = None;
        // Only this object's cache behind the lock: a panic elsewhere leaves it whole.
        let mut last_known = self.last_known.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        // Asked in pages of at most MAX_USERNAMES.
        for page in usernames.chunks(MAX_USERNAMES) {
            match self.ask(page) {
                Ok(answer) => {
                    for account in answer.accounts {
                        let collector_events: Vec<AccountEvent> = account.events.into_iter().map(|e| e.event).collect();
                        events.entry(account.username.clone()).or_default().extend(collector_events.iter().cloned());
                        last_known.insert(account.username.clone(), (collector_events, account.flag.clone()));
                        cross.insert(account.username, account.flag);
                    }
                }
                Err(e) => {
                    for u in page {
                        let u = u.to_lowercase();
                        let (known, flag) = last_known.get(&u).cloned().unwrap_or_default();
                        events.entry(u.clone()).or_default().extend(known);
                        cross.insert(u, flag);
                    }
                    tracing::warn!("cross-desk history unavailable: {e}");
                    unavailable = Some(match e {
                        AnswerError::Client(ClientError::Unreachable { .. }) => {
                            "the collector cannot be reached".into()
                        }
                        other => other.to_string(),
                    });
                }
            }
        }
        drop(last_known);
        for e in local_events(&self.local, usernames)? {
            events.entry(e.account.clone()).or_default().push(e);
        }
        Ok(events
            .into_iter()
            .map(|(u, e)| {
                let mut history = AccountHistory::from_events(e, exclude_request);
                history.cross_desk =
                    CrossDeskFacts { unavailable: unavailable.clone(), flag: cross.get(&u).cloned().flatten() };
                (u, history)
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::account_events::AccountEventKind;

    const ORIGIN: &str = "collector.test/resetdesk";

    fn key() -> (signed_note::StandardSigner, CollectorKeys) {
        let (skey, vkey) = signed_note::generate_key(&mut rand::rngs::OsRng, ORIGIN);
        let mut keys = CollectorKeys::default();
        keys.add_verifier_key(&vkey).unwrap();
        (signed_note::StandardSigner::new(&skey).unwrap(), keys)
    }

    fn sign(signer: &signed_note::StandardSigner, answer: &HistoryAnswer) -> SignedHistory {
        let json = serde_json::to_string(answer).unwrap();
        let mut note =
            signed_note::Note::new(answer_note_text(ORIGIN, answer.tree_size, json.as_bytes()).as_bytes(), &[])
                .unwrap();
        note.add_sigs(&[signer]).unwrap();
        SignedHistory { answer: json, note: String::from_utf8(note.to_bytes()).unwrap() }
    }

    fn request() -> HistoryRequest {
        HistoryRequest { usernames: vec!["JDoe".into()], since_ms: 5, nonce: "0a0b".into() }
    }

    fn answer(account: &str, event_account: &str) -> HistoryAnswer {
        let event = AccountEvent {
            account: event_account.into(),
            at: time::OffsetDateTime::UNIX_EPOCH,
            request_id: "req-1".into(),
            method: None,
            kind: AccountEventKind::ResetDone { report_sha256: None },
        };
        HistoryAnswer {
            nonce: "0a0b".into(),
            since_ms: 5,
            at_ms: 9,
            tree_size: 3,
            accounts: vec![AccountAnswer {
                username: account.into(),
                events: vec![IndexedEvent { desk_log: "00".into(), seq: 1, event }],
                flag: None,
            }],
        }
    }

    #[test]
    fn an_answer_counts_only_signed_by_the_trusted_key_for_the_request_asked() {
        let (signer, keys) = key();
        let good = sign(&signer, &answer("jdoe", "jdoe"));
        assert_eq!(check_answer(&good, &keys, &request()).unwrap().accounts.len(), 1);

        let (_, other) = key();
        assert!(check_answer(&good, &other, &request()).is_err(), "another key");
        let mut altered = good.clone();
        altered.answer = altered.answer.replace("req-1", "req-2");
        assert!(check_answer(&altered, &keys, &request()).is_err(), "bytes the note does not cover");
        let mut other_request = request();
        other_request.nonce = "ffff".into();
        assert!(check_answer(&good, &keys, &other_request).is_err(), "a replayed answer");
        let unasked = sign(&signer, &answer("mallory", "mallory"));
        assert!(check_answer(&unasked, &keys, &request()).is_err(), "an account not asked for");
        let misfiled = sign(&signer, &answer("jdoe", "mallory"));
        assert!(check_answer(&misfiled, &keys, &request()).is_err(), "another account's event");
        // A history note is never a checkpoint.
        assert!(crate::audit::verify_signed_checkpoint(&good.note, &keys).is_err());
    }
}
