//! The outbox sender: drains undelivered outbox rows into their channel's sink —
//! mail rows into a [`MailSink`], ticket updates into the ticketing
//! [`WebhookSink`] — with one retry and backoff machinery for both.
//!
//! It runs apart from resets — its own connection to `outbox.sqlite`, in a CLI run
//! (`resetdesk outbox send`, what an admin or a timer runs) or a background thread of
//! the app ([`OutboxSender::run`]) — so a slow or absent mail server never blocks or
//! undoes a reset: the reset only queued a row. Each due row is sent; success sets
//! `delivered_at`; failure counts the attempt and sets `next_attempt_at` with
//! exponential backoff ([`Backoff`]). Rows are never deleted. Rows addressed to a
//! phone number are left for another channel and not attempted, and so are rows of a
//! channel without a configured sink.
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
use super::outbox::{NotifyError, Outbox, OutboxChannel, OutboxRow};
use super::webhook::{WebhookError, WebhookSink};

/// Why the sender could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SenderError {
    #[error(transparent)]
    Mail(#[from] MailError),
    #[error(transparent)]
    Ticketing(#[from] WebhookError),
    #[error(transparent)]
    Outbox(#[from] NotifyError),
}

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
    /// Rows due for a channel with no sink here (mail or ticketing not configured).
    pub no_sink: usize,
}

/// Drains the outbox into the sinks.
pub struct OutboxSender {
    outbox: Outbox,
    /// The mail sink and the sender address; `None`: mail rows wait.
    mail: Option<(Box<dyn MailSink + Send>, String)>,
    /// `None`: ticket updates wait.
    ticketing: Option<WebhookSink>,
    backoff: Backoff,
}

impl OutboxSender {
    /// A sender of mail rows into `sink` (add the ticketing webhook with
    /// [`OutboxSender::with_ticketing`]).
    pub fn new(outbox: Outbox, sink: Box<dyn MailSink + Send>, from: impl Into<String>, backoff: Backoff) -> Self {
        Self { outbox, mail: Some((sink, from.into())), ticketing: None, backoff }
    }

    /// A sender of ticket updates only.
    pub fn ticketing_only(outbox: Outbox, hook: WebhookSink, backoff: Backoff) -> Self {
        Self { outbox, mail: None, ticketing: Some(hook), backoff }
    }

    /// Also post ticket updates through `hook`.
    pub fn with_ticketing(mut self, hook: WebhookSink) -> Self {
        self.ticketing = Some(hook);
        self
    }

    /// The sender of `config`'s mail delivery and ticketing webhook on
    /// `<data_dir>/outbox.sqlite`; `None` when neither is configured (production
    /// without `[smtp] host` and `[ticketing] url`).
    pub fn from_config(config: &Config) -> Result<Option<Self>, SenderError> {
        let mail = sink_for(config)?.map(|sink| (sink, config.smtp.from.clone()));
        let ticketing = WebhookSink::from_config(&config.ticketing, config.mode)?;
        if mail.is_none() && ticketing.is_none() {
            return Ok(None);
        }
        let outbox = Outbox::open(&config.data_dir)?;
        Ok(Some(Self { outbox, mail, ticketing, backoff: Backoff::default() }))
    }

    /// Deliver one row through its channel's sink; `Ok(false)`: left for another
    /// channel or sink.
    fn deliver(&mut self, row: &OutboxRow, report: &mut DrainReport) -> Result<bool, String> {
        match row.channel {
            OutboxChannel::Mail => {
                let Some((sink, from)) = self.mail.as_mut() else {
                    report.no_sink += 1;
                    return Ok(false);
                };
                match compose(from, row).and_then(|mail| sink.send(row.id, &mail)) {
                    Ok(()) => Ok(true),
                    Err(MailError::NotAnAddress(_)) => {
                        report.not_mail += 1;
                        Ok(false)
                    }
                    Err(e) => Err(e.to_string()),
                }
            }
            OutboxChannel::Ticketing => {
                let Some(hook) = self.ticketing.as_mut() else {
                    report.no_sink += 1;
                    return Ok(false);
                };
                hook.post_row(&row.body).map(|()| true).map_err(|e| e.to_string())
            }
        }
    }

    /// Send every row due at `now`, once. A failed send is recorded and retried later;
    /// only an outbox (database) failure ends the pass with an error.
    pub fn drain_once(&mut self, now: OffsetDateTime) -> Result<DrainReport, NotifyError> {
        let mut report = DrainReport::default();
        for row in self.outbox.due(now)? {
            match self.deliver(&row, &mut report) {
                Ok(true) => {
                    self.outbox.mark_delivered(row.id, now)?;
                    report.sent += 1;
                }
                Ok(false) => {}
                Err(why) => {
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
