//! Verification methods: each checks one kind of evidence and returns a typed verdict.
//!
//! Pure functions (argon2 and HMAC are CPU work, not IO). None of them returns or
//! displays the expected answer: a verdict says only passed, or failed and why in
//! words that reveal nothing about the stored value. Bad input (empty, over
//! [`MAX_INPUT_BYTES`], control characters, wrong format) is an [`InputError`], which
//! the agent corrects; it is not a failed verification and does not count toward lockout.
//!
//! Methods whose material is secret (security answers, TOTP key, one-time codes) are
//! run by the adapter, which hands the [`Verdict`] to the workflow engine. The others
//! (employee record, callback, manager approval, government ID, co-signature) are
//! checked by the engine itself from the event's facts.

pub mod callback;
pub mod co_signature;
pub mod employee_record;
pub mod government_id;
pub mod manager_approval;
pub mod one_time_code;
pub mod security_answers;
pub mod totp;

use serde::{Deserialize, Serialize};

use crate::text::{has_control_chars, MAX_INPUT_BYTES};

/// The result of one verification step, as recorded for the audit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", content = "reason", rename_all = "kebab-case")]
pub enum Verdict {
    Passed,
    Failed(FailReason),
}

impl Verdict {
    pub fn passed(self) -> bool {
        self == Verdict::Passed
    }
}

/// Why a step failed. Never says what the right answer was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailReason {
    /// One or more answers were wrong (which one is not said).
    WrongAnswer,
    /// The details given do not match the record (which one is not said).
    Mismatch,
    WrongCode,
    CodeExpired,
    /// The code was already used (replay).
    CodeReused,
    TooManyAttempts,
    /// The account has nothing enrolled for this method.
    NotEnrolled,
    /// The callback did not reach the account holder.
    NotReached,
    /// The account holder or manager said no.
    Declined,
    /// The approval came from someone other than the manager on file, or another address.
    WrongApprover,
    DocumentExpired,
    NameMismatch,
    PhotoMismatch,
    SecurityFeaturesNotChecked,
    /// The document is fair evidence only (a corporate ID): too weak on its own.
    EvidenceTooWeak,
    /// The document shows signs of tampering.
    SignsOfTampering,
    /// A step that had passed is too old to count at the reset (`[policy.freshness]`);
    /// not evidence against the requester.
    StepExpired,
}

impl FailReason {
    /// Whether this failure is evidence against the requester (counts toward lockout).
    /// Unreachable callbacks and missing enrolments are not.
    pub fn counts_toward_lockout(self) -> bool {
        !matches!(self, Self::NotReached | Self::NotEnrolled | Self::EvidenceTooWeak | Self::StepExpired)
    }

    /// What the agent sees and can do next.
    pub fn advice(self) -> &'static str {
        match self {
            Self::WrongAnswer => "an answer did not match; the requester may try once more or use another method",
            Self::Mismatch => "the details do not match the record; use another method",
            Self::WrongCode => "the code did not match; ask the requester to read it again",
            Self::CodeExpired => "the code has expired; send a new one",
            Self::CodeReused => "that code was already used; ask for the next code",
            Self::TooManyAttempts => "too many wrong entries for this code; send a new one",
            Self::NotEnrolled => "the account has nothing enrolled for this method; use another method",
            Self::NotReached => "the account holder was not reached; try another method",
            Self::Declined => "the account holder or manager declined: stop and report to the security team",
            Self::WrongApprover => "the approval did not come from the manager on file; request approval again",
            Self::DocumentExpired => "the document has expired; ask for a valid one",
            Self::NameMismatch => "the name on the document does not match the record",
            Self::PhotoMismatch => "the photo does not match the person present: stop and report to the security team",
            Self::SecurityFeaturesNotChecked => {
                "check the document's template, format and security features before confirming"
            }
            Self::EvidenceTooWeak => "a corporate or student ID is too weak on its own: ask for a government photo ID",
            Self::SignsOfTampering => "the document shows signs of tampering: do not go on; use Suspected fraud",
            Self::StepExpired => "this step was done too long ago to count now; do it again",
        }
    }
}

/// Input the agent must correct. Messages name the field, never its content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    #[error("{field} is empty; type it in")]
    Empty { field: &'static str },
    #[error("{field} is longer than {max} bytes; check what was typed")]
    TooLong { field: &'static str, max: usize },
    #[error("{field} contains control characters; retype it")]
    ControlChars { field: &'static str },
    #[error("{field} is not in the expected form: {expected}")]
    Format { field: &'static str, expected: &'static str },
    #[error("{field} is not one of the choices offered; pick one from the list")]
    NotOffered { field: &'static str },
    #[error("the stored {what} for this account is unusable; re-enrol it with the directory tools")]
    StoredData { what: &'static str },
}

/// Common checks on typed text: not blank, at most [`MAX_INPUT_BYTES`], no control characters.
pub fn check_text(field: &'static str, s: &str) -> Result<(), InputError> {
    if s.len() > MAX_INPUT_BYTES {
        return Err(InputError::TooLong { field, max: MAX_INPUT_BYTES });
    }
    if has_control_chars(s) || has_bidi_controls(s) {
        return Err(InputError::ControlChars { field });
    }
    if s.trim().is_empty() {
        return Err(InputError::Empty { field });
    }
    Ok(())
}

/// True if the text holds Unicode bidirectional controls, which make text display in
/// an order other than the one stored ("Trojan Source").
pub fn has_bidi_controls(s: &str) -> bool {
    s.chars().any(is_bidi_control)
}

/// True for a Unicode bidirectional control character.
pub fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}')
}

/// Equality of two byte strings in time independent of where they differ.
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.ct_eq(b).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_checks() {
        assert_eq!(check_text("answer", "  "), Err(InputError::Empty { field: "answer" }));
        assert_eq!(
            check_text("answer", &"x".repeat(MAX_INPUT_BYTES + 1)),
            Err(InputError::TooLong { field: "answer", max: MAX_INPUT_BYTES })
        );
        assert_eq!(check_text("answer", "a\u{1b}[2J"), Err(InputError::ControlChars { field: "answer" }));
        assert_eq!(check_text("answer", "ok"), Ok(()));
    }

    #[test]
    fn verdict_serialises_for_the_audit() {
        assert_eq!(
            serde_json::to_string(&Verdict::Failed(FailReason::CodeReused)).unwrap(),
            r#"{"result":"failed","reason":"code-reused"}"#
        );
        assert_eq!(serde_json::to_string(&Verdict::Passed).unwrap(), r#"{"result":"passed"}"#);
    }
}
