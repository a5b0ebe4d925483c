//! Tampering with a stored audit log is caught by the offline verifier, and the
//! append API keeps its promises (intent before action, nothing written on failure).

mod audit_support;

use std::path::PathBuf;

use audit_support::{reset_facts, BrokenSigner, Pki, SoftSigner};
use resetdesk::audit::offline::verify_store_with;
use resetdesk::audit::receipt::merkle_root;
use resetdesk::audit::record::{entry_hash, signing_digest};
use resetdesk::audit::store::Store;
use resetdesk::audit::verify::{EndProblem, Problem};
use resetdesk::audit::{
    verify_store, Anchor, AuditError, AuditLog, Checkpoint, CollectorKeys, DirectoryOutcome, Event, EventType,
    LegacyReceipt, Receipt, Record, Summary, VerifyFailure,
};
use resetdesk::token::RecordSigner;
use rusqlite::{params, Connection};
use time::OffsetDateTime;

struct Fixture {
    _dir: tempfile::TempDir,
    path: PathBuf,
    pki: Pki,
    alice: SoftSigner,
    bob: SoftSigner,
    mallory: SoftSigner,
    collector: SoftSigner,
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

/// A log of 8 records: login, intent, outcome, failed verification, refusal,
/// co-signed intent (bob co-signs), its outcome, logout.
fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.sqlite");
    let mut alice = SoftSigner::from_seed("alice", 1);
    let mut bob = SoftSigner::from_seed("bob", 2);
    let mut log = AuditLog::open(&path).unwrap();
    let agent = serde_json::json!({"agent": "alice", "workstation": "desk-3"});
    log.heartbeat(EventType::Login, &agent, &mut alice, now()).unwrap();
    let i1 = log.append(&Event::reset_intent(&reset_facts("alice", "jdoe")).unwrap(), &mut alice, now()).unwrap();
    let out = Event::reset_outcome(i1.intent_ref(), &DirectoryOutcome::Done, &reset_facts("alice", "jdoe")).unwrap();
    log.append(&out, &mut alice, now()).unwrap();
    let failed = serde_json::json!({"agent": "alice", "target_account": "mroe", "step": "kba", "result": "fail"});
    log.append(&Event::new(EventType::VerificationFailed, &failed).unwrap(), &mut alice, now()).unwrap();
    let refusal = serde_json::json!({"agent": "alice", "target_account": "root", "reason": "tier_too_high"});
    log.append(&Event::new(EventType::Refusal, &refusal).unwrap(), &mut alice, now()).unwrap();
    let i2 = log
        .append_cosigned(&Event::reset_intent(&reset_facts("alice", "admin1")).unwrap(), &mut alice, &mut bob, now())
        .unwrap();
    let failed = DirectoryOutcome::Failed { error: "directory: constraint violation".into() };
    log.append(
        &Event::reset_outcome(i2.intent_ref(), &failed, &reset_facts("alice", "admin1")).unwrap(),
        &mut alice,
        now(),
    )
    .unwrap();
    log.heartbeat(EventType::Logout, &agent, &mut alice, now()).unwrap();
    Fixture {
        _dir: dir,
        path,
        pki: Pki::new(1),
        alice,
        bob,
        mallory: SoftSigner::from_seed("mallory", 66),
        collector: SoftSigner::from_seed("collector", 9),
    }
}

impl Fixture {
    fn verify_with(&self, receipts: &[Receipt], anchors: &[Anchor]) -> Result<Summary, VerifyFailure> {
        let store = Store::open_read_only(&self.path).unwrap();
        let resolver = self.pki.resolver(&[&self.alice, &self.bob]);
        let mut collectors = CollectorKeys::default();
        collectors.add_spki_der(&self.collector.spki_der()).unwrap();
        // Every case is checked on one thread and on three (signatures prechecked in
        // parallel): the same answer, to the record and the problem.
        let one = verify_store_with(&store, &resolver, receipts, &collectors, anchors, 1);
        let three = verify_store_with(&store, &resolver, receipts, &collectors, anchors, 3);
        assert_eq!(format!("{one:?}"), format!("{three:?}"), "one thread and three agree");
        one
    }

    fn verify(&self) -> Result<Summary, VerifyFailure> {
        self.verify_with(&[], &[])
    }

    fn db(&self) -> Connection {
        Connection::open(&self.path).unwrap()
    }

    fn record(&self, seq: i64) -> Vec<u8> {
        self.db().query_row("SELECT record FROM audit_records WHERE seq = ?1", [seq], |r| r.get(0)).unwrap()
    }

    fn set_record(&self, seq: i64, record: &[u8], signature: &[u8]) {
        self.db()
            .execute(
                "UPDATE audit_records SET record = ?2, signature = ?3 WHERE seq = ?1",
                params![seq, record, signature],
            )
            .unwrap();
    }

