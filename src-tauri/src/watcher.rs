//! One thread that follows the readers and the clock:
//! - the core's [`CardWatcher`] turns PC/SC changes into insert/remove events, which go
//!   to the session at once (a removed key locks it well within a second);
//! - the reader list ([`reader_status`]) is pushed to the web view as the
//!   `reader-status` event whenever it changes;
//! - a clock tick goes to the session at least every [`PERIOD`] (idle lock).
//!
//! pcscd missing or stopped is a state: the thread keeps reporting `no-service` and
//! reconnects when pcscd is back. Losing pcscd during a session locks it (`TokenLost`).

use std::time::Duration;

use resetdesk::session::SessionEvent;
use resetdesk::token::readers::{reader_status, ReaderStatus};
use resetdesk::token::watch::CardWatcher;
use tauri::{AppHandle, Emitter};
use time::OffsetDateTime;

use crate::desk;

/// Name of the event the web view listens to; its payload is a [`ReaderStatus`].
pub const READER_STATUS_EVENT: &str = "reader-status";

/// Longest wait between two looks at the readers and two clock ticks.
const PERIOD: Duration = Duration::from_millis(500);

pub fn spawn_reader_watcher(app: AppHandle) {
    let spawned = std::thread::Builder::new().name("reader-watcher".into()).spawn(move || watch(&app));
    if let Err(e) = spawned {
        // Without the watcher the page still shows the readers at start (`reader_status`),
        // but removal would not lock: say so loudly.
        tracing::error!("could not start the reader watcher thread: {e}");
    }
}

fn watch(app: &AppHandle) {
    let mut watcher: Option<CardWatcher> = None;
    let mut shown: Option<ReaderStatus> = None;
    loop {
        if watcher.is_none() {
            watcher = CardWatcher::new().ok();
        }
        publish_readers(app, &mut shown);
        desk::feed(app, SessionEvent::Tick { at: OffsetDateTime::now_utc() });

        let Some(w) = watcher.as_mut() else {
            std::thread::sleep(PERIOD);
            continue;
        };
        match w.next_events(Some(PERIOD)) {
            Ok(Some(events)) => events.into_iter().for_each(|e| desk::card_event(app, e)),
            // Cancelled: nobody cancels this watcher, but if someone does, stop.
            Ok(None) => return,
            Err(e) => {
                tracing::warn!("lost the smart-card service: {e}");
                desk::feed(app, SessionEvent::TokenLost { at: OffsetDateTime::now_utc() });
                watcher = None;
                std::thread::sleep(PERIOD);
            }
        }
    }
}

fn publish_readers(app: &AppHandle, shown: &mut Option<ReaderStatus>) {
    let now = reader_status();
    if shown.as_ref() != Some(&now) {
        if let Err(e) = app.emit(READER_STATUS_EVENT, &now) {
            tracing::warn!("could not send the reader status to the window: {e}");
        }
        *shown = Some(now);
    }
}
