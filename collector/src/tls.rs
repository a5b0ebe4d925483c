//! TLS: the server's rustls configuration (ring provider; TLS is not optional), and
//! `demo-tls`, a local CA and server certificate for demos and tests.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("TLS certificate {path}: {reason}")]
    Cert { path: String, reason: String },
    #[error("TLS private key {path}: {reason}")]
    Key { path: String, reason: String },
    #[error("TLS configuration: {0}")]
    Config(String),
    #[error("cannot create the demo TLS files in {path}: {reason}")]
    Demo { path: String, reason: String },
}

/// A client config trusting only the CA certificate(s) in `ca` (PEM).
pub fn client_config(ca: &Path) -> Result<rustls::ClientConfig, TlsError> {
    let cert_err = |reason: String| TlsError::Cert { path: ca.display().to_string(), reason };
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).map_err(|e| cert_err(e.to_string()))? {
        roots.add(c.map_err(|e| cert_err(e.to_string()))?).map_err(|e| cert_err(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(cert_err("no CERTIFICATE block".into()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// The server config from a PEM chain and key.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let cert_err = |reason: String| TlsError::Cert { path: cert.display().to_string(), reason };
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| cert_err(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| cert_err(e.to_string()))?;
    if chain.is_empty() {
        return Err(cert_err("no CERTIFICATE block".into()));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| TlsError::Key { path: key.display().to_string(), reason: e.to_string() })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Files written by [`demo_tls`].
#[derive(Debug, Clone)]
pub struct DemoTls {
    /// The demo CA certificate: what desks pin.
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A fresh local CA and a server certificate for `localhost` and 127.0.0.1 in `dir`.
pub fn demo_tls(dir: &Path) -> Result<DemoTls, TlsError> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};
    let demo = |e: &dyn std::fmt::Display| TlsError::Demo { path: dir.display().to_string(), reason: e.to_string() };
    std::fs::create_dir_all(dir).map_err(|e| demo(&e))?;
    let ca_key = KeyPair::generate().map_err(|e| demo(&e))?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(|e| demo(&e))?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(DnType::CommonName, "ResetDesk collector demo CA");
    let ca_cert = ca_params.self_signed(&ca_key).map_err(|e| demo(&e))?;
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().map_err(|e| demo(&e))?;
    let mut params = CertificateParams::new(vec!["localhost".to_owned()]).map_err(|e| demo(&e))?;
    params.subject_alt_names.push(SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()));
    params.distinguished_name.push(DnType::CommonName, "localhost");
    let cert = params.signed_by(&key, &issuer).map_err(|e| demo(&e))?;
    let out = DemoTls { ca: dir.join("ca.pem"), cert: dir.join("server.pem"), key: dir.join("server.key") };
    std::fs::write(&out.ca, ca_cert.pem()).map_err(|e| demo(&e))?;
    std::fs::write(&out.cert, cert.pem()).map_err(|e| demo(&e))?;
    write_key(&out.key, key.serialize_pem().as_bytes()).map_err(|e| demo(&e))?;
    Ok(out)
}

fn write_key(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(0o600);
    }
    opts.open(path)?.write_all(bytes)
}
