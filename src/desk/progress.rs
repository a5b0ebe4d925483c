//! Live progress of a reset as it executes: each step reported the moment it is done
//! (intent signed, directory updated, outcome signed, hand-off prepared, holder
//! notified), so the screen can show where a reset is while the card signs (a real
//! YubiKey may wait for a touch) or the directory answers.
//!
//! The observer gets a secret-free [`ExecutionStep`], never the decision itself (an
//! `ExecuteReset` decision carries the temporary password).

use serde::Serialize;

use crate::workflow::Decision;

/// One completed step of an executing reset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ExecutionStep {
    IntentSigned,
    DirectoryUpdated,
    OutcomeSigned,
    HandOffPrepared,
    Notified,
}

impl ExecutionStep {
    /// The step `decision` completes once the desk has executed it, if it is one.
    pub fn of(decision: &Decision) -> Option<Self> {
        Some(match decision {
            Decision::WriteIntent { .. } => Self::IntentSigned,
            Decision::ExecuteReset { .. } => Self::DirectoryUpdated,
            Decision::WriteOutcome { .. } => Self::OutcomeSigned,
            Decision::HandOff { .. } => Self::HandOffPrepared,
            Decision::Notify { .. } => Self::Notified,
            _ => return None,
        })
    }

    /// What the agent reads.
    pub fn label(self) -> &'static str {
        match self {
            Self::IntentSigned => "Intent record signed with your YubiKey and stored",
            Self::DirectoryUpdated => "Directory updated: temporary password, must change at next login",
            Self::OutcomeSigned => "Outcome record signed and stored",
            Self::HandOffPrepared => "Hand-off prepared",
            Self::Notified => "Account holder and manager notified (outbox)",
        }
    }
}

/// Told of each step as it completes (the desk app forwards it to the window).
pub type ProgressObserver = Box<dyn FnMut(ExecutionStep) + Send>;
