//! The HTTPS API (axum), over a [`Collector`] behind one lock. Handlers run the
//! collector's (blocking, SQLite) work on the blocking pool. `POST /add-records`
//! decodes and prechecks its batch (signatures included) with the collector's
//! [`Prechecker`] before it takes the lock, so requests verify on every core at once;
//! under the lock only the in-order decisions, the store and the receipts remain.
//!
//! - `POST /add-records`: a desk's batch ([`crate::wire`]); 200 with receipts, or a
//!   typed JSON error.
//! - `GET /checkpoint`: the latest signed checkpoint (C2SP tlog-checkpoint note),
//!   with the cosignature lines of the witnesses that cosigned it.
//! - `GET /tile/<L>/<N>[.p/<W>]`, `GET /tile/entries/<N>[.p/<W>]`: C2SP tlog-tiles.
//! - `GET /proof/inclusion?hash=<hex|base64>[&size=N]`, `GET /proof/consistency?old=M&new=N`.
//! - `GET /verifier-key`: the checkpoint key's verifier key string.
//! - `GET /desk/whoami`: the name of the desk whose key the request presents
//!   ([`crate::desk_auth`]); how a desk checks its `[collector] desk_key_file`.
//! - `POST /history`, `GET`/`POST /report/<token>`: cross-desk history and "this
//!   wasn't me" ([`crate::history::api`]).

use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;

use crate::alerts::AlertStore;
use crate::desk_auth::{DeskKeyFile, HasDeskKeys};
use crate::history::store::HistoryStore;
use crate::ingest::{Collector, IngestError, Prechecker, ReadError};
use crate::store::LogStore;
use crate::wire::{self, ErrorBody};

/// Shared state: the collector, its lock-free prechecker, and the body limit.
pub struct AppState<S: LogStore> {
    pub collector: Mutex<Collector<S>>,
    pub prechecker: Arc<Prechecker>,
    pub max_body_bytes: usize,
    /// Woken after a batch grew the tree (the witnessing task submits then).
    pub checkpoint_signed: tokio::sync::Notify,
    /// The desks allowed to call the desk services.
    pub desk_keys: DeskKeyFile,
    /// Cross-desk history and "this wasn't me" reports (`[history]`).
    pub history: crate::history::api::HistoryServices,
}

impl<S: LogStore> HasDeskKeys for AppState<S> {
    fn desk_keys(&self) -> &DeskKeyFile {
        &self.desk_keys
    }
}

impl<S: LogStore> AppState<S> {
    pub fn new(collector: Collector<S>, max_body_bytes: usize) -> Self {
        Self {
            prechecker: collector.prechecker(),
            collector: Mutex::new(collector),
            max_body_bytes,
            checkpoint_signed: tokio::sync::Notify::new(),
            desk_keys: DeskKeyFile::none(),
            history: crate::history::api::HistoryServices::default(),
        }
    }

    /// The `[history]` settings (defaults otherwise).
    pub fn with_history(mut self, config: crate::history::HistoryConfig) -> Self {
        self.history = crate::history::api::HistoryServices::new(config);
        self
    }

    /// The desks allowed to call the desk services (none by default).
    pub fn with_desk_keys(mut self, keys: DeskKeyFile) -> Self {
        self.desk_keys = keys;
        self
    }
}

pub fn router<S: LogStore + HistoryStore + AlertStore + 'static>(state: Arc<AppState<S>>) -> Router {
    let limit = state.max_body_bytes;
    Router::new()
        .route("/add-records", post(add_records::<S>))
        .route("/checkpoint", get(checkpoint::<S>))
        .route("/tile/{*path}", get(tile::<S>))
        .route("/proof/inclusion", get(inclusion::<S>))
        .route("/proof/consistency", get(consistency::<S>))
        .route("/verifier-key", get(verifier_key::<S>))
        .route("/desk/whoami", get(whoami))
        .merge(crate::history::api::routes::<S>())
        // Bodies over the limit are refused before they are read in full.
        .layer(axum::extract::DefaultBodyLimit::max(limit))
        .with_state(state)
}

