//! The export can be checked with the openssl command line alone, exactly as
//! `docs/audit-format.md` says; a modified record fails that check.

mod audit_support;

use std::path::Path;
use std::process::Command;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use resetdesk::audit::export::{export, ExportLine};
use resetdesk::audit::store::Store;

fn openssl(dir: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new("openssl").current_dir(dir).args(args).output().expect("openssl CLI must be installed");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

fn exported() -> (audit_support::Desk, std::path::PathBuf, Vec<ExportLine>) {
    let desk = audit_support::desk();
    let out = desk.dir.path().join("export");
    let store = Store::open_read_only(&desk.db).unwrap();
    let resolver = desk.pki.resolver(&[&desk.alice, &desk.bob]);
    let summary = export(&store, &resolver, &out).unwrap();
    assert_eq!((summary.records, summary.certificates, summary.unknown_signers), (6, 2, 0));
    let lines = std::fs::read_to_string(out.join("records.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (desk, out, lines)
}

#[test]
fn openssl_verifies_an_exported_record_and_rejects_a_modified_one() {
    let (_desk, out, lines) = exported();
    let line = &lines[1]; // the first reset intent
    assert_eq!(line.event_type.as_deref(), Some("reset_intent"));
    std::fs::write(out.join("rec.bin"), B64.decode(&line.record_b64).unwrap()).unwrap();
    std::fs::write(out.join("sig.der"), B64.decode(&line.signature_b64).unwrap()).unwrap();
    let cert = line.signer_certificate.as_deref().unwrap();
    let key = line.signer_public_key.as_deref().unwrap();

    // The documented steps: certificate chains to the CA; public key from the certificate.
    let (ok, text) = openssl(&out, &["verify", "-CAfile", "ca.pem", cert]);
    assert!(ok, "openssl verify: {text}");
    let (ok, text) = openssl(&out, &["x509", "-in", cert, "-pubkey", "-noout", "-out", "pub.pem"]);
    assert!(ok, "{text}");
    assert_eq!(std::fs::read_to_string(out.join("pub.pem")).unwrap(), std::fs::read_to_string(out.join(key)).unwrap());

    let (ok, text) = openssl(&out, &["dgst", "-sha256", "-verify", "pub.pem", "-signature", "sig.der", "rec.bin"]);
    assert!(ok && text.contains("Verified OK"), "{text}");

    // Entry hash = SHA-256(0x00 || record), and the next record's prev hash.
    let mut leaf = vec![0u8];
    leaf.extend(B64.decode(&line.record_b64).unwrap());
    std::fs::write(out.join("leaf.bin"), leaf).unwrap();
    let (ok, text) = openssl(&out, &["dgst", "-sha256", "-r", "leaf.bin"]);
    assert!(ok, "{text}");
    assert!(text.starts_with(&line.entry_hash), "{text} vs {}", line.entry_hash);
    assert_eq!(lines[2].prev_hash.as_deref(), Some(line.entry_hash.as_str()));

    // One changed byte in the payload: openssl refuses it.
    let mut bad = B64.decode(&line.record_b64).unwrap();
    let last = bad.len() - 3;
    bad[last] ^= 0x01;
    std::fs::write(out.join("rec.bin"), bad).unwrap();
    let (ok, text) = openssl(&out, &["dgst", "-sha256", "-verify", "pub.pem", "-signature", "sig.der", "rec.bin"]);
    assert!(!ok && text.contains("Verification failure"), "{text}");
}

#[test]
fn openssl_verifies_a_cosignature_with_the_cosigners_key() {
    let (_desk, out, lines) = exported();
    let line = lines.iter().find(|l| l.cosignature_b64.is_some()).unwrap();
    std::fs::write(out.join("rec.bin"), B64.decode(&line.record_b64).unwrap()).unwrap();
    std::fs::write(out.join("cosig.der"), B64.decode(line.cosignature_b64.as_ref().unwrap()).unwrap()).unwrap();
    let co_key = line.cosigner_public_key.as_deref().unwrap();
    let (ok, text) = openssl(&out, &["dgst", "-sha256", "-verify", co_key, "-signature", "cosig.der", "rec.bin"]);
    assert!(ok, "{text}");
    // The signer's key does not verify the co-signature.
    let key = line.signer_public_key.as_deref().unwrap();
    let (ok, _) = openssl(&out, &["dgst", "-sha256", "-verify", key, "-signature", "cosig.der", "rec.bin"]);
    assert!(!ok);
}

/// The shell block under "Checking a record with openssl alone" in
/// docs/audit-format.md, run as written (jq and openssl are in the base image).
#[test]
fn the_documented_commands_work_as_written() {
    let (_desk, out, lines) = exported();
    let doc = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/audit-format.md")).unwrap();
    let section = &doc[doc.find("### Checking a record with openssl alone").unwrap()..];
    let start = section.find("```sh\n").unwrap() + "```sh\n".len();
    let script = &section[start..start + section[start..].find("```").unwrap()];
    assert!(script.contains("cd OUT\n"));
    let script = script.replace("cd OUT\n", &format!("cd '{}'\n", out.display()));
    let run = |k: usize| {
        let o =
            Command::new("bash").arg("-c").arg(format!("set -euo pipefail\nk={k}\n{script}")).output().expect("bash");
        (o.status.success(), format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)))
    };
    for k in [2, 4] {
        let (ok, text) = run(k);
        assert!(ok, "record {k}: {text}");
        assert!(text.contains("Verified OK"), "{text}");
        assert!(text.contains(&lines[k - 1].entry_hash), "{text}");
    }
    // Tamper with the stored line's record: the same commands now fail.
    let path = out.join("records.jsonl");
    let mut tampered: Vec<ExportLine> = lines.clone();
    let mut bytes = B64.decode(&tampered[1].record_b64).unwrap();
    bytes[30] ^= 1; // the timestamp
    tampered[1].record_b64 = B64.encode(&bytes);
    let text: String = tampered.iter().map(|l| serde_json::to_string(l).unwrap() + "\n").collect();
    std::fs::write(&path, text).unwrap();
    let (ok, text) = run(2);
    assert!(!ok && text.contains("Verification failure"), "{text}");
}
