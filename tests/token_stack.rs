//! Token layer, enrolment and agent login on the real stack:
//! `yubikey` crate → pcsc → pcscd → vpcd → virtual PIV card. Needs `scripts/pcscd.sh start`.
//! Every test holds the cross-process reader lock (`lock_readers`) while it uses the readers.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use p256::ecdsa::signature::hazmat::PrehashVerifier;
use p256::ecdsa::{Signature, VerifyingKey};
use resetdesk::ca::{CertError, OrgCa, CA_VALIDITY};
use resetdesk::config::{Config, Mode};
use resetdesk::directory::embedded::EmbeddedDirectory;
use resetdesk::directory::Directory;
use resetdesk::login::{login, AgentSession, LoginError};
use resetdesk::secret::Secret;
use resetdesk::session::{LockDecision, LockReason, SessionEvent};
use resetdesk::tier::AgentTier;
use resetdesk::token::card::{PivCard, Slot};
use resetdesk::token::enrol::{enrol, EnrolError, EnrolReport, EnrolRequest};
use resetdesk::token::management::{ManagementAlgorithm, ManagementKey, ManagementKeyInfo};
use resetdesk::token::registry::TokenRegistry;
use resetdesk::token::watch::{CardEvent, CardWatcher};
use resetdesk::token::{RecordSigner, TokenError};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use virtual_yubikey::{lock_readers, CardOptions, Firmware, VirtualCard, READER_0_PORT, READER_1_PORT};

const CA_PASS: &str = "test CA passphrase";
/// PUK every test card gets at enrolment.
const PUK: &str = "87654321";

/// A desk: data directory with the demo organisation and an organisation CA.
struct Desk {
    _dir: tempfile::TempDir,
    config: Config,
    ca: OrgCa,
    directory: EmbeddedDirectory,
}

fn desk() -> Desk {
    let dir = tempfile::tempdir().unwrap();
    let config = Config { data_dir: dir.path().to_owned(), ..Config::default() };
    let mut directory = EmbeddedDirectory::open(dir.path(), &config).unwrap();
    resetdesk::demo::init(&mut directory, OffsetDateTime::now_utc()).unwrap();
    let (ca, _) =
        OrgCa::init(dir.path(), &config.organisation, &Secret::from(CA_PASS), OffsetDateTime::now_utc()).unwrap();
    Desk { _dir: dir, config, ca, directory }
}

impl Desk {
    fn enrol_with(
        &self,
        ca: &OrgCa,
        card: &VirtualCard,
        username: &str,
        pin: &str,
        check_directory: bool,
    ) -> EnrolReport {
        let mut piv = PivCard::open_reader(card.reader_name()).unwrap();
        let mut registry = TokenRegistry::open(&self.config.data_dir).unwrap();
        let req = EnrolRequest::factory_card(username, Secret::from(pin), Secret::from(PUK));
        let dir: &dyn resetdesk::directory::Directory = &self.directory;
        let directory = check_directory.then_some((dir, &self.config.agents));
        enrol(&mut piv, ca, &mut registry, directory, &[], &req, OffsetDateTime::now_utc()).unwrap()
    }

    /// Enrol again a card that is off factory credentials (PIN `current_pin`, PUK [`PUK`]).
    fn re_enrol(&self, card: &VirtualCard, username: &str, current_pin: &str, new_pin: &str) -> EnrolReport {
        let mut piv = PivCard::open_reader(card.reader_name()).unwrap();
        let mut registry = TokenRegistry::open(&self.config.data_dir).unwrap();
        let req = EnrolRequest {
            current_pin: Secret::from(current_pin),
            current_puk: Secret::from(PUK),
            ..EnrolRequest::factory_card(username, Secret::from(new_pin), Secret::from(PUK))
        };
        enrol(&mut piv, &self.ca, &mut registry, None, &[], &req, OffsetDateTime::now_utc()).unwrap()
    }

    fn enrol(&self, card: &VirtualCard, username: &str, pin: &str) -> EnrolReport {
        self.enrol_with(&self.ca, card, username, pin, true)
    }

