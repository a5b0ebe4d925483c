//! The real `resetdesk-collector` binary on loopback with TLS, fed records from real
//! desk logs (written by `AuditLog`, signed with software P-256 keys certified by a
//! test organisation CA): receipts verify offline, duplicates are idempotent,
//! altered, forked, gapped, unsigned and unknown-signer batches are refused with
//! typed errors and alert rows, and a SIGKILL mid-batch loses or doubles no leaf.

#[path = "../../tests/audit_support/mod.rs"]
mod audit_support;
#[path = "../../tests/desk_support/mod.rs"]
mod desk_support;
mod pg_support;

#[path = "process_support/mod.rs"]
mod process_support;

use std::time::Duration;

use audit_support::{Pki, SoftSigner};
use process_support::{Collector, DeskLog, LeafRow, WitnessProcess, ORIGIN, WITNESS};
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
    let fork = desk.fork_after(5);
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
    let body = desk.batch(0..41);
    assert_eq!(c.oversized_status(|client| client.post(c.url("/add-records")).body(body.clone())), 413);
    c.accept(&desk, 0..3);
    // One alert per refused try (a try the client saw fail in transit was refused too).
    let alerts = c.alerts();
    assert!(!alerts.is_empty() && alerts.iter().all(|(kind, _)| kind == "batch_too_large"), "{alerts:?}");
}

#[test]
fn sigkill_mid_batch_then_restart_loses_and_doubles_no_leaf() {
    let pki = Pki::new(1);
    sigkill_mid_batch_then_restart(&pki, Collector::start(&pki));
}

#[test]
fn sigkill_mid_batch_then_restart_loses_and_doubles_no_leaf_on_postgres() {
    let Some(db) = pg_support::PgDatabase::create() else { return };
    let pki = Pki::new(1);
    sigkill_mid_batch_then_restart(&pki, Collector::start_on(&pki.ca_pem(), 4 * 1024 * 1024, &db.url));
}

/// Every desk log's records are in the tree once, in its seq order, the leaf indexes
/// are 0..total, and the served checkpoint's root is the root of the leaves in order.
fn assert_one_tree(c: &Collector, desks: &[&DeskLog]) -> Vec<LeafRow> {
    let rows = c.leaf_rows();
    let total: usize = desks.iter().map(|d| d.records().len()).sum();
    assert_eq!(rows.len(), total);
    assert!(rows.iter().enumerate().all(|(k, r)| r.leaf_index == k as u64), "leaf indexes are not 0..{total}");
    for d in desks {
        let seqs: Vec<u64> = rows.iter().filter(|r| r.log_id == d.log_id()).map(|r| r.seq).collect();
        assert_eq!(seqs, (1..=d.records().len() as u64).collect::<Vec<_>>());
    }
    let leaves: Vec<Hash32> = rows.iter().map(|r| r.entry_hash).collect();
    let (_, note) = c.get("/checkpoint");
    let cp = verify_signed_checkpoint(std::str::from_utf8(&note).unwrap(), &c.trusted()).unwrap();
    assert_eq!(cp.tree_size, total as u64);
    assert_eq!(cp.root_hash, resetdesk::audit::receipt::merkle_root(&leaves));
    rows
}

fn sigkill_mid_batch_then_restart(pki: &Pki, mut c: Collector) {
    let desks = [DeskLog::write(pki, 150), DeskLog::write(pki, 150)];
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
    assert_eq!(c.tree_size(), 2 * n as u64);
    assert_one_tree(&c, &[&desks[0], &desks[1]]);
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
    let c = Collector::start(&pki);
    let desks: Vec<DeskLog> = (0..4).map(|_| DeskLog::write(&pki, 15)).collect();
    post_at_once(&[&c], &desks, 7);
    assert_one_tree(&c, &desks.iter().collect::<Vec<_>>());
}

