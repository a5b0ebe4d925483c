//! Ticket updates: the secret-free summary of how a request ended, and the bodies it
//! is posted with (ServiceNow Table API, Jira REST, or a custom JSON template).
//!
//! Pure: the desk builds a [`TicketSummary`] from the facts of the outcome (or
//! refusal/lockout) record when the request carried a ticket number from intake, and
//! queues it in the outbox ([`super::outbox::Notifier::queue_ticket_update`]); the
//! outbox sender renders it with [`render_body`] and posts it
//! ([`super::webhook::WebhookSink`]) with the same retries and backoff as mail. The
//! summary is built from named, non-secret facts only: who, what, how it ended, which
//! methods passed. Never a password, a code, an answer or a token: none of them is
//! among the facts it reads. A request ended on suspicion of fraud reads as
//! "cancelled" without the suspicion or the agent's note (those go to the security
//! team): the caller may be able to read the ticket.

use serde::{Deserialize, Serialize};

use crate::config::TicketTemplate;
use crate::verification::Verdict;
use crate::workflow::facts::{RequestOutcome, ResetFacts, SUSPECTED_FRAUD_REASON};

/// What is posted to the ticket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TicketSummary {
    /// The ticket number given at intake.
    pub ticket: String,
    pub request_id: String,
    pub organisation: String,
    /// The account's username.
    pub account: String,
    /// The agent's username.
    pub agent: String,
    /// `succeeded`, `directory-failed`, `refused`, `cancelled`, `locked-out`.
    pub outcome: String,
    /// The reason or message of the outcome (empty on success).
    pub detail: String,
    /// The verification methods that passed, by name.
    pub verified_by: Vec<String>,
    /// RFC 3339 time of the record.
    pub at: String,
}

impl TicketSummary {
    /// The summary of `facts` for `ticket`, or `None` while the request is pending.
    pub fn of(facts: &ResetFacts, organisation: &str) -> Option<Self> {
        let ticket = facts.intake.ticket.clone()?;
        let (outcome, detail) = match &facts.outcome {
            RequestOutcome::Pending => return None,
            RequestOutcome::Succeeded => ("succeeded", String::new()),
            RequestOutcome::DirectoryFailed { message } => ("directory-failed", message.clone()),
            RequestOutcome::Refused { reason } => ("refused", reason.clone()),
            // The suspicion and the agent's note go to the security team only: a ticket
            // may be read by the caller (Jira comments, ServiceNow comments).
            RequestOutcome::Cancelled { reason } if reason.starts_with(SUSPECTED_FRAUD_REASON) => {
                ("cancelled", "ended by the service desk; see the desk's audit log".to_owned())
            }
            RequestOutcome::Cancelled { reason } => ("cancelled", reason.clone()),
            RequestOutcome::LockedOut { until } => ("locked-out", format!("verification locked until {until}")),
        };
        let mut verified_by: Vec<String> = Vec::new();
        for step in facts.steps.iter().filter(|s| matches!(s.verdict, Verdict::Passed)) {
            let name = serde_json::to_value(step.method).ok().and_then(|v| v.as_str().map(str::to_owned));
            if let Some(name) = name.filter(|n| !verified_by.contains(n)) {
                verified_by.push(name);
            }
        }
        let at = facts.at.format(&time::format_description::well_known::Rfc3339).ok()?;
        Some(Self {
            ticket,
            request_id: facts.request_id.clone(),
            organisation: organisation.to_owned(),
            account: facts.target.username.clone(),
            agent: facts.agent.username.clone(),
            outcome: outcome.to_owned(),
            detail,
            verified_by,
            at,
        })
    }

    /// A short title (the outbox row's subject).
    pub fn title(&self) -> String {
        format!("Password reset {} for {} (ticket {})", self.outcome, self.account, self.ticket)
    }

    /// The summary as text, for the ticket's notes.
    pub fn text(&self) -> String {
        let verified = if self.verified_by.is_empty() { "none".to_owned() } else { self.verified_by.join(", ") };
        let mut text = format!(
            "ResetDesk ({org}): password reset of {account} {outcome}.\n\
             Request: {id}\nAgent: {agent}\nVerified by: {verified}\nAt: {at}\n",
            org = self.organisation,
            account = self.account,
            outcome = self.outcome,
            id = self.request_id,
            agent = self.agent,
            at = self.at,
        );
        if !self.detail.is_empty() {
            text.push_str(&format!("Detail: {}\n", self.detail));
        }
        if self.outcome == "succeeded" {
            text.push_str("A temporary password was handed to the account holder; it must be changed at the next login. No secret is in this note.\n");
        }
        text
    }
}

