//! Unit tests of the reset session: every path and rule, with exact decisions.

use time::macros::datetime;
use time::{Duration, OffsetDateTime};

use super::*;
use crate::directory::Account;
use crate::policy::risk::tests::{account, contact, walk_up, NOW};
use crate::policy::{Channel, Method, PolicyConfig, RequestContext};
use crate::tier::{AccountTier, AgentTier};
use crate::verification::callback::CallbackReport;
use crate::verification::co_signature::CoSignature;
use crate::verification::government_id::{DocumentType, IdInspection};
use crate::verification::manager_approval::ManagerResponse;
use crate::verification::{FailReason, Verdict};

use crate::policy::authority::tests::agent;

fn manager() -> Account {
    let mut m = account(AccountTier::Standard);
    m.username = "mboss".into();
    m.emails = vec![contact("mboss@example.com", "work", datetime!(2020-01-01 0:00 UTC))];
    m
}

fn request(tier: AccountTier, agent_tier: AgentTier, ctx: RequestContext) -> OpenRequest {
    OpenRequest {
        request_id: "req-1".into(),
        at: NOW,
        agent: agent("alice", agent_tier),
        account: account(tier),
        manager: Some(manager()),
        context: ctx,
        directory_backend: "embedded".into(),
        emergency_reason: None,
    }
}

fn open(req: OpenRequest) -> (Session, Vec<Decision>) {
    Session::open(&PolicyConfig::default(), req).unwrap()
}

fn after(min: i64) -> OffsetDateTime {
    NOW + Duration::minutes(min)
}

fn passed(s: &mut Session, at: OffsetDateTime, m: Method) -> Vec<Decision> {
    let ev = match m {
        Method::SecurityAnswers => WorkflowEvent::SecurityAnswersChecked { at, verdict: Verdict::Passed },
        Method::Totp => WorkflowEvent::TotpChecked { at, verdict: Verdict::Passed, accepted_step: Some(1) },
        Method::EmployeeRecord => {
            WorkflowEvent::EmployeeRecordGiven { at, employee_id: "E1234".into(), date_of_hire: "2019-03-04".into() }
        }
        other => panic!("use the specific helper for {other}"),
    };
    s.handle(ev).unwrap()
}

fn do_callback(s: &mut Session, at: OffsetDateTime) {
    let d = s.handle(WorkflowEvent::CallbackRequested { at }).unwrap();
    assert_eq!(d, [Decision::ShowCallbackNumber { label: "mobile".into(), number: "+49 30 1234567".into() }]);
    s.handle(WorkflowEvent::CallbackReported {
        at,
        report: CallbackReport { reached_account_holder: true, holder_confirmed_request: true },
    })
    .unwrap();
}

fn do_manager(s: &mut Session, at: OffsetDateTime) {
    let d = s.handle(WorkflowEvent::ManagerApprovalRequested { at }).unwrap();
    assert_eq!(d, [Decision::RequestManagerApproval { manager: "mboss".into(), address: "mboss@example.com".into() }]);
    let response = ManagerResponse {
        approver: "mboss".into(),
        via_address: "mboss@example.com".into(),
        approved: true,
        decision_note: None,
    };
    s.handle(WorkflowEvent::ManagerResponded { at, response }).unwrap();
}

fn id_ok() -> IdInspection {
    IdInspection {
        document_type: DocumentType::NationalIdCard,
        issuing_authority: "Germany".into(),
        number_last4: "7K9Q".into(),
        expiry: "2031-05-01".into(),
        name_matches_record: true,
        photo_matches_person: true,
        security_features_checked: true,
        template_and_format_ok: true,
        no_tampering: true,
    }
}

fn co_sig(s: &Session, name: &str, tier: AgentTier) -> CoSignature {
    let mut der = vec![0x30, 68];
    der.extend([1u8; 68]);
    CoSignature {
        username: name.into(),
        employee_id: format!("E-{name}"),
        tier,
        key_id: [0xC0; 32],
        digest: s.approval_digest(),
        signature_der: der,
        verified_against_certificate: true,
    }
}

/// Drive a session from ResetRequested to the end and return all decisions.
fn finish(s: &mut Session, at: OffsetDateTime) -> Vec<Decision> {
    let mut all = s.handle(WorkflowEvent::ResetRequested { at }).unwrap();
    assert!(matches!(all[0], Decision::WriteIntent { .. }), "{all:?}");
    assert_eq!(s.phase(), Phase::AwaitingIntent);
    let d = s.handle(WorkflowEvent::IntentRecorded { at, seq: 7, entry_hash: [0xAB; 32] }).unwrap();
    assert!(matches!(&d[..], [Decision::ExecuteReset { password, .. }] if password.must_change), "{d:?}");
    all.extend(d);
    all.extend(s.handle(WorkflowEvent::DirectoryResult { at, result: Ok(()) }).unwrap());
    all
}

