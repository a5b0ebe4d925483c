//! SQLite adapter for the audit log: `<data_dir>/audit.sqlite`.
//!
//! WAL journal with `synchronous=FULL`: a record is on disk when its transaction
//! commits. One record per transaction, taken with `BEGIN IMMEDIATE` so the head read
//! and the insert cannot interleave with another writer. The `entry_hash`,
//! `event_type`, `timestamp_ms` and `intent_seq` columns are caches for queries;
//! the verifier ignores them and recomputes everything from the signed bytes.

use std::path::Path;

use rusqlite::{params, Connection, OpenFlags, OptionalExtension, TransactionBehavior};

use super::receipt::{LogCheckpoint, Receipt};
use super::record::{entry_hash, EventType, Hash32};
use super::verify::StoredRecord;

/// File name of the audit database inside the data directory.
pub const FILE_NAME: &str = "audit.sqlite";
/// `PRAGMA user_version` of the schema below.
pub const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS audit_records (
    seq          INTEGER PRIMARY KEY,
    record       BLOB NOT NULL,
    signature    BLOB NOT NULL,
    cosignature  BLOB,
    entry_hash   BLOB NOT NULL,
    event_type   INTEGER NOT NULL,
    timestamp_ms INTEGER NOT NULL,
    intent_seq   INTEGER
);
CREATE INDEX IF NOT EXISTS audit_records_intent ON audit_records(intent_seq) WHERE intent_seq IS NOT NULL;
CREATE TABLE IF NOT EXISTS audit_receipts (
    id        INTEGER PRIMARY KEY,
    tree_size INTEGER NOT NULL,
    receipt   TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS collector_checkpoints (
    id        INTEGER PRIMARY KEY,
    origin    TEXT NOT NULL,
    tree_size INTEGER NOT NULL,
    root_hash BLOB NOT NULL,
    note      TEXT NOT NULL,
    seen_ms   INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS sync_alerts (
    id     INTEGER PRIMARY KEY,
    at_ms  INTEGER NOT NULL,
    kind   TEXT NOT NULL,
    detail TEXT NOT NULL
);
";

/// Storage failures. The message says what to check.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("audit database {path}: {source}; check the path, permissions and free disk space")]
    Sqlite { path: String, source: rusqlite::Error },
    #[error(
        "audit database {path} has schema version {found}, this build knows {SCHEMA_VERSION}; use a matching resetdesk"
    )]
    Schema { path: String, found: i64 },
    #[error("cannot create the audit database {path}: {source}; check the data directory exists and is writable")]
    Create { path: String, source: std::io::Error },
    #[error("audit database {path} does not exist; pass the data directory of a desk (or --db FILE)")]
    Missing { path: String },
    #[error("audit database {path}, row {seq}: {what}; run `resetdesk audit verify` to find the damage")]
    Corrupt { path: String, seq: u64, what: String },
}

/// A durable alert of the upstream sync (a receipt refused, a fork seen): kept for the
/// security team, never deleted.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SyncAlert {
    pub id: i64,
    pub at_ms: u64,
    /// `bad_receipt`, `receipt_mismatch`, `fork`, `refused`.
    pub kind: String,
    pub detail: String,
}

/// A row ready to be inserted.
pub struct NewRow<'a> {
    pub seq: u64,
    pub record: &'a [u8],
    pub signature: &'a [u8],
    pub cosignature: Option<&'a [u8]>,
    pub event_type: EventType,
    pub timestamp_ms: u64,
    pub intent_seq: Option<u64>,
}

/// The audit database.
pub struct Store {
    conn: Connection,
    path: String,
}