/// Why a body could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("the custom ticketing template is not valid JSON once filled in ({0}); fix [ticketing] template_file")]
    NotJson(String),
}

/// The JSON body of `summary` for `template` (`custom`: the text of the template file).
pub fn render_body(template: TicketTemplate, custom: &str, summary: &TicketSummary) -> Result<String, TemplateError> {
    let text = summary.text();
    let value = match template {
        // Work notes are internal to the service desk (comments reach the caller).
        TicketTemplate::Servicenow => serde_json::json!({
            "work_notes": text,
            "correlation_id": summary.request_id,
            "correlation_display": "ResetDesk",
        }),
        TicketTemplate::Jira => serde_json::json!({ "body": text }),
        TicketTemplate::Custom => {
            let filled = fill_placeholders(custom, summary, &text);
            serde_json::from_str::<serde_json::Value>(&filled).map_err(|e| TemplateError::NotJson(e.to_string()))?
        }
    };
    Ok(value.to_string())
}

/// Replace each `{{name}}` by the JSON-escaped value (without quotes), so a value
/// placed inside a JSON string cannot end it.
fn fill_placeholders(template: &str, summary: &TicketSummary, text: &str) -> String {
    let escaped = |v: &str| {
        let quoted = serde_json::Value::String(v.to_owned()).to_string();
        quoted[1..quoted.len() - 1].to_owned()
    };
    let values = [
        ("ticket", summary.ticket.as_str()),
        ("request_id", &summary.request_id),
        ("account", &summary.account),
        ("agent", &summary.agent),
        ("outcome", &summary.outcome),
        ("summary", text),
        ("at", &summary.at),
    ];
    values
        .iter()
        .fold(template.to_owned(), |acc, (name, value)| acc.replace(&format!("{{{{{name}}}}}"), &escaped(value)))
}

/// `url` with `{ticket}` replaced by the ticket number, percent-encoded as a path
/// segment (letters, digits, `-_~` stay as they are; a dot is encoded, so no ticket makes a `..` segment).
pub fn url_for(url: &str, ticket: &str) -> String {
    let mut encoded = String::with_capacity(ticket.len());
    for b in ticket.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'~') {
            encoded.push(char::from(b));
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    url.replace("{ticket}", &encoded)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary() -> TicketSummary {
        TicketSummary {
            ticket: "INC0012345".into(),
            request_id: "req-1".into(),
            organisation: "Example Corp".into(),
            account: "jsmith".into(),
            agent: "alice".into(),
            outcome: "succeeded".into(),
            detail: String::new(),
            verified_by: vec!["security-answers".into()],
            at: "2026-11-25T10:00:00Z".into(),
        }
    }

    #[test]
    fn servicenow_and_jira_bodies_have_their_api_shapes() {
        let sn: serde_json::Value =
            serde_json::from_str(&render_body(TicketTemplate::Servicenow, "", &summary()).unwrap()).unwrap();
        assert!(sn["work_notes"].as_str().unwrap().contains("password reset of jsmith succeeded"));
        assert_eq!(sn["correlation_id"], "req-1");
        let jira: serde_json::Value =
            serde_json::from_str(&render_body(TicketTemplate::Jira, "", &summary()).unwrap()).unwrap();
        assert_eq!(jira.as_object().unwrap().keys().collect::<Vec<_>>(), ["body"]);
    }

    #[test]
    fn a_custom_template_cannot_be_broken_out_of_by_a_value() {
        let mut s = summary();
        s.detail = "x\", \"injected\": \"y".into();
        s.account = "a\"b".into();
        let body = render_body(TicketTemplate::Custom, r#"{"note": "{{summary}}", "who": "{{account}}"}"#, &s).unwrap();
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v.as_object().unwrap().len(), 2, "{body}");
        assert_eq!(v["who"], "a\"b");
        assert!(matches!(render_body(TicketTemplate::Custom, "{not json", &s), Err(TemplateError::NotJson(_))));
    }

    #[test]
    fn the_ticket_is_percent_encoded_into_the_url() {
        assert_eq!(
            url_for("https://j/rest/api/2/issue/{ticket}/comment", "HD-42"),
            "https://j/rest/api/2/issue/HD-42/comment"
        );
        assert_eq!(url_for("https://j/{ticket}", "../a b?"), "https://j/%2E%2E%2Fa%20b%3F");
    }
}
