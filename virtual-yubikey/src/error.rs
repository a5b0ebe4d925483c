//! Errors of the virtual card, each saying what to do about it.

use std::time::Duration;

/// What went wrong inserting, running or removing a virtual card.
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
    /// A PC/SC call failed while checking or waiting for the reader.
    #[error("PC/SC error on reader {reader} ({source}); is pcscd running? (`scripts/pcscd.sh status`)")]
    Pcsc {
        /// Reader being watched.
        reader: &'static str,
        /// Underlying PC/SC error.
        #[source]
        source: pcsc::Error,
    },
    /// pcscd does not know the reader.
    #[error("pcscd has no reader named {0}; install vsmartcard-vpcd and restart pcscd (`scripts/pcscd.sh stop; scripts/pcscd.sh start`)")]
    ReaderMissing(&'static str),
    /// The reader already holds a card (another test or a demo `virtual-yubikey` process).
    #[error(
        "reader {0} already holds a card; stop the other virtual-yubikey process or take `lock_readers()` in tests"
    )]
    ReaderBusy(&'static str),
    /// pcscd did not report the expected state in time.
    #[error("pcscd did not report {reader} as {expected} within {timeout:?}; check `scripts/pcscd.sh status` and that nothing else uses this reader")]
    Timeout {
        /// Reader being watched.
        reader: &'static str,
        /// "holding a card" or "empty".
        expected: &'static str,
        /// How long we waited.
        timeout: Duration,
    },
    /// The OS random number generator failed (the card's RNG is seeded from it).
    #[error("cannot read OS randomness to seed the card ({0}); check /dev/urandom")]
    Entropy(#[source] rand_core::Error),
    /// The card's thread could not be started.
    #[error("cannot start the virtual card thread ({0}); the machine may be out of resources")]
    Spawn(#[source] std::io::Error),
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
