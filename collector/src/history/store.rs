//! The account index's storage: [`HistoryStore`], implemented for both collector
//! stores (SQLite here, PostgreSQL in [`super::postgres`]), with its own tables
//! created at open beside the log's.
//!
//! - `account_events`: one row per account event of a stored record, keyed by
//!   (desk log id, seq, n), so indexing a record again changes nothing;
//! - `account_index_mark`: the leaves indexed so far (a high-water mark over leaf
//!   indexes), advanced in the same transaction as the rows it covers;
//! - `account_flags`: accounts flagged by a "this wasn't me" report, until a time;
//! - `not_me_reports`: the reports made, by token hash (single use).

use resetdesk::account_events::AccountEvent;
use resetdesk::audit::Hash32;
use resetdesk::tier::AccountTier;
use rusqlite::{params, OptionalExtension};

use crate::store::{h32, i, u, SqliteStore, StoreError};

/// A stored leaf to index.
#[derive(Debug, Clone)]
pub struct IndexLeaf {
    pub leaf_index: u64,
    pub log_id: Hash32,
    pub seq: u64,
    pub entry_hash: Hash32,
    pub record: Vec<u8>,
}

/// One row of the index: an account event and the record it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexRow {
    pub log_id: Hash32,
    pub seq: u64,
    /// The event's place among the record's events.
    pub n: u32,
    pub leaf_index: u64,
    pub entry_hash: Hash32,
    pub event: AccountEvent,
}

impl IndexRow {
    pub(crate) fn at_ms(&self) -> u64 {
        u64::try_from(self.event.at.unix_timestamp_nanos() / 1_000_000).unwrap_or(0)
    }

    pub(crate) fn report_sha256(&self) -> Option<&str> {
        match &self.event.kind {
            resetdesk::account_events::AccountEventKind::ResetDone { report_sha256 } => report_sha256.as_deref(),
            _ => None,
        }
    }

    pub(crate) fn event_json(&self) -> String {
        // An AccountEvent is strings, numbers and a time: it always serialises.
        serde_json::to_string(&self.event).unwrap_or_default()
    }

    pub(crate) fn from_parts(
        log_id: Vec<u8>,
        seq: i64,
        n: i64,
        leaf_index: i64,
        entry_hash: Vec<u8>,
        event: &str,
    ) -> Result<Self, String> {
        let event = serde_json::from_str(event).map_err(|e| format!("an account_events row does not decode: {e}"))?;
        Ok(Self {
            log_id: h32(log_id),
            seq: u(seq),
            n: u32::try_from(n).unwrap_or(u32::MAX),
            leaf_index: u(leaf_index),
            entry_hash: h32(entry_hash),
            event,
        })
    }
}

/// An account flag the collector holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountFlag {
    pub username: String,
    pub tier: AccountTier,
    pub reason: String,
    pub until_ms: u64,
}

/// The index's storage.
pub trait HistoryStore {
    /// Leaves `from..to` (leaf indexes) with their records, in leaf order.
    fn index_leaves(&self, from: u64, to: u64) -> Result<Vec<IndexLeaf>, StoreError>;
    /// The leaves indexed so far (all below it are).
    fn index_mark(&self) -> Result<u64, StoreError>;
    /// Store `rows` (existing ones left as they are) and raise the mark to `mark`, in
    /// one transaction.
    fn add_index_rows(&mut self, rows: &[IndexRow], mark: u64) -> Result<(), StoreError>;
    /// The rows of `accounts` (lower-case) at or after `since_ms`, in leaf order.
    fn account_rows(&self, accounts: &[String], since_ms: u64) -> Result<Vec<IndexRow>, StoreError>;
    /// The reset whose record carries this report hash.
    fn reset_by_report(&self, report_sha256: &str) -> Result<Option<IndexRow>, StoreError>;
    /// The record bytes of a leaf.
    fn leaf_record(&self, leaf_index: u64) -> Result<Option<Vec<u8>>, StoreError>;
    /// Whether a report was already made with this hash.
    fn report_made(&self, report_sha256: &str) -> Result<bool, StoreError>;
    /// Record a report; `false` if one was already made with this hash (single use,
    /// decided by the database, so two instances cannot both take it).
    fn take_report(&mut self, report_sha256: &str, at_ms: u64) -> Result<bool, StoreError>;
    /// Flag an account (a later flag replaces an earlier one).
    fn set_flag(&mut self, flag: &AccountFlag) -> Result<(), StoreError>;
    /// The flags of `accounts` still in force at `now_ms`.
    fn flags(&self, accounts: &[String], now_ms: u64) -> Result<Vec<AccountFlag>, StoreError>;
}

