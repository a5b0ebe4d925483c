//! Risk escalation: signals about a request that raise the bar, each with a reason the
//! agent sees. Escalation raises the effective tier or adds required steps; nothing
//! here can lower either.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime, UtcOffset};

use super::{Effect, Method, PolicyConfig, Requirements};
use crate::directory::{Account, ContactPoint};
use crate::text::normalize_answer;
use crate::tier::AccountTier;

/// How the request reached the desk. Remote channels rank below walk-up in person.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Channel {
    /// The requester stands at the desk.
    WalkUp,
    /// The requester called.
    Phone,
    /// The requester wrote.
    Email,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::WalkUp => "walk-up",
            Self::Phone => "phone",
            Self::Email => "email",
        }
    }
}

/// What the requester says about themselves, typed by the agent. `None`: not asked.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StatedDetails {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub department: Option<String>,
    /// The manager's username or display name, as the requester gives it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manager: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// The name the requester gives (recorded; the account is found by search).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Why they need a reset, in their words (recorded).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The help-desk ticket this request belongs to (recorded).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ticket: Option<String>,
}

impl StatedDetails {
    /// Longest stated detail kept, in bytes.
    pub const MAX_FIELD_BYTES: usize = 256;

    /// Trimmed copies with empty fields dropped; refuses control characters and
    /// over-long fields (they go into signed records and onto screens).
    pub fn cleaned(&self) -> Result<StatedDetails, crate::verification::InputError> {
        fn one(field: &'static str, v: &Option<String>) -> Result<Option<String>, crate::verification::InputError> {
            let Some(v) = v.as_deref().map(str::trim).filter(|v| !v.is_empty()) else { return Ok(None) };
            crate::verification::check_text(field, v)?;
            if v.len() > StatedDetails::MAX_FIELD_BYTES {
                return Err(crate::verification::InputError::TooLong { field, max: StatedDetails::MAX_FIELD_BYTES });
            }
            Ok(Some(v.to_owned()))
        }
        Ok(StatedDetails {
            department: one("stated department", &self.department)?,
            manager: one("stated manager", &self.manager)?,
            location: one("stated location", &self.location)?,
            name: one("stated name", &self.name)?,
            reason: one("reason for the request", &self.reason)?,
            ticket: one("ticket number", &self.ticket)?,
        })
    }
}

/// Facts about the request that the adapters gather before the session opens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestContext {
    pub channel: Channel,
    pub stated: StatedDetails,
    /// Earlier successful resets of this account (from the audit store).
    pub previous_resets: Vec<OffsetDateTime>,
    /// Earlier failed verification steps of this account (from the audit store).
    pub previous_failures: Vec<OffsetDateTime>,
    /// What the collector's cross-desk history says beyond resets and failures.
    pub cross_desk: CrossDeskFacts,
}

/// Facts from the collector's cross-desk history that the rules weigh: whether it
/// could be asked at all, and whether it flags the account. Gathered by the desk's
/// history adapter; the rules only read them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CrossDeskFacts {
    /// The cross-desk history was configured but could not be read (why, for the
    /// agent): resets and failures at other desks are unknown, so the rules treat the
    /// account as recently reset and recently failed. `None`: read, or not configured.
    pub unavailable: Option<String>,
    /// The collector flags the account (a "this wasn't me" report).
    pub flag: Option<CrossDeskFlag>,
}

/// A flag the collector holds for an account, and the tier it requires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CrossDeskFlag {
    /// The lowest effective tier the next reset must meet.
    pub tier: AccountTier,
    /// Why, in words (e.g. "the holder reported a reset they did not ask for").
    pub reason: String,
}

/// Which rule fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RiskRule {
    RecentContactChange,
    RecentReset,
    EarlierFailures,
    OutsideBusinessHours,
    RemoteChannel,
    StatedDetailsMismatch,
    FlaggedAccount,
    /// The collector's cross-desk history could not be read: treated as the stricter case.
    CrossDeskHistoryUnavailable,
    /// An admin used the emergency path past a verification lockout.
    EmergencyOverride,
}

/// One fired rule: what it did and why, in words for the agent and the audit record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Escalation {
    pub rule: RiskRule,
    pub effect: Effect,
    pub reason: String,
}

