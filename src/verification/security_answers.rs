//! Security answers: argon2id verification of normalised answers.
//!
//! Answers are normalised with [`normalize_answer`] (NFKC, case folding, white space)
//! before hashing and before checking, so "Fluffy  the Cat" matches "fluffy the cat".
//! The comparison inside argon2 is constant-time. Every given answer is checked even
//! after a wrong one, and the verdict never says which answer was wrong.

use std::collections::BTreeSet;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use rand::rngs::OsRng;
use zeroize::Zeroizing;

use super::{check_text, FailReason, InputError, Verdict};
use crate::directory::SecurityAnswer;
use crate::secret::Secret;
use crate::text::normalize_answer;

/// Questions to answer for the step to pass (or all enrolled ones, if fewer).
pub const REQUIRED_ANSWERS: usize = 2;

/// One answer typed by the agent for the question at `question` (index into the
/// account's enrolled questions).
#[derive(Debug, Clone)]
pub struct GivenAnswer {
    pub question: usize,
    pub answer: Secret,
}

fn normalised(answer: &Secret) -> Result<Zeroizing<String>, InputError> {
    check_text("answer", answer.expose())?;
    let n = normalize_answer(answer.expose());
    if n.is_empty() {
        return Err(InputError::Empty { field: "answer" });
    }
    Ok(n)
}

/// Hash an answer for enrolment: argon2id (default parameters) of the normalised
/// answer, as a PHC string.
pub fn hash_answer(answer: &Secret) -> Result<String, InputError> {
    let n = normalised(answer)?;
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(n.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|_| InputError::StoredData { what: "answer hash parameters" })
}

/// Check one answer against its argon2id PHC string.
pub fn verify_answer(answer_phc: &str, answer: &Secret) -> Result<bool, InputError> {
    let n = normalised(answer)?;
    let hash = PasswordHash::new(answer_phc).map_err(|_| InputError::StoredData { what: "security answer" })?;
    if hash.algorithm != argon2::ARGON2ID_IDENT {
        return Err(InputError::StoredData { what: "security answer (not argon2id)" });
    }
    Ok(Argon2::default().verify_password(n.as_bytes(), &hash).is_ok())
}

/// Check the answers given for `required` distinct questions (or all enrolled ones
/// if fewer are enrolled). Passes only if every given answer is right.
pub fn verify_answers(
    enrolled: &[SecurityAnswer],
    given: &[GivenAnswer],
    required: usize,
) -> Result<Verdict, InputError> {
    if enrolled.is_empty() {
        return Ok(Verdict::Failed(FailReason::NotEnrolled));
    }
    let mut seen = BTreeSet::new();
    for g in given {
        if g.question >= enrolled.len() || !seen.insert(g.question) {
            return Err(InputError::NotOffered { field: "question" });
        }
    }
    if seen.len() < required.min(enrolled.len()).max(1) {
        return Err(InputError::Empty { field: "answers (more questions must be answered)" });
    }
    // Check every input before any hash, so a typing error never follows a verdict.
    for g in given {
        normalised(&g.answer)?;
    }
    let mut all_right = true;
    for g in given {
        // Evaluate every answer: no early exit that would show which one was wrong.
        // `g.question < enrolled.len()` was checked above.
        all_right &= verify_answer(&enrolled[g.question].answer_phc, &g.answer)?;
    }
    Ok(if all_right { Verdict::Passed } else { Verdict::Failed(FailReason::WrongAnswer) })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use argon2::{Algorithm, Params, Version};

    /// A cheap argon2id hash for tests (the production parameters take ~50 ms).
    pub fn cheap_hash(answer: &str) -> String {
        let params = Params::new(64, 1, 1, None).unwrap();
        let salt = SaltString::generate(&mut OsRng);
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password(normalize_answer(answer).as_bytes(), &salt)
            .unwrap()
            .to_string()
    }

    fn enrolled() -> Vec<SecurityAnswer> {
        vec![
            SecurityAnswer { question: "First pet?".into(), answer_phc: cheap_hash("Fluffy the Cat") },
            SecurityAnswer { question: "Street?".into(), answer_phc: cheap_hash("Straße") },
        ]
    }

    fn given(q: usize, a: &str) -> GivenAnswer {
        GivenAnswer { question: q, answer: Secret::from(a) }
    }

    #[test]
    fn right_answers_pass_after_normalisation() {
        let e = enrolled();
        assert_eq!(
            verify_answers(&e, &[given(0, "  fluffy\u{00A0}THE cat"), given(1, "ＳＴＲＡＳＳＥ")], 2),
            Ok(Verdict::Passed)
        );
    }

    #[test]
    fn one_wrong_answer_fails_without_saying_which() {
        let e = enrolled();
        let v = verify_answers(&e, &[given(0, "fluffy the cat"), given(1, "main street")], 2).unwrap();
        assert_eq!(v, Verdict::Failed(FailReason::WrongAnswer));
    }

    #[test]
    fn lookalike_unicode_does_not_match() {
        // Cyrillic "у" (U+0443) in place of Latin "y".
        assert_eq!(verify_answer(&cheap_hash("fluffy"), &Secret::from("fluff\u{0443}")), Ok(false));
    }

    #[test]
    fn bad_input_is_an_input_error_not_a_failure() {
        let e = enrolled();
        assert_eq!(verify_answers(&e, &[given(0, ""), given(1, "x")], 2), Err(InputError::Empty { field: "answer" }));
        assert!(matches!(
            verify_answers(&e, &[given(0, &"a".repeat(5000)), given(1, "x")], 2),
            Err(InputError::TooLong { .. })
        ));
        assert!(matches!(
            verify_answers(&e, &[given(0, "a\u{7}"), given(1, "x")], 2),
            Err(InputError::ControlChars { .. })
        ));
        assert!(matches!(verify_answers(&e, &[given(0, "a"), given(0, "x")], 2), Err(InputError::NotOffered { .. })));
        assert!(matches!(verify_answers(&e, &[given(7, "a")], 1), Err(InputError::NotOffered { .. })));
        assert!(matches!(verify_answers(&e, &[given(0, "fluffy the cat")], 2), Err(InputError::Empty { .. })));
    }

    #[test]
    fn stored_hash_must_be_argon2id_phc() {
        assert!(matches!(verify_answer("plaintext", &Secret::from("x")), Err(InputError::StoredData { .. })));
        let argon2i = Argon2::new(Algorithm::Argon2i, Version::V0x13, Params::new(64, 1, 1, None).unwrap())
            .hash_password(b"x", &SaltString::generate(&mut OsRng))
            .unwrap()
            .to_string();
        assert!(matches!(verify_answer(&argon2i, &Secret::from("x")), Err(InputError::StoredData { .. })));
    }

    #[test]
    fn nothing_enrolled_is_a_non_counting_failure() {
        assert_eq!(verify_answers(&[], &[given(0, "x")], 2), Ok(Verdict::Failed(FailReason::NotEnrolled)));
    }

    #[test]
    fn enrolment_hash_verifies() {
        let phc = hash_answer(&Secret::from("Blue Whale")).unwrap();
        assert!(phc.starts_with("$argon2id$"));
        assert_eq!(verify_answer(&phc, &Secret::from("blue  whale")), Ok(true));
        assert!(!phc.contains("blue"));
    }
}
