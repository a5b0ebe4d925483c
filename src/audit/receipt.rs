//! Receipts: what a collector signed about a desk's records.
//!
//! Pure. Two generations, both read:
//!
//! - **v2, [`InclusionReceipt`]** (what `resetdesk-collector` issues): the collector
//!   keeps one RFC 6962 Merkle log over the entry hashes of every desk's records. The
//!   receipt for one record is the collector's signed checkpoint of that log (a C2SP
//!   `tlog-checkpoint` in a C2SP `signed-note`, Ed25519) plus the inclusion proof of
//!   the record's entry hash. Because entry hashes chain (each record's prev hash is
//!   the entry hash before it), a receipt for record `seq` vouches for records
//!   1..=seq of that desk log: a log that lost, rewrote or rolled back any of them no
//!   longer verifies against it. The collector's key is trusted by its verifier key
//!   string `name+hex(key id)+base64(0x01 || public key)`; the checkpoint's origin
//!   must be that key's name.
//! - **v1, [`LegacyReceipt`]**: a per-desk [`Checkpoint`] (log id, N, entry hash of
//!   record N, Merkle root over entry hashes 1..=N) signed with an ECDSA P-256 key,
//!   trusted by its public key PEM. Kept readable for receipts already stored.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::record::{take, Hash32};
use super::signer::{RecordSigner, SignError};
use signed_note::{Note, StandardVerifier, Verifier as _, VerifierList};

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
    #[error("receipt checkpoint is not a signed note: {0}")]
    BadNote(String),
    #[error(
        "receipt checkpoint is signed by none of the trusted collector keys ({0}); pass the collector's verifier key"
    )]
    UntrustedNote(String),
    #[error("receipt checkpoint text is not a C2SP tlog checkpoint")]
    BadCheckpointText,
    #[error("receipt checkpoint origin `{origin}` is not the name of the key that signed it (`{key}`)")]
    OriginMismatch { origin: String, key: String },
    #[error("receipt is for leaf {leaf_index} but the checkpoint covers only {tree_size} leaves")]
    LeafBeyondTree { leaf_index: u64, tree_size: u64 },
    #[error("the inclusion proof does not lead from the record's entry hash to the checkpoint's root: the receipt was altered or is for another record")]
    BadInclusionProof,
    #[error("receipt is for seq 0; the first record is seq 1")]
    ZeroSeq,
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

/// v1: a per-desk checkpoint with the collector's ECDSA signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegacyReceipt {
    pub checkpoint: Checkpoint,
    /// SHA-256 of the collector's public key (SPKI DER).
    pub collector_key_id: Hash32,
    /// ECDSA P-256 over SHA-256(checkpoint bytes), DER.
    pub signature: Vec<u8>,
}

impl LegacyReceipt {
    /// Sign a checkpoint (the v1 collector's side; kept for tests of old receipts).
    pub fn issue(checkpoint: Checkpoint, signer: &mut dyn RecordSigner) -> Result<Self, SignError> {
        let digest: Hash32 = Sha256::digest(checkpoint.encode()).into();
        let signature = signer.sign_digest(&digest)?;
        Ok(LegacyReceipt { checkpoint, collector_key_id: signer.key_id(), signature })
    }

