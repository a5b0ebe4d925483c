//! The desk's sync driver (`resetdesk::upstream`) against the real `resetdesk-collector`
//! process on loopback TLS, its CA pinned: a desk keeps writing while the collector is
//! down and loses nothing once it is up; a driver restarted mid-backlog resumes after
//! its stored receipts; a lost answer is sent again and answered with the same leaves;
//! a record altered at rest is refused by the collector and reported without losing
//! anything; receipts under another key are refused; and a collector that shows the
//! desk another tree under the same key is caught as a fork (a durable alert row),
//! online and by `audit verify --collector`.

#[path = "../../tests/audit_support/mod.rs"]
mod audit_support;
#[path = "process_support/mod.rs"]
mod process_support;

use std::path::Path;
use std::time::{Duration, Instant};

use audit_support::{reset_facts, Pki, SoftSigner};
use process_support::{drain, Collector, DeskLog};
use resetdesk::audit::browse::{browse, AuditFilter};
use resetdesk::audit::store::Store;
use resetdesk::audit::{verify_store, AuditLog, CollectorKeys, DirectoryOutcome, Event, EventType, Receipt, Record};
use resetdesk::sync::SyncSettings;
use resetdesk::upstream::driver::{CertificateSet, Step};
use resetdesk::upstream::online::check_against_collector;
use resetdesk::upstream::witness::ForkError;
use resetdesk::upstream::{ClientError, CollectorClient, SyncDriver, SyncError};

const MAX_BODY: usize = 4 * 1024 * 1024;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn keys(vkey: &str) -> CollectorKeys {
    let mut k = CollectorKeys::default();
    k.add_verifier_key(vkey).unwrap();
    k
}

fn settings(max_batch: u64) -> SyncSettings {
    SyncSettings { max_batch, base_delay: Duration::from_millis(20), max_delay: Duration::from_millis(200) }
}

/// A driver of `desk`'s log for the collector at `url` (pinning `c`'s CA), trusting `vkey`.
fn driver_for(desk: &DeskLog, c: &Collector, url: &str, vkey: &str, max_batch: u64) -> SyncDriver {
    let client = CollectorClient::new(url, Some(&c.ca_pem())).unwrap();
    let mut certs = CertificateSet::default();
    for der in &desk.certs {
        certs.add_der(der.clone()).unwrap();
    }
    SyncDriver::new(&desk.db, client, keys(vkey), Box::new(certs), settings(max_batch)).unwrap()
}

fn driver(desk: &DeskLog, c: &Collector, max_batch: u64) -> SyncDriver {
    driver_for(desk, c, &c.base_url(), &c.vkey, max_batch)
}

/// A reset (intent + outcome) by alice in the log at `db`.
fn reset(db: &Path, alice: &mut SoftSigner, target: &str) {
    let mut log = AuditLog::open(db).unwrap();
    let now = time::OffsetDateTime::now_utc;
    let facts = reset_facts("alice", target);
    let i = log.append(&Event::reset_intent(&facts).unwrap(), alice, now()).unwrap();
    let outcome = Event::reset_outcome(i.intent_ref(), &DirectoryOutcome::Done, &facts).unwrap();
    log.append(&outcome, alice, now()).unwrap();
}