    fn login(&self, card: &VirtualCard, pin: &str) -> Result<AgentSession, LoginError> {
        login(&self.config, &self.directory, card.reader_name(), Secret::from(pin), OffsetDateTime::now_utc())
    }

    fn login_at(&self, card: &VirtualCard, pin: &str, now: OffsetDateTime) -> Result<AgentSession, LoginError> {
        login(&self.config, &self.directory, card.reader_name(), Secret::from(pin), now)
    }

    /// The 9c public key of `key_id` as the registry (the audit verifier's source) has it.
    fn public_key(&self, key_id: &[u8; 32]) -> (String, VerifyingKey) {
        let reg = TokenRegistry::open(&self.config.data_dir).unwrap();
        let rec = reg.by_key_id(key_id).unwrap().expect("key id is in the registry");
        (rec.username.clone(), rec.public_key().unwrap())
    }
}

/// Take the readers, make a desk, and enrol a fresh card in reader 0 for `username`.
/// Bind the result as `(_lock, desk, card)`: the card leaves before the lock is released.
fn enrolled_card(username: &str, pin: &str) -> (virtual_yubikey::ReaderLock, Desk, VirtualCard) {
    let lock = lock_readers();
    let desk = desk();
    let card = VirtualCard::insert(READER_0_PORT).unwrap();
    desk.enrol(&card, username, pin);
    (lock, desk, card)
}

fn verify(key: &VerifyingKey, digest: &[u8; 32], der: &[u8]) -> bool {
    Signature::from_der(der).map(|s| key.verify_prehash(digest, &s).is_ok()).unwrap_or(false)
}

#[test]
fn enrolled_agent_logs_in_and_every_9c_signature_verifies() {
    let _lock = lock_readers();
    let desk = desk();
    let card = VirtualCard::insert(READER_0_PORT).unwrap();
    let report = desk.enrol(&card, "alice", "246810");
    assert!(report.is_virtual && !report.attested, "{report:?}");

    let mut session = desk.login(&card, "246810").unwrap();
    let id = session.identity().clone();
    assert_eq!((id.username.as_str(), id.tier, id.is_virtual), ("alice", AgentTier::Junior, true));
    assert_eq!(id.display_name, "Alice Schmidt");
    assert_eq!(id.serial, card.serial());
    assert_eq!(id.signing_key_id, report.key_id_9c);

    let signer = session.signer().unwrap();
    let key_id = signer.key_id();
    let (owner, key) = desk.public_key(&key_id);
    assert_eq!(owner, "alice");
    for i in 0..3u8 {
        let digest: [u8; 32] = Sha256::digest([i; 10]).into();
        let sig = session.sign_digest(&digest, OffsetDateTime::now_utc()).unwrap();
        assert!(verify(&key, &digest, &sig), "signature {i} verifies with the registered key");
        let other: [u8; 32] = Sha256::digest(b"something else").into();
        assert!(!verify(&key, &other, &sig));
    }
    drop(session);
    card.remove().unwrap();
}

#[test]
fn enrolment_leaves_no_factory_credentials_and_the_old_pin_fails() {
    let _lock = lock_readers();
    let desk = desk();
    let card = VirtualCard::insert(READER_0_PORT).unwrap();
    // Production-style enrolment refuses a device that cannot attest, before changing anything.
    {
        let mut piv = PivCard::open_reader(card.reader_name()).unwrap();
        let mut registry = TokenRegistry::open(&desk.config.data_dir).unwrap();
        let req = EnrolRequest {
            allow_unattested: false,
            ..EnrolRequest::factory_card("bob", Secret::from("13572468"), Secret::from(PUK))
        };
        let e = enrol(&mut piv, &desk.ca, &mut registry, None, &[], &req, OffsetDateTime::now_utc()).unwrap_err();
        assert!(matches!(e, EnrolError::Unattested { .. }), "{e}");
        assert!(piv.has_default_management_key().unwrap(), "card untouched");
        assert!(piv.certificate(Slot::Signature).unwrap().is_none());
        assert!(registry.for_user("bob").unwrap().is_empty());
    }
    desk.enrol(&card, "bob", "13572468");
    let mut piv = PivCard::open_reader(card.reader_name()).unwrap();
    assert!(!piv.has_default_management_key().unwrap(), "management key was replaced");
    assert!(matches!(piv.verify_pin(&Secret::from("123456")), Err(TokenError::WrongPin { tries_left: 2 })));
    piv.verify_pin(&Secret::from("13572468")).unwrap();
    drop(piv);
    // Re-enrolment of the same card with its current PIN (the protected management key
    // lets it in) revokes the first keys.
    let registry = TokenRegistry::open(&desk.config.data_dir).unwrap();
    let first = registry.for_user("bob").unwrap();
    desk.re_enrol(&card, "bob", "13572468", "24681357");
    for old in first {
        assert!(!registry.by_key_id(&old.key_id).unwrap().unwrap().is_active());
    }
    assert!(desk.login(&card, "24681357").is_ok());
    card.remove().unwrap();
}

