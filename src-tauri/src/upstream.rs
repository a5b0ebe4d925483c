//! The audit log goes upstream in a background tokio task on the app's runtime: the
//! core's sync driver ([`resetdesk::upstream::SyncDriver::run_task`]) sends the records to `[collector]` in seq
//! order, checks and stores the receipts and witnesses the collector's checkpoints.
//! A reset never waits for it. Its state is shown by `sync_status` and the Audit screen.

use std::sync::OnceLock;
use std::time::Duration;

use resetdesk::config::Config;
use resetdesk::upstream::{SyncDriver, SyncHandle};
use serde::Serialize;

/// How often the audit log is looked at for new records.
const POLL: Duration = Duration::from_secs(2);
/// How often the collector's checkpoint is fetched and witnessed while idle.
const WITNESS: Duration = Duration::from_secs(60);

/// Kept for the life of the app, so the task never sees its stop sender dropped.
static STOP: OnceLock<tokio::sync::watch::Sender<bool>> = OnceLock::new();
/// The running driver's state; unset when no collector is configured.
static SYNC: OnceLock<SyncHandle> = OnceLock::new();

/// Start the driver when `config` names a collector.
pub fn spawn_sync_driver(config: &Config) {
    let driver = match SyncDriver::from_config(config) {
        Ok(Some(d)) => d,
        Ok(None) => {
            tracing::info!("no audit collector configured ([collector] url); records stay on this desk");
            return;
        }
        Err(e) => {
            tracing::error!("the audit log will not be synced: {e}");
            return;
        }
    };
    let _ = SYNC.set(driver.handle());
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let _ = STOP.set(stop);
    tauri::async_runtime::spawn(async move {
        if let Err(e) = driver.run_task(POLL, WITNESS, stopped).await {
            tracing::error!("the sync task stopped ({e}); records stay on this desk until the next start");
        }
    });
}

/// What the screens show of the sync.
#[derive(Debug, Clone, Serialize)]
pub struct SyncLine {
    pub configured: bool,
    /// Every record has a receipt and nothing is wrong.
    pub synced: bool,
    pub text: String,
    /// The running driver's state, for the Audit screen.
    pub report: Option<resetdesk::upstream::SyncReport>,
}

pub fn sync_line() -> SyncLine {
    match SYNC.get().map(SyncHandle::report) {
        Some(r) => SyncLine {
            configured: true,
            synced: r.status.queued == 0 && r.status.last_error.is_none() && r.alert.is_none(),
            text: r.describe(),
            report: Some(r),
        },
        None => SyncLine { configured: false, synced: false, text: "not configured on this desk".into(), report: None },
    }
}

/// The sync state (a few fields, no secret).
#[tauri::command]
pub fn sync_status() -> SyncLine {
    sync_line()
}
