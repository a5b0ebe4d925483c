//! `resetdesk directory check-password`: see a reset take effect.

use std::path::PathBuf;

use clap::Subcommand;

use super::{fail, load_config, read_secret_from_stdin, EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK};
use crate::directory::embedded::EmbeddedDirectory;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Read a password from stdin and say whether it is valid for USER and whether a
    /// change is required at next login. Exit 0 if valid, 1 if not.
    CheckPassword {
        #[arg(long, value_name = "DIR")]
        data_dir: PathBuf,
        #[arg(long, value_name = "NAME")]
        user: String,
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
}

pub fn run(cmd: Command) -> u8 {
    match cmd {
        Command::CheckPassword { data_dir, user, config } => {
            let config = match load_config(config.as_deref(), Some(&data_dir)) {
                Ok(c) => c,
                Err(code) => return code,
            };
            let password = match read_secret_from_stdin("password") {
                Ok(p) => p,
                Err(e) => {
                    eprintln!("error: {e}");
                    return EXIT_BAD_INPUT;
                }
            };
            // The embedded directory compares its hash; LDAP binds as the user (with
            // the ppolicy control on OpenLDAP; "data 773" on AD means must change).
            let checked = match config.directory.backend {
                crate::config::Backend::Embedded => {
                    EmbeddedDirectory::open(&data_dir, &config).and_then(|d| d.check_password(&user, &password))
                }
                crate::config::Backend::Ldap => crate::directory::ldap::LdapDirectory::open(&config)
                    .and_then(|d| d.check_password(&user, &password)),
            };
            match checked {
                Ok(c) if c.valid => {
                    println!(
                        "{user}: password valid; {}",
                        if c.must_change { "must be changed at next login" } else { "no change required" }
                    );
                    EXIT_OK
                }
                Ok(_) => {
                    println!("{user}: password NOT valid");
                    EXIT_FAILED
                }
                Err(e) => fail(e),
            }
        }
    }
}
