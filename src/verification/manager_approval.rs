//! Manager approval through the manager's registered address (CISA AA23-320A:
//! out-of-band manager approval). The engine asks for approval to be sent to an
//! address of the manager on file; the adapter delivers the request and reports who
//! answered, through which address. Only the manager on file, answering through the
//! address the request went to, can approve.

use serde::{Deserialize, Serialize};

use super::{FailReason, InputError, Verdict};
use crate::directory::{Account, ContactPoint};
use crate::policy::authority::is_plain_identifier;

/// The manager's answer, as the adapter received it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManagerResponse {
    /// Directory username of whoever answered.
    pub approver: String,
    /// The registered address the answer came through.
    pub via_address: String,
    pub approved: bool,
    /// The approval channel's evidence of the answer, kept in the reset's facts: the
    /// collector's signed note over the decision (`None` from the embedded inbox).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision_note: Option<String>,
}

/// Where to send the approval request: the manager's first e-mail address that is
/// not in `excluded` (recently changed).
pub fn approval_address<'a>(
    manager: &'a Account,
    excluded: &std::collections::BTreeSet<String>,
) -> Option<&'a ContactPoint> {
    manager.emails.iter().find(|e| !excluded.contains(&e.value))
}

/// Check a response against the account's manager and the address the request went to.
pub fn check(account: &Account, requested_via: &str, response: &ManagerResponse) -> Result<Verdict, InputError> {
    if !is_plain_identifier(&response.approver) {
        return Err(InputError::Format { field: "approver", expected: "a directory username" });
    }
    let manager_matches = account.manager.as_deref().is_some_and(|m| m.eq_ignore_ascii_case(&response.approver));
    if !manager_matches
        || response.via_address != requested_via
        || response.approver.eq_ignore_ascii_case(&account.username)
    {
        return Ok(Verdict::Failed(FailReason::WrongApprover));
    }
    Ok(if response.approved { Verdict::Passed } else { Verdict::Failed(FailReason::Declined) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::risk::tests::account;
    use crate::tier::AccountTier;

    fn resp(approver: &str, via: &str, approved: bool) -> ManagerResponse {
        ManagerResponse { approver: approver.into(), via_address: via.into(), approved, decision_note: None }
    }

    #[test]
    fn only_the_manager_on_file_through_the_requested_address() {
        let a = account(AccountTier::Privileged); // manager: mboss
        assert_eq!(check(&a, "mboss@example.com", &resp("mboss", "mboss@example.com", true)), Ok(Verdict::Passed));
        assert_eq!(
            check(&a, "mboss@example.com", &resp("mboss", "mboss@example.com", false)),
            Ok(Verdict::Failed(FailReason::Declined))
        );
        assert_eq!(
            check(&a, "mboss@example.com", &resp("other", "mboss@example.com", true)),
            Ok(Verdict::Failed(FailReason::WrongApprover))
        );
        assert_eq!(
            check(&a, "mboss@example.com", &resp("mboss", "attacker@evil.test", true)),
            Ok(Verdict::Failed(FailReason::WrongApprover))
        );
    }

    #[test]
    fn no_manager_on_file_means_no_approval() {
        let mut a = account(AccountTier::Privileged);
        a.manager = None;
        assert_eq!(
            check(&a, "x@example.com", &resp("mboss", "x@example.com", true)),
            Ok(Verdict::Failed(FailReason::WrongApprover))
        );
    }

    #[test]
    fn lookalike_approver_is_bad_input() {
        let a = account(AccountTier::Privileged);
        assert!(check(&a, "m@example.com", &resp("mb\u{043E}ss", "m@example.com", true)).is_err());
        assert!(check(&a, "m@example.com", &resp("", "m@example.com", true)).is_err());
    }
}
