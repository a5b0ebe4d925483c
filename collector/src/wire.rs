//! Request and response bodies of the ingest API (pure; never panics on any input).
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
//! one receipt per record in the batch (as `resetdesk::audit::Receipt::to_json`). Errors
//! are `{"error": "<kind>", "message": "...", "seq": <seq or null>}` with an HTTP status.

use base64::Engine as _;
use resetdesk::audit::record::{Record, RecordError};
use resetdesk::audit::verify::StoredRecord;
use resetdesk::audit::Hash32;
// The bodies both ends share live in the core; the decoder with its limits is here.
pub use resetdesk::upstream::wire::{
    encode_batch, parse_hash, AddRecordsResponse, ConsistencyResponse, ErrorBody, InclusionResponse, RecordJson,
};
use serde::Deserialize;

/// The largest record the log takes: an entry bundle prefixes entries with a u16.
pub const MAX_ENTRY_LEN: usize = u16::MAX as usize;

/// A decoded batch. Records decode as v1 audit records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub log_id: Hash32,
    pub certificates: Vec<Vec<u8>>,
    pub records: Vec<(Record, StoredRecord)>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchJson<'a> {
    log_id: String,
    #[serde(default)]
    certificates: Vec<String>,
    #[serde(borrow)]
    records: Vec<RecordJson<'a>>,
}

/// Why a body is not a batch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("the body is not a records batch (JSON {{log_id, certificates, records}}): {0}")]
    NotJson(String),
    #[error("log_id is not 32 bytes of hex (the entry hash of the desk log's record 1)")]
    BadLogId,
    #[error("{what} is not valid base64")]
    BadBase64 { what: String },
    #[error("the batch has no records")]
    Empty,
    #[error("the batch has {n} records; at most {max} are taken per request, send the rest in another")]
    TooMany { n: usize, max: usize },
    #[error("record {index} of the batch: {source}")]
    BadRecord { index: usize, source: RecordError },
    #[error("record {index} of the batch has no signature: nothing unsigned is accepted")]
    Unsigned { index: usize },
    #[error("record {index} of the batch is {len} bytes; the log takes records of at most {MAX_ENTRY_LEN} bytes")]
    EntryTooLarge { index: usize, len: usize },
}

fn b64(what: impl Fn() -> String, s: &str) -> Result<Vec<u8>, WireError> {
    base64::engine::general_purpose::STANDARD.decode(s).map_err(|_| WireError::BadBase64 { what: what() })
}

/// Decode a batch body, taking at most `max_records` records.
pub fn decode_batch(body: &[u8], max_records: usize) -> Result<Batch, WireError> {
    let j: BatchJson = serde_json::from_slice(body).map_err(|e| WireError::NotJson(e.to_string()))?;
    let log_id: Hash32 = hex::decode(&j.log_id).ok().and_then(|v| v.try_into().ok()).ok_or(WireError::BadLogId)?;
    if j.records.is_empty() {
        return Err(WireError::Empty);
    }
    if j.records.len() > max_records {
        return Err(WireError::TooMany { n: j.records.len(), max: max_records });
    }
    let certificates = j
        .certificates
        .iter()
        .enumerate()
        .map(|(k, c)| b64(|| format!("certificate {}", k + 1), c))
        .collect::<Result<Vec<_>, _>>()?;
    let mut records = Vec::with_capacity(j.records.len());
    for (k, r) in j.records.iter().enumerate() {
        let index = k + 1;
        let bytes = b64(|| format!("record {index}"), &r.record)?;
        if bytes.len() > MAX_ENTRY_LEN {
            return Err(WireError::EntryTooLarge { index, len: bytes.len() });
        }
        let signature = b64(|| format!("signature of record {index}"), &r.signature)?;
        if signature.is_empty() {
            return Err(WireError::Unsigned { index });
        }
        let cosignature = match &r.cosignature {
            Some(c) => Some(b64(|| format!("co-signature of record {index}"), c)?),
            None => None,
        };
        let record = Record::decode(&bytes).map_err(|source| WireError::BadRecord { index, source })?;
        let stored = StoredRecord { row_seq: record.seq, record: bytes, signature, cosignature };
        records.push((record, stored));
    }
    Ok(Batch { log_id, certificates, records })
}
