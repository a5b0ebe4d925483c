//! Each new alert mailed to the security address (`[security_mail]`), from a durable
//! queue: one `alert_mail` row per alert (never deleted; attempts, next attempt, last
//! error, when sent). A task of `serve` queues the alerts that have no row yet, claims
//! the due rows (held for a while, so another instance does not send them too), and
//! sends them over SMTP on a blocking thread, outside the collector's lock: a mail
//! server down or slow never blocks ingest, and a failure is retried with
//! exponential backoff. The mail is built and sent by the core's mailer (text and
//! escaped HTML, lettre over rustls with the configured CA). One mail per alert; when
//! more than [`DIGEST_OVER`] are due at once (a flood, or a backlog after the mail
//! server was down), one digest mail carries them all.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use resetdesk::config::{SmtpConfig, SmtpSecurity};
use resetdesk::desk::mailer::{compose_text, MailSink, SmtpSink};
use resetdesk::desk::sender::Backoff;
use resetdesk::upstream::alerts::title_of;
use serde::Deserialize;

use super::{AlertStore, StoredAlert};
use crate::api::{with, AppState};
use crate::store::LogStore;

/// `[security_mail]` in `collector.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecurityMailConfig {
    /// The SMTP server.
    pub host: String,
    /// Default 587 (STARTTLS).
    #[serde(default = "default_port")]
    pub port: u16,
    /// `starttls` (default), `tls` (implicit, port 465) or `none` (a capture server on
    /// loopback only).
    #[serde(default)]
    pub security: SmtpSecurity,
    /// The CA certificate (PEM) of the server's TLS certificate; unset: the system's roots.
    pub ca_file: Option<PathBuf>,
    /// The sender, e.g. `ResetDesk collector <collector@example.org>`.
    pub from: String,
    /// The security team's address.
    pub to: String,
    /// SMTP AUTH user (empty: none); its password is read from `password_file`.
    #[serde(default)]
    pub username: String,
    pub password_file: Option<PathBuf>,
    /// First retry after a failure (seconds, default 30), doubled up to `retry_max_seconds` (default 3600).
    #[serde(default = "default_retry_first")]
    pub retry_first_seconds: u64,
    #[serde(default = "default_retry_max")]
    pub retry_max_seconds: u64,
    /// How often the queue is looked at (seconds, default 5).
    #[serde(default = "default_poll")]
    pub poll_seconds: u64,
}

fn default_port() -> u16 {
    587
}
fn default_retry_first() -> u64 {
    30
}
fn default_retry_max() -> u64 {
    3600
}
fn default_poll() -> u64 {
    5
}

/// Alerts taken per pass at most (more than [`DIGEST_OVER`] go in one digest mail).
const BATCH: usize = 100;
/// How long a claimed row is held by this instance while it sends.
const LEASE_MS: u64 = 5 * 60 * 1000;

impl SecurityMailConfig {
    fn smtp(&self) -> SmtpConfig {
        SmtpConfig {
            host: self.host.clone(),
            port: self.port,
            security: self.security,
            from: self.from.clone(),
            security_team: self.to.clone(),
            ca_file: self.ca_file.clone(),
            username: self.username.clone(),
            password_file: self.password_file.clone(),
            ..SmtpConfig::default()
        }
    }

    fn backoff(&self) -> Backoff {
        Backoff {
            first: Duration::from_secs(self.retry_first_seconds.max(1)),
            max: Duration::from_secs(self.retry_max_seconds.max(1)),
        }
    }
}

/// Why the security mail cannot start.
#[derive(Debug, thiserror::Error)]
#[error("[security_mail]: {0}")]
pub struct MailSetupError(String);

/// The text of an alert's mail: what, why, when, where, and the records it stands on.
pub fn text_of(a: &StoredAlert) -> String {
    let at = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(a.alert.at_ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| format!("{} ms after 1970 (UTC)", a.alert.at_ms));
    let mut text = format!(
        "{}\n\nAlert {} ({}), raised at {at}.\n\n{}\n",
        title_of(&a.alert.kind),
        a.id,
        a.alert.kind,
        a.alert.reason
    );
    if let Some(log) = a.alert.log_id {
        text.push_str(&format!(
            "\nDesk log: {}{}\n",
            hex::encode(log),
            a.alert.seq.map(|s| format!(", seq {s}")).unwrap_or_default()
        ));
    }
    if !a.records.is_empty() {
        text.push_str("\nRecords it stands on (desk log id, seq, entry hash):\n");
        for r in &a.records {
            text.push_str(&format!("- {} {} {}\n", hex::encode(r.log_id), r.seq, hex::encode(r.entry_hash)));
        }
    }
    text.push_str(
        "\nList the alerts with their receipts: resetdesk-collector alerts --config collector.toml (or GET /alerts).\n",
    );
    text
}

