//! The desk: the adapter layer that drives a reset end to end.
//!
//! The workflow engine ([`crate::workflow`]) decides; the [`Desk`] executes each
//! decision that needs IO, in order, and feeds the results back as events:
//!
//! ```text
//! shell ──start/apply/co-sign──► Desk ──event──► Session ──decisions──► Desk
//!                                  │ WriteIntent  → audit append (signed, fsync) → IntentRecorded
//!                                  │ ExecuteReset → check the intent is durable → password → directory
//!                                  │ WriteOutcome / WriteRecord → audit append
//!                                  │ SendCode / Notify / RequestManagerApproval → notifier (outbox)
//!                                  │ LockVerification → directory;  HandOff → password released once
//! ```
//!
//! **No directory write without a durable signed intent record**: the engine emits
//! `ExecuteReset` only after `IntentRecorded`, which the desk reports only after
//! [`AuditLog::append`] returned; and before writing the directory the desk checks
//! again, in the store, that the intent record is there, unchanged and still open
//! ([`Desk::ensure_intent_durable`]). An IO failure stops the run
//! ([`ResetRun::broken`]): nothing after it happens.
//!
//! Besides executing decisions the desk gathers the facts the engine asks for: the
//! account's earlier resets and failures from the audit store ([`history`]), the last
//! accepted TOTP step ([`replay`]), a co-signer's verified identity ([`keys`]). It also
//! makes every counted verification failure durable as a signed record as it
//! happens, so that abandoning a session cannot erase it from the lockout count.

pub mod admin;
pub mod approval;
pub mod collector_approval;
pub mod history;
pub mod key_admin;
pub mod keys;
pub mod mail_notifier;
pub mod mailer;
pub mod outbox;
pub mod parking;
pub mod progress;
pub mod reconcile;
pub mod replay;
pub mod reset;
pub mod revocation;
pub mod sender;
pub mod ticketing;
pub mod view;
pub mod webhook;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use rand::RngCore;
use serde::Serialize;
use time::OffsetDateTime;

use crate::audit::event::EventError;
use crate::audit::store::FILE_NAME as AUDIT_FILE;
use crate::audit::{
    Appended, AuditError, AuditLog, DirectoryOutcome, Event, EventType, MadeCosignature, PendingIntent,
};
use crate::ca::{CaError, TrustAnchor};
use crate::config::{Config, Mode};
use crate::directory::{Directory, DirectoryError};
use crate::groups::GroupRules;
use crate::login;
use crate::policy::authority::CoSignerClaim;
use crate::policy::{ActingAgent, Channel, RequestContext, StatedDetails};
use crate::secret::Secret;
use crate::token::registry::{RegistryError, TokenRegistry};
use crate::token::{RecordSigner, SignError};
use crate::verification::co_signature::CoSignature;
use crate::verification::manager_approval::ManagerResponse;
use crate::verification::one_time_code::IssuedCode;
use crate::verification::{InputError, Verdict};
use crate::workflow::facts::{
    AgentFact, CoSignerFact, FactsKind, HandoffChannel, RequestOutcome, ResetFacts, StepFact,
};
use crate::workflow::input::{check_secret_action, parse_ui_action, UiAction, UiInputError};
use crate::workflow::{
    Decision, Notification, NotificationKind, OpenRequest, Phase, Recipient, Session, Status, WorkflowError,
    WorkflowEvent,
};

use crate::token::audit_keys::RegistryKeys;
use approval::{ApprovalChannel, ApprovalContext, ApprovalError, Issued};
use history::HistorySource;
use keys::CoSignerKeyError;
pub use outbox::SecretKind;
use outbox::{Message, Notifier, NotifyError, SecretDelivery, SecretRoute};
use reconcile::{Finding, Reconciliation, ReconciliationFacts, TargetName};
use replay::{ReplayError, ReplayGuard};
use reset::OutcomePending;
pub use reset::{InBandSecret, ResetRun};

