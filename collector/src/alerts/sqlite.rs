//! [`AlertStore`] and the anomaly rules' memory ([`AnomalyState`]) on the SQLite store.

use rusqlite::{params, OptionalExtension};

use super::{h32, AlertStore, DueMail, StoredAlert};
use crate::anomaly::facts::RecordRef;
use crate::anomaly::rules::{AnomalyState, Remembered};
use crate::store::{Alert, SqliteStore, StoreError};

/// The tables of the alerts and anomaly rules (created at open; `alerts` is the store's).
pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS alert_records (
    alert_id INTEGER NOT NULL, pos INTEGER NOT NULL, log_id BLOB NOT NULL, seq INTEGER NOT NULL,
    entry_hash BLOB NOT NULL, PRIMARY KEY (alert_id, pos)
);
CREATE TABLE IF NOT EXISTS alert_mail (
    alert_id INTEGER PRIMARY KEY, attempts INTEGER NOT NULL DEFAULT 0, next_attempt_ms INTEGER NOT NULL DEFAULT 0,
    sent_ms INTEGER, last_error TEXT
);
CREATE TABLE IF NOT EXISTS anomaly_memory (
    id INTEGER PRIMARY KEY, topic TEXT NOT NULL, subject TEXT NOT NULL, other TEXT NOT NULL, at_ms INTEGER NOT NULL,
    log_id BLOB NOT NULL, seq INTEGER NOT NULL, entry_hash BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS anomaly_memory_by_subject ON anomaly_memory (topic, subject, at_ms);
CREATE TABLE IF NOT EXISTS anomaly_fired (rule TEXT NOT NULL, subject TEXT NOT NULL, at_ms INTEGER NOT NULL, PRIMARY KEY (rule, subject));
CREATE TABLE IF NOT EXISTS desk_presence (
    log_id BLOB PRIMARY KEY, seq INTEGER NOT NULL, entry_hash BLOB NOT NULL, at_ms INTEGER NOT NULL,
    alerted INTEGER NOT NULL DEFAULT 0
);
";

fn i(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}
fn u(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

impl AlertStore for SqliteStore {
    fn raise_alert(&mut self, a: &Alert, records: &[RecordRef]) -> Result<u64, StoreError> {
        let path = self.path.clone();
        let sql = |source| StoreError::Sql { path: path.clone(), source };
        // A savepoint: on its own, or inside the rules' batch transaction.
        let tx = self.conn.savepoint().map_err(sql)?;
        let id: i64 = tx
            .query_row(
                "INSERT INTO alerts (at_ms, log_id, seq, kind, reason) VALUES (?1, ?2, ?3, ?4, ?5) RETURNING id",
                params![i(a.at_ms), a.log_id.map(|l| l.to_vec()), a.seq.map(i), a.kind, a.reason],
                |r| r.get(0),
            )
            .map_err(sql)?;
        for (pos, r) in records.iter().enumerate() {
            tx.execute(
                "INSERT INTO alert_records (alert_id, pos, log_id, seq, entry_hash) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![id, pos as i64, r.log_id, i(r.seq), r.entry_hash],
            )
            .map_err(sql)?;
        }
        tx.commit().map_err(sql)?;
        Ok(u(id))
    }

    fn alerts_after(&self, after: u64, limit: usize) -> Result<Vec<StoredAlert>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT id, at_ms, log_id, seq, kind, reason FROM alerts WHERE id > ?1 ORDER BY id LIMIT ?2")
            .map_err(self.err())?;
        let rows = stmt
            .query_map(params![i(after), i(limit as u64)], |r| {
                Ok(StoredAlert {
                    id: u(r.get(0)?),
                    alert: Alert {
                        at_ms: u(r.get(1)?),
                        log_id: r.get::<_, Option<Vec<u8>>>(2)?.map(h32),
                        seq: r.get::<_, Option<i64>>(3)?.map(u),
                        kind: r.get(4)?,
                        reason: r.get(5)?,
                    },
                    records: Vec::new(),
                })
            })
            .map_err(self.err())?;
        let mut alerts: Vec<StoredAlert> = rows.collect::<Result<_, _>>().map_err(self.err())?;
        let mut records = self
            .conn
            .prepare_cached("SELECT log_id, seq, entry_hash FROM alert_records WHERE alert_id = ?1 ORDER BY pos")
            .map_err(self.err())?;
        for a in &mut alerts {
            let rows = records
                .query_map([i(a.id)], |r| {
                    Ok(RecordRef { log_id: h32(r.get(0)?), seq: u(r.get(1)?), entry_hash: h32(r.get(2)?) })
                })
                .map_err(self.err())?;
            a.records = rows.collect::<Result<_, _>>().map_err(self.err())?;
        }
        Ok(alerts)
    }

    fn queue_alert_mail(&mut self) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT OR IGNORE INTO alert_mail (alert_id) SELECT a.id FROM alerts a
                 WHERE NOT EXISTS (SELECT 1 FROM alert_mail m WHERE m.alert_id = a.id)",
                [],
            )
            .map(drop)
            .map_err(self.err())
    }

    fn claim_alert_mail(&mut self, now_ms: u64, lease_until_ms: u64, limit: usize) -> Result<Vec<DueMail>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "UPDATE alert_mail SET next_attempt_ms = ?1
                 WHERE sent_ms IS NULL AND next_attempt_ms <= ?2 AND alert_id IN (
                     SELECT alert_id FROM alert_mail WHERE sent_ms IS NULL AND next_attempt_ms <= ?2
                     ORDER BY alert_id LIMIT ?3)
                 RETURNING alert_id, attempts",
            )
            .map_err(self.err())?;
        let rows = stmt
            .query_map(params![i(lease_until_ms), i(now_ms), i(limit as u64)], |r| {
                Ok(DueMail { alert_id: u(r.get(0)?), attempts: u32::try_from(r.get::<_, i64>(1)?).unwrap_or(0) })
            })
            .map_err(self.err())?;
        let mut due: Vec<DueMail> = rows.collect::<Result<_, _>>().map_err(self.err())?;
        due.sort_by_key(|d| d.alert_id);
        Ok(due)
    }

    fn alert_mail_sent(&mut self, alert_id: u64, at_ms: u64) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE alert_mail SET sent_ms = ?2, attempts = attempts + 1, last_error = NULL WHERE alert_id = ?1",
                params![i(alert_id), i(at_ms)],
            )
            .map(drop)
            .map_err(self.err())
    }

    fn alert_mail_failed(&mut self, alert_id: u64, next_ms: u64, error: &str) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE alert_mail SET attempts = attempts + 1, next_attempt_ms = ?2, last_error = ?3 WHERE alert_id = ?1",
                params![i(alert_id), i(next_ms), error],
            )
            .map(drop)
            .map_err(self.err())
    }
}

