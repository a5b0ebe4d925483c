//! Notifications leave the desk on a thread of their own: the core's outbox sender
//! ([`resetdesk::desk::sender`]) drains the outbox every few seconds into the
//! configured delivery (SMTP, or `.eml` files on a demo desk) and the ticketing webhook
//! (`[ticketing]`). A reset only ever queues a row, so a slow or absent mail or
//! ticketing server never blocks or undoes one.
//!
//! The thread ends with the process. A message sent in the instant before the process
//! ends, but not yet marked delivered, is sent again by the next run (at least once).

use std::sync::atomic::AtomicBool;
use std::time::Duration;

use resetdesk::config::Config;
use resetdesk::desk::sender::OutboxSender;

/// How often the outbox is looked at.
const POLL: Duration = Duration::from_secs(3);

/// Never set: the sender runs for the life of the app.
static STOP: AtomicBool = AtomicBool::new(false);

/// Start the sender for `config`'s delivery, if it has one. The outbox is opened on the
/// sender's own thread, so start-up does not wait for it.
pub fn spawn_outbox_sender(config: &Config) {
    let config = config.clone();
    let spawned =
        std::thread::Builder::new().name("outbox-sender".into()).spawn(move || {
            match OutboxSender::from_config(&config) {
                Ok(Some(mut sender)) => sender.run(POLL, &STOP),
                Ok(None) => tracing::info!(
                    "no mail delivery ([smtp]) or ticketing webhook ([ticketing]) configured; notifications wait in the outbox"
                ),
                Err(e) => tracing::error!("notifications will not be sent: {e}"),
            }
        });
    if let Err(e) = spawned {
        tracing::error!("the outbox sender did not start ({e}); notifications wait in the outbox");
    }
}
