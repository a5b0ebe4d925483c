//! The PostgreSQL [`LogStore`]: several collector instances on one database.
//!
//! Sequencing and integration follow Tessera's MySQL/AWS drivers:
//! - **sequence** (one transaction): `SELECT next FROM seq_coord ... FOR UPDATE`
//!   serialises all writers; under that lock the batch is checked to continue its
//!   desk log (`max(seq)` of the desk log + 1, else [`StoreError::DeskMoved`]), its
//!   rows go into `leaves` under indexes `next..next+n`, and `next` advances. Commit.
//! - **integrate** (another transaction): `SELECT size FROM int_coord ... FOR UPDATE`,
//!   read the consecutive sequenced rows from `size` on (this writer's and any other
//!   writer's), write their stored tree hashes, advance `size`. Commit. A writer that
//!   finds its batch already integrated by another one has nothing to do, so
//!   concurrent batches are integrated together. A writer stopped between the two
//!   steps leaves sequenced rows that the next integration (any instance's, or
//!   [`LogStore::integrate`] at start) takes along: indexes are fixed at sequencing,
//!   so integration is idempotent.
//!
//! The trait is synchronous (the collector runs it on the blocking pool, behind one
//! lock per instance), so each store owns a current-thread tokio runtime that drives
//! the `tokio-postgres` client and its connection: every call is one `block_on`, and
//! the connection task runs only while a call is in flight. That keeps the async
//! client out of the collector's sans-IO core and works the same from tests, the
//! CLI and the server's blocking threads. (This is what the `postgres` crate does
//! too; owning it here keeps one dependency and lets the stored-hash reader run
//! inside an open transaction.)

use std::collections::HashMap;
use std::future::Future;

use resetdesk::audit::verify::StoredRecord;
use resetdesk::audit::Hash32;
use tlog_tiles::{Hash, HashReader};
use tokio_postgres::{Client, NoTls, Transaction};
use zeroize::Zeroizing;

use super::{batch_head, check_continues, h32, i, u, Alert, LogStore, NewLeaf, Placed, StoreError};
use crate::merkle;

/// Leaves integrated per transaction at most.
const INTEGRATE_BATCH: i64 = 4096;

