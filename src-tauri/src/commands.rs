//! The commands the web view may call (each one is granted in `capabilities/`).

use resetdesk::config::Mode;
use resetdesk::secret::Secret;
use resetdesk::session::SessionEvent;
use resetdesk::token::readers::{self, ReaderStatus};
use serde::Serialize;
use tauri::AppHandle;

use crate::desk::{self, Failure, SessionView};
use crate::startup::AppState;

/// Static facts about this installation that the header and lock screen show.
#[derive(Debug, Serialize)]
pub struct AppInfo {
    /// `demo` or `production`; absent when the configuration did not load.
    mode: Option<Mode>,
    organisation: Option<String>,
    config_source: String,
    /// Why the configuration did not load (file, line, key), for the administrator.
    config_error: Option<String>,
}

#[tauri::command]
pub fn app_info(state: tauri::State<'_, AppState>) -> AppInfo {
    AppInfo {
        mode: state.mode(),
        organisation: state.config.as_ref().ok().map(|c| c.organisation.clone()),
        config_source: state.config_source.clone(),
        config_error: state.config.as_ref().err().cloned(),
    }
}

/// The PC/SC readers the core sees right now (the watcher also pushes changes).
#[tauri::command]
pub async fn reader_status() -> ReaderStatus {
    // pcscd calls block briefly: keep them off the main (UI) thread.
    // `reader_status` never panics; were its worker lost anyway, "no service" is the
    // state that lets nobody log in.
    tauri::async_runtime::spawn_blocking(readers::reader_status).await.unwrap_or(ReaderStatus::NoService)
}

/// Whether an agent is logged in, or why the desk is locked. The page asks last at
/// start-up, right before it renders the lock screen: the first answer is logged with
/// the time since the process started (what `scripts/bench-app.sh` reads).
#[tauri::command(async)]
pub fn session_state(app: AppHandle) -> SessionView {
    static FIRST: std::sync::Once = std::sync::Once::new();
    FIRST.call_once(|| {
        if let Some(started) = crate::STARTED.get() {
            tracing::info!(elapsed_ms = started.elapsed().as_millis() as u64, "lock screen interactive");
        }
    });
    desk::desk(&app).view()
}

/// Log in with the key in `reader`. The PIN becomes a [`Secret`] (wiped on drop) at once;
/// it is never logged or sent back.
#[tauri::command]
pub async fn login(app: AppHandle, reader: String, pin: String) -> Result<SessionView, Failure> {
    let pin = Secret::new(pin);
    tauri::async_runtime::spawn_blocking(move || desk::login(&app, &reader, pin))
        .await
        .unwrap_or_else(|e| Err(Failure::internal(e)))
}

/// The agent pressed "Lock": the signed logout record, then the lock (card IO, so off
/// the UI thread).
#[tauri::command]
pub async fn lock_session(app: AppHandle) {
    let worker = app.clone();
    if let Err(e) = tauri::async_runtime::spawn_blocking(move || desk::lock_now(&worker)).await {
        // The session was taken out (so dropped: locked) before anything could fail.
        tracing::error!("the lock worker failed: {e}");
        desk::show(&app);
    }
}

/// The agent typed or clicked (the idle lock counts from the last activity). Returns
/// the session as it now stands (with the new idle deadline). Off the UI thread: a
/// reset command may hold the desk state for a card operation.
#[tauri::command]
pub async fn activity(app: AppHandle) -> SessionView {
    let worker = app.clone();
    tauri::async_runtime::spawn_blocking(move || {
        desk::feed(&worker, SessionEvent::Activity { at: desk::now() });
        desk::desk(&worker).view()
    })
    .await
    .unwrap_or_else(|e| {
        tracing::error!("the activity worker failed: {e}");
        desk::desk(&app).view()
    })
}
