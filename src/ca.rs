//! The organisation CA that issues agents' PIV certificates, and certificate validation.
//!
//! Two roles, two types:
//! - [`OrgCa`] holds the CA *private* key and issues certificates. It is only loaded
//!   by `resetdesk token enroll` (with the CA passphrase) and never by the desk app.
//! - [`TrustAnchor`] is the CA *certificate* alone, and the one validator of agents'
//!   certificates: login (slots 9a and 9c, at the login's time), co-signing (the
//!   co-signer's enrolled 9c certificate, now) and the offline audit verifier (each
//!   signer's certificate, at the record's time) all call [`TrustAnchor::check`] and
//!   [`AgentCert::check_time`] (together: [`TrustAnchor::validate`]).
//!
//! # Embedded CA and real deployments
//!
//! `resetdesk ca init --data-dir DIR` makes a self-signed P-256 CA in `DIR/ca/`:
//! `ca.pem` (certificate) and `ca.key.pem` (PKCS#8 private key encrypted with
//! scrypt + AES-256-CBC under the passphrase, file mode 0600). That is the demo and
//! small-site default. A real deployment instead points `[ca] cert_file` in
//! `resetdesk.toml` at its own issuing CA certificate (PEM) and issues agents'
//! certificates with its own PKI (CN = directory username, key usage
//! digitalSignature, ECDSA P-256 keys generated on the YubiKey); ResetDesk then only
//! needs the CA certificate, never the CA key.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use der::asn1::{ObjectIdentifier, PrintableStringRef, SetOfVec, Utf8StringRef};
use der::{Any, Decode, DecodePem, Encode, EncodePem};
use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{DerSignature, Signature, SigningKey, VerifyingKey};
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};
use sha2::{Digest, Sha256};
use spki::SubjectPublicKeyInfoOwned;
use time::OffsetDateTime;
use x509_cert::builder::{Builder, CertificateBuilder, Profile};
use x509_cert::ext::pkix::{BasicConstraints, KeyUsage, KeyUsages};
use x509_cert::name::{Name, RdnSequence, RelativeDistinguishedName};
use x509_cert::serial_number::SerialNumber;
use x509_cert::time::{Time, Validity};
use x509_cert::Certificate;

use crate::secret::Secret;

/// X.520 commonName.
const OID_CN: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.3");
/// X.520 organizationName.
const OID_O: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.10");
/// ecdsa-with-SHA256 (RFC 5758).
const OID_ECDSA_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
/// id-ecPublicKey (RFC 5480).
const OID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
/// secp256r1 / prime256v1 (RFC 5480).
const OID_P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
/// id-ce-keyUsage.
const OID_KEY_USAGE: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.15");
/// id-ce-basicConstraints.
const OID_BASIC_CONSTRAINTS: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.19");

/// File name of the CA certificate inside `<data_dir>/ca/`.
pub const CA_CERT_FILE: &str = "ca.pem";
/// File name of the encrypted CA key inside `<data_dir>/ca/`.
pub const CA_KEY_FILE: &str = "ca.key.pem";

/// Shortest CA passphrase `resetdesk ca init` accepts.
pub const MIN_PASSPHRASE_LEN: usize = 12;

/// How long the embedded CA certificate is valid.
pub const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// How long an agent certificate issued at enrolment is valid.
pub const AGENT_CERT_VALIDITY: Duration = Duration::from_secs(2 * 365 * 24 * 3600);

/// A problem with the CA files or with issuing a certificate.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error(
        "{path}: cannot read the CA file ({source}); run `resetdesk ca init --data-dir DIR` or set [ca] cert_file"
    )]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: cannot write the CA file ({source}); check the data directory and its permissions")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0} already exists; the organisation CA is made once (move the old one away deliberately if you must replace it)")]
    AlreadyExists(String),
    #[error("{path}: not an X.509 certificate ({message}); point [ca] cert_file at the CA certificate in PEM")]
    BadCertificate { path: String, message: String },
    #[error("{path}: {message}; the organisation CA must be an ECDSA P-256 CA certificate (basicConstraints CA, keyCertSign)")]
    NotACa { path: String, message: String },
    #[error(
        "the CA passphrase is wrong, or {path} is damaged; try again with the passphrase given to `resetdesk ca init`"
    )]
    WrongPassphrase { path: String },
    #[error("the CA key in {key} does not belong to the certificate in {cert}; restore the matching pair")]
    KeyMismatch { key: String, cert: String },
    #[error("the CA passphrase must be at least {MIN_PASSPHRASE_LEN} characters")]
    WeakPassphrase,
    #[error("cannot build the certificate: {0}")]
    Build(String),
}

