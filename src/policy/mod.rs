//! Verification policy: what each account tier requires before a reset, which agents
//! may do it, and which risk signals raise the bar.
//!
//! The configuration section is `[policy]` in `resetdesk.toml`. Every field has a
//! documented default (see `docs/policy.md`) following NIST SP 800-63B-4 §4.2.2 and
//! CISA AA23-320A. Everything here is pure: no IO, no clock.
//!
//! - [`requirements`]: the checks an effective tier demands, and whether passed steps meet them.
//! - [`risk`]: escalation rules (each with a reason shown to the agent). Escalation only
//!   ever raises the tier or adds steps.
//! - [`authority`]: which agents may reset which accounts, and who may co-sign.

pub mod authority;
pub mod recheck;
pub mod requirements;
pub mod risk;

use serde::{Deserialize, Serialize};

use crate::tier::{AccountTier, AgentTier};

pub use authority::{ActingAgent, AgentScope, AuthorityRefusal};
pub use requirements::{Missing, Requirements};
pub use risk::{
    Channel, CrossDeskFacts, CrossDeskFlag, Escalation, RequestContext, RiskAssessment, RiskRule, StatedDetails,
};

/// A way of verifying a requester, or an approval that a reset needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// Answers to enrolled security questions (knowledge).
    SecurityAnswers,
    /// Employee ID and date of hire (knowledge; "PII is not proof", so weak).
    EmployeeRecord,
    /// Code from the enrolled authenticator app (RFC 6238).
    Totp,
    /// One-time code sent to a registered address or device.
    OneTimeCode,
    /// The agent calls the number on file and reaches the account holder.
    Callback,
    /// In-person inspection of a government-issued photo ID (NIST 800-63A-4 proofing agent).
    GovernmentId,
    /// The account's manager approves through their registered address.
    ManagerApproval,
    /// A second agent signs the approval with their own YubiKey.
    CoSignature,
}

/// What kind of evidence a method gives. Knowledge methods together count as one factor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FactorKind {
    /// Something the requester knows (can be researched or phished).
    Knowledge,
    /// Control of an enrolled authenticator or registered contact point.
    Possession,
    /// A person-to-document check at the desk.
    InPerson,
    /// Not a proof of identity: an approval by someone else.
    Approval,
}

impl Method {
    /// Every method, in display order.
    pub const ALL: [Method; 8] = [
        Self::SecurityAnswers,
        Self::EmployeeRecord,
        Self::Totp,
        Self::OneTimeCode,
        Self::Callback,
        Self::GovernmentId,
        Self::ManagerApproval,
        Self::CoSignature,
    ];

    /// The configuration spelling (`security-answers`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SecurityAnswers => "security-answers",
            Self::EmployeeRecord => "employee-record",
            Self::Totp => "totp",
            Self::OneTimeCode => "one-time-code",
            Self::Callback => "callback",
            Self::GovernmentId => "government-id",
            Self::ManagerApproval => "manager-approval",
            Self::CoSignature => "co-signature",
        }
    }

    /// A phrase an agent understands ("callback to the number on file").
    pub fn describe(self) -> &'static str {
        match self {
            Self::SecurityAnswers => "security questions",
            Self::EmployeeRecord => "employee ID and date of hire",
            Self::Totp => "code from the authenticator app",
            Self::OneTimeCode => "one-time code sent to a registered address",
            Self::Callback => "callback to the number on file",
            Self::GovernmentId => "in-person government ID inspection",
            Self::ManagerApproval => "approval by the account's manager",
            Self::CoSignature => "co-signature by a second agent's YubiKey",
        }
    }

    /// The kind of evidence this method gives.
    pub fn kind(self) -> FactorKind {
        match self {
            Self::SecurityAnswers | Self::EmployeeRecord => FactorKind::Knowledge,
            Self::Totp | Self::OneTimeCode | Self::Callback => FactorKind::Possession,
            Self::GovernmentId => FactorKind::InPerson,
            Self::ManagerApproval | Self::CoSignature => FactorKind::Approval,
        }
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a tier requires. A higher tier must be at least as strict as a lower one
/// (checked by [`PolicyConfig::validate`]).
///
/// A tier table written in the configuration must list every field: the defaults
/// differ per tier, so filling gaps from one shared default would silently drop, say,
/// the privileged tier's manager approval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierPolicy {
    /// Minimum number of independent verification factors (distinct methods from
    /// `factor_methods`; all knowledge methods together count as one).
    pub min_factors: u8,
    /// Which methods count as factors at this tier.
    pub factor_methods: Vec<Method>,
    /// The account's manager must approve through their registered address.
    pub manager_approval: bool,
    /// A government photo ID must be inspected in person.
    pub government_id: bool,
    /// A second agent must co-sign with their YubiKey.
    pub co_signature: bool,
    /// Minutes between opening the request (and notifying the account holder and
    /// manager) and the earliest reset, so the real owner can object.
    pub cooling_off_minutes: u32,
}

