//! Implementations of the `resetdesk` CLI subcommands (admin and auditor entry point).
//! `src/bin/resetdesk/main.rs` only parses arguments and calls into these modules.
//! Each returns an exit code; errors are printed as one line saying what to do.

pub mod audit;
pub mod ca;
pub mod token;

/// Exit status for bad input (configuration, arguments, data): 2.
pub const EXIT_BAD_INPUT: u8 = 2;
/// Exit status for a failed check (e.g. a password that is not valid, a log that does not verify): 1.
pub const EXIT_FAILED: u8 = 1;

pub mod config;
pub mod demo;
pub mod directory;

/// Logs go to stderr, filtered by `RESETDESK_LOG` (default `warn`). Secrets never reach
/// a log statement: they are `Secret`s, whose `Debug` is `***`.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("RESETDESK_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

/// Read a secret (PIN, password) from stdin. Refuses an interactive terminal unless
/// a prompt can hide the input; secrets are never taken from arguments.
pub fn read_secret_from_stdin(what: &str) -> Result<crate::secret::Secret, String> {
    use std::io::IsTerminal;
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprint!("{what}: ");
    }
    let s = crate::secret::Secret::read_line_from(stdin.lock())
        .map_err(|e| format!("could not read the {what} from standard input: {e}"))?;
    if s.is_empty() {
        return Err(format!("no {what} on standard input; pipe it in, e.g. `printf '%s\\n' \"$X\" | resetdesk ...`"));
    }
    Ok(s)
}
