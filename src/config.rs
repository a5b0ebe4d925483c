//! `resetdesk.toml`: one file, documented defaults, strict parsing.
//!
//! Unknown keys, wrong types and bad values are errors that name the file, the line
//! and the key. Every field has a default, so an empty file is a valid demo
//! configuration; `mode = "production"` tightens what is accepted.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::groups::{check_group, AgentGroups, GroupRules};
use crate::policy::PolicyConfig;

/// Whether this installation is a demo/test desk or a production one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Demo and tests: virtual tokens are allowed (with a loud banner).
    #[default]
    Demo,
    /// Production: virtual tokens, default PINs/management keys are refused.
    Production,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `demo` (default) or `production`.
    pub mode: Mode,
    /// Organisation name, used in certificates, e-mails and the password blocklist.
    pub organisation: String,
    /// Where ResetDesk keeps its databases and the organisation CA (embedded default).
    pub data_dir: PathBuf,
    pub directory: DirectoryConfig,
    pub tiers: TierMapping,
    pub agents: AgentConfig,
    pub ca: CaConfig,
    pub tokens: TokenConfig,
    pub policy: PolicyConfig,
    pub collector: CollectorConfig,
    pub smtp: SmtpConfig,
    pub ticketing: TicketingConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            mode: Mode::Demo,
            organisation: "Example Corp".into(),
            data_dir: PathBuf::from("/var/lib/resetdesk"),
            directory: DirectoryConfig::default(),
            tiers: TierMapping::default(),
            agents: AgentConfig::default(),
            ca: CaConfig::default(),
            tokens: TokenConfig::default(),
            policy: PolicyConfig::default(),
            collector: CollectorConfig::default(),
            smtp: SmtpConfig::default(),
            ticketing: TicketingConfig::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// SQLite file `directory.sqlite` in the data directory.
    #[default]
    Embedded,
    /// OpenLDAP or Active Directory over LDAPS (see `[directory.ldap]`).
    Ldap,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DirectoryConfig {
    pub backend: Backend,
    pub ldap: LdapConfig,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LdapFlavour {
    #[default]
    Openldap,
    ActiveDirectory,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LdapConfig {
    /// `ldaps://host:636` (plain `ldap://` only with StartTLS, never in production).
    pub url: String,
    pub flavour: LdapFlavour,
    pub base_dn: String,
    /// The reset service account. Its password comes from the file below, never from here.
    pub bind_dn: String,
    pub bind_password_file: Option<PathBuf>,
    /// PEM bundle of the CA that issued the directory's TLS certificate; unset: the
    /// system's roots.
    pub ca_file: Option<PathBuf>,
    /// With an `ldap://` URL: upgrade with StartTLS before binding (required unless
    /// `allow_plain_ldap_for_tests`).
    pub starttls: bool,
    /// Plain LDAP without TLS, for a test directory on loopback. Refused in production.
    pub allow_plain_ldap_for_tests: bool,
    /// Timeout of the connection and of each operation, in seconds.
    pub timeout_seconds: u32,
    /// Most entries one search returns (1 to 1000).
    pub size_limit: u32,
    /// Attribute (GeneralizedTime) holding when the account's contact details last
    /// changed. Empty: the connector cannot tell, and the risk rules escalate.
    pub contact_changed_attribute: String,
    /// Attribute holding the date of hire (`YYYY-MM-DD` or GeneralizedTime). Empty: no
    /// date on record, so the employee-record step cannot pass on it.
    pub hire_date_attribute: String,
}

impl Default for LdapConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            flavour: LdapFlavour::default(),
            base_dn: String::new(),
            bind_dn: String::new(),
            bind_password_file: None,
            ca_file: None,
            starttls: false,
            allow_plain_ldap_for_tests: false,
            timeout_seconds: 5,
            size_limit: 50,
            contact_changed_attribute: String::new(),
            hire_date_attribute: String::new(),
        }
    }
}

/// Which directory groups make an account privileged or highest-privilege: names or
/// DNs, matched case-insensitively by the core (`crate::groups`). An account in several
/// is given the highest tier among them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TierMapping {
    pub privileged_groups: Vec<String>,
    pub highest_groups: Vec<String>,
}

