//! Manager approval by link: the bodies the desk and the collector exchange, the
//! signed decision's text, and the checks of every field (pure; both ends use them).
//!
//! The desk makes a 128-bit token, registers SHA-256 of it at the collector
//! (`POST /approvals`, [`RegisterApproval`]) and mails the manager the link
//! `https://<collector>/approve/<token>`. The manager's decision on that page is signed
//! by the collector's checkpoint key as a C2SP signed note over a
//! [`DecisionStatement`]; the desk fetches it (`GET /approvals/<request id>`,
//! [`ApprovalStatus`]) and accepts it only for the token hash it issued.
//!
//! The statement's first line is [`STATEMENT_HEADER`], never a log origin, so a signed
//! decision can never be read as a checkpoint of the log (or the other way round).

use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::verification::is_bidi_control;

/// The first line of a signed decision's text.
pub const STATEMENT_HEADER: &str = "resetdesk-approval-decision/v1";
/// Longest display name, employee ID or reason (bytes).
pub const MAX_TEXT: usize = 300;
/// Most escalation reasons in one request.
pub const MAX_REASONS: usize = 16;
/// Longest identifier (request id, usernames).
pub const MAX_ID: usize = 64;
/// Longest e-mail address (RFC 5321 path limit).
pub const MAX_ADDRESS: usize = 254;

/// `POST /approvals`: what the desk registers (the desk is named by its key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterApproval {
    pub request_id: String,
    /// Hex SHA-256 of the token the desk mailed (the collector never sees the token).
    pub token_sha256: String,
    /// Directory username of the manager the token went to.
    pub manager: String,
    /// The registered address it went to.
    pub address: String,
    /// The agent who asks: username, display name, employee ID.
    pub agent: String,
    pub agent_name: String,
    #[serde(default)]
    pub agent_employee_id: String,
    /// The account to be reset: username and display name.
    pub account: String,
    pub account_name: String,
    /// Why the reset needs the manager's approval (the escalation reasons).
    pub reasons: Vec<String>,
}

/// The answer to `POST /approvals`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registered {
    pub request_id: String,
    /// Until when the link works (RFC 3339).
    pub expires_at: String,
}

/// `GET /approvals/<request id>`: where the request stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum ApprovalStatus {
    /// The manager has not answered; the link works until `expires_at`.
    Pending { expires_at: String },
    /// The link expired unanswered.
    Expired { expires_at: String },
    /// The manager answered: the collector's signed note over a [`DecisionStatement`].
    Decided { note: String },
}

/// A field the desk sent is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct FieldError {
    pub field: &'static str,
    pub problem: &'static str,
}

fn field(field: &'static str, problem: &'static str) -> FieldError {
    FieldError { field, problem }
}

/// A request id, username or desk name: 1 to 64 ASCII letters, digits, `.`, `_`, `-`.
pub fn is_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_ID
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Hex SHA-256: 64 lowercase hex digits.
pub fn parse_sha256_hex(s: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    (s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
        .then(|| hex::decode_to_slice(s, &mut out).ok())
        .flatten()
        .map(|()| out)
}

fn identifier(name: &'static str, s: &str) -> Result<(), FieldError> {
    if is_identifier(s) {
        Ok(())
    } else {
        Err(field(name, "must be 1 to 64 letters, digits, '.', '_' or '-'"))
    }
}

/// Free text shown to a person: bounded, no control or bidirectional-override characters.
fn text(name: &'static str, s: &str, required: bool) -> Result<(), FieldError> {
    if required && s.trim().is_empty() {
        return Err(field(name, "is empty"));
    }
    if s.len() > MAX_TEXT {
        return Err(field(name, "is longer than 300 bytes"));
    }
    if s.chars().any(|c| c.is_control() || is_bidi_control(c)) {
        return Err(field(name, "contains control characters"));
    }
    Ok(())
}

fn address(s: &str) -> Result<(), FieldError> {
    let ok = (3..=MAX_ADDRESS).contains(&s.len())
        && s.split('@').count() == 2
        && !s.starts_with('@')
        && !s.ends_with('@')
        && s.bytes().all(|b| b.is_ascii_graphic() && !matches!(b, b'<' | b'>' | b'"' | b'\'' | b'\\' | b'&'));
    if ok {
        Ok(())
    } else {
        Err(field("address", "must be one plain e-mail address"))
    }
}

impl RegisterApproval {
    /// Every field within its limits; what the collector stores and shows.
    pub fn check(&self) -> Result<[u8; 32], FieldError> {
        identifier("request_id", &self.request_id)?;
        let hash = parse_sha256_hex(&self.token_sha256)
            .ok_or_else(|| field("token_sha256", "must be 64 lowercase hex digits"))?;
        identifier("manager", &self.manager)?;
        address(&self.address)?;
        identifier("agent", &self.agent)?;
        text("agent_name", &self.agent_name, true)?;
        text("agent_employee_id", &self.agent_employee_id, false)?;
        identifier("account", &self.account)?;
        text("account_name", &self.account_name, true)?;
        if self.reasons.len() > MAX_REASONS {
            return Err(field("reasons", "more than 16 reasons"));
        }
        for r in &self.reasons {
            text("reasons", r, true)?;
        }
        if self.manager.eq_ignore_ascii_case(&self.account) || self.manager.eq_ignore_ascii_case(&self.agent) {
            return Err(field("manager", "is the account or the agent: they cannot approve"));
        }
        Ok(hash)
    }
}

/// What the collector signs when the manager decides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecisionStatement {
    pub request_id: String,
    pub token_sha256: [u8; 32],
    pub approved: bool,
    pub manager: String,
    pub address: String,
    /// The desk that registered the request (by its desk key's name).
    pub desk: String,
    pub decided_at: OffsetDateTime,
}

