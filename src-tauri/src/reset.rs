//! The reset commands: search, intake, each verification step, co-signature,
//! execution, the hand-off and the cooling-off queue. Each is a few lines into the
//! core ([`resetdesk::desk::Desk`]); what the screen shows is the core's
//! [`ResetView`]. Card IO runs off the UI thread while the desk state is held, so a
//! key removal is handled right after the operation it interrupted.

use resetdesk::audit::browse::{AuditFilter, AuditPage};
use resetdesk::desk::progress::ExecutionStep;
use resetdesk::desk::view::{AccountCard, AdminView, ResetView};
use resetdesk::desk::{Reply, StartRequest};
use resetdesk::policy::{Channel, StatedDetails};
use resetdesk::secret::Secret;
use resetdesk::tier::AccountTier;
use resetdesk::workflow::Decision;
use serde::{Deserialize, Serialize};
use tauri::AppHandle;
use time::OffsetDateTime;

use crate::customer::{self, CustomerSecret, SecretKind};
use crate::desk::{self, now, DeskState, Failure};

/// What the reset screens show after a command.
#[derive(Debug, Serialize)]
pub struct ResetScreen {
    /// The reset on screen, if any.
    view: Option<ResetView>,
    /// The engine's word on the last action (a cooling-off wait), if any.
    notice: Option<String>,
    /// Notifications that could not be addressed, and similar.
    warnings: Vec<String>,
    /// What the last action did, in order (intent signed, directory updated, ...).
    progress: Vec<ProgressStep>,
    /// Resets waiting out their cooling-off.
    parked: Vec<ParkedReset>,
}

/// One completed execution step, as the screen lists it (live, and after the reply).
#[derive(Debug, Clone, Serialize)]
pub struct ProgressStep {
    step: ExecutionStep,
    label: &'static str,
}

impl From<ExecutionStep> for ProgressStep {
    fn from(step: ExecutionStep) -> Self {
        Self { step, label: step.label() }
    }
}

/// A reset in the cooling-off queue.
#[derive(Debug, Serialize)]
struct ParkedReset {
    request_id: String,
    username: String,
    display_name: String,
    effective_tier: AccountTier,
    #[serde(with = "time::serde::rfc3339")]
    earliest_reset: OffsetDateTime,
    due: bool,
}

/// The intake form. `channel` has no default: the agent must choose.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Intake {
    channel: Channel,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    department: Option<String>,
    #[serde(default)]
    manager: Option<String>,
    #[serde(default)]
    location: Option<String>,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    ticket: Option<String>,
}

/// Run `f` on the desk state off the UI thread.
pub(crate) async fn on_desk<T: Send + 'static>(
    app: AppHandle,
    f: impl FnOnce(&AppHandle, &mut DeskState) -> Result<T, Failure> + Send + 'static,
) -> Result<T, Failure> {
    tauri::async_runtime::spawn_blocking(move || {
        let mut state = desk::desk(&app);
        f(&app, &mut state)
    })
    .await
    .unwrap_or_else(|e| Err(Failure::internal(e)))
}

/// A new reset comes on screen only when the one there is finished.
fn no_open_run(state: &DeskState) -> Result<(), Failure> {
    match &state.run {
        Some(r) if !r.phase().is_final() => {
            Err(Failure::new("another reset is on screen; finish, cancel or park it first"))
        }
        _ => Ok(()),
    }
}

pub(crate) fn fail(e: impl std::fmt::Display) -> Failure {
    Failure::new(e.to_string())
}

fn progress_of(reply: &Reply) -> Vec<ProgressStep> {
    reply.decisions.iter().filter_map(ExecutionStep::of).map(ProgressStep::from).collect()
}

fn notice_of(reply: &Reply) -> Option<String> {
    reply.decisions.iter().find_map(|d| match d {
        Decision::Wait { until, reason } => Some(format!("Cooling-off: {reason}. The reset can go ahead at {until}.")),
        Decision::StepsExpired { reason, .. } => Some(format!("Steps to redo: {reason}")),
        _ => None,
    })
}

