//! The PIV management key (key reference 9B): its algorithm, its factory value, mutual
//! authentication with it and its replacement by a random key stored PIN-protected on
//! the card. The APDU exchanges are written against the small [`Apdu`] trait; the card
//! adapter ([`super::card`]) runs them on the card.
//!
//! # Why ResetDesk sends these APDUs itself
//! YubiKeys with firmware 5.7 or later ship with an AES-192 factory management key (same
//! 24-byte value 0102…08 ×3 as the 3DES one before); `yubikey` 0.8 authenticates with
//! 3DES only (the card answers 6A80) and sets 3DES keys only. Evaluated and not taken:
//! - `yubikey` 0.9.0-rc.0 has AES management keys, but it is a release candidate of the
//!   driver that guards our root of trust, and it moves to the next RustCrypto generation
//!   (p256 0.14, ecdsa 0.17, der 0.8, x509-cert 0.3, spki 0.8, rand_core 0.10, an `rsa`
//!   release candidate): next to our p256 0.13 / x509-cert 0.2 that is 27 crates twice in
//!   the tree and conversions through DER at every card call, or else a migration of the
//!   CA, attestation, audit and registry code in one go. Revisit when 0.9.0 is released
//!   and the project moves to that generation together.
//! - `yubikey` 0.8 has no public way to send an APDU (its transaction is crate-private).
//!
//! So the four exchanges below (GET METADATA, two-step mutual authentication, SET
//! MANAGEMENT KEY) go over a second PC/SC connection to the same card. That is sound
//! because a card's security status belongs to the card, not to a PC/SC connection: the
//! `yubikey` connection then finds the card authenticated, as it would after its own
//! `authenticate`. The second connection never selects an applet (that would log the PIN
//! out) and is closed leaving the card as it is (`Disposition::LeaveCard`); each exchange
//! runs inside one PC/SC transaction so no other program's APDU comes between the two
//! authentication steps. The ciphers are RustCrypto's `des` and `aes` (already in the tree
//! through `yubikey` and the virtual card); this module only frames blocks.
//!
//! Protocol facts (Yubico PIV extensions): GET METADATA is `00 F7 00 9B` from firmware
//! 5.3 (tag 01 algorithm, 05 "is the factory value"); without it the key is 3DES (AES
//! arrived in 5.4). Algorithms 03 3DES, 08/0A/0C AES-128/192/256. The protected key is
//! kept in the PRINTED object `5FC109` as `88 { 89 key }` with bit 0x02 set in the ADMIN
//! DATA object's flags (`5FFF00`: `80 { 81 flags }`), the convention `ykman` and
//! `yubico-piv-tool` use (and `yubikey` 0.8 used for ResetDesk's earlier 3DES keys).

use aes::cipher::generic_array::GenericArray;
use aes::cipher::{BlockDecrypt, BlockEncrypt, KeyInit};
use rand::RngCore as _;
use subtle::ConstantTimeEq as _;
use yubikey::Version;
use zeroize::Zeroizing;

use super::TokenError;

/// The factory management key of every YubiKey, 3DES or AES-192 alike.
const FACTORY_KEY: [u8; 24] = [1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4, 5, 6, 7, 8];
/// PIV key reference of the card management key.
const KEY_REF: u8 = 0x9B;
const INS_GENERAL_AUTHENTICATE: u8 = 0x87;
const INS_SET_MANAGEMENT_KEY: u8 = 0xFF;
const INS_GET_METADATA: u8 = 0xF7;
/// The PIN-protected data object (Yubico "PRINTED") and its tags.
pub(crate) const PRINTED_OBJECT: u32 = 0x005f_c109;
const TAG_PROTECTED: u8 = 0x88;
const TAG_PROTECTED_KEY: u8 = 0x89;
/// The ADMIN DATA object, and its content saying "the management key is PIN-protected".
pub(crate) const ADMIN_DATA_OBJECT: u32 = 0x005f_ff00;
pub(crate) const ADMIN_DATA_PROTECTED_KEY: [u8; 5] = [0x80, 0x03, 0x81, 0x01, 0x02];

/// Algorithm of a management key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum ManagementAlgorithm {
    #[serde(rename = "3DES")]
    TripleDes,
    #[serde(rename = "AES-128")]
    Aes128,
    #[serde(rename = "AES-192")]
    Aes192,
    #[serde(rename = "AES-256")]
    Aes256,
}

