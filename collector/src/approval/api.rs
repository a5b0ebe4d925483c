//! The approval routes:
//!
//! - `POST /approvals` (desk key): register a request ([`RegisterApproval`]); 200
//!   [`Registered`], 400 for a bad field, 409 when the request was denied (it ended),
//!   belongs to another desk, or the token hash is another request's.
//! - `GET /approvals/<request id>` (desk key, only the desk that registered it):
//!   [`ApprovalStatus`]; 404 otherwise.
//! - `GET /approve/<token>`: the page for the manager; 404 unknown, 410 expired, 409
//!   answered, 429 over the rate limit.
//! - `POST /approve/<token>` (`decision=approve` or `decision=deny`): the decision,
//!   once; the same refusals.
//!
//! Bodies over [`MAX_BODY`] are refused with 413 before they are read in full.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::{
    page, ApprovalConfig, ApprovalRow, ApprovalStatus, ApprovalStore, DecisionStatement, RegisterApproval, Registered,
    DENIED_ALERT, REFUSED_ALERT,
};
use crate::api::{with, AppState};
use crate::desk_auth::{AuthenticatedDesk, DeskKeyFile, HasDeskKeys};
use crate::rate_limit::{Limited, RateLimiter};
use crate::store::{Alert, LogStore, StoreError};
use crate::wire::ErrorBody;

/// Largest request body of the approval routes (a registration is well under 8 KiB).
pub const MAX_BODY: usize = 16 * 1024;

/// The approval routes' state: the collector's, the settings and the page's rate limiter.
pub struct ApprovalService<S: LogStore> {
    app: Arc<AppState<S>>,
    config: ApprovalConfig,
    limiter: RateLimiter,
}

impl<S: LogStore> HasDeskKeys for ApprovalService<S> {
    fn desk_keys(&self) -> &DeskKeyFile {
        self.app.desk_keys()
    }
}

/// The approval routes over the collector of `app` (merge into [`crate::api::router`];
/// serve with `into_make_service_with_connect_info::<SocketAddr>` for the rate limit).
pub fn router<S: LogStore + ApprovalStore + 'static>(app: Arc<AppState<S>>, config: ApprovalConfig) -> Router {
    let limiter = RateLimiter::new(config.per_client, config.overall, Instant::now());
    let service = Arc::new(ApprovalService { app, config, limiter });
    Router::new()
        .route("/approvals", post(register::<S>))
        .route("/approvals/{request_id}", get(status::<S>))
        .route("/approve/{token}", get(ask::<S>).post(decide::<S>))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .with_state(service)
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn time_of(ms: u64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

fn rfc3339(ms: u64) -> String {
    time_of(ms).format(&Rfc3339).unwrap_or_default()
}

fn json_error(status: StatusCode, code: &str, message: String) -> Response {
    (status, Json(ErrorBody { error: code.to_owned(), message, seq: None })).into_response()
}

fn unavailable(e: impl std::fmt::Display) -> Response {
    tracing::error!("approval service unavailable: {e}");
    json_error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", e.to_string())
}

/// The token in a link: 32 hex digits (128 bits), any case; its SHA-256 as the desk
/// computed it (over the lowercase hex).
fn token_hash(token: &str) -> Option<[u8; 32]> {
    let ok = token.len() == 32 && token.bytes().all(|b| b.is_ascii_hexdigit());
    ok.then(|| Sha256::digest(token.to_ascii_lowercase().as_bytes()).into())
}

enum Registration {
    Stored,
    Denied,
    OtherDesk,
    TokenReused,
}

async fn register<S: LogStore + ApprovalStore + 'static>(
    State(service): State<Arc<ApprovalService<S>>>,
    AuthenticatedDesk(desk): AuthenticatedDesk,
    body: Bytes,
) -> Response {
    let request: RegisterApproval = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return json_error(StatusCode::BAD_REQUEST, "bad_request", format!("not a registration: {e}")),
    };
    let token_hash = match request.check() {
        Ok(h) => h,
        Err(e) => return json_error(StatusCode::BAD_REQUEST, "bad_field", e.to_string()),
    };
    let now = now_ms();
    let row = ApprovalRow {
        request_id: request.request_id,
        desk,
        token_hash,
        manager: request.manager,
        address: request.address,
        agent: request.agent,
        agent_name: request.agent_name,
        agent_employee_id: request.agent_employee_id,
        account: request.account,
        account_name: request.account_name,
        reasons: request.reasons,
        created_ms: now,
        expires_ms: now.saturating_add(service.config.ttl_ms()),
        decision: None,
        decided_ms: None,
        note: None,
    };
    let (request_id, expires_ms) = (row.request_id.clone(), row.expires_ms);
    let stored = with(Arc::clone(&service.app), move |c| -> Result<Registration, StoreError> {
        if let Some(other) = c.store().approval_by_token(&row.token_hash)? {
            if other.request_id != row.request_id {
                return Ok(Registration::TokenReused);
            }
        }
        if c.store_mut().register_approval(&row)? {
            return Ok(Registration::Stored);
        }
        match c.store().approval_by_request(&row.request_id)? {
            Some(existing) if existing.desk != row.desk => {
                let reason = format!(
                    "desk {} tried to register approval request {} of desk {}",
                    row.desk, row.request_id, existing.desk
                );
                tracing::warn!(kind = REFUSED_ALERT, "{reason}");
                let alert = Alert { at_ms: now, log_id: None, seq: None, kind: REFUSED_ALERT.into(), reason };
                c.record_alert(&alert)?;
                Ok(Registration::OtherDesk)
            }
            _ => Ok(Registration::Denied),
        }
    })
    .await;
    match stored {
        Err(e) => e.into_response(),
        Ok(Err(e)) => unavailable(e),
        Ok(Ok(Registration::Stored)) => {
            Json(Registered { request_id, expires_at: rfc3339(expires_ms) }).into_response()
        }
        Ok(Ok(Registration::Denied)) => json_error(
            StatusCode::CONFLICT,
            "approval_denied",
            "the manager denied this request, which ended it; start a new request".into(),
        ),
        Ok(Ok(Registration::OtherDesk)) => json_error(
            StatusCode::CONFLICT,
            "conflict",
            "another desk registered this request id; start a new request".into(),
        ),
        Ok(Ok(Registration::TokenReused)) => json_error(
            StatusCode::CONFLICT,
            "token_reused",
            "that token hash belongs to another request; make a new token".into(),
        ),
    }
}

