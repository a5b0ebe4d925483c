//! ResetDesk desktop shell: a thin Tauri v2 layer over the `resetdesk` core.
//!
//! Every command is a few lines that call the core and return what it says; the web
//! view (`ui/`) only renders that state. Decisions live in the core.

mod commands;
mod customer;
mod desk;
mod keys;
mod mail;
mod rendering;
mod reset;
mod startup;
mod upstream;
mod watcher;

use std::process::ExitCode;

/// When the process started, for the cold-start measurement (`scripts/bench-app.sh`).
pub static STARTED: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();

fn main() -> ExitCode {
    STARTED.get_or_init(std::time::Instant::now);
    // Logs go to stderr (RESETDESK_LOG or RUST_LOG to tune). They never contain a PIN:
    // PINs only exist as `Secret`s (`Debug` = `***`), and the core's filter keeps the
    // `yubikey` crate's APDU trace (which carries PIN VERIFY data) off whatever is asked.
    resetdesk::logging::init_stderr("info");

    let args = match startup::Args::parse_from_env() {
        Ok(a) => a,
        Err(e) => {
            // clap prints usage or the error itself (and --help/--version exit 0).
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let state = startup::AppState::load(args.config_path());

    let result = tauri::Builder::default()
        .manage(state)
        .manage(customer::Subscription::default())
        .invoke_handler(tauri::generate_handler![
            commands::app_info,
            commands::reader_status,
            commands::session_state,
            commands::login,
            commands::lock_session,
            commands::activity,
            reset::search_accounts,
            reset::start_reset,
            reset::reset_action,
            reset::reset_screen,
            reset::co_sign,
            reset::show_to_customer,
            reset::next_customer,
            reset::park_reset,
            reset::resume_reset,
            reset::retry_outcome,
            reset::audit_page,
            reset::audit_export,
            reset::admin_view,
            reset::alerts_view,
            reset::reconcile_now,
            upstream::sync_status,
            keys::enrol_key,
            keys::revoke_key,
            customer::customer_take,
            customer::customer_subscribe,
        ])
        .setup(|app| {
            if let Some(main) = tauri::Manager::get_webview_window(app, "main") {
                rendering::software_only(&main);
            }
            if let Ok(config) = &tauri::Manager::state::<startup::AppState>(app).config {
                mail::spawn_outbox_sender(config);
                upstream::spawn_sync_driver(config);
            }
            watcher::spawn_reader_watcher(app.handle().clone());
            watcher::spawn_watcher_guard(app.handle().clone());
            Ok(())
        })
        .run(tauri::generate_context!("../tauri.conf.json"));

    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("the desktop shell stopped with an error: {e}");
            eprintln!("resetdesk-app: {e}");
            ExitCode::FAILURE
        }
    }
}
