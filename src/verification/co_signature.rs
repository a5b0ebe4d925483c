//! Second-agent co-signature (dual control, NIST SP 800-53 AC-5). A different agent of
//! sufficient tier signs the approval digest of this reset with their own YubiKey
//! (slot 9c, ECDSA P-256).
//!
//! Division of work: the **token adapter** verifies the DER signature over the digest
//! against the co-signer's enrolled certificate (issued by the organisation CA, key id
//! matching) and only then sets [`CoSignature::verified_against_certificate`]. This
//! module and the engine check everything else: the digest is this reset's, the
//! co-signer is not the agent (by name or key), not the account holder, and may
//! reset an account of this tier.

use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::directory::Account;
use crate::policy::authority::{check_co_signer, AgentIdentity, AuthorityRefusal, CoSignerClaim};
use crate::policy::PolicyConfig;
use crate::tier::{AccountTier, AgentTier};

/// A co-signature as the token adapter delivers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoSignature {
    /// Co-signer's directory username (from their verified certificate).
    pub username: String,
    pub tier: AgentTier,
    /// SHA-256 of the co-signer's slot 9c public key.
    pub key_id: [u8; 32],
    /// The digest that was signed (must equal the session's approval digest).
    pub digest: [u8; 32],
    /// ECDSA P-256 signature, DER.
    pub signature_der: Vec<u8>,
    /// Set by the adapter only after verifying `signature_der` over `digest` with the
    /// public key of the co-signer's enrolled certificate.
    pub verified_against_certificate: bool,
}

/// What the co-signer approves. Fields are length-prefixed into the digest, so no two
/// different statements share a digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalStatement<'a> {
    pub request_id: &'a str,
    pub agent: &'a str,
    pub agent_key_id: &'a [u8; 32],
    pub target: &'a str,
    pub effective_tier: AccountTier,
    pub opened_at: OffsetDateTime,
    /// The verification steps passed so far, e.g. `callback,government-id,totp`: the
    /// co-signer approves the verification they were shown.
    pub passed_steps: &'a str,
}

/// Domain separation tag of approval digests.
pub const APPROVAL_DOMAIN: &[u8] = b"resetdesk/co-signature/v1\0";

/// SHA-256 over the domain tag and the length-prefixed fields of the statement.
pub fn approval_digest(s: &ApprovalStatement<'_>) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(APPROVAL_DOMAIN);
    let opened = s.opened_at.unix_timestamp_nanos().to_be_bytes();
    let fields: [&[u8]; 7] = [
        s.request_id.as_bytes(),
        s.agent.as_bytes(),
        s.agent_key_id,
        s.target.as_bytes(),
        s.effective_tier.as_str().as_bytes(),
        &opened,
        s.passed_steps.as_bytes(),
    ];
    for f in fields {
        // Fields are short (identifiers, 32-byte ids); saturate rather than wrap.
        h.update(u32::try_from(f.len()).unwrap_or(u32::MAX).to_be_bytes());
        h.update(f);
    }
    h.finalize().into()
}

/// Plausibility of a DER ECDSA signature (SEQUENCE, at most 72 bytes for P-256). The
/// cryptographic check is the adapter's.
fn plausible_der(sig: &[u8]) -> bool {
    (8..=72).contains(&sig.len()) && sig[0] == 0x30 && usize::from(sig[1]) == sig.len() - 2
}

/// Check a co-signature's identity and tier rules against this reset.
pub fn check(
    policy: &PolicyConfig,
    co: &CoSignature,
    expected_digest: &[u8; 32],
    agent: &AgentIdentity,
    account: &Account,
    effective: AccountTier,
) -> Result<(), AuthorityRefusal> {
    if !co.verified_against_certificate || !plausible_der(&co.signature_der) {
        return Err(AuthorityRefusal::CoSignatureUnverified);
    }
    if &co.digest != expected_digest {
        return Err(AuthorityRefusal::CoSignatureWrongDigest);
    }
    check_co_signer(
        policy,
        &CoSignerClaim { username: &co.username, tier: co.tier, key_id: &co.key_id },
        agent,
        account,
        effective,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::risk::tests::{account, NOW};

    fn stmt<'a>(key: &'a [u8; 32]) -> ApprovalStatement<'a> {
        ApprovalStatement {
            request_id: "r1",
            agent: "alice",
            agent_key_id: key,
            target: "jdoe",
            effective_tier: AccountTier::Highest,
            opened_at: NOW,
            passed_steps: "government-id,totp",
        }
    }

    #[test]
    fn digest_binds_every_field() {
        let key = [1u8; 32];
        let d = approval_digest(&stmt(&key));
        assert_eq!(d, approval_digest(&stmt(&key)));
        let mut s = stmt(&key);
        s.target = "jdoe2";
        assert_ne!(approval_digest(&s), d);
        let mut s = stmt(&key);
        s.effective_tier = AccountTier::Privileged;
        assert_ne!(approval_digest(&s), d);
        let mut s = stmt(&key);
        s.passed_steps = "government-id";
        assert_ne!(approval_digest(&s), d);
        // Moving bytes between fields changes the digest (length prefixes).
        let mut s = stmt(&key);
        s.request_id = "r1a";
        s.agent = "lice";
        assert_ne!(approval_digest(&s), d);
    }

    fn cosig(name: &str, digest: [u8; 32]) -> CoSignature {
        let mut sig = vec![0x30, 68];
        sig.extend([0u8; 68]);
        CoSignature {
            username: name.into(),
            tier: AgentTier::Admin,
            key_id: [7; 32],
            digest,
            signature_der: sig,
            verified_against_certificate: true,
        }
    }

    #[test]
    fn checks() {
        let p = PolicyConfig::default();
        let agent = AgentIdentity { username: "alice".into(), tier: AgentTier::Admin, groups: vec![], key_id: [1; 32] };
        let acc = account(AccountTier::Highest);
        let d = approval_digest(&stmt(&agent.key_id));
        assert_eq!(check(&p, &cosig("bob", d), &d, &agent, &acc, AccountTier::Highest), Ok(()));
        assert_eq!(
            check(&p, &cosig("alice", d), &d, &agent, &acc, AccountTier::Highest),
            Err(AuthorityRefusal::CoSignerIsAgent)
        );
        assert_eq!(
            check(&p, &cosig("bob", [0; 32]), &d, &agent, &acc, AccountTier::Highest),
            Err(AuthorityRefusal::CoSignatureWrongDigest)
        );
        let mut c = cosig("bob", d);
        c.verified_against_certificate = false;
        assert_eq!(check(&p, &c, &d, &agent, &acc, AccountTier::Highest), Err(AuthorityRefusal::CoSignatureUnverified));
        let mut c = cosig("bob", d);
        c.signature_der = vec![];
        assert_eq!(check(&p, &c, &d, &agent, &acc, AccountTier::Highest), Err(AuthorityRefusal::CoSignatureUnverified));
    }
}
