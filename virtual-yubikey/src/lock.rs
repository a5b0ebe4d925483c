//! Cross-process lock around the two shared vpcd readers, for tests.

use std::path::PathBuf;

use crate::Error;

/// Path of the lock file behind [`lock_readers`].
pub const READER_LOCK_PATH: &str = "/tmp/resetdesk-virtual-readers.lock";

/// Exclusive hold on the virtual readers (an `flock` on [`READER_LOCK_PATH`]); released
/// when dropped, or when the process dies.
#[derive(Debug)]
pub struct ReaderLock {
    _file: std::fs::File,
}

/// Take the cross-process reader lock, blocking until it is free. Tests in different
/// binaries, processes and threads serialise around the shared readers with it.
///
/// Not reentrant: a second call while this process (any thread) still holds a guard
/// waits for that guard, so taking it twice on one thread deadlocks. Take it once per
/// test, before inserting cards. Shell scripts may use `flock(1)` on the same file; a
/// daemon they start while holding it keeps the lock unless it closes the descriptor
/// (`scripts/pcscd.sh` does).
///
/// Test helper: panics with a message saying what to fix if the lock file cannot be
/// opened or locked; [`try_lock_readers`] returns a `Result` instead.
pub fn lock_readers() -> ReaderLock {
    match try_lock_readers() {
        Ok(lock) => lock,
        Err(e) => panic!("{e}"),
    }
}

/// Take the cross-process reader lock (blocking), reporting failure as an [`Error`].
pub fn try_lock_readers() -> Result<ReaderLock, Error> {
    let path = PathBuf::from(READER_LOCK_PATH);
    // Each call opens its own file description, so threads of one process exclude each
    // other as well as other processes do.
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| Error::Lock { path: path.clone(), source })?;
    file.lock().map_err(|source| Error::Lock { path, source })?;
    Ok(ReaderLock { _file: file })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    #[test]
    fn a_second_holder_waits_until_the_first_lets_go() {
        let first = lock_readers();
        let (tx, rx) = mpsc::channel();
        let waiter = std::thread::spawn(move || {
            let second = lock_readers();
            // The receiver outlives this thread (joined below).
            let _ = tx.send(());
            drop(second);
        });
        assert_eq!(
            rx.recv_timeout(Duration::from_millis(300)),
            Err(mpsc::RecvTimeoutError::Timeout),
            "the lock must not be granted twice"
        );
        drop(first);
        assert_eq!(rx.recv_timeout(Duration::from_secs(30)), Ok(()));
        waiter.join().unwrap();
    }
}
