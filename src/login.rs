//! Agent login with a YubiKey: PIN, certificate, challenge, directory, registry.
//!
//! [`login`] is the one call the desktop shell makes when the agent has inserted a key
//! and typed the PIN. In order, and stopping at the first failure:
//! 1. open the card in the named reader; a virtual (vpcd) token is refused in
//!    production before the PIN is sent;
//! 2. verify the PIN once (wrong PIN: tries left; blocked PIN) — never retried;
//! 3. read the 9a and 9c certificates and validate both against the organisation CA at
//!    `now` (issuer signature, validity dates, key usage); they must name the same agent;
//! 4. challenge slot 9a with a fresh 32-byte nonce from the OS and verify the signature
//!    against the 9a certificate (the card holds the certified key);
//! 5. map the certificate CN to a directory account that is in an agent group;
//! 6. require active (not revoked) registry enrolments for both keys on this card,
//!    attested ones in production unless configured otherwise; in production also
//!    refuse a card still on the factory PIN or management key.
//!
//! The checks after the card IO ([`decide`], [`verify_challenge`]) are pure.

use p256::ecdsa::signature::hazmat::PrehashVerifier;
use p256::ecdsa::{Signature, VerifyingKey};
use rand::RngCore;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::ca::{AgentCert, CaError, CertError, TrustAnchor};
use crate::config::{Config, Mode};
use crate::directory::{Directory, DirectoryEntry, DirectoryError};
use crate::secret::Secret;
use crate::session::{LockDecision, LockReason, SessionEvent, SessionLock};
use crate::tier::AgentTier;
use crate::token::card::{PivCard, Slot, DEFAULT_PIN};
use crate::token::registry::{KeyRecord, RegistryError, TokenRegistry};
use crate::token::signer::PivSigner;
use crate::token::TokenError;

/// Domain separation for the login challenge: the card signs
/// SHA-256(LOGIN_CONTEXT || nonce), never a bare caller-chosen digest.
pub const LOGIN_CONTEXT: &[u8] = b"ResetDesk agent login challenge v1\0";

/// Token rules that depend on the installation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenPolicy {
    /// Refuse virtual (vpcd) tokens.
    pub refuse_virtual: bool,
    /// Accept keys without PIV attestation.
    pub allow_unattested: bool,
    /// Refuse cards still on the factory PIN or management key.
    pub refuse_defaults: bool,
}

impl TokenPolicy {
    /// Demo: anything goes (with a banner). Production: no virtual tokens, no
    /// unattested keys, no factory credentials.
    /// `[tokens] allow_unattested` relaxes only the attestation rule in production.
    pub fn from_config(config: &Config) -> Self {
        let production = config.mode == Mode::Production;
        Self {
            refuse_virtual: production,
            allow_unattested: !production || config.tokens.allow_unattested,
            refuse_defaults: production,
        }
    }
}

/// Why a login failed. Each says what the agent or an admin can do.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// Card and PIN problems: `WrongPin { tries_left }`, `PinBlocked`, `Removed`, ...
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error("this is a virtual (demo) token; production desks accept only hardware YubiKeys")]
    VirtualRefused,
    #[error("this key still has the factory {0}; an admin must enrol it with `resetdesk token enroll`")]
    FactoryDefaults(&'static str),
    #[error("the key has no certificate in slot {0}; enrol it with `resetdesk token enroll`")]
    NoCertificate(&'static str),
    #[error("the certificate in slot {slot} is not acceptable: {source}")]
    Certificate {
        slot: &'static str,
        #[source]
        source: CertError,
    },
    #[error("the key's two certificates name different agents ({a} in 9a, {c} in 9c); re-enrol the key")]
    CertificateMismatch { a: String, c: String },
    #[error(
        "the key did not prove it holds the certified private key; it may be a copy of someone else's certificate"
    )]
    ChallengeFailed,
    #[error("{0:?} is not in the directory; ask an admin to revoke this key")]
    UnknownAgent(String),
    #[error("{0:?} is not a help-desk agent (not in an agent group)")]
    NotAnAgent(String),
    #[error("this key (serial {serial}) is not enrolled for {username:?}; enrol it with `resetdesk token enroll`")]
    NotEnrolled { username: String, serial: u32 },
    #[error("this key was revoked for {username:?} ({reason}); ask an admin for a new key")]
    Revoked { username: String, reason: String },
    #[error("this key was not attested as generated on a YubiKey; production desks refuse such keys")]
    Unattested,
    #[error("the organisation CA is not available: {0}")]
    Ca(#[from] CaError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Directory(DirectoryError),
    #[error("the session is locked: {}", .0.message())]
    Locked(LockReason),
}

