//! The embedded directory: SQLite (bundled) in `<data_dir>/directory.sqlite`.
//!
//! The default backend, for small sites and for the demo. Schema changes are
//! numbered migrations applied in order at open (`PRAGMA user_version`). Passwords
//! and security answers are stored only as argon2id PHC strings.
//!
//! Known limitation: TOTP keys are stored as raw bytes, protected only by the file's
//! permissions (0600); a production site uses its LDAP/AD directory and its own MFA.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use argon2::password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use rusqlite::{params, Connection, OptionalExtension};
use time::format_description::well_known::Rfc3339;
use time::{Date, OffsetDateTime};

use super::{
    ContactPoint, Directory, DirectoryEntry, DirectoryError, PasswordCheck, SecurityAnswer, VerificationMaterial,
};
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::secret::Secret;
use crate::text::normalize_answer;
use zeroize::Zeroizing;

/// File name of the embedded directory inside the data directory.
pub const FILE_NAME: &str = "directory.sqlite";

/// Numbered migrations; index + 1 is the schema version after applying it.
const MIGRATIONS: &[&str] = &[
    // 1: accounts, contacts, groups, security answers.
    "CREATE TABLE accounts (
        username TEXT PRIMARY KEY NOT NULL,
        display_name TEXT NOT NULL,
        employee_id TEXT NOT NULL UNIQUE,
        department TEXT NOT NULL,
        location TEXT NOT NULL,
        manager TEXT REFERENCES accounts(username) DEFERRABLE INITIALLY DEFERRED,
        date_of_hire TEXT NOT NULL,
        flagged INTEGER NOT NULL DEFAULT 0,
        password_phc TEXT,
        must_change INTEGER NOT NULL DEFAULT 0,
        password_changed_at TEXT,
        failed_logins INTEGER NOT NULL DEFAULT 0,
        login_locked_until TEXT,
        verification_locked_until TEXT,
        totp_secret BLOB,
        created_at TEXT NOT NULL
    );
    CREATE TABLE contacts (
        username TEXT NOT NULL REFERENCES accounts(username) ON DELETE CASCADE,
        kind TEXT NOT NULL CHECK (kind IN ('email', 'phone')),
        value TEXT NOT NULL,
        label TEXT NOT NULL,
        changed_at TEXT NOT NULL,
        PRIMARY KEY (username, kind, value)
    );
    CREATE TABLE group_members (
        username TEXT NOT NULL REFERENCES accounts(username) ON DELETE CASCADE,
        group_name TEXT NOT NULL,
        PRIMARY KEY (username, group_name)
    );
    CREATE INDEX group_members_by_group ON group_members(group_name);
    CREATE TABLE security_answers (
        username TEXT NOT NULL REFERENCES accounts(username) ON DELETE CASCADE,
        position INTEGER NOT NULL,
        question TEXT NOT NULL,
        answer_phc TEXT NOT NULL,
        PRIMARY KEY (username, position)
    );",
    // 2: a lockout's flag lapses (NULL: a flag without an end, set by the security team).
    "ALTER TABLE accounts ADD COLUMN flagged_until TEXT;",
];

/// A new account for [`EmbeddedDirectory::create_account`] (demo data, imports).
#[derive(Debug, Clone)]
pub struct NewAccount {
    pub username: String,
    pub display_name: String,
    pub employee_id: String,
    pub department: String,
    pub location: String,
    pub manager: Option<String>,
    pub date_of_hire: Date,
    pub emails: Vec<ContactPoint>,
    pub phones: Vec<ContactPoint>,
    pub groups: Vec<String>,
    pub password: Option<Secret>,
    /// (question, answer) pairs; answers are normalised and hashed, never stored.
    pub security_answers: Vec<(String, Secret)>,
    pub totp_secret: Option<Vec<u8>>,
    pub flagged: bool,
}

/// The embedded SQLite directory.
pub struct EmbeddedDirectory {
    conn: Connection,
    path: PathBuf,
    /// Stamps `password_changed_at`.
    clock: Arc<dyn Clock>,
}