async fn status<S: LogStore + ApprovalStore + 'static>(
    State(service): State<Arc<ApprovalService<S>>>,
    AuthenticatedDesk(desk): AuthenticatedDesk,
    Path(request_id): Path<String>,
) -> Response {
    if !resetdesk::upstream::approval_wire::is_identifier(&request_id) {
        return json_error(StatusCode::BAD_REQUEST, "bad_request", "not a request id".into());
    }
    let found = with(Arc::clone(&service.app), move |c| c.store().approval_by_request(&request_id)).await;
    let row = match found {
        Err(e) => return e.into_response(),
        Ok(Err(e)) => return unavailable(e),
        Ok(Ok(row)) => row,
    };
    // Another desk's request is as unknown as a missing one.
    let Some(row) = row.filter(|r| r.desk == desk) else {
        return json_error(StatusCode::NOT_FOUND, "not_found", "no approval request of this desk by that id".into());
    };
    let status = match (&row.note, row.decision) {
        (Some(note), Some(_)) => ApprovalStatus::Decided { note: note.clone() },
        _ if now_ms() >= row.expires_ms => ApprovalStatus::Expired { expires_at: rfc3339(row.expires_ms) },
        _ => ApprovalStatus::Pending { expires_at: rfc3339(row.expires_ms) },
    };
    Json(status).into_response()
}

