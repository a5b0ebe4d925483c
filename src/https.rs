//! The core's one HTTPS client setup (the collector sync, ticketing webhooks): `ureq`'s
//! blocking agent over rustls with ring, the server's certificate checked against the
//! configured CA only (a public CA cannot stand in for the organisation's), else the
//! system's roots; no proxy from the environment, no redirects, HTTP statuses returned
//! to the caller, one deadline per request.

use std::sync::Arc;
use std::time::Duration;

use ureq::tls::{PemItem, RootCerts, TlsConfig};

/// An agent trusting the certificates of `ca_pem` (PEM text), or the system's roots
/// when `None`; plain `http://` only when `https_only` is false. The error says what is
/// wrong with the CA file's content.
pub fn agent(ca_pem: Option<&[u8]>, https_only: bool, timeout: Duration) -> Result<ureq::Agent, String> {
    let roots = match ca_pem {
        Some(pem) => {
            let mut certs = Vec::new();
            for item in ureq::tls::parse_pem(pem) {
                match item {
                    Ok(PemItem::Certificate(c)) => certs.push(c.to_owned()),
                    Ok(_) => {}
                    Err(e) => return Err(e.to_string()),
                }
            }
            if certs.is_empty() {
                return Err("no certificate in it".into());
            }
            RootCerts::Specific(Arc::new(certs))
        }
        None => RootCerts::PlatformVerifier,
    };
    Ok(ureq::Agent::config_builder()
        .tls_config(TlsConfig::builder().root_certs(roots).build())
        .https_only(https_only)
        .proxy(None)
        .max_redirects(0)
        .http_status_as_error(false)
        .timeout_global(Some(timeout))
        .build()
        .into())
}
