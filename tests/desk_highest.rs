//! A highest-tier reset at the desk: in-person ID inspection, TOTP, the manager's
//! approval through the outbox, the cooling-off wait, and a co-signature from a second
//! agent's card in the second reader — the agent's own card refused as co-signer, and
//! so are the account holder's and the manager's other accounts (by employee ID),
//! before their card signs. The intent record carries the co-signature, which
//! `resetdesk audit verify` (store and export) checks offline.
//! Needs `scripts/pcscd.sh start`; holds the reader lock.

mod cli_support;
mod desk_support;

use std::path::Path;

use desk_support::{site, totp_json, Site};
use resetdesk::audit::EventType;
use resetdesk::desk::approval::ApprovalInbox;
use resetdesk::desk::keys::CoSignerKeyError;
use resetdesk::desk::DeskError;
use resetdesk::desk::{Desk, ResetRun};
use resetdesk::directory::embedded::NewAccount;
use resetdesk::directory::{Directory, PasswordCheck};
use resetdesk::login::AgentSession;
use resetdesk::policy::AuthorityRefusal;
use resetdesk::secret::Secret;
use resetdesk::token::card::PivCard;
use resetdesk::token::signer::PivSigner;
use resetdesk::token::RecordSigner;
use resetdesk::workflow::{Decision, Phase, WorkflowError};
use time::{Duration, OffsetDateTime};
use virtual_yubikey::{lock_readers, VirtualCard, READER_0_PORT, READER_1_PORT};

const ID_INSPECTION: &str = r#"{"action":"id_inspection","inspection":{"document_type":"passport","issuing_authority":"Nigeria",
    "number_last4":"7Q2K","expiry":"2031-05-01","name_matches_record":true,"photo_matches_person":true,"security_features_checked":true,"template_and_format_ok":true,"no_tampering":true}}"#;