/// Why a certificate is not acceptable as an agent's certificate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertError {
    #[error(
        "the certificate was not issued by the organisation CA ({issuer}); enrol the key with `resetdesk token enroll`"
    )]
    UnknownCa { issuer: String },
    #[error("the certificate expired on {not_after}; re-enrol the key")]
    Expired { not_after: OffsetDateTime },
    #[error("the certificate is not valid before {not_before}; check the desk's clock")]
    NotYetValid { not_before: OffsetDateTime },
    #[error("the organisation CA certificate is outside its validity period ({0}); renew the CA")]
    CaNotValid(String),
    #[error("the certificate does not allow digital signatures ({0}); re-enrol the key")]
    KeyUsage(String),
    #[error("the certificate key is not ECDSA P-256; re-enrol the key with `resetdesk token enroll`")]
    NotP256,
    #[error("the certificate subject has no common name (CN = agent username); re-enrol the key")]
    NoUsername,
    #[error("the certificate is malformed ({0}); re-enrol the key")]
    Malformed(String),
}

/// An agent certificate that passed the organisation's rules ([`TrustAnchor::check`]):
/// issued by the CA, not a CA itself, key usage digitalSignature, ECDSA P-256 key, a
/// subject CN. The one validator for login, co-signing and the offline verifier; what
/// depends on time is [`AgentCert::check_time`] (at login: now; for an audit record:
/// the record's time).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentCert {
    /// Subject common name: the agent's directory username.
    pub username: String,
    /// The whole subject (RFC 4514), for messages.
    pub subject: String,
    /// The certified public key.
    pub public_key: VerifyingKey,
    /// SHA-256 of the SubjectPublicKeyInfo DER (the audit key id).
    pub key_id: [u8; 32],
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    /// The issuing CA certificate's validity period: an agent certificate counts only
    /// while its CA's does.
    pub ca_not_before: OffsetDateTime,
    pub ca_not_after: OffsetDateTime,
}

impl AgentCert {
    /// Whether the certificate and its CA certificate are both valid at `at`.
    pub fn check_time(&self, at: OffsetDateTime) -> Result<(), CertError> {
        if at < self.ca_not_before || at > self.ca_not_after {
            return Err(CertError::CaNotValid(format!("{} to {}", self.ca_not_before, self.ca_not_after)));
        }
        if at > self.not_after {
            return Err(CertError::Expired { not_after: self.not_after });
        }
        if at < self.not_before {
            return Err(CertError::NotYetValid { not_before: self.not_before });
        }
        Ok(())
    }
}

/// The organisation CA certificate: what login validates agents' certificates against.
#[derive(Debug, Clone)]
pub struct TrustAnchor {
    cert: Certificate,
    key: VerifyingKey,
}

impl TrustAnchor {
    /// Load the CA certificate (PEM) and check it is a usable P-256 CA certificate.
    pub fn load(path: &Path) -> Result<Self, CaError> {
        let pem = std::fs::read_to_string(path)
            .map_err(|source| CaError::Read { path: path.display().to_string(), source })?;
        Self::from_pem(&pem, &path.display().to_string())
    }

    /// Parse a PEM CA certificate; `origin` names it in errors.
    pub fn from_pem(pem: &str, origin: &str) -> Result<Self, CaError> {
        let cert = Certificate::from_pem(pem.as_bytes())
            .map_err(|e| CaError::BadCertificate { path: origin.to_owned(), message: e.to_string() })?;
        Self::from_certificate(cert, origin)
    }

    /// Parse a DER CA certificate; `origin` names it in errors.
    pub fn from_der(der: &[u8], origin: &str) -> Result<Self, CaError> {
        let cert = Certificate::from_der(der)
            .map_err(|e| CaError::BadCertificate { path: origin.to_owned(), message: e.to_string() })?;
        Self::from_certificate(cert, origin)
    }

