//! Stored hashes read without the collector's lock, so that a batch's receipts are
//! built after it is released. A stored hash never changes once committed (the tree
//! only grows), so a reader on another connection sees the very hashes the writer
//! would, for any tree size already committed.

use std::cell::RefCell;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use resetdesk::audit::Hash32;
use rusqlite::{Connection, OpenFlags};
use tlog_tiles::{Hash, HashReader};

use super::StoreError;

/// What a store offers for reading hashes apart: the hashes it holds in memory (the
/// last batch's) and a reader for the others.
pub struct Apart {
    pub known: Vec<(u64, Hash32)>,
    pub source: Box<dyn HashReader + Send>,
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

    /// A reader that takes a connection when it first needs one.
    pub fn source(&self) -> Box<dyn HashReader + Send> {
        Box::new(SqliteSource { readers: self.clone(), conn: RefCell::new(None) })
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<Connection>> {
        // Only whole connections are pushed and popped: a panic elsewhere leaves it valid.
        self.idle.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// An idle connection, or a new read-only one.
    fn connection(&self) -> Result<Connection, rusqlite::Error> {
        if let Some(conn) = self.idle().pop() {
            return Ok(conn);
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(&self.path, flags)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        Ok(conn)
    }
}

struct SqliteSource {
    readers: SqliteReaders,
    conn: RefCell<Option<Connection>>,
}

impl HashReader for SqliteSource {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog_tiles::Error> {
        let failed = |source| {
            let e = StoreError::Sql { path: self.readers.path.display().to_string(), source };
            tlog_tiles::Error::InvalidInput(e.to_string())
        };
        let mut slot = self.conn.borrow_mut();
        let conn = match slot.take() {
            Some(conn) => conn,
            None => self.readers.connection().map_err(failed)?,
        };
        // The store's own read of stored hashes, on this connection.
        let read = super::read_hashes(&conn, indexes, &[]).map_err(failed);
        *slot = Some(conn);
        read
    }
}

impl Drop for SqliteSource {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.get_mut().take() {
            let mut idle = self.readers.idle();
            if idle.len() < KEEP {
                idle.push(conn);
            }
        }
    }
}