#[test]
fn a_highest_reset_needs_id_approval_cooling_off_and_a_second_agents_card() {
    let _lock = lock_readers();
    let site = site();
    let carol_card = VirtualCard::insert_with_serial(READER_0_PORT, 12_000_001).unwrap();
    let dave_card = VirtualCard::insert_with_serial(READER_1_PORT, 12_000_002).unwrap();
    let mut carol = site.agent(&carol_card, "carol", "246810");
    let mut dave = site.agent(&dave_card, "dave", "135791");
    let mut desk = site.desk();
    let t0 = OffsetDateTime::now_utc();
    let mut run = up_to_co_sign(&site, &mut desk, &mut carol, t0);

    // Carol cannot co-sign her own reset with her own card: refused, nothing changes.
    let carol_key = carol.signer().unwrap().key_id();
    let mut carol_again =
        PivSigner::new(PivCard::open_reader(carol_card.reader_name()).unwrap(), Secret::from("246810"), carol_key);
    let own = desk.co_sign(&mut run, &mut carol_again, carol.signer().unwrap(), t0);
    assert!(
        matches!(own, Err(DeskError::Workflow(WorkflowError::CoSignature(AuthorityRefusal::CoSignerIsAgent)))),
        "{own:?}"
    );
    assert!(run.status().missing.iter().any(|m| format!("{m:?}").contains("CoSignature")));

    // A signer whose card is not the one the key was enrolled on is refused.
    let mut elsewhere = Counting { inner: dave.signer().unwrap(), signatures: 0, serial: Some(12_000_999) };
    let moved = desk.co_sign(&mut run, &mut elsewhere, carol.signer().unwrap(), t0);
    assert!(matches!(moved, Err(DeskError::CoSigner(CoSignerKeyError::WrongCard { .. }))), "{moved:?}");
    assert_eq!(elsewhere.signatures, 0);

    // Dave's card in the second reader co-signs the digest of the verification so far.
    let digest = run.approval_digest();
    desk.co_sign(&mut run, dave.signer().unwrap(), carol.signer().unwrap(), t0).unwrap();
    assert!(run.status().missing.is_empty());

    // Cooling-off: the reset waits until the holder and manager could object.
    let reply = desk
        .apply_ui_json(&mut run, r#"{"action":"request_reset"}"#, carol.signer().unwrap(), t0 + Duration::minutes(5))
        .unwrap();
    assert!(matches!(reply.decisions.as_slice(), [Decision::Wait { .. }]), "{:?}", reply.decisions);
    site.assert_untouched("adm-okafor");
    let reply = desk
        .apply_ui_json(&mut run, r#"{"action":"request_reset"}"#, carol.signer().unwrap(), t0 + Duration::minutes(31))
        .unwrap();
    assert_eq!(run.phase(), Phase::Succeeded, "{:?}", reply.decisions);
    let password = run.take_handoff_password().unwrap();
    assert_eq!(site.check_password("adm-okafor", &password), PasswordCheck { valid: true, must_change: true });

    // The intent names the co-signer with the signature over the approval digest.
    let records = site.records();
    let intent = records.iter().find(|r| r.0 == EventType::ResetIntent).unwrap();
    assert_eq!(intent.1["co_signer"]["username"], "dave");
    assert_eq!(intent.1["co_signer"]["digest"], hex::encode(digest));

    // The header names dave's key; the co-signature is stored beside the record, and
    // the verifier checks it against dave's enrolled certificate: store and export.
    let dave_key = dave.signer().unwrap().key_id();
    let (header, _) = site.audit_records().into_iter().find(|(r, _)| r.event_type == EventType::ResetIntent).unwrap();
    assert_eq!(header.cosigner_key_id, Some(dave_key));
    let (ok, out) = site.verify_audit_cli();
    assert!(ok && out.contains("co-signed records: 1"), "{out}");
    let export = site.dir.path().join("export");
    let (ok, out) = resetdesk(&["audit", "export", "--data-dir", &site_dir(&site), "--out", export.to_str().unwrap()]);
    assert!(ok, "{out}");
    let (ok, out) = resetdesk(&["audit", "verify", "--export", export.to_str().unwrap()]);
    assert!(ok && out.contains("co-signed records: 1"), "{out}");

    // Removed or swapped (dave's signature over something else), the co-signature fails.
    let stored = cosignature_of(&site, header.seq).expect("a stored co-signature");
    set_cosignature(&site, header.seq, None);
    let (ok, out) = site.verify_audit_cli();
    assert!(!ok && out.contains(&format!("record {}", header.seq)) && out.contains("no co-signature"), "{out}");
    let other = dave.signer().unwrap().sign_digest(&[0x5a; 32]).unwrap();
    set_cosignature(&site, header.seq, Some(&other));
    let (ok, out) = site.verify_audit_cli();
    assert!(!ok && out.contains("co-signature does not verify"), "{out}");
    set_cosignature(&site, header.seq, Some(&stored));
    assert!(site.verify_audit_cli().0);
    for (tamper, why) in [(None, "no co-signature"), (Some(&other), "co-signature does not verify")] {
        let edited = site.dir.path().join(format!("export-{}", tamper.is_some()));
        copy_dir(&export, &edited);
        edit_export_cosignature(&edited, header.seq, tamper.map(|s| s.as_slice()));
        let (ok, out) = resetdesk(&["audit", "verify", "--export", edited.to_str().unwrap()]);
        assert!(!ok && out.contains(why), "{why}: {out}");
    }

    // The acting agent strips the co-signer: she cuts the log after the intent and signs
    // the intent again, without the co-signer in its header. Her signature is good, but
    // the facts still name the co-signer: the verifier refuses it.
    use resetdesk::audit::record::{entry_hash, signing_digest};
    let db = audit_db(&site);
    db.execute("DELETE FROM audit_records WHERE seq > ?1", [header.seq]).unwrap();
    let stripped = resetdesk::audit::Record { cosigner_key_id: None, ..header.clone() }.encode().unwrap();
    let signature = carol.signer().unwrap().sign_digest(&signing_digest(&stripped)).unwrap();
    db.execute(
        "UPDATE audit_records SET record = ?1, signature = ?2, cosignature = NULL, entry_hash = ?3 WHERE seq = ?4",
        rusqlite::params![stripped, signature, entry_hash(&stripped).to_vec(), header.seq],
    )
    .unwrap();
    let (ok, out) = site.verify_audit_cli();
    assert!(!ok && out.contains("facts name a co-signer but its header does not"), "{out}");
    drop((carol, dave));
    carol_card.remove().unwrap();
    dave_card.remove().unwrap();
}

/// Carol's reset of adm-okafor up to the co-signature: the ID inspection, TOTP and
/// the manager's approval through the outbox.
fn up_to_co_sign(site: &Site, desk: &mut Desk, carol: &mut AgentSession, t0: OffsetDateTime) -> ResetRun {
    let identity = carol.identity().clone();
    let (mut run, reply) =
        desk.start_reset(&identity, carol.signer().unwrap(), "adm-okafor", Default::default(), t0).unwrap();
    assert_eq!(run.status().effective_tier, resetdesk::tier::AccountTier::Highest);
    assert!(
        reply.decisions.iter().any(|d| matches!(d, Decision::Notify { .. })),
        "holder and manager are told of the request"
    );
    desk.apply_ui_json(&mut run, ID_INSPECTION, carol.signer().unwrap(), t0).unwrap();
    desk.apply_ui_json(&mut run, &totp_json("adm-okafor", t0), carol.signer().unwrap(), t0).unwrap();

    // The approval request goes to the manager's address on file, through the outbox.
    let reply =
        desk.apply_ui_json(&mut run, r#"{"action":"request_manager_approval"}"#, carol.signer().unwrap(), t0).unwrap();
    let Some(Decision::RequestManagerApproval { manager, address }) = reply.decisions.first().cloned() else {
        panic!("{:?}", reply.decisions)
    };
    assert_eq!((manager.as_str(), address.as_str()), ("jokafor", "jokafor@example.com"));
    let message = site.outbox().into_iter().find(|m| m.recipient == address && m.subject.contains("Approval needed"));
    let message = message.expect("the approval request in the outbox");
    let token = message.body.split("Approval code (valid 30 minutes, once): ").nth(1).unwrap();
    let token = token.split_whitespace().next().unwrap().to_owned();

    // Nothing arrives until the manager answers with the token; a wrong one is refused.
    assert!(desk.poll_manager_answer(&mut run, carol.signer().unwrap(), t0).unwrap().is_none());
    let mut inbox = ApprovalInbox::open(site.dir.path()).unwrap();
    assert!(inbox.answer(&Secret::from("0123456789abcdef0123456789abcdef"), true, t0).is_err());
    let answered = inbox.answer(&Secret::new(token), true, t0).unwrap();
    assert_eq!((answered.manager.as_str(), answered.address.as_str()), ("jokafor", "jokafor@example.com"));
    let reply = desk.poll_manager_answer(&mut run, carol.signer().unwrap(), t0).unwrap().expect("the manager's answer");
    assert!(reply.decisions.iter().any(|d| matches!(d, Decision::RequestCoSignature { .. })), "{:?}", reply.decisions);
    run
}

/// An admin agent `username` who is, by employee ID, the same person as `same_as`.
/// The embedded directory keeps employee IDs unique as stored, so the second account
/// spells it in lower case (employee IDs compare case-insensitively, as LDAP's
/// `employeeNumber` does).
fn add_admin_account_of(site: &Site, username: &str, same_as: &str) {
    let person = site.directory().entry(same_as).unwrap();
    let employee_id = person.employee_id.to_lowercase();
    assert_ne!(employee_id, person.employee_id, "the ID has letters");
    let account = NewAccount {
        username: username.into(),
        display_name: format!("{} (desk admin)", person.display_name),
        employee_id,
        department: "Service Desk".into(),
        location: person.location,
        manager: None,
        date_of_hire: person.date_of_hire,
        emails: vec![],
        phones: vec![],
        groups: vec!["staff".into(), "helpdesk-admin".into()],
        password: None,
        security_answers: vec![],
        totp_secret: None,
        flagged: false,
    };
    site.directory().create_account(&account, OffsetDateTime::now_utc()).unwrap();
}

/// A signer that counts the card's signatures (and, with `serial`, claims another card).
struct Counting<'a> {
    inner: &'a mut dyn RecordSigner,
    signatures: u32,
    serial: Option<u32>,
}

impl RecordSigner for Counting<'_> {
    fn key_id(&self) -> [u8; 32] {
        self.inner.key_id()
    }
    fn sign_digest(&mut self, digest: &[u8; 32]) -> Result<Vec<u8>, resetdesk::token::SignError> {
        self.signatures += 1;
        self.inner.sign_digest(digest)
    }
    fn card_serial(&self) -> Option<u32> {
        self.serial.or(self.inner.card_serial())
    }
}

/// Separation of duties compares people: another account of the account holder, or of
/// the holder's manager, is refused as co-signer although it is an admin agent with an
/// enrolled card, and its card never signs.
#[test]
fn the_holder_and_the_manager_cannot_co_sign_under_another_username() {
    let _lock = lock_readers();
    let site = site();
    add_admin_account_of(&site, "okafor-desk", "adm-okafor");
    add_admin_account_of(&site, "jokafor-desk", "jokafor");
    let carol_card = VirtualCard::insert_with_serial(READER_0_PORT, 12_000_011).unwrap();
    let mut carol = site.agent(&carol_card, "carol", "246810");
    let mut desk = site.desk();
    let t0 = OffsetDateTime::now_utc();
    let mut run = up_to_co_sign(&site, &mut desk, &mut carol, t0);

    for (serial, who, refusal) in [
        (12_000_012, "okafor-desk", AuthorityRefusal::CoSignerIsTarget),
        (12_000_013, "jokafor-desk", AuthorityRefusal::CoSignerIsManager),
    ] {
        let card = VirtualCard::insert_with_serial(READER_1_PORT, serial).unwrap();
        let mut other = site.agent(&card, who, "135791");
        let mut counting = Counting { inner: other.signer().unwrap(), signatures: 0, serial: None };
        let r = desk.co_sign(&mut run, &mut counting, carol.signer().unwrap(), OffsetDateTime::now_utc());
        assert!(matches!(&r, Err(DeskError::Workflow(WorkflowError::CoSignature(x))) if *x == refusal), "{who}: {r:?}");
        assert_eq!(counting.signatures, 0, "{who}'s card signed nothing");
        assert!(run.status().missing.iter().any(|m| format!("{m:?}").contains("CoSignature")));
        drop(other);
        card.remove().unwrap();
    }
    drop(carol);
    carol_card.remove().unwrap();
}

fn site_dir(site: &Site) -> String {
    site.dir.path().display().to_string()
}

/// Run `resetdesk ARGS`; (success, stdout + stderr).
fn resetdesk(args: &[&str]) -> (bool, String) {
    let (code, out, err) = cli_support::resetdesk(args, "");
    (code == 0, out + &err)
}

fn audit_db(site: &Site) -> rusqlite::Connection {
    rusqlite::Connection::open(site.dir.path().join("audit.sqlite")).unwrap()
}

fn cosignature_of(site: &Site, seq: u64) -> Option<Vec<u8>> {
    audit_db(site).query_row("SELECT cosignature FROM audit_records WHERE seq = ?1", [seq], |r| r.get(0)).unwrap()
}

fn set_cosignature(site: &Site, seq: u64, value: Option<&[u8]>) {
    let n = audit_db(site)
        .execute("UPDATE audit_records SET cosignature = ?1 WHERE seq = ?2", rusqlite::params![value, seq])
        .unwrap();
    assert_eq!(n, 1);
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Replace (or drop) the co-signature of record `seq` in an export's records.jsonl.
fn edit_export_cosignature(export: &Path, seq: u64, value: Option<&[u8]>) {
    use base64::Engine;
    let path = export.join("records.jsonl");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut edited = 0;
    let lines: Vec<String> = text
        .lines()
        .map(|line| {
            let mut v: serde_json::Value = serde_json::from_str(line).unwrap();
            if v["seq"] == seq {
                edited += 1;
                v["cosignature_b64"] = match value {
                    Some(b) => base64::engine::general_purpose::STANDARD.encode(b).into(),
                    None => serde_json::Value::Null,
                };
            }
            v.to_string()
        })
        .collect();
    assert_eq!(edited, 1);
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
}

#[test]
fn the_second_agent_co_signs_from_the_other_reader_never_from_the_agents_own() {
    let _lock = lock_readers();
    let site = site();
    let carol_card = VirtualCard::insert_with_serial(READER_0_PORT, 12_000_011).unwrap();
    let dave_card = VirtualCard::insert_with_serial(READER_1_PORT, 12_000_012).unwrap();
    let mut carol = site.agent(&carol_card, "carol", "246810");
    site.enrol(&dave_card, "dave", "135791");
    let mut desk = site.desk();
    let t0 = OffsetDateTime::now_utc();
    let mut run = up_to_co_sign(&site, &mut desk, &mut carol, t0);
    let (own_reader, other_reader) = (carol_card.reader_name(), dave_card.reader_name());

    // The agent's own reader is refused before any card is asked for a PIN.
    let own =
        desk.co_sign_in_reader(&mut run, own_reader, own_reader, Secret::from("246810"), carol.signer().unwrap(), t0);
    assert!(matches!(own, Err(DeskError::CoSignInOwnReader)), "{own:?}");
    // A wrong PIN in the other reader is the co-signer's failed login, not a co-signature.
    let wrong =
        desk.co_sign_in_reader(&mut run, own_reader, other_reader, Secret::from("000000"), carol.signer().unwrap(), t0);
    assert!(matches!(wrong, Err(DeskError::CoSignerLogin(_))), "{wrong:?}");
    assert!(run.status().missing.iter().any(|m| format!("{m:?}").contains("CoSignature")));

    desk.co_sign_in_reader(&mut run, own_reader, other_reader, Secret::from("135791"), carol.signer().unwrap(), t0)
        .unwrap();
    assert!(run.status().missing.is_empty(), "{:?}", run.status().missing);
}

/// Revocation's "never your own keys" knows a person by employee ID as co-signing and
/// enrolment do: an admin's second account is theirs, and its keys are not theirs to
/// revoke (another admin does it). Another admin may.
#[test]
fn an_admin_cannot_revoke_the_keys_of_their_own_second_account() {
    use resetdesk::desk::revocation::{revoke_signed, RevocationError};
    use resetdesk::token::registry::TokenRegistry;

    let _lock = lock_readers();
    let site = site();
    let carol_card = VirtualCard::insert_with_serial(READER_0_PORT, 12_000_021).unwrap();
    let second_card = VirtualCard::insert_with_serial(READER_1_PORT, 12_000_022).unwrap();
    let mut carol = site.agent(&carol_card, "carol", "246810");
    add_admin_account_of(&site, "carol-desk", "carol");
    site.enrol(&second_card, "carol-desk", "135791");
    let registry = TokenRegistry::open_existing(site.dir.path()).unwrap();
    let directory = site.directory();
    let mut audit = resetdesk::presence::open_audit_log(site.dir.path(), None).unwrap();
    let now = OffsetDateTime::now_utc();

    let own = revoke_signed(&registry, &directory, &mut audit, &mut carol, "carol-desk", None, "lost", now);
    assert!(matches!(own, Err(RevocationError::OwnKeys)), "{own:?}");
    assert!(registry.all().unwrap().iter().filter(|k| k.username == "carol-desk").all(|k| k.is_active()));

    drop(carol);
    carol_card.remove().unwrap();
    let dave_card = VirtualCard::insert_with_serial(READER_0_PORT, 12_000_023).unwrap();
    let mut dave = site.agent(&dave_card, "dave", "135792");
    let later = OffsetDateTime::now_utc();
    let done = revoke_signed(&registry, &directory, &mut audit, &mut dave, "carol-desk", None, "lost", later).unwrap();
    assert_eq!(done.keys.len(), 2);
    assert!(registry.all().unwrap().iter().filter(|k| k.username == "carol-desk").all(|k| !k.is_active()));
}
