//! An auditor's online check (`resetdesk audit verify --collector URL`): the
//! collector's current checkpoint must extend the checkpoint the desk holds and the
//! checkpoint of every stored receipt. Each receipt proves its record is in its own
//! checkpoint's tree; the consistency proof from that tree to the current one proves
//! the record is still in the log the collector shows everyone now. So must every
//! checkpoint the desk's own signed heartbeats state it was shown
//! (`collector_checkpoint`): a collector that showed this desk another tree than the
//! one it shows the auditor is caught by the desk's records, not only by its receipts.

use std::collections::BTreeMap;

use serde::Serialize;

use super::client::CollectorClient;
use super::driver::{prove_consistent, SyncError};
use crate::audit::event::parse_payload;
use crate::audit::record::Record;
use crate::audit::store::Store;
use crate::audit::{verify_signed_checkpoint, CollectorKeys, LogCheckpoint, Receipt};

/// What the online check established.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OnlineCheck {
    /// The collector's tree size now.
    pub collector_size: u64,
    /// The largest checkpoint the desk had witnessed.
    pub held_size: Option<u64>,
    /// Receipts whose records are shown to be in the current tree.
    pub receipts_included: usize,
    /// Distinct earlier checkpoints proved to be prefixes of the current tree.
    pub checkpoints_proved: usize,
    /// Heartbeats that state a checkpoint of this collector (each proved above).
    pub heartbeat_checkpoints: usize,
}

/// The checkpoints of `origin` the log's heartbeats state, by size and root.
fn heartbeat_checkpoints(store: &Store, origin: &str) -> Result<Vec<LogCheckpoint>, SyncError> {
    let mut found = Vec::new();
    store
        .for_each(|stored| {
            let Ok(record) = Record::decode(&stored.record) else { return Ok::<(), ()>(()) };
            if !record.event_type.is_heartbeat() {
                return Ok(());
            }
            let Ok(parsed) = parse_payload(record.event_type, &record.payload) else { return Ok(()) };
            if let Some(cp) = parsed.collector_checkpoint.filter(|c| c.origin == origin) {
                found.push(LogCheckpoint {
                    origin: cp.origin,
                    tree_size: cp.tree_size,
                    root_hash: cp.root_hash,
                    collector_key: String::new(),
                });
            }
            Ok(())
        })?
        .ok();
    Ok(found)
}

/// Run the check over `store`'s witnessed checkpoint and receipts.
pub fn check_against_collector(
    store: &Store,
    client: &CollectorClient,
    keys: &CollectorKeys,
) -> Result<OnlineCheck, SyncError> {
    let current = verify_signed_checkpoint(&client.checkpoint()?, keys).map_err(SyncError::BadCheckpoint)?;
    let mut earlier: BTreeMap<(u64, [u8; 32]), LogCheckpoint> = BTreeMap::new();
    let held = match store.latest_checkpoint_note()? {
        Some(note) => Some(verify_signed_checkpoint(&note, keys).map_err(SyncError::HeldCheckpoint)?),
        None => None,
    };
    let held_size = held.as_ref().map(|h| h.tree_size);
    if let Some(h) = held {
        earlier.insert((h.tree_size, h.root_hash), h);
    }
    let mut receipts_included = 0;
    for receipt in store.receipts()? {
        let Receipt::Inclusion(r) = &receipt else { continue };
        let cp = r.verify(keys).map_err(|why| SyncError::BadReceipt { seq: r.seq, why })?;
        earlier.insert((cp.tree_size, cp.root_hash), cp);
        receipts_included += 1;
    }
    let stated = heartbeat_checkpoints(store, &current.origin)?;
    let heartbeat_checkpoints = stated.len();
    for cp in stated {
        earlier.entry((cp.tree_size, cp.root_hash)).or_insert(cp);
    }
    for cp in earlier.values() {
        prove_consistent(client, cp, &current)?;
    }
    Ok(OnlineCheck {
        collector_size: current.tree_size,
        held_size,
        receipts_included,
        checkpoints_proved: earlier.len(),
        heartbeat_checkpoints,
    })
}
