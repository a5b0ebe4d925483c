//! `resetdesk audit ...`: verify the signed audit trail offline, and export it for
//! third parties (see `docs/audit-format.md`).

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};

use super::{EXIT_BAD_INPUT, EXIT_FAILED};
use crate::audit::export::{export, read_anchors, read_receipts, read_records};
use crate::audit::offline::{default_threads, verify_records, verify_store_with};
use crate::audit::record::Hash32;
use crate::audit::resolver::load_ca;
use crate::audit::resolver::CertificateResolver;
use crate::audit::store::{Store, FILE_NAME};
use crate::audit::verify::StoredRecord;
use crate::audit::{Anchor, CollectorKeys, Receipt, Summary};
use crate::upstream::online::check_against_collector;
use crate::upstream::CollectorClient;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check every record: signatures against enrolled certificates chained to the
    /// organisation CA, seq continuity, the hash chain, intent/outcome links, and
    /// receipts/anchors (nothing up to them missing or rewritten). Exit 0 if all hold.
    Verify(VerifyArgs),
    /// Write records.jsonl, receipts.jsonl and the certificates as PEM, so that any
    /// record can be checked with openssl alone.
    Export(ExportArgs),
}

/// Where the log and the keys come from.
#[derive(Debug, Args)]
pub struct Source {
    /// The desk's data directory (audit.sqlite, tokens.sqlite, ca/ca.pem).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// The audit database, if not `<data-dir>/audit.sqlite`.
    #[arg(long, value_name = "FILE")]
    pub db: Option<PathBuf>,
    /// The organisation CA certificate (PEM), if not `<data-dir>/ca/ca.pem`.
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// Take agents' certificates from the *.pem files of this directory (e.g. an
    /// export's certs/) instead of the token registry.
    #[arg(long, value_name = "DIR")]
    pub certs: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub source: Source,
    /// Verify an export directory (records.jsonl, receipts.jsonl, certs/) instead of a
    /// database. Pass the organisation's CA with --ca: the export's own ca.pem is
    /// only as trustworthy as whoever handed you the export.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["data_dir", "db"])]
    pub export: Option<PathBuf>,
    /// Receipts held outside the desk (JSON lines, as in an export's receipts.jsonl).
    #[arg(long, value_name = "FILE")]
    pub receipts: Option<PathBuf>,
    /// A file with a trusted collector key: its signed-note verifier key
    /// (`resetdesk-collector` writes `collector.vkey`) or a v1 collector's public key
    /// PEM; repeat for several collectors.
    #[arg(long, value_name = "FILE")]
    pub collector_key: Vec<PathBuf>,
    /// A trusted collector's verifier key string `name+hex(key id)+base64(type || key)`
    /// (as `GET /verifier-key` of the collector returns it); repeatable.
    #[arg(long, value_name = "KEY")]
    pub collector_vkey: Vec<String>,
    /// Signed records held outside the desk, e.g. heartbeats the collector received
    /// (JSON lines, as in an export's records.jsonl): each must be in the log unchanged.
    #[arg(long, value_name = "FILE")]
    pub anchors: Option<PathBuf>,
    /// Also ask this collector (`https://host:port`) for its current checkpoint and
    /// prove it extends the checkpoint the desk holds and those of its stored receipts
    /// (so every receipted record is still in the log the collector shows now).
    #[arg(long, value_name = "URL", conflicts_with = "export")]
    pub collector: Option<String>,
    /// The CA certificate (PEM) of the collector's TLS certificate, for --collector
    /// (`resetdesk-collector demo-tls` writes `ca.pem`); default: the system's roots.
    #[arg(long, value_name = "FILE", requires = "collector")]
    pub collector_ca: Option<PathBuf>,
    /// Threads that check signatures (default: every core; 1 for one core).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub threads: Option<u16>,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub source: Source,
    /// Output directory (created if missing).
    #[arg(long, value_name = "OUTDIR")]
    pub out: PathBuf,
}

pub fn run(cmd: Command) -> u8 {
    let result = match cmd {
        Command::Verify(a) => verify(&a),
        Command::Export(a) => export_cmd(&a),
    };
    match result {
        Ok(()) => 0,
        Err((code, msg)) => {
            eprintln!("{msg}");
            code
        }
    }
}

type CmdResult = Result<(), (u8, String)>;

fn bad(msg: impl Into<String>) -> (u8, String) {
    (EXIT_BAD_INPUT, msg.into())
}

impl Source {
    fn db_path(&self) -> Result<PathBuf, (u8, String)> {
        match (&self.db, &self.data_dir) {
            (Some(db), _) => Ok(db.clone()),
            (None, Some(dir)) => Ok(dir.join(FILE_NAME)),
            (None, None) => Err(bad("say which log: --data-dir DIR or --db FILE (verify also takes --export DIR)")),
        }
    }

