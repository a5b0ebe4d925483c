//! The LDAP directory backend: OpenLDAP (ppolicy, memberof) or Active Directory.
//!
//! - [`connection`]: LDAPS / StartTLS over rustls, timeouts, the service account.
//! - [`filter`]: every filter value escaped (RFC 4515).
//! - [`entry`]: attributes to [`DirectoryEntry`], time formats.
//! - [`openldap`], [`active_directory`]: what differs between the two ([`Flavour`]).
//! - [`ppolicy`]: the password policy control's response.
//!
//! What LDAP does not hold stays in a local side store in the data directory, keyed by
//! username: security answers, TOTP keys, verification lockouts and flags. It is the
//! embedded directory's own database (`directory.sqlite`); only those columns of it
//! are read for an LDAP account, never its groups, contacts or passwords.
//!
//! Invariants: the adapter decides no tier (groups go to the core's `GroupRules`); a
//! reset is one modify that sets the password and must-change together; every filter
//! value is escaped; results are bounded (`size_limit`); the service password is
//! read from a file and never logged.

pub mod active_directory;
pub mod connection;
pub mod demo;
pub mod entry;
pub mod filter;
pub mod openldap;
pub mod ppolicy;

use std::sync::Mutex;

use ldap3::{LdapConn, Mod, Scope, SearchEntry};
use time::OffsetDateTime;

use self::connection::{rc, refused, unreachable, Endpoint};
use self::entry::{Attrs, Context, Schema};
use super::embedded::{EmbeddedDirectory, NewAccount};
use super::{Directory, DirectoryEntry, DirectoryError, PasswordCheck, VerificationMaterial};
use crate::config::{Config, LdapConfig, LdapFlavour};
use crate::secret::Secret;

/// What a password bind tells about an account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindCheck {
    pub valid: bool,
    /// The password was set by a reset and must be changed (ppolicy changeAfterReset,
    /// AD "data 773").
    pub must_change: bool,
    /// The server's diagnostic text.
    pub diagnostic: String,
}

/// What differs between OpenLDAP and Active Directory.
pub trait Flavour: Send + Sync {
    /// Its name, attribute names and account filter.
    fn schema(&self) -> &'static Schema;
    /// The groups (DNs or marker names) of the account at `dn`.
    fn groups(&self, conn: &mut LdapConn, dn: &str, attrs: &Attrs) -> Result<Vec<String>, DirectoryError>;
    fn must_change(&self, attrs: &Attrs) -> bool;
    fn password_changed_at(&self, attrs: &Attrs) -> Option<OffsetDateTime>;
    /// The one modify that sets a temporary password with must-change.
    fn reset_modification(&self, password: &Secret) -> Vec<Mod<Vec<u8>>>;
    /// Bind `conn` as `dn` with `password` and read what the server says.
    fn bind_check(&self, conn: &mut LdapConn, dn: &str, password: &Secret) -> Result<BindCheck, DirectoryError>;
}

/// The LDAP backend.
pub struct LdapDirectory {
    config: LdapConfig,
    endpoint: Endpoint,
    flavour: Box<dyn Flavour>,
    /// The service connection, opened on first use and again after a failure.
    conn: Mutex<Option<LdapConn>>,
    /// The side store; behind a lock because creating a row needs `&mut`.
    side: Mutex<EmbeddedDirectory>,
}

impl LdapDirectory {
    /// Open the backend `[directory.ldap]` describes, with the side store in
    /// `config.data_dir`. Connects and binds once, so a wrong URL, CA or password is
    /// an error here rather than at the first search.
    pub fn open(config: &Config) -> Result<Self, DirectoryError> {
        let ldap = config.directory.ldap.clone();
        let endpoint = Endpoint::from_config(&ldap)?;
        let flavour: Box<dyn Flavour> = match ldap.flavour {
            LdapFlavour::Openldap => Box::new(openldap::OpenLdap),
            LdapFlavour::ActiveDirectory => {
                Box::new(active_directory::ActiveDirectory { base_dn: ldap.base_dn.clone() })
            }
        };
        let side = EmbeddedDirectory::open(&config.data_dir, config)?;
        let first = endpoint.connect_service()?;
        Ok(Self { config: ldap, endpoint, flavour, conn: Mutex::new(Some(first)), side: Mutex::new(side) })
    }

