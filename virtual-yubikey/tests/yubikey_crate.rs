//! The virtual card on the real stack (vpcd + pcscd + the `yubikey` crate), doing what
//! ResetDesk's token layer does with a YubiKey. Needs `scripts/pcscd.sh start` first.
//! Every test holds the cross-process reader lock while it uses the readers.

mod common;
use common::reader_has_card;

use p256::ecdsa::signature::hazmat::PrehashVerifier as _;
use sha2::{Digest as _, Sha256};
use virtual_yubikey::{lock_readers, CardOptions, Firmware, VirtualCard, READER_0_PORT, READER_1_PORT};
use yubikey::piv::{self, AlgorithmId, SlotId};
use yubikey::{MgmKey, PinPolicy, TouchPolicy, YubiKey};

const DEFAULT_PIN: &[u8] = b"123456";
/// PIV data object holding the slot 9c certificate.
const CERT_9C_OBJECT: u32 = 0x5F_C1_0A;

/// Open the card in `reader` with the `yubikey` crate (by reader name: with two cards
/// inserted, `YubiKey::open()` refuses to choose).
fn open(reader: &str) -> YubiKey {
    let mut ctx = yubikey::reader::Context::open().expect("PC/SC context (is pcscd running?)");
    let found = ctx
        .iter()
        .expect("list readers")
        .find(|r| r.name() == reader)
        .unwrap_or_else(|| panic!("pcscd has no reader {reader}"));
    found.open().expect("yubikey crate opens the virtual card")
}

/// Generate a P-256 key in slot 9c after authenticating with the default management key.
fn generate_9c(yk: &mut YubiKey) -> p256::ecdsa::VerifyingKey {
    generate_p256(yk, SlotId::Signature)
}

/// Generate a P-256 key in `slot` after authenticating with the default management key.
fn generate_p256(yk: &mut YubiKey, slot: SlotId) -> p256::ecdsa::VerifyingKey {
    yk.authenticate(MgmKey::default()).expect("default management key");
    let spki = piv::generate(yk, slot, AlgorithmId::EccP256, PinPolicy::Default, TouchPolicy::Never)
        .expect("generate a P-256 key");
    p256::ecdsa::VerifyingKey::from_sec1_bytes(spki.subject_public_key.raw_bytes())
        .expect("generated key is a P-256 point")
}

fn sign_9c(yk: &mut YubiKey, digest: &[u8; 32]) -> yubikey::Result<p256::ecdsa::Signature> {
    let der = piv::sign_data(yk, digest, AlgorithmId::EccP256, SlotId::Signature)?;
    Ok(p256::ecdsa::Signature::from_der(&der).expect("card returns a DER ECDSA signature"))
}

/// Insert a fresh card in reader 0 (holding the reader lock), open it with the `yubikey`
/// crate, run `test`, then disconnect and remove the card.
fn with_card_in_reader_0(serial: Option<u32>, test: impl FnOnce(&VirtualCard, &mut YubiKey)) {
    let _lock = lock_readers();
    let card = match serial {
        Some(serial) => VirtualCard::insert_with_serial(READER_0_PORT, serial),
        None => VirtualCard::insert(READER_0_PORT),
    }
    .unwrap();
    let mut yk = open(card.reader_name());
    test(&card, &mut yk);
    drop(yk);
    card.remove().unwrap();
}

#[test]
fn opens_in_reader_0_as_a_yubikey_5_with_the_chosen_serial() {
    with_card_in_reader_0(Some(12_345_678), |card, yk| {
        assert_eq!(card.reader_name(), "Virtual PCD 00 00");
        assert_eq!(card.serial(), 12_345_678);
        assert_eq!(u32::from(yk.serial()), 12_345_678);
        assert_eq!(yk.version().major, 5);
        assert_eq!(yk.name(), "Virtual PCD 00 00");
        // A factory-fresh card lists no keys (and no stray Key History "certificate").
        assert!(yk.piv_keys().expect("piv_keys on a fresh card").is_empty());
    });
}

#[test]
fn default_pin_verifies_and_a_wrong_pin_reports_tries_left() {
    with_card_in_reader_0(None, |_, yk| {
        assert_eq!(yk.get_pin_retries().unwrap(), 3);
        match yk.verify_pin(b"654321") {
            Err(yubikey::Error::WrongPin { tries }) => assert_eq!(tries, 2),
            other => panic!("wrong PIN must report WrongPin {{ tries: 2 }}, got {other:?}"),
        }
        assert_eq!(yk.get_pin_retries().unwrap(), 2);
        yk.verify_pin(DEFAULT_PIN).expect("factory PIN 123456");
        assert_eq!(yk.get_pin_retries().unwrap(), 3, "a correct PIN resets the counter");
    });
}

