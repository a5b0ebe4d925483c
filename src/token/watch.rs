//! Card insertion/removal as events, from PC/SC status changes.
//!
//! [`CardWatcher::next_events`] blocks in `SCardGetStatusChange` until a reader's state
//! changes (or the timeout passes, or [`WatchCanceller::cancel`] is called from another
//! thread) and returns [`CardEvent`]s. Waits are cut in slices of [`WAIT_SLICE`] so that
//! a cancel can never be lost between two waits. The shell runs it on a thread and feeds the
//! events to the session ([`crate::session`]). The translation from reader states to
//! events ([`diff`]) is pure and tested without a reader.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::card::map_pcsc;
use super::TokenError;

/// A change in the readers.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum CardEvent {
    Inserted { reader: String },
    Removed { reader: String },
}

/// What is known about one reader: card present, and pcscd's insertion counter (which
/// tells a fast remove + reinsert apart from "still the same card").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReaderSnapshot {
    pub present: bool,
    pub event_count: u32,
}

/// Events that turn `before` into `after`. A reader that disappeared with a card in it
/// is a removal; a reader that appeared with a card is an insertion; a changed event
/// counter with a card present both before and after is a removal then an insertion.
pub fn diff(before: &BTreeMap<String, ReaderSnapshot>, after: &BTreeMap<String, ReaderSnapshot>) -> Vec<CardEvent> {
    let mut out = Vec::new();
    for (reader, b) in before {
        let a = after.get(reader);
        match a {
            None if b.present => out.push(CardEvent::Removed { reader: reader.clone() }),
            None => {}
            Some(a) => match (b.present, a.present) {
                (true, false) => out.push(CardEvent::Removed { reader: reader.clone() }),
                (false, true) => out.push(CardEvent::Inserted { reader: reader.clone() }),
                (true, true) if a.event_count != b.event_count => {
                    out.push(CardEvent::Removed { reader: reader.clone() });
                    out.push(CardEvent::Inserted { reader: reader.clone() });
                }
                _ => {}
            },
        }
    }
    for (reader, a) in after {
        if !before.contains_key(reader) && a.present {
            out.push(CardEvent::Inserted { reader: reader.clone() });
        }
    }
    out
}

/// Whether the card in a reader may have left since an earlier look (the race check of
/// [`crate::session_start`]).
pub trait RemovalMarks {
    /// A value that changes whenever the card in `reader` is removed (also when it is
    /// put back): a shell's count of its watcher's removals, or pcscd's own reader
    /// state ([`CardWatcher`]'s implementation, for a shell without a watcher thread).
    fn mark(&self, reader: &str) -> Result<u64, TokenError>;
}

/// Stops a [`CardWatcher`] from another thread: its current or next wait returns
/// `Ok(None)` within [`WAIT_SLICE`], even if the cancel arrives between two waits.
#[derive(Clone)]
pub struct WatchCanceller {
    ctx: pcsc::Context,
    cancelled: Arc<AtomicBool>,
}

impl WatchCanceller {
    /// Make the watcher's current (or next) wait return `Ok(None)`.
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::SeqCst);
        // Wakes a wait in progress at once; a wait not yet started sees the flag.
        let _ = self.ctx.cancel();
    }
}

/// Longest single PC/SC wait: a cancel that races with the start of a wait is still
/// seen within this time. Card events wake the wait immediately regardless.
pub const WAIT_SLICE: Duration = Duration::from_millis(250);

/// A blocking watcher of PC/SC readers.
pub struct CardWatcher {
    ctx: pcsc::Context,
    known: BTreeMap<String, ReaderSnapshot>,
    cancelled: Arc<AtomicBool>,
}

/// The PnP pseudo-reader: its state changes when a reader is added or removed.
fn pnp() -> CString {
    CString::from(pcsc::PNP_NOTIFICATION())
}

impl CardWatcher {
    /// Connect to pcscd and take a first snapshot (no events for cards already present:
    /// see [`CardWatcher::present`]).
    pub fn new() -> Result<Self, TokenError> {
        let ctx = pcsc::Context::establish(pcsc::Scope::User).map_err(map_pcsc)?;
        let mut w = Self { ctx, known: BTreeMap::new(), cancelled: Arc::new(AtomicBool::new(false)) };
        w.known = w.snapshot()?.0;
        Ok(w)
    }

    /// A handle to cancel a blocked wait.
    pub fn canceller(&self) -> WatchCanceller {
        WatchCanceller { ctx: self.ctx.clone(), cancelled: Arc::clone(&self.cancelled) }
    }

    /// Readers holding a card at the last snapshot.
    pub fn present(&self) -> Vec<String> {
        self.known.iter().filter(|(_, s)| s.present).map(|(r, _)| r.clone()).collect()
    }

