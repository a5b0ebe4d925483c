//! The Audit screen's listing says what the offline verifier says: every record of a
//! good log verified, newest first, with its agent, account, outcome and co-signature;
//! after a byte of one record is changed, that record fails and the ones after it are
//! "not checked".

mod audit_support;

use audit_support::desk;
use resetdesk::audit::browse::{browse, AuditFilter, RowCheck};
use resetdesk::audit::store::Store;
use resetdesk::audit::CollectorKeys;

#[test]
fn the_listing_checks_each_record_as_the_verifier_does_and_filters() {
    let d = desk();
    let resolver = d.pki.resolver(&[&d.alice, &d.bob]);
    let store = Store::open_read_only(&d.db).unwrap();
    let page = browse(&store, &resolver, &CollectorKeys::default(), &AuditFilter::default()).unwrap();
    assert!(page.verified, "{:?}", page.first_problem);
    assert_eq!(page.total_records, 6);
    let kinds: Vec<&str> = page.rows.iter().map(|r| r.kind).collect();
    assert_eq!(kinds, ["logout", "reset_outcome", "reset_intent", "reset_outcome", "reset_intent", "login"]);
    assert!(page.rows.iter().all(|r| r.check == RowCheck::Verified));
    assert_eq!(page.rows.iter().filter(|r| r.cosigned).count(), 1, "bob co-signed one intent");
    assert_eq!(page.rows[1].outcome.as_deref(), Some("done"));
    assert_eq!(page.rows[0].agent.as_deref(), Some("alice"));
    assert!(page.sync.contains("not synced"), "{}", page.sync);

    let intents = AuditFilter { event_type: Some("reset_intent".into()), text: None };
    assert_eq!(browse(&store, &resolver, &CollectorKeys::default(), &intents).unwrap().rows.len(), 2);
    let nobody = AuditFilter { event_type: None, text: Some("mallory".into()) };
    assert!(browse(&store, &resolver, &CollectorKeys::default(), &nobody).unwrap().rows.is_empty());
    drop(store);

    // One byte of record 3 changed: it fails, 4.. are not checked, 1-2 still verify.
    let conn = rusqlite::Connection::open(&d.db).unwrap();
    let bytes: Vec<u8> = conn.query_row("SELECT record FROM audit_records WHERE seq = 3", [], |r| r.get(0)).unwrap();
    let mut changed = bytes.clone();
    let last = changed.len() - 2;
    changed[last] ^= 0x01;
    conn.execute("UPDATE audit_records SET record = ?1 WHERE seq = 3", [changed]).unwrap();
    drop(conn);
    let store = Store::open_read_only(&d.db).unwrap();
    let page = browse(&store, &resolver, &CollectorKeys::default(), &AuditFilter::default()).unwrap();
    assert!(!page.verified);
    assert!(page.first_problem.as_deref().is_some_and(|p| p.starts_with("record 3")), "{:?}", page.first_problem);
    let by_seq = |seq: u64| page.rows.iter().find(|r| r.seq == seq).unwrap().check.clone();
    assert_eq!((by_seq(1), by_seq(2)), (RowCheck::Verified, RowCheck::Verified));
    assert!(matches!(by_seq(3), RowCheck::Failed { .. }));
    assert_eq!((by_seq(4), by_seq(6)), (RowCheck::NotChecked, RowCheck::NotChecked));
}