/// A one-time code or password the notifier could not send (a demo desk without mail)
/// goes to the customer window, standing in for the requester's registered device.
fn route_in_band(app: &AppHandle, state: &mut DeskState) {
    let Some(run) = state.run.as_mut() else { return };
    if let Some(secret) = run.take_in_band_secret() {
        let kind = match secret.kind {
            resetdesk::desk::SecretKind::OneTimeCode => SecretKind::OneTimeCode,
            resetdesk::desk::SecretKind::TemporaryPassword => SecretKind::TemporaryPassword,
        };
        let for_contact = Some(resetdesk::desk::view::mask_contact(&secret.to));
        state.customer = Some(CustomerSecret { kind, for_contact, secret: secret.secret });
        customer::ready(app);
    }
}

/// The screen as it stands, with `reply`'s notice and progress.
fn screen(state: &mut DeskState, reply: Option<&Reply>) -> Result<ResetScreen, Failure> {
    let at = now();
    let agent = state.agent()?.username().to_owned();
    let core = state.core.as_ref().ok_or_else(|| Failure::new("the desk is not open yet; log in again"))?;
    let view = match &state.run {
        Some(run) => Some(core.reset_view(run, at).map_err(fail)?),
        None => None,
    };
    let parked = state
        .parked
        .iter()
        .filter(|r| r.agent_username() == agent)
        .map(|r| {
            let status = r.status();
            ParkedReset {
                request_id: r.request_id().to_owned(),
                username: r.account().username.clone(),
                display_name: r.account().display_name.clone(),
                effective_tier: status.effective_tier,
                earliest_reset: status.earliest_reset,
                due: status.earliest_reset <= at,
            }
        })
        .collect();
    Ok(ResetScreen {
        view,
        notice: reply.and_then(notice_of),
        warnings: reply.map(|r| r.warnings.clone()).unwrap_or_default(),
        progress: reply.map(progress_of).unwrap_or_default(),
        parked,
    })
}

/// Search the directory (name, username, employee ID, e-mail).
#[tauri::command]
pub async fn search_accounts(app: AppHandle, query: String) -> Result<Vec<AccountCard>, Failure> {
    on_desk(app, move |_, state| {
        state.agent()?;
        let core = state.core.as_ref().ok_or_else(|| Failure::new("the desk is not open yet; log in again"))?;
        core.search_accounts(&query, now()).map_err(fail)
    })
    .await
}

/// Open a reset of `username` with the intake details. A refusal is recorded and shown.
#[tauri::command]
pub async fn start_reset(app: AppHandle, username: String, intake: Intake) -> Result<ResetScreen, Failure> {
    on_desk(app, move |app, state| {
        no_open_run(state)?;
        let request = StartRequest {
            channel: Some(intake.channel),
            stated: StatedDetails {
                department: intake.department,
                manager: intake.manager,
                location: intake.location,
                name: intake.name,
                reason: intake.reason,
                ticket: intake.ticket,
            },
            emergency_reason: None,
        };
        let (session, core) = state.agent_and_core()?;
        let identity = session.identity().clone();
        let signer = session.signer().map_err(fail)?;
        let (run, reply) = core.start_reset(&identity, signer, &username, request, now()).map_err(fail)?;
        state.customer = None;
        customer::clear(app);
        state.run = Some(run);
        route_in_band(app, state);
        screen(state, Some(&reply))
    })
    .await
}

/// One agent action on the reset on screen, as the core's strict JSON (`UiAction`).
/// The message may carry answers or codes: it is a [`Secret`] from here on.
#[tauri::command]
pub async fn reset_action(app: AppHandle, action: String) -> Result<ResetScreen, Failure> {
    let action = Secret::new(action);
    on_desk(app, move |app, state| {
        let reply =
            state.with_run(|core, run, signer| core.apply_ui_secret_json(run, action, signer, now()).map_err(fail))?;
        route_in_band(app, state);
        screen(state, Some(&reply))
    })
    .await
}

