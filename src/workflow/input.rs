//! Agent actions as the UI sends them (JSON), parsed strictly.
//!
//! Unknown actions, unknown or missing fields and wrong types are rejected with a
//! typed [`UiInputError`] that names the field but never repeats a value: serde's own
//! messages quote the offending input, which could be an answer or a code.
//!
//! Actions that carry secrets (answers, codes) are checked with
//! [`check_secret_action`] against the account's verification material and reach the
//! engine only as a verdict; the others convert directly into an [`WorkflowEvent`] with
//! [`UiAction::into_event`].

use serde::{Deserialize, Deserializer};
use time::OffsetDateTime;

use super::event::{ContactRef, WorkflowEvent};
use crate::directory::VerificationMaterial;
use crate::secret::Secret;
use crate::verification::callback::CallbackReport;
use crate::verification::government_id::IdInspection;
use crate::verification::one_time_code::IssuedCode;
use crate::verification::security_answers::{self, GivenAnswer};
use crate::verification::{totp, FailReason, InputError, Verdict};

/// Largest UI message accepted: 16 KiB (several answers of up to 4 KiB each).
pub const MAX_UI_MESSAGE_BYTES: usize = 16 * 1024;

/// A secret typed in the UI. Deserialises straight into a [`Secret`].
#[derive(Debug, Clone)]
pub struct SecretInput(pub Secret);

impl<'de> Deserialize<'de> for SecretInput {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(|s| SecretInput(Secret::new(s)))
    }
}

/// One security answer from the UI.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnswerInput {
    pub question: usize,
    pub answer: SecretInput,
}

/// An action of the agent, as sent by the UI.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum UiAction {
    SecurityAnswers { answers: Vec<AnswerInput> },
    EmployeeRecord { employee_id: String, date_of_hire: String },
    Totp { code: SecretInput },
    RequestCode { to: ContactRef },
    EnterCode { code: SecretInput },
    // Field-less actions are empty structs, not unit variants, so extra fields
    // (a requester's number, say) are rejected rather than ignored.
    RequestCallback {},
    CallbackResult { report: CallbackReport },
    RequestManagerApproval {},
    IdInspection { inspection: IdInspection },
    RequestReset {},
    Cancel { reason: String },
    SuspectedFraud { note: String },
}

/// Why a UI message was rejected. Never contains the message's values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UiInputError {
    #[error("the screen sent more than {MAX_UI_MESSAGE_BYTES} bytes; shorten the input")]
    TooLarge,
    #[error("the screen sent an unknown action; reload the screen")]
    UnknownAction,
    #[error("the screen sent an unknown field `{0}`; reload the screen")]
    UnknownField(String),
    #[error("the screen did not send the field `{0}`; fill it in")]
    MissingField(String),
    #[error("a field has the wrong type or value (line {line}, column {column}); check the form")]
    WrongType { line: usize, column: usize },
    #[error("the screen sent malformed data (line {line}, column {column}); reload the screen")]
    Malformed { line: usize, column: usize },
}

