//! The anomaly rules: observations in, alerts out. The rules' memory (recent resets
//! per agent and account, contact points seen, when a rule last fired for a subject,
//! each desk's last heartbeat) is kept behind [`AnomalyState`], in the collector's
//! database, so that several instances on one database see the same history.
//!
//! A threshold rule fires when its count goes over the limit, then not again for the
//! same subject within its window (one alert per burst, not one per record).

use super::config::AnomalyConfig;
use super::facts::{Observation, Observed, RecordRef};
use crate::store::StoreError;

/// The kinds of alert the rules raise (the `kind` of the alert row).
pub mod kind {
    pub const AGENT_PRIVILEGED_RESETS: &str = "agent_privileged_resets";
    pub const ACCOUNT_RESET_OFTEN: &str = "account_reset_often";
    pub const SHARED_CONTACT_POINT: &str = "shared_contact_point";
    pub const RESET_OUTSIDE_HOURS: &str = "reset_outside_hours";
    pub const HEARTBEAT_MISSING: &str = "heartbeat_missing";
    /// Raised by ingest itself when a desk's seq goes backwards (its refusal code).
    pub const SEQ_BACKWARDS: &str = "seq_backwards";
    pub const CONTACT_CHANGED_AFTER_RESET: &str = "contact_changed_after_reset";
}

/// What the rules remember of a record: under `topic` and `subject` (e.g. the
/// privileged resets of agent "alice"), an `other` value (the account).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remembered {
    pub topic: &'static str,
    pub subject: String,
    pub other: String,
    pub at_ms: u64,
    pub record: RecordRef,
}

/// Topics of remembered records.
pub mod topic {
    /// Subject: agent; other: account.
    pub const PRIVILEGED_RESET: &str = "privileged_reset";
    /// Subject: account; other: agent.
    pub const RESET: &str = "reset";
    /// Subject: a normalised contact point; other: account.
    pub const CONTACT: &str = "contact";
}

/// The rules' memory, kept in the collector's database.
pub trait AnomalyState {
    fn remember(&mut self, r: &Remembered) -> Result<(), StoreError>;
    /// What was remembered under `topic`/`subject` dated `from_ms..=to_ms`, oldest first.
    fn recall(&self, topic: &str, subject: &str, from_ms: u64, to_ms: u64) -> Result<Vec<Remembered>, StoreError>;
    /// Fire `rule` for `subject` at `at_ms` (record time) unless it fired for it less
    /// than `window_ms` before: whether it fires. One statement in the database, so
    /// two instances never both fire for one burst.
    fn try_fire(&mut self, rule: &str, subject: &str, at_ms: u64, window_ms: u64) -> Result<bool, StoreError>;
    /// A presence record of a desk log: its latest, if newer than the one kept.
    fn saw_presence(&mut self, record: &RecordRef, at_ms: u64) -> Result<(), StoreError>;
    /// Desks whose latest presence record is dated before `before_ms` and has raised
    /// no missing-heartbeat alert yet: (that record, its time).
    fn silent_desks(&self, before_ms: u64) -> Result<Vec<(RecordRef, u64)>, StoreError>;
    /// The missing-heartbeat alert for the desk's presence record `record` was raised.
    fn silence_alerted(&mut self, record: &RecordRef) -> Result<(), StoreError>;
    /// What follows, up to [`end_batch`](Self::end_batch), is one batch's work, which
    /// a store may keep in one transaction (SQLite: one disk sync instead of one per
    /// row). A store shared by instances should not: their counts must see each
    /// other's rows at once.
    fn begin_batch(&mut self) -> Result<(), StoreError> {
        Ok(())
    }
    /// Keep what the batch wrote.
    fn end_batch(&mut self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// An alert the rules raise, with the records it stands on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleAlert {
    pub kind: &'static str,
    pub reason: String,
    /// The record that tripped the rule.
    pub trigger: RecordRef,
    /// Every record it stands on (the trigger included), oldest first.
    pub records: Vec<RecordRef>,
}

/// Records an alert names at most (the newest ones are kept).
pub const MAX_RECORDS: usize = 50;

const MINUTE_MS: u64 = 60_000;

/// The rules with their configuration.
#[derive(Debug, Clone)]
pub struct Rules {
    pub config: AnomalyConfig,
}

fn hhmm(minute: u32) -> String {
    format!("{:02}:{:02}", minute / 60, minute % 60)
}

/// The distinct `other` values (accounts) of what was remembered, sorted.
fn distinct_others(seen: &[Remembered]) -> Vec<&str> {
    let mut others: Vec<&str> = seen.iter().map(|r| r.other.as_str()).collect();
    others.sort_unstable();
    others.dedup();
    others
}

/// The alert `obs` tripped, standing on the records `seen` (and `obs`'s own).
fn alert_on(kind: &'static str, reason: String, obs: &Observation, seen: &[Remembered]) -> RuleAlert {
    RuleAlert { kind, reason, trigger: obs.record, records: cited(seen.iter().map(|r| r.record).collect(), obs.record) }
}

fn cited(mut records: Vec<RecordRef>, trigger: RecordRef) -> Vec<RecordRef> {
    if !records.contains(&trigger) {
        records.push(trigger);
    }
    let skip = records.len().saturating_sub(MAX_RECORDS);
    records.drain(..skip);
    records
}

impl Rules {
    pub fn new(config: AnomalyConfig) -> Self {
        Self { config }
    }

