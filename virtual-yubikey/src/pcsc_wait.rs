//! Waiting for pcscd to see a vpcd reader as holding a card, or as empty: blocking on
//! PC/SC status-change events with a deadline, never polling with sleeps.

use std::ffi::CString;
use std::time::{Duration, Instant};

use crate::Error;

/// Watches one reader through its own PC/SC context.
pub(crate) struct ReaderWatch {
    ctx: pcsc::Context,
    reader: &'static str,
    state: pcsc::ReaderState,
}

impl ReaderWatch {
    /// Connect to pcscd and learn the reader's current state.
    pub(crate) fn new(reader: &'static str) -> Result<Self, Error> {
        let ctx = pcsc::Context::establish(pcsc::Scope::User).map_err(|source| Error::Pcsc { reader, source })?;
        let name = CString::new(reader).map_err(|_| Error::ReaderMissing(reader))?;
        let mut watch = ReaderWatch { ctx, reader, state: pcsc::ReaderState::new(name, pcsc::State::UNAWARE) };
        // With UNAWARE as the known state, pcscd answers at once with the real one.
        watch.next_change(Duration::ZERO)?;
        Ok(watch)
    }

    /// Whether pcscd currently reports a card in the reader.
    pub(crate) fn card_present(&self) -> bool {
        self.state.event_state().contains(pcsc::State::PRESENT)
    }

    /// Block until the reader's card presence is `present`, or `timeout` has passed.
    pub(crate) fn wait_for(&mut self, present: bool, timeout: Duration) -> Result<(), Error> {
        let deadline = Instant::now() + timeout;
        while self.card_present() != present {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_change(left) {
                Ok(()) => {}
                Err(Error::Pcsc { source: pcsc::Error::Timeout, .. }) => {
                    return Err(Error::Timeout {
                        reader: self.reader,
                        expected: if present { "holding a card" } else { "empty" },
                        timeout,
                    })
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Wait (at most `timeout`) for the reader's state to differ from the last one seen.
    fn next_change(&mut self, timeout: Duration) -> Result<(), Error> {
        self.state.sync_current_state();
        let reader = self.reader;
        self.ctx
            .get_status_change(timeout, std::slice::from_mut(&mut self.state))
            .map_err(|source| Error::Pcsc { reader, source })?;
        let events = self.state.event_state();
        if events.intersects(pcsc::State::UNKNOWN | pcsc::State::IGNORE) {
            return Err(Error::ReaderMissing(reader));
        }
        Ok(())
    }
}
