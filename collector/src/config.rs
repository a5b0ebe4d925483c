//! `collector.toml`: where the collector listens, its database, keys and the
//! organisation CA. Relative paths are relative to the config file's directory.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Default request body limit: a batch of a few hundred records.
pub const DEFAULT_MAX_BODY_BYTES: usize = 8 * 1024 * 1024;
/// Default limit of records per batch.
pub const DEFAULT_MAX_BATCH: usize = 1000;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `host:port` to listen on (HTTPS only).
    pub listen: SocketAddr,
    /// The log's origin: the checkpoint's first line and the signing key's name
    /// (e.g. `collector.example.org/resetdesk`).
    pub origin: String,
    /// The collector's only state: a SQLite file (the default; a path) or a
    /// PostgreSQL URL (`postgres://user:password@host:port/db`), which several
    /// instances may share. `serve --database` overrides it.
    pub database: Database,
    /// The checkpoint signing key (`PRIVATE+KEY+...`, written by `init`).
    pub signing_key_file: PathBuf,
    /// The organisation CA certificate (PEM) that issued agents' certificates.
    pub org_ca_file: PathBuf,
    /// TLS server certificate chain and key (PEM).
    pub tls_cert_file: PathBuf,
    pub tls_key_file: PathBuf,
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    #[serde(default = "default_max_batch")]
    pub max_batch: usize,
    /// C2SP tlog-witnesses asked to cosign each new checkpoint.
    #[serde(rename = "witness", default)]
    pub witnesses: Vec<WitnessTarget>,
    /// The desks allowed to call the desk services (approvals, history, alerts): one
    /// line `<desk name> <hex sha256 of its key>` each, written by
    /// `resetdesk-collector desk-key add`. Default `desk-keys` beside the config.
    #[serde(default = "default_desk_keys")]
    pub desk_keys_file: PathBuf,
    /// `[history]`: "this wasn't me" links (how long they work) and the automatic
    /// response to a report (`flag_account_to`, `flag_days`); see
    /// [`crate::history::HistoryConfig`].
    #[serde(default)]
    pub history: crate::history::HistoryConfig,
    /// The anomaly rules evaluated at ingest (`[anomaly.<rule>]`, each with
    /// `enabled`); see [`crate::anomaly::config`] for the keys and defaults.
    #[serde(default)]
    pub anomaly: crate::anomaly::config::AnomalyConfig,
    /// Where alerts are mailed (`[security_mail]`: host, port, security, ca_file,
    /// from, to, ...; see [`crate::alerts::mail::SecurityMailConfig`]). Unset: alerts
    /// are only stored and listed.
    pub security_mail: Option<crate::alerts::mail::SecurityMailConfig>,
    /// `[approval]`: manager approval by link (`ttl_seconds`, default 1800; the approval
    /// page's rate limits `per_client` and `overall`, each `{ burst, per_minute }`).
    #[serde(default)]
    pub approval: crate::approval::ApprovalConfig,
}

fn default_desk_keys() -> PathBuf {
    PathBuf::from("desk-keys")
}

/// A witness the collector submits checkpoints to (`[[witness]]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WitnessTarget {
    /// The witness's submission prefix (`https://host:port[/path]`).
    pub url: String,
    /// Its cosignature verifier key, `name+hex(id)+base64(0x04 || Ed25519 public key)`.
    pub verifier_key: String,
    /// The CA certificate (PEM) its TLS certificate chains to.
    pub ca_file: PathBuf,
}

fn default_max_body() -> usize {
    DEFAULT_MAX_BODY_BYTES
}
fn default_max_batch() -> usize {
    DEFAULT_MAX_BATCH
}

/// Where the collector keeps its state.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(from = "String")]
pub enum Database {
    Sqlite(PathBuf),
    Postgres(String),
}

impl From<String> for Database {
    fn from(s: String) -> Self {
        if crate::store::postgres::is_postgres_url(&s) {
            Database::Postgres(s)
        } else {
            Database::Sqlite(PathBuf::from(s))
        }
    }
}

impl std::fmt::Debug for Database {
    // The URL's password stays out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Database::Sqlite(p) => write!(f, "Sqlite({})", p.display()),
            Database::Postgres(url) => write!(f, "Postgres({})", crate::store::postgres::redact(url)),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the collector config {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("collector config {path}: {source}")]
    Parse { path: String, source: toml::de::Error },
    #[error("collector config {path}: origin `{origin}` is not a valid key name (non-empty, no spaces, no '+')")]
    Origin { path: String, origin: String },
}

impl Config {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: shown.clone(), source })?;
        let mut c: Config =
            toml::from_str(&text).map_err(|source| ConfigError::Parse { path: shown.clone(), source })?;
        if !signed_note::is_key_name_valid(&c.origin) {
            return Err(ConfigError::Origin { path: shown, origin: c.origin });
        }
        let base = path.parent().unwrap_or(Path::new("."));
        if let Database::Sqlite(p) = &mut c.database {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        let witness_cas = c.witnesses.iter_mut().map(|w| &mut w.ca_file);
        let mail_files =
            c.security_mail.iter_mut().flat_map(|m| m.ca_file.iter_mut().chain(m.password_file.iter_mut()));
        for p in [
            &mut c.signing_key_file,
            &mut c.org_ca_file,
            &mut c.tls_cert_file,
            &mut c.tls_key_file,
            &mut c.desk_keys_file,
        ]
        .into_iter()
        .chain(witness_cas)
        .chain(mail_files)
        {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        Ok(c)
    }
}
