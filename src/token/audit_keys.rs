//! The token registry as the audit verifier's key source: a [`CertificateResolver`]
//! filled from a desk's data directory — the organisation CA (`<data_dir>/ca/ca.pem`,
//! or a given file) and the slot-9c certificates of the token registry
//! (`<data_dir>/tokens.sqlite`), revoked ones included with their revocation time (so
//! older records keep verifying) — and [`RegistryKeys`], the audit log's pre-commit key
//! check over it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::card::Slot;
use super::registry::{RegistryError, TokenRegistry, REGISTRY_FILE};
use crate::audit::resolver::{load_ca, CaLoadError, CertificateResolver, ResolveError};
use crate::audit::{KeyResolver, ResolvedKey};

/// Why the resolver could not be built.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Ca(#[from] CaLoadError),
    #[error("no token registry at {0}; pass the desk's data directory (the one holding tokens.sqlite)")]
    NoRegistry(String),
    #[error(transparent)]
    Registry(#[from] RegistryError),
}

/// What was loaded, and which certificates were refused (and why).
pub struct Loaded {
    pub resolver: CertificateResolver,
    pub certificates: usize,
    pub refused: Vec<(String, String)>,
}

/// The resolver over `data_dir`'s CA and registry.
pub fn load(data_dir: &Path, ca_file: Option<&Path>) -> Result<Loaded, LoadError> {
    let mut resolver = load_ca(data_dir, ca_file)?;
    let registry_path = data_dir.join(REGISTRY_FILE);
    if !registry_path.exists() {
        return Err(LoadError::NoRegistry(registry_path.display().to_string()));
    }
    let registry = TokenRegistry::open_path(&registry_path)?;
    let mut loaded = 0;
    let mut refused = Vec::new();
    for key in registry.all()? {
        // Only signature-slot keys sign audit records; a 9a key must not pass for one.
        if key.slot != Slot::Signature {
            continue;
        }
        let revoked_ms = key.revoked_at.map(|t| u64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(0));
        match resolver.add_enrolled_certificate_der(&key.cert_der, &key.username, revoked_ms) {
            Ok(_) => loaded += 1,
            Err(why) => refused.push((key.username.clone(), why)),
        }
    }
    Ok(Loaded { resolver, certificates: loaded, refused })
}

/// The audit log's key check over the data directory's CA and token registry.
///
/// The registry is read afresh for every lookup, so an agent enrolled, or a key
/// revoked, while the desk runs counts from the next record on (a lookup costs well
/// under a millisecond against ~9 ms for the card's signature). If the registry cannot
/// be read, the check fails and nothing is written.
pub struct RegistryKeys {
    data_dir: PathBuf,
    ca_file: Option<PathBuf>,
}

impl RegistryKeys {
    /// Check that the CA certificate and the enrolled 9c certificates load now.
    pub fn load(data_dir: PathBuf, ca_file: Option<PathBuf>) -> Result<Self, LoadError> {
        load(&data_dir, ca_file.as_deref())?;
        Ok(Self { data_dir, ca_file })
    }
}

impl KeyResolver for RegistryKeys {
    fn resolve(&self, key_id: &[u8; 32]) -> Result<Arc<ResolvedKey>, ResolveError> {
        load(&self.data_dir, self.ca_file.as_deref())
            .map_err(|e| ResolveError::Unavailable(e.to_string()))?
            .resolver
            .resolve(key_id)
    }
}
