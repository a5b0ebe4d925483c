//! Receipts: the collector's signed checkpoints of a desk's log.
//!
//! Pure. When the collector has ingested records 1..=N of a desk log it returns a
//! [`Receipt`]: a [`Checkpoint`] (log id, N, entry hash of record N, RFC 6962 Merkle
//! root over entry hashes 1..=N) signed with the collector's ECDSA P-256 key. Whoever
//! holds a receipt can prove that the log once held exactly those N records, so a
//! truncated, rolled-back or rewritten log no longer verifies against it.
//!
//! The log id is the entry hash of record 1: unique per log and covered by the
//! first agent's signature.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::record::{take, Hash32};
use super::signer::{RecordSigner, SignError};

/// Domain tag of an encoded checkpoint (distinct from the record tag).
pub const CHECKPOINT_TAG: [u8; 16] = *b"resetdesk.ckpt\0\0";
/// Checkpoint format version.
pub const CHECKPOINT_VERSION: u16 = 1;
/// Encoded checkpoint length.
pub const CHECKPOINT_LEN: usize = 16 + 2 + 32 + 8 + 32 + 32 + 8;

/// What the collector attests about a desk log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint {
    /// Entry hash of the log's record 1.
    pub log_id: Hash32,
    /// Number of records covered (= seq of the last one).
    pub tree_size: u64,
    /// Entry hash of record `tree_size`.
    pub head_hash: Hash32,
    /// RFC 6962 Merkle tree hash over the entry hashes of records 1..=tree_size.
    pub root_hash: Hash32,
    /// When the collector issued it (UTC ms).
    pub issued_ms: u64,
}

/// Why a receipt is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReceiptError {
    #[error("checkpoint is {0} bytes, expected {CHECKPOINT_LEN}; the receipt is corrupt")]
    BadLength(usize),
    #[error("checkpoint lacks the checkpoint domain tag or has an unknown version; the receipt is corrupt or from a newer resetdesk")]
    BadHeader,
    #[error("checkpoint covers zero records")]
    Empty,
    #[error("receipt signed by collector key {0}, which is not among the trusted collector keys; pass the collector's public key")]
    UnknownCollector(String),
    #[error("the collector's signature on the receipt does not verify; the receipt was altered or forged")]
    BadSignature,
    #[error("receipt is not valid JSON/base64: {0}")]
    Encoding(String),
}

impl Checkpoint {
    /// The bytes the collector signs.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(CHECKPOINT_LEN);
        out.extend_from_slice(&CHECKPOINT_TAG);
        out.extend_from_slice(&CHECKPOINT_VERSION.to_be_bytes());
        out.extend_from_slice(&self.log_id);
        out.extend_from_slice(&self.tree_size.to_be_bytes());
        out.extend_from_slice(&self.head_hash);
        out.extend_from_slice(&self.root_hash);
        out.extend_from_slice(&self.issued_ms.to_be_bytes());
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, ReceiptError> {
        if bytes.len() != CHECKPOINT_LEN {
            return Err(ReceiptError::BadLength(bytes.len()));
        }
        if take::<16>(bytes, 0) != CHECKPOINT_TAG || u16::from_be_bytes(take(bytes, 16)) != CHECKPOINT_VERSION {
            return Err(ReceiptError::BadHeader);
        }
        let cp = Checkpoint {
            log_id: take(bytes, 18),
            tree_size: u64::from_be_bytes(take(bytes, 50)),
            head_hash: take(bytes, 58),
            root_hash: take(bytes, 90),
            issued_ms: u64::from_be_bytes(take(bytes, 122)),
        };
        if cp.tree_size == 0 {
            return Err(ReceiptError::Empty);
        }
        Ok(cp)
    }
}

/// A checkpoint with the collector's signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    pub checkpoint: Checkpoint,
    /// SHA-256 of the collector's public key (SPKI DER).
    pub collector_key_id: Hash32,
    /// ECDSA P-256 over SHA-256(checkpoint bytes), DER.
    pub signature: Vec<u8>,
}

impl Receipt {
    /// Sign a checkpoint (the collector's side; also used by tests).
    pub fn issue(checkpoint: Checkpoint, signer: &mut dyn RecordSigner) -> Result<Self, SignError> {
        let digest: Hash32 = Sha256::digest(checkpoint.encode()).into();
        let signature = signer.sign_digest(&digest)?;
        Ok(Receipt { checkpoint, collector_key_id: signer.key_id(), signature })
    }