#[test]
fn standard_walk_up_happy_path() {
    let (mut s, d) = open(request(AccountTier::Standard, AgentTier::Junior, walk_up()));
    assert!(matches!(&d[..], [Decision::NeedSteps { .. }]), "{d:?}");
    passed(&mut s, NOW, Method::SecurityAnswers);
    // One knowledge factor is not enough; a second knowledge method adds nothing.
    assert!(matches!(s.handle(WorkflowEvent::ResetRequested { at: NOW }), Err(WorkflowError::StepsMissing(_))));
    passed(&mut s, NOW, Method::EmployeeRecord);
    assert!(matches!(s.handle(WorkflowEvent::ResetRequested { at: NOW }), Err(WorkflowError::StepsMissing(_))));
    passed(&mut s, NOW, Method::Totp);
    let all = finish(&mut s, NOW);
    assert_eq!(s.phase(), Phase::Succeeded);
    let kinds: Vec<&str> = all
        .iter()
        .map(|d| match d {
            Decision::WriteIntent { .. } => "intent",
            Decision::ExecuteReset { .. } => "execute",
            Decision::WriteOutcome { .. } => "outcome",
            Decision::HandOff { .. } => "handoff",
            Decision::Notify { .. } => "notify",
            _ => "other",
        })
        .collect();
    assert_eq!(kinds, ["intent", "execute", "outcome", "handoff", "notify"]);
    match &all[3] {
        Decision::HandOff { handoff } => {
            assert_eq!(handoff.channel, HandoffChannel::CustomerWindow);
            assert!(!handoff.agent_may_view);
        }
        other => panic!("{other:?}"),
    }
    match &all[4] {
        Decision::Notify { notification } => {
            assert_eq!(notification.kind, NotificationKind::ResetCompleted);
            assert!(notification.recipients.contains(&Recipient::Manager { username: "mboss".into() }));
            assert_eq!(notification.recipients.len(), 3, "both contact points and the manager");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn execute_reset_only_after_intent_recorded() {
    let (mut s, _) = open(request(AccountTier::Standard, AgentTier::Junior, walk_up()));
    let early = s.handle(WorkflowEvent::IntentRecorded { at: NOW, seq: 1, entry_hash: [0; 32] });
    assert!(matches!(
        early,
        Err(WorkflowError::IllegalTransition { event: "intent-recorded", phase: Phase::Verifying })
    ));
    passed(&mut s, NOW, Method::SecurityAnswers);
    passed(&mut s, NOW, Method::Totp);
    s.handle(WorkflowEvent::ResetRequested { at: NOW }).unwrap();
    // The directory cannot answer before the intent is durable.
    assert!(s.handle(WorkflowEvent::DirectoryResult { at: NOW, result: Ok(()) }).is_err());
    assert_eq!(s.phase(), Phase::AwaitingIntent);
}

#[test]
fn outcome_records_point_at_the_intent() {
    let (mut s, _) = open(request(AccountTier::Standard, AgentTier::Junior, walk_up()));
    passed(&mut s, NOW, Method::SecurityAnswers);
    passed(&mut s, NOW, Method::Totp);
    let all = finish(&mut s, NOW);
    let outcome =
        all.iter().find_map(|d| if let Decision::WriteOutcome { facts } = d { Some(facts) } else { None }).unwrap();
    assert_eq!(outcome.kind, FactsKind::RequestOutcome);
    assert_eq!(outcome.outcome, RequestOutcome::Succeeded);
    assert_eq!(outcome.intent.as_ref().unwrap().seq, 7);
    assert_eq!(outcome.steps.len(), 2);
    assert!(outcome.password_spec.unwrap().must_change);
}

#[test]
fn directory_failure_writes_a_failed_outcome_and_no_handoff() {
    let (mut s, _) = open(request(AccountTier::Standard, AgentTier::Junior, walk_up()));
    passed(&mut s, NOW, Method::SecurityAnswers);
    passed(&mut s, NOW, Method::Totp);
    s.handle(WorkflowEvent::ResetRequested { at: NOW }).unwrap();
    s.handle(WorkflowEvent::IntentRecorded { at: NOW, seq: 1, entry_hash: [0; 32] }).unwrap();
    let d =
        s.handle(WorkflowEvent::DirectoryResult { at: NOW, result: Err("constraint violation\u{7}".into()) }).unwrap();
    assert_eq!(d.len(), 1);
    match &d[0] {
        Decision::WriteOutcome { facts } => {
            assert_eq!(facts.outcome, RequestOutcome::DirectoryFailed { message: "constraint violation ".into() })
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(s.phase(), Phase::DirectoryFailed);
    assert!(s.handle(WorkflowEvent::ResetRequested { at: NOW }).is_err());
}

#[test]
fn junior_agent_is_refused_for_privileged_accounts_with_a_record() {
    let (s, d) = open(request(AccountTier::Privileged, AgentTier::Junior, walk_up()));
    assert_eq!(s.phase(), Phase::Refused);
    assert!(
        matches!(d.last(), Some(Decision::Refuse { refusal: Refusal::NotAuthorised { .. }, explanation }) if explanation.contains("senior"))
    );
    assert!(d.iter().any(|d| matches!(d, Decision::WriteRecord { facts } if facts.kind == FactsKind::Refusal)));
}

#[test]
fn escalation_by_phone_hands_a_standard_account_to_a_senior_agent() {
    let mut ctx = walk_up();
    ctx.channel = Channel::Phone;
    let (s, d) = open(request(AccountTier::Standard, AgentTier::Junior, ctx.clone()));
    assert_eq!(s.phase(), Phase::Refused);
    assert!(matches!(d[0], Decision::Escalated { .. }));
    let (s, _) = open(request(AccountTier::Standard, AgentTier::Senior, ctx));
    assert_eq!(s.phase(), Phase::Verifying);
    assert_eq!(s.effective_tier(), AccountTier::Privileged);
}

#[test]
fn privileged_reset_needs_manager_and_cooling_off() {
    let (mut s, d) = open(request(AccountTier::Privileged, AgentTier::Senior, walk_up()));
    assert!(d.iter().any(|d| matches!(d, Decision::Notify { notification } if matches!(notification.kind, NotificationKind::ResetRequested { .. }))));
    passed(&mut s, NOW, Method::SecurityAnswers); // knowledge does not count at this tier
    passed(&mut s, NOW, Method::Totp);
    do_callback(&mut s, NOW);
    assert!(
        matches!(s.handle(WorkflowEvent::ResetRequested { at: NOW }), Err(WorkflowError::StepsMissing(m)) if m.contains("manager"))
    );
    do_manager(&mut s, after(1));
    let d = s.handle(WorkflowEvent::ResetRequested { at: after(2) }).unwrap();
    assert_eq!(d, [Decision::Wait { until: after(10), reason: d_reason(&d) }]);
    assert_eq!(s.phase(), Phase::Verifying);
    let all = finish(&mut s, after(10));
    assert!(all.iter().any(|d| matches!(d, Decision::ExecuteReset { .. })));
}

fn d_reason(d: &[Decision]) -> String {
    match &d[0] {
        Decision::Wait { reason, .. } => reason.clone(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn highest_needs_id_cosign_and_an_admin() {
    let (s, _) = open(request(AccountTier::Highest, AgentTier::Senior, walk_up()));
    assert_eq!(s.phase(), Phase::Refused);
    let (mut s, _) = open(request(AccountTier::Highest, AgentTier::Admin, walk_up()));
    let id = s.handle(WorkflowEvent::IdInspected { at: NOW, inspection: id_ok() }).unwrap();
    assert!(matches!(&id[..], [Decision::NeedSteps { .. }]));
    // Co-signature comes last.
    assert_eq!(
        s.handle(WorkflowEvent::CoSigned { at: NOW, signature: co_sig(&s, "bob", AgentTier::Admin) }),
        Err(WorkflowError::CoSignTooEarly)
    );
    passed(&mut s, NOW, Method::Totp);
    do_manager(&mut s, NOW);
    // Now only the co-signature is missing: the engine asks for it.
    let d = s.handle(WorkflowEvent::CodeRequested { at: NOW, to: ContactRef { kind: ContactKind::Email, index: 0 } });
    assert!(d.is_ok(), "codes may still be sent: {d:?}");
    // The initiating agent cannot co-sign; a senior is not enough for highest.
    assert_eq!(
        s.handle(WorkflowEvent::CoSigned { at: NOW, signature: co_sig(&s, "ALICE", AgentTier::Admin) }).unwrap_err(),
        WorkflowError::CoSignature(crate::policy::AuthorityRefusal::CoSignerIsAgent)
    );
    assert!(matches!(
        s.handle(WorkflowEvent::CoSigned { at: NOW, signature: co_sig(&s, "carol", AgentTier::Senior) }),
        Err(WorkflowError::CoSignature(_))
    ));
    let digest = s.approval_digest();
    s.handle(WorkflowEvent::CoSigned { at: NOW, signature: co_sig(&s, "bob", AgentTier::Admin) }).unwrap();
    let all = finish(&mut s, after(30));
    let intent =
        all.iter().find_map(|d| if let Decision::WriteIntent { facts } = d { Some(facts) } else { None }).unwrap();
    let co = intent.co_signer.as_ref().unwrap();
    assert_eq!((co.username.as_str(), co.tier), ("bob", AgentTier::Admin));
    assert_eq!(intent.approvals[0].manager, "mboss");
    // The offline verifier recomputes the digest bob signed from the intent's facts alone.
    let json = serde_json::to_value(intent.as_ref()).unwrap();
    let stated = crate::verification::co_signature::approval_of_intent(&json).unwrap().unwrap();
    assert_eq!((stated.digest, stated.key_id_hex.as_str()), (digest, co.key_id.as_str()));
    // A fact the co-signer approved, changed, no longer gives their digest.
    let mut changed = json.clone();
    changed["target"]["username"] = "jdoe2".into();
    changed["co_signer"]["digest"] = hex::encode([0u8; 32]).into();
    assert!(crate::verification::co_signature::approval_of_intent(&changed).is_err());
    changed["co_signer"]["digest"] = json["co_signer"]["digest"].clone();
    assert_eq!(
        crate::verification::co_signature::approval_of_intent(&changed),
        Err(crate::verification::co_signature::ApprovalFactsError::DigestMismatch)
    );
}

#[test]
fn request_co_signature_is_emitted_when_only_it_is_missing() {
    let (mut s, _) = open(request(AccountTier::Highest, AgentTier::Admin, walk_up()));
    s.handle(WorkflowEvent::IdInspected { at: NOW, inspection: id_ok() }).unwrap();
    passed(&mut s, NOW, Method::Totp);
    let d = s.handle(WorkflowEvent::ManagerApprovalRequested { at: NOW }).unwrap();
    assert!(matches!(d[0], Decision::RequestManagerApproval { .. }));
    let response = ManagerResponse {
        approver: "mboss".into(),
        via_address: "mboss@example.com".into(),
        approved: true,
        decision_note: None,
    };
    let d = s.handle(WorkflowEvent::ManagerResponded { at: NOW, response }).unwrap();
    assert!(d.iter().any(|d| matches!(d, Decision::RequestCoSignature { min_tier: AgentTier::Admin, digest } if *digest == hex::encode(s.approval_digest()))), "{d:?}");
}

#[test]
fn the_managers_denial_ends_the_request_with_a_refusal_record() {
    let (mut s, _) = open(request(AccountTier::Highest, AgentTier::Admin, walk_up()));
    s.handle(WorkflowEvent::ManagerApprovalRequested { at: NOW }).unwrap();
    let response = ManagerResponse {
        approver: "mboss".into(),
        via_address: "mboss@example.com".into(),
        approved: false,
        decision_note: Some("signed".into()),
    };
    let d = s.handle(WorkflowEvent::ManagerResponded { at: NOW, response }).unwrap();
    assert_eq!(s.phase(), Phase::Refused);
    let Some(Decision::WriteRecord { facts }) = d.iter().find(|d| matches!(d, Decision::WriteRecord { .. })) else {
        panic!("{d:?}")
    };
    assert_eq!(facts.kind, FactsKind::Refusal);
    assert!(matches!(
        &facts.steps.last().unwrap().detail,
        crate::workflow::facts::StepDetail::Manager { signed_decision: Some(n), .. } if n == "signed"
    ));
    assert!(d.iter().any(|d| matches!(d, Decision::Refuse { refusal: Refusal::ManagerDenied, .. })), "{d:?}");
    assert!(!d.iter().any(|d| matches!(d, Decision::NeedSteps { .. })), "nothing more is asked: {d:?}");
    assert!(s.handle(WorkflowEvent::ManagerApprovalRequested { at: NOW }).is_err(), "it cannot be asked again");
}

#[test]
fn id_inspection_only_in_person_and_expired_documents_fail() {
    let (mut s, _) = open(request(AccountTier::Standard, AgentTier::Junior, walk_up()));
    let mut expired = id_ok();
    expired.expiry = "2026-11-24".into();
    s.handle(WorkflowEvent::IdInspected { at: NOW, inspection: expired }).unwrap();
    assert!(!s.passed().contains(&Method::GovernmentId));
    let mut ctx = walk_up();
    ctx.channel = Channel::Email;
    let (mut s, _) = open(request(AccountTier::Standard, AgentTier::Senior, ctx));
    assert_eq!(
        s.handle(WorkflowEvent::IdInspected { at: NOW, inspection: id_ok() }).unwrap_err(),
        WorkflowError::NotInPerson
    );
}

#[test]
fn highest_by_phone_is_refused_in_person_required() {
    let mut ctx = walk_up();
    ctx.channel = Channel::Phone;
    let (s, d) = open(request(AccountTier::Privileged, AgentTier::Admin, ctx));
    assert_eq!(s.effective_tier(), AccountTier::Highest);
    assert!(matches!(d.last(), Some(Decision::Refuse { refusal: Refusal::InPersonRequired, .. })));
}

#[test]
fn repeated_and_failed_steps_never_count_twice() {
    let (mut s, _) = open(request(AccountTier::Standard, AgentTier::Junior, walk_up()));
    s.handle(WorkflowEvent::TotpChecked {
        at: NOW,
        verdict: Verdict::Failed(FailReason::WrongCode),
        accepted_step: None,
    })
    .unwrap();
    assert!(s.passed().is_empty());
    passed(&mut s, NOW, Method::Totp);
    assert_eq!(
        s.handle(WorkflowEvent::TotpChecked { at: NOW, verdict: Verdict::Passed, accepted_step: Some(2) }).unwrap_err(),
        WorkflowError::AlreadyPassed(Method::Totp)
    );
    assert_eq!(s.requirements().counted_factors(s.passed()), 1);
}

#[test]
fn lockout_after_three_failures_notifies_security_and_locks() {
    let mut ctx = walk_up();
    ctx.previous_failures = vec![NOW - Duration::hours(30)]; // outside both windows
    let (mut s, _) = open(request(AccountTier::Standard, AgentTier::Junior, ctx));
    let fail = |at| WorkflowEvent::SecurityAnswersChecked { at, verdict: Verdict::Failed(FailReason::WrongAnswer) };
    s.handle(fail(NOW)).unwrap();
    // A callback that reaches nobody is not evidence against the requester.
    s.handle(WorkflowEvent::CallbackRequested { at: NOW }).unwrap();
    s.handle(WorkflowEvent::CallbackReported {
        at: NOW,
        report: CallbackReport { reached_account_holder: false, holder_confirmed_request: false },
    })
    .unwrap();
    s.handle(fail(after(1))).unwrap();
    assert_eq!(s.phase(), Phase::Verifying);
    let d = s.handle(fail(after(2))).unwrap();
    assert_eq!(s.phase(), Phase::LockedOut);
    let until = after(2) + Duration::hours(4);
    let flag_until = until + Duration::days(30);
    assert!(d.contains(&Decision::LockVerification { username: "jdoe".into(), until, flag_until }));
    assert!(d.iter().any(
        |d| matches!(d, Decision::Notify { notification } if notification.recipients == [Recipient::SecurityTeam])
    ));
    assert!(d.iter().any(|d| matches!(d, Decision::WriteRecord { facts } if facts.kind == FactsKind::Lockout)));
    assert!(matches!(d.last(), Some(Decision::Refuse { explanation, .. }) if explanation.contains("emergency path")));
    assert!(s
        .handle(WorkflowEvent::TotpChecked { at: after(3), verdict: Verdict::Passed, accepted_step: Some(1) })
        .is_err());
}

#[test]
fn locked_account_is_refused_and_admin_emergency_path_is_audited() {
    let mut req = request(AccountTier::Standard, AgentTier::Senior, walk_up());
    req.account.verification_locked_until = Some(after(60));
    let (s, d) = open(req.clone());
    assert_eq!(s.phase(), Phase::Refused);
    assert!(matches!(d.last(), Some(Decision::Refuse { refusal: Refusal::Locked { .. }, .. })));
    req.emergency_reason = Some("CFO locked out before payroll run".into());
    let (s, d) = open(req.clone());
    assert!(matches!(d.last(), Some(Decision::Refuse { refusal: Refusal::EmergencyRefused { .. }, .. })), "{d:?}");
    assert_eq!(s.phase(), Phase::Refused);
    req.agent = agent("alice", AgentTier::Admin);
    let (s, d) = open(req.clone());
    assert_eq!(s.phase(), Phase::Verifying);
    assert_eq!(s.effective_tier(), AccountTier::Highest);
    assert!(s.requirements().required_steps.contains(&Method::CoSignature));
    assert!(d.iter().any(|d| matches!(d, Decision::Notify { notification } if matches!(notification.kind, NotificationKind::EmergencyOverride { .. }))));
    assert_eq!(
        s.facts(FactsKind::Intent, NOW).emergency_override.as_deref(),
        Some("CFO locked out before payroll run")
    );
    // Not locked: the emergency path is not available.
    req.account.verification_locked_until = None;
    assert!(matches!(Session::open(&PolicyConfig::default(), req), Err(WorkflowError::BadRequest(_))));
}

#[test]
fn codes_are_rate_limited_and_only_go_to_eligible_contacts() {
    // The recently added address escalates to privileged: a senior agent handles it.
    let mut req = request(AccountTier::Standard, AgentTier::Senior, walk_up());
    req.account.emails.push(contact("new@evil.test", "personal", NOW - Duration::days(1)));
    let (mut s, _) = open(req);
    let email = |index| ContactRef { kind: ContactKind::Email, index };
    assert_eq!(
        s.handle(WorkflowEvent::CodeRequested { at: NOW, to: email(1) }).unwrap_err(),
        WorkflowError::ContactNotEligible
    );
    assert_eq!(
        s.handle(WorkflowEvent::CodeRequested { at: NOW, to: email(9) }).unwrap_err(),
        WorkflowError::ContactNotEligible
    );
    assert!(matches!(
        s.handle(WorkflowEvent::CodeChecked { at: NOW, verdict: Verdict::Passed }),
        Err(WorkflowError::NothingPending(_))
    ));
    let d = s.handle(WorkflowEvent::CodeRequested { at: NOW, to: email(0) }).unwrap();
    assert_eq!(d, [Decision::SendCode { label: "work".into(), to: "jane@example.com".into(), not_after: after(10) }]);
    assert!(matches!(
        s.handle(WorkflowEvent::CodeRequested { at: NOW + Duration::seconds(30), to: email(0) }),
        Err(WorkflowError::CodeRateLimited { .. })
    ));
    s.handle(WorkflowEvent::CodeRequested { at: after(1), to: email(0) }).unwrap();
    s.handle(WorkflowEvent::CodeRequested { at: after(2), to: email(0) }).unwrap();
    assert_eq!(
        s.handle(WorkflowEvent::CodeRequested { at: after(3), to: email(0) }).unwrap_err(),
        WorkflowError::CodeLimitReached
    );
}

#[test]
fn remote_handoff_never_uses_the_request_or_verification_channel() {
    let mut ctx = walk_up();
    ctx.channel = Channel::Phone;
    let mut req = request(AccountTier::Standard, AgentTier::Senior, ctx);
    req.account.emails.push(contact("jane.home@example.org", "personal", datetime!(2021-01-01 0:00 UTC)));
    let (mut s, _) = open(req);
    // Verified by a code to the work address and a callback; manager approves.
    s.handle(WorkflowEvent::CodeRequested { at: NOW, to: ContactRef { kind: ContactKind::Email, index: 0 } }).unwrap();
    s.handle(WorkflowEvent::CodeChecked { at: NOW, verdict: Verdict::Passed }).unwrap();
    do_callback(&mut s, NOW);
    do_manager(&mut s, NOW);
    let all = finish(&mut s, after(10));
    let handoff =
        all.iter().find_map(|d| if let Decision::HandOff { handoff } = d { Some(handoff) } else { None }).unwrap();
    assert_eq!(handoff.channel, HandoffChannel::RegisteredEmail { address: "jane.home@example.org".into() });
}

#[test]
fn remote_request_without_an_independent_channel_is_refused() {
    let mut ctx = walk_up();
    ctx.channel = Channel::Phone;
    let (mut s, _) = open(request(AccountTier::Standard, AgentTier::Senior, ctx));
    s.handle(WorkflowEvent::CodeRequested { at: NOW, to: ContactRef { kind: ContactKind::Email, index: 0 } }).unwrap();
    s.handle(WorkflowEvent::CodeChecked { at: NOW, verdict: Verdict::Passed }).unwrap();
    do_callback(&mut s, NOW);
    do_manager(&mut s, NOW);
    let d = s.handle(WorkflowEvent::ResetRequested { at: after(10) }).unwrap();
    assert!(matches!(d.last(), Some(Decision::Refuse { refusal: Refusal::NoHandoffChannel, .. })));
    assert_eq!(s.phase(), Phase::Refused);
}

#[test]
fn agent_view_needs_policy_and_a_recorded_reason() {
    let mut p = PolicyConfig::default();
    p.handoff.agent_may_view = true;
    p.handoff.agent_view_reason = "kiosk screen broken at site B".into();
    let (mut s, _) = Session::open(&p, request(AccountTier::Standard, AgentTier::Junior, walk_up())).unwrap();
    passed(&mut s, NOW, Method::SecurityAnswers);
    passed(&mut s, NOW, Method::Totp);
    let all = finish(&mut s, NOW);
    let intent =
        all.iter().find_map(|d| if let Decision::WriteIntent { facts } = d { Some(facts) } else { None }).unwrap();
    let h = intent.handoff.as_ref().unwrap();
    assert!(h.agent_may_view);
    assert_eq!(h.agent_view_reason.as_deref(), Some("kiosk screen broken at site B"));
}

#[test]
fn manager_cannot_be_the_agent_and_wrong_approver_fails() {
    let mut req = request(AccountTier::Privileged, AgentTier::Senior, walk_up());
    req.agent = agent("mboss", AgentTier::Senior);
    let (s, d) = open(req);
    assert_eq!(s.phase(), Phase::Refused, "{d:?}");
    let (mut s, _) = open(request(AccountTier::Privileged, AgentTier::Senior, walk_up()));
    s.handle(WorkflowEvent::ManagerApprovalRequested { at: NOW }).unwrap();
    let response = ManagerResponse {
        approver: "mboss".into(),
        via_address: "other@example.com".into(),
        approved: true,
        decision_note: None,
    };
    s.handle(WorkflowEvent::ManagerResponded { at: NOW, response }).unwrap();
    assert!(!s.passed().contains(&Method::ManagerApproval));
}

#[test]
fn time_never_goes_backwards_and_errors_leave_the_session_unchanged() {
    let (mut s, _) = open(request(AccountTier::Standard, AgentTier::Junior, walk_up()));
    passed(&mut s, after(5), Method::SecurityAnswers);
    let before = format!("{:?}", s.facts(FactsKind::Intent, NOW));
    assert_eq!(
        s.handle(WorkflowEvent::TotpChecked { at: after(4), verdict: Verdict::Passed, accepted_step: Some(1) })
            .unwrap_err(),
        WorkflowError::TimeWentBackwards
    );
    assert!(s
        .handle(WorkflowEvent::EmployeeRecordGiven {
            at: after(6),
            employee_id: "".into(),
            date_of_hire: "2019-03-04".into()
        })
        .is_err());
    assert_eq!(before, format!("{:?}", s.facts(FactsKind::Intent, NOW)));
}

#[test]
fn facts_hold_no_typed_values_and_serialise() {
    let (mut s, _) = open(request(AccountTier::Standard, AgentTier::Junior, walk_up()));
    s.handle(WorkflowEvent::EmployeeRecordGiven {
        at: NOW,
        employee_id: "E9999-typed".into(),
        date_of_hire: "2001-01-01".into(),
    })
    .unwrap();
    let json = serde_json::to_string(&s.facts(FactsKind::Intent, NOW)).unwrap();
    assert!(!json.contains("E9999") && !json.contains("2001-01-01"), "{json}");
    assert!(json.contains("\"verdict\":{\"result\":\"failed\",\"reason\":\"mismatch\"}"), "{json}");
}

#[test]
fn cancel_writes_a_record_and_ends_the_session() {
    let (mut s, _) = open(request(AccountTier::Standard, AgentTier::Junior, walk_up()));
    assert!(matches!(s.handle(WorkflowEvent::Cancelled { at: NOW, reason: "".into() }), Err(WorkflowError::Input(_))));
    let d = s.handle(WorkflowEvent::Cancelled { at: NOW, reason: "holder said: this wasn't me".into() }).unwrap();
    assert!(
        matches!(&d[..], [Decision::WriteRecord { facts }] if matches!(facts.outcome, RequestOutcome::Cancelled { .. }))
    );
    assert_eq!(s.phase(), Phase::Cancelled);
}

#[test]
fn open_rejects_lookalike_and_malformed_identifiers() {
    let mut req = request(AccountTier::Standard, AgentTier::Junior, walk_up());
    req.account.username = "jd\u{043E}e".into();
    assert!(matches!(Session::open(&PolicyConfig::default(), req), Err(WorkflowError::BadRequest(_))));
    let mut req = request(AccountTier::Standard, AgentTier::Junior, walk_up());
    req.request_id = String::new();
    assert!(Session::open(&PolicyConfig::default(), req).is_err());
}

#[test]
fn on_the_emergency_path_one_failure_ends_the_session() {
    let mut req = request(AccountTier::Standard, AgentTier::Admin, walk_up());
    req.account.verification_locked_until = Some(after(60));
    req.emergency_reason = Some("payroll run blocked".into());
    let (mut s, _) = open(req);
    assert_eq!(s.phase(), Phase::Verifying);
    let d = s
        .handle(WorkflowEvent::SecurityAnswersChecked { at: NOW, verdict: Verdict::Failed(FailReason::WrongAnswer) })
        .unwrap();
    assert_eq!(s.phase(), Phase::LockedOut);
    assert!(d.iter().any(|d| matches!(d, Decision::LockVerification { .. })));
}

#[test]
fn status_shows_tiers_reasons_and_what_is_missing() {
    let mut ctx = walk_up();
    ctx.stated.location = Some("Paris".into());
    let (mut s, _) = open(request(AccountTier::Standard, AgentTier::Senior, ctx));
    passed(&mut s, NOW, Method::Totp);
    let st = s.status();
    assert_eq!((st.base_tier, st.effective_tier), (AccountTier::Standard, AccountTier::Privileged));
    assert!(st.escalations[0].reason.contains("location"));
    assert_eq!(st.passed, [Method::Totp]);
    assert!(st.missing.contains(&crate::policy::Missing::Step { method: Method::ManagerApproval }));
    assert_eq!(st.earliest_reset, after(10));
    assert_eq!(st.co_signer_min_tier, None);
    let json = serde_json::to_string(&st).unwrap();
    assert!(json.contains("\"effective_tier\":\"privileged\""), "{json}");
}

#[test]
fn implausible_times_are_refused_not_overflowed() {
    let mut req = request(AccountTier::Standard, AgentTier::Junior, walk_up());
    req.at = datetime!(9999-12-31 23:59 UTC);
    assert_eq!(Session::open(&PolicyConfig::default(), req).unwrap_err(), WorkflowError::ImplausibleTime);
    let (mut s, _) = open(request(AccountTier::Standard, AgentTier::Junior, walk_up()));
    let far = datetime!(9999-12-31 23:59 UTC);
    assert_eq!(
        s.handle(WorkflowEvent::CodeRequested { at: far, to: ContactRef { kind: ContactKind::Email, index: 0 } })
            .unwrap_err(),
        WorkflowError::ImplausibleTime
    );
}

#[test]
fn old_steps_must_be_redone_and_the_cooling_off_wait_does_not_age_them() {
    // Standard: no cooling-off. Steps at NOW; 61 minutes later they are too old.
    let (mut s, _) = open(request(AccountTier::Standard, AgentTier::Junior, walk_up()));
    passed(&mut s, NOW, Method::SecurityAnswers);
    passed(&mut s, after(30), Method::Totp);
    let d = s.handle(WorkflowEvent::ResetRequested { at: after(61) }).unwrap();
    assert!(
        matches!(&d[..], [Decision::StepsExpired { methods, .. }, Decision::NeedSteps { .. }] if methods == &[Method::SecurityAnswers]),
        "{d:?}"
    );
    assert_eq!(s.phase(), Phase::Verifying);
    assert!(s.missing().iter().any(|m| matches!(m, crate::policy::Missing::Factors { .. })), "{:?}", s.missing());
    passed(&mut s, after(62), Method::SecurityAnswers);
    assert!(matches!(
        s.handle(WorkflowEvent::ResetRequested { at: after(62) }).unwrap()[0],
        Decision::WriteIntent { .. }
    ));

    // The session's age limit (240 minutes) drops every step, however recent.
    let (mut s, _) = open(request(AccountTier::Standard, AgentTier::Junior, walk_up()));
    passed(&mut s, after(200), Method::SecurityAnswers);
    passed(&mut s, after(230), Method::Totp);
    let d = s.handle(WorkflowEvent::ResetRequested { at: after(241) }).unwrap();
    assert!(matches!(&d[0], Decision::StepsExpired { methods, .. } if methods.len() == 2), "{d:?}");

    // Privileged: 10 minutes of cooling-off. Steps at NOW, reset at 65 minutes: 55
    // minutes of age outside the wait, so they still count.
    let mut p = PolicyConfig::default();
    p.freshness.step_max_age_minutes = 60;
    let (mut s, _) = Session::open(&p, request(AccountTier::Privileged, AgentTier::Senior, walk_up())).unwrap();
    passed(&mut s, NOW, Method::Totp);
    s.handle(WorkflowEvent::IdInspected { at: NOW, inspection: id_ok() }).unwrap();
    do_manager(&mut s, NOW);
    let d = s.handle(WorkflowEvent::ResetRequested { at: after(65) }).unwrap();
    assert!(matches!(d[0], Decision::WriteIntent { .. }), "{d:?}");
}

#[test]
fn expired_steps_take_the_co_signature_with_them_and_the_verifier_sees_the_second() {
    use crate::verification::co_signature::approval_of_intent;
    let (mut s, _) = open(request(AccountTier::Highest, AgentTier::Admin, walk_up()));
    let verify_all = |s: &mut Session, at: OffsetDateTime| {
        s.handle(WorkflowEvent::IdInspected { at, inspection: id_ok() }).unwrap();
        passed(s, at, Method::Totp);
        do_manager(s, at);
        s.handle(WorkflowEvent::CoSigned { at, signature: co_sig(s, "bob", AgentTier::Admin) }).unwrap();
    };
    verify_all(&mut s, NOW);
    // 30 minutes of cooling-off do not count; 61 more do.
    let d = s.handle(WorkflowEvent::ResetRequested { at: after(91) }).unwrap();
    assert!(matches!(&d[0], Decision::StepsExpired { methods, .. } if methods.contains(&Method::CoSignature)), "{d:?}");
    assert!(s.co_signer().is_none());
    verify_all(&mut s, after(92));
    let all = finish(&mut s, after(92));
    let intent =
        all.iter().find_map(|d| if let Decision::WriteIntent { facts } = d { Some(facts) } else { None }).unwrap();
    // The verifier recomputes the second co-signer's digest from the facts (the expired
    // steps and the first co-signature are in them too).
    let stated = approval_of_intent(&serde_json::to_value(intent.as_ref()).unwrap()).unwrap().unwrap();
    assert_eq!(hex::encode(stated.digest), intent.co_signer.as_ref().unwrap().digest);
    assert_eq!(intent.steps.iter().filter(|st| st.method == Method::CoSignature).count(), 3, "passed, expired, passed");
}
