//! What the agent's screens show, built from the core's state: an account in the
//! search results ([`AccountCard`]) and the running reset ([`ResetView`]).
//!
//! Pure: the desk gathers the inputs (directory, history), these functions only shape
//! them. The shells render the result and decide nothing. Nothing secret is here: no
//! answers, never the stored employee ID or date of hire (they are what the requester
//! must say), registered addresses and numbers masked. The one unmasked value is the
//! number on file that the agent is told to dial for a callback.

use serde::Serialize;
use time::{Duration, OffsetDateTime};

use super::history::AccountHistory;
use super::reset::ResetRun;
use crate::directory::{Account, ContactPoint};
use crate::policy::authority::required_agent_tier;
use crate::policy::{Channel, Escalation, FactorKind, Method, Missing, PolicyConfig, StatedDetails};
use crate::tier::{AccountTier, AgentTier};
use crate::verification::Verdict;
use crate::workflow::facts::{RequestOutcome, StepDetail};
use crate::workflow::{ContactKind, ContactUse, Phase};

/// One account in the search results.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccountCard {
    pub username: String,
    pub display_name: String,
    pub department: String,
    pub location: String,
    pub tier: AccountTier,
    /// Set when the account belongs to a help-desk agent.
    pub agent_tier: Option<AgentTier>,
    pub flagged: bool,
    /// Verification is locked until then (only while it is in the future).
    #[serde(with = "time::serde::rfc3339::option")]
    pub locked_until: Option<OffsetDateTime>,
    pub must_change_password: bool,
    /// Resets of this account on this desk within the recent-reset window.
    pub recent_resets: usize,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_reset: Option<OffsetDateTime>,
    /// Failed verifications within the lockout window.
    pub recent_failures: usize,
    /// Risk signals in words, as the rules will see them.
    pub risk_flags: Vec<String>,
}

impl AccountCard {
    /// The card for `account`, with its `history` from the audit store, at `now`.
    pub fn of(account: &Account, history: &AccountHistory, policy: &PolicyConfig, now: OffsetDateTime) -> Self {
        let risk = &policy.risk;
        let reset_window = Duration::hours(i64::from(risk.recent_reset.hours));
        let fail_window = Duration::minutes(i64::from(policy.lockout.window_minutes));
        let recent_resets = history.resets.iter().filter(|t| **t <= now && now - **t < reset_window).count();
        let recent_failures = history.failures.iter().filter(|t| **t <= now && now - **t < fail_window).count();
        let locked_until = account.verification_locked_until.filter(|u| *u > now);
        let contact_window = Duration::days(i64::from(risk.recent_contact_change.days));
        let changed: Vec<&ContactPoint> =
            account.emails.iter().chain(&account.phones).filter(|c| c.changed_within(now, contact_window)).collect();

        let mut risk_flags = Vec::new();
        if account.flagged {
            risk_flags.push("flagged by the security team or an earlier lockout".to_owned());
        }
        if let Some(until) = locked_until {
            risk_flags.push(format!("verification locked until {}", short_time(until)));
        }
        for c in changed {
            match c.changed_at {
                Some(t) => {
                    let days = (now - t).whole_days().max(0);
                    risk_flags.push(format!("{} contact ({}) changed {days} day(s) ago", c.label, mask(c)));
                }
                None => risk_flags.push(format!(
                    "{} contact ({}): the directory cannot tell when it changed",
                    c.label,
                    mask(c)
                )),
            }
        }
        if recent_resets > 0 {
            risk_flags.push(format!("reset {recent_resets} time(s) in the last {} hours", risk.recent_reset.hours));
        }
        if recent_failures > 0 {
            risk_flags.push(format!("{recent_failures} failed verification(s) recently"));
        }
        if let Some(flag) = &history.cross_desk.flag {
            risk_flags.push(format!(
                "flagged by the collector: {} (the next reset needs the {} tier)",
                flag.reason,
                flag.tier.as_str()
            ));
        }
        if let Some(why) = &history.cross_desk.unavailable {
            risk_flags.push(format!(
                "cross-desk history unavailable ({why}): treated as recently reset and failed elsewhere"
            ));
        }
        Self {
            username: account.username.clone(),
            display_name: account.display_name.clone(),
            department: account.department.clone(),
            location: account.location.clone(),
            tier: account.tier,
            agent_tier: account.agent_tier,
            flagged: account.flagged || history.cross_desk.flag.is_some(),
            locked_until,
            must_change_password: account.must_change_password,
            recent_resets,
            last_reset: history.resets.iter().max().copied(),
            recent_failures,
            risk_flags,
        }
    }
}

