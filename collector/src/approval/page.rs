//! The approval pages: plain HTML, no JavaScript, no external resources, every field
//! escaped, sent with a strict Content-Security-Policy (nothing may load but the one
//! inline style block, by its hash; forms post only to this origin), no caching, no
//! framing, and no Referer (the token is in the URL).

use axum::http::StatusCode;
use axum::response::Response;
use sha2::{Digest, Sha256};

use super::ApprovalRow;

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:40rem;margin:2rem auto;padding:0 1rem;\
line-height:1.5;color:#1b1b1b}dt{font-weight:600}dd{margin:0 0 .6rem 0}\
button{font-size:1.1rem;padding:.5rem 1.4rem;margin-right:1rem}.deny{background:#a31515;color:#fff}\
.warn{border-left:4px solid #a31515;padding-left:.8rem}";

pub use resetdesk::desk::mailer::escape_html as escape;

/// The Content-Security-Policy of every approval page.
pub fn content_security_policy() -> String {
    use base64::Engine as _;
    let hash = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(STYLE.as_bytes()));
    format!(
        "default-src 'none'; style-src 'sha256-{hash}'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    )
}

fn document(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"robots\" content=\"noindex\"><title>{}</title><style>{STYLE}</style></head>\n<body>\n{body}\n</body></html>\n",
        escape(title)
    )
}

/// A page with the approval pages' headers.
pub fn respond(status: StatusCode, title: &str, body: &str) -> Response {
    crate::pages::secure_html(status, document(title, body), &content_security_policy())
}

fn fmt_ms(ms: u64) -> String {
    let at = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

/// What the manager is asked, with the Approve / Deny form posting to `action`.
pub fn ask(row: &ApprovalRow, action: &str) -> Response {
    let reasons = if row.reasons.is_empty() {
        "<li>none stated</li>".to_owned()
    } else {
        row.reasons.iter().map(|r| format!("<li>{}</li>", escape(r))).collect::<String>()
    };
    let agent_id = if row.agent_employee_id.is_empty() {
        String::new()
    } else {
        format!(", employee ID {}", escape(&row.agent_employee_id))
    };
    let body = format!(
        "<h1>Approve a password reset?</h1>\n\
         <p>Hello {manager}. The service desk asks for your approval, as the account holder's manager.</p>\n<dl>\n\
         <dt>Who asks</dt><dd>{agent_name} ({agent}{agent_id})</dd>\n\
         <dt>Account</dt><dd>{account_name} ({account})</dd>\n\
         <dt>Desk</dt><dd>{desk}</dd>\n\
         <dt>Request</dt><dd>{request}</dd>\n\
         <dt>Why your approval is needed</dt><dd><ul>{reasons}</ul></dd>\n\
         <dt>This link works until</dt><dd>{until}, once</dd>\n</dl>\n\
         <p class=\"warn\">If you know nothing of this request, deny it and call the security team.</p>\n\
         <form method=\"post\" action=\"{action}\">\n\
         <button type=\"submit\" name=\"decision\" value=\"approve\">Approve</button>\n\
         <button type=\"submit\" name=\"decision\" value=\"deny\" class=\"deny\">Deny</button>\n</form>",
        manager = escape(&row.manager),
        agent_name = escape(&row.agent_name),
        agent = escape(&row.agent),
        account_name = escape(&row.account_name),
        account = escape(&row.account),
        desk = escape(&row.desk),
        request = escape(&row.request_id),
        until = fmt_ms(row.expires_ms),
        action = escape(action),
    );
    respond(StatusCode::OK, "Approve a password reset?", &body)
}

/// The decision was recorded.
pub fn decided(row: &ApprovalRow, approved: bool) -> Response {
    let body = if approved {
        format!(
            "<h1>Approved</h1>\n<p>You approved the password reset of {} (request {}). The service desk goes on.</p>",
            escape(&row.account_name),
            escape(&row.request_id)
        )
    } else {
        format!(
            "<h1>Denied</h1>\n<p>You denied the password reset of {} (request {}). The request has ended and the \
             security team was told.</p>",
            escape(&row.account_name),
            escape(&row.request_id)
        )
    };
    respond(StatusCode::OK, if approved { "Approved" } else { "Denied" }, &body)
}

/// A refusal page: `status`, a heading and one sentence of what to do.
pub fn refused(status: StatusCode, heading: &str, text: &str) -> Response {
    respond(status, heading, &format!("<h1>{}</h1>\n<p>{}</p>", escape(heading), escape(text)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_in_fields_is_shown_as_text() {
        assert_eq!(
            escape("<script>alert('x')</script> & \"q\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"
        );
        let csp = content_security_policy();
        assert!(csp.starts_with("default-src 'none'; style-src 'sha256-"), "{csp}");
        assert!(!csp.contains("unsafe"), "{csp}");
    }
}