    /// Check that `cert` is a P-256 CA certificate and wrap it.
    pub fn from_certificate(cert: Certificate, origin: &str) -> Result<Self, CaError> {
        let not_ca = |message: &str| CaError::NotACa { path: origin.to_owned(), message: message.to_owned() };
        let key = p256_key(&cert.tbs_certificate.subject_public_key_info)
            .map_err(|_| not_ca("the CA key is not ECDSA P-256"))?;
        match extension::<BasicConstraints>(&cert, OID_BASIC_CONSTRAINTS) {
            Ok(Some(bc)) if bc.ca => {}
            _ => return Err(not_ca("the certificate is not a CA certificate (basicConstraints)")),
        }
        match extension::<KeyUsage>(&cert, OID_KEY_USAGE) {
            Ok(Some(ku)) if ku.0.contains(KeyUsages::KeyCertSign) => {}
            Ok(None) => {}
            _ => return Err(not_ca("the CA certificate does not allow keyCertSign")),
        }
        Ok(Self { cert, key })
    }

    /// The CA certificate.
    pub fn certificate(&self) -> &Certificate {
        &self.cert
    }

    /// The CA subject as text (RFC 4514), for messages and `token status`.
    pub fn subject(&self) -> String {
        self.cert.tbs_certificate.subject.to_string()
    }

    /// Whether `cert` carries a valid signature of this CA under its issuer name.
    pub fn issued(&self, cert: &Certificate) -> bool {
        cert.tbs_certificate.issuer == self.cert.tbs_certificate.subject
            && verify_cert_signature(cert, &self.key).is_ok()
    }

    /// Validate an agent certificate at instant `at`: [`TrustAnchor::check`], then
    /// [`AgentCert::check_time`].
    pub fn validate(&self, cert: &Certificate, at: OffsetDateTime) -> Result<AgentCert, CertError> {
        let checked = self.check(cert)?;
        checked.check_time(at)?;
        Ok(checked)
    }

    /// The rules an agent certificate must meet whatever the time: issued (signed) by
    /// this CA, key usage digitalSignature, not a CA, P-256 key, and a subject CN (the
    /// username). Validity dates are in the result, for [`AgentCert::check_time`].
    pub fn check(&self, cert: &Certificate) -> Result<AgentCert, CertError> {
        if !self.issued(cert) {
            return Err(CertError::UnknownCa { issuer: cert.tbs_certificate.issuer.to_string() });
        }
        match extension::<KeyUsage>(cert, OID_KEY_USAGE) {
            Ok(Some(ku)) if ku.0.contains(KeyUsages::DigitalSignature) => {}
            Ok(Some(_)) => return Err(CertError::KeyUsage("digitalSignature not set".into())),
            Ok(None) => return Err(CertError::KeyUsage("no keyUsage extension".into())),
            Err(e) => return Err(CertError::Malformed(e)),
        }
        match extension::<BasicConstraints>(cert, OID_BASIC_CONSTRAINTS) {
            Ok(Some(bc)) if bc.ca => {
                return Err(CertError::KeyUsage("a CA certificate cannot be an agent certificate".into()))
            }
            Ok(_) => {}
            Err(e) => return Err(CertError::Malformed(e)),
        }
        let public_key = p256_key(&cert.tbs_certificate.subject_public_key_info)?;
        let username = common_name(&cert.tbs_certificate.subject).ok_or(CertError::NoUsername)?;
        let (not_before, not_after) = validity(&cert.tbs_certificate.validity);
        let (ca_not_before, ca_not_after) = validity(&self.cert.tbs_certificate.validity);
        Ok(AgentCert {
            username,
            subject: cert.tbs_certificate.subject.to_string(),
            public_key,
            key_id: key_id(&cert.tbs_certificate.subject_public_key_info).map_err(CertError::Malformed)?,
            not_before,
            not_after,
            ca_not_before,
            ca_not_after,
        })
    }
}

/// The organisation CA with its private key: issues agents' certificates.
pub struct OrgCa {
    anchor: TrustAnchor,
    key: SigningKey,
}

impl std::fmt::Debug for OrgCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrgCa").field("subject", &self.anchor.subject()).finish_non_exhaustive()
    }
}

/// Paths of the embedded CA in a data directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaPaths {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl CaPaths {
    /// `<data_dir>/ca/ca.pem` and `<data_dir>/ca/ca.key.pem`.
    pub fn in_data_dir(data_dir: &Path) -> Self {
        let dir = data_dir.join("ca");
        Self { cert: dir.join(CA_CERT_FILE), key: dir.join(CA_KEY_FILE) }
    }
}

