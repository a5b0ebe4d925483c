//! The agent session as the shell holds it: the core's [`AgentSession`], fed with the
//! watcher's card events, clock ticks and UI activity. Every decision (lock or not,
//! why) is the core's; this module stores the result and tells the web view.
//!
//! Presence is signed through the core ([`resetdesk::presence`]): a login is let in
//! only once its signed login record is written; "Lock now" writes the signed logout
//! record, then locks; a lock nobody could sign (removal, idle) is remembered and
//! stated in the next login record.

use std::collections::BTreeMap;
use std::sync::MutexGuard;

use resetdesk::audit::AuditLog;
use resetdesk::clock::SystemClock;
use resetdesk::config::{Backend, Config};
use resetdesk::desk::{Desk as CoreDesk, ResetRun};
use resetdesk::directory::embedded::EmbeddedDirectory;
use resetdesk::login::{AgentIdentity, AgentSession, LoginError};
use resetdesk::presence::{self, SessionEnd};
use resetdesk::secret::Secret;
use resetdesk::session::{LockDecision, LockReason, SessionEvent};
use resetdesk::session_start::{SessionStarter, StartError};
use resetdesk::token::signer::PivSigner;
use resetdesk::token::watch::{CardEvent, RemovalMarks};
use resetdesk::token::TokenError;
use serde::Serialize;
use tauri::{AppHandle, Emitter, EventTarget, Manager};
use time::OffsetDateTime;

use crate::startup::AppState;

/// Event the web view listens to; its payload is a [`SessionView`].
pub const SESSION_EVENT: &str = "session";

/// What the web view shows: the lock screen (with the core's reason) or the agent's home.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum SessionView {
    Locked {
        reason: Option<LockReason>,
        /// The core's sentence for the lock screen.
        message: Option<&'static str>,
    },
    Active {
        agent: AgentIdentity,
        /// When the idle lock will fire if nothing happens (the screen warns 60 s before).
        #[serde(with = "time::serde::rfc3339::option")]
        idle_lock_at: Option<OffsetDateTime>,
        /// What the desk did at login that the agent should know (reconciled intents).
        notices: Vec<String>,
    },
}

/// A failed command, as the web view shows it: the core's message, and the PIN tries
/// left when the PIN was wrong (0 when blocked).
#[derive(Debug, Serialize)]
pub struct Failure {
    message: String,
    tries_left: Option<u8>,
}

impl Failure {
    pub fn new(message: impl Into<String>) -> Self {
        Self { message: message.into(), tries_left: None }
    }

    /// The worker thread running a command died (a bug): say so, never crash the window.
    pub fn internal(e: impl std::fmt::Display) -> Self {
        tracing::error!("command worker failed: {e}");
        Self::new("internal error in the desk app; try again, and report it if it persists")
    }
}

impl From<LoginError> for Failure {
    fn from(e: LoginError) -> Self {
        Self { tries_left: e.tries_left(), message: e.to_string() }
    }
}

#[derive(Default)]
pub struct DeskState {
    session: Option<AgentSession>,
    /// Why the last session locked, for the lock screen.
    last_lock: Option<LockReason>,
    /// Removals seen per reader. A login compares the count before and after its card
    /// IO, so a removal that happens while the PIN is being checked is never lost.
    removals: BTreeMap<String, u64>,
    /// The desk's audit log, opened at the first login and kept. Taken out while a
    /// presence record is being signed (card IO, perhaps a touch) so the lock is free.
    audit: Option<AuditLog>,
    /// How the last session ended when nobody could sign it; stated in the next login record.
    unsigned_end: Option<SessionEnd>,
    /// The core's reset driver, opened at the first login and kept.
    pub core: Option<CoreDesk>,
    /// The reset on screen, if any. Dropped when the session locks.
    pub run: Option<ResetRun>,
    /// Resets waiting out their cooling-off; kept across locks (only the key that
    /// opened one can go on with it).
    pub parked: Vec<ResetRun>,
    /// The secret on its way to the customer window; taken once.
    pub customer: Option<crate::customer::CustomerSecret>,
    /// Shown on the home screen after login.
    notices: Vec<String>,
    /// "Lock now" is signing the logout record: no login until it is done.
    locking: bool,
}

