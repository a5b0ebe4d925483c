//! The password policy control (draft-behera-ldap-password-policy), as OpenLDAP's
//! ppolicy overlay speaks it: sent with a bind, answered with the account's state.
//!
//! `ldap3` has no parser for the response, so this reads its BER directly:
//!
//! ```text
//! PasswordPolicyResponseValue ::= SEQUENCE {
//!     warning [0] CHOICE { timeBeforeExpiration [0] INTEGER,
//!                          graceAuthNsRemaining [1] INTEGER } OPTIONAL,
//!     error   [1] ENUMERATED { passwordExpired (0), accountLocked (1),
//!                              changeAfterReset (2), ... } OPTIONAL }
//! ```

use ldap3::controls::RawControl;

/// OID of the request and the response control.
pub const OID: &str = "1.3.6.1.4.1.42.2.27.8.5.1";

/// The request control: no value, not critical (a server without ppolicy ignores it).
pub fn request() -> RawControl {
    RawControl { ctype: OID.to_owned(), crit: false, val: None }
}

/// The `error` of the response, where the bind tells one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyError {
    PasswordExpired,
    AccountLocked,
    /// The password was set by an administrator: the user must change it now.
    ChangeAfterReset,
    Other(u8),
}

/// The parsed response value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PolicyResponse {
    pub error: Option<PolicyError>,
}

/// Parse a response control's value; `None` if it is not well-formed BER of the type above.
pub fn parse(value: &[u8]) -> Option<PolicyResponse> {
    let (tag, body, rest) = tlv(value)?;
    if tag != 0x30 || !rest.is_empty() {
        return None;
    }
    let mut response = PolicyResponse::default();
    let mut fields = body;
    while !fields.is_empty() {
        let (tag, content, rest) = tlv(fields)?;
        match tag {
            0xa0 => {} // warning: not needed here
            0x81 => {
                let [code] = content else { return None };
                response.error = Some(match code {
                    0 => PolicyError::PasswordExpired,
                    1 => PolicyError::AccountLocked,
                    2 => PolicyError::ChangeAfterReset,
                    other => PolicyError::Other(*other),
                });
            }
            _ => return None,
        }
        fields = rest;
    }
    Some(response)
}

/// One BER tag-length-value: (tag, content, what follows). Single-byte tags only.
fn tlv(bytes: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = bytes.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n].iter().fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn change_after_reset_is_read() {
        assert_eq!(parse(&[0x30, 0x03, 0x81, 0x01, 0x02]).unwrap().error, Some(PolicyError::ChangeAfterReset));
    }

    #[test]
    fn a_warning_alone_is_no_error() {
        // warning: timeBeforeExpiration 300
        let v = [0x30, 0x06, 0xa0, 0x04, 0x80, 0x02, 0x01, 0x2c];
        assert_eq!(parse(&v).unwrap(), PolicyResponse { error: None });
        let both = [0x30, 0x09, 0xa0, 0x04, 0x80, 0x02, 0x01, 0x2c, 0x81, 0x01, 0x01];
        assert_eq!(parse(&both).unwrap().error, Some(PolicyError::AccountLocked));
        assert_eq!(parse(&[0x30, 0x00]).unwrap(), PolicyResponse::default());
    }

    #[test]
    fn malformed_values_are_none_not_panics() {
        for bad in [
            &[][..],
            &[0x30],
            &[0x30, 0x05, 0x81],
            &[0x31, 0x00],
            &[0x30, 0x03, 0x82, 0x01, 0x02],
            &[0x30, 0x84, 0xff, 0xff, 0xff, 0xff],
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }
}
