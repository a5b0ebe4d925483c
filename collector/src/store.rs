//! The collector's storage: a small trait ([`LogStore`]), its SQLite implementation
//! (the default) and its PostgreSQL implementation ([`PgStore`], several collector
//! instances on one database). The collector holds no state outside it.
//!
//! Sequencing follows Tessera's SQL drivers: a coordination row `seq_coord(next)`
//! hands out leaf indexes to a batch under a lock, the batch's records are stored
//! under those indexes, and integration (under `int_coord(size)`) writes the tree's
//! stored hashes for the new leaves and advances the integrated size. In SQLite (one
//! writer) both happen in one `BEGIN IMMEDIATE` transaction per batch, so a crash
//! anywhere in a batch leaves either all of it or none of it: no leaf missing, none
//! doubled. PostgreSQL sequences under `SELECT ... FOR UPDATE` on `seq_coord` in one
//! transaction and integrates every consecutive sequenced row under `int_coord` in
//! another (whoever integrates first takes the others' batches along); see
//! [`postgres`].
//!
//! A batch continues its desk log: its first seq is the desk log's stored last seq
//! plus one, checked under the sequencing lock. A collector instance whose cached
//! verifier state of a desk log is behind (another instance appended) gets
//! [`StoreError::DeskMoved`] and checks the batch again from the database.

pub mod apart;
pub mod postgres;
mod wal;
pub use postgres::PgStore;

use std::collections::HashMap;
use std::path::Path;

use resetdesk::audit::verify::StoredRecord;
use resetdesk::audit::Hash32;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use tlog_tiles::{Hash, HashReader};

use crate::merkle;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("collector database {path}: {source}")]
    Sql { path: String, source: rusqlite::Error },
    #[error("collector database {path} is corrupt: {what}")]
    Corrupt { path: String, what: String },
    #[error(transparent)]
    Tree(#[from] merkle::TreeError),
    #[error(
        "the collector's database disagrees with itself: {0}; restore it from a backup or contact the maintainers"
    )]
    Inconsistent(String),
    #[error("collector database {url}: {what}: {source}")]
    Postgres { url: String, what: &'static str, source: tokio_postgres::Error },
    #[error("collector database {url}: {what}")]
    PostgresSetup { url: String, what: String },
    /// The batch does not continue the desk log as stored: another collector instance
    /// appended to it since this one's verifier state was read. Check it again.
    #[error("desk log {log_id}: the batch starts at seq {batch_first} but the stored log ends at seq {stored_last}; check it again from the database")]
    DeskMoved { log_id: String, batch_first: u64, stored_last: u64 },
    #[error("a batch must be consecutive records of one desk log: {0}")]
    BatchShape(String),
}

/// A record accepted for the log (verified by the caller).
#[derive(Debug, Clone)]
pub struct NewLeaf {
    pub log_id: Hash32,
    pub seq: u64,
    pub entry_hash: Hash32,
    pub record: Vec<u8>,
    pub signature: Vec<u8>,
    pub cosignature: Option<Vec<u8>>,
    /// The keys this record revokes (a verified `revocation` record), stored with it
    /// in the same transaction so every desk log is checked against them.
    pub revokes: Vec<Hash32>,
    /// The record's time (UTC ms): when its revocations take effect.
    pub timestamp_ms: u64,
}

/// Where a record is in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placed {
    pub leaf_index: u64,
    pub entry_hash: Hash32,
}

/// A rejected submission, kept for whoever watches the collector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    pub at_ms: u64,
    pub log_id: Option<Hash32>,
    pub seq: Option<u64>,
    /// The error code (as in the HTTP error body).
    pub kind: String,
    pub reason: String,
}

