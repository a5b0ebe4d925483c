//! Who signed: resolving a record's key id to an enrolled, CA-issued certificate.
//!
//! The verifier only sees [`KeyResolver`]. [`CertificateResolver`] implements it over
//! an organisation CA certificate plus the agents' certificates (from the token
//! registry, or an export directory): each certificate is accepted only if the CA
//! signed it and its key is ECDSA P-256; its validity window and any revocation time
//! are returned so the verifier can check them against each record's timestamp.
//! Pure: certificates come in as bytes.

use std::collections::HashMap;
use std::sync::Arc;

use der::{Decode as _, Encode as _};
use spki::ObjectIdentifier;
use x509_cert::Certificate;

use super::record::Hash32;

const ID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const SECP256R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const SECP384R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const ECDSA_WITH_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
const ECDSA_WITH_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.3");
const SHA256_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.11");

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
    pub not_before_ms: u64,
    pub not_after_ms: u64,
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

/// Why the CA certificate itself is unusable.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("the organisation CA certificate cannot be parsed ({0}); check the file is the CA's PEM certificate")]
    Parse(String),
    #[error("the organisation CA key type is not supported ({0}); ECDSA P-256/P-384 and RSA are")]
    UnsupportedKey(String),
}

/// A [`KeyResolver`] over an organisation CA and the certificates it issued.
pub struct CertificateResolver {
    ca_der: Vec<u8>,
    ca_subject_der: Vec<u8>,
    ca_key: CaKey,
    keys: HashMap<Hash32, Result<Arc<ResolvedKey>, String>>,
}

#[derive(Clone, Copy)]
enum CaKind {
    P256,
    P384,
    Rsa,
}

struct CaKey {
    kind: CaKind,
    bytes: Vec<u8>,
}

impl CertificateResolver {
    /// Start from the organisation CA certificate (DER).
    pub fn new(ca_der: &[u8]) -> Result<Self, CaError> {
        let ca = Certificate::from_der(ca_der).map_err(|e| CaError::Parse(e.to_string()))?;
        let spki = &ca.tbs_certificate.subject_public_key_info;
        let kind = if spki.algorithm.oid == ID_EC_PUBLIC_KEY {
            let curve = spki.algorithm.parameters.as_ref().and_then(|p| p.decode_as::<ObjectIdentifier>().ok());
            match curve {
                Some(c) if c == SECP256R1 => CaKind::P256,
                Some(c) if c == SECP384R1 => CaKind::P384,
                other => return Err(CaError::UnsupportedKey(format!("EC curve {other:?}"))),
            }
        } else if spki.algorithm.oid == RSA_ENCRYPTION {
            CaKind::Rsa
        } else {
            return Err(CaError::UnsupportedKey(spki.algorithm.oid.to_string()));
        };
        let ca_subject_der = ca.tbs_certificate.subject.to_der().map_err(|e| CaError::Parse(e.to_string()))?;
        Ok(Self {
            ca_der: ca_der.to_vec(),
            ca_subject_der,
            ca_key: CaKey { kind, bytes: spki.subject_public_key.raw_bytes().to_vec() },
            keys: HashMap::new(),
        })
    }

    /// Start from a PEM CA certificate.
    pub fn from_ca_pem(pem: &str) -> Result<Self, CaError> {
        let der = pem_certificate(pem).map_err(CaError::Parse)?;
        Self::new(&der)
    }

    /// Add an agent certificate (DER). Returns its key id, or why it is unusable; an
    /// unusable certificate is still remembered so that records signed by its key
    /// fail with that reason rather than "not enrolled".
    pub fn add_certificate_der(&mut self, der: &[u8], revoked_at_ms: Option<u64>) -> Result<Hash32, String> {
        let cert = Certificate::from_der(der).map_err(|e| format!("certificate cannot be parsed: {e}"))?;
        let key_id = crate::ca::key_id(&cert.tbs_certificate.subject_public_key_info)?;
        let checked = self.check(&cert, der, key_id, revoked_at_ms).map(Arc::new);
        let result = checked.as_ref().map(|_| key_id).map_err(Clone::clone);
        self.keys.insert(key_id, checked);
        result
    }

    /// Add an agent certificate from PEM.
    pub fn add_certificate_pem(&mut self, pem: &str, revoked_at_ms: Option<u64>) -> Result<Hash32, String> {
        let der = pem_certificate(pem)?;
        self.add_certificate_der(&der, revoked_at_ms)
    }

    fn check(
        &self,
        cert: &Certificate,
        der: &[u8],
        key_id: Hash32,
        revoked_at_ms: Option<u64>,
    ) -> Result<ResolvedKey, String> {
        let tbs = &cert.tbs_certificate;
        let issuer = tbs.issuer.to_der().map_err(|e| e.to_string())?;
        if issuer != self.ca_subject_der {
            return Err(format!("issued by `{}`, not by the organisation CA", tbs.issuer));
        }
        self.check_ca_signature(cert)?;
        let spki = &tbs.subject_public_key_info;
        let curve = spki.algorithm.parameters.as_ref().and_then(|p| p.decode_as::<ObjectIdentifier>().ok());
        if spki.algorithm.oid != ID_EC_PUBLIC_KEY || curve != Some(SECP256R1) {
            return Err("its key is not ECDSA P-256, so it cannot sign audit records".into());
        }
        let ms = |t: x509_cert::time::Time| u64::try_from(t.to_unix_duration().as_millis()).unwrap_or(u64::MAX);
        Ok(ResolvedKey {
            key_id,
            public_key: spki.subject_public_key.raw_bytes().to_vec(),
            certificate_der: der.to_vec(),
            subject: tbs.subject.to_string(),
            not_before_ms: ms(tbs.validity.not_before),
            not_after_ms: ms(tbs.validity.not_after),
            revoked_at_ms,
        })
    }

    fn check_ca_signature(&self, cert: &Certificate) -> Result<(), String> {
        use ring::signature as sig;
        let alg: &dyn sig::VerificationAlgorithm = match (cert.signature_algorithm.oid, self.ca_key.kind) {
            (o, CaKind::P256) if o == ECDSA_WITH_SHA256 => &sig::ECDSA_P256_SHA256_ASN1,
            (o, CaKind::P256) if o == ECDSA_WITH_SHA384 => &sig::ECDSA_P256_SHA384_ASN1,
            (o, CaKind::P384) if o == ECDSA_WITH_SHA256 => &sig::ECDSA_P384_SHA256_ASN1,
            (o, CaKind::P384) if o == ECDSA_WITH_SHA384 => &sig::ECDSA_P384_SHA384_ASN1,
            (o, CaKind::Rsa) if o == SHA256_WITH_RSA => &sig::RSA_PKCS1_2048_8192_SHA256,
            (o, _) => return Err(format!("signature algorithm {o} does not match the CA's key")),
        };
        let tbs = cert.tbs_certificate.to_der().map_err(|e| e.to_string())?;
        let signature = cert.signature.as_bytes().ok_or("certificate signature has unused bits")?;
        sig::UnparsedPublicKey::new(alg, &self.ca_key.bytes).verify(&tbs, signature).map_err(|_| {
            "the organisation CA's signature on it does not verify (forged or from another CA)".to_string()
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
