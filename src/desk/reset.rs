//! [`ResetRun`]: one reset request in progress at the desk — the engine's
//! [`Session`] plus what only the adapter may hold: the issued one-time code (its
//! salted hash), the TOTP replay state, the pointer to the durable intent record,
//! and the temporary password between the directory write and the hand-off.
//!
//! The [`super::Desk`] drives it; the shell keeps it (one per open request) and
//! reads its status. The password and in-band secrets leave it exactly once, through
//! [`ResetRun::take_handoff_password`] and [`ResetRun::take_in_band_secret`].

use crate::audit::Appended;
use crate::secret::Secret;
use crate::workflow::input::SecretCheckState;
use crate::workflow::{Phase, Session, Status};

/// A secret the notifier could not send out of band: show it on the requester's
/// registered device (the demo's stand-in window) and drop it.
#[derive(Debug)]
pub struct InBandSecret {
    pub kind: super::SecretKind,
    /// The registered address or number it is meant for.
    pub to: String,
    pub secret: Secret,
}

/// One reset request in progress.
pub struct ResetRun {
    pub(super) session: Session,
    /// The agent's slot 9c key id: every record of this run is signed with it.
    pub(super) agent_key_id: [u8; 32],
    pub(super) secrets: SecretCheckState,
    /// Steps of the session already persisted or examined for failure records.
    pub(super) steps_seen: usize,
    /// The durable intent record, once appended.
    pub(super) intent: Option<Appended>,
    /// Generated and set in the directory; held until the hand-off decision.
    pub(super) password: Option<Secret>,
    pub(super) handoff_released: bool,
    pub(super) in_band: Option<InBandSecret>,
    /// Set when an IO step failed mid-way: the run cannot continue safely.
    pub(super) broken: Option<String>,
    /// Set when the directory took the new password but its outcome record could not
    /// be signed: the password stays in `password`, and the decisions from the outcome
    /// on wait for [`super::Desk::retry_outcome`].
    pub(super) outcome_pending: Option<OutcomePending>,
    /// Set while the manager's approval cannot go on because the collector is not
    /// reachable (its error message): the screen says "approval needs the collector".
    pub(super) approval_needs_collector: Option<String>,
    /// The holder's "this wasn't me" link, once the outcome record carrying its hash
    /// is signed (with the collector's desk services only); told in the reset mail.
    pub(super) report_link: Option<Secret>,
}

/// The outcome record of a reset the directory applied could not be written yet.
#[derive(Debug)]
pub(super) struct OutcomePending {
    pub(super) intent_seq: u64,
    /// Why the outcome could not be signed (no secret: an error message).
    pub(super) why: String,
    /// The decisions still to execute, the outcome record first.
    pub(super) remaining: Vec<crate::workflow::Decision>,
}

impl OutcomePending {
    pub(super) fn error(&self) -> super::DeskError {
        super::DeskError::OutcomePending { intent_seq: self.intent_seq, why: self.why.clone() }
    }
}

impl std::fmt::Debug for ResetRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResetRun")
            .field("request_id", &self.session.request_id())
            .field("phase", &self.session.phase())
            .field("intent", &self.intent.map(|a| a.seq))
            .field("broken", &self.broken)
            .field("outcome_pending", &self.outcome_pending.as_ref().map(|p| p.intent_seq))
            .finish_non_exhaustive()
    }
}

impl ResetRun {
    pub(super) fn new(session: Session, agent_key_id: [u8; 32], last_totp_step: Option<u64>) -> Self {
        Self {
            session,
            agent_key_id,
            secrets: SecretCheckState { issued_code: None, last_totp_step },
            steps_seen: 0,
            intent: None,
            password: None,
            handoff_released: false,
            in_band: None,
            broken: None,
            outcome_pending: None,
            approval_needs_collector: None,
            report_link: None,
        }
    }

    pub fn request_id(&self) -> &str {
        self.session.request_id()
    }

    /// What the agent's screen shows. Holds nothing secret. While the outcome record
    /// is pending, the phase is [`Phase::OutcomePending`], never `Succeeded`.
    pub fn status(&self) -> Status {
        let mut status = self.session.status();
        status.phase = self.phase();
        status
    }

    /// The engine's phase, except [`Phase::OutcomePending`] while the directory has the
    /// new password but the outcome record is not signed yet.
    pub fn phase(&self) -> Phase {
        if self.outcome_pending.is_some() {
            Phase::OutcomePending
        } else {
            self.session.phase()
        }
    }

    /// Why the outcome record is still unsigned after the directory took the new
    /// password (`None` when it is not pending). The password is held in the run
    /// (zeroized memory) until [`super::Desk::retry_outcome`] signs the outcome; it is
    /// not handed over before.
    pub fn outcome_pending(&self) -> Option<&str> {
        self.outcome_pending.as_ref().map(|p| p.why.as_str())
    }

    /// Why the manager's approval cannot go on now: the collector is unreachable
    /// (`None` when it answered last time, or was never needed).
    pub fn approval_needs_collector(&self) -> Option<&str> {
        self.approval_needs_collector.as_deref()
    }

    /// Note whether a call of the approval channel reached the collector: a
    /// [`ApprovalError::NeedsCollector`] is kept for the screen (the request still
    /// waits), anything else clears it.
    pub(super) fn note_collector<T>(
        &mut self,
        r: Result<T, super::approval::ApprovalError>,
    ) -> Result<T, super::approval::ApprovalError> {
        self.approval_needs_collector = match &r {
            Err(e @ super::approval::ApprovalError::NeedsCollector(_)) => Some(e.to_string()),
            _ => None,
        };
        r
    }

    /// The digest a co-signer signs (for the co-signer's screen).
    pub fn approval_digest(&self) -> [u8; 32] {
        self.session.approval_digest()
    }

    /// Seq of the durable intent record, once written.
    pub fn intent_seq(&self) -> Option<u64> {
        self.intent.map(|a| a.seq)
    }

    /// Why the run stopped, if an IO step failed mid-way.
    pub fn broken(&self) -> Option<&str> {
        self.broken.as_deref()
    }

    /// Whether the temporary password waits for the customer-facing window.
    pub fn handoff_waiting(&self) -> bool {
        self.handoff_released && self.password.is_some()
    }

    /// The temporary password, once, after the engine decided the hand-off (and the
    /// outcome record is durable). `None` before that and ever after.
    pub fn take_handoff_password(&mut self) -> Option<Secret> {
        if self.handoff_released {
            self.password.take()
        } else {
            None
        }
    }

    /// A secret to show on the requester's registered device, once.
    pub fn take_in_band_secret(&mut self) -> Option<InBandSecret> {
        self.in_band.take()
    }
}