/// The result of applying every rule to a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RiskAssessment {
    pub base_tier: AccountTier,
    pub effective_tier: AccountTier,
    pub escalations: Vec<Escalation>,
    /// Steps added by rules on top of the effective tier's requirements.
    pub added_steps: BTreeSet<Method>,
    /// Contact point values (addresses, numbers) changed recently: never used for a
    /// callback, a code or the hand-off.
    pub excluded_contacts: BTreeSet<String>,
}

impl RiskAssessment {
    /// Start from the account's own tier with nothing fired.
    pub fn new(base_tier: AccountTier) -> Self {
        Self {
            base_tier,
            effective_tier: base_tier,
            escalations: Vec::new(),
            added_steps: BTreeSet::new(),
            excluded_contacts: BTreeSet::new(),
        }
    }

    /// Apply one fired rule. Only raises or adds.
    pub fn escalate(&mut self, rule: RiskRule, effect: Effect, reason: String) {
        match effect {
            Effect::RaiseTier => self.effective_tier = self.effective_tier.raised(),
            Effect::Require(m) => {
                self.added_steps.insert(m);
            }
        }
        self.escalations.push(Escalation { rule, effect, reason });
    }

    /// Raise straight to `tier` (no-op if already there or above).
    pub fn raise_to(&mut self, rule: RiskRule, tier: AccountTier, reason: String) {
        self.effective_tier = self.effective_tier.max(tier);
        self.escalations.push(Escalation { rule, effect: Effect::RaiseTier, reason });
    }

    /// The requirements to enforce: the effective tier's, plus added steps.
    pub fn requirements(&self, policy: &PolicyConfig) -> Requirements {
        let mut r = policy.requirements(self.effective_tier);
        for m in &self.added_steps {
            r.require(*m);
        }
        r
    }
}

fn within(now: OffsetDateTime, then: OffsetDateTime, window: Duration) -> bool {
    then <= now && now - then < window
}

fn days_ago(now: OffsetDateTime, then: OffsetDateTime) -> i64 {
    (now - then).whole_days().max(0)
}

/// True if `now` falls inside the configured business hours.
pub fn in_business_hours(policy: &PolicyConfig, now: OffsetDateTime) -> bool {
    let bh = &policy.risk.business_hours;
    let offset = UtcOffset::from_whole_seconds(i32::from(bh.utc_offset_minutes) * 60).unwrap_or(UtcOffset::UTC);
    let local = now.to_offset(offset);
    let day = local.weekday().to_string().to_ascii_lowercase();
    bh.days.iter().any(|d| day.get(..3) == Some(d.as_str())) && (bh.start_hour..bh.end_hour).contains(&local.hour())
}

/// Contact points of an account that may be used for a code, callback or hand-off.
pub fn usable_contacts<'a>(
    points: &'a [ContactPoint],
    excluded: &'a BTreeSet<String>,
) -> impl Iterator<Item = (usize, &'a ContactPoint)> {
    points.iter().enumerate().filter(move |(_, c)| !excluded.contains(&c.value))
}

fn differs(stated: &Option<String>, recorded: &str) -> bool {
    stated.as_ref().is_some_and(|s| normalize_answer(s) != normalize_answer(recorded))
}

/// A stated manager given by display name becomes the manager's username, so that
/// "Diana Garcia" matches `dgarcia` in the mismatch rule; anything else stays as typed.
pub fn stated_manager(stated: Option<String>, manager: Option<&Account>) -> Option<String> {
    match (stated, manager) {
        (Some(s), Some(m)) if normalize_answer(&s) == normalize_answer(&m.display_name) => Some(m.username.clone()),
        (s, _) => s,
    }
}

