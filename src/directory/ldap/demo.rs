//! The demo organisation ([`crate::demo::DEMO_PEOPLE`]) as LDIF for a test directory
//! (`scripts/slapd.sh`, `resetdesk demo ldif`): the same people, groups, managers,
//! employee IDs, phone numbers and demo passwords as `demo init` writes into the
//! embedded directory, so the desk's tests run unchanged on either backend. Security
//! answers and TOTP keys are not in LDAP: `demo init` puts them in the side store.
//!
//! Two attributes of the test schema (`resetdeskPerson`, loaded by the script) carry
//! what LDAP has no standard attribute for: `resetdeskContactChangedAt` and
//! `resetdeskHireDate` (configure them as `contact_changed_attribute` and
//! `hire_date_attribute`).

use std::collections::BTreeMap;
use std::fmt::Write;

use time::{Duration, OffsetDateTime};

use super::entry::format_generalized_time;
use crate::demo::{demo_password, employee_id, phone, DEMO_PEOPLE};

/// Where the test directory keeps people and groups under its base DN.
pub const PEOPLE_OU: &str = "ou=people";
pub const GROUPS_OU: &str = "ou=groups";

/// The DN of a demo person.
pub fn person_dn(username: &str, base_dn: &str) -> String {
    format!("uid={username},{PEOPLE_OU},{base_dn}")
}

/// LDIF adding the demo people, then their groups (`groupOfNames`, so the memberof
/// overlay fills in `memberOf`), with contact changes dated relative to `now`.
pub fn ldif(base_dn: &str, now: OffsetDateTime) -> String {
    let mut out = String::new();
    let long_ago = now - Duration::days(400);
    // People first, managers before their reports are not needed: `manager` is a DN.
    for (i, p) in DEMO_PEOPLE.iter().enumerate() {
        let changed = if p.phone_recently_changed { now - Duration::days(2) } else { long_ago };
        let (y, m, d) = p.hired;
        let (given, sn) = p.display_name.split_once(' ').unwrap_or((p.display_name, p.display_name));
        let mut e = String::new();
        line(&mut e, "dn", &person_dn(p.username, base_dn));
        for class in ["top", "person", "organizationalPerson", "inetOrgPerson", "resetdeskPerson"] {
            line(&mut e, "objectClass", class);
        }
        line(&mut e, "uid", p.username);
        line(&mut e, "cn", p.display_name);
        line(&mut e, "sn", sn);
        line(&mut e, "givenName", given);
        line(&mut e, "displayName", p.display_name);
        line(&mut e, "employeeNumber", &employee_id(i));
        line(&mut e, "departmentNumber", p.department);
        line(&mut e, "l", p.location);
        line(&mut e, "mail", &format!("{}@example.com", p.username));
        line(&mut e, "telephoneNumber", &phone(i, p.location));
        line(&mut e, "mobile", &phone(i + 500, p.location));
        if let Some(m) = p.manager {
            line(&mut e, "manager", &person_dn(m, base_dn));
        }
        line(&mut e, "resetdeskHireDate", &format!("{y:04}-{m:02}-{d:02}"));
        line(&mut e, "resetdeskContactChangedAt", &format_generalized_time(changed));
        line(&mut e, "userPassword", demo_password(p.username).expose());
        out.push_str(&e);
        out.push('\n');
    }
    let mut groups: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for p in DEMO_PEOPLE {
        for g in p.groups {
            groups.entry(g).or_default().push(p.username);
        }
    }
    for (group, members) in groups {
        line(&mut out, "dn", &format!("cn={group},{GROUPS_OU},{base_dn}"));
        line(&mut out, "objectClass", "groupOfNames");
        line(&mut out, "cn", group);
        for m in members {
            line(&mut out, "member", &person_dn(m, base_dn));
        }
        out.push('\n');
    }
    out
}

/// `name: value`, base64 (`name:: ...`) when the value is not safe as is (RFC 2849).
fn line(out: &mut String, name: &str, value: &str) {
    let safe = value.bytes().all(|b| (0x20..0x7f).contains(&b))
        && !value.starts_with([' ', ':', '<'])
        && !value.ends_with(' ');
    // Invariant: writing to a String cannot fail.
    if safe {
        let _ = writeln!(out, "{name}: {value}");
    } else {
        use base64::Engine;
        let _ = writeln!(out, "{name}:: {}", base64::engine::general_purpose::STANDARD.encode(value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_demo_person_and_group_is_there_and_non_ascii_is_base64() {
        let text = ldif("dc=example,dc=test", OffsetDateTime::UNIX_EPOCH + Duration::days(20_000));
        assert_eq!(text.matches("objectClass: inetOrgPerson").count(), DEMO_PEOPLE.len());
        assert!(text.contains("dn: cn=helpdesk-senior,ou=groups,dc=example,dc=test"));
        assert!(text.contains("cn:: "), "Hannah Müller's name is base64");
        assert!(!text.contains("Müller"));
    }
}
