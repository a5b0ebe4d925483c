//! The reset session: a pure state machine from events to decisions.
//!
//! ```text
//! open ──► Verifying ──ResetRequested──► AwaitingIntent ──IntentRecorded──► AwaitingDirectory
//!   │         │  (all steps passed,         (WriteIntent)      (ExecuteReset)        │
//!   │         │   cooling-off over)                                     DirectoryResult
//!   ▼         ▼                                                                    ▼
//! Refused   LockedOut / Cancelled                         Succeeded (WriteOutcome, HandOff, Notify)
//!                                                         DirectoryFailed (WriteOutcome)
//! ```
//!
//! Invariants (checked by `tests/policy_props.rs`):
//! - `ExecuteReset` is emitted only in answer to `IntentRecorded`, only after
//!   `WriteIntent`, which is emitted only when every requirement of the effective tier
//!   (and every step added by escalation) has passed and the agent is authorised.
//! - A step counts once: passed methods are a set; failures never count.
//! - An event that returns an error leaves the session unchanged.

use std::collections::BTreeSet;

use serde::Serialize;
use time::{Duration, OffsetDateTime, UtcOffset};

use super::decision::{Decision, Notification, NotificationKind, Recipient, Refusal};
use super::event::{ContactKind, ContactRef, OpenRequest, WorkflowEvent};
use super::facts::*;
use crate::directory::{Account, ContactPoint};
use crate::password::PasswordSpec;
use crate::policy::authority::{check_agent, check_co_signer, is_plain_identifier, required_agent_tier, CoSignerClaim};
use crate::policy::risk::assess;
use crate::policy::{
    ActingAgent, AuthorityRefusal, Channel, Method, Missing, PolicyConfig, Requirements, RiskAssessment, RiskRule,
    StatedDetails,
};
use crate::tier::{AccountTier, AgentTier};
use crate::verification::co_signature::{self, approval_digest, ApprovalStatement};
use crate::verification::{
    callback, check_text, employee_record, government_id, is_bidi_control, manager_approval, FailReason, InputError,
    Verdict,
};

/// Where a session is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// Collecting verification steps.
    Verifying,
    /// `WriteIntent` was emitted; waiting for `IntentRecorded`.
    AwaitingIntent,
    /// `ExecuteReset` was emitted; waiting for `DirectoryResult`.
    AwaitingDirectory,
    /// Never the engine's own phase: the desk reports it while the directory has the new
    /// password but the outcome record is not yet signed (`ResetRun::phase`).
    OutcomePending,
    Succeeded,
    DirectoryFailed,
    Refused,
    LockedOut,
    Cancelled,
}

impl Phase {
    /// True once the session is over.
    pub fn is_final(self) -> bool {
        !matches!(self, Self::Verifying | Self::AwaitingIntent | Self::AwaitingDirectory | Self::OutcomePending)
    }
}

/// An event the engine will not take, with what to do instead. The session is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WorkflowError {
    #[error("{event} is not possible now (the session is {phase:?}); follow the steps on screen")]
    IllegalTransition { event: &'static str, phase: Phase },
    #[error("the event is dated before the previous one; check the desk computer's clock")]
    TimeWentBackwards,
    #[error("the event's time is not plausible (before 1970 or after 9000); check the desk computer's clock")]
    ImplausibleTime,
    #[error(transparent)]
    Input(#[from] InputError),
    #[error("the request cannot be opened: {0}")]
    BadRequest(&'static str),
    #[error("{0} has already passed in this session; continue with the remaining steps")]
    AlreadyPassed(Method),
    #[error("no {0} is pending; request it first")]
    NothingPending(Method),
    #[error(
        "that contact point may not be used: it is not on file, changed recently, or was already used in this session"
    )]
    ContactNotEligible,
    #[error("wait before sending another code: the next may be sent at {retry_at}")]
    CodeRateLimited { retry_at: OffsetDateTime },
    #[error("the limit of codes for this session is reached; use another method")]
    CodeLimitReached,
    #[error("no phone number on file can be used for a callback; use another method")]
    NoCallbackNumber,
    #[error("a government ID can only be inspected with the requester at the desk")]
    NotInPerson,
    #[error("co-signature refused: {0}")]
    CoSignature(AuthorityRefusal),
    #[error(
        "the co-signature comes last: complete the other steps first, so the co-signer approves the whole verification"
    )]
    CoSignTooEarly,
    #[error("the reset cannot go ahead yet; still missing: {0}")]
    StepsMissing(String),
}

/// What the agent's screen shows about a session. Holds nothing secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Status {
    pub phase: Phase,
    pub base_tier: AccountTier,
    pub effective_tier: AccountTier,
    /// Each fired risk rule with its reason.
    pub escalations: Vec<crate::policy::Escalation>,
    pub passed: Vec<Method>,
    pub missing: Vec<Missing>,
    #[serde(with = "time::serde::rfc3339")]
    pub earliest_reset: OffsetDateTime,
    /// Set when a co-signature is required: the lowest agent tier that may give it.
    pub co_signer_min_tier: Option<AgentTier>,
}

/// What a session waits for from outside (see [`Session::pending`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Pending {
    /// A one-time code was sent to this contact point and not yet entered correctly.
    pub code_sent_to: Option<ContactPoint>,
    /// The agent was shown this number to call back and has not reported the call.
    pub callback_to: Option<ContactPoint>,
    /// The manager was asked through this address and has not answered.
    pub manager_asked_at: Option<String>,
}