fn short_time(t: OffsetDateTime) -> String {
    let f = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute] UTC");
    t.format(&f).unwrap_or_else(|_| t.to_string())
}

/// `j•••h@example.com`: enough for the requester to recognise their address, not
/// enough for a caller to learn it.
pub fn mask_email(value: &str) -> String {
    match value.rsplit_once('@') {
        Some((local, domain)) => {
            let mut chars = local.chars();
            let first = chars.next().map(String::from).unwrap_or_default();
            let last = if local.chars().count() > 2 {
                chars.last().map(String::from).unwrap_or_default()
            } else {
                String::new()
            };
            format!("{first}•••{last}@{domain}")
        }
        None => "•••".to_owned(),
    }
}

/// `+•• ••• ••••67`: every digit but the last two hidden, separators kept.
pub fn mask_phone(value: &str) -> String {
    let digits = value.chars().filter(char::is_ascii_digit).count();
    let mut seen = 0;
    value
        .chars()
        .map(|c| {
            if c.is_ascii_digit() {
                seen += 1;
                if seen + 2 > digits {
                    c
                } else {
                    '•'
                }
            } else {
                c
            }
        })
        .collect()
}

fn mask(c: &ContactPoint) -> String {
    mask_contact(&c.value)
}

/// An address or a number on file, masked ([`mask_email`] or [`mask_phone`]).
pub fn mask_contact(value: &str) -> String {
    if value.contains('@') {
        mask_email(value)
    } else {
        mask_phone(value)
    }
}

/// A registered contact point as the verification screen offers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContactOption {
    pub kind: ContactKind,
    /// Position in the account's list: what the screen sends back (never a value).
    pub index: usize,
    pub label: String,
    pub masked: String,
    #[serde(rename = "use")]
    pub usable: ContactUse,
}

/// Where one verification method stands in this session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StepState {
    Verified,
    /// Asked for and waiting (code sent, number shown, manager asked).
    Pending,
    /// The last attempt failed.
    Failed,
    NotYet,
}

/// One method on the verification screen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StepRow {
    pub method: Method,
    pub name: &'static str,
    pub kind: FactorKind,
    /// Must pass whatever the factor count (approvals, ID inspection, added by a rule).
    pub required: bool,
    /// Counts toward the factors of the effective tier.
    pub counts_as_factor: bool,
    pub state: StepState,
    /// Passing it now would bring the reset closer: a required step not yet passed,
    /// or a factor that still counts (knowledge counts once; no more once enough
    /// factors passed). The screen offers only these.
    pub useful: bool,
    pub attempts: usize,
    /// What to do after the last failure.
    pub advice: Option<&'static str>,
}

/// The callback the agent is to make now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CallbackView {
    pub label: String,
    /// The number on file, in full: the agent dials it.
    pub number: String,
    /// What to say.
    pub script: Vec<String>,
}

/// The manager-approval step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ManagerView {
    pub display_name: String,
    pub username: String,
    /// `not-asked`, `pending`, `needs-collector`, `approved` or `denied`.
    pub state: &'static str,
    pub asked_at: Option<String>,
    /// "Approval needs the collector": the collector could not be reached to register
    /// the request or fetch the answer (its error); the agent asks again once it is back.
    pub needs_collector: Option<String>,
}

/// Failures counting toward the lockout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FailureView {
    pub count: usize,
    pub max: u32,
    pub window_minutes: u32,
    pub wait_minutes: u32,
}

/// Why the session ended without a reset, and what to do next.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RefusalView {
    pub explanation: String,
    /// Hand the request to an agent of this tier.
    pub hand_to: Option<AgentTier>,
    /// Ask the requester to come to the desk in person.
    pub come_in_person: bool,
}

