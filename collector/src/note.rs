//! The log's checkpoint signing key (Ed25519, C2SP signed-note) and checkpoints.
//!
//! The key file holds the signed-note private key string `PRIVATE+KEY+<name>+<id>+<key>`
//! (mode 0600); the verifier key string `name+hex(id)+base64(0x01 || public key)` is
//! what auditors and desks trust (`resetdesk audit verify --collector-vkey`).

use std::path::Path;

use resetdesk::audit::Hash32;
use signed_note::{Note, StandardSigner};
use zeroize::Zeroizing;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read the signing key {path}: {source}; run `resetdesk-collector init --config FILE`")]
    Read { path: String, source: std::io::Error },
    #[error("{path} is not a signed-note Ed25519 private key for origin `{origin}`; run `resetdesk-collector init` again with a new key file")]
    Bad { path: String, origin: String },
    #[error("{path} already exists; refusing to overwrite a log's signing key")]
    Exists { path: String },
    #[error("cannot write {path}: {source}")]
    Write { path: String, source: std::io::Error },
    #[error("cannot sign the checkpoint: {0}")]
    Sign(String),
}

/// The checkpoint signer of one log.
pub struct LogKey {
    signer: StandardSigner,
    origin: String,
    vkey: String,
}

impl LogKey {
    /// Create a new key for `origin` at `path` (refuses to overwrite). Returns the
    /// verifier key string.
    pub fn create(path: &Path, origin: &str) -> Result<String, KeyError> {
        let shown = path.display().to_string();
        if path.exists() {
            return Err(KeyError::Exists { path: shown });
        }
        let (skey, vkey) = signed_note::generate_key(&mut rand::rngs::OsRng, origin);
        let skey = Zeroizing::new(skey);
        write_private(path, skey.as_bytes()).map_err(|source| KeyError::Write { path: shown.clone(), source })?;
        let vpath = path.with_extension("vkey");
        std::fs::write(&vpath, format!("{vkey}\n"))
            .map_err(|source| KeyError::Write { path: vpath.display().to_string(), source })?;
        Ok(vkey)
    }

    pub fn load(path: &Path, origin: &str) -> Result<Self, KeyError> {
        let shown = path.display().to_string();
        let text = Zeroizing::new(
            std::fs::read_to_string(path).map_err(|source| KeyError::Read { path: shown.clone(), source })?,
        );
        let bad = || KeyError::Bad { path: shown.clone(), origin: origin.to_owned() };
        let skey = text.trim();
        let signer = StandardSigner::new(skey).map_err(|_| bad())?;
        if signed_note::Signer::name(&signer) != origin {
            return Err(bad());
        }
        // PRIVATE+KEY+name+id+base64(0x01 || seed): derive the public key from the seed.
        // (base64 may itself contain '+', so split off the four fields before it).
        let seed_b64 = skey.splitn(5, '+').nth(4).ok_or_else(bad)?;
        use base64::Engine as _;
        let raw = Zeroizing::new(base64::engine::general_purpose::STANDARD.decode(seed_b64).map_err(|_| bad())?);
        let seed: [u8; 32] = raw.get(1..).and_then(|s| s.try_into().ok()).ok_or_else(bad)?;
        let sk = ed25519_dalek::SigningKey::from_bytes(&seed);
        let vkey = signed_note::new_ed25519_verifier_key(origin, &sk.verifying_key());
        Ok(Self { signer, origin: origin.to_owned(), vkey })
    }

    /// The verifier key string.
    pub fn verifier_key(&self) -> &str {
        &self.vkey
    }

    /// The log's origin (the key's name).
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// A signed note over `text` (which must end with a newline): the collector's signed
    /// answers besides checkpoints (e.g. approval decisions). Their first line is never
    /// the log's origin, so none reads as a checkpoint.
    pub fn sign_note(&self, text: &str) -> Result<String, KeyError> {
        if text.lines().next() == Some(self.origin.as_str()) {
            return Err(KeyError::Sign("a signed answer must not start with the log's origin".into()));
        }
        let mut note = Note::new(text.as_bytes(), &[]).map_err(|e| KeyError::Sign(e.to_string()))?;
        note.add_sigs(&[&self.signer]).map_err(|e| KeyError::Sign(e.to_string()))?;
        String::from_utf8(note.to_bytes()).map_err(|e| KeyError::Sign(e.to_string()))
    }

    /// A signed C2SP checkpoint note for a tree of `size` leaves with root `root`.
    pub fn sign_checkpoint(&self, size: u64, root: &Hash32) -> Result<String, KeyError> {
        let cp = tlog_tiles::Checkpoint::new(&self.origin, size, tlog_tiles::Hash(*root), "")
            .map_err(|e| KeyError::Sign(e.to_string()))?;
        let mut note = Note::new(&cp.to_bytes(), &[]).map_err(|e| KeyError::Sign(e.to_string()))?;
        note.add_sigs(&[&self.signer]).map_err(|e| KeyError::Sign(e.to_string()))?;
        String::from_utf8(note.to_bytes()).map_err(|e| KeyError::Sign(e.to_string()))
    }
}

pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}
