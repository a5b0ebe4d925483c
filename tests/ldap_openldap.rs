//! The LDAP backend on a real OpenLDAP slapd (`scripts/slapd.sh`: LDAPS with a test
//! CA, ppolicy, memberof, the demo organisation): search and its escaping, tiers
//! through the core's group rules, the manager, the password-change time, the reset
//! (one modify: userPassword + pwdReset) confirmed by a ppolicy bind, failures, and a
//! slapd stopped between the intent and the write at a desk on virtual cards.
//! Each test starts its own slapd under /tmp/resetdesk-slapd.lock; with `CI=true` a
//! slapd that cannot start fails the test.

mod cli_support;
mod desk_support;

use desk_support::slapd::Slapd;
use desk_support::{answers_json, site_on, totp_json, Backend};
use resetdesk::audit::EventType;
use resetdesk::config::Config;
use resetdesk::directory::ldap::LdapDirectory;
use resetdesk::directory::{Directory, DirectoryError, PasswordCheck};
use resetdesk::secret::Secret;
use resetdesk::tier::{AccountTier, AgentTier};
use time::OffsetDateTime;
use virtual_yubikey::{lock_readers, VirtualCard, READER_0_PORT};

const TEMP: &str = "Tmp-4hQ9-xr7W-2kPz";

/// A data directory (the side store's) and a configuration on `slapd`.
fn config_on(slapd: &Slapd) -> (tempfile::TempDir, Config) {
    let data = tempfile::tempdir().unwrap();
    let mut config = Config { data_dir: data.path().to_owned(), ..Config::default() };
    slapd.configure(&mut config);
    (data, config)
}

fn open(slapd: &Slapd) -> (tempfile::TempDir, Config, LdapDirectory) {
    let (data, config) = config_on(slapd);
    let dir = LdapDirectory::open(&config).unwrap();
    (data, config, dir)
}

fn usernames(found: &[resetdesk::directory::DirectoryEntry]) -> Vec<&str> {
    found.iter().map(|e| e.username.as_str()).collect()
}

#[test]
fn search_finds_accounts_by_uid_employee_number_mail_and_name() {
    let Some(slapd) = Slapd::start() else { return };
    let (_d, _c, dir) = open(&slapd);
    assert_eq!(dir.backend_name(), "openldap");
    assert_eq!(usernames(&dir.search_entries("jsmith", 10).unwrap()), ["jsmith"]);
    let by_id = dir.entry("jsmith").unwrap().employee_id;
    assert_eq!(usernames(&dir.search_entries(&by_id, 10).unwrap()), ["jsmith"]);
    assert_eq!(usernames(&dir.search_entries("jsmith@example.com", 10).unwrap()), ["jsmith"]);
    assert_eq!(usernames(&dir.search_entries("Jordan Smith", 10).unwrap()), ["jsmith"]);
    // Non-ASCII names match too (escaped byte by byte).
    assert_eq!(usernames(&dir.search_entries("Müller", 10).unwrap()), ["hmueller"]);
    // Bounded: never more than asked for.
    assert_eq!(dir.search_entries("example.com", 3).unwrap().len(), 3);
    assert!(matches!(dir.entry("nobody"), Err(DirectoryError::NotFound(_))));
}

#[test]
fn injection_attempts_find_nothing() {
    let Some(slapd) = Slapd::start() else { return };
    let (_d, _c, dir) = open(&slapd);
    for attack in ["*)(uid=*", "*", "admin*", "*)(|(objectClass=*", "jsmith)(uid=*", "\\2a", "x)(&)", "\0"] {
        let found = dir.search_entries(attack, 50).unwrap();
        assert!(found.is_empty(), "{attack:?} found {:?}", usernames(&found));
        assert!(
            matches!(dir.entry(attack), Err(DirectoryError::NotFound(_))),
            "{attack:?} is a username lookup of itself only"
        );
    }
    // A parenthesis is a character like any other: it finds the names that have one.
    let with_paren = dir.search_entries("(", 50).unwrap();
    assert!(!with_paren.is_empty() && with_paren.iter().all(|e| e.display_name.contains('(')));
    // A literal star is a value, not a wildcard: "jsmi*" is no prefix search.
    assert!(dir.search_entries("jsmi*", 10).unwrap().is_empty());
    assert_eq!(usernames(&dir.search_entries("jsmi", 10).unwrap()), ["jsmith"]);
}

