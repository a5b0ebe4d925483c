//! Re-check at execution: what changed in the directory between the opening of a reset
//! request and the moment its intent would be written. Pure; the desk reads the
//! directory afresh and refuses (records the request as cancelled, with the reason)
//! when anything here changed: the steps were checked against the old record.

use time::OffsetDateTime;

use crate::directory::{Account, ContactPoint};
use crate::tier::AgentTier;

/// What changed in the account since the request opened, as phrases for the agent
/// ("the account's tier", "its contact points"; empty: nothing that matters).
pub fn account_changes(opened: &Account, now: &Account, at: OffsetDateTime) -> Vec<&'static str> {
    let mut changed = Vec::new();
    if opened.tier != now.tier {
        changed.push("the account's tier");
    }
    let (mut a, mut b) = (opened.groups.clone(), now.groups.clone());
    a.sort();
    b.sort();
    if a != b {
        changed.push("its group membership");
    }
    let locked = |acc: &Account| acc.verification_locked_until.is_some_and(|u| u > at);
    if locked(now) && !locked(opened) {
        changed.push("its verification lock");
    }
    if now.flagged_at(at) && !opened.flagged_at(at) {
        changed.push("its flag");
    }
    if points(&opened.emails) != points(&now.emails) || points(&opened.phones) != points(&now.phones) {
        changed.push("its contact points");
    }
    if opened.manager != now.manager {
        changed.push("its manager");
    }
    changed
}

fn points(p: &[ContactPoint]) -> Vec<(&str, &str, Option<OffsetDateTime>)> {
    let mut v: Vec<_> = p.iter().map(|c| (c.value.as_str(), c.label.as_str(), c.changed_at)).collect();
    v.sort();
    v
}

/// Why the agent may no longer act with the authority they opened the request with:
/// no longer an agent, or a lower tier in the directory now.
pub fn agent_change(opened_tier: AgentTier, now: Option<AgentTier>) -> Option<String> {
    match now {
        None => Some("you are no longer in an agent group in the directory".into()),
        Some(t) if t < opened_tier => Some(format!("your agent tier in the directory is now {t} (was {opened_tier})")),
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::risk::tests::{account, NOW};
    use crate::tier::AccountTier;

    #[test]
    fn each_change_that_matters_is_named_and_nothing_else() {
        let a = account(AccountTier::Standard);
        assert!(account_changes(&a, &a, NOW).is_empty());
        let mut b = a.clone();
        b.display_name = "Jane Q. Doe".into();
        b.must_change_password = true;
        assert!(account_changes(&a, &b, NOW).is_empty(), "names and password state do not matter");
        let mut b = a.clone();
        b.tier = AccountTier::Privileged;
        b.groups.push("it-admins".into());
        assert_eq!(account_changes(&a, &b, NOW), ["the account's tier", "its group membership"]);
        let mut b = a.clone();
        b.phones[0].changed_at = Some(NOW);
        assert_eq!(account_changes(&a, &b, NOW), ["its contact points"]);
        let mut b = a.clone();
        b.verification_locked_until = Some(NOW + time::Duration::hours(1));
        b.flagged = true;
        assert_eq!(account_changes(&a, &b, NOW), ["its verification lock", "its flag"]);
        let mut b = a.clone();
        b.manager = Some("someone-else".into());
        assert_eq!(account_changes(&a, &b, NOW), ["its manager"]);
    }

    #[test]
    fn a_lower_or_lost_agent_tier_is_named() {
        assert_eq!(agent_change(AgentTier::Senior, Some(AgentTier::Admin)), None);
        assert_eq!(agent_change(AgentTier::Senior, Some(AgentTier::Senior)), None);
        assert!(agent_change(AgentTier::Senior, Some(AgentTier::Junior)).unwrap().contains("junior"));
        assert!(agent_change(AgentTier::Senior, None).is_some());
    }
}