fn error(status: StatusCode, code: &str, message: String, seq: Option<u64>) -> Response {
    (status, Json(ErrorBody { error: code.to_owned(), message, seq })).into_response()
}

fn unavailable(e: impl std::fmt::Display) -> Response {
    tracing::error!("collector unavailable: {e}");
    error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", e.to_string(), None)
}

/// The collector could not run a request (its lock poisoned by a panic, or the
/// blocking task lost): answered 503.
pub(crate) struct Unavailable(pub(crate) String);

impl IntoResponse for Unavailable {
    fn into_response(self) -> Response {
        unavailable(self.0)
    }
}

/// Run `f` on the collector on the blocking pool.
pub(crate) async fn with<S: LogStore + 'static, T: Send + 'static>(
    state: Arc<AppState<S>>,
    f: impl FnOnce(&mut Collector<S>) -> T + Send + 'static,
) -> Result<T, Unavailable> {
    tokio::task::spawn_blocking(move || locked(&state, f)).await.map_err(|e| Unavailable(e.to_string()))?
}

/// Run `f` on the collector under its lock, on this thread.
fn locked<S: LogStore, T>(state: &AppState<S>, f: impl FnOnce(&mut Collector<S>) -> T) -> Result<T, Unavailable> {
    let mut c = state.collector.lock().map_err(|_| Unavailable("the collector lock is poisoned; restart it".into()))?;
    if let Err(e) = c.store_mut().reconnect_if_lost() {
        tracing::error!("{e}");
    }
    Ok(f(&mut c))
}

/// What `/add-records` does under the collector's lock with a body prechecked
/// outside it: decide and store the batch (the anomaly rules watching), then bring
/// the account index up to the log. (Public for the ingest benchmark, which measures
/// exactly this.)
pub fn ingest_locked<S: LogStore + HistoryStore>(
    c: &mut Collector<S>,
    body: &[u8],
    prepared: Result<crate::ingest::Prepared, crate::ingest::Rejection>,
    now_ms: u64,
) -> Result<crate::ingest::Ingested, IngestError> {
    // A core of its own while it sequences (other requests' prechecks wait for it).
    let prechecker = c.prechecker();
    let core = prechecker.sequencing();
    // One store transaction for all of it (SQLite): one disk sync, and the batch, its
    // checkpoint, its alerts, the anomaly rules' memory and the index kept together.
    c.begin_unit()?;
    let ingested = c.ingest_prepared(body, prepared, now_ms);
    // The account index follows the stored batch (and catches up if this fails).
    match &ingested {
        Ok(crate::ingest::Ingested { account_rows: Some((leaves, rows)), .. }) => {
            crate::history::after_indexed_batch(c.store_mut(), leaves.clone(), rows);
        }
        Ok(_) => crate::history::after_batch(c.store_mut()),
        Err(_) => {}
    }
    // The commit mostly waits for the disk: the core goes back to the prechecks.
    drop(core);
    match (c.commit_unit(), ingested) {
        (Ok(()), ingested) => ingested,
        // Nothing of the batch was kept: the desk sends it again.
        (Err(e), Ok(_)) => Err(e.into()),
        (Err(e), Err(refused)) => {
            tracing::error!("the record of a refused batch could not be kept: {e}");
            Err(refused)
        }
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

async fn add_records<S: LogStore + HistoryStore + 'static>(
    State(state): State<Arc<AppState<S>>>,
    body: Body,
) -> Response {
    let limit = state.max_body_bytes;
    let bytes: Bytes = match axum::body::to_bytes(body, limit).await {
        Ok(b) => b,
        Err(_) => {
            let msg = format!("the request body exceeds {limit} bytes; send fewer records per batch");
            let at = now_ms();
            let alert = crate::store::Alert {
                at_ms: at,
                log_id: None,
                seq: None,
                kind: "batch_too_large".into(),
                reason: msg.clone(),
            };
            tracing::warn!(kind = "batch_too_large", "rejected: {msg}");
            let _ = with(Arc::clone(&state), move |c| c.record_alert(&alert)).await;
            return error(StatusCode::PAYLOAD_TOO_LARGE, "batch_too_large", msg, None);
        }
    };
    // Precheck outside the lock (in parallel with other requests), decide under it.
    let worker = Arc::clone(&state);
    let ingested = tokio::task::spawn_blocking(move || {
        let prepared = worker.prechecker.prepare(&bytes);
        locked(&worker, move |c| ingest_locked(c, &bytes, prepared, now_ms()))
            .map(|r| r.and_then(|ingested| Ok(worker.prechecker.respond(ingested)?)))
    })
    .await
    .map_err(|e| Unavailable(e.to_string()))
    .and_then(|r| r);
    match ingested {
        Err(r) => r.into_response(),
        Ok(Ok(answer)) => {
            state.checkpoint_signed.notify_one();
            ([(axum::http::header::CONTENT_TYPE, "application/json")], answer).into_response()
        }
        Ok(Err(IngestError::Rejected(r))) => {
            let status = StatusCode::from_u16(r.kind.status()).unwrap_or(StatusCode::BAD_REQUEST);
            error(status, r.kind.code(), r.message, r.seq)
        }
        Ok(Err(e)) => unavailable(e),
    }
}

fn read_error(e: ReadError) -> Response {
    match e {
        ReadError::BadRequest(m) => error(StatusCode::BAD_REQUEST, "bad_request", m, None),
        ReadError::NotFound(m) => error(StatusCode::NOT_FOUND, "not_found", m, None),
        ReadError::Store(e) => unavailable(e),
    }
}

async fn checkpoint<S: LogStore + 'static>(State(state): State<Arc<AppState<S>>>) -> Response {
    // The signed checkpoint with the witnesses' cosignatures of it.
    let cosigned = |c: &mut Collector<S>| -> Result<String, crate::store::StoreError> {
        let (size, mut note) = c.checkpoint()?;
        for line in c.store().cosignatures(size)? {
            note.push_str(&line);
        }
        Ok(note)
    };
    match with(state, cosigned).await {
        Err(r) => r.into_response(),
        Ok(Err(e)) => unavailable(e),
        Ok(Ok(note)) => {
            let mut r = note.into_response();
            r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
            r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            r
        }
    }
}