/// Whether a contact point on file may be used for verification now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ContactUse {
    Usable,
    /// Changed within the risk window: never used for a code, a callback or the hand-off.
    ChangedRecently,
    /// Already used for a verification step in this session.
    AlreadyUsed,
}

/// One reset request, from opening to outcome.
/// Serialisable so a parked reset survives a restart ([`crate::desk::parking`], which
/// signs the snapshot with the agent's card): it holds verdicts, never a secret.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Session {
    policy: PolicyConfig,
    request_id: String,
    opened_at: OffsetDateTime,
    last_at: OffsetDateTime,
    agent: ActingAgent,
    account: Account,
    manager: Option<Account>,
    channel: Channel,
    /// What the requester stated at intake, cleaned.
    stated: StatedDetails,
    directory_backend: String,
    assessment: RiskAssessment,
    requirements: Requirements,
    phase: Phase,
    passed: BTreeSet<Method>,
    steps: Vec<StepFact>,
    /// Failures counting toward lockout in other sessions (from the account's history,
    /// refreshed by [`Session::refresh_earlier_failures`]).
    earlier_failures: Vec<OffsetDateTime>,
    /// This session's failures counting toward lockout.
    failures: Vec<OffsetDateTime>,
    codes_sent: Vec<OffsetDateTime>,
    pending_code: Option<ContactPoint>,
    pending_callback: Option<ContactPoint>,
    pending_manager_address: Option<String>,
    /// Contact values used for verification: never used for the hand-off.
    used_contacts: BTreeSet<String>,
    approvals: Vec<ApprovalFact>,
    co_signer: Option<CoSignerFact>,
    emergency: Option<String>,
    handoff: Option<HandoffFact>,
    intent: Option<IntentRef>,
    outcome: RequestOutcome,
}

/// Text the adapter passes through to records (reasons, directory messages): bounded,
/// control characters replaced.
fn clean_text(s: &str, max: usize) -> String {
    let mut out: String = s.chars().map(|c| if c.is_control() || is_bidi_control(c) { ' ' } else { c }).collect();
    if out.len() > max {
        let mut cut = max;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
    }
    out
}

/// Times the engine accepts: far enough from the ends of the calendar that adding
/// policy periods (at most weeks) cannot overflow.
fn plausible(at: OffsetDateTime) -> bool {
    (1970..=9000).contains(&at.year())
}