/// Why a signed decision's text is not a [`DecisionStatement`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the signed approval decision is malformed: {0}")]
pub struct StatementError(pub &'static str);

impl DecisionStatement {
    /// The note text: one `key value` line each, after the header; ends with a newline.
    pub fn to_text(&self) -> String {
        // Invariant: RFC 3339 fails only outside years 0..=9999; the clock is inside.
        let at = self.decided_at.format(&Rfc3339).unwrap_or_else(|_| "1970-01-01T00:00:00Z".into());
        format!(
            "{STATEMENT_HEADER}\nrequest {}\ntoken-sha256 {}\ndecision {}\nmanager {}\naddress {}\ndesk {}\ndecided-at {at}\n",
            self.request_id,
            hex::encode(self.token_sha256),
            if self.approved { "approved" } else { "denied" },
            self.manager,
            self.address,
            self.desk,
        )
    }

    /// Parse the text [`to_text`](Self::to_text) writes, strictly (order, fields, values).
    pub fn parse(text: &str) -> Result<Self, StatementError> {
        let body = text.strip_suffix('\n').ok_or(StatementError("no final newline"))?;
        let mut lines = body.split('\n');
        if lines.next() != Some(STATEMENT_HEADER) {
            return Err(StatementError("not an approval decision"));
        }
        let mut value = |key: &'static str| -> Result<&str, StatementError> {
            lines
                .next()
                .and_then(|l| l.strip_prefix(key))
                .and_then(|l| l.strip_prefix(' '))
                .ok_or(StatementError("a line is missing or out of order"))
        };
        let request_id = value("request")?.to_owned();
        let token_sha256 = parse_sha256_hex(value("token-sha256")?).ok_or(StatementError("token-sha256"))?;
        let approved = match value("decision")? {
            "approved" => true,
            "denied" => false,
            _ => return Err(StatementError("decision")),
        };
        let manager = value("manager")?.to_owned();
        let address_value = value("address")?.to_owned();
        let desk = value("desk")?.to_owned();
        let decided_at =
            OffsetDateTime::parse(value("decided-at")?, &Rfc3339).map_err(|_| StatementError("decided-at"))?;
        if lines.next().is_some() {
            return Err(StatementError("lines after decided-at"));
        }
        if !is_identifier(&request_id) || !is_identifier(&manager) || !is_identifier(&desk) {
            return Err(StatementError("an identifier"));
        }
        address(&address_value).map_err(|_| StatementError("address"))?;
        Ok(Self { request_id, token_sha256, approved, manager, address: address_value, desk, decided_at })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn register() -> RegisterApproval {
        RegisterApproval {
            request_id: "req-00aa".into(),
            token_sha256: "ab".repeat(32),
            manager: "jokafor".into(),
            address: "jokafor@example.com".into(),
            agent: "carol".into(),
            agent_name: "Carol <Desk> & Co".into(),
            agent_employee_id: "E-1001".into(),
            account: "adm-okafor".into(),
            account_name: "Adm Okafor".into(),
            reasons: vec!["privileged account".into()],
        }
    }

    #[test]
    fn a_statement_reads_back_as_written_and_nothing_else_does() {
        let s = DecisionStatement {
            request_id: "req-00aa".into(),
            token_sha256: [7; 32],
            approved: false,
            manager: "jokafor".into(),
            address: "jokafor@example.com".into(),
            desk: "desk-1".into(),
            decided_at: datetime!(2026-12-01 10:00:00 UTC),
        };
        let text = s.to_text();
        assert_eq!(DecisionStatement::parse(&text), Ok(s));
        assert!(DecisionStatement::parse(&text.replace("denied", "approved ")).is_err());
        assert!(DecisionStatement::parse(&text.replace("desk desk-1\n", "")).is_err());
        assert!(DecisionStatement::parse(&format!("{text}extra 1\n")).is_err());
        assert!(DecisionStatement::parse("collector.test/resetdesk\n5\nAAAA\n").is_err(), "a checkpoint is not one");
        assert!(DecisionStatement::parse(text.trim_end()).is_err());
    }

    #[test]
    fn registration_fields_are_bounded_and_plain() {
        assert_eq!(register().check(), Ok([0xab; 32]));
        let bad = |f: fn(&mut RegisterApproval)| {
            let mut r = register();
            f(&mut r);
            r.check().unwrap_err().field
        };
        assert_eq!(bad(|r| r.account = "<script>".into()), "account");
        assert_eq!(bad(|r| r.request_id = "req 1".into()), "request_id");
        assert_eq!(bad(|r| r.token_sha256 = "AB".repeat(32)), "token_sha256");
        assert_eq!(bad(|r| r.address = "a@b@c".into()), "address");
        assert_eq!(bad(|r| r.address = "\"x\"@evil.test".into()), "address");
        assert_eq!(bad(|r| r.account_name = "x".repeat(301)), "account_name");
        assert_eq!(bad(|r| r.agent_name = "a\u{202e}b".into()), "agent_name");
        assert_eq!(bad(|r| r.reasons = vec!["r".into(); 17]), "reasons");
        assert_eq!(bad(|r| r.reasons = vec!["line\nbreak".into()]), "reasons");
        assert_eq!(bad(|r| r.manager = "carol".into()), "manager");
    }
}
