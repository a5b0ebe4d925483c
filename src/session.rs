//! The agent session lock, as a pure state machine.
//!
//! Events in (activity, clock ticks, card removal/insertion, a manual lock), decisions
//! out. Time only comes from the events, so the rules are tested without a clock:
//! - removal of the agent's key from *its* reader locks at once (the shell forwards the
//!   watcher's removal event as soon as it arrives, well within 1 s);
//! - no activity for `idle_lock_seconds` locks at the first event at or after the
//!   deadline (the shell sends a `Tick` at least every second, or at [`SessionLock::deadline`]);
//! - a locked session stays locked: unlocking is a new login (PIN again).

use std::time::Duration;

use serde::Serialize;
use time::OffsetDateTime;

/// Something that happened, with its time where it matters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEvent {
    /// The agent did something (typed, clicked, signed).
    Activity { at: OffsetDateTime },
    /// The clock moved on (timer).
    Tick { at: OffsetDateTime },
    /// A card left a reader.
    CardRemoved { reader: String, at: OffsetDateTime },
    /// A card arrived in a reader (never unlocks).
    CardInserted { reader: String, at: OffsetDateTime },
    /// The agent pressed "lock".
    LockRequested { at: OffsetDateTime },
    /// The token failed in a way that loses trust in the session (removed mid-operation,
    /// reset by another program).
    TokenLost { at: OffsetDateTime },
}

/// Why a session locked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LockReason {
    KeyRemoved,
    Idle,
    Manual,
    TokenLost,
}

impl LockReason {
    /// One sentence for the lock screen.
    pub fn message(self) -> &'static str {
        match self {
            LockReason::KeyRemoved => "Locked: your YubiKey was removed. Insert it and enter your PIN.",
            LockReason::Idle => "Locked after inactivity. Enter your PIN to continue.",
            LockReason::Manual => "Locked. Enter your PIN to continue.",
            LockReason::TokenLost => "Locked: the YubiKey stopped answering. Reinsert it and log in again.",
        }
    }
}

/// What the shell must do after an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockDecision {
    /// Nothing changes.
    Stay,
    /// Lock now: drop the signer (wipes the PIN) and show the lock screen.
    Lock(LockReason),
}

/// The lock state of one agent session.
#[derive(Debug, Clone)]
pub struct SessionLock {
    reader: String,
    idle_limit: Duration,
    last_activity: OffsetDateTime,
    locked: Option<LockReason>,
}

impl SessionLock {
    /// A new unlocked session for the key in `reader`, logged in at `now`.
    pub fn new(reader: impl Into<String>, idle_lock_seconds: u32, now: OffsetDateTime) -> Self {
        Self {
            reader: reader.into(),
            idle_limit: Duration::from_secs(u64::from(idle_lock_seconds.max(1))),
            last_activity: now,
            locked: None,
        }
    }

    pub fn reader(&self) -> &str {
        &self.reader
    }

    /// `Some(reason)` once locked.
    pub fn locked(&self) -> Option<LockReason> {
        self.locked
    }

    /// When the idle lock fires if nothing happens (`None` once locked).
    pub fn deadline(&self) -> Option<OffsetDateTime> {
        self.locked.is_none().then(|| self.last_activity + self.idle_limit)
    }

