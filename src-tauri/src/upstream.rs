//! The audit log goes upstream on a thread of its own: the core's sync driver
//! ([`resetdesk::upstream::SyncDriver`]) sends the records to `[collector]` in seq
//! order, checks and stores the receipts and witnesses the collector's checkpoints.
//! A reset never waits for it. Its state is shown by `sync_status` and the Audit screen.

use std::sync::atomic::AtomicBool;
use std::sync::OnceLock;
use std::time::Duration;

use resetdesk::config::Config;
use resetdesk::upstream::{SyncDriver, SyncHandle};
use serde::Serialize;

/// How often the audit log is looked at for new records.
const POLL: Duration = Duration::from_secs(2);
/// How often the collector's checkpoint is fetched and witnessed while idle.
const WITNESS: Duration = Duration::from_secs(60);

/// Never set: the driver runs for the life of the app.
static STOP: AtomicBool = AtomicBool::new(false);
/// The running driver's state; unset when no collector is configured.
static SYNC: OnceLock<SyncHandle> = OnceLock::new();

/// Start the driver when `config` names a collector.
pub fn spawn_sync_driver(config: &Config) {
    let mut driver = match SyncDriver::from_config(config) {
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
    let spawned =
        std::thread::Builder::new().name("upstream-sync".into()).spawn(move || driver.run(POLL, WITNESS, &STOP));
    if let Err(e) = spawned {
        tracing::error!("the sync driver did not start ({e}); records stay on this desk until the next start");
    }
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