/// Wait (up to 30 s) until the running driver behind `handle` has receipts up to `seq`.
fn wait_acknowledged(handle: &resetdesk::upstream::SyncHandle, seq: u64) {
    let until = Instant::now() + Duration::from_secs(30);
    while handle.report().status.acknowledged < seq {
        assert!(Instant::now() < until, "not synced to {seq}: {:?}", handle.report());
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn stored_receipts(db: &Path) -> Vec<Receipt> {
    Store::open_read_only(db).unwrap().receipts().unwrap()
}

fn leaf_of(r: &Receipt) -> (u64, u64) {
    match r {
        Receipt::Inclusion(i) => (i.seq, i.leaf_index),
        Receipt::Legacy(_) => panic!("a v1 receipt"),
    }
}

fn alerts(db: &Path) -> Vec<String> {
    Store::open_read_only(db).unwrap().alerts().unwrap().into_iter().map(|a| a.kind).collect()
}

fn offline(db: &Path, pki: &Pki, c: &Collector) -> resetdesk::audit::Summary {
    let store = Store::open_read_only(db).unwrap();
    let resolver = pki.resolver(&[&SoftSigner::from_seed("alice", 1)]);
    verify_store(&store, &resolver, &[], &c.trusted(), &[]).unwrap()
}

#[test]
fn resets_while_the_collector_is_down_all_reach_it_in_order_once_it_is_up() {
    let pki = Pki::new(1);
    let port = free_port();
    let mut c = Collector::prepare(&pki.ca_pem(), MAX_BODY, &format!("127.0.0.1:{port}"), None);
    c.port = port;
    let desk = DeskLog::write(&pki, 1); // login + one reset: 3 records
    let mut d = driver(&desk, &c, 4);

    // Down: the step fails, nothing is stored, the state says so.
    assert!(matches!(d.step(), Err(SyncError::Client(ClientError::Unreachable { .. }))));
    let r = d.report();
    assert!(!r.status.reachable && r.status.failures == 1 && r.status.queued == 3, "{r:?}");
    assert!(r.status.last_error.as_deref().unwrap().contains("cannot reach the collector"));
    // The desk goes on resetting meanwhile.
    let mut alice = SoftSigner::from_seed("alice", 1);
    for k in 0..3 {
        reset(&desk.db, &mut alice, &format!("late{k}"));
    }
    std::thread::sleep(Duration::from_millis(30));
    assert!(d.step().is_err());
    assert_eq!(d.report().status.queued, 9);
    assert!(stored_receipts(&desk.db).is_empty());
    assert!(alerts(&desk.db).is_empty(), "an outage is not an alert");

    c.restart();
    drain(&mut d);
    let r = d.report();
    assert!(r.status.reachable && r.status.queued == 0 && r.status.last_error.is_none(), "{r:?}");
    assert_eq!(r.last_receipt.as_ref().map(|l| (l.seq, l.tree_size)), Some((9, 9)));
    assert_eq!(r.witnessed_size, Some(9));
    // Every record once, in seq order: record seq k is leaf k-1.
    let leaves: Vec<_> = stored_receipts(&desk.db).iter().map(leaf_of).collect();
    assert_eq!(leaves, (1..=9).map(|s| (s, s - 1)).collect::<Vec<_>>());
    assert_eq!(c.tree_size(), 9);
    let summary = offline(&desk.db, &pki, &c);
    assert_eq!((summary.records, summary.receipts_checked, summary.receipted_up_to), (9, 9, 9));
    // The Audit screen's listing checks the receipts with the collector's key.
    let store = Store::open_read_only(&desk.db).unwrap();
    let resolver = pki.resolver(&[&SoftSigner::from_seed("alice", 1)]);
    let page = browse(&store, &resolver, &c.trusted(), &AuditFilter::default()).unwrap();
    assert!(page.verified && page.receipted_up_to == 9 && page.rows.iter().all(|r| r.receipted), "{page:?}");
    drop(store);

    // The next heartbeat states the latest receipt, and it too goes up.
    let mut log = AuditLog::open(&desk.db).unwrap();
    let session = serde_json::json!({"agent": "alice", "workstation": "desk-3"});
    log.heartbeat(EventType::Logout, &session, &mut alice, time::OffsetDateTime::now_utc()).unwrap();
    drop(log);
    let hb: serde_json::Value =
        serde_json::from_slice(&Record::decode(&desk.records()[9].record).unwrap().payload).unwrap();
    assert_eq!(hb["last_receipt"]["tree_size"], 9);
    drain(&mut d);
    assert_eq!(c.tree_size(), 10);

    // The auditor's online check: the current tree extends every stored checkpoint.
    let client = CollectorClient::new(&c.base_url(), Some(&c.ca_pem())).unwrap();
    let store = Store::open_read_only(&desk.db).unwrap();
    let online = check_against_collector(&store, &client, &c.trusted()).unwrap();
    assert_eq!((online.collector_size, online.held_size, online.receipts_included), (10, Some(10), 10));
}

#[test]
fn a_driver_restarted_mid_backlog_resumes_after_its_receipts_and_a_lost_answer_is_resent_without_doubling() {
    let pki = Pki::new(1);
    let c = Collector::start(&pki);
    let desk = DeskLog::write(&pki, 4); // 9 records
    let mut d = driver(&desk, &c, 3);
    assert_eq!(d.step().unwrap(), Step::Sent { first: 1, covered: 3 });
    drop(d); // the app quits mid-backlog

    let mut d = driver(&desk, &c, 3);
    assert_eq!(d.report().status.queued, 6, "starts from the stored receipts");
    assert_eq!(d.step().unwrap(), Step::Sent { first: 4, covered: 6 });
    drain(&mut d);
    drop(d);
    let first: Vec<_> = stored_receipts(&desk.db).iter().map(leaf_of).collect();
    assert_eq!(first, (1..=9).map(|s| (s, s - 1)).collect::<Vec<_>>());

    // The desk lost the answers for 7..=9 (as if it died before storing them): they
    // go again, the collector answers with the same leaves and stores nothing new.
    let db = rusqlite::Connection::open(&desk.db).unwrap();
    db.execute("DELETE FROM audit_receipts WHERE tree_size > 6", []).unwrap();
    drop(db);
    let mut d = driver(&desk, &c, 3);
    assert_eq!(d.report().status.queued, 3);
    assert_eq!(d.step().unwrap(), Step::Sent { first: 7, covered: 9 });
    assert_eq!(c.tree_size(), 9, "a repeat stores nothing");
    let again: Vec<_> = stored_receipts(&desk.db).iter().map(leaf_of).collect();
    assert_eq!(again, first);
    assert_eq!(offline(&desk.db, &pki, &c).receipted_up_to, 9);
}

#[test]
fn a_record_altered_at_rest_is_refused_and_reported_and_nothing_is_lost() {
    let pki = Pki::new(1);
    let c = Collector::start(&pki);
    let desk = DeskLog::write(&pki, 2); // 5 records
    let db = rusqlite::Connection::open(&desk.db).unwrap();
    let original: Vec<u8> = db.query_row("SELECT record FROM audit_records WHERE seq = 3", [], |r| r.get(0)).unwrap();
    let mut altered = original.clone();
    let last = altered.len() - 1;
    altered[last] ^= 1; // a byte of the payload
    db.execute("UPDATE audit_records SET record = ?1 WHERE seq = 3", [&altered]).unwrap();

    let mut d = driver(&desk, &c, 10);
    let e = d.step().unwrap_err();
    assert!(
        matches!(&e, SyncError::Client(ClientError::Refused { status: 422, body }) if body.error == "invalid_record" && body.seq == Some(3)),
        "{e}"
    );
    let r = d.report();
    assert_eq!((r.status.queued, r.status.acknowledged), (5, 0), "nothing acknowledged, nothing dropped");
    assert!(r.alert.as_deref().unwrap().starts_with("refused:"), "{r:?}");
    assert_eq!(alerts(&desk.db), ["refused"]);
    assert_eq!(c.tree_size(), 0, "the batch is all or nothing");
    assert_eq!(Store::open_read_only(&desk.db).unwrap().range(1, 5).unwrap().len(), 5);

    // Repaired (restored from the desk's backup): the same records go through.
    db.execute("UPDATE audit_records SET record = ?1 WHERE seq = 3", [&original]).unwrap();
    drain(&mut d);
    assert_eq!(offline(&desk.db, &pki, &c).receipted_up_to, 5);
}

#[test]
fn receipts_that_do_not_verify_with_the_configured_key_are_refused_and_alerted() {
    let pki = Pki::new(1);
    let c = Collector::start(&pki);
    let other = Collector::prepare(&pki.ca_pem(), MAX_BODY, "127.0.0.1:0", None);
    let desk = DeskLog::write(&pki, 1);
    let mut d = driver_for(&desk, &c, &c.base_url(), &other.vkey, 10);
    let e = d.step().unwrap_err();
    assert!(matches!(e, SyncError::BadReceipt { seq: 1, .. }), "{e}");
    assert!(stored_receipts(&desk.db).is_empty());
    assert_eq!(alerts(&desk.db), ["bad_receipt"]);
    let r = d.report();
    assert_eq!(r.status.queued, 3);
    assert!(r.describe().contains("ALERT bad_receipt"), "{}", r.describe());
}

#[test]
fn a_collector_showing_another_tree_under_the_same_key_is_a_fork() {
    let pki = Pki::new(1);
    let a = Collector::start(&pki);
    let desk = DeskLog::write(&pki, 1); // 3 records
    let mut d = driver(&desk, &a, 10);
    drain(&mut d);
    assert_eq!(d.report().witnessed_size, Some(3));
    drop(d);

    // B holds A's key but another history: five records of another desk.
    let mut b = Collector::prepare(&pki.ca_pem(), MAX_BODY, "127.0.0.1:0", Some(&a));
    b.restart();
    let stranger = DeskLog::write_by(&pki, SoftSigner::from_seed("alice", 1), 2);
    b.accept(&stranger, 0..5);
    let mut d = driver_for(&desk, &b, &b.base_url(), &a.vkey, 10);
    let e = d.witness_current().unwrap_err();
    assert!(matches!(e, SyncError::Fork(ForkError::NotAnExtension { smaller: 3, larger: 5 })), "{e}");
    assert_eq!(alerts(&desk.db), ["fork"]);
    assert!(d.report().alert.unwrap().contains("FORK"));
    // The desk still holds A's checkpoint, not B's.
    assert_eq!(d.report().witnessed_size, Some(3));
    let client = CollectorClient::new(&b.base_url(), Some(&b.ca_pem())).unwrap();
    let store = Store::open_read_only(&desk.db).unwrap();
    let e = check_against_collector(&store, &client, &a.trusted()).unwrap_err();
    assert!(matches!(e, SyncError::Fork(_)), "{e}");
    drop(d);

    // C, same key, a smaller tree (a collector restarted on another database): rolled back.
    let mut c = Collector::prepare(&pki.ca_pem(), MAX_BODY, "127.0.0.1:0", Some(&a));
    c.restart();
    c.accept(&DeskLog::write(&pki, 0), 0..1);
    let mut d = driver_for(&desk, &c, &c.base_url(), &a.vkey, 10);
    let e = d.witness_current().unwrap_err();
    assert!(matches!(e, SyncError::Fork(ForkError::Behind { held: 3, new: 1 })), "{e}");
    assert_eq!(alerts(&desk.db), ["fork", "fork"]);

    // B learns this desk's first records after its own history and takes the next
    // ones: its receipts are for a tree that does not extend A's, so they are refused.
    b.post(desk.batch(0..3));
    reset(&desk.db, &mut SoftSigner::from_seed("alice", 1), "on-b");
    let mut d = driver_for(&desk, &b, &b.base_url(), &a.vkey, 10);
    let e = d.step().unwrap_err();
    assert!(matches!(e, SyncError::Fork(ForkError::NotAnExtension { smaller: 3, larger: 10 })), "{e}");
    assert_eq!(stored_receipts(&desk.db).len(), 3, "no receipt from the forked tree is kept");
    assert_eq!(d.report().status.queued, 2);
    // Retried, the same fork is still refused but recorded once.
    std::thread::sleep(Duration::from_millis(250));
    assert!(d.step().is_err());
    assert_eq!(alerts(&desk.db), ["fork", "fork", "fork"]);

    // A itself, grown by another desk, is still consistent.
    a.accept(&stranger, 0..5);
    let mut d = driver(&desk, &a, 10);
    assert_eq!(d.witness_current().unwrap().tree_size, 8);
    assert_eq!(d.report().witnessed_size, Some(8));
    drain(&mut d);
    assert_eq!(offline(&desk.db, &pki, &a).receipted_up_to, 5);
}

#[test]
fn the_sync_command_and_audit_verify_collector_over_a_configured_desk() {
    use resetdesk::cli::audit::{Command, Source, VerifyArgs};
    let pki = Pki::new(1);
    let c = Collector::start(&pki);
    let desk = DeskLog::write(&pki, 1);
    // A first pass that sends alice's certificate (the collector keeps it; this data
    // directory has no token registry to take it from).
    drain(&mut driver(&desk, &c, 10));
    let mut alice = SoftSigner::from_seed("alice", 1);
    reset(&desk.db, &mut alice, "after");
    let data_dir = desk.db.parent().unwrap().to_owned();
    let tls_ca = c.dir.path().join("tls/ca.pem");
    std::fs::write(
        data_dir.join("resetdesk.toml"),
        format!(
            "[collector]\nurl = \"{}\"\nverifier_key = \"{}\"\nca_file = \"{}\"\n",
            c.base_url(),
            c.vkey,
            tls_ca.display()
        ),
    )
    .unwrap();
    let sync =
        |watch| resetdesk::cli::sync::SyncArgs { data_dir: data_dir.clone(), config: None, watch, poll: 1, json: true };
    assert_eq!(resetdesk::cli::sync::run(sync(false)), 0);
    assert_eq!(stored_receipts(&desk.db).len(), 5);

    let org_ca = data_dir.join("org-ca.pem");
    std::fs::write(&org_ca, pki.ca_pem()).unwrap();
    let certs = data_dir.join("certs");
    std::fs::create_dir(&certs).unwrap();
    std::fs::write(certs.join("alice.pem"), resetdesk::audit::resolver::certificate_pem(&desk.certs[0])).unwrap();
    let verify = |url: String, vkey: &str, tls_ca: &Path| {
        resetdesk::cli::audit::run(Command::Verify(VerifyArgs {
            source: Source {
                data_dir: None,
                db: Some(desk.db.clone()),
                ca: Some(org_ca.clone()),
                certs: Some(certs.clone()),
            },
            export: None,
            receipts: None,
            collector_key: vec![],
            collector_vkey: vec![vkey.to_owned()],
            anchors: None,
            collector: Some(url),
            collector_ca: Some(tls_ca.to_owned()),
            threads: Some(1),
        }))
    };
    assert_eq!(verify(c.base_url(), &c.vkey, &tls_ca), 0);
    // Another tree under the same key: the online check fails.
    let mut b = Collector::prepare(&pki.ca_pem(), MAX_BODY, "127.0.0.1:0", Some(&c));
    b.restart();
    b.accept(&DeskLog::write(&pki, 3), 0..7);
    assert_eq!(verify(b.base_url(), &c.vkey, &b.dir.path().join("tls/ca.pem")), 1);
}

#[test]
fn the_background_driver_sends_records_as_they_are_written_and_stops_when_told() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let pki = Pki::new(1);
    let c = Collector::start(&pki);
    let desk = DeskLog::write(&pki, 0);
    let mut d = driver(&desk, &c, 2);
    let handle = d.handle();
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let worker =
        std::thread::spawn(move || d.run(Duration::from_millis(20), Duration::from_millis(100), flag.as_ref()));
    let mut alice = SoftSigner::from_seed("alice", 1);
    let wait_for = |seq: u64| wait_acknowledged(&handle, seq);
    wait_for(1);
    for k in 0..3 {
        reset(&desk.db, &mut alice, &format!("bg{k}"));
    }
    wait_for(7);
    stop.store(true, Ordering::Relaxed);
    worker.join().unwrap();
    let r = handle.report();
    assert_eq!((r.status.queued, r.witnessed_size), (0, Some(7)), "{r:?}");
    assert_eq!(offline(&desk.db, &pki, &c).receipted_up_to, 7);
}

#[test]
fn the_sync_task_on_a_tokio_runtime_sends_records_as_they_are_written_and_hands_the_driver_back_when_stopped() {
    let pki = Pki::new(1);
    let c = Collector::start(&pki);
    let desk = DeskLog::write(&pki, 0);
    let d = driver(&desk, &c, 2);
    let handle = d.handle();
    // One worker thread: the task's waits take none, its steps run on the blocking pool.
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let task = runtime.spawn(d.run_task(Duration::from_millis(20), Duration::from_millis(100), stopped));
    let mut alice = SoftSigner::from_seed("alice", 1);
    let wait_for = |seq: u64| wait_acknowledged(&handle, seq);
    wait_for(1);
    for k in 0..3 {
        reset(&desk.db, &mut alice, &format!("task{k}"));
    }
    wait_for(7);
    stop.send(true).unwrap();
    let driver = runtime.block_on(task).unwrap().unwrap();
    let r = driver.report();
    assert_eq!((r.status.queued, r.witnessed_size), (0, Some(7)), "{r:?}");
    assert_eq!(offline(&desk.db, &pki, &c).receipted_up_to, 7);
}

/// A login heartbeat by alice in the log at `db`: the collector checkpoint it states.
fn heartbeat(db: &Path, alice: &mut SoftSigner) -> Option<resetdesk::audit::event::CheckpointRef> {
    use resetdesk::audit::event::parse_payload;
    let mut log = AuditLog::open(db).unwrap();
    let appended = log
        .heartbeat(EventType::Login, &serde_json::json!({"agent": "alice"}), alice, time::OffsetDateTime::now_utc())
        .unwrap();
    let stored = Store::open_read_only(db).unwrap().get(appended.seq).unwrap().unwrap();
    let record = Record::decode(&stored.record).unwrap();
    parse_payload(record.event_type, &record.payload).unwrap().collector_checkpoint
}

#[test]
fn heartbeats_state_the_witnessed_checkpoint_and_the_online_check_proves_those_too() {
    use resetdesk::audit::verify_signed_checkpoint;
    let pki = Pki::new(1);
    let c = Collector::start(&pki);
    let desk = DeskLog::write(&pki, 1);
    let mut alice = SoftSigner::from_seed("alice", 1);
    assert_eq!(heartbeat(&desk.db, &mut alice), None, "nothing witnessed yet, nothing stated");
    drain(&mut driver(&desk, &c, 10));
    let shown =
        verify_signed_checkpoint(std::str::from_utf8(&c.get("/checkpoint").1).unwrap(), &keys(&c.vkey)).unwrap();
    let stated = heartbeat(&desk.db, &mut alice).expect("the heartbeat states the witnessed checkpoint");
    assert_eq!(
        (stated.origin.as_str(), stated.tree_size, stated.root_hash),
        (shown.origin.as_str(), shown.tree_size, shown.root_hash)
    );
    drain(&mut driver(&desk, &c, 10));
    let store = Store::open_read_only(&desk.db).unwrap();
    let check = check_against_collector(&store, &c.desk_client(None), &keys(&c.vkey)).unwrap();
    assert_eq!(check.heartbeat_checkpoints, 1);
    drop(store);

    // Collector B (the same key, another tree) had shown this desk its tree: the desk
    // kept B's checkpoint and stated it in a heartbeat. The receipts all come from c
    // and prove against c, but the heartbeat's statement does not: the split view shows.
    let mut b = Collector::prepare(&pki.ca_pem(), MAX_BODY, "127.0.0.1:0", Some(&c));
    b.restart();
    b.accept(&DeskLog::write(&pki, 3), 0..7);
    let b_note = String::from_utf8(b.get("/checkpoint").1).unwrap();
    let b_cp = verify_signed_checkpoint(&b_note, &keys(&c.vkey)).unwrap();
    let db = rusqlite::Connection::open(&desk.db).unwrap();
    db.execute(
        "INSERT INTO collector_checkpoints (origin, tree_size, root_hash, note, seen_ms) VALUES (?1, ?2, ?3, ?4, 0)",
        rusqlite::params![b_cp.origin, b_cp.tree_size as i64 + 1000, b_cp.root_hash.as_slice(), b_note],
    )
    .unwrap();
    drop(db);
    let stated = heartbeat(&desk.db, &mut alice).unwrap();
    assert_eq!(stated.root_hash, b_cp.root_hash);
    // Keep the held checkpoint out of the way: only the heartbeat names B's tree now.
    let db = rusqlite::Connection::open(&desk.db).unwrap();
    db.execute("DELETE FROM collector_checkpoints WHERE note = ?1", [&b_note]).unwrap();
    drop(db);
    let store = Store::open_read_only(&desk.db).unwrap();
    match check_against_collector(&store, &c.desk_client(None), &keys(&c.vkey)) {
        Err(SyncError::Fork(_)) => {}
        other => panic!("the heartbeat's other tree was not caught: {other:?}"),
    }
    // The offline verifier accepts heartbeats that state a checkpoint.
    assert_eq!(offline(&desk.db, &pki, &c).records, 6);
}
