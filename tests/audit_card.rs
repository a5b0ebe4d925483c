//! The audit trail on the real token stack: records signed (and co-signed) by slot 9c
//! of enrolled virtual PIV cards through `PivSigner` (`yubikey` → pcsc → pcscd → vpcd),
//! verified offline against the token registry and the organisation CA, and checked
//! by openssl after export. Needs `scripts/pcscd.sh start`; holds the reader lock.

mod audit_support;

use std::process::Command;

use resetdesk::audit::export::{export, ExportLine};
use resetdesk::audit::store::Store;
use resetdesk::audit::{verify_store, AuditLog, CollectorKeys, DirectoryOutcome, Event, EventType};
use resetdesk::ca::OrgCa;
use resetdesk::config::Config;
use resetdesk::directory::embedded::EmbeddedDirectory;
use resetdesk::login::login;
use resetdesk::secret::Secret;
use resetdesk::token::card::PivCard;
use resetdesk::token::enrol::{enrol, EnrolRequest};
use resetdesk::token::registry::TokenRegistry;
use time::OffsetDateTime;
use virtual_yubikey::{lock_readers, VirtualCard, READER_0_PORT, READER_1_PORT};

#[test]
fn card_signed_and_cosigned_records_verify_against_the_registry_and_openssl() {
    let _lock = lock_readers();
    let dir = tempfile::tempdir().unwrap();
    let config = Config { data_dir: dir.path().to_owned(), ..Config::default() };
    let mut directory = EmbeddedDirectory::open(dir.path(), &config).unwrap();
    resetdesk::demo::init(&mut directory, OffsetDateTime::now_utc()).unwrap();
    let (ca, _) =
        OrgCa::init(dir.path(), &config.organisation, &Secret::from("test CA passphrase"), OffsetDateTime::now_utc())
            .unwrap();
    let enrol_card = |card: &VirtualCard, user: &str, pin: &str| {
        let mut piv = PivCard::open_reader(card.reader_name()).unwrap();
        let mut reg = TokenRegistry::open(&config.data_dir).unwrap();
        let req = EnrolRequest::factory_card(user, Secret::from(pin), Secret::from("87654321"));
        let d: &dyn resetdesk::directory::Directory = &directory;
        enrol(&mut piv, &ca, &mut reg, Some((d, &config.agents)), &[], &req, OffsetDateTime::now_utc()).unwrap()
    };
    let alice_card = VirtualCard::insert(READER_0_PORT).unwrap();
    let bob_card = VirtualCard::insert(READER_1_PORT).unwrap();
    enrol_card(&alice_card, "alice", "246810");
    enrol_card(&bob_card, "bob", "13572468");

    let mut alice =
        login(&config, &directory, alice_card.reader_name(), Secret::from("246810"), OffsetDateTime::now_utc())
            .unwrap();
    let mut bob =
        login(&config, &directory, bob_card.reader_name(), Secret::from("13572468"), OffsetDateTime::now_utc())
            .unwrap();
    let mut log = AuditLog::open(&dir.path().join("audit.sqlite")).unwrap();
    let now = OffsetDateTime::now_utc;
    let who = serde_json::json!({"agent": "alice"});
    log.heartbeat(EventType::Login, &who, alice.signer().unwrap(), now()).unwrap();
    let facts = audit_support::reset_facts("alice", "jdoe");
    let intent = log
        .append_cosigned(&Event::reset_intent(&facts).unwrap(), alice.signer().unwrap(), bob.signer().unwrap(), now())
        .unwrap();
    log.append(
        &Event::reset_outcome(intent.intent_ref(), &DirectoryOutcome::Done, &facts).unwrap(),
        alice.signer().unwrap(),
        now(),
    )
    .unwrap();
    drop(log);
    drop((alice, bob));

    let loaded = resetdesk::token::audit_keys::load(dir.path(), None).unwrap();
    assert_eq!((loaded.certificates, loaded.refused.len()), (2, 0));
    let store = Store::open_read_only(&dir.path().join("audit.sqlite")).unwrap();
    let summary = verify_store(&store, &loaded.resolver, &[], &CollectorKeys::default(), &[]).unwrap();
    assert_eq!((summary.records, summary.cosigned), (3, 1));

    // The same through the CLI, and openssl on the card's signature.
    let o = Command::new(env!("CARGO_BIN_EXE_resetdesk"))
        .args(["audit", "verify", "--data-dir", dir.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = dir.path().join("export");
    export(&store, &loaded.resolver, &out).unwrap();
    let text = std::fs::read_to_string(out.join("records.jsonl")).unwrap();
    let line: ExportLine = serde_json::from_str(text.lines().nth(1).unwrap()).unwrap();
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    std::fs::write(out.join("rec.bin"), b64.decode(&line.record_b64).unwrap()).unwrap();
    for (sig, key) in [
        (&line.signature_b64, line.signer_public_key.as_deref().unwrap()),
        (line.cosignature_b64.as_ref().unwrap(), line.cosigner_public_key.as_deref().unwrap()),
    ] {
        std::fs::write(out.join("sig.der"), b64.decode(sig).unwrap()).unwrap();
        let o = Command::new("openssl")
            .current_dir(&out)
            .args(["dgst", "-sha256", "-verify", key, "-signature", "sig.der", "rec.bin"])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    }
    alice_card.remove().unwrap();
    bob_card.remove().unwrap();
}