impl ManagementAlgorithm {
    /// PIV algorithm identifier.
    pub fn code(self) -> u8 {
        match self {
            Self::TripleDes => 0x03,
            Self::Aes128 => 0x08,
            Self::Aes192 => 0x0A,
            Self::Aes256 => 0x0C,
        }
    }

    pub fn from_code(code: u8) -> Option<Self> {
        [Self::TripleDes, Self::Aes128, Self::Aes192, Self::Aes256].into_iter().find(|a| a.code() == code)
    }

    pub fn key_len(self) -> usize {
        match self {
            Self::Aes128 => 16,
            Self::TripleDes | Self::Aes192 => 24,
            Self::Aes256 => 32,
        }
    }

    /// Witness and challenge length: one cipher block.
    fn block_len(self) -> usize {
        match self {
            Self::TripleDes => 8,
            _ => 16,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::TripleDes => "3DES",
            Self::Aes128 => "AES-128",
            Self::Aes192 => "AES-192",
            Self::Aes256 => "AES-256",
        }
    }
}

impl std::fmt::Display for ManagementAlgorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Firmware that answers GET METADATA (5.3.0 and later).
pub fn has_metadata(version: Version) -> bool {
    (version.major, version.minor) >= (5, 3)
}

/// The algorithm of the factory management key: 3DES before firmware 5.7, AES-192 from
/// 5.7 on. Used when the card cannot say (no GET METADATA).
pub fn factory_algorithm(version: Version) -> ManagementAlgorithm {
    if (version.major, version.minor) >= (5, 7) {
        ManagementAlgorithm::Aes192
    } else {
        ManagementAlgorithm::TripleDes
    }
}

/// The algorithm of the random key enrolment sets: AES-192 where the firmware has AES
/// management keys (5.4 and later), 3DES before.
pub fn new_key_algorithm(version: Version) -> ManagementAlgorithm {
    if (version.major, version.minor) >= (5, 4) {
        ManagementAlgorithm::Aes192
    } else {
        ManagementAlgorithm::TripleDes
    }
}

/// What the card says about its management key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct ManagementKeyInfo {
    pub algorithm: ManagementAlgorithm,
    /// Whether it is the factory value; `None` when the card cannot say (before 5.3).
    pub is_default: Option<bool>,
}

/// A management key. Zeroized on drop; `Debug` shows the algorithm only.
pub struct ManagementKey {
    algorithm: ManagementAlgorithm,
    bytes: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for ManagementKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ManagementKey({}, ***)", self.algorithm)
    }
}

impl ManagementKey {
    /// The factory key for `algorithm`; `None` for AES-128/256, which have none.
    pub fn factory(algorithm: ManagementAlgorithm) -> Option<Self> {
        (algorithm.key_len() == FACTORY_KEY.len())
            .then(|| ManagementKey { algorithm, bytes: Zeroizing::new(FACTORY_KEY.to_vec()) })
    }

    /// A fresh random key from the operating system's generator.
    pub fn generate(algorithm: ManagementAlgorithm) -> Self {
        let mut bytes = Zeroizing::new(vec![0u8; algorithm.key_len()]);
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        ManagementKey { algorithm, bytes }
    }

    pub fn algorithm(&self) -> ManagementAlgorithm {
        self.algorithm
    }

    /// The key stored in the PRINTED object (`88 { 89 key }`), read as `algorithm`.
    /// `None` when the object holds no key of that algorithm's length.
    pub fn from_protected_object(object: &[u8], algorithm: ManagementAlgorithm) -> Option<Self> {
        let inner = single_tlv(object, TAG_PROTECTED)?;
        let mut rest = inner;
        while let [tag, len, tail @ ..] = rest {
            let len = usize::from(*len);
            let value = tail.get(..len)?;
            if *tag == TAG_PROTECTED_KEY {
                return (len == algorithm.key_len())
                    .then(|| ManagementKey { algorithm, bytes: Zeroizing::new(value.to_vec()) });
            }
            rest = &tail[len..];
        }
        None
    }

