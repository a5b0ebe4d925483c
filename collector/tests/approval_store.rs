//! The `ApprovalStore` contract on SQLite and on PostgreSQL: a registration replaces an
//! earlier one only for the same desk and only until a denial; a decision is taken once,
//! before the expiry, also when two store handles (two collector instances) race.

#[path = "pg_support/mod.rs"]
mod pg_support;

use resetdesk_collector::approval::{ApprovalRow, ApprovalStore};
use resetdesk_collector::store::{PgStore, SqliteStore};

fn row(request_id: &str, desk: &str, hash: u8, expires_ms: u64) -> ApprovalRow {
    ApprovalRow {
        request_id: request_id.into(),
        desk: desk.into(),
        token_hash: [hash; 32],
        manager: "dgarcia".into(),
        address: "dgarcia@example.com".into(),
        agent: "alice".into(),
        agent_name: "Alice <A>".into(),
        agent_employee_id: String::new(),
        account: "jsmith".into(),
        account_name: "Jordan Smith".into(),
        reasons: vec!["privileged".into(), "it's \"quoted\"".into()],
        created_ms: 1_000,
        expires_ms,
        decision: None,
        decided_ms: None,
        note: None,
    }
}

fn contract<S: ApprovalStore>(a: &mut S, b: &mut S) {
    let r = row("req-1", "desk-1", 1, 10_000);
    assert!(a.register_approval(&r).unwrap());
    assert_eq!(b.approval_by_token(&[1; 32]).unwrap(), Some(r.clone()), "read back whole, by the other handle");
    assert_eq!(b.approval_by_request("req-1").unwrap(), Some(r.clone()));
    assert_eq!(a.approval_by_token(&[2; 32]).unwrap(), None);

    // The same desk asks again: the new token replaces the old one.
    let again = row("req-1", "desk-1", 2, 20_000);
    assert!(b.register_approval(&again).unwrap());
    assert_eq!(a.approval_by_token(&[1; 32]).unwrap(), None, "the old token stops counting");
    // Another desk cannot take the request over.
    assert!(!a.register_approval(&row("req-1", "desk-2", 3, 20_000)).unwrap());

    // Expired: nothing recorded. Then once, whichever handle comes first.
    assert!(!a.decide_approval(&[2; 32], true, "note-late", 20_000).unwrap());
    assert!(a.decide_approval(&[2; 32], false, "note-1", 5_000).unwrap());
    assert!(!b.decide_approval(&[2; 32], true, "note-2", 5_001).unwrap(), "once");
    let decided = b.approval_by_request("req-1").unwrap().unwrap();
    assert_eq!(
        (decided.decision, decided.decided_ms, decided.note.as_deref()),
        (Some(false), Some(5_000), Some("note-1"))
    );

    // Denied: the request has ended, even for its own desk.
    assert!(!b.register_approval(&row("req-1", "desk-1", 4, 30_000)).unwrap());
    // An approved request may be asked again (the desk's new token replaces it).
    assert!(a.register_approval(&row("req-2", "desk-1", 5, 30_000)).unwrap());
    assert!(a.decide_approval(&[5; 32], true, "note-3", 6_000).unwrap());
    assert!(a.register_approval(&row("req-2", "desk-1", 6, 40_000)).unwrap());
    assert_eq!(a.approval_by_request("req-2").unwrap().unwrap().decision, None);
}

#[test]
fn the_approval_store_contract_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("collector.db");
    let (mut a, mut b) = (SqliteStore::open(&path).unwrap(), SqliteStore::open(&path).unwrap());
    contract(&mut a, &mut b);
}

#[test]
fn the_approval_store_contract_on_postgres() {
    let Some(db) = pg_support::PgDatabase::create() else { return };
    let (mut a, mut b) = (PgStore::connect(&db.url).unwrap(), PgStore::connect(&db.url).unwrap());
    contract(&mut a, &mut b);
}