    /// Remember what `obs` tells and return the alerts it raises.
    pub fn observe(&self, state: &mut dyn AnomalyState, obs: &Observation) -> Result<Vec<RuleAlert>, StoreError> {
        let mut alerts = Vec::new();
        match &obs.what {
            Observed::Reset { agent, account, privileged, contacts } => {
                self.remember_reset(state, obs, agent, account, *privileged, contacts)?;
                alerts.extend(self.outside_hours(obs, agent, account));
                if *privileged {
                    alerts.extend(self.agent_privileged(state, obs, agent)?);
                }
                alerts.extend(self.account_often(state, obs, account)?);
                for c in contacts {
                    alerts.extend(self.shared_contact(state, obs, c)?);
                }
            }
            Observed::ContactChanged { account, by } => {
                alerts.extend(self.contact_after_reset(state, obs, account, by)?)
            }
            Observed::Presence => state.saw_presence(&obs.record, obs.at_ms)?,
            Observed::Other => {}
        }
        Ok(alerts)
    }

    fn remember_reset(
        &self,
        state: &mut dyn AnomalyState,
        obs: &Observation,
        agent: &str,
        account: &str,
        privileged: bool,
        contacts: &[String],
    ) -> Result<(), StoreError> {
        let mut remember = |topic, subject: &str, other: &str| {
            state.remember(&Remembered {
                topic,
                subject: subject.to_owned(),
                other: other.to_owned(),
                at_ms: obs.at_ms,
                record: obs.record,
            })
        };
        remember(topic::RESET, account, agent)?;
        if privileged {
            remember(topic::PRIVILEGED_RESET, agent, account)?;
        }
        for c in contacts {
            remember(topic::CONTACT, c, account)?;
        }
        Ok(())
    }

    /// A threshold rule: what was remembered under `topic`/`subject` within `window_ms`
    /// up to `obs`, if `over` says it passes the limit and `rule` did not fire for the
    /// subject within the window.
    #[allow(clippy::too_many_arguments)]
    fn burst(
        state: &mut dyn AnomalyState,
        obs: &Observation,
        rule: &str,
        topic: &str,
        subject: &str,
        window_ms: u64,
        over: impl Fn(&[Remembered]) -> bool,
    ) -> Result<Option<Vec<Remembered>>, StoreError> {
        let seen = state.recall(topic, subject, obs.at_ms.saturating_sub(window_ms), obs.at_ms)?;
        if !over(&seen) || !state.try_fire(rule, subject, obs.at_ms, window_ms)? {
            return Ok(None);
        }
        Ok(Some(seen))
    }

