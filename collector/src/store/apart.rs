//! Stored hashes read without the collector's lock, so that a batch's receipts are
//! built after it is released. A stored hash never changes once committed (the tree
//! only grows), so a reader on another connection sees the very hashes the writer
//! would, for any tree size already committed.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use resetdesk::audit::Hash32;
use rusqlite::{Connection, OpenFlags};
use tlog_tiles::{Hash, HashReader};

use super::{h32, i, StoreError};

/// Where hashes not already known are read from, off the lock.
pub trait HashSource: Send {
    fn read(&mut self, indexes: &[u64]) -> Result<Vec<Hash32>, StoreError>;
}

/// What a store offers for reading hashes apart: the hashes it holds in memory (the
/// last batch's) and a source for the others.
pub struct Apart {
    pub known: Vec<(u64, Hash32)>,
    pub source: Box<dyn HashSource>,
}

/// Hashes for the proofs of one batch: those already known (read or written under the
/// lock), then its source.
pub struct ApartHashes {
    known: RefCell<HashMap<u64, Hash>>,
    source: RefCell<Box<dyn HashSource>>,
}

impl ApartHashes {
    pub fn new(known: HashMap<u64, Hash>, source: Box<dyn HashSource>) -> Self {
        Self { known: RefCell::new(known), source: RefCell::new(source) }
    }
}

impl HashReader for ApartHashes {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog_tiles::Error> {
        let mut known = self.known.borrow_mut();
        let missing: Vec<u64> = indexes.iter().copied().filter(|i| !known.contains_key(i)).collect();
        if !missing.is_empty() {
            let read =
                self.source.borrow_mut().read(&missing).map_err(|e| tlog_tiles::Error::InvalidInput(e.to_string()))?;
            known.extend(missing.into_iter().zip(read.into_iter().map(Hash)));
        }
        indexes
            .iter()
            .map(|i| {
                known.get(i).copied().ok_or_else(|| tlog_tiles::Error::InvalidInput(format!("no stored hash {i}")))
            })
            .collect()
    }
}

/// Read-only connections to a SQLite store's file, kept for the next batch.
#[derive(Clone)]
pub struct SqliteReaders {
    path: PathBuf,
    idle: Arc<Mutex<Vec<Connection>>>,
}

/// Readers kept idle at most (one per request in flight is enough).
const KEEP: usize = 4;

impl SqliteReaders {
    pub fn new(path: PathBuf) -> Self {
        Self { path, idle: Arc::new(Mutex::new(Vec::new())) }
    }

    /// A source that takes a connection when it first needs one.
    pub fn source(&self) -> Box<dyn HashSource> {
        Box::new(SqliteSource { readers: self.clone(), conn: None })
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<Connection>> {
        // Only whole connections are pushed and popped: a panic elsewhere leaves it valid.
        self.idle.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

struct SqliteSource {
    readers: SqliteReaders,
    conn: Option<Connection>,
}

impl HashSource for SqliteSource {
    fn read(&mut self, indexes: &[u64]) -> Result<Vec<Hash32>, StoreError> {
        let path = self.readers.path.display().to_string();
        let sql = |source| StoreError::Sql { path: path.clone(), source };
        if self.conn.is_none() {
            let reused = self.readers.idle().pop();
            let conn = match reused {
                Some(c) => c,
                None => {
                    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
                    let c = Connection::open_with_flags(&self.readers.path, flags).map_err(sql)?;
                    c.busy_timeout(std::time::Duration::from_secs(10)).map_err(sql)?;
                    c
                }
            };
            self.conn = Some(conn);
        }
        let Some(conn) = self.conn.as_ref() else { return Ok(Vec::new()) };
        let mut stmt = conn.prepare_cached("SELECT hash FROM tree_hashes WHERE idx = ?1").map_err(sql)?;
        indexes.iter().map(|&ix| stmt.query_row([i(ix)], |r| r.get::<_, Vec<u8>>(0)).map(h32).map_err(sql)).collect()
    }
}

impl Drop for SqliteSource {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            let mut idle = self.readers.idle();
            if idle.len() < KEEP {
                idle.push(conn);
            }
        }
    }
}
