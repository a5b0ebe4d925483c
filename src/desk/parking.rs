//! The cooling-off queue on disk: a parked reset survives an app restart.
//!
//! A parked run is stored as a snapshot of its session — verdicts, times and the
//! account as read, never an answer, a code or a password — signed by the agent's
//! card (slot 9c) over SHA-256 of a domain tag and the snapshot. Resuming checks the
//! signature against the agent's enrolled certificate (registry and CA, the same
//! rules as for a co-signer's key), so nobody but that agent's card can mark a step
//! passed, shorten the cooling-off or hand the reset to another agent. (The agent
//! could sign an edited snapshot with their own card and PIN; what stops them is what
//! stops any agent: the re-check before the intent and the freshness of each step,
//! and every step's evidence is in the signed records.) Only runs still verifying are
//! parked, and a run whose request already has a record in the audit log (it was
//! executed, refused or cancelled) is never loaded again.
//!
//! Rows live in `<data_dir>/desk.sqlite` (table `parked_runs`) until the run is
//! resumed or the agent drops it.

use std::path::Path;

use rusqlite::{params, Connection};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use super::replay::DESK_STATE_FILE;
use super::reset::ResetRun;
use super::{keys, DeskError};
use crate::login::TokenPolicy;
use crate::token::RecordSigner;
use crate::workflow::{Phase, Session};

/// Domain separation: a parked-run signature is never mistaken for anything else.
const DOMAIN: &[u8] = b"resetdesk.parked-run.v1\0";

#[derive(Debug, thiserror::Error)]
pub enum ParkingError {
    #[error("the parked resets in {path} could not be used ({source}); check the data directory and its permissions")]
    Database {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error("only a reset that is still being verified can be parked (this one is {0:?})")]
    NotParkable(Phase),
    #[error("the parked reset {0} is unreadable ({1}); start the request again")]
    Corrupt(String, String),
    #[error("the parked reset {0} does not carry a valid signature of its agent's enrolled key; it was changed or the key was revoked: start the request again")]
    BadSignature(String),
    #[error("the parked reset {0} was already carried on (the audit log has a record of it); it is dropped")]
    AlreadyRecorded(String),
}

/// What is stored of a run (serialised as JSON, then signed).
#[derive(Serialize, Deserialize)]
struct Snapshot {
    session: Session,
    agent_key_id: [u8; 32],
    last_totp_step: Option<u64>,
    steps_seen: usize,
}

fn digest(snapshot: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(DOMAIN);
    h.update(snapshot);
    h.finalize().into()
}

/// One stored row: request id, snapshot, signature.
type StoredRun = (String, Vec<u8>, Vec<u8>);

/// The parked runs of this desk.
pub struct ParkedRuns {
    conn: Connection,
    path: String,
}

impl ParkedRuns {
    /// Open (creating if needed) the table in `<data_dir>/desk.sqlite`.
    pub fn open(data_dir: &Path) -> Result<Self, ParkingError> {
        let path = data_dir.join(DESK_STATE_FILE).display().to_string();
        let err = |source| ParkingError::Database { path: path.clone(), source };
        let conn = Connection::open(&path).map_err(err)?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(err)?;
        conn.pragma_update(None, "synchronous", "FULL").map_err(err)?;
        conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(err)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS parked_runs (
                request_id   TEXT PRIMARY KEY NOT NULL,
                agent_key_id BLOB NOT NULL,
                parked_at    INTEGER NOT NULL,
                snapshot     BLOB NOT NULL,
                signature    BLOB NOT NULL
            )",
        )
        .map_err(err)?;
        Ok(Self { conn, path })
    }

    fn err(&self) -> impl Fn(rusqlite::Error) -> ParkingError + '_ {
        move |source| ParkingError::Database { path: self.path.clone(), source }
    }

    fn save(
        &self,
        request_id: &str,
        key_id: &[u8; 32],
        snapshot: &[u8],
        signature: &[u8],
        now: OffsetDateTime,
    ) -> Result<(), ParkingError> {
        self.conn
            .execute(
                "INSERT INTO parked_runs (request_id, agent_key_id, parked_at, snapshot, signature)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (request_id) DO UPDATE SET agent_key_id = excluded.agent_key_id,
                   parked_at = excluded.parked_at, snapshot = excluded.snapshot, signature = excluded.signature",
                params![request_id, key_id.to_vec(), now.unix_timestamp(), snapshot, signature],
            )
            .map_err(self.err())?;
        Ok(())
    }

    fn rows(&self, key_id: &[u8; 32]) -> Result<Vec<StoredRun>, ParkingError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT request_id, snapshot, signature FROM parked_runs WHERE agent_key_id = ?1 ORDER BY parked_at",
            )
            .map_err(self.err())?;
        let rows = stmt
            .query_map([key_id.to_vec()], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .map_err(self.err())?
            .collect::<Result<Vec<_>, _>>()
            .map_err(self.err())?;
        Ok(rows)
    }

    /// Forget a parked run (resumed, or dropped by its agent).
    pub fn remove(&self, request_id: &str) -> Result<(), ParkingError> {
        self.conn.execute("DELETE FROM parked_runs WHERE request_id = ?1", [request_id]).map_err(self.err())?;
        Ok(())
    }
}

