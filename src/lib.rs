//! ResetDesk core: assisted password resets for walk-up service desks.
//!
//! Layers (see `ARCHITECTURE.md`):
//! - **sans-IO core**: [`tier`], [`policy`], [`workflow`], [`verification`],
//!   [`password`], [`audit::record`] — pure functions and state machines. They take
//!   events (including the current time) and return decisions; they never touch a
//!   card, a file, a socket or the clock.
//! - **adapters** behind small traits: [`directory`] (embedded SQLite, later LDAP/AD),
//!   [`token`] (YubiKey PIV over PC/SC), [`audit::store`] (SQLite), notifier, sync.
//! - **shells**: the `resetdesk` CLI (`src/bin/resetdesk`) and the Tauri app
//!   (`src-tauri/`), each a thin layer of calls into this crate.

pub mod config;
pub mod demo;
pub mod directory;
pub mod secret;
pub mod text;
pub mod tier;
pub mod token;
pub mod ca;
pub mod login;
pub mod session;
pub mod presence;
pub mod policy;
pub mod workflow;
pub mod password;
pub mod verification;
pub mod cli;
pub mod audit;
pub mod desk;