impl OrgCa {
    /// A new self-signed P-256 CA "CN=<organisation> ResetDesk Agent CA, O=<organisation>",
    /// valid from `now` for `validity`.
    pub fn generate(organisation: &str, now: OffsetDateTime, validity: Duration) -> Result<Self, CaError> {
        let key = SigningKey::random(&mut rand::rngs::OsRng);
        let subject = name(&format!("{organisation} ResetDesk Agent CA"), Some(organisation))
            .map_err(|e| CaError::Build(e.to_string()))?;
        let spki =
            SubjectPublicKeyInfoOwned::from_key(*key.verifying_key()).map_err(|e| CaError::Build(e.to_string()))?;
        let builder =
            CertificateBuilder::new(Profile::Root, random_serial(), validity_from(now, validity)?, subject, spki, &key)
                .map_err(|e| CaError::Build(e.to_string()))?;
        let cert = builder.build::<DerSignature>().map_err(|e| CaError::Build(e.to_string()))?;
        let anchor = TrustAnchor::from_certificate(cert, "new CA").map_err(|e| CaError::Build(e.to_string()))?;
        Ok(Self { anchor, key })
    }

    /// `resetdesk ca init`: generate the CA and write it to `<data_dir>/ca/`, the key
    /// encrypted under `passphrase`. Refuses to overwrite an existing CA.
    pub fn init(
        data_dir: &Path,
        organisation: &str,
        passphrase: &Secret,
        now: OffsetDateTime,
    ) -> Result<(Self, CaPaths), CaError> {
        if passphrase.expose().chars().count() < MIN_PASSPHRASE_LEN {
            return Err(CaError::WeakPassphrase);
        }
        let paths = CaPaths::in_data_dir(data_dir);
        for p in [&paths.cert, &paths.key] {
            if p.exists() {
                return Err(CaError::AlreadyExists(p.display().to_string()));
            }
        }
        let ca = Self::generate(organisation, now, CA_VALIDITY)?;
        ca.save(&paths, passphrase)?;
        Ok((ca, paths))
    }

    /// Write the certificate (0644) and the encrypted key (0600, created exclusively).
    pub fn save(&self, paths: &CaPaths, passphrase: &Secret) -> Result<(), CaError> {
        let werr = |path: &Path| {
            let path = path.display().to_string();
            move |source: std::io::Error| CaError::Write { path, source }
        };
        if let Some(dir) = paths.key.parent() {
            std::fs::create_dir_all(dir).map_err(werr(dir))?;
        }
        let key_pem = self
            .key
            .to_pkcs8_encrypted_pem(rand::rngs::OsRng, passphrase.expose().as_bytes(), LineEnding::LF)
            .map_err(|e| CaError::Build(e.to_string()))?;
        write_new(&paths.key, key_pem.as_bytes(), 0o600).map_err(werr(&paths.key))?;
        let cert_pem = self.anchor.cert.to_pem(LineEnding::LF).map_err(|e| CaError::Build(e.to_string()))?;
        write_new(&paths.cert, cert_pem.as_bytes(), 0o644).map_err(werr(&paths.cert))?;
        Ok(())
    }

    /// Load the CA certificate and decrypt its key with `passphrase`.
    pub fn load(paths: &CaPaths, passphrase: &Secret) -> Result<Self, CaError> {
        let anchor = TrustAnchor::load(&paths.cert)?;
        let key_pem = zeroize::Zeroizing::new(
            std::fs::read_to_string(&paths.key)
                .map_err(|source| CaError::Read { path: paths.key.display().to_string(), source })?,
        );
        let key = SigningKey::from_pkcs8_encrypted_pem(&key_pem, passphrase.expose().as_bytes())
            .map_err(|_| CaError::WrongPassphrase { path: paths.key.display().to_string() })?;
        if key.verifying_key() != &anchor.key {
            return Err(CaError::KeyMismatch {
                key: paths.key.display().to_string(),
                cert: paths.cert.display().to_string(),
            });
        }
        Ok(Self { anchor, key })
    }

    /// The CA signing key (tests that build other certificate shapes).
    #[cfg(test)]
    pub(crate) fn signing_key_for_tests(&self) -> &SigningKey {
        &self.key
    }

