//! Connecting to the directory: LDAPS or StartTLS over rustls with the configured CA
//! (or the system's roots), timeouts on connect and on every operation, the service
//! account's bind, and how `ldap3`'s errors become [`DirectoryError`]s.
//!
//! Plain LDAP is possible only with `allow_plain_ldap_for_tests = true`, which the
//! configuration refuses in production. The service account's password is read from
//! `bind_password_file` into a [`Secret`] (zeroized) and never logged.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ldap3::{LdapConn, LdapConnSettings, LdapError, LdapResult};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};

use crate::config::LdapConfig;
use crate::directory::DirectoryError;
use crate::secret::Secret;

/// LDAP result codes the adapter tells apart (RFC 4511 appendix A).
pub mod rc {
    pub const SUCCESS: u32 = 0;
    pub const SIZE_LIMIT_EXCEEDED: u32 = 4;
    pub const INVALID_CREDENTIALS: u32 = 49;
    pub const NO_SUCH_OBJECT: u32 = 32;
    pub const BUSY: u32 = 51;
    pub const UNAVAILABLE: u32 = 52;
}

/// How to reach the directory: URL, TLS, timeouts, and the service account.
pub struct Endpoint {
    url: String,
    starttls: bool,
    tls: Option<Arc<ClientConfig>>,
    timeout: Duration,
    bind_dn: String,
    bind_password: Secret,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint").field("url", &self.url).field("bind_dn", &self.bind_dn).finish_non_exhaustive()
    }
}

impl Endpoint {
    /// The endpoint `[directory.ldap]` describes; reads the CA and the password file.
    pub fn from_config(config: &LdapConfig) -> Result<Self, DirectoryError> {
        let plain = config.url.starts_with("ldap://") && !config.starttls;
        if plain && !config.allow_plain_ldap_for_tests {
            return Err(DirectoryError::Refused(format!(
                "{} is plain LDAP: use ldaps:// or starttls = true (plain LDAP only with allow_plain_ldap_for_tests)",
                config.url
            )));
        }
        let tls = if plain { None } else { Some(Arc::new(client_config(config.ca_file.as_deref())?)) };
        let bind_password = match &config.bind_password_file {
            Some(path) => read_password(path)?,
            None => Secret::default(),
        };
        Ok(Self {
            url: config.url.clone(),
            starttls: config.starttls && config.url.starts_with("ldap://"),
            tls,
            timeout: Duration::from_secs(u64::from(config.timeout_seconds.max(1))),
            bind_dn: config.bind_dn.clone(),
            bind_password,
        })
    }

    /// The timeout of each operation.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// A new connection, not bound.
    pub fn connect(&self) -> Result<LdapConn, DirectoryError> {
        let mut settings = LdapConnSettings::new().set_conn_timeout(self.timeout).set_starttls(self.starttls);
        if let Some(tls) = &self.tls {
            settings = settings.set_config(tls.clone());
        }
        LdapConn::with_settings(settings, &self.url).map_err(|e| unreachable(&self.url, &e))
    }

    /// A new connection bound as the service account.
    pub fn connect_service(&self) -> Result<LdapConn, DirectoryError> {
        let mut conn = self.connect()?;
        let result = conn
            .with_timeout(self.timeout)
            .simple_bind(&self.bind_dn, self.bind_password.expose())
            .map_err(|e| unreachable(&self.url, &e))?;
        if result.rc != rc::SUCCESS {
            return Err(DirectoryError::Refused(format!(
                "the directory refused the service account {:?} (rc {}: {}); check bind_dn and bind_password_file",
                self.bind_dn, result.rc, result.text
            )));
        }
        Ok(conn)
    }
}

/// rustls with ring; roots from `ca_file`, else the system's.
fn client_config(ca_file: Option<&Path>) -> Result<ClientConfig, DirectoryError> {
    let mut roots = RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| DirectoryError::Refused(format!("cannot read the CA file {}: {e}", path.display())))?;
            if certs.is_empty() {
                return Err(DirectoryError::Refused(format!("the CA file {} holds no certificate", path.display())));
            }
            for cert in certs {
                roots.add(cert).map_err(|e| {
                    DirectoryError::Refused(format!("a certificate in {} is not usable: {e}", path.display()))
                })?;
            }
        }
        None => {
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
        }
    }
    ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map(|b| b.with_root_certificates(roots).with_no_client_auth())
        .map_err(|e| DirectoryError::Refused(format!("TLS setup: {e}")))
}

fn read_password(path: &Path) -> Result<Secret, DirectoryError> {
    let file = std::fs::File::open(path)
        .map_err(|e| DirectoryError::Refused(format!("cannot read the bind password file {}: {e}", path.display())))?;
    Secret::read_line_from(std::io::BufReader::new(file))
        .map_err(|e| DirectoryError::Refused(format!("cannot read the bind password file {}: {e}", path.display())))
}

/// A transport failure (refused, reset, timed out, TLS) as [`DirectoryError::Unreachable`].
pub fn unreachable(url: &str, e: &LdapError) -> DirectoryError {
    let what = match e {
        LdapError::Timeout { .. } => "timed out".to_owned(),
        other => other.to_string(),
    };
    DirectoryError::Unreachable(format!("{url}: {what}"))
}

/// A server's answer other than success, as an error naming the operation.
pub fn refused(what: &str, result: &LdapResult) -> DirectoryError {
    match result.rc {
        rc::BUSY | rc::UNAVAILABLE => DirectoryError::Unreachable(format!(
            "{what}: the server is unavailable (rc {}: {})",
            result.rc, result.text
        )),
        _ => DirectoryError::Refused(format!("{what}: rc {} {}", result.rc, result.text.trim())),
    }
}
