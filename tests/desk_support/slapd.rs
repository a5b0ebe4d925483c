//! A throwaway OpenLDAP slapd per test, started by `scripts/slapd.sh` (TLS with a test
//! CA, ppolicy, memberof, the demo organisation), under the cross-process lock
//! /tmp/resetdesk-slapd.lock (its ports are fixed). Stopped when dropped.
//!
//! Outside CI a machine without slapd skips the test with a message; with `CI=true`
//! a slapd that cannot start fails the test.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use resetdesk::config::{Backend, Config, LdapConfig, LdapFlavour};

pub const LOCK_PATH: &str = "/tmp/resetdesk-slapd.lock";

pub struct Slapd {
    pub dir: tempfile::TempDir,
    pub env: HashMap<String, String>,
    _lock: std::fs::File,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/slapd.sh")
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

impl Slapd {
    /// Start a slapd with the demo organisation; `None` (skip) only outside CI on a
    /// machine without slapd.
    pub fn start() -> Option<Slapd> {
        if !Path::new("/usr/sbin/slapd").exists() && !in_ci() {
            eprintln!("SKIPPED: slapd is not installed (scripts/setup-debian.sh); CI=true makes this a failure");
            return None;
        }
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(LOCK_PATH)
            .unwrap_or_else(|e| panic!("cannot open {LOCK_PATH}: {e}"));
        lock.lock().unwrap_or_else(|e| panic!("cannot lock {LOCK_PATH}: {e}"));
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("bash")
            .arg(script())
            .args(["start", dir.path().to_str().unwrap()])
            .env("RESETDESK_BIN", env!("CARGO_BIN_EXE_resetdesk"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "scripts/slapd.sh start failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let text = std::fs::read_to_string(dir.path().join("env")).unwrap();
        let env = text.lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.to_owned(), v.to_owned())).collect();
        Some(Slapd { dir, env, _lock: lock })
    }

    pub fn var(&self, key: &str) -> &str {
        self.env.get(key).unwrap_or_else(|| panic!("{key} missing from slapd's env"))
    }

    /// `[directory.ldap]` for this slapd over LDAPS with the test CA.
    pub fn ldap_config(&self) -> LdapConfig {
        LdapConfig {
            url: self.var("SLAPD_LDAPS_URL").to_owned(),
            flavour: LdapFlavour::Openldap,
            base_dn: self.var("SLAPD_BASE_DN").to_owned(),
            bind_dn: self.var("SLAPD_SERVICE_DN").to_owned(),
            bind_password_file: Some(self.var("SLAPD_SERVICE_PASSWORD_FILE").into()),
            ca_file: Some(self.var("SLAPD_CA_FILE").into()),
            contact_changed_attribute: "resetdeskContactChangedAt".into(),
            hire_date_attribute: "resetdeskHireDate".into(),
            ..LdapConfig::default()
        }
    }

    /// `config` with its directory on this slapd.
    pub fn configure(&self, config: &mut Config) {
        config.directory.backend = Backend::Ldap;
        config.directory.ldap = self.ldap_config();
    }

    /// Stop slapd now (a directory outage).
    pub fn stop(&self) {
        let out =
            Command::new("bash").arg(script()).args(["stop", self.dir.path().to_str().unwrap()]).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }

    /// `ldapsearch` as the rootdn: the attributes of `dn` (`attrs` named, operational ones included).
    pub fn read(&self, dn: &str, attrs: &[&str]) -> HashMap<String, Vec<String>> {
        let out = Command::new("ldapsearch")
            .args(["-x", "-LLL", "-o", "ldif-wrap=no", "-H", self.var("SLAPD_URL"), "-D", self.var("SLAPD_ROOT_DN")])
            .args(["-y", self.var("SLAPD_ROOT_PASSWORD_FILE"), "-b", dn, "-s", "base"])
            .args(attrs)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let mut found: HashMap<String, Vec<String>> = HashMap::new();
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            if let Some((k, v)) = line.split_once(": ") {
                found.entry(k.trim_end_matches(':').to_owned()).or_default().push(v.to_owned());
            }
        }
        found
    }

    /// Apply an LDIF change as the rootdn.
    pub fn modify(&self, ldif: &str) {
        use std::io::Write;
        let mut child = Command::new("ldapmodify")
            .args(["-x", "-H", self.var("SLAPD_URL"), "-D", self.var("SLAPD_ROOT_DN")])
            .args(["-y", self.var("SLAPD_ROOT_PASSWORD_FILE")])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(ldif.as_bytes()).unwrap();
        assert!(child.wait().unwrap().success(), "ldapmodify failed");
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        let _ = Command::new("bash").arg(script()).args(["stop", self.dir.path().to_str().unwrap()]).output();
    }
}
