//! PIV attestation: proof that a key was generated on a genuine YubiKey.
//!
//! A YubiKey (firmware ≥ 4.3) signs, with its device attestation key (slot f9), a
//! certificate for a key generated on it. The f9 certificate chains to Yubico's PIV
//! root: directly for firmware before 5.7.4 ("Yubico PIV Root CA Serial 263751"), or
//! through Yubico's published intermediates ("Yubico PIV Attestation ..." and
//! "Yubico Attestation Intermediate ...") to "Yubico Attestation Root 1" from 5.7.4.
//!
//! Roots are trust decisions and are never fetched. Built in: "Yubico PIV Root CA
//! Serial 263751" ([`builtin_roots`], pinned by its SHA-256 fingerprint), which covers
//! firmware 4.3 to 5.7.3. For firmware 5.7.4 and later a deployment installs Yubico's
//! "Yubico Attestation Root 1" and the PIV attestation intermediates (from Yubico's PKI
//! page) as a PEM bundle, [`ATTESTATION_BUNDLE_FILE`] in `<data_dir>/ca/`.
//! Verification ([`verify`]) is pure: certificates in, verdict out.

use der::{Decode, Encode};
use spki::SubjectPublicKeyInfoOwned;
use time::OffsetDateTime;
use x509_cert::Certificate;

use der::asn1::ObjectIdentifier;

/// File in `<data_dir>/ca/` holding Yubico's attestation roots and intermediates (PEM).
pub const ATTESTATION_BUNDLE_FILE: &str = "yubico-piv-attestation.pem";

/// Yubico PIV Root CA Serial 263751 (the 2018 re-issue, pathlen 1), as Yubico publishes it.
pub const YUBICO_PIV_ROOT_PEM: &str = include_str!("yubico-piv-root-ca-263751.pem");
/// SHA-256 of [`YUBICO_PIV_ROOT_PEM`]'s DER: the pin checked by [`builtin_roots`].
pub const YUBICO_PIV_ROOT_SHA256: &str = "63ece914e54dd87915f34033c85af4c0696ba1512f8add66ced738331207b546";

/// The built-in Yubico root(s). Empty only if the bundled file does not match its pin,
/// which a unit test rules out.
pub fn builtin_roots() -> Vec<Certificate> {
    use sha2::{Digest, Sha256};
    parse_bundle(YUBICO_PIV_ROOT_PEM)
        .unwrap_or_default()
        .into_iter()
        .filter(|c| c.to_der().map(|d| hex::encode(Sha256::digest(d)) == YUBICO_PIV_ROOT_SHA256).unwrap_or(false))
        .collect()
}

/// Yubico extension: firmware version (3 bytes).
const OID_FIRMWARE: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.41482.3.3");
/// Yubico extension: device serial number (INTEGER).
const OID_SERIAL: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.41482.3.7");
/// Yubico extension: PIN policy, touch policy (2 bytes).
const OID_POLICY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.41482.3.8");

const OID_SHA256_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.11");
const OID_ECDSA_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
const OID_ECDSA_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.3");
const OID_P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
/// secp384r1 (SEC 2; RFC 5480 §2.1.1.1).
const OID_P384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");

/// What a verified attestation says about the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attested {
    pub serial: Option<u32>,
    pub firmware: Option<String>,
    /// PIN policy byte (1 never, 2 once, 3 always) and touch policy byte (1 never, 2 always, 3 cached).
    pub policy: Option<(u8, u8)>,
}

/// Why an attestation was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttestationError {
    #[error("no Yubico attestation roots are installed ({ATTESTATION_BUNDLE_FILE}); the key cannot be shown to be generated on a YubiKey")]
    NoRoots,
    #[error("the attestation certificate is malformed: {0}")]
    Malformed(String),
    #[error("the attestation certificate is for a different key than the one generated")]
    WrongKey,
    #[error("the attestation chain does not lead to a Yubico root ({0})")]
    Chain(String),
    #[error("the attestation reports serial {attested}, but the card answers {card}")]
    WrongSerial { attested: u32, card: u32 },
}

/// Parse a PEM bundle of certificates (roots and intermediates).
pub fn parse_bundle(pem: &str) -> Result<Vec<Certificate>, AttestationError> {
    Certificate::load_pem_chain(pem.as_bytes()).map_err(|e| AttestationError::Malformed(format!("bundle: {e}")))
}

