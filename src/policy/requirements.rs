//! The checks an effective tier demands, and whether a set of passed steps meets them.

use std::collections::BTreeSet;

use serde::Serialize;
use time::Duration;

use super::{FactorKind, Method, PolicyConfig};
use crate::tier::AccountTier;

/// Everything a reset must have before the engine will write the intent record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Requirements {
    /// The effective tier these requirements belong to.
    pub tier: AccountTier,
    /// Independent factors needed (distinct methods; knowledge counts once).
    pub min_factors: u8,
    /// Methods that count as factors.
    pub factor_methods: BTreeSet<Method>,
    /// Steps that must pass whatever the factor count (approvals, ID, added by rules).
    pub required_steps: BTreeSet<Method>,
    /// Time between opening the request and the earliest reset (whole seconds when
    /// serialised).
    #[serde(with = "cooling_off_seconds")]
    pub cooling_off: Duration,
}

mod cooling_off_seconds {
    use serde::{Deserialize, Deserializer, Serializer};
    use time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i64(d.whole_seconds())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        i64::deserialize(d).map(Duration::seconds)
    }
}

/// Something still missing before the reset may go ahead.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "missing", rename_all = "kebab-case")]
pub enum Missing {
    /// `needed` more independent factors from `choose_from`.
    Factors { needed: u8, choose_from: Vec<Method> },
    /// This step must pass.
    Step { method: Method },
}

/// Independent factors among `methods`: distinct methods, all knowledge methods as one.
pub fn independent_count(methods: impl IntoIterator<Item = Method>) -> usize {
    let distinct: BTreeSet<Method> = methods.into_iter().collect();
    let knowledge = distinct.iter().any(|m| m.kind() == FactorKind::Knowledge);
    distinct.iter().filter(|m| m.kind() != FactorKind::Knowledge).count() + usize::from(knowledge)
}

impl PolicyConfig {
    /// Requirements of `tier`, combined with those of every lower tier (the strictest
    /// of each), so raising the tier can never lower a requirement even under a
    /// configuration that skipped [`PolicyConfig::validate`].
    pub fn requirements(&self, tier: AccountTier) -> Requirements {
        let mut r = Requirements {
            tier,
            min_factors: 0,
            factor_methods: Method::ALL.into_iter().collect(),
            required_steps: BTreeSet::new(),
            cooling_off: Duration::ZERO,
        };
        for t in AccountTier::ALL.into_iter().filter(|t| *t <= tier) {
            let p = self.tier(t);
            r.min_factors = r.min_factors.max(p.min_factors);
            r.factor_methods.retain(|m| p.factor_methods.contains(m) && m.kind() != FactorKind::Approval);
            if p.manager_approval {
                r.required_steps.insert(Method::ManagerApproval);
            }
            if p.government_id {
                r.required_steps.insert(Method::GovernmentId);
            }
            if p.co_signature {
                r.required_steps.insert(Method::CoSignature);
            }
            r.cooling_off = r.cooling_off.max(Duration::minutes(i64::from(p.cooling_off_minutes)));
        }
        r.min_factors = r.min_factors.max(1);
        r
    }
}

impl Requirements {
    /// Add a step (from an escalation rule). Never removes anything.
    pub fn require(&mut self, method: Method) {
        self.required_steps.insert(method);
    }

    /// Independent factors counted from the passed steps (each method once).
    pub fn counted_factors(&self, passed: &BTreeSet<Method>) -> usize {
        independent_count(passed.iter().copied().filter(|m| self.factor_methods.contains(m)))
    }

