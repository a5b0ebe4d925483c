//! Signed presence heartbeats on the real stack (virtual cards on pcscd + vpcd, the
//! audit store, `resetdesk audit verify`): login and logout records, an unsigned
//! removal lock stated in the next login, a tampered heartbeat caught.
//! Needs `scripts/pcscd.sh start`.

mod desk_support;

use desk_support::site;
use resetdesk::audit::{AuditLog, EventType};
use resetdesk::login::AgentSession;
use resetdesk::presence::{open_audit_log, record_login, record_logout, PresenceError, SessionEnd};
use resetdesk::session::{LockDecision, LockReason, SessionEvent};
use serde_json::json;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use virtual_yubikey::{lock_readers, VirtualCard, READER_0_PORT, READER_1_PORT};

fn audit(site: &desk_support::Site) -> AuditLog {
    open_audit_log(site.dir.path(), None).unwrap()
}

/// Take the readers; alice's card enrolled in reader 0 and logged in; the desk's log.
/// Bind as `(_lock, ...)`: the card leaves before the lock is released.
fn alice_at_the_desk() -> (virtual_yubikey::ReaderLock, desk_support::Site, VirtualCard, AgentSession, AuditLog) {
    let lock = lock_readers();
    let site = site();
    let card = VirtualCard::insert(READER_0_PORT).unwrap();
    let session = site.agent(&card, "alice", "246810");
    let log = audit(&site);
    (lock, site, card, session, log)
}

/// The facts every heartbeat states about the agent and key.
fn agent_facts(session: &AgentSession) -> serde_json::Value {
    let id = session.identity();
    json!({
        "agent": id.username, "tier": id.tier, "reader": id.reader, "serial": id.serial,
        "virtual": true, "key_id": id.signing_key_id,
    })
}

fn with(mut base: serde_json::Value, key: &str, value: serde_json::Value) -> serde_json::Value {
    base[key] = value;
    base
}

#[test]
fn login_and_logout_heartbeats_are_signed_and_verify() {
    let (_lock, site, card, mut session, mut log) = alice_at_the_desk();

    let login = record_login(&mut log, &mut session, None, OffsetDateTime::now_utc()).unwrap();
    assert_eq!(login.seq, 1);
    let logout = record_logout(&mut log, &mut session, OffsetDateTime::now_utc()).unwrap();
    assert_eq!(logout.seq, 2);
    let at = OffsetDateTime::now_utc();
    assert_eq!(session.handle(&SessionEvent::LockRequested { at }), LockDecision::Lock(LockReason::Manual));
    // Locked: the card can no longer sign a heartbeat for this session.
    let err = record_logout(&mut log, &mut session, at).unwrap_err();
    assert_eq!(err.lock_reason(), Some(LockReason::Manual), "{err}");

    let records = site.records();
    let facts = agent_facts(&session);
    assert_eq!(
        records,
        vec![(EventType::Login, facts.clone()), (EventType::Logout, with(facts, "reason", json!("manual")))]
    );
    let (ok, out) = site.verify_audit_cli();
    assert!(ok, "{out}");
    assert!(out.contains("records: 2"), "{out}");
    card.remove().unwrap();
}

#[test]
fn a_removal_lock_is_stated_in_the_next_signed_login() {
    let _lock = lock_readers();
    let site = site();
    let alice_card = VirtualCard::insert(READER_0_PORT).unwrap();
    let bob_card = VirtualCard::insert(READER_1_PORT).unwrap();
    let mut alice = site.agent(&alice_card, "alice", "246810");
    site.enrol(&bob_card, "bob", "135790");
    let mut log = audit(&site);
    record_login(&mut log, &mut alice, None, OffsetDateTime::now_utc()).unwrap();

    // Alice walks away with her key: the session locks and her card cannot sign that.
    let reader = alice_card.reader_name().to_owned();
    alice_card.remove().unwrap();
    let removed_at = OffsetDateTime::now_utc();
    let decision = alice.handle(&SessionEvent::CardRemoved { reader, at: removed_at });
    assert_eq!(decision, LockDecision::Lock(LockReason::KeyRemoved));
    match record_logout(&mut log, &mut alice, OffsetDateTime::now_utc()) {
        Err(PresenceError::Locked { reason: LockReason::KeyRemoved, .. }) => {}
        other => panic!("a removed key's session cannot sign its logout: {other:?}"),
    }
    let end = SessionEnd::new(alice.identity(), LockReason::KeyRemoved, removed_at);

    // Bob logs in next: his signed login record states how alice's session ended.
    let mut bob = site.login(&bob_card, "135790");
    record_login(&mut log, &mut bob, Some(&end), OffsetDateTime::now_utc()).unwrap();

    let records = site.records();
    assert_eq!(records.len(), 2, "nothing was written for the unsigned lock: {records:?}");
    let (kind, facts) = &records[1];
    assert_eq!(*kind, EventType::Login);
    let expected_end = json!({
        "agent": "alice", "key_id": alice.identity().signing_key_id, "reason": "key-removed",
        "at": removed_at.format(&Rfc3339).unwrap(),
    });
    assert_eq!(*facts, with(agent_facts(&bob), "previous_session_end", expected_end));
    let (ok, out) = site.verify_audit_cli();
    assert!(ok, "{out}");
    bob_card.remove().unwrap();
}

#[test]
fn a_tampered_heartbeat_is_caught_by_verify() {
    let (_lock, site, card, mut session, mut log) = alice_at_the_desk();
    record_login(&mut log, &mut session, None, OffsetDateTime::now_utc()).unwrap();
    record_logout(&mut log, &mut session, OffsetDateTime::now_utc()).unwrap();
    drop(log);
    card.remove().unwrap();
    let (ok, out) = site.verify_audit_cli();
    assert!(ok, "{out}");

    // Someone rewrites who logged in: the record's signature no longer matches.
    let db = rusqlite::Connection::open(site.dir.path().join("audit.sqlite")).unwrap();
    let record: Vec<u8> = db.query_row("SELECT record FROM audit_records WHERE seq = 1", [], |r| r.get(0)).unwrap();
    let at = record.windows(7).position(|w| w == b"\"alice\"").expect("the login names alice");
    let mut forged = record.clone();
    forged[at + 1..at + 6].copy_from_slice(b"carol");
    db.execute("UPDATE audit_records SET record = ?1 WHERE seq = 1", [&forged]).unwrap();
    drop(db);
    let (ok, out) = site.verify_audit_cli();
    assert!(!ok, "a forged login record must not verify: {out}");
    assert!(out.contains("seq 1") || out.contains("record 1"), "names the forged record: {out}");
}

#[test]
fn a_login_record_the_verifier_would_reject_is_not_written() {
    let (_lock, site, card, mut session, mut log) = alice_at_the_desk();
    // The key is revoked while the desk runs, after the card was accepted and with the
    // audit log already open: the record would not verify, so it is refused at once
    // (not after a restart), and the shell keeps the desk locked.
    let registry = resetdesk::token::registry::TokenRegistry::open_existing(site.dir.path()).unwrap();
    registry.revoke("alice", None, "lost", OffsetDateTime::now_utc() - time::Duration::seconds(1)).unwrap();
    match record_login(&mut log, &mut session, None, OffsetDateTime::now_utc()) {
        Err(PresenceError::Audit { record: "login", source: resetdesk::audit::AuditError::WouldNotVerify(_) }) => {}
        other => panic!("a revoked key's login record must be refused: {other:?}"),
    }
    assert!(site.records().is_empty(), "nothing was written");
    card.remove().unwrap();
}
