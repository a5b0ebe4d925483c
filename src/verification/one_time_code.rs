//! One-time codes sent to a registered address or device (NIST SP 800-63B-4 §4.2.1):
//! at least 6 random digits, valid for 10 minutes by default, single use, a few
//! attempts each. The engine decides *whether* a code may be sent (rate limit,
//! eligible contact point); the adapter issues it here, hands the code to the
//! notifier, and keeps only the [`IssuedCode`] (a salted hash, never the code).

use rand::{CryptoRng, Rng, RngCore};
use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};

use super::{ct_eq, FailReason, InputError, Verdict};
use crate::policy::CodePolicy;
use crate::secret::Secret;

/// A code that was issued: what is needed to check it, without the code itself.
#[derive(Debug, Clone)]
pub struct IssuedCode {
    salt: [u8; 16],
    digest: [u8; 32],
    digits: u8,
    /// The contact point value the code was sent to.
    pub sent_to: String,
    pub expires_at: OffsetDateTime,
    attempts_left: u32,
    used: bool,
}

fn digest(salt: &[u8; 16], code: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"resetdesk/one-time-code/v1\0");
    h.update(salt);
    h.update(code.as_bytes());
    h.finalize().into()
}

impl IssuedCode {
    /// Generate a code for `sent_to` at `now`. Returns the code (for the notifier only)
    /// and the record to check it against.
    pub fn issue<R: RngCore + CryptoRng>(
        policy: &CodePolicy,
        sent_to: &str,
        now: OffsetDateTime,
        rng: &mut R,
    ) -> (Secret, IssuedCode) {
        let digits = policy.digits.clamp(6, 10);
        let bound = 10u64.pow(u32::from(digits));
        let value = rng.gen_range(0..bound);
        let code = Secret::new(format!("{value:0width$}", width = usize::from(digits)));
        let mut salt = [0u8; 16];
        rng.fill_bytes(&mut salt);
        let issued = IssuedCode {
            digest: digest(&salt, code.expose()),
            salt,
            digits,
            sent_to: sent_to.to_owned(),
            // At the end of the calendar the code is simply born expired: no overflow.
            expires_at: now.checked_add(Duration::minutes(i64::from(policy.valid_minutes.clamp(1, 10)))).unwrap_or(now),
            attempts_left: policy.max_attempts.max(1),
            used: false,
        };
        (code, issued)
    }

    /// Check what the requester read out, at `now`. A wrong entry uses up an attempt;
    /// a right one uses up the code.
    pub fn check(&mut self, typed: &Secret, now: OffsetDateTime) -> Result<Verdict, InputError> {
        let code: String = typed.expose().chars().filter(|c| *c != ' ' && *c != '-').collect();
        let code = Secret::new(code);
        if code.is_empty() {
            return Err(InputError::Empty { field: "code" });
        }
        if code.len() != usize::from(self.digits) || !code.expose().bytes().all(|b| b.is_ascii_digit()) {
            return Err(InputError::Format { field: "code", expected: "the digits of the code as sent" });
        }
        if self.used {
            return Ok(Verdict::Failed(FailReason::CodeReused));
        }
        if now >= self.expires_at {
            return Ok(Verdict::Failed(FailReason::CodeExpired));
        }
        if self.attempts_left == 0 {
            return Ok(Verdict::Failed(FailReason::TooManyAttempts));
        }
        if ct_eq(&digest(&self.salt, code.expose()), &self.digest) {
            self.used = true;
            Ok(Verdict::Passed)
        } else {
            self.attempts_left -= 1;
            Ok(Verdict::Failed(if self.attempts_left == 0 {
                FailReason::TooManyAttempts
            } else {
                FailReason::WrongCode
            }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::OsRng;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-11-25 10:00 UTC);

    fn issue() -> (Secret, IssuedCode) {
        IssuedCode::issue(&CodePolicy::default(), "jane@example.com", NOW, &mut OsRng)
    }

    #[test]
    fn codes_have_six_digits_and_vary() {
        let codes: std::collections::BTreeSet<String> = (0..20).map(|_| issue().0.expose().to_owned()).collect();
        assert!(codes.iter().all(|c| c.len() == 6 && c.bytes().all(|b| b.is_ascii_digit())));
        assert!(codes.len() > 15);
    }

    #[test]
    fn right_code_passes_once() {
        let (code, mut issued) = issue();
        assert_eq!(issued.check(&code, NOW + Duration::minutes(9)), Ok(Verdict::Passed));
        assert_eq!(issued.check(&code, NOW + Duration::minutes(9)), Ok(Verdict::Failed(FailReason::CodeReused)));
    }

    #[test]
    fn expires_after_ten_minutes() {
        let (code, mut issued) = issue();
        assert_eq!(issued.check(&code, NOW + Duration::minutes(10)), Ok(Verdict::Failed(FailReason::CodeExpired)));
    }

    #[test]
    fn wrong_entries_use_up_attempts() {
        let (code, mut issued) = issue();
        let wrong = Secret::new(if code.expose() == "000000" { "000001".into() } else { "000000".into() });
        assert_eq!(issued.check(&wrong, NOW), Ok(Verdict::Failed(FailReason::WrongCode)));
        assert_eq!(issued.check(&wrong, NOW), Ok(Verdict::Failed(FailReason::WrongCode)));
        assert_eq!(issued.check(&wrong, NOW), Ok(Verdict::Failed(FailReason::TooManyAttempts)));
        // Even the right code is refused now.
        assert_eq!(issued.check(&code, NOW), Ok(Verdict::Failed(FailReason::TooManyAttempts)));
    }

    #[test]
    fn malformed_entries_do_not_use_attempts() {
        let (code, mut issued) = issue();
        for bad in ["", "12345", "1234567", "12345a", "１２３４５６", "12\u{0}456"] {
            assert!(issued.check(&Secret::from(bad), NOW).is_err(), "{bad:?}");
        }
        assert_eq!(issued.check(&code, NOW), Ok(Verdict::Passed));
    }

    #[test]
    fn the_issued_record_does_not_hold_the_code() {
        let (code, issued) = issue();
        assert!(!format!("{issued:?}").contains(code.expose()));
    }
}
