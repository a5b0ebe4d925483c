//! `resetdesk-collector`: `init`, `serve`, `demo-tls`, `desk-key add`, `alerts`, and the
//! witness role (`witness init`, `witness serve`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use clap::{Parser, Subcommand};
use resetdesk_collector::alerts::{self, AlertStore};
use resetdesk_collector::anomaly::{self, rules::AnomalyState, AnomalyWatch};
use resetdesk_collector::api::{router, AppState};
use resetdesk_collector::approval::{self, ApprovalStore};
use resetdesk_collector::config::{Config, Database};
use resetdesk_collector::cosignature::Cosigner;
use resetdesk_collector::desk_auth::{DeskKeyFile, DeskKeys};
use resetdesk_collector::history::store::HistoryStore;
use resetdesk_collector::ingest::Collector;
use resetdesk_collector::note::LogKey;
use resetdesk_collector::store::{LogStore, PgStore, SqliteStore};
use resetdesk_collector::witness::WitnessConfig;
use resetdesk_collector::{tls, witnessing};

#[derive(Parser)]
#[command(name = "resetdesk-collector", version, about = "ResetDesk audit collector: a verifying transparency log")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create the checkpoint signing key named in the config (refuses to overwrite)
    /// and print its verifier key (also written beside it as `<key>.vkey`).
    Init(ConfigFile),
    /// Serve the collector over HTTPS.
    Serve {
        #[command(flatten)]
        config: ConfigFile,
        /// The database, overriding the config's: a SQLite path or a PostgreSQL URL
        /// (`postgres://user:password@host:port/db`; several instances may share it).
        #[arg(long, value_name = "PATH|URL")]
        database: Option<String>,
    },
    /// Write a local CA (ca.pem) and a server certificate for localhost/127.0.0.1
    /// (server.pem, server.key) to DIR, for demos and tests.
    DemoTls { dir: PathBuf },
    /// Desk keys for the desk services (approvals, history, alerts).
    #[command(subcommand)]
    DeskKey(DeskKeyCommand),
    /// List the alerts (refusals and anomaly rules) with the records they stand on and
    /// their receipts, oldest first, for the security team.
    Alerts {
        #[command(flatten)]
        config: ConfigFile,
        /// Only alerts with an id above this one.
        #[arg(long, value_name = "ID", default_value_t = 0)]
        after: u64,
        /// The `GET /alerts` JSON body instead of text.
        #[arg(long)]
        json: bool,
        /// The database, overriding the config's (as for `serve`).
        #[arg(long, value_name = "PATH|URL")]
        database: Option<String>,
    },
    /// A C2SP tlog-witness that cosigns the checkpoints of the logs in its config.
    #[command(subcommand)]
    Witness(WitnessCommand),
}

#[derive(Subcommand)]
enum WitnessCommand {
    /// Create the witness's cosigning key (refuses to overwrite) and print its
    /// verifier key (also written beside it as `<key>.vkey`).
    Init(ConfigFile),
    /// Serve `POST /add-checkpoint` over HTTPS.
    Serve(ConfigFile),
}

