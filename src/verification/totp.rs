//! TOTP (RFC 6238 over HOTP, RFC 4226): HMAC-SHA-1, 30-second steps, 6 digits,
//! accepting one step either side for clock drift. A code whose time step is not
//! newer than the last accepted one is refused as reused: the adapter persists the
//! accepted step per account and passes it back in.
//!
//! The key is stored as hex of the raw key bytes in
//! [`crate::directory::VerificationMaterial::totp_secret`].

use hmac::{Hmac, Mac};
use sha1::Sha1;
use time::OffsetDateTime;
use zeroize::Zeroizing;

use super::{ct_eq, FailReason, InputError, Verdict};
use crate::secret::Secret;

/// Seconds per time step.
pub const STEP_SECONDS: i64 = 30;
/// Digits per code.
pub const DIGITS: u32 = 6;
/// Steps accepted either side of the current one.
pub const SKEW_STEPS: u64 = 1;

/// The result of a TOTP check: the verdict, and the matched time step to persist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TotpCheck {
    pub verdict: Verdict,
    /// Set when the code passed: store it as the account's last accepted step.
    pub accepted_step: Option<u64>,
}

/// Decode the stored key: lowercase (or uppercase) hex of the raw key bytes.
pub fn decode_key(encoded: &Secret) -> Result<Zeroizing<Vec<u8>>, InputError> {
    let bytes = Zeroizing::new(
        hex::decode(encoded.expose().trim()).map_err(|_| InputError::StoredData { what: "TOTP key (not hex)" })?,
    );
    if bytes.len() < 10 {
        return Err(InputError::StoredData { what: "TOTP key (shorter than 80 bits)" });
    }
    Ok(bytes)
}

/// HOTP value (RFC 4226) for `counter`, as `digits` decimal digits (clamped to 6–9).
pub fn hotp(key: &[u8], counter: u64, digits: u32) -> Zeroizing<String> {
    let digits = digits.clamp(6, 9);
    let mut mac = match Hmac::<Sha1>::new_from_slice(key) {
        Ok(m) => m,
        // HMAC accepts keys of any length; this arm cannot run.
        Err(_) => return Zeroizing::new(String::new()),
    };
    mac.update(&counter.to_be_bytes());
    let digest = mac.finalize().into_bytes();
    // SHA-1 gives 20 bytes; offset <= 15, so offset + 3 <= 18 stays in range.
    let offset = usize::from(digest[19] & 0x0f);
    let bin = u32::from_be_bytes([digest[offset] & 0x7f, digest[offset + 1], digest[offset + 2], digest[offset + 3]]);
    let value = bin % 10u32.pow(digits);
    Zeroizing::new(format!("{value:0width$}", width = digits as usize))
}

/// The time step that contains `at`.
pub fn step_at(at: OffsetDateTime) -> Result<u64, InputError> {
    u64::try_from(at.unix_timestamp().div_euclid(STEP_SECONDS))
        .map_err(|_| InputError::Format { field: "time", expected: "a time after 1970" })
}