impl Default for TierMapping {
    fn default() -> Self {
        Self {
            privileged_groups: vec![
                "it-admins".into(),
                "finance-approvers".into(),
                "helpdesk-senior".into(),
                "hr-admins".into(),
                // Active Directory accounts with adminCount=1 (AdminSDHolder), as the
                // LDAP adapter marks them (`directory::ldap::active_directory`).
                "adminCount".into(),
            ],
            highest_groups: vec![
                "domain-admins".into(),
                "security-admins".into(),
                "helpdesk-admin".into(),
                // Active Directory's built-in administrator groups, by name (any DN
                // whose CN this is matches too).
                "Domain Admins".into(),
                "Enterprise Admins".into(),
                "Schema Admins".into(),
            ],
        }
    }
}

/// Agent groups (names or DNs, as in [`TierMapping`]) and session behaviour.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentConfig {
    pub junior_group: String,
    pub senior_group: String,
    pub admin_group: String,
    /// Lock the session after this many seconds without agent activity.
    pub idle_lock_seconds: u32,
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            junior_group: "helpdesk-junior".into(),
            senior_group: "helpdesk-senior".into(),
            admin_group: "helpdesk-admin".into(),
            idle_lock_seconds: 300,
        }
    }
}

/// The organisation CA that issues agents' PIV certificates.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CaConfig {
    /// PEM certificate of the CA. Default: `<data_dir>/ca/ca.pem` (made by `resetdesk ca init`).
    pub cert_file: Option<PathBuf>,
}

/// What the desk accepts as an agent's token.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokenConfig {
    /// Accept keys whose on-device generation cannot be proven by PIV attestation
    /// (YubiKeys older than firmware 4.3). Demo mode always accepts them; in
    /// production they are refused unless this is `true`. Virtual tokens and
    /// factory PINs/management keys are refused in production regardless.
    pub allow_unattested: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CollectorConfig {
    /// Base URL of the audit collector (`https://...`). Empty: no upstream sync.
    pub url: String,
    /// A file with the collector's receipt key: its signed-note verifier key
    /// (`resetdesk-collector init` writes `<key>.vkey`), or a v1 collector's public
    /// key PEM. Read with [`crate::audit::CollectorKeys::add_text`].
    pub receipt_key_file: Option<PathBuf>,
    /// The collector's signed-note verifier key string
    /// (`name+hex(key id)+base64(0x01 || Ed25519 key)`), instead of a file.
    pub verifier_key: Option<String>,
    /// The CA certificate (PEM) the desk pins for the collector's TLS certificate
    /// (`resetdesk-collector demo-tls` writes `ca.pem`). Unset: the system's roots.
    pub ca_file: Option<PathBuf>,
    /// A file holding this desk's key for the collector's desk services (approvals,
    /// cross-desk history, alerts), made by `resetdesk-collector desk-key add NAME
    /// --out FILE`. Unset: the desk uses none of those services. Set (with `url`):
    /// account histories come from the collector's signed cross-desk answer merged
    /// with this desk's log, and each reset mail carries a "this wasn't me" link to
    /// `<url>/report/<token>`.
    pub desk_key_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpSecurity {
    /// STARTTLS required (default).
    #[default]
    Starttls,
    /// Implicit TLS (port 465).
    Tls,
    /// No TLS: only for a capture server on loopback in demo mode.
    None,
}

/// Where the outbox sender delivers the queued mail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MailDelivery {
    /// The SMTP server `[smtp] host` (with STARTTLS or TLS unless `security = "none"`).
    Smtp,
    /// One `.eml` file per message under `<data_dir>/mail/`, for a demo user to open.
    /// Demo only: production refuses it.
    Eml,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmtpConfig {
    /// `smtp` or `eml`. Unset: `smtp` when `host` is set, else `eml` in demo mode and
    /// nothing in production (messages then wait in the outbox table).
    pub delivery: Option<MailDelivery>,
    pub host: String,
    pub port: u16,
    pub security: SmtpSecurity,
    pub from: String,
    /// Where lockouts and flagged patterns are reported.
    pub security_team: String,
    /// PEM bundle of the CA that issued the server's certificate; unset: the system's roots.
    pub ca_file: Option<PathBuf>,
    /// SMTP AUTH user; empty: no authentication. Its password comes from the file below.
    pub username: String,
    pub password_file: Option<PathBuf>,
}

impl SmtpConfig {
    /// The delivery in force for `mode` (see [`SmtpConfig::delivery`]).
    pub fn effective_delivery(&self, mode: Mode) -> Option<MailDelivery> {
        match (self.delivery, self.host.is_empty(), mode) {
            (Some(d), _, _) => Some(d),
            (None, false, _) => Some(MailDelivery::Smtp),
            (None, true, Mode::Demo) => Some(MailDelivery::Eml),
            (None, true, Mode::Production) => None,
        }
    }
}

impl Default for SmtpConfig {
    fn default() -> Self {
        Self {
            delivery: None,
            host: String::new(),
            port: 587,
            security: SmtpSecurity::Starttls,
            from: "resetdesk@example.com".into(),
            security_team: "security@example.com".into(),
            ca_file: None,
            username: String::new(),
            password_file: None,
        }
    }
}

/// The body a ticket update is posted with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TicketTemplate {
    /// ServiceNow Table API: `{"work_notes": ..., "correlation_id": ..., ...}`, e.g. to
    /// `POST /api/now/table/incident`.
    #[default]
    Servicenow,
    /// Jira REST: `{"body": ...}` to `POST /rest/api/2/issue/{ticket}/comment`.
    Jira,
    /// The JSON of `template_file`, its `{{placeholders}}` filled in.
    Custom,
}

