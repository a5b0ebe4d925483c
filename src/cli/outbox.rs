//! `resetdesk outbox show`: the messages the desk queued (notifications, approval
//! requests, ticket updates), as a demo user or an administrator reads them before
//! mail is set up.
//! `resetdesk outbox send`: one pass of the outbox sender (what an admin or a timer runs).

use std::path::PathBuf;

use clap::Subcommand;

use super::{fail, load_config, EXIT_FAILED, EXIT_OK};
use crate::desk::mailer::MailError;
use crate::desk::outbox::{Outbox, OutboxChannel};
use crate::desk::sender::OutboxSender;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the queued messages, oldest first (only those of `--request ID` if given).
    Show {
        #[arg(long, value_name = "DIR")]
        data_dir: PathBuf,
        #[arg(long, value_name = "ID")]
        request: Option<String>,
    },
    /// Send the messages that are due through the configured delivery ([smtp]), once.
    /// Exit 0 when nothing failed, 1 when some stay queued for a later attempt.
    Send {
        #[arg(long, value_name = "DIR")]
        data_dir: PathBuf,
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
}

pub fn run(cmd: Command) -> u8 {
    match cmd {
        Command::Send { data_dir, config } => send(data_dir, config),
        Command::Show { data_dir, request } => {
            let outbox = match Outbox::open(&data_dir) {
                Ok(o) => o,
                Err(e) => return fail(e),
            };
            let messages = match outbox.messages() {
                Ok(m) => m,
                Err(e) => return fail(e),
            };
            for m in messages.iter().filter(|m| request.as_deref().is_none_or(|r| m.request_id == r)) {
                let retry = match &m.last_error {
                    Some(e) => format!("queued, {} failed attempt(s), last: {e}", m.attempts),
                    None => "queued".to_owned(),
                };
                let state = match (&m.delivered_at, m.delivered_in_band) {
                    (Some(_), true) => "shown in-band at the desk",
                    (Some(_), false) => "sent",
                    (None, _) => retry.as_str(),
                };
                let to = match m.channel {
                    OutboxChannel::Mail => "To",
                    OutboxChannel::Ticketing => "Ticket",
                };
                println!(
                    "--- #{} {} [{}]\n{to}: {}\nSubject: {}\nRequest: {}\n\n{}",
                    m.id, m.created_at, state, m.recipient, m.subject, m.request_id, m.body
                );
            }
            EXIT_OK
        }
    }
}

fn send(data_dir: PathBuf, config: Option<PathBuf>) -> u8 {
    let config = match load_config(config.as_deref(), Some(&data_dir)) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let mut sender = match OutboxSender::from_config(&config) {
        Ok(Some(s)) => s,
        Ok(None) => return fail(MailError::NotConfigured),
        Err(e) => return fail(e),
    };
    match sender.drain_once(time::OffsetDateTime::now_utc()) {
        Ok(report) => {
            println!(
                "sent {}, failed {} (retried later), {} not for mail, {} waiting for an unconfigured channel",
                report.sent,
                report.failed.len(),
                report.not_mail,
                report.no_sink
            );
            for (id, why) in &report.failed {
                eprintln!("#{id}: {why}");
            }
            if report.failed.is_empty() {
                EXIT_OK
            } else {
                EXIT_FAILED
            }
        }
        Err(e) => fail(e),
    }
}
