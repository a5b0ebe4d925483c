//! Shared by the `desk_*` integration tests: a desk's data directory on real
//! components — the demo organisation in the embedded directory or in a throwaway
//! slapd ([`site_on`], [`slapd`]; the embedded database is then the side store), an organisation
//! CA, the token registry, and virtual PIV cards (pcscd + vpcd) enrolled for demo
//! agents and logged in through `resetdesk::login`. Needs `scripts/pcscd.sh start`;
//! each test holds the cross-process reader lock while it uses the readers.
#![allow(dead_code)]

pub mod server;
pub mod slapd;

use std::process::Command;

use resetdesk::audit::store::Store;
use resetdesk::audit::{verify_store, CollectorKeys, EventType, Record, Summary};
use resetdesk::ca::OrgCa;
use resetdesk::config::Config;
use resetdesk::desk::outbox::{Outbox, OutboxRow};
use resetdesk::desk::{Desk, ResetRun};
use resetdesk::directory::embedded::EmbeddedDirectory;
use resetdesk::directory::{Directory, PasswordCheck};
use resetdesk::login::{login, AgentSession};
use resetdesk::policy::BusinessHours;
use resetdesk::secret::Secret;
use resetdesk::token::card::PivCard;
use resetdesk::token::enrol::{enrol, EnrolRequest};
use resetdesk::token::registry::TokenRegistry;
use time::OffsetDateTime;
use virtual_yubikey::{VirtualCard, READER_0_PORT};

pub const PUK: &str = "87654321";

/// A desk's data directory with the demo organisation and an organisation CA.
pub struct Site {
    pub dir: tempfile::TempDir,
    pub config: Config,
    ca: OrgCa,
    /// The directory server, when the site's backend is LDAP.
    pub slapd: Option<slapd::Slapd>,
}

/// Which directory a [`Site`] runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Embedded,
    /// OpenLDAP slapd (`scripts/slapd.sh`) over LDAPS.
    Slapd,
}

/// Business hours around the clock, every day: the outside-hours rule (which adds a
/// callback) would otherwise make the steps depend on when the tests run.
pub fn config_for(dir: &std::path::Path) -> Config {
    let mut config = Config { data_dir: dir.to_owned(), ..Config::default() };
    config.policy.risk.business_hours = BusinessHours {
        start_hour: 0,
        end_hour: 24,
        days: ["mon", "tue", "wed", "thu", "fri", "sat", "sun"].map(String::from).to_vec(),
        utc_offset_minutes: 0,
    };
    config
}

pub fn site() -> Site {
    site_on(Backend::Embedded).expect("the embedded directory is always there")
}

/// A site on `backend`; `None` when slapd is not installed outside CI (the test skips).
pub fn site_on(backend: Backend) -> Option<Site> {
    let slapd = match backend {
        Backend::Embedded => None,
        Backend::Slapd => Some(slapd::Slapd::start()?),
    };
    let dir = tempfile::tempdir().unwrap();
    let mut config = config_for(dir.path());
    let mut directory = EmbeddedDirectory::open(dir.path(), &config).unwrap();
    resetdesk::demo::init(&mut directory, OffsetDateTime::now_utc()).unwrap();
    let (ca, _) = OrgCa::init(
        dir.path(),
        &config.organisation,
        &Secret::from("desk test CA passphrase"),
        OffsetDateTime::now_utc(),
    )
    .unwrap();
    if let Some(slapd) = &slapd {
        slapd.configure(&mut config);
    }
    Some(Site { dir, config, ca, slapd })
}

impl Site {
    /// A fresh handle on the embedded directory (to check what the desk wrote; on an
    /// LDAP site, the side store).
    pub fn directory(&self) -> EmbeddedDirectory {
        EmbeddedDirectory::open(self.dir.path(), &self.config).unwrap()
    }

    /// A fresh handle on the site's directory, whichever backend it is.
    pub fn backend(&self) -> Box<dyn Directory + Send> {
        resetdesk::directory::open(&self.config).unwrap()
    }

    /// Enrol `card` for `username` (factory card, new PIN `pin`).
    pub fn enrol(&self, card: &VirtualCard, username: &str, pin: &str) {
        let mut piv = PivCard::open_reader(card.reader_name()).unwrap();
        let mut registry = TokenRegistry::open(self.dir.path()).unwrap();
        let req = EnrolRequest::factory_card(username, Secret::from(pin), Secret::from(PUK));
        let directory = self.backend();
        let d: &dyn Directory = directory.as_ref();
        enrol(&mut piv, &self.ca, &mut registry, Some((d, &self.config.agents)), &[], &req, OffsetDateTime::now_utc())
            .unwrap();
    }

    /// Log in with the card in `card`'s reader.
    pub fn login(&self, card: &VirtualCard, pin: &str) -> AgentSession {
        login(&self.config, self.backend().as_ref(), card.reader_name(), Secret::from(pin), OffsetDateTime::now_utc())
            .unwrap()
    }

    /// Enrol and log in.
    pub fn agent(&self, card: &VirtualCard, username: &str, pin: &str) -> AgentSession {
        self.enrol(card, username, pin);
        self.login(card, pin)
    }

    /// The desk on the site's directory and the outbox.
    pub fn desk(&self) -> Desk {
        Desk::open_configured(self.config.clone()).unwrap()
    }

    /// Whether `password` is the account's, and must be changed: the embedded
    /// directory's check, or on slapd a bind with the ppolicy control.
    pub fn check_password(&self, username: &str, password: &Secret) -> PasswordCheck {
        match self.slapd {
            None => self.directory().check_password(username, password).unwrap(),
            Some(_) => resetdesk::directory::ldap::LdapDirectory::open(&self.config)
                .unwrap()
                .check_password(username, password)
                .unwrap(),
        }
    }