/// The highest account tier each agent tier may reset. Can only narrow the defaults
/// (junior: standard; senior: privileged; admin: highest).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentAuthority {
    pub junior: AccountTier,
    pub senior: AccountTier,
    pub admin: AccountTier,
}

impl Default for AgentAuthority {
    fn default() -> Self {
        Self {
            junior: AgentTier::Junior.default_max_account_tier(),
            senior: AgentTier::Senior.default_max_account_tier(),
            admin: AgentTier::Admin.default_max_account_tier(),
        }
    }
}

impl AgentAuthority {
    /// The highest account tier an agent of `tier` may reset (never above the default).
    pub fn max_account_tier(&self, tier: AgentTier) -> AccountTier {
        let configured = match tier {
            AgentTier::Junior => self.junior,
            AgentTier::Senior => self.senior,
            AgentTier::Admin => self.admin,
        };
        configured.min(tier.default_max_account_tier())
    }
}

/// What an escalation rule does when it fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Effect {
    /// Treat the account as one tier higher (saturating at highest).
    RaiseTier,
    /// Add one required step (e.g. `{ require = "callback" }`).
    Require(Method),
}

/// A rule with a time window in days.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DaysRule {
    pub enabled: bool,
    pub days: u32,
    pub effect: Effect,
}

/// A rule with a time window in hours.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HoursRule {
    pub enabled: bool,
    pub hours: u32,
    pub effect: Effect,
}

/// A rule without a window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimpleRule {
    pub enabled: bool,
    pub effect: Effect,
}

/// The desk's business hours, at a fixed offset from UTC (no daylight-saving rules:
/// change the offset twice a year, or widen the hours).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BusinessHours {
    /// First hour inside business hours (0–23).
    pub start_hour: u8,
    /// First hour after business hours (1–24).
    pub end_hour: u8,
    /// Working days, `mon` .. `sun`.
    pub days: Vec<String>,
    /// The desk's offset from UTC in minutes (e.g. 60 for UTC+1).
    pub utc_offset_minutes: i16,
}

impl Default for BusinessHours {
    fn default() -> Self {
        Self {
            start_hour: 8,
            end_hour: 18,
            days: ["mon", "tue", "wed", "thu", "fri"].map(String::from).to_vec(),
            utc_offset_minutes: 0,
        }
    }
}

/// Risk escalation rules. Each fires with a reason shown to the agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RiskPolicy {
    /// A contact point changed within `days`. The changed detail is never used for a
    /// callback, a code or the hand-off, even when `enabled` is false.
    pub recent_contact_change: DaysRule,
    /// The same account was reset within `hours`.
    pub recent_reset: HoursRule,
    /// Verification failed for this account within `hours` (below the lockout threshold).
    pub earlier_failures: HoursRule,
    /// The request is made outside business hours.
    pub outside_business_hours: SimpleRule,
    /// The request came by phone or e-mail rather than in person.
    pub remote_channel: SimpleRule,
    /// The department, manager or location the requester states differs from the record.
    pub stated_details_mismatch: SimpleRule,
    /// The account is flagged by the security team or by a lockout.
    pub flagged_account: SimpleRule,
    pub business_hours: BusinessHours,
}