/// The storage a collector needs. Implementations must make `append_batch` atomic
/// and must never reuse or skip a leaf index.
pub trait LogStore: Send {
    /// Certificates (DER) desks have sent, in the order first seen.
    fn certificates(&self) -> Result<Vec<Vec<u8>>, StoreError>;
    fn add_certificate(&mut self, key_id: &Hash32, der: &[u8]) -> Result<(), StoreError>;
    /// The stored records of one desk log after seq `after`, in seq order (to resume
    /// or catch up its verifier; `after = 0` for all).
    fn desk_records(&self, log_id: &Hash32, after: u64) -> Result<Vec<StoredRecord>, StoreError>;
    /// The highest stored seq of a desk log (0 if none).
    fn desk_last_seq(&self, log_id: &Hash32) -> Result<u64, StoreError>;
    /// Where record `seq` of a desk log is, if stored (sequenced; see [`integrate`](Self::integrate)).
    fn placed(&self, log_id: &Hash32, seq: u64) -> Result<Option<Placed>, StoreError>;
    /// Append verified records as new leaves, atomically, and integrate them. The
    /// records are consecutive records of one desk log, the first one right after
    /// the desk log's stored last seq, else [`StoreError::DeskMoved`] (checked under
    /// the sequencing lock, so two writers cannot both extend the same head).
    fn append_batch(&mut self, leaves: &[NewLeaf]) -> Result<Vec<u64>, StoreError>;
    /// Integrate leaves sequenced but not yet in the tree (a writer stopped between
    /// the two steps); returns the tree size.
    fn integrate(&mut self) -> Result<u64, StoreError>;
    /// Leaves integrated so far.
    fn tree_size(&self) -> Result<u64, StoreError>;
    /// The tree's stored hashes (the `tlog_tiles` stored-hash layout).
    fn read_stored_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash32>, StoreError>;
    /// The leaf with this entry hash: (leaf index, log id, seq).
    fn find_entry(&self, entry_hash: &Hash32) -> Result<Option<(u64, Hash32, u64)>, StoreError>;
    /// The entries (record bytes) of leaves `range`.
    fn entries(&self, range: std::ops::Range<u64>) -> Result<Vec<Vec<u8>>, StoreError>;
    /// The latest signed checkpoint: (tree size, note).
    fn checkpoint(&self) -> Result<Option<(u64, String)>, StoreError>;
    fn set_checkpoint(&mut self, size: u64, note: &str) -> Result<(), StoreError>;
    fn add_alert(&mut self, alert: &Alert) -> Result<(), StoreError>;
    fn alerts(&self) -> Result<Vec<Alert>, StoreError>;
    /// Keys revoked by any desk log's stored `revocation` records: key id -> the
    /// earliest revocation's time (UTC ms).
    fn revocations(&self) -> Result<HashMap<Hash32, u64>, StoreError>;
    /// The tree size a witness (by key name) last cosigned, as far as this log knows.
    fn witness_size(&self, witness: &str) -> Result<Option<u64>, StoreError>;
    fn set_witness_size(&mut self, witness: &str, size: u64) -> Result<(), StoreError>;
    /// Keep a witness's cosignature line for the checkpoint of `size` (one per witness).
    fn add_cosignature(&mut self, size: u64, witness: &str, line: &str) -> Result<(), StoreError>;
    /// The cosignature lines kept for the checkpoint of `size`, by witness name.
    fn cosignatures(&self, size: u64) -> Result<Vec<String>, StoreError>;
    /// Re-open a database connection that was lost (the server restarted); called
    /// before each request. Nothing to do for a local file.
    fn reconnect_if_lost(&mut self) -> Result<(), StoreError> {
        Ok(())
    }
    /// For receipts built after the collector's lock is released: a source of stored
    /// hashes to read without it, and the hashes this store holds in memory (the last
    /// batch's). `None`: receipts are built under the lock.
    fn hashes_apart(&self) -> Option<apart::Apart> {
        None
    }
    /// Begin one transaction around everything a batch's ingest writes (the leaves,
    /// the checkpoint, the alerts, the anomaly rules' memory, the account index), so
    /// that they are kept together, with one disk sync. Stores whose statements each
    /// commit on their own (PostgreSQL here: instances ingest concurrently) do nothing.
    fn begin_unit(&mut self) -> Result<(), StoreError> {
        Ok(())
    }
    /// Commit the transaction [`begin_unit`](Self::begin_unit) began. On an error
    /// nothing of it was kept (rolled back), and the caller must forget what it
    /// cached of it.
    fn commit_unit(&mut self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// A batch's shape: one desk log, consecutive seqs. Returns (log id, first seq).
pub(crate) fn batch_head(leaves: &[NewLeaf]) -> Result<Option<(Hash32, u64)>, StoreError> {
    let Some(first) = leaves.first() else { return Ok(None) };
    for (k, leaf) in leaves.iter().enumerate() {
        if leaf.log_id != first.log_id {
            return Err(StoreError::BatchShape("records of two desk logs".into()));
        }
        if leaf.seq != first.seq + k as u64 {
            return Err(StoreError::BatchShape(format!("seq {} where {} was due", leaf.seq, first.seq + k as u64)));
        }
    }
    Ok(Some((first.log_id, first.seq)))
}

/// Refuse a batch that does not continue the stored desk log.
pub(crate) fn check_continues(log_id: &Hash32, first: u64, stored_last: u64) -> Result<(), StoreError> {
    if first == stored_last + 1 {
        return Ok(());
    }
    Err(StoreError::DeskMoved { log_id: hex::encode(log_id), batch_first: first, stored_last })
}

/// Adapter: any [`LogStore`] as a `tlog_tiles` hash reader.
pub struct StoredHashes<'a, S: LogStore + ?Sized>(pub &'a S);

impl<S: LogStore + ?Sized> HashReader for StoredHashes<'_, S> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog_tiles::Error> {
        let hashes = self.0.read_stored_hashes(indexes).map_err(|e| tlog_tiles::Error::InvalidInput(e.to_string()))?;
        Ok(hashes.into_iter().map(Hash).collect())
    }
}