/// Serialises schema creation when several instances start at once.
const SCHEMA_LOCK: i64 = 0x7265_7365_7464_736b; // "resetdsk"

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS seq_coord (id INTEGER PRIMARY KEY CHECK (id = 0), next BIGINT NOT NULL);
INSERT INTO seq_coord (id, next) VALUES (0, 0) ON CONFLICT DO NOTHING;
CREATE TABLE IF NOT EXISTS int_coord (id INTEGER PRIMARY KEY CHECK (id = 0), size BIGINT NOT NULL);
INSERT INTO int_coord (id, size) VALUES (0, 0) ON CONFLICT DO NOTHING;
CREATE TABLE IF NOT EXISTS leaves (
    leaf_index  BIGINT PRIMARY KEY,
    log_id      BYTEA NOT NULL,
    seq         BIGINT NOT NULL,
    entry_hash  BYTEA NOT NULL,
    record      BYTEA NOT NULL,
    signature   BYTEA NOT NULL,
    cosignature BYTEA,
    UNIQUE (log_id, seq)
);
CREATE INDEX IF NOT EXISTS leaves_by_entry_hash ON leaves (entry_hash);
CREATE TABLE IF NOT EXISTS tree_hashes (idx BIGINT PRIMARY KEY, hash BYTEA NOT NULL);
CREATE TABLE IF NOT EXISTS checkpoint (id INTEGER PRIMARY KEY CHECK (id = 0), size BIGINT NOT NULL, note TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS certificates (key_id BYTEA PRIMARY KEY, der BYTEA NOT NULL, added BIGSERIAL NOT NULL);
CREATE TABLE IF NOT EXISTS alerts (
    id BIGSERIAL PRIMARY KEY, at_ms BIGINT NOT NULL, log_id BYTEA, seq BIGINT, kind TEXT NOT NULL, reason TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS witness_state (witness TEXT PRIMARY KEY, size BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS cosignatures (
    size BIGINT NOT NULL, witness TEXT NOT NULL, line TEXT NOT NULL, PRIMARY KEY (size, witness)
);
CREATE TABLE IF NOT EXISTS revocations (
    key_id BYTEA PRIMARY KEY, revoked_ms BIGINT NOT NULL, log_id BYTEA NOT NULL, seq BIGINT NOT NULL
);
";

/// Maps a driver error to a [`StoreError`] saying what was being done.
/// Connect, and run the connection on `runtime` (it makes progress while calls run).
fn open_client(runtime: &tokio::runtime::Runtime, url: &str, shown: &str) -> Result<Client, StoreError> {
    let (client, connection) =
        runtime.block_on(tokio_postgres::connect(url, NoTls)).map_err(pg_err(shown, "cannot connect"))?;
    runtime.spawn(async move {
        if let Err(e) = connection.await {
            tracing::error!("PostgreSQL connection closed: {e}");
        }
    });
    Ok(client)
}

fn pg_err<'a>(url: &'a str, what: &'static str) -> impl Fn(tokio_postgres::Error) -> StoreError + 'a {
    move |source| StoreError::Postgres { url: url.to_owned(), what, source }
}

/// The PostgreSQL [`LogStore`].
pub struct PgStore {
    pub(crate) client: Client,
    /// Drives `client`. `Some` from `connect` until `drop` (which shuts it down
    /// without blocking, as it may run inside the server's async context).
    pub(crate) runtime: Option<tokio::runtime::Runtime>,
    /// The URL without its password, for error messages.
    pub(crate) shown: String,
    /// The URL, to connect again after the connection was lost.
    url: Zeroizing<String>,
}

/// `postgres://user:secret@host/db` → `postgres://user@host/db`.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let Some((userinfo, host)) = rest.rsplit_once('@') else { return url.to_owned() };
    let user = userinfo.split(':').next().unwrap_or("");
    format!("{scheme}://{user}@{host}")
}

/// Is this database setting a PostgreSQL URL?
pub fn is_postgres_url(s: &str) -> bool {
    s.starts_with("postgres://") || s.starts_with("postgresql://")
}

impl PgStore {
    /// Connect (SCRAM over loopback or TLS-less local networks) and create the schema.
    pub fn connect(url: &str) -> Result<Self, StoreError> {
        let shown = redact(url);
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| {
            StoreError::PostgresSetup { url: shown.clone(), what: format!("cannot start its runtime: {e}") }
        })?;
        let mut client = open_client(&runtime, url, &shown)?;
        let pg = |what| pg_err(&shown, what);
        runtime
            .block_on(async {
                let tx = client.transaction().await?;
                tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK]).await?;
                tx.batch_execute(SCHEMA).await?;
                tx.batch_execute(crate::history::postgres::PG_SCHEMA).await?;
                tx.batch_execute(crate::alerts::postgres::SCHEMA).await?;
                tx.batch_execute(crate::approval::store::PG_SCHEMA).await?;
                tx.commit().await
            })
            .map_err(pg("cannot create the schema"))?;
        let url = Zeroizing::new(url.to_owned());
        Ok(Self { client, runtime: Some(runtime), shown, url })
    }

    pub(crate) fn block_on<F: Future>(&self, f: F) -> F::Output {
        self.runtime().block_on(f)
    }

    fn runtime(&self) -> &tokio::runtime::Runtime {
        // Invariant: `runtime` is Some from `connect` until `drop`.
        self.runtime.as_ref().expect("the store's runtime lives as long as the store")
    }

    pub(crate) fn pg(&self, what: &'static str) -> impl Fn(tokio_postgres::Error) -> StoreError + '_ {
        pg_err(&self.shown, what)
    }

    /// Begin a transaction and lock a coordination row (`... FOR UPDATE`), reading
    /// its counter. Returns the runtime, the transaction, the counter and the URL
    /// to name in errors.
    fn lock_coordination(
        &mut self,
        lock: &'static str,
    ) -> Result<(&tokio::runtime::Runtime, Transaction<'_>, i64, &str), StoreError> {
        let Self { client, runtime, shown, .. } = self;
        let shown: &str = shown;
        let pg = |what| pg_err(shown, what);
        // Invariant: `runtime` is Some from `connect` until `drop`.
        let rt = runtime.as_ref().expect("the store's runtime lives as long as the store");
        let tx = rt.block_on(client.transaction()).map_err(pg("cannot begin"))?;
        let counter: i64 = rt.block_on(tx.query_one(lock, &[])).map_err(pg("cannot lock a coordination row"))?.get(0);
        Ok((rt, tx, counter, shown))
    }

    /// Step 1: take leaf indexes under the `seq_coord` lock and store the rows.
    fn sequence(&mut self, leaves: &[NewLeaf], log_id: &Hash32, first: u64) -> Result<Vec<u64>, StoreError> {
        let (rt, tx, next, shown) = self.lock_coordination("SELECT next FROM seq_coord WHERE id = 0 FOR UPDATE")?;
        let pg = |what| pg_err(shown, what);
        let last: i64 = rt
            .block_on(tx.query_one("SELECT coalesce(max(seq), 0) FROM leaves WHERE log_id = $1", &[&log_id.as_slice()]))
            .map_err(pg("cannot read the desk log's head"))?
            .get(0);
        check_continues(log_id, first, u(last))?;
        let indexes: Vec<u64> = (0..leaves.len() as u64).map(|k| u(next) + k).collect();
        let idx: Vec<i64> = indexes.iter().map(|&x| i(x)).collect();
        let logs: Vec<&[u8]> = leaves.iter().map(|l| l.log_id.as_slice()).collect();
        let seqs: Vec<i64> = leaves.iter().map(|l| i(l.seq)).collect();
        let hashes: Vec<&[u8]> = leaves.iter().map(|l| l.entry_hash.as_slice()).collect();
        let records: Vec<&[u8]> = leaves.iter().map(|l| l.record.as_slice()).collect();
        let sigs: Vec<&[u8]> = leaves.iter().map(|l| l.signature.as_slice()).collect();
        let cosigs: Vec<Option<&[u8]>> = leaves.iter().map(|l| l.cosignature.as_deref()).collect();
        rt.block_on(tx.execute(
            "INSERT INTO leaves (leaf_index, log_id, seq, entry_hash, record, signature, cosignature)
             SELECT * FROM unnest($1::bigint[], $2::bytea[], $3::bigint[], $4::bytea[], $5::bytea[], $6::bytea[], $7::bytea[])",
            &[&idx, &logs, &seqs, &hashes, &records, &sigs, &cosigs],
        ))
        .map_err(pg("cannot store the batch"))?;
        for leaf in leaves {
            for key in &leaf.revokes {
                rt.block_on(tx.execute(
                    &format!(
                        "INSERT INTO revocations (key_id, revoked_ms, log_id, seq) VALUES ($1, $2, $3, $4) {}",
                        crate::store::UPSERT_REVOCATION
                    ),
                    &[&key.as_slice(), &i(leaf.timestamp_ms), &leaf.log_id.as_slice(), &i(leaf.seq)],
                ))
                .map_err(pg("cannot store a revocation"))?;
            }
        }
        let new_next = next + leaves.len() as i64;
        rt.block_on(tx.execute("UPDATE seq_coord SET next = $1 WHERE id = 0", &[&new_next]))
            .map_err(pg("cannot advance seq_coord"))?;
        rt.block_on(tx.commit()).map_err(pg("cannot commit the batch"))?;
        Ok(indexes)
    }

    /// Step 2, one transaction: integrate up to [`INTEGRATE_BATCH`] sequenced leaves
    /// under the `int_coord` lock. Returns (new size, whether more may be pending).
    fn integrate_some(&mut self) -> Result<(u64, bool), StoreError> {
        let (rt, tx, size, shown) = self.lock_coordination("SELECT size FROM int_coord WHERE id = 0 FOR UPDATE")?;
        let pg = |what| pg_err(shown, what);
        let rows = rt
            .block_on(tx.query(
                "SELECT leaf_index, entry_hash FROM leaves WHERE leaf_index >= $1 ORDER BY leaf_index LIMIT $2",
                &[&size, &INTEGRATE_BATCH],
            ))
            .map_err(pg("cannot read sequenced leaves"))?;
        if rows.is_empty() {
            rt.block_on(tx.commit()).map_err(pg("cannot commit"))?;
            return Ok((u(size), false));
        }
        let mut written: HashMap<u64, Hash32> = HashMap::new();
        let mut order = Vec::new();
        for (k, row) in rows.iter().enumerate() {
            let index: i64 = row.get(0);
            if index != size + k as i64 {
                return Err(StoreError::Inconsistent(format!(
                    "leaf {} is sequenced but leaf {} is missing",
                    index,
                    size + k as i64
                )));
            }
            let reader = TxHashes { rt, tx: &tx, written: &written };
            for (ix, h) in merkle::hashes_for_leaf(u(index), h32(row.get(1)), &reader)? {
                written.insert(ix, h);
                order.push(ix);
            }
        }
        let idx: Vec<i64> = order.iter().map(|&x| i(x)).collect();
        let hashes: Vec<&[u8]> = order.iter().map(|ix| written[ix].as_slice()).collect();
        rt.block_on(tx.execute(
            "INSERT INTO tree_hashes (idx, hash) SELECT * FROM unnest($1::bigint[], $2::bytea[])",
            &[&idx, &hashes],
        ))
        .map_err(pg("cannot store tree hashes"))?;
        let new_size = size + rows.len() as i64;
        rt.block_on(tx.execute("UPDATE int_coord SET size = $1 WHERE id = 0", &[&new_size]))
            .map_err(pg("cannot advance int_coord"))?;
        rt.block_on(tx.commit()).map_err(pg("cannot commit the integration"))?;
        Ok((u(new_size), rows.len() as i64 == INTEGRATE_BATCH))
    }
}