impl Default for RiskPolicy {
    fn default() -> Self {
        Self {
            recent_contact_change: DaysRule { enabled: true, days: 30, effect: Effect::RaiseTier },
            recent_reset: HoursRule { enabled: true, hours: 24, effect: Effect::RaiseTier },
            earlier_failures: HoursRule { enabled: true, hours: 24, effect: Effect::RaiseTier },
            outside_business_hours: SimpleRule { enabled: true, effect: Effect::Require(Method::Callback) },
            remote_channel: SimpleRule { enabled: true, effect: Effect::RaiseTier },
            stated_details_mismatch: SimpleRule { enabled: true, effect: Effect::RaiseTier },
            flagged_account: SimpleRule { enabled: true, effect: Effect::RaiseTier },
            business_hours: BusinessHours::default(),
        }
    }
}

/// Too many failed verifications: wait, notify security, flag the account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LockoutPolicy {
    /// Failed verification steps for one account within the window that trigger a lockout.
    pub max_failures: u32,
    pub window_minutes: u32,
    /// How long verification is refused after a lockout.
    pub wait_minutes: u32,
    /// How long the flag a lockout sets lasts after the lock ends (the flag raises the
    /// tier of later resets); a flag set by the security team lasts until they clear it.
    pub flag_days: u32,
}

impl Default for LockoutPolicy {
    fn default() -> Self {
        Self { max_failures: 3, window_minutes: 24 * 60, wait_minutes: 4 * 60, flag_days: 30 }
    }
}

/// One-time codes sent to a registered address or device (NIST 800-63B-4 §4.2.1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CodePolicy {
    /// Digits per code (6–10).
    pub digits: u8,
    /// Minutes a code stays valid (1–10).
    pub valid_minutes: u32,
    /// Codes that may be sent in one reset session.
    pub max_per_session: u32,
    /// Seconds between two codes.
    pub min_interval_seconds: u32,
    /// Wrong entries of one code before it is void.
    pub max_attempts: u32,
}

impl Default for CodePolicy {
    fn default() -> Self {
        Self { digits: 6, valid_minutes: 10, max_per_session: 3, min_interval_seconds: 60, max_attempts: 3 }
    }
}

/// Shape of generated temporary passwords.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PasswordStyle {
    /// Random characters from an alphabet without look-alikes.
    Characters,
    /// Random words from the bundled list, joined by `-`.
    Passphrase,
}

/// Temporary password generation. Must-change-at-next-login is always set: not configurable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PasswordPolicy {
    pub style: PasswordStyle,
    /// Characters for `characters` style (15–64).
    pub length: u8,
    /// Words for `passphrase` style (5–10).
    pub words: u8,
}

impl Default for PasswordPolicy {
    fn default() -> Self {
        Self { style: PasswordStyle::Characters, length: 16, words: 5 }
    }
}

/// How the temporary password reaches the requester.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HandoffPolicy {
    /// Let the agent see the password (off by default: the customer-facing window shows
    /// it while the agent's screen stays masked).
    pub agent_may_view: bool,
    /// Why agents may see it (required when `agent_may_view`; recorded with every reset).
    pub agent_view_reason: String,
}

/// The `[policy]` section of `resetdesk.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    pub standard: TierPolicy,
    pub privileged: TierPolicy,
    pub highest: TierPolicy,
    /// Which agent tiers may reset which account tiers.
    pub agents: AgentAuthority,
    /// Optional limits of agent groups to departments or directory subtrees.
    pub scopes: Vec<AgentScope>,
    pub risk: RiskPolicy,
    pub lockout: LockoutPolicy,
    pub one_time_code: CodePolicy,
    pub password: PasswordPolicy,
    pub handoff: HandoffPolicy,
    pub freshness: FreshnessPolicy,
}

/// How old verification may be when the reset runs. Time spent waiting for the
/// cooling-off does not count; older steps (all of them, past the session's age) must
/// be done again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FreshnessPolicy {
    /// A passed step counts for this long.
    pub step_max_age_minutes: u32,
    /// A request's passed steps all count for at most this long after it opened.
    pub session_max_age_minutes: u32,
}