/// The running reset as the verification, execute and hand-off screens show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResetView {
    pub request_id: String,
    pub phase: Phase,
    pub account: AccountCard,
    pub channel: Channel,
    pub intake: StatedDetails,
    pub base_tier: AccountTier,
    pub effective_tier: AccountTier,
    pub escalations: Vec<Escalation>,
    pub min_factors: u8,
    pub factors_passed: usize,
    pub steps: Vec<StepRow>,
    /// What is still required, in words.
    pub missing: Vec<String>,
    /// Every requirement met and the session still verifying: the reset may be confirmed
    /// once the cooling-off is over.
    pub ready: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub earliest_reset: OffsetDateTime,
    /// Seconds left of the cooling-off at the time of the view (0 when over).
    pub cooling_off_seconds: i64,
    /// The question texts (never the answers).
    pub questions: Vec<String>,
    pub totp_enrolled: bool,
    /// The document kinds the ID inspection offers, with their evidence strength.
    pub id_documents: Vec<crate::verification::government_id::DocumentChoice>,
    pub emails: Vec<ContactOption>,
    pub phones: Vec<ContactOption>,
    /// Masked address or number a one-time code was sent to.
    pub code_sent_to: Option<String>,
    pub callback: Option<CallbackView>,
    pub manager: Option<ManagerView>,
    pub co_signer_min_tier: Option<AgentTier>,
    pub co_signer: Option<String>,
    /// What the agent should do next: the manager's approval first (the answer takes
    /// longest), then the other required steps, then factors, the co-signature last; a
    /// step that is waiting for an answer comes after the others.
    pub next_method: Option<Method>,
    pub failures: FailureView,
    pub refusal: Option<RefusalView>,
    /// The directory's message when the write failed.
    pub directory_error: Option<String>,
    /// Where the password goes: `customer-window`, `registered-email`, `registered-phone`.
    pub handoff: Option<String>,
    pub handoff_waiting: bool,
    /// A one-time code or password waits to be shown on the requester's device (demo).
    pub in_band_waiting: bool,
    /// Set when an IO step failed mid-way and the run cannot continue.
    pub broken: Option<String>,
}

/// The inputs the desk gathers for a [`ResetView`] besides the run.
pub struct ViewInputs<'a> {
    pub policy: &'a PolicyConfig,
    pub history: &'a AccountHistory,
    pub questions: Vec<String>,
    pub totp_enrolled: bool,
    pub now: OffsetDateTime,
}

