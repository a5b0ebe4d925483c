//! The directory: where accounts live and where a reset is finally written.
//!
//! [`Directory`] is the adapter trait. The embedded SQLite directory
//! ([`embedded::EmbeddedDirectory`]) is the default backend; the LDAP backend
//! ([`ldap::LdapDirectory`]: OpenLDAP, Active Directory) implements the same trait.
//! [`open`] picks the one `[directory] backend` names. The core never asks a backend
//! for a password, only to *set* a temporary one with must-change.

pub mod embedded;
pub mod ldap;

use serde::{Deserialize, Serialize};
use time::{Date, OffsetDateTime};

use crate::groups::GroupRules;
use crate::secret::Secret;
use crate::tier::{AccountTier, AgentTier};

/// A registered contact point (email address or phone number) and when it last changed.
/// Recently changed contact points escalate risk and are never used for callbacks or codes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactPoint {
    pub value: String,
    /// Free label: "work", "mobile", "personal".
    pub label: String,
    /// When it last changed; `None` when the directory cannot tell (an LDAP directory
    /// without a configured change attribute). Unknown counts as recent.
    #[serde(with = "time::serde::rfc3339::option")]
    pub changed_at: Option<OffsetDateTime>,
}

impl ContactPoint {
    /// Whether the point changed within `window` before `now` (or after `now`, a
    /// clock skew), or when is unknown: the risk rules treat all three alike.
    pub fn changed_within(&self, now: OffsetDateTime, window: time::Duration) -> bool {
        self.changed_at.is_none_or(|t| t > now || now - t < window)
    }
}

/// The backend `[directory] backend` names: the embedded directory in `data_dir`, or
/// the LDAP directory of `[directory.ldap]` (with its side store in `data_dir`).
pub fn open(config: &crate::config::Config) -> Result<Box<dyn Directory + Send>, DirectoryError> {
    Ok(match config.directory.backend {
        crate::config::Backend::Embedded => Box::new(embedded::EmbeddedDirectory::open(&config.data_dir, config)?),
        crate::config::Backend::Ldap => Box::new(ldap::LdapDirectory::open(config)?),
    })
}

/// An account as the directory describes it: attributes and the groups it is in
/// (names or DNs, as the backend knows them). No tier: the core derives tiers from the
/// groups ([`Account::classify`]). Holds nothing secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectoryEntry {
    pub username: String,
    pub display_name: String,
    pub employee_id: String,
    pub department: String,
    pub location: String,
    /// Username of the account's manager, if any.
    pub manager: Option<String>,
    pub date_of_hire: Date,
    pub emails: Vec<ContactPoint>,
    pub phones: Vec<ContactPoint>,
    /// Group names or distinguished names.
    pub groups: Vec<String>,
    /// Flagged by the security team or by lockout: resets escalate.
    pub flagged: bool,
    /// For a flag a lockout set: when it lapses. `None`: until the security team clears it.
    #[serde(with = "time::serde::rfc3339::option")]
    pub flagged_until: Option<OffsetDateTime>,
    pub must_change_password: bool,
    /// Verification lockout (too many failed verifications) until this instant.
    #[serde(with = "time::serde::rfc3339::option")]
    pub verification_locked_until: Option<OffsetDateTime>,
    /// Distinguished name for LDAP backends; `None` for the embedded one.
    pub dn: Option<String>,
}

/// An account as the core sees it: the directory's entry and the tiers its groups
/// confer under the configured [`crate::groups::GroupRules`]. Safe to show an agent.
/// The entry's fields read through (`account.username`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    #[serde(flatten)]
    pub entry: DirectoryEntry,
    /// From the groups, through `[tiers]`.
    pub tier: AccountTier,
    /// `Some` if the account is a help-desk agent (member of an agent group, `[agents]`).
    pub agent_tier: Option<AgentTier>,
}

impl Account {
    /// The account a directory entry describes, with the tiers its groups confer under
    /// `rules`. A group that looks privileged but maps to no tier is logged.
    pub fn classify(entry: DirectoryEntry, rules: &GroupRules) -> Self {
        rules.warn_unmapped(&entry.groups, &entry.username);
        Self { tier: rules.account_tier(&entry.groups), agent_tier: rules.agent_tier(&entry.groups), entry }
    }
}

impl std::ops::Deref for Account {
    type Target = DirectoryEntry;
    fn deref(&self) -> &DirectoryEntry {
        &self.entry
    }
}

impl std::ops::DerefMut for Account {
    fn deref_mut(&mut self) -> &mut DirectoryEntry {
        &mut self.entry
    }
}

impl DirectoryEntry {
    /// Whether the account is flagged at `at` (a lockout's flag lapses at `flagged_until`).
    pub fn flagged_at(&self, at: OffsetDateTime) -> bool {
        self.flagged && self.flagged_until.is_none_or(|until| at < until)
    }
}

