//! Anomaly rules evaluated at ingest on the records the collector verified and
//! stored ([`rules`], configured by `[anomaly]`: [`config`]), over what each record
//! tells them ([`facts`]). Their memory lives in the collector's database behind
//! [`rules::AnomalyState`] (SQLite and PostgreSQL, in [`crate::alerts`]), so several
//! instances on one database share it. Alerts go to the alert rows with the records
//! they stand on ([`crate::alerts::AlertStore`]).
//!
//! [`AnomalyWatch`] is the ingest hook: [`crate::ingest::Collector`] hands it each
//! batch once stored, as observations its prechecks made outside the lock
//! ([`facts::observe_parsed`]). A rule that cannot be evaluated (the database failing) is
//! logged and never fails the batch, which is stored already.

pub mod config;
pub mod facts;
pub mod rules;

use crate::alerts::{raise, AlertStore};
use facts::Observation;
use rules::{AnomalyState, Rules};

/// Told of every batch ingest stored: the observations of its new records (verified,
/// in seq order).
pub trait Watcher<S>: Send {
    fn stored(&mut self, store: &mut S, observations: &[Observation]);
}

/// The anomaly rules as an ingest [`Watcher`].
pub struct AnomalyWatch {
    rules: Rules,
}

impl AnomalyWatch {
    pub fn new(config: config::AnomalyConfig) -> Self {
        Self { rules: Rules::new(config) }
    }
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

impl<S: AnomalyState + AlertStore + Send> Watcher<S> for AnomalyWatch {
    fn stored(&mut self, store: &mut S, observations: &[Observation]) {
        let observed: Vec<&Observation> =
            observations.iter().filter(|obs| obs.what != facts::Observed::Other).collect();
        if observed.is_empty() {
            return;
        }
        if let Err(e) = store.begin_batch() {
            tracing::error!("the anomaly rules could not begin their work on a batch: {e}");
        }
        for obs in observed {
            let raised = self
                .rules
                .observe(store, obs)
                .and_then(|alerts| alerts.into_iter().try_for_each(|a| raise(store, &a, now_ms()).map(drop)));
            if let Err(e) = raised {
                tracing::error!(
                    log_id = hex::encode(obs.record.log_id),
                    seq = obs.record.seq,
                    "the anomaly rules could not run on a stored record: {e}"
                );
            }
        }
        if let Err(e) = store.end_batch() {
            tracing::error!("the anomaly rules could not keep their work on a batch: {e}");
        }
    }
}

/// One pass of the heartbeat watch at `now_ms`: an alert for each desk gone silent.
pub fn check_heartbeats<S: AnomalyState + AlertStore>(
    rules: &Rules,
    store: &mut S,
    now_ms: u64,
) -> Result<usize, crate::store::StoreError> {
    let alerts = rules.silent_desks(store, now_ms)?;
    for a in &alerts {
        raise(store, a, now_ms)?;
    }
    Ok(alerts.len())
}

/// The heartbeat watch of `serve`: every `check_every_seconds`, an alert for each
/// desk whose last presence record is older than allowed.
pub async fn watch_heartbeats<S: crate::store::LogStore + AnomalyState + AlertStore + 'static>(
    state: std::sync::Arc<crate::api::AppState<S>>,
    config: config::AnomalyConfig,
) {
    let every = std::time::Duration::from_secs(config.heartbeat.check_every_seconds.max(1));
    let rules = Rules::new(config);
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        let rules = rules.clone();
        match crate::api::with(std::sync::Arc::clone(&state), move |c| {
            check_heartbeats(&rules, c.store_mut(), now_ms())
        })
        .await
        {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::error!("heartbeat watch: {e}"),
            Err(e) => tracing::error!("heartbeat watch: {}", e.0),
        }
    }
}
