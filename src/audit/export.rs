//! Export for third parties: JSON Lines plus PEM files, checkable with openssl alone.
//!
//! ```text
//! OUTDIR/records.jsonl        one ExportLine per record, in seq order
//! OUTDIR/receipts.jsonl       the stored collector receipts (Receipt::to_json)
//! OUTDIR/ca.pem               the organisation CA certificate (if known)
//! OUTDIR/certs/<key id>.pem   each signer's certificate
//! OUTDIR/keys/<key id>.pem    each signer's public key (for `openssl dgst -verify`)
//! ```
//!
//! The export copies what is stored, damaged or not: a record that does not decode
//! is still written (with `"error"`), so the export shows exactly what the log holds.
//! Run `resetdesk audit verify` to judge it.

use std::collections::BTreeSet;
use std::fs;
use std::io::{BufWriter, Write};
use std::path::Path;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::event::parse_payload;
use super::receipt::Receipt;
use super::record::{entry_hash, Record};
use super::resolver::{certificate_pem, public_key_pem_of_certificate, KeyResolver};
use super::store::{Store, StoreError};
use super::verify::{Anchor, StoredRecord};

/// One record in `records.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExportLine {
    pub seq: u64,
    pub timestamp_ms: Option<u64>,
    /// RFC 3339 UTC.
    pub time: Option<String>,
    pub event_type: Option<String>,
    pub key_id: Option<String>,
    pub cosigner_key_id: Option<String>,
    pub prev_hash: Option<String>,
    /// SHA-256(0x00 || record): `(printf '\0'; cat rec.bin) | openssl dgst -sha256`.
    pub entry_hash: String,
    /// The payload's JSON (also inside `record_b64`, byte for byte).
    pub payload: Option<serde_json::Value>,
    /// The exact signed bytes.
    pub record_b64: String,
    /// ECDSA P-256 signature (DER) over SHA-256(record).
    pub signature_b64: String,
    pub cosignature_b64: Option<String>,
    /// `certs/<key id>.pem`, if the signer's certificate is known.
    pub signer_certificate: Option<String>,
    /// `keys/<key id>.pem`, if known.
    pub signer_public_key: Option<String>,
    pub signer_subject: Option<String>,
    pub cosigner_certificate: Option<String>,
    pub cosigner_public_key: Option<String>,
    /// Why the record could not be decoded, if it could not.
    pub error: Option<String>,
}

impl ExportLine {
    /// The signed record and signature, to check a record held elsewhere.
    pub fn to_anchor(&self) -> Result<Anchor, String> {
        Ok(Anchor {
            record: B64.decode(&self.record_b64).map_err(|e| format!("record_b64: {e}"))?,
            signature: B64.decode(&self.signature_b64).map_err(|e| format!("signature_b64: {e}"))?,
        })
    }
}

/// Export failures.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot write {path}: {source}; check the output directory is writable")]
    Io { path: String, source: std::io::Error },
}

/// What was written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportSummary {
    pub records: u64,
    pub certificates: usize,
    pub unknown_signers: usize,
    pub receipts: usize,
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> ExportError + '_ {
    move |source| ExportError::Io { path: path.display().to_string(), source }
}