/// The reset on screen and the cooling-off queue, as they stand now; a manager's
/// answer that arrived through the approval channel is taken in first.
#[tauri::command]
pub async fn reset_screen(app: AppHandle) -> Result<ResetScreen, Failure> {
    on_desk(app, |_, state| {
        let reply = match state.run {
            Some(_) => {
                state.with_run(|core, run, signer| core.poll_manager_answer(run, signer, now()).map_err(fail))?
            }
            None => None,
        };
        screen(state, reply.as_ref())
    })
    .await
}

/// A second agent co-signs with their own YubiKey in `reader`: they log in there with
/// their PIN (the same token rules as any login), their card signs this reset's
/// approval, and the core checks who they are before the engine accepts it.
#[tauri::command]
pub async fn co_sign(app: AppHandle, reader: String, pin: String) -> Result<ResetScreen, Failure> {
    let pin = Secret::new(pin);
    on_desk(app, move |_app, state| {
        let own_reader = state.agent()?.reader().to_owned();
        let reply = state.with_run(|core, run, signer| {
            core.co_sign_in_reader(run, &own_reader, &reader, pin, signer, now()).map_err(fail)
        })?;
        screen(state, Some(&reply))
    })
    .await
}

/// Send the temporary password to the customer window (the agent's screen never gets it).
#[tauri::command]
pub async fn show_to_customer(app: AppHandle) -> Result<ResetScreen, Failure> {
    on_desk(app, |app, state| {
        state.agent()?;
        let run = state.run.as_mut().ok_or_else(|| Failure::new("no reset is open"))?;
        let secret = run
            .take_handoff_password()
            .ok_or_else(|| Failure::new("there is no temporary password waiting for the customer window"))?;
        state.customer = Some(CustomerSecret { kind: SecretKind::TemporaryPassword, for_contact: None, secret });
        customer::ready(app);
        screen(state, None)
    })
    .await
}

/// Hand-off confirmed or "next customer": clear the customer window and the reset on screen.
#[tauri::command]
pub async fn next_customer(app: AppHandle) -> Result<ResetScreen, Failure> {
    on_desk(app, |app, state| {
        state.agent()?;
        if state.run.as_ref().is_some_and(|r| !r.phase().is_final()) {
            return Err(Failure::new("the reset on screen is not finished; cancel or park it first"));
        }
        state.forget_customer();
        customer::clear(app);
        screen(state, None)
    })
    .await
}

/// The Audit screen: this desk's records, each checked as `resetdesk audit verify`
/// checks it, newest first.
#[tauri::command]
pub async fn audit_page(app: AppHandle, filter: AuditFilter) -> Result<AuditPage, Failure> {
    on_desk(app, move |_, state| {
        let (_, core) = state.agent_and_core()?;
        let mut page = core.audit_page(&filter).map_err(fail)?;
        let sync = crate::upstream::sync_line();
        if sync.configured {
            page.sync = sync.text;
        }
        Ok(page)
    })
    .await
}

/// The Admin screen (admin agents only): the policy in force, enrolled keys, open intents.
#[tauri::command]
pub async fn admin_view(app: AppHandle) -> Result<AdminView, Failure> {
    on_desk(app, |_, state| {
        let (session, core) = state.agent_and_core()?;
        core.admin_view(session.tier()).map_err(fail)
    })
    .await
}

