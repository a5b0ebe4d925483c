//! The `resetdesk-collector` process harness shared by the collector's process tests:
//! a collector in its own directory (config, SQLite database, checkpoint key, demo TLS)
//! on a loopback port, and desk logs written by the core's `AuditLog` with software
//! signers certified by a test organisation CA. Needs the `audit_support` module
//! declared at the test crate's root.
#![allow(dead_code)]

use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use crate::audit_support::{self, reset_facts, Pki, SoftSigner};
use resetdesk::audit::record::entry_hash;
use resetdesk::audit::store::Store;
use resetdesk::audit::verify::StoredRecord;
use resetdesk::audit::{verify_signed_checkpoint, AuditLog, CollectorKeys, DirectoryOutcome, Event, Hash32};
use resetdesk_collector::wire::{encode_batch, AddRecordsResponse, ErrorBody};

pub const ORIGIN: &str = "collector.test/resetdesk";

/// A collector process: its directory (config, database, keys, TLS) and its port.
pub struct Collector {
    pub dir: tempfile::TempDir,
    child: Option<Child>,
    pub port: u16,
    pub vkey: String,
    pub client: reqwest::blocking::Client,
}

fn write_config(dir: &Path, org_ca_pem: &str, max_body: usize, listen: &str) -> PathBuf {
    std::fs::write(dir.join("org-ca.pem"), org_ca_pem).unwrap();
    let config = dir.join("collector.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"{listen}\"\norigin = \"{ORIGIN}\"\ndatabase = \"collector.db\"\nsigning_key_file = \"log.key\"\n\
             org_ca_file = \"org-ca.pem\"\ntls_cert_file = \"tls/server.pem\"\ntls_key_file = \"tls/server.key\"\n\
             max_body_bytes = {max_body}\nmax_batch = 500\n"
        ),
    )
    .unwrap();
    config
}

pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_resetdesk-collector"))
}

impl Collector {
    pub fn start(pki: &Pki) -> Self {
        Self::start_with(&pki.ca_pem(), 4 * 1024 * 1024)
    }

    pub fn start_with(org_ca_pem: &str, max_body: usize) -> Self {
        let mut c = Self::prepare(org_ca_pem, max_body, "127.0.0.1:0", None);
        let printed = c.vkey.clone();
        c.restart();
        assert_eq!(c.vkey, printed);
        c
    }

    /// A collector directory ready to serve (TLS files, checkpoint key: made by `init`,
    /// or copied from `same_key_as`), not started: `restart` starts it.
    pub fn prepare(org_ca_pem: &str, max_body: usize, listen: &str, same_key_as: Option<&Collector>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = write_config(dir.path(), org_ca_pem, max_body, listen);
        assert!(bin().arg("demo-tls").arg(dir.path().join("tls")).output().unwrap().status.success());
        let vkey = match same_key_as {
            Some(other) => {
                for f in ["log.key", "log.vkey"] {
                    std::fs::copy(other.dir.path().join(f), dir.path().join(f)).unwrap();
                }
                other.vkey.clone()
            }
            None => {
                let init = bin().args(["init", "--config"]).arg(&config).output().unwrap();
                assert!(init.status.success(), "{}", String::from_utf8_lossy(&init.stderr));
                let printed = String::from_utf8(init.stdout).unwrap().trim().to_owned();
                let filed = std::fs::read_to_string(dir.path().join("log.vkey")).unwrap();
                assert_eq!(printed, filed.trim());
                printed
            }
        };
        let client = client(&dir.path().join("tls/ca.pem"));
        Collector { dir, child: None, port: 0, vkey, client }
    }

    /// The demo CA that issued its TLS certificate (what a desk pins).
    pub fn ca_pem(&self) -> Vec<u8> {
        std::fs::read(self.dir.path().join("tls/ca.pem")).unwrap()
    }

    /// Its base URL.
    pub fn base_url(&self) -> String {
        format!("https://localhost:{}", self.port)
    }