impl LoginError {
    /// PIN tries left, for the lock screen, when the error is a wrong PIN.
    pub fn tries_left(&self) -> Option<u8> {
        match self {
            LoginError::Token(TokenError::WrongPin { tries_left }) => Some(*tries_left),
            LoginError::Token(TokenError::PinBlocked) => Some(0),
            _ => None,
        }
    }
}

/// Who logged in, with which key.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AgentIdentity {
    pub username: String,
    pub display_name: String,
    pub tier: AgentTier,
    pub reader: String,
    pub serial: u32,
    /// A demo token in a vpcd reader: the UI shows a banner.
    pub is_virtual: bool,
    /// Audit key id (SHA-256 of the 9c SPKI), hex.
    pub signing_key_id: String,
    #[serde(with = "time::serde::rfc3339")]
    pub certificate_expires: OffsetDateTime,
}

/// A logged-in agent: identity, lock state and (while unlocked) the 9c signer.
#[derive(Debug)]
pub struct AgentSession {
    identity: AgentIdentity,
    lock: SessionLock,
    signer: Option<PivSigner>,
}

impl AgentSession {
    pub fn identity(&self) -> &AgentIdentity {
        &self.identity
    }
    pub fn username(&self) -> &str {
        &self.identity.username
    }
    pub fn display_name(&self) -> &str {
        &self.identity.display_name
    }
    pub fn tier(&self) -> AgentTier {
        self.identity.tier
    }
    pub fn is_virtual(&self) -> bool {
        self.identity.is_virtual
    }
    pub fn reader(&self) -> &str {
        &self.identity.reader
    }

    /// `Some(reason)` once the session has locked.
    pub fn locked(&self) -> Option<LockReason> {
        self.lock.locked()
    }

    /// When the idle lock fires if nothing happens: schedule a `Tick` for then.
    pub fn idle_deadline(&self) -> Option<OffsetDateTime> {
        self.lock.deadline()
    }

    /// Feed an event (card watcher, UI activity, timer). On `Lock` the signer is
    /// dropped at once: the PIN buffer is wiped and the card connection closed.
    pub fn handle(&mut self, event: &SessionEvent) -> LockDecision {
        let d = self.lock.handle(event);
        if let LockDecision::Lock(_) = d {
            self.signer = None;
        }
        d
    }

    /// The 9c signer for audit records and co-signatures; `Locked` once locked.
    pub fn signer(&mut self) -> Result<&mut PivSigner, LoginError> {
        match (self.lock.locked(), self.signer.as_mut()) {
            (None, Some(s)) => Ok(s),
            (Some(r), _) => Err(LoginError::Locked(r)),
            (None, None) => Err(LoginError::Locked(LockReason::TokenLost)),
        }
    }

    /// Sign a digest with 9c (PIN verified right before), counting as activity at `now`.
    /// A removed or reset card locks the session (`TokenLost`).
    pub fn sign_digest(&mut self, digest: &[u8; 32], now: OffsetDateTime) -> Result<Vec<u8>, LoginError> {
        if let LockDecision::Lock(r) = self.handle(&SessionEvent::Activity { at: now }) {
            return Err(LoginError::Locked(r));
        }
        let result = self.signer()?.sign(digest);
        match result {
            Ok(sig) => Ok(sig),
            Err(e @ (TokenError::Removed | TokenError::Reset | TokenError::NoService)) => {
                self.handle(&SessionEvent::TokenLost { at: now });
                Err(LoginError::Token(e))
            }
            Err(e) => Err(LoginError::Token(e)),
        }
    }
}

/// Everything login needs besides the card and the PIN.
pub struct LoginContext<'a> {
    pub anchor: &'a TrustAnchor,
    pub registry: &'a TokenRegistry,
    pub directory: &'a dyn Directory,
    pub agents: &'a crate::config::AgentConfig,
    pub policy: TokenPolicy,
}

