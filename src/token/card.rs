//! The PIV card adapter: the only module that talks to a YubiKey (through the `yubikey`
//! crate over PC/SC). Everything above it sees typed [`TokenError`]s.
//!
//! Rules kept here:
//! - a PIN is only sent when its format is valid (6–8 characters), so a typo in length
//!   never costs a try; a wrong PIN is reported with the tries left and never retried;
//! - cards are opened by reader name or serial (never "the only card": two agents'
//!   keys may be inserted at once for a co-signature);
//! - `block_puk`, `cccid` and `metadata` of `yubikey` 0.8 are never called (they hang
//!   or panic on some cards);
//! - the management key is handled by [`super::management`], whose APDUs (which
//!   `yubikey` 0.8 cannot send) go over a [`SideChannel`] to the same card; `yubikey`'s
//!   own 3DES-only `MgmKey` is not used.

use spki::SubjectPublicKeyInfoOwned;
use yubikey::piv::{self, AlgorithmId, SlotId};
use yubikey::{PinPolicy, TouchPolicy, YubiKey};
use zeroize::Zeroizing;

use super::management::{self, ManagementAlgorithm, ManagementKey, ManagementKeyInfo};
use super::readers::is_virtual_reader;
use super::TokenError;
use crate::secret::Secret;

/// PIV factory default PIN.
pub const DEFAULT_PIN: &str = "123456";
/// PIV factory default PUK.
pub const DEFAULT_PUK: &str = "12345678";

/// The two PIV slots ResetDesk uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Slot {
    /// 9a, PIV Authentication: login challenges. PIN once per session.
    Authentication,
    /// 9c, Digital Signature: audit records and co-signatures. PIN before every signature.
    Signature,
}

impl Slot {
    /// "9a" / "9c".
    pub fn as_str(self) -> &'static str {
        match self {
            Slot::Authentication => "9a",
            Slot::Signature => "9c",
        }
    }

    /// Parse "9a" / "9c".
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "9a" => Some(Slot::Authentication),
            "9c" => Some(Slot::Signature),
            _ => None,
        }
    }

    /// PIV data object holding the slot's certificate (SP 800-73-4).
    fn object_id(self) -> u32 {
        match self {
            Slot::Authentication => 0x005f_c105,
            Slot::Signature => 0x005f_c10a,
        }
    }

    fn id(self) -> SlotId {
        match self {
            Slot::Authentication => SlotId::Authentication,
            Slot::Signature => SlotId::Signature,
        }
    }
}

impl std::fmt::Display for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A card in a reader.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CardInfo {
    pub reader: String,
    pub serial: u32,
    /// PIV application version, "5.4.3".
    pub version: String,
    /// In a vpcd reader: a virtual demo token.
    pub is_virtual: bool,
    /// The management key's algorithm and whether it is the factory value; `None` when
    /// the card's answer was unreadable.
    pub management_key: Option<ManagementKeyInfo>,
}

/// Map a `yubikey` error to a [`TokenError`]. PIN errors become `WrongPin`/`PinBlocked`;
/// PC/SC removal and reset become `Removed`/`Reset`.
pub fn map_error(e: yubikey::Error) -> TokenError {
    use yubikey::Error as E;
    match e {
        E::WrongPin { tries: 0 } | E::PinLocked => TokenError::PinBlocked,
        E::WrongPin { tries } => TokenError::WrongPin { tries_left: tries },
        E::PcscError { inner: Some(p) } => map_pcsc(p),
        E::PcscError { inner: None } => TokenError::Pcsc("unknown PC/SC failure".into()),
        E::AppletNotFound { .. } => TokenError::NotPiv(String::new()),
        E::NotSupported => TokenError::NotSupported("this operation"),
        other => TokenError::Card(format!("{other}")),
    }
}

/// Map a PC/SC error to a [`TokenError`].
pub fn map_pcsc(p: pcsc::Error) -> TokenError {
    use pcsc::Error as P;
    match p {
        P::RemovedCard | P::NoSmartcard | P::ReaderUnavailable => TokenError::Removed,
        P::ResetCard => TokenError::Reset,
        P::NoService | P::ServiceStopped => TokenError::NoService,
        P::NoReadersAvailable => TokenError::NoReader,
        P::UnknownReader => TokenError::UnknownReader(String::new()),
        P::SharingViolation => TokenError::Busy,
        other => TokenError::Pcsc(other.to_string()),
    }
}

/// Check the PIV PIN/PUK format before anything is sent to the card.
pub fn check_pin_format(pin: &Secret) -> Result<(), TokenError> {
    let n = pin.expose().len();
    if (6..=8).contains(&n) && pin.expose().is_ascii() {
        Ok(())
    } else {
        Err(TokenError::PinFormat)
    }
}