    /// (Re)start the process on the same directory and wait until it listens.
    pub fn restart(&mut self) {
        let mut child = bin()
            .args(["serve", "--config"])
            .arg(self.dir.path().join("collector.toml"))
            .stdout(Stdio::piped())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(self.dir.path().join("collector.log"))
                    .unwrap(),
            )
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        // "listening on https://127.0.0.1:PORT verifier-key VKEY"
        let mut words = line.split_whitespace();
        let addr = words.nth(2).unwrap_or_else(|| panic!("collector did not start: {line:?}"));
        self.port = addr.rsplit(':').next().unwrap().parse().unwrap();
        self.vkey = words.nth(1).unwrap().to_owned();
        self.child = Some(child);
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap(); // SIGKILL
            c.wait().unwrap();
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.port)
    }

    pub fn post(&self, body: Vec<u8>) -> (u16, String) {
        let r = self.client.post(self.url("/add-records")).body(body).send().unwrap();
        (r.status().as_u16(), r.text().unwrap())
    }

    pub fn accept(&self, log: &DeskLog, range: std::ops::Range<usize>) -> AddRecordsResponse {
        let (status, body) = self.post(log.batch(range));
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }

    pub fn refuse(&self, body: Vec<u8>) -> (u16, ErrorBody) {
        let (status, text) = self.post(body);
        assert_ne!(status, 200, "accepted: {text}");
        (status, serde_json::from_str(&text).unwrap_or_else(|_| panic!("not a JSON error: {text}")))
    }

    pub fn get(&self, path: &str) -> (u16, Vec<u8>) {
        let r = self.client.get(self.url(path)).send().unwrap();
        (r.status().as_u16(), r.bytes().unwrap().to_vec())
    }

    pub fn trusted(&self) -> CollectorKeys {
        let mut k = CollectorKeys::default();
        k.add_verifier_key(&self.vkey).unwrap();
        k
    }

    pub fn tree_size(&self) -> u64 {
        let (status, note) = self.get("/checkpoint");
        assert_eq!(status, 200);
        verify_signed_checkpoint(std::str::from_utf8(&note).unwrap(), &self.trusted()).unwrap().tree_size
    }

    pub fn db(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(self.dir.path().join("collector.db")).unwrap()
    }

    pub fn alerts(&self) -> Vec<(String, String)> {
        let db = self.db();
        let mut s = db.prepare("SELECT kind, reason FROM alerts ORDER BY id").unwrap();
        s.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().map(Result::unwrap).collect()
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn client(ca: &Path) -> reqwest::blocking::Client {
    use rustls::pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    reqwest::blocking::Client::builder()
        .tls_backend_preconfigured(tls)
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// A desk's audit log on disk, its records and its signers' certificates.
pub struct DeskLog {
    pub _dir: tempfile::TempDir,
    pub db: PathBuf,
    pub certs: Vec<Vec<u8>>,
}

impl DeskLog {
    /// `pairs` resets by alice (intent + outcome each), after a login heartbeat.
    pub fn write(pki: &Pki, pairs: usize) -> Self {
        Self::write_by(pki, SoftSigner::from_seed("alice", 1), pairs)
    }

    pub fn write_by(pki: &Pki, mut alice: SoftSigner, pairs: usize) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("audit.sqlite");
        let now = time::OffsetDateTime::now_utc;
        let mut log = AuditLog::open(&db).unwrap();
        let session = serde_json::json!({"agent": "alice", "workstation": "desk-3"});
        log.heartbeat(resetdesk::audit::EventType::Login, &session, &mut alice, now()).unwrap();
        for k in 0..pairs {
            let facts = reset_facts("alice", &format!("user{k}"));
            let i = log.append(&Event::reset_intent(&facts).unwrap(), &mut alice, now()).unwrap();
            let outcome = Event::reset_outcome(i.intent_ref(), &DirectoryOutcome::Done, &facts).unwrap();
            log.append(&outcome, &mut alice, now()).unwrap();
        }
        drop(log);
        DeskLog { _dir: dir, db, certs: vec![pki.issue(&alice)] }
    }

    /// The log written by `audit_support::desk()` (heartbeats, a co-signed intent).
    pub fn cosigned() -> (Pki, Self) {
        let d = audit_support::desk();
        let certs = vec![d.pki.issue(&d.alice), d.pki.issue(&d.bob)];
        let db = d.db.clone();
        let pki = Pki::new(1);
        (pki, DeskLog { _dir: d.dir, db, certs })
    }

    pub fn records(&self) -> Vec<StoredRecord> {
        let store = Store::open_read_only(&self.db).unwrap();
        let mut out = Vec::new();
        store
            .for_each(|s| {
                out.push(s);
                Ok::<_, ()>(())
            })
            .unwrap()
            .unwrap();
        out
    }

    pub fn log_id(&self) -> Hash32 {
        entry_hash(&self.records()[0].record)
    }

    pub fn batch(&self, range: std::ops::Range<usize>) -> Vec<u8> {
        encode_batch(&self.log_id(), &self.certs, &self.records()[range])
    }
}