fn to_i64(v: u64) -> i64 {
    // Seqs and millisecond timestamps stay far below 2^63; saturate rather than wrap.
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Store {
    /// Open (creating if needed) for appending. A new file is created readable by
    /// its owner only (the log names accounts and agents); SQLite gives its WAL and
    /// shared-memory files the same permissions.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let p = path.display().to_string();
        create_private(path).map_err(|e| StoreError::Create { path: p.clone(), source: e })?;
        let err = |source| StoreError::Sqlite { path: p.clone(), source };
        let conn = Connection::open(path).map_err(err)?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(err)?;
        conn.pragma_update(None, "synchronous", "FULL").map_err(err)?;
        conn.busy_timeout(std::time::Duration::from_secs(10)).map_err(err)?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0)).map_err(err)?;
        if version != 0 && version != SCHEMA_VERSION {
            return Err(StoreError::Schema { path: p, found: version });
        }
        conn.execute_batch(SCHEMA).map_err(err)?;
        conn.pragma_update(None, "user_version", SCHEMA_VERSION).map_err(err)?;
        Ok(Self { conn, path: p })
    }

    /// Open an existing database without writing to it (verification, export).
    pub fn open_read_only(path: &Path) -> Result<Self, StoreError> {
        let p = path.display().to_string();
        if !path.exists() {
            return Err(StoreError::Missing { path: p });
        }
        let err = |source| StoreError::Sqlite { path: p.clone(), source };
        let conn =
            Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
                .map_err(err)?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0)).map_err(err)?;
        if version != SCHEMA_VERSION {
            return Err(StoreError::Schema { path: p, found: version });
        }
        Ok(Self { conn, path: p })
    }

    /// `(journal_mode, synchronous)` of this connection: `("wal", 2)` means WAL + FULL.
    pub fn durability(&self) -> Result<(String, i64), StoreError> {
        let mode: String = self.conn.pragma_query_value(None, "journal_mode", |r| r.get(0)).map_err(self.err())?;
        let sync: i64 = self.conn.pragma_query_value(None, "synchronous", |r| r.get(0)).map_err(self.err())?;
        Ok((mode, sync))
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    fn err(&self) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
        move |source| StoreError::Sqlite { path: self.path.clone(), source }
    }

    /// Start the transaction of one append (write lock taken now).
    pub fn begin_append(&mut self) -> Result<AppendTx<'_>, StoreError> {
        let path = self.path.clone();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|source| StoreError::Sqlite { path: path.clone(), source })?;
        Ok(AppendTx { tx, path })
    }

    /// The last record's seq and entry hash (recomputed from its bytes), if any.
    pub fn head(&self) -> Result<Option<(u64, Hash32)>, StoreError> {
        head_of(&self.conn, &self.path)
    }

    /// One stored record by seq.
    pub fn get(&self, seq: u64) -> Result<Option<StoredRecord>, StoreError> {
        self.conn
            .query_row(
                "SELECT seq, record, signature, cosignature FROM audit_records WHERE seq = ?1",
                [to_i64(seq)],
                row_to_stored,
            )
            .optional()
            .map_err(self.err())
    }

    /// Visit every record in seq order, stopping at the first error of `f`.
    pub fn for_each<E>(&self, mut f: impl FnMut(StoredRecord) -> Result<(), E>) -> Result<Result<(), E>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT seq, record, signature, cosignature FROM audit_records ORDER BY seq")
            .map_err(self.err())?;
        let mut rows = stmt.query([]).map_err(self.err())?;
        while let Some(row) = rows.next().map_err(self.err())? {
            let stored = row_to_stored(row).map_err(self.err())?;
            if let Err(e) = f(stored) {
                return Ok(Err(e));
            }
        }
        Ok(Ok(()))
    }

    /// Reset intents with no outcome row, in seq order.
    pub fn open_intents(&self) -> Result<Vec<StoredRecord>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT seq, record, signature, cosignature FROM audit_records r
                 WHERE event_type = ?1
                   AND NOT EXISTS (SELECT 1 FROM audit_records o WHERE o.intent_seq = r.seq)
                 ORDER BY seq",
            )
            .map_err(self.err())?;
        let rows = stmt.query_map([i64::from(EventType::ResetIntent.code())], row_to_stored).map_err(self.err())?;
        rows.collect::<Result<Vec<_>, _>>().map_err(self.err())
    }

    /// Keep a receipt (durably).
    pub fn add_receipt(&mut self, receipt: &Receipt) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT INTO audit_receipts (tree_size, receipt) VALUES (?1, ?2)",
                params![to_i64(receipt.covered_seq()), receipt.to_json()],
            )
            .map(drop)
            .map_err(self.err())
    }

    /// Keep a batch's receipts in one transaction: all of them or none.
    pub fn add_receipts(&mut self, receipts: &[Receipt]) -> Result<(), StoreError> {
        let path = self.path.clone();
        let err = |source| StoreError::Sqlite { path: path.clone(), source };
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(err)?;
        for receipt in receipts {
            tx.execute(
                "INSERT INTO audit_receipts (tree_size, receipt) VALUES (?1, ?2)",
                params![to_i64(receipt.covered_seq()), receipt.to_json()],
            )
            .map_err(err)?;
        }
        tx.commit().map_err(err)
    }

    /// Records `first..=last` in seq order (fewer if the log ends before `last`).
    pub fn range(&self, first: u64, last: u64) -> Result<Vec<StoredRecord>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT seq, record, signature, cosignature FROM audit_records WHERE seq BETWEEN ?1 AND ?2 ORDER BY seq",
            )
            .map_err(self.err())?;
        let rows = stmt.query_map([to_i64(first), to_i64(last)], row_to_stored).map_err(self.err())?;
        rows.collect::<Result<Vec<_>, _>>().map_err(self.err())
    }

    /// Keep a collector checkpoint the desk accepted as a witness (its signed note and
    /// what it states), seen at `seen_ms`.
    pub fn add_checkpoint(&mut self, note: &str, cp: &LogCheckpoint, seen_ms: u64) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT INTO collector_checkpoints (origin, tree_size, root_hash, note, seen_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![cp.origin, to_i64(cp.tree_size), cp.root_hash.as_slice(), note, to_i64(seen_ms)],
            )
            .map(drop)
            .map_err(self.err())
    }

    /// The signed note of the largest collector checkpoint kept (the witness's state).
    /// `None` before the first, and for a database from before the table existed.
    pub fn latest_checkpoint_note(&self) -> Result<Option<String>, StoreError> {
        if !self.has_table("collector_checkpoints")? {
            return Ok(None);
        }
        self.conn
            .query_row("SELECT note FROM collector_checkpoints ORDER BY tree_size DESC, id DESC LIMIT 1", [], |r| {
                r.get(0)
            })
            .optional()
            .map_err(self.err())
    }

    /// Record a sync alert durably.
    pub fn add_alert(&mut self, at_ms: u64, kind: &str, detail: &str) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT INTO sync_alerts (at_ms, kind, detail) VALUES (?1, ?2, ?3)",
                params![to_i64(at_ms), kind, detail],
            )
            .map(drop)
            .map_err(self.err())
    }

    /// Every sync alert, oldest first.
    pub fn alerts(&self) -> Result<Vec<SyncAlert>, StoreError> {
        if !self.has_table("sync_alerts")? {
            return Ok(Vec::new());
        }
        let mut stmt =
            self.conn.prepare("SELECT id, at_ms, kind, detail FROM sync_alerts ORDER BY id").map_err(self.err())?;
        let rows = stmt
            .query_map([], |r| {
                Ok(SyncAlert {
                    id: r.get(0)?,
                    at_ms: u64::try_from(r.get::<_, i64>(1)?).unwrap_or(0),
                    kind: r.get(2)?,
                    detail: r.get(3)?,
                })
            })
            .map_err(self.err())?;
        rows.collect::<Result<Vec<_>, _>>().map_err(self.err())
    }

    fn has_table(&self, name: &str) -> Result<bool, StoreError> {
        self.conn
            .query_row("SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1)", [name], |r| {
                r.get(0)
            })
            .map_err(self.err())
    }

    /// Every stored receipt, oldest first.
    pub fn receipts(&self) -> Result<Vec<Receipt>, StoreError> {
        let mut stmt = self.conn.prepare("SELECT id, receipt FROM audit_receipts ORDER BY id").map_err(self.err())?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))
            .map_err(self.err())?
            .collect::<Result<Vec<_>, _>>()
            .map_err(self.err())?;
        rows.into_iter()
            .map(|(id, json)| {
                Receipt::from_json(&json).map_err(|e| StoreError::Corrupt {
                    path: self.path.clone(),
                    seq: u64::try_from(id).unwrap_or(0),
                    what: format!("stored receipt unreadable: {e}"),
                })
            })
            .collect()
    }
}