/// The Admin screen's security alerts from the collector (admin agents only), after
/// alert id `after`. The desk is held only to read who is logged in and the collector
/// settings; the fetch (HTTPS, up to its timeout) runs without it.
#[tauri::command]
pub async fn alerts_view(app: AppHandle, after: u64) -> Result<resetdesk::desk::view::AlertsView, Failure> {
    let (tier, collector) = on_desk(app, |_, state| {
        let (session, core) = state.agent_and_core()?;
        Ok((session.tier(), core.config().collector.clone()))
    })
    .await?;
    tauri::async_runtime::spawn_blocking(move || {
        resetdesk::desk::view::AlertsView::fetch(&collector, tier, after).map_err(fail)
    })
    .await
    .unwrap_or_else(|e| Err(Failure::internal(e)))
}

/// Settle the open intents now (each outcome signed by the logged-in admin).
#[tauri::command]
pub async fn reconcile_now(app: AppHandle) -> Result<Vec<String>, Failure> {
    on_desk(app, |_, state| {
        let (session, core) = state.agent_and_core()?;
        core.admin_view(session.tier()).map_err(fail)?;
        let identity = session.identity().clone();
        let signer = session.signer().map_err(fail)?;
        let found = core.reconcile(&identity, signer, now()).map_err(fail)?;
        Ok(found
            .iter()
            .map(|r| {
                format!("Reset {} of {}: {}", r.request_id, r.target, resetdesk::desk::reconcile::note(&r.finding))
            })
            .collect())
    })
    .await
}

/// What the export wrote, for the Audit screen.
#[derive(Debug, Serialize)]
pub struct Exported {
    folder: String,
    records: u64,
    certificates: usize,
}

/// Export the log (JSON Lines + PEM certificates, checkable with openssl) into a new
/// folder under the data directory.
#[tauri::command]
pub async fn audit_export(app: AppHandle) -> Result<Exported, Failure> {
    on_desk(app, |_, state| {
        let (_, core) = state.agent_and_core()?;
        let (folder, summary) = core.audit_export(now()).map_err(fail)?;
        Ok(Exported {
            folder: folder.display().to_string(),
            records: summary.records,
            certificates: summary.certificates,
        })
    })
    .await
}

/// Sign the outcome record that could not be signed after the directory write (the
/// key was pulled, a touch missed), then finish the hand-off.
#[tauri::command]
pub async fn retry_outcome(app: AppHandle) -> Result<ResetScreen, Failure> {
    on_desk(app, |app, state| {
        let reply = state.with_run(|core, run, signer| core.retry_outcome(run, signer, now()).map_err(fail))?;
        route_in_band(app, state);
        screen(state, Some(&reply))
    })
    .await
}

/// Park the reset on screen in the cooling-off queue, to serve others meanwhile.
#[tauri::command]
pub async fn park_reset(app: AppHandle) -> Result<ResetScreen, Failure> {
    on_desk(app, |app, state| {
        // Signed by the agent's card and kept on disk: it survives a restart.
        state.with_run(|core, run, signer| core.park(run, signer, now()).map_err(fail))?;
        let run = state.run.take().ok_or_else(|| Failure::new("no reset is open"))?;
        state.parked.retain(|r| r.request_id() != run.request_id());
        state.parked.push(run);
        state.customer = None;
        customer::clear(app);
        screen(state, None)
    })
    .await
}

/// Take a parked reset back on screen.
#[tauri::command]
pub async fn resume_reset(app: AppHandle, request_id: String) -> Result<ResetScreen, Failure> {
    on_desk(app, move |_, state| {
        no_open_run(state)?;
        let agent = state.agent()?.username().to_owned();
        let at = state
            .parked
            .iter()
            .position(|r| r.request_id() == request_id && r.agent_username() == agent)
            .ok_or_else(|| Failure::new("no such parked reset of yours"))?;
        let core = state.core.as_ref().ok_or_else(|| Failure::new("the desk is not open yet; log in again"))?;
        // Off the disk first: a run back on screen must never come back again later.
        core.unpark(&request_id).map_err(fail)?;
        let run = state.parked.remove(at);
        state.run = Some(run);
        screen(state, None)
    })
    .await
}
