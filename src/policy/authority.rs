//! Who may reset whom: agent tiers, agent scopes, own-account and co-signer rules.

use serde::{Deserialize, Serialize};

use super::PolicyConfig;
use crate::directory::Account;
use crate::text::normalize_answer;
use crate::tier::{AccountTier, AgentTier};

/// The logged-in agent as the policy sees it: built by the shell from the login
/// (`crate::login::AgentIdentity`: username, tier, 9c key id) plus the agent's
/// directory groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentIdentity {
    pub username: String,
    pub tier: AgentTier,
    /// Directory groups of the agent (for scopes).
    pub groups: Vec<String>,
    /// SHA-256 of the agent's slot 9c public key (the audit key id).
    pub key_id: [u8; 32],
}

impl AgentIdentity {
    /// Build from a login's fields; `key_id_hex` is the 64-hex-digit audit key id.
    /// `None` if the key id is not 32 bytes of hex.
    pub fn from_login_fields(username: &str, tier: AgentTier, groups: Vec<String>, key_id_hex: &str) -> Option<Self> {
        let bytes = hex::decode(key_id_hex).ok()?;
        let key_id: [u8; 32] = bytes.try_into().ok()?;
        Some(Self { username: username.to_owned(), tier, groups, key_id })
    }
}

/// Limits the agents of one group to some departments or directory subtrees.
/// An agent in several scoped groups may work on the union of their scopes; an agent
/// in no scoped group is not limited by scopes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentScope {
    /// The agent group this scope limits.
    pub group: String,
    /// Departments (compared case- and width-insensitively).
    #[serde(default)]
    pub departments: Vec<String>,
    /// Directory subtrees (`ou=berlin,dc=example,dc=com`); the account's DN must lie below.
    #[serde(default)]
    pub subtrees: Vec<String>,
}

/// Why this agent (or co-signer) may not act on this account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "refusal", rename_all = "kebab-case")]
pub enum AuthorityRefusal {
    #[error("agents may not reset their own account; ask another agent")]
    OwnAccount,
    #[error("a {agent} agent may reset up to {max} accounts, and this reset counts as {needed}; hand it to a {required} agent")]
    TierTooLow { agent: AgentTier, max: AccountTier, needed: AccountTier, required: AgentTier },
    #[error("this account ({department}) is outside your scope; hand it to an agent of that department or site")]
    OutOfScope { department: String },
    #[error(
        "the co-signer must be a different agent from the one doing the reset; ask a colleague with their own YubiKey"
    )]
    CoSignerIsAgent,
    #[error("the co-signer may not co-sign a reset of their own account")]
    CoSignerIsTarget,
    #[error("the co-signature was not verified against the co-signer's enrolled certificate; sign again on this desk")]
    CoSignatureUnverified,
    #[error("the co-signature is over a different approval; sign the approval shown for this reset")]
    CoSignatureWrongDigest,
}

/// A username as directories spell it: 1–256 ASCII letters, digits, `.`, `_`, `-`, `@`.
/// Refuses look-alike Unicode (Cyrillic "а" for Latin "a") and control characters.
pub fn is_plain_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 256
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'@'))
}

/// The lowest agent tier allowed to reset an account of `tier` under `policy`.
pub fn required_agent_tier(policy: &PolicyConfig, tier: AccountTier) -> AgentTier {
    AgentTier::ALL.into_iter().find(|a| policy.agents.max_account_tier(*a) >= tier).unwrap_or(AgentTier::Admin)
}

fn below_subtree(dn: &str, subtree: &str) -> bool {
    let (dn, subtree) = (dn.to_ascii_lowercase().replace(' ', ""), subtree.to_ascii_lowercase().replace(' ', ""));
    !subtree.is_empty() && (dn == subtree || dn.ends_with(&format!(",{subtree}")))
}

/// True if the agent's scopes (if any) cover the account.
pub fn in_scope(policy: &PolicyConfig, agent: &AgentIdentity, account: &Account) -> bool {
    let mine: Vec<_> = policy.scopes.iter().filter(|s| agent.groups.contains(&s.group)).collect();
    if mine.is_empty() {
        return true;
    }
    let dept = normalize_answer(&account.department);
    mine.iter().any(|s| {
        s.departments.iter().any(|d| normalize_answer(d) == dept)
            || account.dn.as_deref().is_some_and(|dn| s.subtrees.iter().any(|t| below_subtree(dn, t)))
    })
}

/// May this agent reset this account at this effective tier?
pub fn check_agent(
    policy: &PolicyConfig,
    agent: &AgentIdentity,
    account: &Account,
    effective: AccountTier,
) -> Result<(), AuthorityRefusal> {
    if agent.username.eq_ignore_ascii_case(&account.username) {
        return Err(AuthorityRefusal::OwnAccount);
    }
    let needed = effective.max(account.tier);
    let max = policy.agents.max_account_tier(agent.tier);
    if max < needed {
        return Err(AuthorityRefusal::TierTooLow {
            agent: agent.tier,
            max,
            needed,
            required: required_agent_tier(policy, needed),
        });
    }
    if !in_scope(policy, agent, account) {
        return Err(AuthorityRefusal::OutOfScope { department: account.department.clone() });
    }
    Ok(())
}

/// The identity facts of a co-signature, checked by [`check_co_signer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoSignerClaim<'a> {
    pub username: &'a str,
    pub tier: AgentTier,
    pub key_id: &'a [u8; 32],
}