    /// The demo password still works and no change is pending: the account is untouched.
    pub fn assert_untouched(&self, username: &str) {
        let check = self.check_password(username, &resetdesk::demo::demo_password(username));
        assert_eq!(check, PasswordCheck { valid: true, must_change: false }, "{username}'s password is untouched");
        assert!(!self.backend().entry(username).unwrap().must_change_password);
    }

    /// Verify the whole audit log offline (library), as `resetdesk audit verify` does.
    pub fn verify_audit(&self) -> Summary {
        let loaded = resetdesk::token::audit_keys::load(self.dir.path(), None).unwrap();
        let store = Store::open_read_only(&self.dir.path().join("audit.sqlite")).unwrap();
        verify_store(&store, &loaded.resolver, &[], &CollectorKeys::default(), &[]).unwrap()
    }

    /// Run `resetdesk audit verify --data-dir DIR`; returns (success, stdout + stderr).
    pub fn verify_audit_cli(&self) -> (bool, String) {
        // option_env!: this module is also built into other packages' tests (the collector's), which never call this.
        let o = Command::new(option_env!("CARGO_BIN_EXE_resetdesk").unwrap_or("resetdesk"))
            .args(["audit", "verify", "--data-dir", self.dir.path().to_str().unwrap()])
            .output()
            .unwrap();
        (o.status.success(), String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr))
    }

    /// Event types of the audit records, in order, with their facts.
    pub fn records(&self) -> Vec<(EventType, serde_json::Value)> {
        self.audit_records().into_iter().map(|(r, v)| (r.event_type, v["facts"].clone())).collect()
    }

    /// The decoded audit records, in order, each with its whole JSON payload; none
    /// before the desk first opened the log.
    pub fn audit_records(&self) -> Vec<(Record, serde_json::Value)> {
        let path = self.dir.path().join("audit.sqlite");
        if !path.exists() {
            return Vec::new();
        }
        let store = Store::open_read_only(&path).unwrap();
        let mut out = Vec::new();
        store
            .for_each(|s| {
                let r = Record::decode(&s.record).unwrap();
                let v: serde_json::Value = serde_json::from_slice(&r.payload).unwrap();
                out.push((r, v));
                Ok::<(), ()>(())
            })
            .unwrap()
            .unwrap();
        out
    }

    pub fn outbox(&self) -> Vec<OutboxRow> {
        Outbox::open(self.dir.path()).unwrap().messages().unwrap()
    }

    /// Every byte the desk keeps on disk (databases and their WAL files), as text.
    pub fn all_stored_bytes(&self) -> String {
        let mut all = Vec::new();
        for entry in std::fs::read_dir(self.dir.path()).unwrap() {
            let p = entry.unwrap().path();
            if p.is_file() {
                all.extend(std::fs::read(&p).unwrap());
            }
        }
        String::from_utf8_lossy(&all).into_owned()
    }
}

/// The UI message with both demo security answers of `username`.
pub fn answers_json(username: &str) -> String {
    let p = resetdesk::demo::DEMO_PEOPLE.iter().find(|p| p.username == username).unwrap();
    serde_json::json!({"action": "security_answers", "answers": [
        {"question": 0, "answer": p.pet}, {"question": 1, "answer": p.city}]})
    .to_string()
}

/// The UI message with the employee ID and date of hire on record.
pub fn employee_record_json(site: &Site, username: &str) -> String {
    let a = site.backend().entry(username).unwrap();
    serde_json::json!({"action": "employee_record", "employee_id": a.employee_id, "date_of_hire": a.date_of_hire.to_string()}).to_string()
}

/// The TOTP UI message for `username`'s demo authenticator at `at`.
pub fn totp_json(username: &str, at: OffsetDateTime) -> String {
    use resetdesk::verification::totp;
    let key = resetdesk::demo::demo_totp_key(username);
    let code = totp::hotp(&key, totp::step_at(at).unwrap(), totp::DIGITS);
    serde_json::json!({"action": "totp", "code": code.as_str()}).to_string()
}

/// Start a walk-up reset of `target` by the logged-in `agent` and pass the security
/// answers and the TOTP step (two independent factors), at the current time.
pub fn verified_run(desk: &mut Desk, agent: &mut AgentSession, target: &str) -> ResetRun {
    let identity = agent.identity().clone();
    let now = OffsetDateTime::now_utc;
    let (mut run, _) = desk.start_reset(&identity, agent.signer().unwrap(), target, Default::default(), now()).unwrap();
    desk.apply_ui_json(&mut run, &answers_json(target), agent.signer().unwrap(), now()).unwrap();
    desk.apply_ui_json(&mut run, &totp_json(target, now()), agent.signer().unwrap(), now()).unwrap();
    run
}

/// A fresh site with `username`'s card enrolled in the first reader, logged in, and the
/// desk open. Take the reader lock first.
pub fn at_desk(username: &str, pin: &str) -> (Site, VirtualCard, AgentSession, Desk) {
    at_desk_on(Backend::Embedded, username, pin).expect("the embedded directory is always there")
}

/// [`at_desk`] on `backend`; `None` when slapd is not installed outside CI (skip).
pub fn at_desk_on(backend: Backend, username: &str, pin: &str) -> Option<(Site, VirtualCard, AgentSession, Desk)> {
    let site = site_on(backend)?;
    let card = VirtualCard::insert(READER_0_PORT).unwrap();
    let agent = site.agent(&card, username, pin);
    let desk = site.desk();
    Some((site, card, agent, desk))
}
