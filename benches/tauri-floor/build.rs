//! Tauri build step for the floor window (its configuration is `tauri.conf.json` here).
fn main() {
    tauri_build::build();
}
