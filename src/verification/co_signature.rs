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

use std::collections::BTreeSet;

use serde::Deserialize;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::directory::Account;
use crate::policy::authority::{check_co_signer, ActingAgent, AuthorityRefusal, CoSignerClaim};
use crate::policy::{Method, PolicyConfig};
use crate::tier::{AccountTier, AgentTier};
use crate::verification::{FailReason, Verdict};

/// A co-signature as the token adapter delivers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoSignature {
    /// Co-signer's directory username (from their verified certificate).
    pub username: String,
    /// Co-signer's employee ID (from the directory): separation of duties compares
    /// people, not accounts (`bob` and `bob-adm` are one person).
    pub employee_id: String,
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

/// The `passed_steps` field of an [`ApprovalStatement`]: the methods passed, in
/// their order (`Method`'s `Ord`), comma-separated.
pub fn passed_steps_text<'a>(passed: impl IntoIterator<Item = &'a Method>) -> String {
    passed.into_iter().map(|m| m.as_str()).collect::<Vec<_>>().join(",")
}

/// Why a reset intent's facts do not state an approval a co-signature can be over.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApprovalFactsError {
    #[error("the intent's facts do not state the approval ({0}); the record was not written by a ResetDesk desk")]
    Unreadable(String),
    #[error("the intent's facts name no co-signature step")]
    NoCoSignatureStep,
    #[error("the approval digest in the facts is not the one recomputed from them")]
    DigestMismatch,
}

/// The facts of a reset intent that the approval digest covers (the rest is ignored).
#[derive(Debug, Deserialize)]
struct IntentApprovalFacts {
    request_id: String,
    #[serde(with = "time::serde::rfc3339")]
    opened_at: OffsetDateTime,
    agent: NamedKey,
    target: TargetTier,
    steps: Vec<StepSeen>,
    co_signer: Option<CoSignerSeen>,
}

#[derive(Debug, Deserialize)]
struct NamedKey {
    username: String,
    key_id: String,
}

#[derive(Debug, Deserialize)]
struct TargetTier {
    username: String,
    effective_tier: AccountTier,
}

#[derive(Debug, Deserialize)]
struct StepSeen {
    method: Method,
    verdict: Verdict,
}

#[derive(Debug, Deserialize)]
struct CoSignerSeen {
    key_id: String,
    digest: String,
}

/// A co-signer as a reset intent's facts name them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatedCoSigner {
    /// Hex key id of the co-signer's 9c key, as the facts state it.
    pub key_id_hex: String,
    /// The approval digest recomputed from the facts (checked against the stated one).
    pub digest: [u8; 32],
}

/// Recompute, from a reset intent's `facts` (the JSON the workflow wrote), the
/// approval digest its co-signer signed: the same statement [`approval_digest`] is
/// built from at the desk, with the steps passed before the co-signature step.
/// `Ok(None)` if the facts name no co-signer. Pure: the offline verifier and the
/// audit log's pre-commit check both call it.
pub fn approval_of_intent(facts: &serde_json::Value) -> Result<Option<StatedCoSigner>, ApprovalFactsError> {
    if facts.get("co_signer").is_none_or(serde_json::Value::is_null) {
        return Ok(None);
    }
    let f = IntentApprovalFacts::deserialize(facts).map_err(|e| ApprovalFactsError::Unreadable(e.to_string()))?;
    let Some(co) = f.co_signer else { return Ok(None) };
    let agent_key_id: [u8; 32] = hex::decode(&f.agent.key_id)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| ApprovalFactsError::Unreadable("agent.key_id is not 32 bytes of hex".into()))?;
    // The co-signature that counts is the last one that passed; the steps that stood then
    // are those passed before it and not expired since (`FailReason::StepExpired`).
    let cut = f
        .steps
        .iter()
        .rposition(|s| s.method == Method::CoSignature && s.verdict.passed())
        .ok_or(ApprovalFactsError::NoCoSignatureStep)?;
    let mut passed = BTreeSet::new();
    for s in &f.steps[..cut] {
        match s.verdict {
            Verdict::Passed => {
                passed.insert(s.method);
            }
            Verdict::Failed(FailReason::StepExpired) => {
                passed.remove(&s.method);
            }
            Verdict::Failed(_) => {}
        }
    }
    let digest = approval_digest(&ApprovalStatement {
        request_id: &f.request_id,
        agent: &f.agent.username,
        agent_key_id: &agent_key_id,
        target: &f.target.username,
        effective_tier: f.target.effective_tier,
        opened_at: f.opened_at,
        passed_steps: &passed_steps_text(&passed),
    });
    if !co.digest.eq_ignore_ascii_case(&hex::encode(digest)) {
        return Err(ApprovalFactsError::DigestMismatch);
    }
    Ok(Some(StatedCoSigner { key_id_hex: co.key_id, digest }))
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
    agent: &ActingAgent,
    account: &Account,
    manager: Option<&Account>,
    effective: AccountTier,
) -> Result<(), AuthorityRefusal> {
    if !co.verified_against_certificate || !plausible_der(&co.signature_der) {
        return Err(AuthorityRefusal::CoSignatureUnverified);
    }
    if &co.digest != expected_digest {
        return Err(AuthorityRefusal::CoSignatureWrongDigest);
    }
    check_co_signer(policy, &co.claim(), agent, account, manager, effective)
}

impl CoSignature {
    /// Who claims to co-sign, for [`check_co_signer`].
    pub fn claim(&self) -> CoSignerClaim<'_> {
        CoSignerClaim {
            username: &self.username,
            employee_id: &self.employee_id,
            tier: self.tier,
            key_id: &self.key_id,
        }
    }
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
            employee_id: format!("E-{name}"),
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
        let agent = ActingAgent {
            username: "alice".into(),
            employee_id: "E-alice".into(),
            tier: AgentTier::Admin,
            groups: vec![],
            key_id: [1; 32],
        };
        let acc = account(AccountTier::Highest);
        let d = approval_digest(&stmt(&agent.key_id));
        assert_eq!(check(&p, &cosig("bob", d), &d, &agent, &acc, None, AccountTier::Highest), Ok(()));
        assert_eq!(
            check(&p, &cosig("alice", d), &d, &agent, &acc, None, AccountTier::Highest),
            Err(AuthorityRefusal::CoSignerIsAgent)
        );
        assert_eq!(
            check(&p, &cosig("bob", [0; 32]), &d, &agent, &acc, None, AccountTier::Highest),
            Err(AuthorityRefusal::CoSignatureWrongDigest)
        );
        let mut c = cosig("bob", d);
        c.verified_against_certificate = false;
        assert_eq!(
            check(&p, &c, &d, &agent, &acc, None, AccountTier::Highest),
            Err(AuthorityRefusal::CoSignatureUnverified)
        );
        let mut c = cosig("bob", d);
        c.signature_der = vec![];
        assert_eq!(
            check(&p, &c, &d, &agent, &acc, None, AccountTier::Highest),
            Err(AuthorityRefusal::CoSignatureUnverified)
        );
    }
}
