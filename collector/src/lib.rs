//! `resetdesk-collector`: the audit collector.
//!
//! Desks POST batches of their signed audit records. Each record is checked by the
//! core crate's verifier ([`resetdesk::audit::LogVerifier`], one per desk log, fed
//! batch by batch) exactly as `resetdesk audit verify` checks it offline; accepted
//! records' entry hashes (RFC 6962 leaf hashes) are appended to one Merkle log over
//! all desks, whose signed C2SP checkpoints and tiles the collector serves. Each
//! accepted record gets a receipt: the signed checkpoint plus its inclusion proof.
//!
//! Layers: [`wire`] (request/response bodies, pure), [`ingest`] (verification and
//! sequencing over a [`store::LogStore`]), [`merkle`] (tree math over stored hashes,
//! with `tlog_tiles`), [`note`] (the checkpoint signing key), [`store`] (the storage
//! trait and its SQLite implementation), [`api`] (axum routes), [`tls`] (rustls
//! config and the demo CA), [`config`]; [`anomaly`] (rules evaluated at ingest) and
//! [`alerts`] (alert records and receipts, `GET /alerts`, mail to the security team).
//! Desk services: [`approval`] (manager approval by link, its pages rate-limited by
//! [`rate_limit`]).

pub mod alerts;
pub mod anomaly;
pub mod api;
pub mod approval;
pub mod config;
pub mod cores;
pub mod cosignature;
pub mod desk_auth;
pub mod history;
pub mod ingest;
pub mod merkle;
pub mod note;
pub mod pages;
pub mod rate_limit;
pub mod store;
pub mod tls;
pub mod wire;
pub mod witness;
pub mod witnessing;