// Pages of 16 KiB (a new database's; an existing one keeps its own): a batch of 1,000
// records commits about 100 WAL frames instead of 400, each one write call.
const SCHEMA: &str = "
PRAGMA page_size = 16384;
PRAGMA journal_mode = WAL;
PRAGMA synchronous = FULL;
CREATE TABLE IF NOT EXISTS seq_coord (id INTEGER PRIMARY KEY CHECK (id = 0), next INTEGER NOT NULL);
INSERT OR IGNORE INTO seq_coord (id, next) VALUES (0, 0);
CREATE TABLE IF NOT EXISTS int_coord (id INTEGER PRIMARY KEY CHECK (id = 0), size INTEGER NOT NULL);
INSERT OR IGNORE INTO int_coord (id, size) VALUES (0, 0);
CREATE TABLE IF NOT EXISTS leaves (
    leaf_index  INTEGER PRIMARY KEY,
    log_id      BLOB NOT NULL,
    seq         INTEGER NOT NULL,
    entry_hash  BLOB NOT NULL,
    record      BLOB NOT NULL,
    signature   BLOB NOT NULL,
    cosignature BLOB,
    UNIQUE (log_id, seq)
);
CREATE INDEX IF NOT EXISTS leaves_by_entry_hash ON leaves (entry_hash);
CREATE TABLE IF NOT EXISTS tree_hashes (idx INTEGER PRIMARY KEY, hash BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS checkpoint (id INTEGER PRIMARY KEY CHECK (id = 0), size INTEGER NOT NULL, note TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS certificates (key_id BLOB PRIMARY KEY, der BLOB NOT NULL, added INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS alerts (
    id INTEGER PRIMARY KEY, at_ms INTEGER NOT NULL, log_id BLOB, seq INTEGER, kind TEXT NOT NULL, reason TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS witness_state (witness TEXT PRIMARY KEY, size INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS cosignatures (
    size INTEGER NOT NULL, witness TEXT NOT NULL, line TEXT NOT NULL, PRIMARY KEY (size, witness)
);
CREATE TABLE IF NOT EXISTS revocations (
    key_id BLOB PRIMARY KEY, revoked_ms INTEGER NOT NULL, log_id BLOB NOT NULL, seq INTEGER NOT NULL
);
";

/// Keep the earliest revocation of a key (both backends).
pub(crate) const UPSERT_REVOCATION: &str = "ON CONFLICT (key_id) DO UPDATE SET revoked_ms = excluded.revoked_ms,
    log_id = excluded.log_id, seq = excluded.seq WHERE excluded.revoked_ms < revocations.revoked_ms";

/// The SQLite [`LogStore`] (WAL, synchronous=FULL).
pub struct SqliteStore {
    pub(crate) conn: Connection,
    pub(crate) path: String,
    /// The stored hashes the last committed batch wrote. A stored hash never changes
    /// once written (the tree only grows), so these answer the checkpoint's root and
    /// the batch's inclusion proofs from memory instead of the table.
    recent: HashMap<u64, Hash32>,
    /// Checkpoints the WAL on its own thread (`None`: SQLite's automatic checkpoint,
    /// in the commits, if that thread could not start).
    checkpointer: Option<wal::Checkpointer>,
    /// Read-only connections for receipts built outside the lock.
    readers: apart::SqliteReaders,
    /// Inside an ingest's transaction ([`LogStore::begin_unit`]): the stored hashes
    /// its batch wrote, kept as `recent` once it commits. `None` outside one.
    unit: Option<HashMap<u64, Hash32>>,
}

pub(crate) fn i(v: u64) -> i64 {
    // Leaf indexes and seqs stay far below 2^63.
    i64::try_from(v).unwrap_or(i64::MAX)
}
pub(crate) fn u(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}
pub(crate) fn h32(v: Vec<u8>) -> Hash32 {
    v.try_into().unwrap_or([0; 32])
}

impl SqliteStore {
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let shown = path.display().to_string();
        let sql = |source| StoreError::Sql { path: shown.clone(), source };
        let conn = Connection::open(path).map_err(sql)?;
        conn.busy_timeout(std::time::Duration::from_secs(10)).map_err(sql)?;
        conn.execute_batch(SCHEMA).map_err(sql)?;
        conn.execute_batch(crate::history::store::SQLITE_SCHEMA).map_err(sql)?;
        conn.execute_batch(crate::alerts::sqlite::SCHEMA).map_err(sql)?;
        conn.execute_batch(crate::approval::store::SQLITE_SCHEMA).map_err(sql)?;
        // A batch's transaction dirties a few MiB of pages: with SQLite's default
        // cache (2 MiB) it would spill them to the WAL before its commit.
        conn.execute_batch("PRAGMA cache_size = -32768;").map_err(sql)?;
        let checkpointer = wal::Checkpointer::start(path);
        if checkpointer.is_some() {
            // Not in this connection's commits, which run under the collector's lock.
            conn.execute_batch("PRAGMA wal_autocheckpoint = 0;").map_err(sql)?;
        }
        let readers = apart::SqliteReaders::new(path.to_path_buf());
        Ok(Self { conn, path: shown, recent: HashMap::new(), checkpointer, readers, unit: None })
    }

    /// Inside an ingest's transaction (the writers then nest in it as savepoints).
    pub(crate) fn in_unit(&self) -> bool {
        self.unit.is_some()
    }

    /// After a commit: the checkpointer may copy the WAL into the database.
    fn committed(&self) {
        if let Some(c) = &self.checkpointer {
            c.committed();
        }
    }

    pub(crate) fn err(&self) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
        |source| StoreError::Sql { path: self.path.clone(), source }
    }
}

/// The appending transaction: its own, or a savepoint inside an ingest's transaction.
enum Write<'a> {
    Alone(rusqlite::Transaction<'a>),
    Nested(rusqlite::Savepoint<'a>),
}

impl Write<'_> {
    fn commit(self) -> Result<(), rusqlite::Error> {
        match self {
            Self::Alone(tx) => tx.commit(),
            Self::Nested(sp) => sp.commit(),
        }
    }
}

impl std::ops::Deref for Write<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        match self {
            Self::Alone(tx) => tx,
            Self::Nested(sp) => sp,
        }
    }
}

/// Reads stored hashes inside the appending transaction: those this batch wrote,
/// then those of the batch before, then the table.
struct TxHashes<'a> {
    tx: &'a Connection,
    written: &'a HashMap<u64, Hash32>,
    recent: &'a HashMap<u64, Hash32>,
}

