//! A directory server for a test, started and stopped by a project script
//! (`scripts/slapd.sh`, `scripts/samba-dc.sh`) under a cross-process lock (their ports
//! are fixed), with the `DIR/env` the script writes. Stopped when dropped.
//!
//! Outside CI a machine without the server skips the test with a message; with
//! `CI=true` a server that cannot start fails the test.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

pub struct ScriptServer {
    pub dir: tempfile::TempDir,
    pub env: HashMap<String, String>,
    script: PathBuf,
    _lock: std::fs::File,
}

impl ScriptServer {
    /// `scripts/<script> start DIR` while holding `lock_path`; `None` (skip) only
    /// outside CI when `binary` is not installed.
    pub fn start(script: &str, lock_path: &str, binary: &str) -> Option<Self> {
        let ci = std::env::var("CI").is_ok_and(|v| v == "true");
        if !Path::new(binary).exists() && !ci {
            eprintln!("SKIPPED: {binary} is not installed (scripts/setup-debian.sh); CI=true makes this a failure");
            return None;
        }
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(lock_path)
            .unwrap_or_else(|e| panic!("cannot open {lock_path}: {e}"));
        lock.lock().unwrap_or_else(|e| panic!("cannot lock {lock_path}: {e}"));
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts").join(script);
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("bash")
            .arg(&script)
            .args(["start", dir.path().to_str().unwrap()])
            // option_env!: this module is also built into the collector's tests, which start no server.
            .env("RESETDESK_BIN", option_env!("CARGO_BIN_EXE_resetdesk").unwrap_or("resetdesk"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{} start failed: {}{}",
            script.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let text = std::fs::read_to_string(dir.path().join("env")).unwrap();
        let env = text.lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.to_owned(), v.to_owned())).collect();
        Some(Self { dir, env, script, _lock: lock })
    }

    pub fn var(&self, key: &str) -> &str {
        self.env.get(key).unwrap_or_else(|| panic!("{key} missing from {}", self.script.display()))
    }

    /// Stop the server now (a directory outage).
    pub fn stop(&self) {
        let out = Command::new("bash").arg(&self.script).args(["stop", self.dir.path().to_str().unwrap()]).output();
        assert!(out.unwrap().status.success(), "{} stop failed", self.script.display());
    }

    /// A command (ldapsearch, ldapmodify) bound as `dn` with the password in `password_file`.
    pub fn ldap_tool(&self, tool: &str, url: &str, dn: &str, password_file: &str) -> Command {
        let mut c = Command::new(tool);
        c.args(["-x", "-H", url, "-D", dn, "-y", password_file]);
        c
    }
}

impl Drop for ScriptServer {
    fn drop(&mut self) {
        let _ = Command::new("bash").arg(&self.script).args(["stop", self.dir.path().to_str().unwrap()]).output();
    }
}
