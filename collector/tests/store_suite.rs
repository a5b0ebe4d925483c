//! The `LogStore` contract, as a suite any implementation runs: SQLite and
//! PostgreSQL (the project's cluster from `scripts/postgres.sh`; skipped without it,
//! failed under `CI=true`). PostgreSQL adds writers on several connections at once.

mod pg_support;

use resetdesk_collector::merkle;
use resetdesk_collector::store::{Alert, LogStore, NewLeaf, PgStore, SqliteStore, StoreError, StoredHashes};

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
        revokes: vec![],
        timestamp_ms: 1_000 * seq,
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

    // A batch that cannot be stored whole is not stored at all (here: two desk
    // logs mixed), and the next batch continues the indexes.
    assert!(matches!(s.append_batch(&[leaf(2, 2), leaf(1, 4)]), Err(StoreError::BatchShape(_))));
    assert_eq!(s.tree_size().unwrap(), 4);
    assert!(s.placed(&[2; 32], 2).unwrap().is_none());
    // A batch must continue its desk log as stored: a writer whose view is behind
    // (re-sending a stored seq) or ahead (a gap) is told the log moved.
    assert_eq!(s.desk_last_seq(&[1; 32]).unwrap(), 3);
    assert_eq!(s.desk_last_seq(&[3; 32]).unwrap(), 0);
    for stale in [[leaf(1, 3), leaf(1, 4)].as_slice(), &[leaf(1, 5)], &[leaf(3, 2)]] {
        let e = s.append_batch(stale).unwrap_err();
        assert!(matches!(e, StoreError::DeskMoved { .. }), "{e}");
    }
    assert_eq!(s.tree_size().unwrap(), 4);
    // Revocations go in with their record, only if the batch is stored, and the
    // earliest revocation of a key is the one kept.
    let revoking = |log: u8, seq: u64, keys: &[u8], at: u64| NewLeaf {
        revokes: keys.iter().map(|k| [*k; 32]).collect(),
        timestamp_ms: at,
        ..leaf(log, seq)
    };
    assert!(s.append_batch(&[revoking(3, 2, &[0xaa], 10)]).is_err());
    assert!(s.revocations().unwrap().is_empty(), "a refused batch revokes nothing");
    assert_eq!(s.append_batch(&[revoking(2, 2, &[0xaa, 0xbb], 5_000)]).unwrap(), vec![4]);
    assert_eq!(s.integrate().unwrap(), 5);

    // What is stored reads back, after a restart too.
    drop(s);
    let mut s = open();
    assert_eq!(s.tree_size().unwrap(), 5);
    let revoked = s.revocations().unwrap();
    assert_eq!((revoked.get(&[0xaa; 32]), revoked.get(&[0xbb; 32]), revoked.len()), (Some(&5_000), Some(&5_000), 2));
    let placed = s.placed(&[1; 32], 3).unwrap().unwrap();
    assert_eq!((placed.leaf_index, placed.entry_hash), (3, leaf(1, 3).entry_hash));
    assert_eq!(s.find_entry(&leaf(2, 1).entry_hash).unwrap(), Some((2, [2; 32], 1)));
    assert_eq!(s.find_entry(&[0xee; 32]).unwrap(), None);
    let desk1 = s.desk_records(&[1; 32], 0).unwrap();
    assert_eq!(desk1.iter().map(|r| r.row_seq).collect::<Vec<_>>(), vec![1, 2, 3]);
    assert_eq!(s.desk_records(&[1; 32], 2).unwrap().iter().map(|r| r.row_seq).collect::<Vec<_>>(), vec![3]);
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
    // What the log knows of its witnesses: their sizes, and cosignatures by size.
    assert_eq!(s.witness_size("w.test/a").unwrap(), None);
    s.set_witness_size("w.test/a", 5).unwrap();
    s.set_witness_size("w.test/a", 3).unwrap();
    s.add_cosignature(5, "w.test/b", "line b\n").unwrap();
    s.add_cosignature(5, "w.test/a", "old a\n").unwrap();
    s.add_cosignature(5, "w.test/a", "line a\n").unwrap();
    s.add_cosignature(4, "w.test/a", "four\n").unwrap();
    drop(s);
    let s = open();
    assert_eq!(s.witness_size("w.test/a").unwrap(), Some(3), "the witness's word is kept as it is");
    assert_eq!(s.cosignatures(5).unwrap(), vec!["line a\n".to_owned(), "line b\n".to_owned()]);
    assert!(s.cosignatures(6).unwrap().is_empty());
    let alerts = s.alerts().unwrap();
    assert_eq!(alerts, vec![alert("gap"), Alert { log_id: None, seq: None, ..alert("malformed_body") }]);
    // A later revocation of a key keeps the earlier time; an earlier one replaces it.
    let mut s = s;
    s.append_batch(&[revoking(1, 4, &[0xaa, 0xbb], 9_000)]).unwrap();
    s.append_batch(&[revoking(1, 5, &[0xbb], 1_000)]).unwrap();
    let revoked = s.revocations().unwrap();
    assert_eq!((revoked.get(&[0xaa; 32]), revoked.get(&[0xbb; 32])), (Some(&5_000), Some(&1_000)));
}

