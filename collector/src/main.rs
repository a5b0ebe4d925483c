//! `resetdesk-collector`: `init`, `serve`, `demo-tls`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use resetdesk_collector::api::{router, AppState};
use resetdesk_collector::config::Config;
use resetdesk_collector::ingest::Collector;
use resetdesk_collector::note::LogKey;
use resetdesk_collector::store::SqliteStore;
use resetdesk_collector::tls;

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
    Init {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Serve the collector over HTTPS.
    Serve {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Write a local CA (ca.pem) and a server certificate for localhost/127.0.0.1
    /// (server.pem, server.key) to DIR, for demos and tests.
    DemoTls { dir: PathBuf },
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
        Command::Init { config } => {
            let c = Config::load(&config).map_err(|e| e.to_string())?;
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
        Command::Serve { config } => serve(&config),
    }
}

fn serve(config: &std::path::Path) -> Result<(), String> {
    let c = Config::load(config).map_err(|e| e.to_string())?;
    let key = LogKey::load(&c.signing_key_file, &c.origin).map_err(|e| e.to_string())?;
    let ca = std::fs::read_to_string(&c.org_ca_file)
        .map_err(|e| format!("cannot read the organisation CA {}: {e}", c.org_ca_file.display()))?;
    let store = SqliteStore::open(&c.database).map_err(|e| e.to_string())?;
    let collector = Collector::open(store, &ca, key, c.max_batch).map_err(|e| e.to_string())?;
    let vkey = collector.verifier_key().to_owned();
    let tls = tls::server_config(&c.tls_cert_file, &c.tls_key_file).map_err(|e| e.to_string())?;
    let state = Arc::new(AppState::new(collector, c.max_body_bytes));
    let app = router(state);
    let runtime = tokio::runtime::Runtime::new().map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(async move {
        let tls = axum_server::tls_rustls::RustlsConfig::from_config(tls);
        let handle = axum_server::Handle::new();
        let shutdown = handle.clone();
        tokio::spawn(async move {
            let _ = tokio::signal::ctrl_c().await;
            shutdown.graceful_shutdown(Some(std::time::Duration::from_secs(5)));
        });
        let server = axum_server::bind_rustls(c.listen, tls).handle(handle.clone());
        let listening = handle.clone();
        tokio::spawn(async move {
            if let Some(addr) = listening.listening().await {
                // Tests and scripts wait for this line.
                println!("listening on https://{addr} verifier-key {vkey}");
            }
        });
        server.serve(app.into_make_service()).await.map_err(|e| format!("cannot serve on {}: {e}", c.listen))
    })
}
