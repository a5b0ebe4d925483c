//! `resetdesk sync`: the upstream sync driver from a script or a timer. One pass sends
//! every record still without a receipt to `[collector]` (and witnesses its current
//! checkpoint); `--watch` keeps going, printing the state whenever it changes.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use super::{load_config, EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK};
use crate::upstream::{SyncDriver, SyncError};

#[derive(Debug, clap::Args)]
pub struct SyncArgs {
    /// The desk's data directory (audit.sqlite, tokens.sqlite, resetdesk.toml).
    #[arg(long, value_name = "DIR")]
    pub data_dir: PathBuf,
    /// The configuration file with `[collector]`, if not `<data-dir>/resetdesk.toml`.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Keep syncing as records are written (until interrupted).
    #[arg(long)]
    pub watch: bool,
    /// How often `--watch` looks for new records, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 2)]
    pub poll: u64,
    /// Print the state as JSON instead of a sentence.
    #[arg(long)]
    pub json: bool,
}

/// Never set: `--watch` runs until the process is interrupted.
static STOP: AtomicBool = AtomicBool::new(false);

pub fn run(a: SyncArgs) -> u8 {
    let config = match load_config(a.config.as_deref(), Some(&a.data_dir)) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let mut driver = match SyncDriver::from_config(&config) {
        Ok(Some(d)) => d,
        Ok(None) => {
            eprintln!("error: no audit collector configured: set [collector] url (and verifier_key, ca_file)");
            return EXIT_BAD_INPUT;
        }
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_BAD_INPUT;
        }
    };
    let show = |r: &crate::upstream::SyncReport| {
        if a.json {
            println!("{}", serde_json::to_string(r).unwrap_or_default());
        } else {
            println!("{}", r.describe());
        }
    };
    if a.watch {
        let handle = driver.handle();
        let poll = Duration::from_secs(a.poll.max(1));
        let worker = std::thread::spawn(move || driver.run(poll, Duration::from_secs(60), &STOP));
        let mut shown = None;
        while !worker.is_finished() {
            let report = handle.report();
            if shown.as_ref() != Some(&report) {
                show(&report);
                shown = Some(report);
            }
            std::thread::sleep(poll);
        }
        return EXIT_FAILED;
    }
    match driver.sync_once() {
        Ok(report) => {
            show(&report);
            if report.status.queued == 0 {
                EXIT_OK
            } else {
                EXIT_FAILED
            }
        }
        Err(e) => {
            show(&driver.report());
            eprintln!("error: {e}");
            match e {
                SyncError::Setup(_) => EXIT_BAD_INPUT,
                _ => EXIT_FAILED,
            }
        }
    }
}