impl Drop for PgStore {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// Stored hashes inside the integrating transaction: those written by this
/// integration first, then the table.
struct TxHashes<'a> {
    rt: &'a tokio::runtime::Runtime,
    tx: &'a Transaction<'a>,
    written: &'a HashMap<u64, Hash32>,
}

impl HashReader for TxHashes<'_> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog_tiles::Error> {
        let missing: Vec<i64> = indexes.iter().filter(|ix| !self.written.contains_key(ix)).map(|&x| i(x)).collect();
        let mut found = HashMap::new();
        if !missing.is_empty() {
            let rows = self
                .rt
                .block_on(self.tx.query("SELECT idx, hash FROM tree_hashes WHERE idx = ANY($1)", &[&missing]))
                .map_err(|e| tlog_tiles::Error::InvalidInput(e.to_string()))?;
            for r in rows {
                found.insert(u(r.get(0)), h32(r.get(1)));
            }
        }
        indexes
            .iter()
            .map(|ix| {
                self.written.get(ix).or_else(|| found.get(ix)).map(|h| Hash(*h)).ok_or_else(|| {
                    tlog_tiles::Error::InvalidInput(format!("stored hash {ix} is missing from the database"))
                })
            })
            .collect()
    }
}

fn read_hashes(store: &PgStore, indexes: &[u64]) -> Result<Vec<Hash32>, StoreError> {
    let want: Vec<i64> = indexes.iter().map(|&x| i(x)).collect();
    let rows = store
        .block_on(store.client.query("SELECT idx, hash FROM tree_hashes WHERE idx = ANY($1)", &[&want]))
        .map_err(store.pg("cannot read tree hashes"))?;
    let found: HashMap<u64, Hash32> = rows.into_iter().map(|r| (u(r.get(0)), h32(r.get(1)))).collect();
    indexes
        .iter()
        .map(|ix| {
            found.get(ix).copied().ok_or_else(|| StoreError::Inconsistent(format!("stored hash {ix} is missing")))
        })
        .collect()
}

