//! [`AlertStore`] and the anomaly rules' memory ([`AnomalyState`]) on the PostgreSQL
//! store: the same tables as [`super::sqlite`], shared by every instance.

use super::{h32, AlertStore, DueMail, StoredAlert};
use crate::anomaly::facts::RecordRef;
use crate::anomaly::rules::{AnomalyState, Remembered};
use crate::store::{Alert, PgStore, StoreError};

/// The tables of the alerts and anomaly rules (created at connect; `alerts` is the store's).
pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS alert_records (
    alert_id BIGINT NOT NULL, pos INTEGER NOT NULL, log_id BYTEA NOT NULL, seq BIGINT NOT NULL,
    entry_hash BYTEA NOT NULL, PRIMARY KEY (alert_id, pos)
);
CREATE TABLE IF NOT EXISTS alert_mail (
    alert_id BIGINT PRIMARY KEY, attempts INTEGER NOT NULL DEFAULT 0, next_attempt_ms BIGINT NOT NULL DEFAULT 0,
    sent_ms BIGINT, last_error TEXT
);
CREATE TABLE IF NOT EXISTS anomaly_memory (
    id BIGSERIAL PRIMARY KEY, topic TEXT NOT NULL, subject TEXT NOT NULL, other TEXT NOT NULL, at_ms BIGINT NOT NULL,
    log_id BYTEA NOT NULL, seq BIGINT NOT NULL, entry_hash BYTEA NOT NULL
);
CREATE INDEX IF NOT EXISTS anomaly_memory_by_subject ON anomaly_memory (topic, subject, at_ms);
CREATE TABLE IF NOT EXISTS anomaly_fired (rule TEXT NOT NULL, subject TEXT NOT NULL, at_ms BIGINT NOT NULL, PRIMARY KEY (rule, subject));
CREATE TABLE IF NOT EXISTS desk_presence (
    log_id BYTEA PRIMARY KEY, seq BIGINT NOT NULL, entry_hash BYTEA NOT NULL, at_ms BIGINT NOT NULL,
    alerted BOOLEAN NOT NULL DEFAULT FALSE
);
";