/// Check a typed code at time `at`, given the last step accepted for this account.
pub fn verify(
    key: &Secret,
    typed: &Secret,
    at: OffsetDateTime,
    last_accepted_step: Option<u64>,
) -> Result<TotpCheck, InputError> {
    let code: Zeroizing<String> = Zeroizing::new(typed.expose().chars().filter(|c| *c != ' ').collect());
    if code.is_empty() {
        return Err(InputError::Empty { field: "code" });
    }
    if code.len() != DIGITS as usize || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(InputError::Format { field: "code", expected: "6 digits from the authenticator app" });
    }
    let key = decode_key(key)?;
    let now = step_at(at)?;
    let mut fresh = None;
    let mut reused = false;
    for step in now.saturating_sub(SKEW_STEPS)..=now + SKEW_STEPS {
        if ct_eq(hotp(&key, step, DIGITS).as_bytes(), code.as_bytes()) {
            if last_accepted_step.is_some_and(|last| step <= last) {
                reused = true;
            } else if fresh.is_none() {
                fresh = Some(step);
            }
        }
    }
    Ok(match (fresh, reused) {
        (Some(step), _) => TotpCheck { verdict: Verdict::Passed, accepted_step: Some(step) },
        (None, true) => TotpCheck { verdict: Verdict::Failed(FailReason::CodeReused), accepted_step: None },
        (None, false) => TotpCheck { verdict: Verdict::Failed(FailReason::WrongCode), accepted_step: None },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 Appendix B SHA-1 key "12345678901234567890", hex-encoded.
    const RFC_KEY: &str = "3132333435363738393031323334353637383930";

    fn at(unix: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(unix).unwrap()
    }

    #[test]
    fn rfc6238_vectors() {
        let key = decode_key(&Secret::from(RFC_KEY)).unwrap();
        assert_eq!(&*key, b"12345678901234567890");
        for (t, expected) in
            [(59, "94287082"), (1111111109, "07081804"), (1234567890, "89005924"), (20000000000, "65353130")]
        {
            assert_eq!(&*hotp(&key, step_at(at(t)).unwrap(), 8), expected);
        }
    }

    #[test]
    fn accepts_one_step_of_drift_and_no_more() {
        let key = Secret::from(RFC_KEY);
        let raw = decode_key(&key).unwrap();
        let t = at(1234567890);
        let now = step_at(t).unwrap();
        for (step, ok) in [(now - 2, false), (now - 1, true), (now, true), (now + 1, true), (now + 2, false)] {
            let code = Secret::from(hotp(&raw, step, 6).as_str());
            let r = verify(&key, &code, t, None).unwrap();
            assert_eq!(r.verdict.passed(), ok, "step offset {}", step as i64 - now as i64);
        }
    }

    #[test]
    fn a_used_code_is_refused() {
        let key = Secret::from(RFC_KEY);
        let raw = decode_key(&key).unwrap();
        let t = at(1234567890);
        let code = Secret::from(hotp(&raw, step_at(t).unwrap(), 6).as_str());
        let first = verify(&key, &code, t, None).unwrap();
        assert_eq!(first.verdict, Verdict::Passed);
        let again = verify(&key, &code, t, first.accepted_step).unwrap();
        assert_eq!(again, TotpCheck { verdict: Verdict::Failed(FailReason::CodeReused), accepted_step: None });
        // An older code is refused too once a newer step was accepted.
        let older = Secret::from(hotp(&raw, step_at(t).unwrap() - 1, 6).as_str());
        assert_eq!(
            verify(&key, &older, t, first.accepted_step).unwrap().verdict,
            Verdict::Failed(FailReason::CodeReused)
        );
    }

    #[test]
    fn wrong_and_malformed_codes() {
        let key = Secret::from(RFC_KEY);
        let t = at(1234567890);
        let raw = decode_key(&key).unwrap();
        let right = hotp(&raw, step_at(t).unwrap(), 6);
        let wrong: String = right.chars().map(|c| if c == '9' { '0' } else { char::from(c as u8 + 1) }).collect();
        assert_eq!(
            verify(&key, &Secret::from(wrong.as_str()), t, None).unwrap().verdict,
            Verdict::Failed(FailReason::WrongCode)
        );
        assert_eq!(verify(&key, &Secret::from(""), t, None), Err(InputError::Empty { field: "code" }));
        assert!(matches!(verify(&key, &Secret::from("12345"), t, None), Err(InputError::Format { .. })));
        assert!(matches!(verify(&key, &Secret::from("１２３４５６"), t, None), Err(InputError::Format { .. })));
        assert!(matches!(verify(&key, &Secret::from(&*"1".repeat(5000)), t, None), Err(InputError::Format { .. })));
        assert!(matches!(
            verify(&Secret::from("not hex!"), &Secret::from("123456"), t, None),
            Err(InputError::StoredData { .. })
        ));
        assert!(matches!(verify(&key, &Secret::from("123456"), at(-100), None), Err(InputError::Format { .. })));
    }
}
