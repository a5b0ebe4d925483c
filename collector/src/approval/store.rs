//! Where approval requests are kept: the [`ApprovalStore`] trait, for the collector's
//! SQLite and PostgreSQL stores (table `approval_requests`, created at open).
//!
//! Single use holds across instances sharing one database: a decision is one
//! conditional `UPDATE ... WHERE decision IS NULL AND expires_ms > now`, and a
//! registration replaces an earlier one only for the same desk and only while it was
//! not denied (one `INSERT ... ON CONFLICT DO UPDATE ... WHERE`).

use rusqlite::{params, OptionalExtension};

use crate::store::{PgStore, SqliteStore, StoreError};

pub(crate) const SQLITE_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS approval_requests (
    request_id        TEXT PRIMARY KEY NOT NULL,
    desk              TEXT NOT NULL,
    token_hash        BLOB NOT NULL UNIQUE,
    manager           TEXT NOT NULL,
    address           TEXT NOT NULL,
    agent             TEXT NOT NULL,
    agent_name        TEXT NOT NULL,
    agent_employee_id TEXT NOT NULL,
    account           TEXT NOT NULL,
    account_name      TEXT NOT NULL,
    reasons           TEXT NOT NULL,
    created_ms        INTEGER NOT NULL,
    expires_ms        INTEGER NOT NULL,
    decision          INTEGER CHECK (decision IN (0, 1)),
    decided_ms        INTEGER,
    note              TEXT
);
";

pub(crate) const PG_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS approval_requests (
    request_id        TEXT PRIMARY KEY,
    desk              TEXT NOT NULL,
    token_hash        BYTEA NOT NULL UNIQUE,
    manager           TEXT NOT NULL,
    address           TEXT NOT NULL,
    agent             TEXT NOT NULL,
    agent_name        TEXT NOT NULL,
    agent_employee_id TEXT NOT NULL,
    account           TEXT NOT NULL,
    account_name      TEXT NOT NULL,
    reasons           TEXT NOT NULL,
    created_ms        BIGINT NOT NULL,
    expires_ms        BIGINT NOT NULL,
    decision          INTEGER CHECK (decision IN (0, 1)),
    decided_ms        BIGINT,
    note              TEXT
);
";

/// One approval request as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalRow {
    pub request_id: String,
    /// The desk that registered it (its desk key's name).
    pub desk: String,
    pub token_hash: [u8; 32],
    pub manager: String,
    pub address: String,
    pub agent: String,
    pub agent_name: String,
    pub agent_employee_id: String,
    pub account: String,
    pub account_name: String,
    pub reasons: Vec<String>,
    pub created_ms: u64,
    pub expires_ms: u64,
    /// `Some(true)` approved, `Some(false)` denied, `None` not yet.
    pub decision: Option<bool>,
    pub decided_ms: Option<u64>,
    /// The signed decision.
    pub note: Option<String>,
}

/// What the collector keeps of approval requests. Implemented by both stores.
pub trait ApprovalStore {
    /// Store a new request, or replace the one of the same request id when it is the
    /// same desk's and was not denied (the desk asked again: the old token stops
    /// counting). `false`: refused (another desk's request, or one a manager denied).
    fn register_approval(&mut self, row: &ApprovalRow) -> Result<bool, StoreError>;
    fn approval_by_token(&self, token_hash: &[u8; 32]) -> Result<Option<ApprovalRow>, StoreError>;
    fn approval_by_request(&self, request_id: &str) -> Result<Option<ApprovalRow>, StoreError>;
    /// Record the decision on the request of `token_hash` if it is still open and not
    /// expired at `now_ms`; `false` if another answer came first or it expired.
    fn decide_approval(
        &mut self,
        token_hash: &[u8; 32],
        approved: bool,
        note: &str,
        now_ms: u64,
    ) -> Result<bool, StoreError>;
}