impl HashReader for TxHashes<'_> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog_tiles::Error> {
        read_hashes(self.tx, indexes, &[self.written, self.recent])
            .map_err(|e| tlog_tiles::Error::InvalidInput(e.to_string()))
    }
}

/// Stored hashes `indexes`, from the first of `known` that has each, else the table.
fn read_hashes(
    conn: &Connection,
    indexes: &[u64],
    known: &[&HashMap<u64, Hash32>],
) -> Result<Vec<Hash>, rusqlite::Error> {
    let mut stmt = conn.prepare_cached("SELECT hash FROM tree_hashes WHERE idx = ?1")?;
    indexes
        .iter()
        .map(|&ix| match known.iter().find_map(|k| k.get(&ix)) {
            Some(h) => Ok(Hash(*h)),
            None => stmt.query_row([i(ix)], |r| r.get::<_, Vec<u8>>(0)).map(|v| Hash(h32(v))),
        })
        .collect()
}

fn desk_last_seq(conn: &Connection, log_id: &Hash32) -> Result<u64, rusqlite::Error> {
    conn.query_row("SELECT coalesce(max(seq), 0) FROM leaves WHERE log_id = ?1", [log_id], |r| r.get(0)).map(u)
}

impl LogStore for SqliteStore {
    fn certificates(&self) -> Result<Vec<Vec<u8>>, StoreError> {
        let mut stmt = self.conn.prepare("SELECT der FROM certificates ORDER BY added, key_id").map_err(self.err())?;
        let rows = stmt.query_map([], |r| r.get(0)).map_err(self.err())?;
        rows.collect::<Result<_, _>>().map_err(self.err())
    }

