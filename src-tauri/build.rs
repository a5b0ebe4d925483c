//! Tauri build step. The Tauri configuration lives at the repository root
//! (`../tauri.conf.json`), so paths inside it (`ui/`, `icons/`) resolve from there.
//!
//! `AppManifest::commands` makes every app command subject to the capability ACL:
//! a command not granted in `capabilities/` cannot be invoked from the web view.

const COMMANDS: &[&str] = &[
    "app_info",
    "reader_status",
    "session_state",
    "login",
    "lock_session",
    "activity",
    "search_accounts",
    "start_reset",
    "reset_action",
    "reset_screen",
    "co_sign",
    "show_to_customer",
    "next_customer",
    "park_reset",
    "resume_reset",
    "retry_outcome",
    "audit_page",
    "audit_export",
    "admin_view",
    "alerts_view",
    "reconcile_now",
    "sync_status",
    "enrol_key",
    "revoke_key",
    "customer_take",
    "customer_subscribe",
];

fn main() {
    let attributes = tauri_build::Attributes::new()
        .config_path("../tauri.conf.json")
        .app_manifest(tauri_build::AppManifest::new().commands(COMMANDS));
    if let Err(e) = tauri_build::try_build(attributes) {
        // A build script reports failure by exiting non-zero; cargo shows this line.
        eprintln!("tauri-build failed: {e:#}");
        std::process::exit(1);
    }
}
