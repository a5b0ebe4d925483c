//! The collector's Merkle log against the published RFC 6962 vectors of
//! transparency-dev/merkle: roots of sizes 0-8 over its 8 leaf inputs, its
//! inclusion and consistency proof cases (happy and corrupted), and proofs this
//! log serves checked by the offline verifier's receipt check.

use base64::Engine as _;
use resetdesk::audit::receipt::merkle_root;
use resetdesk::audit::{CollectorKeys, Hash32, InclusionReceipt, Receipt};
use resetdesk_collector::merkle;
use resetdesk_collector::note::LogKey;
use resetdesk_collector::store::{LogStore, NewLeaf, SqliteStore, StoredHashes};
use sha2::{Digest, Sha256};

const LEAF_INPUTS: [&str; 8] =
    ["", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f"];
const ROOTS: [&str; 9] = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
];

fn leaf_hash(input: &[u8]) -> Hash32 {
    Sha256::new().chain_update([0u8]).chain_update(input).finalize().into()
}

fn leaf(i: usize) -> NewLeaf {
    let record = hex::decode(LEAF_INPUTS[i]).unwrap();
    NewLeaf {
        log_id: [9; 32],
        seq: i as u64 + 1,
        entry_hash: leaf_hash(&record),
        record,
        signature: vec![1],
        cosignature: None,
        revokes: vec![],
        timestamp_ms: 0,
    }
}

/// A store holding the 8 vector leaves, appended in batches of 1, 2, 5 leaves.
fn vector_store(dir: &tempfile::TempDir) -> SqliteStore {
    let mut s = SqliteStore::open(&dir.path().join("c.db")).unwrap();
    let all: Vec<NewLeaf> = (0..8).map(leaf).collect();
    assert_eq!(s.append_batch(&all[..1]).unwrap(), vec![0]);
    assert_eq!(s.append_batch(&all[1..3]).unwrap(), vec![1, 2]);
    assert_eq!(s.append_batch(&all[3..]).unwrap(), vec![3, 4, 5, 6, 7]);
    s
}

fn b64(s: &str) -> Hash32 {
    try_b64(s).unwrap()
}

/// A published hash, if it is 32 bytes (corrupted cases have longer or shorter ones).
fn try_b64(s: &str) -> Option<Hash32> {
    base64::engine::general_purpose::STANDARD.decode(s).unwrap().try_into().ok()
}

/// A published proof, if every hash in it is 32 bytes.
fn try_proof(v: &serde_json::Value) -> Option<Vec<tlog_tiles::Hash>> {
    match v.as_array() {
        None => Some(Vec::new()),
        Some(a) => a.iter().map(|h| try_b64(h.as_str()?).map(tlog_tiles::Hash)).collect(),
    }
}

fn proof_of(v: &serde_json::Value) -> Vec<tlog_tiles::Hash> {
    try_proof(v).unwrap()
}

/// A hash field: absent is the zero hash, a wrong length cannot be a hash.
fn hash_field(v: &serde_json::Value) -> Option<Hash32> {
    match v.as_str() {
        None => Some([0; 32]),
        Some(s) => try_b64(s),
    }
}

#[test]
fn roots_of_sizes_0_to_8_match_the_vectors() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = SqliteStore::open(&dir.path().join("c.db")).unwrap();
    let leaves: Vec<Hash32> = (0..8).map(|i| leaf(i).entry_hash).collect();
    for (size, want) in ROOTS.iter().enumerate() {
        assert_eq!(s.tree_size().unwrap(), size as u64);
        let root = merkle::root(size as u64, &StoredHashes(&s)).unwrap();
        assert_eq!(hex::encode(root), *want, "root of size {size}");
        // The desk-side v1 receipt code computes the same roots.
        assert_eq!(hex::encode(merkle_root(&leaves[..size])), *want);
        if size < 8 {
            s.append_batch(&[leaf(size)]).unwrap();
        }
    }
}

#[test]
fn the_published_inclusion_cases_pass_or_fail_as_published() {
    let cases: Vec<serde_json::Value> = serde_json::from_str(include_str!("fixtures/rfc6962-inclusion.json")).unwrap();
    assert!(cases.len() > 90);
    for c in &cases {
        let (Some(proof), Some(root), Some(leaf)) =
            (try_proof(&c["proof"]), hash_field(&c["root"]), hash_field(&c["leafHash"]))
        else {
            // A hash of the wrong length: no receipt can even carry it.
            assert!(c["wantErr"].as_bool().unwrap(), "{}", c["file"]);
            continue;
        };
        let result = tlog_tiles::check_record(
            &proof,
            c["treeSize"].as_u64().unwrap(),
            tlog_tiles::Hash(root),
            c["leafIdx"].as_u64().unwrap(),
            tlog_tiles::Hash(leaf),
        );
        assert_eq!(result.is_err(), c["wantErr"].as_bool().unwrap(), "{}", c["file"]);
    }
}

