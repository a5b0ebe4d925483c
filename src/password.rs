//! Temporary passwords: random, checked against a blocklist, handed off once.
//!
//! Generated from the operating system's CSPRNG ([`rand::rngs::OsRng`]) — nobody
//! chooses them, agents included. Default: 16 characters from an alphabet without
//! look-alikes (no `0 O o 1 l I i`), at least one upper-case letter, lower-case letter
//! and digit (so directory complexity rules accept it), ≈ 92 bits. Optional:
//! a passphrase of ≥ 5 capitalised words from the bundled list, joined by `-`, with a
//! two-digit number. Every candidate is checked against the bundled blocklist of
//! common and breached passwords and against context words (username, names, employee
//! ID, organisation); a candidate that fails is drawn again.
//!
//! The password lives in a [`Secret`] (zeroized on drop). Must-change-at-next-login
//! is not an option: [`PasswordSpec::must_change`] is always true and the directory
//! trait has no other way to set a password.

use std::collections::HashSet;
use std::sync::OnceLock;

use rand::rngs::OsRng;
use rand::seq::SliceRandom;
use rand::{CryptoRng, Rng, RngCore};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::policy::{PasswordPolicy, PasswordStyle};
use crate::secret::Secret;

/// Characters used by the `characters` style: no look-alikes.
pub const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghjkmnpqrstuvwxyz23456789";

/// Shortest blocklist entry that is also refused as part of a longer password.
pub const MIN_SUBSTRING_LEN: usize = 4;
/// Shortest context word that is refused as part of a password.
pub const MIN_CONTEXT_LEN: usize = 3;
/// Candidates drawn before giving up (each is refused only with tiny probability).
const MAX_DRAWS: usize = 64;

static BLOCKLIST_TEXT: &str = include_str!("../data/blocklist.txt");
static WORDLIST_TEXT: &str = include_str!("../data/wordlist.txt");

fn entries(text: &'static str) -> impl Iterator<Item = &'static str> {
    text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#'))
}

struct Blocklist {
    exact: HashSet<&'static str>,
    substrings: Vec<&'static str>,
}

fn blocklist() -> &'static Blocklist {
    static LIST: OnceLock<Blocklist> = OnceLock::new();
    LIST.get_or_init(|| Blocklist {
        exact: entries(BLOCKLIST_TEXT).collect(),
        substrings: entries(BLOCKLIST_TEXT).filter(|e| e.len() >= MIN_SUBSTRING_LEN).collect(),
    })
}

/// The bundled passphrase word list.
pub fn word_list() -> &'static [&'static str] {
    static WORDS: OnceLock<Vec<&'static str>> = OnceLock::new();
    WORDS.get_or_init(|| entries(WORDLIST_TEXT).collect())
}

/// Number of entries in the bundled blocklist.
pub fn blocklist_len() -> usize {
    blocklist().exact.len()
}

/// What a reset will generate: recorded in the audit facts (never the password).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PasswordSpec {
    pub style: PasswordStyle,
    /// Characters (`characters` style) or words (`passphrase` style).
    pub size: u8,
    /// Always true: the account must choose a new password at next login.
    pub must_change: bool,
}

impl PasswordSpec {
    /// The spec for a policy. `must_change` cannot be turned off.
    pub fn from_policy(policy: &PasswordPolicy) -> Self {
        let size = match policy.style {
            PasswordStyle::Characters => policy.length.clamp(15, 64),
            PasswordStyle::Passphrase => policy.words.clamp(5, 10),
        };
        Self { style: policy.style, size, must_change: true }
    }
}

/// Why a candidate password is refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(rename_all = "kebab-case")]
pub enum Refusal {
    #[error("it is a common or breached password")]
    Common,
    #[error("it contains a common password or pattern")]
    ContainsCommon,
    #[error("it contains a word from the account (name, username, employee ID) or the organisation")]
    ContainsContext,
}

/// Generation could not produce an acceptable password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    #[error("no acceptable password after {0} attempts; the context words may cover the alphabet: check the organisation name in the configuration")]
    Exhausted(usize),
}

