//! Virtual PIV card for tests and the demo: Nitrokey's piv-authenticator running on a
//! software trussed platform, inserted into one of the two vpcd readers ("Virtual PCD 00
//! 00" / "Virtual PCD 00 01") so that pcscd and the `yubikey` crate see it as a YubiKey 5
//! (factory PIN 123456, PUK 12345678, factory management key 0102…08 ×3).
//!
//! # Firmware
//! A card acts as a YubiKey 5.4.3 ([`Firmware::V5_4`], the default: 3DES management key)
//! or 5.7.1 ([`Firmware::V5_7`]: AES-192 management key, what YubiKeys sold since 2024
//! ship with), chosen with [`CardOptions`] (binary: `--firmware 5.4|5.7`). Either answers
//! GET METADATA for the management key (algorithm, default or not) and accepts a new
//! 3DES or AES-192 management key, like the real firmware; a 5.7 card refuses 3DES
//! authentication (6A80). piv-authenticator has no AES-192, so the glue keeps the
//! management key itself (`management.rs`). AES-128/256 management keys are not offered.
//! Checked by hand against Yubico's own host library (yubikit, yubikey-manager 5.9.2):
//! it reads the metadata, authenticates with the factory AES-192 (5.7) or 3DES (5.4) key,
//! generates a key, sets a new AES-192 key, and is refused with the old one (6982).
//!
//! Dev/test only: never a dependency of the app. The keys live in RAM with a software
//! RNG; nothing about this card is secure.
//!
//! # With the `yubikey` crate (0.8, feature `untested`)
//! Works: open by reader name (`YubiKey::open()` refuses when both readers hold a card),
//! serial, version, `verify_pin` (a wrong PIN gives `WrongPin { tries }`),
//! `get_pin_retries`, `authenticate` with the default 3DES key (5.4 only: the crate
//! knows no AES), P-256 `generate` in 9a/9c, `sign_data` (9c needs `verify_pin` right before every signature; 9a once per
//! connection), objects and certificates larger than one APDU, `piv_keys`, PIN/PUK and
//! management-key changes, `reset_device`. Like a YubiKey, a card reset or a SELECT of
//! the PIV applet logs the PIN and the management key out. Unlike a YubiKey, reset needs
//! only the PIN blocked (not the PUK too).
//!
//! Does not work: `piv::metadata`, `attest` (6A81), PUT DATA of Yubico's ADMIN DATA
//! object 5FFF00 (refused; ResetDesk treats it as optional), `cccid()` (panics in the crate),
//! `block_puk()` (loops forever: never call it).
//!
//! ```no_run
//! let _lock = virtual_yubikey::lock_readers();
//! let card = virtual_yubikey::VirtualCard::insert(virtual_yubikey::READER_0_PORT)?;
//! // ... open card.reader_name() with the `yubikey` crate ...
//! card.remove()?;
//! # Ok::<(), virtual_yubikey::Error>(())
//! ```

mod card;
mod error;
mod firmware;
mod glue;
mod lock;
mod management;
mod pcsc_wait;
mod platform;

pub use card::{CardOptions, VirtualCard};
pub use error::Error;
pub use firmware::Firmware;
pub use lock::{lock_readers, try_lock_readers, ReaderLock, READER_LOCK_PATH};

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reader_names_follow_vpcd_ports() {
        assert_eq!(reader_name_for_port(35963), Some("Virtual PCD 00 00"));
        assert_eq!(reader_name_for_port(35964), Some("Virtual PCD 00 01"));
        assert_eq!(reader_name_for_port(35965), None);
        assert_eq!(reader_name_for_port(0), None);
    }
}