impl DeskState {
    pub fn view(&self) -> SessionView {
        match &self.session {
            Some(s) => SessionView::Active {
                agent: s.identity().clone(),
                idle_lock_at: s.idle_deadline(),
                notices: self.notices.clone(),
            },
            None => SessionView::Locked { reason: self.last_lock, message: self.last_lock.map(LockReason::message) },
        }
    }

    /// Feed one event to the session; `Some(view)` when the core decided to lock.
    /// The locked session is dropped at once (its signer wipes the PIN, closes the card).
    fn feed(&mut self, event: &SessionEvent) -> Option<SessionView> {
        let session = self.session.as_mut()?;
        match session.handle(event) {
            LockDecision::Stay => None,
            LockDecision::Lock(reason) => {
                let identity = session.identity().clone();
                self.session = None;
                self.forget_customer();
                self.last_lock = Some(reason);
                self.unsigned_end = Some(SessionEnd::new(&identity, reason, event_time(event)));
                tracing::info!(?reason, "session locked");
                Some(self.view())
            }
        }
    }
}

fn locked() -> Failure {
    Failure::new("the desk is locked; log in with your YubiKey")
}

fn not_open() -> Failure {
    Failure::new("the desk is not open yet; log in again")
}

impl DeskState {
    /// Whether an agent is logged in.
    pub fn has_session(&self) -> bool {
        self.session.is_some()
    }

    /// The logged-in agent's session, or why nothing can be done.
    pub fn agent(&mut self) -> Result<&mut AgentSession, Failure> {
        self.session.as_mut().ok_or_else(locked)
    }

    /// The agent's session and the core desk together (both needed to act on a reset).
    pub fn agent_and_core(&mut self) -> Result<(&mut AgentSession, &mut CoreDesk), Failure> {
        let session = self.session.as_mut().ok_or_else(locked)?;
        let core = self.core.as_mut().ok_or_else(not_open)?;
        Ok((session, core))
    }

    /// One core call on the reset on screen, with the agent's signer.
    pub fn with_run<T>(
        &mut self,
        f: impl FnOnce(&mut CoreDesk, &mut ResetRun, &mut PivSigner) -> Result<T, Failure>,
    ) -> Result<T, Failure> {
        let run = self.run.as_mut().ok_or_else(|| Failure::new("no reset is open; search for the account first"))?;
        let session = self.session.as_mut().ok_or_else(locked)?;
        let core = self.core.as_mut().ok_or_else(not_open)?;
        let signer = session.signer().map_err(|e| Failure::new(e.to_string()))?;
        f(core, run, signer)
    }

    /// Drop the reset on screen and anything meant for the customer window (lock,
    /// next customer). Parked resets stay, and so does a reset whose outcome record is
    /// still to be signed (it holds the password set in the directory): it is parked.
    pub fn forget_customer(&mut self) {
        if let Some(run) = self.run.take() {
            if run.phase() == resetdesk::workflow::Phase::OutcomePending {
                self.parked.push(run);
            }
        }
        self.customer = None;
    }
}

/// The desk state. If a thread panicked while holding it (a bug), fail closed: the
/// session, whatever state it was left in, is dropped (the desk locks) and the app goes on.
pub fn desk(app: &AppHandle) -> MutexGuard<'_, DeskState> {
    let state = app.state::<AppState>().inner();
    state.desk.lock().unwrap_or_else(|poisoned| {
        tracing::error!("the session state was poisoned by a panic; locking the desk");
        let mut desk = poisoned.into_inner();
        if let Some(session) = desk.session.take() {
            desk.last_lock = Some(LockReason::TokenLost);
            desk.unsigned_end = Some(SessionEnd::new(session.identity(), LockReason::TokenLost, now()));
            emit(app, &desk.view());
        }
        desk.forget_customer();
        crate::customer::clear(app);
        state.desk.clear_poison();
        desk
    })
}

/// Forward an event to the session and tell the web view if it locked.
pub fn feed(app: &AppHandle, event: SessionEvent) {
    let locked = desk(app).feed(&event);
    if let Some(view) = locked {
        crate::customer::clear(app);
        emit(app, &view);
    }
}

fn event_time(event: &SessionEvent) -> OffsetDateTime {
    match event {
        SessionEvent::Activity { at }
        | SessionEvent::Tick { at }
        | SessionEvent::CardRemoved { at, .. }
        | SessionEvent::CardInserted { at, .. }
        | SessionEvent::LockRequested { at }
        | SessionEvent::TokenLost { at } => *at,
    }
}

