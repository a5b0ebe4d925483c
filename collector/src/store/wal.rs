//! WAL checkpoints of the SQLite store, off the writer's path.
//!
//! SQLite's automatic checkpoint runs inside the commit that crosses its threshold:
//! it copies the WAL's pages into the database file and syncs it, on the thread that
//! committed, so under the collector's lock. The store turns it off on its writing
//! connection and a thread of its own checkpoints instead, on its own connection, at
//! most every [`INTERVAL`] after commits tell it to (and every [`IDLE`] anyway). A `PASSIVE` checkpoint never
//! waits for, nor blocks, the writer or readers; frames it could not copy yet stay in
//! the WAL (durable, read from there) until the next one.

use std::path::Path;
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::Connection;

/// The least time between two checkpoints while commits keep coming (a batch of
/// 1,000 records commits about 400 pages; this lets a few batches share one copy).
pub const INTERVAL: Duration = Duration::from_millis(250);

/// A checkpoint runs at least this often even when no commit woke the thread.
pub const IDLE: Duration = Duration::from_secs(30);

/// The checkpointing thread of one store; stops (and is joined) when dropped.
pub struct Checkpointer {
    wake: Option<SyncSender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Start checkpointing the database at `path` (in WAL mode) on a connection of
    /// its own; `None` (logged) if that cannot start, and then the caller keeps
    /// SQLite's automatic checkpoint. The caller turns that off on its connection.
    pub fn start(path: &Path) -> Option<Self> {
        let shown = path.display().to_string();
        let unstarted =
            |why: String| tracing::warn!("collector database {shown}: checkpoints stay in the commits: {why}");
        let opened = Connection::open(path).and_then(|conn| {
            conn.busy_timeout(Duration::from_secs(10))?;
            // The copy into the database file is synced as the writer's commits are.
            conn.execute_batch("PRAGMA synchronous = FULL;")?;
            Ok(conn)
        });
        let conn = opened.map_err(|e| unstarted(e.to_string())).ok()?;
        // One pending wake-up is enough: commits meanwhile are taken along.
        let (wake, woken) = mpsc::sync_channel::<()>(1);
        let name = shown.clone();
        let thread = std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || run(&conn, &name, &woken))
            .map_err(|e| unstarted(e.to_string()))
            .ok()?;
        Some(Self { wake: Some(wake), thread: Some(thread) })
    }

    /// A commit added frames to the WAL.
    pub fn committed(&self) {
        if let Some(wake) = &self.wake {
            // Full: a wake-up is already pending. Disconnected: the thread ended; the
            // WAL then grows until the last connection closes (which checkpoints it).
            let _pending_or_ended: Result<(), TrySendError<()>> = wake.try_send(());
        }
    }
}

fn run(conn: &Connection, path: &str, woken: &mpsc::Receiver<()>) {
    let mut last = Instant::now().checked_sub(INTERVAL).unwrap_or_else(Instant::now);
    loop {
        // Writes that do not wake it (alerts, approvals, the account index) are
        // taken along by the next checkpoint, or this one after IDLE.
        match woken.recv_timeout(IDLE) {
            Ok(()) | Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return, // the store was dropped
        }
        // Let commits gather until INTERVAL after the last checkpoint; the store being
        // dropped meanwhile still gets this last one.
        let deadline = last + INTERVAL;
        let mut closing = false;
        while let Some(wait) = deadline.checked_duration_since(Instant::now()).filter(|w| !w.is_zero()) {
            match woken.recv_timeout(wait) {
                Ok(()) => {}
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => {
                    closing = true;
                    break;
                }
            }
        }
        if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            // The frames stay in the WAL, durable; the next wake-up tries again.
            tracing::warn!("collector database {path}: WAL checkpoint failed (retried after the next commit): {e}");
        }
        last = Instant::now();
        if closing {
            return;
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        drop(self.wake.take());
        if let Some(thread) = self.thread.take() {
            // The thread only checkpoints; a panic there lost nothing of the log.
            let _ = thread.join();
        }
    }
}