#[test]
fn the_published_consistency_cases_pass_or_fail_as_published() {
    let cases: Vec<serde_json::Value> =
        serde_json::from_str(include_str!("fixtures/rfc6962-consistency.json")).unwrap();
    assert!(cases.len() > 90);
    for c in &cases {
        let (size1, size2) = (c["size1"].as_u64().unwrap(), c["size2"].as_u64().unwrap());
        let raw = |k: &str| c[k].as_str().map(|s| base64::engine::general_purpose::STANDARD.decode(s).unwrap());
        let result = if size1 == size2 {
            // Equal sizes: consistent iff non-empty, the proof is empty and the roots
            // are the same bytes (tlog's check needs old < new; an empty tree proves nothing).
            let proof_empty = c["proof"].as_array().is_none_or(|a| a.is_empty());
            if size1 > 0 && proof_empty && raw("root1") == raw("root2") {
                Ok(())
            } else {
                Err(())
            }
        } else {
            let (Some(root1), Some(root2), Some(proof)) =
                (hash_field(&c["root1"]), hash_field(&c["root2"]), try_proof(&c["proof"]))
            else {
                assert!(c["wantErr"].as_bool().unwrap(), "{}", c["file"]);
                continue;
            };
            if size1 == 0 {
                Err(())
            } else {
                tlog_tiles::check_tree(&proof, size2, tlog_tiles::Hash(root2), size1, tlog_tiles::Hash(root1))
                    .map_err(drop)
            }
        };
        assert_eq!(result.is_err(), c["wantErr"].as_bool().unwrap(), "{}", c["file"]);
    }
}

#[test]
fn served_proofs_equal_the_published_ones_and_verify() {
    let dir = tempfile::tempdir().unwrap();
    let s = vector_store(&dir);
    let r = StoredHashes(&s);
    let inclusion: Vec<serde_json::Value> =
        serde_json::from_str(include_str!("fixtures/rfc6962-inclusion.json")).unwrap();
    let mut compared = 0;
    for c in inclusion.iter().filter(|c| c["desc"] == "happy path") {
        let (t, n) = (c["treeSize"].as_u64().unwrap(), c["leafIdx"].as_u64().unwrap());
        if t <= 8 && c["root"].as_str().map(b64) == Some(merkle::root(t, &r).unwrap()) {
            let ours: Vec<tlog_tiles::Hash> =
                merkle::inclusion_proof(t, n, &r).unwrap().into_iter().map(tlog_tiles::Hash).collect();
            assert_eq!(ours, proof_of(&c["proof"]), "{}", c["file"]);
            compared += 1;
        }
    }
    let consistency: Vec<serde_json::Value> =
        serde_json::from_str(include_str!("fixtures/rfc6962-consistency.json")).unwrap();
    for c in consistency.iter().filter(|c| c["desc"] == "happy path") {
        let (old, new) = (c["size1"].as_u64().unwrap(), c["size2"].as_u64().unwrap());
        if new <= 8 && old < new && c["root2"].as_str().map(b64) == Some(merkle::root(new, &r).unwrap()) {
            let ours: Vec<tlog_tiles::Hash> =
                merkle::consistency_proof(new, old, &r).unwrap().into_iter().map(tlog_tiles::Hash).collect();
            assert_eq!(ours, proof_of(&c["proof"]), "{}", c["file"]);
            compared += 1;
        }
    }
    assert!(compared >= 4, "only {compared} published proofs were over the 8 vector leaves");
    // Every proof the log serves over the vector tree verifies.
    for t in 1..=8u64 {
        let root = tlog_tiles::Hash(merkle::root(t, &r).unwrap());
        for n in 0..t {
            let p: Vec<_> = merkle::inclusion_proof(t, n, &r).unwrap().into_iter().map(tlog_tiles::Hash).collect();
            tlog_tiles::check_record(&p, t, root, n, tlog_tiles::Hash(leaf(n as usize).entry_hash)).unwrap();
        }
        for old in 1..t {
            let p: Vec<_> = merkle::consistency_proof(t, old, &r).unwrap().into_iter().map(tlog_tiles::Hash).collect();
            let old_root = tlog_tiles::Hash(merkle::root(old, &r).unwrap());
            tlog_tiles::check_tree(&p, t, root, old, old_root).unwrap();
        }
    }
}

