//! Who may reset whom: agent tiers, agent scopes, own-account and co-signer rules.

use serde::{Deserialize, Serialize};

use super::PolicyConfig;
use crate::directory::Account;
use crate::text::normalize_answer;
use crate::tier::{AccountTier, AgentTier};

/// The agent acting on a request, as the policy sees it: built by the desk from who
/// logged in (`crate::login::AgentIdentity`: username, tier, 9c key id) and the
/// agent's directory account (employee ID, groups; the tier is the lower of the two).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ActingAgent {
    pub username: String,
    /// The agent's employee ID in the directory (empty if unknown): separation of
    /// duties compares people, so `bob` may not act on `bob-adm`.
    pub employee_id: String,
    pub tier: AgentTier,
    /// Directory groups of the agent (for scopes).
    pub groups: Vec<String>,
    /// SHA-256 of the agent's slot 9c public key (the audit key id).
    pub key_id: [u8; 32],
}

impl ActingAgent {
    /// Build from a login's fields; `key_id_hex` is the 64-hex-digit audit key id.
    /// `None` if the key id is not 32 bytes of hex. The employee ID is left empty: set
    /// it from the agent's directory account.
    pub fn from_login_fields(username: &str, tier: AgentTier, groups: Vec<String>, key_id_hex: &str) -> Option<Self> {
        let bytes = hex::decode(key_id_hex).ok()?;
        let key_id: [u8; 32] = bytes.try_into().ok()?;
        Some(Self { username: username.to_owned(), employee_id: String::new(), tier, groups, key_id })
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
    #[error(
        "agents may not reset their own account (or another account of theirs, by employee ID); ask another agent"
    )]
    OwnAccount,
    #[error("a {agent} agent may reset up to {max} accounts, and this reset counts as {needed}; hand it to a {required} agent")]
    TierTooLow { agent: AgentTier, max: AccountTier, needed: AccountTier, required: AgentTier },
    #[error("this account ({department}) is outside your scope; hand it to an agent of that department or site")]
    OutOfScope { department: String },
    #[error(
        "the co-signer must be a different agent from the one doing the reset; ask a colleague with their own YubiKey"
    )]
    CoSignerIsAgent,
    #[error("the co-signer may not co-sign a reset of their own account (compared by employee ID); ask another admin")]
    CoSignerIsTarget,
    #[error("the account holder's manager may not co-sign this reset (compared by employee ID); ask another admin")]
    CoSignerIsManager,
    #[error("the co-signer must be an admin agent (this one is {0}); ask an admin to co-sign with their YubiKey")]
    CoSignerNotAdmin(AgentTier),
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
pub fn in_scope(policy: &PolicyConfig, agent: &ActingAgent, account: &Account) -> bool {
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

/// Two directory entries are the same person if their usernames are equal (ignoring
/// ASCII case) or their employee IDs are (normalised; empty IDs match nothing).
pub fn same_person(username_a: &str, employee_id_a: &str, username_b: &str, employee_id_b: &str) -> bool {
    if username_a.eq_ignore_ascii_case(username_b) {
        return true;
    }
    let (a, b) = (normalize_answer(employee_id_a), normalize_answer(employee_id_b));
    !a.is_empty() && a == b
}

/// May this agent reset this account at this effective tier?
pub fn check_agent(
    policy: &PolicyConfig,
    agent: &ActingAgent,
    account: &Account,
    effective: AccountTier,
) -> Result<(), AuthorityRefusal> {
    if same_person(&agent.username, &agent.employee_id, &account.username, &account.employee_id) {
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
    pub employee_id: &'a str,
    pub tier: AgentTier,
    pub key_id: &'a [u8; 32],
}

/// May this second agent co-sign this reset? An admin agent who is not the agent
/// (by name, key or employee ID), not the account holder and not the holder's manager
/// (by name or employee ID), and who may reset an account of this tier. (The signature
/// itself is verified by the token adapter against the co-signer's enrolled certificate.)
pub fn check_co_signer(
    policy: &PolicyConfig,
    co_signer: &CoSignerClaim<'_>,
    agent: &ActingAgent,
    account: &Account,
    manager: Option<&Account>,
    effective: AccountTier,
) -> Result<(), AuthorityRefusal> {
    let is = |username: &str, employee_id: &str| {
        same_person(co_signer.username, co_signer.employee_id, username, employee_id)
    };
    if is(&agent.username, &agent.employee_id) || co_signer.key_id == &agent.key_id {
        return Err(AuthorityRefusal::CoSignerIsAgent);
    }
    if is(&account.username, &account.employee_id) {
        return Err(AuthorityRefusal::CoSignerIsTarget);
    }
    let manager_named = account.manager.as_deref().is_some_and(|m| m.eq_ignore_ascii_case(co_signer.username));
    if manager_named || manager.is_some_and(|m| is(&m.username, &m.employee_id)) {
        return Err(AuthorityRefusal::CoSignerIsManager);
    }
    if co_signer.tier != AgentTier::Admin {
        return Err(AuthorityRefusal::CoSignerNotAdmin(co_signer.tier));
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
pub(crate) mod tests {
    use super::*;
    use crate::policy::risk::tests::account;

    /// An agent whose employee ID is `E-<name>` and whose key id depends on the name's length.
    pub(crate) fn agent(name: &str, tier: AgentTier) -> ActingAgent {
        ActingAgent {
            username: name.into(),
            employee_id: format!("E-{name}"),
            tier,
            groups: vec![],
            key_id: [name.len() as u8; 32],
        }
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
        let acc = account(AccountTier::Highest); // jdoe, E1234, manager mboss
        let mut boss = account(AccountTier::Standard);
        (boss.username, boss.employee_id, boss.manager) = ("mboss".into(), "E0042".into(), None);
        let me = agent("alice", AgentTier::Admin);
        let key = [9u8; 32];
        let claim = |u, e, t, k| CoSignerClaim { username: u, employee_id: e, tier: t, key_id: k };
        let check = |c: &CoSignerClaim<'_>| check_co_signer(&p, c, &me, &acc, Some(&boss), AccountTier::Highest);
        assert_eq!(check(&claim("ALICE", "E9", AgentTier::Admin, &key)), Err(AuthorityRefusal::CoSignerIsAgent));
        assert_eq!(check(&claim("bob", "E9", AgentTier::Admin, &me.key_id)), Err(AuthorityRefusal::CoSignerIsAgent));
        // The agent's second account (another username, the same person).
        assert_eq!(
            check(&claim("alice-adm", "e-alice", AgentTier::Admin, &key)),
            Err(AuthorityRefusal::CoSignerIsAgent)
        );
        assert_eq!(check(&claim("jdoe", "E9", AgentTier::Admin, &key)), Err(AuthorityRefusal::CoSignerIsTarget));
        assert_eq!(check(&claim("jdoe-adm", "E1234", AgentTier::Admin, &key)), Err(AuthorityRefusal::CoSignerIsTarget));
        assert_eq!(check(&claim("mboss", "E9", AgentTier::Admin, &key)), Err(AuthorityRefusal::CoSignerIsManager));
        assert_eq!(
            check(&claim("mboss-adm", "E0042", AgentTier::Admin, &key)),
            Err(AuthorityRefusal::CoSignerIsManager)
        );
        assert_eq!(
            check(&claim("bob", "E9", AgentTier::Senior, &key)),
            Err(AuthorityRefusal::CoSignerNotAdmin(AgentTier::Senior))
        );
        assert_eq!(check(&claim("bob", "E9", AgentTier::Admin, &key)), Ok(()));
        // Empty employee IDs are unknown, not equal.
        assert_eq!(check(&claim("bob", "", AgentTier::Admin, &key)), Ok(()));
    }

    #[test]
    fn an_agent_never_resets_another_account_of_their_own() {
        let p = PolicyConfig::default();
        let mut own = account(AccountTier::Standard);
        (own.username, own.employee_id) = ("alice-adm".into(), "E-alice".into());
        let me = agent("alice", AgentTier::Admin);
        assert_eq!(check_agent(&p, &me, &own, AccountTier::Standard), Err(AuthorityRefusal::OwnAccount));
        own.employee_id = "E-other".into();
        assert_eq!(check_agent(&p, &me, &own, AccountTier::Standard), Ok(()));
    }

    #[test]
    fn identity_from_login_fields_needs_a_32_byte_hex_key_id() {
        let a = ActingAgent::from_login_fields("alice", AgentTier::Senior, vec![], &"ab".repeat(32)).unwrap();
        assert_eq!(a.key_id, [0xab; 32]);
        assert!(ActingAgent::from_login_fields("alice", AgentTier::Senior, vec![], "abcd").is_none());
        assert!(ActingAgent::from_login_fields("alice", AgentTier::Senior, vec![], &"zz".repeat(32)).is_none());
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