impl ResetView {
    pub fn of(run: &ResetRun, inputs: ViewInputs<'_>) -> Self {
        let s = &run.session;
        let now = inputs.now;
        let status = s.status();
        let req = s.requirements();
        let pending = s.pending();
        let steps_done = s.steps();

        let factors_passed = req.counted_factors(s.passed());
        let knowledge_passed = s.passed().iter().any(|m| m.kind() == FactorKind::Knowledge);
        let steps: Vec<StepRow> = Method::ALL
            .into_iter()
            .filter(|m| req.factor_methods.contains(m) || req.required_steps.contains(m))
            .map(|method| {
                let tries: Vec<&Verdict> =
                    steps_done.iter().filter(|st| st.method == method).map(|st| &st.verdict).collect();
                let waiting = match method {
                    Method::OneTimeCode => pending.code_sent_to.is_some(),
                    Method::Callback => pending.callback_to.is_some(),
                    Method::ManagerApproval => pending.manager_asked_at.is_some(),
                    _ => false,
                };
                let last_failure = match tries.last() {
                    Some(Verdict::Failed(reason)) => Some(*reason),
                    _ => None,
                };
                let state = if s.passed().contains(&method) {
                    StepState::Verified
                } else if waiting {
                    StepState::Pending
                } else if last_failure.is_some() {
                    StepState::Failed
                } else {
                    StepState::NotYet
                };
                let required = req.required_steps.contains(&method);
                // The co-signer approves the whole verification: offered only once
                // everything else has passed (the engine refuses it earlier).
                let co_sign_waits = method == Method::CoSignature
                    && status.missing.iter().any(|m| *m != Missing::Step { method: Method::CoSignature });
                // Nothing to offer for a method the account has nothing enrolled for.
                let not_enrolled = method == Method::Totp && !inputs.totp_enrolled;
                let useful = state != StepState::Verified
                    && !co_sign_waits
                    && !not_enrolled
                    && (required
                        || (factors_passed < usize::from(req.min_factors)
                            && !(method.kind() == FactorKind::Knowledge && knowledge_passed)));
                StepRow {
                    method,
                    name: method.describe(),
                    kind: method.kind(),
                    required,
                    counts_as_factor: req.factor_methods.contains(&method),
                    state,
                    useful,
                    attempts: tries.len(),
                    advice: last_failure.filter(|_| state == StepState::Failed).map(|r| r.advice()),
                }
            })
            .collect();

        let options = |kind: ContactKind, list: &[ContactPoint]| -> Vec<ContactOption> {
            list.iter()
                .enumerate()
                .map(|(index, c)| ContactOption {
                    kind,
                    index,
                    label: c.label.clone(),
                    masked: mask(c),
                    usable: s.contact_use(c),
                })
                .collect()
        };
        let account = s.account();

        let manager = req.required_steps.contains(&Method::ManagerApproval).then(|| {
            let approved = steps_done.iter().any(|st| st.method == Method::ManagerApproval && st.verdict.passed());
            let denied = steps_done
                .iter()
                .any(|st| st.method == Method::ManagerApproval && matches!(st.verdict, Verdict::Failed(_)));
            let needs_collector = (!approved).then(|| run.approval_needs_collector().map(str::to_owned)).flatten();
            let state = if approved {
                "approved"
            } else if needs_collector.is_some() {
                "needs-collector"
            } else if pending.manager_asked_at.is_some() {
                "pending"
            } else if denied {
                "denied"
            } else {
                "not-asked"
            };
            let (display_name, username) = match s.manager() {
                Some(m) => (m.display_name.clone(), m.username.clone()),
                None => ("no manager on file".to_owned(), account.manager.clone().unwrap_or_default()),
            };
            ManagerView {
                display_name,
                username,
                state,
                asked_at: pending.manager_asked_at.as_deref().map(mask_email),
                needs_collector,
            }
        });

        let (refusal, directory_error) = match s.facts(crate::workflow::FactsKind::Refusal, now).outcome {
            RequestOutcome::Refused { reason } => {
                let required = required_agent_tier(inputs.policy, status.effective_tier.max(status.base_tier));
                let hand_to = (s.agent().tier < required).then_some(required);
                let come_in_person = s.channel() != Channel::WalkUp
                    && s.requirements().required_steps.contains(&Method::GovernmentId);
                (Some(RefusalView { explanation: reason, hand_to, come_in_person }), None)
            }
            RequestOutcome::LockedOut { until } => (
                Some(RefusalView {
                    explanation: format!(
                        "verification for this account is locked until {} after too many failed attempts; the security team was notified",
                        short_time(until)
                    ),
                    hand_to: None,
                    come_in_person: false,
                }),
                None,
            ),
            RequestOutcome::DirectoryFailed { message } => (None, Some(message)),
            _ => (None, None),
        };
        let handoff = s.facts(crate::workflow::FactsKind::Intent, now).handoff.map(|h| {
            match h.channel {
                crate::workflow::HandoffChannel::CustomerWindow => "customer-window",
                crate::workflow::HandoffChannel::RegisteredEmail { .. } => "registered-email",
                crate::workflow::HandoffChannel::RegisteredPhone { .. } => "registered-phone",
            }
            .to_owned()
        });
        let lockout = s.lockout_policy();
        let callback = pending.callback_to.as_ref().map(|c| CallbackView {
            label: c.label.clone(),
            number: c.value.clone(),
            script: vec![
                format!("Call {} — the {} number on file. Never a number the requester gives you.", c.value, c.label),
                format!("Ask for {} by name.", account.display_name),
                "Ask whether they asked the service desk for a password reset just now.".to_owned(),
                "Report: reached the account holder? Did they confirm the request?".to_owned(),
            ],
        });
        let co_signer = steps_done.iter().find_map(|st| match &st.detail {
            StepDetail::CoSigner { username, .. } if st.verdict.passed() => Some(username.clone()),
            _ => None,
        });

        let next = next_method(&steps);
        ResetView {
            request_id: s.request_id().to_owned(),
            phase: status.phase,
            account: AccountCard::of(account, inputs.history, inputs.policy, now),
            channel: s.channel(),
            intake: s.facts(crate::workflow::FactsKind::Refusal, now).intake,
            base_tier: status.base_tier,
            effective_tier: status.effective_tier,
            escalations: status.escalations.clone(),
            min_factors: req.min_factors,
            factors_passed,
            steps,
            missing: status.missing.iter().map(describe).collect(),
            ready: status.phase == Phase::Verifying && status.missing.is_empty(),
            earliest_reset: status.earliest_reset,
            cooling_off_seconds: (status.earliest_reset - now).whole_seconds().max(0),
            questions: inputs.questions,
            totp_enrolled: inputs.totp_enrolled,
            id_documents: crate::verification::government_id::document_choices(),
            emails: options(ContactKind::Email, &account.emails),
            phones: options(ContactKind::Phone, &account.phones),
            code_sent_to: pending.code_sent_to.as_ref().map(mask),
            callback,
            manager,
            co_signer_min_tier: status.co_signer_min_tier,
            co_signer,
            next_method: next,
            failures: FailureView {
                count: s.recent_failures(now),
                max: lockout.max_failures,
                window_minutes: lockout.window_minutes,
                wait_minutes: lockout.wait_minutes,
            },
            refusal,
            directory_error,
            handoff,
            handoff_waiting: run.handoff_waiting(),
            in_band_waiting: run.in_band.is_some(),
            broken: run.broken().map(str::to_owned),
        }
    }
}