/// Verify that `attestation` (DER, from the card's ATTEST command) certifies
/// `generated` and chains through `f9` (the device certificate) and any of
/// `intermediates` to one of `roots`, all valid at `now`; `serial` is the card's
/// reported serial and must match the attested one when the certificate carries it.
pub fn verify(
    attestation: &[u8],
    f9: &[u8],
    generated: &SubjectPublicKeyInfoOwned,
    serial: u32,
    roots: &[Certificate],
    intermediates: &[Certificate],
    now: OffsetDateTime,
) -> Result<Attested, AttestationError> {
    if roots.is_empty() {
        return Err(AttestationError::NoRoots);
    }
    let leaf = Certificate::from_der(attestation).map_err(|e| AttestationError::Malformed(e.to_string()))?;
    let device = Certificate::from_der(f9).map_err(|e| AttestationError::Malformed(format!("f9: {e}")))?;
    if &leaf.tbs_certificate.subject_public_key_info != generated {
        return Err(AttestationError::WrongKey);
    }
    // Walk up: leaf → f9 → intermediates* → root. Bounded by the number of certificates.
    let mut current = leaf.clone();
    let mut next = Some(device);
    let mut steps = 0;
    loop {
        steps += 1;
        if steps > 2 + intermediates.len() {
            return Err(AttestationError::Chain("chain too long".into()));
        }
        check_time(&current, now)?;
        if let Some(root) = roots.iter().find(|r| r.tbs_certificate.subject == current.tbs_certificate.issuer) {
            if signed_by(&current, root).is_ok() {
                check_time(root, now)?;
                break;
            }
        }
        let issuer = match next.take() {
            Some(d) => d,
            None => intermediates
                .iter()
                .find(|c| c.tbs_certificate.subject == current.tbs_certificate.issuer)
                .cloned()
                .ok_or_else(|| AttestationError::Chain(format!("no issuer {}", current.tbs_certificate.issuer)))?,
        };
        signed_by(&current, &issuer)?;
        current = issuer;
    }
    let info = Attested {
        serial: ext(&leaf, OID_SERIAL).and_then(|v| der::asn1::Uint::from_der(&v).ok()).and_then(|u| {
            let b = u.as_bytes();
            (b.len() <= 4).then(|| b.iter().fold(0u32, |acc, x| (acc << 8) | u32::from(*x)))
        }),
        firmware: ext(&leaf, OID_FIRMWARE).filter(|v| v.len() == 3).map(|v| format!("{}.{}.{}", v[0], v[1], v[2])),
        policy: ext(&leaf, OID_POLICY).filter(|v| v.len() >= 2).map(|v| (v[0], v[1])),
    };
    if let Some(attested) = info.serial {
        if attested != serial {
            return Err(AttestationError::WrongSerial { attested, card: serial });
        }
    }
    Ok(info)
}

fn ext(cert: &Certificate, oid: ObjectIdentifier) -> Option<Vec<u8>> {
    cert.tbs_certificate
        .extensions
        .as_ref()?
        .iter()
        .find(|e| e.extn_id == oid)
        .map(|e| e.extn_value.as_bytes().to_vec())
}

fn check_time(cert: &Certificate, now: OffsetDateTime) -> Result<(), AttestationError> {
    let (from, to) = crate::ca::validity(&cert.tbs_certificate.validity);
    if now < from || now > to {
        return Err(AttestationError::Chain(format!(
            "{} is not valid at {now} ({from} to {to})",
            cert.tbs_certificate.subject
        )));
    }
    Ok(())
}