/// Enrol a factory-fresh card of `firmware` (factory management key `factory`), then log
/// in and sign with it; the factory key of either algorithm no longer works afterwards.
fn enrol_log_in_and_sign(firmware: Firmware, factory: ManagementAlgorithm) {
    let _lock = lock_readers();
    let desk = desk();
    let card = VirtualCard::insert_with(READER_0_PORT, CardOptions { firmware, ..CardOptions::default() }).unwrap();
    {
        let mut piv = PivCard::open_reader(card.reader_name()).unwrap();
        assert_eq!(piv.management_key().unwrap(), ManagementKeyInfo { algorithm: factory, is_default: Some(true) });
        // What production's "no factory management key" check relies on.
        assert!(piv.has_default_management_key().unwrap());
    }
    let report = desk.enrol(&card, "alice", "246810");
    // Both firmware versions have AES: the new random key is AES-192.
    assert_eq!(report.management_key, ManagementAlgorithm::Aes192);

    let mut session = desk.login(&card, "246810").unwrap();
    assert_eq!(session.identity().signing_key_id, report.key_id_9c);
    let (_, key) = desk.public_key(&session.signer().unwrap().key_id());
    let digest: [u8; 32] = Sha256::digest(b"record").into();
    let sig = session.sign_digest(&digest, OffsetDateTime::now_utc()).unwrap();
    assert!(verify(&key, &digest, &sig));
    drop(session);

    let mut piv = PivCard::open_reader(card.reader_name()).unwrap();
    let info = piv.management_key().unwrap();
    assert_eq!(info, ManagementKeyInfo { algorithm: ManagementAlgorithm::Aes192, is_default: Some(false) });
    assert!(!piv.has_default_management_key().unwrap());
    for algorithm in [ManagementAlgorithm::TripleDes, ManagementAlgorithm::Aes192] {
        let factory = ManagementKey::factory(algorithm).unwrap();
        assert!(!piv.try_management_key(&factory).unwrap(), "the factory {algorithm} key is refused");
    }
    // The stored random key lets a re-enrolment in.
    drop(piv);
    let again = desk.re_enrol(&card, "alice", "246810", "135792");
    assert_ne!(again.key_id_9c, report.key_id_9c);
    assert!(desk.login(&card, "135792").is_ok());
    card.remove().unwrap();
}

#[test]
fn a_yubikey_5_7_with_its_aes_192_factory_management_key_enrols_logs_in_and_signs() {
    enrol_log_in_and_sign(Firmware::V5_7, ManagementAlgorithm::Aes192);
}

#[test]
fn a_yubikey_5_4_with_its_3des_factory_management_key_enrols_logs_in_and_signs() {
    enrol_log_in_and_sign(Firmware::V5_4, ManagementAlgorithm::TripleDes);
}

