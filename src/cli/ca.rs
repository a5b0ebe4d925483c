//! `resetdesk ca ...` subcommands: the embedded organisation CA.
//!
//! `resetdesk ca init --data-dir DIR` reads the CA passphrase (at least 12 characters)
//! from the first line of standard input and writes `DIR/ca/ca.pem` and the encrypted
//! `DIR/ca/ca.key.pem`. A deployment with its own PKI skips this and sets
//! `[ca] cert_file` (see `crate::ca`).

use std::path::PathBuf;

use crate::clock::{Clock, SystemClock};
use clap::Subcommand;

use super::{fail, load_config, read_secret_from_stdin, EXIT_BAD_INPUT, EXIT_OK};
use crate::ca::{OrgCa, TrustAnchor};

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the organisation CA (P-256) in DIR/ca/. Passphrase: first line of stdin.
    Init {
        #[arg(long, value_name = "DIR")]
        data_dir: PathBuf,
        /// Organisation name in the CA subject (default: `organisation` from the configuration).
        #[arg(long)]
        organisation: Option<String>,
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Show the organisation CA certificate the configuration trusts.
    Show {
        #[arg(long, value_name = "DIR")]
        data_dir: PathBuf,
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
}

pub fn run(cmd: Command) -> u8 {
    match cmd {
        Command::Init { data_dir, organisation, config } => {
            let config = match load_config(config.as_deref(), Some(&data_dir)) {
                Ok(c) => c,
                Err(code) => return code,
            };
            let organisation = organisation.unwrap_or(config.organisation);
            let passphrase = match read_secret_from_stdin("CA passphrase") {
                Ok(p) => p,
                Err(e) => {
                    eprintln!("error: {e}");
                    return EXIT_BAD_INPUT;
                }
            };
            match OrgCa::init(&data_dir, &organisation, &passphrase, SystemClock.now()) {
                Ok((ca, paths)) => {
                    println!("created the organisation CA {:?}", ca.trust_anchor().subject());
                    println!("  certificate: {}", paths.cert.display());
                    println!("  private key: {} (encrypted; keep the passphrase offline)", paths.key.display());
                    EXIT_OK
                }
                Err(e @ crate::ca::CaError::WeakPassphrase) => {
                    eprintln!("error: {e}");
                    EXIT_BAD_INPUT
                }
                Err(e) => fail(e),
            }
        }
        Command::Show { data_dir, config } => {
            let config = match load_config(config.as_deref(), Some(&data_dir)) {
                Ok(c) => c,
                Err(code) => return code,
            };
            let path = config.ca_cert_path();
            match TrustAnchor::load(&path) {
                Ok(anchor) => {
                    let (from, to) = crate::ca::validity(&anchor.certificate().tbs_certificate.validity);
                    println!("{}", path.display());
                    println!("  subject: {}", anchor.subject());
                    println!("  valid:   {from} to {to}");
                    EXIT_OK
                }
                Err(e) => fail(e),
            }
        }
    }
}
