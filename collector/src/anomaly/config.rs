//! `[anomaly]` in `collector.toml`: each rule's thresholds and windows, business hours
//! and their time zone offset; every rule has `enabled` (default true). Times the
//! rules compare are the records' own timestamps (the desk's clock).
//!
//! ```toml
//! [anomaly.agent_privileged_resets]   # one agent resets more than `max` privileged
//! max = 5                             # (or highest-tier) accounts within the window
//! window_minutes = 60
//! [anomaly.account_resets]            # one account reset more than `max` times
//! max = 3
//! window_minutes = 1440
//! [anomaly.shared_contact]            # one callback number or e-mail address used
//! min_accounts = 2                    # for at least `min_accounts` accounts
//! window_days = 90
//! [anomaly.business_hours]            # resets outside these hours (local time at
//! start = "07:00"                     # `utc_offset`) or days raise an alert
//! end = "19:00"
//! utc_offset = "+01:00"
//! days = ["mon", "tue", "wed", "thu", "fri"]
//! [anomaly.heartbeat]                 # a desk whose last presence record is older
//! max_silence_seconds = 3600          # than this; checked every `check_every_seconds`
//! check_every_seconds = 60
//! [anomaly.contact_after_reset]       # an admin set-contact on an account within
//! within_minutes = 30                 # this long after a reset of it
//! ```

use serde::{Deserialize, Deserializer};

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AnomalyConfig {
    pub agent_privileged_resets: AgentPrivilegedResets,
    pub account_resets: AccountResets,
    pub shared_contact: SharedContact,
    pub business_hours: BusinessHours,
    pub heartbeat: Heartbeat,
    pub contact_after_reset: ContactAfterReset,
}

/// One agent resetting more than `max` privileged or highest-tier accounts (distinct
/// accounts) within `window_minutes`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentPrivilegedResets {
    pub enabled: bool,
    pub max: u32,
    pub window_minutes: u64,
}

impl Default for AgentPrivilegedResets {
    fn default() -> Self {
        Self { enabled: true, max: 5, window_minutes: 60 }
    }
}

/// One account reset more than `max` times within `window_minutes`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccountResets {
    pub enabled: bool,
    pub max: u32,
    pub window_minutes: u64,
}

impl Default for AccountResets {
    fn default() -> Self {
        Self { enabled: true, max: 3, window_minutes: 24 * 60 }
    }
}

/// One callback number or e-mail address on file (a step's contact point, or the
/// hand-off's registered address) used for `min_accounts` accounts or more within
/// `window_days`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SharedContact {
    pub enabled: bool,
    pub min_accounts: u32,
    pub window_days: u64,
}

impl Default for SharedContact {
    fn default() -> Self {
        Self { enabled: true, min_accounts: 2, window_days: 90 }
    }
}

/// Business hours: a reset whose record is dated outside `start..end` local time
/// (UTC + `utc_offset`) or on a day not in `days` raises an alert.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BusinessHours {
    pub enabled: bool,
    /// `HH:MM`, local.
    pub start: HourMinute,
    /// `HH:MM`, local, after `start`.
    pub end: HourMinute,
    /// `+HH:MM` or `-HH:MM` (a fixed offset; daylight saving is not followed).
    pub utc_offset: UtcOffset,
    pub days: Vec<Weekday>,
}

impl Default for BusinessHours {
    fn default() -> Self {
        Self {
            enabled: true,
            start: HourMinute(7 * 60),
            end: HourMinute(19 * 60),
            utc_offset: UtcOffset(0),
            days: vec![Weekday::Mon, Weekday::Tue, Weekday::Wed, Weekday::Thu, Weekday::Fri],
        }
    }
}

/// A desk's heartbeat missing: its last presence record (login, logout, lock, unlock)
/// is older than `max_silence_seconds`, checked every `check_every_seconds` by `serve`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Heartbeat {
    pub enabled: bool,
    pub max_silence_seconds: u64,
    pub check_every_seconds: u64,
}

impl Default for Heartbeat {
    fn default() -> Self {
        Self { enabled: true, max_silence_seconds: 3600, check_every_seconds: 60 }
    }
}

/// An admin's set-contact on an account within `within_minutes` after a reset of it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ContactAfterReset {
    pub enabled: bool,
    pub within_minutes: u64,
}

impl Default for ContactAfterReset {
    fn default() -> Self {
        Self { enabled: true, within_minutes: 30 }
    }
}

/// A local time of day, minutes after midnight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct HourMinute(pub u32);

