//! C2SP tlog-cosignature, Ed25519 (signature type 0x04): a witness's timestamped
//! statement that it verified a checkpoint's consistency.
//!
//! - key ID = SHA-256(name || "\n" || 0x04 || public key)[:4];
//! - signed message = `cosignature/v1\ntime <unix seconds>\n` || the checkpoint's
//!   note text (with its final newline, without signature lines);
//! - signature bytes = big-endian u64 timestamp || Ed25519 signature (72 bytes).
//!
//! [`Cosigner`] and [`CosignatureVerifier`] implement `signed_note`'s `Signer` and
//! `Verifier`, so notes are signed, serialised and checked by that crate
//! (`signed_note` 0.2 has no cosignature type of its own). Key strings follow
//! signed-note: the verifier key `name+hex(id)+base64(0x04 || public key)`, the
//! private key file `PRIVATE+KEY+name+hex(id)+base64(0x04 || seed)` (mode 0600).

use std::path::Path;

use base64::Engine as _;
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use zeroize::Zeroizing;

/// The signature type byte of Ed25519 cosignatures.
pub const COSIGNATURE_TYPE: u8 = 0x04;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

#[derive(Debug, thiserror::Error)]
pub enum CosignKeyError {
    #[error("`{0}` is not a witness verifier key (name+hex id+base64(0x04 || Ed25519 public key))")]
    BadVerifierKey(String),
    #[error("cannot read the witness key {path}: {source}; run `resetdesk-collector witness init --config FILE`")]
    Read { path: String, source: std::io::Error },
    #[error("{path} is not an Ed25519 cosignature private key named `{name}`")]
    BadPrivateKey { path: String, name: String },
    #[error("{path} already exists; refusing to overwrite a witness key")]
    Exists { path: String },
    #[error("cannot write {path}: {source}")]
    Write { path: String, source: std::io::Error },
    #[error("`{0}` is not a valid key name (non-empty, no spaces, no '+')")]
    Name(String),
}

/// The key ID of an Ed25519 cosigner.
pub fn key_id(name: &str, key: &VerifyingKey) -> u32 {
    let mut typed = vec![COSIGNATURE_TYPE];
    typed.extend_from_slice(key.as_bytes());
    signed_note::key_id(name, &typed)
}

/// The message a cosignature at `time` signs over a checkpoint's note text.
pub fn signed_message(time: u64, checkpoint_text: &[u8]) -> Vec<u8> {
    let mut msg = format!("cosignature/v1\ntime {time}\n").into_bytes();
    msg.extend_from_slice(checkpoint_text);
    msg
}

/// The verifier key string of a cosigner.
pub fn verifier_key(name: &str, key: &VerifyingKey) -> String {
    let mut typed = vec![COSIGNATURE_TYPE];
    typed.extend_from_slice(key.as_bytes());
    format!("{name}+{:08x}+{}", key_id(name, key), B64.encode(typed))
}

/// A witness's signing key, as a `signed_note` signer of cosignatures at a fixed time.
pub struct Cosigner {
    name: String,
    key: SigningKey,
    id: u32,
    time: u64,
}

impl Cosigner {
    pub fn new(name: &str, key: SigningKey) -> Result<Self, CosignKeyError> {
        if !signed_note::is_key_name_valid(name) {
            return Err(CosignKeyError::Name(name.to_owned()));
        }
        let id = key_id(name, &key.verifying_key());
        Ok(Self { name: name.to_owned(), key, id, time: 0 })
    }