impl Default for FreshnessPolicy {
    fn default() -> Self {
        Self { step_max_age_minutes: 60, session_max_age_minutes: 240 }
    }
}

impl Default for PolicyConfig {
    fn default() -> Self {
        use Method::*;
        Self {
            standard: TierPolicy {
                min_factors: 2,
                factor_methods: vec![SecurityAnswers, EmployeeRecord, Totp, OneTimeCode, Callback, GovernmentId],
                manager_approval: false,
                government_id: false,
                co_signature: false,
                cooling_off_minutes: 0,
            },
            privileged: TierPolicy {
                min_factors: 2,
                factor_methods: vec![Totp, OneTimeCode, Callback, GovernmentId],
                manager_approval: true,
                government_id: false,
                co_signature: false,
                cooling_off_minutes: 10,
            },
            highest: TierPolicy {
                min_factors: 2,
                factor_methods: vec![Totp, OneTimeCode, Callback, GovernmentId],
                manager_approval: true,
                government_id: true,
                co_signature: true,
                cooling_off_minutes: 30,
            },
            agents: AgentAuthority::default(),
            scopes: Vec::new(),
            risk: RiskPolicy::default(),
            lockout: LockoutPolicy::default(),
            one_time_code: CodePolicy::default(),
            password: PasswordPolicy::default(),
            handoff: HandoffPolicy::default(),
            freshness: FreshnessPolicy::default(),
        }
    }
}

/// Longest window of a rule in days, in hours, and of the lockout in minutes.
const MAX_DAYS: u32 = 3650;
const MAX_HOURS: u32 = 8760;
const MAX_LOCKOUT_MINUTES: u32 = 30 * 24 * 60;

/// A policy value that cannot work, with the dotted key under `[policy]` to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("policy.{key}: {message}")]
pub struct PolicyError {
    /// Dotted key below `policy` (`privileged.min_factors`).
    pub key: String,
    pub message: String,
}

const WEEKDAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

impl PolicyConfig {
    /// The configured policy of one tier (see [`Self::requirements`] for what is enforced).
    pub fn tier(&self, tier: AccountTier) -> &TierPolicy {
        match tier {
            AccountTier::Standard => &self.standard,
            AccountTier::Privileged => &self.privileged,
            AccountTier::Highest => &self.highest,
        }
    }