    /// What is still missing, in the order an agent should do it.
    pub fn missing(&self, passed: &BTreeSet<Method>) -> Vec<Missing> {
        let mut out = Vec::new();
        let counted = self.counted_factors(passed);
        if counted < usize::from(self.min_factors) {
            let choose_from = self
                .factor_methods
                .iter()
                .copied()
                .filter(|m| !passed.contains(m))
                .filter(|m| {
                    m.kind() != FactorKind::Knowledge
                        || !passed.iter().any(|p| p.kind() == FactorKind::Knowledge && self.factor_methods.contains(p))
                })
                .collect();
            let needed = u8::try_from(usize::from(self.min_factors) - counted).unwrap_or(u8::MAX);
            out.push(Missing::Factors { needed, choose_from });
        }
        out.extend(self.required_steps.iter().filter(|m| !passed.contains(m)).map(|&method| Missing::Step { method }));
        out
    }

    /// True when every requirement is met by the passed steps.
    pub fn satisfied_by(&self, passed: &BTreeSet<Method>) -> bool {
        self.missing(passed).is_empty()
    }

    /// True when `self` demands at least everything `other` does.
    pub fn at_least_as_strict_as(&self, other: &Requirements) -> bool {
        self.min_factors >= other.min_factors
            && self.factor_methods.is_subset(&other.factor_methods)
            && self.required_steps.is_superset(&other.required_steps)
            && self.cooling_off >= other.cooling_off
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Method::*;

    fn set(ms: &[Method]) -> BTreeSet<Method> {
        ms.iter().copied().collect()
    }

    #[test]
    fn knowledge_methods_count_once() {
        let r = PolicyConfig::default().requirements(AccountTier::Standard);
        assert_eq!(r.counted_factors(&set(&[SecurityAnswers, EmployeeRecord])), 1);
        assert!(!r.satisfied_by(&set(&[SecurityAnswers, EmployeeRecord])));
        assert!(r.satisfied_by(&set(&[SecurityAnswers, Totp])));
        assert!(r.satisfied_by(&set(&[Callback, OneTimeCode])));
    }

    #[test]
    fn privileged_needs_possession_factors_and_the_manager() {
        let r = PolicyConfig::default().requirements(AccountTier::Privileged);
        assert!(!r.satisfied_by(&set(&[SecurityAnswers, Totp, ManagerApproval])));
        assert!(!r.satisfied_by(&set(&[Callback, Totp])));
        assert!(r.satisfied_by(&set(&[Callback, Totp, ManagerApproval])));
        assert_eq!(r.cooling_off, Duration::minutes(10));
    }

    #[test]
    fn highest_needs_id_and_co_signature() {
        let r = PolicyConfig::default().requirements(AccountTier::Highest);
        assert!(!r.satisfied_by(&set(&[Callback, Totp, ManagerApproval, CoSignature])));
        assert!(r.satisfied_by(&set(&[GovernmentId, Totp, ManagerApproval, CoSignature])));
        let missing = r.missing(&set(&[Totp]));
        assert!(missing.contains(&Missing::Step { method: GovernmentId }));
        assert!(matches!(missing[0], Missing::Factors { needed: 1, .. }));
    }

    #[test]
    fn tiers_are_cumulative_even_when_misconfigured() {
        let mut p = PolicyConfig::default();
        p.highest.manager_approval = false; // invalid, but requirements stay monotone
        p.highest.factor_methods.push(SecurityAnswers);
        let (s, pr, h) = (
            p.requirements(AccountTier::Standard),
            p.requirements(AccountTier::Privileged),
            p.requirements(AccountTier::Highest),
        );
        assert!(pr.at_least_as_strict_as(&s) && h.at_least_as_strict_as(&pr));
        assert!(h.required_steps.contains(&ManagerApproval));
        assert!(!h.factor_methods.contains(&SecurityAnswers));
    }

    #[test]
    fn added_steps_only_add() {
        let base = PolicyConfig::default().requirements(AccountTier::Standard);
        let mut more = base.clone();
        more.require(Callback);
        assert!(more.at_least_as_strict_as(&base));
        assert!(!more.satisfied_by(&set(&[SecurityAnswers, Totp])));
        // Callback is both a factor and required: it counts once as each.
        assert!(more.satisfied_by(&set(&[SecurityAnswers, Callback])));
    }
}
