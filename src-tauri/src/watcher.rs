//! Pushes reader changes (key inserted / removed, reader plugged, pcscd stopped) to
//! the web view as the `reader-status` event, so the lock screen follows within
//! a fraction of a second without the page polling.

use std::time::Duration;

use resetdesk::token::readers::{reader_status, ReaderStatus};
use tauri::{AppHandle, Emitter};

/// Name of the event the web view listens to; its payload is a [`ReaderStatus`].
pub const READER_STATUS_EVENT: &str = "reader-status";

/// How often the core is asked. 250 ms keeps a key removal visible well within 1 s.
const PERIOD: Duration = Duration::from_millis(250);

pub fn spawn_reader_watcher(app: AppHandle) {
    let spawned = std::thread::Builder::new()
        .name("reader-watcher".into())
        .spawn(move || {
            let mut last: Option<ReaderStatus> = None;
            loop {
                let now = reader_status();
                if last.as_ref() != Some(&now) {
                    if let Err(e) = app.emit(READER_STATUS_EVENT, &now) {
                        tracing::warn!("could not send the reader status to the window: {e}");
                    }
                    last = Some(now);
                }
                std::thread::sleep(PERIOD);
            }
        });
    if let Err(e) = spawned {
        // Without the watcher the page still asks `reader_status` itself (see ui/app.js).
        tracing::error!("could not start the reader watcher thread: {e}");
    }
}
