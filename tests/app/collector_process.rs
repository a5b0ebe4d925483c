//! A real `resetdesk-collector serve` for the app's end-to-end tests: the workspace's
//! binary beside the app's, its own demo TLS CA, checkpoint key and database in a
//! temporary directory, the desk's organisation CA, and a desk key for the desk.

use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

pub struct CollectorProcess {
    pub dir: tempfile::TempDir,
    child: Child,
    pub url: String,
    pub vkey: String,
}

/// The collector binary the workspace build put beside the app's.
fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_resetdesk-app")).with_file_name("resetdesk-collector")
}

fn run(args: &[&str], config: &Path) -> String {
    let out = Command::new(binary()).args(args).arg("--config").arg(config).output().expect("run resetdesk-collector");
    assert!(out.status.success(), "resetdesk-collector {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

impl CollectorProcess {
    /// Start one for the desk whose organisation CA is `org_ca` (PEM file), with
    /// `extra` appended to its config (e.g. `[anomaly.heartbeat]`). `None` (skipped)
    /// outside CI when the binary was not built.
    pub fn start(org_ca: &Path, extra: &str) -> Option<Self> {
        if !binary().exists() {
            assert!(!super::in_ci(), "{} is missing: build the workspace first", binary().display());
            eprintln!("SKIPPED: no {} (cargo build --workspace)", binary().display());
            return None;
        }
        let dir = tempfile::tempdir().expect("a collector directory");
        let ok = Command::new(binary()).arg("demo-tls").arg(dir.path().join("tls")).output().expect("demo-tls");
        assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
        std::fs::copy(org_ca, dir.path().join("org-ca.pem")).expect("copy the organisation CA");
        let config = dir.path().join("collector.toml");
        std::fs::write(
            &config,
            format!(
                "listen = \"127.0.0.1:0\"\norigin = \"collector.e2e/resetdesk\"\ndatabase = \"collector.db\"\n\
                 signing_key_file = \"log.key\"\norg_ca_file = \"org-ca.pem\"\ntls_cert_file = \"tls/server.pem\"\n\
                 tls_key_file = \"tls/server.key\"\n{extra}"
            ),
        )
        .expect("write the collector config");
        run(&["init"], &config);
        let key_file = dir.path().join("desk.key");
        let key_arg = key_file.to_str().expect("a UTF-8 path");
        run(&["desk-key", "add", "desk-e2e", "--out", key_arg], &config);
        let mut child = Command::new(binary())
            .args(["serve", "--config"])
            .arg(&config)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start resetdesk-collector serve");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("its standard output");
        std::io::BufReader::new(stdout).read_line(&mut line).expect("its first line");
        // "listening on https://127.0.0.1:PORT verifier-key VKEY"
        let words: Vec<&str> = line.split_whitespace().collect();
        assert!(words.len() == 5 && words[0] == "listening", "the collector did not start: {line:?}");
        let port = words[2].rsplit(':').next().expect("a port");
        Some(Self { url: format!("https://localhost:{port}"), vkey: words[4].to_owned(), child, dir })
    }

    /// The desk's `[collector]` section for this collector.
    pub fn desk_config(&self) -> String {
        let path = |p: &str| super::toml_string(self.dir.path().join(p).to_str().expect("a UTF-8 path"));
        format!(
            "\n[collector]\nurl = {}\nverifier_key = {}\nca_file = {}\ndesk_key_file = {}\n",
            super::toml_string(&self.url),
            super::toml_string(&self.vkey),
            path("tls/ca.pem"),
            path("desk.key"),
        )
    }
}

impl Drop for CollectorProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