    /// Check the collector's signature against the trusted collector keys.
    pub fn verify(&self, trusted: &CollectorKeys) -> Result<(), ReceiptError> {
        let key = trusted
            .keys
            .get(&self.collector_key_id)
            .ok_or_else(|| ReceiptError::UnknownCollector(hex::encode(self.collector_key_id)))?;
        ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_ASN1, key)
            .verify(&self.checkpoint.encode(), &self.signature)
            .map_err(|_| ReceiptError::BadSignature)
    }

    /// One JSON line (for files handed to an auditor and for the store).
    pub fn to_json(&self) -> String {
        // Serialising a struct of three strings cannot fail.
        serde_json::to_string(&self.json()).unwrap_or_default()
    }

    fn json(&self) -> ReceiptJson {
        use base64::Engine as _;
        ReceiptJson {
            checkpoint: base64::engine::general_purpose::STANDARD.encode(self.checkpoint.encode()),
            collector_key_id: hex::encode(self.collector_key_id),
            signature: base64::engine::general_purpose::STANDARD.encode(&self.signature),
        }
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
        Ok(LegacyReceipt { checkpoint, collector_key_id, signature })
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReceiptJson {
    checkpoint: String,
    collector_key_id: String,
    signature: String,
}

/// Trusted collector keys: v1 ECDSA keys (key id → SEC1 uncompressed P-256 point)
/// and v2 signed-note verifier keys.
#[derive(Debug, Clone, Default)]
pub struct CollectorKeys {
    keys: std::collections::HashMap<Hash32, Vec<u8>>,
    /// Verifier key strings `name+hex(key id)+base64(type || key)`, checked on entry.
    note_keys: Vec<String>,
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

    /// Add a collector's signed-note verifier key (`name+hex(key id)+base64(0x01 ||
    /// Ed25519 public key)`). Returns its [`note_signer_id`].
    pub fn add_verifier_key(&mut self, vkey: &str) -> Result<Hash32, String> {
        let vkey = vkey.trim();
        let verifier = StandardVerifier::new(vkey).map_err(|e| {
            format!("`{vkey}` is not a signed-note verifier key (name+hex(key id)+base64(type || key)): {e}")
        })?;
        if !self.note_keys.iter().any(|k| k == vkey) {
            self.note_keys.push(vkey.to_owned());
        }
        Ok(note_signer_id(verifier.name(), verifier.key_id()))
    }

    /// Add a key from a file's text: a `PUBLIC KEY` PEM (v1) or a verifier key line (v2).
    pub fn add_text(&mut self, text: &str) -> Result<Hash32, String> {
        if text.trim_start().starts_with("-----BEGIN") {
            self.add_pem(text)
        } else {
            self.add_verifier_key(text)
        }
    }

    pub fn get(&self, id: &Hash32) -> Option<&[u8]> {
        self.keys.get(id).map(Vec::as_slice)
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty() && self.note_keys.is_empty()
    }

    /// The text of a signed note that a trusted collector key signed (a signed answer of
    /// the collector's desk services, e.g. an approval decision). The caller checks that
    /// the text is the kind of statement it expects.
    pub fn verify_note_text(&self, note: &str) -> Result<String, ReceiptError> {
        self.verified_note_text(note).map(|(text, _)| text)
    }

    /// The text of a signed note (any C2SP signed note, not only a checkpoint) that a
    /// trusted collector key signed, with that key's name. What the note's text means
    /// is the caller's to check (e.g. a cross-desk history answer).
    pub fn verified_note_text(&self, note: &str) -> Result<(String, String), ReceiptError> {
        let parsed = Note::from_bytes(note.as_bytes()).map_err(|e| ReceiptError::BadNote(e.to_string()))?;
        let (verified, _) = parsed.verify(&self.note_verifiers()).map_err(|e| match e {
            signed_note::NoteError::UnverifiedNote => {
                ReceiptError::UntrustedNote(format!("{} trusted", self.note_keys.len()))
            }
            other => ReceiptError::BadNote(other.to_string()),
        })?;
        let name = verified.first().map(|s| s.name().to_owned()).unwrap_or_default();
        let text = String::from_utf8(parsed.text().to_vec()).map_err(|e| ReceiptError::BadNote(e.to_string()))?;
        Ok((text, name))
    }

    fn note_verifiers(&self) -> VerifierList {
        // Every string was checked by add_verifier_key.
        let list = self.note_keys.iter().filter_map(|k| StandardVerifier::new(k).ok());
        VerifierList::new(list.map(|v| Box::new(v) as Box<dyn signed_note::Verifier>).collect())
    }
}

/// How a v2 receipt names its collector key (in heartbeats' `last_receipt`):
/// SHA-256(key name || 0x0A || 4-byte signed-note key id).
pub fn note_signer_id(name: &str, key_id: u32) -> Hash32 {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n");
    h.update(key_id.to_be_bytes());
    h.finalize().into()
}

/// v2: the collector's signed checkpoint of its Merkle log over all desks, and the
/// inclusion proof of one record's entry hash in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InclusionReceipt {
    /// The signed note: checkpoint text (origin, tree size, base64 root), an empty
    /// line, signature lines.
    pub signed_checkpoint: String,
    /// The desk-log seq of the record this receipt is for.
    pub seq: u64,
    /// The record's entry hash: its RFC 6962 leaf hash in the collector's log.
    pub entry_hash: Hash32,
    /// The leaf's index in the collector's log (0-based).
    pub leaf_index: u64,
    /// RFC 6962 inclusion proof (audit path), leaf to root.
    pub proof: Vec<Hash32>,
}

