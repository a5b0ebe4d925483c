//! `resetdesk approval answer`: the manager's reply to an approval request on the
//! embedded approval channel (demo and tests; production answers through the
//! collector's approval page). The approval code comes on standard input.

use std::path::PathBuf;

use crate::clock::{Clock, SystemClock};
use clap::Subcommand;

use super::{fail, load_config, read_secret_from_stdin, EXIT_BAD_INPUT, EXIT_OK};
use crate::config::Mode;
use crate::desk::approval::ApprovalInbox;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Answer the approval request whose code (from the approval message) is on
    /// standard input: `--approve` or `--deny`. The desk picks the answer up by itself.
    Answer {
        #[arg(long, value_name = "DIR")]
        data_dir: PathBuf,
        #[arg(long, conflicts_with = "deny", required_unless_present = "deny")]
        approve: bool,
        #[arg(long)]
        deny: bool,
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
}

pub fn run(cmd: Command) -> u8 {
    match cmd {
        Command::Answer { data_dir, approve, deny: _, config } => {
            let config = match load_config(config.as_deref(), Some(&data_dir)) {
                Ok(c) => c,
                Err(code) => return code,
            };
            if config.mode == Mode::Production {
                eprintln!("error: production desks take approvals only through the collector's approval page");
                return EXIT_BAD_INPUT;
            }
            let token = match read_secret_from_stdin("approval code") {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("error: {e}");
                    return EXIT_BAD_INPUT;
                }
            };
            let mut inbox = match ApprovalInbox::open(&data_dir) {
                Ok(i) => i,
                Err(e) => return fail(e),
            };
            match inbox.answer(&token, approve, SystemClock.now()) {
                Ok(issued) => {
                    println!(
                        "request {}: {} by {} ({})",
                        issued.request_id,
                        if approve { "approved" } else { "denied" },
                        issued.manager,
                        issued.address
                    );
                    EXIT_OK
                }
                Err(e) => fail(e),
            }
        }
    }
}
