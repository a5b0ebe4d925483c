//! Starting an agent's session, in one order for every shell (the desk app, the CLI):
//!
//! 1. note the reader's removal mark ([`RemovalMarks`]);
//! 2. log in ([`crate::login::login`]: PIN, certificates, challenge, directory,
//!    registry);
//! 3. if the key left the reader meanwhile, refuse: the PIN was checked on a card
//!    that may not be the one in the reader now (the session is dropped, its PIN wiped);
//! 4. sign and write the login record ([`crate::presence::record_login`]), stating how
//!    the previous session ended if nobody could sign that; no record, no session;
//! 5. if the key left while the record was being signed, refuse, and hand back the
//!    session end for the next login record to state.
//!
//! What is *not* here is the shell's own state: whether another agent is logged in,
//! and where it keeps the audit log and the unsigned end between logins.

use crate::audit::{Appended, AuditLog};
use crate::clock::Clock;
use crate::config::Config;
use crate::directory::Directory;
use crate::login::{AgentSession, LoginError};
use crate::presence::{record_login, PresenceError, SessionEnd};
use crate::secret::Secret;
use crate::session::LockReason;
use crate::token::watch::RemovalMarks;
use crate::token::TokenError;

/// A session that started: logged in, and its login record written.
#[derive(Debug)]
pub struct StartedSession {
    pub session: AgentSession,
    pub login_record: Appended,
}

/// Why no session started. Nothing was signed, except in `RemovedWhileRecording`
/// (the login record is in the log; the session end the shell must keep is given).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Login(#[from] LoginError),
    #[error("{}", TokenError::Removed)]
    RemovedDuringLogin,
    #[error("the login worked, but its signed record could not be written, so the desk stays locked: {0}")]
    Record(#[from] PresenceError),
    #[error("{}", TokenError::Removed)]
    RemovedWhileRecording { end: SessionEnd },
    #[error("cannot tell whether the key stayed in the reader ({0}); log in again")]
    Watch(TokenError),
}

impl StartError {
    /// PIN tries left, for the lock screen, when the error is a wrong PIN.
    pub fn tries_left(&self) -> Option<u8> {
        match self {
            StartError::Login(e) => e.tries_left(),
            _ => None,
        }
    }
}

/// What starting a session needs besides the audit log, the reader and the PIN.
pub struct SessionStarter<'a> {
    pub config: &'a Config,
    pub directory: &'a dyn Directory,
    pub removals: &'a dyn RemovalMarks,
    pub clock: &'a dyn Clock,
}

impl SessionStarter<'_> {
    /// Log in with the key in `reader` and write the signed login record to `audit`
    /// (stating `previous_end`), refusing if the key left the reader meanwhile.
    pub fn start(
        &self,
        audit: &mut AuditLog,
        reader: &str,
        pin: Secret,
        previous_end: Option<&SessionEnd>,
    ) -> Result<StartedSession, StartError> {
        let before = self.removals.mark(reader).map_err(StartError::Watch)?;
        let mut session = crate::login::login(self.config, self.directory, reader, pin, self.clock.now())?;
        if self.removed_since(reader, before)? {
            return Err(StartError::RemovedDuringLogin);
        }
        let login_record = record_login(audit, &mut session, previous_end, self.clock.now())?;
        if self.removed_since(reader, before)? {
            let end = SessionEnd::new(session.identity(), LockReason::KeyRemoved, self.clock.now());
            return Err(StartError::RemovedWhileRecording { end });
        }
        Ok(StartedSession { session, login_record })
    }

    fn removed_since(&self, reader: &str, before: u64) -> Result<bool, StartError> {
        Ok(self.removals.mark(reader).map_err(StartError::Watch)? != before)
    }
}