/// Check a candidate against the blocklist and context words (case-insensitive).
/// Context words shorter than [`MIN_CONTEXT_LEN`] characters are ignored.
pub fn check(candidate: &str, context: &[&str]) -> Result<(), Refusal> {
    let lower = Zeroizing::new(candidate.to_lowercase());
    let compact = Zeroizing::new(lower.chars().filter(|c| c.is_alphanumeric()).collect::<String>());
    let list = blocklist();
    if list.exact.contains(lower.as_str()) || list.exact.contains(compact.as_str()) {
        return Err(Refusal::Common);
    }
    if list.substrings.iter().any(|e| compact.contains(e)) {
        return Err(Refusal::ContainsCommon);
    }
    for word in context.iter().flat_map(|w| w.split(|c: char| !c.is_alphanumeric())) {
        let w = word.to_lowercase();
        if w.chars().count() >= MIN_CONTEXT_LEN && compact.contains(&w) {
            return Err(Refusal::ContainsContext);
        }
    }
    Ok(())
}

fn draw_characters<R: RngCore + CryptoRng>(length: usize, rng: &mut R) -> Zeroizing<String> {
    let mut s = Zeroizing::new(String::with_capacity(length));
    for _ in 0..length {
        let i = rng.gen_range(0..ALPHABET.len());
        s.push(char::from(ALPHABET[i]));
    }
    s
}

fn has_all_classes(s: &str) -> bool {
    s.bytes().any(|b| b.is_ascii_uppercase())
        && s.bytes().any(|b| b.is_ascii_lowercase())
        && s.bytes().any(|b| b.is_ascii_digit())
}

fn draw_passphrase<R: RngCore + CryptoRng>(words: usize, rng: &mut R) -> Zeroizing<String> {
    let mut s = Zeroizing::new(String::new());
    for i in 0..words {
        if i > 0 {
            s.push('-');
        }
        let word = word_list().choose(rng).copied().unwrap_or("maple");
        let mut chars = word.chars();
        if let Some(first) = chars.next() {
            s.push(first.to_ascii_uppercase());
            s.push_str(chars.as_str());
        }
    }
    s.push('-');
    s.push_str(&rng.gen_range(10..100).to_string());
    s
}

/// Generate a temporary password with `rng` (use [`generate`] in production).
pub fn generate_with<R: RngCore + CryptoRng>(
    spec: &PasswordSpec,
    context: &[&str],
    rng: &mut R,
) -> Result<Secret, PasswordError> {
    for _ in 0..MAX_DRAWS {
        let mut candidate = match spec.style {
            PasswordStyle::Characters => draw_characters(usize::from(spec.size.clamp(15, 64)), rng),
            PasswordStyle::Passphrase => draw_passphrase(usize::from(spec.size.clamp(5, 10)), rng),
        };
        if has_all_classes(&candidate) && check(&candidate, context).is_ok() {
            return Ok(Secret::new(std::mem::take(&mut *candidate)));
        }
    }
    Err(PasswordError::Exhausted(MAX_DRAWS))
}

