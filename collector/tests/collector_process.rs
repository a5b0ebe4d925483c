//! The real `resetdesk-collector` binary on loopback with TLS, fed records from real
//! desk logs (written by `AuditLog`, signed with software P-256 keys certified by a
//! test organisation CA): receipts verify offline, duplicates are idempotent,
//! altered, forked, gapped, unsigned and unknown-signer batches are refused with
//! typed errors and alert rows, and a SIGKILL mid-batch loses or doubles no leaf.

#[path = "../../tests/audit_support/mod.rs"]
mod audit_support;
#[path = "../../tests/desk_support/mod.rs"]
mod desk_support;

#[path = "process_support/mod.rs"]
mod process_support;

use std::time::Duration;

use audit_support::{reset_facts, Pki, SoftSigner};
use process_support::{Collector, DeskLog};
use resetdesk::audit::record::entry_hash;
use resetdesk::audit::store::Store;
use resetdesk::audit::{verify_signed_checkpoint, verify_store, AuditLog, CollectorKeys, Event, Hash32, Receipt};
use resetdesk_collector::wire::{encode_batch, AddRecordsResponse};

fn receipts(answer: &AddRecordsResponse) -> Vec<Receipt> {
    answer.receipts.iter().map(|r| Receipt::from_json(&r.to_string()).unwrap()).collect()
}

fn leaf_indexes(answer: &AddRecordsResponse) -> Vec<u64> {
    receipts(answer)
        .iter()
        .map(|r| match r {
            Receipt::Inclusion(i) => i.leaf_index,
            Receipt::Legacy(_) => panic!("the collector issued a v1 receipt"),
        })
        .collect()
}

#[test]
fn receipts_for_a_desk_log_verify_offline_and_the_log_serves_tiles_and_proofs() {
    let (pki, desk) = DeskLog::cosigned();
    let c = Collector::start(&pki);
    assert_eq!(c.tree_size(), 0);
    let records = desk.records();
    assert_eq!(records.len(), 6);
    let answer = c.accept(&desk, 0..6);
    assert_eq!(answer.tree_size, 6);
    assert_eq!(leaf_indexes(&answer), (0..6).collect::<Vec<_>>());

    // The desk keeps the receipts; the offline verifier checks them with the vkey.
    let mut log = AuditLog::open(&desk.db).unwrap();
    for r in receipts(&answer) {
        log.add_receipt(&r).unwrap();
    }
    // The next heartbeat states the latest receipt (the seq and entry hash it vouches for).
    let session = serde_json::json!({"agent": "alice", "workstation": "desk-3"});
    let mut alice = SoftSigner::from_seed("alice", 1);
    let hb = log.heartbeat(resetdesk::audit::EventType::Login, &session, &mut alice, time::OffsetDateTime::now_utc());
    assert_eq!(hb.unwrap().seq, 7);
    drop(log);
    let payload = resetdesk::audit::Record::decode(&desk.records()[6].record).unwrap().payload;
    let hb: serde_json::Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(hb["last_receipt"]["tree_size"], 6);
    assert_eq!(hb["last_receipt"]["head_hash"], hex::encode(entry_hash(&records[5].record)));
    let store = Store::open_read_only(&desk.db).unwrap();
    let resolver = pki.resolver(&[&SoftSigner::from_seed("alice", 1), &SoftSigner::from_seed("bob", 2)]);
    let summary = verify_store(&store, &resolver, &[], &c.trusted(), &[]).unwrap();
    assert_eq!((summary.records, summary.receipts_checked, summary.receipted_up_to), (7, 6, 6));
    assert_eq!(leaf_indexes(&c.accept(&desk, 6..7)), vec![6]);
    // Without the collector's key the receipts are not trusted.
    let other = CollectorKeys::default();
    assert!(verify_store(&store, &resolver, &[], &other, &[]).is_err());

    // Tiles: level 0 holds the entry hashes, the bundle holds the records.
    let (status, tile) = c.get("/tile/0/000.p/6");
    assert_eq!(status, 200);
    for (i, r) in records.iter().enumerate() {
        assert_eq!(&tile[i * 32..(i + 1) * 32], &entry_hash(&r.record));
    }
    let (status, bundle) = c.get("/tile/entries/000.p/6");
    assert_eq!(status, 200);
    let mut at = 0;
    for r in &records {
        let len = usize::from(u16::from_be_bytes([bundle[at], bundle[at + 1]]));
        assert_eq!(&bundle[at + 2..at + 2 + len], r.record.as_slice());
        at += 2 + len;
    }
    assert_eq!(c.get("/tile/0/000.p/8").0, 404);
    assert_eq!(c.get("/tile/0/000").0, 404);
    assert_eq!(c.get("/tile/0/12345").0, 400);

    // Proofs by entry hash and between sizes, checked with the field's crate.
    let hash = hex::encode(entry_hash(&records[3].record));
    let (status, body) = c.get(&format!("/proof/inclusion?hash={hash}"));
    assert_eq!(status, 200);
    let p: resetdesk_collector::wire::InclusionResponse = serde_json::from_slice(&body).unwrap();
    assert_eq!((p.leaf_index, p.tree_size, p.seq), (3, 7, 4));
    let cp = verify_signed_checkpoint(&p.checkpoint, &c.trusted()).unwrap();
    let proof: Vec<_> = p.proof.iter().map(|h| tlog_tiles::Hash(decode32(h))).collect();
    tlog_tiles::check_record(
        &proof,
        7,
        tlog_tiles::Hash(cp.root_hash),
        3,
        tlog_tiles::Hash(entry_hash(&records[3].record)),
    )
    .unwrap();

    let more = DeskLog::write(&pki, 2);
    c.accept(&more, 0..5);
    let (status, note) = c.get("/checkpoint");
    assert_eq!(status, 200);
    let new = verify_signed_checkpoint(std::str::from_utf8(&note).unwrap(), &c.trusted()).unwrap();
    assert_eq!(new.tree_size, 12);
    let (status, body) = c.get("/proof/consistency?old=7&new=12");
    assert_eq!(status, 200);
    let p: resetdesk_collector::wire::ConsistencyResponse = serde_json::from_slice(&body).unwrap();
    let proof: Vec<_> = p.proof.iter().map(|h| tlog_tiles::Hash(decode32(h))).collect();
    tlog_tiles::check_tree(&proof, 12, tlog_tiles::Hash(new.root_hash), 7, tlog_tiles::Hash(cp.root_hash)).unwrap();
    assert_eq!(c.get("/proof/consistency?old=7&new=13").0, 404);
    assert!(c.alerts().is_empty());
}