impl super::Desk {
    /// Park `run` on disk, signed by the agent's card (`signer`, the run's own key).
    pub fn park(
        &mut self,
        run: &ResetRun,
        signer: &mut dyn RecordSigner,
        now: OffsetDateTime,
    ) -> Result<(), DeskError> {
        if signer.key_id() != run.agent_key_id {
            return Err(DeskError::WrongSigner);
        }
        if run.phase() != Phase::Verifying || run.intent.is_some() || run.broken.is_some() {
            return Err(ParkingError::NotParkable(run.phase()).into());
        }
        let snapshot = Snapshot {
            session: run.session.clone(),
            agent_key_id: run.agent_key_id,
            last_totp_step: run.secrets.last_totp_step,
            steps_seen: run.steps_seen,
        };
        let bytes = serde_json::to_vec(&snapshot)
            .map_err(|e| ParkingError::Corrupt(run.request_id().to_owned(), e.to_string()))?;
        let signature = signer.sign_digest(&digest(&bytes))?;
        ParkedRuns::open(&self.config.data_dir)?.save(run.request_id(), &run.agent_key_id, &bytes, &signature, now)?;
        Ok(())
    }

    /// The runs the agent whose card is `signer` parked, each signature checked
    /// against that enrolled key now (on the enrolled card, with the login's token
    /// rules). A row that fails the check is reported, not loaded.
    pub fn parked_runs(
        &self,
        signer: &dyn RecordSigner,
        now: OffsetDateTime,
    ) -> Result<Vec<Result<ResetRun, ParkingError>>, DeskError> {
        let store = ParkedRuns::open(&self.config.data_dir)?;
        let policy = TokenPolicy::from_config(&self.config);
        let key_id = &signer.key_id();
        let recorded = self.recorded_request_ids()?;
        let mut out = Vec::new();
        for (request_id, bytes, signature) in store.rows(key_id)? {
            if recorded.contains(&request_id) {
                store.remove(&request_id)?;
                out.push(Err(ParkingError::AlreadyRecorded(request_id)));
                continue;
            }
            let verified =
                keys::enrolled_co_signer(&self.registry, &self.anchor, key_id, signer.card_serial(), policy, now)
                    .and_then(|k| k.verify(&digest(&bytes), &signature));
            if verified.is_err() {
                out.push(Err(ParkingError::BadSignature(request_id)));
                continue;
            }
            match serde_json::from_slice::<Snapshot>(&bytes) {
                Ok(s) if s.agent_key_id == *key_id && s.session.request_id() == request_id => {
                    let mut run = ResetRun::new(s.session, s.agent_key_id, s.last_totp_step);
                    run.steps_seen = s.steps_seen;
                    out.push(Ok(run));
                }
                Ok(_) => out.push(Err(ParkingError::BadSignature(request_id))),
                Err(e) => out.push(Err(ParkingError::Corrupt(request_id, e.to_string()))),
            }
        }
        Ok(out)
    }

    /// Request ids the audit log has any record of.
    fn recorded_request_ids(&self) -> Result<std::collections::BTreeSet<String>, DeskError> {
        let mut ids = std::collections::BTreeSet::new();
        self.audit
            .store()
            .for_each(|stored| {
                let Ok(record) = crate::audit::Record::decode(&stored.record) else { return Ok::<(), ()>(()) };
                let Ok(value) = serde_json::from_slice::<serde_json::Value>(&record.payload) else { return Ok(()) };
                if let Some(id) = value.pointer("/facts/request_id").and_then(serde_json::Value::as_str) {
                    ids.insert(id.to_owned());
                }
                Ok(())
            })
            .map_err(crate::audit::AuditError::from)?
            .ok();
        Ok(ids)
    }

    /// Forget a parked run on disk (it is back on screen, or dropped).
    pub fn unpark(&self, request_id: &str) -> Result<(), DeskError> {
        Ok(ParkedRuns::open(&self.config.data_dir)?.remove(request_id)?)
    }
}
