//! The collector's side of C2SP tlog-witness: a background task submits the latest
//! checkpoint to each configured witness with `add-checkpoint` and keeps the
//! cosignatures they return, which `/checkpoint` serves with the checkpoint.
//!
//! What a witness last cosigned is kept in the database (`witness_state`), like
//! everything else: any instance on a shared database submits from there. A 409
//! says the witness is elsewhere (another instance moved it, or the database was
//! restored): its size is stored and the submission is made again from that size,
//! with the consistency proof from there. Returned cosignatures are checked with
//! the witness's key (as `signed_note` verifies any note signature) before they
//! are kept; lines from other keys are dropped.

use std::sync::Arc;
use std::time::Duration;

use signed_note::{Note, VerifierList};

use crate::api::{with, AppState};
use crate::config::WitnessTarget;
use crate::cosignature::{CosignKeyError, CosignatureVerifier};
use crate::merkle;
use crate::store::{LogStore, StoreError, StoredHashes};
use crate::witness::encode_add_checkpoint;

/// How often the witnesses are asked even without a new local checkpoint (another
/// instance may have signed one, or a witness was down).
pub const RESUBMIT_EVERY: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum WitnessingError {
    #[error("witness {witness}: {what}")]
    Witness { witness: String, what: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Key(#[from] CosignKeyError),
    #[error("the collector is unavailable: {0}")]
    Unavailable(String),
}

/// A configured witness, ready to be asked.
pub struct Witness {
    pub url: String,
    pub verifier: CosignatureVerifier,
    client: reqwest::Client,
}

impl Witness {
    pub fn new(target: &WitnessTarget) -> Result<Self, WitnessingError> {
        let verifier = CosignatureVerifier::new(&target.verifier_key)?;
        let tls = crate::tls::client_config(&target.ca_file).map_err(|e| WitnessingError::Witness {
            witness: signed_note::Verifier::name(&verifier).to_owned(),
            what: e.to_string(),
        })?;
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| WitnessingError::Witness { witness: target.url.clone(), what: e.to_string() })?;
        Ok(Self { url: target.url.trim_end_matches('/').to_owned(), verifier, client })
    }

    pub fn name(&self) -> &str {
        signed_note::Verifier::name(&self.verifier)
    }
}

/// What to send a witness: the latest checkpoint, and the consistency proof from
/// the size the witness last cosigned.
struct Submission {
    size: u64,
    note: String,
    old: u64,
    proof: Vec<[u8; 32]>,
}

fn plan<S: LogStore>(c: &crate::ingest::Collector<S>, witness: &str) -> Result<Option<Submission>, StoreError> {
    let (size, note) = c.checkpoint()?;
    let store = c.store();
    let old = store.witness_size(witness)?.unwrap_or(0);
    let own_line = format!("\u{2014} {witness} ");
    if old > size || (old == size && store.cosignatures(size)?.iter().any(|l| l.starts_with(&own_line))) {
        return Ok(None); // cosigned already (or ahead of this instance's checkpoint)
    }
    let proof =
        if old == 0 || old == size { Vec::new() } else { merkle::consistency_proof(size, old, &StoredHashes(store))? };
    Ok(Some(Submission { size, note, old, proof }))
}

/// Submit the latest checkpoint to `w` (again from the witness's size after a 409).
pub async fn submit<S: LogStore + 'static>(state: &Arc<AppState<S>>, w: &Witness) -> Result<(), WitnessingError> {
    let name = w.name().to_owned();
    let fail = |what: String| WitnessingError::Witness { witness: name.clone(), what };
    for _ in 0..2 {
        let n = name.clone();
        let planned =
            with(Arc::clone(state), move |c| plan(c, &n)).await.map_err(|e| WitnessingError::Unavailable(e.0))??;
        let Some(sub) = planned else { return Ok(()) };
        let body = encode_add_checkpoint(sub.old, &sub.proof, &sub.note);
        let answer = w
            .client
            .post(format!("{}/add-checkpoint", w.url))
            .body(body)
            .send()
            .await
            .map_err(|e| fail(format!("cannot reach {}: {e}", w.url)))?;
        let status = answer.status().as_u16();
        let size_body = answer
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"text/x.tlog.size"));
        let text = answer.text().await.map_err(|e| fail(format!("cannot read the answer: {e}")))?;
        match status {
            200 => {
                let lines = own_cosignatures(&sub.note, &text, &w.verifier)
                    .ok_or_else(|| fail(format!("its answer holds no valid cosignature by its key: {text:?}")))?;
                let (n, size) = (name.clone(), sub.size);
                with(Arc::clone(state), move |c| -> Result<(), StoreError> {
                    let store = c.store_mut();
                    store.add_cosignature(size, &n, &lines)?;
                    store.set_witness_size(&n, size)
                })
                .await
                .map_err(|e| WitnessingError::Unavailable(e.0))??;
                tracing::info!(witness = %name, size = sub.size, "cosigned");
                return Ok(());
            }
            409 if size_body => {
                let theirs: u64 =
                    text.trim_end().parse().map_err(|_| fail(format!("409 with a malformed size {text:?}")))?;
                tracing::info!(witness = %name, ours = sub.old, theirs, "witness answered 409; retrying from its size");
                let n = name.clone();
                with(Arc::clone(state), move |c| c.store_mut().set_witness_size(&n, theirs))
                    .await
                    .map_err(|e| WitnessingError::Unavailable(e.0))??;
            }
            other => return Err(fail(format!("answered {other}: {}", text.trim_end()))),
        }
    }
    Err(fail("still in conflict after a retry from its size".into()))
}

/// The signature lines of `answer` that are valid cosignatures of `note` by `key`.
fn own_cosignatures(note: &str, answer: &str, key: &CosignatureVerifier) -> Option<String> {
    let text = Note::from_bytes(note.as_bytes()).ok()?.text().to_vec();
    let mut cosigned = text.clone();
    cosigned.push(b'\n');
    cosigned.extend_from_slice(answer.as_bytes());
    let parsed = Note::from_bytes(&cosigned).ok()?;
    let (verified, _) = parsed.verify(&VerifierList::new(vec![Box::new(key.clone())])).ok()?;
    let lines: Vec<u8> = verified.iter().flat_map(|s| s.to_bytes()).collect();
    String::from_utf8(lines).ok()
}

/// Run until the process ends: submit after each new checkpoint and every
/// [`RESUBMIT_EVERY`].
pub async fn run<S: LogStore + 'static>(state: Arc<AppState<S>>, witnesses: Vec<Witness>) {
    loop {
        tokio::select! {
            () = state.checkpoint_signed.notified() => {}
            () = tokio::time::sleep(RESUBMIT_EVERY) => {}
        }
        for w in &witnesses {
            if let Err(e) = submit(&state, w).await {
                tracing::warn!("witnessing: {e}");
            }
        }
    }
}
