//! `resetdesk desk reconcile`: settle reset intents left without an outcome (the desk
//! stopped between the directory write and the outcome record) against the directory,
//! signed by the agent whose card is in the reader.

use crate::clock::{Clock, SystemClock};
use clap::Subcommand;

use super::{fail, EXIT_FAILED, EXIT_OK};
use crate::desk::reconcile::{Finding, Reconciliation};
use crate::desk::Desk;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Log in with the card in READER (PIN on stdin), compare every open reset intent
    /// with the directory and write the signed outcome where the directory settles it.
    /// Exit 0 when nothing is left open, 1 when an intent needs a person (or on error).
    Reconcile(super::LoginArgs),
}

pub fn run(cmd: Command) -> u8 {
    match cmd {
        Command::Reconcile(args) => reconcile(&args),
    }
}

fn reconcile(args: &super::LoginArgs) -> u8 {
    let (config, mut session) = match super::login_from_stdin(args) {
        Ok(logged_in) => logged_in,
        Err(code) => return code,
    };
    let mut desk = match Desk::open_configured(config) {
        Ok(d) => d,
        Err(e) => return fail(e),
    };
    let identity = session.identity().clone();
    let signer = match session.signer() {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let done = match desk.reconcile(&identity, signer, SystemClock.now()) {
        Ok(d) => d,
        Err(e) => return fail(e),
    };
    if done.is_empty() {
        println!("no open reset intents: nothing to reconcile");
        return EXIT_OK;
    }
    for r in &done {
        println!("{}", describe(r));
    }
    let open = done.iter().filter(|r| r.outcome_seq.is_none()).count();
    println!("reconciled by {}: {} settled, {} need a person", identity.username, done.len() - open, open);
    if open > 0 {
        EXIT_FAILED
    } else {
        EXIT_OK
    }
}

/// One line per intent: what the directory showed and what was recorded.
fn describe(r: &Reconciliation) -> String {
    let what = match &r.finding {
        Finding::Applied { changed_at } => format!("applied (password set at {changed_at})"),
        Finding::NotApplied { .. } => "not applied (no password change since the intent)".to_owned(),
        Finding::NeedsHuman { why } => format!("NEEDS A PERSON: {why}"),
    };
    let recorded = match r.outcome_seq {
        Some(seq) => format!("outcome record seq {seq}"),
        None => "no outcome recorded".to_owned(),
    };
    format!(
        "intent seq {} (request {}, account {}): {what}; {recorded}; {}",
        r.intent_seq,
        r.request_id,
        r.target,
        crate::desk::reconcile::note(&r.finding)
    )
}