/// A verified v2 checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogCheckpoint {
    pub origin: String,
    pub tree_size: u64,
    pub root_hash: Hash32,
    /// The verifier key string of the collector key that signed it.
    pub collector_key: String,
}

/// The checkpoint a signed note carries, read without checking its signatures (for a
/// note checked when it was kept): `None` if its text is not a C2SP checkpoint.
pub fn checkpoint_ref(note: &str) -> Option<crate::audit::event::CheckpointRef> {
    let parsed = Note::from_bytes(note.as_bytes()).ok()?;
    let checkpoint = tlog_tiles::Checkpoint::from_bytes(parsed.text()).ok()?;
    Some(crate::audit::event::CheckpointRef {
        origin: checkpoint.origin().to_owned(),
        tree_size: checkpoint.size(),
        root_hash: checkpoint.hash().0,
    })
}

/// Verify a signed checkpoint note against the trusted collector keys: at least one
/// trusted key signed it, its text is a C2SP checkpoint, and its origin is the name
/// of the signing key.
pub fn verify_signed_checkpoint(note: &str, trusted: &CollectorKeys) -> Result<LogCheckpoint, ReceiptError> {
    let parsed = Note::from_bytes(note.as_bytes()).map_err(|e| ReceiptError::BadNote(e.to_string()))?;
    let verifiers = trusted.note_verifiers();
    let (verified, _) = parsed.verify(&verifiers).map_err(|e| match e {
        signed_note::NoteError::UnverifiedNote => {
            ReceiptError::UntrustedNote(format!("{} trusted", trusted.note_keys.len()))
        }
        other => ReceiptError::BadNote(other.to_string()),
    })?;
    let checkpoint = tlog_tiles::Checkpoint::from_bytes(parsed.text()).map_err(|_| ReceiptError::BadCheckpointText)?;
    let by_origin = verified.iter().find(|s| s.name() == checkpoint.origin());
    let Some(sig) = by_origin else {
        let key = verified.first().map(|s| s.name().to_owned()).unwrap_or_default();
        return Err(ReceiptError::OriginMismatch { origin: checkpoint.origin().to_owned(), key });
    };
    let collector_key = trusted
        .note_keys
        .iter()
        .find(|k| StandardVerifier::new(k).is_ok_and(|v| v.name() == sig.name() && v.key_id() == sig.id()))
        .cloned()
        .unwrap_or_default();
    Ok(LogCheckpoint {
        origin: checkpoint.origin().to_owned(),
        tree_size: checkpoint.size(),
        root_hash: checkpoint.hash().0,
        collector_key,
    })
}

/// A receipt serialises as the object [`Receipt::to_json`] writes: the collector
/// writes a batch's receipts straight into its answer this way, without a string
/// or a JSON value per receipt.
impl Serialize for Receipt {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Receipt::Legacy(r) => r.json().serialize(s),
            Receipt::Inclusion(r) => r.serialize(s),
        }
    }
}

/// The v2 JSON object: the fields of [`InclusionJson`], in its order.
impl Serialize for InclusionReceipt {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeSeq as _, SerializeStruct as _};

        /// The proof's hashes as base64 strings, each encoded on the stack.
        struct Proof<'a>(&'a [Hash32]);
        impl Serialize for Proof<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                use base64::Engine as _;
                let mut seq = s.serialize_seq(Some(self.0.len()))?;
                for h in self.0 {
                    // 32 bytes are 44 characters of padded base64.
                    let mut buf = [0u8; 44];
                    let n = base64::engine::general_purpose::STANDARD
                        .encode_slice(h, &mut buf)
                        .map_err(serde::ser::Error::custom)?;
                    seq.serialize_element(std::str::from_utf8(&buf[..n]).map_err(serde::ser::Error::custom)?)?;
                }
                seq.end()
            }
        }
        let mut hex = [0u8; 64];
        hex::encode_to_slice(self.entry_hash, &mut hex).map_err(serde::ser::Error::custom)?;
        let mut st = s.serialize_struct("InclusionJson", 6)?;
        st.serialize_field("version", &2u32)?;
        st.serialize_field("checkpoint", &self.signed_checkpoint)?;
        st.serialize_field("seq", &self.seq)?;
        st.serialize_field("entry_hash", std::str::from_utf8(&hex).map_err(serde::ser::Error::custom)?)?;
        st.serialize_field("leaf_index", &self.leaf_index)?;
        st.serialize_field("inclusion", &Proof(&self.proof))?;
        st.end()
    }
}