#[test]
fn sqlite_keeps_the_log_store_contract() {
    suite(|| {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("collector.db");
        (Box::new(move || SqliteStore::open(&path).unwrap()), Box::new(dir))
    });
}

/// An ingest's unit (`begin_unit` .. `commit_unit`, one SQLite transaction): the
/// batch, its checkpoint and its alert are kept together, or, if the collector
/// stops before the commit, none of them; and none is seen by another connection
/// (the receipts' readers, a second process) before the commit.
#[test]
fn sqlite_keeps_an_ingest_unit_whole_or_not_at_all() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("collector.db");
    let alert = Alert { at_ms: 1, log_id: Some([1; 32]), seq: Some(2), kind: "gap".into(), reason: "test".into() };
    let mut s = SqliteStore::open(&path).unwrap();
    assert_eq!(s.append_batch(&[leaf(1, 1)]).unwrap(), vec![0]);
    s.set_checkpoint(1, "note at 1").unwrap();

    let unit = |s: &mut SqliteStore| {
        s.begin_unit().unwrap();
        assert_eq!(s.append_batch(&[leaf(1, 2), leaf(1, 3)]).unwrap(), vec![1, 2]);
        s.set_checkpoint(3, "note at 3").unwrap();
        s.add_alert(&alert).unwrap();
        // Inside the unit its writes read back on its own connection.
        assert_eq!((s.tree_size().unwrap(), s.checkpoint().unwrap().unwrap().0), (3, 3));
    };
    let seen_apart = || {
        let other = rusqlite::Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
        let size: i64 = other.query_row("SELECT size FROM int_coord", [], |r| r.get(0)).unwrap();
        let alerts: i64 = other.query_row("SELECT count(*) FROM alerts", [], |r| r.get(0)).unwrap();
        let note: String = other.query_row("SELECT note FROM checkpoint", [], |r| r.get(0)).unwrap();
        (size, alerts, note)
    };

    unit(&mut s);
    assert_eq!(seen_apart(), (1, 0, "note at 1".to_owned()), "nothing of a unit is seen before its commit");
    // The collector stops before the commit: nothing of the unit is kept.
    drop(s);
    let mut s = SqliteStore::open(&path).unwrap();
    assert_eq!((s.tree_size().unwrap(), s.alerts().unwrap().len()), (1, 0));
    assert_eq!(s.checkpoint().unwrap(), Some((1, "note at 1".to_owned())));
    assert!(s.placed(&[1; 32], 2).unwrap().is_none());

    // The same unit, committed: all of it is kept, with the same leaf indexes, and
    // its hashes are those of the batch appended on its own.
    unit(&mut s);
    s.commit_unit().unwrap();
    assert_eq!(seen_apart(), (3, 1, "note at 3".to_owned()));
    let in_unit = merkle::root(3, &StoredHashes(&s)).unwrap();
    drop(s);
    let s = SqliteStore::open(&path).unwrap();
    assert_eq!(merkle::root(3, &StoredHashes(&s)).unwrap(), in_unit);
    let alone = {
        let dir = tempfile::tempdir().unwrap();
        let mut t = SqliteStore::open(&dir.path().join("alone.db")).unwrap();
        t.append_batch(&[leaf(1, 1)]).unwrap();
        t.append_batch(&[leaf(1, 2), leaf(1, 3)]).unwrap();
        merkle::root(3, &StoredHashes(&t)).unwrap()
    };
    assert_eq!(in_unit, alone);
}

