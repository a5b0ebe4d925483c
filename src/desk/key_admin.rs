//! Enrolling and revoking agents' keys from the desk's Admin screen.
//!
//! The card path, its checks and the signed records are the ones `resetdesk token
//! enroll` and `token revoke` use ([`crate::token::enrol`], [`crate::token::enrol_record`],
//! [`crate::token::revocation`]). What the desk adds is who may, checked here and not in
//! a shell: a logged-in admin agent; never into the reader that holds the admin's own
//! key (that would wipe the key the session stands on); never a key for the admin
//! themself, by username or employee ID (nobody issues their own credential).
//!
//! An enrolment is recorded by the `enrolment` record the new card signs; a revocation
//! by the `revocation` record the admin's card signs. Both go into this desk's audit
//! log, which checks each signature against the enrolled certificate before committing.

use time::OffsetDateTime;

use super::revocation::{revoke_signed, same_person_on_file, RevocationError, Revoked};
use crate::ca::{CaError, CaPaths, OrgCa};
use crate::login::AgentSession;
use crate::policy::authority::is_plain_identifier;
use crate::secret::Secret;
use crate::tier::AgentTier;
use crate::token::attestation::AttestationError;
use crate::token::card::PivCard;
use crate::token::enrol::{enrol, load_attestation_bundle, EnrolError, EnrolReport, EnrolRequest};
use crate::token::enrol_record::{record_enrolment, EnrolRecordError};
use crate::token::TokenError;

/// What the admin types to enrol a key. Every secret is wiped on drop.
#[derive(Debug)]
pub struct KeyEnrolment {
    /// The agent the key is for (their directory username).
    pub username: String,
    /// Decrypts the organisation CA's key, which signs the new certificates.
    pub ca_passphrase: Secret,
    pub new_pin: Secret,
    pub new_puk: Secret,
    /// The card's current PIN and PUK; `None`: a factory-fresh card (the defaults).
    pub current_pin: Option<Secret>,
    pub current_puk: Option<Secret>,
}

/// A key enrolled from the desk and the seq of its signed `enrolment` record.
#[derive(Debug, Clone)]
pub struct EnrolledKey {
    pub report: EnrolReport,
    pub record_seq: u64,
}

/// Why a key was not enrolled or revoked, and what to do.
#[derive(Debug, thiserror::Error)]
pub enum KeyAdminError {
    #[error(
        "only an admin agent may enrol or revoke keys ({0} is a {1} agent); ask an admin to log in with their key"
    )]
    NotAdmin(String, AgentTier),
    #[error("that reader holds your own key: insert the key to enrol into the other reader")]
    OwnReader,
    #[error("an admin may not enrol a key for themself; ask another admin")]
    OwnKey,
    #[error("the {0} is empty, too long or holds control characters; write it plainly (at most 256 characters)")]
    BadText(&'static str),
    #[error("the organisation CA could not be opened ({0}); check the CA passphrase")]
    Ca(#[from] CaError),
    #[error(transparent)]
    Attestation(#[from] AttestationError),
    #[error(transparent)]
    Card(#[from] TokenError),
    #[error(transparent)]
    Enrol(#[from] EnrolError),
    #[error("the card IS enrolled, but its enrolment record is not in the audit log ({0}); fix the cause, then enrol the card again with the new PIN and PUK as its current ones: that writes the record")]
    NotRecorded(#[from] EnrolRecordError),
    #[error(transparent)]
    Revocation(#[from] RevocationError),
}

fn plain(what: &'static str, text: &str) -> Result<(), KeyAdminError> {
    if !super::admin::is_plain_text(text) {
        return Err(KeyAdminError::BadText(what));
    }
    Ok(())
}

fn username(text: &str) -> Result<&str, KeyAdminError> {
    let name = text.trim();
    if !is_plain_identifier(name) {
        return Err(KeyAdminError::BadText("agent's username"));
    }
    Ok(name)
}

fn require_admin(admin: &AgentSession) -> Result<(), KeyAdminError> {
    let who = admin.identity();
    if who.tier != AgentTier::Admin {
        return Err(KeyAdminError::NotAdmin(who.username.clone(), who.tier));
    }
    Ok(())
}

impl super::Desk {
    /// Enrol the key in `reader` for `request.username`, as the logged-in `admin`, at `now`.
    pub fn enrol_key(
        &mut self,
        admin: &AgentSession,
        reader: &str,
        request: KeyEnrolment,
        now: OffsetDateTime,
    ) -> Result<EnrolledKey, KeyAdminError> {
        require_admin(admin)?;
        let username = username(&request.username)?.to_owned();
        if admin.reader() == reader {
            return Err(KeyAdminError::OwnReader);
        }
        if same_person_on_file(self.directory.as_ref(), &admin.identity().username, &username) {
            return Err(KeyAdminError::OwnKey);
        }
        let data_dir = self.config.data_dir.clone();
        let ca = OrgCa::load(&CaPaths::in_data_dir(&data_dir), &request.ca_passphrase)?;
        let bundle = load_attestation_bundle(&data_dir)?;
        let mut card = PivCard::open_reader(reader)?;
        let mut req =
            EnrolRequest::factory_card(&username, request.new_pin, request.new_puk).under_rules_of(&self.config, false);
        if let Some(pin) = request.current_pin {
            req.current_pin = pin;
        }
        if let Some(puk) = request.current_puk {
            req.current_puk = puk;
        }
        let directory: &dyn crate::directory::Directory = &*self.directory;
        let report =
            enrol(&mut card, &ca, &mut self.registry, Some((directory, &self.config.agents)), &bundle, &req, now)?;
        let record = record_enrolment(&mut self.audit, &self.registry, card, req.new_pin, &report, now)?;
        Ok(EnrolledKey { report, record_seq: record.seq })
    }

    /// Revoke `agent`'s active keys (those on card `serial`, if given) for `reason`, as
    /// the logged-in `admin` (whose card signs the `revocation` record), at `now`.
    pub fn revoke_key(
        &mut self,
        admin: &mut AgentSession,
        agent: &str,
        serial: Option<u32>,
        reason: &str,
        now: OffsetDateTime,
    ) -> Result<Revoked, KeyAdminError> {
        // Who may revoke (an admin, never their own keys) is revoke_signed's to check.
        let agent = username(agent)?;
        plain("reason", reason)?;
        Ok(revoke_signed(
            &self.registry,
            self.directory.as_ref(),
            &mut self.audit,
            admin,
            agent,
            serial,
            reason.trim(),
            now,
        )?)
    }
}
