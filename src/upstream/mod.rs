//! Upstream: the desk's side of the audit collector. The schedule of what goes next is
//! sans-IO ([`crate::sync`]); here are its adapters:
//!
//! - [`wire`]: the API's bodies, shared with `resetdesk-collector` (pure);
//! - [`approval_wire`]: manager approval by link: its bodies, the signed decision's
//!   text and the field checks both ends apply (pure; the desk's channel is
//!   `desk::collector_approval`);
//! - [`witness`]: a new collector checkpoint must extend the one the desk holds (pure,
//!   `tlog_tiles`);
//! - [`client`]: the HTTPS client (ureq, rustls + ring, the configured CA pinned);
//! - [`driver`]: the sync driver (records out in seq order, receipts checked and
//!   stored, checkpoints witnessed, alerts kept), one pass or a background loop;
//! - [`online`]: an auditor's check of the stored receipts against the collector now;
//! - [`history`]: the collector's signed cross-desk account history, and the desk's
//!   history source over it and its own log.
//! - [`alerts`]: the collector's security alerts for admin agents, receipts checked.

pub mod alerts;
pub mod approval_wire;
pub mod client;
pub mod driver;
pub mod history;
pub mod online;
pub mod wire;
pub mod witness;

pub use client::{ClientError, CollectorClient};
pub use driver::{SyncDriver, SyncError, SyncHandle, SyncReport};
