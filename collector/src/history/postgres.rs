//! [`HistoryStore`] on PostgreSQL: the same tables as SQLite's, shared by every
//! collector instance on the database. Each write is one statement (rows and mark
//! together in one data-modifying `WITH`), so it is atomic without a transaction.

use super::store::{tier_of, AccountFlag, HistoryStore, IndexLeaf, IndexRow};
use crate::store::{h32, i, u, PgStore, StoreError};

pub(crate) const PG_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS account_events (
    log_id BYTEA NOT NULL, seq BIGINT NOT NULL, n BIGINT NOT NULL,
    leaf_index BIGINT NOT NULL, entry_hash BYTEA NOT NULL,
    account TEXT NOT NULL, at_ms BIGINT NOT NULL, report_sha256 TEXT, event TEXT NOT NULL,
    PRIMARY KEY (log_id, seq, n)
);
CREATE INDEX IF NOT EXISTS account_events_by_account ON account_events (account, at_ms);
CREATE INDEX IF NOT EXISTS account_events_by_report ON account_events (report_sha256);
CREATE TABLE IF NOT EXISTS account_index_mark (id INTEGER PRIMARY KEY CHECK (id = 0), next BIGINT NOT NULL);
INSERT INTO account_index_mark (id, next) VALUES (0, 0) ON CONFLICT DO NOTHING;
CREATE TABLE IF NOT EXISTS account_flags (
    account TEXT PRIMARY KEY, tier TEXT NOT NULL, reason TEXT NOT NULL, until_ms BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS not_me_reports (report_sha256 TEXT PRIMARY KEY, at_ms BIGINT NOT NULL);
";

fn row_of(r: &tokio_postgres::Row) -> Result<IndexRow, StoreError> {
    IndexRow::from_parts(r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get::<_, &str>(5))
        .map_err(StoreError::Inconsistent)
}

impl HistoryStore for PgStore {
    fn index_leaves(&self, from: u64, to: u64) -> Result<Vec<IndexLeaf>, StoreError> {
        let rows = self
            .block_on(self.client.query(
                "SELECT leaf_index, log_id, seq, entry_hash, record FROM leaves
                 WHERE leaf_index >= $1 AND leaf_index < $2 ORDER BY leaf_index",
                &[&i(from), &i(to)],
            ))
            .map_err(self.pg("cannot read leaves to index"))?;
        Ok(rows
            .iter()
            .map(|r| IndexLeaf {
                leaf_index: u(r.get(0)),
                log_id: h32(r.get(1)),
                seq: u(r.get(2)),
                entry_hash: h32(r.get(3)),
                record: r.get(4),
            })
            .collect())
    }

    fn index_mark(&self) -> Result<u64, StoreError> {
        let row = self
            .block_on(self.client.query_one("SELECT next FROM account_index_mark WHERE id = 0", &[]))
            .map_err(self.pg("cannot read the account index's mark"))?;
        Ok(u(row.get(0)))
    }

    fn add_index_rows(&mut self, rows: &[IndexRow], mark: u64) -> Result<(), StoreError> {
        let logs: Vec<&[u8]> = rows.iter().map(|r| r.log_id.as_slice()).collect();
        let seqs: Vec<i64> = rows.iter().map(|r| i(r.seq)).collect();
        let ns: Vec<i64> = rows.iter().map(|r| i64::from(r.n)).collect();
        let leaves: Vec<i64> = rows.iter().map(|r| i(r.leaf_index)).collect();
        let hashes: Vec<&[u8]> = rows.iter().map(|r| r.entry_hash.as_slice()).collect();
        let accounts: Vec<&str> = rows.iter().map(|r| r.event.account.as_str()).collect();
        let ats: Vec<i64> = rows.iter().map(|r| i(r.at_ms())).collect();
        let reports: Vec<Option<&str>> = rows.iter().map(IndexRow::report_sha256).collect();
        let events: Vec<String> = rows.iter().map(IndexRow::event_json).collect();
        self.block_on(self.client.execute(
            "WITH added AS (
                 INSERT INTO account_events (log_id, seq, n, leaf_index, entry_hash, account, at_ms, report_sha256, event)
                 SELECT * FROM unnest($1::bytea[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bytea[],
                                      $6::text[], $7::bigint[], $8::text[], $9::text[])
                 ON CONFLICT DO NOTHING RETURNING 1)
             UPDATE account_index_mark SET next = GREATEST(next, $10) WHERE id = 0",
            &[&logs, &seqs, &ns, &leaves, &hashes, &accounts, &ats, &reports, &events, &i(mark)],
        ))
        .map(drop)
        .map_err(self.pg("cannot store account index rows"))
    }

    fn account_rows(&self, accounts: &[String], since_ms: u64) -> Result<Vec<IndexRow>, StoreError> {
        let rows = self
            .block_on(self.client.query(
                "SELECT log_id, seq, n, leaf_index, entry_hash, event FROM account_events
                 WHERE at_ms >= $1 AND account = ANY($2) ORDER BY leaf_index, n",
                &[&i(since_ms), &accounts],
            ))
            .map_err(self.pg("cannot read the account index"))?;
        rows.iter().map(row_of).collect()
    }

    fn reset_by_report(&self, report_sha256: &str) -> Result<Option<IndexRow>, StoreError> {
        let row = self
            .block_on(self.client.query_opt(
                "SELECT log_id, seq, n, leaf_index, entry_hash, event FROM account_events
                 WHERE report_sha256 = $1 ORDER BY leaf_index LIMIT 1",
                &[&report_sha256],
            ))
            .map_err(self.pg("cannot look up a report"))?;
        row.as_ref().map(row_of).transpose()
    }

    fn leaf_record(&self, leaf_index: u64) -> Result<Option<Vec<u8>>, StoreError> {
        let row = self
            .block_on(self.client.query_opt("SELECT record FROM leaves WHERE leaf_index = $1", &[&i(leaf_index)]))
            .map_err(self.pg("cannot read a leaf"))?;
        Ok(row.map(|r| r.get(0)))
    }

    fn report_made(&self, report_sha256: &str) -> Result<bool, StoreError> {
        let row = self
            .block_on(self.client.query_opt("SELECT 1 FROM not_me_reports WHERE report_sha256 = $1", &[&report_sha256]))
            .map_err(self.pg("cannot read reports"))?;
        Ok(row.is_some())
    }

    fn take_report(&mut self, report_sha256: &str, at_ms: u64) -> Result<bool, StoreError> {
        let n = self
            .block_on(self.client.execute(
                "INSERT INTO not_me_reports (report_sha256, at_ms) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &[&report_sha256, &i(at_ms)],
            ))
            .map_err(self.pg("cannot store a report"))?;
        Ok(n == 1)
    }

    fn set_flag(&mut self, flag: &AccountFlag) -> Result<(), StoreError> {
        self.block_on(self.client.execute(
            "INSERT INTO account_flags (account, tier, reason, until_ms) VALUES ($1, $2, $3, $4)
             ON CONFLICT (account) DO UPDATE SET tier = excluded.tier, reason = excluded.reason,
             until_ms = excluded.until_ms",
            &[&flag.username, &flag.tier.as_str(), &flag.reason, &i(flag.until_ms)],
        ))
        .map(drop)
        .map_err(self.pg("cannot store an account flag"))
    }

    fn flags(&self, accounts: &[String], now_ms: u64) -> Result<Vec<AccountFlag>, StoreError> {
        let rows = self
            .block_on(self.client.query(
                "SELECT account, tier, reason, until_ms FROM account_flags WHERE until_ms > $1 AND account = ANY($2)",
                &[&i(now_ms), &accounts],
            ))
            .map_err(self.pg("cannot read account flags"))?;
        Ok(rows
            .iter()
            .map(|r| AccountFlag {
                username: r.get(0),
                tier: tier_of(r.get::<_, &str>(1)),
                reason: r.get(2),
                until_ms: u(r.get(3)),
            })
            .collect())
    }
}
