//! `resetdesk audit verify|export` as an auditor runs them: exit codes, the summary,
//! the first bad record named, receipts and anchors from files, and the token
//! registry + CA of a data directory as the source of trusted keys.

mod audit_support;

use std::path::Path;
use std::process::{Command, Output};

use resetdesk::audit::receipt::merkle_root;
use resetdesk::audit::record::entry_hash;
use resetdesk::audit::store::Store;
use resetdesk::audit::{Checkpoint, InclusionReceipt, Receipt};
use resetdesk::token::card::Slot;
use resetdesk::token::registry::{NewKey, TokenRegistry};
use resetdesk::token::RecordSigner;

fn resetdesk(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_resetdesk")).args(args).output().unwrap()
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The entry hashes of a log's records, in seq order.
fn entry_hashes(db: &Path) -> Vec<[u8; 32]> {
    let store = Store::open_read_only(db).unwrap();
    let mut leaves = Vec::new();
    store
        .for_each(|r| {
            leaves.push(entry_hash(&r.record));
            Ok::<_, ()>(())
        })
        .unwrap()
        .unwrap();
    leaves
}

#[test]
fn verify_passes_then_names_the_first_bad_record() {
    let d = audit_support::desk();
    let args = ["audit", "verify", "--db", s(&d.db), "--ca", s(&d.ca_pem), "--certs", s(&d.certs)];
    let o = resetdesk(&args);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = text(&o);
    assert!(
        out.contains(": OK") && out.contains("records: 6 (seq 1..6)") && out.contains("co-signed records: 1"),
        "{out}"
    );

    let db = rusqlite::Connection::open(&d.db).unwrap();
    db.execute("UPDATE audit_records SET record = record || x'00' WHERE seq = 3", []).unwrap();
    let o = resetdesk(&args);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("FAILED: record 3: malformed"), "{}", text(&o));
    // On one core or several, the same verdict.
    for threads in ["1", "4"] {
        let o = resetdesk(&[&args[..], &["--threads", threads]].concat());
        assert_eq!(o.status.code(), Some(1), "{}", text(&o));
        assert!(text(&o).contains("FAILED: record 3: malformed"), "{}", text(&o));
    }
    let o = resetdesk(&[&args[..], &["--threads", "0"]].concat());
    assert_eq!(o.status.code(), Some(2), "no thread is no verifier: {}", text(&o));
}