    /// Create a key file for `name` (refuses to overwrite); returns the verifier key.
    pub fn create(path: &Path, name: &str) -> Result<String, CosignKeyError> {
        let shown = path.display().to_string();
        if path.exists() {
            return Err(CosignKeyError::Exists { path: shown });
        }
        let mut seed = Zeroizing::new([0u8; 32]);
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut *seed);
        let signer = Self::new(name, SigningKey::from_bytes(&seed))?;
        let mut typed = Zeroizing::new(vec![COSIGNATURE_TYPE]);
        typed.extend_from_slice(signer.key.as_bytes());
        let text = Zeroizing::new(format!("PRIVATE+KEY+{name}+{:08x}+{}\n", signer.id, B64.encode(&*typed)));
        crate::note::write_private(path, text.as_bytes())
            .map_err(|source| CosignKeyError::Write { path: shown.clone(), source })?;
        Ok(signer.verifier_key())
    }

    pub fn load(path: &Path, name: &str) -> Result<Self, CosignKeyError> {
        let shown = path.display().to_string();
        let text = Zeroizing::new(
            std::fs::read_to_string(path).map_err(|source| CosignKeyError::Read { path: shown.clone(), source })?,
        );
        let bad = || CosignKeyError::BadPrivateKey { path: shown.clone(), name: name.to_owned() };
        // PRIVATE+KEY+name+id+base64 (base64 may contain '+': split off four fields).
        let fields: Vec<&str> = text.trim().splitn(5, '+').collect();
        let [_, _, key_name, id, b64] = fields.as_slice() else { return Err(bad()) };
        if *key_name != name {
            return Err(bad());
        }
        let raw = Zeroizing::new(B64.decode(b64).map_err(|_| bad())?);
        let seed: [u8; 32] = match raw.split_first() {
            Some((&COSIGNATURE_TYPE, seed)) => seed.try_into().map_err(|_| bad())?,
            _ => return Err(bad()),
        };
        let signer = Self::new(name, SigningKey::from_bytes(&seed))?;
        if u32::from_str_radix(id, 16).ok() != Some(signer.id) {
            return Err(bad());
        }
        Ok(signer)
    }

    pub fn verifier_key(&self) -> String {
        verifier_key(&self.name, &self.key.verifying_key())
    }

    /// The same key, signing at `time` (POSIX seconds).
    pub fn at(&self, time: u64) -> Self {
        Self { name: self.name.clone(), key: self.key.clone(), id: self.id, time }
    }
}

impl signed_note::Signer for Cosigner {
    fn name(&self) -> &str {
        &self.name
    }
    fn key_id(&self) -> u32 {
        self.id
    }
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, ed25519_dalek::SignatureError> {
        let sig = self.key.sign(&signed_message(self.time, msg));
        let mut out = self.time.to_be_bytes().to_vec();
        out.extend_from_slice(&sig.to_bytes());
        Ok(out)
    }
}

/// A witness's public key, as a `signed_note` verifier of its cosignatures.
#[derive(Clone)]
pub struct CosignatureVerifier {
    name: String,
    key: VerifyingKey,
    id: u32,
}

impl CosignatureVerifier {
    /// From a verifier key string `name+hex(id)+base64(0x04 || public key)`.
    pub fn new(vkey: &str) -> Result<Self, CosignKeyError> {
        let bad = || CosignKeyError::BadVerifierKey(vkey.to_owned());
        let mut parts = vkey.splitn(3, '+');
        let (Some(name), Some(id), Some(b64)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad());
        };
        let raw = B64.decode(b64).map_err(|_| bad())?;
        let key = match raw.split_first() {
            Some((&COSIGNATURE_TYPE, pk)) => {
                let pk: [u8; 32] = pk.try_into().map_err(|_| bad())?;
                VerifyingKey::from_bytes(&pk).map_err(|_| bad())?
            }
            _ => return Err(bad()),
        };
        let v = Self { name: name.to_owned(), id: key_id(name, &key), key };
        if !signed_note::is_key_name_valid(name) || u32::from_str_radix(id, 16).ok() != Some(v.id) {
            return Err(bad());
        }
        Ok(v)
    }

    /// The timestamp of a cosignature's bytes, if well-formed.
    pub fn time_of(sig: &[u8]) -> Option<u64> {
        (sig.len() == 72).then(|| sig[..8].try_into().ok().map(u64::from_be_bytes)).flatten()
    }
}

impl signed_note::Verifier for CosignatureVerifier {
    fn name(&self) -> &str {
        &self.name
    }
    fn key_id(&self) -> u32 {
        self.id
    }
    fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        let Some(time) = Self::time_of(sig) else { return false };
        let Ok(sig) = ed25519_dalek::Signature::from_slice(&sig[8..]) else { return false };
        self.key.verify_strict(&signed_message(time, msg), &sig).is_ok()
    }
}