/// Most search results shown at once; the agent narrows the query for more.
pub const MAX_SEARCH_RESULTS: usize = 25;

impl super::Desk {
    /// Accounts matching `query` (name, username, employee ID or e-mail), each with its
    /// history on this desk. A query shorter than 2 characters finds nothing.
    pub fn search_accounts(&self, query: &str, now: OffsetDateTime) -> Result<Vec<AccountCard>, super::DeskError> {
        let query = query.trim();
        if query.chars().count() < 2 {
            return Ok(Vec::new());
        }
        crate::verification::check_text("search", query)?;
        let accounts = self.directory.search(query, MAX_SEARCH_RESULTS, &self.groups)?;
        let names: Vec<&str> = accounts.iter().map(|a| a.username.as_str()).collect();
        let histories = self.account_histories(&names)?;
        Ok(accounts
            .iter()
            .map(|a| {
                let history = histories.get(&a.username.to_lowercase()).cloned().unwrap_or_default();
                AccountCard::of(a, &history, &self.config.policy, now)
            })
            .collect())
    }

    /// The screen's view of `run` at `now`: the run's state, the account's question
    /// texts (never the answers) and its history.
    pub fn reset_view(&self, run: &ResetRun, now: OffsetDateTime) -> Result<ResetView, super::DeskError> {
        let username = &run.session.account().username;
        let material = self.directory.verification_material(username)?;
        let questions = material.security_answers.iter().map(|a| a.question.clone()).collect();
        let totp_enrolled = material.totp_secret.is_some();
        drop(material);
        let history = self.history_source().account_history(username, None)?;
        Ok(ResetView::of(
            run,
            ViewInputs { policy: &self.config.policy, history: &history, questions, totp_enrolled, now },
        ))
    }
}