pub(crate) const SQLITE_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS account_events (
    log_id BLOB NOT NULL, seq INTEGER NOT NULL, n INTEGER NOT NULL,
    leaf_index INTEGER NOT NULL, entry_hash BLOB NOT NULL,
    account TEXT NOT NULL, at_ms INTEGER NOT NULL, report_sha256 TEXT, event TEXT NOT NULL,
    PRIMARY KEY (log_id, seq, n)
);
CREATE INDEX IF NOT EXISTS account_events_by_account ON account_events (account, at_ms);
CREATE INDEX IF NOT EXISTS account_events_by_report ON account_events (report_sha256);
CREATE TABLE IF NOT EXISTS account_index_mark (id INTEGER PRIMARY KEY CHECK (id = 0), next INTEGER NOT NULL);
INSERT OR IGNORE INTO account_index_mark (id, next) VALUES (0, 0);
CREATE TABLE IF NOT EXISTS account_flags (
    account TEXT PRIMARY KEY, tier TEXT NOT NULL, reason TEXT NOT NULL, until_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS not_me_reports (report_sha256 TEXT PRIMARY KEY, at_ms INTEGER NOT NULL);
";

pub(crate) fn tier_of(s: &str) -> AccountTier {
    // Written by set_flag from an AccountTier; anything else reads as the strictest.
    AccountTier::ALL.into_iter().find(|t| t.as_str() == s).unwrap_or(AccountTier::Highest)
}

/// `?2, ?3, ...` / `$2, $3, ...`: `n` numbered placeholders from `first`.
pub(crate) fn placeholders(n: usize, first: usize, prefix: &str) -> String {
    (first..first + n).map(|k| format!("{prefix}{k}")).collect::<Vec<_>>().join(", ")
}

impl HistoryStore for SqliteStore {
    fn index_leaves(&self, from: u64, to: u64) -> Result<Vec<IndexLeaf>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT leaf_index, log_id, seq, entry_hash, record FROM leaves
                 WHERE leaf_index >= ?1 AND leaf_index < ?2 ORDER BY leaf_index",
            )
            .map_err(self.err())?;
        let rows = stmt
            .query_map(params![i(from), i(to)], |r| {
                Ok(IndexLeaf {
                    leaf_index: u(r.get(0)?),
                    log_id: h32(r.get(1)?),
                    seq: u(r.get(2)?),
                    entry_hash: h32(r.get(3)?),
                    record: r.get(4)?,
                })
            })
            .map_err(self.err())?;
        rows.collect::<Result<_, _>>().map_err(self.err())
    }

    fn index_mark(&self) -> Result<u64, StoreError> {
        self.conn
            .query_row("SELECT next FROM account_index_mark WHERE id = 0", [], |r| r.get(0))
            .map(u)
            .map_err(self.err())
    }

    fn add_index_rows(&mut self, rows: &[IndexRow], mark: u64) -> Result<(), StoreError> {
        let path = self.path.clone();
        let err = |source| StoreError::Sql { path: path.clone(), source };
        // A savepoint: its own transaction, or nested in an ingest's.
        let tx = self.conn.savepoint().map_err(err)?;
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO account_events
                     (log_id, seq, n, leaf_index, entry_hash, account, at_ms, report_sha256, event)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                )
                .map_err(err)?;
            for row in rows {
                insert
                    .execute(params![
                        row.log_id,
                        i(row.seq),
                        i64::from(row.n),
                        i(row.leaf_index),
                        row.entry_hash,
                        row.event.account,
                        i(row.at_ms()),
                        row.report_sha256(),
                        row.event_json(),
                    ])
                    .map_err(err)?;
            }
            tx.execute("UPDATE account_index_mark SET next = max(next, ?1) WHERE id = 0", [i(mark)]).map_err(err)?;
        }
        tx.commit().map_err(err)
    }

    fn account_rows(&self, accounts: &[String], since_ms: u64) -> Result<Vec<IndexRow>, StoreError> {
        if accounts.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT log_id, seq, n, leaf_index, entry_hash, event FROM account_events
             WHERE at_ms >= ?1 AND account IN ({}) ORDER BY leaf_index, n",
            placeholders(accounts.len(), 2, "?")
        );
        let mut stmt = self.conn.prepare(&sql).map_err(self.err())?;
        let since = i(since_ms);
        let mut values: Vec<&dyn rusqlite::ToSql> = vec![&since];
        values.extend(accounts.iter().map(|a| a as &dyn rusqlite::ToSql));
        let rows = stmt
            .query_map(values.as_slice(), |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get::<_, String>(5)?))
            })
            .map_err(self.err())?;
        let mut out = Vec::new();
        for row in rows {
            let (log, seq, n, leaf, hash, event) = row.map_err(self.err())?;
            out.push(IndexRow::from_parts(log, seq, n, leaf, hash, &event).map_err(StoreError::Inconsistent)?);
        }
        Ok(out)
    }

    fn reset_by_report(&self, report_sha256: &str) -> Result<Option<IndexRow>, StoreError> {
        let row = self
            .conn
            .query_row(
                "SELECT log_id, seq, n, leaf_index, entry_hash, event FROM account_events
                 WHERE report_sha256 = ?1 ORDER BY leaf_index LIMIT 1",
                [report_sha256],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get::<_, String>(5)?)),
            )
            .optional()
            .map_err(self.err())?;
        row.map(|(log, seq, n, leaf, hash, event)| IndexRow::from_parts(log, seq, n, leaf, hash, &event))
            .transpose()
            .map_err(StoreError::Inconsistent)
    }

    fn leaf_record(&self, leaf_index: u64) -> Result<Option<Vec<u8>>, StoreError> {
        self.conn
            .query_row("SELECT record FROM leaves WHERE leaf_index = ?1", [i(leaf_index)], |r| r.get(0))
            .optional()
            .map_err(self.err())
    }

    fn report_made(&self, report_sha256: &str) -> Result<bool, StoreError> {
        self.conn
            .query_row("SELECT 1 FROM not_me_reports WHERE report_sha256 = ?1", [report_sha256], |_| Ok(()))
            .optional()
            .map(|r| r.is_some())
            .map_err(self.err())
    }

    fn take_report(&mut self, report_sha256: &str, at_ms: u64) -> Result<bool, StoreError> {
        self.conn
            .execute(
                "INSERT OR IGNORE INTO not_me_reports (report_sha256, at_ms) VALUES (?1, ?2)",
                params![report_sha256, i(at_ms)],
            )
            .map(|n| n == 1)
            .map_err(self.err())
    }

    fn set_flag(&mut self, flag: &AccountFlag) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT INTO account_flags (account, tier, reason, until_ms) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (account) DO UPDATE SET tier = excluded.tier, reason = excluded.reason,
                 until_ms = excluded.until_ms",
                params![flag.username, flag.tier.as_str(), flag.reason, i(flag.until_ms)],
            )
            .map(drop)
            .map_err(self.err())
    }

    fn flags(&self, accounts: &[String], now_ms: u64) -> Result<Vec<AccountFlag>, StoreError> {
        if accounts.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT account, tier, reason, until_ms FROM account_flags WHERE until_ms > ?1 AND account IN ({})",
            placeholders(accounts.len(), 2, "?")
        );
        let mut stmt = self.conn.prepare(&sql).map_err(self.err())?;
        let now = i(now_ms);
        let mut values: Vec<&dyn rusqlite::ToSql> = vec![&now];
        values.extend(accounts.iter().map(|a| a as &dyn rusqlite::ToSql));
        let rows = stmt
            .query_map(values.as_slice(), |r| {
                Ok(AccountFlag {
                    username: r.get(0)?,
                    tier: tier_of(&r.get::<_, String>(1)?),
                    reason: r.get(2)?,
                    until_ms: u(r.get(3)?),
                })
            })
            .map_err(self.err())?;
        rows.collect::<Result<_, _>>().map_err(self.err())
    }
}
