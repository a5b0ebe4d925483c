//! Who signed: resolving a record's key id to an enrolled, CA-issued certificate.
//!
//! The verifier only sees [`KeyResolver`]. [`CertificateResolver`] implements it over
//! an organisation CA certificate plus the agents' certificates (from the token
//! registry, or an export directory): each certificate is accepted only if it passes
//! the organisation's agent-certificate rules — the same [`TrustAnchor::check`] login
//! and co-signing apply (CA-issued, key usage digitalSignature, not a CA, ECDSA P-256,
//! a CN) —; its validity (and its CA's) and any revocation time are returned so the
//! verifier can check them against each record's timestamp ([`AgentCert::check_time`]).
//! Pure: certificates come in as bytes.

use std::collections::HashMap;
use std::sync::Arc;

use der::{Decode as _, Encode as _};
use x509_cert::Certificate;

use super::record::Hash32;
use crate::ca::{AgentCert, CaError, TrustAnchor};

/// An enrolled signing key, as the verifier needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedKey {
    /// SHA-256 of the SubjectPublicKeyInfo DER.
    pub key_id: Hash32,
    /// SEC1 uncompressed P-256 point.
    pub public_key: Vec<u8>,
    /// The agent's certificate (DER), for exports.
    pub certificate_der: Vec<u8>,
    /// Certificate subject, e.g. `CN=alice,O=Example Corp`.
    pub subject: String,
    /// The certificate as the organisation's rules accepted it, with its validity.
    pub certificate: AgentCert,
    /// When the token was revoked in the registry, if it was.
    pub revoked_at_ms: Option<u64>,
}

/// Why a key id cannot be trusted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    #[error(
        "signing key {0} is not enrolled (no certificate for it); the record was forged or the registry is incomplete"
    )]
    NotEnrolled(String),
    #[error("the certificate for key {key_id} is not trusted: {reason}")]
    Untrusted { key_id: String, reason: String },
    #[error("cannot look up signing keys: {0}")]
    Unavailable(String),
}

/// Resolve a record's key id to the enrolled key and certificate.
pub trait KeyResolver {
    fn resolve(&self, key_id: &Hash32) -> Result<Arc<ResolvedKey>, ResolveError>;

    /// The organisation CA certificate (DER), if the resolver has one (for exports).
    fn ca_certificate_der(&self) -> Option<&[u8]> {
        None
    }
}

/// Why the organisation CA certificate could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum CaLoadError {
    #[error("cannot read the organisation CA certificate {path}: {source}; pass --ca FILE or run `resetdesk ca init`")]
    CaFile { path: String, source: std::io::Error },
    #[error("organisation CA certificate {path}: {source}")]
    Ca { path: String, source: CaError },
}

/// A resolver trusting the CA certificate `ca_file` if given, else
/// `<data_dir>/ca/ca.pem`, with no agent certificates yet.
pub fn load_ca(
    data_dir: &std::path::Path,
    ca_file: Option<&std::path::Path>,
) -> Result<CertificateResolver, CaLoadError> {
    let default = crate::ca::CaPaths::in_data_dir(data_dir).cert;
    let path = ca_file.unwrap_or(&default);
    let shown = path.display().to_string();
    let pem = std::fs::read_to_string(path).map_err(|source| CaLoadError::CaFile { path: shown.clone(), source })?;
    CertificateResolver::from_ca_pem(&pem).map_err(|source| CaLoadError::Ca { path: shown, source })
}

/// A [`KeyResolver`] over an organisation CA and the certificates it issued.
pub struct CertificateResolver {
    ca_der: Vec<u8>,
    anchor: TrustAnchor,
    keys: HashMap<Hash32, Result<Arc<ResolvedKey>, String>>,
}

impl CertificateResolver {
    /// Start from the organisation CA certificate (DER); it must be what login accepts
    /// as the organisation CA (an ECDSA P-256 CA certificate).
    pub fn new(ca_der: &[u8]) -> Result<Self, CaError> {
        let anchor = TrustAnchor::from_der(ca_der, "the organisation CA certificate")?;
        Ok(Self { ca_der: ca_der.to_vec(), anchor, keys: HashMap::new() })
    }

    /// Start from a PEM CA certificate.
    pub fn from_ca_pem(pem: &str) -> Result<Self, CaError> {
        let origin = "the organisation CA certificate";
        let der =
            pem_certificate(pem).map_err(|message| CaError::BadCertificate { path: origin.to_owned(), message })?;
        Self::new(&der)
    }