#[derive(Subcommand)]
enum DeskKeyCommand {
    /// Make a key for desk NAME: its hash goes to the config's `desk_keys_file`, the
    /// key itself to OUT (mode 0600; put it in the desk's `[collector] desk_key_file`),
    /// or to standard output without `--out`.
    Add {
        #[command(flatten)]
        config: ConfigFile,
        name: String,
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
}

#[derive(clap::Args)]
struct ConfigFile {
    #[arg(long = "config", value_name = "FILE")]
    path: PathBuf,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colours only on a terminal: log files and journald get plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("resetdesk-collector: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<(), String> {
    match cli.command {
        Command::Init(config) => {
            let c = Config::load(&config.path).map_err(|e| e.to_string())?;
            let vkey = LogKey::create(&c.signing_key_file, &c.origin).map_err(|e| e.to_string())?;
            println!("{vkey}");
            Ok(())
        }
        Command::DemoTls { dir } => {
            let out = tls::demo_tls(&dir).map_err(|e| e.to_string())?;
            println!("CA (pin this on desks): {}", out.ca.display());
            println!("server certificate: {}", out.cert.display());
            println!("server key: {}", out.key.display());
            Ok(())
        }
        Command::Witness(w) => witness(w),
        Command::DeskKey(DeskKeyCommand::Add { config, name, out }) => {
            let c = Config::load(&config.path).map_err(|e| e.to_string())?;
            let key = DeskKeys::add(&c.desk_keys_file, &name).map_err(|e| e.to_string())?;
            match out {
                Some(path) => write_private(&path, format!("{}\n", key.as_str()).as_bytes())
                    .map_err(|e| format!("cannot write {}: {e}", path.display()))?,
                None => println!("{}", key.as_str()),
            }
            Ok(())
        }
        Command::Alerts { config, after, json, database } => {
            let mut c = Config::load(&config.path).map_err(|e| e.to_string())?;
            if let Some(d) = database {
                c.database = Database::from(d);
            }
            let text = match &c.database {
                Database::Sqlite(path) => {
                    list_alerts(&SqliteStore::open(path).map_err(|e| e.to_string())?, after, json)
                }
                Database::Postgres(url) => list_alerts(&PgStore::connect(url).map_err(|e| e.to_string())?, after, json),
            }?;
            print!("{text}");
            Ok(())
        }
        Command::Serve { config, database } => {
            let mut c = Config::load(&config.path).map_err(|e| e.to_string())?;
            if let Some(d) = database {
                c.database = Database::from(d);
            }
            match &c.database {
                Database::Sqlite(path) => serve(SqliteStore::open(path).map_err(|e| e.to_string())?, c),
                Database::Postgres(url) => serve(PgStore::connect(url).map_err(|e| e.to_string())?, c),
            }
        }
    }
}

fn witness(command: WitnessCommand) -> Result<(), String> {
    match command {
        WitnessCommand::Init(config) => {
            let c = WitnessConfig::load(&config.path).map_err(|e| e.to_string())?;
            let vkey = Cosigner::create(&c.signing_key_file, &c.name).map_err(|e| e.to_string())?;
            let vpath = c.signing_key_file.with_extension("vkey");
            std::fs::write(&vpath, format!("{vkey}\n"))
                .map_err(|e| format!("cannot write {}: {e}", vpath.display()))?;
            println!("{vkey}");
            Ok(())
        }
        WitnessCommand::Serve(config) => {
            let c = WitnessConfig::load(&config.path).map_err(|e| e.to_string())?;
            let cosigner = Cosigner::load(&c.signing_key_file, &c.name).map_err(|e| e.to_string())?;
            let vkey = cosigner.verifier_key();
            let w = resetdesk_collector::witness::Witness::open(&c, cosigner).map_err(|e| e.to_string())?;
            let app = resetdesk_collector::witness::router(Arc::new(Mutex::new(w)));
            let tls = tls::server_config(&c.tls_cert_file, &c.tls_key_file).map_err(|e| e.to_string())?;
            listen(c.listen, tls, app, vkey, |_| {})
        }
    }
}

/// Serve `app` over TLS on `addr` until Ctrl-C; print the listening line (which
/// tests and scripts wait for) and run `started` on the runtime.
fn listen(
    addr: std::net::SocketAddr,
    tls: Arc<rustls::ServerConfig>,
    app: axum::Router,
    vkey: String,
    started: impl FnOnce(&tokio::runtime::Handle),
) -> Result<(), String> {
    let runtime = tokio::runtime::Runtime::new().map_err(|e| format!("cannot start the runtime: {e}"))?;
    started(runtime.handle());
    runtime.block_on(async move {
        let tls = axum_server::tls_rustls::RustlsConfig::from_config(tls);
        let handle = axum_server::Handle::new();
        let shutdown = handle.clone();
        tokio::spawn(async move {
            let _ = tokio::signal::ctrl_c().await;
            shutdown.graceful_shutdown(Some(std::time::Duration::from_secs(5)));
        });
        let server = axum_server::bind_rustls(addr, tls).handle(handle.clone());
        let listening = handle.clone();
        tokio::spawn(async move {
            if let Some(addr) = listening.listening().await {
                // Tests and scripts wait for this line.
                println!("listening on https://{addr} verifier-key {vkey}");
            }
        });
        // The peer address is what the approval page's rate limit counts by.
        server
            .serve(app.into_make_service_with_connect_info::<std::net::SocketAddr>())
            .await
            .map_err(|e| format!("cannot serve on {addr}: {e}"))
    })
}

/// Every alert after `after`, as text or as the `GET /alerts` JSON.
fn list_alerts<S: LogStore + AlertStore>(store: &S, after: u64, json: bool) -> Result<String, String> {
    let list = alerts::list(store, after, usize::MAX / 2).map_err(|e| e.to_string())?;
    if json {
        return serde_json::to_string_pretty(&list).map(|t| t + "\n").map_err(|e| e.to_string());
    }
    Ok(alerts::render_text(&list))
}

fn serve<S: LogStore + AlertStore + AnomalyState + ApprovalStore + HistoryStore + 'static>(
    store: S,
    c: Config,
) -> Result<(), String> {
    let key = LogKey::load(&c.signing_key_file, &c.origin).map_err(|e| e.to_string())?;
    let ca = std::fs::read_to_string(&c.org_ca_file)
        .map_err(|e| format!("cannot read the organisation CA {}: {e}", c.org_ca_file.display()))?;
    let mut collector = Collector::open(store, &ca, key, c.max_batch)
        .map_err(|e| e.to_string())?
        .with_watcher(Box::new(AnomalyWatch::new(c.anomaly.clone())));
    // The account index catches up on what was stored before a stop.
    resetdesk_collector::history::catch_up(collector.store_mut()).map_err(|e| e.to_string())?;
    if let Some(mail) = &c.security_mail {
        alerts::mail::check(mail).map_err(|e| e.to_string())?;
    }
    let vkey = collector.verifier_key().to_owned();
    let tls = tls::server_config(&c.tls_cert_file, &c.tls_key_file).map_err(|e| e.to_string())?;
    let witnesses =
        c.witnesses.iter().map(witnessing::Witness::new).collect::<Result<Vec<_>, _>>().map_err(|e| e.to_string())?;
    let desk_keys = DeskKeyFile::open(&c.desk_keys_file).map_err(|e| e.to_string())?;
    let state =
        Arc::new(AppState::new(collector, c.max_body_bytes).with_desk_keys(desk_keys).with_history(c.history.clone()));
    let app = router(Arc::clone(&state))
        .merge(alerts::api::routes(Arc::clone(&state)))
        .merge(approval::api::router(Arc::clone(&state), c.approval));
    listen(c.listen, tls, app, vkey, move |rt| {
        if c.anomaly.heartbeat.enabled {
            rt.spawn(anomaly::watch_heartbeats(Arc::clone(&state), c.anomaly.clone()));
        }
        if let Some(mail) = c.security_mail.clone() {
            rt.spawn(alerts::mail::run(Arc::clone(&state), mail));
        }
        if !witnesses.is_empty() {
            rt.spawn(witnessing::run(state, witnesses));
        }
    })
}

/// Write `bytes` to a new file readable by its owner only.
fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}
