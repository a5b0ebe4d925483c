//! The commands the web view may call (each one is granted in `capabilities/`).

use resetdesk::config::Mode;
use resetdesk::token::readers::{self, ReaderStatus};
use serde::Serialize;

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
    tauri::async_runtime::spawn_blocking(readers::reader_status)
        .await
        .unwrap_or(ReaderStatus::NoService)
}