impl LogStore for PgStore {
    fn certificates(&self) -> Result<Vec<Vec<u8>>, StoreError> {
        let rows = self
            .block_on(self.client.query("SELECT der FROM certificates ORDER BY added, key_id", &[]))
            .map_err(self.pg("cannot read certificates"))?;
        Ok(rows.into_iter().map(|r| r.get(0)).collect())
    }

    fn add_certificate(&mut self, key_id: &Hash32, der: &[u8]) -> Result<(), StoreError> {
        self.block_on(self.client.execute(
            "INSERT INTO certificates (key_id, der) VALUES ($1, $2) ON CONFLICT (key_id) DO NOTHING",
            &[&key_id.as_slice(), &der],
        ))
        .map(drop)
        .map_err(self.pg("cannot store a certificate"))
    }

    fn desk_records(&self, log_id: &Hash32, after: u64) -> Result<Vec<StoredRecord>, StoreError> {
        let rows = self
            .block_on(self.client.query(
                "SELECT seq, record, signature, cosignature FROM leaves WHERE log_id = $1 AND seq > $2 ORDER BY seq",
                &[&log_id.as_slice(), &i(after)],
            ))
            .map_err(self.pg("cannot read a desk log"))?;
        Ok(rows
            .into_iter()
            .map(|r| StoredRecord {
                row_seq: u(r.get(0)),
                record: r.get(1),
                signature: r.get(2),
                cosignature: r.get(3),
            })
            .collect())
    }

