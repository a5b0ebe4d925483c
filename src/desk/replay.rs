//! TOTP replay guard: the last accepted time step per account, in
//! `<data_dir>/desk.sqlite`, written durably *before* the verdict reaches the engine.
//!
//! The audit records carry accepted steps too, but only of sessions that wrote a
//! record; a session abandoned after a passed TOTP step writes none, and its code
//! must still not pass again in a new session. The desk takes the newest of both.

use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension};

/// File name of the desk's own state inside the data directory.
pub const DESK_STATE_FILE: &str = "desk.sqlite";

/// Why the replay guard could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error(
    "the desk state {path} could not be used ({source}); check the data directory, its permissions and free disk space"
)]
pub struct ReplayError {
    path: String,
    #[source]
    source: rusqlite::Error,
}

/// The per-account last accepted TOTP step.
pub struct ReplayGuard {
    conn: Connection,
    path: String,
}

fn to_i64(step: u64) -> i64 {
    // TOTP steps are unix time / 30: far below 2^63.
    i64::try_from(step).unwrap_or(i64::MAX)
}

impl ReplayGuard {
    /// Open (creating if needed) `<data_dir>/desk.sqlite`.
    pub fn open(data_dir: &Path) -> Result<Self, ReplayError> {
        let path = data_dir.join(DESK_STATE_FILE).display().to_string();
        let err = |source| ReplayError { path: path.clone(), source };
        let conn = Connection::open(&path).map_err(err)?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(err)?;
        conn.pragma_update(None, "synchronous", "FULL").map_err(err)?;
        conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(err)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS totp_last_step (username TEXT PRIMARY KEY NOT NULL, step INTEGER NOT NULL)",
        )
        .map_err(err)?;
        Ok(Self { conn, path })
    }

    fn err(&self) -> impl Fn(rusqlite::Error) -> ReplayError + '_ {
        move |source| ReplayError { path: self.path.clone(), source }
    }

    /// The last accepted step of `username`, if any.
    pub fn last_step(&self, username: &str) -> Result<Option<u64>, ReplayError> {
        let step: Option<i64> = self
            .conn
            .query_row("SELECT step FROM totp_last_step WHERE username = ?1", [username], |r| r.get(0))
            .optional()
            .map_err(self.err())?;
        Ok(step.and_then(|s| u64::try_from(s).ok()))
    }

    /// Remember `step` as accepted for `username` (never moves backwards). Durable on return.
    pub fn accept(&self, username: &str, step: u64) -> Result<(), ReplayError> {
        self.conn
            .execute(
                "INSERT INTO totp_last_step (username, step) VALUES (?1, ?2)
                 ON CONFLICT(username) DO UPDATE SET step = max(step, excluded.step)",
                params![username, to_i64(step)],
            )
            .map(drop)
            .map_err(self.err())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_persist_and_never_move_backwards() {
        let dir = tempfile::tempdir().unwrap();
        let guard = ReplayGuard::open(dir.path()).unwrap();
        assert_eq!(guard.last_step("jdoe").unwrap(), None);
        guard.accept("jdoe", 100).unwrap();
        guard.accept("jdoe", 99).unwrap();
        drop(guard);
        let guard = ReplayGuard::open(dir.path()).unwrap();
        assert_eq!(guard.last_step("jdoe").unwrap(), Some(100));
        assert_eq!(guard.last_step("other").unwrap(), None);
    }
}