/// Column content as bytes, whatever type a tampered database gives it: the
/// verifier then judges the bytes (and names the record) instead of the read failing.
fn bytes_of(v: rusqlite::types::ValueRef<'_>) -> Option<Vec<u8>> {
    use rusqlite::types::ValueRef;
    match v {
        ValueRef::Blob(b) | ValueRef::Text(b) => Some(b.to_vec()),
        ValueRef::Null => None,
        ValueRef::Integer(i) => Some(i.to_be_bytes().to_vec()),
        ValueRef::Real(f) => Some(f.to_be_bytes().to_vec()),
    }
}

/// Create `path` empty with mode 0600 if it does not exist (SQLite then initialises it).
fn create_private(path: &Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

fn row_to_stored(row: &rusqlite::Row<'_>) -> rusqlite::Result<StoredRecord> {
    let seq: i64 = row.get(0)?;
    Ok(StoredRecord {
        // A negative row key cannot match any record's seq; 0 is reported as such.
        row_seq: u64::try_from(seq).unwrap_or(0),
        record: bytes_of(row.get_ref(1)?).unwrap_or_default(),
        signature: bytes_of(row.get_ref(2)?).unwrap_or_default(),
        cosignature: bytes_of(row.get_ref(3)?),
    })
}

fn head_of(conn: &Connection, path: &str) -> Result<Option<(u64, Hash32)>, StoreError> {
    let err = |source| StoreError::Sqlite { path: path.to_string(), source };
    let row: Option<(i64, Vec<u8>)> = conn
        .prepare_cached("SELECT seq, record FROM audit_records ORDER BY seq DESC LIMIT 1")
        .map_err(err)?
        .query_row([], |r| Ok((r.get(0)?, bytes_of(r.get_ref(1)?).unwrap_or_default())))
        .optional()
        .map_err(err)?;
    Ok(row.map(|(seq, record)| (u64::try_from(seq).unwrap_or(0), entry_hash(&record))))
}

/// The open transaction of one append: read the head, insert, commit.
pub struct AppendTx<'a> {
    tx: rusqlite::Transaction<'a>,
    path: String,
}