    fn desk_last_seq(&self, log_id: &Hash32) -> Result<u64, StoreError> {
        let row = self
            .block_on(
                self.client
                    .query_one("SELECT coalesce(max(seq), 0) FROM leaves WHERE log_id = $1", &[&log_id.as_slice()]),
            )
            .map_err(self.pg("cannot read the desk log's head"))?;
        Ok(u(row.get(0)))
    }

    fn placed(&self, log_id: &Hash32, seq: u64) -> Result<Option<Placed>, StoreError> {
        let row = self
            .block_on(self.client.query_opt(
                "SELECT leaf_index, entry_hash FROM leaves WHERE log_id = $1 AND seq = $2",
                &[&log_id.as_slice(), &i(seq)],
            ))
            .map_err(self.pg("cannot find a record"))?;
        Ok(row.map(|r| Placed { leaf_index: u(r.get(0)), entry_hash: h32(r.get(1)) }))
    }

    fn append_batch(&mut self, leaves: &[NewLeaf]) -> Result<Vec<u64>, StoreError> {
        let Some((log_id, first)) = batch_head(leaves)? else { return Ok(Vec::new()) };
        let indexes = self.sequence(leaves, &log_id, first)?;
        let mut size = self.integrate()?;
        // Our rows were committed before we integrated, so they are in; say so if not.
        if let Some(&last) = indexes.last() {
            if size <= last {
                size = self.integrate()?;
            }
            if size <= last {
                return Err(StoreError::Inconsistent(format!("leaf {last} was sequenced but not integrated")));
            }
        }
        Ok(indexes)
    }

    fn integrate(&mut self) -> Result<u64, StoreError> {
        loop {
            let (size, more) = self.integrate_some()?;
            if !more {
                return Ok(size);
            }
        }
    }

    fn tree_size(&self) -> Result<u64, StoreError> {
        let row = self
            .block_on(self.client.query_one("SELECT size FROM int_coord WHERE id = 0", &[]))
            .map_err(self.pg("cannot read int_coord"))?;
        Ok(u(row.get(0)))
    }

    fn read_stored_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash32>, StoreError> {
        read_hashes(self, indexes)
    }

    fn find_entry(&self, entry_hash: &Hash32) -> Result<Option<(u64, Hash32, u64)>, StoreError> {
        let row = self
            .block_on(self.client.query_opt(
                "SELECT leaf_index, log_id, seq FROM leaves
                 WHERE entry_hash = $1 AND leaf_index < (SELECT size FROM int_coord WHERE id = 0)
                 ORDER BY leaf_index LIMIT 1",
                &[&entry_hash.as_slice()],
            ))
            .map_err(self.pg("cannot find an entry"))?;
        Ok(row.map(|r| (u(r.get(0)), h32(r.get(1)), u(r.get(2)))))
    }

    fn entries(&self, range: std::ops::Range<u64>) -> Result<Vec<Vec<u8>>, StoreError> {
        let rows = self
            .block_on(self.client.query(
                "SELECT record FROM leaves WHERE leaf_index >= $1 AND leaf_index < $2 ORDER BY leaf_index",
                &[&i(range.start), &i(range.end)],
            ))
            .map_err(self.pg("cannot read entries"))?;
        Ok(rows.into_iter().map(|r| r.get(0)).collect())
    }

    fn checkpoint(&self) -> Result<Option<(u64, String)>, StoreError> {
        let row = self
            .block_on(self.client.query_opt("SELECT size, note FROM checkpoint WHERE id = 0", &[]))
            .map_err(self.pg("cannot read the checkpoint"))?;
        Ok(row.map(|r| (u(r.get(0)), r.get(1))))
    }