#[test]
fn a_receipt_made_of_a_signed_checkpoint_and_a_served_proof_verifies_offline() {
    let dir = tempfile::tempdir().unwrap();
    let s = vector_store(&dir);
    let key_file = dir.path().join("log.key");
    let vkey = LogKey::create(&key_file, "collector.test/log").unwrap();
    let key = LogKey::load(&key_file, "collector.test/log").unwrap();
    assert_eq!(key.verifier_key(), vkey);
    let root = merkle::root(8, &StoredHashes(&s)).unwrap();
    let note = key.sign_checkpoint(8, &root).unwrap();
    assert!(note.starts_with(&format!(
        "collector.test/log\n8\n{}\n\n\u{2014} collector.test/log ",
        base64::engine::general_purpose::STANDARD.encode(root)
    )));
    let receipt = |leaf_index: u64| InclusionReceipt {
        signed_checkpoint: note.clone(),
        seq: 6,
        entry_hash: leaf(leaf_index as usize).entry_hash,
        leaf_index,
        proof: merkle::inclusion_proof(8, leaf_index, &StoredHashes(&s)).unwrap(),
    };
    let mut trusted = CollectorKeys::default();
    trusted.add_verifier_key(&vkey).unwrap();
    let good = Receipt::Inclusion(receipt(5));
    good.verify(&trusted).unwrap();
    assert_eq!(Receipt::from_json(&good.to_json()).unwrap(), good);

    // Another key, a changed proof, another leaf's hash, an edited checkpoint: refused.
    let mut other = CollectorKeys::default();
    let other_file = dir.path().join("other.key");
    other.add_verifier_key(&LogKey::create(&other_file, "collector.test/log").unwrap()).unwrap();
    assert!(good.verify(&other).is_err());
    let mut bad = receipt(5);
    bad.proof[0][0] ^= 1;
    assert!(Receipt::Inclusion(bad).verify(&trusted).is_err());
    let mut bad = receipt(5);
    bad.entry_hash = leaf(4).entry_hash;
    assert!(Receipt::Inclusion(bad).verify(&trusted).is_err());
    let mut bad = receipt(5);
    bad.signed_checkpoint = bad.signed_checkpoint.replacen("\n8\n", "\n9\n", 1);
    assert!(Receipt::Inclusion(bad).verify(&trusted).is_err());
}

#[test]
fn tile_paths_follow_c2sp() {
    use merkle::TileRequest;
    let t = TileRequest::parse("tile/0/x001/x234/067").unwrap();
    assert_eq!((t.tile.level(), t.tile.level_index(), t.tile.width()), (0, 1_234_067, 256));
    assert_eq!(t.path(), "tile/0/x001/x234/067");
    let p = TileRequest::parse("tile/entries/000.p/5").unwrap();
    assert!(p.is_entries());
    assert_eq!(p.leaf_range(), 0..5);
    assert_eq!(p.path(), "tile/entries/000.p/5");
    for bad in
        ["tile/0/1234067", "tile/0/000.p/0", "tile/0/000.p/256", "tile/data/000", "tile/8/0/000", "tile/0/001x", "x"]
    {
        assert!(TileRequest::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn tiles_hold_the_stored_hashes_and_the_entries() {
    let dir = tempfile::tempdir().unwrap();
    let s = vector_store(&dir);
    let r = StoredHashes(&s);
    let tile = merkle::TileRequest::parse("tile/0/000.p/8").unwrap().hash_tile(8, &r).unwrap();
    assert_eq!(tile.len(), 8 * 32);
    for i in 0..8 {
        assert_eq!(&tile[i * 32..(i + 1) * 32], &leaf(i).entry_hash);
    }
    assert!(merkle::TileRequest::parse("tile/0/000.p/9").unwrap().hash_tile(8, &r).is_err());
    assert!(merkle::TileRequest::parse("tile/0/000").unwrap().hash_tile(8, &r).is_err());
    let entries = s.entries(0..8).unwrap();
    let bundle = merkle::entry_bundle(&entries);
    let mut at = 0;
    for input in LEAF_INPUTS {
        let len = u16::from_be_bytes([bundle[at], bundle[at + 1]]) as usize;
        assert_eq!(hex::encode(&bundle[at + 2..at + 2 + len]), input);
        at += 2 + len;
    }
    assert_eq!(at, bundle.len());
}
