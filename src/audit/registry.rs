//! Adapter: a [`CertificateResolver`] filled from a desk's data directory — the
//! organisation CA (`<data_dir>/ca/ca.pem`, or a given file) and the slot-9c
//! certificates of the token registry (`<data_dir>/tokens.sqlite`), revoked ones
//! included with their revocation time (so older records keep verifying).

use std::path::Path;

use super::resolver::CertificateResolver;
use crate::ca::{CaError, CaPaths};
use crate::token::card::Slot;
use crate::token::registry::{TokenRegistry, REGISTRY_FILE};

/// Why the resolver could not be built.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read the organisation CA certificate {path}: {source}; pass --ca FILE or run `resetdesk ca init`")]
    CaFile { path: String, source: std::io::Error },
    #[error("organisation CA certificate {path}: {source}")]
    Ca { path: String, source: CaError },
    #[error("no token registry at {0}; pass the desk's data directory (the one holding tokens.sqlite)")]
    NoRegistry(String),
    #[error(transparent)]
    Registry(#[from] crate::token::registry::RegistryError),
}

/// What was loaded, and which certificates were refused (and why).
pub struct Loaded {
    pub resolver: CertificateResolver,
    pub certificates: usize,
    pub refused: Vec<(String, String)>,
}

/// The CA certificate: `ca_file` if given, else `<data_dir>/ca/ca.pem`.
pub fn load_ca(data_dir: &Path, ca_file: Option<&Path>) -> Result<CertificateResolver, LoadError> {
    let default = CaPaths::in_data_dir(data_dir).cert;
    let path = ca_file.unwrap_or(&default);
    let shown = path.display().to_string();
    let pem = std::fs::read_to_string(path).map_err(|source| LoadError::CaFile { path: shown.clone(), source })?;
    CertificateResolver::from_ca_pem(&pem).map_err(|source| LoadError::Ca { path: shown, source })
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