/// Each desk posts its log in batches of `step` from its own thread, batch k to
/// instance k mod n; every third batch is also delivered to the next instance at the
/// same moment (a retry racing the first delivery). Both answers must agree.
fn post_at_once(instances: &[&Collector], desks: &[DeskLog], step: usize) -> Vec<AddRecordsResponse> {
    let n = desks[0].records().len();
    let answers = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for (d_ix, d) in desks.iter().enumerate() {
            let answers = &answers;
            s.spawn(move || {
                for (k, start) in (0..n).step_by(step).enumerate() {
                    let range = start..(start + step).min(n);
                    let first = instances[(k + d_ix) % instances.len()];
                    if k % 3 == 2 {
                        let second = instances[(k + d_ix + 1) % instances.len()];
                        let (a, b) = std::thread::scope(|s| {
                            let r = range.clone();
                            let other = s.spawn(move || second.accept(d, r));
                            (first.accept(d, range.clone()), other.join().unwrap())
                        });
                        assert_eq!(leaf_indexes(&a), leaf_indexes(&b));
                        answers.lock().unwrap().extend([a, b]);
                    } else {
                        answers.lock().unwrap().push(first.accept(d, range));
                    }
                }
            });
        }
    });
    answers.into_inner().unwrap()
}

/// Two `resetdesk-collector serve` processes on one PostgreSQL database, several
/// desks posting to both at once: one tree, no leaf missing or doubled, both serve
/// the same checkpoint, and every receipt either issued verifies and is consistent
/// with the final checkpoint.
#[test]
fn two_collector_instances_on_one_postgres_keep_one_tree_under_concurrent_desks() {
    let Some(db) = pg_support::PgDatabase::create() else { return };
    let pki = Pki::new(1);
    let a = Collector::start_on(&pki.ca_pem(), 4 * 1024 * 1024, &db.url);
    let b = a.sibling();
    let desks: Vec<DeskLog> = (0..4).map(|_| DeskLog::write(&pki, 20)).collect();
    let answers = post_at_once(&[&a, &b], &desks, 5);
    assert!(!b.dir.path().join("own.db").exists(), "serve --database overrides the config's database");
    let rows = assert_one_tree(&a, &desks.iter().collect::<Vec<_>>());
    let total = rows.len() as u64;
    assert_eq!(a.get("/checkpoint"), b.get("/checkpoint"), "both instances serve one checkpoint");
    let (_, note) = b.get("/checkpoint");
    let last = verify_signed_checkpoint(std::str::from_utf8(&note).unwrap(), &b.trusted()).unwrap();
    assert_eq!(last.tree_size, total);

    let mut receipted = std::collections::HashSet::new();
    for answer in &answers {
        let cp = verify_signed_checkpoint(&answer.checkpoint, &a.trusted()).unwrap();
        // The tree each answer saw is a prefix of the final one.
        if cp.tree_size < total {
            let (status, body) = b.get(&format!("/proof/consistency?old={}&new={total}", cp.tree_size));
            assert_eq!(status, 200);
            let p: resetdesk_collector::wire::ConsistencyResponse = serde_json::from_slice(&body).unwrap();
            let proof: Vec<_> = p.proof.iter().map(|h| tlog_tiles::Hash(decode32(h))).collect();
            tlog_tiles::check_tree(
                &proof,
                total,
                tlog_tiles::Hash(last.root_hash),
                cp.tree_size,
                tlog_tiles::Hash(cp.root_hash),
            )
            .unwrap();
        }
        for r in receipts(answer) {
            r.verify(&a.trusted()).unwrap();
            let Receipt::Inclusion(i) = r else { panic!("a v1 receipt") };
            assert_eq!(rows[i.leaf_index as usize].entry_hash, i.entry_hash, "the receipt names another leaf");
            receipted.insert(i.leaf_index);
        }
    }
    assert_eq!(receipted.len() as u64, total, "every leaf was receipted");
    assert!(a.alerts().is_empty(), "{:?}", a.alerts());
}

