//! The desk drives resets end to end on real components: the embedded directory with
//! the demo organisation, the signed audit store, and virtual PIV cards through the
//! token layer. Needs `scripts/pcscd.sh start`; holds the reader lock.

mod cli_support;
mod desk_support;

use std::sync::{Arc, Mutex};

use cli_support::resetdesk;
use desk_support::{answers_json, at_desk, at_desk_on, employee_record_json, site, totp_json, verified_run, Backend};
use resetdesk::audit::{AuditError, EventType};
use resetdesk::desk::outbox::Outbox;
use resetdesk::desk::reconcile::Finding;
use resetdesk::desk::{Desk, DeskError, SecretKind};
use resetdesk::directory::embedded::EmbeddedDirectory;
use resetdesk::directory::{Directory, DirectoryEntry, DirectoryError, PasswordCheck, VerificationMaterial};
use resetdesk::policy::AuthorityRefusal;
use resetdesk::secret::Secret;
use resetdesk::token::SignError;
use resetdesk::workflow::{Decision, Phase, Refusal, WorkflowError};
use time::OffsetDateTime;
use virtual_yubikey::{lock_readers, VirtualCard, READER_0_PORT, READER_1_PORT};

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

fn names(decisions: &[Decision]) -> Vec<&'static str> {
    decisions
        .iter()
        .map(|d| match d {
            Decision::Escalated { .. } => "escalated",
            Decision::StepsExpired { .. } => "steps-expired",
            Decision::NeedSteps { .. } => "need-steps",
            Decision::SendCode { .. } => "send-code",
            Decision::ShowCallbackNumber { .. } => "show-callback-number",
            Decision::RequestManagerApproval { .. } => "request-manager-approval",
            Decision::RequestCoSignature { .. } => "request-co-signature",
            Decision::Wait { .. } => "wait",
            Decision::Refuse { .. } => "refuse",
            Decision::WriteRecord { .. } => "write-record",
            Decision::WriteIntent { .. } => "write-intent",
            Decision::ExecuteReset { .. } => "execute-reset",
            Decision::WriteOutcome { .. } => "write-outcome",
            Decision::HandOff { .. } => "hand-off",
            Decision::Notify { .. } => "notify",
            Decision::LockVerification { .. } => "lock-verification",
        })
        .collect()
}

#[test]
fn a_junior_agent_completes_a_standard_reset_and_the_log_verifies() {
    standard_reset(Backend::Embedded);
}

/// The same reset on OpenLDAP (slapd over LDAPS): the password and pwdReset are set
/// in slapd, and a bind with the ppolicy control says the user must change it.
#[test]
fn a_junior_agent_completes_a_standard_reset_on_slapd_and_the_log_verifies() {
    standard_reset(Backend::Slapd);
}

