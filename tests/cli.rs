//! The `resetdesk` command line as admins and auditors script it: exit codes and messages.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn resetdesk(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_resetdesk"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run resetdesk");
    let mut input = child.stdin.take().expect("stdin");
    if let Some(s) = stdin {
        input.write_all(s.as_bytes()).expect("write stdin");
    }
    drop(input);
    child.wait_with_output().expect("wait")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn write(dir: &Path, name: &str, body: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, body).unwrap();
    p.display().to_string()
}

#[test]
fn config_check_reports_file_line_and_key_with_exit_2() {
    let d = tempfile::tempdir().unwrap();
    let misspelt = write(d.path(), "a.toml", "organisation = \"X\"\n\n[smtp]\nhots = \"mail\"\n");
    let o = resetdesk(&["config", "check", "--config", &misspelt], None);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains(&format!("{misspelt}:4: smtp.hots: unknown field")), "{}", text(&o));

    let wrong_type = write(d.path(), "b.toml", "[agents]\nidle_lock_seconds = \"soon\"\n");
    let o = resetdesk(&["config", "check", "--config", &wrong_type], None);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains(&format!("{wrong_type}:2: agents.idle_lock_seconds: invalid type")), "{}", text(&o));

    let missing = d.path().join("missing.toml").display().to_string();
    let o = resetdesk(&["config", "check", "--config", &missing], None);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains(&missing) && text(&o).contains("cannot read"), "{}", text(&o));

    let good = write(d.path(), "c.toml", "mode = \"demo\"\n[smtp]\nhost = \"127.0.0.1\"\nport = 2525\n");
    let o = resetdesk(&["config", "check", "--config", &good], None);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}

#[test]
fn config_defaults_are_a_valid_config() {
    let d = tempfile::tempdir().unwrap();
    let o = resetdesk(&["config", "defaults"], None);
    assert!(o.status.success());
    let path = write(d.path(), "defaults.toml", &String::from_utf8_lossy(&o.stdout));
    assert_eq!(resetdesk(&["config", "check", "--config", &path], None).status.code(), Some(0));
}

#[test]
fn demo_init_then_check_password() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().display().to_string();
    let o = resetdesk(&["demo", "init", "--data-dir", &dir], None);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("34 accounts"), "{}", text(&o));
    let again = resetdesk(&["demo", "init", "--data-dir", &dir], None);
    assert!(again.status.success() && text(&again).contains("already present"));

    let ok =
        resetdesk(&["directory", "check-password", "--data-dir", &dir, "--user", "jsmith"], Some("demo-pass-jsmith\n"));
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok));
    assert!(text(&ok).contains("valid; no change required"));

    let bad = resetdesk(&["directory", "check-password", "--data-dir", &dir, "--user", "jsmith"], Some("guess\n"));
    assert_eq!(bad.status.code(), Some(1));
    assert!(text(&bad).contains("NOT valid"));

    let nobody = resetdesk(&["directory", "check-password", "--data-dir", &dir, "--user", "nobody"], Some("x\n"));
    assert_eq!(nobody.status.code(), Some(1));
    assert!(text(&nobody).contains("no account named"));

    let empty = resetdesk(&["directory", "check-password", "--data-dir", &dir, "--user", "jsmith"], Some(""));
    assert_eq!(empty.status.code(), Some(2), "no password on stdin is bad input");
}

#[test]
fn secrets_are_never_accepted_as_arguments() {
    let o = resetdesk(&["directory", "check-password", "--data-dir", "/tmp", "--user", "x", "--password", "p"], None);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn demo_totp_prints_the_demo_authenticator_code_and_demo_init_shortens_the_cooling_off() {
    use resetdesk::verification::totp;
    let code_now = || {
        let step = totp::step_at(time::OffsetDateTime::now_utc()).unwrap();
        totp::hotp(&resetdesk::demo::demo_totp_key("jsmith"), step, totp::DIGITS).as_str().to_owned()
    };
    let before = code_now();
    let o = resetdesk(&["demo", "totp", "--user", "jsmith"], None);
    let after = code_now();
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains(&before) || text(&o).contains(&after), "{}", text(&o));
    let o = resetdesk(&["demo", "totp", "--user", "nobody"], None);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));

    // The demo configuration keeps every rule but waits 1 and 2 minutes, not 10 and 30.
    let d = tempfile::tempdir().unwrap();
    let o = resetdesk(&["demo", "init", "--data-dir", d.path().to_str().unwrap()], None);
    assert!(o.status.success(), "{}", text(&o));
    let config = resetdesk::config::Config::load(&d.path().join("resetdesk.toml")).unwrap();
    assert_eq!((config.policy.privileged.cooling_off_minutes, config.policy.highest.cooling_off_minutes), (1, 2));
    assert!(config.policy.highest.co_signature && config.policy.highest.government_id);
    assert!(config.policy.privileged.manager_approval && config.policy.highest.manager_approval);
}

/// Item 7 of the hardening issue: `demo init` never puts the demo organisation (known
/// passwords and answers) into a desk configured for production.
#[test]
fn demo_init_refuses_a_production_configuration() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "resetdesk.toml", "mode = \"production\"\norganisation = \"Example Corp\"\n");
    let o = resetdesk(&["demo", "init", "--data-dir", dir.path().to_str().unwrap()], None);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("production"), "{}", text(&o));
    assert!(!dir.path().join("directory.sqlite").exists(), "no demo directory was created");
}
