//! From an LDAP search entry to a [`DirectoryEntry`]: the attributes both flavours
//! share (names, contact points, manager, department, location), the time formats
//! (GeneralizedTime, AD FILETIME), and what the adapter cannot know from LDAP.
//!
//! Contact points get their change time from the configured attribute
//! (`contact_changed_attribute`); without one the time is unknown (`None`), which
//! the risk rules treat as a reason to escalate, never as "long ago".

use std::collections::HashMap;

use time::{Date, OffsetDateTime, PrimitiveDateTime};

use crate::directory::{ContactPoint, DirectoryEntry};

/// The attribute names a flavour reads an account from.
#[derive(Debug, Clone, Copy)]
pub struct Schema {
    /// The backend's name in logs and audit records.
    pub name: &'static str,
    /// Attributes the flavour reads besides the shared ones.
    pub extra: &'static [&'static str],
    pub username: &'static str,
    pub employee_id: &'static str,
    pub department: &'static str,
    /// Searched by the agent's query, besides the display name.
    pub searched: &'static [&'static str],
    /// Object class filter of accounts.
    pub accounts: &'static str,
}

/// What the entry needs besides its own attributes.
pub struct Context<'a> {
    pub manager: Option<String>,
    pub groups: Vec<String>,
    pub must_change_password: bool,
    pub contact_changed_attribute: &'a str,
    pub hire_date_attribute: &'a str,
}

/// Attributes of an account entry as `ldap3` returns them.
pub type Attrs = HashMap<String, Vec<String>>;

/// The first value of `name` (attribute names compared case-insensitively).
pub fn first<'a>(attrs: &'a Attrs, name: &str) -> Option<&'a str> {
    values(attrs, name).first().map(String::as_str)
}

/// Every value of `name`.
pub fn values<'a>(attrs: &'a Attrs, name: &str) -> &'a [String] {
    attrs.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map_or(&[], |(_, v)| v.as_slice())
}

/// The attributes to request for `schema` (plus the flavour's own).
pub fn requested<'a>(schema: &Schema, configured: &[&'a str]) -> Vec<&'a str>
where
    'static: 'a,
{
    let mut attrs: Vec<&str> = vec![
        schema.username,
        schema.employee_id,
        schema.department,
        "displayName",
        "cn",
        "mail",
        "mobile",
        "telephoneNumber",
        "manager",
        "l",
        "memberOf",
    ];
    attrs.extend_from_slice(schema.extra);
    attrs.extend(configured.iter().filter(|a| !a.is_empty()));
    attrs
}

/// The entry at `dn` with `attrs`, under `schema`.
pub fn map(schema: &Schema, dn: &str, attrs: &Attrs, ctx: Context<'_>) -> Option<DirectoryEntry> {
    let username = first(attrs, schema.username)?.to_owned();
    let changed_at = first(attrs, ctx.contact_changed_attribute).and_then(parse_generalized_time);
    let point = |value: &String, label: &str| ContactPoint { value: value.clone(), label: label.into(), changed_at };
    let emails = values(attrs, "mail").iter().map(|m| point(m, "work")).collect();
    let phones = values(attrs, "telephoneNumber")
        .iter()
        .map(|p| point(p, "desk"))
        .chain(values(attrs, "mobile").iter().map(|p| point(p, "mobile")))
        .collect();
    let date_of_hire = first(attrs, ctx.hire_date_attribute).and_then(parse_date).unwrap_or(UNKNOWN_HIRE_DATE);
    Some(DirectoryEntry {
        display_name: first(attrs, "displayName").or_else(|| first(attrs, "cn")).unwrap_or(&username).to_owned(),
        employee_id: first(attrs, schema.employee_id).unwrap_or_default().to_owned(),
        department: first(attrs, schema.department).unwrap_or_default().to_owned(),
        location: first(attrs, "l").unwrap_or_default().to_owned(),
        manager: ctx.manager,
        date_of_hire,
        emails,
        phones,
        groups: ctx.groups,
        flagged: false,
        flagged_until: None,
        must_change_password: ctx.must_change_password,
        verification_locked_until: None,
        dn: Some(dn.to_owned()),
        username,
    })
}

/// The date of hire when no attribute tells it: a date no one can state (the
/// employee-record step then never passes on it).
pub const UNKNOWN_HIRE_DATE: Date = Date::MIN;