    fn agent_privileged(
        &self,
        state: &mut dyn AnomalyState,
        obs: &Observation,
        agent: &str,
    ) -> Result<Option<RuleAlert>, StoreError> {
        let rule = &self.config.agent_privileged_resets;
        if !rule.enabled {
            return Ok(None);
        }
        let (kind, window) = (kind::AGENT_PRIVILEGED_RESETS, rule.window_minutes * MINUTE_MS);
        let over = |seen: &[Remembered]| distinct_others(seen).len() > rule.max as usize;
        let Some(seen) = Self::burst(state, obs, kind, topic::PRIVILEGED_RESET, agent, window, over)? else {
            return Ok(None);
        };
        let accounts = distinct_others(&seen);
        let reason = format!(
            "agent {agent} reset {} privileged or highest-tier accounts within {} minutes (more than {}): {}",
            accounts.len(),
            rule.window_minutes,
            rule.max,
            accounts.join(", ")
        );
        Ok(Some(alert_on(kind, reason, obs, &seen)))
    }

    fn account_often(
        &self,
        state: &mut dyn AnomalyState,
        obs: &Observation,
        account: &str,
    ) -> Result<Option<RuleAlert>, StoreError> {
        let rule = &self.config.account_resets;
        if !rule.enabled {
            return Ok(None);
        }
        let (kind, window) = (kind::ACCOUNT_RESET_OFTEN, rule.window_minutes * MINUTE_MS);
        let over = |seen: &[Remembered]| seen.len() > rule.max as usize;
        let Some(seen) = Self::burst(state, obs, kind, topic::RESET, account, window, over)? else { return Ok(None) };
        let reason = format!(
            "account {account} was reset {} times within {} minutes (more than {})",
            seen.len(),
            rule.window_minutes,
            rule.max
        );
        Ok(Some(alert_on(kind, reason, obs, &seen)))
    }

    fn shared_contact(
        &self,
        state: &mut dyn AnomalyState,
        obs: &Observation,
        contact: &str,
    ) -> Result<Option<RuleAlert>, StoreError> {
        let rule = &self.config.shared_contact;
        if !rule.enabled {
            return Ok(None);
        }
        let (kind, window) = (kind::SHARED_CONTACT_POINT, rule.window_days * 24 * 60 * MINUTE_MS);
        let over = |seen: &[Remembered]| distinct_others(seen).len() >= rule.min_accounts.max(2) as usize;
        let Some(seen) = Self::burst(state, obs, kind, topic::CONTACT, contact, window, over)? else {
            return Ok(None);
        };
        let accounts = distinct_others(&seen);
        let reason = format!(
            "the contact point {contact} was used for {} accounts within {} days: {}",
            accounts.len(),
            rule.window_days,
            accounts.join(", ")
        );
        Ok(Some(alert_on(kind, reason, obs, &seen)))
    }

    fn outside_hours(&self, obs: &Observation, agent: &str, account: &str) -> Option<RuleAlert> {
        let hours = &self.config.business_hours;
        if !hours.enabled || hours.covers(obs.at_ms) {
            return None;
        }
        let (day, minute) = super::config::local(obs.at_ms, hours.utc_offset);
        Some(RuleAlert {
            kind: kind::RESET_OUTSIDE_HOURS,
            reason: format!(
                "agent {agent} reset account {account} at {} on a {day:?} (local time), outside business hours {}-{} on {:?}",
                hhmm(minute),
                hhmm(hours.start.0),
                hhmm(hours.end.0),
                hours.days
            ),
            trigger: obs.record,
            records: vec![obs.record],
        })
    }

