//! ResetDesk core: assisted password resets for walk-up service desks.
//!
//! Layers (see `ARCHITECTURE.md`):
//! - **sans-IO core**: [`tier`], [`groups`] (group-to-tier mapping), [`policy`], [`workflow`], [`verification`],
//!   [`password`], [`audit::record`] — pure functions and state machines. They take
//!   events (including the current time) and return decisions; they never touch a
//!   card, a file, a socket or the clock.
//! - **adapters** behind small traits: [`directory`] (embedded SQLite, later LDAP/AD),
//!   [`token`] (YubiKey PIV over PC/SC), [`audit::store`] (SQLite), the notifier
//!   outbox; [`desk`] drives one reset through them, [`login`] and [`presence`] run
//!   the agent's session and its signed login/logout records.
//! - **shells**: the `resetdesk` CLI (`src/bin/resetdesk`) and the Tauri app
//!   (`src-tauri/`), each a thin layer of calls into this crate.

// Sans-IO core: rules and state machines (no IO, no clock).
pub mod account_events;
pub mod groups;
pub mod password;
pub mod policy;
pub mod secret;
pub mod session;
pub mod sync;
pub mod text;
pub mod tier;
pub mod verification;
pub mod workflow;

// Adapters and the services that drive the core through them.
pub mod audit;
pub mod ca;
pub mod clock;
pub mod config;
pub mod demo;
pub mod desk;
pub mod directory;
pub mod https;
pub mod logging;
pub mod login;
pub mod presence;
pub mod session_start;
pub mod token;
pub mod upstream;

// The command line's subcommands (the binary only parses arguments).
pub mod cli;