/// An open connection to a PIV card.
pub struct PivCard {
    yk: YubiKey,
    reader: String,
}

impl std::fmt::Debug for PivCard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PivCard").field("reader", &self.reader).field("serial", &self.serial()).finish()
    }
}

/// Reader names known to pcscd. An absent service or no readers are errors here.
pub fn reader_names() -> Result<Vec<String>, TokenError> {
    let ctx = pcsc::Context::establish(pcsc::Scope::User).map_err(map_pcsc)?;
    match ctx.list_readers_owned() {
        Ok(names) => Ok(names.iter().map(|n| n.to_string_lossy().into_owned()).collect()),
        Err(pcsc::Error::NoReadersAvailable) => Ok(Vec::new()),
        Err(e) => Err(map_pcsc(e)),
    }
}

/// Every PIV card currently inserted, with serial and version. Readers whose card is
/// absent or not PIV are skipped.
pub fn list_cards() -> Result<Vec<CardInfo>, TokenError> {
    let mut ctx = yubikey::reader::Context::open().map_err(map_error)?;
    let mut out = Vec::new();
    for reader in ctx.iter().map_err(map_error)? {
        if let Ok(yk) = reader.open() {
            out.push(PivCard { yk, reader: reader.name().into_owned() }.info());
        }
    }
    Ok(out)
}

/// A second PC/SC connection to the card in a reader, for the management-key APDUs
/// `yubikey` 0.8 cannot send (see [`super::management`] for why this is sound). It never
/// selects an applet, runs each exchange in one PC/SC transaction, and leaves the card
/// as it is when closed, so the security status (PIN, management key) is the card's as
/// the main connection left or will find it.
struct SideChannel {
    card: Option<pcsc::Card>,
}

impl SideChannel {
    fn open(reader: &str) -> Result<Self, TokenError> {
        let ctx = pcsc::Context::establish(pcsc::Scope::User).map_err(map_pcsc)?;
        let name = std::ffi::CString::new(reader).map_err(|_| TokenError::UnknownReader(reader.to_owned()))?;
        let card = ctx.connect(&name, pcsc::ShareMode::Shared, pcsc::Protocols::ANY).map_err(map_pcsc)?;
        Ok(SideChannel { card: Some(card) })
    }

    /// Run `exchange` inside one PC/SC transaction on the card in `reader`.
    fn run<R>(
        reader: &str,
        exchange: impl FnOnce(&mut dyn management::Apdu) -> Result<R, TokenError>,
    ) -> Result<R, TokenError> {
        let mut channel = Self::open(reader)?;
        // `card` is Some until drop.
        let card = channel.card.as_mut().ok_or(TokenError::Removed)?;
        let tx = card.transaction().map_err(map_pcsc)?;
        let result = exchange(&mut Transmitter(&tx));
        // Ending the transaction leaves the card as it is (never a reset).
        drop(tx);
        result
    }
}

impl Drop for SideChannel {
    fn drop(&mut self) {
        if let Some(card) = self.card.take() {
            // Closing without resetting the card; a failure leaves nothing to undo.
            let _ = card.disconnect(pcsc::Disposition::LeaveCard);
        }
    }
}

struct Transmitter<'a>(&'a pcsc::Card);

impl management::Apdu for Transmitter<'_> {
    fn transmit(&mut self, apdu: &[u8]) -> Result<management::Response, TokenError> {
        let mut buf = Zeroizing::new(vec![0u8; pcsc::MAX_BUFFER_SIZE]);
        let r = self.0.transmit(apdu, &mut buf).map_err(map_pcsc)?;
        let [body @ .., sw1, sw2] = r else {
            return Err(TokenError::Card("the card answered without a status word".into()));
        };
        Ok(management::Response { body: Zeroizing::new(body.to_vec()), sw: u16::from_be_bytes([*sw1, *sw2]) })
    }
}

impl PivCard {
    /// Open the card in the reader named `reader` (exact PC/SC name).
    pub fn open_reader(reader: &str) -> Result<Self, TokenError> {
        let mut ctx = yubikey::reader::Context::open().map_err(map_error)?;
        let readers = ctx.iter().map_err(map_error)?;
        for r in readers {
            if r.name() == reader {
                return match r.open() {
                    Ok(yk) => Ok(Self { yk, reader: reader.to_owned() }),
                    Err(yubikey::Error::AppletNotFound { .. }) => Err(TokenError::NotPiv(reader.to_owned())),
                    Err(yubikey::Error::PcscError { inner: Some(pcsc::Error::NoSmartcard) })
                    | Err(yubikey::Error::PcscError { inner: Some(pcsc::Error::RemovedCard) }) => {
                        Err(TokenError::NoCard)
                    }
                    Err(e) => Err(map_error(e)),
                };
            }
        }
        Err(TokenError::UnknownReader(reader.to_owned()))
    }

