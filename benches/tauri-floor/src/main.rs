//! The smallest Tauri v2 window (one static page, no commands): the floor the desk
//! app's memory is measured against in `scripts/bench-app.sh`, built in the same run
//! with the same Tauri, WebKitGTK and compiler.

fn main() {
    if let Err(e) = tauri::Builder::default().run(tauri::generate_context!()) {
        eprintln!("tauri-floor: {e}");
        std::process::exit(1);
    }
}
