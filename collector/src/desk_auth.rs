//! Which desk is calling: the bearer keys of the collector's desk services.
//!
//! `POST /add-records` needs no key: every record carries its agent's signature and
//! the collector verifies it. The services a desk asks for (approval requests,
//! cross-desk history, alerts) are not self-authenticating, so a desk presents its
//! desk key (`Authorization: Bearer <key>`): 256 random bits, made by
//! `resetdesk-collector desk-key add NAME`, kept in a file on the desk
//! (`[collector] desk_key_file`). The collector keeps only SHA-256 of each key, one
//! line `<desk name> <hex sha256>` per desk in `desk_keys_file`, and compares the
//! presented key's hash with every line in constant time.

use std::io::Write;
use std::path::Path;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use rand::RngCore;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::wire::ErrorBody;

/// Bytes of a desk key (hex-encoded on the desk).
const KEY_BYTES: usize = 32;
/// A desk name: what alerts and audit views call the desk.
const MAX_NAME: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum DeskKeyError {
    #[error("cannot read the desk keys file {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("cannot write the desk keys file {path}: {source}")]
    Write { path: String, source: std::io::Error },
    #[error("desk keys file {path} line {line}: expected `<desk name> <64 hex digits>`")]
    Line { path: String, line: usize },
    #[error("a desk name is 1 to 64 letters, digits, '.', '-' or '_': {0:?} is not")]
    Name(String),
    #[error("desk {0:?} already has a key in {1}; remove its line first to replace it")]
    Exists(String, String),
}

/// The desks the collector knows, by the hash of their keys.
#[derive(Debug, Clone, Default)]
pub struct DeskKeys {
    desks: Vec<(String, [u8; 32])>,
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

fn key_hash(key: &str) -> [u8; 32] {
    Sha256::digest(key.trim().as_bytes()).into()
}

impl DeskKeys {
    /// The keys of `path`; a missing file is no desk (every service call is refused).
    pub fn load(path: &Path) -> Result<Self, DeskKeyError> {
        let shown = path.display().to_string();
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(source) => return Err(DeskKeyError::Read { path: shown, source }),
        };
        Self::parse(&text).map_err(|line| DeskKeyError::Line { path: shown, line })
    }

    /// Parse the file's text; `Err(line number)` for a bad line.
    pub fn parse(text: &str) -> Result<Self, usize> {
        let mut desks = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut parts = line.split_whitespace();
            let (Some(name), Some(hash), None) = (parts.next(), parts.next(), parts.next()) else {
                return Err(n + 1);
            };
            let mut digest = [0u8; 32];
            if !valid_name(name) || hex::decode_to_slice(hash, &mut digest).is_err() {
                return Err(n + 1);
            }
            desks.push((name.to_owned(), digest));
        }
        Ok(Self { desks })
    }

    /// The desk whose key is `key`, comparing with every desk (no early exit).
    pub fn desk_of(&self, key: &str) -> Option<&str> {
        let presented = key_hash(key);
        let mut found = None;
        for (name, digest) in &self.desks {
            if bool::from(subtle_eq(digest, &presented)) {
                found = Some(name.as_str());
            }
        }
        found
    }

    pub fn is_empty(&self) -> bool {
        self.desks.is_empty()
    }

    /// Make a key for a new desk `name`, append its hash to `path` and return the key
    /// (shown once; the collector cannot show it again).
    pub fn add(path: &Path, name: &str) -> Result<Zeroizing<String>, DeskKeyError> {
        if !valid_name(name) {
            return Err(DeskKeyError::Name(name.to_owned()));
        }
        let shown = path.display().to_string();
        let existing = Self::load(path)?;
        if existing.desks.iter().any(|(n, _)| n == name) {
            return Err(DeskKeyError::Exists(name.to_owned(), shown));
        }
        let mut bytes = Zeroizing::new([0u8; KEY_BYTES]);
        rand::rngs::OsRng.fill_bytes(bytes.as_mut());
        let key = Zeroizing::new(hex::encode(bytes.as_ref()));
        let line = format!("{name} {}\n", hex::encode(key_hash(&key)));
        let write = |source| DeskKeyError::Write { path: shown.clone(), source };
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path).map_err(write)?;
        file.write_all(line.as_bytes()).map_err(write)?;
        file.sync_all().map_err(write)?;
        Ok(key)
    }
}

/// The desk keys file as the server reads it: read again whenever it changed, so a
/// desk added with `desk-key add` can call at once, on every instance, without a restart.
#[derive(Debug)]
pub struct DeskKeyFile {
    path: std::path::PathBuf,
    cached: std::sync::RwLock<(Option<std::time::SystemTime>, DeskKeys)>,
}

impl DeskKeyFile {
    /// The file at `path`, read now so a bad file stops the start.
    pub fn open(path: &Path) -> Result<Self, DeskKeyError> {
        let keys = DeskKeys::load(path)?;
        let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok();
        Ok(Self { path: path.to_owned(), cached: std::sync::RwLock::new((modified, keys)) })
    }