#[test]
fn tiers_come_from_memberof_through_the_core_group_rules_and_the_manager_is_resolved() {
    let Some(slapd) = Slapd::start() else { return };
    let (_d, config, dir) = open(&slapd);
    let rules = config.group_rules();
    let jsmith = dir.account("jsmith", &rules).unwrap();
    assert_eq!(jsmith.tier, AccountTier::Standard);
    assert!(jsmith.groups.iter().any(|g| g == "cn=staff,ou=groups,dc=example,dc=test"), "{:?}", jsmith.groups);
    assert_eq!(jsmith.dn.as_deref(), Some("uid=jsmith,ou=people,dc=example,dc=test"));
    // The manager's DN becomes a username the desk looks up: a person with a name and mail.
    assert_eq!(jsmith.manager.as_deref(), Some("dgarcia"));
    let manager = dir.account("dgarcia", &rules).unwrap();
    assert_eq!(manager.display_name, "Diego García");
    assert_eq!(manager.emails[0].value, "dgarcia@example.com");
    // Contact points with the configured change time; phones labelled as in the demo.
    assert!(jsmith.emails[0].changed_at.is_some());
    assert_eq!(jsmith.phones.iter().map(|p| p.label.as_str()).collect::<Vec<_>>(), ["desk", "mobile"]);
    assert_eq!(jsmith.date_of_hire.to_string(), "2021-04-12");
    for (agent, tier) in [("alice", AgentTier::Junior), ("bob", AgentTier::Senior), ("carol", AgentTier::Admin)] {
        assert_eq!(dir.account(agent, &rules).unwrap().agent_tier, Some(tier), "{agent}");
    }
    assert_eq!(dir.account("bob", &rules).unwrap().tier, AccountTier::Privileged);
    assert_eq!(dir.account("carol", &rules).unwrap().tier, AccountTier::Highest);
}

#[test]
fn without_a_contact_change_attribute_the_connector_cannot_tell_and_says_so() {
    let Some(slapd) = Slapd::start() else { return };
    let (_data, mut config) = config_on(&slapd);
    config.directory.ldap.contact_changed_attribute.clear();
    let dir = LdapDirectory::open(&config).unwrap();
    let account = dir.account("jsmith", &config.group_rules()).unwrap();
    assert!(account.emails.iter().chain(&account.phones).all(|c| c.changed_at.is_none()));
    use resetdesk::policy::{Channel, RequestContext, StatedDetails};
    let walk_up = RequestContext {
        channel: Channel::WalkUp,
        stated: StatedDetails::default(),
        previous_resets: vec![],
        previous_failures: vec![],
        cross_desk: Default::default(),
    };
    let a = resetdesk::policy::risk::assess(&config.policy, &account, &walk_up, OffsetDateTime::now_utc());
    assert!(a.escalations.iter().any(|e| e.reason.contains("cannot tell")), "{:?}", a.escalations);
}

#[test]
fn a_reset_sets_pwd_reset_in_one_modify_and_a_ppolicy_bind_confirms_change_after_reset() {
    let Some(slapd) = Slapd::start() else { return };
    let (_d, _c, dir) = open(&slapd);
    let dn = "uid=pdubois,ou=people,dc=example,dc=test";
    let old = resetdesk::demo::demo_password("pdubois");
    assert_eq!(dir.check_password("pdubois", &old).unwrap(), PasswordCheck { valid: true, must_change: false });
    assert!(!dir.entry("pdubois").unwrap().must_change_password);
    let before = OffsetDateTime::now_utc() - time::Duration::seconds(2);

    dir.set_temporary_password("pdubois", &Secret::from(TEMP)).unwrap();

    let attrs = slapd.read(dn, &["pwdReset", "pwdChangedTime", "userPassword"]);
    assert_eq!(attrs["pwdReset"], ["TRUE"]);
    assert!(!attrs["userPassword"][0].contains(TEMP), "ppolicy hashed the cleartext");
    assert!(dir.entry("pdubois").unwrap().must_change_password);
    // The bind with the ppolicy request control answers changeAfterReset.
    let check = dir.bind_check("pdubois", &Secret::from(TEMP)).unwrap();
    assert!(check.valid && check.must_change, "{check:?}");
    // The old password is refused.
    assert_eq!(dir.check_password("pdubois", &old).unwrap(), PasswordCheck { valid: false, must_change: false });
    // pwdChangedTime is the reset's: a reset at another desk counts as recent.
    let changed = dir.password_changed_at("pdubois").unwrap().expect("pwdChangedTime");
    assert!(changed >= before && changed <= OffsetDateTime::now_utc() + time::Duration::seconds(2), "{changed}");
}

