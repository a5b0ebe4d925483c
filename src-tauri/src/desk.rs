//! The agent session as the shell holds it: the core's [`AgentSession`], fed with the
//! watcher's card events, clock ticks and UI activity. Every decision (lock or not,
//! why) is the core's; this module stores the result and tells the web view.

use std::collections::BTreeMap;
use std::sync::MutexGuard;

use resetdesk::config::{Backend, Config};
use resetdesk::directory::embedded::EmbeddedDirectory;
use resetdesk::login::{self, AgentIdentity, AgentSession, LoginError};
use resetdesk::secret::Secret;
use resetdesk::session::{Decision, LockReason, SessionEvent};
use resetdesk::token::watch::CardEvent;
use resetdesk::token::TokenError;
use serde::Serialize;
use tauri::{AppHandle, Emitter, Manager};
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
    Active { agent: AgentIdentity },
}

/// A failed command, as the web view shows it: the core's message, and the PIN tries
/// left when the PIN was wrong (0 when blocked).
#[derive(Debug, Serialize)]
pub struct Failure {
    message: String,
    tries_left: Option<u8>,
}

impl Failure {
    fn new(message: impl Into<String>) -> Self {
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
pub struct Desk {
    session: Option<AgentSession>,
    /// Why the last session locked, for the lock screen.
    last_lock: Option<LockReason>,
    /// Removals seen per reader. A login compares the count before and after its card
    /// IO, so a removal that happens while the PIN is being checked is never lost.
    removals: BTreeMap<String, u64>,
}

impl Desk {
    pub fn view(&self) -> SessionView {
        match &self.session {
            Some(s) => SessionView::Active { agent: s.identity().clone() },
            None => SessionView::Locked { reason: self.last_lock, message: self.last_lock.map(LockReason::message) },
        }
    }

    /// Feed one event to the session; `Some(view)` when the core decided to lock.
    /// The locked session is dropped at once (its signer wipes the PIN, closes the card).
    fn feed(&mut self, event: &SessionEvent) -> Option<SessionView> {
        let session = self.session.as_mut()?;
        match session.handle(event) {
            Decision::Stay => None,
            Decision::Lock(reason) => {
                self.session = None;
                self.last_lock = Some(reason);
                tracing::info!(?reason, "session locked");
                Some(self.view())
            }
        }
    }
}

/// The desk state. If a thread panicked while holding it (a bug), fail closed: the
/// session, whatever state it was left in, is dropped (the desk locks) and the app goes on.
pub fn desk(app: &AppHandle) -> MutexGuard<'_, Desk> {
    let state = app.state::<AppState>().inner();
    state.desk.lock().unwrap_or_else(|poisoned| {
        tracing::error!("the session state was poisoned by a panic; locking the desk");
        let mut desk = poisoned.into_inner();
        if desk.session.take().is_some() {
            desk.last_lock = Some(LockReason::TokenLost);
            emit(app, &desk.view());
        }
        state.desk.clear_poison();
        desk
    })
}

/// Forward an event to the session and tell the web view if it locked.
pub fn feed(app: &AppHandle, event: SessionEvent) {
    let locked = desk(app).feed(&event);
    if let Some(view) = locked {
        emit(app, &view);
    }
}

/// Forward a card event from the watcher.
pub fn card_event(app: &AppHandle, event: CardEvent) {
    let at = OffsetDateTime::now_utc();
    let event = match event {
        CardEvent::Removed { reader } => {
            *desk(app).removals.entry(reader.clone()).or_default() += 1;
            SessionEvent::CardRemoved { reader, at }
        }
        CardEvent::Inserted { reader } => SessionEvent::CardInserted { reader, at },
    };
    feed(app, event);
}

fn emit(app: &AppHandle, view: &SessionView) {
    if let Err(e) = app.emit(SESSION_EVENT, view) {
        tracing::warn!("could not send the session state to the window: {e}");
    }
}

/// Log in with the key in `reader`. Blocking (card IO): run it off the UI thread.
pub fn login(app: &AppHandle, reader: &str, pin: Secret) -> Result<SessionView, Failure> {
    let state = app.state::<AppState>().inner();
    let config: &Config = state
        .config
        .as_ref()
        .map_err(|e| Failure::new(format!("ResetDesk's configuration did not load, so nobody can log in: {e}")))?;
    if config.directory.backend != Backend::Embedded {
        return Err(Failure::new(
            "this build of the desk app only supports the embedded directory; set directory.backend = \"embedded\"",
        ));
    }
    if desk(app).session.is_some() {
        return Err(Failure::new("an agent is already logged in; lock the session first"));
    }
    let directory = EmbeddedDirectory::open(&config.data_dir, config).map_err(|e| Failure::new(e.to_string()))?;

    let removals_before = desk(app).removals.get(reader).copied();
    let session = login::login(config, &directory, reader, pin, OffsetDateTime::now_utc())?;

    let mut desk = desk(app);
    if desk.removals.get(reader).copied() != removals_before {
        // The key left the reader while its PIN and certificates were being checked.
        drop(session);
        return Err(Failure::from(LoginError::Token(TokenError::Removed)));
    }
    tracing::info!(agent = session.username(), tier = ?session.tier(), virtual_token = session.is_virtual(), "agent logged in");
    desk.session = Some(session);
    desk.last_lock = None;
    Ok(desk.view())
}