    fn contact_after_reset(
        &self,
        state: &mut dyn AnomalyState,
        obs: &Observation,
        account: &str,
        by: &str,
    ) -> Result<Option<RuleAlert>, StoreError> {
        let rule = &self.config.contact_after_reset;
        if !rule.enabled {
            return Ok(None);
        }
        let window = rule.within_minutes * MINUTE_MS;
        let resets = state.recall(topic::RESET, account, obs.at_ms.saturating_sub(window), obs.at_ms)?;
        let Some(last) = resets.last() else { return Ok(None) };
        let reason = format!(
            "{by} changed a contact point of account {account} {} minutes after agent {} reset it (within {} minutes)",
            (obs.at_ms.saturating_sub(last.at_ms)) / MINUTE_MS,
            last.other,
            rule.within_minutes
        );
        Ok(Some(alert_on(kind::CONTACT_CHANGED_AFTER_RESET, reason, obs, &resets)))
    }

    /// The missing-heartbeat alerts at `now_ms` (collector clock): each desk whose
    /// latest presence record is older than the allowed silence, once per record.
    pub fn silent_desks(&self, state: &mut dyn AnomalyState, now_ms: u64) -> Result<Vec<RuleAlert>, StoreError> {
        let rule = &self.config.heartbeat;
        if !rule.enabled {
            return Ok(Vec::new());
        }
        let before = now_ms.saturating_sub(rule.max_silence_seconds * 1000);
        let mut alerts = Vec::new();
        for (record, at_ms) in state.silent_desks(before)? {
            state.silence_alerted(&record)?;
            alerts.push(RuleAlert {
                kind: kind::HEARTBEAT_MISSING,
                reason: format!(
                    "desk log {} sent no presence record for {} s (allowed {} s); its last is seq {}",
                    hex::encode(record.log_id),
                    now_ms.saturating_sub(at_ms) / 1000,
                    rule.max_silence_seconds,
                    record.seq
                ),
                trigger: record,
                records: vec![record],
            });
        }
        Ok(alerts)
    }
}

/// The rules' memory in a process, for the rules' own tests and tools that need no
/// database.
#[derive(Debug, Default)]
pub struct MemoryState {
    remembered: Vec<Remembered>,
    fired: std::collections::HashMap<(String, String), u64>,
    /// Per desk log: its latest presence record, its time, and whether it alerted.
    presence: std::collections::HashMap<resetdesk::audit::Hash32, (RecordRef, u64, bool)>,
}

impl AnomalyState for MemoryState {
    fn remember(&mut self, r: &Remembered) -> Result<(), StoreError> {
        self.remembered.push(r.clone());
        Ok(())
    }

    fn recall(&self, topic: &str, subject: &str, from_ms: u64, to_ms: u64) -> Result<Vec<Remembered>, StoreError> {
        let mut out: Vec<Remembered> = self
            .remembered
            .iter()
            .filter(|r| r.topic == topic && r.subject == subject && (from_ms..=to_ms).contains(&r.at_ms))
            .cloned()
            .collect();
        out.sort_by_key(|r| r.at_ms);
        Ok(out)
    }

    fn try_fire(&mut self, rule: &str, subject: &str, at_ms: u64, window_ms: u64) -> Result<bool, StoreError> {
        let key = (rule.to_owned(), subject.to_owned());
        if self.fired.get(&key).is_some_and(|t| t.saturating_add(window_ms) > at_ms) {
            return Ok(false);
        }
        self.fired.insert(key, at_ms);
        Ok(true)
    }

    fn saw_presence(&mut self, record: &RecordRef, at_ms: u64) -> Result<(), StoreError> {
        let newer = self.presence.get(&record.log_id).is_none_or(|(r, _, _)| r.seq < record.seq);
        if newer {
            self.presence.insert(record.log_id, (*record, at_ms, false));
        }
        Ok(())
    }

    fn silent_desks(&self, before_ms: u64) -> Result<Vec<(RecordRef, u64)>, StoreError> {
        Ok(self
            .presence
            .values()
            .filter(|(_, at, alerted)| !alerted && *at < before_ms)
            .map(|(r, at, _)| (*r, *at))
            .collect())
    }