#[test]
fn verification_state_lives_in_the_local_side_store() {
    let Some(slapd) = Slapd::start() else { return };
    let (_d, _c, dir) = open(&slapd);
    // No local enrolment: no answers, no TOTP key, no lock.
    let m = dir.verification_material("cchen").unwrap();
    assert!(m.security_answers.is_empty() && m.totp_secret.is_none());
    let until = OffsetDateTime::now_utc() + time::Duration::minutes(30);
    dir.lock_verification("cchen", until, until + time::Duration::days(1)).unwrap();
    let e = dir.entry("cchen").unwrap();
    assert!(e.flagged && e.verification_locked_until.is_some());
    dir.clear_verification_lock("cchen").unwrap();
    assert!(dir.entry("cchen").unwrap().verification_locked_until.is_none());
    assert!(matches!(dir.lock_verification("ghost", until, until), Err(DirectoryError::NotFound(_))));
    // LDAP itself is untouched by ResetDesk's own state.
    let attrs = slapd.read("uid=cchen,ou=people,dc=example,dc=test", &["*"]);
    assert!(!attrs.keys().any(|k| k.to_lowercase().contains("lock")), "{attrs:?}");
}

#[test]
fn a_stopped_or_absent_server_is_unreachable_with_a_clear_message() {
    let Some(slapd) = Slapd::start() else { return };
    let (_d, mut config, dir) = open(&slapd);
    slapd.stop();
    let e = dir.set_temporary_password("jsmith", &Secret::from(TEMP)).unwrap_err();
    assert!(matches!(e, DirectoryError::Unreachable(_)), "{e}");
    assert!(e.to_string().contains("unreachable") && e.to_string().contains("127.0.0.1"), "{e}");
    let e = dir.entry("jsmith").unwrap_err();
    assert!(matches!(e, DirectoryError::Unreachable(_)), "{e}");
    // Nothing listens: the open fails the same way, quickly.
    let t = std::time::Instant::now();
    config.directory.ldap.timeout_seconds = 2;
    let e = LdapDirectory::open(&config).err().expect("no server");
    assert!(matches!(e, DirectoryError::Unreachable(_)), "{e}");
    assert!(t.elapsed() < std::time::Duration::from_secs(5));
}

#[test]
fn a_wrong_ca_or_service_password_is_refused_at_open() {
    let Some(slapd) = Slapd::start() else { return };
    let (data, mut config) = config_on(&slapd);
    let wrong = data.path().join("wrong.password");
    std::fs::write(&wrong, "not-the-password").unwrap();
    config.directory.ldap.bind_password_file = Some(wrong);
    let e = LdapDirectory::open(&config).err().expect("wrong password");
    assert!(matches!(e, DirectoryError::Refused(_)) && e.to_string().contains("service account"), "{e}");
    assert!(!e.to_string().contains("not-the-password"));
    slapd.configure(&mut config);
    let other_ca = data.path().join("other-ca.pem");
    let ca = rcgen::generate_simple_self_signed(vec!["other".into()]).unwrap();
    std::fs::write(&other_ca, ca.cert.pem()).unwrap();
    config.directory.ldap.ca_file = Some(other_ca);
    let e = LdapDirectory::open(&config).err().expect("untrusted server certificate");
    assert!(matches!(e, DirectoryError::Unreachable(_)), "{e}");
}