    /// Checks serde cannot express. Call after parsing; the error names the key.
    pub fn validate(&self) -> Result<(), PolicyError> {
        let bad = |key: &str, message: String| Err(PolicyError { key: key.to_owned(), message });
        for tier in AccountTier::ALL {
            let p = self.tier(tier);
            let name = tier.as_str();
            if let Some(m) = p.factor_methods.iter().find(|m| m.kind() == FactorKind::Approval) {
                return bad(
                    &format!("{name}.factor_methods"),
                    format!("{m} is an approval, not a verification factor: use `manager_approval` or `co_signature`"),
                );
            }
            let independent = requirements::independent_count(p.factor_methods.iter().copied());
            if p.min_factors == 0 {
                return bad(&format!("{name}.min_factors"), "must be at least 1".into());
            }
            if usize::from(p.min_factors) > independent {
                return bad(
                    &format!("{name}.min_factors"),
                    format!(
                        "{} factors cannot be met: factor_methods give only {independent} independent factors \
                         (knowledge methods count once)",
                        p.min_factors
                    ),
                );
            }
            if p.cooling_off_minutes > 7 * 24 * 60 {
                return bad(&format!("{name}.cooling_off_minutes"), "at most 10080 (one week)".into());
            }
        }
        for (lower, higher) in
            [(AccountTier::Standard, AccountTier::Privileged), (AccountTier::Privileged, AccountTier::Highest)]
        {
            let (l, h) = (self.tier(lower), self.tier(higher));
            let weaker = h.min_factors < l.min_factors
                || h.factor_methods.iter().any(|m| !l.factor_methods.contains(m))
                || (l.manager_approval && !h.manager_approval)
                || (l.government_id && !h.government_id)
                || (l.co_signature && !h.co_signature)
                || h.cooling_off_minutes < l.cooling_off_minutes;
            if weaker {
                return bad(
                    higher.as_str(),
                    format!(
                        "must be at least as strict as {lower}: escalation to {higher} must never lower requirements"
                    ),
                );
            }
        }
        if !(self.agents.junior <= self.agents.senior && self.agents.senior <= self.agents.admin) {
            return bad("agents", "a lower agent tier may not reset more than a higher one".into());
        }
        for tier in AgentTier::ALL {
            let configured = match tier {
                AgentTier::Junior => self.agents.junior,
                AgentTier::Senior => self.agents.senior,
                AgentTier::Admin => self.agents.admin,
            };
            if configured > tier.default_max_account_tier() {
                return bad(
                    &format!("agents.{tier}"),
                    format!("{tier} agents may reset at most {} accounts", tier.default_max_account_tier()),
                );
            }
        }
        for (i, scope) in self.scopes.iter().enumerate() {
            if scope.group.trim().is_empty() {
                return bad(&format!("scopes[{i}].group"), "must name an agent group".into());
            }
            if scope.departments.is_empty() && scope.subtrees.is_empty() {
                return bad(&format!("scopes[{i}]"), "list at least one department or subtree".into());
            }
        }
        let r = &self.risk;
        if r.recent_contact_change.days == 0 {
            return bad("risk.recent_contact_change.days", "must be at least 1".into());
        }
        if r.recent_reset.hours == 0 || r.earlier_failures.hours == 0 {
            return bad("risk", "rule windows must be at least 1 hour".into());
        }
        // Upper bounds on every time value: the engine adds them to instants, and a
        // value near u32::MAX would overflow the calendar.
        if r.recent_contact_change.days > MAX_DAYS {
            return bad("risk.recent_contact_change.days", format!("at most {MAX_DAYS} (ten years)"));
        }
        for (key, hours) in [
            ("risk.recent_reset.hours", r.recent_reset.hours),
            ("risk.earlier_failures.hours", r.earlier_failures.hours),
        ] {
            if hours > MAX_HOURS {
                return bad(key, format!("at most {MAX_HOURS} (one year)"));
            }
        }
        let bh = &r.business_hours;
        if bh.start_hour > 23 || bh.end_hour == 0 || bh.end_hour > 24 || bh.start_hour >= bh.end_hour {
            return bad("risk.business_hours", "use 0 <= start_hour < end_hour <= 24".into());
        }
        if let Some(d) = bh.days.iter().find(|d| !WEEKDAYS.contains(&d.as_str())) {
            return bad(
                "risk.business_hours.days",
                format!("{d:?} is not a day: use mon, tue, wed, thu, fri, sat, sun"),
            );
        }
        if !(-14 * 60..=14 * 60).contains(&bh.utc_offset_minutes) {
            return bad("risk.business_hours.utc_offset_minutes", "must be within -840..=840".into());
        }
        for rule in [
            r.outside_business_hours.effect,
            r.remote_channel.effect,
            r.stated_details_mismatch.effect,
            r.flagged_account.effect,
            r.recent_contact_change.effect,
            r.recent_reset.effect,
            r.earlier_failures.effect,
        ] {
            if rule == Effect::Require(Method::GovernmentId) {
                return bad("risk", "government-id cannot be added by a rule; use raise-tier towards highest".into());
            }
        }
        let l = &self.lockout;
        if l.max_failures == 0 || l.window_minutes == 0 || l.wait_minutes == 0 {
            return bad("lockout", "max_failures, window_minutes and wait_minutes must be at least 1".into());
        }
        for (key, minutes) in [("lockout.window_minutes", l.window_minutes), ("lockout.wait_minutes", l.wait_minutes)] {
            if minutes > MAX_LOCKOUT_MINUTES {
                return bad(key, format!("at most {MAX_LOCKOUT_MINUTES} (30 days)"));
            }
        }
        if !(1..=3650).contains(&l.flag_days) {
            return bad("lockout.flag_days", "use 1 to 3650 days".into());
        }
        let f = &self.freshness;
        if !(1..=1440).contains(&f.step_max_age_minutes) || !(1..=1440).contains(&f.session_max_age_minutes) {
            return bad("freshness", "step_max_age_minutes and session_max_age_minutes must be 1 to 1440".into());
        }
        let c = &self.one_time_code;
        if !(6..=10).contains(&c.digits) {
            return bad("one_time_code.digits", "use 6 to 10 digits".into());
        }
        if !(1..=10).contains(&c.valid_minutes) {
            return bad("one_time_code.valid_minutes", "use 1 to 10 minutes".into());
        }
        if c.max_per_session == 0 || c.max_attempts == 0 {
            return bad("one_time_code", "max_per_session and max_attempts must be at least 1".into());
        }
        if c.max_per_session > 20 || c.max_attempts > 10 {
            return bad("one_time_code", "max_per_session is at most 20 and max_attempts at most 10".into());
        }
        if c.min_interval_seconds > 3600 {
            return bad("one_time_code.min_interval_seconds", "at most 3600 (one hour)".into());
        }
        let p = &self.password;
        if !(15..=64).contains(&p.length) {
            return bad("password.length", "use 15 to 64 characters (NIST SP 800-63B-4)".into());
        }
        if !(5..=10).contains(&p.words) {
            return bad("password.words", "use 5 to 10 words".into());
        }
        if self.handoff.agent_may_view && self.handoff.agent_view_reason.trim().is_empty() {
            return bad(
                "handoff.agent_view_reason",
                "required when agent_may_view = true; it is recorded with every reset".into(),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn every_time_value_has_an_upper_bound_that_names_its_key() {
        let huge = u32::MAX;
        type Set = fn(&mut PolicyConfig, u32);
        let cases: [(&str, Set); 6] = [
            ("lockout.wait_minutes", |p, v| p.lockout.wait_minutes = v),
            ("lockout.window_minutes", |p, v| p.lockout.window_minutes = v),
            ("risk.recent_contact_change.days", |p, v| p.risk.recent_contact_change.days = v),
            ("risk.recent_reset.hours", |p, v| p.risk.recent_reset.hours = v),
            ("risk.earlier_failures.hours", |p, v| p.risk.earlier_failures.hours = v),
            ("one_time_code.min_interval_seconds", |p, v| p.one_time_code.min_interval_seconds = v),
        ];
        for (key, set) in cases {
            let mut p = PolicyConfig::default();
            set(&mut p, huge);
            let e = p.validate().expect_err(key);
            assert_eq!(e.key, key, "{e}");
        }
        let mut p = PolicyConfig::default();
        p.lockout.wait_minutes = MAX_LOCKOUT_MINUTES;
        p.risk.recent_contact_change.days = MAX_DAYS;
        assert!(p.validate().is_ok(), "the bounds themselves are allowed");
    }
    use super::*;

    #[test]
    fn default_policy_is_valid_and_round_trips_through_toml() {
        let p = PolicyConfig::default();
        p.validate().unwrap();
        let text = toml::to_string(&p).unwrap();
        let back: PolicyConfig = toml::from_str(&text).unwrap();
        assert_eq!(back, p);
        let empty: PolicyConfig = toml::from_str("").unwrap();
        assert_eq!(empty, p);
    }

    #[test]
    fn defaults_follow_the_issue() {
        let p = PolicyConfig::default();
        assert!(!p.standard.manager_approval && p.privileged.manager_approval && p.highest.manager_approval);
        assert!(!p.privileged.government_id && p.highest.government_id);
        assert!(!p.privileged.co_signature && p.highest.co_signature);
        assert!(!p.privileged.factor_methods.contains(&Method::SecurityAnswers));
    }

    #[test]
    fn effect_spelling_in_toml() {
        let p: PolicyConfig =
            toml::from_str("[risk.remote_channel]\nenabled = true\neffect = { require = \"callback\" }\n").unwrap();
        assert_eq!(p.risk.remote_channel.effect, Effect::Require(Method::Callback));
        assert!(
            toml::from_str::<PolicyConfig>("[risk.remote_channel]\nenabled = true\neffect = \"lower-tier\"\n").is_err()
        );
    }

    #[test]
    fn a_partial_tier_table_is_an_error_not_a_silent_downgrade() {
        let err = toml::from_str::<PolicyConfig>("[privileged]\nmin_factors = 3\n").unwrap_err();
        assert!(err.message().contains("missing field"), "{err}");
        // Leaving a tier out entirely keeps that tier's own defaults.
        let p: PolicyConfig = toml::from_str("[standard]\nmin_factors = 2\nfactor_methods = [\"totp\", \"callback\"]\nmanager_approval = false\ngovernment_id = false\nco_signature = false\ncooling_off_minutes = 0\n").unwrap();
        assert!(p.privileged.manager_approval);
        p.validate().unwrap_err(); // privileged now counts methods standard does not
    }

    #[test]
    fn the_documented_example_needs_the_higher_tiers_raised_too() {
        let example = "[standard]\nmin_factors = 3\nfactor_methods = [\"security-answers\", \"employee-record\", \"totp\", \"one-time-code\", \"callback\", \"government-id\"]\nmanager_approval = true\ngovernment_id = false\nco_signature = false\ncooling_off_minutes = 0\n";
        let mut p: PolicyConfig = toml::from_str(example).unwrap();
        assert_eq!(p.validate().unwrap_err().key, "privileged");
        p.privileged.min_factors = 3;
        p.highest.min_factors = 3;
        p.validate().unwrap();
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let err = toml::from_str::<PolicyConfig>("[lockout]\nmax_failure = 1\n").unwrap_err();
        assert!(err.message().contains("unknown field"), "{err}");
    }

    fn key_of(p: &PolicyConfig) -> String {
        p.validate().unwrap_err().key
    }

    #[test]
    fn a_higher_tier_weaker_than_a_lower_one_is_refused() {
        let mut p = PolicyConfig::default();
        p.highest.co_signature = false;
        p.privileged.co_signature = true;
        assert_eq!(key_of(&p), "highest");
        let mut p = PolicyConfig::default();
        p.privileged.factor_methods.push(Method::SecurityAnswers);
        p.highest.factor_methods.push(Method::EmployeeRecord);
        assert_eq!(key_of(&p), "highest");
    }

    #[test]
    fn unreachable_factor_count_is_refused() {
        let mut p = PolicyConfig::default();
        p.standard.factor_methods = vec![Method::SecurityAnswers, Method::EmployeeRecord];
        assert_eq!(key_of(&p), "standard.min_factors");
    }

    #[test]
    fn approvals_are_not_factors() {
        let mut p = PolicyConfig::default();
        p.standard.factor_methods.push(Method::ManagerApproval);
        assert_eq!(key_of(&p), "standard.factor_methods");
    }

    #[test]
    fn agent_authority_can_only_narrow() {
        let mut p = PolicyConfig::default();
        p.agents.junior = AccountTier::Privileged;
        assert!(p.validate().is_err());
        // Even unvalidated, the effective limit never exceeds the default.
        assert_eq!(p.agents.max_account_tier(AgentTier::Junior), AccountTier::Standard);
    }

    #[test]
    fn bad_values_name_their_key() {
        let mut p = PolicyConfig::default();
        p.password.length = 8;
        assert_eq!(key_of(&p), "password.length");
        let mut p = PolicyConfig::default();
        p.one_time_code.digits = 4;
        assert_eq!(key_of(&p), "one_time_code.digits");
        let mut p = PolicyConfig::default();
        p.handoff.agent_may_view = true;
        assert_eq!(key_of(&p), "handoff.agent_view_reason");
        let mut p = PolicyConfig::default();
        p.risk.business_hours.days.push("funday".into());
        assert_eq!(key_of(&p), "risk.business_hours.days");
    }
}