    fn silence_alerted(&mut self, record: &RecordRef) -> Result<(), StoreError> {
        if let Some(p) = self.presence.get_mut(&record.log_id) {
            if p.0 == *record {
                p.2 = true;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::anomaly::config::*;

    const MONDAY_NOON: u64 = 1_704_067_200_000 + 12 * 3_600_000;

    fn rec(seq: u64) -> RecordRef {
        RecordRef { log_id: [1; 32], seq, entry_hash: [seq as u8; 32] }
    }

    fn reset(seq: u64, at_ms: u64, agent: &str, account: &str, privileged: bool, contacts: &[&str]) -> Observation {
        Observation {
            record: rec(seq),
            at_ms,
            what: Observed::Reset {
                agent: agent.into(),
                account: account.into(),
                privileged,
                contacts: contacts.iter().map(|c| (*c).to_owned()).collect(),
            },
        }
    }

    fn kinds(rules: &Rules, state: &mut MemoryState, obs: &[Observation]) -> Vec<(&'static str, u64)> {
        obs.iter().flat_map(|o| rules.observe(state, o).unwrap()).map(|a| (a.kind, a.trigger.seq)).collect()
    }

    fn only(rule: impl FnOnce(&mut AnomalyConfig)) -> Rules {
        let mut c = AnomalyConfig::default();
        c.agent_privileged_resets.enabled = false;
        c.account_resets.enabled = false;
        c.shared_contact.enabled = false;
        c.business_hours.enabled = false;
        c.heartbeat.enabled = false;
        c.contact_after_reset.enabled = false;
        rule(&mut c);
        Rules::new(c)
    }

    #[test]
    fn an_agent_over_the_privileged_limit_alerts_once_per_window_and_counts_accounts_not_resets() {
        let rules =
            only(|c| c.agent_privileged_resets = AgentPrivilegedResets { enabled: true, max: 2, window_minutes: 10 });
        let mut s = MemoryState::default();
        let m = MINUTE_MS;
        let obs = [
            reset(1, MONDAY_NOON, "alice", "a", true, &[]),
            reset(2, MONDAY_NOON + m, "alice", "a", true, &[]), // the same account again
            reset(3, MONDAY_NOON + 2 * m, "alice", "b", true, &[]),
            reset(4, MONDAY_NOON + 3 * m, "alice", "std", false, &[]), // not privileged
            reset(5, MONDAY_NOON + 4 * m, "bob", "c", true, &[]),      // another agent
            reset(6, MONDAY_NOON + 5 * m, "alice", "c", true, &[]),    // third account: over 2
            reset(7, MONDAY_NOON + 6 * m, "alice", "d", true, &[]),    // same burst: quiet
            reset(8, MONDAY_NOON + 30 * m, "alice", "e", true, &[]),   // window passed: 1 account
        ];
        assert_eq!(kinds(&rules, &mut s, &obs), [(kind::AGENT_PRIVILEGED_RESETS, 6)]);
        let a = rules.observe(&mut s, &reset(9, MONDAY_NOON + 31 * m, "alice", "f", true, &[])).unwrap();
        assert!(a.is_empty());
        let alert = rules.observe(&mut MemoryState::default(), &obs[0]).unwrap();
        assert!(alert.is_empty());
    }

    #[test]
    fn an_account_reset_too_often_alerts_with_every_reset_it_stands_on() {
        let rules = only(|c| c.account_resets = AccountResets { enabled: true, max: 2, window_minutes: 60 });
        let mut s = MemoryState::default();
        let obs: Vec<_> = (1..=3).map(|k| reset(k, MONDAY_NOON + k * MINUTE_MS, "alice", "jdoe", false, &[])).collect();
        let alerts: Vec<_> = obs.iter().flat_map(|o| rules.observe(&mut s, o).unwrap()).collect();
        assert_eq!(alerts.len(), 1);
        assert_eq!(alerts[0].records, [rec(1), rec(2), rec(3)]);
        assert!(alerts[0].reason.contains("jdoe was reset 3 times"), "{}", alerts[0].reason);
    }

    #[test]
    fn one_contact_point_for_two_accounts_alerts() {
        let rules = only(|c| c.shared_contact.enabled = true);
        let mut s = MemoryState::default();
        let obs = [
            reset(1, MONDAY_NOON, "alice", "a", false, &["+441"]),
            reset(2, MONDAY_NOON + 1, "bob", "a", false, &["+441"]),
            reset(3, MONDAY_NOON + 2, "bob", "b", false, &["x@y.z", "+441"]),
        ];
        assert_eq!(kinds(&rules, &mut s, &obs), [(kind::SHARED_CONTACT_POINT, 3)]);
    }

    #[test]
    fn a_reset_outside_business_hours_alerts_and_one_inside_does_not() {
        let rules = only(|c| c.business_hours.enabled = true);
        let mut s = MemoryState::default();
        let night = MONDAY_NOON + 12 * 3_600_000 + 30 * MINUTE_MS; // Tuesday 00:30 UTC
        let obs = [reset(1, MONDAY_NOON, "alice", "a", false, &[]), reset(2, night, "alice", "a", false, &[])];
        let alerts: Vec<_> = obs.iter().flat_map(|o| rules.observe(&mut s, o).unwrap()).collect();
        assert_eq!(alerts.len(), 1);
        assert!(alerts[0].reason.contains("at 00:30 on a Tue"), "{}", alerts[0].reason);
    }

    #[test]
    fn a_contact_change_soon_after_a_reset_alerts_and_a_later_one_does_not() {
        let rules = only(|c| c.contact_after_reset = ContactAfterReset { enabled: true, within_minutes: 30 });
        let mut s = MemoryState::default();
        let change = |seq, at_ms, account: &str| Observation {
            record: rec(seq),
            at_ms,
            what: Observed::ContactChanged { account: account.into(), by: "root".into() },
        };
        let obs = [
            reset(1, MONDAY_NOON, "alice", "jdoe", false, &[]),
            change(2, MONDAY_NOON + 10 * MINUTE_MS, "someone-else"),
            change(3, MONDAY_NOON + 29 * MINUTE_MS, "jdoe"),
            change(4, MONDAY_NOON + 31 * MINUTE_MS, "jdoe"),
        ];
        let alerts: Vec<_> = obs.iter().flat_map(|o| rules.observe(&mut s, o).unwrap()).collect();
        assert_eq!(alerts.len(), 1);
        assert_eq!(alerts[0].records, [rec(1), rec(3)]);
    }

    #[test]
    fn a_silent_desk_alerts_once_per_last_heartbeat() {
        let rules =
            only(|c| c.heartbeat = Heartbeat { enabled: true, max_silence_seconds: 60, check_every_seconds: 1 });
        let mut s = MemoryState::default();
        let hb = |seq, at_ms| Observation { record: rec(seq), at_ms, what: Observed::Presence };
        rules.observe(&mut s, &hb(1, MONDAY_NOON)).unwrap();
        assert!(rules.silent_desks(&mut s, MONDAY_NOON + 59_000).unwrap().is_empty());
        let a = rules.silent_desks(&mut s, MONDAY_NOON + 61_000).unwrap();
        assert_eq!((a.len(), a[0].kind, a[0].trigger), (1, kind::HEARTBEAT_MISSING, rec(1)));
        assert!(rules.silent_desks(&mut s, MONDAY_NOON + 120_000).unwrap().is_empty(), "once");
        // A new heartbeat, then silence again: a new alert.
        rules.observe(&mut s, &hb(5, MONDAY_NOON + 130_000)).unwrap();
        assert_eq!(rules.silent_desks(&mut s, MONDAY_NOON + 200_000).unwrap().len(), 1);
    }

    #[test]
    fn a_rule_turned_off_stays_quiet() {
        let rules = only(|_| {});
        let mut s = MemoryState::default();
        let obs: Vec<_> = (1..=10).map(|k| reset(k, k, "alice", "jdoe", true, &["+1"])).collect();
        assert!(kinds(&rules, &mut s, &obs).is_empty());
    }
}