/// The agent pressed "Lock now": sign the logout record, then lock. The desk locks
/// whatever happens to the record; one that could not be written is remembered as an
/// unsigned end and stated in the next login record. Blocking (card IO).
pub fn lock_now(app: &AppHandle) {
    let Some((mut session, audit)) = ({
        let mut desk = desk(app);
        let taken = desk.session.take().map(|s| (s, desk.audit.take()));
        if taken.is_some() {
            // In the same critical section: nothing meant for the customer survives
            // into the time the logout record is being signed.
            desk.forget_customer();
            desk.locking = true;
        }
        taken
    }) else {
        return;
    };
    crate::customer::clear(app);
    let now = now();
    let mut reason = LockReason::Manual;
    let mut signed = false;
    let audit = match audit {
        Some(mut log) => {
            match presence::record_logout(&mut log, &mut session, now) {
                Ok(_) => signed = true,
                Err(e) => {
                    tracing::warn!("logout not recorded: {e}");
                    reason = e.lock_reason().unwrap_or(reason);
                }
            }
            Some(log)
        }
        None => None,
    };
    session.handle(&SessionEvent::LockRequested { at: now });
    let mut desk = desk(app);
    desk.locking = false;
    if desk.audit.is_none() {
        desk.audit = audit;
    }
    desk.last_lock = Some(reason);
    if !signed {
        desk.unsigned_end = Some(SessionEnd::new(session.identity(), reason, now));
    }
    drop(session);
    tracing::info!(?reason, "session locked");
    let view = desk.view();
    drop(desk);
    emit(app, &view);
}

/// Forward a card event from the watcher.
pub fn card_event(app: &AppHandle, event: CardEvent) {
    let at = now();
    let event = match event {
        CardEvent::Removed { reader } => {
            *desk(app).removals.entry(reader.clone()).or_default() += 1;
            SessionEvent::CardRemoved { reader, at }
        }
        CardEvent::Inserted { reader } => SessionEvent::CardInserted { reader, at },
    };
    feed(app, event);
}

/// The shell's one source of time: the core's wall-clock adapter (every command,
/// watcher tick and UI activity reads it here).
pub fn now() -> OffsetDateTime {
    use resetdesk::clock::Clock;
    resetdesk::clock::SystemClock.now()
}

/// Tell the web view the current session state.
pub fn show(app: &AppHandle) {
    let view = desk(app).view();
    emit(app, &view);
}

fn emit(app: &AppHandle, view: &SessionView) {
    if let Err(e) = app.emit(SESSION_EVENT, view) {
        tracing::warn!("could not send the session state to the window: {e}");
    }
}

/// The watcher's removals of a reader, counted in [`DeskState::removals`].
struct WatchedRemovals<'a>(&'a AppHandle);

impl RemovalMarks for WatchedRemovals<'_> {
    fn mark(&self, reader: &str) -> Result<u64, TokenError> {
        Ok(desk(self.0).removals.get(reader).copied().unwrap_or(0))
    }
}