    /// The PRINTED object's content holding this key.
    pub fn protected_object(&self) -> Zeroizing<Vec<u8>> {
        let n = self.bytes.len() as u8;
        let mut out = Zeroizing::new(vec![TAG_PROTECTED, n + 2, TAG_PROTECTED_KEY, n]);
        out.extend_from_slice(&self.bytes);
        out
    }

    /// Encrypt or decrypt one block (`block_len` bytes) in place.
    fn crypt(&self, block: &mut [u8], encrypt: bool) -> Result<(), TokenError> {
        fn run<C: BlockEncrypt + BlockDecrypt + KeyInit>(key: &[u8], block: &mut [u8], encrypt: bool) -> bool {
            let Ok(cipher) = C::new_from_slice(key) else { return false };
            let block = GenericArray::from_mut_slice(block);
            if encrypt {
                cipher.encrypt_block(block)
            } else {
                cipher.decrypt_block(block)
            }
            true
        }
        if block.len() != self.algorithm.block_len() {
            return Err(TokenError::Card("management-key authentication: a block of the wrong length".into()));
        }
        let ok = match self.algorithm {
            ManagementAlgorithm::TripleDes => run::<des::TdesEde3>(&self.bytes, block, encrypt),
            ManagementAlgorithm::Aes128 => run::<aes::Aes128>(&self.bytes, block, encrypt),
            ManagementAlgorithm::Aes192 => run::<aes::Aes192>(&self.bytes, block, encrypt),
            ManagementAlgorithm::Aes256 => run::<aes::Aes256>(&self.bytes, block, encrypt),
        };
        // The key length is fixed by the algorithm when the key is made.
        ok.then_some(()).ok_or(TokenError::Card("management key of the wrong length".into()))
    }
}

/// A card's answer: body and status word.
#[derive(Debug)]
pub struct Response {
    pub body: Zeroizing<Vec<u8>>,
    pub sw: u16,
}

/// Sends one short command APDU to the card (all four exchanges here fit in one).
pub trait Apdu {
    fn transmit(&mut self, apdu: &[u8]) -> Result<Response, TokenError>;
}

/// GET METADATA for 9B. `None` when the card does not know the command (6D00, 6A81,
/// 6A86: firmware before 5.3 or not a YubiKey).
pub fn read_metadata(card: &mut dyn Apdu) -> Result<Option<ManagementKeyInfo>, TokenError> {
    let r = card.transmit(&[0x00, INS_GET_METADATA, 0x00, KEY_REF, 0x00])?;
    match r.sw {
        0x9000 => parse_metadata(&r.body).map(Some),
        0x6D00 | 0x6A81 | 0x6A86 => Ok(None),
        sw => Err(TokenError::Card(format!("GET METADATA for the management key answered {sw:04X}"))),
    }
}

/// The metadata TLVs of 9B: algorithm (01) and, when present, "factory value" (05).
pub fn parse_metadata(body: &[u8]) -> Result<ManagementKeyInfo, TokenError> {
    let bad = || TokenError::Card("the management key's metadata is malformed".into());
    let (mut algorithm, mut is_default) = (None, None);
    let mut rest = body;
    while let [tag, len, tail @ ..] = rest {
        let len = usize::from(*len);
        let value = tail.get(..len).ok_or_else(bad)?;
        match (*tag, value) {
            (0x01, [code]) => {
                algorithm = Some(ManagementAlgorithm::from_code(*code).ok_or_else(|| {
                    TokenError::Card(format!("the management key has an unknown algorithm ({code:02X})"))
                })?)
            }
            (0x05, [flag]) => is_default = Some(*flag != 0),
            (0x01 | 0x05, _) => return Err(bad()),
            _ => {}
        }
        rest = &tail[len..];
    }
    if !rest.is_empty() {
        return Err(bad());
    }
    Ok(ManagementKeyInfo { algorithm: algorithm.ok_or_else(bad)?, is_default })
}

