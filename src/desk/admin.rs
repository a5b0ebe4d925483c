//! The admin actions a desk needs besides resets, each a signed `admin_action` audit
//! record by the admin's card, written before the directory is changed: clear a
//! verification lockout, clear an account's flag, set a contact point (stamped with
//! the change time the risk rules read).
//!
//! Only admin agents act, never on an account of their own (by username or employee
//! ID). If the directory refuses after the record was written, the error says so: the
//! record states what was asked, and running the action again writes a new record.

use serde::Serialize;
use time::OffsetDateTime;

use crate::audit::{Appended, AuditError, AuditLog, Event, EventType};
use crate::directory::{ContactPoint, Directory, DirectoryError};
use crate::login::AgentSession;
use crate::policy::authority::{is_plain_identifier, same_person};
use crate::text::has_control_chars;
use crate::tier::AgentTier;
use crate::workflow::ContactKind;

/// What the admin does to the account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum AdminAction {
    /// End the verification lockout now (the flag stays).
    ClearLockout,
    /// Clear the flag a lockout or the security team set.
    Unflag,
    /// The contact point of `kind` labelled `label` becomes `value`.
    SetContact { kind: ContactKind, label: String, value: String },
}

/// Why an admin action was refused or did not complete.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("only an admin agent may do this ({0} is a {1} agent); ask an admin to log in with their key")]
    NotAdmin(String, AgentTier),
    #[error("admins may not act on an account of their own; ask another admin")]
    OwnAccount,
    #[error("the {0} is empty, too long or holds control characters; write it plainly (at most 256 characters)")]
    BadText(&'static str),
    #[error(transparent)]
    Directory(#[from] DirectoryError),
    #[error("the logged-in admin's key cannot sign: {0}")]
    Signer(String),
    #[error("the signed record could not be written, so nothing was changed: {0}")]
    Audit(#[from] AuditError),
    #[error("the signed record (seq {seq}) was written, but the directory refused the change ({source}); fix the cause and run the action again")]
    NotApplied {
        seq: u64,
        #[source]
        source: DirectoryError,
    },
}

#[derive(Serialize)]
struct AdminFacts<'a> {
    #[serde(flatten)]
    action: &'a AdminAction,
    target: Target<'a>,
    reason: &'a str,
    by: &'a str,
}

/// `{"username": ...}`, the shape the account-history reader looks for.
#[derive(Serialize)]
struct Target<'a> {
    username: &'a str,
}

/// Text an admin types for a record (a reason, a label): not blank, at most 256 bytes,
/// no control characters.
pub(super) fn is_plain_text(text: &str) -> bool {
    !text.trim().is_empty() && text.len() <= 256 && !has_control_chars(text)
}

fn plain(what: &'static str, text: &str) -> Result<(), AdminError> {
    if !is_plain_text(text) {
        return Err(AdminError::BadText(what));
    }
    Ok(())
}

/// Do `action` on `target` as the logged-in `admin`, for `reason`: the signed record
/// first, then the directory.
pub fn perform(
    directory: &dyn Directory,
    audit: &mut AuditLog,
    admin: &mut AgentSession,
    target: &str,
    action: &AdminAction,
    reason: &str,
    now: OffsetDateTime,
) -> Result<Appended, AdminError> {
    let who = admin.identity().clone();
    if who.tier != AgentTier::Admin {
        return Err(AdminError::NotAdmin(who.username, who.tier));
    }
    plain("reason", reason)?;
    if let AdminAction::SetContact { label, value, .. } = action {
        plain("label", label)?;
        plain("value", value)?;
    }
    if !is_plain_identifier(target) {
        return Err(AdminError::BadText("username"));
    }
    let account = directory.entry(target)?;
    let me = directory.entry(&who.username)?;
    if same_person(&me.username, &me.employee_id, &account.username, &account.employee_id) {
        return Err(AdminError::OwnAccount);
    }
    let facts = AdminFacts { action, target: Target { username: &account.username }, reason, by: &who.username };
    let event = Event::new(EventType::AdminAction, &facts).map_err(AuditError::from)?;
    let signer = admin.signer().map_err(|e| AdminError::Signer(e.to_string()))?;
    let record = audit.append(&event, signer, now)?;
    let applied = match action {
        AdminAction::ClearLockout => directory.clear_verification_lock(&account.username),
        AdminAction::Unflag => directory.clear_flag(&account.username),
        AdminAction::SetContact { kind, label, value } => directory.set_contact_point(
            &account.username,
            *kind,
            &ContactPoint { value: value.clone(), label: label.clone(), changed_at: Some(now) },
        ),
    };
    applied.map_err(|source| AdminError::NotApplied { seq: record.seq, source })?;
    Ok(record)
}
