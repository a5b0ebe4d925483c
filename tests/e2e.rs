//! End-to-end test of the desktop app: the real window, driven over WebDriver.
//!
//! `tauri-driver` (cargo install tauri-driver) proxies WebDriver to `WebKitWebDriver`
//! (Debian: webkit2gtk-driver), which starts the `resetdesk-app` binary built for this
//! test. It needs an X display; run it under Xvfb:
//!
//! ```sh
//! xvfb-run -a cargo test -p resetdesk-app --test e2e
//! ```
//!
//! Readers: with `RESETDESK_E2E_EXPECT_READERS=1` the test requires pcscd with the
//! vpcd driver (reader "Virtual PCD 00 00", see `scripts/pcscd.sh start`); with `=0`
//! it requires pcscd to be stopped and checks the "service not running" state. Unset,
//! it asks the core what it sees and checks the window shows the same.
//!
//! Without a display or without the drivers the test is skipped with a message, except
//! when `CI=true`: there, a missing prerequisite is a failure, never a silent pass.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use resetdesk::token::readers::{reader_status, ReaderStatus};
use serde_json::{json, Value};

const APP: &str = env!("CARGO_BIN_EXE_resetdesk-app");
const VIRTUAL_READER: &str = "Virtual PCD 00 00";
/// Generous: the first WebKit start on a cold 2-core machine can take several seconds.
const UI_TIMEOUT: Duration = Duration::from_secs(20);

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Skip (locally) or fail (in CI) when a prerequisite is missing.
/// Returns `true` when the test should stop here.
fn missing(what: &str) -> bool {
    if in_ci() {
        panic!("e2e prerequisite missing in CI: {what}");
    }
    eprintln!("SKIPPED e2e: {what}");
    true
}

fn find_tauri_driver() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("TAURI_DRIVER").map(PathBuf::from) {
        return p.is_file().then_some(p);
    }
    let in_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths).map(|d| d.join("tauri-driver")).find(|p| p.is_file())
    });
    in_path.or_else(|| {
        let p = PathBuf::from(std::env::var_os("HOME")?).join(".cargo/bin/tauri-driver");
        p.is_file().then_some(p)
    })
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free local TCP port")
}

/// `tauri-driver` and the `WebKitWebDriver` it starts, in their own process group so the
/// whole group (and the app) is stopped on drop, even when an assertion fails.
struct Driver {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Driver {
    fn start(tauri_driver: &Path) -> Driver {
        use std::os::unix::process::CommandExt;
        let port = free_port();
        let native_port = free_port();
        let log = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("tauri-driver-{port}.log"));
        let log_file = std::fs::File::create(&log).expect("create the driver log");
        let err_file = log_file.try_clone().expect("clone the driver log handle");
        let child = Command::new(tauri_driver)
            .args(["--port", &port.to_string(), "--native-port", &native_port.to_string()])
            .stdin(Stdio::null())
            .stdout(log_file)
            .stderr(err_file)
            .process_group(0)
            .spawn()
            .expect("start tauri-driver");
        let driver = Driver { child, port, log };
        driver.wait_for_port();
        driver
    }

    fn wait_for_port(&self) {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            assert!(Instant::now() < deadline, "tauri-driver did not listen on {addr}; log:\n{}", self.log_text());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn signal_group(&self, signal: &str) {
        let _ = Command::new("kill")
            .args([signal, "--", &format!("-{}", self.child.id())])
            .stderr(Stdio::null())
            .status();
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        self.signal_group("-TERM");
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // Whatever is left in the group (WebKitWebDriver, the app) goes now.
        self.signal_group("-KILL");
        let _ = self.child.wait();
    }
}

async fn connect(driver: &Driver) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert("browserName".into(), json!("wry"));
    caps.insert("tauri:options".into(), json!({ "application": APP }));
    ClientBuilder::native()
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{}", driver.port))
        .await
        .unwrap_or_else(|e| panic!("WebDriver session did not open: {e}; driver log:\n{}", driver.log_text()))
}

