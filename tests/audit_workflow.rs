//! The audit log carries the workflow engine's real facts: a standard walk-up reset
//! driven through `Session`, with `WriteIntent` appended (durably) before the engine
//! is told `IntentRecorded` and emits `ExecuteReset`, then `WriteOutcome`. This is
//! the glue the desk adapter needs; the log then verifies offline.

mod audit_support;
mod fixtures;

use audit_support::{Pki, SoftSigner};
use fixtures::{jane_doe, point, LONG_AGO};
use resetdesk::audit::store::Store;
use resetdesk::audit::{verify_store, AuditLog, CollectorKeys, DirectoryOutcome, Event, EventType};
use resetdesk::directory::Account;
use resetdesk::policy::risk::StatedDetails;
use resetdesk::policy::{ActingAgent, Channel, PolicyConfig, RequestContext};
use resetdesk::tier::{AccountTier, AgentTier};
use resetdesk::token::RecordSigner;
use resetdesk::verification::Verdict;
use resetdesk::workflow::{Decision, OpenRequest, Session, WorkflowEvent};
use time::macros::datetime;

fn account() -> Account {
    let mut account = jane_doe(AccountTier::Standard);
    account.manager = None;
    account.phones = vec![point("+49 30 1234567", "mobile", LONG_AGO)];
    account
}

#[test]
fn a_workflow_reset_is_recorded_intent_first_and_verifies() {
    let now = datetime!(2026-11-25 10:00 UTC);
    let real_now = time::OffsetDateTime::now_utc();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.sqlite");
    let mut alice = SoftSigner::from_seed("alice", 1);
    let mut log = AuditLog::open(&path).unwrap();

    let req = OpenRequest {
        request_id: "req-1".into(),
        at: now,
        agent: ActingAgent {
            username: "alice".into(),
            employee_id: "E-alice".into(),
            tier: AgentTier::Junior,
            groups: vec![],
            key_id: alice.key_id(),
        },
        account: account(),
        manager: None,
        context: RequestContext {
            channel: Channel::WalkUp,
            stated: StatedDetails::default(),
            previous_resets: vec![],
            previous_failures: vec![],
            cross_desk: Default::default(),
        },
        directory_backend: "embedded".into(),
        emergency_reason: None,
    };
    let (mut s, _) = Session::open(&PolicyConfig::default(), req).unwrap();
    s.handle(WorkflowEvent::SecurityAnswersChecked { at: now, verdict: Verdict::Passed }).unwrap();
    s.handle(WorkflowEvent::TotpChecked { at: now, verdict: Verdict::Passed, accepted_step: Some(1) }).unwrap();

    let d = s.handle(WorkflowEvent::ResetRequested { at: now }).unwrap();
    let Some(Decision::WriteIntent { facts }) = d.first() else { panic!("{d:?}") };
    // The adapter: append, durable, THEN tell the engine.
    let intent = log.append(&Event::reset_intent(facts.as_ref()).unwrap(), &mut alice, real_now).unwrap();
    let d =
        s.handle(WorkflowEvent::IntentRecorded { at: now, seq: intent.seq, entry_hash: intent.entry_hash }).unwrap();
    assert!(matches!(d.first(), Some(Decision::ExecuteReset { .. })), "{d:?}");
    // (directory write here)
    let d = s.handle(WorkflowEvent::DirectoryResult { at: now, result: Ok(()) }).unwrap();
    let facts =
        d.iter().find_map(|x| if let Decision::WriteOutcome { facts } = x { Some(facts) } else { None }).unwrap();
    let outcome = Event::reset_outcome(intent.intent_ref(), &DirectoryOutcome::Done, facts.as_ref()).unwrap();
    log.append(&outcome, &mut alice, real_now).unwrap();
    assert!(log.pending_intents().unwrap().is_empty());
    drop(log);

    let store = Store::open_read_only(&path).unwrap();
    let pki = Pki::new(1);
    let summary = verify_store(&store, &pki.resolver(&[&alice]), &[], &CollectorKeys::default(), &[]).unwrap();
    assert_eq!(summary.by_type.get(EventType::ResetOutcome.as_str()), Some(&1));
    let first = store.get(1).unwrap().unwrap();
    let payload = String::from_utf8(first.record[136..].to_vec()).unwrap();
    assert!(payload.contains(r#""username":"jdoe""#) && payload.contains(r#""kind":"intent""#), "{payload}");
}
