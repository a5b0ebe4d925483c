//! `resetdesk demo init`: the demo organisation in the embedded directory.

use std::path::PathBuf;

use crate::clock::{Clock, SystemClock};
use clap::Subcommand;

use super::{fail, load_config, EXIT_BAD_INPUT, EXIT_OK};
use crate::directory::embedded::EmbeddedDirectory;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the demo organisation (idempotent) and a demo `resetdesk.toml` in DIR.
    Init {
        #[arg(long, value_name = "DIR")]
        data_dir: PathBuf,
    },
    /// Print the demo organisation as LDIF for a test LDAP directory (`scripts/slapd.sh`
    /// loads it with ldapadd; `demo init` keeps the answers and TOTP keys locally).
    Ldif {
        #[arg(long, value_name = "DN", default_value = "dc=example,dc=test")]
        base_dn: String,
    },
    /// Print the current code of a demo account's authenticator app (the demo
    /// accounts' TOTP keys are derived from their usernames: demo only).
    Totp {
        #[arg(long, value_name = "NAME")]
        user: String,
    },
}

pub fn run(cmd: Command) -> u8 {
    match cmd {
        Command::Ldif { base_dn } => {
            print!("{}", crate::directory::ldap::demo::ldif(&base_dn, SystemClock.now()));
            EXIT_OK
        }
        Command::Totp { user } => {
            let Some(person) = crate::demo::DEMO_PEOPLE.iter().find(|p| p.username == user) else {
                return fail(format!("{user:?} is not a demo account; see the README's table of demo accounts"));
            };
            if !person.totp {
                return fail(format!("{user} has no authenticator app in the demo; use another method"));
            }
            let now = SystemClock.now();
            let step = match crate::verification::totp::step_at(now) {
                Ok(s) => s,
                Err(e) => return fail(e),
            };
            let key = crate::demo::demo_totp_key(&user);
            let code = crate::verification::totp::hotp(&key, step, crate::verification::totp::DIGITS);
            let left = 30 - now.unix_timestamp().rem_euclid(30);
            println!("{user}: {} (valid for {left} more seconds; demo only)", code.as_str());
            EXIT_OK
        }
        Command::Init { data_dir } => {
            if let Err(e) = std::fs::create_dir_all(&data_dir) {
                return fail(format!("cannot create {}: {e}", data_dir.display()));
            }
            let config_path = data_dir.join("resetdesk.toml");
            if !config_path.exists() {
                let text = format!(
                    "# ResetDesk demo configuration (created by `resetdesk demo init`).\n\
                     # Every other setting has its documented default: `resetdesk config defaults`.\n\
                     mode = \"demo\"\norganisation = \"Example Corp\"\ndata_dir = {:?}\n\n\
                     # Demo only: the cooling-off before privileged (default 10 min) and highest\n\
                     # (default 30 min) resets is shortened to 1 and 2 minutes, so a demo reset\n\
                     # does not keep you waiting. Everything else is as in production.\n\
                     [policy.privileged]\nmin_factors = 2\n\
                     factor_methods = [\"totp\", \"one-time-code\", \"callback\", \"government-id\"]\n\
                     manager_approval = true\ngovernment_id = false\nco_signature = false\ncooling_off_minutes = 1\n\n\
                     [policy.highest]\nmin_factors = 2\n\
                     factor_methods = [\"totp\", \"one-time-code\", \"callback\", \"government-id\"]\n\
                     manager_approval = true\ngovernment_id = true\nco_signature = true\ncooling_off_minutes = 2\n",
                    data_dir.canonicalize().unwrap_or(data_dir.clone()).display().to_string()
                );
                if let Err(e) = std::fs::write(&config_path, text) {
                    return fail(format!("cannot write {}: {e}", config_path.display()));
                }
            }
            let config = match load_config(None, Some(&data_dir)) {
                Ok(c) => c,
                Err(code) => return code,
            };
            if config.mode == crate::config::Mode::Production {
                eprintln!(
                    "error: {} says mode = \"production\": demo init never puts the demo organisation (known \
                     passwords and answers) into a production desk; use a separate data directory for the demo",
                    config_path.display()
                );
                return EXIT_BAD_INPUT;
            }
            let mut dir = match EmbeddedDirectory::open(&data_dir, &config) {
                Ok(d) => d,
                Err(e) => return fail(e),
            };
            match crate::demo::init(&mut dir, SystemClock.now()) {
                Ok(0) => println!("{}: demo organisation already present; nothing changed", dir.path().display()),
                Ok(n) => println!(
                    "{}: created the demo organisation ({n} accounts). Demo passwords are demo-pass-<username>.",
                    dir.path().display()
                ),
                Err(e) => return fail(e),
            }
            EXIT_OK
        }
    }
}