impl InclusionReceipt {
    /// The checkpoint is signed by a trusted collector key and the proof leads from
    /// the entry hash at `leaf_index` to its root.
    pub fn verify(&self, trusted: &CollectorKeys) -> Result<LogCheckpoint, ReceiptError> {
        if self.seq == 0 {
            return Err(ReceiptError::ZeroSeq);
        }
        let cp = verify_signed_checkpoint(&self.signed_checkpoint, trusted)?;
        if self.leaf_index >= cp.tree_size {
            return Err(ReceiptError::LeafBeyondTree { leaf_index: self.leaf_index, tree_size: cp.tree_size });
        }
        let proof: Vec<tlog_tiles::Hash> = self.proof.iter().map(|h| tlog_tiles::Hash(*h)).collect();
        tlog_tiles::check_record(
            &proof,
            cp.tree_size,
            tlog_tiles::Hash(cp.root_hash),
            self.leaf_index,
            tlog_tiles::Hash(self.entry_hash),
        )
        .map_err(|_| ReceiptError::BadInclusionProof)?;
        Ok(cp)
    }
}

/// A v2 receipt's JSON object as read; written by the `Serialize` impl of
/// [`InclusionReceipt`], in this order.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InclusionJson {
    version: u32,
    checkpoint: String,
    seq: u64,
    entry_hash: String,
    leaf_index: u64,
    inclusion: Vec<String>,
}

/// A collector's receipt, of either generation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Receipt {
    Legacy(LegacyReceipt),
    Inclusion(InclusionReceipt),
}

impl Receipt {
    /// Sign a v1 checkpoint (kept for tests of old receipts).
    pub fn issue(checkpoint: Checkpoint, signer: &mut dyn RecordSigner) -> Result<Self, SignError> {
        LegacyReceipt::issue(checkpoint, signer).map(Receipt::Legacy)
    }

    /// The desk-log seq up to which this receipt vouches for the log.
    pub fn covered_seq(&self) -> u64 {
        match self {
            Receipt::Legacy(r) => r.checkpoint.tree_size,
            Receipt::Inclusion(r) => r.seq,
        }
    }

    /// The entry hash of record [`covered_seq`](Self::covered_seq).
    pub fn covered_entry_hash(&self) -> Hash32 {
        match self {
            Receipt::Legacy(r) => r.checkpoint.head_hash,
            Receipt::Inclusion(r) => r.entry_hash,
        }
    }

    /// Which collector key issued it, for a heartbeat's `last_receipt` (v1: SHA-256
    /// of its SPKI; v2: [`note_signer_id`] of the signature by the origin's key, zeros
    /// if the note has none). Not a trust decision: [`verify`](Self::verify) is.
    pub fn collector_key_id(&self) -> Hash32 {
        match self {
            Receipt::Legacy(r) => r.collector_key_id,
            Receipt::Inclusion(r) => {
                let origin = r.signed_checkpoint.lines().next().unwrap_or_default();
                let sigs = r.signed_checkpoint.rsplit_once("\n\n").map(|(_, s)| s).unwrap_or_default();
                sigs.lines()
                    .filter_map(|l| signed_note::Signature::from_bytes(l.as_bytes()).ok())
                    .find(|s| s.name() == origin)
                    .map(|s| note_signer_id(s.name(), s.id()))
                    .unwrap_or_default()
            }
        }
    }

    /// Check the collector's signature (and, for v2, the inclusion proof).
    pub fn verify(&self, trusted: &CollectorKeys) -> Result<(), ReceiptError> {
        match self {
            Receipt::Legacy(r) => r.verify(trusted),
            Receipt::Inclusion(r) => r.verify(trusted).map(|_| ()),
        }
    }