/// The mail of the alerts `due` (one alert, or a digest of several).
pub fn compose(config: &SecurityMailConfig, due: &[StoredAlert]) -> Result<lettre::Message, String> {
    let (subject, id, text) = match due {
        [] => return Err("no alert to mail".into()),
        [a] => {
            (format!("[ResetDesk alert {}] {}", a.id, title_of(&a.alert.kind)), format!("alert-{}", a.id), text_of(a))
        }
        [first, .., last] => {
            let mut kinds: Vec<&str> = due.iter().map(|a| a.alert.kind.as_str()).collect();
            kinds.sort_unstable();
            kinds.dedup();
            let subject =
                format!("[ResetDesk alerts {}-{}] {} alerts: {}", first.id, last.id, due.len(), kinds.join(", "));
            let texts: Vec<String> = due.iter().map(text_of).collect();
            (subject, format!("alerts-{}-{}", first.id, last.id), texts.join("\n----\n\n"))
        }
    };
    compose_text(&config.from, &config.to, &subject, &id, &text).map_err(|e| e.to_string())
}

/// Above this many alerts due at once, one digest mail carries them (a flood of
/// refusals from whoever can post garbage must not flood the security mailbox).
pub const DIGEST_OVER: usize = 3;

/// Check the settings (the sender and recipient parse, the CA and password files read)
/// before `serve` starts.
pub fn check(config: &SecurityMailConfig) -> Result<(), MailSetupError> {
    SmtpSink::new(&config.smtp()).map_err(|e| MailSetupError(e.to_string()))?;
    let probe = StoredAlert {
        id: 0,
        alert: crate::store::Alert { at_ms: 0, log_id: None, seq: None, kind: "check".into(), reason: String::new() },
        records: Vec::new(),
    };
    compose(config, &[probe]).map(drop).map_err(MailSetupError)
}

fn now_ms() -> u64 {
    crate::anomaly::now_ms()
}

/// The mail task of `serve`: forever, every `poll_seconds`.
pub async fn run<S: LogStore + AlertStore + 'static>(state: Arc<AppState<S>>, config: SecurityMailConfig) {
    let mut sink: Option<SmtpSink> = None;
    let backoff = config.backoff();
    let mut tick = tokio::time::interval(Duration::from_secs(config.poll_seconds.max(1)));
    loop {
        tick.tick().await;
        let claimed = with(Arc::clone(&state), |c| -> Result<Vec<(StoredAlert, u32)>, crate::store::StoreError> {
            let store = c.store_mut();
            store.queue_alert_mail()?;
            let now = now_ms();
            let due = store.claim_alert_mail(now, now + LEASE_MS, BATCH)?;
            let mut out = Vec::with_capacity(due.len());
            for d in due {
                if let Some(a) = store.alert(d.alert_id)? {
                    out.push((a, d.attempts));
                }
            }
            Ok(out)
        })
        .await;
        let due = match claimed {
            Ok(Ok(d)) => d,
            Ok(Err(e)) => {
                tracing::error!("alert mail: cannot read the queue: {e}");
                continue;
            }
            Err(e) => {
                tracing::error!("alert mail: {}", e.0);
                continue;
            }
        };
        if due.is_empty() {
            continue;
        }
        let worker_config = config.clone();
        let mut worker_sink = sink.take();
        let sent = tokio::task::spawn_blocking(move || {
            let mut results = Vec::with_capacity(due.len());
            let groups: Vec<Vec<(StoredAlert, u32)>> =
                if due.len() > DIGEST_OVER { vec![due] } else { due.into_iter().map(|d| vec![d]).collect() };
            for group in groups {
                let alerts: Vec<StoredAlert> = group.iter().map(|(a, _)| a.clone()).collect();
                let result = send(&worker_config, &mut worker_sink, &alerts);
                results.extend(group.into_iter().map(|(a, attempts)| (a.id, attempts, result.clone())));
            }
            (worker_sink, results)
        })
        .await;
        let Ok((back, results)) = sent else {
            tracing::error!("alert mail: the sending thread was lost; the mails are retried");
            continue;
        };
        sink = back;
        let stored = with(Arc::clone(&state), move |c| -> Result<(), crate::store::StoreError> {
            let store = c.store_mut();
            let now = now_ms();
            for (id, attempts, result) in results {
                match result {
                    Ok(()) => store.alert_mail_sent(id, now)?,
                    Err(why) => {
                        let delay = backoff.delay(attempts + 1);
                        let next = now + u64::try_from(delay.as_millis()).unwrap_or(u64::MAX / 2);
                        tracing::warn!(alert = id, "alert mail not sent ({why}); retried in {} s", delay.as_secs());
                        store.alert_mail_failed(id, next, &why)?;
                    }
                }
            }
            Ok(())
        })
        .await;
        if let Ok(Err(e)) = stored {
            tracing::error!("alert mail: cannot record the attempts: {e}");
        }
    }
}

fn send(config: &SecurityMailConfig, sink: &mut Option<SmtpSink>, due: &[StoredAlert]) -> Result<(), String> {
    let mail = compose(config, due)?;
    if sink.is_none() {
        *sink = Some(SmtpSink::new(&config.smtp()).map_err(|e| e.to_string())?);
    }
    let Some(s) = sink.as_mut() else { return Err("no SMTP transport".into()) };
    let id = due.first().map_or(0, |a| i64::try_from(a.id).unwrap_or(i64::MAX));
    s.send(id, &mail).map_err(|e| {
        // A broken connection is not reused.
        *sink = None;
        e.to_string()
    })
}