    /// Open the card whose serial number is `serial`, whatever reader it is in.
    pub fn open_serial(serial: u32) -> Result<Self, TokenError> {
        let mut ctx = yubikey::reader::Context::open().map_err(map_error)?;
        for r in ctx.iter().map_err(map_error)? {
            if let Ok(yk) = r.open() {
                if yk.serial().0 == serial {
                    return Ok(Self { yk, reader: r.name().into_owned() });
                }
            }
        }
        Err(TokenError::UnknownSerial(serial))
    }

    /// The only inserted card; an error naming the choice when there are none or several.
    pub fn open_single() -> Result<Self, TokenError> {
        let cards = list_cards()?;
        match cards.as_slice() {
            [] => Err(TokenError::NoCard),
            [one] => Self::open_reader(&one.reader),
            _ => Err(TokenError::Card(format!(
                "{} keys are inserted ({}); choose one with --reader",
                cards.len(),
                cards.iter().map(|c| c.reader.as_str()).collect::<Vec<_>>().join(", ")
            ))),
        }
    }

    pub fn reader(&self) -> &str {
        &self.reader
    }

    pub fn serial(&self) -> u32 {
        self.yk.serial().0
    }

    pub fn version(&self) -> String {
        self.yk.version().to_string()
    }

    /// Whether the card sits in a vpcd reader (a virtual demo token).
    pub fn is_virtual(&self) -> bool {
        is_virtual_reader(&self.reader)
    }

    /// Reader, serial, version and the management key's algorithm.
    pub fn info(&mut self) -> CardInfo {
        CardInfo {
            reader: self.reader.clone(),
            serial: self.serial(),
            version: self.version(),
            is_virtual: self.is_virtual(),
            management_key: self.management_key().ok(),
        }
    }

    /// The management key's algorithm and whether it is the factory value: GET METADATA
    /// from firmware 5.3, else the firmware's factory algorithm (3DES) with "unknown".
    pub fn management_key(&mut self) -> Result<ManagementKeyInfo, TokenError> {
        let version = self.yk.version();
        if management::has_metadata(version) {
            if let Some(info) = SideChannel::run(&self.reader, management::read_metadata)? {
                return Ok(info);
            }
        }
        Ok(ManagementKeyInfo { algorithm: management::factory_algorithm(version), is_default: None })
    }

    /// Mutual authentication with `key`. `Ok(false)`: the card refused it. After `Ok(true)`
    /// the card accepts management operations on this connection too.
    pub fn try_management_key(&mut self, key: &ManagementKey) -> Result<bool, TokenError> {
        SideChannel::run(&self.reader, |card| management::authenticate(card, key))
    }

    /// PIN tries left (does not use a try).
    pub fn pin_retries(&mut self) -> Result<u8, TokenError> {
        self.yk.get_pin_retries().map_err(map_error)
    }

    /// Verify the PIN once. A wrong PIN is `WrongPin { tries_left }` (or `PinBlocked`);
    /// this function never retries.
    pub fn verify_pin(&mut self, pin: &Secret) -> Result<(), TokenError> {
        check_pin_format(pin)?;
        self.yk.verify_pin(pin.expose().as_bytes()).map_err(map_error)
    }

    /// Sign a SHA-256 digest with the P-256 key in `slot`. Returns the DER ECDSA
    /// signature. The PIN must have been verified (for 9c: immediately before).
    pub fn sign_digest(&mut self, slot: Slot, digest: &[u8; 32]) -> Result<Vec<u8>, TokenError> {
        match piv::sign_data(&mut self.yk, digest, AlgorithmId::EccP256, slot.id()) {
            Ok(sig) => {
                let sig = sig.to_vec();
                // The card answers a DER ECDSA-Sig-Value; anything else is a card fault.
                p256::ecdsa::Signature::from_der(&sig)
                    .map_err(|_| TokenError::Card(format!("slot {slot} returned a malformed signature")))?;
                Ok(sig)
            }
            // Security status not satisfied: the PIN was not verified for this operation.
            Err(yubikey::Error::AuthenticationError) => Err(TokenError::PinRequired),
            Err(yubikey::Error::GenericError) | Err(yubikey::Error::NotFound) => {
                Err(TokenError::Card(format!("slot {slot} could not sign (no key there?)")))
            }
            Err(e) => Err(map_error(e)),
        }
    }

