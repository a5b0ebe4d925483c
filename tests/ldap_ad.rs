//! The Active Directory flavour on a real Samba AD DC (`scripts/samba-dc.sh`: LDAPS
//! with a test CA, accounts in nested groups, Domain Admins, adminCount=1). One DC per
//! machine (ports 389/636), so this is one test under /tmp/resetdesk-samba.lock; the
//! DC takes 10-20 s to provision. Outside CI a machine without Samba skips; with
//! `CI=true` a DC that cannot start fails the test.

mod desk_support;

use std::path::Path;

use desk_support::server::ScriptServer;
use resetdesk::config::{Backend, Config, LdapConfig, LdapFlavour};
use resetdesk::directory::ldap::LdapDirectory;
use resetdesk::directory::{Directory, DirectoryError, PasswordCheck};
use resetdesk::secret::Secret;
use resetdesk::tier::AccountTier;

const LOCK_PATH: &str = "/tmp/resetdesk-samba.lock";
const TEMP: &str = "Tmp-4hQ9-xr7W-2kPz";

struct Dc(ScriptServer);

impl Dc {
    fn start() -> Option<Dc> {
        ScriptServer::start("samba-dc.sh", LOCK_PATH, "/usr/sbin/samba").map(Dc)
    }

    fn var(&self, key: &str) -> &str {
        self.0.var(key)
    }

    fn config(&self, data_dir: &Path) -> Config {
        let mut config = Config { data_dir: data_dir.to_owned(), ..Config::default() };
        config.directory.backend = Backend::Ldap;
        config.directory.ldap = LdapConfig {
            url: self.var("SAMBA_LDAPS_URL").to_owned(),
            flavour: LdapFlavour::ActiveDirectory,
            base_dn: self.var("SAMBA_BASE_DN").to_owned(),
            bind_dn: self.var("SAMBA_SERVICE_DN").to_owned(),
            bind_password_file: Some(self.var("SAMBA_SERVICE_PASSWORD_FILE").into()),
            ca_file: Some(self.var("SAMBA_CA_FILE").into()),
            ..LdapConfig::default()
        };
        config
    }

    /// `pwdLastSet` of `dn`, read as the Administrator with ldapsearch.
    fn pwd_last_set(&self, dn: &str) -> String {
        let (url, admin, password) =
            (self.var("SAMBA_LDAPS_URL"), self.var("SAMBA_ADMIN_DN"), self.var("SAMBA_ADMIN_PASSWORD_FILE"));
        let out = self
            .0
            .ldap_tool("ldapsearch", url, admin, password)
            .env("LDAPTLS_CACERT", self.var("SAMBA_CA_FILE"))
            .args(["-LLL", "-b", dn, "-s", "base", "pwdLastSet"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.lines().find_map(|l| l.strip_prefix("pwdLastSet: ")).unwrap_or_default().to_owned()
    }
}

#[test]
fn active_directory_on_samba_resets_with_unicode_pwd_and_tiers_come_from_nested_groups_and_admin_count() {
    let Some(dc) = Dc::start() else { return };
    let data = tempfile::tempdir().unwrap();
    let config = dc.config(data.path());
    let dir = LdapDirectory::open(&config).unwrap();
    let rules = config.group_rules();
    assert_eq!(dir.backend_name(), "active-directory");

    // Search by sAMAccountName, employeeID, mail, name; injections find nothing.
    for query in ["jdoe", "E-1001", "jdoe@example.test", "Jane Doe"] {
        let found: Vec<String> = dir.search_entries(query, 10).unwrap().into_iter().map(|e| e.username).collect();
        assert_eq!(found, ["jdoe"], "{query}");
    }
    for attack in ["*)(sAMAccountName=*", "*", "jd*", "\0"] {
        assert!(dir.search_entries(attack, 10).unwrap().is_empty(), "{attack:?}");
    }

    // Tiers through the core's rules: nested groups by the in-chain rule, Domain
    // Admins, and adminCount=1 as a marker [tiers] maps (privileged by default).
    let tier = |name: &str| dir.account(name, &rules).unwrap().tier;
    assert_eq!(tier("jdoe"), AccountTier::Standard);
    let nested = dir.account("nested", &rules).unwrap();
    assert!(
        nested.groups.iter().any(|g| g.starts_with("CN=it-admins,")),
        "it-admins through it-ops: {:?}",
        nested.groups
    );
    assert_eq!(nested.tier, AccountTier::Privileged);
    assert_eq!(tier("dadmin"), AccountTier::Highest);
    let protected = dir.account("protected", &rules).unwrap();
    assert!(protected.groups.iter().any(|g| g == "adminCount"), "{:?}", protected.groups);
    assert_eq!(protected.tier, AccountTier::Privileged);

    // Manager and contact points; AD has no contact-change attribute configured here,
    // so the change time is unknown (a risk reason), never invented.
    let jdoe = dir.entry("jdoe").unwrap();
    assert_eq!(jdoe.manager.as_deref(), Some("nested"));
    assert_eq!(jdoe.employee_id, "E-1001");
    assert!(jdoe.phones.iter().any(|p| p.label == "mobile" && p.value == "+1 555 0201"));
    assert!(jdoe.emails.iter().all(|e| e.changed_at.is_none()));
    assert!(!jdoe.must_change_password);
    let set_at_creation = dir.password_changed_at("jdoe").unwrap().expect("pwdLastSet");
    assert!(time::OffsetDateTime::now_utc() - set_at_creation < time::Duration::hours(1));

    // The reset: unicodePwd + pwdLastSet=0 in one modify over LDAPS.
    let old = Secret::from("Old-pass-jdoe1");
    assert_eq!(dir.check_password("jdoe", &old).unwrap(), PasswordCheck { valid: true, must_change: false });
    dir.set_temporary_password("jdoe", &Secret::from(TEMP)).unwrap();
    assert_eq!(dc.pwd_last_set("CN=Jane Doe,CN=Users,DC=example,DC=test"), "0");
    assert!(dir.entry("jdoe").unwrap().must_change_password);
    assert_eq!(dir.password_changed_at("jdoe").unwrap(), None, "pwdLastSet=0 is no time");
    // A bind with the new password fails with "data 773": right password, must change.
    let check = dir.bind_check("jdoe", &Secret::from(TEMP)).unwrap();
    assert!(check.valid && check.must_change && check.diagnostic.contains("data 773"), "{check:?}");
    let check = dir.bind_check("jdoe", &old).unwrap();
    assert!(!check.valid && !check.diagnostic.contains("data 773"), "the old password is refused: {check:?}");

    // Samba does not enforce AdminSDHolder: the service account (Account Operators) can
    // reset a Domain Admin. The desk's own tier check is what refuses a lower agent.
    dir.set_temporary_password("dadmin", &Secret::from(TEMP)).unwrap();
    assert!(matches!(dir.entry("nobody"), Err(DirectoryError::NotFound(_))));
}