    /// A receipt from the trusted collector covering records 1..=n as they are now.
    fn receipt(&mut self, n: u64) -> Receipt {
        Receipt::Legacy(self.legacy_receipt(n))
    }

    fn legacy_receipt(&mut self, n: u64) -> LegacyReceipt {
        let store = Store::open_read_only(&self.path).unwrap();
        let mut leaves = Vec::new();
        store
            .for_each(|s| {
                leaves.push(entry_hash(&s.record));
                Ok::<_, ()>(())
            })
            .unwrap()
            .unwrap();
        let covered = &leaves[..n as usize];
        let cp = Checkpoint {
            log_id: leaves[0],
            tree_size: n,
            head_hash: covered[n as usize - 1],
            root_hash: merkle_root(covered),
            issued_ms: 1,
        };
        LegacyReceipt::issue(cp, &mut self.collector).unwrap()
    }
}

fn bad_record(r: Result<Summary, VerifyFailure>) -> (u64, Problem) {
    match r {
        Err(VerifyFailure::Record(b)) => (b.seq, b.problem),
        other => panic!("expected a bad record, got {other:?}"),
    }
}

fn end_problem(r: Result<Summary, VerifyFailure>) -> EndProblem {
    match r {
        Err(VerifyFailure::End(e)) => e,
        other => panic!("expected a log-level problem, got {other:?}"),
    }
}

#[test]
fn an_untouched_log_verifies_and_summarises() {
    let f = fixture();
    let s = f.verify().unwrap();
    assert_eq!(s.records, 8);
    assert_eq!(s.head_seq, 8);
    assert_eq!(s.cosigned, 1);
    assert_eq!(s.by_type.get("reset_intent"), Some(&2));
    assert_eq!(s.by_type.get("reset_outcome"), Some(&2));
    assert!(s.open_intents.is_empty());
    assert_eq!(s.signers.get("CN=alice,O=Test Org"), Some(&8));
}

#[test]
fn any_changed_byte_in_any_field_is_caught_at_that_record() {
    let f = fixture();
    let original = f.record(3);
    let sig: Vec<u8> = f.db().query_row("SELECT signature FROM audit_records WHERE seq = 3", [], |r| r.get(0)).unwrap();
    // One offset inside each field: tag, version, type, seq, time, key id, cosigner, prev, length, payload.
    for pos in [0, 17, 19, 27, 35, 40, 70, 110, 135, 140, original.len() - 2] {
        let mut bad = original.clone();
        bad[pos] ^= 0x01;
        f.set_record(3, &bad, &sig);
        let (seq, problem) = bad_record(f.verify());
        assert_eq!(seq, 3, "byte {pos}: {problem}");
    }
    f.set_record(3, &original, &sig);
    f.verify().unwrap();
}

#[test]
fn a_changed_signature_is_caught() {
    let f = fixture();
    let mut sig: Vec<u8> =
        f.db().query_row("SELECT signature FROM audit_records WHERE seq = 5", [], |r| r.get(0)).unwrap();
    let last = sig.len() - 1;
    sig[last] ^= 1;
    f.set_record(5, &f.record(5), &sig);
    assert!(matches!(bad_record(f.verify()), (5, Problem::BadSignature(_))));
}

#[test]
fn a_deleted_middle_record_is_caught() {
    let f = fixture();
    f.db().execute("DELETE FROM audit_records WHERE seq = 4", []).unwrap();
    assert!(matches!(bad_record(f.verify()), (5, Problem::Gap { expected: 4, found: 5 })));
}

#[test]
fn a_deleted_and_renumbered_middle_record_is_caught() {
    let f = fixture();
    let db = f.db();
    db.execute("DELETE FROM audit_records WHERE seq = 4", []).unwrap();
    db.execute("UPDATE audit_records SET seq = seq - 1 WHERE seq > 4", []).unwrap();
    assert!(matches!(bad_record(f.verify()), (4, Problem::Gap { expected: 4, found: 5 })));
}

#[test]
fn two_swapped_records_are_caught() {
    let f = fixture();
    let db = f.db();
    db.execute_batch(
        "UPDATE audit_records SET seq = -1 WHERE seq = 3;
         UPDATE audit_records SET seq = 3 WHERE seq = 4;
         UPDATE audit_records SET seq = 4 WHERE seq = -1;",
    )
    .unwrap();
    assert!(matches!(bad_record(f.verify()), (3, Problem::Gap { expected: 3, found: 4 })));
}