    /// No desk at all (a collector without desk services, in tests).
    pub fn none() -> Self {
        Self { path: std::path::PathBuf::new(), cached: std::sync::RwLock::new((None, DeskKeys::default())) }
    }

    /// The desk whose key is `key`, after reading the file again if it changed. A file
    /// that became unreadable or bad keeps the keys last read, with an error logged.
    pub fn desk_of(&self, key: &str) -> Option<String> {
        if !self.path.as_os_str().is_empty() {
            let modified = std::fs::metadata(&self.path).and_then(|m| m.modified()).ok();
            let stale = self.cached.read().map(|c| c.0 != modified).unwrap_or(true);
            if stale {
                match DeskKeys::load(&self.path) {
                    Ok(keys) => {
                        if let Ok(mut c) = self.cached.write() {
                            *c = (modified, keys);
                        }
                    }
                    Err(e) => tracing::error!("{e}; the desk keys read before stay in force"),
                }
            }
        }
        let cached = self.cached.read().ok()?;
        cached.1.desk_of(key).map(str::to_owned)
    }
}

/// Constant-time equality of two digests.
fn subtle_eq(a: &[u8; 32], b: &[u8; 32]) -> subtle::Choice {
    use subtle::ConstantTimeEq;
    a.ct_eq(b)
}

/// The state a router shares, as far as desk authentication needs it.
pub trait HasDeskKeys {
    fn desk_keys(&self) -> &DeskKeyFile;
}

impl<T: HasDeskKeys> HasDeskKeys for std::sync::Arc<T> {
    fn desk_keys(&self) -> &DeskKeyFile {
        (**self).desk_keys()
    }
}

/// An axum extractor: the name of the desk whose key the request presented, or a 401.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthenticatedDesk(pub String);

/// Why a service request was not let in.
#[derive(Debug)]
pub struct Unauthenticated(&'static str);

impl IntoResponse for Unauthenticated {
    fn into_response(self) -> Response {
        let body = ErrorBody { error: "unauthenticated".into(), message: self.0.into(), seq: None };
        let mut response = (StatusCode::UNAUTHORIZED, Json(body)).into_response();
        response.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
        response
    }
}

impl<S: HasDeskKeys + Send + Sync> FromRequestParts<S> for AuthenticatedDesk {
    type Rejection = Unauthenticated;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let value = parts
            .headers
            .get(header::AUTHORIZATION)
            .ok_or(Unauthenticated("this service needs the desk's key: Authorization: Bearer <desk key>"))?;
        let key = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or(Unauthenticated("the Authorization header must be `Bearer <desk key>`"))?;
        match state.desk_keys().desk_of(key) {
            Some(name) => Ok(Self(name)),
            None => {
                tracing::warn!("a service request presented an unknown desk key");
                Err(Unauthenticated(
                    "unknown desk key; ask the collector's admin for `resetdesk-collector desk-key add`",
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_added_is_found_and_only_its_hash_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("desk-keys");
        let a = DeskKeys::add(&path, "desk-a").unwrap();
        let b = DeskKeys::add(&path, "desk-b").unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains(a.as_str()) && !text.contains(b.as_str()), "{text}");
        let keys = DeskKeys::load(&path).unwrap();
        assert_eq!(keys.desk_of(&a), Some("desk-a"));
        assert_eq!(keys.desk_of(&b), Some("desk-b"));
        assert_eq!(keys.desk_of(&"0".repeat(64)), None);
        assert_eq!(keys.desk_of(""), None);
    }

    #[test]
    fn names_are_checked_and_never_doubled() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("desk-keys");
        assert!(matches!(DeskKeys::add(&path, "a b"), Err(DeskKeyError::Name(_))));
        assert!(matches!(DeskKeys::add(&path, ""), Err(DeskKeyError::Name(_))));
        DeskKeys::add(&path, "desk-a").unwrap();
        assert!(matches!(DeskKeys::add(&path, "desk-a"), Err(DeskKeyError::Exists(..))));
    }

    #[test]
    fn a_bad_line_is_named_by_its_number() {
        assert_eq!(DeskKeys::parse("# desks\n\ndesk-a 00\n").unwrap_err(), 3);
        assert_eq!(DeskKeys::parse(&format!("desk-a {} extra\n", "0".repeat(64))).unwrap_err(), 1);
        assert!(DeskKeys::parse(&format!("desk-a {}\n", "0".repeat(64))).is_ok());
        assert!(DeskKeys::load(Path::new("/nonexistent/desk-keys")).unwrap().is_empty());
    }

    #[test]
    fn the_server_sees_a_desk_added_after_it_started() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("desk-keys");
        let file = DeskKeyFile::open(&path).unwrap();
        let a = DeskKeys::add(&path, "desk-a").unwrap();
        assert_eq!(file.desk_of(&a).as_deref(), Some("desk-a"));
        std::fs::write(&path, "not a valid line\n").unwrap();
        assert_eq!(file.desk_of(&a).as_deref(), Some("desk-a"), "a broken file keeps the keys read before");
        assert_eq!(DeskKeyFile::none().desk_of(&a), None);
    }
}