fn standard_reset(backend: Backend) {
    let _lock = lock_readers();
    let Some((site, card, mut alice, mut desk)) = at_desk_on(backend, "alice", "246810") else { return };
    let identity = alice.identity().clone();
    assert!(desk.pending_intents().unwrap().is_empty());

    let (mut run, reply) =
        desk.start_reset(&identity, alice.signer().unwrap(), "jsmith", Default::default(), now()).unwrap();
    assert_eq!(names(&reply.decisions), ["need-steps"], "{:?}", reply.decisions);
    desk.apply_ui_json(&mut run, &answers_json("jsmith"), alice.signer().unwrap(), now()).unwrap();
    desk.apply_ui_json(&mut run, &employee_record_json(&site, "jsmith"), alice.signer().unwrap(), now()).unwrap();
    // Answers and employee record are both knowledge: one factor, not two.
    let early = desk.apply_ui_json(&mut run, r#"{"action":"request_reset"}"#, alice.signer().unwrap(), now());
    assert!(matches!(early, Err(DeskError::Workflow(WorkflowError::StepsMissing(_)))), "{early:?}");
    assert!(site.records().is_empty());
    desk.apply_ui_json(&mut run, &totp_json("jsmith", now()), alice.signer().unwrap(), now()).unwrap();
    assert!(run.take_handoff_password().is_none(), "nothing to hand off before the reset");
    // Live progress: each step is reported as it completes, while the run executes (the
    // audit log holds only the intent when "intent signed" comes, both records later).
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let (log, audit_path) = (seen.clone(), site.dir.path().join("audit.sqlite"));
    desk.observe_progress(Box::new(move |step| {
        let records = resetdesk::audit::store::Store::open_read_only(&audit_path)
            .ok()
            .and_then(|s| s.head().ok().flatten())
            .map_or(0, |(seq, _)| seq);
        log.lock().unwrap().push((step, records));
    }));
    let reply = desk.apply_ui_json(&mut run, r#"{"action":"request_reset"}"#, alice.signer().unwrap(), now()).unwrap();
    assert_eq!(names(&reply.decisions), ["write-intent", "execute-reset", "write-outcome", "hand-off", "notify"]);
    use resetdesk::desk::progress::ExecutionStep as S;
    assert_eq!(
        *seen.lock().unwrap(),
        [
            (S::IntentSigned, 1),
            (S::DirectoryUpdated, 1),
            (S::OutcomeSigned, 2),
            (S::HandOffPrepared, 2),
            (S::Notified, 2)
        ]
    );
    assert_eq!(run.phase(), Phase::Succeeded);
    assert!(reply.handoff_waiting && reply.warnings.is_empty(), "{reply:?}");

    // The password leaves the desk once, and it is the one the directory now holds.
    let password = run.take_handoff_password().expect("the temporary password for the customer window");
    assert!(run.take_handoff_password().is_none(), "only once");
    assert_eq!(site.check_password("jsmith", &password), PasswordCheck { valid: true, must_change: true });
    assert!(!site.check_password("jsmith", &resetdesk::demo::demo_password("jsmith")).valid);
    if let Some(slapd) = &site.slapd {
        let attrs = slapd.read("uid=jsmith,ou=people,dc=example,dc=test", &["pwdReset"]);
        assert_eq!(attrs["pwdReset"], ["TRUE"], "set by the reset's one modify");
    }

    // Intent before outcome, both signed by alice's card; the log verifies (library and CLI).
    let records = site.records();
    let types: Vec<EventType> = records.iter().map(|r| r.0).collect();
    assert_eq!(types, [EventType::ResetIntent, EventType::ResetOutcome]);
    assert_eq!(records[0].1["intent"], serde_json::Value::Null);
    assert_eq!(records[1].1["intent"]["seq"], 1);
    let summary = site.verify_audit();
    assert_eq!((summary.records, summary.open_intents.len()), (2, 0));
    let (ok, out) = site.verify_audit_cli();
    assert!(ok && out.contains("OK"), "{out}");

    // Search reads the histories of a whole page of results in one pass: the reset
    // shows on jsmith's card only.
    let cards = desk.search_accounts("example.com", now()).unwrap();
    assert!(cards.len() > 2 && cards.iter().any(|c| c.username == "jsmith"), "{}", cards.len());
    for card in &cards {
        let expected = usize::from(card.username == "jsmith");
        assert_eq!((card.username.as_str(), card.recent_resets), (card.username.as_str(), expected));
    }

    // The holder and the manager are told; nothing secret is stored anywhere.
    let outbox = site.outbox();
    let to: Vec<&str> = outbox.iter().map(|m| m.recipient.as_str()).collect();
    assert!(to.contains(&"jsmith@example.com") && to.contains(&"dgarcia@example.com"), "{to:?}");
    assert!(outbox.iter().all(|m| m.delivered_at.is_none()), "queued for the SMTP sender");
    let stored = site.all_stored_bytes();
    assert!(!stored.contains(password.expose()), "the temporary password is nowhere on disk");
    assert!(!stored.contains("Buddy") && !stored.contains("Ottawa"), "nor the answers");
    drop(alice);
    card.remove().unwrap();
}

#[test]
fn a_privileged_reset_is_refused_for_a_junior_agent_and_recorded() {
    let _lock = lock_readers();
    let (site, card, mut alice, mut desk) = at_desk("alice", "246810");
    let identity = alice.identity().clone();

    let (mut run, reply) =
        desk.start_reset(&identity, alice.signer().unwrap(), "lwong", Default::default(), now()).unwrap();
    assert_eq!(run.phase(), Phase::Refused);
    assert!(
        reply.decisions.iter().any(|d| matches!(
            d,
            Decision::Refuse { refusal: Refusal::NotAuthorised { reason: AuthorityRefusal::TierTooLow { .. } }, .. }
        )),
        "{:?}",
        reply.decisions
    );
    let records = site.records();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].0, EventType::Refusal);
    assert_eq!(records[0].1["target"]["username"], "lwong");
    site.assert_untouched("lwong");

    // Whatever the UI sends now, nothing reaches the directory.
    for json in [r#"{"action":"request_reset"}"#.to_owned(), answers_json("lwong")] {
        assert!(desk.apply_ui_json(&mut run, &json, alice.signer().unwrap(), now()).is_err());
    }
    site.assert_untouched("lwong");
    assert_eq!(site.records().len(), 1);
    assert!(site.verify_audit_cli().0);
    drop(alice);
    card.remove().unwrap();
}

