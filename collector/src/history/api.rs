//! The routes of cross-desk history and "this wasn't me":
//!
//! - `POST /history` (desk key required, [`AuthenticatedDesk`]): a
//!   [`HistoryRequest`] of at most [`MAX_HISTORY_BODY`] bytes; 200 with the
//!   [`resetdesk::upstream::history::SignedHistory`], 400 for a bad request, 401
//!   without a valid desk key, 413 over the size.
//! - `GET /report/<token>`: the page of the reset the link is about (200), or "not
//!   valid" (404), "expired" / "already reported" (410); 429 over the rate limit.
//! - `POST /report/<token>`: report it (the form of that page; no fields), same
//!   statuses; a body over [`MAX_REPORT_BODY`] is 413.
//!
//! Pages are `text/html` with `Content-Security-Policy: default-src 'none';
//! form-action 'self'; frame-ancestors 'none'; base-uri 'none'`, no referrer, no
//! caching.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use resetdesk::upstream::history::HistoryRequest;

use super::rate::RateLimit;
use super::report::{self, link_page, reported_page, token_hash};
use super::store::HistoryStore;
use super::{HistoryConfig, HistoryError};
use crate::alerts::AlertStore;
use crate::api::{with, AppState};
use crate::desk_auth::AuthenticatedDesk;
use crate::store::LogStore;
use crate::wire::ErrorBody;

/// Largest `POST /history` body: a hundred usernames with room to spare.
pub const MAX_HISTORY_BODY: usize = 64 * 1024;
/// Largest `POST /report/<token>` body (the form sends none).
pub const MAX_REPORT_BODY: usize = 4 * 1024;

/// What the history services need beside the collector: their configuration and the
/// report pages' rate limit.
pub struct HistoryServices {
    pub config: HistoryConfig,
    limit: RateLimit,
}

impl HistoryServices {
    pub fn new(config: HistoryConfig) -> Self {
        let limit = RateLimit::per_minute(config.report_requests_per_minute);
        Self { config, limit }
    }
}

impl Default for HistoryServices {
    fn default() -> Self {
        Self::new(HistoryConfig::default())
    }
}

/// The routes, for [`crate::api::router`] to merge.
pub fn routes<S: LogStore + HistoryStore + AlertStore + 'static>() -> Router<Arc<AppState<S>>> {
    Router::new()
        .route("/history", post(history::<S>))
        .route("/report/{token}", get(report_get::<S>).post(report_post::<S>))
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn json_error(status: StatusCode, code: &str, message: String) -> Response {
    (status, Json(ErrorBody { error: code.to_owned(), message, seq: None })).into_response()
}

async fn history<S: LogStore + HistoryStore + 'static>(
    State(state): State<Arc<AppState<S>>>,
    desk: AuthenticatedDesk,
    body: Body,
) -> Response {
    let Ok(bytes) = axum::body::to_bytes(body, MAX_HISTORY_BODY).await else {
        let msg = format!("a history request is at most {MAX_HISTORY_BODY} bytes; ask for fewer accounts");
        return json_error(StatusCode::PAYLOAD_TOO_LARGE, "too_large", msg);
    };
    let request: HistoryRequest = match serde_json::from_slice(&bytes) {
        Ok(r) => r,
        Err(e) => return json_error(StatusCode::BAD_REQUEST, "bad_request", format!("not a history request: {e}")),
    };
    let answered = with(state, move |c| {
        let tree_size = super::catch_up(c.store_mut()).map_err(HistoryError::from)?;
        super::answer(c.store(), c.key(), &request, tree_size, now_ms())
    })
    .await;
    match answered {
        Err(unavailable) => unavailable.into_response(),
        Ok(Ok(signed)) => Json(signed).into_response(),
        Ok(Err(HistoryError::BadRequest(m))) => json_error(StatusCode::BAD_REQUEST, "bad_request", m),
        Ok(Err(e)) => {
            tracing::error!(desk = %desk.0, "history request failed: {e}");
            json_error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", e.to_string())
        }
    }
}

/// An HTML page with the headers every report page carries.
fn html(status: u16, page: String) -> Response {
    crate::pages::secure_html(
        StatusCode::from_u16(status).unwrap_or(StatusCode::OK),
        page,
        "default-src 'none'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    )
}

fn too_many() -> Response {
    html(429, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Too many requests</title></head><body><main><h1>Too many requests</h1><p>Wait a minute and try again.</p></main></body></html>\n".into())
}

fn unavailable_page() -> Response {
    html(503, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Unavailable</title></head><body><main><h1>Unavailable</h1><p>The service is unavailable; try again later or call your security team.</p></main></body></html>\n".into())
}

/// The rate limit's key for a token: its hash (a malformed one shares one key).
fn limit_key(token: &str) -> String {
    token_hash(token).unwrap_or_else(|| "malformed".into())
}

async fn report_get<S: LogStore + HistoryStore + 'static>(
    State(state): State<Arc<AppState<S>>>,
    Path(token): Path<String>,
) -> Response {
    if !state.history.limit.allow(&limit_key(&token)) {
        return too_many();
    }
    let config = state.history.config.clone();
    let shown = token.clone();
    let looked = with(state, move |c| {
        super::catch_up(c.store_mut())?;
        report::look_up(c.store(), &token, now_ms(), &config)
    })
    .await;
    match looked {
        Ok(Ok(link)) => {
            let (status, page) = link_page(&link, &shown);
            html(status, page)
        }
        Ok(Err(e)) => {
            tracing::error!("report page: {e}");
            unavailable_page()
        }
        Err(_) => unavailable_page(),
    }
}

async fn report_post<S: LogStore + HistoryStore + AlertStore + 'static>(
    State(state): State<Arc<AppState<S>>>,
    Path(token): Path<String>,
    body: Body,
) -> Response {
    if !state.history.limit.allow(&limit_key(&token)) {
        return too_many();
    }
    if axum::body::to_bytes(body, MAX_REPORT_BODY).await.is_err() {
        return html(413, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Too large</title></head><body><main><h1>Too large</h1><p>The report form sends no data.</p></main></body></html>\n".into());
    }
    let config = state.history.config.clone();
    let reported = with(state, move |c| {
        super::catch_up(c.store_mut())?;
        report::make_report(c, &token, now_ms(), &config)
    })
    .await;
    match reported {
        Ok(Ok(link)) => {
            let (status, page) = reported_page(&link);
            html(status, page)
        }
        Ok(Err(e)) => {
            tracing::error!("report: {e}");
            unavailable_page()
        }
        Err(_) => unavailable_page(),
    }
}
