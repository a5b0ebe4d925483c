//! `resetdesk-bench --tier`: complete resets of each tier on the real stack — the
//! acting agent's virtual card and, for the highest tier, a second agent's card in the
//! second reader (pcscd + vpcd), the embedded directory, the signed audit log — with the
//! manager's approval answered through the approval inbox and the co-signature made by
//! the second card through the desk. Checked in what the bench leaves behind: the intent
//! records (tier, steps, approval, co-signer), the directory and the offline verifier.
//! Needs `scripts/pcscd.sh start`; holds the reader lock.

mod desk_support;

use std::process::Command;

use desk_support::{site, Site};
use resetdesk::audit::EventType;
use resetdesk::directory::Directory;
use virtual_yubikey::{lock_readers, VirtualCard, READER_0_PORT, READER_1_PORT};

const CAROL_PIN: &str = "246810";
const DAVE_PIN: &str = "135791";

/// Run the bench on `site` with carol's card in the first reader and dave's in the
/// second; (success, stdout + stderr).
fn bench(site: &Site, tier: &str, resets: &str) -> (bool, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_resetdesk-bench"))
        .args(["--data-dir", site.dir.path().to_str().unwrap(), "--resets", resets, "--tier", tier])
        .args(["--reader", "Virtual PCD 00 00", "--co-signer-reader", "Virtual PCD 00 01"])
        .env("RESETDESK_BENCH_PIN", CAROL_PIN)
        .env("RESETDESK_BENCH_CO_SIGNER_PIN", DAVE_PIN)
        .output()
        .unwrap();
    (o.status.success(), String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr))
}

/// The facts of the reset intents of `tier` in the log.
fn intents_of(site: &Site, tier: &str) -> Vec<serde_json::Value> {
    site.records()
        .into_iter()
        .filter(|(t, f)| *t == EventType::ResetIntent && f["target"]["effective_tier"] == tier)
        .map(|(_, f)| f)
        .collect()
}

fn passed_methods(intent: &serde_json::Value) -> Vec<String> {
    let steps = intent["steps"].as_array().unwrap();
    let passed = steps.iter().filter(|s| s["verdict"]["result"] == "passed");
    passed.map(|s| s["method"].as_str().unwrap().to_owned()).collect()
}

#[test]
fn the_bench_drives_complete_resets_of_every_tier() {
    let _lock = lock_readers();
    let site = site();
    let carol_card = VirtualCard::insert_with_serial(READER_0_PORT, 12_100_001).unwrap();
    let dave_card = VirtualCard::insert_with_serial(READER_1_PORT, 12_100_002).unwrap();
    site.enrol(&carol_card, "carol", CAROL_PIN);
    site.enrol(&dave_card, "dave", DAVE_PIN);

    for (tier, cooling_off, steps) in [
        ("standard", None, &["security-answers", "totp"][..]),
        ("privileged", Some(10), &["totp", "manager-approval"][..]),
        ("highest", Some(30), &["government-id", "totp", "manager-approval", "co-signature"][..]),
    ] {
        let (ok, out) = bench(&site, tier, "2");
        assert!(ok, "{tier}: {out}");
        assert!(out.contains(&format!("2 complete resets of {tier}-tier accounts by carol (admin)")), "{out}");
        assert!(out.contains("last temporary password: valid true, must change true"), "{out}");
        assert!(out.contains("ratio whole / (token + fsync)"), "{out}");
        match cooling_off {
            Some(m) => assert!(out.contains(&format!("cooling-off: shortened from {m} min to 0")), "{out}"),
            None => assert!(!out.contains("cooling-off"), "{out}"),
        }
        let approval_row = out.lines().any(|l| l.starts_with("manager approval (request, answer, poll)"));
        let co_sign_row = out.lines().any(|l| l.starts_with("co-signature (login, second card signs)"));
        assert_eq!(approval_row, tier != "standard", "{out}");
        assert_eq!(co_sign_row, tier == "highest", "{out}");

        // The log holds both resets of this tier, each with the steps the tier needs, the
        // manager's approval through the address on file and, at the highest tier, dave's
        // co-signature.
        let intents = intents_of(&site, tier);
        assert_eq!(intents.len(), 2, "{tier}: {intents:?}");
        for intent in &intents {
            let passed = passed_methods(intent);
            for step in steps {
                assert!(passed.iter().any(|p| p == step), "{tier}: {step} passed in {passed:?}");
            }
            let approvals = intent["approvals"].as_array().unwrap();
            if tier == "standard" {
                assert!(approvals.is_empty(), "{intent}");
            } else {
                assert_eq!(approvals.len(), 1, "{intent}");
                assert_eq!(approvals[0]["manager"], "lschulz");
                assert_eq!(approvals[0]["via_address"], "lschulz@example.com");
            }
            let co_signer = &intent["co_signer"];
            if tier == "highest" {
                assert_eq!(co_signer["username"], "dave", "{intent}");
            } else {
                assert!(co_signer.is_null(), "{intent}");
            }
            let user = intent["target"]["username"].as_str().unwrap();
            assert!(site.directory().entry(user).unwrap().must_change_password, "{user}");
        }
    }

    // The offline verifier accepts the whole log, the two highest intents co-signed.
    let (ok, out) = site.verify_audit_cli();
    assert!(ok && out.contains("co-signed records: 2") && out.contains("open intents: none"), "{out}");

    // Without the second card the highest tier cannot run: the bench says what to give.
    let o = Command::new(env!("CARGO_BIN_EXE_resetdesk-bench"))
        .args(["--data-dir", site.dir.path().to_str().unwrap(), "--resets", "1", "--tier", "highest"])
        .args(["--reader", "Virtual PCD 00 00"])
        .env("RESETDESK_BENCH_PIN", CAROL_PIN)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("--co-signer-reader"), "{err}");

    carol_card.remove().unwrap();
    dave_card.remove().unwrap();
}
