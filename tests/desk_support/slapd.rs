//! A throwaway OpenLDAP slapd per test, started by `scripts/slapd.sh` (TLS with a test
//! CA, ppolicy, memberof, the demo organisation), under the cross-process lock
//! /tmp/resetdesk-slapd.lock (its ports are fixed): a [`ScriptServer`].

use std::collections::HashMap;

use super::server::ScriptServer;
use resetdesk::config::{Backend, Config, LdapConfig, LdapFlavour};

pub const LOCK_PATH: &str = "/tmp/resetdesk-slapd.lock";

pub struct Slapd(ScriptServer);

impl std::ops::Deref for Slapd {
    type Target = ScriptServer;
    fn deref(&self) -> &ScriptServer {
        &self.0
    }
}

impl Slapd {
    /// Start a slapd with the demo organisation; `None` (skip) only outside CI on a
    /// machine without slapd.
    pub fn start() -> Option<Slapd> {
        ScriptServer::start("slapd.sh", LOCK_PATH, "/usr/sbin/slapd").map(Slapd)
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

    fn root_tool(&self, tool: &str) -> std::process::Command {
        self.ldap_tool(tool, self.var("SLAPD_URL"), self.var("SLAPD_ROOT_DN"), self.var("SLAPD_ROOT_PASSWORD_FILE"))
    }

    /// `ldapsearch` as the rootdn: the attributes of `dn` (`attrs` named, operational ones included).
    pub fn read(&self, dn: &str, attrs: &[&str]) -> HashMap<String, Vec<String>> {
        let out = self
            .root_tool("ldapsearch")
            .args(["-LLL", "-o", "ldif-wrap=no", "-b", dn, "-s", "base"])
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
        let mut child = self
            .root_tool("ldapmodify")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(ldif.as_bytes()).unwrap();
        assert!(child.wait().unwrap().success(), "ldapmodify failed");
    }
}