/// serde names (not values) appear between backticks in these messages.
fn quoted_name(message: &str, prefix: &str) -> Option<String> {
    let rest = message.split(prefix).nth(1)?;
    let name = rest.split('`').next()?;
    // Field and variant names are identifiers; anything else is not repeated.
    (!name.is_empty() && name.len() <= 64 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
        .then(|| name.to_owned())
}

/// Parse one UI message.
pub fn parse_ui_action(json: &str) -> Result<UiAction, UiInputError> {
    if json.len() > MAX_UI_MESSAGE_BYTES {
        return Err(UiInputError::TooLarge);
    }
    serde_json::from_str(json).map_err(|e| {
        let (line, column) = (e.line(), e.column());
        let message = e.to_string();
        if message.starts_with("unknown variant") {
            UiInputError::UnknownAction
        } else if let Some(name) = quoted_name(&message, "unknown field `") {
            UiInputError::UnknownField(name)
        } else if let Some(name) = quoted_name(&message, "missing field `") {
            UiInputError::MissingField(name)
        } else if e.classify() == serde_json::error::Category::Data {
            UiInputError::WrongType { line, column }
        } else {
            UiInputError::Malformed { line, column }
        }
    })
}

impl UiAction {
    /// The engine event for this action at time `at`, or the action itself back when
    /// it carries a secret that the adapter must first check (answers, TOTP, codes).
    pub fn into_event(self, at: OffsetDateTime) -> Result<WorkflowEvent, UiAction> {
        Ok(match self {
            Self::EmployeeRecord { employee_id, date_of_hire } => {
                WorkflowEvent::EmployeeRecordGiven { at, employee_id, date_of_hire }
            }
            Self::RequestCode { to } => WorkflowEvent::CodeRequested { at, to },
            Self::RequestCallback {} => WorkflowEvent::CallbackRequested { at },
            Self::CallbackResult { report } => WorkflowEvent::CallbackReported { at, report },
            Self::RequestManagerApproval {} => WorkflowEvent::ManagerApprovalRequested { at },
            Self::IdInspection { inspection } => WorkflowEvent::IdInspected { at, inspection },
            Self::RequestReset {} => WorkflowEvent::ResetRequested { at },
            Self::Cancel { reason } => WorkflowEvent::Cancelled { at, reason },
            Self::SuspectedFraud { note } => WorkflowEvent::FraudSuspected { at, note },
            secret @ (Self::SecurityAnswers { .. } | Self::Totp { .. } | Self::EnterCode { .. }) => return Err(secret),
        })
    }
}

/// State the adapter keeps for the secret-bearing checks of one session.
#[derive(Debug, Default)]
pub struct SecretCheckState {
    /// The one-time code last issued in this session (after a `SendCode` decision).
    pub issued_code: Option<IssuedCode>,
    /// The account's last accepted TOTP step (persisted per account by the adapter).
    pub last_totp_step: Option<u64>,
}

/// Check a secret-bearing action (answers, TOTP, one-time code) against the account's
/// verification material, and turn it into the engine event carrying only the verdict.
/// CPU work (argon2id for answers), no IO. The secrets are dropped (zeroized) here.
pub fn check_secret_action(
    action: UiAction,
    at: OffsetDateTime,
    material: &VerificationMaterial,
    state: &mut SecretCheckState,
) -> Result<WorkflowEvent, InputError> {
    match action {
        UiAction::SecurityAnswers { answers } => {
            let given: Vec<GivenAnswer> =
                answers.into_iter().map(|a| GivenAnswer { question: a.question, answer: a.answer.0 }).collect();
            let verdict = security_answers::verify_answers(
                &material.security_answers,
                &given,
                security_answers::REQUIRED_ANSWERS,
            )?;
            Ok(WorkflowEvent::SecurityAnswersChecked { at, verdict })
        }
        UiAction::Totp { code } => {
            let Some(key) = &material.totp_secret else {
                return Ok(WorkflowEvent::TotpChecked {
                    at,
                    verdict: Verdict::Failed(FailReason::NotEnrolled),
                    accepted_step: None,
                });
            };
            let check = totp::verify(key, &code.0, at, state.last_totp_step)?;
            if let Some(step) = check.accepted_step {
                state.last_totp_step = Some(step);
            }
            Ok(WorkflowEvent::TotpChecked { at, verdict: check.verdict, accepted_step: check.accepted_step })
        }
        UiAction::EnterCode { code } => {
            let issued = state.issued_code.as_mut().ok_or(InputError::NotOffered { field: "code (none was sent)" })?;
            let verdict = issued.check(&code.0, at)?;
            Ok(WorkflowEvent::CodeChecked { at, verdict })
        }
        _ => Err(InputError::NotOffered { field: "action (it carries no secret: use into_event)" }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workflow::event::ContactKind;

    #[test]
    fn well_formed_actions_parse() {
        let a = parse_ui_action(
            r#"{"action":"security_answers","answers":[{"question":0,"answer":"fluffy"},{"question":1,"answer":"x"}]}"#,
        )
        .unwrap();
        match a {
            UiAction::SecurityAnswers { answers } => {
                assert_eq!(answers.len(), 2);
                assert_eq!(answers[0].answer.0.expose(), "fluffy");
            }
            other => panic!("{other:?}"),
        }
        let a = parse_ui_action(r#"{"action":"request_code","to":{"kind":"email","index":0}}"#).unwrap();
        assert!(matches!(a, UiAction::RequestCode { to: ContactRef { kind: ContactKind::Email, index: 0 } }));
        assert!(matches!(parse_ui_action(r#"{"action":"request_reset"}"#), Ok(UiAction::RequestReset {})));
    }

    #[test]
    fn wrong_types_are_typed_errors_that_do_not_echo_secrets() {
        // A number where the answer string should be, and a string where the index should be.
        let e = parse_ui_action(r#"{"action":"totp","code":123456}"#).unwrap_err();
        assert!(matches!(e, UiInputError::WrongType { .. }), "{e:?}");
        let e =
            parse_ui_action(r#"{"action":"security_answers","answers":[{"question":"hunter2-secret","answer":"x"}]}"#)
                .unwrap_err();
        assert!(matches!(e, UiInputError::WrongType { .. }), "{e:?}");
        assert!(!e.to_string().contains("hunter2"));
        let e = parse_ui_action(r#"{"action":"callback_result","report":{"reached_account_holder":"yes-my-secret","holder_confirmed_request":true}}"#).unwrap_err();
        assert!(!format!("{e:?}{e}").contains("my-secret"));
    }

    #[test]
    fn unknown_and_missing_fields_are_named() {
        assert_eq!(
            parse_ui_action(r#"{"action":"totp","code":"1","extra":1}"#).unwrap_err(),
            UiInputError::UnknownField("extra".into())
        );
        assert_eq!(
            parse_ui_action(r#"{"action":"employee_record","employee_id":"E1"}"#).unwrap_err(),
            UiInputError::MissingField("date_of_hire".into())
        );
        // A number typed by the requester for the callback is not even a field.
        assert_eq!(
            parse_ui_action(r#"{"action":"request_callback","number":"+1 555 0100"}"#).unwrap_err(),
            UiInputError::UnknownField("number".into())
        );
        // The agent can neither choose the password nor make it permanent.
        assert_eq!(
            parse_ui_action(r#"{"action":"request_reset","password":"Summer2026!"}"#).unwrap_err(),
            UiInputError::UnknownField("password".into())
        );
        assert_eq!(
            parse_ui_action(r#"{"action":"request_reset","must_change":false}"#).unwrap_err(),
            UiInputError::UnknownField("must_change".into())
        );
    }

    #[test]
    fn unknown_actions_and_garbage_are_rejected() {
        assert_eq!(
            parse_ui_action(r#"{"action":"set_password","password":"P@ss"}"#).unwrap_err(),
            UiInputError::UnknownAction
        );
        assert_eq!(parse_ui_action(r#"{"action":"make_permanent"}"#).unwrap_err(), UiInputError::UnknownAction);
        assert!(matches!(parse_ui_action("{not json"), Err(UiInputError::Malformed { .. })));
        assert!(matches!(parse_ui_action(""), Err(UiInputError::Malformed { .. })));
        assert!(matches!(parse_ui_action("[1,2]"), Err(UiInputError::WrongType { .. })));
        let big = format!(r#"{{"action":"cancel","reason":"{}"}}"#, "a".repeat(MAX_UI_MESSAGE_BYTES));
        assert_eq!(parse_ui_action(&big).unwrap_err(), UiInputError::TooLarge);
    }

    #[test]
    fn secret_bearing_actions_go_back_to_the_adapter() {
        let at = time::macros::datetime!(2026-11-25 10:00 UTC);
        let totp = parse_ui_action(r#"{"action":"totp","code":"123456"}"#).unwrap();
        assert!(matches!(totp.into_event(at), Err(UiAction::Totp { .. })));
        let reset = parse_ui_action(r#"{"action":"request_reset"}"#).unwrap();
        assert!(matches!(reset.into_event(at), Ok(WorkflowEvent::ResetRequested { .. })));
    }

    #[test]
    fn secret_actions_become_verdict_only_events() {
        use crate::directory::SecurityAnswer;
        use crate::verification::security_answers::tests::cheap_hash;
        let at = time::macros::datetime!(2026-11-25 10:00 UTC);
        let material = VerificationMaterial {
            security_answers: vec![
                SecurityAnswer { question: "Pet?".into(), answer_phc: cheap_hash("rex") },
                SecurityAnswer { question: "Town?".into(), answer_phc: cheap_hash("ulm") },
            ],
            totp_secret: Some(Secret::from("3132333435363738393031323334353637383930")),
        };
        let mut state = SecretCheckState::default();
        let a = parse_ui_action(
            r#"{"action":"security_answers","answers":[{"question":0,"answer":"REX"},{"question":1,"answer":"Ulm"}]}"#,
        )
        .unwrap();
        assert!(matches!(
            check_secret_action(a, at, &material, &mut state),
            Ok(WorkflowEvent::SecurityAnswersChecked { verdict: Verdict::Passed, .. })
        ));
        let one =
            parse_ui_action(r#"{"action":"security_answers","answers":[{"question":0,"answer":"rex"}]}"#).unwrap();
        assert!(check_secret_action(one, at, &material, &mut state).is_err(), "two questions are required");

        let key = totp::decode_key(material.totp_secret.as_ref().unwrap()).unwrap();
        let code = totp::hotp(&key, totp::step_at(at).unwrap(), 6);
        let json = format!(r#"{{"action":"totp","code":"{}"}}"#, code.as_str());
        let ev = check_secret_action(parse_ui_action(&json).unwrap(), at, &material, &mut state).unwrap();
        assert!(matches!(ev, WorkflowEvent::TotpChecked { verdict: Verdict::Passed, accepted_step: Some(_), .. }));
        // The same code again is a replay.
        let ev = check_secret_action(parse_ui_action(&json).unwrap(), at, &material, &mut state).unwrap();
        assert!(matches!(ev, WorkflowEvent::TotpChecked { verdict: Verdict::Failed(FailReason::CodeReused), .. }));

        let enter = parse_ui_action(r#"{"action":"enter_code","code":"123456"}"#).unwrap();
        assert!(check_secret_action(enter, at, &material, &mut state).is_err(), "no code was issued");
        let reset = parse_ui_action(r#"{"action":"request_reset"}"#).unwrap();
        assert!(check_secret_action(reset, at, &material, &mut state).is_err());
    }

    #[test]
    fn debug_of_secret_input_is_masked() {
        let a = parse_ui_action(r#"{"action":"enter_code","code":"987654"}"#).unwrap();
        assert!(!format!("{a:?}").contains("987654"));
    }
}