    fn resolver(&self) -> Result<CertificateResolver, (u8, String)> {
        let data_dir = self.data_dir.clone();
        if let Some(certs) = &self.certs {
            if data_dir.is_none() && self.ca.is_none() {
                return Err(bad("with --certs, give the CA certificate: --ca FILE (or --data-dir DIR)"));
            }
            let dir = data_dir.unwrap_or_default();
            let mut resolver = load_ca(&dir, self.ca.as_deref()).map_err(|e| bad(e.to_string()))?;
            load_pem_dir(&mut resolver, certs)?;
            return Ok(resolver);
        }
        let Some(dir) = data_dir else {
            return Err(bad("give --data-dir DIR (token registry and CA), or --ca FILE with --certs DIR"));
        };
        let loaded = crate::token::audit_keys::load(&dir, self.ca.as_deref()).map_err(|e| bad(e.to_string()))?;
        for (user, why) in &loaded.refused {
            eprintln!("warning: the enrolled certificate of `{user}` is not trusted: {why}");
        }
        Ok(loaded.resolver)
    }
}

fn load_pem_dir(resolver: &mut CertificateResolver, dir: &Path) -> CmdResult {
    let entries = std::fs::read_dir(dir).map_err(|e| bad(format!("cannot read {}: {e}", dir.display())))?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "pem"))
        .collect();
    paths.sort();
    for p in paths {
        let pem = std::fs::read_to_string(&p).map_err(|e| bad(format!("cannot read {}: {e}", p.display())))?;
        if let Err(why) = resolver.add_certificate_pem(&pem, None) {
            eprintln!("warning: {} is not trusted: {why}", p.display());
        }
    }
    Ok(())
}

/// What an export directory holds for the verifier.
struct ExportSource {
    records: Vec<StoredRecord>,
    receipts: Vec<Receipt>,
    resolver: CertificateResolver,
}

/// The records, receipts and resolver of an export directory.
fn export_source(dir: &Path, source: &Source) -> Result<ExportSource, (u8, String)> {
    let records = read_records(&dir.join("records.jsonl")).map_err(bad)?;
    let receipts_file = dir.join("receipts.jsonl");
    let receipts = if receipts_file.exists() { read_receipts(&receipts_file).map_err(bad)? } else { Vec::new() };
    let ca = match &source.ca {
        Some(ca) => ca.clone(),
        None => {
            eprintln!("warning: trusting the CA certificate inside the export; pass --ca with the organisation's CA certificate to be sure");
            dir.join("ca.pem")
        }
    };
    let mut resolver = load_ca(Path::new(""), Some(&ca)).map_err(|e| bad(e.to_string()))?;
    load_pem_dir(&mut resolver, source.certs.as_deref().unwrap_or(&dir.join("certs")))?;
    Ok(ExportSource { records, receipts, resolver })
}

fn verify(a: &VerifyArgs) -> CmdResult {
    let extra = match &a.receipts {
        Some(p) => read_receipts(p).map_err(bad)?,
        None => Vec::new(),
    };
    let mut collectors = CollectorKeys::default();
    for p in &a.collector_key {
        let text = std::fs::read_to_string(p).map_err(|e| bad(format!("cannot read {}: {e}", p.display())))?;
        collectors.add_text(&text).map_err(|e| bad(format!("{}: {e}", p.display())))?;
    }
    for k in &a.collector_vkey {
        collectors.add_verifier_key(k).map_err(bad)?;
    }
    let anchors: Vec<Anchor> = match &a.anchors {
        Some(p) => read_anchors(p).map_err(bad)?,
        None => Vec::new(),
    };
    let no_collector = |receipts: usize| {
        bad(format!(
            "{receipts} receipt(s) to check but no trusted collector key: pass --collector-key FILE (the collector's verifier key, or a v1 collector's public key PEM)"
        ))
    };
    let threads = a.threads.map_or_else(default_threads, usize::from);
    let (label, result) = if let Some(dir) = &a.export {
        let mut src = export_source(dir, &a.source)?;
        src.receipts.extend(extra);
        if collectors.is_empty() && !src.receipts.is_empty() {
            return Err(no_collector(src.receipts.len()));
        }
        (dir.clone(), verify_records(&src.records, &src.resolver, &src.receipts, &collectors, &anchors, threads))
    } else {
        let db = a.source.db_path()?;
        let store = Store::open_read_only(&db).map_err(|e| bad(e.to_string()))?;
        let resolver = a.source.resolver()?;
        let stored_receipts = store.receipts().map_err(|e| bad(e.to_string()))?.len();
        if collectors.is_empty() && stored_receipts + extra.len() > 0 {
            return Err(no_collector(stored_receipts + extra.len()));
        }
        let result = verify_store_with(&store, &resolver, &extra, &collectors, &anchors, threads);
        if let (Ok(summary), Some(url)) = (&result, &a.collector) {
            let online = online_check(&store, url, a.collector_ca.as_deref(), &collectors)?;
            print!("{}", render_summary(&db, summary));
            println!("{online}");
            return Ok(());
        }
        (db, result)
    };
    match result {
        Ok(summary) => {
            print!("{}", render_summary(&label, &summary));
            Ok(())
        }
        Err(e) => Err((EXIT_FAILED, format!("audit log {}: FAILED: {e}", label.display()))),
    }
}