#[test]
fn a_card_with_the_3des_protected_key_of_an_earlier_enrolment_enrols_again() {
    let _lock = lock_readers();
    let desk = desk();
    let card = VirtualCard::insert(READER_0_PORT).unwrap();
    // What ResetDesk did before AES: `yubikey`'s random 3DES key, stored PIN-protected.
    {
        let mut ctx = yubikey::reader::Context::open().unwrap();
        let reader = ctx.iter().unwrap().find(|r| r.name() == card.reader_name()).unwrap();
        let mut yk = reader.open().unwrap();
        yk.verify_pin(b"123456").unwrap();
        yk.authenticate(yubikey::MgmKey::default()).unwrap();
        yubikey::MgmKey::generate().set_protected(&mut yk).unwrap();
    }
    let mut piv = PivCard::open_reader(card.reader_name()).unwrap();
    let info = piv.management_key().unwrap();
    assert_eq!(info, ManagementKeyInfo { algorithm: ManagementAlgorithm::TripleDes, is_default: Some(false) });
    drop(piv);
    let report = desk.enrol(&card, "alice", "246810");
    assert_eq!(report.management_key, ManagementAlgorithm::Aes192);
    assert!(desk.login(&card, "246810").is_ok());
    card.remove().unwrap();
}

#[test]
fn wrong_pin_reports_tries_left_and_three_wrong_pins_block() {
    let (_lock, desk, card) = enrolled_card("alice", "246810");
    for expected in [2u8, 1] {
        let e = desk.login(&card, "000000").unwrap_err();
        assert_eq!(e.tries_left(), Some(expected), "{e}");
        // Exactly one try used per attempt: nothing retried behind the agent's back.
        let mut piv = PivCard::open_reader(card.reader_name()).unwrap();
        assert_eq!(piv.pin_retries().unwrap(), expected);
    }
    // A malformed PIN costs nothing.
    assert!(matches!(desk.login(&card, "12"), Err(LoginError::Token(TokenError::PinFormat))));
    assert_eq!(PivCard::open_reader(card.reader_name()).unwrap().pin_retries().unwrap(), 1);
    assert!(matches!(desk.login(&card, "000000"), Err(LoginError::Token(TokenError::PinBlocked))));
    // Blocked stays blocked, even with the right PIN.
    assert!(matches!(desk.login(&card, "246810"), Err(LoginError::Token(TokenError::PinBlocked))));
    card.remove().unwrap();
}

#[test]
fn certificate_from_another_ca_is_refused() {
    let _lock = lock_readers();
    let desk = desk();
    // Same organisation name, different key: only the signature tells them apart.
    let rogue = OrgCa::generate(&desk.config.organisation, OffsetDateTime::now_utc(), CA_VALIDITY).unwrap();
    let card = VirtualCard::insert(READER_0_PORT).unwrap();
    desk.enrol_with(&rogue, &card, "carol", "246810", true);
    match desk.login(&card, "246810") {
        Err(LoginError::Certificate { slot: "9a", source: CertError::UnknownCa { .. } }) => {}
        other => panic!("expected UnknownCa, got {other:?}"),
    }
    card.remove().unwrap();
}

#[test]
fn expired_certificate_is_refused() {
    let (_lock, desk, card) = enrolled_card("dave", "246810");
    let later = OffsetDateTime::now_utc() + time::Duration::days(3 * 365);
    match desk.login_at(&card, "246810", later) {
        Err(LoginError::Certificate { source: CertError::Expired { .. }, .. }) => {}
        other => panic!("expected Expired, got {other:?}"),
    }
    card.remove().unwrap();
}

#[test]
fn revoked_key_and_non_agent_are_refused_and_production_refuses_virtual_tokens() {
    let (_lock, mut desk, card) = enrolled_card("alice", "246810");
    let reg = TokenRegistry::open(&desk.config.data_dir).unwrap();
    reg.revoke("alice", Some(card.serial()), "key reported lost", OffsetDateTime::now_utc()).unwrap();
    match desk.login(&card, "246810") {
        Err(LoginError::Revoked { username, reason }) => {
            assert_eq!((username.as_str(), reason.as_str()), ("alice", "key reported lost"))
        }
        other => panic!("expected Revoked, got {other:?}"),
    }

    // A staff member (not in an agent group) enrolled without the directory check.
    let staff = desk
        .directory
        .search("", 100, &desk.config.group_rules())
        .unwrap()
        .into_iter()
        .find(|a| a.agent_tier.is_none())
        .expect("demo has staff");
    desk.re_enrol(&card, &staff.username, "246810", "135790");
    assert!(matches!(desk.login(&card, "135790"), Err(LoginError::NotAnAgent(u)) if u == staff.username));

    desk.config.mode = Mode::Production;
    assert!(matches!(desk.login(&card, "000000"), Err(LoginError::VirtualRefused)));
    let mut piv = PivCard::open_reader(card.reader_name()).unwrap();
    assert_eq!(piv.pin_retries().unwrap(), 3, "the PIN was never sent to a refused virtual token");
    drop(piv);
    card.remove().unwrap();
}