fn decode32(s: &str) -> Hash32 {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(s).unwrap().try_into().unwrap()
}

#[test]
fn duplicate_delivery_is_answered_with_the_same_receipts_and_stores_nothing_twice() {
    let pki = Pki::new(1);
    let desk = DeskLog::write(&pki, 3);
    let c = Collector::start(&pki);
    let first = c.accept(&desk, 0..4);
    let again = c.accept(&desk, 0..4);
    assert_eq!(leaf_indexes(&first), leaf_indexes(&again));
    assert_eq!(first.tree_size, again.tree_size);
    // Overlapping: the known prefix is answered, the rest appended.
    let overlap = c.accept(&desk, 2..7);
    assert_eq!(leaf_indexes(&overlap), vec![2, 3, 4, 5, 6]);
    assert_eq!(c.tree_size(), 7);
    let n: i64 = c.db().query_row("SELECT count(*) FROM leaves", [], |r| r.get(0)).unwrap();
    assert_eq!(n, 7);
}

#[test]
fn altered_forked_gapped_and_unsigned_records_are_refused_with_typed_errors_and_alerts() {
    let pki = Pki::new(1);
    let desk = DeskLog::write(&pki, 3);
    let c = Collector::start(&pki);
    let recs = desk.records();
    let log_id = desk.log_id();

    // A gap: 1-2, then 4-.
    c.accept(&desk, 0..2);
    let (status, e) = c.refuse(desk.batch(3..7));
    assert_eq!((status, e.error.as_str(), e.seq), (409, "gap", Some(4)));
    // Out of order inside a batch (a good record 3, then 2): nothing of it is kept.
    let swapped = vec![recs[2].clone(), recs[1].clone()];
    let (status, e) = c.refuse(encode_batch(&log_id, &desk.certs, &swapped));
    assert_eq!((status, e.error.as_str(), e.seq), (409, "seq_backwards", Some(2)));
    assert_eq!(c.tree_size(), 2);

    // Altered in transit: one payload byte of record 3 changed.
    let mut altered = recs[2].clone();
    let last = altered.record.len() - 3;
    altered.record[last] ^= 0x01;
    let (status, e) = c.refuse(encode_batch(&log_id, &desk.certs, &[altered]));
    assert_eq!((status, e.error.as_str(), e.seq), (422, "invalid_record", Some(3)));
    assert_eq!(c.tree_size(), 2);

    // Unsigned, and signed by a key the collector cannot tie to the CA.
    let mut unsigned = recs[2].clone();
    unsigned.signature.clear();
    let (status, e) = c.refuse(encode_batch(&log_id, &desk.certs, &[unsigned]));
    assert_eq!((status, e.error.as_str()), (400, "malformed_body"));
    let stranger = Pki::new(7);
    let foreign_cert = stranger.issue(&SoftSigner::from_seed("alice", 1));
    let (status, e) = c.refuse(encode_batch(&log_id, &[foreign_cert], &recs[2..3]));
    assert_eq!((status, e.error.as_str()), (403, "untrusted_certificate"));
    let mallory_log = DeskLog::write_by(&stranger, SoftSigner::from_seed("mallory", 9), 1);
    let (status, e) = c.refuse(encode_batch(&mallory_log.log_id(), &[], &mallory_log.records()));
    assert_eq!((status, e.error.as_str()), (403, "unknown_signer"));

    // Malformed and oversized bodies.
    assert_eq!(c.refuse(b"not json".to_vec()).1.error, "malformed_body");
    assert_eq!(c.refuse(br#"{"log_id":"00","records":[]}"#.to_vec()).1.error, "malformed_body");

    // A fork: the same seq with other bytes, validly signed, from a copy of the log.
    c.accept(&desk, 2..7);
    let fork_dir = tempfile::tempdir().unwrap();
    let fork_db = fork_dir.path().join("audit.sqlite");
    std::fs::copy(&desk.db, &fork_db).unwrap();
    let conn = rusqlite::Connection::open(&fork_db).unwrap();
    conn.execute("DELETE FROM audit_records WHERE seq > 5", []).unwrap();
    drop(conn);
    let mut alice = SoftSigner::from_seed("alice", 1);
    let mut log = AuditLog::open(&fork_db).unwrap();
    let facts = reset_facts("alice", "someone-else");
    log.append(&Event::reset_intent(&facts).unwrap(), &mut alice, time::OffsetDateTime::now_utc()).unwrap();
    drop(log);
    let fork = DeskLog { _dir: fork_dir, db: fork_db, certs: desk.certs.clone() };
    let (status, e) = c.refuse(fork.batch(5..6));
    assert_eq!((status, e.error.as_str(), e.seq), (409, "fork", Some(6)));
    assert_eq!(c.tree_size(), 7);

    let kinds: Vec<String> = c.alerts().into_iter().map(|(k, _)| k).collect();
    assert_eq!(
        kinds,
        [
            "gap",
            "seq_backwards",
            "invalid_record",
            "malformed_body",
            "untrusted_certificate",
            "unknown_signer",
            "malformed_body",
            "malformed_body",
            "fork"
        ]
    );
    assert!(c.alerts().iter().all(|(_, reason)| !reason.is_empty()));
    // Each refusal is logged too, with its kind and reason.
    let logged = std::fs::read_to_string(c.dir.path().join("collector.log")).unwrap();
    for (kind, reason) in c.alerts() {
        assert!(logged.contains(&format!("kind=\"{kind}\"")), "{kind} not logged: {logged}");
        assert!(logged.contains(&reason), "reason of {kind} not logged: {logged}");
    }
}

#[test]
fn an_oversized_body_is_refused_before_it_is_read() {
    let pki = Pki::new(1);
    let desk = DeskLog::write(&pki, 20);
    let c = Collector::start_with(&pki.ca_pem(), 16 * 1024);
    let (status, e) = c.refuse(desk.batch(0..41));
    assert_eq!((status, e.error.as_str()), (413, "batch_too_large"));
    c.accept(&desk, 0..3);
    assert_eq!(c.alerts().len(), 1);
}

#[test]
fn sigkill_mid_batch_then_restart_loses_and_doubles_no_leaf() {
    let pki = Pki::new(1);
    let desks = [DeskLog::write(&pki, 150), DeskLog::write(&pki, 150)];
    let mut c = Collector::start(&pki);
    let n = desks[0].records().len();
    c.accept(&desks[0], 0..50);
    // Kill while the big batches are being verified and written.
    let posts = std::thread::scope(|s| {
        let url = c.url("/add-records");
        let client = c.client.clone();
        let bodies = [desks[0].batch(50..n), desks[1].batch(0..n)];
        let sender =
            s.spawn(move || bodies.into_iter().map(|b| client.post(&url).body(b).send().is_ok()).collect::<Vec<_>>());
        std::thread::sleep(Duration::from_millis(150));
        c.kill();
        sender.join().unwrap()
    });
    eprintln!("deliveries before the kill completed: {posts:?}");
    c.restart();
    // The desks deliver everything again (they keep records until receipted).
    for d in &desks {
        let answer = c.accept(d, 0..n);
        for r in receipts(&answer) {
            r.verify(&c.trusted()).unwrap();
        }
    }
    let total = 2 * n as u64;
    assert_eq!(c.tree_size(), total);
    let db = c.db();
    let (count, min, max): (i64, i64, i64) = db
        .query_row("SELECT count(*), min(leaf_index), max(leaf_index) FROM leaves", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .unwrap();
    assert_eq!((count as u64, min, max as u64), (total, 0, total - 1));
    for d in &desks {
        let (k, lo, hi): (i64, i64, i64) = db
            .query_row("SELECT count(*), min(seq), max(seq) FROM leaves WHERE log_id = ?1", [d.log_id()], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .unwrap();
        assert_eq!((k as usize, lo, hi as usize), (n, 1, n));
    }
    // The served root is the RFC 6962 root of the leaves in index order.
    let mut s = db.prepare("SELECT entry_hash FROM leaves ORDER BY leaf_index").unwrap();
    let leaves: Vec<Hash32> =
        s.query_map([], |r| r.get::<_, Vec<u8>>(0)).unwrap().map(|h| h.unwrap().try_into().unwrap()).collect();
    let (_, note) = c.get("/checkpoint");
    let cp = verify_signed_checkpoint(std::str::from_utf8(&note).unwrap(), &c.trusted()).unwrap();
    assert_eq!(cp.root_hash, resetdesk::audit::receipt::merkle_root(&leaves));
}

#[test]
fn records_signed_after_a_revocation_in_the_desk_log_are_refused() {
    let pki = Pki::new(1);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.sqlite");
    let mut alice = SoftSigner::from_seed("alice", 1);
    let mut carol = SoftSigner::from_seed("carol", 3);
    let now = time::OffsetDateTime::now_utc;
    let mut log = AuditLog::open(&db).unwrap();
    let session = serde_json::json!({"agent": "alice", "workstation": "desk-3"});
    log.heartbeat(resetdesk::audit::EventType::Login, &session, &mut alice, now()).unwrap();
    let facts = serde_json::json!({
        "agent": "alice", "reason": "card lost", "revoked_by": "carol",
        "keys": [{"slot": "9c", "key_id": hex::encode(resetdesk::token::RecordSigner::key_id(&alice))}],
    });
    log.append(&Event::new(resetdesk::audit::EventType::Revocation, &facts).unwrap(), &mut carol, now()).unwrap();
    log.heartbeat(resetdesk::audit::EventType::Logout, &session, &mut alice, now()).unwrap();
    drop(log);
    let desk = DeskLog { _dir: dir, db, certs: vec![pki.issue(&alice), pki.issue(&carol)] };
    let c = Collector::start(&pki);
    let (status, e) = c.refuse(desk.batch(0..3));
    assert_eq!((status, e.error.as_str(), e.seq), (403, "revoked_signer", Some(3)));
    assert!(e.message.contains("revoked"), "{}", e.message);
    assert_eq!(c.tree_size(), 0);
    assert_eq!(leaf_indexes(&c.accept(&desk, 0..2)), vec![0, 1]);
    assert_eq!(c.refuse(desk.batch(2..3)).1.error, "revoked_signer");
    assert_eq!(c.alerts().len(), 2);
}

#[test]
fn a_reset_signed_on_the_virtual_card_is_logged_and_its_receipts_verify_with_the_registry() {
    use resetdesk::token::registry::TokenRegistry;
    let _lock = virtual_yubikey::lock_readers();
    let (site, _card, mut alice, mut desk) = desk_support::at_desk("alice", "246810");
    let mut run = desk_support::verified_run(&mut desk, &mut alice, "jsmith");
    desk.apply_ui_json(
        &mut run,
        r#"{"action":"request_reset"}"#,
        alice.signer().unwrap(),
        time::OffsetDateTime::now_utc(),
    )
    .unwrap();
    drop(desk);
    let data = site.dir.path();
    let ca_pem = std::fs::read_to_string(resetdesk::ca::CaPaths::in_data_dir(data).cert).unwrap();
    let certs: Vec<Vec<u8>> =
        TokenRegistry::open(data).unwrap().all().unwrap().into_iter().map(|k| k.cert_der).collect();
    let log = DeskLog { _dir: tempfile::tempdir().unwrap(), db: data.join("audit.sqlite"), certs };
    let records = log.records();
    assert_eq!(records.len(), 2, "intent and outcome");

    let c = Collector::start_with(&ca_pem, 4 * 1024 * 1024);
    let answer = c.accept(&log, 0..2);
    let mut audit = AuditLog::open(&log.db).unwrap();
    for r in receipts(&answer) {
        audit.add_receipt(&r).unwrap();
    }
    drop(audit);
    // The desk's own verifier, with the registry's keys and the collector's vkey.
    let keys = resetdesk::token::audit_keys::load(data, None).unwrap();
    let store = Store::open_read_only(&log.db).unwrap();
    let summary = verify_store(&store, &keys.resolver, &[], &c.trusted(), &[]).unwrap();
    assert_eq!((summary.records, summary.receipts_checked, summary.receipted_up_to), (2, 2, 2));
    // A card-signed record altered by one byte is refused as altered, not as a fork.
    let mut altered = records[1].clone();
    let at = altered.record.len() - 2;
    altered.record[at] ^= 0x20;
    let (status, e) = c.refuse(encode_batch(&log.log_id(), &log.certs, &[altered]));
    assert_eq!((status, e.error.as_str()), (422, "invalid_record"));
}

#[test]
fn desks_posting_at_once_get_one_tree_with_every_leaf_once() {
    let pki = Pki::new(1);
    let desks: Vec<DeskLog> = (0..4).map(|_| DeskLog::write(&pki, 15)).collect();
    let c = Collector::start(&pki);
    let n = desks[0].records().len();
    std::thread::scope(|s| {
        for d in &desks {
            let c = &c;
            s.spawn(move || {
                for start in (0..n).step_by(7) {
                    c.accept(d, start..(start + 7).min(n));
                }
            });
        }
    });
    let total = (desks.len() * n) as u64;
    assert_eq!(c.tree_size(), total);
    let db = c.db();
    let distinct: i64 = db.query_row("SELECT count(DISTINCT leaf_index) FROM leaves", [], |r| r.get(0)).unwrap();
    let max: i64 = db.query_row("SELECT max(leaf_index) FROM leaves", [], |r| r.get(0)).unwrap();
    assert_eq!((distinct as u64, max as u64), (total, total - 1));
    for d in &desks {
        // Each desk's records are in the log in its seq order.
        let mut s = db.prepare("SELECT seq FROM leaves WHERE log_id = ?1 ORDER BY leaf_index").unwrap();
        let seqs: Vec<i64> = s.query_map([d.log_id()], |r| r.get(0)).unwrap().map(Result::unwrap).collect();
        assert_eq!(seqs, (1..=n as i64).collect::<Vec<_>>());
    }
}