/// Generate a temporary password from the operating system's CSPRNG.
pub fn generate(spec: &PasswordSpec, context: &[&str]) -> Result<Secret, PasswordError> {
    generate_with(spec, context, &mut OsRng)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(style: PasswordStyle) -> PasswordSpec {
        PasswordSpec::from_policy(&PasswordPolicy { style, ..PasswordPolicy::default() })
    }

    #[test]
    fn default_passwords_are_16_unambiguous_characters_of_every_class() {
        let s = spec(PasswordStyle::Characters);
        assert_eq!((s.size, s.must_change), (16, true));
        for _ in 0..200 {
            let p = generate(&s, &["jdoe"]).unwrap();
            assert_eq!(p.len(), 16);
            assert!(p.expose().bytes().all(|b| ALPHABET.contains(&b)));
            assert!(!p.expose().chars().any(|c| "0Oo1lIi".contains(c)));
            assert!(has_all_classes(p.expose()));
        }
    }

    #[test]
    fn passwords_do_not_repeat() {
        let s = spec(PasswordStyle::Characters);
        let set: HashSet<String> = (0..500).map(|_| generate(&s, &[]).unwrap().expose().to_owned()).collect();
        assert_eq!(set.len(), 500);
    }

    #[test]
    fn passphrases_have_at_least_five_list_words() {
        let s = spec(PasswordStyle::Passphrase);
        assert_eq!(s.size, 5);
        let p = generate(&s, &[]).unwrap();
        let parts: Vec<&str> = p.expose().split('-').collect();
        assert_eq!(parts.len(), 6, "{} words and a number", s.size);
        for w in &parts[..5] {
            assert!(word_list().contains(&w.to_lowercase().as_str()), "{w}");
        }
        assert!(parts[5].parse::<u8>().is_ok());
        assert!(p.len() >= 15);
    }

    #[test]
    fn must_change_cannot_be_configured_away_and_length_is_clamped() {
        let weak = PasswordPolicy { style: PasswordStyle::Characters, length: 4, words: 1 };
        let s = PasswordSpec::from_policy(&weak);
        assert!(s.must_change);
        assert_eq!(s.size, 15);
    }

    #[test]
    fn blocklist_refuses_common_passwords_and_patterns() {
        assert_eq!(check("Password1", &[]), Err(Refusal::Common));
        assert_eq!(check("P-a-s-s-w-o-r-d-1", &[]), Err(Refusal::Common));
        assert_eq!(check("xxWelcome2026xx", &[]), Err(Refusal::ContainsCommon));
        assert_eq!(check("Kz8qwertyuiopMn", &[]), Err(Refusal::ContainsCommon));
        assert_eq!(check("Hq7Tm3Vx9Rk4Pw2Z", &[]), Ok(()));
    }

    #[test]
    fn context_words_are_refused() {
        assert_eq!(check("Hq7JdoeVx9Rk4Pw2", &["jdoe"]), Err(Refusal::ContainsContext));
        assert_eq!(check("Hq7Tm3DOEVx9Rk4P", &["Jane Doe"]), Err(Refusal::ContainsContext));
        assert_eq!(check("Hq7E1234x9Rk4Pw2", &["E1234"]), Err(Refusal::ContainsContext));
        assert_eq!(check("ExampleCorp-Maple", &["Example Corp"]), Err(Refusal::ContainsContext));
        // Two-letter fragments are too short to matter.
        assert_eq!(check("Hq7JoVx9Rk4Pw2Zm", &["Jo"]), Ok(()));
    }

    #[test]
    fn a_broken_rng_ends_in_a_typed_error_not_a_weak_password() {
        // An RNG stuck at zero draws "AAAA...": refused every time, so generation gives up.
        let mut rng = rand::rngs::mock::StepRng::new(0, 0);
        let mut stuck = CryptoStep(&mut rng);
        assert_eq!(
            generate_with(&spec(PasswordStyle::Characters), &[], &mut stuck).unwrap_err(),
            PasswordError::Exhausted(MAX_DRAWS)
        );
    }

    /// Marks the mock RNG as crypto-grade for the exhaustion test only.
    struct CryptoStep<'a>(&'a mut rand::rngs::mock::StepRng);
    impl RngCore for CryptoStep<'_> {
        fn next_u32(&mut self) -> u32 {
            self.0.next_u32()
        }
        fn next_u64(&mut self) -> u64 {
            self.0.next_u64()
        }
        fn fill_bytes(&mut self, dest: &mut [u8]) {
            self.0.fill_bytes(dest)
        }
        fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand::Error> {
            self.0.try_fill_bytes(dest)
        }
    }
    impl CryptoRng for CryptoStep<'_> {}

    #[test]
    fn bundled_lists_are_sane() {
        assert!(blocklist_len() > 200);
        assert!(word_list().len() > 800);
        assert!(word_list().iter().all(|w| w.len() >= 4 && w.len() <= 8 && w.bytes().all(|b| b.is_ascii_lowercase())));
        let unique: HashSet<&&str> = word_list().iter().collect();
        assert_eq!(unique.len(), word_list().len());
        assert!(word_list().iter().all(|w| check(w, &[]).is_ok()), "no list word is itself blocked");
    }

    #[test]
    fn debug_never_shows_the_password() {
        let p = generate(&spec(PasswordStyle::Characters), &[]).unwrap();
        assert!(!format!("{p:?}").contains(p.expose()));
    }
}