fn too_many(limited: Limited) -> Response {
    let mut r = page::refused(
        StatusCode::TOO_MANY_REQUESTS,
        "Too many attempts",
        "This page was asked for too often. Wait a minute, then open the link from the e-mail again.",
    );
    if let Ok(v) = HeaderValue::from_str(&limited.retry_after_secs().to_string()) {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}

fn unknown_link() -> Response {
    page::refused(
        StatusCode::NOT_FOUND,
        "This approval link is not valid",
        "Check that the whole link from the e-mail was opened. If it was, the desk asked again with a new link.",
    )
}

fn page_unavailable(e: impl std::fmt::Display) -> Response {
    tracing::error!("approval page unavailable: {e}");
    page::refused(
        StatusCode::SERVICE_UNAVAILABLE,
        "The approval service is unavailable",
        "Nothing was recorded. Try again in a few minutes.",
    )
}

/// Why a link cannot be answered now, if it cannot.
fn closed(row: &ApprovalRow, now: u64) -> Option<Response> {
    if let Some(approved) = row.decision {
        let what = if approved { "approved" } else { "denied" };
        let at = row.decided_ms.map(rfc3339).unwrap_or_default();
        return Some(page::refused(
            StatusCode::CONFLICT,
            "This request was already answered",
            &format!("It was {what} at {at}. A link works once."),
        ));
    }
    (now >= row.expires_ms).then(|| {
        page::refused(
            StatusCode::GONE,
            "This approval link has expired",
            "Nothing was recorded. If the request is still wanted, the service desk must ask again.",
        )
    })
}

/// The row of the token `hash`, compared once more in constant time.
fn by_token<S: ApprovalStore>(store: &S, hash: &[u8; 32]) -> Result<Option<ApprovalRow>, StoreError> {
    let row = store.approval_by_token(hash)?;
    Ok(row.filter(|r| bool::from(r.token_hash.as_slice().ct_eq(hash))))
}

async fn ask<S: LogStore + ApprovalStore + 'static>(
    State(service): State<Arc<ApprovalService<S>>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(token): Path<String>,
) -> Response {
    if let Err(limited) = service.limiter.check(peer.ip(), Instant::now()) {
        return too_many(limited);
    }
    let Some(hash) = token_hash(&token) else { return unknown_link() };
    let found = with(Arc::clone(&service.app), move |c| by_token(c.store(), &hash)).await;
    let row = match found {
        Err(e) => return page_unavailable(e.0),
        Ok(Err(e)) => return page_unavailable(e),
        Ok(Ok(None)) => return unknown_link(),
        Ok(Ok(Some(row))) => row,
    };
    if let Some(refusal) = closed(&row, now_ms()) {
        return refusal;
    }
    page::ask(&row, &format!("/approve/{}", token.to_ascii_lowercase()))
}

enum Decided {
    Recorded(Box<ApprovalRow>, bool),
    Unknown,
    Closed(Box<ApprovalRow>),
}

async fn decide<S: LogStore + ApprovalStore + 'static>(
    State(service): State<Arc<ApprovalService<S>>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(token): Path<String>,
    body: Bytes,
) -> Response {
    if let Err(limited) = service.limiter.check(peer.ip(), Instant::now()) {
        return too_many(limited);
    }
    let Some(hash) = token_hash(&token) else { return unknown_link() };
    let approved = match std::str::from_utf8(&body).map(str::trim) {
        Ok("decision=approve") => true,
        Ok("decision=deny") => false,
        _ => {
            return page::refused(
                StatusCode::BAD_REQUEST,
                "No decision was sent",
                "Use the Approve or Deny button on the approval page.",
            )
        }
    };
    let decided = with(Arc::clone(&service.app), move |c| -> Result<Decided, String> {
        let Some(row) = by_token(c.store(), &hash).map_err(|e| e.to_string())? else { return Ok(Decided::Unknown) };
        let now = now_ms();
        if row.decision.is_some() || now >= row.expires_ms {
            return Ok(Decided::Closed(Box::new(row)));
        }
        let statement = DecisionStatement {
            request_id: row.request_id.clone(),
            token_sha256: hash,
            approved,
            manager: row.manager.clone(),
            address: row.address.clone(),
            desk: row.desk.clone(),
            decided_at: time_of(now),
        };
        let note = c.log_key().sign_note(&statement.to_text()).map_err(|e| e.to_string())?;
        if !c.store_mut().decide_approval(&hash, approved, &note, now).map_err(|e| e.to_string())? {
            // Another answer (on this or another instance) came first, or it expired.
            let now_row = by_token(c.store(), &hash).map_err(|e| e.to_string())?;
            return Ok(now_row.map_or(Decided::Unknown, |r| Decided::Closed(Box::new(r))));
        }
        if !approved {
            let reason = format!(
                "manager {} ({}) denied the password reset of {} asked by {} at desk {} (request {})",
                row.manager, row.address, row.account, row.agent, row.desk, row.request_id
            );
            tracing::warn!(kind = DENIED_ALERT, "{reason}");
            let alert = Alert { at_ms: now, log_id: None, seq: None, kind: DENIED_ALERT.into(), reason };
            // The decision stands either way; a lost alert row is logged loudly.
            if let Err(e) = c.record_alert(&alert) {
                tracing::error!("the approval-denied alert was not stored: {e}");
            }
        }
        Ok(Decided::Recorded(Box::new(row), approved))
    })
    .await;
    match decided {
        Err(e) => page_unavailable(e.0),
        Ok(Err(e)) => page_unavailable(e),
        Ok(Ok(Decided::Unknown)) => unknown_link(),
        Ok(Ok(Decided::Closed(row))) => closed(&row, now_ms()).unwrap_or_else(unknown_link),
        Ok(Ok(Decided::Recorded(row, approved))) => page::decided(&row, approved),
    }
}
