//! The witness role (`resetdesk-collector witness serve --config FILE`): a C2SP
//! tlog-witness that cosigns the checkpoints of the logs it is configured to trust,
//! after checking that each is consistent with the last one it cosigned. It exists
//! so the collector's witnessing runs against a real witness in tests and demos;
//! any C2SP witness can take its place.
//!
//! `POST /add-checkpoint` (body `old <size>\n<proof lines>\n\n<signed checkpoint>`):
//! - 404 the origin is not a configured log; 403 no trusted signature verifies;
//! - 400 malformed, more than 63 proof lines, or old size > checkpoint size;
//! - 409 (`text/x.tlog.size`, body `<size>\n`) the old size is not the size this
//!   witness last cosigned for the origin, or equal sizes with another root;
//! - 422 the consistency proof does not verify (or is not empty from size 0);
//! - 200 with the cosignature line, after the new size and root are stored.
//!
//! The check of the old size and the update are one SQLite `BEGIN IMMEDIATE`
//! transaction, so concurrent requests cannot roll the stored size back.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use serde::Deserialize;
use signed_note::{Note, Signer as _, StandardVerifier, VerifierList};

use crate::cosignature::Cosigner;

/// Most consistency proof lines a request may carry (C2SP tlog-witness).
pub const MAX_PROOF_LINES: usize = 63;
/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WitnessConfig {
    /// `host:port` to listen on (HTTPS only).
    pub listen: SocketAddr,
    /// The witness's key name (e.g. `witness.example.org/w1`).
    pub name: String,
    /// The cosigning key (written by `witness init`).
    pub signing_key_file: PathBuf,
    /// SQLite file with the last cosigned size and root per log.
    pub database: PathBuf,
    pub tls_cert_file: PathBuf,
    pub tls_key_file: PathBuf,
    /// The logs this witness cosigns.
    #[serde(rename = "log", default)]
    pub logs: Vec<TrustedLog>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustedLog {
    /// The checkpoint origin line.
    pub origin: String,
    /// The log's signed-note verifier key(s) (Ed25519).
    pub verifier_keys: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum WitnessConfigError {
    #[error("cannot read the witness config {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("witness config {path}: {source}")]
    Parse { path: String, source: toml::de::Error },
    #[error("witness config {path}: log `{origin}`: verifier key `{key}` is not an Ed25519 signed-note key")]
    Key { path: String, origin: String, key: String },
    #[error("witness database {path}: {source}")]
    Sql { path: String, source: rusqlite::Error },
}

impl WitnessConfig {
    pub fn load(path: &Path) -> Result<Self, WitnessConfigError> {
        let shown = path.display().to_string();
        let text =
            std::fs::read_to_string(path).map_err(|source| WitnessConfigError::Read { path: shown.clone(), source })?;
        let mut c: WitnessConfig =
            toml::from_str(&text).map_err(|source| WitnessConfigError::Parse { path: shown.clone(), source })?;
        let base = path.parent().unwrap_or(Path::new("."));
        for p in [&mut c.signing_key_file, &mut c.database, &mut c.tls_cert_file, &mut c.tls_key_file] {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        Ok(c)
    }
}

/// A refused `add-checkpoint`: the HTTP status and the body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("400: {0}")]
    BadRequest(String),
    #[error("403: no signature by a trusted key of `{0}` verifies")]
    Untrusted(String),
    #[error("404: unknown log origin `{0}`")]
    UnknownLog(String),
    /// The size this witness last cosigned for the origin.
    #[error("409: the witness's latest cosigned size is {0}")]
    Conflict(u64),
    #[error("422: {0}")]
    BadProof(String),
    #[error("500: {0}")]
    Internal(String),
}

impl Refusal {
    pub fn status(&self) -> u16 {
        match self {
            Self::BadRequest(_) => 400,
            Self::Untrusted(_) => 403,
            Self::UnknownLog(_) => 404,
            Self::Conflict(_) => 409,
            Self::BadProof(_) => 422,
            Self::Internal(_) => 500,
        }
    }
}

/// An `add-checkpoint` body, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddCheckpoint {
    pub old: u64,
    pub proof: Vec<[u8; 32]>,
    pub checkpoint: Vec<u8>,
}

/// Encode an `add-checkpoint` body.
pub fn encode_add_checkpoint(old: u64, proof: &[[u8; 32]], signed_checkpoint: &str) -> Vec<u8> {
    use base64::Engine as _;
    let mut body = format!("old {old}\n");
    for h in proof {
        body.push_str(&base64::engine::general_purpose::STANDARD.encode(h));
        body.push('\n');
    }
    body.push('\n');
    body.push_str(signed_checkpoint);
    body.into_bytes()
}

/// Parse an `add-checkpoint` body (400 on anything malformed).
pub fn parse_add_checkpoint(body: &[u8]) -> Result<AddCheckpoint, Refusal> {
    use base64::Engine as _;
    let bad = |m: &str| Refusal::BadRequest(m.to_owned());
    let split = body.windows(2).position(|w| w == b"\n\n").ok_or_else(|| bad("no empty line before the checkpoint"))?;
    let head = std::str::from_utf8(&body[..=split]).map_err(|_| bad("the header is not UTF-8"))?;
    let checkpoint = body[split + 2..].to_vec();
    let mut lines = head.lines();
    let old = lines
        .next()
        .and_then(|l| l.strip_prefix("old "))
        .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) && (n == &"0" || !n.starts_with('0')))
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| bad("the first line must be `old <size>` in decimal"))?;
    let mut proof = Vec::new();
    for line in lines {
        if proof.len() == MAX_PROOF_LINES {
            return Err(bad("more than 63 consistency proof lines"));
        }
        let raw =
            base64::engine::general_purpose::STANDARD.decode(line).map_err(|_| bad("a proof line is not base64"))?;
        proof.push(raw.try_into().map_err(|_| bad("a proof line is not a 32-byte hash"))?);
    }
    Ok(AddCheckpoint { old, proof, checkpoint })
}