#[test]
fn removing_the_key_locks_the_session_within_a_second() {
    let (_lock, desk, card) = enrolled_card("bob", "246810");
    let mut session = desk.login(&card, "246810").unwrap();
    let reader = card.reader_name().to_owned();

    let watcher = CardWatcher::new().unwrap();
    assert!(watcher.present().contains(&reader));
    let cancel = watcher.canceller();
    let (tx, rx) = mpsc::channel();
    let thread = std::thread::spawn(move || watcher.run(|e| drop(tx.send((e, Instant::now())))));

    let removed_at = Instant::now();
    card.remove().unwrap();
    let (event, seen_at) = rx.recv_timeout(Duration::from_secs(1)).expect("removal event within 1 s");
    assert_eq!(event, CardEvent::Removed { reader: reader.clone() });
    let decision = session.handle(&SessionEvent::CardRemoved { reader, at: OffsetDateTime::now_utc() });
    assert_eq!(decision, LockDecision::Lock(LockReason::KeyRemoved));
    println!("removal → event in {:?}", seen_at - removed_at);
    assert!(matches!(session.signer(), Err(LoginError::Locked(LockReason::KeyRemoved))));
    assert!(matches!(
        session.sign_digest(&[0; 32], OffsetDateTime::now_utc()),
        Err(LoginError::Locked(LockReason::KeyRemoved))
    ));

    cancel.cancel();
    thread.join().unwrap().unwrap();
}

#[test]
fn signing_after_removal_is_a_typed_error_and_locks_the_session() {
    let (_lock, desk, card) = enrolled_card("carol", "246810");
    let mut session = desk.login(&card, "246810").unwrap();
    card.remove().unwrap();
    // The shell has not forwarded the removal yet: the card IO itself must fail cleanly.
    match session.sign_digest(&[1; 32], OffsetDateTime::now_utc()) {
        Err(LoginError::Token(TokenError::Removed)) => {}
        other => panic!("expected Removed, got {other:?}"),
    }
    assert_eq!(session.locked(), Some(LockReason::TokenLost));
}

#[test]
fn second_agent_in_the_second_reader_cosigns() {
    let _lock = lock_readers();
    let desk = desk();
    let card_a = VirtualCard::insert_with_serial(READER_0_PORT, 11_000_001).unwrap();
    let card_b = VirtualCard::insert_with_serial(READER_1_PORT, 11_000_002).unwrap();
    desk.enrol(&card_a, "bob", "246810");
    desk.enrol(&card_b, "carol", "135790");
    let mut bob = desk.login(&card_a, "246810").unwrap();
    let mut carol = desk.login(&card_b, "135790").unwrap();
    assert_eq!((bob.tier(), carol.tier()), (AgentTier::Senior, AgentTier::Admin));

    let digest: [u8; 32] = Sha256::digest(b"reset of dadmin, record 42").into();
    let sig_b = bob.sign_digest(&digest, OffsetDateTime::now_utc()).unwrap();
    let sig_c = carol.sign_digest(&digest, OffsetDateTime::now_utc()).unwrap();
    let kid_b = bob.signer().unwrap().key_id();
    let kid_c = carol.signer().unwrap().key_id();
    assert_ne!(kid_b, kid_c);
    let (who_b, key_b) = desk.public_key(&kid_b);
    let (who_c, key_c) = desk.public_key(&kid_c);
    assert_eq!((who_b.as_str(), who_c.as_str()), ("bob", "carol"));
    assert!(verify(&key_b, &digest, &sig_b) && verify(&key_c, &digest, &sig_c));
    assert!(!verify(&key_b, &digest, &sig_c), "carol's signature is not bob's");

    // Removing one key locks only that agent's session.
    let reader_b = card_b.reader_name().to_owned();
    card_b.remove().unwrap();
    let ev = SessionEvent::CardRemoved { reader: reader_b, at: OffsetDateTime::now_utc() };
    assert_eq!(carol.handle(&ev), LockDecision::Lock(LockReason::KeyRemoved));
    assert_eq!(bob.handle(&ev), LockDecision::Stay);
    assert!(bob.sign_digest(&digest, OffsetDateTime::now_utc()).is_ok());
    drop((bob, carol));
    card_a.remove().unwrap();
}