/// Check `cert`'s signature with `issuer`'s public key (RSA PKCS#1 SHA-256, ECDSA P-256/P-384).
fn signed_by(cert: &Certificate, issuer: &Certificate) -> Result<(), AttestationError> {
    use ring::signature as rs;
    let spki = &issuer.tbs_certificate.subject_public_key_info;
    let curve = spki.algorithm.parameters.as_ref().and_then(|p| p.decode_as::<ObjectIdentifier>().ok());
    let alg: &dyn rs::VerificationAlgorithm = match (cert.signature_algorithm.oid, curve) {
        (o, _) if o == OID_SHA256_RSA => &rs::RSA_PKCS1_2048_8192_SHA256,
        (o, Some(c)) if o == OID_ECDSA_SHA256 && c == OID_P256 => &rs::ECDSA_P256_SHA256_ASN1,
        (o, Some(c)) if o == OID_ECDSA_SHA256 && c == OID_P384 => &rs::ECDSA_P384_SHA256_ASN1,
        (o, Some(c)) if o == OID_ECDSA_SHA384 && c == OID_P384 => &rs::ECDSA_P384_SHA384_ASN1,
        (o, Some(c)) if o == OID_ECDSA_SHA384 && c == OID_P256 => &rs::ECDSA_P256_SHA384_ASN1,
        (o, _) => return Err(AttestationError::Chain(format!("unsupported signature algorithm {o}"))),
    };
    let key = spki.subject_public_key.as_bytes().ok_or_else(|| AttestationError::Malformed("issuer key".into()))?;
    let tbs = cert.tbs_certificate.to_der().map_err(|e| AttestationError::Malformed(e.to_string()))?;
    let sig = cert.signature.as_bytes().ok_or_else(|| AttestationError::Malformed("signature".into()))?;
    rs::UnparsedPublicKey::new(alg, key).verify(&tbs, sig).map_err(|_| {
        AttestationError::Chain(format!(
            "{} is not signed by {}",
            cert.tbs_certificate.subject, issuer.tbs_certificate.subject
        ))
    })
}