/// The HTTP method a ticket update is sent with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WebhookMethod {
    /// Jira's comment endpoint; a ServiceNow Import Set or Scripted REST endpoint.
    #[default]
    Post,
    /// ServiceNow's Table API on one record: `PATCH /api/now/table/incident/{ticket}`.
    Patch,
    Put,
}

/// The ticketing webhook: a secret-free summary of each request's outcome, posted to
/// the ticket named at intake. Unset `url`: nothing is posted.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TicketingConfig {
    /// `https://...`; `{ticket}` in it is replaced by the ticket number (percent-encoded).
    pub url: String,
    /// `post` (default), `patch` or `put`.
    pub method: WebhookMethod,
    pub template: TicketTemplate,
    /// For `template = "custom"`: a JSON file with `{{ticket}}`, `{{request_id}}`,
    /// `{{account}}`, `{{agent}}`, `{{outcome}}`, `{{summary}}`, `{{at}}` inside strings.
    pub template_file: Option<PathBuf>,
    /// A file holding one header line, `Name: value` (e.g. `Authorization: Bearer ...`).
    pub auth_header_file: Option<PathBuf>,
    /// PEM bundle of the CA that issued the server's certificate; unset: the system's roots.
    pub ca_file: Option<PathBuf>,
    /// Allow a plain `http://` URL, for a local test receiver only. Production refuses it.
    pub allow_plain_http_for_tests: bool,
}

impl TicketingConfig {
    /// Whether ticket updates are posted at all.
    pub fn enabled(&self) -> bool {
        !self.url.trim().is_empty()
    }
}

/// A configuration problem, with enough context to fix it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read the configuration file: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}: {key}: {message}")]
    Invalid {
        path: String,
        /// 1-based line of the offending text, 0 when it applies to the whole file.
        line: usize,
        /// Dotted key (`smtp.port`), or `-` when the file itself does not parse.
        key: String,
        message: String,
    },
}

impl AgentConfig {
    /// The agent groups, for the core's mapping.
    pub fn groups(&self) -> AgentGroups {
        AgentGroups::new(&self.junior_group, &self.senior_group, &self.admin_group)
    }
}

impl Config {
    /// The mapping from directory groups to tiers: `[tiers]` and `[agents]`.
    pub fn group_rules(&self) -> GroupRules {
        GroupRules::new(&self.tiers.privileged_groups, &self.tiers.highest_groups, self.agents.groups())
    }

