//! Employee ID and date of hire. Knowledge that HR, colleagues and attackers may also
//! have ("PII is not proof", CISA AA23-320A): the default policy counts it only at the
//! standard tier and never together with security answers as two factors.

use time::macros::format_description;
use time::Date;

use super::{check_text, ct_eq, FailReason, InputError, Verdict};
use crate::directory::Account;
use crate::text::normalize_answer;

/// Parse a date typed as `YYYY-MM-DD`.
pub fn parse_date(field: &'static str, s: &str) -> Result<Date, InputError> {
    check_text(field, s)?;
    Date::parse(s.trim(), format_description!("[year]-[month]-[day]"))
        .map_err(|_| InputError::Format { field, expected: "a date as YYYY-MM-DD" })
}

/// Check the employee ID and date of hire the requester gave against the record.
/// Both are always compared; the verdict does not say which one was wrong.
pub fn check(account: &Account, employee_id: &str, date_of_hire: &str) -> Result<Verdict, InputError> {
    check_text("employee ID", employee_id)?;
    let date = parse_date("date of hire", date_of_hire)?;
    let id_ok = ct_eq(normalize_answer(employee_id).as_bytes(), normalize_answer(&account.employee_id).as_bytes());
    let date_ok = date == account.date_of_hire;
    if account.employee_id.trim().is_empty() {
        return Ok(Verdict::Failed(FailReason::NotEnrolled));
    }
    Ok(if id_ok & date_ok { Verdict::Passed } else { Verdict::Failed(FailReason::Mismatch) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::risk::tests::account;
    use crate::tier::AccountTier;

    #[test]
    fn matching_record_passes_case_and_width_insensitively() {
        let a = account(AccountTier::Standard);
        assert_eq!(check(&a, " e1234 ", "2019-03-04"), Ok(Verdict::Passed));
        assert_eq!(check(&a, "Ｅ１２３４", "2019-03-04"), Ok(Verdict::Passed));
    }

    #[test]
    fn either_part_wrong_is_one_undifferentiated_mismatch() {
        let a = account(AccountTier::Standard);
        assert_eq!(check(&a, "E1235", "2019-03-04"), Ok(Verdict::Failed(FailReason::Mismatch)));
        assert_eq!(check(&a, "E1234", "2019-03-05"), Ok(Verdict::Failed(FailReason::Mismatch)));
    }

    #[test]
    fn bad_input_is_typed() {
        let a = account(AccountTier::Standard);
        assert_eq!(check(&a, "", "2019-03-04"), Err(InputError::Empty { field: "employee ID" }));
        assert!(matches!(check(&a, "E1234", "04/03/2019"), Err(InputError::Format { .. })));
        assert!(matches!(check(&a, "E1234", "2019-02-30"), Err(InputError::Format { .. })));
        assert!(matches!(check(&a, "E12\u{0}34", "2019-03-04"), Err(InputError::ControlChars { .. })));
        assert!(matches!(check(&a, &"9".repeat(4097), "2019-03-04"), Err(InputError::TooLong { .. })));
        // Cyrillic "Е" (U+0415) is not Latin "E".
        assert_eq!(check(&a, "\u{0415}1234", "2019-03-04"), Ok(Verdict::Failed(FailReason::Mismatch)));
    }
}