/// May this second agent co-sign this reset? (The signature itself is verified by the
/// token adapter against the co-signer's enrolled certificate.)
pub fn check_co_signer(
    policy: &PolicyConfig,
    co_signer: &CoSignerClaim<'_>,
    agent: &AgentIdentity,
    account: &Account,
    effective: AccountTier,
) -> Result<(), AuthorityRefusal> {
    if co_signer.username.eq_ignore_ascii_case(&agent.username) || co_signer.key_id == &agent.key_id {
        return Err(AuthorityRefusal::CoSignerIsAgent);
    }
    if co_signer.username.eq_ignore_ascii_case(&account.username) {
        return Err(AuthorityRefusal::CoSignerIsTarget);
    }
    let needed = effective.max(account.tier);
    let max = policy.agents.max_account_tier(co_signer.tier);
    if max < needed {
        return Err(AuthorityRefusal::TierTooLow {
            agent: co_signer.tier,
            max,
            needed,
            required: required_agent_tier(policy, needed),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::risk::tests::account;

    fn agent(name: &str, tier: AgentTier) -> AgentIdentity {
        AgentIdentity { username: name.into(), tier, groups: vec![], key_id: [name.len() as u8; 32] }
    }

    #[test]
    fn lower_agent_tiers_never_reset_higher_accounts() {
        let p = PolicyConfig::default();
        for a in AgentTier::ALL {
            for t in AccountTier::ALL {
                let ok = check_agent(&p, &agent("ag", a), &account(t), t).is_ok();
                assert_eq!(ok, t <= a.default_max_account_tier(), "{a} on {t}");
            }
        }
    }

    #[test]
    fn escalated_tier_decides_who_may_reset() {
        let p = PolicyConfig::default();
        let err =
            check_agent(&p, &agent("ag", AgentTier::Junior), &account(AccountTier::Standard), AccountTier::Privileged)
                .unwrap_err();
        assert_eq!(
            err,
            AuthorityRefusal::TierTooLow {
                agent: AgentTier::Junior,
                max: AccountTier::Standard,
                needed: AccountTier::Privileged,
                required: AgentTier::Senior
            }
        );
        assert!(err.to_string().contains("senior"));
    }

    #[test]
    fn nobody_resets_their_own_account() {
        let p = PolicyConfig::default();
        assert_eq!(
            check_agent(&p, &agent("JDOE", AgentTier::Admin), &account(AccountTier::Standard), AccountTier::Standard),
            Err(AuthorityRefusal::OwnAccount)
        );
    }

    #[test]
    fn scopes_limit_scoped_groups_only() {
        let mut p = PolicyConfig::default();
        p.scopes.push(AgentScope { group: "desk-paris".into(), departments: vec!["Sales".into()], subtrees: vec![] });
        p.scopes.push(AgentScope {
            group: "desk-berlin".into(),
            departments: vec![],
            subtrees: vec!["OU=Berlin, DC=example,DC=com".into()],
        });
        let acc = account(AccountTier::Standard); // Finance, in ou=berlin
        let mut a = agent("ag", AgentTier::Senior);
        assert!(in_scope(&p, &a, &acc));
        a.groups = vec!["desk-paris".into()];
        assert!(matches!(check_agent(&p, &a, &acc, AccountTier::Standard), Err(AuthorityRefusal::OutOfScope { .. })));
        a.groups.push("desk-berlin".into());
        assert!(in_scope(&p, &a, &acc));
        // A suffix that is not a whole RDN does not match.
        assert!(!below_subtree("uid=x,ou=xberlin,dc=example,dc=com", "ou=berlin,dc=example,dc=com"));
    }

    #[test]
    fn co_signer_rules() {
        let p = PolicyConfig::default();
        let acc = account(AccountTier::Highest);
        let me = agent("alice", AgentTier::Admin);
        let key = [9u8; 32];
        let claim = |u, t, k| CoSignerClaim { username: u, tier: t, key_id: k };
        assert_eq!(
            check_co_signer(&p, &claim("ALICE", AgentTier::Admin, &key), &me, &acc, AccountTier::Highest),
            Err(AuthorityRefusal::CoSignerIsAgent)
        );
        assert_eq!(
            check_co_signer(&p, &claim("bob", AgentTier::Admin, &me.key_id), &me, &acc, AccountTier::Highest),
            Err(AuthorityRefusal::CoSignerIsAgent)
        );
        assert_eq!(
            check_co_signer(&p, &claim("jdoe", AgentTier::Admin, &key), &me, &acc, AccountTier::Highest),
            Err(AuthorityRefusal::CoSignerIsTarget)
        );
        assert!(matches!(
            check_co_signer(&p, &claim("bob", AgentTier::Senior, &key), &me, &acc, AccountTier::Highest),
            Err(AuthorityRefusal::TierTooLow { .. })
        ));
        assert_eq!(check_co_signer(&p, &claim("bob", AgentTier::Admin, &key), &me, &acc, AccountTier::Highest), Ok(()));
    }

    #[test]
    fn identity_from_login_fields_needs_a_32_byte_hex_key_id() {
        let a = AgentIdentity::from_login_fields("alice", AgentTier::Senior, vec![], &"ab".repeat(32)).unwrap();
        assert_eq!(a.key_id, [0xab; 32]);
        assert!(AgentIdentity::from_login_fields("alice", AgentTier::Senior, vec![], "abcd").is_none());
        assert!(AgentIdentity::from_login_fields("alice", AgentTier::Senior, vec![], &"zz".repeat(32)).is_none());
    }

    #[test]
    fn identifiers_refuse_lookalikes_and_controls() {
        assert!(is_plain_identifier("j.doe-2@corp"));
        assert!(!is_plain_identifier(""));
        assert!(!is_plain_identifier("\u{0430}dmin"));
        assert!(!is_plain_identifier("admin\u{0000}"));
        assert!(!is_plain_identifier(&"a".repeat(257)));
    }
}