#[test]
fn management_key_authenticates_and_a_9c_signature_verifies() {
    with_card_in_reader_0(None, |_, yk| {
        let wrong = MgmKey::new([0x42; 24]).unwrap();
        assert!(yk.authenticate(wrong).is_err(), "a wrong management key must be refused");
        let public = generate_9c(yk);

        let digest: [u8; 32] = Sha256::digest(b"audit record 1").into();
        yk.verify_pin(DEFAULT_PIN).unwrap();
        let signature = sign_9c(yk, &digest).expect("sign with 9c after verify_pin");
        public.verify_prehash(&digest, &signature).expect("signature verifies with p256");
        let other: [u8; 32] = Sha256::digest(b"audit record 2").into();
        assert!(public.verify_prehash(&other, &signature).is_err());

        // Slot 9c wants the PIN again for every signature.
        assert!(sign_9c(yk, &digest).is_err(), "9c signs only right after verify_pin");
    });
}

#[test]
fn slot_9a_signs_login_challenges_after_one_verify_pin() {
    with_card_in_reader_0(None, |_, yk| {
        let public = generate_p256(yk, SlotId::Authentication);
        yk.verify_pin(DEFAULT_PIN).unwrap();
        for challenge in [b"challenge 1", b"challenge 2"] {
            let digest: [u8; 32] = Sha256::digest(challenge).into();
            let der = piv::sign_data(yk, &digest, AlgorithmId::EccP256, SlotId::Authentication)
                .expect("9a signs while the PIN stays verified");
            let signature = p256::ecdsa::Signature::from_der(&der).unwrap();
            public.verify_prehash(&digest, &signature).unwrap();
        }
    });
}

#[test]
fn pin_puk_and_management_key_change_then_reset_restores_factory_defaults() {
    with_card_in_reader_0(None, |_, yk| {
        yk.change_pin(DEFAULT_PIN, b"24680135").expect("change PIN");
        assert!(yk.verify_pin(DEFAULT_PIN).is_err(), "the old PIN no longer works");
        yk.verify_pin(b"24680135").expect("the new PIN works");
        yk.change_puk(b"12345678", b"87654321").expect("change PUK from the factory PUK");

        let new_key = MgmKey::new([
            0x10, 0x32, 0x54, 0x76, 0x98, 0xBA, 0xDC, 0xFE, 0x01, 0x23, 0x45, 0x67, 0x89, 0xAB, 0xCD, 0xEF, 0x1F, 0x2E,
            0x3D, 0x4C, 0x5B, 0x6A, 0x79, 0x08,
        ])
        .unwrap();
        yk.authenticate(MgmKey::default()).unwrap();
        new_key.set_manual(yk, false).expect("set a new management key");
        assert!(yk.authenticate(MgmKey::default()).is_err());
        yk.authenticate(new_key).expect("the new management key works");

        // Reset needs the PIN blocked. (A YubiKey also wants the PUK blocked; this card
        // does not, and block_puk() loops forever against it.)
        assert!(yk.reset_device().is_err(), "no reset while the PIN works");
        for _ in 0..3 {
            assert!(yk.verify_pin(b"00000000").is_err());
        }
        assert_eq!(yk.get_pin_retries().unwrap(), 0, "PIN blocked");
        yk.reset_device().expect("reset with the PIN blocked");
        yk.verify_pin(DEFAULT_PIN).expect("factory PIN after reset");
        yk.authenticate(MgmKey::default()).expect("factory management key after reset");
    });
}

/// GET METADATA for the management key (9B), sent on a PC/SC connection of its own
/// (shared mode; left as it is afterwards): response body and status word.
fn management_metadata(reader: &str) -> (Vec<u8>, [u8; 2]) {
    let ctx = pcsc::Context::establish(pcsc::Scope::User).expect("PC/SC context");
    let name = std::ffi::CString::new(reader).expect("reader name");
    let card = ctx.connect(&name, pcsc::ShareMode::Shared, pcsc::Protocols::ANY).expect("connect");
    let mut buf = [0u8; 258];
    let r = card.transmit(&[0x00, 0xF7, 0x00, 0x9B, 0x00], &mut buf).expect("transmit").to_vec();
    card.disconnect(pcsc::Disposition::LeaveCard).map_err(|(_, e)| e).expect("disconnect");
    let (body, sw) = r.split_at(r.len() - 2);
    (body.to_vec(), [sw[0], sw[1]])
}

#[test]
fn a_5_7_card_refuses_the_3des_default_key_and_reports_aes_192_metadata() {
    let _lock = lock_readers();
    let card = VirtualCard::insert_with(READER_0_PORT, CardOptions { firmware: Firmware::V5_7, ..Default::default() })
        .unwrap();
    let mut yk = open(card.reader_name());
    assert_eq!((yk.version().major, yk.version().minor), (5, 7));
    // What 3DES-only tools (this crate, yubikey-agent, cosign) meet on a YubiKey 5.7.
    assert!(yk.authenticate(MgmKey::default()).is_err(), "3DES is not the 5.7 factory algorithm");
    // GET METADATA: algorithm AES-192 (0A), policy, factory value (05 01 01).
    let (body, sw) = management_metadata(card.reader_name());
    assert_eq!(sw, [0x90, 0x00]);
    assert_eq!(body, [0x01, 0x01, 0x0A, 0x02, 0x02, 0x00, 0x01, 0x05, 0x01, 0x01]);
    drop(yk);
    card.remove().unwrap();

    // A 5.4 card: 3DES, factory value.
    let card = VirtualCard::insert(READER_0_PORT).unwrap();
    let (body, _) = management_metadata(card.reader_name());
    assert_eq!(body[..3], [0x01, 0x01, 0x03]);
    card.remove().unwrap();
}