    /// Read, parse and validate a configuration file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.display().to_string(), source })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parse and validate configuration text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| line_of(text, s.start)).unwrap_or(0);
            let message = e.message().to_owned();
            let key = e
                .span()
                .and_then(|s| key_at(text, s.start))
                .or_else(|| {
                    let key = key_from_message(&message)?;
                    Some(dotted(e.span().and_then(|s| table_at(text, s.start)), &key))
                })
                .unwrap_or_else(|| "-".into());
            ConfigError::Invalid { path: origin.to_owned(), line, key, message }
        })?;
        config.validate(text, origin)?;
        Ok(config)
    }

    /// Checks serde cannot express. Errors point at the key's line when it is present.
    fn validate(&self, text: &str, origin: &str) -> Result<(), ConfigError> {
        let bad = |key: &str, message: String| ConfigError::Invalid {
            path: origin.to_owned(),
            line: find_key_line(text, key),
            key: key.to_owned(),
            message,
        };
        if let Err(e) = self.policy.validate() {
            return Err(bad(&format!("policy.{}", e.key), e.message));
        }
        if self.organisation.trim().is_empty() {
            return Err(bad("organisation", "must not be empty".into()));
        }
        if self.agents.idle_lock_seconds == 0 || self.agents.idle_lock_seconds > 3600 {
            return Err(bad(
                "agents.idle_lock_seconds",
                format!("{} is out of range: use 1 to 3600 seconds", self.agents.idle_lock_seconds),
            ));
        }
        let agent_groups = [
            ("agents.junior_group", &self.agents.junior_group),
            ("agents.senior_group", &self.agents.senior_group),
            ("agents.admin_group", &self.agents.admin_group),
        ];
        for (key, group) in agent_groups {
            check_group(group).map_err(|m| bad(key, m))?;
        }
        let tier_lists = [
            ("tiers.privileged_groups", &self.tiers.privileged_groups),
            ("tiers.highest_groups", &self.tiers.highest_groups),
        ];
        for (key, list) in tier_lists {
            for group in list {
                check_group(group).map_err(|m| bad(key, m))?;
            }
        }
        if self.directory.backend == Backend::Ldap {
            self.validate_ldap().map_err(|(key, message)| bad(key, message))?;
        }
        if !self.smtp.host.is_empty() && self.smtp.port == 0 {
            return Err(bad("smtp.port", "0 is not a port: use 587 (STARTTLS) or 465 (TLS)".into()));
        }
        if self.mode == Mode::Production && self.smtp.security == SmtpSecurity::None && !self.smtp.host.is_empty() {
            return Err(bad("smtp.security", "production refuses SMTP without TLS".into()));
        }
        self.validate_smtp().map_err(|(key, message)| bad(key, message))?;
        self.validate_ticketing().map_err(|(key, message)| bad(key, message))?;
        let url = &self.collector.url;
        if !url.is_empty() && !url.starts_with("https://") && !url.starts_with("http://") {
            return Err(bad("collector.url", format!("{:?} is not an http(s) URL", self.collector.url)));
        }
        if self.mode == Mode::Production && self.collector.url.starts_with("http://") {
            return Err(bad("collector.url", "production requires https://".into()));
        }
        let c = &self.collector;
        if !url.is_empty() && c.verifier_key.is_none() && c.receipt_key_file.is_none() {
            return Err(bad(
                "collector.verifier_key",
                "a collector url needs the collector's verifier key (what `resetdesk-collector init` printed) to check its receipts".into(),
            ));
        }
        Ok(())
    }

    /// The `[directory.ldap]` checks: `(key, message)` of the first problem.
    fn validate_ldap(&self) -> Result<(), (&'static str, String)> {
        let ldap = &self.directory.ldap;
        let url = &ldap.url;
        if !(url.starts_with("ldaps://") || url.starts_with("ldap://")) {
            return Err(("directory.ldap.url", format!("{url:?} is not an LDAP URL: use ldaps://host:636")));
        }
        let plain = url.starts_with("ldap://") && !ldap.starttls;
        if self.mode == Mode::Production && ldap.allow_plain_ldap_for_tests {
            return Err(("directory.ldap.allow_plain_ldap_for_tests", "production refuses plain LDAP".into()));
        }
        if self.mode == Mode::Production && plain {
            return Err((
                "directory.ldap.url",
                "production requires ldaps:// (or ldap:// with starttls = true)".into(),
            ));
        }
        if plain && !ldap.allow_plain_ldap_for_tests {
            return Err((
                "directory.ldap.url",
                format!(
                    "{url:?} is plain LDAP: use ldaps://, or starttls = true; plain LDAP needs allow_plain_ldap_for_tests = true"
                ),
            ));
        }
        if ldap.starttls && url.starts_with("ldaps://") {
            return Err(("directory.ldap.starttls", "StartTLS is for ldap:// URLs; ldaps:// is TLS already".into()));
        }
        if ldap.base_dn.trim().is_empty() {
            return Err(("directory.ldap.base_dn", "required for the ldap backend".into()));
        }
        check_group(&ldap.base_dn).map_err(|m| ("directory.ldap.base_dn", m))?;
        if ldap.bind_dn.trim().is_empty() {
            return Err(("directory.ldap.bind_dn", "the reset service account's DN is required".into()));
        }
        if ldap.bind_password_file.is_none() {
            return Err((
                "directory.ldap.bind_password_file",
                "the service account's password is read from a file (never from the configuration): name it".into(),
            ));
        }
        if ldap.timeout_seconds == 0 || ldap.timeout_seconds > 120 {
            return Err((
                "directory.ldap.timeout_seconds",
                format!("{} is out of range: use 1 to 120", ldap.timeout_seconds),
            ));
        }
        if ldap.size_limit == 0 || ldap.size_limit > 1000 {
            return Err(("directory.ldap.size_limit", format!("{} is out of range: use 1 to 1000", ldap.size_limit)));
        }
        for (key, attr) in [
            ("directory.ldap.contact_changed_attribute", &ldap.contact_changed_attribute),
            ("directory.ldap.hire_date_attribute", &ldap.hire_date_attribute),
        ] {
            if !attr.is_empty() && !attr.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
                return Err((key, format!("{attr:?} is not an attribute name")));
            }
        }
        Ok(())
    }

    /// The `[smtp]` checks: `(key, message)` of the first problem.
    fn validate_smtp(&self) -> Result<(), (&'static str, String)> {
        let smtp = &self.smtp;
        if self.mode == Mode::Production && smtp.delivery == Some(MailDelivery::Eml) {
            return Err((
                "smtp.delivery",
                "production refuses the eml sink (mail written to files is never sent): use delivery = \"smtp\" with a host"
                    .into(),
            ));
        }
        let Some(delivery) = smtp.effective_delivery(self.mode) else { return Ok(()) };
        if delivery == MailDelivery::Smtp && smtp.host.trim().is_empty() {
            return Err(("smtp.host", "delivery = \"smtp\" needs the mail server's host name".into()));
        }
        if smtp.from.parse::<lettre::message::Mailbox>().is_err() {
            return Err(("smtp.from", format!("{:?} is not an e-mail address: use resetdesk@your-domain", smtp.from)));
        }
        let team = &smtp.security_team;
        if !team.trim().is_empty() && team.parse::<lettre::Address>().is_err() {
            return Err(("smtp.security_team", format!("{team:?} is not an e-mail address")));
        }
        if delivery == MailDelivery::Smtp && smtp.username.is_empty() != smtp.password_file.is_none() {
            return Err((
                "smtp.password_file",
                "SMTP authentication needs both username and password_file (or neither)".into(),
            ));
        }
        Ok(())
    }

    /// The `[ticketing]` checks: `(key, message)` of the first problem.
    fn validate_ticketing(&self) -> Result<(), (&'static str, String)> {
        let t = &self.ticketing;
        if self.mode == Mode::Production && t.allow_plain_http_for_tests {
            return Err((
                "ticketing.allow_plain_http_for_tests",
                "production refuses plain HTTP: remove this key".into(),
            ));
        }
        if !t.enabled() {
            return Ok(());
        }
        let rest = match (t.url.strip_prefix("https://"), t.url.strip_prefix("http://")) {
            (Some(rest), _) => rest,
            (None, Some(rest)) if t.allow_plain_http_for_tests => rest,
            (None, Some(_)) => {
                return Err((
                    "ticketing.url",
                    "plain http:// is refused: use https:// (a local test receiver may set allow_plain_http_for_tests in demo mode)".into(),
                ))
            }
            (None, None) => return Err(("ticketing.url", format!("{:?} is not an https:// URL", t.url))),
        };
        let host = rest.split(['/', '?', '#']).next().unwrap_or("");
        if host.is_empty() || host.contains('@') || rest.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(("ticketing.url", format!("{:?} has no usable host (and no credentials belong in it)", t.url)));
        }
        if t.template == TicketTemplate::Custom && t.template_file.is_none() {
            return Err(("ticketing.template_file", "template = \"custom\" needs the JSON template file".into()));
        }
        if t.template != TicketTemplate::Custom && t.template_file.is_some() {
            return Err(("ticketing.template_file", "only used with template = \"custom\"".into()));
        }
        Ok(())
    }

    /// The organisation CA certificate path (explicit, or the embedded default).
    pub fn ca_cert_path(&self) -> PathBuf {
        self.ca.cert_file.clone().unwrap_or_else(|| self.data_dir.join("ca").join("ca.pem"))
    }

    /// A commented configuration with every default, for `resetdesk config defaults`.
    pub fn defaults_toml() -> String {
        toml::to_string_pretty(&Config::default()).unwrap_or_default()
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].bytes().filter(|b| *b == b'\n').count() + 1
}

