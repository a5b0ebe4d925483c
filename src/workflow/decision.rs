//! Decisions: what the engine tells the adapters and the agent to do next.

use serde::Serialize;
use time::OffsetDateTime;

use super::facts::{HandoffFact, ResetFacts};
use crate::password::PasswordSpec;
use crate::policy::{AuthorityRefusal, Escalation, Missing};
use crate::tier::AgentTier;

/// Why a reset session was refused (it is over; a new request starts again).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "refusal", rename_all = "kebab-case")]
pub enum Refusal {
    /// The agent may not do this reset (tier, scope, own account).
    NotAuthorised { reason: AuthorityRefusal },
    /// Verification is locked for this account.
    Locked {
        #[serde(with = "time::serde::rfc3339")]
        until: OffsetDateTime,
    },
    /// The effective tier needs an in-person ID check, and the requester is not at the desk.
    InPersonRequired,
    /// Manager approval is required but the account has no manager with a usable address.
    NoManagerOnFile,
    /// No registered channel left for the password that the verification did not use.
    NoHandoffChannel,
    /// Emergency path refused (only admins, with a reason, on a locked account).
    EmergencyRefused { reason: String },
    /// The manager on file denied the request: it ends here.
    ManagerDenied,
}

impl Refusal {
    /// What the agent reads: why, and what to do next.
    pub fn explain(&self) -> String {
        match self {
            Self::NotAuthorised { reason } => reason.to_string(),
            Self::Locked { until } => format!(
                "verification for this account is locked until {until} after too many failed attempts; \
                 the security team was notified. Ask the requester to come back after that time, \
                 or ask an admin agent to use the emergency path if the matter cannot wait"
            ),
            Self::InPersonRequired => "this reset needs an in-person government ID check: ask the requester to come to the desk".into(),
            Self::NoManagerOnFile => "this reset needs the manager's approval, but no manager with a usable address is on file: ask HR to update the record".into(),
            Self::NoHandoffChannel => "no registered channel is left for the password that the verification did not use: ask the requester to come to the desk".into(),
            Self::EmergencyRefused { reason } => reason.clone(),
            Self::ManagerDenied => "the account holder's manager denied this request, which ends it; the security team was told: do not go on, and report it if the requester insists".into(),
        }
    }
}

/// Who receives a notification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "to", rename_all = "kebab-case")]
pub enum Recipient {
    /// A registered address or number of the account.
    Contact { label: String, value: String },
    /// The account's manager (the notifier looks up their address).
    Manager { username: String },
    /// The configured security team address.
    SecurityTeam,
}

/// What a notification is about. Each carries "this wasn't me" instructions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum NotificationKind {
    /// A reset was requested; it can happen no earlier than `earliest`.
    ResetRequested {
        #[serde(with = "time::serde::rfc3339")]
        earliest: OffsetDateTime,
    },
    /// The password was reset.
    ResetCompleted,
    /// Too many failed verifications.
    VerificationLocked {
        #[serde(with = "time::serde::rfc3339")]
        until: OffsetDateTime,
    },
    /// An admin used the emergency path.
    EmergencyOverride { reason: String },
    /// The agent ended a request on suspicion of fraud or coercion.
    FraudSuspected { note: String },
}

/// A message for the notifier adapter to deliver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Notification {
    pub kind: NotificationKind,
    /// The account concerned.
    pub username: String,
    pub request_id: String,
    pub recipients: Vec<Recipient>,
}

/// The engine's output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "decision", rename_all = "kebab-case")]
pub enum Decision {
    /// Risk rules fired: show the agent each reason.
    Escalated { escalations: Vec<Escalation> },
    /// What is still required before the reset.
    NeedSteps { missing: Vec<Missing> },
    /// Ask the notifier to send a one-time code (the adapter issues it).
    SendCode {
        label: String,
        to: String,
        #[serde(with = "time::serde::rfc3339")]
        not_after: OffsetDateTime,
    },
    /// Show the number on file for the agent to dial.
    ShowCallbackNumber { label: String, number: String },
    /// Ask the notifier to send an approval request to the manager's registered address.
    RequestManagerApproval { manager: String, address: String },
    /// A second agent of at least `min_tier` must sign this digest with their slot 9c key.
    RequestCoSignature { digest: String, min_tier: AgentTier },
    /// Everything passed but the cooling-off period runs until `until`.
    Wait {
        #[serde(with = "time::serde::rfc3339")]
        until: OffsetDateTime,
        reason: String,
    },
    /// The session is over: tell the agent why and what to do.
    Refuse { refusal: Refusal, explanation: String },
    /// Write a refusal or lockout record.
    WriteRecord { facts: Box<ResetFacts> },
    /// Write the signed intent record; report `IntentRecorded` once it is durable.
    WriteIntent { facts: Box<ResetFacts> },
    /// The intent is durable: generate the temporary password and set it with
    /// must-change-at-next-login. `context_words` feed the blocklist check.
    ExecuteReset { username: String, password: PasswordSpec, context_words: Vec<String> },
    /// Write the signed outcome record.
    WriteOutcome { facts: Box<ResetFacts> },
    /// Deliver the temporary password this way, then zeroize it.
    HandOff { handoff: HandoffFact },
    /// Deliver a notification.
    Notify { notification: Notification },
    /// These passed steps are too old to count now (`[policy.freshness]`); they are
    /// missing again and must be redone.
    StepsExpired { methods: Vec<crate::policy::Method>, reason: String },
    /// Lock verification for the account until `until` and flag it until `flag_until`.
    LockVerification {
        username: String,
        #[serde(with = "time::serde::rfc3339")]
        until: OffsetDateTime,
        #[serde(with = "time::serde::rfc3339")]
        flag_until: OffsetDateTime,
    },
}
