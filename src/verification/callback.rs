//! Callback to the number on file. The agent dials a number the engine picked from the
//! directory; there is no way to enter a number the requester gives. The step records
//! the agent's confirmation that the account holder answered and confirmed the request.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::{FailReason, Verdict};
use crate::directory::{Account, ContactPoint};

/// The agent's report after the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallbackReport {
    /// Someone answered and the agent is satisfied it was the account holder.
    pub reached_account_holder: bool,
    /// The account holder confirmed they asked for this reset.
    pub holder_confirmed_request: bool,
}

/// The phone numbers on file that may be called: none that changed recently
/// (`excluded`) nor any already used in this session (`used`).
pub fn numbers_to_call<'a>(
    account: &'a Account,
    excluded: &BTreeSet<String>,
    used: &BTreeSet<String>,
) -> Vec<&'a ContactPoint> {
    account.phones.iter().filter(|p| !excluded.contains(&p.value) && !used.contains(&p.value)).collect()
}

/// The verdict of a callback.
pub fn verdict(report: CallbackReport) -> Verdict {
    match (report.reached_account_holder, report.holder_confirmed_request) {
        (false, _) => Verdict::Failed(FailReason::NotReached),
        // The real holder says they did not ask: evidence of an impersonation attempt.
        (true, false) => Verdict::Failed(FailReason::Declined),
        (true, true) => Verdict::Passed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::risk::tests::{account, contact, NOW};
    use crate::tier::AccountTier;
    use time::Duration;

    #[test]
    fn only_numbers_on_file_not_recently_changed() {
        let mut a = account(AccountTier::Standard);
        a.phones.push(contact("+49 170 000", "personal", NOW - Duration::days(2)));
        let excluded: BTreeSet<String> = ["+49 170 000".to_owned()].into();
        let n = numbers_to_call(&a, &excluded, &BTreeSet::new());
        assert_eq!(n.iter().map(|c| c.value.as_str()).collect::<Vec<_>>(), ["+49 30 1234567"]);
        let used: BTreeSet<String> = ["+49 30 1234567".to_owned()].into();
        assert!(numbers_to_call(&a, &excluded, &used).is_empty());
    }

    #[test]
    fn verdicts() {
        let r = |a, b| verdict(CallbackReport { reached_account_holder: a, holder_confirmed_request: b });
        assert_eq!(r(true, true), Verdict::Passed);
        assert_eq!(r(false, true), Verdict::Failed(FailReason::NotReached));
        assert_eq!(r(true, false), Verdict::Failed(FailReason::Declined));
        assert!(!FailReason::NotReached.counts_toward_lockout());
        assert!(FailReason::Declined.counts_toward_lockout());
    }
}