async fn tile<S: LogStore + 'static>(State(state): State<Arc<AppState<S>>>, Path(path): Path<String>) -> Response {
    let full = format!("tile/{path}");
    match with(state, move |c| c.tile(&full)).await {
        Err(r) => r.into_response(),
        Ok(Err(e)) => read_error(e),
        Ok(Ok(data)) => {
            let mut r = data.into_response();
            r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
            r.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=31536000, immutable"));
            r
        }
    }
}

#[derive(Deserialize)]
struct InclusionQuery {
    hash: String,
    size: Option<u64>,
}

async fn inclusion<S: LogStore + 'static>(
    State(state): State<Arc<AppState<S>>>,
    Query(q): Query<InclusionQuery>,
) -> Response {
    let Some(hash) = wire::parse_hash(&q.hash) else {
        return error(StatusCode::BAD_REQUEST, "bad_request", "hash must be 32 bytes as hex or base64".into(), None);
    };
    match with(state, move |c| c.inclusion(&hash, q.size)).await {
        Err(r) => r.into_response(),
        Ok(Err(e)) => read_error(e),
        Ok(Ok(p)) => Json(p).into_response(),
    }
}

#[derive(Deserialize)]
struct ConsistencyQuery {
    old: u64,
    new: u64,
}

async fn consistency<S: LogStore + 'static>(
    State(state): State<Arc<AppState<S>>>,
    Query(q): Query<ConsistencyQuery>,
) -> Response {
    match with(state, move |c| c.consistency(q.old, q.new)).await {
        Err(r) => r.into_response(),
        Ok(Err(e)) => read_error(e),
        Ok(Ok(p)) => Json(p).into_response(),
    }
}

async fn verifier_key<S: LogStore + 'static>(State(state): State<Arc<AppState<S>>>) -> Response {
    match with(state, |c| c.verifier_key().to_owned()).await {
        Err(r) => r.into_response(),
        Ok(k) => format!("{k}\n").into_response(),
    }
}

async fn whoami(desk: crate::desk_auth::AuthenticatedDesk) -> Response {
    Json(serde_json::json!({ "desk": desk.0 })).into_response()
}