/// Apply every rule of the policy to a request at time `now`.
pub fn assess(policy: &PolicyConfig, account: &Account, ctx: &RequestContext, now: OffsetDateTime) -> RiskAssessment {
    let rules = &policy.risk;
    let mut a = RiskAssessment::new(account.tier);

    let window = Duration::days(i64::from(rules.recent_contact_change.days));
    let recent: Vec<&ContactPoint> =
        account.emails.iter().chain(&account.phones).filter(|c| c.changed_within(now, window)).collect();
    for c in &recent {
        a.excluded_contacts.insert(c.value.clone());
    }
    if rules.recent_contact_change.enabled && !recent.is_empty() {
        let list: Vec<String> = recent
            .iter()
            .map(|c| match c.changed_at {
                Some(t) => format!("{} ({} days ago)", c.label, days_ago(now, t)),
                None => format!("{} (the directory cannot tell when)", c.label),
            })
            .collect();
        a.escalate(
            RiskRule::RecentContactChange,
            rules.recent_contact_change.effect,
            format!(
                "contact details changed within {} days: {}; those details are not used for a callback, a code or the password",
                rules.recent_contact_change.days,
                list.join(", ")
            ),
        );
    }

    let reset_window = Duration::hours(i64::from(rules.recent_reset.hours));
    if rules.recent_reset.enabled && ctx.previous_resets.iter().any(|t| within(now, *t, reset_window)) {
        a.escalate(
            RiskRule::RecentReset,
            rules.recent_reset.effect,
            format!("the account was already reset within the last {} hours", rules.recent_reset.hours),
        );
    }

    let fail_window = Duration::hours(i64::from(rules.earlier_failures.hours));
    let failures = ctx.previous_failures.iter().filter(|t| within(now, **t, fail_window)).count();
    if rules.earlier_failures.enabled && failures > 0 {
        a.escalate(
            RiskRule::EarlierFailures,
            rules.earlier_failures.effect,
            format!(
                "{failures} failed verification(s) for this account in the last {} hours",
                rules.earlier_failures.hours
            ),
        );
    }

    if rules.outside_business_hours.enabled && !in_business_hours(policy, now) {
        a.escalate(
            RiskRule::OutsideBusinessHours,
            rules.outside_business_hours.effect,
            "the request is outside business hours".into(),
        );
    }

    if rules.remote_channel.enabled && ctx.channel != Channel::WalkUp {
        a.escalate(
            RiskRule::RemoteChannel,
            rules.remote_channel.effect,
            format!("the request came by {}, not in person at the desk", ctx.channel.as_str()),
        );
    }

    let mut mismatched = Vec::new();
    if differs(&ctx.stated.department, &account.department) {
        mismatched.push("department");
    }
    if differs(&ctx.stated.manager, account.manager.as_deref().unwrap_or("")) {
        mismatched.push("manager");
    }
    if differs(&ctx.stated.location, &account.location) {
        mismatched.push("location");
    }
    if rules.stated_details_mismatch.enabled && !mismatched.is_empty() {
        a.escalate(
            RiskRule::StatedDetailsMismatch,
            rules.stated_details_mismatch.effect,
            format!("the stated {} does not match the directory record", mismatched.join(", ")),
        );
    }

    if rules.flagged_account.enabled && account.flagged_at(now) {
        a.escalate(
            RiskRule::FlaggedAccount,
            rules.flagged_account.effect,
            "the account is flagged by the security team or by an earlier lockout".into(),
        );
    }

    if let Some(flag) = &ctx.cross_desk.flag {
        // The collector's flag (a "this wasn't me" report) is the flag rule too.
        if rules.flagged_account.enabled {
            a.raise_to(
                RiskRule::FlaggedAccount,
                flag.tier,
                format!("the collector flags the account: {}", flag.reason),
            );
        }
    }

    if let Some(why) = &ctx.cross_desk.unavailable {
        // Never "no history": as if the account had been reset and had failed at
        // another desk within the windows (the rules that would then fire, fire).
        for (enabled, effect, as_if) in [
            (rules.recent_reset.enabled, rules.recent_reset.effect, "a recent reset"),
            (rules.earlier_failures.enabled, rules.earlier_failures.effect, "a recent failed verification"),
        ] {
            if enabled {
                a.escalate(
                    RiskRule::CrossDeskHistoryUnavailable,
                    effect,
                    format!("cross-desk history unavailable ({why}): treated as {as_if} at another desk"),
                );
            }
        }
    }
    a
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::directory::DirectoryEntry;
    use time::macros::{date, datetime};

    /// Wednesday 10:00 UTC: inside default business hours.
    pub const NOW: OffsetDateTime = datetime!(2026-11-25 10:00 UTC);

    pub fn contact(value: &str, label: &str, changed_at: OffsetDateTime) -> ContactPoint {
        ContactPoint { value: value.into(), label: label.into(), changed_at: Some(changed_at) }
    }

    pub fn account(tier: AccountTier) -> Account {
        Account {
            entry: DirectoryEntry {
                username: "jdoe".into(),
                display_name: "Jane Doe".into(),
                employee_id: "E1234".into(),
                department: "Finance".into(),
                location: "Berlin".into(),
                manager: Some("mboss".into()),
                date_of_hire: date!(2019 - 03 - 04),
                emails: vec![contact("jane@example.com", "work", datetime!(2020-01-01 0:00 UTC))],
                phones: vec![contact("+49 30 1234567", "mobile", datetime!(2020-01-01 0:00 UTC))],
                groups: vec![],
                flagged: false,
                must_change_password: false,
                verification_locked_until: None,
                flagged_until: None,
                dn: Some("uid=jdoe,ou=people,ou=berlin,dc=example,dc=com".into()),
            },
            tier,
            agent_tier: None,
        }
    }

    pub fn walk_up() -> RequestContext {
        RequestContext {
            cross_desk: CrossDeskFacts::default(),
            channel: Channel::WalkUp,
            stated: StatedDetails::default(),
            previous_resets: vec![],
            previous_failures: vec![],
        }
    }

    #[test]
    fn a_manager_stated_by_display_name_matches_the_record() {
        let mut m = account(AccountTier::Standard);
        m.username = "dgarcia".into();
        m.display_name = "Diana García".into();
        assert_eq!(stated_manager(Some("diana garcía".into()), Some(&m)), Some("dgarcia".into()));
        assert_eq!(stated_manager(Some("Someone Else".into()), Some(&m)), Some("Someone Else".into()));
        assert_eq!(stated_manager(None, Some(&m)), None);
    }

    #[test]
    fn quiet_request_keeps_the_base_tier() {
        let a = assess(&PolicyConfig::default(), &account(AccountTier::Standard), &walk_up(), NOW);
        assert_eq!(a.effective_tier, AccountTier::Standard);
        assert!(a.escalations.is_empty() && a.added_steps.is_empty());
    }

    #[test]
    fn recent_contact_change_escalates_and_excludes_the_detail() {
        let mut acc = account(AccountTier::Standard);
        acc.phones[0].changed_at = Some(NOW - Duration::days(3));
        let a = assess(&PolicyConfig::default(), &acc, &walk_up(), NOW);
        assert_eq!(a.effective_tier, AccountTier::Privileged);
        assert!(a.excluded_contacts.contains("+49 30 1234567"));
        assert!(a.escalations[0].reason.contains("mobile (3 days ago)"), "{}", a.escalations[0].reason);
        // Exclusion holds even with the escalation switched off.
        let mut p = PolicyConfig::default();
        p.risk.recent_contact_change.enabled = false;
        let a = assess(&p, &acc, &walk_up(), NOW);
        assert_eq!(a.effective_tier, AccountTier::Standard);
        assert!(a.excluded_contacts.contains("+49 30 1234567"));
    }

    #[test]
    fn a_change_dated_in_the_future_counts_as_recent() {
        let mut acc = account(AccountTier::Standard);
        acc.emails[0].changed_at = Some(NOW + Duration::days(400));
        let a = assess(&PolicyConfig::default(), &acc, &walk_up(), NOW);
        assert!(a.excluded_contacts.contains("jane@example.com"));
    }

    #[test]
    fn a_change_time_the_directory_cannot_tell_is_a_risk_reason() {
        let mut acc = account(AccountTier::Standard);
        acc.phones[0].changed_at = None;
        let a = assess(&PolicyConfig::default(), &acc, &walk_up(), NOW);
        assert_eq!(a.effective_tier, AccountTier::Privileged);
        assert!(a.excluded_contacts.contains("+49 30 1234567"), "not used for a callback or a code");
        assert!(a.escalations[0].reason.contains("cannot tell"), "{}", a.escalations[0].reason);
    }

    #[test]
    fn recent_reset_and_failures_escalate_only_inside_their_window() {
        let acc = account(AccountTier::Standard);
        let mut ctx = walk_up();
        ctx.previous_resets = vec![NOW - Duration::hours(25)];
        ctx.previous_failures = vec![NOW - Duration::hours(30)];
        assert!(assess(&PolicyConfig::default(), &acc, &ctx, NOW).escalations.is_empty());
        ctx.previous_resets.push(NOW - Duration::hours(2));
        ctx.previous_failures.push(NOW - Duration::minutes(5));
        let a = assess(&PolicyConfig::default(), &acc, &ctx, NOW);
        let rules: Vec<RiskRule> = a.escalations.iter().map(|e| e.rule).collect();
        assert_eq!(rules, [RiskRule::RecentReset, RiskRule::EarlierFailures]);
        assert_eq!(a.effective_tier, AccountTier::Highest);
    }

    #[test]
    fn outside_hours_adds_a_callback() {
        let saturday = datetime!(2026-11-28 10:00 UTC);
        let a = assess(&PolicyConfig::default(), &account(AccountTier::Standard), &walk_up(), saturday);
        assert!(a.added_steps.contains(&Method::Callback));
        let night = datetime!(2026-11-25 18:00 UTC);
        assert!(!in_business_hours(&PolicyConfig::default(), night));
        let mut p = PolicyConfig::default();
        p.risk.business_hours.utc_offset_minutes = 60; // 17:00 local
        assert!(in_business_hours(&p, datetime!(2026-11-25 16:30 UTC)));
        assert!(!in_business_hours(&p, datetime!(2026-11-25 17:30 UTC)));
    }

    #[test]
    fn phone_ranks_below_walk_up() {
        let mut ctx = walk_up();
        ctx.channel = Channel::Phone;
        let a = assess(&PolicyConfig::default(), &account(AccountTier::Standard), &ctx, NOW);
        assert_eq!(a.effective_tier, AccountTier::Privileged);
        assert!(a.escalations[0].reason.contains("phone"));
    }

    #[test]
    fn stated_details_compare_normalised_and_lookalikes_mismatch() {
        let acc = account(AccountTier::Standard);
        let mut ctx = walk_up();
        ctx.stated.department = Some("  FINANCE ".into());
        ctx.stated.manager = Some("MBoss".into());
        assert!(assess(&PolicyConfig::default(), &acc, &ctx, NOW).escalations.is_empty());
        // Cyrillic "а" in place of Latin "a": a different department, so it escalates.
        ctx.stated.department = Some("Fin\u{0430}nce".into());
        let a = assess(&PolicyConfig::default(), &acc, &ctx, NOW);
        assert_eq!(a.escalations[0].rule, RiskRule::StatedDetailsMismatch);
        assert!(a.escalations[0].reason.contains("department"));
    }

    #[test]
    fn flagged_account_escalates() {
        let mut acc = account(AccountTier::Privileged);
        acc.flagged = true;
        let a = assess(&PolicyConfig::default(), &acc, &walk_up(), NOW);
        assert_eq!(a.effective_tier, AccountTier::Highest);
    }

    #[test]
    fn a_collector_flag_raises_to_its_tier() {
        let mut ctx = walk_up();
        ctx.cross_desk.flag = Some(CrossDeskFlag { tier: AccountTier::Highest, reason: "reported".into() });
        let a = assess(&PolicyConfig::default(), &account(AccountTier::Standard), &ctx, NOW);
        assert_eq!(a.effective_tier, AccountTier::Highest);
        assert!(a.escalations.iter().any(|e| e.rule == RiskRule::FlaggedAccount && e.reason.contains("reported")));
    }

    #[test]
    fn cross_desk_history_unavailable_is_the_stricter_case() {
        let policy = PolicyConfig::default();
        let mut ctx = walk_up();
        ctx.cross_desk.unavailable = Some("the collector cannot be reached".into());
        let blind = assess(&policy, &account(AccountTier::Standard), &ctx, NOW);
        let mut seen = walk_up();
        seen.previous_resets = vec![NOW - Duration::hours(1)];
        seen.previous_failures = vec![NOW - Duration::hours(1)];
        let both = assess(&policy, &account(AccountTier::Standard), &seen, NOW);
        assert_eq!(blind.effective_tier, both.effective_tier, "as if reset and failed recently");
        assert_eq!(blind.added_steps, both.added_steps);
        let reasons: Vec<&str> = blind
            .escalations
            .iter()
            .filter(|e| e.rule == RiskRule::CrossDeskHistoryUnavailable)
            .map(|e| e.reason.as_str())
            .collect();
        assert_eq!(reasons.len(), 2);
        assert!(reasons
            .iter()
            .all(|r| r.starts_with("cross-desk history unavailable (the collector cannot be reached)")));
    }

    #[test]
    fn requirements_include_added_steps() {
        let mut a = RiskAssessment::new(AccountTier::Standard);
        a.escalate(RiskRule::OutsideBusinessHours, Effect::Require(Method::ManagerApproval), "x".into());
        assert!(a.requirements(&PolicyConfig::default()).required_steps.contains(&Method::ManagerApproval));
    }
}