    /// Apply an event. Returns `Lock` exactly once, on the transition to locked.
    pub fn handle(&mut self, event: &SessionEvent) -> LockDecision {
        if self.locked.is_some() {
            return LockDecision::Stay;
        }
        let (at, lock) = match event {
            SessionEvent::CardRemoved { reader, at } if *reader == self.reader => (*at, Some(LockReason::KeyRemoved)),
            SessionEvent::CardRemoved { at, .. }
            | SessionEvent::CardInserted { at, .. }
            | SessionEvent::Tick { at } => (*at, None),
            SessionEvent::LockRequested { at } => (*at, Some(LockReason::Manual)),
            SessionEvent::TokenLost { at } => (*at, Some(LockReason::TokenLost)),
            SessionEvent::Activity { at } => (*at, None),
        };
        // Idle first: activity arriving after the deadline does not rescue the session.
        let lock = lock.or_else(|| (at >= self.last_activity + self.idle_limit).then_some(LockReason::Idle));
        if let Some(reason) = lock {
            self.locked = Some(reason);
            return LockDecision::Lock(reason);
        }
        if let SessionEvent::Activity { at } = event {
            // Clocks can step backwards; never move the last activity back.
            self.last_activity = self.last_activity.max(*at);
        }
        LockDecision::Stay
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use time::macros::datetime;

    const T0: OffsetDateTime = datetime!(2026-06-01 09:00 UTC);
    const R: &str = "Virtual PCD 00 00";

    fn secs(s: i64) -> OffsetDateTime {
        T0 + time::Duration::seconds(s)
    }

    #[test]
    fn removing_the_agents_key_locks_at_once() {
        let mut s = SessionLock::new(R, 300, T0);
        assert_eq!(
            s.handle(&SessionEvent::CardRemoved { reader: R.into(), at: secs(1) }),
            LockDecision::Lock(LockReason::KeyRemoved)
        );
        assert_eq!(s.locked(), Some(LockReason::KeyRemoved));
        // Reinsertion does not unlock, and the lock is reported once.
        assert_eq!(s.handle(&SessionEvent::CardInserted { reader: R.into(), at: secs(2) }), LockDecision::Stay);
        assert_eq!(s.locked(), Some(LockReason::KeyRemoved));
    }

    #[test]
    fn removal_from_another_reader_does_not_lock() {
        let mut s = SessionLock::new(R, 300, T0);
        let other = SessionEvent::CardRemoved { reader: "Virtual PCD 00 01".into(), at: secs(1) };
        assert_eq!(s.handle(&other), LockDecision::Stay);
        assert_eq!(s.locked(), None);
    }

    #[test]
    fn idle_limit_locks_and_activity_postpones_it() {
        let mut s = SessionLock::new(R, 60, T0);
        assert_eq!(s.handle(&SessionEvent::Tick { at: secs(59) }), LockDecision::Stay);
        assert_eq!(s.handle(&SessionEvent::Activity { at: secs(59) }), LockDecision::Stay);
        assert_eq!(s.deadline(), Some(secs(119)));
        assert_eq!(s.handle(&SessionEvent::Tick { at: secs(118) }), LockDecision::Stay);
        assert_eq!(s.handle(&SessionEvent::Tick { at: secs(119) }), LockDecision::Lock(LockReason::Idle));
        assert_eq!(s.deadline(), None);
    }

    #[test]
    fn late_activity_does_not_rescue_an_idle_session() {
        let mut s = SessionLock::new(R, 60, T0);
        assert_eq!(s.handle(&SessionEvent::Activity { at: secs(61) }), LockDecision::Lock(LockReason::Idle));
    }

    #[test]
    fn backwards_clock_does_not_extend_the_session() {
        let mut s = SessionLock::new(R, 60, T0);
        s.handle(&SessionEvent::Activity { at: secs(30) });
        s.handle(&SessionEvent::Activity { at: secs(-3000) });
        assert_eq!(s.deadline(), Some(secs(90)));
    }

    #[test]
    fn manual_lock_and_token_loss() {
        let mut s = SessionLock::new(R, 60, T0);
        assert_eq!(s.handle(&SessionEvent::LockRequested { at: secs(1) }), LockDecision::Lock(LockReason::Manual));
        let mut s = SessionLock::new(R, 60, T0);
        assert_eq!(s.handle(&SessionEvent::TokenLost { at: secs(1) }), LockDecision::Lock(LockReason::TokenLost));
    }

    proptest! {
        /// Whatever happens, the session is never unlocked after a lock, and it is
        /// locked whenever more than the idle limit passed between activities.
        #[test]
        fn locks_are_permanent_and_idle_gaps_always_lock(steps in proptest::collection::vec((0u8..4, 0i64..100), 1..40)) {
            let mut s = SessionLock::new(R, 50, T0);
            let mut t = 0i64;
            let mut last_activity = 0i64;
            let mut was_locked = false;
            for (kind, dt) in steps {
                t += dt;
                let ev = match kind {
                    0 => SessionEvent::Activity { at: secs(t) },
                    1 => SessionEvent::Tick { at: secs(t) },
                    2 => SessionEvent::CardInserted { reader: R.into(), at: secs(t) },
                    _ => SessionEvent::CardRemoved { reader: "other".into(), at: secs(t) },
                };
                let expect_idle = t - last_activity >= 50;
                let d = s.handle(&ev);
                if was_locked {
                    prop_assert_eq!(d, LockDecision::Stay);
                    prop_assert!(s.locked().is_some());
                } else if expect_idle {
                    prop_assert_eq!(d, LockDecision::Lock(LockReason::Idle));
                    was_locked = true;
                } else {
                    prop_assert_eq!(d, LockDecision::Stay);
                    if kind == 0 { last_activity = t; }
                }
            }
        }
    }
}