fn i(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}
fn u(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn record_of(r: &tokio_postgres::Row, at: usize) -> RecordRef {
    RecordRef { log_id: h32(r.get(at)), seq: u(r.get(at + 1)), entry_hash: h32(r.get(at + 2)) }
}

impl AlertStore for PgStore {
    fn raise_alert(&mut self, a: &Alert, records: &[RecordRef]) -> Result<u64, StoreError> {
        // One statement: the alert and its records together.
        let log_id = a.log_id.map(|l| l.to_vec());
        let pos: Vec<i32> = (0..records.len()).map(|k| i32::try_from(k).unwrap_or(i32::MAX)).collect();
        let logs: Vec<&[u8]> = records.iter().map(|r| r.log_id.as_slice()).collect();
        let seqs: Vec<i64> = records.iter().map(|r| i(r.seq)).collect();
        let hashes: Vec<&[u8]> = records.iter().map(|r| r.entry_hash.as_slice()).collect();
        let row = self
            .block_on(self.client.query_one(
                "WITH a AS (
                     INSERT INTO alerts (at_ms, log_id, seq, kind, reason) VALUES ($1, $2, $3, $4, $5) RETURNING id
                 ), r AS (
                     INSERT INTO alert_records (alert_id, pos, log_id, seq, entry_hash)
                     SELECT a.id, x.pos, x.log_id, x.seq, x.entry_hash
                     FROM a, unnest($6::int[], $7::bytea[], $8::bigint[], $9::bytea[]) AS x(pos, log_id, seq, entry_hash)
                 )
                 SELECT id FROM a",
                &[&i(a.at_ms), &log_id, &a.seq.map(i), &a.kind, &a.reason, &pos, &logs, &seqs, &hashes],
            ))
            .map_err(self.pg("cannot store an alert"))?;
        Ok(u(row.get(0)))
    }

    fn alerts_after(&self, after: u64, limit: usize) -> Result<Vec<StoredAlert>, StoreError> {
        let rows = self
            .block_on(self.client.query(
                "SELECT id, at_ms, log_id, seq, kind, reason FROM alerts WHERE id > $1 ORDER BY id LIMIT $2",
                &[&i(after), &i(limit as u64)],
            ))
            .map_err(self.pg("cannot read alerts"))?;
        let mut alerts: Vec<StoredAlert> = rows
            .into_iter()
            .map(|r| StoredAlert {
                id: u(r.get(0)),
                alert: Alert {
                    at_ms: u(r.get(1)),
                    log_id: r.get::<_, Option<Vec<u8>>>(2).map(h32),
                    seq: r.get::<_, Option<i64>>(3).map(u),
                    kind: r.get(4),
                    reason: r.get(5),
                },
                records: Vec::new(),
            })
            .collect();
        let ids: Vec<i64> = alerts.iter().map(|a| i(a.id)).collect();
        let rows = self
            .block_on(self.client.query(
                "SELECT alert_id, log_id, seq, entry_hash FROM alert_records WHERE alert_id = ANY($1) ORDER BY alert_id, pos",
                &[&ids],
            ))
            .map_err(self.pg("cannot read the records of alerts"))?;
        for r in rows {
            let id = u(r.get(0));
            if let Some(a) = alerts.iter_mut().find(|a| a.id == id) {
                a.records.push(record_of(&r, 1));
            }
        }
        Ok(alerts)
    }

    fn queue_alert_mail(&mut self) -> Result<(), StoreError> {
        self.block_on(self.client.execute(
            "INSERT INTO alert_mail (alert_id) SELECT a.id FROM alerts a
             WHERE NOT EXISTS (SELECT 1 FROM alert_mail m WHERE m.alert_id = a.id) ON CONFLICT DO NOTHING",
            &[],
        ))
        .map(drop)
        .map_err(self.pg("cannot queue alert mail"))
    }

    fn claim_alert_mail(&mut self, now_ms: u64, lease_until_ms: u64, limit: usize) -> Result<Vec<DueMail>, StoreError> {
        // The outer conditions are checked again on rows another instance claimed
        // meanwhile, so each row goes to one instance.
        let rows = self
            .block_on(self.client.query(
                "UPDATE alert_mail SET next_attempt_ms = $1
                 WHERE sent_ms IS NULL AND next_attempt_ms <= $2 AND alert_id IN (
                     SELECT alert_id FROM alert_mail WHERE sent_ms IS NULL AND next_attempt_ms <= $2
                     ORDER BY alert_id LIMIT $3)
                 RETURNING alert_id, attempts",
                &[&i(lease_until_ms), &i(now_ms), &i(limit as u64)],
            ))
            .map_err(self.pg("cannot claim alert mail"))?;
        let mut due: Vec<DueMail> = rows
            .iter()
            .map(|r| DueMail { alert_id: u(r.get(0)), attempts: u32::try_from(r.get::<_, i32>(1)).unwrap_or(0) })
            .collect();
        due.sort_by_key(|d| d.alert_id);
        Ok(due)
    }

    fn alert_mail_sent(&mut self, alert_id: u64, at_ms: u64) -> Result<(), StoreError> {
        self.block_on(self.client.execute(
            "UPDATE alert_mail SET sent_ms = $2, attempts = attempts + 1, last_error = NULL WHERE alert_id = $1",
            &[&i(alert_id), &i(at_ms)],
        ))
        .map(drop)
        .map_err(self.pg("cannot mark alert mail sent"))
    }

    fn alert_mail_failed(&mut self, alert_id: u64, next_ms: u64, error: &str) -> Result<(), StoreError> {
        self.block_on(self.client.execute(
            "UPDATE alert_mail SET attempts = attempts + 1, next_attempt_ms = $2, last_error = $3 WHERE alert_id = $1",
            &[&i(alert_id), &i(next_ms), &error],
        ))
        .map(drop)
        .map_err(self.pg("cannot record a failed alert mail"))
    }
}

