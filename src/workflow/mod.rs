//! The reset workflow engine: a pure state machine (sans-IO).
//!
//! Events go in ([`WorkflowEvent`]: agent actions, step results, signatures, the directory's
//! answer, each with its time); decisions come out ([`Decision`]: next steps,
//! refusals with reasons, records to write, the reset to execute, the hand-off,
//! notifications). The engine does no IO and reads no clock. The token, directory,
//! audit store and notifier adapters drive it:
//!
//! ```text
//! adapter                               engine
//! Session::open(policy, OpenRequest) ─► Escalated, Notify(ResetRequested), NeedSteps
//! WorkflowEvent::CodeRequested            ────► SendCode                (notifier sends it)
//! WorkflowEvent::CodeChecked{verdict}     ────► NeedSteps ...
//! WorkflowEvent::ResetRequested           ────► WriteIntent(facts)      (audit store signs + fsyncs)
//! WorkflowEvent::IntentRecorded{seq,hash} ────► ExecuteReset            (directory: temp password + must-change)
//! WorkflowEvent::DirectoryResult(ok)      ────► WriteOutcome, HandOff, Notify(ResetCompleted)
//! ```
//!
//! `ExecuteReset` exists only as the answer to `IntentRecorded`: no directory change
//! without a durable, signed intent record.

pub mod decision;
pub mod event;
pub mod facts;
pub mod input;
mod session;

pub use decision::{Decision, Notification, NotificationKind, Recipient, Refusal};
pub use event::{ContactKind, ContactRef, OpenRequest, WorkflowEvent};
pub use facts::{FactsKind, HandoffChannel, RequestOutcome, ResetFacts};
pub use session::{ContactUse, Pending, Phase, Session, Status, WorkflowError};

#[cfg(test)]
mod tests;
