//! The outbox sender: drains undelivered outbox rows into a [`MailSink`].
//!
//! It runs apart from resets — its own connection to `outbox.sqlite`, in a CLI run
//! (`resetdesk outbox send`, what an admin or a timer runs) or a background thread of
//! the app ([`OutboxSender::run`]) — so a slow or absent mail server never blocks or
//! undoes a reset: the reset only queued a row. Each due row is sent; success sets
//! `delivered_at`; failure counts the attempt and sets `next_attempt_at` with
//! exponential backoff ([`Backoff`]). Rows are never deleted. Rows addressed to a
//! phone number are left for another channel and not attempted.
//!
//! The app's shell starts it once the desk is open, on a thread of its own:
//!
//! ```no_run
//! # use std::sync::{atomic::AtomicBool, Arc};
//! # fn start(config: &resetdesk::config::Config) -> Result<(), Box<dyn std::error::Error>> {
//! let stop = Arc::new(AtomicBool::new(false));
//! if let Some(mut sender) = resetdesk::desk::sender::OutboxSender::from_config(config)? {
//!     let stop = stop.clone();
//!     std::thread::spawn(move || sender.run(std::time::Duration::from_secs(15), &stop));
//! }
//! // On exit: stop.store(true, Ordering::Relaxed).
//! # Ok(()) }
//! ```

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use time::OffsetDateTime;

use crate::config::Config;

use super::mailer::{compose, sink_for, MailError, MailSink};
use super::outbox::{NotifyError, Outbox};

/// Delay before the next attempt: `first`, doubled after each failure, at most `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub first: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self { first: Duration::from_secs(30), max: Duration::from_secs(3600) }
    }
}

impl Backoff {
    /// The delay after the `failures`-th failed attempt (1-based).
    pub fn delay(&self, failures: u32) -> Duration {
        let factor = 1u32.checked_shl(failures.saturating_sub(1)).unwrap_or(u32::MAX);
        self.first.saturating_mul(factor).min(self.max)
    }
}

/// What one pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DrainReport {
    pub sent: usize,
    /// `(row id, why)` of each failed attempt; each is retried later.
    pub failed: Vec<(i64, String)>,
    /// Rows due but not for mail (a phone number): left for another channel.
    pub not_mail: usize,
}

/// Drains the outbox into a sink.
pub struct OutboxSender {
    outbox: Outbox,
    sink: Box<dyn MailSink + Send>,
    from: String,
    backoff: Backoff,
}

impl OutboxSender {
    pub fn new(outbox: Outbox, sink: Box<dyn MailSink + Send>, from: impl Into<String>, backoff: Backoff) -> Self {
        Self { outbox, sink, from: from.into(), backoff }
    }

    /// The sender of `config`'s delivery on `<data_dir>/outbox.sqlite`; `None` when no
    /// delivery is configured (production without `[smtp] host`).
    pub fn from_config(config: &Config) -> Result<Option<Self>, MailError> {
        let Some(sink) = sink_for(config)? else { return Ok(None) };
        let outbox = Outbox::open(&config.data_dir)?;
        Ok(Some(Self::new(outbox, sink, config.smtp.from.clone(), Backoff::default())))
    }

    /// Send every row due at `now`, once. A failed send is recorded and retried later;
    /// only an outbox (database) failure ends the pass with an error.
    pub fn drain_once(&mut self, now: OffsetDateTime) -> Result<DrainReport, NotifyError> {
        let mut report = DrainReport::default();
        for row in self.outbox.due(now)? {
            let sent = compose(&self.from, &row).and_then(|mail| self.sink.send(row.id, &mail));
            match sent {
                Ok(()) => {
                    self.outbox.mark_delivered(row.id, now)?;
                    report.sent += 1;
                }
                Err(MailError::NotAnAddress(_)) => report.not_mail += 1,
                Err(e) => {
                    let why = e.to_string();
                    let delay = self.backoff.delay(row.attempts.saturating_add(1));
                    let next = now + time::Duration::try_from(delay).unwrap_or(time::Duration::HOUR);
                    tracing::warn!(id = row.id, error = %why, next = %next, "outbox message not sent");
                    self.outbox.mark_failed(row.id, &why, next)?;
                    report.failed.push((row.id, why));
                }
            }
        }
        Ok(report)
    }

    /// Drain every `poll` until `stop` is set: the loop of the app's background
    /// thread. Errors are logged and the loop goes on.
    pub fn run(&mut self, poll: Duration, stop: &AtomicBool) {
        while !stop.load(Ordering::Relaxed) {
            if let Err(e) = self.drain_once(OffsetDateTime::now_utc()) {
                tracing::error!(error = %e, "the outbox could not be drained");
            }
            // Sleep in short slices so that `stop` is seen promptly.
            let mut slept = Duration::ZERO;
            while slept < poll && !stop.load(Ordering::Relaxed) {
                let slice = Duration::from_millis(200).min(poll - slept);
                std::thread::sleep(slice);
                slept += slice;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let b = Backoff { first: Duration::from_secs(30), max: Duration::from_secs(300) };
        let delays: Vec<u64> = (1..=6).map(|n| b.delay(n).as_secs()).collect();
        assert_eq!(delays, [30, 60, 120, 240, 300, 300]);
        assert_eq!(b.delay(200), Duration::from_secs(300), "no overflow");
    }
}
