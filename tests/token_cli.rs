//! `resetdesk ca init` and `resetdesk token enroll/status/list` end to end, on the real
//! stack (pcscd + vpcd + virtual card), cross-checked with `yubico-piv-tool` when it is
//! installed. Needs `scripts/pcscd.sh start`.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use virtual_yubikey::{lock_readers, VirtualCard, READER_0_PORT};

/// Run `resetdesk ARGS` with `stdin`; (exit code, stdout, stderr).
fn resetdesk(args: &[&str], stdin: &str) -> (i32, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_resetdesk"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn dir_arg(d: &Path) -> String {
    d.display().to_string()
}

#[test]
fn ca_init_then_enrol_a_card_and_inspect_it() {
    let _lock = lock_readers();
    let data = tempfile::tempdir().unwrap();
    let d = dir_arg(data.path());
    assert_eq!(resetdesk(&["demo", "init", "--data-dir", &d], "").0, 0);

    let (code, _, err) = resetdesk(&["ca", "init", "--data-dir", &d], "short\n");
    assert_eq!(code, 2, "a short passphrase is bad input: {err}");
    let (code, out, err) = resetdesk(&["ca", "init", "--data-dir", &d], "demo CA passphrase\n");
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("Example Corp ResetDesk Agent CA"), "{out}");
    let (code, _, err) = resetdesk(&["ca", "init", "--data-dir", &d], "demo CA passphrase\n");
    assert_eq!(code, 1, "the CA is never overwritten");
    assert!(err.contains("already exists"), "{err}");

    let card = VirtualCard::insert(READER_0_PORT).unwrap();
    let reader = card.reader_name();
    let enrol = ["token", "enroll", "--data-dir", &d, "--agent", "alice", "--reader", reader];

    // A wrong CA passphrase stops before the card is touched.
    let (code, _, err) = resetdesk(&enrol, "wrong passphrase\n246810\n13579135\n");
    assert_eq!(code, 1);
    assert!(err.contains("passphrase is wrong"), "{err}");
    // Not an agent: refused.
    let jdoe = ["token", "enroll", "--data-dir", &d, "--agent", "nobody-here", "--reader", reader];
    let (code, _, err) = resetdesk(&jdoe, "demo CA passphrase\n246810\n13579135\n");
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("not in the directory"), "{err}");

    // Staff, not an agent: refused.
    let staff = ["token", "enroll", "--data-dir", &d, "--agent", "jsmith", "--reader", reader];
    let (code, _, err) = resetdesk(&staff, "demo CA passphrase\n246810\n13579135\n");
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("not in an agent group"), "{err}");

    let (code, out, err) = resetdesk(&enrol, "demo CA passphrase\n246810\n13579135\n");
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(&format!("enrolled alice on {reader} (serial {}, virtual)", card.serial())), "{out}");
    assert!(out.contains("not attested"), "{out}");

    let (code, out, err) = resetdesk(&["token", "status", "--data-dir", &d, "--reader", reader], "");
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.matches("chains to the organisation CA: yes").count(), 2, "{out}");
    assert_eq!(out.matches("CN=alice").count(), 2, "{out}");
    assert!(out.contains("enrolled for alice") && out.contains("PIN always, touch always"), "{out}");

    let (code, out, _) = resetdesk(&["token", "list"], "");
    assert_eq!(code, 0);
    assert!(out.contains(&format!("{reader} [virtual]: YubiKey serial {}", card.serial())), "{out}");

    if let Ok(piv) = Command::new("yubico-piv-tool").args(["-r", reader, "-a", "status"]).output() {
        let text = String::from_utf8_lossy(&piv.stdout).into_owned() + &String::from_utf8_lossy(&piv.stderr);
        println!("{text}");
        assert!(piv.status.success(), "{text}");
        for slot in ["Slot 9a", "Slot 9c"] {
            let section = text.split(slot).nth(1).unwrap_or_else(|| panic!("{slot} missing:\n{text}"));
            let section = section.split("Slot ").next().unwrap_or(section);
            assert!(section.contains("CN=alice"), "{slot} subject:\n{text}");
            assert!(section.contains("Example Corp ResetDesk Agent CA"), "{slot} issuer:\n{text}");
        }
    } else {
        eprintln!("yubico-piv-tool not installed: cross-check skipped");
    }
    card.remove().unwrap();
}