#[cfg(test)]
mod tests {
    //! A synthetic Yubico-shaped PKI (root → f9 device CA → attestation certificate),
    //! built with the same certificate builder the org CA uses.
    use super::*;
    use crate::ca::{OrgCa, CA_VALIDITY};
    use p256::ecdsa::SigningKey;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-06-01 12:00 UTC);

    struct Pki {
        root: Certificate,
        f9: Vec<u8>,
        attestation: Vec<u8>,
        generated: SubjectPublicKeyInfoOwned,
    }

    fn pki() -> Pki {
        // "Root" and "device" are both CAs made by OrgCa; the device CA is certified by the root.
        let root = OrgCa::generate("Yubico Test", NOW - time::Duration::days(10), CA_VALIDITY).unwrap();
        let device = OrgCa::generate("Device 1234", NOW - time::Duration::days(10), CA_VALIDITY).unwrap();
        let device_spki = device.trust_anchor().certificate().tbs_certificate.subject_public_key_info.clone();
        // Re-issue the device CA's key under the root: a leaf-shaped cert is fine for
        // the signature walk (attestation does not check CA flags, Yubico's f9 has none on old devices).
        let f9 = issue_f9(&root, device_spki);
        let key = SigningKey::random(&mut rand::rngs::OsRng);
        let generated = SubjectPublicKeyInfoOwned::from_key(*key.verifying_key()).unwrap();
        let mut att = device
            .issue(
                "YubiKey PIV Attestation 9c",
                generated.clone(),
                NOW - time::Duration::days(1),
                NOW + time::Duration::days(100),
            )
            .unwrap();
        // Make its issuer the f9 subject (OrgCa issues under its own CA name).
        att.tbs_certificate.issuer = f9.tbs_certificate.subject.clone();
        let att = resign(att, &device);
        Pki {
            root: root.trust_anchor().certificate().clone(),
            f9: f9.to_der().unwrap(),
            attestation: att.to_der().unwrap(),
            generated,
        }
    }

    /// The device (f9) certificate for `device_spki`, issued by `root`.
    fn issue_f9(root: &OrgCa, device_spki: SubjectPublicKeyInfoOwned) -> Certificate {
        let valid = (NOW - time::Duration::days(1), NOW + time::Duration::days(100));
        root.issue("Yubico PIV Attestation", device_spki, valid.0, valid.1).unwrap()
    }

    fn resign(mut cert: Certificate, by: &OrgCa) -> Certificate {
        use p256::ecdsa::signature::Signer;
        let tbs = cert.tbs_certificate.to_der().unwrap();
        let sig: p256::ecdsa::DerSignature = by.signing_key_for_tests().sign(&tbs);
        cert.signature = der::asn1::BitString::from_bytes(sig.as_bytes()).unwrap();
        cert
    }

    #[test]
    fn builtin_yubico_root_matches_its_pin_and_its_own_rsa_signature() {
        let roots = builtin_roots();
        assert_eq!(roots.len(), 1);
        let root = &roots[0];
        assert_eq!(root.tbs_certificate.subject.to_string(), "CN=Yubico PIV Root CA Serial 263751");
        signed_by(root, root).expect("self-signature verifies: the bundled copy is intact");
        let mut tampered = root.clone();
        tampered.tbs_certificate.serial_number = x509_cert::serial_number::SerialNumber::from(1u32);
        assert!(signed_by(&tampered, root).is_err());
    }

    #[test]
    fn genuine_chain_is_accepted() {
        let p = pki();
        let a = verify(&p.attestation, &p.f9, &p.generated, 1234, std::slice::from_ref(&p.root), &[], NOW).unwrap();
        assert_eq!(a.serial, None);
    }

    #[test]
    fn attestation_of_another_key_is_refused() {
        let p = pki();
        let other =
            SubjectPublicKeyInfoOwned::from_key(*SigningKey::random(&mut rand::rngs::OsRng).verifying_key()).unwrap();
        assert_eq!(verify(&p.attestation, &p.f9, &other, 1, &[p.root], &[], NOW), Err(AttestationError::WrongKey));
    }

    #[test]
    fn chain_to_an_unknown_root_is_refused() {
        let p = pki();
        let stranger = OrgCa::generate("Yubico Test", NOW - time::Duration::days(10), CA_VALIDITY).unwrap();
        let r =
            verify(&p.attestation, &p.f9, &p.generated, 1, &[stranger.trust_anchor().certificate().clone()], &[], NOW);
        assert!(matches!(r, Err(AttestationError::Chain(_))), "{r:?}");
    }

    /// Newer Yubico device CAs have P-384 keys and sign with ECDSA SHA-384: a chain
    /// root (P-256) → f9 (P-384 key) → attestation (signed by the P-384 key) verifies,
    /// and a wrong signature in it does not.
    #[test]
    fn a_p384_device_ca_chain_is_accepted() {
        use p384::ecdsa::signature::Signer;
        let p = pki();
        let root = OrgCa::generate("Yubico Test", NOW - time::Duration::days(10), CA_VALIDITY).unwrap();
        let device_key = p384::ecdsa::SigningKey::random(&mut rand::rngs::OsRng);
        let device_spki = SubjectPublicKeyInfoOwned::from_key(*device_key.verifying_key()).unwrap();
        let curve = device_spki.algorithm.parameters.as_ref().unwrap().decode_as::<ObjectIdentifier>().unwrap();
        assert_eq!(curve.to_string(), "1.3.132.0.34", "the key's curve is secp384r1");
        let f9 = issue_f9(&root, device_spki);
        let mut att = Certificate::from_der(&p.attestation).unwrap();
        att.tbs_certificate.issuer = f9.tbs_certificate.subject.clone();
        let sha384 = spki::AlgorithmIdentifierOwned { oid: OID_ECDSA_SHA384, parameters: None };
        att.tbs_certificate.signature = sha384.clone();
        att.signature_algorithm = sha384;
        let sig: p384::ecdsa::DerSignature = device_key.sign(&att.tbs_certificate.to_der().unwrap());
        att.signature = der::asn1::BitString::from_bytes(sig.as_bytes()).unwrap();
        let (att, f9) = (att.to_der().unwrap(), f9.to_der().unwrap());
        let roots = [root.trust_anchor().certificate().clone()];
        verify(&att, &f9, &p.generated, 1234, &roots, &[], NOW).expect("a P-384 device CA chain verifies");

        let mut forged = Certificate::from_der(&att).unwrap();
        forged.tbs_certificate.serial_number = x509_cert::serial_number::SerialNumber::from(7u32);
        let r = verify(&forged.to_der().unwrap(), &f9, &p.generated, 1234, &roots, &[], NOW);
        assert!(matches!(r, Err(AttestationError::Chain(_))), "{r:?}");
    }

    #[test]
    fn no_roots_means_not_attested() {
        let p = pki();
        assert_eq!(verify(&p.attestation, &p.f9, &p.generated, 1, &[], &[], NOW), Err(AttestationError::NoRoots));
    }
}
