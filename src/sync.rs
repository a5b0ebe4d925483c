//! Upstream sync, the schedule: which of the desk's audit records go to the collector
//! next, and when. Sans-IO, like the reset workflow: the driver (a background task with
//! an HTTP client) feeds it what happened — records appended, a batch accepted up to a
//! seq, a failure — and asks it what to do now. It never touches the network, the log
//! or the clock, so every property below is tested without either.
//!
//! Guarantees, checked by the tests:
//! - records go out in seq order, each batch starting right after the last record the
//!   collector acknowledged: nothing is skipped, nothing is sent past a gap;
//! - a record counts as synced only when a receipt covers it (`acknowledged`), never
//!   because it was sent; after a restart the schedule starts again from the last
//!   stored receipt, so an unacknowledged record is sent again (the collector answers
//!   a repeat the same way);
//! - after a failure the next attempt waits an exponential delay with full jitter
//!   (`base * 2^failures`, capped, times a random fraction the driver draws), so a
//!   thousand desks that lost the collector together do not return together;
//! - one batch in flight at a time.

use std::time::Duration;

use serde::Serialize;

/// How many records one request carries at most, and the backoff bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncSettings {
    pub max_batch: u64,
    /// Delay after the first failure (before jitter).
    pub base_delay: Duration,
    /// No delay exceeds this.
    pub max_delay: Duration,
}

impl Default for SyncSettings {
    fn default() -> Self {
        Self { max_batch: 256, base_delay: Duration::from_secs(1), max_delay: Duration::from_secs(300) }
    }
}

/// What the driver should do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncAction {
    /// Send records `first..=last` (in seq order) and report the answer.
    Send { first: u64, last: u64 },
    /// A failure's backoff runs until `at_ms` (driver's clock, ms); then ask again.
    WaitUntil { at_ms: u64 },
    /// A batch is out: wait for its answer.
    AwaitAnswer,
    /// Everything appended is acknowledged.
    Idle,
}

/// What the app shows of the sync (and a heartbeat may carry). Secret-free.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SyncStatus {
    /// Records appended but not yet covered by a receipt.
    pub queued: u64,
    /// Highest seq a stored receipt covers (0: none yet).
    pub acknowledged: u64,
    /// The last request failed (or was refused) and nothing succeeded since.
    pub reachable: bool,
    /// Why the last request failed, as the driver worded it.
    pub last_error: Option<String>,
    /// Failures in a row.
    pub failures: u32,
}

/// The schedule of one desk log's upload.
#[derive(Debug, Clone)]
pub struct SyncSchedule {
    settings: SyncSettings,
    head: u64,
    acknowledged: u64,
    in_flight: Option<(u64, u64)>,
    failures: u32,
    retry_at_ms: Option<u64>,
    last_error: Option<String>,
    /// `None` until the first answer: unknown is not shown as reachable.
    reachable: Option<bool>,
}

impl SyncSchedule {
    /// A schedule for a log whose last record is `head` and whose stored receipts cover
    /// records up to `acknowledged` (both 0 for an empty log). An `acknowledged` past
    /// `head` (a receipt for records this log does not hold) is clamped: the verifier,
    /// not the schedule, judges such a receipt.
    pub fn new(settings: SyncSettings, head: u64, acknowledged: u64) -> Self {
        let settings = SyncSettings { max_batch: settings.max_batch.max(1), ..settings };
        Self {
            settings,
            head,
            acknowledged: acknowledged.min(head),
            in_flight: None,
            failures: 0,
            retry_at_ms: None,
            last_error: None,
            reachable: None,
        }
    }

    /// The log grew: its last record is now `head` (a smaller value changes nothing:
    /// a log never shrinks).
    pub fn appended(&mut self, head: u64) {
        self.head = self.head.max(head);
    }

    /// The next step at `now_ms`.
    pub fn poll(&mut self, now_ms: u64) -> SyncAction {
        if self.in_flight.is_some() {
            return SyncAction::AwaitAnswer;
        }
        if let Some(at_ms) = self.retry_at_ms {
            if now_ms < at_ms {
                return SyncAction::WaitUntil { at_ms };
            }
            self.retry_at_ms = None;
        }
        if self.acknowledged >= self.head {
            return SyncAction::Idle;
        }
        let first = self.acknowledged + 1;
        let last = self.head.min(first.saturating_add(self.settings.max_batch - 1));
        self.in_flight = Some((first, last));
        SyncAction::Send { first, last }
    }

    /// The collector's receipt covers records up to `covered`. Covering fewer than were
    /// sent is fine (the rest go next); a receipt never moves the mark back.
    pub fn accepted(&mut self, covered: u64) {
        self.in_flight = None;
        self.acknowledged = self.acknowledged.max(covered.min(self.head));
        self.failures = 0;
        self.retry_at_ms = None;
        self.last_error = None;
        self.reachable = Some(true);
    }

    /// The request failed at `now_ms` (unreachable, timeout, refused): the same records
    /// go again after a backoff. `jitter` in `[0, 1]` is the driver's random draw (full
    /// jitter); values outside are clamped.
    pub fn failed(&mut self, now_ms: u64, error: impl Into<String>, jitter: f64) {
        self.in_flight = None;
        self.failures = self.failures.saturating_add(1);
        self.last_error = Some(error.into());
        self.reachable = Some(false);
        let delay = self.backoff(self.failures).mul_f64(jitter.clamp(0.0, 1.0));
        let delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.retry_at_ms = Some(now_ms.saturating_add(delay_ms));
    }