/// Check a cosignature line against the C2SP tlog-cosignature spec by hand (key ID,
/// timestamp, Ed25519 over `cosignature/v1\ntime T\n` + checkpoint text), and with
/// `signed_note`'s note verification through the crate's cosignature verifier.
fn check_cosignature(checkpoint: &str, line: &str, witness_vkey: &str) -> u64 {
    use base64::Engine as _;
    use ed25519_dalek::Verifier as _;
    use sha2::Digest as _;
    let text = checkpoint.split_once("\n\n").unwrap().0.to_owned() + "\n";
    let (name, b64) = line.trim_end().strip_prefix("\u{2014} ").unwrap().split_once(' ').unwrap();
    assert_eq!(name, WITNESS);
    let raw = base64::engine::general_purpose::STANDARD.decode(b64).unwrap();
    assert_eq!(raw.len(), 4 + 8 + 64, "key ID, u64 timestamp, Ed25519 signature");
    let typed = base64::engine::general_purpose::STANDARD.decode(witness_vkey.splitn(3, '+').nth(2).unwrap()).unwrap();
    assert_eq!(typed[0], 0x04, "an Ed25519 cosignature key");
    let mut id = sha2::Sha256::new();
    id.update(format!("{WITNESS}\n").as_bytes());
    id.update(&typed);
    assert_eq!(&raw[..4], &id.finalize()[..4], "key ID = SHA-256(name || \\n || 0x04 || key)[:4]");
    let time = u64::from_be_bytes(raw[4..12].try_into().unwrap());
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    assert!(time <= now && now - time < 300, "timestamp {time} is not about now ({now})");
    let key = ed25519_dalek::VerifyingKey::from_bytes(typed[1..].try_into().unwrap()).unwrap();
    let msg = format!("cosignature/v1\ntime {time}\n{text}");
    key.verify(msg.as_bytes(), &ed25519_dalek::Signature::from_slice(&raw[12..]).unwrap()).unwrap();
    // The same through signed_note, with the crate's verifier of this key type.
    let verifier = resetdesk_collector::cosignature::CosignatureVerifier::new(witness_vkey).unwrap();
    let note = signed_note::Note::from_bytes(format!("{text}\n{line}").as_bytes()).unwrap();
    let (ok, _) = note.verify(&signed_note::VerifierList::new(vec![Box::new(verifier)])).unwrap();
    assert_eq!(ok.len(), 1);
    time
}

fn consistency(c: &Collector, old: u64, new: u64) -> Vec<Hash32> {
    let (status, body) = c.get(&format!("/proof/consistency?old={old}&new={new}"));
    assert_eq!(status, 200);
    let p: resetdesk_collector::wire::ConsistencyResponse = serde_json::from_slice(&body).unwrap();
    p.proof.iter().map(|h| decode32(h)).collect()
}