/// Log in the agent whose key is in `reader` with `pin`, at `now`. Loads the CA
/// certificate from the configuration and the registry from the data directory.
pub fn login(
    config: &Config,
    directory: &dyn Directory,
    reader: &str,
    pin: Secret,
    now: OffsetDateTime,
) -> Result<AgentSession, LoginError> {
    let anchor = TrustAnchor::load(&config.ca_cert_path())?;
    let registry = TokenRegistry::open_existing(&config.data_dir)?;
    let ctx = LoginContext {
        anchor: &anchor,
        registry: &registry,
        directory,
        agents: &config.agents,
        policy: TokenPolicy::from_config(config),
    };
    tracing::debug!(reader, "login: opening the card");
    let card = PivCard::open_reader(reader)?;
    login_with_card(&ctx, card, pin, now)
}

/// [`login`] on an already opened card.
pub fn login_with_card(
    ctx: &LoginContext<'_>,
    mut card: PivCard,
    pin: Secret,
    now: OffsetDateTime,
) -> Result<AgentSession, LoginError> {
    let is_virtual = card.is_virtual();
    if is_virtual && ctx.policy.refuse_virtual {
        return Err(LoginError::VirtualRefused);
    }
    card.verify_pin(&pin)?;
    if ctx.policy.refuse_defaults {
        if pin.expose() == DEFAULT_PIN {
            return Err(LoginError::FactoryDefaults("PIN"));
        }
        if card.has_default_management_key()? {
            return Err(LoginError::FactoryDefaults("management key"));
        }
        // Trying the management key may have reset the security status: verify again
        // with the PIN that was just accepted (not a retry of a failed PIN).
        card.verify_pin(&pin)?;
    }
    let cert_a = card.certificate(Slot::Authentication)?.ok_or(LoginError::NoCertificate("9a"))?;
    let cert_c = card.certificate(Slot::Signature)?.ok_or(LoginError::NoCertificate("9c"))?;
    let a = ctx.anchor.validate(&cert_a, now).map_err(|source| LoginError::Certificate { slot: "9a", source })?;
    let c = ctx.anchor.validate(&cert_c, now).map_err(|source| LoginError::Certificate { slot: "9c", source })?;

    let mut nonce = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let digest = challenge_digest(&nonce);
    let sig = card.sign_digest(Slot::Authentication, &digest)?;
    if !verify_challenge(&a.public_key, &nonce, &sig) {
        return Err(LoginError::ChallengeFailed);
    }

    let account = match ctx.directory.entry(&a.username) {
        Ok(acc) => Some(acc),
        Err(DirectoryError::NotFound(_)) => None,
        Err(e) => return Err(LoginError::Directory(e)),
    };
    let rec_a = ctx.registry.by_key_id(&a.key_id)?;
    let rec_c = ctx.registry.by_key_id(&c.key_id)?;
    let facts = LoginFacts {
        serial: card.serial(),
        cert_a: &a,
        cert_c: &c,
        record_a: rec_a.as_ref(),
        record_c: rec_c.as_ref(),
        account: account.as_ref(),
    };
    let tier = decide(&facts, ctx.agents, ctx.policy)?;
    let account = account.ok_or_else(|| LoginError::UnknownAgent(a.username.clone()))?;
    let identity = AgentIdentity {
        username: a.username.clone(),
        display_name: account.display_name.clone(),
        tier,
        reader: card.reader().to_owned(),
        serial: card.serial(),
        is_virtual,
        signing_key_id: hex::encode(c.key_id),
        certificate_expires: a.not_after.min(c.not_after),
    };
    let lock = SessionLock::new(card.reader(), ctx.agents.idle_lock_seconds, now);
    Ok(AgentSession { identity, lock, signer: Some(PivSigner::new(card, pin, c.key_id)) })
}

/// SHA-256(LOGIN_CONTEXT || nonce): the digest slot 9a signs at login.
pub fn challenge_digest(nonce: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(LOGIN_CONTEXT);
    h.update(nonce);
    h.finalize().into()
}

/// Whether `signature` (DER ECDSA) over [`challenge_digest`]`(nonce)` verifies with `key`.
pub fn verify_challenge(key: &VerifyingKey, nonce: &[u8; 32], signature: &[u8]) -> bool {
    let Ok(sig) = Signature::from_der(signature) else { return false };
    key.verify_prehash(&challenge_digest(nonce), &sig).is_ok()
}

/// What the card, directory and registry said, for [`decide`].
#[derive(Debug)]
pub struct LoginFacts<'a> {
    pub serial: u32,
    pub cert_a: &'a AgentCert,
    pub cert_c: &'a AgentCert,
    pub record_a: Option<&'a KeyRecord>,
    pub record_c: Option<&'a KeyRecord>,
    pub account: Option<&'a DirectoryEntry>,
}