const COLUMNS: &str = "request_id, desk, token_hash, manager, address, agent, agent_name, agent_employee_id, \
                       account, account_name, reasons, created_ms, expires_ms, decision, decided_ms, note";

/// The registration statement, with PostgreSQL's `$n` placeholders (SQLite's `?n`
/// after a replace: numbered the same).
const REGISTER: &str = "INSERT INTO approval_requests (request_id, desk, token_hash, manager, address, agent, \
     agent_name, agent_employee_id, account, account_name, reasons, created_ms, expires_ms)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
     ON CONFLICT (request_id) DO UPDATE SET token_hash = excluded.token_hash, manager = excluded.manager,
       address = excluded.address, agent = excluded.agent, agent_name = excluded.agent_name,
       agent_employee_id = excluded.agent_employee_id, account = excluded.account,
       account_name = excluded.account_name, reasons = excluded.reasons, created_ms = excluded.created_ms,
       expires_ms = excluded.expires_ms, decision = NULL, decided_ms = NULL, note = NULL
     WHERE approval_requests.desk = excluded.desk
       AND (approval_requests.decision IS NULL OR approval_requests.decision = 1)";

const DECIDE: &str = "UPDATE approval_requests SET decision = $2, decided_ms = $3, note = $4
     WHERE token_hash = $1 AND decision IS NULL AND expires_ms > $3";

fn i(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}
fn u(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn reasons_json(reasons: &[String]) -> String {
    serde_json::to_string(reasons).unwrap_or_else(|_| "[]".into())
}

/// A row's columns in [`COLUMNS`] order, as either driver reads them.
struct Raw {
    request_id: String,
    desk: String,
    token_hash: Vec<u8>,
    text: [String; 7],
    reasons: String,
    created_ms: i64,
    expires_ms: i64,
    decision: Option<i32>,
    decided_ms: Option<i64>,
    note: Option<String>,
}

impl Raw {
    fn row(self) -> Result<ApprovalRow, String> {
        let token_hash = self.token_hash.try_into().map_err(|_| "a token hash is not 32 bytes".to_owned())?;
        let reasons = serde_json::from_str(&self.reasons).map_err(|e| format!("reasons: {e}"))?;
        let [manager, address, agent, agent_name, agent_employee_id, account, account_name] = self.text;
        Ok(ApprovalRow {
            request_id: self.request_id,
            desk: self.desk,
            token_hash,
            manager,
            address,
            agent,
            agent_name,
            agent_employee_id,
            account,
            account_name,
            reasons,
            created_ms: u(self.created_ms),
            expires_ms: u(self.expires_ms),
            decision: self.decision.map(|d| d == 1),
            decided_ms: self.decided_ms.map(u),
            note: self.note,
        })
    }
}

impl SqliteStore {
    fn corrupt(&self, what: String) -> StoreError {
        StoreError::Corrupt { path: self.path.clone(), what }
    }

    fn approval_where(&self, clause: &str, key: &dyn rusqlite::ToSql) -> Result<Option<ApprovalRow>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM approval_requests WHERE {clause}");
        let raw = self
            .conn
            .query_row(&sql, [key], |r| {
                Ok(Raw {
                    request_id: r.get(0)?,
                    desk: r.get(1)?,
                    token_hash: r.get(2)?,
                    text: [r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?, r.get(7)?, r.get(8)?, r.get(9)?],
                    reasons: r.get(10)?,
                    created_ms: r.get(11)?,
                    expires_ms: r.get(12)?,
                    decision: r.get(13)?,
                    decided_ms: r.get(14)?,
                    note: r.get(15)?,
                })
            })
            .optional()
            .map_err(self.err())?;
        raw.map(|r| r.row().map_err(|e| self.corrupt(e))).transpose()
    }
}