#[test]
fn the_witness_cosigns_consistent_checkpoints_and_refuses_the_others_as_c2sp_says() {
    let pki = Pki::new(1);
    let desk = DeskLog::write(&pki, 3);
    let c = Collector::start(&pki);
    let cp3 = c.accept(&desk, 0..3).checkpoint;
    let cp7 = c.accept(&desk, 3..7).checkpoint;
    let w = WitnessProcess::start(&[(ORIGIN, &c.vkey)]);

    // Signed by a key the witness does not trust for the origin: 403.
    let (skey, _) = signed_note::generate_key(&mut rand::rngs::OsRng, ORIGIN);
    let stranger = |size, root: [u8; 32], origin: &str| {
        let text = format!("{origin}\n{size}\n{}\n", base64_of(&root));
        let mut note = signed_note::Note::new(text.as_bytes(), &[]).unwrap();
        let other =
            if origin == ORIGIN { skey.clone() } else { signed_note::generate_key(&mut rand::rngs::OsRng, origin).0 };
        note.add_sigs(&[&signed_note::StandardSigner::new(&other).unwrap()]).unwrap();
        String::from_utf8(note.to_bytes()).unwrap()
    };
    assert_eq!(w.add_checkpoint(0, &[], &stranger(3, [1; 32], ORIGIN)).0, 403);
    // An origin it does not witness: 404.
    assert_eq!(w.add_checkpoint(0, &[], &stranger(3, [1; 32], "other.test/log")).0, 404);
    // Old size beyond the checkpoint: 400. A body that is no request: 400.
    assert_eq!(w.add_checkpoint(9, &[], &cp7).0, 400);
    assert_eq!(w.add_checkpoint(0, &[], "not a note").0, 400);

    // The first checkpoint from size 0: cosigned.
    let (status, _, line) = w.add_checkpoint(0, &[], &cp3);
    assert_eq!(status, 200, "{line}");
    check_cosignature(&cp3, &line, &w.vkey);
    // A stale old size: 409 with the witness's size as text/x.tlog.size.
    let (status, ct, body) = w.add_checkpoint(0, &[], &cp7);
    assert_eq!((status, ct.as_str(), body.as_str()), (409, "text/x.tlog.size", "3\n"));
    // A proof that does not verify: 422.
    let mut proof = consistency(&c, 3, 7);
    let good = proof.clone();
    proof[0][0] ^= 1;
    assert_eq!(w.add_checkpoint(3, &proof, &cp7).0, 422);
    assert_eq!(w.add_checkpoint(3, &[], &cp7).0, 422);
    let (status, _, line) = w.add_checkpoint(3, &good, &cp7);
    assert_eq!(status, 200, "{line}");
    check_cosignature(&cp7, &line, &w.vkey);
    // A checkpoint of the same size with another root, validly signed by the log
    // (a fork): 409; a larger one that is not consistent: 422.
    let key = resetdesk_collector::note::LogKey::load(&c.dir.path().join("log.key"), ORIGIN).unwrap();
    let forked = key.sign_checkpoint(7, &[0x11; 32]).unwrap();
    let (status, _, body) = w.add_checkpoint(7, &[], &forked);
    assert_eq!((status, body.as_str()), (409, "7\n"));
    let forked8 = key.sign_checkpoint(8, &[0x11; 32]).unwrap();
    assert_eq!(w.add_checkpoint(7, &good, &forked8).0, 422);
    // The same checkpoint again: cosigned again (nothing moved).
    assert_eq!(w.add_checkpoint(7, &[], &cp7).0, 200);
}

fn base64_of(h: &Hash32) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(h)
}

