//! `resetdesk audit verify|export` as an auditor runs them: exit codes, the summary,
//! the first bad record named, receipts and anchors from files, and the token
//! registry + CA of a data directory as the source of trusted keys.

mod audit_support;

use std::path::Path;
use std::process::{Command, Output};

use resetdesk::audit::receipt::merkle_root;
use resetdesk::audit::record::entry_hash;
use resetdesk::audit::store::Store;
use resetdesk::audit::{Checkpoint, Receipt};
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
    let store = Store::open_read_only(&d.db).unwrap();
    let mut leaves = Vec::new();
    store
        .for_each(|r| {
            leaves.push(entry_hash(&r.record));
            Ok::<_, ()>(())
        })
        .unwrap()
        .unwrap();
    drop(store);
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