fn describe_missing(missing: &[Missing]) -> String {
    missing
        .iter()
        .map(|m| match m {
            Missing::Factors { needed, choose_from } => {
                let names: Vec<&str> = choose_from.iter().map(|m| m.describe()).collect();
                format!("{needed} more factor(s) from: {}", names.join(", "))
            }
            Missing::Step { method } => method.describe().to_owned(),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

impl Session {
    /// Open a session. Returns the session and its first decisions; a refused session
    /// is returned in phase [`Phase::Refused`] with the refusal record to write.
    pub fn open(policy: &PolicyConfig, req: OpenRequest) -> Result<(Session, Vec<Decision>), WorkflowError> {
        if !is_plain_identifier(&req.request_id) || req.request_id.len() > 128 {
            return Err(WorkflowError::BadRequest(
                "the request id must be 1-128 letters, digits, '.', '_', '-' or '@'",
            ));
        }
        if !is_plain_identifier(&req.agent.username) {
            return Err(WorkflowError::BadRequest("the agent's username is not a plain directory username"));
        }
        if !is_plain_identifier(&req.account.username) {
            return Err(WorkflowError::BadRequest("the account's username is not a plain directory username"));
        }
        if let Some(reason) = &req.emergency_reason {
            check_text("emergency reason", reason)?;
        }
        let at = req.at;
        if !plausible(at) {
            return Err(WorkflowError::ImplausibleTime);
        }
        let mut req = req;
        req.context.stated = req.context.stated.cleaned()?;
        let mut assessment = assess(policy, &req.account, &req.context, at);
        let window = Duration::minutes(i64::from(policy.lockout.window_minutes));
        let earlier_failures: Vec<OffsetDateTime> =
            req.context.previous_failures.iter().copied().filter(|t| *t <= at && at - *t < window).collect();

        let mut session = Session {
            policy: policy.clone(),
            request_id: req.request_id,
            opened_at: at,
            last_at: at,
            requirements: assessment.requirements(policy),
            assessment: assessment.clone(),
            agent: req.agent,
            account: req.account,
            manager: req.manager,
            channel: req.context.channel,
            stated: req.context.stated.clone(),
            directory_backend: clean_text(&req.directory_backend, 64),
            phase: Phase::Verifying,
            passed: BTreeSet::new(),
            steps: Vec::new(),
            earlier_failures,
            failures: Vec::new(),
            codes_sent: Vec::new(),
            pending_code: None,
            pending_callback: None,
            pending_manager_address: None,
            used_contacts: BTreeSet::new(),
            approvals: Vec::new(),
            co_signer: None,
            emergency: None,
            handoff: None,
            intent: None,
            outcome: RequestOutcome::Pending,
        };
        let mut out = Vec::new();

        // Verification lockout, and the admin emergency path past it.
        if let Some(until) = session.locked_until(at) {
            match req.emergency_reason {
                None => return Ok(session.refuse(at, Refusal::Locked { until }, out)),
                Some(_) if session.agent.tier != AgentTier::Admin => {
                    let refusal = Refusal::EmergencyRefused {
                        reason: "only an admin agent may use the emergency path; ask an admin".into(),
                    };
                    return Ok(session.refuse(at, refusal, out));
                }
                Some(reason) => {
                    let reason = clean_text(&reason, 1024);
                    assessment.raise_to(
                        RiskRule::EmergencyOverride,
                        AccountTier::Highest,
                        format!("emergency path past a verification lockout (until {until}); every highest-tier check applies"),
                    );
                    session.emergency = Some(reason.clone());
                    out.push(Decision::Notify {
                        notification: session.notification(
                            NotificationKind::EmergencyOverride { reason },
                            vec![Recipient::SecurityTeam],
                        ),
                    });
                }
            }
        } else if req.emergency_reason.is_some() {
            return Err(WorkflowError::BadRequest("the emergency path is only for accounts locked for verification"));
        }
        session.requirements = assessment.requirements(policy);
        session.assessment = assessment;

        if !session.assessment.escalations.is_empty() {
            out.push(Decision::Escalated { escalations: session.assessment.escalations.clone() });
        }
        if let Err(reason) = check_agent(policy, &session.agent, &session.account, session.assessment.effective_tier) {
            return Ok(session.refuse(at, Refusal::NotAuthorised { reason }, out));
        }
        if session.requirements.required_steps.contains(&Method::GovernmentId) && session.channel != Channel::WalkUp {
            return Ok(session.refuse(at, Refusal::InPersonRequired, out));
        }
        if session.requirements.required_steps.contains(&Method::ManagerApproval) && session.manager_address().is_none()
        {
            return Ok(session.refuse(at, Refusal::NoManagerOnFile, out));
        }
        if session.requirements.cooling_off > Duration::ZERO {
            let earliest = at + session.requirements.cooling_off;
            let recipients = session.holder_and_manager();
            out.push(Decision::Notify {
                notification: session.notification(NotificationKind::ResetRequested { earliest }, recipients),
            });
        }
        out.push(Decision::NeedSteps { missing: session.missing() });
        Ok((session, out))
    }

    // ----- queries -----

    /// A snapshot for the agent's screen.
    pub fn status(&self) -> Status {
        Status {
            phase: self.phase,
            base_tier: self.assessment.base_tier,
            effective_tier: self.assessment.effective_tier,
            escalations: self.assessment.escalations.clone(),
            passed: self.passed.iter().copied().collect(),
            missing: self.missing(),
            earliest_reset: self.earliest_reset(),
            co_signer_min_tier: self
                .requirements
                .required_steps
                .contains(&Method::CoSignature)
                .then(|| self.co_signer_min_tier()),
        }
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    pub fn request_id(&self) -> &str {
        &self.request_id
    }

    pub fn agent(&self) -> &ActingAgent {
        &self.agent
    }

    pub fn account(&self) -> &Account {
        &self.account
    }

    /// The tier after escalation (never below the account's own).
    pub fn effective_tier(&self) -> AccountTier {
        self.assessment.effective_tier
    }

    pub fn assessment(&self) -> &RiskAssessment {
        &self.assessment
    }

    pub fn requirements(&self) -> &Requirements {
        &self.requirements
    }

    /// Methods passed in this session (each at most once).
    pub fn passed(&self) -> &BTreeSet<Method> {
        &self.passed
    }

    /// What is still required.
    pub fn missing(&self) -> Vec<Missing> {
        self.requirements.missing(&self.passed)
    }

    /// The earliest time the reset may run (end of cooling-off).
    pub fn earliest_reset(&self) -> OffsetDateTime {
        self.opened_at + self.requirements.cooling_off
    }

    /// Replace the failures of other sessions with a fresh read of the account's
    /// history (without this session's own records), so that sessions running in
    /// parallel on one account share one lockout count: together they get no more
    /// than `max_failures` guesses. Only ever adds to what the lockout counts from
    /// this session; the risk escalation decided at open is unchanged.
    pub fn refresh_earlier_failures(&mut self, earlier: Vec<OffsetDateTime>) {
        self.earlier_failures = earlier;
    }

    /// The co-signer, once accepted.
    pub fn co_signer(&self) -> Option<&CoSignerFact> {
        self.co_signer.as_ref()
    }

    /// Every verification step of this session so far, in order, with its verdict.
    pub fn steps(&self) -> &[StepFact] {
        &self.steps
    }

    /// How the request reached the desk.
    pub fn channel(&self) -> Channel {
        self.channel
    }

    /// When the session was opened.
    pub fn opened_at(&self) -> OffsetDateTime {
        self.opened_at
    }

    /// The account's manager as read when the session opened, if any.
    pub fn manager(&self) -> Option<&Account> {
        self.manager.as_ref()
    }

    /// What the session waits for from outside: a code sent, a number to call, a
    /// manager's answer.
    pub fn pending(&self) -> Pending {
        Pending {
            code_sent_to: self.pending_code.clone(),
            callback_to: self.pending_callback.clone(),
            manager_asked_at: self.pending_manager_address.clone(),
        }
    }

    /// Whether `contact` (one of the account's own) may be used for a code or a
    /// callback now.
    pub fn contact_use(&self, contact: &ContactPoint) -> ContactUse {
        if self.assessment.excluded_contacts.contains(&contact.value) {
            ContactUse::ChangedRecently
        } else if self.used_contacts.contains(&contact.value) {
            ContactUse::AlreadyUsed
        } else {
            ContactUse::Usable
        }
    }

    /// Failures counting toward the lockout within its window at `at` (earlier
    /// sessions' and this one's).
    pub fn recent_failures(&self, at: OffsetDateTime) -> usize {
        let window = Duration::minutes(i64::from(self.policy.lockout.window_minutes));
        self.failures.iter().filter(|t| **t <= at && at - **t < window).count()
    }

    /// The lockout policy in force for this session.
    pub fn lockout_policy(&self) -> &crate::policy::LockoutPolicy {
        &self.policy.lockout
    }

    /// The digest a co-signer signs for this reset: who, whom, at which tier, and the
    /// steps passed so far.
    /// The offline verifier recomputes it from the intent's facts
    /// ([`co_signature::approval_of_intent`]).
    pub fn approval_digest(&self) -> [u8; 32] {
        approval_digest(&ApprovalStatement {
            request_id: &self.request_id,
            agent: &self.agent.username,
            agent_key_id: &self.agent.key_id,
            target: &self.account.username,
            effective_tier: self.assessment.effective_tier,
            opened_at: self.opened_at,
            passed_steps: &co_signature::passed_steps_text(&self.passed),
        })
    }

    /// Whether `claim` may co-sign this reset now, before their card signs anything:
    /// the session is waiting for exactly the co-signature, and the second agent passes
    /// the separation-of-duties and tier rules. [`WorkflowEvent::CoSigned`] checks it again.
    pub fn check_co_signer(&self, claim: &CoSignerClaim<'_>) -> Result<(), WorkflowError> {
        self.co_sign_due()?;
        check_co_signer(
            &self.policy,
            claim,
            &self.agent,
            &self.account,
            self.manager.as_ref(),
            self.assessment.effective_tier,
        )
        .map_err(WorkflowError::CoSignature)
    }

    /// In the verifying phase, with the co-signature the only step missing.
    fn co_sign_due(&self) -> Result<(), WorkflowError> {
        if self.phase != Phase::Verifying {
            return Err(WorkflowError::IllegalTransition { event: "co-signed", phase: self.phase });
        }
        self.not_yet_passed(Method::CoSignature)?;
        let others_missing = self.missing().into_iter().any(|m| m != Missing::Step { method: Method::CoSignature });
        if others_missing {
            return Err(WorkflowError::CoSignTooEarly);
        }
        Ok(())
    }

    /// The facts as they stand, for a record of `kind`.
    pub fn facts(&self, kind: FactsKind, at: OffsetDateTime) -> ResetFacts {
        ResetFacts {
            kind,
            request_id: self.request_id.clone(),
            opened_at: self.opened_at,
            at,
            agent: AgentFact {
                username: self.agent.username.clone(),
                tier: self.agent.tier,
                key_id: hex::encode(self.agent.key_id),
            },
            target: TargetFact {
                username: self.account.username.clone(),
                base_tier: self.assessment.base_tier,
                effective_tier: self.assessment.effective_tier,
                department: self.account.department.clone(),
            },
            directory_backend: self.directory_backend.clone(),
            channel: self.channel,
            intake: self.stated.clone(),
            escalations: self.assessment.escalations.clone(),
            steps: self.steps.clone(),
            approvals: self.approvals.clone(),
            co_signer: self.co_signer.clone(),
            emergency_override: self.emergency.clone(),
            handoff: self.handoff.clone(),
            password_spec: (kind != FactsKind::Refusal && kind != FactsKind::Lockout)
                .then(|| PasswordSpec::from_policy(&self.policy.password)),
            intent: self.intent.clone(),
            outcome: self.outcome.clone(),
            report_sha256: None,
        }
    }

    // ----- the transition function -----

    /// Take one event. On error the session is unchanged.
    pub fn handle(&mut self, event: WorkflowEvent) -> Result<Vec<Decision>, WorkflowError> {
        let at = event.at();
        if !plausible(at) {
            return Err(WorkflowError::ImplausibleTime);
        }
        if at < self.last_at {
            return Err(WorkflowError::TimeWentBackwards);
        }
        // Another session on the account may have used up the guesses since this one
        // last looked (`refresh_earlier_failures`): then no step counts, nothing is
        // reset; the session locks out. (The emergency path already runs past a lock.)
        if self.phase == Phase::Verifying
            && self.emergency.is_none()
            && !matches!(event, WorkflowEvent::Cancelled { .. })
        {
            if let Some(until) = self.locked_by_failures(at) {
                self.last_at = at;
                return Ok(self.lock_out(at, until));
            }
        }
        let name = event.name();
        let illegal = |phase| WorkflowError::IllegalTransition { event: name, phase };
        let out = match (self.phase, event) {
            (Phase::Verifying, WorkflowEvent::SecurityAnswersChecked { verdict, .. }) => {
                self.not_yet_passed(Method::SecurityAnswers)?;
                self.record_step(at, Method::SecurityAnswers, verdict, StepDetail::None)
            }
            (Phase::Verifying, WorkflowEvent::EmployeeRecordGiven { employee_id, date_of_hire, .. }) => {
                self.not_yet_passed(Method::EmployeeRecord)?;
                let verdict = employee_record::check(&self.account, &employee_id, &date_of_hire)?;
                self.record_step(at, Method::EmployeeRecord, verdict, StepDetail::None)
            }
            (Phase::Verifying, WorkflowEvent::TotpChecked { verdict, accepted_step, .. }) => {
                self.not_yet_passed(Method::Totp)?;
                let detail = match (verdict, accepted_step) {
                    (Verdict::Passed, Some(step)) => StepDetail::TotpStep { step },
                    (Verdict::Passed, None) => {
                        return Err(WorkflowError::BadRequest("a passed TOTP check must carry its accepted time step"))
                    }
                    _ => StepDetail::None,
                };
                self.record_step(at, Method::Totp, verdict, detail)
            }
            (Phase::Verifying, WorkflowEvent::CodeRequested { to, .. }) => self.request_code(at, to)?,
            (Phase::Verifying, WorkflowEvent::CodeChecked { verdict, .. }) => {
                self.not_yet_passed(Method::OneTimeCode)?;
                let contact = self.pending_code.clone().ok_or(WorkflowError::NothingPending(Method::OneTimeCode))?;
                if verdict.passed() {
                    self.pending_code = None;
                    self.used_contacts.insert(contact.value.clone());
                }
                self.record_step(
                    at,
                    Method::OneTimeCode,
                    verdict,
                    StepDetail::Contact { label: contact.label, value: contact.value },
                )
            }
            (Phase::Verifying, WorkflowEvent::CallbackRequested { .. }) => {
                self.not_yet_passed(Method::Callback)?;
                let number =
                    callback::numbers_to_call(&self.account, &self.assessment.excluded_contacts, &self.used_contacts)
                        .into_iter()
                        .next()
                        .cloned()
                        .ok_or(WorkflowError::NoCallbackNumber)?;
                self.pending_callback = Some(number.clone());
                vec![Decision::ShowCallbackNumber { label: number.label, number: number.value }]
            }
            (Phase::Verifying, WorkflowEvent::CallbackReported { report, .. }) => {
                self.not_yet_passed(Method::Callback)?;
                let number = self.pending_callback.take().ok_or(WorkflowError::NothingPending(Method::Callback))?;
                let verdict = callback::verdict(report);
                // Whatever the result, this number was used for verification.
                self.used_contacts.insert(number.value.clone());
                self.record_step(
                    at,
                    Method::Callback,
                    verdict,
                    StepDetail::Contact { label: number.label, value: number.value },
                )
            }
            (Phase::Verifying, WorkflowEvent::ManagerApprovalRequested { .. }) => {
                self.not_yet_passed(Method::ManagerApproval)?;
                let (manager, address) = self
                    .manager_address()
                    .ok_or(WorkflowError::BadRequest("no manager with a usable address is on file"))?;
                self.pending_manager_address = Some(address.clone());
                vec![Decision::RequestManagerApproval { manager, address }]
            }
            (Phase::Verifying, WorkflowEvent::ManagerResponded { response, .. }) => {
                self.not_yet_passed(Method::ManagerApproval)?;
                let address = self
                    .pending_manager_address
                    .clone()
                    .ok_or(WorkflowError::NothingPending(Method::ManagerApproval))?;
                let mut verdict = manager_approval::check(&self.account, &address, &response)?;
                if response.approver.eq_ignore_ascii_case(&self.agent.username) {
                    // Separation of duties: the agent cannot approve their own reset as manager.
                    verdict = Verdict::Failed(crate::verification::FailReason::WrongApprover);
                }
                self.pending_manager_address = None;
                if verdict.passed() {
                    self.approvals.push(ApprovalFact {
                        manager: response.approver.clone(),
                        via_address: response.via_address.clone(),
                        at,
                        signed_decision: response.decision_note.clone(),
                    });
                }
                let detail = StepDetail::Manager {
                    approver: response.approver,
                    via_address: clean_text(&response.via_address, 320),
                    signed_decision: response.decision_note,
                };
                let mut out = self.record_step(at, Method::ManagerApproval, verdict, detail);
                if verdict == Verdict::Failed(crate::verification::FailReason::Declined)
                    && self.phase == Phase::Verifying
                {
                    // The manager said no: the request ends (a refusal record with every step).
                    out.retain(|d| !matches!(d, Decision::NeedSteps { .. }));
                    self.phase = Phase::Refused;
                    let refusal = Refusal::ManagerDenied;
                    self.outcome = RequestOutcome::Refused { reason: refusal.explain() };
                    out.push(Decision::WriteRecord { facts: Box::new(self.facts(FactsKind::Refusal, at)) });
                    out.push(Decision::Refuse { explanation: refusal.explain(), refusal });
                }
                out
            }
            (Phase::Verifying, WorkflowEvent::IdInspected { inspection, .. }) => {
                self.not_yet_passed(Method::GovernmentId)?;
                if self.channel != Channel::WalkUp {
                    return Err(WorkflowError::NotInPerson);
                }
                let (verdict, facts) = government_id::check(&inspection, self.desk_date(at))?;
                self.record_step(at, Method::GovernmentId, verdict, StepDetail::Document(facts))
            }
            (Phase::Verifying, WorkflowEvent::CoSigned { signature, .. }) => {
                self.co_sign_due()?;
                co_signature::check(
                    &self.policy,
                    &signature,
                    &self.approval_digest(),
                    &self.agent,
                    &self.account,
                    self.manager.as_ref(),
                    self.assessment.effective_tier,
                )
                .map_err(WorkflowError::CoSignature)?;
                let key_id = hex::encode(signature.key_id);
                self.co_signer = Some(CoSignerFact {
                    username: signature.username.clone(),
                    tier: signature.tier,
                    key_id: key_id.clone(),
                    digest: hex::encode(signature.digest),
                    signature: hex::encode(&signature.signature_der),
                });
                let detail = StepDetail::CoSigner { username: signature.username, tier: signature.tier, key_id };
                self.record_step(at, Method::CoSignature, Verdict::Passed, detail)
            }
            (Phase::Verifying, WorkflowEvent::ResetRequested { .. }) => self.request_reset(at)?,
            (Phase::AwaitingIntent, WorkflowEvent::IntentRecorded { seq, entry_hash, .. }) => {
                self.intent = Some(IntentRef { seq, entry_hash: hex::encode(entry_hash) });
                self.phase = Phase::AwaitingDirectory;
                vec![Decision::ExecuteReset {
                    username: self.account.username.clone(),
                    password: PasswordSpec::from_policy(&self.policy.password),
                    context_words: self.context_words(),
                }]
            }
            (Phase::AwaitingDirectory, WorkflowEvent::DirectoryResult { result, .. }) => {
                self.directory_result(at, result)
            }
            (Phase::Verifying | Phase::AwaitingIntent, WorkflowEvent::Cancelled { reason, .. }) => {
                check_text("reason", &reason)?;
                self.phase = Phase::Cancelled;
                self.outcome = RequestOutcome::Cancelled { reason: clean_text(&reason, 1024) };
                vec![Decision::WriteRecord { facts: Box::new(self.facts(FactsKind::Refusal, at)) }]
            }
            (Phase::Verifying | Phase::AwaitingIntent, WorkflowEvent::FraudSuspected { note, .. }) => {
                let note = if note.trim().is_empty() { "no details given".to_owned() } else { note };
                check_text("note", &note)?;
                let note = clean_text(&note, 1024);
                self.phase = Phase::Cancelled;
                self.outcome =
                    RequestOutcome::Cancelled { reason: format!("{}{note}", super::facts::SUSPECTED_FRAUD_REASON) };
                self.pending_code = None;
                self.pending_callback = None;
                self.pending_manager_address = None;
                vec![
                    Decision::WriteRecord { facts: Box::new(self.facts(FactsKind::Refusal, at)) },
                    Decision::Notify {
                        notification: self
                            .notification(NotificationKind::FraudSuspected { note }, vec![Recipient::SecurityTeam]),
                    },
                ]
            }
            (phase, _) => return Err(illegal(phase)),
        };
        self.last_at = at;
        Ok(out)
    }

    // ----- helpers -----

    fn not_yet_passed(&self, method: Method) -> Result<(), WorkflowError> {
        if self.passed.contains(&method) {
            Err(WorkflowError::AlreadyPassed(method))
        } else {
            Ok(())
        }
    }

    /// Record a step result; a failure may trigger the lockout.
    fn record_step(
        &mut self,
        at: OffsetDateTime,
        method: Method,
        verdict: Verdict,
        detail: StepDetail,
    ) -> Vec<Decision> {
        self.steps.push(StepFact { at, method, verdict, detail });
        match verdict {
            Verdict::Passed => {
                self.passed.insert(method);
                let missing = self.missing();
                let only_co_signature_left = missing == [Missing::Step { method: Method::CoSignature }];
                let mut out = vec![Decision::NeedSteps { missing }];
                if only_co_signature_left {
                    out.push(Decision::RequestCoSignature {
                        digest: hex::encode(self.approval_digest()),
                        min_tier: self.co_signer_min_tier(),
                    });
                }
                out
            }
            Verdict::Failed(reason) if reason.counts_toward_lockout() => {
                // On the emergency path the account is still locked in the directory,
                // so the first counted failure ends the session: no second chances there.
                self.failures.push(at);
                match self.locked_until(at) {
                    Some(until) => self.lock_out(at, until),
                    None => vec![Decision::NeedSteps { missing: self.missing() }],
                }
            }
            Verdict::Failed(_) => vec![Decision::NeedSteps { missing: self.missing() }],
        }
    }

    /// Passed steps too old to count at `at`: older than the step age, or all of them
    /// when the request is older than the session age. Time inside the cooling-off
    /// period (from opening to the earliest reset) is not counted.
    fn expired_steps(&self, at: OffsetDateTime) -> Vec<Method> {
        let f = &self.policy.freshness;
        let (wait_from, wait_to) = (self.opened_at, self.earliest_reset());
        let age = |since: OffsetDateTime| {
            let overlap = (wait_to.min(at) - wait_from.max(since)).max(Duration::ZERO);
            (at - since) - overlap
        };
        let session_over = age(self.opened_at) > Duration::minutes(i64::from(f.session_max_age_minutes));
        let step_max = Duration::minutes(i64::from(f.step_max_age_minutes));
        self.passed
            .iter()
            .copied()
            .filter(|m| {
                let last = self.steps.iter().rev().find(|s| s.method == *m && s.verdict.passed()).map(|s| s.at);
                session_over || last.is_none_or(|t| age(t) > step_max)
            })
            .collect()
    }

    /// Until when verification is locked at `at`, if it is.
    fn locked_until(&self, at: OffsetDateTime) -> Option<OffsetDateTime> {
        let from_directory = self.account.verification_locked_until;
        self.locked_by_failures(at).into_iter().chain(from_directory).filter(|until| *until > at).max()
    }

    /// Until when the failures counted so far (this session's and, as last read, the
    /// other sessions') lock verification at `at`, if they do.
    fn locked_by_failures(&self, at: OffsetDateTime) -> Option<OffsetDateTime> {
        let lock = &self.policy.lockout;
        let window = Duration::minutes(i64::from(lock.window_minutes));
        let recent: Vec<&OffsetDateTime> =
            self.earlier_failures.iter().chain(&self.failures).filter(|t| **t <= at && at - **t < window).collect();
        if recent.len() < lock.max_failures as usize {
            return None;
        }
        recent.iter().max().map(|last| **last + Duration::minutes(i64::from(lock.wait_minutes))).filter(|u| *u > at)
    }

    fn lock_out(&mut self, at: OffsetDateTime, until: OffsetDateTime) -> Vec<Decision> {
        self.phase = Phase::LockedOut;
        self.outcome = RequestOutcome::LockedOut { until };
        self.pending_code = None;
        self.pending_callback = None;
        self.pending_manager_address = None;
        let refusal = Refusal::Locked { until };
        vec![
            Decision::WriteRecord { facts: Box::new(self.facts(FactsKind::Lockout, at)) },
            Decision::LockVerification {
                username: self.account.username.clone(),
                until,
                flag_until: until + Duration::days(i64::from(self.policy.lockout.flag_days)),
            },
            Decision::Notify {
                notification: self
                    .notification(NotificationKind::VerificationLocked { until }, vec![Recipient::SecurityTeam]),
            },
            Decision::Refuse { explanation: refusal.explain(), refusal },
        ]
    }

    fn refuse(mut self, at: OffsetDateTime, refusal: Refusal, mut out: Vec<Decision>) -> (Session, Vec<Decision>) {
        self.phase = Phase::Refused;
        let explanation = refusal.explain();
        self.outcome = RequestOutcome::Refused { reason: explanation.clone() };
        out.push(Decision::WriteRecord { facts: Box::new(self.facts(FactsKind::Refusal, at)) });
        out.push(Decision::Refuse { refusal, explanation });
        (self, out)
    }

    fn contact(&self, r: ContactRef) -> Option<&ContactPoint> {
        match r.kind {
            ContactKind::Email => self.account.emails.get(r.index),
            ContactKind::Phone => self.account.phones.get(r.index),
        }
    }

    fn request_code(&mut self, at: OffsetDateTime, to: ContactRef) -> Result<Vec<Decision>, WorkflowError> {
        self.not_yet_passed(Method::OneTimeCode)?;
        let contact = self.contact(to).cloned().ok_or(WorkflowError::ContactNotEligible)?;
        if self.assessment.excluded_contacts.contains(&contact.value) || self.used_contacts.contains(&contact.value) {
            return Err(WorkflowError::ContactNotEligible);
        }
        let policy = &self.policy.one_time_code;
        if self.codes_sent.len() >= policy.max_per_session as usize {
            return Err(WorkflowError::CodeLimitReached);
        }
        if let Some(last) = self.codes_sent.last() {
            let retry_at = *last + Duration::seconds(i64::from(policy.min_interval_seconds));
            if at < retry_at {
                return Err(WorkflowError::CodeRateLimited { retry_at });
            }
        }
        self.codes_sent.push(at);
        self.pending_code = Some(contact.clone());
        let not_after = at + Duration::minutes(i64::from(policy.valid_minutes));
        Ok(vec![Decision::SendCode { label: contact.label, to: contact.value, not_after }])
    }

    fn request_reset(&mut self, at: OffsetDateTime) -> Result<Vec<Decision>, WorkflowError> {
        let mut expired = self.expired_steps(at);
        if !expired.is_empty() {
            // The co-signer approved the evidence as it stood: it must approve again.
            if self.passed.contains(&Method::CoSignature) && !expired.contains(&Method::CoSignature) {
                expired.push(Method::CoSignature);
            }
            for m in &expired {
                self.passed.remove(m);
                let verdict = Verdict::Failed(FailReason::StepExpired);
                self.steps.push(StepFact { at, method: *m, verdict, detail: StepDetail::None });
            }
            if expired.contains(&Method::CoSignature) {
                self.co_signer = None;
            }
            let f = &self.policy.freshness;
            let reason = format!(
                "verification counts for {} minutes a step and {} minutes a request (cooling-off waits excepted); redo these steps",
                f.step_max_age_minutes, f.session_max_age_minutes
            );
            return Ok(vec![
                Decision::StepsExpired { methods: expired, reason },
                Decision::NeedSteps { missing: self.missing() },
            ]);
        }
        let missing = self.missing();
        if !missing.is_empty() {
            return Err(WorkflowError::StepsMissing(describe_missing(&missing)));
        }
        // Authority is fixed at open, but check again: nothing may slip past it.
        if let Err(reason) = check_agent(&self.policy, &self.agent, &self.account, self.assessment.effective_tier) {
            self.phase = Phase::Refused;
            let refusal = Refusal::NotAuthorised { reason };
            self.outcome = RequestOutcome::Refused { reason: refusal.explain() };
            return Ok(vec![
                Decision::WriteRecord { facts: Box::new(self.facts(FactsKind::Refusal, at)) },
                Decision::Refuse { explanation: refusal.explain(), refusal },
            ]);
        }
        let earliest = self.earliest_reset();
        if at < earliest {
            return Ok(vec![Decision::Wait {
                until: earliest,
                reason: format!(
                    "cooling-off for {} accounts: the account holder and manager were told of this request and can object until then",
                    self.assessment.effective_tier
                ),
            }]);
        }
        let Some(channel) = self.handoff_channel() else {
            self.phase = Phase::Refused;
            let refusal = Refusal::NoHandoffChannel;
            self.outcome = RequestOutcome::Refused { reason: refusal.explain() };
            return Ok(vec![
                Decision::WriteRecord { facts: Box::new(self.facts(FactsKind::Refusal, at)) },
                Decision::Refuse { explanation: refusal.explain(), refusal },
            ]);
        };
        let h = &self.policy.handoff;
        let reason = h.agent_view_reason.trim();
        // Policy may let agents see the password, but only with a recorded reason.
        let agent_may_view = h.agent_may_view && !reason.is_empty();
        self.handoff = Some(HandoffFact {
            channel,
            agent_may_view,
            agent_view_reason: agent_may_view.then(|| clean_text(reason, 1024)),
        });
        self.phase = Phase::AwaitingIntent;
        Ok(vec![Decision::WriteIntent { facts: Box::new(self.facts(FactsKind::Intent, at)) }])
    }

    fn directory_result(&mut self, at: OffsetDateTime, result: Result<(), String>) -> Vec<Decision> {
        match result {
            Ok(()) => {
                self.phase = Phase::Succeeded;
                self.outcome = RequestOutcome::Succeeded;
                let mut out =
                    vec![Decision::WriteOutcome { facts: Box::new(self.facts(FactsKind::RequestOutcome, at)) }];
                if let Some(handoff) = self.handoff.clone() {
                    out.push(Decision::HandOff { handoff });
                }
                let recipients = self.holder_and_manager();
                out.push(Decision::Notify {
                    notification: self.notification(NotificationKind::ResetCompleted, recipients),
                });
                out
            }
            Err(message) => {
                self.phase = Phase::DirectoryFailed;
                self.outcome = RequestOutcome::DirectoryFailed { message: clean_text(&message, 1024) };
                vec![Decision::WriteOutcome { facts: Box::new(self.facts(FactsKind::RequestOutcome, at)) }]
            }
        }
    }

    /// Where the password goes: the customer-facing window at the desk; for remote
    /// requests a registered channel of the other kind that verification did not use
    /// and that did not change recently.
    fn handoff_channel(&self) -> Option<HandoffChannel> {
        let usable = |c: &&ContactPoint| {
            !self.assessment.excluded_contacts.contains(&c.value) && !self.used_contacts.contains(&c.value)
        };
        match self.channel {
            Channel::WalkUp => Some(HandoffChannel::CustomerWindow),
            Channel::Phone => self
                .account
                .emails
                .iter()
                .find(usable)
                .map(|c| HandoffChannel::RegisteredEmail { address: c.value.clone() }),
            Channel::Email => self
                .account
                .phones
                .iter()
                .find(usable)
                .map(|c| HandoffChannel::RegisteredPhone { number: c.value.clone() }),
        }
    }

    /// The manager's username and the address to ask for approval.
    fn manager_address(&self) -> Option<(String, String)> {
        let name = self.account.manager.as_deref()?;
        let manager = self.manager.as_ref().filter(|m| m.username.eq_ignore_ascii_case(name))?;
        if manager.username.eq_ignore_ascii_case(&self.agent.username) {
            return None;
        }
        let window = Duration::days(i64::from(self.policy.risk.recent_contact_change.days));
        let recent: BTreeSet<String> = manager
            .emails
            .iter()
            .filter(|e| e.changed_within(self.opened_at, window))
            .map(|e| e.value.clone())
            .collect();
        manager_approval::approval_address(manager, &recent).map(|a| (manager.username.clone(), a.value.clone()))
    }

    fn holder_and_manager(&self) -> Vec<Recipient> {
        let mut r: Vec<Recipient> = self
            .account
            .emails
            .iter()
            .chain(&self.account.phones)
            .map(|c| Recipient::Contact { label: c.label.clone(), value: c.value.clone() })
            .collect();
        if let Some(m) = &self.account.manager {
            r.push(Recipient::Manager { username: m.clone() });
        }
        r
    }

    fn notification(&self, kind: NotificationKind, recipients: Vec<Recipient>) -> Notification {
        Notification { kind, username: self.account.username.clone(), request_id: self.request_id.clone(), recipients }
    }

    fn context_words(&self) -> Vec<String> {
        let a = &self.account;
        let mut w = vec![a.username.clone(), a.display_name.clone(), a.employee_id.clone()];
        w.extend(a.emails.iter().filter_map(|e| e.value.split('@').next().map(str::to_owned)));
        w
    }

    fn desk_date(&self, at: OffsetDateTime) -> time::Date {
        let offset = UtcOffset::from_whole_seconds(i32::from(self.policy.risk.business_hours.utc_offset_minutes) * 60)
            .unwrap_or(UtcOffset::UTC);
        at.to_offset(offset).date()
    }

    /// The lowest agent tier that may co-sign this reset: always an admin (dual control
    /// at the highest tier is by a second admin), and never below the tier the reset needs.
    pub fn co_signer_min_tier(&self) -> AgentTier {
        AgentTier::Admin.max(required_agent_tier(&self.policy, self.assessment.effective_tier.max(self.account.tier)))
    }
}