/// The pure part of login: from validated certificates, registry rows and the account,
/// the agent tier or the reason to refuse.
pub fn decide(
    f: &LoginFacts<'_>,
    agents: &crate::config::AgentConfig,
    policy: TokenPolicy,
) -> Result<AgentTier, LoginError> {
    let username = &f.cert_a.username;
    if f.cert_c.username != *username {
        return Err(LoginError::CertificateMismatch { a: username.clone(), c: f.cert_c.username.clone() });
    }
    let account = f.account.ok_or_else(|| LoginError::UnknownAgent(username.clone()))?;
    let tier = agents.groups().tier(&account.groups).ok_or_else(|| LoginError::NotAnAgent(username.clone()))?;
    for (rec, slot) in [(f.record_a, Slot::Authentication), (f.record_c, Slot::Signature)] {
        let rec = match rec {
            Some(r) if r.username == *username && r.serial == f.serial && r.slot == slot => r,
            _ => return Err(LoginError::NotEnrolled { username: username.clone(), serial: f.serial }),
        };
        if !rec.is_active() {
            return Err(LoginError::Revoked {
                username: username.clone(),
                reason: rec.revoked_reason.clone().unwrap_or_else(|| "revoked".into()),
            });
        }
        if !rec.attested && !policy.allow_unattested {
            return Err(LoginError::Unattested);
        }
    }
    Ok(tier)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AgentConfig;
    use p256::ecdsa::SigningKey;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-06-01 12:00 UTC);

    fn vc(username: &str, b: u8) -> AgentCert {
        AgentCert {
            username: username.into(),
            subject: format!("CN={username}"),
            public_key: *SigningKey::random(&mut rand::rngs::OsRng).verifying_key(),
            key_id: [b; 32],
            not_before: NOW - time::Duration::days(1),
            not_after: NOW + time::Duration::days(30),
            ca_not_before: NOW - time::Duration::days(2),
            ca_not_after: NOW + time::Duration::days(300),
        }
    }

    fn rec(username: &str, serial: u32, slot: Slot, attested: bool, revoked: bool) -> KeyRecord {
        KeyRecord {
            key_id: [0; 32],
            username: username.into(),
            serial,
            slot,
            cert_der: vec![],
            enrolled_at: NOW,
            is_virtual: true,
            attested,
            pin_policy: "once".into(),
            touch_policy: "never".into(),
            revoked_at: revoked.then_some(NOW),
            revoked_reason: revoked.then(|| "lost key".into()),
        }
    }

    fn account(username: &str, groups: &[&str]) -> DirectoryEntry {
        DirectoryEntry {
            username: username.into(),
            display_name: username.to_uppercase(),
            employee_id: "E1".into(),
            department: "IT".into(),
            location: "HQ".into(),
            manager: None,
            date_of_hire: time::macros::date!(2020 - 01 - 01),
            emails: vec![],
            phones: vec![],
            groups: groups.iter().map(|g| g.to_string()).collect(),
            flagged: false,
            must_change_password: false,
            verification_locked_until: None,
            flagged_until: None,
            dn: None,
        }
    }

    const DEMO: TokenPolicy = TokenPolicy { refuse_virtual: false, allow_unattested: true, refuse_defaults: false };
    const PROD: TokenPolicy = TokenPolicy { refuse_virtual: true, allow_unattested: false, refuse_defaults: true };

    fn run(
        a: &AgentCert,
        c: &AgentCert,
        ra: Option<&KeyRecord>,
        rc: Option<&KeyRecord>,
        acc: Option<&DirectoryEntry>,
        policy: TokenPolicy,
    ) -> Result<AgentTier, LoginError> {
        let facts = LoginFacts { serial: 7, cert_a: a, cert_c: c, record_a: ra, record_c: rc, account: acc };
        decide(&facts, &AgentConfig::default(), policy)
    }

    #[test]
    fn enrolled_agent_gets_the_tier_of_their_groups() {
        let (a, c) = (vc("bob", 1), vc("bob", 2));
        let (ra, rc) =
            (rec("bob", 7, Slot::Authentication, false, false), rec("bob", 7, Slot::Signature, false, false));
        let acc = account("bob", &["staff", "helpdesk-senior"]);
        assert_eq!(run(&a, &c, Some(&ra), Some(&rc), Some(&acc), DEMO).unwrap(), AgentTier::Senior);
    }

    #[test]
    fn each_refusal_names_its_reason() {
        let (a, c) = (vc("bob", 1), vc("bob", 2));
        let ra = rec("bob", 7, Slot::Authentication, false, false);
        let rc = rec("bob", 7, Slot::Signature, false, false);
        let agent = account("bob", &["helpdesk-junior"]);
        let staff = account("bob", &["staff"]);
        assert!(matches!(run(&a, &c, Some(&ra), Some(&rc), None, DEMO), Err(LoginError::UnknownAgent(_))));
        assert!(matches!(run(&a, &c, Some(&ra), Some(&rc), Some(&staff), DEMO), Err(LoginError::NotAnAgent(_))));
        assert!(matches!(run(&a, &c, None, Some(&rc), Some(&agent), DEMO), Err(LoginError::NotEnrolled { .. })));
        let revoked = rec("bob", 7, Slot::Signature, false, true);
        match run(&a, &c, Some(&ra), Some(&revoked), Some(&agent), DEMO) {
            Err(LoginError::Revoked { reason, .. }) => assert_eq!(reason, "lost key"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(run(&a, &c, Some(&ra), Some(&rc), Some(&agent), PROD), Err(LoginError::Unattested)));
        let mallory = vc("mallory", 3);
        assert!(matches!(
            run(&a, &mallory, Some(&ra), Some(&rc), Some(&agent), DEMO),
            Err(LoginError::CertificateMismatch { .. })
        ));
    }

    #[test]
    fn registry_rows_of_another_card_agent_or_slot_do_not_count() {
        let (a, c) = (vc("bob", 1), vc("bob", 2));
        let agent = account("bob", &["helpdesk-junior"]);
        let rc = rec("bob", 7, Slot::Signature, true, false);
        for wrong in [
            rec("bob", 8, Slot::Authentication, true, false),
            rec("alice", 7, Slot::Authentication, true, false),
            rec("bob", 7, Slot::Signature, true, false),
        ] {
            assert!(matches!(
                run(&a, &c, Some(&wrong), Some(&rc), Some(&agent), PROD),
                Err(LoginError::NotEnrolled { .. })
            ));
        }
        let ra = rec("bob", 7, Slot::Authentication, true, false);
        assert_eq!(run(&a, &c, Some(&ra), Some(&rc), Some(&agent), PROD).unwrap(), AgentTier::Junior);
    }

    #[test]
    fn challenge_verifies_only_for_the_right_key_and_nonce() {
        use p256::ecdsa::signature::hazmat::PrehashSigner;
        let k = SigningKey::random(&mut rand::rngs::OsRng);
        let nonce = [7u8; 32];
        let sig: Signature = k.sign_prehash(&challenge_digest(&nonce)).unwrap();
        let der = sig.to_der();
        assert!(verify_challenge(k.verifying_key(), &nonce, der.as_bytes()));
        assert!(!verify_challenge(k.verifying_key(), &[8u8; 32], der.as_bytes()));
        let other = SigningKey::random(&mut rand::rngs::OsRng);
        assert!(!verify_challenge(other.verifying_key(), &nonce, der.as_bytes()));
        assert!(!verify_challenge(k.verifying_key(), &nonce, b"\x30\x00garbage"));
    }

    #[test]
    fn production_policy_comes_from_the_mode() {
        let mut c = Config::default();
        assert_eq!(TokenPolicy::from_config(&c), DEMO);
        c.mode = Mode::Production;
        assert_eq!(TokenPolicy::from_config(&c), PROD);
        c.tokens.allow_unattested = true;
        let relaxed = TokenPolicy::from_config(&c);
        assert!(relaxed.allow_unattested, "the key relaxes attestation");
        assert!(relaxed.refuse_virtual && relaxed.refuse_defaults, "and nothing else");
    }

    #[test]
    fn session_can_move_to_the_shell_state_thread() {
        fn send<T: Send>() {}
        send::<AgentSession>();
        send::<crate::token::watch::CardWatcher>();
    }

    #[test]
    fn wrong_pin_exposes_tries_left() {
        assert_eq!(LoginError::Token(TokenError::WrongPin { tries_left: 2 }).tries_left(), Some(2));
        assert_eq!(LoginError::Token(TokenError::PinBlocked).tries_left(), Some(0));
        assert_eq!(LoginError::VirtualRefused.tries_left(), None);
    }
}
