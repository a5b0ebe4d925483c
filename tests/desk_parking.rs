//! The cooling-off queue survives a restart: a parked run is stored signed by the
//! agent's card, comes back for that agent only, with its verified steps and its
//! original cooling-off; a changed byte in the stored run is refused.
//! Needs `scripts/pcscd.sh start`; holds the reader lock.

mod desk_support;

use desk_support::{answers_json, at_desk, totp_json};
use resetdesk::desk::parking::ParkingError;
use resetdesk::policy::Method;
use resetdesk::token::RecordSigner;
use resetdesk::workflow::Phase;
use time::{Duration, OffsetDateTime};
use virtual_yubikey::lock_readers;

#[test]
fn a_parked_reset_comes_back_after_a_restart_and_a_changed_one_is_refused() {
    let _lock = lock_readers();
    let (mut site, card, mut alice, _) = at_desk("alice", "246810");
    site.config.policy.standard.cooling_off_minutes = 5;
    let mut desk = site.desk();
    let identity = alice.identity().clone();
    let t0 = OffsetDateTime::now_utc();
    let (mut run, _) = desk.start_reset(&identity, alice.signer().unwrap(), "jsmith", Default::default(), t0).unwrap();
    desk.apply_ui_json(&mut run, &answers_json("jsmith"), alice.signer().unwrap(), t0).unwrap();
    desk.apply_ui_json(&mut run, &totp_json("jsmith", t0), alice.signer().unwrap(), t0).unwrap();
    assert!(run.status().missing.is_empty());
    let earliest = run.status().earliest_reset;
    assert_eq!(earliest, t0 + Duration::minutes(5));
    desk.park(&run, alice.signer().unwrap(), t0).unwrap();
    let request_id = run.request_id().to_owned();
    drop((run, desk));

    // "Restart": a new desk over the same data directory.
    let desk = site.desk();
    let back = desk.parked_runs(alice.signer().unwrap(), t0 + Duration::minutes(1)).unwrap();
    assert_eq!(back.len(), 1);
    let run = back.into_iter().next().unwrap().unwrap();
    assert_eq!(run.request_id(), request_id);
    assert_eq!(run.phase(), Phase::Verifying);
    let status = run.status();
    assert!(status.passed.contains(&Method::SecurityAnswers) && status.passed.contains(&Method::Totp));
    assert_eq!(status.earliest_reset, earliest, "the cooling-off counts from the original request");
    struct OtherKey;
    impl RecordSigner for OtherKey {
        fn key_id(&self) -> [u8; 32] {
            [9; 32]
        }
        fn sign_digest(&mut self, _: &[u8; 32]) -> Result<Vec<u8>, resetdesk::token::SignError> {
            unreachable!("nothing is signed when parked runs are read")
        }
    }
    assert!(desk.parked_runs(&OtherKey, t0).unwrap().is_empty(), "another key sees none of it");

    // One byte of the stored run changed: refused, not loaded.
    let conn = rusqlite::Connection::open(site.dir.path().join("desk.sqlite")).unwrap();
    let snapshot: Vec<u8> = conn.query_row("SELECT snapshot FROM parked_runs", [], |r| r.get(0)).unwrap();
    let text = String::from_utf8(snapshot).unwrap().replacen("\"cooling_off\":300", "\"cooling_off\":0", 1);
    conn.execute("UPDATE parked_runs SET snapshot = ?1", [text.into_bytes()]).unwrap();
    drop(conn);
    let back = desk.parked_runs(alice.signer().unwrap(), t0).unwrap();
    assert!(
        matches!(back.as_slice(), [Err(ParkingError::BadSignature(id))] if *id == request_id),
        "{:?}",
        back.iter().map(|r| r.as_ref().err().map(|e| e.to_string())).collect::<Vec<_>>()
    );

    desk.unpark(&request_id).unwrap();
    assert!(desk.parked_runs(alice.signer().unwrap(), t0).unwrap().is_empty());

    // A run that was carried on (here: cancelled, so the log has a record of its
    // request) never comes back from a stale row, even one its own card signed.
    let mut desk = site.desk();
    let (mut run, _) = desk.start_reset(&identity, alice.signer().unwrap(), "jsmith", Default::default(), t0).unwrap();
    desk.park(&run, alice.signer().unwrap(), t0).unwrap();
    desk.apply_ui_json(&mut run, r#"{"action":"cancel","reason":"requester left"}"#, alice.signer().unwrap(), t0)
        .unwrap();
    let back = desk.parked_runs(alice.signer().unwrap(), t0).unwrap();
    assert!(matches!(back.as_slice(), [Err(ParkingError::AlreadyRecorded(id))] if id == run.request_id()));
    assert!(desk.parked_runs(alice.signer().unwrap(), t0).unwrap().is_empty(), "and the row is gone");
    drop(alice);
    card.remove().unwrap();
}