    fn add_certificate(&mut self, key_id: &Hash32, der: &[u8]) -> Result<(), StoreError> {
        let n: i64 = self.conn.query_row("SELECT count(*) FROM certificates", [], |r| r.get(0)).map_err(self.err())?;
        self.conn
            .execute(
                "INSERT OR IGNORE INTO certificates (key_id, der, added) VALUES (?1, ?2, ?3)",
                params![key_id, der, n],
            )
            .map(drop)
            .map_err(self.err())
    }

    fn desk_records(&self, log_id: &Hash32, after: u64) -> Result<Vec<StoredRecord>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT seq, record, signature, cosignature FROM leaves WHERE log_id = ?1 AND seq > ?2 ORDER BY seq",
            )
            .map_err(self.err())?;
        let rows = stmt
            .query_map(params![log_id, i(after)], |r| {
                Ok(StoredRecord {
                    row_seq: u(r.get(0)?),
                    record: r.get(1)?,
                    signature: r.get(2)?,
                    cosignature: r.get(3)?,
                })
            })
            .map_err(self.err())?;
        rows.collect::<Result<_, _>>().map_err(self.err())
    }

    fn desk_last_seq(&self, log_id: &Hash32) -> Result<u64, StoreError> {
        desk_last_seq(&self.conn, log_id).map_err(self.err())
    }

    fn placed(&self, log_id: &Hash32, seq: u64) -> Result<Option<Placed>, StoreError> {
        self.conn
            .query_row(
                "SELECT leaf_index, entry_hash FROM leaves WHERE log_id = ?1 AND seq = ?2",
                params![log_id, i(seq)],
                |r| Ok(Placed { leaf_index: u(r.get(0)?), entry_hash: h32(r.get(1)?) }),
            )
            .optional()
            .map_err(self.err())
    }

    fn append_batch(&mut self, leaves: &[NewLeaf]) -> Result<Vec<u64>, StoreError> {
        let Some((log_id, first)) = batch_head(leaves)? else { return Ok(Vec::new()) };
        let path = self.path.clone();
        let sql = |source| StoreError::Sql { path: path.clone(), source };
        let in_unit = self.unit.is_some();
        let tx = if in_unit {
            Write::Nested(self.conn.savepoint().map_err(sql)?)
        } else {
            Write::Alone(self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(sql)?)
        };
        check_continues(&log_id, first, desk_last_seq(&tx, &log_id).map_err(sql)?)?;
        // Sequence: take leaf indexes from the coordination row.
        let next: i64 = tx.query_row("SELECT next FROM seq_coord WHERE id = 0", [], |r| r.get(0)).map_err(sql)?;
        let size: i64 = tx.query_row("SELECT size FROM int_coord WHERE id = 0", [], |r| r.get(0)).map_err(sql)?;
        if next != size {
            return Err(StoreError::Corrupt {
                path,
                what: format!("sequenced {next} leaves but integrated {size}; a batch was left half-done"),
            });
        }
        let mut indexes = Vec::with_capacity(leaves.len());
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO leaves (leaf_index, log_id, seq, entry_hash, record, signature, cosignature)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )
                .map_err(sql)?;
            for (k, leaf) in leaves.iter().enumerate() {
                let index = u(next) + k as u64;
                insert
                    .execute(params![
                        i(index),
                        leaf.log_id,
                        i(leaf.seq),
                        leaf.entry_hash,
                        leaf.record,
                        leaf.signature,
                        leaf.cosignature
                    ])
                    .map_err(sql)?;
                indexes.push(index);
            }
        }
        {
            let mut revoke = tx
                .prepare_cached(&format!(
                    "INSERT INTO revocations (key_id, revoked_ms, log_id, seq) VALUES (?1, ?2, ?3, ?4) {UPSERT_REVOCATION}"
                ))
                .map_err(sql)?;
            for leaf in leaves {
                for key in &leaf.revokes {
                    revoke.execute(params![key, i(leaf.timestamp_ms), leaf.log_id, i(leaf.seq)]).map_err(sql)?;
                }
            }
        }
        let new_size = u(next) + leaves.len() as u64;
        tx.execute("UPDATE seq_coord SET next = ?1 WHERE id = 0", [i(new_size)]).map_err(sql)?;
        // Integrate: the stored hashes of each new leaf, in order.
        let mut written = HashMap::with_capacity(leaves.len() * 2);
        for (leaf, &index) in leaves.iter().zip(&indexes) {
            let reader = TxHashes { tx: &tx, written: &written, recent: &self.recent };
            let hashes = merkle::hashes_for_leaf(index, leaf.entry_hash, &reader)?;
            let mut put = tx.prepare_cached("INSERT INTO tree_hashes (idx, hash) VALUES (?1, ?2)").map_err(sql)?;
            for (ix, h) in hashes {
                put.execute(params![i(ix), h.as_slice()]).map_err(sql)?;
                written.insert(ix, h);
            }
        }
        tx.execute("UPDATE int_coord SET size = ?1 WHERE id = 0", [i(new_size)]).map_err(sql)?;
        tx.commit().map_err(sql)?;
        if in_unit {
            // Remembered once the ingest's transaction commits.
            self.unit = Some(written);
        } else {
            self.committed();
            // Only what was committed is remembered.
            self.recent = written;
        }
        Ok(indexes)
    }

    fn hashes_apart(&self) -> Option<apart::Apart> {
        // Inside a unit: its batch's hashes (its proofs are read once it committed).
        let known = self.unit.as_ref().filter(|u| !u.is_empty()).unwrap_or(&self.recent);
        Some(apart::Apart { known: known.iter().map(|(k, v)| (*k, *v)).collect(), source: self.readers.source() })
    }

    fn begin_unit(&mut self) -> Result<(), StoreError> {
        if self.unit.is_some() {
            return Err(StoreError::Inconsistent("an ingest's transaction began inside another".into()));
        }
        self.conn.execute_batch("BEGIN IMMEDIATE").map_err(self.err())?;
        self.unit = Some(HashMap::new());
        Ok(())
    }

    fn commit_unit(&mut self) -> Result<(), StoreError> {
        let Some(written) = self.unit.take() else { return Ok(()) };
        if let Err(e) = self.conn.execute_batch("COMMIT") {
            // A failed COMMIT may leave the transaction open: nothing of it is kept.
            // (`recent` stays: those hashes were committed before.)
            let _already_gone = self.conn.execute_batch("ROLLBACK");
            return Err(self.err()(e));
        }
        self.committed();
        if !written.is_empty() {
            self.recent = written;
        }
        Ok(())
    }

    fn integrate(&mut self) -> Result<u64, StoreError> {
        // Sequencing and integration share one transaction here: nothing is pending.
        self.tree_size()
    }

    fn tree_size(&self) -> Result<u64, StoreError> {
        self.conn.query_row("SELECT size FROM int_coord WHERE id = 0", [], |r| r.get(0)).map(u).map_err(self.err())
    }

    fn read_stored_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash32>, StoreError> {
        // Inside a unit its batch's hashes first, then those committed before.
        let read = match &self.unit {
            Some(unit) => read_hashes(&self.conn, indexes, &[unit, &self.recent]),
            None => read_hashes(&self.conn, indexes, &[&self.recent]),
        };
        read.map(|v| v.into_iter().map(|h| h.0).collect()).map_err(self.err())
    }

    fn find_entry(&self, entry_hash: &Hash32) -> Result<Option<(u64, Hash32, u64)>, StoreError> {
        self.conn
            .query_row(
                "SELECT leaf_index, log_id, seq FROM leaves WHERE entry_hash = ?1 ORDER BY leaf_index LIMIT 1",
                [entry_hash],
                |r| Ok((u(r.get(0)?), h32(r.get(1)?), u(r.get(2)?))),
            )
            .optional()
            .map_err(self.err())
    }

    fn entries(&self, range: std::ops::Range<u64>) -> Result<Vec<Vec<u8>>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT record FROM leaves WHERE leaf_index >= ?1 AND leaf_index < ?2 ORDER BY leaf_index")
            .map_err(self.err())?;
        let rows = stmt.query_map([i(range.start), i(range.end)], |r| r.get(0)).map_err(self.err())?;
        rows.collect::<Result<_, _>>().map_err(self.err())
    }

    fn checkpoint(&self) -> Result<Option<(u64, String)>, StoreError> {
        self.conn
            .query_row("SELECT size, note FROM checkpoint WHERE id = 0", [], |r| Ok((u(r.get(0)?), r.get(1)?)))
            .optional()
            .map_err(self.err())
    }

    fn set_checkpoint(&mut self, size: u64, note: &str) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT INTO checkpoint (id, size, note) VALUES (0, ?1, ?2)
                 ON CONFLICT (id) DO UPDATE SET size = excluded.size, note = excluded.note WHERE excluded.size >= checkpoint.size",
                params![i(size), note],
            )
            .map(drop)
            .map_err(self.err())
    }

    fn add_alert(&mut self, a: &Alert) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT INTO alerts (at_ms, log_id, seq, kind, reason) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![i(a.at_ms), a.log_id.map(|l| l.to_vec()), a.seq.map(i), a.kind, a.reason],
            )
            .map(drop)
            .map_err(self.err())
    }

    fn alerts(&self) -> Result<Vec<Alert>, StoreError> {
        let mut stmt =
            self.conn.prepare("SELECT at_ms, log_id, seq, kind, reason FROM alerts ORDER BY id").map_err(self.err())?;
        let rows = stmt
            .query_map([], |r| {
                Ok(Alert {
                    at_ms: u(r.get(0)?),
                    log_id: r.get::<_, Option<Vec<u8>>>(1)?.map(h32),
                    seq: r.get::<_, Option<i64>>(2)?.map(u),
                    kind: r.get(3)?,
                    reason: r.get(4)?,
                })
            })
            .map_err(self.err())?;
        rows.collect::<Result<_, _>>().map_err(self.err())
    }

    fn revocations(&self) -> Result<HashMap<Hash32, u64>, StoreError> {
        let mut stmt = self.conn.prepare_cached("SELECT key_id, revoked_ms FROM revocations").map_err(self.err())?;
        let rows = stmt.query_map([], |r| Ok((h32(r.get(0)?), u(r.get(1)?)))).map_err(self.err())?;
        rows.collect::<Result<HashMap<_, _>, _>>().map_err(self.err())
    }

    fn witness_size(&self, witness: &str) -> Result<Option<u64>, StoreError> {
        self.conn
            .query_row("SELECT size FROM witness_state WHERE witness = ?1", [witness], |r| r.get(0))
            .optional()
            .map(|s| s.map(u))
            .map_err(self.err())
    }

    fn set_witness_size(&mut self, witness: &str, size: u64) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT INTO witness_state (witness, size) VALUES (?1, ?2)
                 ON CONFLICT (witness) DO UPDATE SET size = excluded.size",
                params![witness, i(size)],
            )
            .map(drop)
            .map_err(self.err())
    }

    fn add_cosignature(&mut self, size: u64, witness: &str, line: &str) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT INTO cosignatures (size, witness, line) VALUES (?1, ?2, ?3)
                 ON CONFLICT (size, witness) DO UPDATE SET line = excluded.line",
                params![i(size), witness, line],
            )
            .map(drop)
            .map_err(self.err())
    }

    fn cosignatures(&self, size: u64) -> Result<Vec<String>, StoreError> {
        let mut stmt =
            self.conn.prepare("SELECT line FROM cosignatures WHERE size = ?1 ORDER BY witness").map_err(self.err())?;
        let rows = stmt.query_map([i(size)], |r| r.get(0)).map_err(self.err())?;
        rows.collect::<Result<_, _>>().map_err(self.err())
    }
}
