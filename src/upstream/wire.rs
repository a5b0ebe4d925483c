//! The bodies of the collector's HTTP API, shared by both ends: the desk's sync
//! driver encodes batches and reads answers with them, `resetdesk-collector` decodes
//! batches (its `wire` module adds the size-limited decoder) and writes answers.
//! Pure; nothing here panics on any input.
//!
//! `POST /add-records` takes one desk log's batch:
//!
//! ```json
//! {"log_id": "<hex: entry hash of the desk log's record 1>",
//!  "certificates": ["<base64 DER of a signer's certificate>", ...],
//!  "records": [{"record": "<base64>", "signature": "<base64 DER>", "cosignature": "<base64 DER>" | null}, ...]}
//! ```
//!
//! and answers `{"checkpoint": "<signed note>", "tree_size": N, "receipts": [<receipt v2>, ...]}`,
//! one receipt per record in the batch (as [`crate::audit::Receipt::to_json`]). Errors
//! are `{"error": "<kind>", "message": "...", "seq": <seq or null>}` with an HTTP status.

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::audit::verify::StoredRecord;
use crate::audit::Hash32;

/// One record of a batch, base64. Decoding borrows the strings from the body where
/// they hold no JSON escape (base64 needs none), so a batch is not copied twice.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordJson<'a> {
    #[serde(borrow)]
    pub record: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    pub signature: std::borrow::Cow<'a, str>,
    #[serde(default, borrow)]
    pub cosignature: Option<std::borrow::Cow<'a, str>>,
}

/// Encode a batch of one desk log's records (in the order given).
pub fn encode_batch(log_id: &Hash32, certificates: &[Vec<u8>], records: &[StoredRecord]) -> Vec<u8> {
    let e = base64::engine::general_purpose::STANDARD;
    let body = serde_json::json!({
        "log_id": hex::encode(log_id),
        "certificates": certificates.iter().map(|c| e.encode(c)).collect::<Vec<_>>(),
        "records": records.iter().map(|r| RecordJson {
            record: e.encode(&r.record).into(),
            signature: e.encode(&r.signature).into(),
            cosignature: r.cosignature.as_ref().map(|c| e.encode(c).into()),
        }).collect::<Vec<_>>(),
    });
    body.to_string().into_bytes()
}

/// The error body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
    pub message: String,
    pub seq: Option<u64>,
}

/// The success body of `/add-records`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AddRecordsResponse {
    pub checkpoint: String,
    pub tree_size: u64,
    /// One receipt per record of the batch, each `Receipt::to_json` parsed as an object.
    pub receipts: Vec<serde_json::Value>,
}

/// The body of `/proof/inclusion`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InclusionResponse {
    pub tree_size: u64,
    pub leaf_index: u64,
    pub log_id: String,
    pub seq: u64,
    /// Base64 hashes, leaf to root.
    pub proof: Vec<String>,
    pub checkpoint: String,
}

/// The body of `/proof/consistency`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConsistencyResponse {
    pub old: u64,
    pub new: u64,
    pub proof: Vec<String>,
}

/// Parse a hash given as 64 hex digits or standard base64.
pub fn parse_hash(s: &str) -> Option<Hash32> {
    if s.len() == 64 {
        return hex::decode(s).ok()?.try_into().ok();
    }
    base64::engine::general_purpose::STANDARD.decode(s).ok()?.try_into().ok()
}

/// Base64 hashes of a proof, each 32 bytes.
pub fn parse_proof(hashes: &[String]) -> Option<Vec<Hash32>> {
    let b64 = base64::engine::general_purpose::STANDARD;
    hashes.iter().map(|h| b64.decode(h).ok()?.try_into().ok()).collect()
}