/// serde names the key in "unknown field `x`" and "missing field `x`".
fn key_from_message(message: &str) -> Option<String> {
    for prefix in ["unknown field `", "missing field `", "duplicate key `"] {
        if let Some(rest) = message.split(prefix).nth(1) {
            return rest.split('`').next().map(str::to_owned);
        }
    }
    None
}

/// The key written on the line holding `offset` (`key = value`), with its table.
fn key_at(text: &str, offset: usize) -> Option<String> {
    let line_start = text[..offset.min(text.len())].rfind('\n').map_or(0, |i| i + 1);
    let line = text[line_start..].lines().next()?;
    let key = line.split('=').next()?.trim();
    if key.is_empty() || key.starts_with('[') {
        return None;
    }
    // The line holds a key, not a header, so its table is the last header before it.
    Some(dotted(table_at(text, offset), key))
}

/// `table.key`, or `key` at the top level.
fn dotted(table: Option<String>, key: &str) -> String {
    match table {
        Some(t) => format!("{t}.{key}"),
        None => key.to_owned(),
    }
}

/// The table (`[a.b]`) whose header is on, or last before, the line holding `offset`.
fn table_at(text: &str, offset: usize) -> Option<String> {
    let line_end = text[offset.min(text.len())..].find('\n').map_or(text.len(), |i| offset + i);
    text[..line_end]
        .lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix('[').and_then(|l| l.strip_suffix(']')).map(|t| t.trim().to_owned()))
}