#[test]
fn apdus_are_not_held_up_by_delayed_acks() {
    // vpcd writes each APDU in two segments; without TCP_QUICKACK every APDU waited
    // ~50 ms for a delayed ACK (measured: 51 ms, against 0.7 ms with it). 20 ms on
    // average leaves a wide margin for a loaded machine.
    with_card_in_reader_0(None, |_, yk| {
        let started = std::time::Instant::now();
        for _ in 0..50 {
            yk.get_pin_retries().unwrap(); // SELECT + VERIFY: 2 APDUs
        }
        let per_apdu = started.elapsed() / 100;
        assert!(
            per_apdu < std::time::Duration::from_millis(20),
            "{per_apdu:?} per APDU: is TCP_QUICKACK still set before each poll?"
        );
    });
}

#[test]
fn objects_larger_than_one_apdu_round_trip() {
    // 1500 bytes: PUT DATA needs command chaining, GET DATA needs GET RESPONSE, as a
    // certificate write/read does.
    let object: Vec<u8> = (0..1500u32).map(|i| (i * 7 + 3) as u8).collect();
    with_card_in_reader_0(None, |_, yk| {
        let mut data = object.clone();
        assert!(yk.save_object(CERT_9C_OBJECT, &mut data).is_err(), "PUT DATA needs the management key");
        yk.authenticate(MgmKey::default()).unwrap();
        yk.save_object(CERT_9C_OBJECT, &mut data).expect("chained PUT DATA");
        let read = yk.fetch_object(CERT_9C_OBJECT).expect("GET DATA with GET RESPONSE");
        assert_eq!(&read[..], &object[..]);
    });
}

#[test]
fn pin_and_management_login_end_with_the_connection() {
    let _lock = lock_readers();
    let card = VirtualCard::insert(READER_0_PORT).unwrap();
    let mut yk = open(card.reader_name());
    generate_9c(&mut yk); // leaves the management key authenticated
    yk.verify_pin(DEFAULT_PIN).unwrap(); // and the PIN verified
    drop(yk); // disconnects with a card reset

    let mut yk = open(card.reader_name());
    let digest: [u8; 32] = Sha256::digest(b"x").into();
    assert!(sign_9c(&mut yk, &digest).is_err(), "PIN must not survive a reset");
    let generated =
        piv::generate(&mut yk, SlotId::Signature, AlgorithmId::EccP256, PinPolicy::Default, TouchPolicy::Never);
    assert!(generated.is_err(), "management login must not survive a reset");
    drop(yk);
    card.remove().unwrap();
}

#[test]
fn two_cards_have_distinct_serials_and_distinct_keys() {
    let _lock = lock_readers();
    let card0 = VirtualCard::insert(READER_0_PORT).unwrap();
    let card1 = VirtualCard::insert(READER_1_PORT).unwrap();
    assert_eq!(card1.reader_name(), "Virtual PCD 00 01");
    assert_ne!(card0.serial(), card1.serial());

    let mut yk0 = open(card0.reader_name());
    let mut yk1 = open(card1.reader_name());
    assert_eq!(u32::from(yk0.serial()), card0.serial());
    assert_eq!(u32::from(yk1.serial()), card1.serial());
    // Each card has its own RNG: the same operations must not give the same key.
    assert_ne!(generate_9c(&mut yk0), generate_9c(&mut yk1));
    drop((yk0, yk1));
    card0.remove().unwrap();
    card1.remove().unwrap();
}

#[test]
fn removing_a_card_makes_pcscd_report_the_reader_empty() {
    let _lock = lock_readers();
    let card = VirtualCard::insert(READER_1_PORT).unwrap();
    let reader = card.reader_name();
    assert!(reader_has_card(reader));
    assert!(
        matches!(VirtualCard::insert(READER_1_PORT), Err(virtual_yubikey::Error::ReaderBusy(_))),
        "a second card in an occupied reader is refused"
    );
    card.remove().unwrap();
    assert!(!reader_has_card(reader), "remove() returns once pcscd sees the reader empty");

    // Drop removes as well, and the reader takes a new card afterwards.
    let card = VirtualCard::insert(READER_1_PORT).unwrap();
    drop(card);
    assert!(!reader_has_card(reader), "drop waits for pcscd to see the reader empty");
}

#[test]
fn unknown_port_is_an_error_not_a_connection() {
    assert!(matches!(VirtualCard::insert(35965), Err(virtual_yubikey::Error::UnknownPort(35965))));
}
