//! The token registry: which agent enrolled which key on which card.
//!
//! SQLite table `token_keys` in `<data_dir>/tokens.sqlite`, one row per enrolled key
//! (slot 9a and slot 9c of each enrolment). Login requires an active (not revoked) row
//! for the card's keys; the audit verifier resolves a record's key id to the agent and
//! the public key with [`TokenRegistry::by_key_id`] — revoked rows stay, so old records
//! keep verifying, and `revoked_at` tells from when a key was no longer trusted.

use std::path::{Path, PathBuf};

use p256::ecdsa::VerifyingKey;
use rusqlite::{params, Connection};
use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::card::Slot;

/// File name of the registry inside the data directory.
pub const REGISTRY_FILE: &str = "tokens.sqlite";

const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS token_keys (
    id             INTEGER PRIMARY KEY,
    key_id         BLOB NOT NULL UNIQUE CHECK (length(key_id) = 32),
    username       TEXT NOT NULL,
    serial         INTEGER NOT NULL,
    slot           TEXT NOT NULL CHECK (slot IN ('9a', '9c')),
    cert_der       BLOB NOT NULL,
    enrolled_at    TEXT NOT NULL,
    is_virtual     INTEGER NOT NULL CHECK (is_virtual IN (0, 1)),
    attested       INTEGER NOT NULL CHECK (attested IN (0, 1)),
    pin_policy     TEXT NOT NULL,
    touch_policy   TEXT NOT NULL,
    revoked_at     TEXT,
    revoked_reason TEXT
);
CREATE INDEX IF NOT EXISTS token_keys_username ON token_keys (username);
CREATE INDEX IF NOT EXISTS token_keys_serial ON token_keys (serial);
";

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("the token registry {path} could not be used ({source}); check the data directory and its permissions")]
    Database {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error("the token registry {path} is from a newer ResetDesk (schema {found}, this build knows {SCHEMA_VERSION}); upgrade ResetDesk")]
    SchemaTooNew { path: String, found: i64 },
    #[error("the token registry holds a corrupt row ({0}); restore tokens.sqlite from backup")]
    Corrupt(String),
    #[error("key {0} is already enrolled; revoke it first")]
    DuplicateKey(String),
    #[error("there is no token registry at {0}; no key has been enrolled on this desk yet (`resetdesk token enroll`), or the data directory is wrong")]
    Missing(String),
}

/// One enrolled key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyRecord {
    /// SHA-256 of the key's SubjectPublicKeyInfo (DER), hex in JSON.
    #[serde(serialize_with = "hex_ser")]
    pub key_id: [u8; 32],
    pub username: String,
    pub serial: u32,
    pub slot: Slot,
    #[serde(skip)]
    pub cert_der: Vec<u8>,
    #[serde(with = "time::serde::rfc3339")]
    pub enrolled_at: OffsetDateTime,
    pub is_virtual: bool,
    /// The key was proven to be generated on the device (PIV attestation to Yubico's root).
    pub attested: bool,
    pub pin_policy: String,
    pub touch_policy: String,
    #[serde(with = "time::serde::rfc3339::option")]
    pub revoked_at: Option<OffsetDateTime>,
    pub revoked_reason: Option<String>,
}

fn hex_ser<S: serde::Serializer>(v: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&hex::encode(v))
}

impl KeyRecord {
    pub fn is_active(&self) -> bool {
        self.revoked_at.is_none()
    }

    /// The public key, from the stored certificate.
    pub fn public_key(&self) -> Result<VerifyingKey, RegistryError> {
        use der::Decode;
        let cert = x509_cert::Certificate::from_der(&self.cert_der)
            .map_err(|e| RegistryError::Corrupt(format!("certificate of key {}: {e}", hex::encode(self.key_id))))?;
        crate::ca::p256_key(&cert.tbs_certificate.subject_public_key_info)
            .map_err(|e| RegistryError::Corrupt(format!("key {}: {e}", hex::encode(self.key_id))))
    }
}

/// A new key to record at enrolment.
#[derive(Debug, Clone)]
pub struct NewKey {
    pub key_id: [u8; 32],
    pub slot: Slot,
    pub cert_der: Vec<u8>,
    pub pin_policy: String,
    pub touch_policy: String,
    pub attested: bool,
}

/// The registry database.
#[derive(Debug)]
pub struct TokenRegistry {
    conn: Connection,
    path: PathBuf,
}

impl TokenRegistry {
    /// Open (creating if needed) `<data_dir>/tokens.sqlite`.
    pub fn open(data_dir: &Path) -> Result<Self, RegistryError> {
        Self::open_path(&data_dir.join(REGISTRY_FILE))
    }

    /// Open the registry in `data_dir` for reading and revocation; `Missing` when no key
    /// was ever enrolled there (instead of silently creating an empty registry).
    pub fn open_existing(data_dir: &Path) -> Result<Self, RegistryError> {
        let path = data_dir.join(REGISTRY_FILE);
        if !path.exists() {
            return Err(RegistryError::Missing(path.display().to_string()));
        }
        Self::open_path(&path)
    }