/// Poll `/checkpoint` until it carries a cosignature by the witness for `size`.
fn wait_for_cosigned(c: &Collector, size: u64) -> (String, String) {
    for _ in 0..100 {
        let (_, note) = c.get("/checkpoint");
        let note = String::from_utf8(note).unwrap();
        let line = note.lines().find(|l| l.starts_with(&format!("\u{2014} {WITNESS} "))).map(|l| format!("{l}\n"));
        if let (Some(line), true) = (line, note.lines().nth(1) == Some(&size.to_string())) {
            return (note, line);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("no cosignature for size {size}: {}", std::fs::read_to_string(c.dir.path().join("collector.log")).unwrap());
}

#[test]
fn the_collector_gets_each_checkpoint_cosigned_serves_the_cosignatures_and_retries_from_the_witness_size_after_409() {
    let pki = Pki::new(1);
    let desk = DeskLog::write(&pki, 3);
    let mut c = Collector::start(&pki);
    let w = WitnessProcess::start(&[(ORIGIN, &c.vkey)]);
    c.add_witness(&w);
    c.accept(&desk, 0..3);
    let (note, line) = wait_for_cosigned(&c, 3);
    check_cosignature(&note, &line, &w.vkey);
    // Desks' verifiers ignore the witness's line (unknown key) and still trust the note.
    assert_eq!(verify_signed_checkpoint(&note, &c.trusted()).unwrap().tree_size, 3);

    // The collector's record of the witness is lost (a restored database): it asks
    // from size 0, is told 409 with size 3, and asks again from 3 with a proof.
    c.kill();
    c.db().execute("DELETE FROM witness_state", []).unwrap();
    c.restart();
    c.accept(&desk, 3..7);
    let (note, line) = wait_for_cosigned(&c, 7);
    check_cosignature(&note, &line, &w.vkey);
    let logged = std::fs::read_to_string(c.dir.path().join("collector.log")).unwrap();
    assert!(logged.contains("witness answered 409") && logged.contains("theirs=3"), "{logged}");
    let witnessed = std::fs::read_to_string(w.dir.path().join("witness.log")).unwrap();
    assert!(witnessed.contains("409, the latest cosigned size is 3"), "{witnessed}");
    let stored: i64 = c.db().query_row("SELECT size FROM witness_state", [], |r| r.get(0)).unwrap();
    assert_eq!(stored, 7);
}

#[test]
fn the_collector_connects_again_after_postgres_drops_its_connection() {
    let Some(db) = pg_support::PgDatabase::create() else { return };
    let pki = Pki::new(1);
    let desk = DeskLog::write(&pki, 3);
    let c = Collector::start_on(&pki.ca_pem(), 4 * 1024 * 1024, &db.url);
    c.accept(&desk, 0..3);
    // The server ends every session on the database (as a restart or failover would).
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let ended: i64 = rt.block_on(async {
        let (client, conn) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(conn);
        let sql = "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
                   WHERE datname = current_database() AND pid <> pg_backend_pid()";
        client.query_one(sql, &[]).await.unwrap().get(0)
    });
    assert!(ended >= 1, "the collector's session was not found");
    std::thread::sleep(Duration::from_millis(200));
    // At most the request that finds the connection gone fails (503); then it is back.
    let (status, body) = c.post(desk.batch(3..7));
    if status != 200 {
        assert_eq!(status, 503, "{body}");
        c.accept(&desk, 3..7);
    }
    assert_eq!(c.tree_size(), 7);
}

/// Instance B saw the desk log up to record 3; A logged 4 to 7 since. A validly
/// signed other record 6 sent to B is a fork (B catches up from the database first),
/// not a gap, and the desk's next records are accepted by B.
#[test]
fn an_instance_behind_on_a_desk_log_catches_up_and_refuses_a_fork_of_what_another_logged() {
    let Some(db) = pg_support::PgDatabase::create() else { return };
    let pki = Pki::new(1);
    let desk = DeskLog::write(&pki, 4);
    let a = Collector::start_on(&pki.ca_pem(), 4 * 1024 * 1024, &db.url);
    let b = a.sibling();
    b.accept(&desk, 0..3);
    a.accept(&desk, 3..7);
    let (status, e) = b.refuse(desk.fork_after(5).batch(5..6));
    assert_eq!((status, e.error.as_str(), e.seq), (409, "fork", Some(6)));
    assert_eq!(leaf_indexes(&b.accept(&desk, 5..9)), vec![5, 6, 7, 8]);
    assert_eq!(a.alerts().iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(), ["fork"]);
}

#[test]
fn desk_services_answer_only_a_desk_key_the_collector_issued_and_keep_only_its_hash() {
    let pki = Pki::new(41);
    let c = Collector::start(&pki);
    // Added while the collector runs: no restart needed.
    let key_file = c.add_desk_key("desk-east");
    let key = std::fs::read_to_string(&key_file).unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777, 0o600);
    let kept = std::fs::read_to_string(c.dir.path().join("desk-keys")).unwrap();
    assert!(kept.starts_with("desk-east ") && !kept.contains(key.trim()), "{kept}");

    assert_eq!(c.desk_client(Some(key_file)).whoami().unwrap(), "desk-east");
    let wrong = c.dir.path().join("wrong.key");
    std::fs::write(&wrong, "0".repeat(64)).unwrap();
    match c.desk_client(Some(wrong)).whoami() {
        Err(resetdesk::upstream::ClientError::Refused { status: 401, body }) => {
            assert_eq!(body.error, "unauthenticated")
        }
        other => panic!("a wrong key was let in: {other:?}"),
    }
    assert!(matches!(c.desk_client(None).whoami(), Err(resetdesk::upstream::ClientError::Setup(_))));
    let bare = c.client.get(c.url("/desk/whoami")).send().unwrap();
    assert_eq!(bare.status().as_u16(), 401);
    let basic =
        c.client.get(c.url("/desk/whoami")).header("Authorization", format!("Basic {}", key.trim())).send().unwrap();
    assert_eq!(basic.status().as_u16(), 401, "only a bearer key counts");
}

#[test]
fn a_key_revoked_at_one_desk_signs_nothing_later_at_another_even_after_a_restart() {
    let pki = Pki::new(1);
    let mut bob = SoftSigner::from_seed("bob", 2);
    let mut carol = SoftSigner::from_seed("carol", 3);
    let t = time::OffsetDateTime::now_utc() - time::Duration::minutes(10);
    let at = |s: i64| t + time::Duration::seconds(s);
    let bob_session = serde_json::json!({"agent": "bob", "workstation": "desk-b"});
    // Desk B: bob logs in before his key is revoked (at t), and again after it.
    let b_dir = tempfile::tempdir().unwrap();
    let b_db = b_dir.path().join("audit.sqlite");
    let mut log = AuditLog::open(&b_db).unwrap();
    log.heartbeat(resetdesk::audit::EventType::Login, &bob_session, &mut bob, at(-60)).unwrap();
    log.heartbeat(resetdesk::audit::EventType::Logout, &bob_session, &mut bob, at(-30)).unwrap();
    log.heartbeat(resetdesk::audit::EventType::Login, &bob_session, &mut bob, at(30)).unwrap();
    drop(log);
    let desk_b = DeskLog { _dir: b_dir, db: b_db, certs: vec![pki.issue(&bob)] };
    // Desk A: carol revokes bob's key at t.
    let a_dir = tempfile::tempdir().unwrap();
    let a_db = a_dir.path().join("audit.sqlite");
    let mut log = AuditLog::open(&a_db).unwrap();
    let carol_session = serde_json::json!({"agent": "carol", "workstation": "desk-a"});
    log.heartbeat(resetdesk::audit::EventType::Login, &carol_session, &mut carol, at(-90)).unwrap();
    let facts = serde_json::json!({
        "agent": "bob", "reason": "card lost", "revoked_by": "carol",
        "keys": [{"slot": "9c", "key_id": hex::encode(resetdesk::token::RecordSigner::key_id(&bob))}],
    });
    log.append(&Event::new(resetdesk::audit::EventType::Revocation, &facts).unwrap(), &mut carol, at(0)).unwrap();
    drop(log);
    let desk_a = DeskLog { _dir: a_dir, db: a_db, certs: vec![pki.issue(&carol)] };

    let mut c = Collector::start(&pki);
    // Before the collector knows of the revocation, bob's first records are logged.
    assert_eq!(leaf_indexes(&c.accept(&desk_b, 0..1)), vec![0]);
    c.accept(&desk_a, 0..2);
    // Dated before the revocation: still accepted.
    assert_eq!(leaf_indexes(&c.accept(&desk_b, 1..2)), vec![3]);
    // Dated after it, at another desk than the one that revoked it: refused.
    let (status, e) = c.refuse(desk_b.batch(2..3));
    assert_eq!((status, e.error.as_str(), e.seq), (403, "revoked_signer", Some(3)), "{}", e.message);
    assert!(c.alerts().iter().any(|(kind, _)| kind == "revoked_signer"));
    // The revocation is in the database, not only in the process.
    c.restart();
    assert_eq!(c.refuse(desk_b.batch(2..3)).1.error, "revoked_signer");
    assert_eq!(c.tree_size(), 4);
}