/// The witness: its key, the logs it trusts and its state.
pub struct Witness {
    cosigner: Cosigner,
    logs: HashMap<String, Vec<String>>,
    db: Connection,
    db_path: String,
}

const SCHEMA: &str = "
PRAGMA journal_mode = WAL;
PRAGMA synchronous = FULL;
CREATE TABLE IF NOT EXISTS witnessed (origin TEXT PRIMARY KEY, size INTEGER NOT NULL, root BLOB NOT NULL);
";

impl Witness {
    pub fn open(config: &WitnessConfig, cosigner: Cosigner) -> Result<Self, WitnessConfigError> {
        let db_path = config.database.display().to_string();
        let sql = |source| WitnessConfigError::Sql { path: db_path.clone(), source };
        let db = Connection::open(&config.database).map_err(sql)?;
        db.busy_timeout(std::time::Duration::from_secs(10)).map_err(sql)?;
        db.execute_batch(SCHEMA).map_err(sql)?;
        let mut logs = HashMap::new();
        for log in &config.logs {
            for key in &log.verifier_keys {
                if StandardVerifier::new(key).is_err() {
                    return Err(WitnessConfigError::Key {
                        path: db_path.clone(),
                        origin: log.origin.clone(),
                        key: key.clone(),
                    });
                }
            }
            logs.insert(log.origin.clone(), log.verifier_keys.clone());
        }
        Ok(Self { cosigner, logs, db, db_path })
    }

