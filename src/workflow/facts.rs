//! The facts of a reset, for the signed audit records (intent, outcome, refusal,
//! lockout). Complete enough to reconstruct who did what on which evidence, and free
//! of secrets by construction: no answers, codes, passwords, document images or full
//! document numbers ever reach these types.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::password::PasswordSpec;
use crate::policy::{Channel, Escalation, Method, StatedDetails};
use crate::tier::{AccountTier, AgentTier};
use crate::verification::government_id::IdInspection;
use crate::verification::Verdict;

/// Which record these facts are for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FactsKind {
    /// Written and durable before the directory is touched.
    Intent,
    /// Written after the directory answered.
    RequestOutcome,
    /// The reset was refused or cancelled; the directory was never touched.
    Refusal,
    /// Too many failed verifications: the account is locked for verification.
    Lockout,
}

/// The agent who did the reset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentFact {
    pub username: String,
    pub tier: AgentTier,
    /// Hex SHA-256 of the agent's slot 9c public key.
    pub key_id: String,
}

/// The account being reset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetFact {
    pub username: String,
    pub base_tier: AccountTier,
    pub effective_tier: AccountTier,
    pub department: String,
}

/// Extra, non-secret detail of a step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "detail", rename_all = "kebab-case")]
pub enum StepDetail {
    None,
    /// The contact point a code was sent to or a callback dialled.
    Contact {
        label: String,
        value: String,
    },
    /// TOTP time step accepted (to refuse replays).
    TotpStep {
        step: u64,
    },
    /// Government-ID checklist facts.
    Document(IdInspection),
    /// Manager who answered, and through which address.
    Manager {
        approver: String,
        via_address: String,
        /// The collector's signed note over the manager's decision (approval by link).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signed_decision: Option<String>,
    },
    /// Co-signer identity.
    CoSigner {
        username: String,
        tier: AgentTier,
        key_id: String,
    },
}

/// One verification step and its typed result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepFact {
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub method: Method,
    pub verdict: Verdict,
    pub detail: StepDetail,
}

/// A manager approval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalFact {
    pub manager: String,
    pub via_address: String,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// The collector's signed note over the approval (C2SP signed note, checkable
    /// with the collector's verifier key); `None` from the embedded (demo) inbox.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed_decision: Option<String>,
}

/// The second agent who co-signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoSignerFact {
    pub username: String,
    pub tier: AgentTier,
    /// Hex SHA-256 of the co-signer's slot 9c public key.
    pub key_id: String,
    /// Hex of the approval digest they signed.
    pub digest: String,
    /// Hex of their DER signature over `digest`.
    pub signature: String,
}

/// Where the temporary password goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "channel", rename_all = "kebab-case")]
pub enum HandoffChannel {
    /// The customer-facing window at the desk; the agent's screen stays masked.
    CustomerWindow,
    /// A registered e-mail address (not one used for verification).
    RegisteredEmail { address: String },
    /// A registered phone, by text message (not one used for verification).
    RegisteredPhone { number: String },
}

/// The hand-off decision as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandoffFact {
    pub channel: HandoffChannel,
    /// True only when policy lets agents see the password; then `agent_view_reason` says why.
    pub agent_may_view: bool,
    pub agent_view_reason: Option<String>,
}

/// Pointer to the durable intent record (from the audit store).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntentRef {
    pub seq: u64,
    /// Hex of the record's entry hash.
    pub entry_hash: String,
}

/// How the reason of a request the agent ended on suspicion of fraud begins
/// ([`RequestOutcome::Cancelled`]); what follows is the agent's note.
pub const SUSPECTED_FRAUD_REASON: &str = "suspected fraud: ";

/// How it ended (or `Pending` in the intent record).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum RequestOutcome {
    Pending,
    Succeeded,
    DirectoryFailed {
        message: String,
    },
    Refused {
        reason: String,
    },
    Cancelled {
        reason: String,
    },
    LockedOut {
        #[serde(with = "time::serde::rfc3339")]
        until: OffsetDateTime,
    },
}

/// Everything an audit record needs about a reset session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResetFacts {
    pub kind: FactsKind,
    pub request_id: String,
    #[serde(with = "time::serde::rfc3339")]
    pub opened_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub agent: AgentFact,
    pub target: TargetFact,
    /// "embedded", "openldap", "active-directory".
    pub directory_backend: String,
    pub channel: Channel,
    /// What the requester stated at intake (name, department, manager, location,
    /// reason) and the ticket number; fields not asked are absent.
    #[serde(default)]
    pub intake: StatedDetails,
    pub escalations: Vec<Escalation>,
    /// Every step attempted, passed or failed, in order.
    pub steps: Vec<StepFact>,
    pub approvals: Vec<ApprovalFact>,
    pub co_signer: Option<CoSignerFact>,
    /// Set when an admin used the emergency path past a lockout: the reason given.
    pub emergency_override: Option<String>,
    pub handoff: Option<HandoffFact>,
    /// How the temporary password is generated (never the password itself).
    pub password_spec: Option<PasswordSpec>,
    pub intent: Option<IntentRef>,
    pub outcome: RequestOutcome,
    /// In a done outcome: hex SHA-256 of the holder's "this wasn't me" token (never
    /// the token), so the collector can tell which reset a report is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report_sha256: Option<String>,
}
