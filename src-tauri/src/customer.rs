//! The customer-facing window (`customer`): shows the temporary password — or, on a
//! demo desk without mail, a one-time code standing in for the requester's registered
//! device — in large type to the person at the desk, never on the agent's screen.
//!
//! The window learns that something waits through a channel it opens with
//! `customer_subscribe` (signals carry no secret). It cannot listen to the app's events
//! at all: its capability has no event permission, because a listener for any target
//! hears every window's events (the agent's session, readers, reset progress). It then
//! takes the secret with `customer_take`. Both commands are granted by the customer
//! window's capability only, check the calling window's label, and the secret is handed
//! out once. The window
//! clears itself after [`SHOW_SECONDS`], and is told to clear when the agent confirms
//! the hand-off, on "next customer" and on every lock.

use resetdesk::secret::Secret;
use serde::{Serialize, Serializer};
use std::sync::Mutex;

use tauri::ipc::Channel;
use tauri::{AppHandle, Manager};

use crate::desk::{self, Failure};

/// Label of the customer window (`tauri.conf.json`, `capabilities/customer.json`).
pub const WINDOW: &str = "customer";
/// How long the customer window shows a secret before clearing itself.
pub const SHOW_SECONDS: u32 = 120;

/// What waits for the customer window.
pub struct CustomerSecret {
    pub kind: SecretKind,
    /// Masked destination, for a one-time code ("would arrive at j•••h@example.com").
    pub for_contact: Option<String>,
    pub secret: Secret,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum SecretKind {
    TemporaryPassword,
    OneTimeCode,
}

#[derive(Clone, Serialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum Signal {
    /// Something waits: take it with `customer_take`.
    Ready,
    /// Clear the screen.
    Clear,
}

/// The customer window's signal channel, once it subscribed.
#[derive(Default)]
pub struct Subscription(Mutex<Option<Channel<Signal>>>);

fn signal(app: &AppHandle, s: Signal) {
    let subscription = app.state::<Subscription>();
    let guard = subscription.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    match guard.as_ref() {
        Some(channel) => {
            if let Err(e) = channel.send(s) {
                tracing::warn!("could not signal the customer window: {e}");
            }
        }
        None => tracing::warn!("the customer window has not subscribed yet; it takes what waits when it does"),
    }
}

/// The customer window opens its signal channel (at start, and again after a reload).
#[tauri::command(async)]
pub fn customer_subscribe(
    window: tauri::WebviewWindow,
    app: AppHandle,
    on_signal: Channel<Signal>,
) -> Result<(), Failure> {
    if window.label() != WINDOW {
        tracing::warn!(window = window.label(), "a window other than the customer window asked for its signals");
        return Err(Failure::new("only the customer window may subscribe to its signals"));
    }
    let subscription = app.state::<Subscription>();
    *subscription.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(on_signal);
    Ok(())
}

/// Tell the customer window a secret waits. A closed window is opened again first: it
/// takes the secret when it starts (the secret stays in the desk state until taken).
pub fn ready(app: &AppHandle) {
    ensure(app);
    signal(app, Signal::Ready);
}

/// Tell the customer window to clear (lock, hand-off confirmed, next customer).
pub fn clear(app: &AppHandle) {
    signal(app, Signal::Clear);
}

/// The secret as the customer window receives it: serialised straight from the
/// [`Secret`], no plain copy kept here.
pub struct Shown {
    inner: CustomerSecret,
}

impl Serialize for Shown {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("Shown", 4)?;
        st.serialize_field("kind", &self.inner.kind)?;
        st.serialize_field("for_contact", &self.inner.for_contact)?;
        st.serialize_field("secret", self.inner.secret.expose())?;
        st.serialize_field("clear_after_seconds", &SHOW_SECONDS)?;
        st.end()
    }
}

/// The customer window takes what waits for it, once. Any other window is refused,
/// whatever its capability says.
#[tauri::command(async)]
pub fn customer_take(window: tauri::WebviewWindow, app: AppHandle) -> Result<Option<Shown>, Failure> {
    if window.label() != WINDOW {
        tracing::warn!(window = window.label(), "a window other than the customer window asked for the secret");
        return Err(Failure::new("only the customer window may show this"));
    }
    Ok(desk::desk(&app).customer.take().map(|inner| Shown { inner }))
}

/// Open the customer window at the first login (nobody can be served before one, and
/// an idle lock screen then costs one web view, not two) and put it where the customer
/// sees it: on a second monitor when there is one, protected from screen capture
/// where the platform allows. Later calls do nothing.
pub fn ensure(app: &AppHandle) {
    if app.get_webview_window(WINDOW).is_some() {
        return;
    }
    let built = tauri::WebviewWindowBuilder::new(app, WINDOW, tauri::WebviewUrl::App("customer.html".into()))
        .title("ResetDesk — for the customer")
        .inner_size(900.0, 520.0)
        .min_inner_size(480.0, 260.0)
        .focused(false)
        .content_protected(true)
        .build();
    let window = match built {
        Ok(w) => w,
        Err(e) => {
            tracing::error!(
                "the customer window could not be opened: {e}; passwords cannot be handed over at the desk"
            );
            return;
        }
    };
    crate::rendering::software_only(&window);
    let main_monitor = app.get_webview_window("main").and_then(|w| w.current_monitor().ok().flatten());
    let monitors = window.available_monitors().unwrap_or_default();
    let other = monitors.iter().find(|m| main_monitor.as_ref().is_none_or(|main| main.position() != m.position()));
    if let (Some(other), true) = (other, monitors.len() > 1) {
        if let Err(e) = window.set_position(*other.position()) {
            tracing::warn!("could not move the customer window to the second monitor: {e}");
        }
        let _ = window.maximize();
    }
}
