//! The `LogStore` contract, as a suite any implementation runs: SQLite here; a
//! PostgreSQL store adds one `#[test]` calling [`suite`] with its constructor.

use resetdesk_collector::merkle;
use resetdesk_collector::store::{Alert, LogStore, NewLeaf, SqliteStore, StoredHashes};

fn leaf(log: u8, seq: u64) -> NewLeaf {
    let record = format!("record {log}/{seq}").into_bytes();
    let mut entry_hash = [0u8; 32];
    entry_hash[0] = log;
    entry_hash[1..9].copy_from_slice(&seq.to_be_bytes());
    NewLeaf {
        log_id: [log; 32],
        seq,
        entry_hash,
        record,
        signature: vec![7],
        cosignature: seq.is_multiple_of(2).then(|| vec![8]),
    }
}

/// Every behaviour the collector relies on. `open` returns a fresh handle on the same
/// storage each time it is called (a restart); `fresh` a new empty storage.
fn suite<S: LogStore>(fresh: impl Fn() -> (Box<dyn Fn() -> S>, Box<dyn std::any::Any>)) {
    // Leaf indexes are handed out consecutively across batches and desk logs.
    let (open, _keep) = fresh();
    let mut s = open();
    assert_eq!(s.tree_size().unwrap(), 0);
    assert_eq!(s.append_batch(&[leaf(1, 1), leaf(1, 2)]).unwrap(), vec![0, 1]);
    assert_eq!(s.append_batch(&[leaf(2, 1)]).unwrap(), vec![2]);
    assert_eq!(s.append_batch(&[leaf(1, 3)]).unwrap(), vec![3]);
    assert_eq!(s.tree_size().unwrap(), 4);

    // A batch that cannot be stored whole is not stored at all (here: a seq the
    // desk log already has), and the next batch continues the indexes.
    assert!(s.append_batch(&[leaf(2, 2), leaf(1, 3)]).is_err());
    assert_eq!(s.tree_size().unwrap(), 4);
    assert!(s.placed(&[2; 32], 2).unwrap().is_none());
    assert_eq!(s.append_batch(&[leaf(2, 2)]).unwrap(), vec![4]);

    // What is stored reads back, after a restart too.
    drop(s);
    let mut s = open();
    assert_eq!(s.tree_size().unwrap(), 5);
    let placed = s.placed(&[1; 32], 3).unwrap().unwrap();
    assert_eq!((placed.leaf_index, placed.entry_hash), (3, leaf(1, 3).entry_hash));
    assert_eq!(s.find_entry(&leaf(2, 1).entry_hash).unwrap(), Some((2, [2; 32], 1)));
    assert_eq!(s.find_entry(&[0xee; 32]).unwrap(), None);
    let desk1 = s.desk_records(&[1; 32]).unwrap();
    assert_eq!(desk1.iter().map(|r| r.row_seq).collect::<Vec<_>>(), vec![1, 2, 3]);
    assert_eq!((desk1[1].record.clone(), desk1[1].cosignature.clone()), (leaf(1, 2).record, Some(vec![8])));
    assert_eq!(s.entries(1..4).unwrap(), vec![leaf(1, 2).record, leaf(2, 1).record, leaf(1, 3).record]);

    // The stored hashes give the RFC 6962 root of the leaves in index order.
    let order = [leaf(1, 1), leaf(1, 2), leaf(2, 1), leaf(1, 3), leaf(2, 2)].map(|l| l.entry_hash);
    let root = merkle::root(5, &StoredHashes(&s)).unwrap();
    assert_eq!(root, resetdesk::audit::receipt::merkle_root(&order));

    // The checkpoint row only moves forward.
    assert_eq!(s.checkpoint().unwrap(), None);
    s.set_checkpoint(5, "five").unwrap();
    s.set_checkpoint(3, "three").unwrap();
    assert_eq!(s.checkpoint().unwrap(), Some((5, "five".to_owned())));

    // Certificates are kept once each, in the order first seen; alerts in order.
    s.add_certificate(&[9; 32], b"cert-a").unwrap();
    s.add_certificate(&[8; 32], b"cert-b").unwrap();
    s.add_certificate(&[9; 32], b"cert-a").unwrap();
    assert_eq!(s.certificates().unwrap(), vec![b"cert-a".to_vec(), b"cert-b".to_vec()]);
    let alert =
        |kind: &str| Alert { at_ms: 1, log_id: Some([1; 32]), seq: Some(4), kind: kind.into(), reason: "why".into() };
    s.add_alert(&alert("gap")).unwrap();
    s.add_alert(&Alert { log_id: None, seq: None, ..alert("malformed_body") }).unwrap();
    drop(s);
    let s = open();
    let alerts = s.alerts().unwrap();
    assert_eq!(alerts, vec![alert("gap"), Alert { log_id: None, seq: None, ..alert("malformed_body") }]);
}

#[test]
fn sqlite_keeps_the_log_store_contract() {
    suite(|| {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("collector.db");
        (Box::new(move || SqliteStore::open(&path).unwrap()), Box::new(dir))
    });
}