    /// The side store (security answers, TOTP keys, lockouts and flags).
    pub fn side_store(&mut self) -> &mut EmbeddedDirectory {
        self.side.get_mut().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn side(&self) -> std::sync::MutexGuard<'_, EmbeddedDirectory> {
        self.side.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Run `op` on the service connection; a connection that failed is dropped, so the
    /// next call connects again.
    fn with_conn<T>(&self, op: impl FnOnce(&mut LdapConn) -> Result<T, DirectoryError>) -> Result<T, DirectoryError> {
        let mut guard = self.conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if guard.as_mut().is_none_or(|c| c.is_closed()) {
            *guard = Some(self.endpoint.connect_service()?);
        }
        // Invariant: set just above when it was None.
        let Some(conn) = guard.as_mut() else { return Err(DirectoryError::Unreachable("no connection".into())) };
        let result = op(conn);
        if matches!(result, Err(DirectoryError::Unreachable(_))) {
            *guard = None;
        }
        result
    }

    fn attributes(&self) -> Vec<&str> {
        let configured = [self.config.contact_changed_attribute.as_str(), self.config.hire_date_attribute.as_str()];
        entry::requested(self.flavour.schema(), &configured)
    }

    /// Accounts matching `filter` under the base DN, at most `limit`, as (dn, attrs).
    fn find(&self, conn: &mut LdapConn, filter: &str, limit: usize) -> Result<Vec<(String, Attrs)>, DirectoryError> {
        let limit = limit.clamp(1, self.config.size_limit.max(1) as usize);
        let attrs = self.attributes();
        let result = conn
            .with_timeout(self.endpoint.timeout())
            .with_search_options(ldap3::SearchOptions::new().sizelimit(limit as i32).timelimit(self.time_limit()))
            .search(&self.config.base_dn, Scope::Subtree, filter, attrs)
            .map_err(|e| unreachable(&self.config.url, &e))?;
        let (entries, status) = (result.0, result.1);
        if status.rc != rc::SUCCESS && status.rc != rc::SIZE_LIMIT_EXCEEDED {
            return Err(refused("search", &status));
        }
        Ok(entries_of(entries).take(limit).map(|e| (e.dn, e.attrs)).collect())
    }

    fn time_limit(&self) -> i32 {
        i32::try_from(self.config.timeout_seconds.max(1)).unwrap_or(i32::MAX)
    }

    /// The one account with this username, as (dn, attrs).
    fn find_user(&self, conn: &mut LdapConn, username: &str) -> Result<(String, Attrs), DirectoryError> {
        if !filter::searchable(username) {
            return Err(DirectoryError::NotFound(username.to_owned()));
        }
        let schema = self.flavour.schema();
        let f = filter::class_and_equals(schema.accounts, schema.username, username);
        let mut found = self.find(conn, &f, 2)?;
        match found.len() {
            1 => Ok(found.remove(0)),
            0 => Err(DirectoryError::NotFound(username.to_owned())),
            _ => Err(DirectoryError::Refused(format!(
                "more than one account has the username {username:?} under {}; fix the directory",
                self.config.base_dn
            ))),
        }
    }

    /// The username of the account at `dn` (a manager), if it is one.
    fn username_at(&self, conn: &mut LdapConn, dn: &str) -> Result<Option<String>, DirectoryError> {
        let schema = self.flavour.schema();
        let result = conn
            .with_timeout(self.endpoint.timeout())
            .search(dn, Scope::Base, schema.accounts, vec![schema.username])
            .map_err(|e| unreachable(&self.config.url, &e))?;
        if result.1.rc == rc::NO_SUCH_OBJECT {
            return Ok(None);
        }
        if result.1.rc != rc::SUCCESS {
            return Err(refused("manager lookup", &result.1));
        }
        Ok(entries_of(result.0).next().and_then(|e| entry::first(&e.attrs, schema.username).map(str::to_owned)))
    }

    fn to_entry(&self, conn: &mut LdapConn, dn: &str, attrs: &Attrs) -> Result<Option<DirectoryEntry>, DirectoryError> {
        let manager = match entry::first(attrs, "manager") {
            Some(m) => self.username_at(conn, m)?,
            None => None,
        };
        let ctx = Context {
            manager,
            groups: self.flavour.groups(conn.with_timeout(self.endpoint.timeout()), dn, attrs)?,
            must_change_password: self.flavour.must_change(attrs),
            contact_changed_attribute: &self.config.contact_changed_attribute,
            hire_date_attribute: &self.config.hire_date_attribute,
        };
        let Some(mut e) = entry::map(self.flavour.schema(), dn, attrs, ctx) else { return Ok(None) };
        self.overlay_local(&mut e)?;
        Ok(Some(e))
    }

    /// Flags and verification lockouts are ResetDesk's own: from the side store.
    fn overlay_local(&self, e: &mut DirectoryEntry) -> Result<(), DirectoryError> {
        let local = self.side().entry(&e.username);
        match local {
            Ok(local) => {
                e.flagged = local.flagged;
                e.flagged_until = local.flagged_until;
                e.verification_locked_until = local.verification_locked_until;
                Ok(())
            }
            Err(DirectoryError::NotFound(_)) => Ok(()),
            Err(other) => Err(other),
        }
    }

    /// Check a password by binding as the account on a connection of its own:
    /// valid, and whether the directory requires a change (ppolicy / data 773).
    pub fn bind_check(&self, username: &str, password: &Secret) -> Result<BindCheck, DirectoryError> {
        let (dn, _) = self.with_conn(|conn| self.find_user(conn, username))?;
        let mut conn = self.endpoint.connect()?;
        let check = self.flavour.bind_check(conn.with_timeout(self.endpoint.timeout()), &dn, password);
        let _ = conn.unbind();
        check
    }

    /// Make sure the side store has a row for `username` (a lockout on an account it
    /// has never seen), with the directory's names.
    fn ensure_local(&self, username: &str) -> Result<(), DirectoryError> {
        let local = self.side().entry(username);
        match local {
            Ok(_) => return Ok(()),
            Err(DirectoryError::NotFound(_)) => {}
            Err(other) => return Err(other),
        }
        let e = self.entry(username)?;
        let row = NewAccount {
            username: e.username.clone(),
            display_name: e.display_name,
            employee_id: format!("ldap:{}", e.username),
            department: e.department,
            location: e.location,
            manager: None,
            date_of_hire: e.date_of_hire,
            emails: vec![],
            phones: vec![],
            groups: vec![],
            password: None,
            security_answers: vec![],
            totp_secret: None,
            flagged: false,
        };
        self.side().create_account(&row, OffsetDateTime::now_utc())
    }
}

/// The entries of a search result, without the referrals (search continuations AD
/// sends for its other partitions) and intermediate messages.
pub(crate) fn entries_of(raw: Vec<ldap3::ResultEntry>) -> impl Iterator<Item = SearchEntry> {
    raw.into_iter().filter(|e| !e.is_ref() && !e.is_intermediate()).map(SearchEntry::construct)
}

impl PasswordCheck {
    fn from_bind(check: &BindCheck) -> Self {
        Self { valid: check.valid, must_change: check.valid && check.must_change }
    }
}

impl LdapDirectory {
    /// [`LdapDirectory::bind_check`] as a [`PasswordCheck`].
    pub fn check_password(&self, username: &str, password: &Secret) -> Result<PasswordCheck, DirectoryError> {
        Ok(PasswordCheck::from_bind(&self.bind_check(username, password)?))
    }
}

impl Directory for LdapDirectory {
    fn backend_name(&self) -> &'static str {
        self.flavour.schema().name
    }