impl AnomalyState for SqliteStore {
    // Inside an ingest's transaction the batch's work is already part of it.
    fn begin_batch(&mut self) -> Result<(), StoreError> {
        if self.in_unit() {
            return Ok(());
        }
        self.conn.execute_batch("BEGIN IMMEDIATE").map_err(self.err())
    }

    fn end_batch(&mut self) -> Result<(), StoreError> {
        if self.in_unit() || self.conn.is_autocommit() {
            return Ok(());
        }
        self.conn.execute_batch("COMMIT").map_err(self.err())
    }

    // The statements run for each record of a batch are prepared once per connection.
    fn remember(&mut self, r: &Remembered) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(
                "INSERT INTO anomaly_memory (topic, subject, other, at_ms, log_id, seq, entry_hash)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )
            .and_then(|mut insert| {
                insert.execute(params![
                    r.topic,
                    r.subject,
                    r.other,
                    i(r.at_ms),
                    r.record.log_id,
                    i(r.record.seq),
                    r.record.entry_hash
                ])
            })
            .map(drop)
            .map_err(self.err())
    }

    fn recall(&self, topic: &str, subject: &str, from_ms: u64, to_ms: u64) -> Result<Vec<Remembered>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT other, at_ms, log_id, seq, entry_hash FROM anomaly_memory
                 WHERE topic = ?1 AND subject = ?2 AND at_ms >= ?3 AND at_ms <= ?4 ORDER BY at_ms, id",
            )
            .map_err(self.err())?;
        let rows = stmt
            .query_map(params![topic, subject, i(from_ms), i(to_ms)], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    u(r.get(1)?),
                    RecordRef { log_id: h32(r.get(2)?), seq: u(r.get(3)?), entry_hash: h32(r.get(4)?) },
                ))
            })
            .map_err(self.err())?;
        let rows: Vec<_> = rows.collect::<Result<_, _>>().map_err(self.err())?;
        Ok(super::remembered(topic, subject, rows))
    }

    fn try_fire(&mut self, rule: &str, subject: &str, at_ms: u64, window_ms: u64) -> Result<bool, StoreError> {
        self.conn
            .prepare_cached(
                "INSERT INTO anomaly_fired (rule, subject, at_ms) VALUES (?1, ?2, ?3)
                 ON CONFLICT (rule, subject) DO UPDATE SET at_ms = excluded.at_ms
                     WHERE anomaly_fired.at_ms + ?4 <= excluded.at_ms
                 RETURNING 1",
            )
            .and_then(|mut fire| fire.query_row(params![rule, subject, i(at_ms), i(window_ms)], |_| Ok(())))
            .optional()
            .map(|fired| fired.is_some())
            .map_err(self.err())
    }

    fn saw_presence(&mut self, record: &RecordRef, at_ms: u64) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(
                "INSERT INTO desk_presence (log_id, seq, entry_hash, at_ms, alerted) VALUES (?1, ?2, ?3, ?4, 0)
                 ON CONFLICT (log_id) DO UPDATE SET seq = excluded.seq, entry_hash = excluded.entry_hash,
                     at_ms = excluded.at_ms, alerted = 0 WHERE desk_presence.seq < excluded.seq",
            )
            .and_then(|mut saw| saw.execute(params![record.log_id, i(record.seq), record.entry_hash, i(at_ms)]))
            .map(drop)
            .map_err(self.err())
    }

    fn silent_desks(&self, before_ms: u64) -> Result<Vec<(RecordRef, u64)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT log_id, seq, entry_hash, at_ms FROM desk_presence WHERE alerted = 0 AND at_ms < ?1 ORDER BY log_id")
            .map_err(self.err())?;
        let rows = stmt
            .query_map([i(before_ms)], |r| {
                Ok((RecordRef { log_id: h32(r.get(0)?), seq: u(r.get(1)?), entry_hash: h32(r.get(2)?) }, u(r.get(3)?)))
            })
            .map_err(self.err())?;
        rows.collect::<Result<_, _>>().map_err(self.err())
    }

    fn silence_alerted(&mut self, record: &RecordRef) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE desk_presence SET alerted = 1 WHERE log_id = ?1 AND seq = ?2",
                params![record.log_id, i(record.seq)],
            )
            .map(drop)
            .map_err(self.err())
    }
}
