//! The `resetdesk-collector` process harness shared by the collector's process tests:
//! a collector in its own directory (config, database — SQLite or PostgreSQL —,
//! checkpoint key, demo TLS) on a loopback port, a witness process, and desk logs
//! written by the core's `AuditLog` with software signers certified by a test
//! organisation CA. Needs the `audit_support` module declared at the test crate's root.
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
    pub child: Option<Child>,
    pub port: u16,
    pub vkey: String,
    pub client: reqwest::blocking::Client,
    /// The config's `database`: a file in `dir`, or a PostgreSQL URL.
    pub database: String,
    /// Arguments added to `serve`.
    pub serve_args: Vec<String>,
}

/// One row of the `leaves` table (either backend).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafRow {
    pub leaf_index: u64,
    pub log_id: Hash32,
    pub seq: u64,
    pub entry_hash: Hash32,
}

pub fn write_config(dir: &Path, org_ca_pem: &str, max_body: usize, database: &str, listen: &str) -> PathBuf {
    std::fs::write(dir.join("org-ca.pem"), org_ca_pem).unwrap();
    let config = dir.join("collector.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"{listen}\"\norigin = \"{ORIGIN}\"\ndatabase = \"{database}\"\nsigning_key_file = \"log.key\"\n\
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
        Self::start_on(org_ca_pem, max_body, "collector.db")
    }

    /// Stop, add `[[witness]]` for `w` to the config, and start again.
    pub fn add_witness(&mut self, w: &WitnessProcess) {
        self.kill();
        let config = self.dir.path().join("collector.toml");
        let mut text = std::fs::read_to_string(&config).unwrap();
        text.push_str(&format!(
            "\n[[witness]]\nurl = \"https://localhost:{}\"\nverifier_key = \"{}\"\nca_file = \"{}\"\n",
            w.port,
            w.vkey,
            w.dir.path().join("tls/ca.pem").display()
        ));
        std::fs::write(&config, text).unwrap();
        self.restart();
    }

    /// A collector on `database` (a file name in its directory, or a PostgreSQL URL).
    pub fn start_on(org_ca_pem: &str, max_body: usize, database: &str) -> Self {
        let mut c = Self::prepare_on(org_ca_pem, max_body, "127.0.0.1:0", database, None);
        let printed = c.vkey.clone();
        c.restart();
        assert_eq!(c.vkey, printed);
        c
    }

    /// A collector directory on SQLite ready to serve on `listen`, not started
    /// (`restart` starts it); its checkpoint key made by `init`, or copied from
    /// `same_key_as` (another collector with the same key).
    pub fn prepare(org_ca_pem: &str, max_body: usize, listen: &str, same_key_as: Option<&Collector>) -> Self {
        Self::prepare_on(org_ca_pem, max_body, listen, "collector.db", same_key_as)
    }

    fn prepare_on(
        org_ca_pem: &str,
        max_body: usize,
        listen: &str,
        database: &str,
        same_key_as: Option<&Collector>,
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = write_config(dir.path(), org_ca_pem, max_body, database, listen);
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
        let database = database.to_owned();
        Collector { dir, child: None, port: 0, vkey, client, database, serve_args: vec![] }
    }

    /// The demo CA that issued its TLS certificate (what a desk pins).
    pub fn ca_pem(&self) -> Vec<u8> {
        std::fs::read(self.dir.path().join("tls/ca.pem")).unwrap()
    }

    /// Its base URL.
    pub fn base_url(&self) -> String {
        format!("https://localhost:{}", self.port)
    }

    /// Another instance of this collector (same key, TLS and PostgreSQL database), in
    /// a directory of its own, as behind a load balancer. Its config names a SQLite
    /// file; `serve --database URL` points it at the shared database.
    pub fn sibling(&self) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("tls")).unwrap();
        for f in ["org-ca.pem", "log.key", "tls/server.pem", "tls/server.key", "tls/ca.pem"] {
            std::fs::copy(self.dir.path().join(f), dir.path().join(f)).unwrap();
        }
        let org_ca = std::fs::read_to_string(dir.path().join("org-ca.pem")).unwrap();
        write_config(dir.path(), &org_ca, 4 * 1024 * 1024, "own.db", "127.0.0.1:0");
        let client = client(&dir.path().join("tls/ca.pem"));
        let database = self.database.clone();
        let serve_args = vec!["--database".to_owned(), database.clone()];
        let mut c = Collector { dir, child: None, port: 0, vkey: String::new(), client, database, serve_args };
        c.restart();
        assert_eq!(c.vkey, self.vkey);
        c
    }

    pub fn on_postgres(&self) -> bool {
        resetdesk_collector::store::postgres::is_postgres_url(&self.database)
    }

    /// The `leaves` table in index order.
    pub fn leaf_rows(&self) -> Vec<LeafRow> {
        let row = |leaf_index: i64, log_id: Vec<u8>, seq: i64, entry_hash: Vec<u8>| LeafRow {
            leaf_index: leaf_index as u64,
            log_id: log_id.try_into().unwrap(),
            seq: seq as u64,
            entry_hash: entry_hash.try_into().unwrap(),
        };
        const SQL: &str = "SELECT leaf_index, log_id, seq, entry_hash FROM leaves ORDER BY leaf_index";
        if self.on_postgres() {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            return rt.block_on(async {
                let (c, conn) = tokio_postgres::connect(&self.database, tokio_postgres::NoTls).await.unwrap();
                tokio::spawn(conn);
                let rows = c.query(SQL, &[]).await.unwrap();
                rows.iter().map(|r| row(r.get(0), r.get(1), r.get(2), r.get(3))).collect()
            });
        }
        let db = self.db();
        let mut s = db.prepare(SQL).unwrap();
        s.query_map([], |r| Ok(row(r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))).unwrap().map(Result::unwrap).collect()
    }

    /// (Re)start the process on the same directory and wait until it listens.
    pub fn restart(&mut self) {
        let mut child = bin()
            .args(["serve", "--config"])
            .arg(self.dir.path().join("collector.toml"))
            .args(&self.serve_args)
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

    /// The status of `request` with an oversized body. The collector answers 413 as
    /// soon as it reads the length and then closes the connection, so the client may
    /// still be writing the body and see a broken pipe instead of the answer: a
    /// transport error is tried again (a status must be seen, and every try's is it).
    pub fn oversized_status(
        &self,
        request: impl Fn(&reqwest::blocking::Client) -> reqwest::blocking::RequestBuilder,
    ) -> u16 {
        let mut last = None;
        for _ in 0..5 {
            match request(&self.client).send() {
                Ok(r) => return r.status().as_u16(),
                Err(e) => last = Some(e),
            }
        }
        panic!("no answer to an oversized body in five tries: {last:?}")
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

    /// A desk key for desk `name` from `desk-key add --out` (the running process sees
    /// it at once): the key file's path.
    pub fn add_desk_key(&self, name: &str) -> PathBuf {
        let out = self.dir.path().join(format!("{name}.key"));
        let config = self.dir.path().join("collector.toml");
        let add =
            bin().args(["desk-key", "add", "--config"]).arg(&config).arg(name).arg("--out").arg(&out).output().unwrap();
        assert!(add.status.success(), "{}", String::from_utf8_lossy(&add.stderr));
        out
    }

    /// The desk-side client of this collector, presenting the key in `desk_key_file`.
    pub fn desk_client(&self, desk_key_file: Option<PathBuf>) -> resetdesk::upstream::CollectorClient {
        let config = resetdesk::config::CollectorConfig {
            url: self.base_url(),
            verifier_key: Some(self.vkey.clone()),
            ca_file: Some(self.dir.path().join("tls/ca.pem")),
            desk_key_file,
            ..Default::default()
        };
        resetdesk::upstream::CollectorClient::from_config(&config).unwrap()
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
        if self.on_postgres() {
            use resetdesk_collector::store::LogStore as _;
            let store = resetdesk_collector::store::PgStore::connect(&self.database).unwrap();
            return store.alerts().unwrap().into_iter().map(|a| (a.kind, a.reason)).collect();
        }
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
    client_from(ca, None)
}

/// [`client`] connecting from `local` (e.g. `127.0.0.2`, another client to a rate limit).
pub fn client_from(ca: &Path, local: Option<std::net::IpAddr>) -> reqwest::blocking::Client {
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
        .local_address(local)
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

    /// A copy of this log cut after record `keep`, then another reset intent signed
    /// by alice: record `keep + 1` exists in both, with other bytes.
    pub fn fork_after(&self, keep: u64) -> DeskLog {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("audit.sqlite");
        std::fs::copy(&self.db, &db).unwrap();
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute("DELETE FROM audit_records WHERE seq > ?1", [keep as i64]).unwrap();
        drop(conn);
        let mut alice = SoftSigner::from_seed("alice", 1);
        let mut log = AuditLog::open(&db).unwrap();
        let facts = reset_facts("alice", "someone-else");
        log.append(&Event::reset_intent(&facts).unwrap(), &mut alice, time::OffsetDateTime::now_utc()).unwrap();
        drop(log);
        DeskLog { _dir: dir, db, certs: self.certs.clone() }
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

pub const WITNESS: &str = "witness.test/w1";

/// A `resetdesk-collector witness serve` process trusting some logs' keys.
pub struct WitnessProcess {
    pub dir: tempfile::TempDir,
    pub child: Child,
    pub port: u16,
    pub vkey: String,
    pub client: reqwest::blocking::Client,
}

impl WitnessProcess {
    pub fn start(logs: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        assert!(bin().arg("demo-tls").arg(dir.path().join("tls")).output().unwrap().status.success());
        let mut config = format!(
            "listen = \"127.0.0.1:0\"\nname = \"{WITNESS}\"\nsigning_key_file = \"witness.key\"\ndatabase = \"witness.db\"\n\
             tls_cert_file = \"tls/server.pem\"\ntls_key_file = \"tls/server.key\"\n"
        );
        for (origin, vkey) in logs {
            config.push_str(&format!("\n[[log]]\norigin = \"{origin}\"\nverifier_keys = [\"{vkey}\"]\n"));
        }
        let path = dir.path().join("witness.toml");
        std::fs::write(&path, config).unwrap();
        let init = bin().args(["witness", "init", "--config"]).arg(&path).output().unwrap();
        assert!(init.status.success(), "{}", String::from_utf8_lossy(&init.stderr));
        let vkey = String::from_utf8(init.stdout).unwrap().trim().to_owned();
        let mut child = bin()
            .args(["witness", "serve", "--config"])
            .arg(&path)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(dir.path().join("witness.log")).unwrap())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let mut words = line.split_whitespace();
        let addr = words.nth(2).unwrap_or_else(|| panic!("witness did not start: {line:?}"));
        let port = addr.rsplit(':').next().unwrap().parse().unwrap();
        assert_eq!(words.nth(1), Some(vkey.as_str()));
        let client = client(&dir.path().join("tls/ca.pem"));
        WitnessProcess { dir, child, port, vkey, client }
    }

    /// POST add-checkpoint: (status, content type, body).
    pub fn add_checkpoint(&self, old: u64, proof: &[Hash32], checkpoint: &str) -> (u16, String, String) {
        let body = resetdesk_collector::witness::encode_add_checkpoint(old, proof, checkpoint);
        let r = self.client.post(format!("https://localhost:{}/add-checkpoint", self.port)).body(body).send().unwrap();
        let ct = r.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
        (r.status().as_u16(), ct, r.text().unwrap())
    }
}

impl Drop for WitnessProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Step a desk's sync driver until every record has a receipt (waiting out
/// backoffs, retrying failures), at most 30 s.
pub fn drain(d: &mut resetdesk::upstream::SyncDriver) {
    use resetdesk::upstream::driver::Step;
    use std::time::Instant;
    let until = Instant::now() + Duration::from_secs(30);
    while Instant::now() < until {
        match d.step() {
            Ok(Step::Idle) => return,
            Ok(Step::Sent { .. }) => {}
            Ok(Step::Wait(w)) => std::thread::sleep(w.max(Duration::from_millis(5))),
            Err(e) => {
                eprintln!("step failed (retrying): {e}");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
    panic!("the driver did not drain: {:?}", d.report());
}
