//! OpenLDAP with the ppolicy and memberof overlays.
//!
//! - Groups: the `memberOf` the overlay maintains (DNs; the core maps them).
//! - Reset: ONE modify replacing `userPassword` and setting `pwdReset: TRUE`, so the
//!   password is never set without must-change (ppolicy sets `pwdReset` itself only
//!   for the rootdn; a service account must set it in the same operation).
//! - Must-change is confirmed by a bind with the ppolicy request control: the
//!   response says `changeAfterReset`.
//! - Last password change: `pwdChangedTime`.

use std::collections::HashSet;

use ldap3::{LdapConn, Mod};
use time::OffsetDateTime;

use super::connection::{rc, unreachable};
use super::entry::{first, parse_generalized_time, values, Attrs, Schema};
use super::ppolicy;
use super::{BindCheck, Flavour};
use crate::directory::DirectoryError;
use crate::secret::Secret;

pub struct OpenLdap;

const SCHEMA: Schema = Schema {
    name: "openldap",
    extra: &["pwdReset", "pwdChangedTime"],
    username: "uid",
    employee_id: "employeeNumber",
    department: "departmentNumber",
    searched: &["uid", "employeeNumber", "mail", "cn"],
    accounts: "(objectClass=inetOrgPerson)",
};

impl Flavour for OpenLdap {
    fn schema(&self) -> &'static Schema {
        &SCHEMA
    }

    fn groups(&self, _conn: &mut LdapConn, _dn: &str, attrs: &Attrs) -> Result<Vec<String>, DirectoryError> {
        Ok(values(attrs, "memberOf").to_vec())
    }

    fn must_change(&self, attrs: &Attrs) -> bool {
        first(attrs, "pwdReset").is_some_and(|v| v.eq_ignore_ascii_case("TRUE"))
    }

    fn password_changed_at(&self, attrs: &Attrs) -> Option<OffsetDateTime> {
        first(attrs, "pwdChangedTime").and_then(parse_generalized_time)
    }

    fn reset_modification(&self, password: &Secret) -> Vec<Mod<Vec<u8>>> {
        vec![
            Mod::Replace(b"userPassword".to_vec(), HashSet::from([password.expose().as_bytes().to_vec()])),
            Mod::Replace(b"pwdReset".to_vec(), HashSet::from([b"TRUE".to_vec()])),
        ]
    }

    fn bind_check(&self, conn: &mut LdapConn, dn: &str, password: &Secret) -> Result<BindCheck, DirectoryError> {
        let result = conn
            .with_controls(ppolicy::request())
            .simple_bind(dn, password.expose())
            .map_err(|e| unreachable("the user bind", &e))?;
        let policy = result
            .ctrls
            .iter()
            .find(|c| c.1.ctype == ppolicy::OID)
            .and_then(|c| c.1.val.as_deref())
            .and_then(ppolicy::parse);
        let must_change = policy.is_some_and(|p| p.error == Some(ppolicy::PolicyError::ChangeAfterReset));
        Ok(match result.rc {
            rc::SUCCESS => BindCheck { valid: true, must_change, diagnostic: result.text },
            _ => {
                BindCheck { valid: false, must_change: false, diagnostic: format!("rc {} {}", result.rc, result.text) }
            }
        })
    }
}