/// 1-based line where a dotted key is set, or 0 when it is not written in the file.
fn find_key_line(text: &str, dotted: &str) -> usize {
    let (table, key) = match dotted.rsplit_once('.') {
        Some((t, k)) => (Some(t), k),
        None => (None, dotted),
    };
    let mut current: Option<String> = None;
    for (i, line) in text.lines().enumerate() {
        let l = line.trim();
        if let Some(t) = l.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = Some(t.trim().to_owned());
            if table.is_some() && current.as_deref() == table && key.is_empty() {
                return i + 1;
            }
            continue;
        }
        let k = l.split('=').next().unwrap_or("").trim();
        if k == key && current.as_deref() == table {
            return i + 1;
        }
    }
    // The table header, if the key itself is absent.
    if let Some(t) = table.or(Some(dotted)) {
        for (i, line) in text.lines().enumerate() {
            if line.trim() == format!("[{t}]") {
                return i + 1;
            }
        }
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> (usize, String, String) {
        match Config::parse(text, "t.toml") {
            Err(ConfigError::Invalid { line, key, message, .. }) => (line, key, message),
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn a_collector_url_needs_the_key_that_checks_its_receipts() {
        let (_, key, message) = err("[collector]\nurl = \"https://c.example:8443\"\n");
        assert_eq!(key, "collector.verifier_key");
        assert!(message.contains("resetdesk-collector init"), "{message}");
        let with_key = "[collector]\nurl = \"https://c.example:8443\"\nverifier_key = \"c.example/log+01020304+AQ\"\n";
        assert!(Config::parse(with_key, "t").is_ok());
    }

    #[test]
    fn empty_file_is_the_documented_default() {
        assert_eq!(Config::parse("", "t").unwrap(), Config::default());
    }

    #[test]
    fn defaults_round_trip() {
        let text = Config::defaults_toml();
        assert_eq!(Config::parse(&text, "defaults").unwrap(), Config::default());
    }

    #[test]
    fn misspelt_key_names_line_and_key() {
        let (line, key, msg) = err("organisation = \"X\"\n\n[smtp]\nhots = \"mail\"\n");
        assert_eq!((line, key.as_str()), (4, "smtp.hots"));
        assert!(msg.contains("unknown field"), "{msg}");
    }

    #[test]
    fn wrong_type_names_line_and_dotted_key() {
        let (line, key, _) = err("[smtp]\nhost = \"m\"\nport = \"twenty-five\"\n");
        assert_eq!((line, key.as_str()), (3, "smtp.port"));
    }

    #[test]
    fn bad_enum_value_is_an_error() {
        let (line, key, _) = err("[directory]\nbackend = \"oracle\"\n");
        assert_eq!((line, key.as_str()), (2, "directory.backend"));
    }

    #[test]
    fn bad_value_is_caught_by_validation_with_its_line() {
        let (line, key, msg) = err("[agents]\nidle_lock_seconds = 0\n");
        assert_eq!((line, key.as_str()), (2, "agents.idle_lock_seconds"));
        assert!(msg.contains("1 to 3600"));
    }

    #[test]
    fn policy_weaker_for_higher_tier_is_refused_with_its_line() {
        let text = "[policy.highest]\nmin_factors = 0\n";
        match Config::parse(text, "t.toml") {
            Err(ConfigError::Invalid { key, .. }) => assert!(key.starts_with("policy."), "{key}"),
            Ok(_) => panic!("a highest tier with no factors must be refused"),
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn production_refuses_plain_ldap() {
        let text = "mode = \"production\"\n[directory]\nbackend = \"ldap\"\n[directory.ldap]\nurl = \"ldap://dc\"\nbase_dn = \"dc=x\"\n";
        let (line, key, _) = err(text);
        assert_eq!((line, key.as_str()), (5, "directory.ldap.url"));
    }

    const LDAP: &str = "[directory]\nbackend = \"ldap\"\n[directory.ldap]\nbase_dn = \"dc=example,dc=test\"\nbind_dn = \"cn=desk,dc=example,dc=test\"\nbind_password_file = \"/p\"\n";

    #[test]
    fn plain_ldap_needs_the_explicit_test_switch_and_never_in_production() {
        let (line, key, msg) = err(&format!("{LDAP}url = \"ldap://127.0.0.1:3389\"\n"));
        assert_eq!((line, key.as_str()), (7, "directory.ldap.url"));
        assert!(msg.contains("allow_plain_ldap_for_tests"), "{msg}");
        let ok = format!("{LDAP}url = \"ldap://127.0.0.1:3389\"\nallow_plain_ldap_for_tests = true\n");
        assert!(Config::parse(&ok, "t").unwrap().directory.ldap.allow_plain_ldap_for_tests);
        let (line, key, _) = err(&format!("mode = \"production\"\n{ok}"));
        assert_eq!((line, key.as_str()), (9, "directory.ldap.allow_plain_ldap_for_tests"));
        let starttls = format!("mode = \"production\"\n{LDAP}url = \"ldap://dc\"\nstarttls = true\n");
        assert!(Config::parse(&starttls, "t").is_ok(), "StartTLS is TLS");
    }

    #[test]
    fn ldap_section_errors_name_line_and_key() {
        let (line, key, _) =
            err("[directory]\nbackend = \"ldap\"\n[directory.ldap]\nurl = \"ldaps://dc\"\nbase_dn = \"dc=x\"\n");
        assert_eq!((line, key.as_str()), (3, "directory.ldap.bind_dn"));
        let (line, key, _) = err(&format!("{LDAP}url = \"ldaps://dc\"\nsize_limit = 0\n"));
        assert_eq!((line, key.as_str()), (8, "directory.ldap.size_limit"));
        let (line, key, _) = err(&format!("{LDAP}url = \"ldaps://dc\"\ncontact_changed_attribute = \"x)(y\"\n"));
        assert_eq!((line, key.as_str()), (8, "directory.ldap.contact_changed_attribute"));
        let (line, key, _) = err(&format!("{LDAP}url = \"ldaps://dc\"\nstarttls = true\n"));
        assert_eq!((line, key.as_str()), (8, "directory.ldap.starttls"));
        let (line, key, _) = err(&format!("{LDAP}url = \"ldaps://dc\"\ntimeout = 3\n"));
        assert_eq!((line, key.as_str()), (8, "directory.ldap.timeout"));
    }

    #[test]
    fn production_refuses_the_eml_sink_with_its_line() {
        let (line, key, msg) = err("mode = \"production\"\n\n[smtp]\nhost = \"mail\"\ndelivery = \"eml\"\n");
        assert_eq!((line, key.as_str()), (5, "smtp.delivery"));
        assert!(msg.contains("eml"), "{msg}");
        let demo = Config::parse("[smtp]\ndelivery = \"eml\"\n", "t").unwrap();
        assert_eq!(demo.smtp.effective_delivery(demo.mode), Some(MailDelivery::Eml));
    }

    #[test]
    fn ticketing_needs_https_unless_a_demo_test_flag_allows_plain_http() {
        let (line, key, msg) = err("[ticketing]\ntemplate = \"jira\"\nurl = \"http://tickets.example.com/x\"\n");
        assert_eq!((line, key.as_str()), (3, "ticketing.url"));
        assert!(msg.contains("https://"), "{msg}");
        let plain = "[ticketing]\nurl = \"http://127.0.0.1:8080/x\"\nallow_plain_http_for_tests = true\n";
        assert!(Config::parse(plain, "t").is_ok());
        let (line, key, _) = err(&format!("mode = \"production\"\n{plain}"));
        assert_eq!((line, key.as_str()), (4, "ticketing.allow_plain_http_for_tests"));
        let (line, key, _) = err("[ticketing]\nurl = \"https://user:pw@t.example.com/\"\n");
        assert_eq!((line, key.as_str()), (2, "ticketing.url"));
        let (line, key, _) = err("[ticketing]\nurl = \"https://t.example.com/\"\ntemplate = \"custom\"\n");
        assert_eq!((line, key.as_str()), (1, "ticketing.template_file"));
        let (line, key, msg) = err("[ticketing]\nurl = \"https://t.example.com/\"\ntemplate = \"trello\"\n");
        assert_eq!((line, key.as_str()), (3, "ticketing.template"), "{msg}");
        let ok = Config::parse(
            "[ticketing]\nurl = \"https://jira.example.com/rest/api/2/issue/{ticket}/comment\"\ntemplate = \"jira\"\n",
            "t",
        )
        .unwrap();
        assert!(ok.ticketing.enabled());
        assert!(!Config::default().ticketing.enabled(), "off unless a URL is set");
    }

    #[test]
    fn delivery_defaults_follow_host_and_mode() {
        let demo = Config::default();
        assert_eq!(demo.smtp.effective_delivery(Mode::Demo), Some(MailDelivery::Eml));
        assert_eq!(demo.smtp.effective_delivery(Mode::Production), None);
        let with_host = SmtpConfig { host: "mail".into(), ..SmtpConfig::default() };
        assert_eq!(with_host.effective_delivery(Mode::Production), Some(MailDelivery::Smtp));
    }

    #[test]
    fn smtp_section_errors_name_line_and_key() {
        let (line, key, _) = err("[smtp]\ndelivery = \"smtp\"\n");
        assert_eq!(key, "smtp.host");
        assert_eq!(line, 1, "the table header when the key is absent");
        let (line, key, _) = err("[smtp]\nhost = \"mail\"\nfrom = \"not an address\"\n");
        assert_eq!((line, key.as_str()), (3, "smtp.from"));
        let (line, key, _) = err("[smtp]\nhost = \"mail\"\nusername = \"desk\"\n");
        assert_eq!((line, key.as_str()), (1, "smtp.password_file"));
    }

    #[test]
    fn missing_file_is_a_read_error_naming_the_file() {
        let e = Config::load(Path::new("/nonexistent/resetdesk.toml")).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/resetdesk.toml"));
    }

    #[test]
    fn a_malformed_group_dn_names_its_line_and_key() {
        let (line, key, msg) = err("[agents]\nidle_lock_seconds = 60\n[tiers]\nhighest_groups = [\"CN=,DC=corp\"]\n");
        assert_eq!((line, key.as_str()), (4, "tiers.highest_groups"));
        assert!(msg.contains("distinguished name"), "{msg}");
        let (line, key, _) = err("[agents]\nsenior_group = \"  \"\n");
        assert_eq!((line, key.as_str()), (2, "agents.senior_group"));
    }
}