    /// The ceiling of the wait after `failures` failures in a row (before jitter).
    pub fn backoff(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(31);
        self.settings.base_delay.saturating_mul(1u32 << doublings).min(self.settings.max_delay)
    }

    pub fn status(&self) -> SyncStatus {
        SyncStatus {
            queued: self.head - self.acknowledged,
            acknowledged: self.acknowledged,
            reachable: self.reachable.unwrap_or(false),
            last_error: self.last_error.clone(),
            failures: self.failures,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn settings(max_batch: u64) -> SyncSettings {
        SyncSettings { max_batch, base_delay: Duration::from_secs(1), max_delay: Duration::from_secs(300) }
    }

    #[test]
    fn batches_start_after_the_last_receipt_and_are_bounded() {
        let mut s = SyncSchedule::new(settings(100), 250, 20);
        assert_eq!(s.poll(0), SyncAction::Send { first: 21, last: 120 });
        assert_eq!(s.poll(0), SyncAction::AwaitAnswer, "one batch in flight");
        s.accepted(120);
        assert_eq!(s.poll(0), SyncAction::Send { first: 121, last: 220 });
        s.accepted(150); // the collector covered part of it: the rest goes again
        assert_eq!(s.poll(0), SyncAction::Send { first: 151, last: 250 });
        s.accepted(250);
        assert_eq!(s.poll(0), SyncAction::Idle);
        assert_eq!(s.status().queued, 0);
        s.appended(251);
        assert_eq!(s.poll(0), SyncAction::Send { first: 251, last: 251 });
    }

    #[test]
    fn a_failure_waits_with_jittered_exponential_backoff_then_sends_the_same_records() {
        let mut s = SyncSchedule::new(settings(10), 5, 0);
        assert_eq!(s.poll(1_000), SyncAction::Send { first: 1, last: 5 });
        s.failed(1_000, "connection refused", 1.0);
        assert_eq!(s.poll(1_500), SyncAction::WaitUntil { at_ms: 2_000 });
        assert!(!s.status().reachable);
        assert_eq!(s.status().last_error.as_deref(), Some("connection refused"));
        assert_eq!(s.poll(2_000), SyncAction::Send { first: 1, last: 5 });
        s.failed(2_000, "timeout", 0.5);
        assert_eq!(s.poll(2_000), SyncAction::WaitUntil { at_ms: 3_000 }, "2 s ceiling, half of it");
        assert_eq!(s.backoff(4), Duration::from_secs(8));
        assert_eq!(s.backoff(30), Duration::from_secs(300), "capped");
        assert_eq!(s.backoff(u32::MAX), Duration::from_secs(300), "no overflow");
        assert_eq!(s.poll(3_000), SyncAction::Send { first: 1, last: 5 });
        s.accepted(5);
        let st = s.status();
        assert!(st.reachable && st.last_error.is_none() && st.failures == 0);
    }

    #[test]
    fn unknown_reachability_is_not_shown_as_reachable() {
        let s = SyncSchedule::new(SyncSettings::default(), 3, 0);
        assert!(!s.status().reachable);
        assert_eq!(s.status().queued, 3);
    }

    #[derive(Debug, Clone)]
    enum Step {
        Append(u64),
        Accept(u64),
        Fail(f64),
        Tick(u64),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            (1u64..20).prop_map(Step::Append),
            (0u64..40).prop_map(Step::Accept),
            (0.0f64..=1.0).prop_map(Step::Fail),
            (0u64..400_000).prop_map(Step::Tick),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]
        /// Whatever the collector answers, every batch starts right after the
        /// acknowledged mark, stays within the log and the batch bound, the mark never
        /// goes back, and a waiting desk never waits longer than the cap.
        #[test]
        fn batches_are_contiguous_bounded_and_the_mark_only_grows(
            start in 0u64..50, steps in proptest::collection::vec(step(), 1..60), max_batch in 1u64..16
        ) {
            let mut s = SyncSchedule::new(settings(max_batch), start, 0);
            let (mut head, mut now, mut mark) = (start, 0u64, 0u64);
            let mut out: Option<(u64, u64)> = None;
            for st in steps {
                match st {
                    Step::Append(n) => { head += n; s.appended(head); }
                    Step::Accept(k) => if let Some((first, last)) = out.take() {
                        // The collector covers some prefix of what it got (or repeats the old mark).
                        s.accepted((first - 1 + k).min(last));
                    },
                    Step::Fail(j) => if out.take().is_some() { s.failed(now, "down", j); },
                    Step::Tick(dt) => now += dt,
                }
                prop_assert!(s.status().acknowledged >= mark);
                mark = s.status().acknowledged;
                prop_assert_eq!(s.status().queued, head - mark);
                match s.poll(now) {
                    SyncAction::Send { first, last } => {
                        prop_assert!(out.is_none());
                        prop_assert_eq!(first, mark + 1);
                        prop_assert!(last >= first && last <= head && last - first < max_batch);
                        out = Some((first, last));
                    }
                    SyncAction::WaitUntil { at_ms } => prop_assert!(at_ms > now && at_ms - now <= 300_000),
                    SyncAction::AwaitAnswer => prop_assert!(out.is_some()),
                    SyncAction::Idle => prop_assert_eq!(mark, head),
                }
            }
        }
    }
}