/// A security question and the argon2id PHC string of its normalised answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityAnswer {
    pub question: String,
    /// `$argon2id$v=19$...` of [`crate::text::normalize_answer`] of the answer.
    pub answer_phc: String,
}

/// What the verification steps check against. Never sent to the UI.
#[derive(Debug, Clone, Default)]
pub struct VerificationMaterial {
    pub security_answers: Vec<SecurityAnswer>,
    /// TOTP key (RFC 6238) as lowercase hex of the raw key bytes, if the account has an
    /// enrolled authenticator app.
    pub totp_secret: Option<Secret>,
}

/// Outcome of checking a password against the directory (embedded backend, demo aid).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PasswordCheck {
    pub valid: bool,
    pub must_change: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    #[error("no account named {0:?} in the directory; check the spelling or search by employee ID")]
    NotFound(String),
    #[error("the directory database could not be used ({0}); check the data directory and its permissions")]
    Database(#[from] rusqlite::Error),
    #[error("the directory database {path} is from a newer ResetDesk (schema {found}, this build knows up to {known}); upgrade ResetDesk")]
    SchemaTooNew { path: String, found: i64, known: i64 },
    #[error("stored data for {username:?} is corrupt: {what}; repair the record with the directory tools")]
    Corrupt { username: String, what: String },
    #[error("password hashing failed: {0}")]
    Hash(String),
    #[error("the directory refused the change: {0}")]
    Refused(String),
    #[error("the directory is unreachable: {0}; check the network and the directory URL in the configuration")]
    Unreachable(String),
}

/// A directory backend. Implementations are adapters: they do IO, the core decides.
pub trait Directory {
    /// Short name for logs and the audit record: "embedded", "openldap", "active-directory".
    fn backend_name(&self) -> &'static str;

    /// The entry of the account with this exact username.
    fn entry(&self, username: &str) -> Result<DirectoryEntry, DirectoryError>;

    /// Entries whose username, display name, employee ID or a registered e-mail address
    /// contain `query` (case-insensitive).
    fn search_entries(&self, query: &str, limit: usize) -> Result<Vec<DirectoryEntry>, DirectoryError>;

    /// The account with this exact username, its tiers mapped by the core's `rules`.
    /// (Backends implement [`Directory::entry`]; this is not theirs to override.)
    fn account(&self, username: &str, rules: &GroupRules) -> Result<Account, DirectoryError> {
        Ok(Account::classify(self.entry(username)?, rules))
    }

    /// [`Directory::search_entries`], with tiers mapped by the core's `rules`.
    fn search(&self, query: &str, limit: usize, rules: &GroupRules) -> Result<Vec<Account>, DirectoryError> {
        Ok(self.search_entries(query, limit)?.into_iter().map(|e| Account::classify(e, rules)).collect())
    }

    /// Security answers and TOTP key for the verification steps.
    fn verification_material(&self, username: &str) -> Result<VerificationMaterial, DirectoryError>;

    /// Set a temporary password **and** must-change-at-next-login, atomically.
    /// There is deliberately no way to set a permanent password.
    fn set_temporary_password(&self, username: &str, password: &Secret) -> Result<(), DirectoryError>;

    /// After too many failed verifications: refuse verification for the account until
    /// `until` and flag it until `flag_until`, atomically. A flag without an end (set by
    /// the security team) keeps no end.
    fn lock_verification(
        &self,
        username: &str,
        until: OffsetDateTime,
        flag_until: OffsetDateTime,
    ) -> Result<(), DirectoryError>;

    /// An admin's action: end the account's verification lockout now (the flag stays).
    fn clear_verification_lock(&self, username: &str) -> Result<(), DirectoryError> {
        let _ = username;
        Err(DirectoryError::Refused(format!(
            "the {} backend cannot clear a verification lock here; use its own tools",
            self.backend_name()
        )))
    }

    /// An admin's action: clear the account's flag (set by a lockout or the security team).
    fn clear_flag(&self, username: &str) -> Result<(), DirectoryError> {
        let _ = username;
        Err(DirectoryError::Refused(format!(
            "the {} backend cannot clear a flag here; use its own tools",
            self.backend_name()
        )))
    }

    /// An admin's action: the account's `kind` contact point labelled `point.label`
    /// becomes `point.value`, changed at `point.changed_at` (the time the risk rules
    /// read: a recent change escalates and the point is not used for codes or callbacks).
    fn set_contact_point(
        &self,
        username: &str,
        kind: crate::workflow::ContactKind,
        point: &ContactPoint,
    ) -> Result<(), DirectoryError> {
        let _ = (username, kind, point);
        Err(DirectoryError::Refused(format!(
            "the {} backend cannot edit contact points here; use its own tools",
            self.backend_name()
        )))
    }

    /// When the account's password was last set, if the backend can tell (`None`:
    /// unknown). The desk compares it with a reset intent left without an outcome.
    fn password_changed_at(&self, username: &str) -> Result<Option<OffsetDateTime>, DirectoryError> {
        let _ = username;
        Ok(None)
    }
}
