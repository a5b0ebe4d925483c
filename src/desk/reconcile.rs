//! Reconciliation of reset intents left without an outcome (the desk stopped between
//! the durable intent and the outcome record): what the directory shows decides
//! whether the reset happened. Pure; the [`super::Desk`] reads the directory and
//! writes the signed outcome.
//!
//! Every reset sets the password and must-change in one directory operation, and
//! the directory stamps the change time. So:
//! - no password change since the intent: the reset did not happen;
//! - a change since the intent with must-change pending: it happened — but the
//!   password was never handed over, so the holder needs a new reset;
//! - anything else (the backend cannot tell, or the change is no longer pending):
//!   a person must look.

use serde::Serialize;
use time::OffsetDateTime;

/// What the directory says about an open intent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "finding", rename_all = "kebab-case")]
pub enum Finding {
    /// The reset happened (password changed after the intent, must-change pending).
    Applied {
        #[serde(with = "time::serde::rfc3339")]
        changed_at: OffsetDateTime,
    },
    /// The reset did not happen (no password change since the intent).
    NotApplied {
        #[serde(with = "time::serde::rfc3339::option")]
        last_change: Option<OffsetDateTime>,
    },
    /// The directory cannot settle it: a person must check the account.
    NeedsHuman { why: String },
}

/// One open intent and what was done about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reconciliation {
    pub intent_seq: u64,
    pub request_id: String,
    pub target: String,
    pub finding: Finding,
    /// Seq of the signed outcome record written, if the finding allowed one.
    pub outcome_seq: Option<u64>,
}

/// Decide from the intent's time and the account's directory state.
pub fn classify(intent_at: OffsetDateTime, must_change: bool, changed_at: Option<OffsetDateTime>) -> Finding {
    match changed_at {
        None => Finding::NeedsHuman { why: "the directory does not report when the password last changed; check the account by hand".into() },
        Some(t) if t < intent_at => Finding::NotApplied { last_change: Some(t) },
        Some(t) if must_change => Finding::Applied { changed_at: t },
        Some(_) => Finding::NeedsHuman {
            why: "the password changed after the intent but no change is pending: the holder may have chosen a new one already, or someone else set it; check the account by hand".into(),
        },
    }
}

/// The facts of a reconciliation outcome record. Secret-free.
#[derive(Debug, Clone, Serialize)]
pub struct ReconciliationFacts<'a> {
    pub reconciliation: &'a Finding,
    pub request_id: &'a str,
    pub target: TargetName<'a>,
    /// The agent whose key signs this record.
    pub reconciled_by: &'a str,
    #[serde(with = "time::serde::rfc3339")]
    pub intent_at: OffsetDateTime,
    pub must_change_pending: bool,
    pub note: &'static str,
}

/// `{"username": ...}`, the shape the history reader looks for.
#[derive(Debug, Clone, Serialize)]
pub struct TargetName<'a> {
    pub username: &'a str,
}

/// What the record says to whoever reads it.
pub fn note(finding: &Finding) -> &'static str {
    match finding {
        Finding::Applied { .. } => {
            "the temporary password was set but never handed over; start a new reset for the account holder"
        }
        Finding::NotApplied { .. } => "the directory was not changed; the request may be started again",
        Finding::NeedsHuman { .. } => "not settled: check the account by hand",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const AT: OffsetDateTime = datetime!(2026-11-25 10:00 UTC);

    #[test]
    fn the_directory_change_time_decides() {
        assert_eq!(
            classify(AT, true, Some(AT - time::Duration::days(3))),
            Finding::NotApplied { last_change: Some(AT - time::Duration::days(3)) }
        );
        assert_eq!(
            classify(AT, false, Some(AT - time::Duration::seconds(1))),
            Finding::NotApplied { last_change: Some(AT - time::Duration::seconds(1)) }
        );
        assert_eq!(
            classify(AT, true, Some(AT + time::Duration::seconds(1))),
            Finding::Applied { changed_at: AT + time::Duration::seconds(1) }
        );
        assert!(matches!(classify(AT, false, Some(AT + time::Duration::seconds(1))), Finding::NeedsHuman { .. }));
        assert!(matches!(classify(AT, true, None), Finding::NeedsHuman { .. }));
    }
}
