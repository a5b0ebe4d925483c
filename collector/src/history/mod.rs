//! Cross-desk history: the collector's index of account events over every record it
//! verified, the signed answers desks ask for (`POST /history`), and "this wasn't
//! me" reports by the accounts' holders (`GET`/`POST /report/<token>`).
//!
//! - The **index** ([`catch_up`]) holds one row per account event of each stored
//!   record, extracted by the core's one rule ([`resetdesk::account_events::events_of`],
//!   the same the desk's own history uses), keyed by (desk log, seq, n). It follows
//!   the log by a high-water mark over leaf indexes stored with the rows: it is fed
//!   after each stored batch and caught up at start, so a crash in between loses
//!   nothing, and indexing again adds nothing.
//! - An **answer** ([`answer`]) lists each asked account's events since the desk's
//!   windows began and any flag in force, as JSON bytes under a C2SP signed note by
//!   the checkpoint key ([`resetdesk::upstream::history::answer_note_text`]: a header
//!   no checkpoint has, the tree size the index covered, the answer's SHA-256).
//! - A **report** ([`report`]) names a done reset by the hash of the token mailed to
//!   the holder, which the reset's signed outcome record carries.
//!
//! Storage is [`store::HistoryStore`] (SQLite and PostgreSQL, own tables).

pub mod api;
pub mod postgres;
pub mod rate;
pub mod report;
pub mod store;

use std::collections::BTreeMap;

use resetdesk::account_events::events_of;
use resetdesk::audit::Record;
use resetdesk::policy::CrossDeskFlag;
use resetdesk::tier::AccountTier;
use resetdesk::upstream::history::{
    answer_note_text, AccountAnswer, HistoryAnswer, HistoryRequest, IndexedEvent, SignedHistory, MAX_USERNAMES,
};
use serde::Deserialize;

use crate::note::{KeyError, LogKey};
use crate::store::{LogStore, StoreError};
use store::{HistoryStore, IndexRow};

/// Leaves indexed per transaction.
const INDEX_BATCH: u64 = 2048;
/// Longest username asked for, in bytes.
const MAX_USERNAME_BYTES: usize = 256;

/// `[history]` in `collector.toml`: the "this wasn't me" reports and what they do.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HistoryConfig {
    /// Hours a reset's "this wasn't me" link works after the reset (default 168, a week).
    pub report_valid_hours: u32,
    /// What a report does besides the alert: `"highest"` (default), `"privileged"` or
    /// `"standard"` flag the account so that its next reset at any desk needs at least
    /// that tier; `"none"` only alerts.
    pub flag_account_to: FlagAccountTo,
    /// Days such a flag stays in force (default 30).
    pub flag_days: u32,
    /// Requests to the report pages per minute, all links together (default 120);
    /// one link gets a tenth of it (at least 3). Over it: 429.
    pub report_requests_per_minute: u32,
}

impl Default for HistoryConfig {
    fn default() -> Self {
        Self {
            report_valid_hours: 7 * 24,
            flag_account_to: FlagAccountTo::Highest,
            flag_days: 30,
            report_requests_per_minute: 120,
        }
    }
}

/// The automatic response to a report (`flag_account_to`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FlagAccountTo {
    None,
    Standard,
    Privileged,
    Highest,
}

impl FlagAccountTo {
    pub fn tier(self) -> Option<AccountTier> {
        match self {
            Self::None => None,
            Self::Standard => Some(AccountTier::Standard),
            Self::Privileged => Some(AccountTier::Privileged),
            Self::Highest => Some(AccountTier::Highest),
        }
    }
}

