//! Search filters with every value escaped (RFC 4515 §3).
//!
//! A value typed by an agent ("admin*", "*)(uid=*") must only ever match itself:
//! [`escape`] turns each of `*`, `(`, `)`, `\` and NUL into `\XX`, and every byte
//! outside printable ASCII too, so nothing in a value can end an assertion, start a new
//! one or act as a wildcard. Attribute names never come from input.

use std::fmt::Write;

/// The RFC 4515 escaped form of `value` for an assertion value.
pub fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        match b {
            b'*' | b'(' | b')' | b'\\' | 0 => push_hex(&mut out, b),
            0x20..=0x7e => out.push(char::from(b)),
            _ => push_hex(&mut out, b),
        }
    }
    out
}

fn push_hex(out: &mut String, b: u8) {
    // Invariant: writing to a String cannot fail.
    let _ = write!(out, "\\{b:02x}");
}

/// Whether `value` may be searched for at all. Control characters never are: slapd
/// reads an escaped NUL (`\00`) in a substring as the end of the value, so `"\0"`
/// would match every entry.
pub fn searchable(value: &str) -> bool {
    !value.chars().any(char::is_control)
}

/// `(attr=value)`, the value escaped.
pub fn equals(attr: &str, value: &str) -> String {
    format!("({attr}={})", escape(value))
}

/// `(attr=*value*)`: the value escaped, so only the two outer stars are wildcards.
pub fn contains(attr: &str, value: &str) -> String {
    format!("({attr}=*{}*)", escape(value))
}

/// `(&(class)(|(a1=*v*)(a2=*v*)...))`: entries of `class` with `value` in any of `attrs`.
pub fn any_contains(class_filter: &str, attrs: &[&str], value: &str) -> String {
    let alternatives: String = attrs.iter().map(|a| contains(a, value)).collect();
    format!("(&{class_filter}(|{alternatives}))")
}

/// `(&(class)(attr=value))`.
pub fn class_and_equals(class_filter: &str, attr: &str, value: &str) -> String {
    format!("(&{class_filter}{})", equals(attr, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rfc_4515_specials_are_escaped() {
        assert_eq!(escape("a*b(c)d\\e\0f"), "a\\2ab\\28c\\29d\\5ce\\00f");
        assert_eq!(
            escape("Parens R Us (for all your parenthetical needs)"),
            "Parens R Us \\28for all your parenthetical needs\\29"
        );
        assert_eq!(escape("jsmith"), "jsmith");
    }

    #[test]
    fn control_characters_are_not_searchable() {
        assert!(searchable("Müller (admin)"));
        assert!(!searchable("a\0") && !searchable("a\nb"));
    }

    #[test]
    fn non_ascii_is_escaped_byte_by_byte() {
        assert_eq!(escape("Müller"), "M\\c3\\bcller");
        assert_eq!(escape("a\nb"), "a\\0ab");
    }

    #[test]
    fn an_injection_stays_one_value() {
        let f = equals("uid", "*)(uid=*");
        assert_eq!(f, "(uid=\\2a\\29\\28uid=\\2a)");
        // The filter parses as exactly one equality assertion.
        assert!(ldap3::parse_filter(&f).is_ok());
        assert_eq!(f.matches('(').count(), 1);
        let f = contains("cn", "admin*");
        assert_eq!(f, "(cn=*admin\\2a*)");
        let f = any_contains("(objectClass=person)", &["uid", "mail"], "x)(|(a=*");
        assert_eq!(f, "(&(objectClass=person)(|(uid=*x\\29\\28|\\28a=\\2a*)(mail=*x\\29\\28|\\28a=\\2a*)))");
        assert!(ldap3::parse_filter(&f).is_ok());
    }
}
