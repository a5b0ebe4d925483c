//! `resetdesk admin ...`: the admin actions besides resets. An admin logs in with their
//! card (PIN on stdin); each action is a signed `admin_action` audit record, written
//! before the directory changes (see `resetdesk::desk::admin`).

use crate::clock::{Clock, SystemClock};
use clap::{Args, Subcommand};

use super::{fail, EXIT_OK};
use crate::desk::admin::{perform, AdminAction};
use crate::presence::open_audit_log;
use crate::workflow::ContactKind;

/// The account and why, for every admin action.
#[derive(Debug, Args)]
pub struct Target {
    #[command(flatten)]
    pub admin: super::LoginArgs,
    /// The account acted on.
    #[arg(long, value_name = "USERNAME")]
    pub user: String,
    /// Why (goes into the signed record).
    #[arg(long)]
    pub reason: String,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// End an account's verification lockout now; the failures before it stop counting
    /// (the flag stays: `admin unflag`).
    ClearLockout(Target),
    /// Clear an account's flag (from a lockout or the security team).
    Unflag(Target),
    /// Set the contact point of --kind labelled --label to --value, changed now (a recent
    /// change raises the tier of resets and is never used for codes or callbacks).
    SetContact {
        #[command(flatten)]
        target: Target,
        #[arg(long, value_enum)]
        kind: Kind,
        #[arg(long)]
        label: String,
        #[arg(long)]
        value: String,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Kind {
    Email,
    Phone,
}

pub fn run(cmd: Command) -> u8 {
    let (target, action) = match cmd {
        Command::ClearLockout(t) => (t, AdminAction::ClearLockout),
        Command::Unflag(t) => (t, AdminAction::Unflag),
        Command::SetContact { target, kind, label, value } => {
            let kind = match kind {
                Kind::Email => ContactKind::Email,
                Kind::Phone => ContactKind::Phone,
            };
            (target, AdminAction::SetContact { kind, label, value })
        }
    };
    let (config, mut session) = match super::login_from_stdin(&target.admin) {
        Ok(logged_in) => logged_in,
        Err(code) => return code,
    };
    let data_dir = &target.admin.data_dir;
    let directory = match crate::directory::open(&config) {
        Ok(d) => d,
        Err(e) => return fail(e),
    };
    let mut audit = match open_audit_log(data_dir, config.ca.cert_file.as_deref()) {
        Ok(a) => a,
        Err(e) => return fail(e),
    };
    let now = SystemClock.now();
    match perform(directory.as_ref(), &mut audit, &mut session, &target.user, &action, &target.reason, now) {
        Ok(record) => {
            println!(
                "{}: done ({action:?}); admin_action record seq {} signed by {}",
                target.user,
                record.seq,
                session.identity().username
            );
            EXIT_OK
        }
        Err(e) => fail(e),
    }
}