    /// The public half, for validation.
    pub fn trust_anchor(&self) -> &TrustAnchor {
        &self.anchor
    }

    /// Issue an agent certificate: subject "CN=<username>, O=<CA's organisation>",
    /// key usage digitalSignature + nonRepudiation, not a CA, valid `not_before..not_after`.
    pub fn issue(
        &self,
        username: &str,
        public_key: SubjectPublicKeyInfoOwned,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> Result<Certificate, CaError> {
        if username.is_empty() {
            return Err(CaError::Build("empty username".into()));
        }
        let organisation = organisation_name(&self.anchor.cert.tbs_certificate.subject);
        let subject = name(username, organisation.as_deref()).map_err(|e| CaError::Build(e.to_string()))?;
        let validity = Validity { not_before: to_x509_time(not_before)?, not_after: to_x509_time(not_after)? };
        let builder = CertificateBuilder::new(
            Profile::Leaf {
                issuer: self.anchor.cert.tbs_certificate.subject.clone(),
                enable_key_agreement: false,
                enable_key_encipherment: false,
                include_subject_key_identifier: true,
            },
            random_serial(),
            validity,
            subject,
            public_key,
            &self.key,
        )
        .map_err(|e| CaError::Build(e.to_string()))?;
        builder.build::<DerSignature>().map_err(|e| CaError::Build(e.to_string()))
    }
}

/// SHA-256 of the DER SubjectPublicKeyInfo: the key id used by the audit trail and registry.
pub fn key_id(spki: &SubjectPublicKeyInfoOwned) -> Result<[u8; 32], String> {
    let der = spki.to_der().map_err(|e| e.to_string())?;
    Ok(Sha256::digest(der).into())
}

/// The P-256 verifying key in a SubjectPublicKeyInfo.
pub fn p256_key(spki: &SubjectPublicKeyInfoOwned) -> Result<VerifyingKey, CertError> {
    if spki.algorithm.oid != OID_EC_PUBLIC_KEY {
        return Err(CertError::NotP256);
    }
    let curve = spki.algorithm.parameters.as_ref().and_then(|p| p.decode_as::<ObjectIdentifier>().ok());
    if curve != Some(OID_P256) {
        return Err(CertError::NotP256);
    }
    let bytes = spki.subject_public_key.as_bytes().ok_or(CertError::NotP256)?;
    VerifyingKey::from_sec1_bytes(bytes).map_err(|_| CertError::NotP256)
}

/// The subject common name (first CN attribute), if any.
pub fn common_name(name: &Name) -> Option<String> {
    attribute(name, OID_CN)
}

fn organisation_name(name: &Name) -> Option<String> {
    attribute(name, OID_O)
}

fn attribute(name: &Name, oid: ObjectIdentifier) -> Option<String> {
    name.0.iter().flat_map(|rdn| rdn.0.iter()).find(|atv| atv.oid == oid).and_then(|atv| {
        if let Ok(s) = Utf8StringRef::try_from(&atv.value) {
            Some(s.as_str().to_owned())
        } else {
            PrintableStringRef::try_from(&atv.value).ok().map(|s| s.as_str().to_owned())
        }
    })
}

/// Build "CN=<cn>[, O=<o>]" with UTF8String values (no string parsing: usernames may
/// contain characters that are special in RFC 4514).
fn name(cn: &str, o: Option<&str>) -> der::Result<Name> {
    let mut rdns = Vec::new();
    if let Some(o) = o {
        rdns.push(rdn(OID_O, o)?);
    }
    rdns.push(rdn(OID_CN, cn)?);
    Ok(RdnSequence(rdns))
}

fn rdn(oid: ObjectIdentifier, value: &str) -> der::Result<RelativeDistinguishedName> {
    let value = Any::from(Utf8StringRef::new(value)?);
    let atv = x509_cert::attr::AttributeTypeAndValue { oid, value };
    Ok(RelativeDistinguishedName(SetOfVec::try_from(vec![atv])?))
}

fn random_serial() -> SerialNumber {
    use rand::RngCore;
    let mut bytes = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    // Positive and non-zero leading byte: a canonical 16-byte INTEGER.
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    // 16 bytes is within the 20-byte limit, so this cannot fail; fall back to 1 regardless.
    SerialNumber::new(&bytes).unwrap_or_else(|_| SerialNumber::from(1u32))
}

fn to_x509_time(t: OffsetDateTime) -> Result<Time, CaError> {
    Time::try_from(SystemTime::from(t)).map_err(|e| CaError::Build(format!("time {t}: {e}")))
}

fn validity_from(now: OffsetDateTime, validity: Duration) -> Result<Validity, CaError> {
    Ok(Validity { not_before: to_x509_time(now)?, not_after: to_x509_time(now + validity)? })
}

/// (not_before, not_after) as `OffsetDateTime`.
pub fn validity(v: &Validity) -> (OffsetDateTime, OffsetDateTime) {
    (OffsetDateTime::from(v.not_before.to_system_time()), OffsetDateTime::from(v.not_after.to_system_time()))
}

fn verify_cert_signature(cert: &Certificate, issuer_key: &VerifyingKey) -> Result<(), CertError> {
    if cert.signature_algorithm.oid != OID_ECDSA_SHA256 {
        return Err(CertError::Malformed("signature algorithm is not ecdsa-with-SHA256".into()));
    }
    let tbs = cert.tbs_certificate.to_der().map_err(|e| CertError::Malformed(e.to_string()))?;
    let sig_bytes = cert
        .signature
        .as_bytes()
        .ok_or_else(|| CertError::Malformed("signature is not a whole number of bytes".into()))?;
    let sig = Signature::from_der(sig_bytes).map_err(|e| CertError::Malformed(e.to_string()))?;
    issuer_key.verify(&tbs, &sig).map_err(|_| CertError::UnknownCa { issuer: cert.tbs_certificate.issuer.to_string() })
}

/// Decode extension `oid` of `cert` as `T`, `Ok(None)` when absent.
fn extension<T: for<'a> Decode<'a>>(cert: &Certificate, oid: ObjectIdentifier) -> Result<Option<T>, String> {
    let Some(exts) = cert.tbs_certificate.extensions.as_ref() else { return Ok(None) };
    match exts.iter().find(|e| e.extn_id == oid) {
        None => Ok(None),
        Some(e) => T::from_der(e.extn_value.as_bytes()).map(Some).map_err(|e| format!("extension {oid}: {e}")),
    }
}

/// Create `path` exclusively with `mode` (unix) and write `bytes`.
fn write_new(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut f = opts.open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// Parse a PEM or DER certificate (for `token status` and tests).
pub fn parse_certificate(bytes: &[u8]) -> Result<Certificate, String> {
    if bytes.starts_with(b"-----") {
        Certificate::from_pem(bytes).map_err(|e| e.to_string())
    } else {
        Certificate::from_der(bytes).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-06-01 12:00 UTC);

    fn agent_key() -> (SigningKey, SubjectPublicKeyInfoOwned) {
        let k = SigningKey::random(&mut rand::rngs::OsRng);
        let spki = SubjectPublicKeyInfoOwned::from_key(*k.verifying_key()).unwrap();
        (k, spki)
    }

    fn ca() -> OrgCa {
        OrgCa::generate("Example Corp", NOW - time::Duration::days(1), CA_VALIDITY).unwrap()
    }

    #[test]
    fn issued_certificate_validates_with_username_and_key() {
        let ca = ca();
        let (k, spki) = agent_key();
        let cert = ca.issue("alice", spki.clone(), NOW, NOW + time::Duration::days(30)).unwrap();
        let v = ca.trust_anchor().validate(&cert, NOW + time::Duration::hours(1)).unwrap();
        assert_eq!(v.username, "alice");
        assert_eq!(&v.public_key, k.verifying_key());
        assert_eq!(v.key_id, key_id(&spki).unwrap());
        assert_eq!(organisation_name(&cert.tbs_certificate.subject).as_deref(), Some("Example Corp"));
    }

    #[test]
    fn expired_and_not_yet_valid_are_refused() {
        let ca = ca();
        let (_, spki) = agent_key();
        let cert = ca.issue("alice", spki, NOW, NOW + time::Duration::days(30)).unwrap();
        let anchor = ca.trust_anchor();
        assert!(matches!(anchor.validate(&cert, NOW + time::Duration::days(31)), Err(CertError::Expired { .. })));
        assert!(matches!(anchor.validate(&cert, NOW - time::Duration::hours(1)), Err(CertError::NotYetValid { .. })));
    }

    #[test]
    fn certificate_from_another_ca_with_the_same_name_is_refused() {
        let org = ca();
        let rogue = ca(); // same subject name, different key
        let (_, spki) = agent_key();
        let cert = rogue.issue("alice", spki, NOW, NOW + time::Duration::days(30)).unwrap();
        assert!(matches!(org.trust_anchor().validate(&cert, NOW), Err(CertError::UnknownCa { .. })));
    }

    #[test]
    fn tampered_certificate_is_refused() {
        let ca = ca();
        let (_, spki) = agent_key();
        let mut cert = ca.issue("alice", spki, NOW, NOW + time::Duration::days(30)).unwrap();
        cert.tbs_certificate.subject = name("carol", Some("Example Corp")).unwrap();
        assert!(matches!(ca.trust_anchor().validate(&cert, NOW), Err(CertError::UnknownCa { .. })));
    }

    #[test]
    fn ca_certificate_is_not_an_agent_certificate() {
        let ca = ca();
        let cert = ca.trust_anchor().certificate().clone();
        assert!(matches!(ca.trust_anchor().validate(&cert, NOW), Err(CertError::KeyUsage(_))));
    }

    #[test]
    fn leaf_certificate_is_not_a_trust_anchor() {
        let ca = ca();
        let (_, spki) = agent_key();
        let cert = ca.issue("alice", spki, NOW, NOW + time::Duration::days(30)).unwrap();
        assert!(matches!(TrustAnchor::from_certificate(cert, "x"), Err(CaError::NotACa { .. })));
    }

    #[test]
    fn ca_round_trips_through_encrypted_files_and_wrong_passphrase_fails() {
        let dir = tempfile::tempdir().unwrap();
        let pass = Secret::from("correct horse battery");
        let (ca, paths) = OrgCa::init(dir.path(), "Example Corp", &pass, NOW).unwrap();
        let key_pem = std::fs::read_to_string(&paths.key).unwrap();
        assert!(key_pem.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----"), "{key_pem}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&paths.key).unwrap().permissions().mode() & 0o777, 0o600);
        }
        let loaded = OrgCa::load(&paths, &pass).unwrap();
        assert_eq!(loaded.key.verifying_key(), ca.key.verifying_key());
        assert!(matches!(
            OrgCa::load(&paths, &Secret::from("wrong passphrase!")),
            Err(CaError::WrongPassphrase { .. })
        ));
        assert!(matches!(OrgCa::init(dir.path(), "Example Corp", &pass, NOW), Err(CaError::AlreadyExists(_))));
    }

