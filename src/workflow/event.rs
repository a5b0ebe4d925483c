//! Events: what the adapters and the agent tell the engine. Each carries its time;
//! the engine never reads a clock.

use time::OffsetDateTime;

use crate::directory::Account;
use crate::policy::{ActingAgent, RequestContext};
use crate::verification::callback::CallbackReport;
use crate::verification::co_signature::CoSignature;
use crate::verification::government_id::IdInspection;
use crate::verification::manager_approval::ManagerResponse;
use crate::verification::Verdict;

/// Everything the adapters gather before a reset session opens.
#[derive(Debug, Clone)]
pub struct OpenRequest {
    /// Unique id of this request (chosen by the adapter, e.g. a random UUID).
    pub request_id: String,
    pub at: OffsetDateTime,
    /// The logged-in agent (from the token layer).
    pub agent: ActingAgent,
    /// The account to reset (from the directory).
    pub account: Account,
    /// The account's manager, if it has one (from the directory).
    pub manager: Option<Account>,
    /// Channel, stated details, earlier resets and failures (from the audit store).
    pub context: RequestContext,
    /// "embedded", "openldap", "active-directory".
    pub directory_backend: String,
    /// An admin's reason for the emergency path past a verification lockout.
    pub emergency_reason: Option<String>,
}

/// Kind of registered contact point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ContactKind {
    Email,
    Phone,
}

/// A contact point on file, by position in the account's list (never a typed value).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContactRef {
    pub kind: ContactKind,
    pub index: usize,
}

/// Something that happened during a reset session.
#[derive(Debug, Clone)]
pub enum WorkflowEvent {
    /// The adapter checked security answers with [`crate::verification::security_answers`].
    SecurityAnswersChecked { at: OffsetDateTime, verdict: Verdict },
    /// The requester gave their employee ID and date of hire (checked by the engine).
    EmployeeRecordGiven { at: OffsetDateTime, employee_id: String, date_of_hire: String },
    /// The adapter checked a TOTP code with [`crate::verification::totp`].
    TotpChecked { at: OffsetDateTime, verdict: Verdict, accepted_step: Option<u64> },
    /// The agent asks to send a one-time code to a contact point on file.
    CodeRequested { at: OffsetDateTime, to: ContactRef },
    /// The adapter checked the code the requester read out ([`crate::verification::one_time_code`]).
    CodeChecked { at: OffsetDateTime, verdict: Verdict },
    /// The agent asks for the number to call back.
    CallbackRequested { at: OffsetDateTime },
    /// The agent reports how the callback went.
    CallbackReported { at: OffsetDateTime, report: CallbackReport },
    /// The agent asks for the manager's approval.
    ManagerApprovalRequested { at: OffsetDateTime },
    /// The manager answered (through the notifier adapter).
    ManagerResponded { at: OffsetDateTime, response: ManagerResponse },
    /// The agent completed the government-ID checklist.
    IdInspected { at: OffsetDateTime, inspection: IdInspection },
    /// A second agent signed the approval digest (signature verified by the token adapter).
    CoSigned { at: OffsetDateTime, signature: CoSignature },
    /// The agent asks to reset now.
    ResetRequested { at: OffsetDateTime },
    /// The audit store made the intent record durable.
    IntentRecorded { at: OffsetDateTime, seq: u64, entry_hash: [u8; 32] },
    /// The directory answered the reset. `Err` holds the directory's message (no secrets).
    DirectoryResult { at: OffsetDateTime, result: Result<(), String> },
    /// The agent (or the account holder, via "this wasn't me") stopped the request.
    Cancelled { at: OffsetDateTime, reason: String },
    /// The agent suspects fraud or coercion (a discreet action): the request ends and
    /// the security team is alerted.
    FraudSuspected { at: OffsetDateTime, note: String },
}

impl WorkflowEvent {
    /// When it happened.
    pub fn at(&self) -> OffsetDateTime {
        match self {
            Self::SecurityAnswersChecked { at, .. }
            | Self::EmployeeRecordGiven { at, .. }
            | Self::TotpChecked { at, .. }
            | Self::CodeRequested { at, .. }
            | Self::CodeChecked { at, .. }
            | Self::CallbackRequested { at }
            | Self::CallbackReported { at, .. }
            | Self::ManagerApprovalRequested { at }
            | Self::ManagerResponded { at, .. }
            | Self::IdInspected { at, .. }
            | Self::CoSigned { at, .. }
            | Self::ResetRequested { at }
            | Self::IntentRecorded { at, .. }
            | Self::DirectoryResult { at, .. }
            | Self::Cancelled { at, .. }
            | Self::FraudSuspected { at, .. } => *at,
        }
    }

    /// A short name for errors and logs.
    pub fn name(&self) -> &'static str {
        match self {
            Self::SecurityAnswersChecked { .. } => "security-answers-checked",
            Self::EmployeeRecordGiven { .. } => "employee-record-given",
            Self::TotpChecked { .. } => "totp-checked",
            Self::CodeRequested { .. } => "code-requested",
            Self::CodeChecked { .. } => "code-checked",
            Self::CallbackRequested { .. } => "callback-requested",
            Self::CallbackReported { .. } => "callback-reported",
            Self::ManagerApprovalRequested { .. } => "manager-approval-requested",
            Self::ManagerResponded { .. } => "manager-responded",
            Self::IdInspected { .. } => "id-inspected",
            Self::CoSigned { .. } => "co-signed",
            Self::ResetRequested { .. } => "reset-requested",
            Self::IntentRecorded { .. } => "intent-recorded",
            Self::DirectoryResult { .. } => "directory-result",
            Self::Cancelled { .. } => "cancelled",
            Self::FraudSuspected { .. } => "fraud-suspected",
        }
    }
}