    /// Check a submission and, if it passes, store it and return the cosignature
    /// line(s) at `now` (POSIX seconds).
    pub fn add_checkpoint(&mut self, body: &[u8], now: u64) -> Result<String, Refusal> {
        let req = parse_add_checkpoint(body)?;
        let note = Note::from_bytes(&req.checkpoint)
            .map_err(|e| Refusal::BadRequest(format!("the checkpoint is not a signed note: {e}")))?;
        let cp = tlog_tiles::Checkpoint::from_bytes(note.text())
            .map_err(|e| Refusal::BadRequest(format!("the note is not a checkpoint: {e}")))?;
        let origin = cp.origin().to_owned();
        let keys = self.logs.get(&origin).ok_or_else(|| Refusal::UnknownLog(origin.clone()))?;
        let verifiers = VerifierList::new(
            keys.iter()
                .filter_map(|k| StandardVerifier::new(k).ok())
                .map(|v| Box::new(v) as Box<dyn signed_note::Verifier>)
                .collect(),
        );
        // Unknown signatures are ignored; an invalid one by a trusted key counts as none.
        if note.verify(&verifiers).is_err() {
            return Err(Refusal::Untrusted(origin));
        }
        let size = cp.size();
        if req.old > size {
            return Err(Refusal::BadRequest(format!("old size {} is larger than the checkpoint's {size}", req.old)));
        }
        let internal = |e: rusqlite::Error| Refusal::Internal(format!("witness database {}: {e}", self.db_path));
        let tx = self.db.transaction_with_behavior(TransactionBehavior::Immediate).map_err(internal)?;
        let stored: Option<(i64, Vec<u8>)> = tx
            .query_row("SELECT size, root FROM witnessed WHERE origin = ?1", [&origin], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()
            .map_err(internal)?;
        let (stored_size, stored_root) = match stored {
            Some((s, root)) => (u64::try_from(s).unwrap_or(0), Some(root)),
            None => (0, None),
        };
        if req.old != stored_size {
            return Err(Refusal::Conflict(stored_size));
        }
        let root = cp.hash().0;
        if req.old == size {
            if stored_root.is_some_and(|r| r != root) {
                return Err(Refusal::Conflict(stored_size));
            }
        } else if req.old == 0 {
            if !req.proof.is_empty() {
                return Err(Refusal::BadProof("the proof must be empty from size 0".into()));
            }
        } else {
            let old_root: [u8; 32] = stored_root
                .and_then(|r| r.try_into().ok())
                .ok_or_else(|| Refusal::Internal("the stored root is not 32 bytes".into()))?;
            let proof: Vec<tlog_tiles::Hash> = req.proof.iter().map(|h| tlog_tiles::Hash(*h)).collect();
            tlog_tiles::check_tree(&proof, size, tlog_tiles::Hash(root), req.old, tlog_tiles::Hash(old_root))
                .map_err(|e| Refusal::BadProof(format!("consistency proof from {} to {size}: {e}", req.old)))?;
        }
        tx.execute(
            "INSERT INTO witnessed (origin, size, root) VALUES (?1, ?2, ?3)
             ON CONFLICT (origin) DO UPDATE SET size = excluded.size, root = excluded.root",
            params![origin, i64::try_from(size).unwrap_or(i64::MAX), root.as_slice()],
        )
        .map_err(internal)?;
        tx.commit().map_err(internal)?;
        let signer = self.cosigner.at(now);
        let sig = signed_note::Signer::sign(&signer, note.text())
            .map_err(|e| Refusal::Internal(format!("cannot cosign: {e}")))?;
        let line = signed_note::Signature::new(signer.name().to_owned(), signer.key_id(), sig)
            .map_err(|e| Refusal::Internal(format!("cannot cosign: {e}")))?;
        String::from_utf8(line.to_bytes()).map_err(|e| Refusal::Internal(e.to_string()))
    }
}

/// The witness's HTTP routes.
pub fn router(witness: std::sync::Arc<std::sync::Mutex<Witness>>) -> axum::Router {
    use axum::body::Bytes;
    use axum::http::{header, StatusCode};
    use axum::response::IntoResponse;
    let add = move |body: Bytes| {
        let witness = std::sync::Arc::clone(&witness);
        async move {
            let now =
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
            let outcome = tokio::task::spawn_blocking(move || match witness.lock() {
                Ok(mut w) => w.add_checkpoint(&body, now),
                Err(_) => Err(Refusal::Internal("the witness lock is poisoned; restart it".into())),
            })
            .await
            .unwrap_or_else(|e| Err(Refusal::Internal(e.to_string())));
            match outcome {
                Ok(lines) => (StatusCode::OK, lines).into_response(),
                Err(Refusal::Conflict(size)) => {
                    tracing::info!("add-checkpoint: 409, the latest cosigned size is {size}");
                    (StatusCode::CONFLICT, [(header::CONTENT_TYPE, "text/x.tlog.size")], format!("{size}\n"))
                        .into_response()
                }
                Err(r) => {
                    tracing::warn!("add-checkpoint refused: {r}");
                    let status = StatusCode::from_u16(r.status()).unwrap_or(StatusCode::BAD_REQUEST);
                    (status, format!("{r}\n")).into_response()
                }
            }
        }
    };
    axum::Router::new()
        .route("/add-checkpoint", axum::routing::post(add))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_add_checkpoint_body_round_trips_and_malformed_ones_are_400() {
        let body = encode_add_checkpoint(7, &[[1; 32], [2; 32]], "o\n1\nAAAA\n\n— o x\n");
        let parsed = parse_add_checkpoint(&body).unwrap();
        assert_eq!(
            (parsed.old, parsed.proof, parsed.checkpoint),
            (7, vec![[1; 32], [2; 32]], b"o\n1\nAAAA\n\n\xe2\x80\x94 o x\n".to_vec())
        );
        for bad in [&b"old 07\n\nx"[..], b"old -1\n\nx", b"new 1\n\nx", b"old 1\nnot base64!\n\nx", b"old 1\n"] {
            assert!(
                matches!(parse_add_checkpoint(bad), Err(Refusal::BadRequest(_))),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let too_long = encode_add_checkpoint(1, &[[0; 32]; 64], "x");
        assert!(matches!(parse_add_checkpoint(&too_long), Err(Refusal::BadRequest(_))));
        assert!(parse_add_checkpoint(&encode_add_checkpoint(1, &[[0; 32]; 63], "x")).is_ok());
    }
}
