//! `resetdesk outbox show`: the messages the desk queued (notifications, approval
//! requests), as a demo user or an administrator reads them before mail is set up.

use std::path::PathBuf;

use clap::Subcommand;

use super::{fail, EXIT_OK};
use crate::desk::outbox::Outbox;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the queued messages, oldest first (only those of `--request ID` if given).
    Show {
        #[arg(long, value_name = "DIR")]
        data_dir: PathBuf,
        #[arg(long, value_name = "ID")]
        request: Option<String>,
    },
}

pub fn run(cmd: Command) -> u8 {
    match cmd {
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
                let state = match (&m.delivered_at, m.delivered_in_band) {
                    (Some(_), true) => "shown in-band at the desk",
                    (Some(_), false) => "sent",
                    (None, _) => "queued",
                };
                println!(
                    "--- #{} {} [{}]\nTo: {}\nSubject: {}\nRequest: {}\n\n{}",
                    m.id, m.created_at, state, m.recipient, m.subject, m.request_id, m.body
                );
            }
            EXIT_OK
        }
    }
}
