//! "This wasn't me": the holder of an account follows the link of their reset mail
//! (`/report/<token>`), sees which reset it is about, and reports it.
//!
//! The token (128 random bits as 32 hex digits, made by the desk) is never stored:
//! the reset's signed outcome record carries its SHA-256, which the account index
//! keeps beside the reset. A link works once ([`HistoryStore::take_report`]), for
//! `report_valid_hours` after the reset. A report raises an alert (`not-me-report`,
//! [`AlertStore::raise_alert`]: listed by `GET /alerts` with its records' receipts and
//! mailed to the security address) standing on the reset's records (outcome and
//! intent), whose reason also names them with their entry hashes and receipts at the
//! time of the report; and it flags the account if configured, so the next cross-desk
//! answer carries the flag.
//!
//! The pages are HTML without script or style, every value escaped, behind a strict
//! Content-Security-Policy (see [`super::api`]).

use resetdesk::account_events::report_token_sha256;
use resetdesk::audit::event::parse_payload;
use resetdesk::audit::Record;
use subtle::ConstantTimeEq as _;

use super::store::{AccountFlag, HistoryStore, IndexRow};
use super::HistoryConfig;
use crate::alerts::AlertStore;
use crate::anomaly::facts::RecordRef;
use crate::ingest::Collector;
use crate::store::{Alert, LogStore, StoreError};

/// The alert kind a report raises.
pub const ALERT_KIND: &str = "not-me-report";
/// Hex digits of a token.
const TOKEN_HEX: usize = 32;

/// The reset a link is about, as the page shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportedReset {
    pub account: String,
    pub at: time::OffsetDateTime,
    pub request_id: String,
    pub desk_log: String,
    pub row: IndexRow,
}

/// What a link leads to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkState {
    /// Unknown or malformed: nothing is told about it.
    Unknown,
    Expired(ReportedReset),
    /// Already reported (the link is single use).
    Used(ReportedReset),
    Open(ReportedReset),
}

/// The hash a well-formed token stands for (32 lower-case hex digits), else `None`.
pub fn token_hash(token: &str) -> Option<String> {
    let well_formed = token.len() == TOKEN_HEX && token.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    well_formed.then(|| report_token_sha256(token))
}

/// What `token` leads to at `now_ms`.
pub fn look_up<S: HistoryStore + ?Sized>(
    store: &S,
    token: &str,
    now_ms: u64,
    config: &HistoryConfig,
) -> Result<LinkState, StoreError> {
    let Some(hash) = token_hash(token) else { return Ok(LinkState::Unknown) };
    let Some(row) = store.reset_by_report(&hash)? else { return Ok(LinkState::Unknown) };
    // The row was found by the hash; compare it again in constant time, so the
    // decision never depends on how much of it matched.
    let stored = row.report_sha256().unwrap_or_default();
    if !bool::from(stored.as_bytes().ct_eq(hash.as_bytes())) {
        return Ok(LinkState::Unknown);
    }
    let reset = ReportedReset {
        account: row.event.account.clone(),
        at: row.event.at,
        request_id: row.event.request_id.clone(),
        desk_log: hex::encode(row.log_id),
        row,
    };
    let valid_ms = u64::from(config.report_valid_hours) * 3_600_000;
    if store.report_made(&hash)? {
        return Ok(LinkState::Used(reset));
    }
    if reset.row.at_ms().saturating_add(valid_ms) <= now_ms {
        return Ok(LinkState::Expired(reset));
    }
    Ok(LinkState::Open(reset))
}

/// Make the report `token` allows: single use, then the alert and the configured
/// response. Returns the link's state before (only `Open` made a report).
pub fn make_report<S: LogStore + HistoryStore + AlertStore>(
    c: &mut Collector<S>,
    token: &str,
    now_ms: u64,
    config: &HistoryConfig,
) -> Result<LinkState, StoreError> {
    let state = look_up(c.store(), token, now_ms, config)?;
    let LinkState::Open(reset) = &state else { return Ok(state) };
    let hash = reset.row.report_sha256().unwrap_or_default().to_owned();
    if !c.store_mut().take_report(&hash, now_ms)? {
        return Ok(LinkState::Used(reset.clone()));
    }
    let response = match config.flag_account_to.tier() {
        Some(tier) => {
            let until_ms = now_ms.saturating_add(u64::from(config.flag_days) * 86_400_000);
            let reason = format!(
                "the holder reported a reset they did not ask for (request {}); the next reset needs the {} tier",
                reset.request_id,
                tier.as_str()
            );
            c.store_mut().set_flag(&AccountFlag { username: reset.account.clone(), tier, reason, until_ms })?;
            format!(
                "account flagged: its next reset at any desk needs the {} tier for {} days",
                tier.as_str(),
                config.flag_days
            )
        }
        None => "no automatic response configured".to_owned(),
    };
    let records = reset_records(c, reset);
    let alert = Alert {
        at_ms: now_ms,
        log_id: Some(reset.row.log_id),
        seq: Some(reset.row.seq),
        kind: ALERT_KIND.to_owned(),
        reason: alert_reason(c, reset, &records, &response),
    };
    tracing::warn!(kind = ALERT_KIND, account = %reset.account, "the holder reported a reset: {response}");
    let refs: Vec<RecordRef> = records.iter().map(|(r, _)| *r).collect();
    c.store_mut().raise_alert(&alert, &refs)?;
    Ok(state)
}

