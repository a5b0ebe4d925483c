//! Enrolment: turn a YubiKey (factory fresh, or enrolled before by ResetDesk) into an
//! agent's token.
//!
//! Steps, on the card in one reader:
//! 1. refuse a virtual token in production; check the new PIN/PUK formats (and that
//!    they are not the factory values) before touching the card;
//! 2. verify the current PIN (factory `123456` unless told otherwise) and authenticate
//!    with the management key (factory default, or the PIN-protected one a previous
//!    enrolment stored) in the algorithm the card reports: 3DES, or AES-192 on
//!    firmware 5.7+ (see [`super::management`]);
//! 3. generate P-256 keys on the card: 9a (PIN once, no touch) and 9c (PIN always,
//!    touch always); attest each where the device supports it and verify the chain to
//!    Yubico's roots (built-in PIV root, plus an installed bundle for newer firmware);
//!    no attestation: `attested = false`, which production refuses unless allowed;
//! 4. issue both certificates from the organisation CA (CN = username) and write them;
//! 5. replace the management key with a random PIN-protected one (AES-192 where the
//!    firmware has AES, 3DES on firmware before 5.4), change the PUK and then the PIN;
//! 6. record both keys in the token registry (revoking keys of an earlier enrolment of
//!    the same card).

use std::path::Path;

use der::Encode;
use time::OffsetDateTime;
use yubikey::{PinPolicy, TouchPolicy};

use super::attestation::{self, AttestationError};
use super::card::{check_pin_format, PivCard, Slot, DEFAULT_PIN, DEFAULT_PUK};
use super::management::ManagementAlgorithm;
use super::registry::{NewKey, RegistryError, TokenRegistry};
use super::TokenError;
use crate::ca::{CaError, OrgCa, AGENT_CERT_VALIDITY};
use crate::directory::{Directory, DirectoryError};
use crate::secret::Secret;

/// What the enrolling admin supplies.
#[derive(Debug)]
pub struct EnrolRequest {
    /// The agent's directory username (becomes the certificate CN).
    pub username: String,
    pub new_pin: Secret,
    pub new_puk: Secret,
    /// The card's current PIN (factory default when enrolling a new card).
    pub current_pin: Secret,
    /// The card's current PUK.
    pub current_puk: Secret,
    /// Refuse virtual tokens (production).
    pub refuse_virtual: bool,
    /// Accept keys whose generation on a YubiKey cannot be attested.
    pub allow_unattested: bool,
}

impl EnrolRequest {
    /// A request for a factory-fresh card.
    pub fn factory_card(username: &str, new_pin: Secret, new_puk: Secret) -> Self {
        Self {
            username: username.to_owned(),
            new_pin,
            new_puk,
            current_pin: Secret::from(DEFAULT_PIN),
            current_puk: Secret::from(DEFAULT_PUK),
            refuse_virtual: false,
            allow_unattested: true,
        }
    }

    /// The token rules of `config`'s mode: production refuses virtual tokens and keys
    /// without PIV attestation, unless `[tokens] allow_unattested` or the admin's own
    /// `allow_unattested` (old firmware) lets those through.
    pub fn under_rules_of(mut self, config: &crate::config::Config, allow_unattested: bool) -> Self {
        let production = config.mode == crate::config::Mode::Production;
        self.refuse_virtual = production;
        self.allow_unattested = allow_unattested || config.tokens.allow_unattested || !production;
        self
    }
}

