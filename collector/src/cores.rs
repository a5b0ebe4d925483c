//! The machine's cores, shared between the sequencer and the prechecks.
//!
//! Ingest has one serial part, the sequencer (under the collector's lock: in-order
//! decisions, the store's transaction, the checkpoint), and a parallel part, the
//! prechecks of other requests (signature checks, one piece of 16 records at a
//! time). Left to the kernel, two requests' precheck threads and the sequencer make
//! more runnable threads than cores, and the sequencer, which every request waits
//! for, gets a fraction of one. [`Cores`] hands out one slot per core: a precheck
//! piece runs holding a slot, and the sequencer holds one for as long as it works
//! and is served before any piece waiting. So the sequencer has a core to itself,
//! and the other cores are kept busy with prechecks.
//!
//! Invariants:
//! - at most `slots` pieces and sequencer turns run at once;
//! - a piece waits only while no slot is free or a sequencer waits, and is woken
//!   whenever either stops being so;
//! - a sequencer waits at most for one piece to finish (pieces are short and never
//!   wait for anything while holding a slot), and pieces waiting let it go first;
//! - nothing holding a slot waits for the collector's lock (the sequencer takes its
//!   slot after the lock), so slots cannot deadlock with it.

use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

/// Slots for work on the machine's cores.
#[derive(Debug)]
pub struct Cores {
    state: Mutex<State>,
    freed: Condvar,
}

#[derive(Debug)]
struct State {
    free: usize,
    /// Sequencers waiting for a slot: pieces wait while there are any.
    sequencers_waiting: usize,
}

/// A slot held; given back when dropped.
#[must_use = "the slot is given back when this is dropped"]
pub struct Slot<'a> {
    cores: &'a Cores,
}

impl Cores {
    /// `slots` slots (at least one).
    pub fn new(slots: usize) -> Self {
        Self { state: Mutex::new(State { free: slots.max(1), sequencers_waiting: 0 }), freed: Condvar::new() }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is two counters updated in one step each: still whole after a panic.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A slot for the sequencer: served before waiting pieces.
    pub fn sequencer(&self) -> Slot<'_> {
        let mut state = self.lock();
        state.sequencers_waiting += 1;
        while state.free == 0 {
            state = self.freed.wait(state).unwrap_or_else(PoisonError::into_inner);
        }
        state.sequencers_waiting -= 1;
        state.free -= 1;
        let others_may_go = state.free > 0 && state.sequencers_waiting == 0;
        drop(state);
        if others_may_go {
            // Pieces that waited only because this sequencer did may take what is left.
            self.freed.notify_all();
        }
        Slot { cores: self }
    }

    /// A slot for one piece of prechecks: when none is free and no sequencer waits.
    pub fn piece(&self) -> Slot<'_> {
        let mut state = self.lock();
        while state.free == 0 || state.sequencers_waiting > 0 {
            state = self.freed.wait(state).unwrap_or_else(PoisonError::into_inner);
        }
        state.free -= 1;
        Slot { cores: self }
    }

    /// Run `work` holding a slot, as a piece.
    pub fn run<R>(&self, work: impl FnOnce() -> R) -> R {
        let _slot = self.piece();
        work()
    }

    /// [`Cores::run`] as the pace of [`resetdesk::audit::LogVerifier`]'s prechecks.
    pub fn run_piece(&self, piece: &mut dyn FnMut()) {
        self.run(piece)
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let mut state = self.cores.lock();
        state.free += 1;
        drop(state);
        // Both kinds wait on one condition: all wake and the sequencer wins.
        self.cores.freed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn no_more_pieces_run_at_once_than_there_are_slots() {
        let cores = Arc::new(Cores::new(2));
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..6)
            .map(|_| {
                let (cores, running, most) = (Arc::clone(&cores), Arc::clone(&running), Arc::clone(&most));
                std::thread::spawn(move || {
                    for _ in 0..20 {
                        cores.run_piece(&mut || {
                            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                            most.fetch_max(now, Ordering::SeqCst);
                            std::thread::sleep(Duration::from_micros(200));
                            running.fetch_sub(1, Ordering::SeqCst);
                        });
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(most.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn a_waiting_sequencer_goes_before_waiting_pieces() {
        let cores = Arc::new(Cores::new(1));
        let held = cores.piece();
        // A piece waiting first, then the sequencer: the sequencer gets the slot.
        let order = Arc::new(Mutex::new(Vec::new()));
        let piece = {
            let (cores, order) = (Arc::clone(&cores), Arc::clone(&order));
            std::thread::spawn(move || cores.run_piece(&mut || order.lock().unwrap().push("piece")))
        };
        std::thread::sleep(Duration::from_millis(50));
        let sequencer = {
            let (cores, order) = (Arc::clone(&cores), Arc::clone(&order));
            std::thread::spawn(move || {
                let _slot = cores.sequencer();
                order.lock().unwrap().push("sequencer");
                std::thread::sleep(Duration::from_millis(20));
            })
        };
        // Until the sequencer is seen waiting, the piece could still take the slot.
        while cores.lock().sequencers_waiting == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        drop(held);
        sequencer.join().unwrap();
        piece.join().unwrap();
        assert_eq!(*order.lock().unwrap(), vec!["sequencer", "piece"]);
    }

    #[test]
    fn pieces_held_back_by_a_sequencer_take_the_slot_it_left() {
        // Two slots taken, a sequencer waiting, then a piece: when both slots come back,
        // the sequencer takes one and the piece must get the other while the sequencer
        // still holds its own (the piece may have gone back to sleep only because the
        // sequencer was waiting).
        for _ in 0..200 {
            let cores = Arc::new(Cores::new(2));
            let (a, b) = (cores.piece(), cores.piece());
            let (release, released) = std::sync::mpsc::channel::<()>();
            let sequencer = {
                let cores = Arc::clone(&cores);
                std::thread::spawn(move || {
                    let _slot = cores.sequencer();
                    released.recv().ok();
                })
            };
            while cores.lock().sequencers_waiting == 0 {
                std::thread::yield_now();
            }
            let (ran, done) = std::sync::mpsc::channel();
            let piece = {
                let cores = Arc::clone(&cores);
                std::thread::spawn(move || cores.run_piece(&mut || ran.send(()).unwrap()))
            };
            drop(a);
            drop(b);
            assert!(
                done.recv_timeout(Duration::from_secs(5)).is_ok(),
                "a piece waited while a slot was free and no sequencer waited"
            );
            release.send(()).unwrap();
            sequencer.join().unwrap();
            piece.join().unwrap();
        }
    }
}