/// RFC 4517 GeneralizedTime in UTC: `YYYYMMDDHHMMSS[.fff]Z` (OpenLDAP's `pwdChangedTime`).
pub fn parse_generalized_time(text: &str) -> Option<OffsetDateTime> {
    let body = text.strip_suffix('Z')?;
    let whole = body.split(['.', ',']).next()?;
    if whole.len() != 14 || !whole.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n = |r: std::ops::Range<usize>| whole[r].parse::<u32>().ok();
    let date = Date::from_calendar_date(
        i32::try_from(n(0..4)?).ok()?,
        time::Month::try_from(u8::try_from(n(4..6)?).ok()?).ok()?,
        u8::try_from(n(6..8)?).ok()?,
    )
    .ok()?;
    let t = time::Time::from_hms(
        u8::try_from(n(8..10)?).ok()?,
        u8::try_from(n(10..12)?).ok()?,
        u8::try_from(n(12..14)?).ok()?,
    )
    .ok()?;
    Some(PrimitiveDateTime::new(date, t).assume_utc())
}

/// GeneralizedTime of `t` (second precision, UTC).
pub fn format_generalized_time(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!("{:04}{:02}{:02}{:02}{:02}{:02}Z", t.year(), u8::from(t.month()), t.day(), t.hour(), t.minute(), t.second())
}

/// A date of hire: `YYYY-MM-DD`, or the date of a GeneralizedTime.
fn parse_date(text: &str) -> Option<Date> {
    if let Some(t) = parse_generalized_time(text) {
        return Some(t.date());
    }
    Date::parse(text, time::macros::format_description!("[year]-[month]-[day]")).ok()
}

/// Active Directory FILETIME (100 ns since 1601-01-01 UTC, e.g. `pwdLastSet`); `None`
/// for 0 ("must change at next logon": no time) and values out of range.
pub fn parse_filetime(text: &str) -> Option<OffsetDateTime> {
    const UNIX_EPOCH_IN_FILETIME_SECONDS: i64 = 11_644_473_600;
    let ticks: i64 = text.trim().parse().ok()?;
    if ticks <= 0 {
        return None;
    }
    OffsetDateTime::from_unix_timestamp(ticks / 10_000_000 - UNIX_EPOCH_IN_FILETIME_SECONDS).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::{date, datetime};

    #[test]
    fn generalized_time_round_trips_and_rejects_junk() {
        let t = datetime!(2026-12-01 15:16:17 UTC);
        assert_eq!(parse_generalized_time(&format_generalized_time(t)), Some(t));
        assert_eq!(parse_generalized_time("20261201151617.123Z"), Some(t));
        for bad in ["", "20261201151617", "2026120115161Z", "20261301151617Z", "2026120115161xZ"] {
            assert_eq!(parse_generalized_time(bad), None, "{bad:?}");
        }
        assert_eq!(parse_date("2019-04-01"), Some(date!(2019 - 04 - 01)));
    }

    #[test]
    fn filetime_is_read_and_zero_is_no_time() {
        // 2021-01-01T00:00:00Z
        assert_eq!(parse_filetime("132539328000000000"), Some(datetime!(2021-01-01 0:00 UTC)));
        assert_eq!(parse_filetime("0"), None);
        assert_eq!(parse_filetime("never"), None);
    }

    #[test]
    fn contact_points_without_a_change_attribute_have_no_time() {
        let schema = Schema {
            name: "t",
            extra: &[],
            username: "uid",
            employee_id: "employeeNumber",
            department: "departmentNumber",
            searched: &[],
            accounts: "",
        };
        let attrs: Attrs = [
            ("uid".to_owned(), vec!["ana".to_owned()]),
            ("mail".to_owned(), vec!["ana@example.com".to_owned()]),
            ("Mobile".to_owned(), vec!["+49 1".to_owned()]),
            ("changed".to_owned(), vec!["20200101000000Z".to_owned()]),
        ]
        .into();
        let ctx = |attr| Context {
            manager: None,
            groups: vec![],
            must_change_password: false,
            contact_changed_attribute: attr,
            hire_date_attribute: "",
        };
        let e = map(&schema, "uid=ana,dc=x", &attrs, ctx("")).unwrap();
        assert_eq!((e.emails[0].changed_at, e.phones[0].changed_at), (None, None));
        assert_eq!(e.phones[0].label, "mobile");
        assert_eq!(e.date_of_hire, UNKNOWN_HIRE_DATE);
        let e = map(&schema, "uid=ana,dc=x", &attrs, ctx("changed")).unwrap();
        assert_eq!(e.emails[0].changed_at, Some(datetime!(2020-01-01 0:00 UTC)));
        assert_eq!(e.display_name, "ana");
    }
}
