//! Normalisation of free text typed by requesters and agents.

use unicode_normalization::UnicodeNormalization;
use zeroize::Zeroizing;

/// Longest free-text input accepted anywhere (answers, names, notes): 4 KiB.
pub const MAX_INPUT_BYTES: usize = 4096;

/// Normalise a security answer for hashing and comparison: Unicode NFKC, then full
/// case folding, then every run of white space collapsed to one ASCII space and the
/// ends trimmed. NFKC runs again after folding, since folding can denormalise.
/// "  Fluffy\u{00A0}THE  cat " and "fluffy the cat" normalise alike.
///
/// Answers are secrets: the result and every intermediate buffer are zeroized when
/// dropped (buffers are sized up front so that growing them leaves no stale copy in
/// the common case).
pub fn normalize_answer(input: &str) -> Zeroizing<String> {
    let nfkc = collect_zeroizing(input.nfkc(), input.len());
    let folded = Zeroizing::new(caseless::default_case_fold_str(&nfkc));
    let nfkc2 = collect_zeroizing(folded.nfkc(), folded.len());
    let mut out = Zeroizing::new(String::with_capacity(nfkc2.len()));
    for word in nfkc2.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

/// Collect characters into a zeroizing string with room for `len` bytes and some
/// expansion (NFKC rarely grows text by more than a third).
fn collect_zeroizing(chars: impl Iterator<Item = char>, len: usize) -> Zeroizing<String> {
    let mut s = Zeroizing::new(String::with_capacity(len.saturating_mul(4) / 3 + 16));
    s.extend(chars);
    s
}

/// True if the text contains control characters other than ordinary white space.
pub fn has_control_chars(input: &str) -> bool {
    input.chars().any(|c| c.is_control() && !matches!(c, ' ' | '\t' | '\n' | '\r'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_normalise_case_width_and_space() {
        assert_eq!(normalize_answer("  Fluffy\u{00A0}THE \t cat ").as_str(), "fluffy the cat");
        // Fullwidth letters (NFKC) and German sharp s (case folding).
        assert_eq!(normalize_answer("ＳＴＲＡＳＳＥ"), normalize_answer("straße"));
    }

    #[test]
    fn distinct_answers_stay_distinct() {
        assert_ne!(normalize_answer("rex"), normalize_answer("rexx"));
        assert_ne!(normalize_answer("new york"), normalize_answer("newyork"));
    }

    #[test]
    fn control_characters_are_detected() {
        assert!(has_control_chars("abc\u{0007}"));
        assert!(!has_control_chars("a b\tc"));
    }
}