    fn set_checkpoint(&mut self, size: u64, note: &str) -> Result<(), StoreError> {
        self.block_on(self.client.execute(
            "INSERT INTO checkpoint (id, size, note) VALUES (0, $1, $2)
             ON CONFLICT (id) DO UPDATE SET size = excluded.size, note = excluded.note
             WHERE excluded.size >= checkpoint.size",
            &[&i(size), &note],
        ))
        .map(drop)
        .map_err(self.pg("cannot store the checkpoint"))
    }

    fn add_alert(&mut self, a: &Alert) -> Result<(), StoreError> {
        let log_id = a.log_id.map(|l| l.to_vec());
        self.block_on(self.client.execute(
            "INSERT INTO alerts (at_ms, log_id, seq, kind, reason) VALUES ($1, $2, $3, $4, $5)",
            &[&i(a.at_ms), &log_id, &a.seq.map(i), &a.kind, &a.reason],
        ))
        .map(drop)
        .map_err(self.pg("cannot store an alert"))
    }

    fn alerts(&self) -> Result<Vec<Alert>, StoreError> {
        let rows = self
            .block_on(self.client.query("SELECT at_ms, log_id, seq, kind, reason FROM alerts ORDER BY id", &[]))
            .map_err(self.pg("cannot read alerts"))?;
        Ok(rows
            .into_iter()
            .map(|r| Alert {
                at_ms: u(r.get(0)),
                log_id: r.get::<_, Option<Vec<u8>>>(1).map(h32),
                seq: r.get::<_, Option<i64>>(2).map(u),
                kind: r.get(3),
                reason: r.get(4),
            })
            .collect())
    }

    fn revocations(&self) -> Result<HashMap<Hash32, u64>, StoreError> {
        let rows = self
            .block_on(self.client.query("SELECT key_id, revoked_ms FROM revocations", &[]))
            .map_err(self.pg("cannot read revocations"))?;
        Ok(rows.into_iter().map(|r| (h32(r.get(0)), u(r.get(1)))).collect())
    }

    fn reconnect_if_lost(&mut self) -> Result<(), StoreError> {
        // Let the connection task see a closed socket before asking.
        self.block_on(tokio::task::yield_now());
        if self.client.is_closed() {
            tracing::warn!("the PostgreSQL connection to {} was lost; connecting again", self.shown);
            self.client = open_client(self.runtime(), &self.url, &self.shown)?;
        }
        Ok(())
    }

    fn witness_size(&self, witness: &str) -> Result<Option<u64>, StoreError> {
        let row = self
            .block_on(self.client.query_opt("SELECT size FROM witness_state WHERE witness = $1", &[&witness]))
            .map_err(self.pg("cannot read a witness's size"))?;
        Ok(row.map(|r| u(r.get(0))))
    }

    fn set_witness_size(&mut self, witness: &str, size: u64) -> Result<(), StoreError> {
        self.block_on(self.client.execute(
            "INSERT INTO witness_state (witness, size) VALUES ($1, $2)
             ON CONFLICT (witness) DO UPDATE SET size = excluded.size",
            &[&witness, &i(size)],
        ))
        .map(drop)
        .map_err(self.pg("cannot store a witness's size"))
    }

    fn add_cosignature(&mut self, size: u64, witness: &str, line: &str) -> Result<(), StoreError> {
        self.block_on(self.client.execute(
            "INSERT INTO cosignatures (size, witness, line) VALUES ($1, $2, $3)
             ON CONFLICT (size, witness) DO UPDATE SET line = excluded.line",
            &[&i(size), &witness, &line],
        ))
        .map(drop)
        .map_err(self.pg("cannot store a cosignature"))
    }

    fn cosignatures(&self, size: u64) -> Result<Vec<String>, StoreError> {
        let rows = self
            .block_on(self.client.query("SELECT line FROM cosignatures WHERE size = $1 ORDER BY witness", &[&i(size)]))
            .map_err(self.pg("cannot read cosignatures"))?;
        Ok(rows.into_iter().map(|r| r.get(0)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_shown_without_their_password() {
        assert_eq!(redact("postgres://desk:s3cret@127.0.0.1:55432/log"), "postgres://desk@127.0.0.1:55432/log");
        assert_eq!(redact("postgres://127.0.0.1/log"), "postgres://127.0.0.1/log");
        assert!(is_postgres_url("postgresql://h/db") && is_postgres_url("postgres://h/db"));
        assert!(!is_postgres_url("collector.db") && !is_postgres_url("/var/lib/postgres/collector.db"));
    }
}