impl super::Desk {
    /// The Audit screen: this desk's records, each checked by the offline verifier
    /// against the enrolled keys and the CA (read afresh), newest first.
    pub fn audit_page(
        &self,
        filter: &crate::audit::browse::AuditFilter,
    ) -> Result<crate::audit::browse::AuditPage, super::DeskError> {
        let keys = crate::token::audit_keys::load(&self.config.data_dir, self.config.ca.cert_file.as_deref())?;
        // Without the collector's key (none configured, or its file unreadable) stored
        // receipts cannot be trusted and the page says so.
        let collectors = if self.config.collector.url.is_empty() {
            crate::audit::CollectorKeys::default()
        } else {
            crate::upstream::driver::collector_keys(&self.config.collector).unwrap_or_else(|e| {
                tracing::warn!("receipts cannot be checked: {e}");
                crate::audit::CollectorKeys::default()
            })
        };
        Ok(crate::audit::browse::browse(self.audit.store(), &keys.resolver, &collectors, filter)
            .map_err(crate::audit::AuditError::from)?)
    }

    /// Export the log for a third party (JSON Lines and PEM certificates, checkable
    /// with openssl) into a new folder under `<data_dir>/exports/`; returns the folder.
    pub fn audit_export(
        &self,
        now: OffsetDateTime,
    ) -> Result<(std::path::PathBuf, crate::audit::export::ExportSummary), super::DeskError> {
        let keys = crate::token::audit_keys::load(&self.config.data_dir, self.config.ca.cert_file.as_deref())?;
        let stamp = now.unix_timestamp();
        let out = self.config.data_dir.join("exports").join(format!("audit-{stamp}"));
        let summary = crate::audit::export::export(self.audit.store(), &keys.resolver, &out)
            .map_err(|e| super::DeskError::Export(e.to_string()))?;
        Ok((out, summary))
    }
}

/// An intent without an outcome, as the Admin screen lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OpenIntent {
    pub seq: u64,
    pub timestamp_ms: u64,
    pub request_id: String,
    pub target: String,
    pub agent: String,
}

/// The Admin screen (admin agents only): the policy in force, the enrolled keys, the
/// intents left open.
#[derive(Debug, Clone, Serialize)]
pub struct AdminView {
    pub policy: PolicyConfig,
    /// Which agent tiers may reset each account tier (standard, privileged, highest).
    pub agents_by_tier: Vec<(AccountTier, Vec<AgentTier>)>,
    pub mode: crate::config::Mode,
    pub keys: Vec<crate::token::registry::KeyRecord>,
    pub open_intents: Vec<OpenIntent>,
}

impl super::Desk {
    /// The Admin screen for an agent of `tier`: refused below admin.
    pub fn admin_view(&self, tier: AgentTier) -> Result<AdminView, super::DeskError> {
        if tier != AgentTier::Admin {
            return Err(super::DeskError::AdminOnly);
        }
        let open_intents = self
            .audit
            .pending_intents()?
            .into_iter()
            .map(|p| {
                let text =
                    |ptr: &str| p.facts.pointer(ptr).and_then(serde_json::Value::as_str).unwrap_or("?").to_owned();
                OpenIntent {
                    seq: p.seq,
                    timestamp_ms: p.timestamp_ms,
                    request_id: text("/request_id"),
                    target: text("/target/username"),
                    agent: text("/agent/username"),
                }
            })
            .collect();
        let policy = &self.config.policy;
        let agents_by_tier = AccountTier::ALL
            .into_iter()
            .map(|t| (t, AgentTier::ALL.into_iter().filter(|a| policy.agents.max_account_tier(*a) >= t).collect()))
            .collect();
        Ok(AdminView {
            agents_by_tier,
            policy: self.config.policy.clone(),
            mode: self.config.mode,
            keys: self.registry.all()?,
            open_intents,
        })
    }
}

/// The Admin screen's security alerts from the collector (admin agents only): the
/// alerts, newest last, each with the records it stands on (their receipts checked
/// with the desk's collector key), or why they could not be fetched. Never "no
/// alerts" when the collector was not asked or not reached.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AlertsView {
    pub alerts: Vec<crate::upstream::alerts::SecurityAlert>,
    /// Set when the alerts could not be fetched (no collector configured, unreachable,
    /// a receipt that does not check): shown instead of an empty list.
    pub unavailable: Option<String>,
}

impl super::Desk {
    /// The collector's alerts after id `after` (0: all) for an agent of `tier`:
    /// refused below admin.
    pub fn alerts_view(&self, tier: AgentTier, after: u64) -> Result<AlertsView, super::DeskError> {
        AlertsView::fetch(&self.config.collector, tier, after)
    }
}