#[test]
fn a_duplicated_record_is_caught() {
    let f = fixture();
    // Appended again at the end...
    f.db()
        .execute(
            "INSERT INTO audit_records (seq, record, signature, cosignature, entry_hash, event_type, timestamp_ms, intent_seq)
             SELECT 9, record, signature, cosignature, entry_hash, event_type, timestamp_ms, intent_seq FROM audit_records WHERE seq = 5",
            [],
        )
        .unwrap();
    assert!(matches!(bad_record(f.verify()), (9, Problem::Backwards { expected: 9, found: 5 })));
    // ...or in place of the next one.
    f.db().execute("DELETE FROM audit_records WHERE seq = 9", []).unwrap();
    let (r5, s5): (Vec<u8>, Vec<u8>) = f
        .db()
        .query_row("SELECT record, signature FROM audit_records WHERE seq = 5", [], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap();
    f.set_record(6, &r5, &s5);
    assert!(matches!(bad_record(f.verify()), (6, Problem::Backwards { expected: 6, found: 5 })));
}

#[test]
fn a_truncated_tail_is_caught_given_a_receipt() {
    let mut f = fixture();
    let receipt = f.receipt(8);
    f.verify_with(std::slice::from_ref(&receipt), &[]).unwrap();
    f.db().execute("DELETE FROM audit_records WHERE seq > 6", []).unwrap();
    // The chain alone cannot tell (this is why receipts and heartbeats exist).
    assert_eq!(f.verify().unwrap().records, 6);
    assert!(matches!(end_problem(f.verify_with(&[receipt], &[])), EndProblem::Truncated { covered: 8, end: 6, .. }));
}

#[test]
fn a_truncated_tail_is_caught_given_a_later_heartbeat() {
    let f = fixture();
    // The logout heartbeat (seq 8) reached the collector, signed by alice.
    let (record, signature): (Vec<u8>, Vec<u8>) = f
        .db()
        .query_row("SELECT record, signature FROM audit_records WHERE seq = 8", [], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap();
    let heartbeat = Anchor { record, signature };
    f.verify_with(&[], std::slice::from_ref(&heartbeat)).unwrap();
    f.db().execute("DELETE FROM audit_records WHERE seq = 8", []).unwrap();
    assert!(matches!(
        end_problem(f.verify_with(&[], &[heartbeat])),
        EndProblem::AnchorBeyondEnd { seq: 8, end: 7, .. }
    ));
}

impl Fixture {
    /// What someone holding alice's and bob's keys can do: change record 4's payload,
    /// then re-sign (and re-co-sign) and re-chain every record after it.
    fn rewrite_from_4_with_stolen_keys(&mut self) {
        let mut prev = entry_hash(&self.record(3));
        for seq in 4..=8 {
            let mut r = Record::decode(&self.record(seq)).unwrap();
            if seq == 4 {
                r.payload = br#"{"facts":{"note":"nothing happened"}}"#.to_vec();
            }
            r.prev_hash = prev;
            let bytes = r.encode().unwrap();
            prev = entry_hash(&bytes);
            let sig = self.alice.sign_digest(&signing_digest(&bytes)).unwrap();
            self.set_record(seq, &bytes, &sig);
            if r.cosigner_key_id.is_some() {
                let cosig = self.bob.sign_digest(&signing_digest(&bytes)).unwrap();
                self.db()
                    .execute("UPDATE audit_records SET cosignature = ?1 WHERE seq = ?2", params![cosig, seq])
                    .unwrap();
            }
        }
    }
}

#[test]
fn a_history_rewritten_with_the_agents_own_keys_still_breaks_the_intent_link() {
    let mut f = fixture();
    f.rewrite_from_4_with_stolen_keys();
    // Chain and signatures are perfect, but outcome 7 names intent 6 by its old entry hash.
    assert_eq!(bad_record(f.verify()), (7, Problem::IntentHashMismatch(6)));
}

#[test]
fn a_receipt_detects_a_fully_consistent_rewrite() {
    let mut f = fixture();
    let receipt = f.receipt(5);
    f.rewrite_from_4_with_stolen_keys();
    // Cut after 5 (before the stale intent link): a log that verifies on its own.
    f.db().execute("DELETE FROM audit_records WHERE seq > 5", []).unwrap();
    assert_eq!(f.verify().unwrap().records, 5);
    assert!(matches!(end_problem(f.verify_with(&[receipt], &[])), EndProblem::Rewritten { seq: 5, .. }));
}

#[test]
fn a_signature_replaced_by_another_enrolled_agents_is_caught() {
    let mut f = fixture();
    let bytes = f.record(4);
    let bobs = f.bob.sign_digest(&signing_digest(&bytes)).unwrap();
    f.set_record(4, &bytes, &bobs);
    assert!(matches!(bad_record(f.verify()), (4, Problem::BadSignature(ref who)) if who == "CN=alice,O=Test Org"));
}

#[test]
fn a_record_claimed_by_another_agent_breaks_the_chain_after_it() {
    let mut f = fixture();
    let mut r = Record::decode(&f.record(4)).unwrap();
    r.key_id = f.bob.key_id();
    let bytes = r.encode().unwrap();
    let sig = f.bob.sign_digest(&signing_digest(&bytes)).unwrap();
    f.set_record(4, &bytes, &sig);
    assert!(matches!(bad_record(f.verify()), (5, Problem::BrokenChain)));
}

#[test]
fn a_record_forged_with_an_unenrolled_key_is_caught() {
    let mut f = fixture();
    // Mallory appends a well-formed, correctly chained record with her own key.
    let mut log = AuditLog::open(&f.path).unwrap();
    let facts = serde_json::json!({"agent": "alice", "target_account": "ceo"});
    log.append(&Event::reset_intent(&facts).unwrap(), &mut f.mallory, now()).unwrap();
    drop(log);
    assert!(matches!(bad_record(f.verify()), (9, Problem::Signer(_))));
}

#[test]
fn a_certificate_from_another_ca_is_not_trusted() {
    let mut f = fixture();
    let mut log = AuditLog::open(&f.path).unwrap();
    log.heartbeat(EventType::Lock, &serde_json::json!({"agent": "mallory"}), &mut f.mallory, now()).unwrap();
    drop(log);
    let store = Store::open_read_only(&f.path).unwrap();
    let mut resolver = f.pki.resolver(&[&f.alice, &f.bob]);
    let rogue = Pki::new(2).issue(&f.mallory);
    assert!(resolver.add_certificate_der(&rogue, None).is_err());
    let err = verify_store(&store, &resolver, &[], &CollectorKeys::default(), &[]).unwrap_err();
    assert!(err.to_string().contains("not issued by the organisation CA"), "{err}");
}

/// One certificate validator: each agent certificate login refuses at the records'
/// time makes the verifier refuse the records its key signed; the one login accepts
/// verifies.
#[test]
fn the_verifier_refuses_the_certificates_login_refuses() {
    use std::time::{Duration, SystemTime};
    use x509_cert::der::Decode as _;
    use x509_cert::ext::pkix::KeyUsages;
    let f = fixture();
    let store = Store::open_read_only(&f.path).unwrap();
    let day = Duration::from_secs(86_400);
    let t = SystemTime::now();
    let lapsed_ca = Pki::with_ca_validity(3, t - 10 * day, t - day);
    let other_ca = Pki::new(2);
    let cases: [(&str, &Pki, Vec<u8>); 7] = [
        ("as enrolled", &f.pki, f.pki.issue(&f.alice)),
        (
            "no digitalSignature",
            &f.pki,
            f.pki.issue_shaped(&f.alice, "CN=alice,O=Test Org", KeyUsages::KeyAgreement, false),
        ),
        (
            "a CA certificate",
            &f.pki,
            f.pki.issue_shaped(&f.alice, "CN=alice,O=Test Org", KeyUsages::DigitalSignature, true),
        ),
        ("no CN", &f.pki, f.pki.issue_shaped(&f.alice, "O=Test Org", KeyUsages::DigitalSignature, false)),
        ("expired before the records", &f.pki, f.pki.issue_valid(&f.alice, t - 3 * day, t - day)),
        ("issued by another CA", &f.pki, other_ca.issue(&f.alice)),
        ("its CA expired before the records", &lapsed_ca, lapsed_ca.issue_valid(&f.alice, t - 5 * day, t + day)),
    ];
    for (case, pki, alice_cert) in cases {
        let anchor = resetdesk::ca::TrustAnchor::from_pem(&pki.ca_pem(), "test CA").unwrap();
        let cert = x509_cert::Certificate::from_der(&alice_cert).unwrap();
        let login = anchor.validate(&cert, now());
        let mut resolver = resetdesk::audit::CertificateResolver::new(&pki.ca_der).unwrap();
        let _ = resolver.add_certificate_der(&alice_cert, None);
        let _ = resolver.add_certificate_der(&pki.issue(&f.bob), None);
        let verified = verify_store(&store, &resolver, &[], &CollectorKeys::default(), &[]);
        assert_eq!(verified.is_ok(), login.is_ok(), "{case}: login says {login:?}, the verifier {verified:?}");
        assert_eq!(login.is_ok(), case == "as enrolled", "{case}: {login:?}");
    }
}

#[test]
fn records_signed_after_revocation_are_caught() {
    let f = fixture();
    let store = Store::open_read_only(&f.path).unwrap();
    let mut resolver = resetdesk::audit::CertificateResolver::new(&f.pki.ca_der).unwrap();
    resolver.add_certificate_der(&f.pki.issue(&f.bob), None).unwrap();
    resolver.add_certificate_der(&f.pki.issue(&f.alice), Some(1)).unwrap();
    let err = verify_store(&store, &resolver, &[], &CollectorKeys::default(), &[]).unwrap_err();
    assert!(
        matches!(err, VerifyFailure::Record(ref b) if b.seq == 1 && matches!(b.problem, Problem::Revoked { .. })),
        "{err}"
    );
}

#[test]
fn a_removed_or_foreign_cosignature_is_caught() {
    let mut f = fixture();
    f.db().execute("UPDATE audit_records SET cosignature = NULL WHERE seq = 6", []).unwrap();
    assert!(matches!(bad_record(f.verify()), (6, Problem::MissingCosignature(_))));
    let mallorys = f.mallory.sign_digest(&signing_digest(&f.record(6))).unwrap();
    f.db().execute("UPDATE audit_records SET cosignature = ?1 WHERE seq = 6", [mallorys]).unwrap();
    assert!(matches!(bad_record(f.verify()), (6, Problem::BadCosignature(_))));
    let extra = f.bob.sign_digest(&signing_digest(&f.record(5))).unwrap();
    f.db().execute("UPDATE audit_records SET cosignature = ?1 WHERE seq = 5", [extra]).unwrap();
    assert!(matches!(bad_record(f.verify()), (5, Problem::UnexpectedCosignature)));
}

#[test]
fn a_receipt_from_an_untrusted_collector_or_another_log_is_refused() {
    let mut f = fixture();
    let good = f.legacy_receipt(3);
    let mut forged = good.clone();
    forged.checkpoint.tree_size = 2;
    let forged = Receipt::Legacy(forged);
    assert!(matches!(end_problem(f.verify_with(&[forged], &[])), EndProblem::Receipt { .. }));
    let foreign = Receipt::issue(good.checkpoint, &mut f.mallory).unwrap();
    assert!(matches!(end_problem(f.verify_with(&[foreign], &[])), EndProblem::Receipt { .. }));
    let wrong_log = Checkpoint { log_id: [7; 32], ..good.checkpoint };
    let wrong_log = Receipt::issue(wrong_log, &mut f.collector).unwrap();
    assert!(matches!(end_problem(f.verify_with(&[wrong_log], &[])), EndProblem::OtherLog { .. }));
}

#[test]
fn stored_receipts_are_checked_and_a_rolled_back_database_refuses_to_open() {
    let mut f = fixture();
    let receipt = f.legacy_receipt(8);
    let mut log = AuditLog::open(&f.path).unwrap();
    log.add_receipt(&Receipt::Legacy(receipt.clone())).unwrap();
    let bogus = LegacyReceipt { checkpoint: Checkpoint { head_hash: [1; 32], ..receipt.checkpoint }, ..receipt };
    assert!(matches!(log.add_receipt(&Receipt::Legacy(bogus)), Err(AuditError::ReceiptMismatch(8))));
    drop(log);
    assert_eq!(f.verify().unwrap().receipted_up_to, 8);
    f.db().execute("DELETE FROM audit_records WHERE seq > 7", []).unwrap();
    assert!(matches!(end_problem(f.verify()), EndProblem::Truncated { .. }));
    assert!(matches!(AuditLog::open(&f.path), Err(AuditError::RolledBack { head: 7, receipted: 8 })));
}

#[test]
fn an_intent_without_outcome_is_reported_at_open_and_can_be_closed_once() {
    let f = fixture();
    let mut alice = SoftSigner::from_seed("alice", 1);
    let mut log = AuditLog::open(&f.path).unwrap();
    assert!(log.pending_at_open().is_empty());
    let i = log.append(&Event::reset_intent(&reset_facts("alice", "kim")).unwrap(), &mut alice, now()).unwrap();
    drop(log); // crash here: the directory may or may not have been changed

    let mut log = AuditLog::open(&f.path).unwrap();
    let pending = log.pending_at_open().to_vec();
    assert_eq!(pending.len(), 1);
    assert_eq!((pending[0].seq, pending[0].entry_hash), (i.seq, i.entry_hash));
    assert_eq!(pending[0].facts["target_account"], "kim");
    assert_eq!(f.verify().unwrap().open_intents, vec![i.seq]);

    let close = Event::reset_outcome(
        pending[0].intent_ref(),
        &DirectoryOutcome::Done,
        &serde_json::json!({"reconciled": true}),
    )
    .unwrap();
    log.append(&close, &mut alice, now()).unwrap();
    assert!(matches!(log.append(&close, &mut alice, now()), Err(AuditError::IntentClosed(_))));
    let wrong =
        Event::reset_outcome(resetdesk::audit::IntentRef { seq: 4, entry_hash: [0; 32] }, &DirectoryOutcome::Done, &())
            .unwrap();
    assert!(matches!(log.append(&wrong, &mut alice, now()), Err(AuditError::NoSuchIntent(4))));
    assert!(log.pending_intents().unwrap().is_empty());
    drop(log);
    assert!(f.verify().unwrap().open_intents.is_empty());
}

#[test]
fn nothing_is_written_when_the_card_fails() {
    let f = fixture();
    let mut log = AuditLog::open(&f.path).unwrap();
    let before = log.head().unwrap();
    let mut broken = BrokenSigner(f.alice.key_id());
    let r = log.append(&Event::reset_intent(&reset_facts("alice", "x")).unwrap(), &mut broken, now());
    assert!(matches!(r, Err(AuditError::Sign(_))));
    let mut alice = SoftSigner::from_seed("alice", 1);
    let r = log.append_cosigned(
        &Event::reset_intent(&reset_facts("alice", "x")).unwrap(),
        &mut alice,
        &mut broken_other(),
        now(),
    );
    assert!(matches!(r, Err(AuditError::Cosign(_))));
    assert_eq!(log.head().unwrap(), before);
    drop(log);
    f.verify().unwrap();
}

fn broken_other() -> BrokenSigner {
    BrokenSigner([0x42; 32])
}

#[test]
fn self_cosigning_is_refused() {
    let f = fixture();
    let mut log = AuditLog::open(&f.path).unwrap();
    let mut a1 = SoftSigner::from_seed("alice", 1);
    let mut a2 = SoftSigner::from_seed("alice", 1);
    let r = log.append_cosigned(&Event::reset_intent(&reset_facts("alice", "x")).unwrap(), &mut a1, &mut a2, now());
    assert!(matches!(r, Err(AuditError::Record(_))));
}

#[test]
fn the_database_is_durable_wal_full_and_private() {
    let f = fixture();
    let log = AuditLog::open(&f.path).unwrap();
    assert_eq!(log.store().durability().unwrap(), ("wal".to_string(), 2));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for suffix in ["", "-wal", "-shm"] {
            let file = format!("{}{suffix}", f.path.display());
            let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{file}");
        }
    }
}

#[test]
fn columns_of_the_wrong_type_are_judged_not_crashed_on() {
    for (sql, seq) in [
        ("UPDATE audit_records SET record = 'garbage' WHERE seq = 2", 2),
        ("UPDATE audit_records SET signature = 42 WHERE seq = 3", 3),
        ("UPDATE audit_records SET cosignature = 'x' WHERE seq = 4", 4),
    ] {
        let f = fixture();
        f.db().execute(sql, []).unwrap();
        assert_eq!(bad_record(f.verify()).0, seq, "{sql}");
    }
}

#[test]
fn a_clock_set_back_is_reported_not_failed() {
    let f = fixture();
    let mut alice = SoftSigner::from_seed("alice", 1);
    let mut log = AuditLog::open(&f.path).unwrap();
    let earlier = now() - time::Duration::hours(1);
    log.heartbeat(EventType::Lock, &serde_json::json!({"agent": "alice"}), &mut alice, earlier).unwrap();
    drop(log);
    assert_eq!(f.verify().unwrap().clock_regressions, 1);
}

/// Claims alice's key id but signs with another key (a card swapped under a session).
struct Impostor {
    claims: [u8; 32],
    real: SoftSigner,
}

impl RecordSigner for Impostor {
    fn key_id(&self) -> [u8; 32] {
        self.claims
    }
    fn sign_digest(&mut self, digest: &[u8; 32]) -> Result<Vec<u8>, resetdesk::token::SignError> {
        self.real.sign_digest(digest)
    }
}

#[test]
fn with_key_check_a_record_that_would_not_verify_is_refused_not_written() {
    let f = fixture();
    let mut impostor = Impostor { claims: f.alice.key_id(), real: SoftSigner::from_seed("mallory", 66) };
    let event = Event::new(EventType::Refusal, &serde_json::json!({"agent": "alice"})).unwrap();
    let resolver = Box::new(f.pki.resolver(&[&f.alice, &f.bob]));
    let mut log = AuditLog::open(&f.path).unwrap().with_key_check(resolver);
    assert!(matches!(log.append(&event, &mut impostor, now()), Err(AuditError::WouldNotVerify(_))));
    let mut bob = SoftSigner::from_seed("bob", 2);
    let mut alice = SoftSigner::from_seed("alice", 1);
    assert!(matches!(
        log.append_cosigned(&event, &mut alice, &mut impostor_of(&bob), now()),
        Err(AuditError::WouldNotVerify(_))
    ));
    assert_eq!(log.head().unwrap().unwrap().seq, 8);
    log.append_cosigned(&event, &mut alice, &mut bob, now()).unwrap();
    drop(log);
    f.verify().unwrap();
    // Without the check the bad record is written, and the verifier names it.
    let mut log = AuditLog::open(&f.path).unwrap();
    log.append(&event, &mut impostor, now()).unwrap();
    drop(log);
    assert!(matches!(bad_record(f.verify()), (10, Problem::BadSignature(_))));
}

fn impostor_of(victim: &SoftSigner) -> Impostor {
    Impostor { claims: victim.key_id(), real: SoftSigner::from_seed("mallory", 66) }
}

impl Fixture {
    /// Append a correctly chained record with `payload`, signed with alice's key (as
    /// someone holding her key could), bypassing the API's own checks.
    fn append_forged(&mut self, event_type: EventType, payload: &str) {
        let prev = entry_hash(&self.record(8));
        let r = Record {
            event_type,
            seq: 9,
            timestamp_ms: resetdesk::audit::log::unix_ms(now()).unwrap(),
            key_id: self.alice.key_id(),
            cosigner_key_id: None,
            prev_hash: prev,
            payload: payload.as_bytes().to_vec(),
        };
        let bytes = r.encode().unwrap();
        let sig = self.alice.sign_digest(&signing_digest(&bytes)).unwrap();
        self.db()
            .execute(
                "INSERT INTO audit_records (seq, record, signature, entry_hash, event_type, timestamp_ms) VALUES (9, ?1, ?2, x'', 0, 0)",
                params![bytes, sig],
            )
            .unwrap();
    }
}

#[test]
fn heartbeats_state_the_head_and_the_latest_receipt() {
    let mut f = fixture();
    let receipt = f.receipt(5);
    let mut log = AuditLog::open(&f.path).unwrap();
    log.add_receipt(&receipt).unwrap();
    let mut alice = SoftSigner::from_seed("alice", 1);
    let hb = log
        .heartbeat(EventType::Lock, &serde_json::json!({"agent": "alice", "reason": "idle"}), &mut alice, now())
        .unwrap();
    drop(log);
    let payload = String::from_utf8(f.record(hb.seq as i64)[136..].to_vec()).unwrap();
    let head = format!(r#""head":{{"entry_hash":"{}","seq":8}}"#, hex::encode(entry_hash(&f.record(8))));
    assert!(payload.contains(&head), "{payload}");
    assert!(
        payload.contains(r#""last_receipt":{"collector_key_id""#) && payload.contains(r#""tree_size":5"#),
        "{payload}"
    );
    let mut collectors = CollectorKeys::default();
    collectors.add_spki_der(&f.collector.spki_der()).unwrap();
    let store = Store::open_read_only(&f.path).unwrap();
    let resolver = f.pki.resolver(&[&f.alice, &f.bob]);
    verify_store(&store, &resolver, &[], &collectors, &[]).unwrap();
    // Heartbeats must be written through the log, which states the head.
    assert!(Event::new(EventType::Login, &()).is_err());
}

#[test]
fn a_heartbeat_stating_a_false_head_or_receipt_is_caught() {
    let mut f = fixture();
    f.append_forged(
        EventType::Logout,
        &format!(r#"{{"facts":{{}},"head":{{"entry_hash":"{}","seq":7}}}}"#, "00".repeat(32)),
    );
    assert_eq!(bad_record(f.verify()), (9, Problem::HeartbeatHeadMismatch { seq: 7 }));
    f.db().execute("DELETE FROM audit_records WHERE seq = 9", []).unwrap();
    let head = hex::encode(entry_hash(&f.record(8)));
    let zeros = "00".repeat(32);
    f.append_forged(
        EventType::Logout,
        &format!(
            r#"{{"facts":{{}},"head":{{"entry_hash":"{head}","seq":8}},"last_receipt":{{"collector_key_id":"{zeros}","head_hash":"{zeros}","tree_size":3}}}}"#
        ),
    );
    assert_eq!(bad_record(f.verify()), (9, Problem::HeartbeatReceiptMismatch(3)));
    f.db().execute("DELETE FROM audit_records WHERE seq = 9", []).unwrap();
    f.append_forged(EventType::Logout, &format!(r#"{{"facts":{{}},"head":{{"entry_hash":"{head}","seq":8}}}}"#));
    f.verify().unwrap();
}

/// A `revocation` record applies to the records after it, from its time on; one that
/// names no key is refused.
#[test]
fn a_recorded_revocation_stops_the_revoked_key_and_must_name_its_keys() {
    let f = fixture();
    let mut log = AuditLog::open(&f.path).unwrap();
    let mut alice = SoftSigner::from_seed("alice", 1);
    let mut bob = SoftSigner::from_seed("bob", 2);
    let revocation = serde_json::json!({"agent": "alice", "reason": "lost", "revoked_by": "bob",
        "keys": [{"slot": "9c", "key_id": hex::encode(alice.key_id()), "serial": 1}]});
    let revoked = log.append(&Event::new(EventType::Revocation, &revocation).unwrap(), &mut bob, now()).unwrap();
    let after =
        log.append(&Event::new(EventType::Refusal, &serde_json::json!({"agent": "alice"})).unwrap(), &mut alice, now());
    let after = after.unwrap();
    drop(log);
    let (seq, problem) = bad_record(f.verify());
    assert_eq!(seq, after.seq);
    assert!(matches!(problem, Problem::Revoked { .. }), "{problem:?}");
    assert!(revoked.seq < after.seq);

    let g = fixture();
    let mut log = AuditLog::open(&g.path).unwrap();
    let empty = serde_json::json!({"agent": "alice", "reason": "lost", "revoked_by": "bob", "keys": []});
    let r = log.append(&Event::new(EventType::Revocation, &empty).unwrap(), &mut bob, now()).unwrap();
    drop(log);
    assert_eq!(bad_record(g.verify()), (r.seq, Problem::BadRevocation));
}

#[test]
fn a_refused_record_leaves_a_resumable_log_verifier_as_it_was() {
    use resetdesk::audit::LogVerifier;
    let f = fixture();
    let resolver = f.pki.resolver(&[&f.alice, &f.bob]);
    let records: Vec<_> =
        (1..=8).map(|seq| Store::open_read_only(&f.path).unwrap().get(seq).unwrap().unwrap()).collect();
    // A validly signed record 3 that is the outcome of intent 2 with the wrong entry
    // hash (the same bytes with the intent hash swapped, signed again by alice).
    let mut alice = SoftSigner::from_seed("alice", 1);
    let real = hex::encode(entry_hash(&records[1].record));
    let mut bytes = records[2].record.clone();
    let at = bytes.windows(64).position(|w| w == real.as_bytes()).expect("the outcome names its intent's hash");
    bytes[at..at + 64].copy_from_slice("09".repeat(32).as_bytes());
    let signature = alice.sign_digest(&signing_digest(&bytes)).unwrap();
    let bad = resetdesk::audit::verify::StoredRecord { row_seq: 3, record: bytes, signature, cosignature: None };

    let mut v = LogVerifier::new();
    v.push(&resolver, &records[0]).unwrap();
    v.push(&resolver, &records[1]).unwrap();
    let err = v.push(&resolver, &bad).unwrap_err();
    assert_eq!(err.problem, Problem::IntentHashMismatch(2));
    assert_eq!(v.next_seq(), 3);
    // The genuine rest still verifies on the same state, fed in two batches, and the
    // result is the one-pass verifier's.
    for r in &records[2..5] {
        v.push(&resolver, r).unwrap();
    }
    for r in &records[5..] {
        v.push(&resolver, r).unwrap();
    }
    let resumed = v.finish(&resolver, &[], &CollectorKeys::default(), &[]).unwrap();
    assert_eq!(resumed, f.verify().unwrap());
}

/// The collector prechecks a request's records apart from any log state (outside its
/// lock) and decides them later in order: the verdicts are those of one-by-one
/// `push`, and a certificate replaced in between is the one that counts (answers made
/// with the old key are not used).
#[test]
fn records_prechecked_apart_are_decided_as_pushed_with_the_keys_of_push_time() {
    use resetdesk::audit::verify::StoredRecord;
    use resetdesk::audit::LogVerifier;
    use std::time::{Duration, SystemTime};
    let f = fixture();
    let store = Store::open_read_only(&f.path).unwrap();
    let mut records: Vec<StoredRecord> = Vec::new();
    store
        .for_each(|s| {
            records.push(s);
            Ok::<_, ()>(())
        })
        .unwrap()
        .unwrap();
    let mut forged = records.clone();
    forged[3].signature = records[2].signature.clone();
    let day = Duration::from_secs(86_400);
    let later = SystemTime::now() + day;
    let decide = |recs: &[StoredRecord], replace_alice: bool| {
        let mut resolver = f.pki.resolver(&[&f.alice, &f.bob]);
        let prechecked = LogVerifier::precheck_apart(&resolver, recs.to_vec(), 2);
        if replace_alice {
            // Re-issued valid only from tomorrow: every record alice signed is now refused.
            resolver.add_certificate_der(&f.pki.issue_valid(&f.alice, later, later + day), None).unwrap();
        }
        let mut apart = LogVerifier::new();
        let a: Vec<_> =
            prechecked.into_iter().map(|p| apart.push_prechecked_record(&resolver, p).map(|s| s.row_seq)).collect();
        let mut one = LogVerifier::new();
        let b: Vec<_> = recs.iter().map(|r| one.push(&resolver, r).map(|()| r.row_seq)).collect();
        assert_eq!(format!("{a:?}"), format!("{b:?}"), "prechecked apart and pushed one by one agree");
        assert_eq!(format!("{:?}", apart.summary()), format!("{:?}", one.summary()));
        a
    };
    assert!(decide(&records, false).iter().all(Result::is_ok));
    let with_forgery = decide(&forged, false);
    assert!(with_forgery[..3].iter().all(Result::is_ok));
    assert!(matches!(&with_forgery[3], Err(b) if b.seq == 4 && matches!(b.problem, Problem::BadSignature(_))));
    let replaced = decide(&records, true);
    assert!(matches!(&replaced[0], Err(b) if b.seq == 1 && matches!(b.problem, Problem::CertificateNotValid { .. })));
}
