//! The collector's approval page as the desk's [`ApprovalChannel`]: manager approval
//! by link.
//!
//! `issue` makes a 128-bit token, registers its SHA-256 at the collector (`POST
//! /approvals`, with what the page shows: who asks, for which account, why) and keeps
//! the hash, the manager and the address in `<data_dir>/approvals.sqlite` (table
//! `collector_approvals`; never the token). The link `<collector>/approve/<token>`
//! ([`ApprovalChannel::answer_link`]) goes into the approval mail, which the desk sends
//! from memory like a one-time code. `take_answer` fetches the request's state (`GET
//! /approvals/<request id>`); a decision counts only when it is a note signed by a
//! trusted collector key (`[collector] verifier_key`) whose statement names this
//! request, the token hash this desk issued, and the manager and address the token went
//! to. The signed note travels on in [`ManagerResponse::decision_note`] into the
//! reset's facts, for the auditor.
//!
//! The collector unreachable is [`ApprovalError::NeedsCollector`]: the desk shows
//! "approval needs the collector" and never waits silently.

use std::path::Path;

use rand::RngCore;
use rusqlite::{params, Connection, OptionalExtension};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::approval::{ApprovalChannel, ApprovalContext, ApprovalError, Issued, IssuedToken};
use crate::audit::CollectorKeys;
use crate::secret::Secret;
use crate::upstream::approval_wire::{is_identifier, ApprovalStatus, DecisionStatement, RegisterApproval, Registered};
use crate::upstream::{ClientError, CollectorClient};
use crate::verification::manager_approval::ManagerResponse;

/// Token length in bytes (128 bits), hex in the link.
const TOKEN_BYTES: usize = 16;

/// The collector's approval page (see the module doc).
pub struct CollectorApprovals {
    client: CollectorClient,
    keys: CollectorKeys,
    conn: Connection,
    path: String,
}

fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// How a failed call to the collector reads for the approval.
fn client_error(e: ClientError) -> ApprovalError {
    match e {
        ClientError::Unreachable { .. } => ApprovalError::NeedsCollector(e.to_string()),
        // Busy or failing for now (rate limit, database down): not an answer.
        ClientError::Refused { status, .. } | ClientError::Status { status, .. } if status == 429 || status >= 500 => {
            ApprovalError::NeedsCollector(e.to_string())
        }
        ClientError::Setup(why) => ApprovalError::Setup(why),
        other => ApprovalError::CollectorRefused(other.to_string()),
    }
}

impl CollectorApprovals {
    /// The channel of `[collector]` (url, ca_file, desk_key_file, verifier_key), keeping
    /// its issued hashes in `data_dir`.
    pub fn open(config: &crate::config::CollectorConfig, data_dir: &Path) -> Result<Self, ApprovalError> {
        let client = CollectorClient::from_config(config).map_err(|e| ApprovalError::Setup(e.to_string()))?;
        let keys = crate::upstream::driver::collector_keys(config).map_err(|e| ApprovalError::Setup(e.to_string()))?;
        Self::new(client, keys, data_dir)
    }

    /// The channel over `client` (which must carry the desk key), trusting `keys`.
    pub fn new(client: CollectorClient, keys: CollectorKeys, data_dir: &Path) -> Result<Self, ApprovalError> {
        if !client.has_desk_key() {
            return Err(ApprovalError::Setup(
                "approval by link needs [collector] desk_key_file (`resetdesk-collector desk-key add`)".into(),
            ));
        }
        let (conn, path) = super::approval::open_store(data_dir)?;
        let err = |source| ApprovalError::Database { path: path.clone(), source };
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS collector_approvals (
                request_id  TEXT PRIMARY KEY NOT NULL,
                token_hash  BLOB NOT NULL,
                manager     TEXT NOT NULL,
                address     TEXT NOT NULL,
                issued_at   TEXT NOT NULL,
                expires_at  TEXT NOT NULL,
                taken       INTEGER NOT NULL DEFAULT 0 CHECK (taken IN (0, 1))
            )",
        )
        .map_err(err)?;
        Ok(Self { client, keys, conn, path })
    }

    fn err(&self) -> impl Fn(rusqlite::Error) -> ApprovalError + '_ {
        move |source| ApprovalError::Database { path: self.path.clone(), source }
    }

    /// Check a signed decision against what this desk issued; the response the engine takes.
    fn accept(&self, request_id: &str, note: &str, issued: &IssuedRow) -> Result<ManagerResponse, ApprovalError> {
        let bad = |why: String| ApprovalError::BadDecision(why);
        let text = self.keys.verify_note_text(note).map_err(|e| bad(e.to_string()))?;
        let statement = DecisionStatement::parse(&text).map_err(|e| bad(e.to_string()))?;
        if statement.request_id != request_id {
            return Err(bad(format!("it is for request {}", statement.request_id)));
        }
        if !bool::from(statement.token_sha256.as_slice().ct_eq(&issued.token_hash)) {
            return Err(bad("it is not for the token this desk issued".into()));
        }
        if statement.manager != issued.manager || statement.address != issued.address {
            return Err(bad("it names another manager or address than the token went to".into()));
        }
        Ok(ManagerResponse {
            approver: issued.manager.clone(),
            via_address: issued.address.clone(),
            approved: statement.approved,
            decision_note: Some(note.to_owned()),
        })
    }
}

