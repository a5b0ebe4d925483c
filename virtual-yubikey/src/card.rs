//! A virtual card in a vpcd reader: a thread that runs the PIV applet behind one vpcd
//! TCP connection. Connecting is inserting the card; closing the socket is removing it.

use std::hash::{BuildHasher as _, Hasher as _};
use std::net::{Ipv4Addr, Shutdown, TcpStream};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use rand_core::RngCore as _;

use crate::glue::PivCard;
use crate::pcsc_wait::ReaderWatch;
use crate::{platform, reader_name_for_port, Error, Firmware};

/// How long pcscd may take to notice an insertion (it polls vpcd; 0.2–0.4 s seen).
const INSERT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long pcscd may take to notice a removal.
const REMOVE_TIMEOUT: Duration = Duration::from_secs(10);

/// A virtual PIV card sitting in a vpcd reader. Removed from the reader when dropped.
#[derive(Debug)]
pub struct VirtualCard {
    reader: &'static str,
    serial: u32,
    firmware: Firmware,
    /// Handle on the vpcd socket, to close it (remove the card) from this thread.
    socket: TcpStream,
    /// The card's thread; `None` once the card has been removed.
    thread: Option<JoinHandle<()>>,
    /// Why the card's thread ended, once it has.
    stopped_rx: Receiver<String>,
    stopped: Option<String>,
}

/// How to make a virtual card: its serial and the YubiKey firmware it acts as.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CardOptions {
    /// Serial number GET SERIAL (and so `YubiKey::serial()`) reports; `None`: random 8 digits.
    pub serial: Option<u32>,
    /// 5.4 (factory 3DES management key, the default) or 5.7 (factory AES-192).
    pub firmware: Firmware,
}

impl VirtualCard {
    /// Insert a fresh card with factory defaults (PIN 123456, PUK 12345678, default 3DES
    /// management key: firmware 5.4) into the vpcd reader on 127.0.0.1:`port` and wait
    /// (with timeout) until pcscd reports it present. The serial number is random (8 digits).
    pub fn insert(port: u16) -> Result<VirtualCard, Error> {
        Self::insert_with(port, CardOptions::default())
    }

    /// Same as [`VirtualCard::insert`] with a chosen serial number, which GET SERIAL (and
    /// so `YubiKey::serial()`) reports. Two agents' cards must differ.
    pub fn insert_with_serial(port: u16, serial: u32) -> Result<VirtualCard, Error> {
        Self::insert_with(port, CardOptions { serial: Some(serial), ..CardOptions::default() })
    }

    /// Insert a fresh card made as `options` say (e.g. a 5.7 card with its factory AES-192
    /// management key).
    pub fn insert_with(port: u16, options: CardOptions) -> Result<VirtualCard, Error> {
        let serial = options.serial.unwrap_or_else(random_serial);
        let firmware = options.firmware;
        let reader = reader_name_for_port(port).ok_or(Error::UnknownPort(port))?;
        let mut watch = ReaderWatch::new(reader)?;
        if watch.card_present() {
            return Err(Error::ReaderBusy(reader));
        }
        let mut seed = [0u8; 32];
        rand_core::OsRng.try_fill_bytes(&mut seed).map_err(Error::Entropy)?;

        let connect_err = |source| Error::Connect { port, source };
        let stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).map_err(connect_err)?;
        stream.set_nodelay(true).map_err(connect_err)?;
        let socket = stream.try_clone().map_err(connect_err)?;

        let (stopped_tx, stopped_rx) = mpsc::channel();
        let thread = thread::Builder::new()
            .name(format!("virtual-yubikey {port}"))
            .spawn(move || {
                let reason = run_card(stream, serial, firmware, seed);
                // The receiver may be gone (card dropped): nobody to tell then.
                let _ = stopped_tx.send(reason);
            })
            .map_err(Error::Spawn)?;
        let card = VirtualCard { reader, serial, firmware, socket, thread: Some(thread), stopped_rx, stopped: None };
        // On failure `card` is dropped here, which closes the socket again.
        watch.wait_for(true, INSERT_TIMEOUT)?;
        Ok(card)
    }

    /// PC/SC name of the reader holding this card.
    pub fn reader_name(&self) -> &'static str {
        self.reader
    }

    /// Serial number the card reports (GET SERIAL, `YubiKey::serial()`).
    pub fn serial(&self) -> u32 {
        self.serial
    }

    /// The YubiKey firmware the card acts as.
    pub fn firmware(&self) -> Firmware {
        self.firmware
    }

    /// Wait up to `timeout` for the card to stop on its own (vpcd closed the connection,
    /// pcscd stopped, or the applet failed). `Some(reason)` if it has stopped, `None` if it
    /// is still running when the timeout passes.
    pub fn wait_stopped(&mut self, timeout: Duration) -> Option<String> {
        if self.stopped.is_none() {
            self.stopped = match self.stopped_rx.recv_timeout(timeout) {
                Ok(reason) => Some(reason),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => {
                    Some("the card thread panicked (see its message on stderr)".to_owned())
                }
            };
        }
        self.stopped.clone()
    }

    /// Remove the card (also done on drop) and wait until pcscd reports the reader empty.
    pub fn remove(mut self) -> Result<(), Error> {
        self.disconnect();
        ReaderWatch::new(self.reader)?.wait_for(false, REMOVE_TIMEOUT)
    }

    /// Close the vpcd connection and let the card's thread finish.
    fn disconnect(&mut self) {
        // Unblocks the thread's socket read; fails only if vpcd already closed it.
        let _ = self.socket.shutdown(Shutdown::Both);
        if let Some(thread) = self.thread.take() {
            // A panic in the card thread has already been printed; nothing to add.
            let _ = thread.join();
        }
    }
}

impl Drop for VirtualCard {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.disconnect();
            // Best effort: the next user of the reader checks emptiness itself.
            if let Ok(mut watch) = ReaderWatch::new(self.reader) {
                let _ = watch.wait_for(false, REMOVE_TIMEOUT);
            }
        }
    }
}

/// The card's thread: serve vpcd until the connection ends; returns why it ended.
fn run_card(stream: TcpStream, serial: u32, firmware: Firmware, seed: [u8; 32]) -> String {
    let ack_handle = match stream.try_clone() {
        Ok(s) => s,
        Err(e) => return format!("cannot clone the vpcd socket: {e}"),
    };
    platform::with_fresh_card(seed, |client| {
        let applet = piv_authenticator::Authenticator::new(client, Default::default());
        let mut card = PivCard::new(applet, serial, firmware);
        let mut vpcd = vpicc::Connection::from(stream);
        loop {
            // vpcd sends the length and the APDU as two segments; with delayed ACKs each
            // APDU then costs ~40 ms. Linux clears QUICKACK after use, hence every time.
            // Failure only costs speed.
            let _ = socket2::SockRef::from(&ack_handle).set_quickack(true);
            if let Err(e) = vpcd.poll(&mut card) {
                return format!("vpcd connection ended: {e}");
            }
        }
    })
}

/// A random 8-digit serial, like a YubiKey 5's.
fn random_serial() -> u32 {
    // RandomState is seeded from OS randomness once per process and varies per instance.
    let r = std::collections::hash_map::RandomState::new().build_hasher().finish();
    10_000_000 + (r % 90_000_000) as u32
}
