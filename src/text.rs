//! Normalisation of free text typed by requesters and agents.

use unicode_normalization::UnicodeNormalization;

/// Longest free-text input accepted anywhere (answers, names, notes): 4 KiB.
pub const MAX_INPUT_BYTES: usize = 4096;

/// Normalise a security answer for hashing and comparison: Unicode NFKC, then full
/// case folding, then every run of white space collapsed to one ASCII space and the
/// ends trimmed. NFKC runs again after folding, since folding can denormalise.
/// "  Fluffy\u{00A0}THE  cat " and "fluffy the cat" normalise alike.
pub fn normalize_answer(input: &str) -> String {
    let nfkc: String = input.nfkc().collect();
    let folded = caseless::default_case_fold_str(&nfkc);
    let nfkc2: String = folded.nfkc().collect();
    nfkc2.split_whitespace().collect::<Vec<_>>().join(" ")
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
        assert_eq!(normalize_answer("  Fluffy\u{00A0}THE \t cat "), "fluffy the cat");
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