#[test]
fn slapd_stopped_between_intent_and_write_gives_a_signed_failed_outcome_and_no_change() {
    let _lock = lock_readers();
    let Some(site) = site_on(Backend::Slapd) else { return };
    let card = VirtualCard::insert(READER_0_PORT).unwrap();
    let mut alice = site.agent(&card, "alice", "246810");
    let mut desk = site.desk();
    let identity = alice.identity().clone();
    let now = OffsetDateTime::now_utc;
    let (mut run, _) =
        desk.start_reset(&identity, alice.signer().unwrap(), "jsmith", Default::default(), now()).unwrap();
    desk.apply_ui_json(&mut run, &answers_json("jsmith"), alice.signer().unwrap(), now()).unwrap();
    desk.apply_ui_json(&mut run, &totp_json("jsmith", now()), alice.signer().unwrap(), now()).unwrap();
    // The directory goes away once the intent is signed, before the write.
    let slapd_dir = site.slapd.as_ref().unwrap().dir.path().to_owned();
    desk.observe_progress(Box::new(move |step| {
        if step == resetdesk::desk::progress::ExecutionStep::IntentSigned {
            let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/slapd.sh");
            std::process::Command::new("bash").args([script, "stop", slapd_dir.to_str().unwrap()]).output().unwrap();
        }
    }));
    let reply = desk.apply_ui_json(&mut run, r#"{"action":"request_reset"}"#, alice.signer().unwrap(), now()).unwrap();
    assert_eq!(run.phase(), resetdesk::workflow::Phase::DirectoryFailed, "{reply:?}");
    assert!(run.take_handoff_password().is_none(), "nothing to hand over");

    let records = site.records();
    let types: Vec<EventType> = records.iter().map(|r| r.0).collect();
    assert_eq!(types, [EventType::ResetIntent, EventType::ResetOutcome]);
    let outcome = &records[1].1["outcome"];
    assert_eq!(outcome["outcome"], "directory-failed", "{outcome}");
    assert!(outcome["message"].as_str().unwrap().contains("unreachable"), "{outcome}");
    let summary = site.verify_audit();
    assert_eq!((summary.records, summary.open_intents.len()), (2, 0), "signed and closed");

    // No change in the directory: start slapd again on the same data and look.
    let slapd = site.slapd.as_ref().unwrap();
    let attrs = slapd_restart_read(slapd);
    assert!(!attrs.contains_key("pwdReset"), "{attrs:?}");
    drop(alice);
    card.remove().unwrap();
}

/// Restart the stopped slapd on its database (not a fresh one) and read jsmith.
fn slapd_restart_read(slapd: &Slapd) -> std::collections::HashMap<String, Vec<String>> {
    let d = slapd.dir.path();
    let child = std::process::Command::new("/usr/sbin/slapd")
        .args(["-F", d.join("slapd.d").to_str().unwrap(), "-h", slapd.var("SLAPD_URL"), "-d", "0"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    for _ in 0..100 {
        let up = std::process::Command::new("ldapsearch")
            .args(["-x", "-H", slapd.var("SLAPD_URL"), "-b", "", "-s", "base"])
            .output()
            .unwrap()
            .status
            .success();
        if up {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let attrs = slapd.read("uid=jsmith,ou=people,dc=example,dc=test", &["pwdReset", "pwdChangedTime"]);
    drop(child); // slapd writes its pid file; Slapd's drop stops it by that.
    attrs
}

#[test]
fn the_cli_checks_the_ldap_section_and_a_password_against_slapd() {
    let Some(slapd) = Slapd::start() else { return };
    let data = tempfile::tempdir().unwrap();
    let ldap = slapd.ldap_config();
    let text = format!(
        "data_dir = {:?}\n[directory]\nbackend = \"ldap\"\n[directory.ldap]\nurl = {:?}\nbase_dn = {:?}\n\
         bind_dn = {:?}\nbind_password_file = {:?}\nca_file = {:?}\n",
        data.path(),
        ldap.url,
        ldap.base_dn,
        ldap.bind_dn,
        ldap.bind_password_file.unwrap(),
        ldap.ca_file.unwrap()
    );
    let config = data.path().join("resetdesk.toml");
    std::fs::write(&config, &text).unwrap();
    let bin = env!("CARGO_BIN_EXE_resetdesk");
    let run = |args: &[&str], stdin: &str| {
        use std::io::Write;
        let mut child = std::process::Command::new(bin)
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        let o = child.wait_with_output().unwrap();
        (o.status.success(), String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr))
    };
    let (ok, out) = run(&["config", "check", "--config", config.to_str().unwrap()], "");
    assert!(ok, "{out}");
    let dir = data.path().to_str().unwrap();
    let (ok, out) = run(&["directory", "check-password", "--data-dir", dir, "--user", "jsmith"], "demo-pass-jsmith\n");
    assert!(ok && out.contains("password valid; no change required"), "{out}");
    let (ok, out) = run(&["directory", "check-password", "--data-dir", dir, "--user", "jsmith"], "wrong\n");
    assert!(!ok && out.contains("NOT valid"), "{out}");
    // Plain ldap:// without the test switch: refused with its file:line.
    let plain = text.replace(&ldap.url, slapd.var("SLAPD_URL"));
    std::fs::write(&config, plain).unwrap();
    let (ok, out) = run(&["config", "check", "--config", config.to_str().unwrap()], "");
    assert!(!ok && out.contains("resetdesk.toml:5: directory.ldap.url"), "{out}");
}
