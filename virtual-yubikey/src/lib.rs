//! Virtual PIV card for tests and the demo: a software PIV applet inserted into one of
//! the two vpcd readers ("Virtual PCD 00 00" / "Virtual PCD 00 01") so that pcscd and the
//! `yubikey` crate see it as a YubiKey 5.
//!
//! Dev/test only: never a dependency of the app. API stub; the card itself follows.

use std::time::Duration;

/// vpcd TCP port of the reader "Virtual PCD 00 00".
pub const READER_0_PORT: u16 = 35963;
/// vpcd TCP port of the reader "Virtual PCD 00 01".
pub const READER_1_PORT: u16 = 35964;

/// The PC/SC reader name pcscd gives the vpcd reader listening on `port`, or `None` if
/// `port` is not one of [`READER_0_PORT`] / [`READER_1_PORT`].
pub fn reader_name_for_port(port: u16) -> Option<&'static str> {
    match port {
        READER_0_PORT => Some("Virtual PCD 00 00"),
        READER_1_PORT => Some("Virtual PCD 00 01"),
        _ => None,
    }
}

/// What went wrong inserting or removing a virtual card.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The port is not a vpcd reader port.
    #[error("port {0} is not a vpcd reader port; use 35963 (Virtual PCD 00 00) or 35964 (Virtual PCD 00 01)")]
    UnknownPort(u16),
    /// TCP connection to vpcd failed.
    #[error("cannot connect to vpcd on 127.0.0.1:{port} ({source}); start pcscd with `scripts/pcscd.sh start`")]
    Connect {
        /// vpcd port.
        port: u16,
        /// Underlying socket error.
        #[source]
        source: std::io::Error,
    },
    /// PC/SC call failed while waiting for the card to appear or disappear.
    #[error("PC/SC error on reader {reader} ({source}); is pcscd running? (`scripts/pcscd.sh status`)")]
    Pcsc {
        /// Reader being watched.
        reader: &'static str,
        /// Underlying PC/SC error.
        #[source]
        source: pcsc::Error,
    },
    /// pcscd did not report the expected state in time.
    #[error("pcscd did not report {reader} as {expected} within {timeout:?}; check `scripts/pcscd.sh status` and that no other process holds this reader (take `lock_readers()`)")]
    Timeout {
        /// Reader being watched.
        reader: &'static str,
        /// "card present" or "empty".
        expected: &'static str,
        /// How long we waited.
        timeout: Duration,
    },
    /// The card's thread stopped on its own (vpcd closed the connection or the applet failed).
    #[error("the virtual card stopped unexpectedly: {0}; reinsert it")]
    CardStopped(String),
    /// The reader lock file could not be opened or locked.
    #[error("cannot lock the virtual readers via {path} ({source}); check that /tmp is writable")]
    Lock {
        /// Lock file path.
        path: std::path::PathBuf,
        /// Underlying I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// A virtual PIV card sitting in a vpcd reader. Removed from the reader when dropped.
#[derive(Debug)]
pub struct VirtualCard {
    reader: &'static str,
    serial: u32,
}

impl VirtualCard {
    /// Insert a fresh card with factory defaults (PIN 123456, PUK 12345678, default 3DES
    /// management key) into the vpcd reader on 127.0.0.1:`port` and wait (with timeout)
    /// until pcscd reports it present. The serial number is chosen at random.
    pub fn insert(port: u16) -> Result<VirtualCard, Error> {
        Self::insert_with_serial(port, 0)
    }

    /// Same as [`VirtualCard::insert`] with a chosen serial number (two agents' cards must
    /// differ). GET SERIAL answers `serial`.
    pub fn insert_with_serial(port: u16, serial: u32) -> Result<VirtualCard, Error> {
        let reader = reader_name_for_port(port).ok_or(Error::UnknownPort(port))?;
        Err(Error::CardStopped(format!("not implemented yet ({reader}, serial {serial})")))
    }

    /// PC/SC name of the reader holding this card.
    pub fn reader_name(&self) -> &'static str {
        self.reader
    }

    /// Serial number the card reports (GET SERIAL, `YubiKey::serial()`).
    pub fn serial(&self) -> u32 {
        self.serial
    }

    /// Remove the card (also done on drop) and wait until pcscd reports the reader empty.
    pub fn remove(self) -> Result<(), Error> {
        Ok(())
    }
}

/// Cross-process exclusive lock on the virtual readers, held while the guard lives.
/// Tests in different binaries/processes (and threads) serialise around the shared readers.
#[derive(Debug)]
pub struct ReaderLock {
    _file: std::fs::File,
}

/// Take the cross-process reader lock (blocking). Test helper: panics with a message
/// saying what to fix if the lock file cannot be opened; use [`try_lock_readers`] for a
/// `Result`.
pub fn lock_readers() -> ReaderLock {
    match try_lock_readers() {
        Ok(l) => l,
        Err(e) => panic!("{e}"),
    }
}

/// Path of the lock file behind [`lock_readers`].
pub const READER_LOCK_PATH: &str = "/tmp/resetdesk-virtual-readers.lock";

/// Take the cross-process reader lock (blocking), reporting failure as an [`Error`].
pub fn try_lock_readers() -> Result<ReaderLock, Error> {
    let path = std::path::PathBuf::from(READER_LOCK_PATH);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| Error::Lock { path: path.clone(), source })?;
    file.lock().map_err(|source| Error::Lock { path, source })?;
    Ok(ReaderLock { _file: file })
}