/// The reset's records: its outcome, and the intent the outcome closes.
fn reset_records<S: LogStore + HistoryStore>(
    c: &Collector<S>,
    reset: &ReportedReset,
) -> Vec<(RecordRef, &'static str)> {
    let row = &reset.row;
    let mut records = vec![(RecordRef { log_id: row.log_id, seq: row.seq, entry_hash: row.entry_hash }, "outcome")];
    let intent = c
        .store()
        .leaf_record(row.leaf_index)
        .ok()
        .flatten()
        .and_then(|bytes| Record::decode(&bytes).ok())
        .and_then(|r| parse_payload(r.event_type, &r.payload).ok())
        .and_then(|p| p.intent);
    if let Some(intent) = intent {
        records.push((RecordRef { log_id: row.log_id, seq: intent.seq, entry_hash: intent.entry_hash }, "intent"));
    }
    records
}

/// The alert's text: the reset and its records (outcome, and the intent it closes),
/// each with its entry hash, leaf index and receipt (inclusion proof in the current
/// signed checkpoint), as JSON. (`GET /alerts` lists the same records with receipts.)
fn alert_reason<S: LogStore + HistoryStore>(
    c: &Collector<S>,
    reset: &ReportedReset,
    records: &[(RecordRef, &'static str)],
    response: &str,
) -> String {
    let records: Vec<serde_json::Value> = records
        .iter()
        .map(|(r, role)| {
            let receipt = c.inclusion(&r.entry_hash, None).ok().and_then(|p| serde_json::to_value(p).ok());
            serde_json::json!({
                "role": role,
                "desk_log": hex::encode(r.log_id),
                "seq": r.seq,
                "entry_hash": hex::encode(r.entry_hash),
                "receipt": receipt,
            })
        })
        .collect();
    serde_json::json!({
        "summary": format!("the holder of {} reported the reset of request {} as not theirs", reset.account, reset.request_id),
        "account": reset.account,
        "request_id": reset.request_id,
        "reset_at": reset.at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
        "records": records,
        "response": response,
    })
    .to_string()
}

/// HTML-escape text for element content and attribute values: the core's one escape,
/// as the mails' HTML and the approval pages use.
pub use resetdesk::desk::mailer::escape_html as escape;

fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"referrer\" content=\"no-referrer\"><title>{t}</title></head>\
         <body><main><h1>{t}</h1>{body}</main></body></html>\n",
        t = escape(title)
    )
}

fn describe(reset: &ReportedReset) -> String {
    let at = reset.at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
    format!(
        "<dl><dt>Account</dt><dd>{}</dd><dt>Reset at</dt><dd>{}</dd><dt>Request</dt><dd>{}</dd>\
         <dt>Desk log</dt><dd>{}</dd></dl>",
        escape(&reset.account),
        escape(&at),
        escape(&reset.request_id),
        escape(reset.desk_log.get(..16).unwrap_or(&reset.desk_log)),
    )
}

/// The page `GET /report/<token>` shows, with its HTTP status.
pub fn link_page(state: &LinkState, token: &str) -> (u16, String) {
    match state {
        LinkState::Unknown => (
            404,
            page(
                "Link not valid",
                "<p>This link is not valid. If you did not ask for a password reset, call your security team.</p>",
            ),
        ),
        LinkState::Expired(r) => (
            410,
            page(
                "Link expired",
                &format!(
                    "{}<p>This link has expired. If you did not ask for this reset, call your security team at once.</p>",
                    describe(r)
                ),
            ),
        ),
        LinkState::Used(r) => (
            410,
            page(
                "Already reported",
                &format!("{}<p>This reset was already reported. The security team has been alerted.</p>", describe(r)),
            ),
        ),
        LinkState::Open(r) => (
            200,
            page(
                "Did you ask for this password reset?",
                &format!(
                    "{}<p>If you did not ask for this reset, report it: the security team is alerted at once and \
                     the account needs the strictest checks at its next reset.</p>\
                     <form method=\"post\" action=\"/report/{}\"><button type=\"submit\">This wasn't me: report it</button></form>\
                     <p>If you did ask for it, close this page; nothing else is needed.</p>",
                    describe(r),
                    escape(token)
                ),
            ),
        ),
    }
}

/// The page after `POST /report/<token>`, with its HTTP status.
pub fn reported_page(state: &LinkState) -> (u16, String) {
    match state {
        LinkState::Open(r) => (
            200,
            page(
                "Reported",
                &format!(
                    "{}<p>Thank you. The security team has been alerted. Do not use any code or password you received; \
                     the security team will contact you.</p>",
                    describe(r)
                ),
            ),
        ),
        other => link_page(other, ""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_32_lower_case_hex_digits_are_a_token() {
        assert!(token_hash(&"a".repeat(32)).is_some());
        for bad in ["", "A".repeat(32).as_str(), &"a".repeat(31), &"a".repeat(33), "../../../../etc/passwd", "<script>"]
        {
            assert!(token_hash(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn markup_in_values_is_text() {
        assert_eq!(escape("<b onclick='x'>&\"</b>"), "&lt;b onclick=&#39;x&#39;&gt;&amp;&quot;&lt;/b&gt;");
    }
}