impl EmbeddedDirectory {
    /// Open (creating if needed) `<data_dir>/directory.sqlite` and migrate it.
    pub fn open(data_dir: &Path, config: &Config) -> Result<Self, DirectoryError> {
        std::fs::create_dir_all(data_dir).map_err(|e| {
            DirectoryError::Refused(format!("cannot create the data directory {}: {e}", data_dir.display()))
        })?;
        let path = data_dir.join(FILE_NAME);
        let conn = Connection::open(&path)?;
        restrict_permissions(&path);
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        // Every backend opens with the configuration; the embedded one needs nothing
        // from it (tiers are the core's: `crate::groups`).
        let _ = config;
        let mut dir = Self { conn, path, clock: Arc::new(SystemClock) };
        dir.migrate()?;
        Ok(dir)
    }

    /// Read the time (for `password_changed_at`) from `clock` instead of the system's.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Path of the database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn migrate(&mut self) -> Result<(), DirectoryError> {
        let version: i64 = self.conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        let known = MIGRATIONS.len() as i64;
        if version > known {
            return Err(DirectoryError::SchemaTooNew { path: self.path.display().to_string(), found: version, known });
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            let tx = self.conn.transaction()?;
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", (i + 1) as i64)?;
            tx.commit()?;
        }
        Ok(())
    }

    /// Number of accounts (used by `demo init` to stay idempotent).
    pub fn account_count(&self) -> Result<usize, DirectoryError> {
        let n: i64 = self.conn.query_row("SELECT COUNT(*) FROM accounts", [], |r| r.get(0))?;
        Ok(n as usize)
    }

    /// Create an account with its contacts, groups and hashed secrets in one transaction.
    pub fn create_account(&mut self, a: &NewAccount, now: OffsetDateTime) -> Result<(), DirectoryError> {
        let password_phc = a.password.as_ref().map(|p| hash_secret(p.expose())).transpose()?;
        let answers = a
            .security_answers
            .iter()
            .map(|(q, ans)| Ok((q.clone(), hash_secret(&normalize_answer(ans.expose()))?)))
            .collect::<Result<Vec<_>, DirectoryError>>()?;
        let tx = self.conn.transaction()?;
        tx.execute(
            "INSERT INTO accounts (username, display_name, employee_id, department, location, manager,
                date_of_hire, flagged, password_phc, must_change, password_changed_at, totp_secret, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 0, ?10, ?11, ?10)",
            params![
                a.username,
                a.display_name,
                a.employee_id,
                a.department,
                a.location,
                a.manager,
                a.date_of_hire.to_string(),
                a.flagged,
                password_phc,
                fmt_time(now),
                a.totp_secret,
            ],
        )?;
        for (kind, list) in [("email", &a.emails), ("phone", &a.phones)] {
            for c in list {
                tx.execute(
                    "INSERT INTO contacts (username, kind, value, label, changed_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![a.username, kind, c.value, c.label, change_time(c, &a.username)?],
                )?;
            }
        }
        for g in &a.groups {
            tx.execute("INSERT INTO group_members (username, group_name) VALUES (?1, ?2)", params![a.username, g])?;
        }
        for (i, (q, phc)) in answers.iter().enumerate() {
            tx.execute(
                "INSERT INTO security_answers (username, position, question, answer_phc) VALUES (?1, ?2, ?3, ?4)",
                params![a.username, i as i64, q, phc],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Check a password as a login would: valid, and whether a change is required.
    /// Does not count failures (this is an admin/demo aid, not a login service).
    pub fn check_password(&self, username: &str, password: &Secret) -> Result<PasswordCheck, DirectoryError> {
        let row: Option<(Option<String>, bool)> = self
            .conn
            .query_row("SELECT password_phc, must_change FROM accounts WHERE username = ?1", [username], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()?;
        let (phc, must_change) = row.ok_or_else(|| DirectoryError::NotFound(username.to_owned()))?;
        let valid = match phc {
            Some(phc) => verify_secret(&phc, password.expose(), username)?,
            None => false,
        };
        Ok(PasswordCheck { valid, must_change: valid && must_change })
    }

    /// Run an `UPDATE ... WHERE username = ?1` that must change exactly this account.
    fn update_account(&self, username: &str, sql: &str, params: impl rusqlite::Params) -> Result<(), DirectoryError> {
        match self.conn.execute(sql, params)? {
            0 => Err(DirectoryError::NotFound(username.to_owned())),
            _ => Ok(()),
        }
    }

    fn load_account(&self, username: &str) -> Result<Option<DirectoryEntry>, DirectoryError> {
        type Row = (String, String, String, String, Option<String>, String, bool, bool, Option<String>, Option<String>);
        let row: Option<Row> = self
            .conn
            .query_row(
                "SELECT display_name, employee_id, department, location, manager, date_of_hire,
                        flagged, must_change, verification_locked_until, flagged_until
                 FROM accounts WHERE username = ?1",
                [username],
                |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                        r.get(6)?,
                        r.get(7)?,
                        r.get(8)?,
                        r.get(9)?,
                    ))
                },
            )
            .optional()?;
        let Some((
            display_name,
            employee_id,
            department,
            location,
            manager,
            hire,
            flagged,
            must_change,
            vlock,
            flag_end,
        )) = row
        else {
            return Ok(None);
        };
        let corrupt = |what: String| DirectoryError::Corrupt { username: username.to_owned(), what };
        let date_of_hire = Date::parse(&hire, time::macros::format_description!("[year]-[month]-[day]"))
            .map_err(|e| corrupt(format!("date_of_hire {hire:?}: {e}")))?;
        let verification_locked_until = vlock
            .map(|t| OffsetDateTime::parse(&t, &Rfc3339).map_err(|e| corrupt(format!("verification lock {t:?}: {e}"))))
            .transpose()?;
        let flagged_until = flag_end
            .map(|t| OffsetDateTime::parse(&t, &Rfc3339).map_err(|e| corrupt(format!("flag end {t:?}: {e}"))))
            .transpose()?;

        let mut stmt = self.conn.prepare_cached(
            "SELECT kind, value, label, changed_at FROM contacts WHERE username = ?1 ORDER BY kind, value",
        )?;
        let mut emails = Vec::new();
        let mut phones = Vec::new();
        let rows = stmt.query_map([username], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?, r.get::<_, String>(3)?))
        })?;
        for row in rows {
            let (kind, value, label, changed) = row?;
            let changed_at = OffsetDateTime::parse(&changed, &Rfc3339)
                .map_err(|e| corrupt(format!("contact {value:?} changed_at {changed:?}: {e}")))?;
            let c = ContactPoint { value, label, changed_at: Some(changed_at) };
            if kind == "email" {
                emails.push(c)
            } else {
                phones.push(c)
            }
        }
        let mut stmt =
            self.conn.prepare_cached("SELECT group_name FROM group_members WHERE username = ?1 ORDER BY group_name")?;
        let groups = stmt.query_map([username], |r| r.get::<_, String>(0))?.collect::<Result<Vec<_>, _>>()?;

        Ok(Some(DirectoryEntry {
            username: username.to_owned(),
            display_name,
            employee_id,
            department,
            location,
            manager,
            date_of_hire,
            emails,
            phones,
            groups,
            flagged,
            flagged_until,
            must_change_password: must_change,
            verification_locked_until,
            dn: None,
        }))
    }
}