    /// The certificate in `slot`, `None` when the slot holds none.
    pub fn certificate(&mut self, slot: Slot) -> Result<Option<x509_cert::Certificate>, TokenError> {
        match yubikey::Certificate::read(&mut self.yk, slot.id()) {
            Ok(c) => Ok(Some(c.cert)),
            Err(yubikey::Error::NotFound) | Err(yubikey::Error::InvalidObject) | Err(yubikey::Error::SizeError) => {
                // InvalidObject is also what an empty object gives: tell "absent" from
                // "garbage" by looking at the raw object.
                match self.yk.fetch_object(slot.object_id()) {
                    Ok(buf) if !buf.is_empty() => Err(TokenError::BadCertificate {
                        slot: slot.as_str(),
                        message: "not an X.509 certificate".into(),
                    }),
                    Ok(_) | Err(yubikey::Error::NotFound) | Err(yubikey::Error::InvalidObject) => Ok(None),
                    Err(e) => Err(map_error(e)),
                }
            }
            Err(e) => Err(map_error(e)),
        }
    }

    /// Write `cert` to `slot` (needs management-key authentication).
    pub fn write_certificate(&mut self, slot: Slot, cert: &x509_cert::Certificate) -> Result<(), TokenError> {
        let c = yubikey::Certificate { cert: cert.clone() };
        c.write(&mut self.yk, slot.id(), yubikey::certificate::CertInfo::Uncompressed).map_err(|e| match e {
            yubikey::Error::AuthenticationError => TokenError::ManagementKey,
            e => map_error(e),
        })
    }

    /// Authenticate with the management key, with the algorithm the card reports: the
    /// factory value first (unless the card says it is not), then the PIN-protected key
    /// stored on the card by enrolment (needs the PIN verified). Returns whether the
    /// factory key was the one that worked.
    pub fn authenticate_management(&mut self) -> Result<bool, TokenError> {
        let info = self.management_key()?;
        if info.is_default != Some(false) {
            if let Some(factory) = ManagementKey::factory(info.algorithm) {
                if self.try_management_key(&factory)? {
                    return Ok(true);
                }
            }
        }
        let object = self.yk.fetch_object(management::PRINTED_OBJECT).map_err(|_| TokenError::ManagementKey)?;
        let key = ManagementKey::from_protected_object(&object, info.algorithm).ok_or(TokenError::ManagementKey)?;
        if self.try_management_key(&key)? {
            Ok(false)
        } else {
            Err(TokenError::ManagementKey)
        }
    }

    /// Whether the factory management key is still set: the card's metadata says so
    /// (firmware 5.3+), or else the factory 3DES key is tried (management-key
    /// authentication has no retry counter), leaving the card unauthenticated.
    pub fn has_default_management_key(&mut self) -> Result<bool, TokenError> {
        let info = self.management_key()?;
        if let Some(is_default) = info.is_default {
            return Ok(is_default);
        }
        let Some(factory) = ManagementKey::factory(info.algorithm) else { return Ok(false) };
        let default = self.try_management_key(&factory)?;
        if default {
            let _ = self.yk.deauthenticate();
        }
        Ok(default)
    }

    /// Replace the management key with a fresh random one (AES-192 where the firmware
    /// has AES management keys, 5.4+; 3DES before) and store it PIN-protected on the card
    /// (the YubiKey "protected management key" convention). Needs management-key
    /// authentication and a verified PIN. Returns the new key's algorithm.
    pub fn set_random_protected_management_key(&mut self) -> Result<ManagementAlgorithm, TokenError> {
        let key = ManagementKey::generate(management::new_key_algorithm(self.yk.version()));
        SideChannel::run(&self.reader, |card| management::set_key(card, &key))?;
        // From here the new key is in force: store it at once (the order `yubikey`'s
        // set_protected used), so that the next authentication finds it.
        let store = |yk: &mut YubiKey, object: u32, data: &mut [u8]| {
            yk.save_object(object, data).map_err(|e| match e {
                yubikey::Error::AuthenticationError => TokenError::ManagementKey,
                e => map_error(e),
            })
        };
        store(&mut self.yk, management::PRINTED_OBJECT, &mut key.protected_object())?;
        // The ADMIN DATA flag only tells other tools (ykman) that the key is PIN-protected;
        // ResetDesk reads the key from PRINTED. Like `yubikey`'s set_protected, a card
        // that refuses the object (the virtual card does) is no failure.
        if let Err(e) =
            store(&mut self.yk, management::ADMIN_DATA_OBJECT, &mut { management::ADMIN_DATA_PROTECTED_KEY })
        {
            tracing::warn!("the card did not take the ADMIN DATA object ({e}); the management key is stored PIN-protected all the same");
        }
        Ok(key.algorithm())
    }