#[test]
fn signatures_verify_with_the_openssl_cli() {
    let _lock = lock_readers();
    if std::process::Command::new("openssl").arg("version").output().is_err() {
        eprintln!("openssl not installed: skipped");
        return;
    }
    let desk = desk();
    let card = VirtualCard::insert(READER_0_PORT).unwrap();
    desk.enrol(&card, "dave", "246810");
    let mut session = desk.login(&card, "246810").unwrap();
    let work = tempfile::tempdir().unwrap();
    let data = b"audit record #1: reset of jdoe by dave";
    let digest: [u8; 32] = Sha256::digest(data).into();
    let sig = session.sign_digest(&digest, OffsetDateTime::now_utc()).unwrap();
    let kid = session.signer().unwrap().key_id();
    let reg = TokenRegistry::open(&desk.config.data_dir).unwrap();
    let cert_der = reg.by_key_id(&kid).unwrap().unwrap().cert_der;
    std::fs::write(work.path().join("cert.der"), &cert_der).unwrap();
    std::fs::write(work.path().join("data"), data).unwrap();
    std::fs::write(work.path().join("sig.der"), &sig).unwrap();
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl").args(args).current_dir(work.path()).output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
        )
    };
    assert!(run(&["x509", "-inform", "DER", "-in", "cert.der", "-pubkey", "-noout", "-out", "pub.pem"]).0);
    let (ok, out) = run(&["dgst", "-sha256", "-verify", "pub.pem", "-signature", "sig.der", "data"]);
    assert!(ok && out.contains("Verified OK"), "{out}");
    std::fs::write(work.path().join("data"), b"audit record #1: reset of jdoe by mallory").unwrap();
    assert!(!run(&["dgst", "-sha256", "-verify", "pub.pem", "-signature", "sig.der", "data"]).0);
    drop(session);
    card.remove().unwrap();
}

#[test]
fn idle_time_locks_the_session_and_drops_the_signer() {
    let (_lock, desk, card) = enrolled_card("alice", "246810");
    let t0 = OffsetDateTime::now_utc();
    let mut session = desk.login_at(&card, "246810", t0).unwrap();
    let idle = time::Duration::seconds(i64::from(desk.config.agents.idle_lock_seconds));
    assert_eq!(session.idle_deadline(), Some(t0 + idle));
    // Signing is activity: it pushes the deadline.
    session.sign_digest(&[2; 32], t0 + idle / 2).unwrap();
    assert_eq!(session.handle(&SessionEvent::Tick { at: t0 + idle }), LockDecision::Stay);
    assert_eq!(session.handle(&SessionEvent::Tick { at: t0 + idle / 2 + idle }), LockDecision::Lock(LockReason::Idle));
    assert!(matches!(session.signer(), Err(LoginError::Locked(LockReason::Idle))));
    drop(session);
    card.remove().unwrap();
}

#[test]
fn card_reset_by_another_program_is_a_typed_error() {
    let (_lock, desk, card) = enrolled_card("bob", "246810");
    let mut session = desk.login(&card, "246810").unwrap();
    let ctx = pcsc::Context::establish(pcsc::Scope::User).unwrap();
    let reader = std::ffi::CString::new(card.reader_name()).unwrap();
    let other = ctx.connect(&reader, pcsc::ShareMode::Shared, pcsc::Protocols::ANY).unwrap();
    other.disconnect(pcsc::Disposition::ResetCard).map_err(|(_, e)| e).unwrap();
    match session.sign_digest(&[3; 32], OffsetDateTime::now_utc()) {
        Err(LoginError::Token(TokenError::Reset)) => {}
        other => panic!("expected Reset, got {other:?}"),
    }
    assert_eq!(session.locked(), Some(LockReason::TokenLost));
    // A fresh login works: nothing was left half-done on the card.
    drop(session);
    assert!(desk.login(&card, "246810").is_ok());
    card.remove().unwrap();
}

