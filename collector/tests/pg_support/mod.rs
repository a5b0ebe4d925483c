//! PostgreSQL for the collector's tests: the project's cluster (`scripts/postgres.sh
//! start`, which reuses a running one) and one throwaway database per test.
//! Without PostgreSQL the tests skip, except under `CI=true`, where they fail.

use std::sync::OnceLock;

/// The cluster's URL (its `resetdesk` database), or `None` (skip) outside CI.
pub fn server_url() -> Option<String> {
    static URL: OnceLock<Result<String, String>> = OnceLock::new();
    let url = URL.get_or_init(|| {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/postgres.sh");
        let out = std::process::Command::new("bash")
            .arg(script)
            .arg("start")
            .output()
            .map_err(|e| format!("cannot run {script}: {e}"))?;
        if !out.status.success() {
            return Err(format!("{script} start failed: {}", String::from_utf8_lossy(&out.stderr)));
        }
        let stdout = String::from_utf8_lossy(&out.stdout);
        stdout.lines().last().map(str::to_owned).ok_or_else(|| "postgres.sh printed no URL".to_owned())
    });
    match url {
        Ok(u) => Some(u.clone()),
        Err(e) if std::env::var("CI").is_ok_and(|v| v == "true") => panic!("PostgreSQL is required in CI: {e}"),
        Err(e) => {
            eprintln!("skipping the PostgreSQL test: {e}");
            None
        }
    }
}

/// A database of its own, dropped at the end.
pub struct PgDatabase {
    pub url: String,
    server: String,
    name: String,
}

fn admin<T>(server: &str, f: impl AsyncFnOnce(&tokio_postgres::Client) -> T) -> T {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let (client, conn) = tokio_postgres::connect(server, tokio_postgres::NoTls).await.unwrap();
        let task = tokio::spawn(conn);
        let out = f(&client).await;
        drop(client);
        let _ = task.await;
        out
    })
}

impl PgDatabase {
    /// A new empty database on the project's cluster, or `None` (skip) outside CI.
    pub fn create() -> Option<Self> {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let server = server_url()?;
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
        let name = format!("collector_test_{}_{n}_{nanos}", std::process::id());
        admin(&server, async |c| c.batch_execute(&format!("CREATE DATABASE {name}")).await.unwrap());
        let (base, _) = server.rsplit_once('/').unwrap();
        Some(Self { url: format!("{base}/{name}"), server, name })
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        admin(&self.server, async |c| {
            let _ = c.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await;
        });
    }
}