impl Directory for EmbeddedDirectory {
    fn backend_name(&self) -> &'static str {
        "embedded"
    }

    fn entry(&self, username: &str) -> Result<DirectoryEntry, DirectoryError> {
        self.load_account(username)?.ok_or_else(|| DirectoryError::NotFound(username.to_owned()))
    }

    fn search_entries(&self, query: &str, limit: usize) -> Result<Vec<DirectoryEntry>, DirectoryError> {
        let pattern = format!("%{}%", query.trim().replace(['%', '_', '\\'], ""));
        let mut stmt = self.conn.prepare_cached(
            "SELECT username FROM accounts
             WHERE username LIKE ?1 OR display_name LIKE ?1 OR employee_id LIKE ?1
                OR username IN (SELECT username FROM contacts WHERE kind = 'email' AND value LIKE ?1)
             ORDER BY username LIMIT ?2",
        )?;
        let names = stmt
            .query_map(params![pattern, limit as i64], |r| r.get::<_, String>(0))?
            .collect::<Result<Vec<_>, _>>()?;
        names.iter().map(|n| self.entry(n)).collect()
    }

    fn verification_material(&self, username: &str) -> Result<VerificationMaterial, DirectoryError> {
        let totp: Option<Option<Vec<u8>>> = self
            .conn
            .query_row("SELECT totp_secret FROM accounts WHERE username = ?1", [username], |r| r.get(0))
            .optional()?;
        let totp = totp.ok_or_else(|| DirectoryError::NotFound(username.to_owned()))?;
        let mut stmt = self.conn.prepare_cached(
            "SELECT question, answer_phc FROM security_answers WHERE username = ?1 ORDER BY position",
        )?;
        let security_answers = stmt
            .query_map([username], |r| Ok(SecurityAnswer { question: r.get(0)?, answer_phc: r.get(1)? }))?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(VerificationMaterial {
            security_answers,
            totp_secret: totp.map(|bytes| Secret::new(hex::encode(Zeroizing::new(bytes).as_slice()))),
        })
    }

    fn set_temporary_password(&self, username: &str, password: &Secret) -> Result<(), DirectoryError> {
        let phc = hash_secret(password.expose())?;
        let now = fmt_time(self.clock.now());
        self.update_account(
            username,
            "UPDATE accounts SET password_phc = ?2, must_change = 1, password_changed_at = ?3,
                failed_logins = 0, login_locked_until = NULL
             WHERE username = ?1",
            params![username, phc, now],
        )
    }

    fn lock_verification(
        &self,
        username: &str,
        until: OffsetDateTime,
        flag_until: OffsetDateTime,
    ) -> Result<(), DirectoryError> {
        // A flag without an end (the security team's) keeps none; a lapsed or lapsing
        // lockout flag is renewed. (The right side reads the row before the update.)
        self.update_account(
            username,
            "UPDATE accounts SET verification_locked_until = ?2,
                flagged_until = CASE WHEN flagged = 1 AND flagged_until IS NULL THEN NULL ELSE ?3 END,
                flagged = 1
             WHERE username = ?1",
            params![username, fmt_time(until), fmt_time(flag_until)],
        )
    }

    fn clear_verification_lock(&self, username: &str) -> Result<(), DirectoryError> {
        self.update_account(
            username,
            "UPDATE accounts SET verification_locked_until = NULL WHERE username = ?1",
            params![username],
        )
    }

    fn clear_flag(&self, username: &str) -> Result<(), DirectoryError> {
        self.update_account(
            username,
            "UPDATE accounts SET flagged = 0, flagged_until = NULL WHERE username = ?1",
            params![username],
        )
    }

    fn set_contact_point(
        &self,
        username: &str,
        kind: crate::workflow::ContactKind,
        point: &ContactPoint,
    ) -> Result<(), DirectoryError> {
        let kind = match kind {
            crate::workflow::ContactKind::Email => "email",
            crate::workflow::ContactKind::Phone => "phone",
        };
        // One transaction: the old point with this label goes, the new one comes.
        let tx = self.conn.unchecked_transaction()?;
        let exists: Option<i64> =
            tx.query_row("SELECT 1 FROM accounts WHERE username = ?1", [username], |r| r.get(0)).optional()?;
        if exists.is_none() {
            return Err(DirectoryError::NotFound(username.to_owned()));
        }
        tx.execute(
            "DELETE FROM contacts WHERE username = ?1 AND kind = ?2 AND (label = ?3 OR value = ?4)",
            params![username, kind, point.label, point.value],
        )?;
        tx.execute(
            "INSERT INTO contacts (username, kind, value, label, changed_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![username, kind, point.value, point.label, change_time(point, username)?],
        )?;
        tx.commit()?;
        Ok(())
    }

    fn password_changed_at(&self, username: &str) -> Result<Option<OffsetDateTime>, DirectoryError> {
        let row: Option<Option<String>> = self
            .conn
            .query_row("SELECT password_changed_at FROM accounts WHERE username = ?1", [username], |r| r.get(0))
            .optional()?;
        let changed = row.ok_or_else(|| DirectoryError::NotFound(username.to_owned()))?;
        changed
            .map(|t| {
                OffsetDateTime::parse(&t, &Rfc3339).map_err(|e| DirectoryError::Corrupt {
                    username: username.to_owned(),
                    what: format!("password_changed_at {t:?}: {e}"),
                })
            })
            .transpose()
    }
}

