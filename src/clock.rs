//! Where the time comes from: one adapter for the wall clock.
//!
//! The sans-IO core never reads the clock; it takes the time as an input (`now`,
//! `at`). What does read it — the shells, services that need the time at more than one
//! moment ([`crate::session_start`]), adapters that stamp their own rows (the embedded
//! directory's `password_changed_at`) — reads it through [`Clock`]: [`SystemClock`] in
//! the desk, [`FixedClock`] where a test or a replay needs a time it chooses. A fixed
//! clock is a real component (it is what a replay of recorded events runs on), not a
//! mock.
//!
//! In `src/`, outside tests, this is the only call of `OffsetDateTime::now_utc`: the
//! CLI's subcommands, the session start and the embedded directory read [`Clock`], and
//! the app shell reads it through one function (`src-tauri/src/desk.rs`, `now`) for its
//! commands, the watcher's ticks and lost-token events and UI activity. Still reading
//! the system clock directly: the benchmark binary (`src/bin/resetdesk-bench`), which
//! times stages.

use std::sync::Mutex;

use time::{Duration, OffsetDateTime};

/// The current time, UTC.
pub trait Clock: Send + Sync {
    fn now(&self) -> OffsetDateTime;
}

/// The operating system's wall clock.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// A clock that says what it is set to, and moves only when told.
#[derive(Debug)]
pub struct FixedClock {
    at: Mutex<OffsetDateTime>,
}

impl FixedClock {
    pub fn new(at: OffsetDateTime) -> Self {
        Self { at: Mutex::new(at) }
    }

    /// Set the time.
    pub fn set(&self, at: OffsetDateTime) {
        *self.at.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = at;
    }

    /// Move the time on by `by` (back, if negative).
    pub fn advance(&self, by: Duration) {
        let mut at = self.at.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        *at += by;
    }
}

impl Clock for FixedClock {
    fn now(&self) -> OffsetDateTime {
        // A poisoned lock still holds a time that was set whole: read it.
        *self.at.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn a_fixed_clock_moves_only_when_told() {
        let clock = FixedClock::new(datetime!(2026-06-01 12:00 UTC));
        assert_eq!(clock.now(), datetime!(2026-06-01 12:00 UTC));
        assert_eq!(clock.now(), datetime!(2026-06-01 12:00 UTC));
        clock.advance(Duration::minutes(5));
        assert_eq!(clock.now(), datetime!(2026-06-01 12:05 UTC));
        clock.set(datetime!(2027-01-01 0:00 UTC));
        assert_eq!(clock.now(), datetime!(2027-01-01 0:00 UTC));
    }

    #[test]
    fn the_system_clock_is_utc_and_moves_forward() {
        let a = SystemClock.now();
        let b = SystemClock.now();
        assert!(b >= a);
        assert_eq!(a.offset(), time::UtcOffset::UTC);
    }
}