    /// Current state of every reader (without waiting) and the PC/SC states used to
    /// wait for the next change (the readers plus the PnP pseudo-reader, last).
    fn snapshot(&self) -> Result<(BTreeMap<String, ReaderSnapshot>, Vec<pcsc::ReaderState>), TokenError> {
        let names = match self.ctx.list_readers_owned() {
            Ok(n) => n,
            Err(pcsc::Error::NoReadersAvailable) => Vec::new(),
            Err(e) => return Err(map_pcsc(e)),
        };
        let mut states: Vec<pcsc::ReaderState> =
            names.into_iter().map(|n| pcsc::ReaderState::new(n, pcsc::State::UNAWARE)).collect();
        states.push(pcsc::ReaderState::new(pnp(), pcsc::State::UNAWARE));
        match self.ctx.get_status_change(Duration::ZERO, &mut states) {
            Ok(()) | Err(pcsc::Error::Timeout) => {}
            Err(e) => return Err(map_pcsc(e)),
        }
        let n = states.len() - 1;
        let snap = states[..n].iter().map(|s| (s.name().to_string_lossy().into_owned(), to_snapshot(s))).collect();
        Ok((snap, states))
    }

    /// Block until a reader changes, `timeout` passes (`Ok(Some(vec![]))`), or the
    /// watch is cancelled (`Ok(None)`). `None` timeout waits until a change or a cancel.
    /// A change that happened since the previous call is returned at once.
    pub fn next_events(&mut self, timeout: Option<Duration>) -> Result<Option<Vec<CardEvent>>, TokenError> {
        if self.cancelled.load(Ordering::SeqCst) {
            return Ok(None);
        }
        let (now, mut states) = self.snapshot()?;
        let events = diff(&self.known, &now);
        self.known = now;
        if !events.is_empty() {
            return Ok(Some(events));
        }
        for s in states.iter_mut() {
            s.sync_current_state();
        }
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            if self.cancelled.load(Ordering::SeqCst) {
                return Ok(None);
            }
            let slice = match deadline {
                Some(d) => d.saturating_duration_since(Instant::now()).min(WAIT_SLICE),
                None => WAIT_SLICE,
            };
            match self.ctx.get_status_change(slice, &mut states) {
                Ok(()) => break,
                Err(pcsc::Error::Timeout) => {
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        return Ok(Some(Vec::new()));
                    }
                }
                Err(pcsc::Error::Cancelled) => return Ok(None),
                // A reader vanished while we waited: the new snapshot below tells what happened.
                Err(pcsc::Error::UnknownReader) | Err(pcsc::Error::ReaderUnavailable) => break,
                Err(e) => return Err(map_pcsc(e)),
            }
        }
        let (after, _) = self.snapshot()?;
        let events = diff(&self.known, &after);
        self.known = after;
        Ok(Some(events))
    }

    /// Run until cancelled, calling `on_event` for each event. Errors (pcscd stopped)
    /// end the loop and are returned.
    pub fn run(mut self, mut on_event: impl FnMut(CardEvent)) -> Result<(), TokenError> {
        loop {
            match self.next_events(None)? {
                None => return Ok(()),
                Some(events) => events.into_iter().for_each(&mut on_event),
            }
        }
    }
}

impl RemovalMarks for CardWatcher {
    /// pcscd's event counter for the reader (it counts every insertion and removal)
    /// with whether a card is present; a reader that is gone marks as `u64::MAX`.
    fn mark(&self, reader: &str) -> Result<u64, TokenError> {
        let (now, _) = self.snapshot()?;
        Ok(now.get(reader).map_or(u64::MAX, |s| (u64::from(s.event_count) << 1) | u64::from(s.present)))
    }
}

fn to_snapshot(s: &pcsc::ReaderState) -> ReaderSnapshot {
    let ev = s.event_state();
    ReaderSnapshot { present: ev.contains(pcsc::State::PRESENT), event_count: s.event_count() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(items: &[(&str, bool, u32)]) -> BTreeMap<String, ReaderSnapshot> {
        items.iter().map(|(r, p, c)| (r.to_string(), ReaderSnapshot { present: *p, event_count: *c })).collect()
    }

    fn ins(r: &str) -> CardEvent {
        CardEvent::Inserted { reader: r.into() }
    }
    fn rem(r: &str) -> CardEvent {
        CardEvent::Removed { reader: r.into() }
    }

    #[test]
    fn presence_changes_are_insertions_and_removals() {
        let before = m(&[("A", true, 1), ("B", false, 0)]);
        let after = m(&[("A", false, 2), ("B", true, 1)]);
        assert_eq!(diff(&before, &after), vec![rem("A"), ins("B")]);
    }

    #[test]
    fn fast_reinsertion_is_a_removal_then_an_insertion() {
        assert_eq!(diff(&m(&[("A", true, 1)]), &m(&[("A", true, 3)])), vec![rem("A"), ins("A")]);
        assert_eq!(diff(&m(&[("A", true, 1)]), &m(&[("A", true, 1)])), vec![]);
    }

    #[test]
    fn reader_unplugged_with_a_card_is_a_removal() {
        assert_eq!(diff(&m(&[("A", true, 1), ("B", false, 0)]), &m(&[])), vec![rem("A")]);
        assert_eq!(diff(&m(&[]), &m(&[("C", true, 0), ("D", false, 0)])), vec![ins("C")]);
    }
}