    /// Open (creating if needed) the registry at `path`.
    pub fn open_path(path: &Path) -> Result<Self, RegistryError> {
        let shown = path.display().to_string();
        let db = |source| RegistryError::Database { path: shown.clone(), source };
        let conn = Connection::open(path).map_err(db)?;
        conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(db)?;
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(db)?;
        if version > SCHEMA_VERSION {
            return Err(RegistryError::SchemaTooNew { path: shown, found: version });
        }
        conn.execute_batch(SCHEMA).map_err(db)?;
        conn.pragma_update(None, "user_version", SCHEMA_VERSION).map_err(db)?;
        Ok(Self { conn, path: path.to_owned() })
    }

    fn db(&self) -> impl Fn(rusqlite::Error) -> RegistryError + '_ {
        move |source| RegistryError::Database { path: self.path.display().to_string(), source }
    }

    /// Record an enrolment of `username` on card `serial`, atomically: keys previously
    /// enrolled on the same card are revoked ("replaced"), since generating new keys
    /// destroyed them.
    pub fn record_enrolment(
        &mut self,
        username: &str,
        serial: u32,
        is_virtual: bool,
        keys: &[NewKey],
        now: OffsetDateTime,
    ) -> Result<(), RegistryError> {
        let at = rfc3339(now);
        let path = self.path.display().to_string();
        let db = move |source| RegistryError::Database { path: path.clone(), source };
        let tx = self.conn.transaction().map_err(&db)?;
        tx.execute(
            "UPDATE token_keys SET revoked_at = ?1, revoked_reason = 'replaced by a new enrolment of the card'
             WHERE serial = ?2 AND revoked_at IS NULL",
            params![at, serial],
        )
        .map_err(&db)?;
        for k in keys {
            let r = tx.execute(
                "INSERT INTO token_keys (key_id, username, serial, slot, cert_der, enrolled_at, is_virtual,
                                         attested, pin_policy, touch_policy)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                params![
                    &k.key_id[..],
                    username,
                    serial,
                    k.slot.as_str(),
                    k.cert_der,
                    at,
                    is_virtual,
                    k.attested,
                    k.pin_policy,
                    k.touch_policy
                ],
            );
            match r {
                Ok(_) => {}
                Err(rusqlite::Error::SqliteFailure(e, _)) if e.code == rusqlite::ErrorCode::ConstraintViolation => {
                    return Err(RegistryError::DuplicateKey(hex::encode(k.key_id)));
                }
                Err(e) => return Err(db(e)),
            }
        }
        tx.commit().map_err(&db)
    }

    /// The key with this id (active or revoked): for the audit verifier and login.
    pub fn by_key_id(&self, key_id: &[u8; 32]) -> Result<Option<KeyRecord>, RegistryError> {
        let mut rows = self.query("WHERE key_id = ?1", params![&key_id[..]])?;
        Ok(rows.pop())
    }

    /// Every key of `username`, oldest first.
    pub fn for_user(&self, username: &str) -> Result<Vec<KeyRecord>, RegistryError> {
        self.query("WHERE username = ?1 ORDER BY id", params![username])
    }

    /// Every key, oldest first.
    pub fn all(&self) -> Result<Vec<KeyRecord>, RegistryError> {
        self.query("ORDER BY id", params![])
    }

    /// Revoke every active key of `username` (on card `serial` only, when given).
    /// Returns how many keys were revoked.
    pub fn revoke(
        &self,
        username: &str,
        serial: Option<u32>,
        reason: &str,
        now: OffsetDateTime,
    ) -> Result<usize, RegistryError> {
        self.conn
            .execute(
                "UPDATE token_keys SET revoked_at = ?1, revoked_reason = ?2
                 WHERE username = ?3 AND (?4 IS NULL OR serial = ?4) AND revoked_at IS NULL",
                params![rfc3339(now), reason, username, serial],
            )
            .map_err(self.db())
    }

    fn query(&self, clause: &str, args: impl rusqlite::Params) -> Result<Vec<KeyRecord>, RegistryError> {
        let sql = format!(
            "SELECT key_id, username, serial, slot, cert_der, enrolled_at, is_virtual, attested,
                    pin_policy, touch_policy, revoked_at, revoked_reason
             FROM token_keys {clause}"
        );
        let mut stmt = self.conn.prepare(&sql).map_err(self.db())?;
        let raw = stmt
            .query_map(args, |r| {
                Ok((
                    r.get::<_, Vec<u8>>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, u32>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, Vec<u8>>(4)?,
                    r.get::<_, String>(5)?,
                    r.get::<_, bool>(6)?,
                    r.get::<_, bool>(7)?,
                    r.get::<_, String>(8)?,
                    r.get::<_, String>(9)?,
                    r.get::<_, Option<String>>(10)?,
                    r.get::<_, Option<String>>(11)?,
                ))
            })
            .map_err(self.db())?
            .collect::<Result<Vec<_>, _>>()
            .map_err(self.db())?;
        raw.into_iter()
            .map(|(kid, username, serial, slot, cert_der, enrolled, is_virtual, attested, pin, touch, rev, reason)| {
                let key_id: [u8; 32] =
                    kid.try_into().map_err(|_| RegistryError::Corrupt("key_id is not 32 bytes".into()))?;
                Ok(KeyRecord {
                    key_id,
                    slot: Slot::parse(&slot).ok_or_else(|| RegistryError::Corrupt(format!("slot {slot:?}")))?,
                    enrolled_at: parse_time(&enrolled)?,
                    revoked_at: rev.as_deref().map(parse_time).transpose()?,
                    username,
                    serial,
                    cert_der,
                    is_virtual,
                    attested,
                    pin_policy: pin,
                    touch_policy: touch,
                    revoked_reason: reason,
                })
            })
            .collect()
    }
}

