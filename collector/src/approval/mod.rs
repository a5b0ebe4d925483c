//! Manager approval by link: the collector's side.
//!
//! A desk registers an approval request (`POST /approvals`, desk key): the request id,
//! SHA-256 of the 128-bit token it mailed to the manager, who asks, for which account,
//! why (checked by [`RegisterApproval::check`]). The manager opens
//! `/approve/<token>` (no login, no JavaScript: the token is the credential) and
//! approves or denies once, before the link expires (`[approval] ttl_seconds`, 30 minutes by
//! default). The collector keeps only the token's hash, compares it in constant time,
//! rate-limits the page ([`crate::rate_limit`]) and signs the decision with the log's
//! key as a C2SP signed note over a [`DecisionStatement`]; the desk that registered the
//! request fetches it (`GET /approvals/<request id>`). A denial ends the request (it
//! cannot be registered again) and raises an `approval-denied` alert row.
//!
//! - [`store`]: the [`ApprovalStore`] trait, its SQLite and PostgreSQL implementations;
//! - [`page`]: the HTML pages (escaped, strict CSP, no external resources);
//! - [`api`]: the axum routes.

pub mod api;
pub mod page;
pub mod store;

use serde::Deserialize;

pub use resetdesk::upstream::approval_wire::{
    ApprovalStatus, DecisionStatement, FieldError, RegisterApproval, Registered,
};
pub use store::{ApprovalRow, ApprovalStore};

use crate::rate_limit::RateLimit;

/// The `alerts` kind of a denied approval.
pub const DENIED_ALERT: &str = "approval-denied";
/// The `alerts` kind of a registration refused as hostile (another desk's request id).
pub const REFUSED_ALERT: &str = "approval-refused";

/// `[approval]` in `collector.toml`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApprovalConfig {
    /// How long an approval link works, in seconds (1 to 86400; default 1800, 30 minutes).
    pub ttl_seconds: u32,
    /// Requests to `/approve/...` per client address (default: 20 at once, 10 a minute).
    pub per_client: RateLimit,
    /// Requests to `/approve/...` over all clients (default: 200 at once, 600 a minute).
    pub overall: RateLimit,
}

impl Default for ApprovalConfig {
    fn default() -> Self {
        Self {
            ttl_seconds: 1800,
            per_client: RateLimit { burst: 20, per_minute: 10 },
            overall: RateLimit { burst: 200, per_minute: 600 },
        }
    }
}

impl ApprovalConfig {
    /// The link's lifetime in milliseconds, the configured seconds kept within 1..=86400.
    pub fn ttl_ms(&self) -> u64 {
        u64::from(self.ttl_seconds.clamp(1, 86_400)) * 1000
    }
}