#[test]
fn postgres_keeps_the_log_store_contract() {
    let Some(_cluster) = pg_support::server_url() else { return };
    suite(|| {
        let db = pg_support::PgDatabase::create().unwrap();
        let url = db.url.clone();
        (Box::new(move || PgStore::connect(&url).unwrap()), Box::new(db))
    });
}

/// Writers on separate connections (as separate collector instances) append to
/// separate desk logs at once: one tree, every leaf once, each desk log in seq order,
/// the root over the leaves in index order.
#[test]
fn postgres_writers_on_several_connections_share_one_tree() {
    let Some(db) = pg_support::PgDatabase::create() else { return };
    const WRITERS: u8 = 4;
    const BATCHES: u64 = 25;
    std::thread::scope(|scope| {
        for w in 1..=WRITERS {
            let url = db.url.clone();
            scope.spawn(move || {
                let mut s = PgStore::connect(&url).unwrap();
                for b in 0..BATCHES {
                    let batch: Vec<NewLeaf> = (1..=3).map(|k| leaf(w, b * 3 + k)).collect();
                    s.append_batch(&batch).unwrap();
                }
            });
        }
    });
    let s = PgStore::connect(&db.url).unwrap();
    let total = u64::from(WRITERS) * BATCHES * 3;
    assert_eq!(s.tree_size().unwrap(), total);
    let records = s.entries(0..total).unwrap();
    assert_eq!(records.len() as u64, total);
    let mut order = Vec::new();
    for w in 1..=WRITERS {
        let seqs: Vec<u64> = s.desk_records(&[w; 32], 0).unwrap().iter().map(|r| r.row_seq).collect();
        assert_eq!(seqs, (1..=BATCHES * 3).collect::<Vec<_>>());
    }
    for r in &records {
        let text = String::from_utf8(r.clone()).unwrap();
        let (log, seq) = text.strip_prefix("record ").unwrap().split_once('/').unwrap();
        order.push(leaf(log.parse().unwrap(), seq.parse().unwrap()).entry_hash);
    }
    let root = merkle::root(total, &StoredHashes(&s)).unwrap();
    assert_eq!(root, resetdesk::audit::receipt::merkle_root(&order));
}

/// A writer that stopped after sequencing leaves them for the next integration.
#[test]
fn postgres_integrates_leaves_a_stopped_writer_sequenced() {
    let Some(db) = pg_support::PgDatabase::create() else { return };
    let mut s = PgStore::connect(&db.url).unwrap();
    s.append_batch(&[leaf(1, 1)]).unwrap();
    // As if a writer had committed its sequencing step and died: rows past int_coord.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let (c, conn) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(conn);
        c.batch_execute(
            "INSERT INTO leaves (leaf_index, log_id, seq, entry_hash, record, signature)
             VALUES (1, decode(repeat('02', 32), 'hex'), 1, decode(repeat('aa', 32), 'hex'), 'r', 's');
             UPDATE seq_coord SET next = 2;",
        )
        .await
        .unwrap();
    });
    assert_eq!(s.tree_size().unwrap(), 1);
    assert_eq!(s.find_entry(&[0xaa; 32]).unwrap(), None, "not in the tree yet");
    assert_eq!(s.append_batch(&[leaf(1, 2)]).unwrap(), vec![2]);
    assert_eq!(s.tree_size().unwrap(), 3);
    assert_eq!(s.find_entry(&[0xaa; 32]).unwrap(), Some((1, [2; 32], 1)));
    let root = merkle::root(3, &StoredHashes(&s)).unwrap();
    assert_eq!(
        root,
        resetdesk::audit::receipt::merkle_root(&[leaf(1, 1).entry_hash, [0xaa; 32], leaf(1, 2).entry_hash])
    );
}