    /// Check the collector's signature against the trusted collector keys.
    pub fn verify(&self, trusted: &CollectorKeys) -> Result<(), ReceiptError> {
        let key = trusted
            .get(&self.collector_key_id)
            .ok_or_else(|| ReceiptError::UnknownCollector(hex::encode(self.collector_key_id)))?;
        ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_ASN1, key)
            .verify(&self.checkpoint.encode(), &self.signature)
            .map_err(|_| ReceiptError::BadSignature)
    }

    /// One JSON line (for files handed to an auditor and for the store).
    pub fn to_json(&self) -> String {
        use base64::Engine as _;
        let j = ReceiptJson {
            checkpoint: base64::engine::general_purpose::STANDARD.encode(self.checkpoint.encode()),
            collector_key_id: hex::encode(self.collector_key_id),
            signature: base64::engine::general_purpose::STANDARD.encode(&self.signature),
        };
        // Serialising a struct of three strings cannot fail.
        serde_json::to_string(&j).unwrap_or_default()
    }

    pub fn from_json(line: &str) -> Result<Self, ReceiptError> {
        use base64::Engine as _;
        let enc = |e: &dyn std::fmt::Display| ReceiptError::Encoding(e.to_string());
        let j: ReceiptJson = serde_json::from_str(line).map_err(|e| enc(&e))?;
        let b64 = base64::engine::general_purpose::STANDARD;
        let checkpoint = Checkpoint::decode(&b64.decode(&j.checkpoint).map_err(|e| enc(&e))?)?;
        let mut collector_key_id = [0u8; 32];
        hex::decode_to_slice(&j.collector_key_id, &mut collector_key_id).map_err(|e| enc(&e))?;
        let signature = b64.decode(&j.signature).map_err(|e| enc(&e))?;
        Ok(Receipt { checkpoint, collector_key_id, signature })
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReceiptJson {
    checkpoint: String,
    collector_key_id: String,
    signature: String,
}

/// Trusted collector public keys: key id → SEC1 uncompressed P-256 point.
#[derive(Debug, Clone, Default)]
pub struct CollectorKeys {
    keys: std::collections::HashMap<Hash32, Vec<u8>>,
}

impl CollectorKeys {
    /// Add a key from its SubjectPublicKeyInfo DER (key id = SHA-256 of that DER).
    pub fn add_spki_der(&mut self, spki_der: &[u8]) -> Result<Hash32, String> {
        use spki::der::Decode as _;
        let spki = spki::SubjectPublicKeyInfoRef::from_der(spki_der)
            .map_err(|e| format!("not a SubjectPublicKeyInfo: {e}"))?;
        let point = spki.subject_public_key.raw_bytes().to_vec();
        let id: Hash32 = Sha256::digest(spki_der).into();
        self.keys.insert(id, point);
        Ok(id)
    }

    /// Add a key from a `-----BEGIN PUBLIC KEY-----` PEM.
    pub fn add_pem(&mut self, pem: &str) -> Result<Hash32, String> {
        let (label, der) = spki::der::pem::decode_vec(pem.as_bytes()).map_err(|e| format!("not PEM: {e}"))?;
        if label != "PUBLIC KEY" {
            return Err(format!("expected a PUBLIC KEY PEM, found {label}"));
        }
        self.add_spki_der(&der)
    }

    pub fn get(&self, id: &Hash32) -> Option<&[u8]> {
        self.keys.get(id).map(Vec::as_slice)
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// RFC 6962 Merkle tree hash over leaf hashes (our entry hashes already are
/// SHA-256(0x00 || record)). Empty input gives SHA-256 of the empty string.
pub fn merkle_root(leaves: &[Hash32]) -> Hash32 {
    match leaves.len() {
        0 => Sha256::digest([]).into(),
        1 => leaves[0],
        n => {
            // k = the largest power of two smaller than n (RFC 6962 §2.1).
            let k = 1usize << (usize::BITS - 1 - (n - 1).leading_zeros());
            let mut h = Sha256::new();
            h.update([1u8]);
            h.update(merkle_root(&leaves[..k]));
            h.update(merkle_root(&leaves[k..]));
            h.finalize().into()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(l: Hash32, r: Hash32) -> Hash32 {
        let mut h = Sha256::new();
        h.update([1u8]);
        h.update(l);
        h.update(r);
        h.finalize().into()
    }

    #[test]
    fn merkle_root_splits_at_the_largest_power_of_two() {
        let l: Vec<Hash32> = (0..5u8).map(|i| [i; 32]).collect();
        assert_eq!(merkle_root(&l[..1]), l[0]);
        assert_eq!(merkle_root(&l[..2]), node(l[0], l[1]));
        assert_eq!(merkle_root(&l[..3]), node(node(l[0], l[1]), l[2]));
        let four = node(node(l[0], l[1]), node(l[2], l[3]));
        assert_eq!(merkle_root(&l[..4]), four);
        assert_eq!(merkle_root(&l), node(four, l[4]));
        assert_eq!(hex::encode(merkle_root(&[])), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    }

    #[test]
    fn checkpoint_roundtrip_and_damage() {
        let cp = Checkpoint { log_id: [1; 32], tree_size: 9, head_hash: [2; 32], root_hash: [3; 32], issued_ms: 77 };
        let b = cp.encode();
        assert_eq!(b.len(), CHECKPOINT_LEN);
        assert_eq!(Checkpoint::decode(&b), Ok(cp));
        assert_eq!(Checkpoint::decode(&b[1..]), Err(ReceiptError::BadLength(CHECKPOINT_LEN - 1)));
        let mut bad = b.clone();
        bad[3] ^= 1;
        assert_eq!(Checkpoint::decode(&bad), Err(ReceiptError::BadHeader));
        let zero = Checkpoint { tree_size: 0, ..cp }.encode();
        assert_eq!(Checkpoint::decode(&zero), Err(ReceiptError::Empty));
    }
}