/// argon2id (default parameters: 19 MiB, 2 passes) PHC string of a secret.
pub fn hash_secret(secret: &str) -> Result<String, DirectoryError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(secret.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| DirectoryError::Hash(e.to_string()))
}

fn verify_secret(phc: &str, secret: &str, username: &str) -> Result<bool, DirectoryError> {
    let parsed = PasswordHash::new(phc)
        .map_err(|e| DirectoryError::Corrupt { username: username.to_owned(), what: format!("password hash: {e}") })?;
    Ok(Argon2::default().verify_password(secret.as_bytes(), &parsed).is_ok())
}

/// The stored change time of a contact point: the embedded directory always knows it.
fn change_time(point: &ContactPoint, username: &str) -> Result<String, DirectoryError> {
    point.changed_at.map(fmt_time).ok_or_else(|| DirectoryError::Corrupt {
        username: username.to_owned(),
        what: format!(
            "contact {:?} has no change time; the embedded directory records one for every contact",
            point.value
        ),
    })
}

fn fmt_time(t: OffsetDateTime) -> String {
    // Invariant: RFC 3339 formatting fails only for years outside 0..=9999, which
    // `OffsetDateTime` values built from the clock or from parsed RFC 3339 never have.
    t.format(&Rfc3339).unwrap_or_else(|_| "1970-01-01T00:00:00Z".into())
}

