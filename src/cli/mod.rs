//! Implementations of the `resetdesk` CLI subcommands (admin and auditor entry point).
//! `src/bin/resetdesk/main.rs` only parses arguments and calls into these modules.
//! Each returns an exit code; errors are printed as one line saying what to do.

pub mod admin;
pub mod approval;
pub mod audit;
pub mod ca;
pub mod token;

/// Exit status for success.
pub const EXIT_OK: u8 = 0;
/// Exit status for bad input (configuration, arguments, data): 2.
pub const EXIT_BAD_INPUT: u8 = 2;
/// Exit status for a failed check (e.g. a password that is not valid, a log that does not verify): 1.
pub const EXIT_FAILED: u8 = 1;

pub mod config;
pub mod demo;
pub mod desk;
pub mod directory;
pub mod outbox;

/// Logs go to stderr, filtered by `RESETDESK_LOG` or `RUST_LOG` (default `warn`).
/// The `yubikey` crate is always off ([`crate::logging`]): its APDU trace carries PINs,
/// and every card error reaches the user once, as our typed error saying what to do.
/// Secrets never reach a log statement: they are `Secret`s, whose `Debug` is `***`.
pub fn init_logging() {
    crate::logging::init_stderr("warn");
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

/// The arguments of a command that logs an agent in with a card (PIN on stdin).
#[derive(Debug, clap::Args)]
pub struct LoginArgs {
    #[arg(long, value_name = "DIR")]
    pub data_dir: std::path::PathBuf,
    #[arg(long, value_name = "NAME")]
    pub reader: String,
    #[arg(long, value_name = "FILE")]
    pub config: Option<std::path::PathBuf>,
}

/// The configuration for `--data-dir` and an agent logged in exactly as the app does,
/// with the card in `--reader` and the PIN from stdin. On error, prints it and returns
/// the exit status (2 for bad input, 1 for a refused login).
pub fn login_from_stdin(args: &LoginArgs) -> Result<(crate::config::Config, crate::login::AgentSession), u8> {
    let (config, directory, pin) = login_inputs(args)?;
    let now = crate::clock::Clock::now(&crate::clock::SystemClock);
    let session = crate::login::login(&config, directory.as_ref(), &args.reader, pin, now).map_err(fail)?;
    Ok((config, session))
}

/// What a login with `args` needs: the configuration, the configured directory
/// (embedded or LDAP) and the PIN from stdin. On error, prints it and returns the exit status.
pub fn login_inputs(args: &LoginArgs) -> Result<(crate::config::Config, AnyDirectory, crate::secret::Secret), u8> {
    let config = load_config(args.config.as_deref(), Some(&args.data_dir))?;
    let pin = read_secret_from_stdin("PIN").map_err(|e| {
        eprintln!("error: {e}");
        EXIT_BAD_INPUT
    })?;
    let directory = crate::directory::open(&config).map_err(fail)?;
    Ok((config, directory, pin))
}

/// The directory `[directory] backend` names.
pub type AnyDirectory = Box<dyn crate::directory::Directory + Send>;

/// Print an error (which says what to do) and return the failure exit status.
pub fn fail(e: impl std::fmt::Display) -> u8 {
    eprintln!("error: {e}");
    EXIT_FAILED
}

/// The configuration for a command: `--config FILE` if given, else
/// `<data_dir>/resetdesk.toml` if it exists, else the defaults. `data_dir` from the
/// command line always wins over the file's. On error, prints it and returns exit 2.
pub fn load_config(
    file: Option<&std::path::Path>,
    data_dir: Option<&std::path::Path>,
) -> Result<crate::config::Config, u8> {
    let in_data_dir = data_dir.map(|d| d.join("resetdesk.toml")).filter(|p| p.exists());
    let mut config = match file.map(std::path::Path::to_path_buf).or(in_data_dir) {
        Some(path) => crate::config::Config::load(&path).map_err(|e| {
            eprintln!("error: {e}");
            EXIT_BAD_INPUT
        })?,
        None => crate::config::Config::default(),
    };
    if let Some(d) = data_dir {
        config.data_dir = d.to_path_buf();
    }
    Ok(config)
}
