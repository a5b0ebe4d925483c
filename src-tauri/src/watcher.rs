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
use tauri::{AppHandle, Emitter, Manager};

use crate::desk;

/// Name of the event the web view listens to; its payload is a [`ReaderStatus`].
pub const READER_STATUS_EVENT: &str = "reader-status";

/// Longest wait between two looks at the readers and two clock ticks.
const PERIOD: Duration = Duration::from_millis(500);
/// The watcher counts as dead when it has not gone round its loop for this long
/// (six periods): then a removed key would not lock the desk, so nobody may log in
/// and a session is locked.
const MAX_SILENCE_MS: u64 = 3_000;

fn now_ms() -> u64 {
    crate::STARTED.get().map(|s| s.elapsed().as_millis() as u64).unwrap_or(0)
}

/// Whether a watcher that last beat at `last_ms` is alive at `now_ms` (0: never beat).
fn is_alive(last_ms: u64, now_ms: u64) -> bool {
    last_ms != 0 && now_ms.saturating_sub(last_ms) <= MAX_SILENCE_MS
}

/// Whether the reader watcher is running (it beats every loop).
pub fn alive(app: &AppHandle) -> bool {
    let state = app.state::<crate::startup::AppState>();
    is_alive(state.watcher_beat.load(std::sync::atomic::Ordering::Relaxed), now_ms())
}

/// A second thread that locks an open session when the watcher stops beating (it
/// panicked, or its loop ended): without it a removed key would go unnoticed.
pub fn spawn_watcher_guard(app: AppHandle) {
    let spawned = std::thread::Builder::new().name("watcher-guard".into()).spawn(move || loop {
        std::thread::sleep(Duration::from_secs(1));
        if !alive(&app) && desk::desk(&app).has_session() {
            tracing::error!("the reader watcher stopped; locking the desk");
            desk::feed(&app, SessionEvent::TokenLost { at: desk::now() });
        }
    });
    if let Err(e) = spawned {
        tracing::error!("could not start the watcher guard thread: {e}");
    }
}

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
        let beat = now_ms().max(1);
        app.state::<crate::startup::AppState>().watcher_beat.store(beat, std::sync::atomic::Ordering::Relaxed);
        if watcher.is_none() {
            watcher = CardWatcher::new().ok();
        }
        publish_readers(app, &mut shown);
        desk::feed(app, SessionEvent::Tick { at: desk::now() });

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
                desk::feed(app, SessionEvent::TokenLost { at: desk::now() });
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_watcher_that_stopped_beating_is_dead() {
        assert!(!is_alive(0, 10), "never beat");
        assert!(is_alive(1_000, 1_000 + MAX_SILENCE_MS));
        assert!(!is_alive(1_000, 1_001 + MAX_SILENCE_MS));
        assert!(is_alive(5_000, 4_000), "a beat after the reading is alive");
    }
}