    fn entry(&self, username: &str) -> Result<DirectoryEntry, DirectoryError> {
        self.with_conn(|conn| {
            let (dn, attrs) = self.find_user(conn, username)?;
            self.to_entry(conn, &dn, &attrs)?.ok_or_else(|| DirectoryError::NotFound(username.to_owned()))
        })
    }

    fn search_entries(&self, query: &str, limit: usize) -> Result<Vec<DirectoryEntry>, DirectoryError> {
        let query = query.trim();
        if query.is_empty() || !filter::searchable(query) {
            return Ok(Vec::new());
        }
        let schema = self.flavour.schema();
        let f = filter::any_contains(schema.accounts, schema.searched, query);
        self.with_conn(|conn| {
            let found = self.find(conn, &f, limit)?;
            let mut out = Vec::with_capacity(found.len());
            for (dn, attrs) in &found {
                out.extend(self.to_entry(conn, dn, attrs)?);
            }
            out.sort_by(|a, b| a.username.cmp(&b.username));
            Ok(out)
        })
    }

    fn verification_material(&self, username: &str) -> Result<VerificationMaterial, DirectoryError> {
        // The side store's lock is released before `entry` takes it again.
        let local = self.side().verification_material(username);
        match local {
            Err(DirectoryError::NotFound(_)) => {
                // Not enrolled locally: no answers, no TOTP key, if the account exists.
                self.entry(username)?;
                Ok(VerificationMaterial::default())
            }
            other => other,
        }
    }

    fn set_temporary_password(&self, username: &str, password: &Secret) -> Result<(), DirectoryError> {
        self.with_conn(|conn| {
            let (dn, _) = self.find_user(conn, username)?;
            let result = conn
                .with_timeout(self.endpoint.timeout())
                .modify(&dn, self.flavour.reset_modification(password))
                .map_err(|e| unreachable(&self.config.url, &e))?;
            if result.rc != rc::SUCCESS {
                return Err(refused(&format!("password reset of {username:?}"), &result));
            }
            Ok(())
        })
    }

    fn lock_verification(
        &self,
        username: &str,
        until: OffsetDateTime,
        flag_until: OffsetDateTime,
    ) -> Result<(), DirectoryError> {
        self.ensure_local(username)?;
        self.side().lock_verification(username, until, flag_until)
    }

    fn clear_verification_lock(&self, username: &str) -> Result<(), DirectoryError> {
        self.ensure_local(username)?;
        self.side().clear_verification_lock(username)
    }

    fn clear_flag(&self, username: &str) -> Result<(), DirectoryError> {
        self.ensure_local(username)?;
        self.side().clear_flag(username)
    }

    fn password_changed_at(&self, username: &str) -> Result<Option<OffsetDateTime>, DirectoryError> {
        self.with_conn(|conn| {
            let (_, attrs) = self.find_user(conn, username)?;
            Ok(self.flavour.password_changed_at(&attrs))
        })
    }
}