fn rfc3339(t: OffsetDateTime) -> String {
    // Formatting a valid OffsetDateTime as RFC 3339 only fails for years outside 0..=9999.
    t.format(&Rfc3339).unwrap_or_else(|_| t.unix_timestamp().to_string())
}

fn parse_time(s: &str) -> Result<OffsetDateTime, RegistryError> {
    OffsetDateTime::parse(s, &Rfc3339).map_err(|e| RegistryError::Corrupt(format!("time {s:?}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn key(b: u8, slot: Slot) -> NewKey {
        NewKey {
            key_id: [b; 32],
            slot,
            cert_der: vec![0x30, b],
            pin_policy: "once".into(),
            touch_policy: "never".into(),
            attested: false,
        }
    }

    #[test]
    fn enrolment_is_found_by_key_id_and_reenrolment_revokes_the_old_keys() {
        let dir = tempfile::tempdir().unwrap();
        let mut reg = TokenRegistry::open(dir.path()).unwrap();
        let t1 = datetime!(2026-01-01 10:00 UTC);
        reg.record_enrolment("alice", 42, true, &[key(1, Slot::Authentication), key(2, Slot::Signature)], t1).unwrap();
        let k = reg.by_key_id(&[2; 32]).unwrap().unwrap();
        assert_eq!((k.username.as_str(), k.serial, k.slot, k.is_active()), ("alice", 42, Slot::Signature, true));
        assert_eq!(k.enrolled_at, t1);

        let t2 = datetime!(2026-02-01 10:00 UTC);
        reg.record_enrolment("alice", 42, true, &[key(3, Slot::Authentication), key(4, Slot::Signature)], t2).unwrap();
        let old = reg.by_key_id(&[2; 32]).unwrap().unwrap();
        assert_eq!(old.revoked_at, Some(t2), "old keys stay for verification but are revoked");
        assert!(reg.by_key_id(&[4; 32]).unwrap().unwrap().is_active());
        assert_eq!(reg.for_user("alice").unwrap().len(), 4);
        assert!(reg.by_key_id(&[9; 32]).unwrap().is_none());
    }

    #[test]
    fn revoke_only_touches_the_named_agent_and_card() {
        let dir = tempfile::tempdir().unwrap();
        let mut reg = TokenRegistry::open(dir.path()).unwrap();
        let t = datetime!(2026-01-01 10:00 UTC);
        reg.record_enrolment("alice", 1, false, &[key(1, Slot::Signature)], t).unwrap();
        reg.record_enrolment("alice", 2, false, &[key(2, Slot::Signature)], t).unwrap();
        reg.record_enrolment("bob", 3, false, &[key(3, Slot::Signature)], t).unwrap();
        assert_eq!(reg.revoke("alice", Some(1), "lost", t).unwrap(), 1);
        assert!(!reg.by_key_id(&[1; 32]).unwrap().unwrap().is_active());
        assert!(reg.by_key_id(&[2; 32]).unwrap().unwrap().is_active());
        assert_eq!(reg.revoke("alice", None, "left", t).unwrap(), 1);
        assert!(reg.by_key_id(&[3; 32]).unwrap().unwrap().is_active());
    }

    #[test]
    fn the_same_key_cannot_be_enrolled_twice() {
        let dir = tempfile::tempdir().unwrap();
        let mut reg = TokenRegistry::open(dir.path()).unwrap();
        let t = datetime!(2026-01-01 10:00 UTC);
        reg.record_enrolment("alice", 1, false, &[key(1, Slot::Signature)], t).unwrap();
        let e = reg.record_enrolment("bob", 2, false, &[key(1, Slot::Signature)], t).unwrap_err();
        assert!(matches!(e, RegistryError::DuplicateKey(_)));
        assert_eq!(reg.by_key_id(&[1; 32]).unwrap().unwrap().username, "alice");
    }

    #[test]
    fn open_existing_does_not_create_a_registry() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(TokenRegistry::open_existing(dir.path()), Err(RegistryError::Missing(_))));
        assert!(!dir.path().join(REGISTRY_FILE).exists());
        TokenRegistry::open(dir.path()).unwrap();
        TokenRegistry::open_existing(dir.path()).unwrap();
    }

    #[test]
    fn newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(REGISTRY_FILE);
        Connection::open(&path).unwrap().pragma_update(None, "user_version", 99).unwrap();
        assert!(matches!(TokenRegistry::open_path(&path), Err(RegistryError::SchemaTooNew { found: 99, .. })));
    }
}
