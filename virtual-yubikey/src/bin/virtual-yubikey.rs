//! `virtual-yubikey --port 35963 [--serial N] [--firmware 5.7|5.4]`: insert a virtual
//! PIV card (factory defaults, RAM only) into a vpcd reader for the demo, keep it there
//! until SIGINT or SIGTERM, then remove it cleanly. Needs pcscd with vpcd
//! (`scripts/pcscd.sh start`).

use std::io::Write as _;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use virtual_yubikey::{CardOptions, Firmware, VirtualCard, READER_0_PORT};

/// Insert a virtual YubiKey-like PIV card into a vpcd reader until interrupted.
#[derive(Debug, Parser)]
#[command(name = "virtual-yubikey", version)]
struct Args {
    /// vpcd port of the reader: 35963 ("Virtual PCD 00 00") or 35964 ("Virtual PCD 00 01").
    #[arg(long, default_value_t = READER_0_PORT)]
    port: u16,
    /// Serial number the card reports (default: random 8 digits).
    #[arg(long)]
    serial: Option<u32>,
    /// YubiKey firmware to act as: 5.7 (factory AES-192 management key, as sold since
    /// 2024) or 5.4 (factory 3DES management key).
    #[arg(long, default_value = "5.7")]
    firmware: Firmware,
}

/// How often the main thread looks at the signal flag while waiting on the card.
const SIGNAL_CHECK: Duration = Duration::from_millis(200);

fn main() -> ExitCode {
    let args = Args::parse();

    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        if let Err(e) = signal_hook::flag::register(signal, Arc::clone(&stop)) {
            eprintln!("virtual-yubikey: cannot install the signal handler ({e}); not starting");
            return ExitCode::FAILURE;
        }
    }

    let inserted = VirtualCard::insert_with(args.port, CardOptions { serial: args.serial, firmware: args.firmware });
    let mut card = match inserted {
        Ok(card) => card,
        Err(e) => {
            eprintln!("virtual-yubikey: {e}");
            return ExitCode::FAILURE;
        }
    };
    say(&format!(
        "virtual PIV card inserted in {} (serial {}, firmware {})",
        card.reader_name(),
        card.serial(),
        card.firmware()
    ));

    while !stop.load(Ordering::SeqCst) {
        if let Some(reason) = card.wait_stopped(SIGNAL_CHECK) {
            eprintln!("virtual-yubikey: the card stopped on its own: {reason}");
            return ExitCode::FAILURE;
        }
    }
    let reader = card.reader_name();
    match card.remove() {
        Ok(()) => {
            say(&format!("virtual PIV card removed from {reader}"));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("virtual-yubikey: removing the card: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Print a status line for whoever runs the demo. A closed stdout (the reader went away)
/// is no reason to stop serving the card, so write errors are ignored.
fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}