#[cfg(unix)]
fn restrict_permissions(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
}

#[cfg(not(unix))]
fn restrict_permissions(_path: &Path) {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tier::{AccountTier, AgentTier};
    use time::macros::{date, datetime};

    fn new_account(username: &str, groups: &[&str]) -> NewAccount {
        NewAccount {
            username: username.into(),
            display_name: format!("User {username}"),
            employee_id: format!("E-{username}"),
            department: "Finance".into(),
            location: "Berlin".into(),
            manager: None,
            date_of_hire: date!(2019 - 04 - 01),
            emails: vec![ContactPoint {
                value: format!("{username}@example.com"),
                label: "work".into(),
                changed_at: Some(datetime!(2020-01-01 0:00 UTC)),
            }],
            phones: vec![],
            groups: groups.iter().map(|g| g.to_string()).collect(),
            password: Some(Secret::from("old-password-123")),
            security_answers: vec![("First pet?".into(), Secret::from("  Fluffy "))],
            totp_secret: None,
            flagged: false,
        }
    }

    fn open() -> (tempfile::TempDir, EmbeddedDirectory) {
        let d = tempfile::tempdir().unwrap();
        let dir = EmbeddedDirectory::open(d.path(), &Config::default()).unwrap();
        (d, dir)
    }

    #[test]
    fn account_round_trips_and_the_core_maps_its_groups() {
        let (_d, mut dir) = open();
        dir.create_account(&new_account("ana", &["staff", "helpdesk-senior"]), OffsetDateTime::now_utc()).unwrap();
        let a = dir.entry("ana").unwrap();
        assert_eq!(a.groups, ["helpdesk-senior", "staff"]);
        let rules = Config::default().group_rules();
        let classified = dir.account("ana", &rules).unwrap();
        assert_eq!(classified.tier, AccountTier::Privileged);
        assert_eq!(classified.agent_tier, Some(AgentTier::Senior));
        assert_eq!(a.emails[0].value, "ana@example.com");
        assert_eq!(a.date_of_hire, date!(2019 - 04 - 01));
        assert!(matches!(dir.entry("nobody"), Err(DirectoryError::NotFound(_))));
    }

    #[test]
    fn answers_and_passwords_are_stored_only_as_argon2id() {
        let (_d, mut dir) = open();
        dir.create_account(&new_account("ben", &[]), OffsetDateTime::now_utc()).unwrap();
        let m = dir.verification_material("ben").unwrap();
        assert!(m.security_answers[0].answer_phc.starts_with("$argon2id$"));
        let parsed = PasswordHash::new(&m.security_answers[0].answer_phc).unwrap();
        assert!(Argon2::default().verify_password(b"fluffy", &parsed).is_ok(), "answer normalised before hashing");
        let raw = std::fs::read(dir.path()).unwrap();
        let hay = String::from_utf8_lossy(&raw);
        assert!(!hay.contains("old-password-123") && !hay.contains("Fluffy"));
    }

    #[test]
    fn temporary_password_always_sets_must_change() {
        let (_d, mut dir) = open();
        dir.create_account(&new_account("cy", &[]), OffsetDateTime::now_utc()).unwrap();
        let old = Secret::from("old-password-123");
        assert_eq!(dir.check_password("cy", &old).unwrap(), PasswordCheck { valid: true, must_change: false });
        let temp = Secret::from("Tmp-4hQ9-xr7W-2kPz");
        dir.set_temporary_password("cy", &temp).unwrap();
        assert_eq!(dir.check_password("cy", &old).unwrap(), PasswordCheck { valid: false, must_change: false });
        assert_eq!(dir.check_password("cy", &temp).unwrap(), PasswordCheck { valid: true, must_change: true });
        assert!(dir.entry("cy").unwrap().must_change_password);
        assert!(matches!(dir.set_temporary_password("ghost", &temp), Err(DirectoryError::NotFound(_))));
    }

    #[test]
    fn the_password_change_time_comes_from_the_directory_clock() {
        let (_d, dir) = open();
        let at = datetime!(2031-05-06 7:08:09 UTC);
        let mut dir = dir.with_clock(Arc::new(crate::clock::FixedClock::new(at)));
        dir.create_account(&new_account("ike", &[]), OffsetDateTime::now_utc()).unwrap();
        dir.set_temporary_password("ike", &Secret::from("Tmp-4hQ9-xr7W-2kPz")).unwrap();
        assert_eq!(dir.password_changed_at("ike").unwrap(), Some(at));
    }

    #[test]
    fn lock_verification_sets_lock_and_a_flag_that_lapses() {
        let (_d, mut dir) = open();
        dir.create_account(&new_account("hal", &[]), OffsetDateTime::now_utc()).unwrap();
        let until = datetime!(2030-01-01 12:00 UTC);
        let flag_until = datetime!(2030-01-31 12:00 UTC);
        dir.lock_verification("hal", until, flag_until).unwrap();
        let a = dir.entry("hal").unwrap();
        assert_eq!((a.verification_locked_until, a.flagged, a.flagged_until), (Some(until), true, Some(flag_until)));
        assert!(a.flagged_at(flag_until - time::Duration::seconds(1)));
        assert!(!a.flagged_at(flag_until), "the lockout's flag lapses");
        assert!(matches!(dir.lock_verification("ghost", until, flag_until), Err(DirectoryError::NotFound(_))));

        // A flag the security team set has no end, and a lockout does not give it one.
        let mut flagged = new_account("ida", &[]);
        flagged.flagged = true;
        dir.create_account(&flagged, OffsetDateTime::now_utc()).unwrap();
        dir.lock_verification("ida", until, flag_until).unwrap();
        let a = dir.entry("ida").unwrap();
        assert_eq!((a.flagged, a.flagged_until), (true, None));
        assert!(a.flagged_at(flag_until + time::Duration::days(3650)));
    }

    #[test]
    fn search_matches_name_and_employee_id_and_ignores_wildcards() {
        let (_d, mut dir) = open();
        dir.create_account(&new_account("dora", &[]), OffsetDateTime::now_utc()).unwrap();
        dir.create_account(&new_account("eli", &[]), OffsetDateTime::now_utc()).unwrap();
        assert_eq!(dir.search_entries("E-do", 10).unwrap().len(), 1);
        assert_eq!(dir.search_entries("user", 10).unwrap().len(), 2);
        assert_eq!(dir.search_entries("%", 10).unwrap().len(), 2, "wildcards are stripped, not interpreted");
        assert_eq!(dir.search_entries("zzz", 10).unwrap().len(), 0);
        let by_mail: Vec<String> = dir.search_entries("dora@", 10).unwrap().into_iter().map(|a| a.username).collect();
        assert_eq!(by_mail, ["dora"], "registered e-mail addresses are searched too");
    }

    #[test]
    fn reopening_keeps_data_and_refuses_newer_schema() {
        let d = tempfile::tempdir().unwrap();
        {
            let mut dir = EmbeddedDirectory::open(d.path(), &Config::default()).unwrap();
            dir.create_account(&new_account("fay", &[]), OffsetDateTime::now_utc()).unwrap();
        }
        let dir = EmbeddedDirectory::open(d.path(), &Config::default()).unwrap();
        assert_eq!(dir.account_count().unwrap(), 1);
        dir.conn.pragma_update(None, "user_version", 99).unwrap();
        drop(dir);
        assert!(matches!(
            EmbeddedDirectory::open(d.path(), &Config::default()),
            Err(DirectoryError::SchemaTooNew { found: 99, .. })
        ));
    }

    #[test]
    fn corrupt_rows_are_errors_not_panics() {
        let (_d, mut dir) = open();
        dir.create_account(&new_account("gil", &[]), OffsetDateTime::now_utc()).unwrap();
        dir.conn.execute("UPDATE accounts SET date_of_hire = 'yesterday' WHERE username = 'gil'", []).unwrap();
        assert!(matches!(dir.entry("gil"), Err(DirectoryError::Corrupt { .. })));
        dir.conn.execute("UPDATE accounts SET password_phc = 'garbage' WHERE username = 'gil'", []).unwrap();
        assert!(matches!(dir.check_password("gil", &Secret::from("x")), Err(DirectoryError::Corrupt { .. })));
    }
}
