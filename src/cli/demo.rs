//! `resetdesk demo init`: the demo organisation in the embedded directory.

use std::path::PathBuf;

use clap::Subcommand;
use time::OffsetDateTime;

use super::{fail, load_config, EXIT_BAD_INPUT, EXIT_OK};
use crate::directory::embedded::EmbeddedDirectory;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the demo organisation (idempotent) and a demo `resetdesk.toml` in DIR.
    Init {
        #[arg(long, value_name = "DIR")]
        data_dir: PathBuf,
    },
}

pub fn run(cmd: Command) -> u8 {
    match cmd {
        Command::Init { data_dir } => {
            if let Err(e) = std::fs::create_dir_all(&data_dir) {
                return fail(format!("cannot create {}: {e}", data_dir.display()));
            }
            let config_path = data_dir.join("resetdesk.toml");
            if !config_path.exists() {
                let text = format!(
                    "# ResetDesk demo configuration (created by `resetdesk demo init`).\n\
                     # Every other setting has its documented default: `resetdesk config defaults`.\n\
                     mode = \"demo\"\norganisation = \"Example Corp\"\ndata_dir = {:?}\n",
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
            match crate::demo::init(&mut dir, OffsetDateTime::now_utc()) {
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
