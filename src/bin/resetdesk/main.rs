//! `resetdesk`: the admin and auditor command line. Parsing only; the work is in
//! `resetdesk::cli`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use resetdesk::cli;

#[derive(Debug, Parser)]
#[command(name = "resetdesk", version, about = "ResetDesk: assisted password resets, signed and audited")]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Validate or print the configuration file.
    #[command(subcommand)]
    Config(cli::config::Command),
    /// Create the demo organisation.
    #[command(subcommand)]
    Demo(cli::demo::Command),
    /// Inspect the embedded directory.
    #[command(subcommand)]
    Directory(cli::directory::Command),
    /// Manage the organisation CA that issues agents' certificates.
    #[command(subcommand)]
    Ca(cli::ca::Command),
    /// List, inspect and enrol agents' YubiKeys.
    #[command(subcommand)]
    Token(cli::token::Command),
    /// Verify and export the signed audit trail.
    #[command(subcommand)]
    Audit(cli::audit::Command),
    /// Answer a manager-approval request (embedded channel: demo and tests).
    #[command(subcommand)]
    Approval(cli::approval::Command),
    /// Show the messages the desk queued (notifications, approval requests).
    #[command(subcommand)]
    Outbox(cli::outbox::Command),
    /// Desk maintenance: reconcile reset intents left without an outcome.
    #[command(subcommand)]
    Desk(cli::desk::Command),
    /// Admin actions on an account, each a signed audit record: clear a lockout or a
    /// flag, set a contact point.
    #[command(subcommand)]
    Admin(cli::admin::Command),
    /// Send the audit records still without a receipt to the collector ([collector]),
    /// once or `--watch`; exit 0 when every record has a receipt.
    Sync(cli::sync::SyncArgs),
}

fn main() -> ExitCode {
    cli::init_logging();
    let args = match Args::try_parse() {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            // clap: help/version are not errors.
            return if e.use_stderr() { ExitCode::from(cli::EXIT_BAD_INPUT) } else { ExitCode::SUCCESS };
        }
    };
    let code = match args.command {
        Command::Config(c) => cli::config::run(c),
        Command::Demo(c) => cli::demo::run(c),
        Command::Directory(c) => cli::directory::run(c),
        Command::Ca(c) => cli::ca::run(c),
        Command::Token(c) => cli::token::run(c),
        Command::Audit(c) => cli::audit::run(c),
        Command::Approval(c) => cli::approval::run(c),
        Command::Outbox(c) => cli::outbox::run(c),
        Command::Desk(c) => cli::desk::run(c),
        Command::Admin(c) => cli::admin::run(c),
        Command::Sync(a) => cli::sync::run(a),
    };
    ExitCode::from(code)
}