/// Why an enrolment stopped.
#[derive(Debug, thiserror::Error)]
pub enum EnrolError {
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error(transparent)]
    Ca(#[from] CaError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("{0:?} is not in the directory; check the username")]
    UnknownAgent(String),
    #[error("{0:?} is not in an agent group; add them to a help-desk group first")]
    NotAnAgent(String),
    #[error(transparent)]
    Directory(DirectoryError),
    #[error("virtual tokens cannot be enrolled in production")]
    VirtualRefused,
    #[error("the new {0} must not be the factory default")]
    DefaultSecret(&'static str),
    #[error("the new {0} must have 6 to 8 ASCII characters")]
    SecretFormat(&'static str),
    #[error("the key in slot {slot} could not be attested ({source}); production refuses unattested keys (use a YubiKey with firmware 4.3 or later and install the Yubico attestation roots)")]
    Unattested {
        slot: &'static str,
        #[source]
        source: AttestationError,
    },
}

/// What was done.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EnrolReport {
    pub username: String,
    pub reader: String,
    pub serial: u32,
    pub is_virtual: bool,
    pub attested: bool,
    /// Why not attested, when not.
    pub attestation_note: Option<String>,
    /// Hex key ids of 9a and 9c.
    pub key_id_9a: String,
    pub key_id_9c: String,
    /// Algorithm of the new random management key.
    pub management_key: ManagementAlgorithm,
}

/// The built-in Yubico PIV root plus the roots and intermediates installed in
/// `<data_dir>/ca/` ([`attestation::ATTESTATION_BUNDLE_FILE`], for firmware 5.7.4+).
pub fn load_attestation_bundle(data_dir: &Path) -> Result<Vec<x509_cert::Certificate>, AttestationError> {
    let mut certs = attestation::builtin_roots();
    let path = data_dir.join("ca").join(attestation::ATTESTATION_BUNDLE_FILE);
    if let Ok(pem) = std::fs::read_to_string(&path) {
        certs.extend(attestation::parse_bundle(&pem)?);
    }
    Ok(certs)
}

/// Enrol the card for `req.username`. `directory`, when given, must know the user as an
/// agent. `attestation_certs` are Yubico's roots (self-signed) and intermediates.
pub fn enrol(
    card: &mut PivCard,
    ca: &OrgCa,
    registry: &mut TokenRegistry,
    directory: Option<(&dyn Directory, &crate::config::AgentConfig)>,
    attestation_certs: &[x509_cert::Certificate],
    req: &EnrolRequest,
    now: OffsetDateTime,
) -> Result<EnrolReport, EnrolError> {
    if req.refuse_virtual && card.is_virtual() {
        return Err(EnrolError::VirtualRefused);
    }
    check_pin_format(&req.new_pin).map_err(|_| EnrolError::SecretFormat("PIN"))?;
    check_pin_format(&req.new_puk).map_err(|_| EnrolError::SecretFormat("PUK"))?;
    if req.new_pin.expose() == DEFAULT_PIN {
        return Err(EnrolError::DefaultSecret("PIN"));
    }
    if req.new_puk.expose() == DEFAULT_PUK {
        return Err(EnrolError::DefaultSecret("PUK"));
    }
    if let Some((dir, agents)) = directory {
        match dir.entry(&req.username) {
            Ok(acc) if agents.groups().tier(&acc.groups).is_some() => {}
            Ok(_) => return Err(EnrolError::NotAnAgent(req.username.clone())),
            Err(DirectoryError::NotFound(_)) => return Err(EnrolError::UnknownAgent(req.username.clone())),
            Err(e) => return Err(EnrolError::Directory(e)),
        }
    }

    // A device without an attestation certificate cannot attest anything: refuse before
    // generating keys (which would destroy the card's current ones).
    let f9 = card.attestation_intermediate()?;
    if f9.is_none() && !req.allow_unattested {
        return Err(EnrolError::Unattested {
            slot: "f9",
            source: AttestationError::Chain("the device has no attestation certificate (slot f9)".into()),
        });
    }

    card.verify_pin(&req.current_pin)?;
    card.authenticate_management()?;

    let spki_a = card.generate_p256(Slot::Authentication, PinPolicy::Once, TouchPolicy::Never)?;
    let spki_c = card.generate_p256(Slot::Signature, PinPolicy::Always, TouchPolicy::Always)?;

    let roots: Vec<_> =
        attestation_certs.iter().filter(|c| c.tbs_certificate.subject == c.tbs_certificate.issuer).cloned().collect();
    let intermediates: Vec<_> =
        attestation_certs.iter().filter(|c| c.tbs_certificate.subject != c.tbs_certificate.issuer).cloned().collect();
    let mut attest =
        |slot: Slot, spki: &spki::SubjectPublicKeyInfoOwned| -> Result<Result<(), AttestationError>, TokenError> {
            let Some(f9) = f9.as_ref() else {
                return Ok(Err(AttestationError::Chain("the device has no attestation certificate (slot f9)".into())));
            };
            let Some(cert) = card.attest(slot)? else {
                return Ok(Err(AttestationError::Chain("the device does not support PIV attestation".into())));
            };
            Ok(attestation::verify(&cert, f9, spki, card.serial(), &roots, &intermediates, now).map(|_| ()))
        };
    let att_a = attest(Slot::Authentication, &spki_a)?;
    let att_c = attest(Slot::Signature, &spki_c)?;
    let note = att_a.as_ref().err().or(att_c.as_ref().err()).map(|e| e.to_string());
    let attested = att_a.is_ok() && att_c.is_ok();
    if !attested && !req.allow_unattested {
        let (slot, source) = match (att_a, att_c) {
            (Err(e), _) => ("9a", e),
            (_, Err(e)) => ("9c", e),
            // Unreachable: `attested` is false only when one of them failed.
            _ => ("9a", AttestationError::NoRoots),
        };
        return Err(EnrolError::Unattested { slot, source });
    }

    let not_after = now + AGENT_CERT_VALIDITY;
    let cert_a = ca.issue(&req.username, spki_a.clone(), now, not_after)?;
    let cert_c = ca.issue(&req.username, spki_c.clone(), now, not_after)?;
    card.write_certificate(Slot::Authentication, &cert_a)?;
    card.write_certificate(Slot::Signature, &cert_c)?;

    let management_key = card.set_random_protected_management_key()?;
    card.change_puk(&req.current_puk, &req.new_puk)?;
    card.change_pin(&req.current_pin, &req.new_pin)?;

    let kid = |s: &spki::SubjectPublicKeyInfoOwned| crate::ca::key_id(s).map_err(CaError::Build);
    let (kid_a, kid_c) = (kid(&spki_a)?, kid(&spki_c)?);
    let der = |c: &x509_cert::Certificate| c.to_der().map_err(|e| CaError::Build(e.to_string()));
    let keys = [
        NewKey {
            key_id: kid_a,
            slot: Slot::Authentication,
            cert_der: der(&cert_a)?,
            pin_policy: "once".into(),
            touch_policy: "never".into(),
            attested,
        },
        NewKey {
            key_id: kid_c,
            slot: Slot::Signature,
            cert_der: der(&cert_c)?,
            pin_policy: "always".into(),
            touch_policy: "always".into(),
            attested,
        },
    ];
    registry.record_enrolment(&req.username, card.serial(), card.is_virtual(), &keys, now)?;
    Ok(EnrolReport {
        username: req.username.clone(),
        reader: card.reader().to_owned(),
        serial: card.serial(),
        is_virtual: card.is_virtual(),
        attested,
        attestation_note: if attested { None } else { note },
        key_id_9a: hex::encode(kid_a),
        key_id_9c: hex::encode(kid_c),
        management_key,
    })
}