#[test]
fn a_failing_audit_append_leaves_the_directory_untouched() {
    let _lock = lock_readers();
    let (site, card, mut alice, mut desk) = at_desk("alice", "246810");
    let mut run = verified_run(&mut desk, &mut alice, "ykim");

    // The key is pulled before the intent is signed: the append fails, nothing is written.
    card.remove().unwrap();
    let err =
        desk.apply_ui_json(&mut run, r#"{"action":"request_reset"}"#, alice.signer().unwrap(), now()).unwrap_err();
    assert!(matches!(err, DeskError::Audit(AuditError::Sign(SignError::KeyGone(_)))), "{err:?}");
    assert!(site.records().is_empty(), "no record");
    assert!(desk.pending_intents().unwrap().is_empty(), "no intent");
    site.assert_untouched("ykim");
    assert!(run.take_handoff_password().is_none());

    // The run is over: a retry cannot slip past the missing intent.
    let again =
        desk.apply_ui_json(&mut run, r#"{"action":"request_reset"}"#, alice.signer().unwrap(), now()).unwrap_err();
    assert!(matches!(again, DeskError::RunBroken(_)), "{again:?}");
    site.assert_untouched("ykim");
}

/// The embedded directory, with a fault injected around the reset write: the agent's
/// key is pulled right after the write, or another process's exclusive lock on the
/// audit database is taken (either way the outcome cannot be signed); and the write
/// itself can be made to fail. Or the key is pulled when an account is looked up
/// (`pull_on_lookup`: login looks the agent up after the PIN check).
struct FaultAfterWrite {
    inner: EmbeddedDirectory,
    card: Mutex<Option<VirtualCard>>,
    refuse_write: bool,
    pull_on_lookup: bool,
    /// A connection to the audit database that takes `BEGIN EXCLUSIVE` after the write.
    lock_audit: Option<Arc<Mutex<rusqlite::Connection>>>,
}

impl FaultAfterWrite {
    fn pull_key(inner: EmbeddedDirectory, card: Option<VirtualCard>, refuse_write: bool) -> Self {
        Self { inner, card: Mutex::new(card), refuse_write, pull_on_lookup: false, lock_audit: None }
    }

    fn pull_key_on_lookup(inner: EmbeddedDirectory, card: VirtualCard) -> Self {
        Self { pull_on_lookup: true, ..Self::pull_key(inner, Some(card), false) }
    }

    fn pull_card(&self) {
        if let Some(card) = self.card.lock().unwrap().take() {
            card.remove().unwrap();
        }
    }
}

impl Directory for FaultAfterWrite {
    fn backend_name(&self) -> &'static str {
        self.inner.backend_name()
    }
    fn entry(&self, username: &str) -> Result<DirectoryEntry, DirectoryError> {
        if self.pull_on_lookup {
            self.pull_card();
        }
        self.inner.entry(username)
    }
    fn search_entries(&self, query: &str, limit: usize) -> Result<Vec<DirectoryEntry>, DirectoryError> {
        self.inner.search_entries(query, limit)
    }
    fn verification_material(&self, username: &str) -> Result<VerificationMaterial, DirectoryError> {
        self.inner.verification_material(username)
    }
    fn set_temporary_password(&self, username: &str, password: &Secret) -> Result<(), DirectoryError> {
        let result = if self.refuse_write {
            Err(DirectoryError::Refused("constraint violation (injected)".into()))
        } else {
            self.inner.set_temporary_password(username, password)
        };
        if !self.pull_on_lookup {
            self.pull_card();
        }
        if let Some(conn) = &self.lock_audit {
            conn.lock().unwrap().execute_batch("BEGIN EXCLUSIVE").unwrap();
        }
        result
    }
    fn lock_verification(
        &self,
        username: &str,
        until: OffsetDateTime,
        flag_until: OffsetDateTime,
    ) -> Result<(), DirectoryError> {
        self.inner.lock_verification(username, until, flag_until)
    }
    fn password_changed_at(&self, username: &str) -> Result<Option<OffsetDateTime>, DirectoryError> {
        self.inner.password_changed_at(username)
    }
}

#[test]
fn a_failed_directory_write_is_recorded_as_the_outcome_and_nothing_is_handed_over() {
    let _lock = lock_readers();
    let site = site();
    let card = VirtualCard::insert(READER_0_PORT).unwrap();
    let mut alice = site.agent(&card, "alice", "246810");
    let directory = FaultAfterWrite::pull_key(site.directory(), None, true);
    let mut desk =
        Desk::open(site.config.clone(), Box::new(directory), Box::new(Outbox::open(site.dir.path()).unwrap())).unwrap();
    let mut run = verified_run(&mut desk, &mut alice, "obrien");
    let reply = desk.apply_ui_json(&mut run, r#"{"action":"request_reset"}"#, alice.signer().unwrap(), now()).unwrap();
    assert_eq!(names(&reply.decisions), ["write-intent", "execute-reset", "write-outcome"]);
    assert_eq!(run.phase(), Phase::DirectoryFailed);
    assert!(run.take_handoff_password().is_none(), "no password to hand over");
    let records = site.records();
    assert_eq!(records.iter().map(|r| r.0).collect::<Vec<_>>(), [EventType::ResetIntent, EventType::ResetOutcome]);
    assert!(records[1].1["outcome"]["message"].as_str().unwrap().contains("injected"), "{}", records[1].1);
    site.assert_untouched("obrien");
    assert!(desk.pending_intents().unwrap().is_empty());
    drop(alice);
    card.remove().unwrap();
}

/// Twice alice's key is pulled right after the directory call, so the outcome cannot
/// be signed: once after a write that happened (pdubois), once after one that failed
/// (gadeyemi). Leaves both intents open.
fn leave_two_intents_open(site: &desk_support::Site) {
    for (target, refuse_write) in [("pdubois", false), ("gadeyemi", true)] {
        let card = VirtualCard::insert(READER_0_PORT).unwrap();
        let mut alice = site.agent(&card, "alice", "246810");
        let directory = FaultAfterWrite::pull_key(site.directory(), Some(card), refuse_write);
        let mut desk =
            Desk::open(site.config.clone(), Box::new(directory), Box::new(Outbox::open(site.dir.path()).unwrap()))
                .unwrap();
        let mut run = verified_run(&mut desk, &mut alice, target);
        let err =
            desk.apply_ui_json(&mut run, r#"{"action":"request_reset"}"#, alice.signer().unwrap(), now()).unwrap_err();
        if refuse_write {
            assert!(matches!(err, DeskError::Audit(AuditError::Sign(_))), "{err:?}");
        } else {
            // The directory has the password: the run says so and is not a success.
            assert!(matches!(err, DeskError::OutcomePending { .. }), "{err:?}");
            assert_eq!(run.phase(), Phase::OutcomePending);
        }
        assert!(run.take_handoff_password().is_none(), "no outcome record, no hand-off");
    }
}

#[test]
fn intents_left_open_by_a_pulled_key_are_reconciled_against_the_directory() {
    let _lock = lock_readers();
    let site = site();
    let bob_card = VirtualCard::insert(READER_1_PORT).unwrap();
    let mut bob = site.agent(&bob_card, "bob", "13572468");
    leave_two_intents_open(&site);

    // A new desk finds both intents open; bob's reconciliation settles them.
    let mut desk = site.desk();
    let pending = desk.pending_intents().unwrap();
    assert_eq!(pending.len(), 2);
    let bob_id = bob.identity().clone();
    let done = desk.reconcile(&bob_id, bob.signer().unwrap(), now()).unwrap();
    assert_eq!(done.len(), 2);
    assert_eq!(done[0].target, "pdubois");
    assert!(matches!(done[0].finding, Finding::Applied { .. }), "{:?}", done[0]);
    assert_eq!(done[1].target, "gadeyemi");
    assert!(matches!(done[1].finding, Finding::NotApplied { .. }), "{:?}", done[1]);
    assert!(done.iter().all(|r| r.outcome_seq.is_some()));
    site.assert_untouched("gadeyemi");
    assert!(site.directory().entry("pdubois").unwrap().must_change_password);
    assert!(desk.pending_intents().unwrap().is_empty());
    let summary = site.verify_audit();
    assert!(summary.open_intents.is_empty());
    assert!(site.verify_audit_cli().0);
    drop(bob);
    bob_card.remove().unwrap();
}

#[test]
fn a_one_time_code_is_shown_in_band_once_never_stored_and_refused_in_production() {
    let _lock = lock_readers();
    let (site, card, mut alice, mut desk) = at_desk("alice", "246810");
    let identity = alice.identity().clone();
    let request_code = r#"{"action":"request_code","to":{"kind":"email","index":0}}"#;

    // nhassan has no authenticator app: answers and a code sent to the work address.
    let (mut run, _) =
        desk.start_reset(&identity, alice.signer().unwrap(), "nhassan", Default::default(), now()).unwrap();
    desk.apply_ui_json(&mut run, &answers_json("nhassan"), alice.signer().unwrap(), now()).unwrap();
    let reply = desk.apply_ui_json(&mut run, request_code, alice.signer().unwrap(), now()).unwrap();
    assert_eq!(names(&reply.decisions), ["send-code"]);
    assert!(reply.in_band_secret_waiting);
    let shown = run.take_in_band_secret().expect("the code, for the requester's device");
    assert!(run.take_in_band_secret().is_none(), "only once");
    assert_eq!((shown.kind, shown.to.as_str()), (SecretKind::OneTimeCode, "nhassan@example.com"));
    let row = site.outbox().into_iter().find(|m| m.recipient == "nhassan@example.com").unwrap();
    assert!(row.delivered_in_band && row.delivered_at.is_some(), "{row:?}");
    assert!(!row.body.contains(shown.secret.expose()) && !row.subject.contains(shown.secret.expose()));

    let enter = Secret::new(serde_json::json!({"action": "enter_code", "code": shown.secret.expose()}).to_string());
    drop(shown);
    desk.apply_ui_secret_json(&mut run, enter, alice.signer().unwrap(), now()).unwrap();
    desk.apply_ui_json(&mut run, r#"{"action":"request_reset"}"#, alice.signer().unwrap(), now()).unwrap();
    assert_eq!(run.phase(), Phase::Succeeded);
    assert!(run.take_handoff_password().is_some());

    // A production desk refuses to hand a code back in-band: none is even issued.
    let mut config = site.config.clone();
    config.mode = resetdesk::config::Mode::Production;
    let mut desk = Desk::open_embedded(config).unwrap();
    let before = site.outbox().len();
    let (mut run, _) =
        desk.start_reset(&identity, alice.signer().unwrap(), "hjansen", Default::default(), now()).unwrap();
    desk.apply_ui_json(&mut run, &answers_json("hjansen"), alice.signer().unwrap(), now()).unwrap();
    let err = desk.apply_ui_json(&mut run, request_code, alice.signer().unwrap(), now()).unwrap_err();
    assert!(matches!(err, DeskError::InBandInProduction), "{err:?}");
    assert!(run.take_in_band_secret().is_none());
    assert_eq!(site.outbox().len(), before, "no message about a code that was never sent");
    site.assert_untouched("hjansen");
    drop(alice);
    card.remove().unwrap();
}

/// Item 3 of the hardening issue: the directory took the new password, then the outcome
/// record cannot be committed (another process holds the audit database's write lock).
/// The run does not report success and hands nothing over; it holds the password and
/// says the outcome is pending; once the lock is gone, the retry signs the outcome and
/// the password is handed over, the one that works in the directory.
#[test]
fn an_outcome_that_cannot_be_written_after_the_directory_write_is_pending_and_retriable() {
    let _lock = lock_readers();
    let site = site();
    let card = VirtualCard::insert(READER_0_PORT).unwrap();
    let mut alice = site.agent(&card, "alice", "246810");
    let conn = Arc::new(Mutex::new(rusqlite::Connection::open(site.dir.path().join("audit.sqlite")).unwrap()));
    let mut directory = FaultAfterWrite::pull_key(site.directory(), None, false);
    directory.lock_audit = Some(conn.clone());
    let mut desk =
        Desk::open(site.config.clone(), Box::new(directory), Box::new(Outbox::open(site.dir.path()).unwrap())).unwrap();
    let mut run = verified_run(&mut desk, &mut alice, "pdubois");

    let err =
        desk.apply_ui_json(&mut run, r#"{"action":"request_reset"}"#, alice.signer().unwrap(), now()).unwrap_err();
    assert!(matches!(err, DeskError::OutcomePending { .. }), "{err:?}");
    assert!(err.to_string().contains("WAS set in the directory") && err.to_string().contains("retry"), "{err}");
    assert_eq!(run.phase(), Phase::OutcomePending);
    assert_eq!(run.status().phase, Phase::OutcomePending, "the screen does not show success");
    assert!(run.outcome_pending().is_some_and(|why| why.contains("locked") || why.contains("busy")), "{run:?}");
    assert!(run.take_handoff_password().is_none(), "nothing handed over before the outcome is signed");
    assert!(run.broken().is_none());
    assert!(site.directory().entry("pdubois").unwrap().must_change_password, "the directory has it");
    // Other actions are refused while the outcome is pending; the retry is the way on.
    let again = desk.apply_ui_json(&mut run, r#"{"action":"request_reset"}"#, alice.signer().unwrap(), now());
    assert!(matches!(again, Err(DeskError::OutcomePending { .. })), "{again:?}");

    conn.lock().unwrap().execute_batch("ROLLBACK").unwrap();
    let reply = desk.retry_outcome(&mut run, alice.signer().unwrap(), now()).unwrap();
    assert!(run.outcome_pending().is_none());
    assert_eq!(run.phase(), Phase::Succeeded);
    assert!(reply.handoff_waiting);
    let password = run.take_handoff_password().expect("the held password, once");
    assert_eq!(site.check_password("pdubois", &password), PasswordCheck { valid: true, must_change: true });
    let kinds: Vec<_> = site.records().iter().map(|r| r.0).collect();
    assert_eq!(kinds.iter().filter(|k| **k == EventType::ResetOutcome).count(), 1, "{kinds:?}");
    assert!(desk.pending_intents().unwrap().is_empty());
    assert!(site.verify_audit_cli().0);
    assert!(matches!(desk.retry_outcome(&mut run, alice.signer().unwrap(), now()), Err(DeskError::Workflow(_))));
    drop(alice);
    card.remove().unwrap();
}

/// `resetdesk desk reconcile`: bob logs in with his card (PIN on stdin) and the open
/// intents are settled as the directory says, signed by him; a second run finds none.
#[test]
fn the_cli_reconciles_open_intents_with_the_agent_s_card() {
    let _lock = lock_readers();
    let site = site();
    let bob_card = VirtualCard::insert(READER_1_PORT).unwrap();
    site.enrol(&bob_card, "bob", "13572468");
    leave_two_intents_open(&site);
    assert_eq!(site.desk().pending_intents().unwrap().len(), 2);

    let dir = site.dir.path().to_str().unwrap();
    let args = ["desk", "reconcile", "--data-dir", dir, "--reader", bob_card.reader_name()];
    let (code, out, err) = resetdesk(&args, "000000\n");
    assert_eq!(code, 1, "a wrong PIN logs nobody in: {out}{err}");
    assert_eq!(site.desk().pending_intents().unwrap().len(), 2, "nothing was settled");
    let (code, out, err) = resetdesk(&args, "13572468\n");
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("account pdubois): applied"), "{out}");
    assert!(out.contains("account gadeyemi): not applied"), "{out}");
    assert!(out.contains("reconciled by bob: 2 settled, 0 need a person"), "{out}");
    assert!(site.desk().pending_intents().unwrap().is_empty());
    let outcomes: Vec<_> = site.records().into_iter().filter(|r| r.0 == EventType::ResetOutcome).collect();
    assert_eq!(outcomes.len(), 2);
    assert!(outcomes.iter().all(|(_, facts)| facts["reconciled_by"] == "bob"), "{outcomes:?}");
    assert!(site.verify_audit_cli().0);
    let (code, out, _) = resetdesk(&args, "13572468\n");
    assert_eq!((code, out.trim()), (0, "no open reset intents: nothing to reconcile"));
    bob_card.remove().unwrap();
}

/// Item 2 of the hardening issue: before the intent is written the desk reads the
/// account and the agent again. A contact point changed since the request opened, or
/// the agent's tier dropped in the directory: no intent, no directory write; the
/// request is recorded as cancelled with the reason, and the desk says what changed.
#[test]
fn the_account_and_the_agent_are_read_again_before_the_intent() {
    let _lock = lock_readers();
    let (site, card, mut bob, mut desk) = at_desk("bob", "246810");
    let directory = site.directory();

    // The holder's mobile number changes while the agent verifies.
    let mut run = verified_run(&mut desk, &mut bob, "ykim");
    let changed = resetdesk::directory::ContactPoint {
        value: "+1 555 0199".into(),
        label: "mobile".into(),
        changed_at: Some(now()),
    };
    directory.set_contact_point("ykim", resetdesk::workflow::ContactKind::Phone, &changed).unwrap();
    let err = desk.apply_ui_json(&mut run, r#"{"action":"request_reset"}"#, bob.signer().unwrap(), now()).unwrap_err();
    assert!(matches!(&err, DeskError::ChangedSinceOpened(why) if why.contains("contact points")), "{err:?}");
    assert_eq!(run.phase(), Phase::Cancelled);
    let records = site.records();
    assert!(records.iter().all(|r| r.0 != EventType::ResetIntent), "no intent");
    let last = records.last().unwrap();
    assert_eq!(last.0, EventType::Refusal);
    assert!(last.1["outcome"]["reason"].as_str().unwrap().contains("contact points"), "{}", last.1);
    site.assert_untouched("ykim");

    // The agent is moved from the senior to the junior group during the request.
    let mut run = verified_run(&mut desk, &mut bob, "obrien");
    let db = rusqlite::Connection::open(site.dir.path().join("directory.sqlite")).unwrap();
    db.execute("UPDATE group_members SET group_name = 'helpdesk-junior' WHERE username = 'bob' AND group_name = 'helpdesk-senior'", [])
        .unwrap();
    let err = desk.apply_ui_json(&mut run, r#"{"action":"request_reset"}"#, bob.signer().unwrap(), now()).unwrap_err();
    assert!(matches!(&err, DeskError::ChangedSinceOpened(why) if why.contains("now junior")), "{err:?}");
    site.assert_untouched("obrien");
    // A new request takes the lower tier, the directory's, not the login's (senior):
    // a privileged account is refused.
    let identity = bob.identity().clone();
    assert_eq!(identity.tier, resetdesk::tier::AgentTier::Senior);
    let (run, reply) = desk.start_reset(&identity, bob.signer().unwrap(), "lwong", Default::default(), now()).unwrap();
    assert_eq!(run.phase(), Phase::Refused, "{:?}", reply.decisions);
    assert!(site.verify_audit_cli().0);
    drop(bob);
    card.remove().unwrap();
}

/// Item 2 of the hardening issue: verification has a maximum age. Steps passed more
/// than an hour before the reset are missing again: no intent, no directory write;
/// done again, the reset goes through.
#[test]
fn steps_older_than_their_maximum_age_must_be_redone() {
    let _lock = lock_readers();
    let (site, card, mut alice, mut desk) = at_desk("alice", "246810");
    let mut run = verified_run(&mut desk, &mut alice, "ykim");
    let later = now() + time::Duration::minutes(61);
    let reply = desk.apply_ui_json(&mut run, r#"{"action":"request_reset"}"#, alice.signer().unwrap(), later).unwrap();
    assert_eq!(names(&reply.decisions), ["steps-expired", "need-steps"]);
    assert_eq!(run.phase(), Phase::Verifying);
    assert!(site.records().iter().all(|r| r.0 != EventType::ResetIntent), "no intent");
    site.assert_untouched("ykim");
    desk.apply_ui_json(&mut run, &answers_json("ykim"), alice.signer().unwrap(), later).unwrap();
    desk.apply_ui_json(&mut run, &totp_json("ykim", later), alice.signer().unwrap(), later).unwrap();
    desk.apply_ui_json(&mut run, r#"{"action":"request_reset"}"#, alice.signer().unwrap(), later).unwrap();
    assert_eq!(run.phase(), Phase::Succeeded);
    drop(alice);
    card.remove().unwrap();
}

/// The one session start every shell uses (`resetdesk::session_start`): a key pulled
/// between the PIN check and the session start is caught from pcscd's own reader
/// state — what the CLI, which has no watcher thread, relies on — and no login record
/// is signed.
#[test]
fn a_key_pulled_between_pin_and_session_start_starts_no_session() {
    use resetdesk::clock::SystemClock;
    use resetdesk::session_start::{SessionStarter, StartError};
    use resetdesk::token::watch::CardWatcher;
    let _lock = lock_readers();
    let site = site();
    let card = VirtualCard::insert(READER_0_PORT).unwrap();
    site.enrol(&card, "alice", "246802");
    let reader = card.reader_name();
    let mut audit = resetdesk::presence::open_audit_log(site.dir.path(), None).unwrap();
    let watcher = CardWatcher::new().unwrap();
    let logins = || site.records().iter().filter(|(t, _)| *t == EventType::Login).count();

    // The key stays: the session starts and its login record is in the log.
    let directory = site.directory();
    let starter =
        SessionStarter { config: &site.config, directory: &directory, removals: &watcher, clock: &SystemClock };
    let started = starter.start(&mut audit, reader, Secret::from("246802"), None).unwrap();
    assert_eq!(started.session.username(), "alice");
    assert_eq!(logins(), 1);
    drop(started);

    // The key leaves after the PIN check: no session, nothing signed.
    let directory = FaultAfterWrite::pull_key_on_lookup(site.directory(), card);
    let starter =
        SessionStarter { config: &site.config, directory: &directory, removals: &watcher, clock: &SystemClock };
    let refused = starter.start(&mut audit, reader, Secret::from("246802"), None).unwrap_err();
    assert!(matches!(refused, StartError::RemovedDuringLogin), "{refused:?}");
    assert!(directory.card.lock().unwrap().is_none(), "the key was pulled during the login");
    assert_eq!(logins(), 1, "no second login record");
}