/// Write the export of `store` into `out` (created if missing).
pub fn export(store: &Store, resolver: &dyn KeyResolver, out: &Path) -> Result<ExportSummary, ExportError> {
    let certs_dir = out.join("certs");
    let keys_dir = out.join("keys");
    fs::create_dir_all(&certs_dir).map_err(io(&certs_dir))?;
    fs::create_dir_all(&keys_dir).map_err(io(&keys_dir))?;
    if let Some(ca) = resolver.ca_certificate_der() {
        let p = out.join("ca.pem");
        fs::write(&p, certificate_pem(ca)).map_err(io(&p))?;
    }

    let mut summary = ExportSummary::default();
    let mut written: BTreeSet<[u8; 32]> = BTreeSet::new();
    let mut unknown: BTreeSet<[u8; 32]> = BTreeSet::new();
    let records_path = out.join("records.jsonl");
    let mut w = BufWriter::new(fs::File::create(&records_path).map_err(io(&records_path))?);

    // Writes the signer's files once; returns (cert path, key path, subject).
    let mut signer_files = |id: [u8; 32]| -> Result<Option<(String, String, String)>, ExportError> {
        let Ok(key) = resolver.resolve(&id) else {
            unknown.insert(id);
            return Ok(None);
        };
        let name = hex::encode(id);
        let cert_rel = format!("certs/{name}.pem");
        let key_rel = format!("keys/{name}.pem");
        if written.insert(id) {
            let p = out.join(&cert_rel);
            fs::write(&p, certificate_pem(&key.certificate_der)).map_err(io(&p))?;
            if let Ok(pem) = public_key_pem_of_certificate(&key.certificate_der) {
                let p = out.join(&key_rel);
                fs::write(&p, pem).map_err(io(&p))?;
            }
        }
        Ok(Some((cert_rel, key_rel, key.subject.clone())))
    };

    let result = store.for_each(|stored| -> Result<(), ExportError> {
        let mut line = ExportLine {
            seq: stored.row_seq,
            timestamp_ms: None,
            time: None,
            event_type: None,
            key_id: None,
            cosigner_key_id: None,
            prev_hash: None,
            entry_hash: hex::encode(entry_hash(&stored.record)),
            payload: None,
            record_b64: B64.encode(&stored.record),
            signature_b64: B64.encode(&stored.signature),
            cosignature_b64: stored.cosignature.as_ref().map(|c| B64.encode(c)),
            signer_certificate: None,
            signer_public_key: None,
            signer_subject: None,
            cosigner_certificate: None,
            cosigner_public_key: None,
            error: None,
        };
        match Record::decode(&stored.record) {
            Err(e) => line.error = Some(e.to_string()),
            Ok(r) => {
                line.timestamp_ms = Some(r.timestamp_ms);
                line.time = rfc3339(r.timestamp_ms);
                line.event_type = Some(r.event_type.as_str().into());
                line.key_id = Some(hex::encode(r.key_id));
                line.cosigner_key_id = r.cosigner_key_id.map(hex::encode);
                line.prev_hash = Some(hex::encode(r.prev_hash));
                match parse_payload(r.event_type, &r.payload) {
                    Ok(p) => line.payload = Some(p.value),
                    Err(e) => line.error = Some(format!("payload: {e}")),
                }
                if let Some((c, k, s)) = signer_files(r.key_id)? {
                    line.signer_certificate = Some(c);
                    line.signer_public_key = Some(k);
                    line.signer_subject = Some(s);
                }
                if let Some(co) = r.cosigner_key_id {
                    if let Some((c, k, _)) = signer_files(co)? {
                        line.cosigner_certificate = Some(c);
                        line.cosigner_public_key = Some(k);
                    }
                }
            }
        }
        // ExportLine holds only strings, numbers and JSON values: serialising cannot fail.
        let json = serde_json::to_string(&line).unwrap_or_default();
        writeln!(w, "{json}").map_err(io(&records_path))?;
        summary.records += 1;
        Ok(())
    })?;
    result?;
    w.flush().map_err(io(&records_path))?;

    let receipts = store.receipts()?;
    let receipts_path = out.join("receipts.jsonl");
    let text: String = receipts.iter().map(|r| r.to_json() + "\n").collect();
    fs::write(&receipts_path, text).map_err(io(&receipts_path))?;
    summary.receipts = receipts.len();
    summary.certificates = written.len();
    summary.unknown_signers = unknown.len();
    Ok(summary)
}

/// Parse each non-empty line of `path` with `parse`; errors name the file and line.
fn read_lines<T>(path: &Path, parse: impl Fn(&str) -> Result<T, String>) -> Result<Vec<T>, String> {
    let text = fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| parse(l).map_err(|e| format!("{}:{}: {e}", path.display(), i + 1)))
        .collect()
}

fn parse_line(l: &str) -> Result<ExportLine, String> {
    serde_json::from_str(l).map_err(|e| format!("not an exported record: {e}"))
}

/// Read an export's `records.jsonl` back as stored records (for verifying an export
/// without the database). Fails on a line that is not an exported record.
pub fn read_records(path: &Path) -> Result<Vec<StoredRecord>, String> {
    read_lines(path, |l| {
        let line = parse_line(l)?;
        let anchor = line.to_anchor()?;
        let cosignature = match &line.cosignature_b64 {
            Some(c) => Some(B64.decode(c).map_err(|e| format!("cosignature_b64: {e}"))?),
            None => None,
        };
        Ok(StoredRecord { row_seq: line.seq, record: anchor.record, signature: anchor.signature, cosignature })
    })
}

/// Read `receipts.jsonl` (one receipt per line).
pub fn read_receipts(path: &Path) -> Result<Vec<Receipt>, String> {
    read_lines(path, |l| Receipt::from_json(l).map_err(|e| e.to_string()))
}

/// Read `records.jsonl` lines (e.g. heartbeats the collector holds) as anchors.
pub fn read_anchors(path: &Path) -> Result<Vec<Anchor>, String> {
    read_lines(path, |l| parse_line(l)?.to_anchor())
}

fn rfc3339(ms: u64) -> Option<String> {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()?;
    t.format(&time::format_description::well_known::Rfc3339).ok()
}