struct IssuedRow {
    token_hash: Vec<u8>,
    manager: String,
    address: String,
}

impl ApprovalChannel for CollectorApprovals {
    fn issue(
        &mut self,
        issued: &Issued,
        about: &ApprovalContext,
        now: OffsetDateTime,
    ) -> Result<IssuedToken, ApprovalError> {
        let mut bytes = zeroize::Zeroizing::new([0u8; TOKEN_BYTES]);
        rand::rngs::OsRng.fill_bytes(bytes.as_mut());
        let token = Secret::new(hex::encode(bytes.as_ref()));
        let hash = token_hash(token.expose());
        let body = RegisterApproval {
            request_id: issued.request_id.clone(),
            token_sha256: hex::encode(hash),
            manager: issued.manager.clone(),
            address: issued.address.clone(),
            agent: about.agent.clone(),
            agent_name: about.agent_name.clone(),
            agent_employee_id: about.agent_employee_id.clone(),
            account: about.account.clone(),
            account_name: about.account_name.clone(),
            reasons: about.reasons.clone(),
        };
        body.check().map_err(|e| ApprovalError::CollectorRefused(format!("the request is not acceptable: {e}")))?;
        let registered: Registered = self.client.service_post("/approvals", &body).map_err(client_error)?;
        let expires_at = OffsetDateTime::parse(&registered.expires_at, &Rfc3339)
            .map_err(|_| ApprovalError::BadDecision("the collector's expiry is not RFC 3339".into()))?;
        let fmt = |t: OffsetDateTime| t.format(&Rfc3339).unwrap_or_default();
        self.conn
            .execute(
                "INSERT INTO collector_approvals (request_id, token_hash, manager, address, issued_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (request_id) DO UPDATE SET token_hash = excluded.token_hash, manager = excluded.manager,
                   address = excluded.address, issued_at = excluded.issued_at, expires_at = excluded.expires_at, taken = 0",
                params![issued.request_id, hash.to_vec(), issued.manager, issued.address, fmt(now), fmt(expires_at)],
            )
            .map_err(self.err())?;
        Ok(IssuedToken { token, expires_at })
    }

    fn take_answer(&mut self, request_id: &str) -> Result<Option<ManagerResponse>, ApprovalError> {
        let issued = self
            .conn
            .query_row(
                "SELECT token_hash, manager, address FROM collector_approvals WHERE request_id = ?1 AND taken = 0",
                [request_id],
                |r| Ok(IssuedRow { token_hash: r.get(0)?, manager: r.get(1)?, address: r.get(2)? }),
            )
            .optional()
            .map_err(self.err())?;
        let Some(issued) = issued else { return Ok(None) };
        if !is_identifier(request_id) {
            return Err(ApprovalError::Corrupt("request id"));
        }
        let status: ApprovalStatus =
            self.client.service_get(&format!("/approvals/{request_id}")).map_err(client_error)?;
        let note = match status {
            ApprovalStatus::Pending { .. } => return Ok(None),
            ApprovalStatus::Expired { .. } => return Err(ApprovalError::Expired),
            ApprovalStatus::Decided { note } => note,
        };
        let response = self.accept(request_id, &note, &issued)?;
        let changed = self
            .conn
            .execute("UPDATE collector_approvals SET taken = 1 WHERE request_id = ?1 AND taken = 0", [request_id])
            .map_err(self.err())?;
        Ok((changed == 1).then_some(response))
    }

    fn answer_link(&self, token: &Secret) -> Option<String> {
        Some(format!("{}/approve/{}", self.client.url(), token.expose()))
    }

    fn production_ready(&self) -> bool {
        true
    }
}
