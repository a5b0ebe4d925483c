//! `GET /alerts?after=<id>`: the alerts with an id above `after` (default 0), oldest
//! first, at most [`PAGE`] per answer (`more` says whether to ask again), each
//! record with its receipt. Desks only ([`AuthenticatedDesk`]; 401 before anything
//! else is read); a bad query is a 400 with a JSON error.

use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use resetdesk::upstream::alerts::PAGE;

use super::AlertStore;
use crate::api::{with, AppState};
use crate::desk_auth::AuthenticatedDesk;
use crate::store::LogStore;
use crate::wire::ErrorBody;

/// The alert routes, to merge into the collector's router.
pub fn routes<S: LogStore + AlertStore + 'static>(state: Arc<AppState<S>>) -> Router {
    Router::new().route("/alerts", get(list_alerts::<S>)).with_state(state)
}

fn bad_request(message: String) -> Response {
    (StatusCode::BAD_REQUEST, Json(ErrorBody { error: "bad_request".into(), message, seq: None })).into_response()
}

/// `after` from the query: absent or `after=<decimal id>`, nothing else.
pub fn parse_after(query: Option<&str>) -> Result<u64, String> {
    let Some(q) = query.filter(|q| !q.is_empty()) else { return Ok(0) };
    let mut after = None;
    for pair in q.split('&') {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        if name != "after" {
            return Err("the only parameter is after=<alert id>".into());
        }
        if after.is_some() {
            return Err("give after once".into());
        }
        let ok = !value.is_empty() && value.len() <= 20 && value.bytes().all(|b| b.is_ascii_digit());
        after = Some(
            ok.then(|| value.parse::<u64>().ok())
                .flatten()
                .ok_or_else(|| "after must be an alert id: a decimal number".to_owned())?,
        );
    }
    Ok(after.unwrap_or(0))
}

async fn list_alerts<S: LogStore + AlertStore + 'static>(
    _desk: AuthenticatedDesk,
    State(state): State<Arc<AppState<S>>>,
    RawQuery(query): RawQuery,
) -> Response {
    let after = match parse_after(query.as_deref()) {
        Ok(a) => a,
        Err(m) => return bad_request(m),
    };
    match with(state, move |c| super::list(c.store(), after, PAGE)).await {
        Err(r) => r.into_response(),
        Ok(Err(e)) => crate::api::Unavailable(e.to_string()).into_response(),
        Ok(Ok(list)) => Json(list).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_after;

    #[test]
    fn after_is_one_decimal_id_or_nothing() {
        assert_eq!(parse_after(None), Ok(0));
        assert_eq!(parse_after(Some("")), Ok(0));
        assert_eq!(parse_after(Some("after=17")), Ok(17));
        for bad in [
            "after=",
            "after=-1",
            "after=1e3",
            "after=0x10",
            "after=99999999999999999999999",
            "x=1",
            "after=1&after=2",
            "after=%31",
        ] {
            assert!(parse_after(Some(bad)).is_err(), "{bad}");
        }
    }
}