#[test]
fn production_refuses_a_card_back_on_the_factory_pin() {
    use resetdesk::ca::TrustAnchor;
    use resetdesk::login::{login_with_card, LoginContext, TokenPolicy};
    let (_lock, desk, card) = enrolled_card("carol", "246810");
    let mut piv = PivCard::open_reader(card.reader_name()).unwrap();
    piv.change_pin(&Secret::from("246810"), &Secret::from("123456")).unwrap();
    let anchor = TrustAnchor::load(&desk.config.ca_cert_path()).unwrap();
    let registry = TokenRegistry::open(&desk.config.data_dir).unwrap();
    // Production rules except the virtual-token refusal, which would stop earlier.
    let ctx = LoginContext {
        anchor: &anchor,
        registry: &registry,
        directory: &desk.directory,
        agents: &desk.config.agents,
        policy: TokenPolicy { refuse_virtual: false, allow_unattested: true, refuse_defaults: true },
    };
    match login_with_card(&ctx, piv, Secret::from("123456"), OffsetDateTime::now_utc()) {
        Err(LoginError::FactoryDefaults("PIN")) => {}
        other => panic!("expected FactoryDefaults, got {other:?}"),
    }
    let piv = PivCard::open_reader(card.reader_name()).unwrap();
    let demo = LoginContext { policy: TokenPolicy { refuse_defaults: false, ..ctx.policy }, ..ctx };
    assert!(login_with_card(&demo, piv, Secret::from("123456"), OffsetDateTime::now_utc()).is_ok());
    card.remove().unwrap();
}

#[test]
fn cards_are_found_by_reader_and_serial_and_insertion_is_an_event() {
    let _lock = lock_readers();
    let mut watcher = CardWatcher::new().unwrap();
    let card = VirtualCard::insert_with_serial(READER_1_PORT, 22_000_333).unwrap();
    // The insertion may already be past: next_events reports changes since the last call.
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut seen = Vec::new();
    while !seen.contains(&CardEvent::Inserted { reader: card.reader_name().into() }) && Instant::now() < deadline {
        seen.extend(watcher.next_events(Some(Duration::from_millis(500))).unwrap().unwrap_or_default());
    }
    assert!(seen.contains(&CardEvent::Inserted { reader: card.reader_name().into() }), "{seen:?}");

    let cards = resetdesk::token::card::list_cards().unwrap();
    let info = cards.iter().find(|c| c.serial == 22_000_333).expect("listed");
    assert_eq!((info.reader.as_str(), info.is_virtual), ("Virtual PCD 00 01", true));
    assert_eq!(PivCard::open_serial(22_000_333).unwrap().reader(), "Virtual PCD 00 01");
    assert!(matches!(PivCard::open_serial(1), Err(TokenError::UnknownSerial(1))));
    assert!(matches!(PivCard::open_reader("Virtual PCD 00 00"), Err(TokenError::NoCard)));
    assert!(matches!(PivCard::open_reader("No Such Reader 00 00"), Err(TokenError::UnknownReader(_))));
    card.remove().unwrap();
}

#[test]
fn a_cancelled_watcher_stops_whenever_the_cancel_arrives() {
    let _lock = lock_readers();
    // Cancel before any wait.
    let mut w = CardWatcher::new().unwrap();
    w.canceller().cancel();
    assert!(w.next_events(None).unwrap().is_none());
    // Cancel racing with the watcher thread (before, during or between its waits).
    for _ in 0..5 {
        let w = CardWatcher::new().unwrap();
        let cancel = w.canceller();
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::spawn(move || {
            let r = w.run(|_| {});
            let _ = tx.send(());
            r
        });
        cancel.cancel();
        rx.recv_timeout(Duration::from_secs(2)).expect("the watcher stops within 2 s of a cancel");
        thread.join().unwrap().unwrap();
    }
}