impl ApprovalStore for SqliteStore {
    fn register_approval(&mut self, row: &ApprovalRow) -> Result<bool, StoreError> {
        let changed = self
            .conn
            .execute(
                &REGISTER.replace('$', "?"),
                params![
                    row.request_id,
                    row.desk,
                    row.token_hash.to_vec(),
                    row.manager,
                    row.address,
                    row.agent,
                    row.agent_name,
                    row.agent_employee_id,
                    row.account,
                    row.account_name,
                    reasons_json(&row.reasons),
                    i(row.created_ms),
                    i(row.expires_ms)
                ],
            )
            .map_err(self.err())?;
        Ok(changed == 1)
    }

    fn approval_by_token(&self, token_hash: &[u8; 32]) -> Result<Option<ApprovalRow>, StoreError> {
        self.approval_where("token_hash = ?1", &token_hash.to_vec())
    }

    fn approval_by_request(&self, request_id: &str) -> Result<Option<ApprovalRow>, StoreError> {
        self.approval_where("request_id = ?1", &request_id)
    }

    fn decide_approval(
        &mut self,
        token_hash: &[u8; 32],
        approved: bool,
        note: &str,
        now_ms: u64,
    ) -> Result<bool, StoreError> {
        let changed = self
            .conn
            .execute(&DECIDE.replace('$', "?"), params![token_hash.to_vec(), i32::from(approved), i(now_ms), note])
            .map_err(self.err())?;
        Ok(changed == 1)
    }
}

impl PgStore {
    fn approval_where(
        &self,
        clause: &str,
        key: &(dyn tokio_postgres::types::ToSql + Sync),
    ) -> Result<Option<ApprovalRow>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM approval_requests WHERE {clause}");
        let row = self.block_on(self.client.query_opt(&sql, &[key])).map_err(self.pg("cannot read an approval"))?;
        let Some(r) = row else { return Ok(None) };
        let raw = Raw {
            request_id: r.get(0),
            desk: r.get(1),
            token_hash: r.get(2),
            text: [r.get(3), r.get(4), r.get(5), r.get(6), r.get(7), r.get(8), r.get(9)],
            reasons: r.get(10),
            created_ms: r.get(11),
            expires_ms: r.get(12),
            decision: r.get(13),
            decided_ms: r.get(14),
            note: r.get(15),
        };
        raw.row().map(Some).map_err(|what| StoreError::PostgresSetup { url: self.shown.clone(), what })
    }
}

impl ApprovalStore for PgStore {
    fn register_approval(&mut self, row: &ApprovalRow) -> Result<bool, StoreError> {
        let reasons = reasons_json(&row.reasons);
        let changed = self
            .block_on(self.client.execute(
                REGISTER,
                &[
                    &row.request_id,
                    &row.desk,
                    &row.token_hash.as_slice(),
                    &row.manager,
                    &row.address,
                    &row.agent,
                    &row.agent_name,
                    &row.agent_employee_id,
                    &row.account,
                    &row.account_name,
                    &reasons,
                    &i(row.created_ms),
                    &i(row.expires_ms),
                ],
            ))
            .map_err(self.pg("cannot store an approval request"))?;
        Ok(changed == 1)
    }

    fn approval_by_token(&self, token_hash: &[u8; 32]) -> Result<Option<ApprovalRow>, StoreError> {
        self.approval_where("token_hash = $1", &token_hash.as_slice())
    }

    fn approval_by_request(&self, request_id: &str) -> Result<Option<ApprovalRow>, StoreError> {
        self.approval_where("request_id = $1", &request_id)
    }

    fn decide_approval(
        &mut self,
        token_hash: &[u8; 32],
        approved: bool,
        note: &str,
        now_ms: u64,
    ) -> Result<bool, StoreError> {
        let changed = self
            .block_on(self.client.execute(DECIDE, &[&token_hash.as_slice(), &i32::from(approved), &i(now_ms), &note]))
            .map_err(self.pg("cannot record an approval decision"))?;
        Ok(changed == 1)
    }
}