#[test]
fn bad_input_exits_2() {
    let d = audit_support::desk();
    let o = resetdesk(&["audit", "verify", "--ca", s(&d.ca_pem), "--certs", s(&d.certs)]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("--data-dir DIR or --db FILE"));
    let missing = d.dir.path().join("nope.sqlite");
    let o = resetdesk(&["audit", "verify", "--db", s(&missing), "--ca", s(&d.ca_pem), "--certs", s(&d.certs)]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let o = resetdesk(&["audit", "verify", "--db", s(&d.db)]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
}

#[test]
fn export_then_verify_from_the_export_alone() {
    let d = audit_support::desk();
    let out = d.dir.path().join("export");
    let o = resetdesk(&[
        "audit",
        "export",
        "--db",
        s(&d.db),
        "--ca",
        s(&d.ca_pem),
        "--certs",
        s(&d.certs),
        "--out",
        s(&out),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("exported 6 record(s), 2 certificate(s)"), "{}", text(&o));
    let o = resetdesk(&[
        "audit",
        "verify",
        "--db",
        s(&d.db),
        "--ca",
        s(&out.join("ca.pem")),
        "--certs",
        s(&out.join("certs")),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));

    // An auditor with only the export (and the organisation's CA).
    let o = resetdesk(&["audit", "verify", "--export", s(&out), "--ca", s(&d.ca_pem)]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("records: 6 (seq 1..6)") && !text(&o).contains("warning"), "{}", text(&o));
    let o = resetdesk(&["audit", "verify", "--export", s(&out)]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("warning: trusting the CA certificate inside the export"), "{}", text(&o));
    // An export whose CA is not the organisation's does not pass with the real --ca.
    let other_ca = d.dir.path().join("other-ca.pem");
    std::fs::write(&other_ca, audit_support::Pki::new(7).ca_pem()).unwrap();
    let o = resetdesk(&["audit", "verify", "--export", s(&out), "--ca", s(&other_ca)]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    // A record edited in the export is named.
    let jsonl = out.join("records.jsonl");
    let mut lines: Vec<serde_json::Value> =
        std::fs::read_to_string(&jsonl).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    lines[3]["signature_b64"] = lines[2]["signature_b64"].clone();
    let edited: String = lines.iter().map(|l| l.to_string() + "\n").collect();
    std::fs::write(&jsonl, edited).unwrap();
    let o = resetdesk(&["audit", "verify", "--export", s(&out), "--ca", s(&d.ca_pem)]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("FAILED: record 4: signature does not verify"), "{}", text(&o));
    // --export and --db are alternatives.
    let o = resetdesk(&["audit", "verify", "--export", s(&out), "--db", s(&d.db)]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
}

#[test]
fn truncation_is_caught_from_receipt_and_anchor_files() {
    let d = audit_support::desk();
    // The collector received all 6 records: its receipt, and the logout heartbeat.
    let leaves = entry_hashes(&d.db);
    let mut collector = audit_support::SoftSigner::from_seed("collector", 9);
    let cp = Checkpoint {
        log_id: leaves[0],
        tree_size: 6,
        head_hash: leaves[5],
        root_hash: merkle_root(&leaves),
        issued_ms: 5,
    };
    let receipt = Receipt::issue(cp, &mut collector).unwrap();
    let receipts = d.dir.path().join("receipts.jsonl");
    std::fs::write(&receipts, receipt.to_json() + "\n").unwrap();
    let collector_pem = d.dir.path().join("collector.pem");
    std::fs::write(&collector_pem, collector.public_key_pem()).unwrap();
    let out = d.dir.path().join("held-by-collector");
    let o = resetdesk(&[
        "audit",
        "export",
        "--db",
        s(&d.db),
        "--ca",
        s(&d.ca_pem),
        "--certs",
        s(&d.certs),
        "--out",
        s(&out),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let anchors = out.join("records.jsonl");

    let base = ["audit", "verify", "--db", s(&d.db), "--ca", s(&d.ca_pem), "--certs", s(&d.certs)];
    let with_receipt = [&base[..], &["--receipts", s(&receipts), "--collector-key", s(&collector_pem)]].concat();
    let with_anchors = [&base[..], &["--anchors", s(&anchors)]].concat();
    for args in [&with_receipt, &with_anchors] {
        let o = resetdesk(args);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    }
    // Receipts without a collector key cannot be judged: bad input, not a pass.
    let o = resetdesk(&[&base[..], &["--receipts", s(&receipts)]].concat());
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));

    rusqlite::Connection::open(&d.db).unwrap().execute("DELETE FROM audit_records WHERE seq = 6", []).unwrap();
    assert_eq!(resetdesk(&base).status.code(), Some(0), "the chain alone cannot see a cut tail");
    let o = resetdesk(&with_receipt);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("truncated"), "{}", text(&o));
    let o = resetdesk(&with_anchors);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("anchor 6 is record 6 but the log ends at seq 5"), "{}", text(&o));
}

#[test]
fn verify_resolves_keys_through_the_token_registry_and_ca_of_a_data_dir() {
    let d = audit_support::desk();
    let data = d.dir.path().join("data");
    std::fs::create_dir_all(data.join("ca")).unwrap();
    std::fs::copy(&d.db, data.join("audit.sqlite")).unwrap();
    std::fs::write(data.join("ca").join("ca.pem"), d.pki.ca_pem()).unwrap();
    let mut reg = TokenRegistry::open(&data).unwrap();
    let enrol = |reg: &mut TokenRegistry, who: &audit_support::SoftSigner, serial: u32, slot: Slot| {
        let key = NewKey {
            key_id: who.key_id(),
            slot,
            cert_der: d.pki.issue(who),
            pin_policy: "always".into(),
            touch_policy: "never".into(),
            attested: false,
        };
        reg.record_enrolment(&who.name, serial, true, &[key], time::OffsetDateTime::now_utc()).unwrap();
    };
    enrol(&mut reg, &d.alice, 1001, Slot::Signature);
    // bob's key enrolled only as a login (9a) key: it must not be accepted for co-signing.
    enrol(&mut reg, &d.bob, 1002, Slot::Authentication);
    drop(reg);
    let o = resetdesk(&["audit", "verify", "--data-dir", s(&data)]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("record 4: co-signer: signing key"), "{}", text(&o));

    // A key id is enrolled once; enrol bob's key in the signature slot on a fresh registry.
    std::fs::remove_file(data.join("tokens.sqlite")).unwrap();
    let mut reg = TokenRegistry::open(&data).unwrap();
    enrol(&mut reg, &d.alice, 1001, Slot::Signature);
    enrol(&mut reg, &d.bob, 1002, Slot::Signature);
    drop(reg);
    let o = resetdesk(&["audit", "verify", "--data-dir", s(&data)]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("signers: CN=alice,O=Test Org (6)"), "{}", text(&o));
}

/// A collector's v2 receipt for record `seq` of `leaves` (the desk's entry hashes,
/// logged after `before` other desks' leaves): a C2SP checkpoint signed as a signed
/// note with a fresh Ed25519 key, and the RFC 6962 inclusion proof, both made with
/// the field's crates. Returns the receipt and the collector's verifier key.
fn v2_receipt(leaves: &[[u8; 32]], before: usize, seq: u64) -> (Receipt, String) {
    use tlog_tiles::{Hash, HashReader};
    struct Stored(Vec<Hash>);
    impl HashReader for Stored {
        fn read_hashes(&self, ix: &[u64]) -> Result<Vec<Hash>, tlog_tiles::Error> {
            Ok(ix.iter().map(|&i| self.0[i as usize]).collect())
        }
    }
    let mut tree = Stored(Vec::new());
    let all: Vec<[u8; 32]> = (0..before).map(|i| [i as u8; 32]).chain(leaves.iter().copied()).collect();
    for (n, leaf) in all.iter().enumerate() {
        let new = tlog_tiles::stored_hashes_for_record_hash(n as u64, Hash(*leaf), &tree).unwrap();
        tree.0.extend(new);
    }
    let size = all.len() as u64;
    let root = tlog_tiles::tree_hash(size, &tree).unwrap();
    let index = before as u64 + seq - 1;
    let proof = tlog_tiles::prove_record(size, index, &tree).unwrap();
    let origin = "collector.example/resetdesk";
    let (skey, vkey) = signed_note::generate_key(&mut rand::rngs::OsRng, origin);
    let signer = signed_note::StandardSigner::new(&skey).unwrap();
    let cp = tlog_tiles::Checkpoint::new(origin, size, root, "").unwrap();
    let mut note = signed_note::Note::new(&cp.to_bytes(), &[]).unwrap();
    note.add_sigs(&[&signer]).unwrap();
    let receipt = Receipt::Inclusion(InclusionReceipt {
        signed_checkpoint: String::from_utf8(note.to_bytes()).unwrap(),
        seq,
        entry_hash: leaves[seq as usize - 1],
        leaf_index: index,
        proof: proof.into_iter().map(|h| h.0).collect(),
    });
    (receipt, vkey)
}

#[test]
fn verify_checks_a_collector_inclusion_receipt_offline_with_its_verifier_key() {
    let d = audit_support::desk();
    let leaves = entry_hashes(&d.db);
    let (receipt, vkey) = v2_receipt(&leaves, 5, 6);
    let receipts = d.dir.path().join("receipts.jsonl");
    std::fs::write(&receipts, receipt.to_json() + "\n").unwrap();
    let vkey_file = d.dir.path().join("collector.vkey");
    std::fs::write(&vkey_file, format!("{vkey}\n")).unwrap();
    let base =
        ["audit", "verify", "--db", s(&d.db), "--ca", s(&d.ca_pem), "--certs", s(&d.certs), "--receipts", s(&receipts)];

    for trust in [["--collector-vkey", vkey.as_str()], ["--collector-key", s(&vkey_file)]] {
        let o = resetdesk(&[&base[..], &trust[..]].concat());
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        assert!(
            text(&o)
                .contains("receipts: 1 checked; records after the last receipt (not yet attested by a collector): 0"),
            "{}",
            text(&o)
        );
    }
    // Another collector's key: the receipt is not trusted.
    let (_, other) = v2_receipt(&leaves, 0, 1);
    let o = resetdesk(&[&base[..], &["--collector-vkey", other.as_str()]].concat());
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("signed by none of the trusted collector keys"), "{}", text(&o));

    // A cut tail: the receipt vouches for record 6.
    rusqlite::Connection::open(&d.db).unwrap().execute("DELETE FROM audit_records WHERE seq = 6", []).unwrap();
    let o = resetdesk(&[&base[..], &["--collector-vkey", vkey.as_str()]].concat());
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("covers records 1..=6 but the log ends at seq 5"), "{}", text(&o));
}