    /// Add an agent certificate (DER). Returns its key id, or why it is unusable; an
    /// unusable certificate is still remembered so that records signed by its key
    /// fail with that reason rather than "not enrolled".
    pub fn add_certificate_der(&mut self, der: &[u8], revoked_at_ms: Option<u64>) -> Result<Hash32, String> {
        self.add(der, None, revoked_at_ms)
    }

    /// Add the certificate of a token registry row enrolled for `username`: like
    /// [`CertificateResolver::add_certificate_der`], and the certificate's CN must be
    /// that username (as login and co-signing require of the same row).
    pub fn add_enrolled_certificate_der(
        &mut self,
        der: &[u8],
        username: &str,
        revoked_at_ms: Option<u64>,
    ) -> Result<Hash32, String> {
        self.add(der, Some(username), revoked_at_ms)
    }

    /// Add an agent certificate from PEM.
    pub fn add_certificate_pem(&mut self, pem: &str, revoked_at_ms: Option<u64>) -> Result<Hash32, String> {
        let der = pem_certificate(pem)?;
        self.add_certificate_der(&der, revoked_at_ms)
    }

    fn add(&mut self, der: &[u8], enrolled_for: Option<&str>, revoked_at_ms: Option<u64>) -> Result<Hash32, String> {
        let cert = Certificate::from_der(der).map_err(|e| format!("certificate cannot be parsed: {e}"))?;
        let key_id = crate::ca::key_id(&cert.tbs_certificate.subject_public_key_info)?;
        let checked = self.check(&cert, der, enrolled_for, revoked_at_ms).map(Arc::new);
        let result = checked.as_ref().map(|_| key_id).map_err(Clone::clone);
        self.keys.insert(key_id, checked);
        result
    }

    fn check(
        &self,
        cert: &Certificate,
        der: &[u8],
        enrolled_for: Option<&str>,
        revoked_at_ms: Option<u64>,
    ) -> Result<ResolvedKey, String> {
        let checked = self.anchor.check(cert).map_err(|e| e.to_string())?;
        if let Some(username) = enrolled_for.filter(|u| *u != checked.username) {
            return Err(format!(
                "the certificate names `{}` but is enrolled for `{username}`; re-enrol the key",
                checked.username
            ));
        }
        Ok(ResolvedKey {
            key_id: checked.key_id,
            public_key: checked.public_key.to_encoded_point(false).as_bytes().to_vec(),
            certificate_der: der.to_vec(),
            subject: checked.subject.clone(),
            certificate: checked,
            revoked_at_ms,
        })
    }
}

impl KeyResolver for CertificateResolver {
    fn resolve(&self, key_id: &Hash32) -> Result<Arc<ResolvedKey>, ResolveError> {
        match self.keys.get(key_id) {
            Some(Ok(k)) => Ok(Arc::clone(k)),
            Some(Err(reason)) => Err(ResolveError::Untrusted { key_id: hex::encode(key_id), reason: reason.clone() }),
            None => Err(ResolveError::NotEnrolled(hex::encode(key_id))),
        }
    }

    fn ca_certificate_der(&self) -> Option<&[u8]> {
        Some(&self.ca_der)
    }
}

/// The DER of the first `CERTIFICATE` block of a PEM text.
pub fn pem_certificate(pem: &str) -> Result<Vec<u8>, String> {
    let start = pem.find("-----BEGIN CERTIFICATE-----").ok_or("no `BEGIN CERTIFICATE` block in the PEM text")?;
    let rest = &pem[start..];
    let end_marker = "-----END CERTIFICATE-----";
    let end = rest.find(end_marker).ok_or("the PEM certificate block is not terminated")? + end_marker.len();
    let (label, der) = der::pem::decode_vec(&rest.as_bytes()[..end]).map_err(|e| format!("bad PEM: {e}"))?;
    if label != "CERTIFICATE" {
        return Err(format!("expected a CERTIFICATE PEM block, found {label}"));
    }
    Ok(der)
}

/// A DER certificate as PEM text.
pub fn certificate_pem(der: &[u8]) -> String {
    der::pem::encode_string("CERTIFICATE", der::pem::LineEnding::LF, der).unwrap_or_default()
}

/// The SubjectPublicKeyInfo of a DER certificate as a `PUBLIC KEY` PEM (for openssl).
pub fn public_key_pem_of_certificate(cert_der: &[u8]) -> Result<String, String> {
    let cert = Certificate::from_der(cert_der).map_err(|e| e.to_string())?;
    let spki = cert.tbs_certificate.subject_public_key_info.to_der().map_err(|e| e.to_string())?;
    der::pem::encode_string("PUBLIC KEY", der::pem::LineEnding::LF, &spki).map_err(|e| e.to_string())
}