// Each statement commits on its own here (no batch transaction): instances ingesting
// at once then see each other's memory as soon as it is written, so of two batches
// that pass a limit together the later count sees both.
impl AnomalyState for PgStore {
    fn remember(&mut self, r: &Remembered) -> Result<(), StoreError> {
        self.block_on(self.client.execute(
            "INSERT INTO anomaly_memory (topic, subject, other, at_ms, log_id, seq, entry_hash)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[
                &r.topic,
                &r.subject,
                &r.other,
                &i(r.at_ms),
                &r.record.log_id.as_slice(),
                &i(r.record.seq),
                &r.record.entry_hash.as_slice(),
            ],
        ))
        .map(drop)
        .map_err(self.pg("cannot store the anomaly rules' memory"))
    }

    fn recall(&self, topic: &str, subject: &str, from_ms: u64, to_ms: u64) -> Result<Vec<Remembered>, StoreError> {
        let rows = self
            .block_on(self.client.query(
                "SELECT other, at_ms, log_id, seq, entry_hash FROM anomaly_memory
                 WHERE topic = $1 AND subject = $2 AND at_ms >= $3 AND at_ms <= $4 ORDER BY at_ms, id",
                &[&topic, &subject, &i(from_ms), &i(to_ms)],
            ))
            .map_err(self.pg("cannot read the anomaly rules' memory"))?;
        let rows = rows.iter().map(|r| (r.get::<_, String>(0), u(r.get(1)), record_of(r, 2))).collect();
        Ok(super::remembered(topic, subject, rows))
    }

    fn try_fire(&mut self, rule: &str, subject: &str, at_ms: u64, window_ms: u64) -> Result<bool, StoreError> {
        let fired = self
            .block_on(self.client.query_opt(
                "INSERT INTO anomaly_fired (rule, subject, at_ms) VALUES ($1, $2, $3)
                 ON CONFLICT (rule, subject) DO UPDATE SET at_ms = excluded.at_ms
                     WHERE anomaly_fired.at_ms + $4 <= excluded.at_ms
                 RETURNING 1",
                &[&rule, &subject, &i(at_ms), &i(window_ms)],
            ))
            .map_err(self.pg("cannot record that a rule fired"))?;
        Ok(fired.is_some())
    }

    fn saw_presence(&mut self, record: &RecordRef, at_ms: u64) -> Result<(), StoreError> {
        self.block_on(self.client.execute(
            "INSERT INTO desk_presence (log_id, seq, entry_hash, at_ms, alerted) VALUES ($1, $2, $3, $4, FALSE)
             ON CONFLICT (log_id) DO UPDATE SET seq = excluded.seq, entry_hash = excluded.entry_hash,
                 at_ms = excluded.at_ms, alerted = FALSE WHERE desk_presence.seq < excluded.seq",
            &[&record.log_id.as_slice(), &i(record.seq), &record.entry_hash.as_slice(), &i(at_ms)],
        ))
        .map(drop)
        .map_err(self.pg("cannot store a desk's presence"))
    }

    fn silent_desks(&self, before_ms: u64) -> Result<Vec<(RecordRef, u64)>, StoreError> {
        let rows = self
            .block_on(self.client.query(
                "SELECT log_id, seq, entry_hash, at_ms FROM desk_presence WHERE NOT alerted AND at_ms < $1 ORDER BY log_id",
                &[&i(before_ms)],
            ))
            .map_err(self.pg("cannot read desks' presence"))?;
        Ok(rows.iter().map(|r| (record_of(r, 0), u(r.get(3)))).collect())
    }

    fn silence_alerted(&mut self, record: &RecordRef) -> Result<(), StoreError> {
        self.block_on(self.client.execute(
            "UPDATE desk_presence SET alerted = TRUE WHERE log_id = $1 AND seq = $2",
            &[&record.log_id.as_slice(), &i(record.seq)],
        ))
        .map(drop)
        .map_err(self.pg("cannot mark a desk's silence alerted"))
    }
}