/// Why a history request failed.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("{0}")]
    BadRequest(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Key(#[from] KeyError),
}

/// The index rows of one leaf's record (none if it does not decode: every stored
/// record was verified, so that would be a bug elsewhere, not an account event).
fn rows_of(leaf: &store::IndexLeaf) -> Vec<IndexRow> {
    let Ok(record) = Record::decode(&leaf.record) else { return Vec::new() };
    rows_of_events(leaf.log_id, leaf.seq, leaf.leaf_index, leaf.entry_hash, events_of(&record)).collect()
}

/// Index every integrated leaf after the mark; returns the tree size now covered.
/// Idempotent, and safe with several instances on one database (rows are keyed by
/// their record, the mark only grows).
pub fn catch_up<S: LogStore + HistoryStore + ?Sized>(store: &mut S) -> Result<u64, StoreError> {
    let size = store.tree_size()?;
    let mut mark = store.index_mark()?;
    while mark < size {
        let to = size.min(mark + INDEX_BATCH);
        let leaves = store.index_leaves(mark, to)?;
        let rows: Vec<IndexRow> = leaves.iter().flat_map(rows_of).collect();
        store.add_index_rows(&rows, to)?;
        mark = to;
    }
    Ok(size)
}

/// Index the leaves a batch just added; a failure is logged, never the batch's
/// (the next batch, request or start catches up).
pub fn after_batch<S: LogStore + HistoryStore + ?Sized>(store: &mut S) {
    if let Err(e) = catch_up(store) {
        tracing::error!("the account index could not follow the log (it catches up later): {e}");
    }
}

/// [`after_batch`] for a batch whose index rows ingest already made from its records
/// (`rows`, of the leaves `leaves`, by the same rule [`rows_of`] applies): when the
/// index ends where the batch begins and the log where it ends, they are stored as
/// they are, without reading the leaves back; otherwise (another instance appended,
/// the index lags) the index catches up from the log.
pub fn after_indexed_batch<S: LogStore + HistoryStore + ?Sized>(
    store: &mut S,
    leaves: std::ops::Range<u64>,
    rows: &[IndexRow],
) {
    let fast = (|| Ok::<_, StoreError>(store.index_mark()? == leaves.start && store.tree_size()? == leaves.end))();
    match fast {
        Ok(true) => {
            if let Err(e) = store.add_index_rows(rows, leaves.end) {
                tracing::error!("the account index could not follow the log (it catches up later): {e}");
            }
        }
        _ => after_batch(store),
    }
}

/// The index rows of a record at `leaf_index` from its events ([`events_of`]).
pub fn rows_of_events(
    log_id: resetdesk::audit::Hash32,
    seq: u64,
    leaf_index: u64,
    entry_hash: resetdesk::audit::Hash32,
    events: Vec<resetdesk::account_events::AccountEvent>,
) -> impl Iterator<Item = IndexRow> {
    events.into_iter().enumerate().map(move |(n, event)| IndexRow {
        log_id,
        seq,
        n: u32::try_from(n).unwrap_or(u32::MAX),
        leaf_index,
        entry_hash,
        event,
    })
}

/// Check a request's shape: usernames (1..=MAX_USERNAMES, short, printable), nonce.
fn check_request(request: &HistoryRequest) -> Result<Vec<String>, HistoryError> {
    let bad = |m: String| Err(HistoryError::BadRequest(m));
    if request.usernames.is_empty() || request.usernames.len() > MAX_USERNAMES {
        return bad(format!("ask for 1 to {MAX_USERNAMES} usernames"));
    }
    if request.nonce.is_empty() || request.nonce.len() > 64 || !request.nonce.bytes().all(|b| b.is_ascii_hexdigit()) {
        return bad("the nonce must be 1 to 64 hex digits".into());
    }
    let mut accounts = Vec::with_capacity(request.usernames.len());
    for u in &request.usernames {
        if u.is_empty() || u.len() > MAX_USERNAME_BYTES || u.chars().any(char::is_control) {
            return bad(format!("a username must be 1 to {MAX_USERNAME_BYTES} bytes without control characters"));
        }
        let u = u.to_lowercase();
        if !accounts.contains(&u) {
            accounts.push(u);
        }
    }
    Ok(accounts)
}

/// The signed answer to `request` at `now_ms`, from the index as [`catch_up`] left
/// it covering `tree_size` leaves.
pub fn answer<S: HistoryStore + ?Sized>(
    store: &S,
    key: &LogKey,
    request: &HistoryRequest,
    tree_size: u64,
    now_ms: u64,
) -> Result<SignedHistory, HistoryError> {
    let accounts = check_request(request)?;
    let mut by_account: BTreeMap<String, AccountAnswer> = accounts
        .iter()
        .map(|a| (a.clone(), AccountAnswer { username: a.clone(), events: Vec::new(), flag: None }))
        .collect();
    for row in store.account_rows(&accounts, request.since_ms)? {
        // Rows of leaves beyond the tree size (another instance's newer batch) are
        // left for the next answer, so the answer is what `tree_size` covers.
        if row.leaf_index >= tree_size {
            continue;
        }
        if let Some(a) = by_account.get_mut(&row.event.account) {
            a.events.push(IndexedEvent { desk_log: hex::encode(row.log_id), seq: row.seq, event: row.event });
        }
    }
    for flag in store.flags(&accounts, now_ms)? {
        if let Some(a) = by_account.get_mut(&flag.username) {
            a.flag = Some(CrossDeskFlag { tier: flag.tier, reason: flag.reason });
        }
    }
    let answer = HistoryAnswer {
        nonce: request.nonce.clone(),
        since_ms: request.since_ms,
        at_ms: now_ms,
        tree_size,
        accounts: by_account.into_values().collect(),
    };
    let json = serde_json::to_string(&answer).map_err(|e| HistoryError::BadRequest(e.to_string()))?;
    let note = key.sign_note(&answer_note_text(key.origin(), tree_size, json.as_bytes()))?;
    Ok(SignedHistory { answer: json, note })
}