/// Mutual authentication with `key`: the card proves it knows the key and so do we.
/// `Ok(false)` when the card refuses the key (wrong key or wrong algorithm); afterwards
/// the card accepts management operations until it is reset or PIV is selected again.
pub fn authenticate(card: &mut dyn Apdu, key: &ManagementKey) -> Result<bool, TokenError> {
    let alg = key.algorithm.code();
    let n = key.algorithm.block_len();
    let step1 = card.transmit(&[0x00, INS_GENERAL_AUTHENTICATE, alg, KEY_REF, 0x04, 0x7C, 0x02, 0x80, 0x00, 0x00])?;
    if step1.sw != 0x9000 {
        return Ok(false);
    }
    let mut witness = Zeroizing::new(dynamic_auth_value(&step1.body, 0x80, n)?.to_vec());
    key.crypt(&mut witness, false)?;
    let mut challenge = Zeroizing::new(vec![0u8; n]);
    rand::rngs::OsRng.fill_bytes(&mut challenge);
    let inner = 2 * (n + 2);
    let mut step2 = Zeroizing::new(vec![0x00, INS_GENERAL_AUTHENTICATE, alg, KEY_REF, (inner + 2) as u8]);
    step2.extend_from_slice(&[0x7C, inner as u8, 0x80, n as u8]);
    step2.extend_from_slice(&witness);
    step2.extend_from_slice(&[0x81, n as u8]);
    step2.extend_from_slice(&challenge);
    step2.push(0x00);
    let answer = card.transmit(&step2)?;
    if answer.sw != 0x9000 {
        return Ok(false);
    }
    let mut expected = challenge;
    key.crypt(&mut expected, true)?;
    let response = dynamic_auth_value(&answer.body, 0x82, n)?;
    if bool::from(response.ct_eq(&expected)) {
        Ok(true)
    } else {
        Err(TokenError::Card("the card accepted the management key but could not prove it knows it".into()))
    }
}

/// SET MANAGEMENT KEY to `key` (no touch). The current key must have been proven.
pub fn set_key(card: &mut dyn Apdu, key: &ManagementKey) -> Result<(), TokenError> {
    let n = key.bytes.len();
    let mut apdu = Zeroizing::new(vec![0x00, INS_SET_MANAGEMENT_KEY, 0xFF, 0xFF, (n + 3) as u8]);
    apdu.extend_from_slice(&[key.algorithm.code(), KEY_REF, n as u8]);
    apdu.extend_from_slice(&key.bytes);
    match card.transmit(&apdu)?.sw {
        0x9000 => Ok(()),
        0x6982 => Err(TokenError::ManagementKey),
        0x6A80 | 0x6D00 => Err(TokenError::NotSupported("this management-key algorithm")),
        sw => Err(TokenError::Card(format!("setting the management key answered {sw:04X}"))),
    }
}

/// The value of `tag` in a dynamic authentication template `7C L tag n value`, which
/// must hold exactly `n` bytes.
fn dynamic_auth_value(body: &[u8], tag: u8, n: usize) -> Result<&[u8], TokenError> {
    single_tlv(body, 0x7C)
        .and_then(|inner| single_tlv(inner, tag))
        .filter(|v| v.len() == n)
        .ok_or_else(|| TokenError::Card("the card's management-key authentication answer is malformed".into()))
}

