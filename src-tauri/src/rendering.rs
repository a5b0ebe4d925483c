//! How the windows render: in software, with WebKit's accelerated compositing off.
//!
//! The desk's screens are forms and lists: nothing they show needs the GPU. Rendering
//! them in software keeps the web process small (on this machine's Xvfb the lock
//! screen's web process drops from about 180 MiB to about 100 MiB; scripts/bench-app.sh
//! measures it), behaves the same on desk PCs, thin clients and VMs whatever their GL
//! drivers, and keeps GL out of the process that renders the page.

/// Turn accelerated compositing off for `window`'s web view. Where that cannot be done
/// (another platform, or the web view is not reachable), the window renders as WebKit
/// decides: a cost in memory, never a failure.
pub fn software_only(window: &tauri::WebviewWindow) {
    #[cfg(target_os = "linux")]
    {
        let label = window.label().to_owned();
        let applied = window.with_webview(|webview| {
            use webkit2gtk::{HardwareAccelerationPolicy, SettingsExt, WebViewExt};
            if let Some(settings) = webview.inner().settings() {
                settings.set_hardware_acceleration_policy(HardwareAccelerationPolicy::Never);
            }
        });
        if let Err(e) = applied {
            tracing::warn!(window = label, "could not turn accelerated compositing off: {e}");
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = window;
}
