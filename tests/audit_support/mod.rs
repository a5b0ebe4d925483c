//! Shared by the `audit_*` integration tests and `benches/audit.rs`: software P-256
//! signers (real ECDSA, not mocks) implementing `RecordSigner`, and a tiny PKI (an
//! organisation CA issuing agents' certificates) to resolve key ids against.
#![allow(dead_code)]

use std::str::FromStr;
use std::time::{Duration, SystemTime};

use der::Encode as _;
use p256::ecdsa::{signature::hazmat::PrehashSigner, DerSignature, SigningKey};
use p256::pkcs8::EncodePublicKey as _;
use resetdesk::audit::CertificateResolver;
use resetdesk::token::{RecordSigner, SignError, TokenError};
use sha2::{Digest, Sha256};
use x509_cert::builder::{Builder, CertificateBuilder, Profile};
use x509_cert::ext::pkix::{BasicConstraints, KeyUsage, KeyUsages};
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::SubjectPublicKeyInfoOwned;
use x509_cert::time::{Time, Validity};

/// A software ECDSA P-256 key standing in for a card's slot 9c.
pub struct SoftSigner {
    pub key: SigningKey,
    pub name: String,
}

impl SoftSigner {
    /// Deterministic from `seed`, so a parent and a child process agree on the key.
    pub fn from_seed(name: &str, seed: u8) -> Self {
        let mut bytes: [u8; 32] = Sha256::digest([b"resetdesk-test-key".as_slice(), &[seed]].concat()).into();
        bytes[0] &= 0x7f; // well below the curve order
        let key = SigningKey::from_bytes(&bytes.into()).unwrap();
        Self { key, name: name.into() }
    }

    pub fn spki_der(&self) -> Vec<u8> {
        self.key.verifying_key().to_public_key_der().unwrap().as_bytes().to_vec()
    }

    pub fn public_key_pem(&self) -> String {
        self.key.verifying_key().to_public_key_pem(p256::pkcs8::LineEnding::LF).unwrap()
    }
}

impl RecordSigner for SoftSigner {
    fn key_id(&self) -> [u8; 32] {
        Sha256::digest(self.spki_der()).into()
    }

    fn sign_digest(&mut self, digest: &[u8; 32]) -> Result<Vec<u8>, SignError> {
        let sig: p256::ecdsa::Signature =
            self.key.sign_prehash(digest).map_err(|e| SignError::Failed(e.to_string()))?;
        Ok(sig.to_der().as_bytes().to_vec())
    }
}

/// A signer whose card fails, to prove nothing is written when signing fails.
pub struct BrokenSigner(pub [u8; 32]);

impl RecordSigner for BrokenSigner {
    fn key_id(&self) -> [u8; 32] {
        self.0
    }
    fn sign_digest(&mut self, _: &[u8; 32]) -> Result<Vec<u8>, SignError> {
        Err(TokenError::Removed.into())
    }
}

fn time(t: SystemTime) -> Time {
    Time::try_from(t).unwrap()
}

/// An organisation CA and helpers to issue agent certificates.
pub struct Pki {
    pub ca_key: SigningKey,
    pub ca_der: Vec<u8>,
    subject: Name,
}

impl Pki {
    pub fn new(seed: u8) -> Self {
        let now = SystemTime::now();
        Self::with_ca_validity(seed, now - Duration::from_secs(86_400), now + Duration::from_secs(10 * 365 * 86_400))
    }

    /// A CA whose own certificate is valid `not_before..not_after`.
    pub fn with_ca_validity(seed: u8, not_before: SystemTime, not_after: SystemTime) -> Self {
        let ca = SoftSigner::from_seed("ca", seed.wrapping_add(100));
        let subject = Name::from_str("CN=Test ResetDesk Agent CA,O=Test Org").unwrap();
        let spki = SubjectPublicKeyInfoOwned::from_key(*ca.key.verifying_key()).unwrap();
        let validity = Validity { not_before: time(not_before), not_after: time(not_after) };
        let builder =
            CertificateBuilder::new(Profile::Root, SerialNumber::from(1u32), validity, subject.clone(), spki, &ca.key)
                .unwrap();
        let cert = builder.build::<DerSignature>().unwrap();
        Self { ca_der: cert.to_der().unwrap(), ca_key: ca.key, subject }
    }

    /// Issue a certificate for `signer`'s key, valid from a day ago for a year.
    pub fn issue(&self, signer: &SoftSigner) -> Vec<u8> {
        let now = SystemTime::now();
        self.issue_valid(signer, now - Duration::from_secs(86_400), now + Duration::from_secs(365 * 86_400))
    }

    pub fn issue_valid(&self, signer: &SoftSigner, not_before: SystemTime, not_after: SystemTime) -> Vec<u8> {
        issue_with(&self.ca_key, &self.subject, signer, not_before, not_after)
    }