/// Why a desk call failed. Messages say what to do; none contains a secret.
#[derive(Debug, thiserror::Error)]
pub enum DeskError {
    #[error(transparent)]
    Audit(#[from] AuditError),
    #[error("the audit record could not be built: {0}")]
    Record(#[from] EventError),
    #[error(transparent)]
    Directory(#[from] DirectoryError),
    #[error(transparent)]
    Workflow(#[from] WorkflowError),
    #[error(transparent)]
    Ui(#[from] UiInputError),
    #[error(transparent)]
    Input(#[from] InputError),
    #[error(transparent)]
    Notify(#[from] NotifyError),
    #[error(transparent)]
    Mail(#[from] mailer::MailError),
    #[error(transparent)]
    Replay(#[from] ReplayError),
    #[error(transparent)]
    Sign(#[from] SignError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Ca(#[from] CaError),
    #[error("the enrolled keys could not be loaded: {0}")]
    Keys(#[from] crate::token::audit_keys::LoadError),
    #[error(transparent)]
    History(#[from] history::HistoryError),
    #[error("co-signature refused: {0}")]
    CoSigner(#[from] CoSignerKeyError),
    #[error("the co-signer {0:?} is not a help-desk agent in the directory; ask an agent to co-sign")]
    CoSignerNotAnAgent(String),
    #[error("that is your own key's reader: the second agent inserts their YubiKey into the other reader")]
    CoSignInOwnReader,
    #[error("the co-signer's login failed: {0}")]
    CoSignerLogin(#[source] crate::login::LoginError),
    #[error("the signing key is not the logged-in agent's; log in again with your own key")]
    WrongSigner,
    #[error("the login identity is unusable ({0}); log in again")]
    BadIdentity(&'static str),
    #[error("the reset intent (seq {0}) is not durable in the audit log, so the directory was not touched; start the reset again")]
    IntentNotDurable(u64),
    #[error("the temporary password could not be generated ({0}); check the organisation name in the configuration")]
    Password(#[from] crate::password::PasswordError),
    #[error("production desks do not deliver secrets in-band; configure SMTP delivery ([smtp] in resetdesk.toml)")]
    InBandInProduction,
    #[error("this reset stopped after a failure ({0}); nothing further was done: start a new reset")]
    RunBroken(String),
    #[error(transparent)]
    Approval(#[from] ApprovalError),
    #[error("the audit export failed: {0}")]
    Export(String),
    #[error(transparent)]
    Parking(#[from] parking::ParkingError),
    #[error("only admin agents see the Admin screen; ask an admin")]
    AdminOnly,
    #[error("production desks take manager approvals only through the collector's approval page; configure [collector] in resetdesk.toml")]
    ApprovalChannelInProduction,
    #[error("the reset was not done: the directory changed since the request opened ({0}), so its verification no longer stands; the request is recorded as cancelled: start a new one")]
    ChangedSinceOpened(String),
    #[error("{0:?} is not in an agent group in the directory (any more); an agent must do this")]
    NotAnAgent(String),
    #[error("the new password WAS set in the directory, but the outcome record (intent seq {intent_seq}) could not be signed ({why}); the reset is not complete and nothing was handed over: fix the cause (reinsert the key, touch it) and retry the outcome; the password is held until then, and if this desk stops, reconciliation settles the reset")]
    OutcomePending { intent_seq: u64, why: String },
}

/// Where the time of desk calls went (cumulative since [`Desk::reset_stage_times`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StageTimes {
    /// Card operations: PIN verification and slot-9c signatures.
    pub token: Duration,
    /// Audit store work besides signing: encoding, key check, SQLite commit with fsync.
    pub audit_store: Duration,
    /// Directory reads and writes (including argon2id of the new password).
    pub directory: Duration,
    /// Engine transitions and the adapter-side secret checks (argon2id of answers).
    pub engine: Duration,
    /// Reading the account's history from the audit store.
    pub history: Duration,
    /// Outbox writes.
    pub notifier: Duration,
    /// Records appended.
    pub records: u32,
}

/// What a desk call tells the shell. Holds no secret; secrets wait in the
/// [`ResetRun`] to be taken once.
#[derive(Debug, Clone, Serialize)]
pub struct Reply {
    pub request_id: String,
    /// Every decision of the engine in the order the desk executed it.
    pub decisions: Vec<Decision>,
    pub status: Status,
    /// A one-time code or password waits for the requester's device: `take_in_band_secret`.
    pub in_band_secret_waiting: bool,
    /// The temporary password waits for the customer-facing window: `take_handoff_password`.
    pub handoff_waiting: bool,
    /// Notifications that could not be addressed (e.g. a manager without an address).
    pub warnings: Vec<String>,
}

/// How the request reached the desk, as the agent enters it.
#[derive(Debug, Clone, Default)]
pub struct StartRequest {
    pub channel: Option<Channel>,
    pub stated: StatedDetails,
    /// An admin's reason for the emergency path past a verification lockout.
    pub emergency_reason: Option<String>,
}

/// A signer that clocks its card operations.
struct Timed<'a> {
    inner: &'a mut dyn RecordSigner,
    spent: Duration,
}

impl RecordSigner for Timed<'_> {
    fn key_id(&self) -> [u8; 32] {
        self.inner.key_id()
    }

    fn sign_digest(&mut self, digest: &[u8; 32]) -> Result<Vec<u8>, SignError> {
        let t = Instant::now();
        let r = self.inner.sign_digest(digest);
        self.spent += t.elapsed();
        r
    }

    fn card_serial(&self) -> Option<u32> {
        self.inner.card_serial()
    }
}

/// Facts of a failed verification step, written as it happens (see the module doc).
#[derive(Debug, Serialize)]
struct FailedStepFacts<'a> {
    request_id: &'a str,
    agent: AgentFact,
    target: TargetName<'a>,
    steps: [&'a StepFact; 1],
}

/// The adapter-side driver of resets. One per desk; `Send`, for the shell's state.
pub struct Desk {
    config: Config,
    directory: Box<dyn Directory + Send>,
    audit: AuditLog,
    notifier: Box<dyn Notifier + Send>,
    registry: TokenRegistry,
    anchor: TrustAnchor,
    /// `[tiers]` and `[agents]`: what the directory's groups confer.
    groups: GroupRules,
    replay: ReplayGuard,
    approvals: Box<dyn ApprovalChannel + Send>,
    /// Where account histories come from; `None`: this desk's audit store.
    history: Option<Box<dyn HistorySource + Send>>,
    times: StageTimes,
    /// Told of each execution step as it completes (the app's live progress).
    progress: Option<progress::ProgressObserver>,
}

/// The co-signature the engine accepted, as the audit log stores it.
fn made_cosignature(co: &CoSignerFact) -> Result<MadeCosignature, DeskError> {
    let unusable = || DeskError::BadIdentity("the accepted co-signature is not hex; co-sign again");
    let key_id: [u8; 32] = hex::decode(&co.key_id).ok().and_then(|b| b.try_into().ok()).ok_or_else(unusable)?;
    let signature = hex::decode(&co.signature).map_err(|_| unusable())?;
    Ok(MadeCosignature { key_id, signature })
}

fn new_request_id() -> String {
    let mut bytes = [0u8; 12];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("req-{}", hex::encode(bytes))
}

impl Desk {
    /// Open the desk over `config.data_dir`: the audit log (`audit.sqlite`, with every
    /// signature checked against the enrolled certificate before it is committed), the
    /// token registry and CA certificate, and the desk state. Intents left without an
    /// outcome are listed by [`Desk::pending_intents`]; settle them with [`Desk::reconcile`].
    pub fn open(
        config: Config,
        directory: Box<dyn Directory + Send>,
        notifier: Box<dyn Notifier + Send>,
    ) -> Result<Self, DeskError> {
        let data_dir = config.data_dir.clone();
        let keys = RegistryKeys::load(data_dir.clone(), config.ca.cert_file.clone())?;
        let audit = AuditLog::open(&data_dir.join(AUDIT_FILE))?.with_key_check(Box::new(keys));
        let registry = TokenRegistry::open(&data_dir)?;
        let anchor = TrustAnchor::load(&config.ca_cert_path())?;
        let replay = ReplayGuard::open(&data_dir)?;
        let approvals = approval::channel_for(&config)?;
        let groups = config.group_rules();
        // With the collector's desk services, histories are cross-desk.
        let history = crate::upstream::history::CollectorHistory::from_config(&config, &data_dir.join(AUDIT_FILE))?
            .map(|h| Box::new(h) as Box<dyn HistorySource + Send>);
        Ok(Self {
            groups,
            config,
            directory,
            audit,
            notifier,
            registry,
            anchor,
            replay,
            approvals,
            history,
            times: StageTimes::default(),
            progress: None,
        })
    }

    /// [`Desk::open`] with the directory `[directory] backend` names
    /// ([`crate::directory::open`]: embedded, or LDAP with its side store) and the
    /// notifier of the configuration ([`mail_notifier::notifier_for`]: the outbox in
    /// `config.data_dir`, and SMTP for one-time codes when `[smtp]` delivers by SMTP).
    /// What the shells and the bench open.
    pub fn open_configured(config: Config) -> Result<Self, DeskError> {
        let directory = crate::directory::open(&config)?;
        let notifier = mail_notifier::notifier_for(&config)?;
        Self::open(config, directory, notifier)
    }

    /// [`Desk::open`] with the embedded directory and the notifier of the
    /// configuration, whatever the configuration's backend (tests of the embedded
    /// directory).
    pub fn open_embedded(config: Config) -> Result<Self, DeskError> {
        let directory = crate::directory::embedded::EmbeddedDirectory::open(&config.data_dir, &config)?;
        let notifier = mail_notifier::notifier_for(&config)?;
        Self::open(config, Box::new(directory), notifier)
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Read account histories from `source` instead of this desk's audit store (e.g.
    /// a collector's view across desks, which includes this desk's records).
    pub fn with_history_source(mut self, source: Box<dyn HistorySource + Send>) -> Self {
        self.history = Some(source);
        self
    }

    /// The history of `username` from the configured source, timed.
    fn account_history(
        &mut self,
        username: &str,
        exclude_request: Option<&str>,
    ) -> Result<history::AccountHistory, DeskError> {
        let t = Instant::now();
        let history = self.history_source().account_history(username, exclude_request);
        self.times.history += t.elapsed();
        Ok(history?)
    }

    /// Where account histories come from: the configured source, else this desk's log.
    fn history_source(&self) -> &dyn HistorySource {
        match &self.history {
            Some(source) => source.as_ref(),
            None => self.audit.store(),
        }
    }

    /// The histories of several accounts in one read (a page of search results).
    fn account_histories(
        &self,
        usernames: &[&str],
    ) -> Result<std::collections::BTreeMap<String, history::AccountHistory>, DeskError> {
        Ok(self.history_source().account_histories(usernames)?)
    }

    /// The directory (read access for the shell: search, account details).
    pub fn directory(&self) -> &dyn Directory {
        self.directory.as_ref()
    }

    /// The audit log (read access).
    pub fn audit(&self) -> &AuditLog {
        &self.audit
    }

    /// Where the time went since the last [`Desk::reset_stage_times`].
    pub fn stage_times(&self) -> StageTimes {
        self.times
    }

    pub fn reset_stage_times(&mut self) {
        self.times = StageTimes::default();
    }

    /// Report each execution step to `observer` as it completes (see [`progress`]).
    pub fn observe_progress(&mut self, observer: progress::ProgressObserver) {
        self.progress = Some(observer);
    }

    /// Reset intents that have no outcome now.
    pub fn pending_intents(&self) -> Result<Vec<PendingIntent>, DeskError> {
        Ok(self.audit.pending_intents()?)
    }

    // ----- starting a reset -----

    /// Open a reset of `target` by the logged-in `agent`, whose slot-9c `signer` signs
    /// every record of the run. Returns the run and the first decisions (a refusal is
    /// already recorded when the reply says so).
    pub fn start_reset(
        &mut self,
        agent: &login::AgentIdentity,
        signer: &mut dyn RecordSigner,
        target: &str,
        request: StartRequest,
        now: OffsetDateTime,
    ) -> Result<(ResetRun, Reply), DeskError> {
        let t = Instant::now();
        let agent_account = self.directory.account(&agent.username, &self.groups)?;
        let account = self.directory.account(target, &self.groups)?;
        let manager = match account.manager.as_deref() {
            Some(m) => match self.directory.account(m, &self.groups) {
                Ok(a) => Some(a),
                Err(DirectoryError::NotFound(_)) => None,
                Err(e) => return Err(e.into()),
            },
            None => None,
        };
        self.times.directory += t.elapsed();
        let mut request = request;
        request.stated.manager = crate::policy::risk::stated_manager(request.stated.manager.take(), manager.as_ref());
        // The agent's authority is the lower of the login's tier and the directory's now.
        let directory_tier = agent_account.agent_tier.ok_or_else(|| DeskError::NotAnAgent(agent.username.clone()))?;
        let tier = agent.tier.min(directory_tier);
        let mut identity =
            ActingAgent::from_login_fields(&agent.username, tier, agent_account.entry.groups, &agent.signing_key_id)
                .ok_or(DeskError::BadIdentity("the signing key id is not 32 bytes of hex"))?;
        identity.employee_id = agent_account.entry.employee_id;
        if signer.key_id() != identity.key_id {
            return Err(DeskError::WrongSigner);
        }
        self.check_enrolled_signer(&agent.username, &identity.key_id)?;

        let history = self.account_history(&account.username, None)?;
        let t = Instant::now();
        let last_totp_step = history.last_totp_step.max(self.replay.last_step(&account.username)?);
        self.times.history += t.elapsed();

        let open = OpenRequest {
            request_id: new_request_id(),
            at: now,
            agent: identity,
            account,
            manager,
            context: RequestContext {
                channel: request.channel.unwrap_or(Channel::WalkUp),
                stated: request.stated,
                previous_resets: history.resets,
                previous_failures: history.failures,
                cross_desk: history.cross_desk,
            },
            directory_backend: self.directory.backend_name().to_owned(),
            emergency_reason: request.emergency_reason,
        };
        let t = Instant::now();
        let (session, decisions) = Session::open(&self.config.policy, open)?;
        self.times.engine += t.elapsed();
        let mut run = ResetRun::new(session, signer.key_id(), last_totp_step);
        let reply = self.proceed(&mut run, decisions, signer, now)?;
        Ok((run, reply))
    }

    // ----- agent actions -----

    /// Apply one UI message (JSON, parsed strictly).
    pub fn apply_ui_json(
        &mut self,
        run: &mut ResetRun,
        json: &str,
        signer: &mut dyn RecordSigner,
        now: OffsetDateTime,
    ) -> Result<Reply, DeskError> {
        let action = parse_ui_action(json)?;
        self.apply_action(run, action, signer, now)
    }

    /// [`Desk::apply_ui_json`] for a message that may carry a secret (answers, TOTP, a
    /// code), handed over as a [`Secret`] so the JSON text is zeroized when this returns
    /// (the shell wraps the IPC string at once). The parsed secrets are `Secret`s too.
    pub fn apply_ui_secret_json(
        &mut self,
        run: &mut ResetRun,
        json: Secret,
        signer: &mut dyn RecordSigner,
        now: OffsetDateTime,
    ) -> Result<Reply, DeskError> {
        let action = parse_ui_action(json.expose())?;
        drop(json);
        self.apply_action(run, action, signer, now)
    }

    /// Apply one agent action. Secret-bearing actions (answers, TOTP, codes) are
    /// checked here and reach the engine as verdicts only; the secrets are dropped.
    pub fn apply_action(
        &mut self,
        run: &mut ResetRun,
        action: UiAction,
        signer: &mut dyn RecordSigner,
        now: OffsetDateTime,
    ) -> Result<Reply, DeskError> {
        self.usable(run, signer)?;
        let event = match action.into_event(now) {
            Ok(event) => event,
            Err(secret_action) => self.check_secret(run, secret_action, now)?,
        };
        self.apply_event(run, event, signer, now)
    }

    /// Whether the manager answered this run's approval request through the approval
    /// channel; if so the answer goes to the engine (the approver and address are the
    /// ones the token went to). `None` while nothing arrived.
    pub fn poll_manager_answer(
        &mut self,
        run: &mut ResetRun,
        signer: &mut dyn RecordSigner,
        now: OffsetDateTime,
    ) -> Result<Option<Reply>, DeskError> {
        self.usable(run, signer)?;
        if run.session.pending().manager_asked_at.is_none() {
            return Ok(None);
        }
        let answer = self.approvals.take_answer(run.request_id());
        match run.note_collector(answer)? {
            Some(response) => self.apply_manager_response(run, response, signer, now).map(Some),
            None => Ok(None),
        }
    }

    /// The manager's answer, as the approval channel received it.
    fn apply_manager_response(
        &mut self,
        run: &mut ResetRun,
        response: ManagerResponse,
        signer: &mut dyn RecordSigner,
        now: OffsetDateTime,
    ) -> Result<Reply, DeskError> {
        self.usable(run, signer)?;
        self.apply_event(run, WorkflowEvent::ManagerResponded { at: now, response }, signer, now)
    }

    /// A second agent co-signs with their own card (`co_signer`, slot 9c). Before the
    /// card signs anything, the desk establishes who it is from verifiable sources (the
    /// key's registry row and CA-issued certificate, under the login's token rules; the
    /// agent tier and employee ID from the directory) and the engine accepts them
    /// (admin, not the agent, not the holder, not the holder's manager). Then the card
    /// signs this reset's approval digest, the signature is verified against the
    /// enrolled certificate, and the engine records the co-signature; the intent record
    /// carries it (header: co-signer key id; beside the record: the signature).
    /// The co-signature of the second agent whose key is in `co_reader`, unlocked with
    /// their `pin`: never the reader holding the acting agent's own key
    /// (`agent_reader`), so one agent cannot co-sign alone with a second key of their
    /// own in one reader. The co-signer logs in as at the lock screen (certificate,
    /// enrolment, directory), then [`Desk::co_sign`] checks and records the signature.
    pub fn co_sign_in_reader(
        &mut self,
        run: &mut ResetRun,
        agent_reader: &str,
        co_reader: &str,
        pin: Secret,
        signer: &mut dyn RecordSigner,
        now: OffsetDateTime,
    ) -> Result<Reply, DeskError> {
        if agent_reader == co_reader {
            return Err(DeskError::CoSignInOwnReader);
        }
        let mut co_session = login::login(&self.config, self.directory.as_ref(), co_reader, pin, now)
            .map_err(DeskError::CoSignerLogin)?;
        let co_signer = co_session.signer().map_err(DeskError::CoSignerLogin)?;
        self.co_sign(run, co_signer, signer, now)
    }

    pub fn co_sign(
        &mut self,
        run: &mut ResetRun,
        co_signer: &mut dyn RecordSigner,
        signer: &mut dyn RecordSigner,
        now: OffsetDateTime,
    ) -> Result<Reply, DeskError> {
        self.usable(run, signer)?;
        let key_id = co_signer.key_id();
        let policy = login::TokenPolicy::from_config(&self.config);
        let enrolled =
            keys::enrolled_co_signer(&self.registry, &self.anchor, &key_id, co_signer.card_serial(), policy, now)?;
        let t = Instant::now();
        let account = match self.directory.account(&enrolled.username, &self.groups) {
            Ok(a) => a,
            Err(DirectoryError::NotFound(_)) => return Err(DeskError::CoSignerNotAnAgent(enrolled.username)),
            Err(e) => return Err(e.into()),
        };
        self.times.directory += t.elapsed();
        let tier = account.agent_tier.ok_or_else(|| DeskError::CoSignerNotAnAgent(enrolled.username.clone()))?;
        let claim =
            CoSignerClaim { username: &enrolled.username, employee_id: &account.employee_id, tier, key_id: &key_id };
        run.session.check_co_signer(&claim)?;

        let digest = run.session.approval_digest();
        let t = Instant::now();
        let signature_der = co_signer.sign_digest(&digest)?;
        self.times.token += t.elapsed();
        enrolled.verify(&digest, &signature_der)?;
        let signature = CoSignature {
            username: enrolled.username,
            employee_id: account.entry.employee_id,
            tier,
            key_id,
            digest,
            signature_der,
            verified_against_certificate: true,
        };
        self.apply_event(run, WorkflowEvent::CoSigned { at: now, signature }, signer, now)
    }

    // ----- reconciliation -----

    /// Settle intents left without an outcome: compare each with the directory and
    /// write a signed outcome (by the logged-in `agent`) where the directory decides
    /// it; report the others for a person to check.
    pub fn reconcile(
        &mut self,
        agent: &login::AgentIdentity,
        signer: &mut dyn RecordSigner,
        now: OffsetDateTime,
    ) -> Result<Vec<Reconciliation>, DeskError> {
        if hex::encode(signer.key_id()) != agent.signing_key_id {
            return Err(DeskError::WrongSigner);
        }
        let mut out = Vec::new();
        for pending in self.audit.pending_intents()? {
            let facts = &pending.facts;
            let request_id = facts.get("request_id").and_then(|v| v.as_str()).unwrap_or_default().to_owned();
            let target = facts.pointer("/target/username").and_then(|v| v.as_str()).unwrap_or_default().to_owned();
            let intent_at = OffsetDateTime::from_unix_timestamp_nanos(i128::from(pending.timestamp_ms) * 1_000_000)
                .unwrap_or(OffsetDateTime::UNIX_EPOCH);
            let (finding, must_change) = if target.is_empty() {
                (Finding::NeedsHuman { why: "the intent record names no target account".into() }, false)
            } else {
                match self.directory.entry(&target) {
                    Ok(account) => {
                        let changed = self.directory.password_changed_at(&target)?;
                        (
                            reconcile::classify(intent_at, account.must_change_password, changed),
                            account.must_change_password,
                        )
                    }
                    Err(DirectoryError::NotFound(_)) => (
                        Finding::NeedsHuman { why: format!("the account {target:?} is no longer in the directory") },
                        false,
                    ),
                    Err(e) => return Err(e.into()),
                }
            };
            let outcome = match &finding {
                Finding::Applied { .. } => Some(DirectoryOutcome::Done),
                Finding::NotApplied { .. } => Some(DirectoryOutcome::Failed {
                    error:
                        "not applied: the directory shows no password change since the intent (found at reconciliation)"
                            .into(),
                }),
                Finding::NeedsHuman { .. } => None,
            };
            let outcome_seq = match outcome {
                Some(outcome) => {
                    let facts = ReconciliationFacts {
                        reconciliation: &finding,
                        request_id: &request_id,
                        target: TargetName { username: &target },
                        reconciled_by: &agent.username,
                        intent_at,
                        must_change_pending: must_change,
                        note: reconcile::note(&finding),
                    };
                    let event = Event::reset_outcome(pending.intent_ref(), &outcome, &facts)?;
                    Some(self.append(&event, signer, now)?.seq)
                }
                None => None,
            };
            out.push(Reconciliation { intent_seq: pending.seq, request_id, target, finding, outcome_seq });
        }
        Ok(out)
    }

    // ----- the execution loop -----

    fn usable(&self, run: &ResetRun, signer: &dyn RecordSigner) -> Result<(), DeskError> {
        self.same_signer(run, signer)?;
        if let Some(pending) = &run.outcome_pending {
            return Err(pending.error());
        }
        Ok(())
    }

    /// The run is not broken and `signer` is its agent's key.
    fn same_signer(&self, run: &ResetRun, signer: &dyn RecordSigner) -> Result<(), DeskError> {
        if let Some(why) = &run.broken {
            return Err(DeskError::RunBroken(why.clone()));
        }
        if signer.key_id() != run.agent_key_id {
            return Err(DeskError::WrongSigner);
        }
        Ok(())
    }

    /// Sign the outcome of a run whose outcome record failed after the directory write
    /// ([`ResetRun::outcome_pending`]), then finish what followed it (hand-off,
    /// notifications). Fails again, still pending, if the outcome still cannot be signed.
    pub fn retry_outcome(
        &mut self,
        run: &mut ResetRun,
        signer: &mut dyn RecordSigner,
        now: OffsetDateTime,
    ) -> Result<Reply, DeskError> {
        self.same_signer(run, signer)?;
        let pending = run.outcome_pending.take().ok_or(DeskError::Workflow(WorkflowError::IllegalTransition {
            event: "retry-outcome",
            phase: run.phase(),
        }))?;
        self.proceed(run, pending.remaining, signer, now)
    }

    /// Answers, TOTP and codes: checked against the account's material (fresh from
    /// the directory), turned into a verdict-only event. A TOTP step that passed is
    /// made durable before the engine hears of it.
    fn check_secret(
        &mut self,
        run: &mut ResetRun,
        action: UiAction,
        now: OffsetDateTime,
    ) -> Result<WorkflowEvent, DeskError> {
        let username = run.session.account().username.clone();
        let t = Instant::now();
        let material = self.directory.verification_material(&username)?;
        let stored = self.replay.last_step(&username)?;
        self.times.directory += t.elapsed();
        run.secrets.last_totp_step = run.secrets.last_totp_step.max(stored);
        let t = Instant::now();
        let event = check_secret_action(action, now, &material, &mut run.secrets)?;
        self.times.engine += t.elapsed();
        if let WorkflowEvent::TotpChecked { accepted_step: Some(step), .. } = &event {
            self.replay.accept(&username, *step)?;
        }
        Ok(event)
    }

    /// Feed one event, persist a counted failure it produced, execute the decisions.
    /// While verifying, the failures of other sessions on the account are read afresh
    /// first, so a failure this event brings counts against them all.
    fn apply_event(
        &mut self,
        run: &mut ResetRun,
        event: WorkflowEvent,
        signer: &mut dyn RecordSigner,
        now: OffsetDateTime,
    ) -> Result<Reply, DeskError> {
        if run.session.phase() == Phase::Verifying {
            let username = run.session.account().username.clone();
            let request_id = run.request_id().to_owned();
            let earlier = self.account_history(&username, Some(&request_id))?.failures;
            run.session.refresh_earlier_failures(earlier);
        }
        let t = Instant::now();
        let decisions = run.session.handle(event);
        self.times.engine += t.elapsed();
        self.proceed(run, decisions?, signer, now)
    }

    /// Record new failures, then execute `decisions`; any IO failure breaks the run.
    fn proceed(
        &mut self,
        run: &mut ResetRun,
        decisions: Vec<Decision>,
        signer: &mut dyn RecordSigner,
        now: OffsetDateTime,
    ) -> Result<Reply, DeskError> {
        let result =
            self.record_failures(run, &decisions, signer, now).and_then(|()| self.execute(run, decisions, signer, now));
        match result {
            Ok((decisions, warnings)) => Ok(Reply {
                request_id: run.request_id().to_owned(),
                decisions,
                status: run.status(),
                in_band_secret_waiting: run.in_band.is_some(),
                handoff_waiting: run.handoff_waiting(),
                warnings,
            }),
            // The directory has the new password but the outcome is not signed: the run
            // keeps the password (zeroized memory) and can retry; it is not a success.
            Err(e @ DeskError::OutcomePending { .. }) => Err(e),
            // The code did not go out and none counts (no hash kept): the agent may
            // send a new one or choose another method; nothing else was pending.
            Err(e @ DeskError::Notify(NotifyError::CodeNotSent { .. })) => Err(e),
            // The approval could not be registered at the collector: the run stays
            // usable and says so (`ResetView::approval_needs_collector`); ask again.
            Err(e @ DeskError::Approval(ApprovalError::NeedsCollector(_))) => Err(e),
            Err(e) => {
                run.broken = Some(e.to_string());
                // Nothing may leave a broken run.
                run.password = None;
                run.in_band = None;
                Err(e)
            }
        }
    }

    /// A failed step that counts toward the lockout is written as a signed
    /// `verification-failed` record at once, unless the decisions already record it
    /// (the lockout or refusal record carries every step).
    fn record_failures(
        &mut self,
        run: &mut ResetRun,
        decisions: &[Decision],
        signer: &mut dyn RecordSigner,
        now: OffsetDateTime,
    ) -> Result<(), DeskError> {
        let facts = run.session.facts(FactsKind::Refusal, now);
        let new_steps = facts.steps.get(run.steps_seen..).unwrap_or_default();
        run.steps_seen = facts.steps.len();
        if decisions.iter().any(|d| matches!(d, Decision::WriteRecord { .. })) {
            return Ok(());
        }
        for step in new_steps {
            let Verdict::Failed(reason) = step.verdict else { continue };
            if !reason.counts_toward_lockout() {
                continue;
            }
            let failed = FailedStepFacts {
                request_id: &facts.request_id,
                agent: facts.agent.clone(),
                target: TargetName { username: &facts.target.username },
                steps: [step],
            };
            self.append(&Event::new(EventType::VerificationFailed, &failed)?, signer, now)?;
        }
        Ok(())
    }

    fn append(
        &mut self,
        event: &Event,
        signer: &mut dyn RecordSigner,
        now: OffsetDateTime,
    ) -> Result<Appended, DeskError> {
        self.append_cosigned(event, signer, None, now)
    }

    /// [`Desk::append`], with the co-signature made at [`Desk::co_sign`] if there is one.
    fn append_cosigned(
        &mut self,
        event: &Event,
        signer: &mut dyn RecordSigner,
        cosignature: Option<&MadeCosignature>,
        now: OffsetDateTime,
    ) -> Result<Appended, DeskError> {
        let t = Instant::now();
        let mut timed = Timed { inner: signer, spent: Duration::ZERO };
        let appended = match cosignature {
            Some(c) => self.audit.append_with_cosignature(event, &mut timed, c, now),
            None => self.audit.append(event, &mut timed, now),
        };
        let total = t.elapsed();
        self.times.token += timed.spent;
        self.times.audit_store += total.saturating_sub(timed.spent);
        let appended = appended?;
        self.times.records += 1;
        Ok(appended)
    }

    /// Execute decisions in order; events they produce are fed back at once and their
    /// decisions executed before the rest.
    fn execute(
        &mut self,
        run: &mut ResetRun,
        decisions: Vec<Decision>,
        signer: &mut dyn RecordSigner,
        now: OffsetDateTime,
    ) -> Result<(Vec<Decision>, Vec<String>), DeskError> {
        let mut queue: VecDeque<Decision> = decisions.into();
        let mut done = Vec::new();
        let mut warnings = Vec::new();
        while let Some(decision) = queue.pop_front() {
            if matches!(decision, Decision::WriteIntent { .. }) {
                if let Some(why) = self.changed_since_opened(run, now)? {
                    // Recorded as cancelled, with the reason; no intent, no directory write.
                    let cancel = run.session.handle(WorkflowEvent::Cancelled {
                        at: now,
                        reason: format!("the directory changed since the request opened: {why}"),
                    })?;
                    for d in &cancel {
                        self.execute_one(run, d, signer, now, &mut warnings)?;
                    }
                    return Err(DeskError::ChangedSinceOpened(why));
                }
            }
            let follow_up = match self.execute_one(run, &decision, signer, now, &mut warnings) {
                Ok(follow_up) => follow_up,
                Err(e) if matches!(decision, Decision::WriteOutcome { .. }) && run.password.is_some() => {
                    let intent_seq = run.intent.map(|a| a.seq).unwrap_or_default();
                    queue.push_front(decision);
                    let pending = OutcomePending { intent_seq, why: e.to_string(), remaining: queue.into() };
                    let error = pending.error();
                    run.outcome_pending = Some(pending);
                    return Err(error);
                }
                Err(e) => return Err(e),
            };
            if let (Some(step), Some(observer)) = (progress::ExecutionStep::of(&decision), self.progress.as_mut()) {
                observer(step);
            }
            done.push(decision);
            if let Some(event) = follow_up {
                let t = Instant::now();
                let next = run.session.handle(event)?;
                self.times.engine += t.elapsed();
                for d in next.into_iter().rev() {
                    queue.push_front(d);
                }
            }
        }
        Ok((done, warnings))
    }

    /// One decision's IO. Returns the event to feed back, if the decision has one.
    fn execute_one(
        &mut self,
        run: &mut ResetRun,
        decision: &Decision,
        signer: &mut dyn RecordSigner,
        now: OffsetDateTime,
        warnings: &mut Vec<String>,
    ) -> Result<Option<WorkflowEvent>, DeskError> {
        match decision {
            Decision::WriteIntent { facts } => {
                let cosignature = facts.co_signer.as_ref().map(made_cosignature).transpose()?;
                let event = Event::reset_intent(facts.as_ref())?;
                let appended = self.append_cosigned(&event, signer, cosignature.as_ref(), now)?;
                run.intent = Some(appended);
                Ok(Some(WorkflowEvent::IntentRecorded { at: now, seq: appended.seq, entry_hash: appended.entry_hash }))
            }
            Decision::ExecuteReset { username, password, context_words } => {
                self.ensure_intent_durable(run)?;
                let mut words: Vec<&str> = context_words.iter().map(String::as_str).collect();
                words.push(&self.config.organisation);
                let registered = run.session.facts(FactsKind::Intent, now).handoff.and_then(|h| match h.channel {
                    HandoffChannel::CustomerWindow => None,
                    HandoffChannel::RegisteredEmail { address } => Some(address),
                    HandoffChannel::RegisteredPhone { number } => Some(number),
                });
                // Never set a password that cannot be delivered.
                let undeliverable = registered
                    .and_then(|to| self.check_secret_channel(SecretKind::TemporaryPassword, &to).err())
                    .map(|e| format!("not attempted: {e}"));
                let generated = match undeliverable {
                    Some(why) => Err(why),
                    None => crate::password::generate(password, &words).map_err(|e| {
                        format!("no temporary password was generated ({e}); the directory was not changed")
                    }),
                };
                let result = match generated {
                    Ok(secret) => {
                        let t = Instant::now();
                        let written = self.directory.set_temporary_password(username, &secret);
                        self.times.directory += t.elapsed();
                        match written {
                            Ok(()) => {
                                run.password = Some(secret);
                                Ok(())
                            }
                            Err(e) => Err(e.to_string()),
                        }
                    }
                    Err(why) => Err(why),
                };
                Ok(Some(WorkflowEvent::DirectoryResult { at: now, result }))
            }
            Decision::WriteOutcome { facts } => {
                let intent = run.intent.ok_or(DeskError::IntentNotDurable(0))?;
                let outcome = match &facts.outcome {
                    RequestOutcome::Succeeded => DirectoryOutcome::Done,
                    RequestOutcome::DirectoryFailed { message } => DirectoryOutcome::Failed { error: message.clone() },
                    other => DirectoryOutcome::Failed { error: format!("{other:?}") },
                };
                // A done reset gets a "this wasn't me" link when the collector takes reports:
                // only the token's hash goes into the signed record (and so to the collector).
                let report = (outcome == DirectoryOutcome::Done).then(|| self.new_report_link()).flatten();
                let mut facts = facts.clone();
                facts.report_sha256 = report.as_ref().map(|(_, hash)| hash.clone());
                self.append(&Event::reset_outcome(intent.intent_ref(), &outcome, facts.as_ref())?, signer, now)?;
                run.report_link = report.map(|(link, _)| link);
                self.queue_ticket_update(&facts, now, warnings);
                Ok(None)
            }
            Decision::WriteRecord { facts } => {
                let kind = if facts.kind == FactsKind::Lockout { EventType::Lockout } else { EventType::Refusal };
                self.append(&Event::new(kind, facts.as_ref())?, signer, now)?;
                self.queue_ticket_update(facts, now, warnings);
                Ok(None)
            }
            Decision::HandOff { handoff } => {
                let to = match &handoff.channel {
                    HandoffChannel::CustomerWindow => None,
                    HandoffChannel::RegisteredEmail { address } => Some(address.clone()),
                    HandoffChannel::RegisteredPhone { number } => Some(number.clone()),
                };
                // A registered channel takes the password now; the customer window takes it later.
                if let Some((to, password)) = to.and_then(|to| run.password.take().map(|p| (to, p))) {
                    let message = self.password_message(run, &to);
                    if let Some(secret) = self.deliver_secret(&message, SecretKind::TemporaryPassword, password, now)? {
                        run.in_band = Some(InBandSecret { kind: SecretKind::TemporaryPassword, to, secret });
                    }
                }
                run.handoff_released = true;
                Ok(None)
            }
            Decision::SendCode { label: _, to, not_after } => {
                self.check_secret_channel(SecretKind::OneTimeCode, to)?;
                let (code, issued) =
                    IssuedCode::issue(&self.config.policy.one_time_code, to, now, &mut rand::rngs::OsRng);
                // An earlier code stops counting; this one counts only once delivered.
                run.secrets.issued_code = None;
                let message = self.code_message(run, to, *not_after);
                if let Some(secret) = self.deliver_secret(&message, SecretKind::OneTimeCode, code, now)? {
                    run.in_band = Some(InBandSecret { kind: SecretKind::OneTimeCode, to: to.clone(), secret });
                }
                run.secrets.issued_code = Some(issued);
                Ok(None)
            }
            Decision::RequestManagerApproval { manager, address } => {
                if self.config.mode == Mode::Production && !self.approvals.production_ready() {
                    return Err(DeskError::ApprovalChannelInProduction);
                }
                let issued = Issued {
                    request_id: run.request_id().to_owned(),
                    manager: manager.clone(),
                    address: address.clone(),
                };
                let about = self.approval_context(run);
                let issued = self.approvals.issue(&issued, &about, now);
                let token = run.note_collector(issued)?;
                match self.approvals.answer_link(&token.token) {
                    // The collector's page: the link is the credential, sent like a
                    // one-time code (from memory, never queued) where the notifier can.
                    Some(link) => {
                        let link = Secret::new(link);
                        let message = self.approval_message(run, manager, address, &token, None);
                        let demo_in_band = self.config.mode != Mode::Production
                            && self.notifier.secret_route(SecretKind::OneTimeCode, address)? == SecretRoute::InBand;
                        if demo_in_band {
                            // A demo desk without SMTP: the link waits in the outbox
                            // (the `.eml` files), where the demo user opens it.
                            let message = self.approval_message(run, manager, address, &token, Some(&link));
                            self.queue(&[message], now)?;
                        } else {
                            self.deliver_secret(&message, SecretKind::OneTimeCode, link, now)?;
                        }
                    }
                    None => {
                        let message = self.approval_message(run, manager, address, &token, Some(&token.token));
                        // The embedded inbox is demo-only (production refuses it above), so its
                        // code may wait in the outbox, where `resetdesk outbox show` reads it.
                        self.queue(&[message], now)?;
                    }
                }
                Ok(None)
            }
            Decision::Notify { notification } => {
                let report_link = run.report_link.as_ref().map(|l| l.expose().to_owned());
                self.notify(notification, report_link.as_deref(), now, warnings)?;
                Ok(None)
            }
            Decision::LockVerification { username, until, flag_until } => {
                let t = Instant::now();
                let r = self.directory.lock_verification(username, *until, *flag_until);
                self.times.directory += t.elapsed();
                r?;
                Ok(None)
            }
            Decision::Escalated { .. }
            | Decision::StepsExpired { .. }
            | Decision::NeedSteps { .. }
            | Decision::ShowCallbackNumber { .. }
            | Decision::RequestCoSignature { .. }
            | Decision::Wait { .. }
            | Decision::Refuse { .. } => Ok(None),
        }
    }

    /// The signing key is an active 9c key enrolled for `username` (the registry row
    /// names the username of the enrolled certificate).
    fn check_enrolled_signer(&self, username: &str, key_id: &[u8; 32]) -> Result<(), DeskError> {
        match self.registry.by_key_id(key_id)? {
            Some(k) if k.username == username && k.is_active() && k.slot == crate::token::card::Slot::Signature => {
                Ok(())
            }
            _ => Err(DeskError::WrongSigner),
        }
    }

    /// Before the intent: read the account and the agent again. `Some(why)` if the
    /// account changed in a way that matters, the agent's tier dropped, or the signing
    /// key is no longer enrolled for them (`policy::recheck`).
    fn changed_since_opened(&mut self, run: &ResetRun, now: OffsetDateTime) -> Result<Option<String>, DeskError> {
        let t = Instant::now();
        let opened = run.session.account();
        let account = match self.directory.account(&opened.username, &self.groups) {
            Ok(a) => a,
            Err(DirectoryError::NotFound(_)) => return Ok(Some("the account was removed".into())),
            Err(e) => return Err(e.into()),
        };
        let agent = run.session.agent();
        let agent_tier = match self.directory.account(&agent.username, &self.groups) {
            Ok(a) => a.agent_tier,
            Err(DirectoryError::NotFound(_)) => None,
            Err(e) => return Err(e.into()),
        };
        self.times.directory += t.elapsed();
        let changes = crate::policy::recheck::account_changes(opened, &account, now);
        if !changes.is_empty() {
            return Ok(Some(changes.join(", ")));
        }
        if let Some(why) = crate::policy::recheck::agent_change(agent.tier, agent_tier) {
            return Ok(Some(why));
        }
        if self.check_enrolled_signer(&agent.username, &agent.key_id).is_err() {
            return Ok(Some("your signing key is no longer enrolled for you".into()));
        }
        Ok(None)
    }

    /// The invariant, checked where it matters: the intent record this run appended
    /// is in the store, byte-for-byte the one appended, a reset intent, and not yet
    /// closed by an outcome. Otherwise the directory is not touched.
    pub fn ensure_intent_durable(&self, run: &ResetRun) -> Result<Appended, DeskError> {
        let intent = run.intent.ok_or(DeskError::IntentNotDurable(0))?;
        // Open intents are reset-intent records without an outcome, their hash
        // recomputed from the stored bytes.
        let open = self.audit.pending_intents()?;
        if !open.iter().any(|p| p.seq == intent.seq && p.entry_hash == intent.entry_hash) {
            return Err(DeskError::IntentNotDurable(intent.seq));
        }
        Ok(intent)
    }

    fn queue(&mut self, messages: &[Message], now: OffsetDateTime) -> Result<(), DeskError> {
        let t = Instant::now();
        let r = self.notifier.queue_all(messages, now);
        self.times.notifier += t.elapsed();
        Ok(r?)
    }

    /// Once the request's end is recorded: its summary for the ticket named at intake,
    /// queued when `[ticketing]` is set. It never blocks or undoes the request: a
    /// failure to queue is a warning.
    fn queue_ticket_update(&mut self, facts: &ResetFacts, now: OffsetDateTime, warnings: &mut Vec<String>) {
        if !self.config.ticketing.enabled() {
            return;
        }
        let Some(summary) = ticketing::TicketSummary::of(facts, &self.config.organisation) else { return };
        let queued = serde_json::to_string(&summary).map_err(|e| e.to_string()).and_then(|summary_json| {
            let update = outbox::TicketUpdate {
                ticket: summary.ticket.clone(),
                title: summary.title(),
                summary_json,
                request_id: summary.request_id.clone(),
            };
            let t = Instant::now();
            let r = self.notifier.queue_ticket_update(&update, now).map_err(|e| e.to_string());
            self.times.notifier += t.elapsed();
            r
        });
        if let Err(why) = queued {
            tracing::warn!(request = %summary.request_id, error = %why, "ticket update not queued");
            warnings.push(format!(
                "the update for ticket {} was not queued ({why}); the request itself is unaffected: add a note by hand",
                summary.ticket
            ));
        }
    }

    /// Whether a secret of `kind` can go to `to`: the notifier's route (a temporary
    /// password never by e-mail), and production desks only send secrets out of band.
    /// Asked before the secret is made.
    fn check_secret_channel(&self, kind: SecretKind, to: &str) -> Result<(), DeskError> {
        match self.notifier.secret_route(kind, to)? {
            SecretRoute::InBand if self.config.mode == Mode::Production => Err(DeskError::InBandInProduction),
            SecretRoute::InBand | SecretRoute::OutOfBand => Ok(()),
        }
    }

    /// Hand a secret to the notifier; `Some` if it must be shown in-band.
    fn deliver_secret(
        &mut self,
        message: &Message,
        kind: SecretKind,
        secret: Secret,
        now: OffsetDateTime,
    ) -> Result<Option<Secret>, DeskError> {
        self.check_secret_channel(kind, &message.to)?;
        let t = Instant::now();
        let r = self.notifier.deliver_secret(message, kind, secret, now);
        self.times.notifier += t.elapsed();
        match r? {
            SecretDelivery::Sent => Ok(None),
            SecretDelivery::InBand(secret) => Ok(Some(secret)),
        }
    }

    /// What the approval page shows the manager about `run`.
    fn approval_context(&self, run: &ResetRun) -> ApprovalContext {
        let account = run.session.account();
        let agent = run.session.agent();
        ApprovalContext {
            agent: agent.username.clone(),
            agent_name: self
                .directory
                .entry(&agent.username)
                .map(|e| e.display_name)
                .unwrap_or_else(|_| agent.username.clone()),
            agent_employee_id: agent.employee_id.clone(),
            account: account.username.clone(),
            account_name: account.display_name.clone(),
            reasons: run.session.assessment().escalations.iter().map(|e| e.reason.clone()).collect(),
        }
    }

    /// The approval request to the manager: who asks, why extra care, and how to
    /// answer. `shown`: the code or link written into the body (the embedded inbox's
    /// code, or a demo desk's link that waits in the outbox); `None` when the link is
    /// sent from memory at the top of the mail ([`Desk::deliver_secret`]) and must not
    /// reach the outbox row.
    fn approval_message(
        &self,
        run: &ResetRun,
        manager: &str,
        address: &str,
        token: &approval::IssuedToken,
        shown: Option<&Secret>,
    ) -> Message {
        let account = run.session.account();
        let reasons: Vec<&str> = run.session.assessment().escalations.iter().map(|e| e.reason.as_str()).collect();
        let until = token.expires_at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
        let answer = match (self.approvals.answer_link(&token.token).is_some(), shown) {
            (true, Some(link)) => {
                format!("Approve or deny at this link (valid until {until}, once):\n{}\n\n", link.expose())
            }
            (true, None) => {
                format!("Approve or deny at the link at the top of this message (valid until {until}, once).\n\n")
            }
            (false, code) => format!(
                "Approval code (valid {ttl} minutes, once): {}\n\nApprove or deny with this code. ",
                code.map(Secret::expose).unwrap_or_default(),
                ttl = approval::DEFAULT_TTL.whole_minutes(),
            ),
        };
        Message {
            to: address.to_owned(),
            subject: format!("Approval needed: password reset for {}", account.display_name),
            body: format!(
                "Hello {manager},\n\nthe service desk of {org} was asked to reset the password of {name} ({user}), request {id},\n\
                 by {agent}. Reasons for extra care: {reasons}.\n\n\
                 {answer}If you know nothing of this request, deny it and call the\n\
                 security team ({security}).\n",
                org = self.config.organisation,
                name = account.display_name,
                user = account.username,
                id = run.request_id(),
                agent = run.session.agent().username,
                reasons = if reasons.is_empty() { "none".to_owned() } else { reasons.join("; ") },
                security = self.config.smtp.security_team,
            ),
            request_id: run.request_id().to_owned(),
        }
    }

    fn code_message(&self, run: &ResetRun, to: &str, not_after: OffsetDateTime) -> Message {
        Message {
            to: to.to_owned(),
            subject: format!("{}: your verification code", self.config.organisation),
            body: format!(
                "The service desk is verifying your identity for a password reset (request {id}).\n\
                 Read the code to the agent; it is valid until {not_after}.\n\n{wasnt_me}",
                id = run.request_id(),
                wasnt_me = self.wasnt_me(run.request_id()),
            ),
            request_id: run.request_id().to_owned(),
        }
    }

    fn password_message(&self, run: &ResetRun, to: &str) -> Message {
        Message {
            to: to.to_owned(),
            subject: format!("{}: your temporary password", self.config.organisation),
            body: format!(
                "Your password for {user} was reset by the service desk (request {id}). Use the temporary password\n\
                 delivered with this message once: you must choose a new password at the next login.\n\n{wasnt_me}",
                user = run.session.account().username,
                id = run.request_id(),
                wasnt_me = self.wasnt_me(run.request_id()),
            ),
            request_id: run.request_id().to_owned(),
        }
    }

    /// A new "this wasn't me" link for a reset and the hash its record carries, when
    /// the desk uses the collector's desk services (`[collector] url` and
    /// `desk_key_file`): `https://<collector>/report/<token>`, a 128-bit random token.
    fn new_report_link(&self) -> Option<(Secret, String)> {
        let c = &self.config.collector;
        if c.url.trim().is_empty() || c.desk_key_file.is_none() {
            return None;
        }
        let mut bytes = zeroize::Zeroizing::new([0u8; 16]);
        rand::rngs::OsRng.fill_bytes(bytes.as_mut());
        let token = zeroize::Zeroizing::new(hex::encode(bytes.as_ref()));
        let hash = crate::account_events::report_token_sha256(&token);
        Some((Secret::new(format!("{}/report/{}", c.url.trim_end_matches('/'), token.as_str())), hash))
    }

    /// The "this wasn't me" instructions every message to an account holder carries
    /// (NIST SP 800-63B-4 §4.2.3: notify of the change so that a victim can react).
    fn wasnt_me(&self, request_id: &str) -> String {
        format!(
            "This wasn't me? If you did not ask for this (request {request_id}):\n\
             1. Do not use or pass on any code or password you received, and do not reply to this message.\n\
             2. Call the security team ({security}) at once and quote the request number.\n\
             3. The service desk never asks for your password; anyone who does is not the service desk.\n",
            security = self.config.smtp.security_team,
        )
    }

    /// Queue one message per recipient; unaddressable recipients become warnings.
    fn notify(
        &mut self,
        n: &Notification,
        report_link: Option<&str>,
        now: OffsetDateTime,
        warnings: &mut Vec<String>,
    ) -> Result<(), DeskError> {
        let security = self.config.smtp.security_team.clone();
        let mut wasnt_me = self.wasnt_me(&n.request_id);
        if let (NotificationKind::ResetCompleted, Some(link)) = (&n.kind, report_link) {
            wasnt_me.push_str(&format!("4. Or report it at once, without logging in: {link}\n"));
        }
        let (subject, body) = match &n.kind {
            NotificationKind::ResetRequested { earliest } => (
                "A password reset was requested for your account".to_owned(),
                format!("The service desk received a request to reset the password of {} (request {}).\nIt can happen no earlier than {earliest}.\n\n{wasnt_me}", n.username, n.request_id),
            ),
            NotificationKind::ResetCompleted => (
                "Your password was reset".to_owned(),
                format!("The password of {} was reset by the service desk (request {}).\nNo password is sent by e-mail; it was handed over at the desk or on a registered device.\n\n{wasnt_me}", n.username, n.request_id),
            ),
            NotificationKind::VerificationLocked { until } => (
                format!("Verification locked for {}", n.username),
                format!("Too many failed identity verifications for {} (request {}); verification is locked until {until} and the account is flagged.\n", n.username, n.request_id),
            ),
            NotificationKind::FraudSuspected { note } => (
                format!("Suspected fraud at the service desk: {}", n.username),
                format!("An agent ended the reset request {} for {} on suspicion of fraud or coercion. The requester was not told. Agent's note: {note}\nThe signed record is in the desk's audit log.\n", n.request_id, n.username),
            ),
            NotificationKind::EmergencyOverride { reason } => (
                format!("Emergency reset path used for {}", n.username),
                format!("An admin agent used the emergency path past a verification lockout for {} (request {}). Reason given: {reason}\n", n.username, n.request_id),
            ),
        };
        let mut messages = Vec::with_capacity(n.recipients.len());
        for recipient in &n.recipients {
            let to = match recipient {
                Recipient::Contact { value, .. } => Some(value.clone()),
                Recipient::SecurityTeam => Some(security.clone()).filter(|s| !s.trim().is_empty()),
                Recipient::Manager { username } => {
                    let t = Instant::now();
                    let manager = self.directory.entry(username);
                    self.times.directory += t.elapsed();
                    match manager {
                        Ok(m) => {
                            m.emails.iter().find(|e| e.label == "work").or(m.emails.first()).map(|e| e.value.clone())
                        }
                        Err(DirectoryError::NotFound(_)) => None,
                        Err(e) => return Err(e.into()),
                    }
                }
            };
            // A manager is told why the notice reaches them, not the holder.
            let body = match recipient {
                Recipient::Manager { .. } => format!(
                    "You receive this notice as the manager of {}.\n\
                     If your report did not ask for this, call the security team ({security}) at once.\n\n{body}",
                    n.username
                ),
                _ => body.clone(),
            };
            match to {
                Some(to) => {
                    messages.push(Message { to, subject: subject.clone(), body, request_id: n.request_id.clone() })
                }
                None => warnings.push(format!(
                    "no address for {recipient:?}: the notification about request {} was not queued for them",
                    n.request_id
                )),
            }
        }
        self.queue(&messages, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::risk::tests::{account, walk_up, NOW};
    use crate::tier::{AccountTier, AgentTier};

    #[test]
    fn the_desk_and_its_runs_can_live_in_the_shell_state() {
        fn send<T: Send>() {}
        send::<Desk>();
        send::<ResetRun>();
    }

    /// The directory guard itself: a run whose intent is not in the store, as
    /// appended, is refused whatever the engine says.
    #[test]
    fn the_directory_guard_refuses_an_intent_that_is_not_in_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config { data_dir: dir.path().to_owned(), ..Config::default() };
        crate::ca::OrgCa::init(
            dir.path(),
            &config.organisation,
            &Secret::from("guard test passphrase"),
            OffsetDateTime::now_utc(),
        )
        .unwrap();
        TokenRegistry::open(dir.path()).unwrap();
        let desk = Desk::open_embedded(config).unwrap();
        let agent = ActingAgent {
            username: "alice".into(),
            employee_id: "E-alice".into(),
            tier: AgentTier::Senior,
            groups: vec![],
            key_id: [1; 32],
        };
        let open = OpenRequest {
            request_id: "r1".into(),
            at: NOW,
            agent,
            account: account(AccountTier::Standard),
            manager: None,
            context: walk_up(),
            directory_backend: "embedded".into(),
            emergency_reason: None,
        };
        let (session, _) = Session::open(&crate::policy::PolicyConfig::default(), open).unwrap();
        let mut run = ResetRun::new(session, [1; 32], None);
        assert!(matches!(desk.ensure_intent_durable(&run), Err(DeskError::IntentNotDurable(0))));
        run.intent = Some(Appended { seq: 1, entry_hash: [7; 32] });
        assert!(matches!(desk.ensure_intent_durable(&run), Err(DeskError::IntentNotDurable(1))));
    }
}