impl AppendTx<'_> {
    fn err(&self) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
        move |source| StoreError::Sqlite { path: self.path.clone(), source }
    }

    pub fn head(&self) -> Result<Option<(u64, Hash32)>, StoreError> {
        head_of(&self.tx, &self.path)
    }

    /// The stored bytes of record `seq` (to check an outcome's intent link).
    pub fn record(&self, seq: u64) -> Result<Option<Vec<u8>>, StoreError> {
        self.tx
            .prepare_cached("SELECT record FROM audit_records WHERE seq = ?1")
            .map_err(self.err())?
            .query_row([to_i64(seq)], |r| Ok(bytes_of(r.get_ref(0)?).unwrap_or_default()))
            .optional()
            .map_err(self.err())
    }

    /// The time (UTC ms, as the cached column has it) of the latest `revocation` record.
    /// A record dated before it would not verify.
    pub fn latest_revocation_ms(&self) -> Result<Option<u64>, StoreError> {
        let code = i64::from(crate::audit::EventType::Revocation.code());
        let ms: Option<i64> = self
            .tx
            .prepare_cached("SELECT MAX(timestamp_ms) FROM audit_records WHERE event_type = ?1")
            .map_err(self.err())?
            .query_row([code], |r| r.get(0))
            .map_err(self.err())?;
        Ok(ms.and_then(|m| u64::try_from(m).ok()))
    }

    pub fn has_outcome_for(&self, seq: u64) -> Result<bool, StoreError> {
        self.tx
            .prepare_cached("SELECT EXISTS (SELECT 1 FROM audit_records WHERE intent_seq = ?1)")
            .map_err(self.err())?
            .query_row([to_i64(seq)], |r| r.get(0))
            .map_err(self.err())
    }

    pub fn insert(&self, row: &NewRow<'_>) -> Result<(), StoreError> {
        self.tx
            .prepare_cached(
                "INSERT INTO audit_records (seq, record, signature, cosignature, entry_hash, event_type, timestamp_ms, intent_seq)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )
            .map_err(self.err())?
            .execute(params![
                    to_i64(row.seq),
                    row.record,
                    row.signature,
                    row.cosignature,
                    entry_hash(row.record).as_slice(),
                    i64::from(row.event_type.code()),
                    to_i64(row.timestamp_ms),
                row.intent_seq.map(to_i64),
            ])
            .map(drop)
            .map_err(self.err())
    }

    /// Commit: with WAL + synchronous=FULL the record is durable when this returns.
    pub fn commit(self) -> Result<(), StoreError> {
        let path = self.path;
        self.tx.commit().map_err(|source| StoreError::Sqlite { path, source })
    }
}