/// Log in with the key in `reader`. Blocking (card IO): run it off the UI thread.
pub fn login(app: &AppHandle, reader: &str, pin: Secret) -> Result<SessionView, Failure> {
    let state = app.state::<AppState>().inner();
    let config: &Config = state
        .config
        .as_ref()
        .map_err(|e| Failure::new(format!("ResetDesk's configuration did not load, so nobody can log in: {e}")))?;
    if !crate::watcher::alive(app) {
        return Err(Failure::new(
            "the smart-card watcher is not running, so removing a key would not lock the desk; restart ResetDesk",
        ));
    }
    if config.directory.backend != Backend::Embedded {
        return Err(Failure::new(
            "this build of the desk app only supports the embedded directory; set directory.backend = \"embedded\"",
        ));
    }
    {
        let desk = desk(app);
        if desk.session.is_some() {
            return Err(Failure::new("an agent is already logged in; lock the session first"));
        }
        if desk.locking {
            return Err(Failure::new("the desk is locking (signing the logout record); log in again in a moment"));
        }
    }
    let directory = EmbeddedDirectory::open(&config.data_dir, config).map_err(|e| Failure::new(e.to_string()))?;

    // The audit log is taken out while the login signs its record (card IO, perhaps a
    // touch) so the desk state stays free.
    let (audit, unsigned_end) = {
        let mut desk = desk(app);
        (desk.audit.take(), desk.unsigned_end.clone())
    };
    let mut audit = match audit {
        Some(log) => log,
        None => presence::open_audit_log(&config.data_dir, config.ca.cert_file.as_deref())
            .map_err(|e| Failure::new(e.to_string()))?,
    };
    // Login, the key-removal checks and the signed login record, in the core's order.
    // Fail closed: no signed login record, no session (dropping it wipes the PIN).
    let removals = WatchedRemovals(app);
    let starter = SessionStarter { config, directory: &directory, removals: &removals, clock: &SystemClock };
    let started = starter.start(&mut audit, reader, pin, unsigned_end.as_ref());

    let mut desk = desk(app);
    if desk.audit.is_none() {
        desk.audit = Some(audit);
    }
    let mut session = match started {
        Ok(started) => started.session,
        Err(StartError::RemovedWhileRecording { end }) => {
            // The key left while the login record was being signed: stated in the next login.
            desk.unsigned_end = Some(end);
            return Err(Failure::from(LoginError::Token(TokenError::Removed)));
        }
        Err(e) => return Err(Failure { tries_left: e.tries_left(), message: e.to_string() }),
    };
    if desk.session.is_some() || desk.locking {
        // Another login (or a lock) got here first while this one signed its record.
        return Err(Failure::new("another login or lock happened meanwhile; try again"));
    }
    desk.unsigned_end = None;
    tracing::info!(agent = session.username(), tier = ?session.tier(), virtual_token = session.is_virtual(), "agent logged in");
    desk.notices = open_core(app, &mut desk, config, &mut session);
    desk.session = Some(session);
    desk.last_lock = None;
    let view = desk.view();
    // Not while holding the desk state: opening a window waits for the main thread,
    // which may be waiting for that state.
    drop(desk);
    crate::customer::ensure(app);
    Ok(view)
}

/// Open the core desk at the first login and settle reset intents left open (a crash
/// between the intent and its outcome), signed by the agent who just logged in.
/// Returns what the agent should be told.
/// The event carrying each execution step to the main window as it completes.
pub const PROGRESS_EVENT: &str = "reset-progress";

fn open_core(app: &AppHandle, desk: &mut DeskState, config: &Config, session: &mut AgentSession) -> Vec<String> {
    if desk.core.is_none() {
        match CoreDesk::open_configured(config.clone()) {
            Ok(mut core) => {
                let app = app.clone();
                core.observe_progress(Box::new(move |step| {
                    let shown = crate::reset::ProgressStep::from(step);
                    if let Err(e) = app.emit_to(EventTarget::webview_window("main"), PROGRESS_EVENT, shown) {
                        tracing::warn!("could not send a progress step to the window: {e}");
                    }
                }));
                desk.core = Some(core);
            }
            Err(e) => {
                tracing::error!("the reset desk did not open: {e}");
                return vec![format!("Resets are not available: {e}")];
            }
        }
    }
    let Some(core) = desk.core.as_mut() else { return Vec::new() };
    let identity = session.identity().clone();
    let signer = match session.signer() {
        Ok(s) => s,
        Err(e) => return vec![format!("Open reset intents and parked resets were not loaded: {e}")],
    };
    let now = now();
    let mut notices = Vec::new();
    match core.pending_intents() {
        Ok(open) if open.is_empty() => {}
        Ok(_) => match core.reconcile(&identity, signer, now) {
            Ok(found) => notices.extend(found.iter().map(|r| {
                format!("Reset {} of {}: {}", r.request_id, r.target, resetdesk::desk::reconcile::note(&r.finding))
            })),
            Err(e) => notices.push(format!("Open reset intents were not reconciled: {e}")),
        },
        Err(e) => notices.push(format!("Open reset intents could not be read: {e}")),
    }
    // This agent's parked resets, from before a restart (each signature checked).
    match core.parked_runs(signer, now) {
        Ok(runs) => {
            for run in runs {
                match run {
                    Ok(run) if !desk.parked.iter().any(|p| p.request_id() == run.request_id()) => desk.parked.push(run),
                    Ok(_) => {}
                    Err(e) => notices.push(e.to_string()),
                }
            }
        }
        Err(e) => notices.push(format!("Parked resets could not be loaded: {e}")),
    }
    notices
}