    #[test]
    fn short_passphrase_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(OrgCa::init(dir.path(), "X", &Secret::from("short"), NOW), Err(CaError::WeakPassphrase)));
        assert!(!CaPaths::in_data_dir(dir.path()).key.exists());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]
        /// Whatever byte of a valid agent certificate is changed, the result either does
        /// not parse or does not validate; nothing panics.
        #[test]
        fn any_single_byte_change_is_refused(pos in 0usize..10_000, xor in 1u8..=255) {
            use std::sync::OnceLock;
            static FIXTURE: OnceLock<(TrustAnchor, Vec<u8>)> = OnceLock::new();
            let (anchor, der) = FIXTURE.get_or_init(|| {
                let ca = ca();
                let (_, spki) = agent_key();
                let cert = ca.issue("alice", spki, NOW, NOW + time::Duration::days(30)).unwrap();
                (ca.trust_anchor().clone(), cert.to_der().unwrap())
            });
            proptest::prop_assert!(anchor.validate(&Certificate::from_der(der).unwrap(), NOW).is_ok());
            let mut bytes = der.clone();
            let i = pos % bytes.len();
            bytes[i] ^= xor;
            if let Ok(cert) = parse_certificate(&bytes) {
                proptest::prop_assert!(anchor.validate(&cert, NOW).is_err(), "byte {} changed and still valid", i);
            }
        }

        /// Arbitrary bytes never panic the parser.
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600)) {
            let _ = parse_certificate(&bytes);
        }
    }

    #[test]
    fn usernames_with_rfc4514_specials_survive() {
        let ca = ca();
        let (_, spki) = agent_key();
        let cert = ca.issue("o'brien,+x", spki, NOW, NOW + time::Duration::days(1)).unwrap();
        assert_eq!(ca.trust_anchor().validate(&cert, NOW).unwrap().username, "o'brien,+x");
    }
}