/// The `--collector` part of `verify`: the collector's current tree extends what the
/// desk holds.
fn online_check(
    store: &Store,
    url: &str,
    ca: Option<&Path>,
    collectors: &CollectorKeys,
) -> Result<String, (u8, String)> {
    if collectors.is_empty() {
        return Err(bad("--collector needs the collector's key: --collector-vkey KEY or --collector-key FILE"));
    }
    let pem = match ca {
        Some(p) => Some(std::fs::read(p).map_err(|e| bad(format!("cannot read {}: {e}", p.display())))?),
        None => None,
    };
    let client = CollectorClient::new(url, pem.as_deref()).map_err(|e| bad(e.to_string()))?;
    let check = check_against_collector(store, &client, collectors)
        .map_err(|e| (EXIT_FAILED, format!("collector {url}: FAILED: {e}")))?;
    let held = check
        .held_size
        .map(|s| format!("the desk's witnessed checkpoint (size {s})"))
        .unwrap_or_else(|| "no witnessed checkpoint".into());
    Ok(format!(
        "collector {url}: OK: its tree of size {} extends {held}, the checkpoints of {} receipt(s) and of {} heartbeat(s) ({} distinct checkpoint(s)): every receipted record is in it",
        check.collector_size, check.receipts_included, check.heartbeat_checkpoints, check.checkpoints_proved
    ))
}

fn short(h: &Hash32) -> String {
    hex::encode(&h[..8])
}

fn time_of(ms: Option<u64>) -> String {
    ms.and_then(|ms| time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok())
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| "-".into())
}

/// The text `verify` prints on success.
pub fn render_summary(db: &Path, s: &Summary) -> String {
    let mut out = format!("audit log {}: OK\n", db.display());
    if s.records == 0 {
        out.push_str("  records: 0 (empty log)\n");
        return out;
    }
    out.push_str(&format!(
        "  records: {} (seq 1..{}), head {}…, {} .. {}\n",
        s.records,
        s.head_seq,
        short(&s.head_hash),
        time_of(s.first_timestamp_ms),
        time_of(s.last_timestamp_ms)
    ));
    let types: Vec<String> = s.by_type.iter().map(|(t, n)| format!("{t} {n}")).collect();
    out.push_str(&format!("  events: {}\n", types.join(", ")));
    let signers: Vec<String> = s.signers.iter().map(|(who, n)| format!("{who} ({n})")).collect();
    out.push_str(&format!("  signers: {}\n", signers.join("; ")));
    out.push_str(&format!("  co-signed records: {}\n", s.cosigned));
    out.push_str(&format!(
        "  receipts: {} checked; records after the last receipt (not yet attested by a collector): {}\n",
        s.receipts_checked,
        s.head_seq - s.receipted_up_to.min(s.head_seq)
    ));
    out.push_str(&format!("  anchors: {} checked\n", s.anchors_checked));
    if s.clock_regressions > 0 {
        out.push_str(&format!(
            "  warning: {} record(s) carry an earlier time than the record before them (desk clock set back?)\n",
            s.clock_regressions
        ));
    }
    if s.open_intents.is_empty() {
        out.push_str("  open intents: none\n");
    } else {
        let seqs: Vec<String> = s.open_intents.iter().map(u64::to_string).collect();
        out.push_str(&format!(
            "  open intents (no outcome recorded; reconcile against the directory): seq {}\n",
            seqs.join(", ")
        ));
    }
    out
}

fn export_cmd(a: &ExportArgs) -> CmdResult {
    let db = a.source.db_path()?;
    let store = Store::open_read_only(&db).map_err(|e| bad(e.to_string()))?;
    let resolver = a.source.resolver()?;
    let s = export(&store, &resolver, &a.out).map_err(|e| (EXIT_FAILED, e.to_string()))?;
    println!(
        "exported {} record(s), {} certificate(s), {} receipt(s) to {}",
        s.records,
        s.certificates,
        s.receipts,
        a.out.display()
    );
    if s.unknown_signers > 0 {
        eprintln!(
            "warning: {} signing key(s) have no trusted certificate; their records cannot be checked",
            s.unknown_signers
        );
    }
    println!("check a record with openssl: see docs/audit-format.md; check the whole log: resetdesk audit verify");
    Ok(())
}