    /// A certificate for `signer`'s key with the given subject, key usage and CA flag
    /// (valid from a day ago for a year), signed by this CA: the shapes an agent
    /// certificate must not have.
    pub fn issue_shaped(&self, signer: &SoftSigner, subject: &str, usage: KeyUsages, is_ca: bool) -> Vec<u8> {
        let now = SystemTime::now();
        let validity = Validity {
            not_before: time(now - Duration::from_secs(86_400)),
            not_after: time(now + Duration::from_secs(365 * 86_400)),
        };
        let spki = SubjectPublicKeyInfoOwned::from_key(*signer.key.verifying_key()).unwrap();
        let profile = Profile::Manual { issuer: Some(self.subject.clone()) };
        let serial = SerialNumber::from(u32::from(signer.key_id()[1]) + 2);
        let subject = Name::from_str(subject).unwrap();
        let mut builder = CertificateBuilder::new(profile, serial, validity, subject, spki, &self.ca_key).unwrap();
        builder.add_extension(&KeyUsage(usage.into())).unwrap();
        builder.add_extension(&BasicConstraints { ca: is_ca, path_len_constraint: None }).unwrap();
        builder.build::<DerSignature>().unwrap().to_der().unwrap()
    }

    pub fn ca_pem(&self) -> String {
        resetdesk::audit::resolver::certificate_pem(&self.ca_der)
    }

    /// A resolver trusting this CA with the given agents' certificates.
    pub fn resolver(&self, agents: &[&SoftSigner]) -> CertificateResolver {
        let mut r = CertificateResolver::new(&self.ca_der).unwrap();
        for a in agents {
            r.add_certificate_der(&self.issue(a), None).unwrap();
        }
        r
    }
}

/// Issue a certificate for `signer` under an issuer name, signed by `issuer_key`.
pub fn issue_with(
    issuer_key: &SigningKey,
    issuer: &Name,
    signer: &SoftSigner,
    not_before: SystemTime,
    not_after: SystemTime,
) -> Vec<u8> {
    let subject = Name::from_str(&format!("CN={},O=Test Org", signer.name)).unwrap();
    let spki = SubjectPublicKeyInfoOwned::from_key(*signer.key.verifying_key()).unwrap();
    let validity = Validity { not_before: time(not_before), not_after: time(not_after) };
    let profile = Profile::Leaf {
        issuer: issuer.clone(),
        enable_key_agreement: false,
        enable_key_encipherment: false,
        include_subject_key_identifier: true,
    };
    let serial = SerialNumber::from(u32::from(signer.key_id()[0]) + 2);
    let builder = CertificateBuilder::new(profile, serial, validity, subject, spki, issuer_key).unwrap();
    builder.build::<DerSignature>().unwrap().to_der().unwrap()
}

/// The facts a reset intent carries in these tests (secret-free, like the workflow's).
pub fn reset_facts(agent: &str, target: &str) -> serde_json::Value {
    serde_json::json!({
        "agent": agent,
        "target_account": target,
        "tier": "standard",
        "escalation_reasons": [],
        "verification": [{"step": "badge_photo", "result": "pass"}, {"step": "manager_callback", "result": "pass"}],
        "approvals": [],
        "channel": "walk_up",
        "directory": "embedded",
    })
}

/// A desk's files for CLI-level tests: an audit log written by alice (bob co-signs
/// one intent), the CA certificate and the agents' certificates as PEM files.
pub struct Desk {
    pub dir: tempfile::TempDir,
    pub db: std::path::PathBuf,
    pub ca_pem: std::path::PathBuf,
    pub certs: std::path::PathBuf,
    pub pki: Pki,
    pub alice: SoftSigner,
    pub bob: SoftSigner,
}

pub fn desk() -> Desk {
    use resetdesk::audit::{AuditLog, DirectoryOutcome, Event, EventType};
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.sqlite");
    let pki = Pki::new(1);
    let mut alice = SoftSigner::from_seed("alice", 1);
    let mut bob = SoftSigner::from_seed("bob", 2);
    let now = time::OffsetDateTime::now_utc;
    let mut log = AuditLog::open(&db).unwrap();
    let session = serde_json::json!({"agent": "alice", "workstation": "desk-3"});
    log.heartbeat(EventType::Login, &session, &mut alice, now()).unwrap();
    let i = log.append(&Event::reset_intent(&reset_facts("alice", "jdoe")).unwrap(), &mut alice, now()).unwrap();
    log.append(
        &Event::reset_outcome(i.intent_ref(), &DirectoryOutcome::Done, &reset_facts("alice", "jdoe")).unwrap(),
        &mut alice,
        now(),
    )
    .unwrap();
    let i = log
        .append_cosigned(&Event::reset_intent(&reset_facts("alice", "admin1")).unwrap(), &mut alice, &mut bob, now())
        .unwrap();
    log.append(
        &Event::reset_outcome(i.intent_ref(), &DirectoryOutcome::Done, &reset_facts("alice", "admin1")).unwrap(),
        &mut alice,
        now(),
    )
    .unwrap();
    log.heartbeat(EventType::Logout, &session, &mut alice, now()).unwrap();
    drop(log);
    let ca_pem = dir.path().join("ca.pem");
    std::fs::write(&ca_pem, pki.ca_pem()).unwrap();
    let certs = dir.path().join("certs");
    std::fs::create_dir(&certs).unwrap();
    for s in [&alice, &bob] {
        let pem = resetdesk::audit::resolver::certificate_pem(&pki.issue(s));
        std::fs::write(certs.join(format!("{}.pem", s.name)), pem).unwrap();
    }
    Desk { dir, db, ca_pem, certs, pki, alice, bob }
}