impl AlertsView {
    /// [`Desk::alerts_view`](super::Desk::alerts_view) from the collector settings
    /// alone, for a shell that must not hold the desk while it waits on the network.
    pub fn fetch(
        collector: &crate::config::CollectorConfig,
        tier: AgentTier,
        after: u64,
    ) -> Result<AlertsView, super::DeskError> {
        if tier != AgentTier::Admin {
            return Err(super::DeskError::AdminOnly);
        }
        if collector.url.is_empty() {
            let why = "no collector is configured ([collector] url): alerts live there".to_owned();
            return Ok(AlertsView { alerts: Vec::new(), unavailable: Some(why) });
        }
        Ok(match crate::upstream::alerts::fetch_configured(collector, after) {
            Ok(alerts) => AlertsView { alerts, unavailable: None },
            Err(e) => AlertsView { alerts: Vec::new(), unavailable: Some(e.to_string()) },
        })
    }
}

impl ResetRun {
    /// The username of the agent who opened this reset.
    pub fn agent_username(&self) -> &str {
        &self.session.agent().username
    }

    /// The account this reset is for.
    pub fn account(&self) -> &Account {
        self.session.account()
    }
}

fn next_method(steps: &[StepRow]) -> Option<Method> {
    let rank = |s: &StepRow| {
        // The manager's answer takes longest: ask first.
        let group = match s.method {
            Method::ManagerApproval => 0,
            Method::CoSignature => 3,
            _ if s.required => 1,
            _ => 2,
        };
        (s.state == StepState::Pending, group, Method::ALL.iter().position(|m| *m == s.method))
    };
    steps.iter().filter(|s| s.useful).min_by_key(|s| rank(s)).map(|s| s.method)
}

fn describe(m: &Missing) -> String {
    match m {
        Missing::Factors { needed, choose_from } => {
            let knowledge = choose_from.iter().filter(|m| m.kind() == FactorKind::Knowledge).count();
            let note = if knowledge > 1 { " (security questions and employee data together count once)" } else { "" };
            format!("{needed} more independent factor(s){note}")
        }
        Missing::Step { method } => format!("{} (required)", method.describe()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_numbers_are_masked_but_recognisable() {
        assert_eq!(mask_email("jsmith@example.com"), "j•••h@example.com");
        assert_eq!(mask_email("jo@example.com"), "j•••@example.com");
        assert_eq!(mask_email("not-an-address"), "•••");
        assert_eq!(mask_phone("+49 30 1234567"), "+•• •• •••••67");
        assert!(!mask_phone("+49 30 1234567").contains("12345"));
    }

    fn row(method: Method, required: bool, state: StepState, useful: bool) -> StepRow {
        StepRow {
            method,
            name: method.describe(),
            kind: method.kind(),
            required,
            counts_as_factor: !required,
            state,
            useful,
            attempts: 0,
            advice: None,
        }
    }

    #[test]
    fn next_comes_the_manager_then_required_steps_then_factors_then_the_co_signature_and_waiting_steps_last() {
        let mut steps = vec![
            row(Method::Totp, false, StepState::NotYet, true),
            row(Method::ManagerApproval, true, StepState::NotYet, true),
            row(Method::GovernmentId, true, StepState::NotYet, true),
            row(Method::CoSignature, true, StepState::NotYet, false),
        ];
        assert_eq!(next_method(&steps), Some(Method::ManagerApproval), "the answer takes longest: ask first");
        steps[1].state = StepState::Pending;
        assert_eq!(next_method(&steps), Some(Method::GovernmentId), "then the other required steps");
        steps[2].useful = false; // ID verified
        assert_eq!(next_method(&steps), Some(Method::Totp));
        steps[0].useful = false;
        assert_eq!(next_method(&steps), Some(Method::ManagerApproval), "only the waiting step is left");
        steps[1].useful = false;
        steps[3].useful = true;
        assert_eq!(next_method(&steps), Some(Method::CoSignature));
    }
}
