//! Active Directory (tested on Samba AD DC).
//!
//! - Groups: every group the account is in, nested ones included, by one search with
//!   LDAP_MATCHING_RULE_IN_CHAIN (`member:1.2.840.113556.1.4.1941:=<dn>`), and
//!   [`ADMIN_COUNT_MARKER`] when `adminCount=1` (accounts AdminSDHolder protects, or
//!   once protected). Tiers stay the core's: the marker is a group name `[tiers]` maps
//!   (privileged by default). Samba does not enforce AdminSDHolder, so this app's own
//!   tier check is what keeps a lower agent from resetting a protected account.
//! - Reset: ONE modify replacing `unicodePwd` (UTF-16LE of the quoted password) and
//!   setting `pwdLastSet=0` (must change at next logon); AD takes it only over TLS.
//! - Must-change: `pwdLastSet=0`; a bind with the password then fails with
//!   "data 773". Last password change: `pwdLastSet` (FILETIME).

use std::collections::HashSet;

use ldap3::{LdapConn, Mod, Scope};
use time::OffsetDateTime;

use super::connection::{rc, refused, unreachable};
use super::entry::{first, parse_filetime, Attrs, Schema};
use super::filter::escape;
use super::{BindCheck, Flavour};
use crate::directory::DirectoryError;
use crate::secret::Secret;
use zeroize::Zeroizing;

/// The group name an account with `adminCount=1` gets, for `[tiers]` to map.
pub const ADMIN_COUNT_MARKER: &str = "adminCount";

/// Most groups one account is taken to be in (a bound on the in-chain search).
const MAX_GROUPS: i32 = 500;

pub struct ActiveDirectory {
    pub base_dn: String,
}

const SCHEMA: Schema = Schema {
    name: "active-directory",
    extra: &["pwdLastSet", "adminCount"],
    username: "sAMAccountName",
    employee_id: "employeeID",
    department: "department",
    searched: &["sAMAccountName", "employeeID", "mail", "cn", "userPrincipalName"],
    accounts: "(&(objectCategory=person)(objectClass=user))",
};

/// `unicodePwd`'s value: the password in double quotes, UTF-16LE.
pub fn unicode_pwd(password: &Secret) -> Zeroizing<Vec<u8>> {
    let quoted = Zeroizing::new(format!("\"{}\"", password.expose()));
    Zeroizing::new(quoted.encode_utf16().flat_map(u16::to_le_bytes).collect())
}

impl Flavour for ActiveDirectory {
    fn schema(&self) -> &'static Schema {
        &SCHEMA
    }

    fn groups(&self, conn: &mut LdapConn, dn: &str, attrs: &Attrs) -> Result<Vec<String>, DirectoryError> {
        let filter = format!("(&(objectClass=group)(member:1.2.840.113556.1.4.1941:={}))", escape(dn));
        let result = conn
            .with_search_options(ldap3::SearchOptions::new().sizelimit(MAX_GROUPS))
            .search(&self.base_dn, Scope::Subtree, &filter, vec!["1.1"])
            .map_err(|e| unreachable("the in-chain group search", &e))?;
        let (entries, status) = (result.0, result.1);
        if status.rc == rc::SIZE_LIMIT_EXCEEDED {
            return Err(refused(&format!("the account {dn:?} is in more than {MAX_GROUPS} groups"), &status));
        }
        if status.rc != rc::SUCCESS {
            return Err(refused("the in-chain group search", &status));
        }
        let mut groups: Vec<String> = super::entries_of(entries).map(|e| e.dn).collect();
        if first(attrs, "adminCount") == Some("1") {
            groups.push(ADMIN_COUNT_MARKER.to_owned());
        }
        Ok(groups)
    }

    fn must_change(&self, attrs: &Attrs) -> bool {
        first(attrs, "pwdLastSet") == Some("0")
    }

    fn password_changed_at(&self, attrs: &Attrs) -> Option<OffsetDateTime> {
        first(attrs, "pwdLastSet").and_then(parse_filetime)
    }

    fn reset_modification(&self, password: &Secret) -> Vec<Mod<Vec<u8>>> {
        // The modify's value lives in ldap3's request until it is sent; this copy of
        // the encoded password is wiped when the Zeroizing buffer drops.
        let encoded = unicode_pwd(password);
        vec![
            Mod::Replace(b"unicodePwd".to_vec(), HashSet::from([encoded.to_vec()])),
            Mod::Replace(b"pwdLastSet".to_vec(), HashSet::from([b"0".to_vec()])),
        ]
    }

    fn bind_check(&self, conn: &mut LdapConn, dn: &str, password: &Secret) -> Result<BindCheck, DirectoryError> {
        let result = conn.simple_bind(dn, password.expose()).map_err(|e| unreachable("the user bind", &e))?;
        Ok(match result.rc {
            rc::SUCCESS => BindCheck { valid: true, must_change: false, diagnostic: result.text },
            // "80090308: LdapErr: ... data 773": the password is right and must be changed.
            rc::INVALID_CREDENTIALS if result.text.contains("data 773") => {
                BindCheck { valid: true, must_change: true, diagnostic: result.text }
            }
            _ => {
                BindCheck { valid: false, must_change: false, diagnostic: format!("rc {} {}", result.rc, result.text) }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unicode_pwd_is_the_quoted_password_in_utf16le() {
        assert_eq!(unicode_pwd(&Secret::from("Ab1")).as_slice(), b"\"\0A\0b\x001\0\"\0");
        assert_eq!(unicode_pwd(&Secret::from("é")).as_slice(), b"\"\0\xe9\0\"\0");
    }
}
