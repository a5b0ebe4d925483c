//! `resetdesk config check|defaults`.

use std::path::PathBuf;

use clap::Subcommand;

use super::{EXIT_BAD_INPUT, EXIT_OK};
use crate::config::Config;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate a configuration file: exit 0 if valid, 2 with `file:line: key: problem` if not.
    Check {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Print a configuration file holding every default.
    Defaults,
}

pub fn run(cmd: Command) -> u8 {
    match cmd {
        Command::Check { config } => match Config::load(&config) {
            Ok(c) => {
                println!(
                    "{}: OK (mode {:?}, directory {:?}, data dir {})",
                    config.display(),
                    c.mode,
                    c.directory.backend,
                    c.data_dir.display()
                );
                EXIT_OK
            }
            Err(e) => {
                eprintln!("error: {e}");
                EXIT_BAD_INPUT
            }
        },
        Command::Defaults => {
            print!("{}", Config::defaults_toml());
            EXIT_OK
        }
    }
}
