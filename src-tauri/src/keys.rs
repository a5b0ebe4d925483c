//! The Admin screen's key commands: enrol the key in the other reader for an agent,
//! revoke an agent's keys. Who may, and every check, is the core's
//! ([`resetdesk::desk::key_admin`]); secrets become [`Secret`]s on arrival and never
//! come back.

use resetdesk::desk::key_admin::KeyEnrolment;
use resetdesk::desk::view::AdminView;
use resetdesk::secret::Secret;
use resetdesk::workflow::input::SecretInput;
use serde::{Deserialize, Serialize};
use tauri::AppHandle;

use crate::desk::Failure;
use crate::reset::{fail, on_desk};

/// The enrolment form. Empty current PIN/PUK: a factory-fresh card.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrolForm {
    reader: String,
    username: String,
    ca_passphrase: SecretInput,
    new_pin: SecretInput,
    new_puk: SecretInput,
    #[serde(default)]
    current_pin: Option<SecretInput>,
    #[serde(default)]
    current_puk: Option<SecretInput>,
}

/// What the Admin screen shows after a key command.
#[derive(Serialize)]
pub struct KeyReply {
    done: String,
    admin: AdminView,
}

/// An empty field is "not given" (the card's factory default).
fn given(s: Option<SecretInput>) -> Option<Secret> {
    s.map(|s| s.0).filter(|s| !s.is_empty())
}

/// Enrol the key in `form.reader` for `form.username`.
#[tauri::command]
pub async fn enrol_key(app: AppHandle, form: EnrolForm) -> Result<KeyReply, Failure> {
    on_desk(app, move |_, state| {
        let (session, core) = state.agent_and_core()?;
        let request = KeyEnrolment {
            username: form.username,
            ca_passphrase: form.ca_passphrase.0,
            new_pin: form.new_pin.0,
            new_puk: form.new_puk.0,
            current_pin: given(form.current_pin),
            current_puk: given(form.current_puk),
        };
        let done = core.enrol_key(session, &form.reader, request, crate::desk::now()).map_err(fail)?;
        let r = &done.report;
        let done = format!(
            "Enrolled {} on card {}{}; enrolment record {} signed by the new key. PIN and PUK changed, management key replaced.",
            r.username,
            r.serial,
            if r.is_virtual { " (virtual)" } else { "" },
            done.record_seq
        );
        Ok(KeyReply { done, admin: core.admin_view(session.tier()).map_err(fail)? })
    })
    .await
}

/// Revoke `agent`'s active keys (on card `serial`, if given) for `reason`.
#[tauri::command]
pub async fn revoke_key(
    app: AppHandle,
    agent: String,
    serial: Option<u32>,
    reason: String,
) -> Result<KeyReply, Failure> {
    on_desk(app, move |_, state| {
        let (session, core) = state.agent_and_core()?;
        let done = core.revoke_key(session, &agent, serial, &reason, crate::desk::now()).map_err(fail)?;
        let done = format!(
            "Revoked {} key(s) of {agent}; revocation record {} signed by your key.",
            done.keys.len(),
            done.record.seq
        );
        Ok(KeyReply { done, admin: core.admin_view(session.tier()).map_err(fail)? })
    })
    .await
}