    /// Generate a P-256 key in `slot` with the given policies; returns its public key.
    pub fn generate_p256(
        &mut self,
        slot: Slot,
        pin_policy: PinPolicy,
        touch_policy: TouchPolicy,
    ) -> Result<SubjectPublicKeyInfoOwned, TokenError> {
        piv::generate(&mut self.yk, slot.id(), AlgorithmId::EccP256, pin_policy, touch_policy).map_err(|e| match e {
            yubikey::Error::AuthenticationError => TokenError::ManagementKey,
            e => map_error(e),
        })
    }

    /// The PIV attestation certificate (DER) for the key in `slot`, `None` when the
    /// device cannot attest (older firmware, or a virtual card: status 6A81/6D00).
    pub fn attest(&mut self, slot: Slot) -> Result<Option<Vec<u8>>, TokenError> {
        match piv::attest(&mut self.yk, slot.id()) {
            Ok(buf) => Ok(Some(buf.to_vec())),
            Err(yubikey::Error::NotSupported) | Err(yubikey::Error::GenericError) => Ok(None),
            Err(yubikey::Error::PcscError { inner: Some(p) }) => Err(map_pcsc(p)),
            Err(_) => Ok(None),
        }
    }

    /// The device's attestation intermediate certificate (slot f9, DER), if readable.
    pub fn attestation_intermediate(&mut self) -> Result<Option<Vec<u8>>, TokenError> {
        match yubikey::Certificate::read(&mut self.yk, SlotId::Attestation) {
            Ok(c) => Ok(der::Encode::to_der(&c.cert).ok()),
            Err(yubikey::Error::PcscError { inner: Some(p) }) => Err(map_pcsc(p)),
            Err(_) => Ok(None),
        }
    }

    /// Change the PIN (verifies `current`; a wrong one costs a try and is reported).
    pub fn change_pin(&mut self, current: &Secret, new: &Secret) -> Result<(), TokenError> {
        check_pin_format(current)?;
        check_pin_format(new)?;
        self.yk.change_pin(current.expose().as_bytes(), new.expose().as_bytes()).map_err(map_error)
    }

    /// Change the PUK (a wrong current PUK costs a PUK try and is reported as `WrongPin`).
    pub fn change_puk(&mut self, current: &Secret, new: &Secret) -> Result<(), TokenError> {
        check_pin_format(current)?;
        check_pin_format(new)?;
        self.yk.change_puk(current.expose().as_bytes(), new.expose().as_bytes()).map_err(|e| match map_error(e) {
            TokenError::WrongPin { tries_left } => TokenError::WrongPuk { tries_left },
            TokenError::PinBlocked => TokenError::PukBlocked,
            other => other,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pin_errors_keep_tries_and_zero_tries_is_blocked() {
        assert!(matches!(map_error(yubikey::Error::WrongPin { tries: 2 }), TokenError::WrongPin { tries_left: 2 }));
        assert!(matches!(map_error(yubikey::Error::WrongPin { tries: 0 }), TokenError::PinBlocked));
        assert!(matches!(map_error(yubikey::Error::PinLocked), TokenError::PinBlocked));
    }

    #[test]
    fn removal_and_reset_are_distinct_typed_errors() {
        let e = |p| map_error(yubikey::Error::PcscError { inner: Some(p) });
        assert!(matches!(e(pcsc::Error::RemovedCard), TokenError::Removed));
        assert!(matches!(e(pcsc::Error::NoSmartcard), TokenError::Removed));
        assert!(matches!(e(pcsc::Error::ResetCard), TokenError::Reset));
        assert!(matches!(e(pcsc::Error::NoService), TokenError::NoService));
        assert!(matches!(e(pcsc::Error::SharingViolation), TokenError::Busy));
    }

    #[test]
    fn pin_format_is_checked_locally() {
        for bad in ["", "12345", "123456789", "12345é"] {
            assert!(matches!(check_pin_format(&Secret::from(bad)), Err(TokenError::PinFormat)), "{bad}");
        }
        for good in ["123456", "abcdefgh"] {
            assert!(check_pin_format(&Secret::from(good)).is_ok());
        }
    }

    #[test]
    fn slot_names_round_trip() {
        for s in [Slot::Authentication, Slot::Signature] {
            assert_eq!(Slot::parse(s.as_str()), Some(s));
        }
        assert_eq!(Slot::parse("9d"), None);
    }
}
