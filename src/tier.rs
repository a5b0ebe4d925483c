//! Privilege tiers of accounts and of agents, and the rule that ties them.

use serde::{Deserialize, Serialize};

/// How much damage a compromised account can do. Ordered: `Standard < Privileged < Highest`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccountTier {
    /// Ordinary staff.
    Standard,
    /// Accounts with elevated rights (server admins, finance approvers, ...).
    Privileged,
    /// Domain/enterprise admins, break-glass accounts: in-person ID + co-signature.
    Highest,
}

/// The help-desk agent's own tier. Ordered: `Junior < Senior < Admin`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AgentTier {
    Junior,
    Senior,
    Admin,
}

impl AccountTier {
    pub const ALL: [AccountTier; 3] = [Self::Standard, Self::Privileged, Self::Highest];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Standard => "standard",
            Self::Privileged => "privileged",
            Self::Highest => "highest",
        }
    }

    /// One step up, saturating at `Highest` (used by risk escalation: never lowers).
    pub fn raised(self) -> Self {
        match self {
            Self::Standard => Self::Privileged,
            Self::Privileged | Self::Highest => Self::Highest,
        }
    }
}

impl AgentTier {
    pub const ALL: [AgentTier; 3] = [Self::Junior, Self::Senior, Self::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Junior => "junior",
            Self::Senior => "senior",
            Self::Admin => "admin",
        }
    }

    /// The highest account tier this agent tier may reset under the default policy
    /// (junior: standard; senior: + privileged; admin: all). Policy may narrow it.
    pub fn default_max_account_tier(self) -> AccountTier {
        match self {
            Self::Junior => AccountTier::Standard,
            Self::Senior => AccountTier::Privileged,
            Self::Admin => AccountTier::Highest,
        }
    }
}

impl std::fmt::Display for AccountTier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Display for AgentTier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiers_are_ordered_by_privilege() {
        assert!(AccountTier::Standard < AccountTier::Privileged);
        assert!(AccountTier::Privileged < AccountTier::Highest);
        assert!(AgentTier::Junior < AgentTier::Senior && AgentTier::Senior < AgentTier::Admin);
    }

    #[test]
    fn raising_never_lowers() {
        for t in AccountTier::ALL {
            assert!(t.raised() >= t);
        }
        assert_eq!(AccountTier::Highest.raised(), AccountTier::Highest);
    }

    #[test]
    fn junior_cannot_reach_privileged_by_default() {
        assert_eq!(AgentTier::Junior.default_max_account_tier(), AccountTier::Standard);
        assert_eq!(AgentTier::Admin.default_max_account_tier(), AccountTier::Highest);
    }
}