impl<'de> Deserialize<'de> for HourMinute {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let bad = || serde::de::Error::custom(format!("{s:?} is not a time of day; write HH:MM, e.g. \"08:30\""));
        let (h, m) = s.split_once(':').ok_or_else(bad)?;
        let (h, m): (u32, u32) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
        if h > 24 || m > 59 || (h == 24 && m != 0) {
            return Err(bad());
        }
        Ok(HourMinute(h * 60 + m))
    }
}

/// A fixed offset from UTC, in minutes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UtcOffset(pub i32);

impl<'de> Deserialize<'de> for UtcOffset {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let bad = || serde::de::Error::custom(format!("{s:?} is not a UTC offset; write +HH:MM or -HH:MM"));
        let (sign, rest) = match s.as_bytes().first() {
            Some(b'+') => (1, &s[1..]),
            Some(b'-') => (-1, &s[1..]),
            _ => return Err(bad()),
        };
        let (h, m) = rest.split_once(':').ok_or_else(bad)?;
        let (h, m): (i32, i32) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
        if !(0..=14).contains(&h) || !(0..=59).contains(&m) {
            return Err(bad());
        }
        Ok(UtcOffset(sign * (h * 60 + m)))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Weekday {
    Mon,
    Tue,
    Wed,
    Thu,
    Fri,
    Sat,
    Sun,
}

impl Weekday {
    const ALL: [Weekday; 7] =
        [Weekday::Mon, Weekday::Tue, Weekday::Wed, Weekday::Thu, Weekday::Fri, Weekday::Sat, Weekday::Sun];
}

/// Where a time falls in local terms: the weekday and the minute of the day.
pub(crate) fn local(at_ms: u64, offset: UtcOffset) -> (Weekday, u32) {
    let secs = i64::try_from(at_ms / 1000).unwrap_or(i64::MAX) + i64::from(offset.0) * 60;
    let day = secs.div_euclid(86_400);
    let minute = u32::try_from(secs.rem_euclid(86_400) / 60).unwrap_or(0);
    // 1970-01-01 was a Thursday (index 3 from Monday).
    let weekday = Weekday::ALL[usize::try_from((day + 3).rem_euclid(7)).unwrap_or(0)];
    (weekday, minute)
}

impl BusinessHours {
    /// Whether `at_ms` (UTC) falls within business hours.
    pub fn covers(&self, at_ms: u64) -> bool {
        let (day, minute) = local(at_ms, self.utc_offset);
        self.days.contains(&day) && self.start.0 <= minute && minute < self.end.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_sections_keep_the_other_defaults_and_bad_times_are_refused() {
        let c: AnomalyConfig = toml::from_str(
            "[account_resets]\nmax = 1\n[business_hours]\nstart = \"08:30\"\nutc_offset = \"-05:00\"\n[heartbeat]\nenabled = false\n",
        )
        .unwrap();
        assert_eq!(c.account_resets, AccountResets { enabled: true, max: 1, window_minutes: 1440 });
        assert_eq!((c.business_hours.start, c.business_hours.end), (HourMinute(510), HourMinute(19 * 60)));
        assert_eq!(c.business_hours.utc_offset, UtcOffset(-300));
        assert!(!c.heartbeat.enabled && c.shared_contact.enabled);
        for bad in ["start = \"8h\"", "start = \"25:00\"", "utc_offset = \"01:00\"", "days = [\"funday\"]"] {
            let e = toml::from_str::<AnomalyConfig>(&format!("[business_hours]\n{bad}\n")).unwrap_err();
            assert!(e.to_string().contains("business_hours") || e.to_string().contains("line"), "{e}");
        }
        assert!(toml::from_str::<AnomalyConfig>("[account_resets]\nmax_count = 1\n").is_err());
    }

    #[test]
    fn business_hours_follow_the_offset_and_the_days() {
        let hours = BusinessHours { utc_offset: UtcOffset(60), ..BusinessHours::default() };
        // 2024-01-01 was a Monday. 06:30 UTC is 07:30 at +01:00: inside.
        let monday = 1_704_067_200_000u64;
        assert!(hours.covers(monday + (6 * 60 + 30) * 60_000));
        // 05:59 UTC = 06:59 local: outside; 18:00 UTC = 19:00 local: outside (end excluded).
        assert!(!hours.covers(monday + (5 * 60 + 59) * 60_000));
        assert!(!hours.covers(monday + 18 * 3_600_000));
        // Saturday noon.
        assert!(!hours.covers(monday + 5 * 86_400_000 + 12 * 3_600_000));
        // Sunday 23:30 UTC is Monday 00:30 local: a Monday, but before 07:00.
        assert_eq!(local(monday - 30 * 60_000, UtcOffset(60)), (Weekday::Mon, 30));
    }
}