    /// One JSON line (for files handed to an auditor and for the store).
    pub fn to_json(&self) -> String {
        // Serialising strings and integers cannot fail (the `Serialize` impls' hex
        // and base64 buffers are sized for 32-byte hashes).
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The receipt as a JSON value (the same object [`to_json`](Self::to_json)
    /// writes), built without a round trip through text. (A receipt is also
    /// `Serialize` as that object, which writes it without building the value.)
    pub fn to_json_value(&self) -> serde_json::Value {
        // As in `to_json`: cannot fail.
        serde_json::to_value(self).unwrap_or_default()
    }

    /// Read either generation: v2 lines carry `"version": 2`.
    pub fn from_json(line: &str) -> Result<Self, ReceiptError> {
        use base64::Engine as _;
        let enc = |e: &dyn std::fmt::Display| ReceiptError::Encoding(e.to_string());
        let value: serde_json::Value = serde_json::from_str(line).map_err(|e| enc(&e))?;
        if value.get("version").is_none() {
            return LegacyReceipt::from_json(line).map(Receipt::Legacy);
        }
        let j: InclusionJson = serde_json::from_value(value).map_err(|e| enc(&e))?;
        if j.version != 2 {
            return Err(ReceiptError::Encoding(format!("receipt version {} is not supported", j.version)));
        }
        let hash = |s: &[u8]| -> Result<Hash32, ReceiptError> {
            s.try_into().map_err(|_| ReceiptError::Encoding("a hash is not 32 bytes".into()))
        };
        let entry_hash = hash(&hex::decode(&j.entry_hash).map_err(|e| enc(&e))?)?;
        let b64 = base64::engine::general_purpose::STANDARD;
        let proof =
            j.inclusion.iter().map(|h| hash(&b64.decode(h).map_err(|e| enc(&e))?)).collect::<Result<Vec<_>, _>>()?;
        Ok(Receipt::Inclusion(InclusionReceipt {
            signed_checkpoint: j.checkpoint,
            seq: j.seq,
            entry_hash,
            leaf_index: j.leaf_index,
            proof,
        }))
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
    fn a_receipts_json_value_is_the_object_its_text_reads_as_and_reads_back() {
        let r = Receipt::Inclusion(InclusionReceipt {
            signed_checkpoint: "c.example/log\n3\nAAAA\n\n— c.example/log sig\n".into(),
            seq: 7,
            entry_hash: [5; 32],
            leaf_index: 2,
            proof: vec![[1; 32], [2; 32]],
        });
        let value = r.to_json_value();
        assert_eq!(value, serde_json::from_str::<serde_json::Value>(&r.to_json()).unwrap());
        assert_eq!(Receipt::from_json(&value.to_string()).unwrap(), r);
        // The exact text desks and auditors already hold (field order, hex, base64).
        let one = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=";
        let two = "AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=";
        let expected = format!(
            r#"{{"version":2,"checkpoint":"c.example/log\n3\nAAAA\n\n— c.example/log sig\n","seq":7,"entry_hash":"{}","leaf_index":2,"inclusion":["{one}","{two}"]}}"#,
            "05".repeat(32)
        );
        assert_eq!(r.to_json(), expected);
        assert_eq!(serde_json::to_string(&r).unwrap(), expected);
    }

    #[test]
    fn a_v1_receipt_serialises_as_its_json_line() {
        let checkpoint =
            Checkpoint { log_id: [1; 32], tree_size: 9, head_hash: [2; 32], root_hash: [3; 32], issued_ms: 77 };
        let r = Receipt::Legacy(LegacyReceipt { checkpoint, collector_key_id: [4; 32], signature: vec![9, 9] });
        use base64::Engine as _;
        let expected = serde_json::json!({
            "checkpoint": base64::engine::general_purpose::STANDARD.encode(checkpoint.encode()),
            "collector_key_id": "04".repeat(32),
            "signature": "CQk=",
        });
        assert_eq!(serde_json::from_str::<serde_json::Value>(&r.to_json()).unwrap(), expected);
        let Receipt::Legacy(legacy) = &r else { unreachable!() };
        assert_eq!(r.to_json(), legacy.to_json());
        assert_eq!(Receipt::from_json(&r.to_json()).unwrap(), r);
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
