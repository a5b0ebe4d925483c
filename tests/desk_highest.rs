//! A highest-tier reset at the desk: in-person ID inspection, TOTP, the manager's
//! approval through the outbox, the cooling-off wait, and a co-signature from a second
//! agent's card in the second reader — the agent's own card refused as co-signer.
//! Needs `scripts/pcscd.sh start`; holds the reader lock.

mod desk_support;

use desk_support::{site, totp_json};
use resetdesk::audit::EventType;
use resetdesk::desk::approval::ApprovalInbox;
use resetdesk::desk::DeskError;
use resetdesk::directory::PasswordCheck;
use resetdesk::policy::AuthorityRefusal;
use resetdesk::secret::Secret;
use resetdesk::token::card::PivCard;
use resetdesk::token::signer::PivSigner;
use resetdesk::token::RecordSigner;
use resetdesk::workflow::{Decision, Phase, WorkflowError};
use time::{Duration, OffsetDateTime};
use virtual_yubikey::{lock_readers, VirtualCard, READER_0_PORT, READER_1_PORT};

const ID_INSPECTION: &str = r#"{"action":"id_inspection","inspection":{"document_type":"passport","issuing_authority":"Nigeria",
    "number_last4":"7Q2K","expiry":"2031-05-01","name_matches_record":true,"photo_matches_person":true,"security_features_checked":true}}"#;

#[test]
fn a_highest_reset_needs_id_approval_cooling_off_and_a_second_agents_card() {
    let _lock = lock_readers();
    let site = site();
    let carol_card = VirtualCard::insert_with_serial(READER_0_PORT, 12_000_001).unwrap();
    let dave_card = VirtualCard::insert_with_serial(READER_1_PORT, 12_000_002).unwrap();
    let mut carol = site.agent(&carol_card, "carol", "246810");
    let mut dave = site.agent(&dave_card, "dave", "135791");
    let identity = carol.identity().clone();
    let mut desk = site.desk();
    let t0 = OffsetDateTime::now_utc();

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
    assert!(site.verify_audit_cli().0);
    drop((carol, dave));
    carol_card.remove().unwrap();
    dave_card.remove().unwrap();
}
