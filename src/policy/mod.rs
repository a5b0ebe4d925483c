//! Verification policy: what each account tier requires before a reset.
//! (Filled in by the policy engine; the configuration section is `[policy]`.)

use serde::{Deserialize, Serialize};

/// The `[policy]` section of `resetdesk.toml`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {}