/// The value of a TLV with short length that fills `data` exactly, if its tag is `tag`.
fn single_tlv(data: &[u8], tag: u8) -> Option<&[u8]> {
    match data {
        [t, len, value @ ..] if *t == tag && usize::from(*len) == value.len() && *len < 0x80 => Some(value),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(major: u8, minor: u8) -> Version {
        Version::new([major, minor, 0])
    }

    #[test]
    fn firmware_decides_the_factory_and_the_new_algorithm() {
        assert_eq!(factory_algorithm(v(5, 4)), ManagementAlgorithm::TripleDes);
        assert_eq!(factory_algorithm(v(5, 7)), ManagementAlgorithm::Aes192);
        assert_eq!(factory_algorithm(v(4, 3)), ManagementAlgorithm::TripleDes);
        assert_eq!(new_key_algorithm(v(5, 2)), ManagementAlgorithm::TripleDes);
        assert_eq!(new_key_algorithm(v(5, 4)), ManagementAlgorithm::Aes192);
        assert!(!has_metadata(v(5, 2)) && has_metadata(v(5, 3)) && has_metadata(v(6, 0)));
    }

    #[test]
    fn metadata_gives_the_algorithm_and_the_default_flag() {
        let m = parse_metadata(&[0x01, 0x01, 0x0A, 0x02, 0x02, 0x00, 0x01, 0x05, 0x01, 0x01]).unwrap();
        assert_eq!(m, ManagementKeyInfo { algorithm: ManagementAlgorithm::Aes192, is_default: Some(true) });
        let m = parse_metadata(&[0x01, 0x01, 0x03]).unwrap();
        assert_eq!(m, ManagementKeyInfo { algorithm: ManagementAlgorithm::TripleDes, is_default: None });
        for bad in [&[][..], &[0x01, 0x01, 0x42], &[0x01, 0x02, 0x0A], &[0x05, 0x01, 0x00], &[0x01, 0x01, 0x0A, 0x05]] {
            assert!(matches!(parse_metadata(bad), Err(TokenError::Card(_))), "{bad:02x?}");
        }
    }

    #[test]
    fn the_protected_object_round_trips_and_a_wrong_length_is_no_key() {
        let key = ManagementKey::generate(ManagementAlgorithm::Aes192);
        let object = key.protected_object();
        assert_eq!(object[..4], [0x88, 26, 0x89, 24]);
        let back = ManagementKey::from_protected_object(&object, ManagementAlgorithm::Aes192).unwrap();
        assert_eq!(back.bytes, key.bytes);
        assert!(ManagementKey::from_protected_object(&object, ManagementAlgorithm::Aes256).is_none());
        assert!(ManagementKey::from_protected_object(&[0x88, 0x00], ManagementAlgorithm::Aes192).is_none());
        assert!(ManagementKey::from_protected_object(&[0x88, 0x05, 0x89, 0x18], ManagementAlgorithm::Aes192).is_none());
        assert_ne!(ManagementKey::generate(ManagementAlgorithm::Aes192).bytes, key.bytes);
        assert_eq!(format!("{key:?}"), "ManagementKey(AES-192, ***)");
    }

    #[test]
    fn only_24_byte_algorithms_have_a_factory_key() {
        assert!(ManagementKey::factory(ManagementAlgorithm::TripleDes).is_some());
        assert!(ManagementKey::factory(ManagementAlgorithm::Aes192).is_some());
        assert!(ManagementKey::factory(ManagementAlgorithm::Aes128).is_none());
        assert!(ManagementKey::factory(ManagementAlgorithm::Aes256).is_none());
    }

    /// A card that answers a scripted list of responses and records what it was sent.
    struct Script(Vec<(Vec<u8>, u16)>, Vec<Vec<u8>>);

    impl Apdu for Script {
        fn transmit(&mut self, apdu: &[u8]) -> Result<Response, TokenError> {
            self.1.push(apdu.to_vec());
            let (body, sw) = self.0.remove(0);
            Ok(Response { body: Zeroizing::new(body), sw })
        }
    }

    #[test]
    fn authentication_refused_at_either_step_is_false_and_a_card_that_cannot_prove_the_key_is_an_error() {
        let key = ManagementKey::factory(ManagementAlgorithm::Aes192).unwrap();
        // A 5.7 card answers a 3DES request 6A80; a wrong key is refused at step 2.
        assert!(!authenticate(&mut Script(vec![(vec![], 0x6A80)], vec![]), &key).unwrap());
        let witness = [0x7C, 0x12, 0x80, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        let mut card = Script(vec![(witness.to_vec(), 0x9000), (vec![], 0x6982)], vec![]);
        assert!(!authenticate(&mut card, &key).unwrap());
        assert_eq!(card.1[0], [0x00, 0x87, 0x0A, 0x9B, 0x04, 0x7C, 0x02, 0x80, 0x00, 0x00]);
        assert_eq!(card.1[1][..9], [0x00, 0x87, 0x0A, 0x9B, 0x26, 0x7C, 0x24, 0x80, 0x10]);
        // The card says yes but answers our challenge wrongly: not our card's key.
        let bogus = [0x7C, 0x12, 0x82, 0x10, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9];
        let mut card = Script(vec![(witness.to_vec(), 0x9000), (bogus.to_vec(), 0x9000)], vec![]);
        assert!(matches!(authenticate(&mut card, &key), Err(TokenError::Card(_))));
        // A malformed witness is an error, not a panic.
        let mut card = Script(vec![(vec![0x7C, 0x03, 0x80, 0x10], 0x9000)], vec![]);
        assert!(matches!(authenticate(&mut card, &key), Err(TokenError::Card(_))));
    }
}