/// Poll a JavaScript expression in the page until it is truthy; return its value.
async fn wait_js(client: &Client, what: &str, expr: &str) -> Value {
    let script = format!("return ({expr});");
    let deadline = Instant::now() + UI_TIMEOUT;
    loop {
        let last = client.execute(&script, vec![]).await;
        match &last {
            Ok(v) if !v.is_null() && v != &json!(false) && v != &json!("") => return v.clone(),
            _ if Instant::now() >= deadline => panic!("timed out waiting for {what}; last: {last:?}"),
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// The state the window should show, from the test's explicit setting or from the core.
fn expected_state() -> (String, Option<ReaderStatus>) {
    match std::env::var("RESETDESK_E2E_EXPECT_READERS").ok().as_deref() {
        Some("1") => ("readers".into(), None),
        Some("0") => ("no-service".into(), None),
        _ => {
            let status = reader_status();
            let state = match &status {
                ReaderStatus::NoService => "no-service",
                ReaderStatus::NoReaders => "no-readers",
                ReaderStatus::Readers { .. } => "readers",
            };
            (state.into(), Some(status))
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_screen_shows_the_readers_the_core_sees() {
    if std::env::var_os("DISPLAY").is_none_or(|d| d.is_empty()) {
        if missing("no DISPLAY (run under xvfb-run -a)") {
            return;
        }
    }
    let Some(tauri_driver) = find_tauri_driver() else {
        if missing("tauri-driver not found (cargo install tauri-driver --locked)") {
            return;
        }
        unreachable!()
    };
    if !Path::new("/usr/bin/WebKitWebDriver").is_file() && missing("WebKitWebDriver not found (apt install webkit2gtk-driver)") {
        return;
    }

    let driver = Driver::start(&tauri_driver);
    let client = connect(&driver).await;

    // The lock screen is there, with its heading.
    let h1 = client
        .wait()
        .at_most(UI_TIMEOUT)
        .for_element(Locator::Css("#view-lock h1"))
        .await
        .expect("lock screen heading");
    assert_eq!(h1.text().await.expect("heading text"), "Insert your YubiKey");

    // The reader panel leaves "loading" and shows what the core reports.
    let (want, core_view) = expected_state();
    let shown = wait_js(
        &client,
        "the reader status to render",
        "(() => { const s = document.getElementById('reader-status').dataset.state; return s !== 'loading' && s; })()",
    )
    .await;
    assert_eq!(shown, json!(want), "reader state shown in the window");

    let panel = client.find(Locator::Id("reader-status")).await.expect("reader panel");
    let panel_text = panel.text().await.expect("reader panel text");
    match want.as_str() {
        "no-service" => assert!(panel_text.contains("Smart-card service not running"), "{panel_text}"),
        "no-readers" => assert!(panel_text.contains("No reader connected"), "{panel_text}"),
        _ => {
            let names: Vec<String> = serde_json::from_value(
                client
                    .execute(
                        "return [...document.querySelectorAll('#reader-list .reader-name')].map(e => e.textContent);",
                        vec![],
                    )
                    .await
                    .expect("reader names"),
            )
            .expect("a list of names");
            match &core_view {
                None => assert!(names.iter().any(|n| n == VIRTUAL_READER), "{VIRTUAL_READER} missing from {names:?}"),
                Some(ReaderStatus::Readers { readers }) => {
                    let core_names: Vec<&str> = readers.iter().map(|r| r.name.as_str()).collect();
                    assert_eq!(names, core_names, "the window lists the readers the core sees");
                }
                Some(other) => unreachable!("expected readers, core said {other:?}"),
            }
        }
    }

    // The loud banner is shown exactly when a virtual card is inserted.
    let banner_visible = client
        .execute("return !document.getElementById('virtual-banner').hidden;", vec![])
        .await
        .expect("banner visibility");
    let virtual_card = client
        .execute(
            "return document.querySelector('#reader-list .reader[data-virtual=\"true\"][data-card=\"present\"]') !== null;",
            vec![],
        )
        .await
        .expect("virtual card in the list");
    assert_eq!(banner_visible, virtual_card, "virtual-token banner iff a virtual card is inserted");

    // Only the app's own commands are granted: a built-in API is refused by the ACL.
    let refused = client
        .execute_async(
            "const done = arguments[arguments.length - 1];
             window.__TAURI__.core.invoke('plugin:app|version')
               .then(() => done('allowed'), (e) => done('refused: ' + e));",
            vec![],
        )
        .await
        .expect("run the refused call");
    assert!(
        refused.as_str().is_some_and(|s| s.starts_with("refused")),
        "built-in app API must not be reachable: {refused}"
    );

    client.close().await.expect("close the session");
}
