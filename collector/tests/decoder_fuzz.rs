//! The request decoders never panic: arbitrary and mutated batch bodies through the
//! decoder and through a real collector's ingest (SQLite in a temp dir), arbitrary
//! tile paths and proof query hashes, and arbitrary or mutated receipts through the
//! offline receipt check.

#[path = "../../tests/audit_support/mod.rs"]
mod audit_support;

use std::sync::OnceLock;

use audit_support::{Pki, SoftSigner};
use proptest::prelude::*;
use resetdesk::audit::record::entry_hash;
use resetdesk::audit::store::Store;
use resetdesk::audit::{AuditLog, CollectorKeys, EventType, Receipt};
use resetdesk_collector::ingest::Collector;
use resetdesk_collector::merkle::TileRequest;
use resetdesk_collector::note::LogKey;
use resetdesk_collector::store::SqliteStore;
use resetdesk_collector::wire::{decode_batch, encode_batch, parse_hash};

/// A valid 3-record batch body and the CA that certifies its signer.
fn valid_batch() -> &'static (Vec<u8>, String) {
    static BATCH: OnceLock<(Vec<u8>, String)> = OnceLock::new();
    BATCH.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::new(1);
        let mut alice = SoftSigner::from_seed("alice", 1);
        let mut log = AuditLog::open(&dir.path().join("a.sqlite")).unwrap();
        let session = serde_json::json!({"agent": "alice"});
        for kind in [EventType::Login, EventType::Lock, EventType::Unlock] {
            log.heartbeat(kind, &session, &mut alice, time::OffsetDateTime::now_utc()).unwrap();
        }
        drop(log);
        let store = Store::open_read_only(&dir.path().join("a.sqlite")).unwrap();
        let mut recs = Vec::new();
        store
            .for_each(|s| {
                recs.push(s);
                Ok::<_, ()>(())
            })
            .unwrap()
            .unwrap();
        let body = encode_batch(&entry_hash(&recs[0].record), &[pki.issue(&alice)], &recs);
        (body, pki.ca_pem())
    })
}

/// A real receipt (record 2 of the valid batch) and the collector's verifier key.
fn real_receipt() -> &'static (String, String) {
    static RECEIPT: OnceLock<(String, String)> = OnceLock::new();
    RECEIPT.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let mut c = collector(&dir);
        let answer = c.ingest(&valid_batch().0, 0).unwrap();
        (answer.receipts[1].to_string(), c.verifier_key().to_owned())
    })
}

fn collector(dir: &tempfile::TempDir) -> Collector<SqliteStore> {
    let key = dir.path().join("k");
    LogKey::create(&key, "fuzz.test/log").unwrap();
    let store = SqliteStore::open(&dir.path().join("c.db")).unwrap();
    Collector::open(store, &valid_batch().1, LogKey::load(&key, "fuzz.test/log").unwrap(), 100).unwrap()
}

fn mutate(mut body: Vec<u8>, edits: &[(usize, u8)], cut: Option<usize>) -> Vec<u8> {
    for &(at, b) in edits {
        if !body.is_empty() {
            let i = at % body.len();
            body[i] = b;
        }
    }
    if let Some(c) = cut {
        body.truncate(c % (body.len() + 1));
    }
    body
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn decode_batch_never_panics_on_arbitrary_bytes(body in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = decode_batch(&body, 100);
    }

    #[test]
    fn decode_batch_never_panics_on_mutated_batches(
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..8),
        cut in proptest::option::of(any::<usize>()),
    ) {
        let body = mutate(valid_batch().0.clone(), &edits, cut);
        let _ = decode_batch(&body, 100);
    }

    #[test]
    fn tile_paths_and_hashes_never_panic(path in "tile/[0-9a-z./x]{0,40}", raw in ".{0,80}") {
        if let Ok(t) = TileRequest::parse(&path) {
            let _ = (t.leaves_needed(), t.leaf_range(), t.path());
        }
        let _ = TileRequest::parse(&raw);
        let _ = parse_hash(&raw);
    }

    #[test]
    fn receipts_never_panic_when_read_or_checked(
        line in ".{0,300}",
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..6),
    ) {
        let keys = CollectorKeys::default();
        if let Ok(r) = Receipt::from_json(&line) {
            let _ = (r.verify(&keys), r.collector_key_id());
        }
        // A real v2 receipt with damaged bytes, checked with the real key: it
        // verifies only if the damage missed everything signed or proven.
        let (good, vkey) = real_receipt();
        let mut keys = CollectorKeys::default();
        keys.add_verifier_key(vkey).unwrap();
        let damaged = String::from_utf8_lossy(&mutate(good.as_bytes().to_vec(), &edits, None)).into_owned();
        if let Ok(r) = Receipt::from_json(&damaged) {
            let _ = (r.verify(&keys), r.collector_key_id());
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Through the whole ingest path (decode, certificates, verifier, store): an
    /// answer or a typed error, never a panic; a damaged batch is never half stored.
    #[test]
    fn ingest_never_panics_on_mutated_batches(
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6),
        cut in proptest::option::of(any::<usize>()),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut c = collector(&dir);
        let body = mutate(valid_batch().0.clone(), &edits, cut);
        let accepted = c.ingest(&body, 0).is_ok();
        let size = c.checkpoint().unwrap().0;
        prop_assert!(size == 0 || (accepted && size == 3));
    }
}

#[test]
fn the_unmutated_batch_and_receipt_are_good() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = collector(&dir);
    let answer = c.ingest(&valid_batch().0, 0).unwrap();
    assert_eq!(answer.tree_size, 3);
    let (good, vkey) = real_receipt();
    let mut keys = CollectorKeys::default();
    keys.add_verifier_key(vkey).unwrap();
    Receipt::from_json(good).unwrap().verify(&keys).unwrap();
}

/// A batch whose base64 strings carry JSON escapes (`\/` for `/`, `\u0041` for `A`:
/// valid JSON, which the decoder cannot borrow from the body) decodes to the same
/// records as the plain one.
#[test]
fn escaped_base64_strings_decode_as_the_plain_ones() {
    let plain = &valid_batch().0;
    let text = String::from_utf8(plain.clone()).unwrap();
    let escaped = text.replace('/', "\\/").replace('A', "\\u0041");
    assert_ne!(escaped, text, "the batch has a / or an A to escape");
    let a = decode_batch(plain, 100).unwrap();
    let b = decode_batch(escaped.as_bytes(), 100).unwrap();
    assert_eq!(a.log_id, b.log_id);
    assert_eq!(a.certificates, b.certificates);
    let stored =
        |batch: &resetdesk_collector::wire::Batch| batch.records.iter().map(|(_, s)| s.clone()).collect::<Vec<_>>();
    assert_eq!(stored(&a), stored(&b));
}
