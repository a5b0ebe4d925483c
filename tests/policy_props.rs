//! Property tests of the verification policy and the reset engine, over random
//! requests and random event sequences (1,000 cases per property).
//!
//! Each property runs through an explicit `TestRunner` so that, besides the property
//! itself, the test can assert that the interesting outcome (a reset executed, a
//! co-signature accepted) was actually reached: a property over cases that never get
//! there would prove nothing.

mod fixtures;

use std::cell::Cell;
use std::collections::BTreeSet;

use fixtures::{jane_doe, point, LONG_AGO};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use resetdesk::directory::Account;
use resetdesk::policy::requirements::independent_count;
use resetdesk::policy::risk::assess;
use resetdesk::policy::{ActingAgent, Channel, Method, PolicyConfig, RequestContext, StatedDetails};
use resetdesk::tier::{AccountTier, AgentTier};
use resetdesk::verification::callback::CallbackReport;
use resetdesk::verification::co_signature::CoSignature;
use resetdesk::verification::government_id::{DocumentType, IdInspection};
use resetdesk::verification::manager_approval::ManagerResponse;
use resetdesk::verification::{FailReason, Verdict};
use resetdesk::workflow::{ContactKind, ContactRef, Decision, FactsKind, OpenRequest, Phase, Session, WorkflowEvent};
use time::macros::{date, datetime};
use time::{Duration, OffsetDateTime};

const CASES: u32 = 1000;
/// Wednesday 10:00 UTC: inside default business hours.
const T0: OffsetDateTime = datetime!(2026-11-25 10:00 UTC);
const AGENT: &str = "alice";
const AGENT_KEY: [u8; 32] = [0xA1; 32];

fn runner() -> TestRunner {
    TestRunner::new(Config { cases: CASES, failure_persistence: None, ..Config::default() })
}

/// Risk signals of a request; every combination is generated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Signals {
    recent_contact_change: bool,
    recent_reset: bool,
    earlier_failure: bool,
    outside_hours: bool,
    phone: bool,
    email: bool,
    mismatch: bool,
    flagged: bool,
}

impl Signals {
    fn union(self, o: Signals) -> Signals {
        Signals {
            recent_contact_change: self.recent_contact_change | o.recent_contact_change,
            recent_reset: self.recent_reset | o.recent_reset,
            earlier_failure: self.earlier_failure | o.earlier_failure,
            outside_hours: self.outside_hours | o.outside_hours,
            // One channel at a time: phone and e-mail rank alike, both below walk-up.
            phone: self.phone | o.phone,
            email: (self.email | o.email) && !(self.phone | o.phone),
            mismatch: self.mismatch | o.mismatch,
            flagged: self.flagged | o.flagged,
        }
    }

    fn start(self) -> OffsetDateTime {
        if self.outside_hours {
            datetime!(2026-11-28 10:00 UTC) // Saturday
        } else {
            T0
        }
    }
}

fn signals() -> impl Strategy<Value = Signals> {
    proptest::array::uniform8(any::<bool>()).prop_map(|b| Signals {
        recent_contact_change: b[0],
        recent_reset: b[1],
        earlier_failure: b[2],
        outside_hours: b[3],
        phone: b[4],
        email: b[5] && !b[4],
        mismatch: b[6],
        flagged: b[7],
    })
}

fn account(tier: AccountTier, s: Signals) -> Account {
    let now = s.start();
    let mut account = jane_doe(tier);
    account.emails =
        vec![point("jane@example.com", "work", LONG_AGO), point("jane@home.example", "personal", LONG_AGO)];
    account.phones = vec![
        point("+49 30 1234567", "office", LONG_AGO),
        point("+49 170 555", "mobile", if s.recent_contact_change { now - Duration::days(2) } else { LONG_AGO }),
    ];
    account.flagged = s.flagged;
    account
}

fn manager() -> Account {
    let mut m = account(AccountTier::Standard, Signals::default());
    m.username = "mboss".into();
    m.emails = vec![point("mboss@example.com", "work", datetime!(2020-01-01 0:00 UTC))];
    m
}

fn context(s: Signals) -> RequestContext {
    let now = s.start();
    RequestContext {
        channel: if s.phone {
            Channel::Phone
        } else if s.email {
            Channel::Email
        } else {
            Channel::WalkUp
        },
        stated: StatedDetails { department: s.mismatch.then(|| "Sales".into()), ..Default::default() },
        previous_resets: if s.recent_reset { vec![now - Duration::hours(2)] } else { vec![] },
        previous_failures: if s.earlier_failure { vec![now - Duration::hours(1)] } else { vec![] },
        cross_desk: Default::default(),
    }
}

fn open_request(tier: AccountTier, agent_tier: AgentTier, s: Signals) -> OpenRequest {
    OpenRequest {
        request_id: "req-prop".into(),
        at: s.start(),
        agent: ActingAgent {
            username: AGENT.into(),
            employee_id: "E-agent".into(),
            tier: agent_tier,
            groups: vec![],
            key_id: AGENT_KEY,
        },
        account: account(tier, s),
        manager: Some(manager()),
        context: context(s),
        directory_backend: "embedded".into(),
        emergency_reason: None,
    }
}

/// An abstract action; the harness turns it into a concrete event at run time.
#[derive(Debug, Clone)]
enum Action {
    Answers(bool),
    Employee(bool),
    Totp(bool),
    RequestCode(bool, usize),
    CheckCode(bool),
    RequestCallback,
    ReportCallback(bool, bool),
    RequestManager,
    ManagerAnswer { right_person: bool, right_address: bool, approved: bool },
    Id(bool),
    CoSign { who: usize, agent_key: bool, tier: AgentTier, verified: bool, right_digest: bool },
    Reset,
    IntentRecorded,
    Directory(bool),
    Cancel,
}

fn tier_of(i: u8) -> AgentTier {
    AgentTier::ALL[usize::from(i % 3)]
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        3 => any::<bool>().prop_map(Action::Answers),
        2 => any::<bool>().prop_map(Action::Employee),
        3 => any::<bool>().prop_map(Action::Totp),
        2 => (any::<bool>(), 0..3usize).prop_map(|(e, i)| Action::RequestCode(e, i)),
        3 => any::<bool>().prop_map(Action::CheckCode),
        2 => Just(Action::RequestCallback),
        3 => (any::<bool>(), any::<bool>()).prop_map(|(a, b)| Action::ReportCallback(a, b)),
        2 => Just(Action::RequestManager),
        3 => (any::<bool>(), any::<bool>(), any::<bool>()).prop_map(|(p, a, ok)| Action::ManagerAnswer { right_person: p || a, right_address: a || !p, approved: ok }),
        3 => any::<bool>().prop_map(Action::Id),
        3 => (0..4usize, any::<bool>(), any::<u8>(), any::<bool>(), any::<bool>())
            .prop_map(|(who, k, t, v, d)| Action::CoSign { who, agent_key: k && who == 3, tier: tier_of(t), verified: v || who > 0, right_digest: d || who > 0 }),
        5 => Just(Action::Reset),
        5 => Just(Action::IntentRecorded),
        3 => any::<bool>().prop_map(Action::Directory),
        1 => Just(Action::Cancel),
    ]
}

/// A scripted walk through every step in a good order, each step passing or not at
/// random, so that deep states (co-signature, reset) are reached often. Random noise
/// goes before and after it; the invariants are checked on every event either way.
fn script(ok: &[bool], who: usize) -> Vec<(Action, i64)> {
    let co_signer = if ok[10] { 0 } else { who };
    vec![
        (Action::RequestCallback, 1),
        (Action::ReportCallback(ok[0], true), 1),
        (Action::Answers(ok[1]), 1),
        (Action::Employee(ok[2]), 1),
        (Action::Totp(ok[3]), 1),
        (Action::RequestCode(true, 0), 1),
        (Action::CheckCode(ok[4]), 1),
        (Action::RequestManager, 1),
        (Action::ManagerAnswer { right_person: ok[5], right_address: true, approved: true }, 1),
        (Action::Id(ok[6]), 1),
        (
            Action::CoSign {
                who: co_signer,
                agent_key: co_signer == 3,
                tier: if ok[7] { AgentTier::Admin } else { AgentTier::Senior },
                verified: true,
                right_digest: true,
            },
            1,
        ),
        (Action::Reset, if ok[8] { 31 } else { 1 }),
        (Action::IntentRecorded, 0),
        (Action::Directory(ok[9]), 0),
    ]
}

fn steps() -> impl Strategy<Value = Vec<(Action, i64)>> {
    let noise = || proptest::collection::vec((action(), 0..12i64), 0..16);
    let mostly_ok = proptest::collection::vec(prop::bool::weighted(0.85), 11);
    (noise(), mostly_ok, 0..4usize, noise()).prop_map(|(mut before, ok, who, after)| {
        before.extend(script(&ok, who));
        before.extend(after);
        before
    })
}

fn id(valid: bool) -> IdInspection {
    IdInspection {
        document_type: DocumentType::Passport,
        issuing_authority: "Germany".into(),
        number_last4: "1234".into(),
        expiry: if valid { "2031-01-01".into() } else { "2020-01-01".into() },
        name_matches_record: true,
        photo_matches_person: true,
        security_features_checked: true,
        template_and_format_ok: true,
        no_tampering: true,
    }
}

fn verdict(pass: bool) -> Verdict {
    if pass {
        Verdict::Passed
    } else {
        Verdict::Failed(FailReason::WrongCode)
    }
}

fn event(session: &Session, action: &Action, at: OffsetDateTime, totp_step: &mut u64) -> WorkflowEvent {
    match action.clone() {
        Action::Answers(p) => WorkflowEvent::SecurityAnswersChecked {
            at,
            verdict: if p { Verdict::Passed } else { Verdict::Failed(FailReason::WrongAnswer) },
        },
        Action::Employee(p) => WorkflowEvent::EmployeeRecordGiven {
            at,
            employee_id: if p { "E1234".into() } else { "E4321".into() },
            date_of_hire: "2019-03-04".into(),
        },
        Action::Totp(p) => {
            *totp_step += 1;
            WorkflowEvent::TotpChecked { at, verdict: verdict(p), accepted_step: p.then_some(*totp_step) }
        }
        Action::RequestCode(email, index) => WorkflowEvent::CodeRequested {
            at,
            to: ContactRef { kind: if email { ContactKind::Email } else { ContactKind::Phone }, index },
        },
        Action::CheckCode(p) => WorkflowEvent::CodeChecked { at, verdict: verdict(p) },
        Action::RequestCallback => WorkflowEvent::CallbackRequested { at },
        Action::ReportCallback(reached, confirmed) => WorkflowEvent::CallbackReported {
            at,
            report: CallbackReport { reached_account_holder: reached, holder_confirmed_request: confirmed },
        },
        Action::RequestManager => WorkflowEvent::ManagerApprovalRequested { at },
        Action::ManagerAnswer { right_person, right_address, approved } => WorkflowEvent::ManagerResponded {
            at,
            response: ManagerResponse {
                approver: if right_person { "mboss".into() } else { "mallory".into() },
                via_address: if right_address { "mboss@example.com".into() } else { "mallory@evil.test".into() },
                approved,
                decision_note: None,
            },
        },
        Action::Id(valid) => WorkflowEvent::IdInspected { at, inspection: id(valid) },
        Action::CoSign { who, agent_key, tier, verified, right_digest } => {
            let name = ["bob", "carol", "jdoe", "ALICE"][who];
            let mut der = vec![0x30, 70];
            der.extend([7u8; 70]);
            WorkflowEvent::CoSigned {
                at,
                signature: CoSignature {
                    username: name.into(),
                    employee_id: format!("E-{name}"),
                    tier,
                    key_id: if agent_key { AGENT_KEY } else { [who as u8 + 1; 32] },
                    digest: if right_digest { session.approval_digest() } else { [0; 32] },
                    signature_der: der,
                    verified_against_certificate: verified,
                },
            }
        }
        Action::Reset => WorkflowEvent::ResetRequested { at },
        Action::IntentRecorded => WorkflowEvent::IntentRecorded { at, seq: 1, entry_hash: [9; 32] },
        Action::Directory(ok) => {
            WorkflowEvent::DirectoryResult { at, result: if ok { Ok(()) } else { Err("refused".into()) } }
        }
        Action::Cancel => WorkflowEvent::Cancelled { at, reason: "requester left".into() },
    }
}

/// What one run observed.
#[derive(Default)]
struct Run {
    executed: bool,
    co_signed: bool,
}

/// Drive a session with the actions, checking the engine's invariants after every event.
fn drive(policy: &PolicyConfig, req: OpenRequest, actions: &[(Action, i64)]) -> Result<Run, TestCaseError> {
    let base_tier = req.account.tier;
    let agent_tier = req.agent.tier;
    let (mut session, first) = Session::open(policy, req).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let acts_at_open = first.iter().any(|d| matches!(d, Decision::ExecuteReset { .. } | Decision::WriteIntent { .. }));
    prop_assert!(!acts_at_open);
    prop_assert!(session.effective_tier() >= base_tier);
    let mut at = session.earliest_reset() - session.requirements().cooling_off;
    let mut run = Run::default();
    let mut intent_written = false;
    let mut totp_step = 0;
    for (action, minutes) in actions {
        at += Duration::minutes(*minutes);
        let ev = event(&session, action, at, &mut totp_step);
        let is_intent_recorded = matches!(ev, WorkflowEvent::IntentRecorded { .. });
        let before_passed = session.passed().clone();
        let Ok(decisions) = session.handle(ev) else {
            // Rejected events change nothing.
            prop_assert_eq!(session.passed(), &before_passed);
            continue;
        };
        for d in &decisions {
            match d {
                Decision::WriteIntent { facts } => {
                    prop_assert_eq!(facts.kind, FactsKind::Intent);
                    prop_assert!(session.requirements().satisfied_by(session.passed()));
                    intent_written = true;
                }
                Decision::ExecuteReset { password, .. } => {
                    // Only in answer to a durable intent record.
                    prop_assert!(is_intent_recorded && intent_written);
                    prop_assert!(password.must_change);
                    // Every required step of the effective tier (and every added one) passed.
                    let own = policy.requirements(session.effective_tier());
                    prop_assert!(session.requirements().at_least_as_strict_as(&own));
                    prop_assert!(session.requirements().satisfied_by(session.passed()));
                    prop_assert!(own.satisfied_by(session.passed()));
                    // Never before the cooling-off ends, never by a lower agent tier.
                    prop_assert!(at >= session.earliest_reset());
                    prop_assert!(agent_tier.default_max_account_tier() >= base_tier);
                    prop_assert!(agent_tier.default_max_account_tier() >= session.effective_tier());
                    run.executed = true;
                }
                _ => {}
            }
        }
        // A step counts once, and only when it passed (and did not expire since: then it
        // may pass again).
        let facts = session.facts(FactsKind::Intent, at);
        let mut distinct: BTreeSet<Method> = BTreeSet::new();
        for s in &facts.steps {
            match s.verdict {
                Verdict::Passed => prop_assert!(distinct.insert(s.method), "a method passed twice"),
                Verdict::Failed(FailReason::StepExpired) => {
                    prop_assert!(distinct.remove(&s.method), "expired unpassed")
                }
                Verdict::Failed(_) => {}
            }
        }
        prop_assert_eq!(&distinct, session.passed());
        let counted = session.requirements().counted_factors(session.passed());
        prop_assert_eq!(
            counted,
            independent_count(
                session.passed().iter().copied().filter(|m| session.requirements().factor_methods.contains(m))
            )
        );
        // The co-signer is never the initiating agent.
        if let Some(co) = session.co_signer() {
            prop_assert!(!co.username.eq_ignore_ascii_case(AGENT));
            prop_assert_ne!(co.key_id.clone(), hex::encode(AGENT_KEY));
            prop_assert!(!co.username.eq_ignore_ascii_case("jdoe"));
            run.co_signed = true;
        }
    }
    if session.phase() == Phase::Succeeded {
        prop_assert!(run.executed);
    }
    Ok(run)
}

fn account_tier() -> impl Strategy<Value = AccountTier> {
    prop_oneof![Just(AccountTier::Standard), Just(AccountTier::Privileged), Just(AccountTier::Highest)]
}

fn agent_tier() -> impl Strategy<Value = AgentTier> {
    prop_oneof![Just(AgentTier::Junior), Just(AgentTier::Senior), Just(AgentTier::Admin)]
}

#[test]
fn execute_reset_needs_every_required_step_and_steps_count_once() {
    let policy = PolicyConfig::default();
    let (executed, co_signed) = (Cell::new(0u32), Cell::new(0u32));
    let strategy = (account_tier(), agent_tier(), signals(), steps());
    runner()
        .run(&strategy, |(tier, agent, s, actions)| {
            let run = drive(&policy, open_request(tier, agent, s), &actions)?;
            executed.set(executed.get() + u32::from(run.executed));
            co_signed.set(co_signed.get() + u32::from(run.co_signed));
            Ok(())
        })
        .unwrap();
    // The property is not vacuous: resets and co-signatures were reached.
    let (executed, co_signed) = (executed.get(), co_signed.get());
    eprintln!("reached the reset in {executed} and a co-signature in {co_signed} of {CASES} cases");
    assert!(executed > 0 && co_signed > 0, "executed {executed}, co-signed {co_signed}");
}

#[test]
fn quiet_walk_up_requests_reach_the_reset_often() {
    // Same property on requests without risk signals, where resets are common.
    let policy = PolicyConfig::default();
    let executed = Cell::new(0u32);
    let strategy = (account_tier(), agent_tier(), steps());
    runner()
        .run(&strategy, |(tier, agent, actions)| {
            let run = drive(&policy, open_request(tier, agent, Signals::default()), &actions)?;
            executed.set(executed.get() + u32::from(run.executed));
            Ok(())
        })
        .unwrap();
    let executed = executed.get();
    assert!(executed >= CASES / 50, "only {executed} of {CASES} cases reached the reset");
}

#[test]
fn junior_agents_never_reach_execute_for_privileged_or_highest_accounts() {
    let policy = PolicyConfig::default();
    let tiers = prop_oneof![Just(AccountTier::Privileged), Just(AccountTier::Highest)];
    runner()
        .run(&(tiers, signals(), steps()), |(tier, s, actions)| {
            let run = drive(&policy, open_request(tier, AgentTier::Junior, s), &actions)?;
            prop_assert!(!run.executed);
            Ok(())
        })
        .unwrap();
}

#[test]
fn escalation_never_lowers_requirements() {
    let policy = PolicyConfig::default();
    runner()
        .run(&(account_tier(), signals(), signals()), |(tier, s, extra)| {
            let more = s.union(extra);
            // Compare at the same instant so only the signals differ.
            let mut s_at_more_time = s;
            s_at_more_time.outside_hours = more.outside_hours;
            let a = assess(&policy, &account(tier, s_at_more_time), &context(s_at_more_time), more.start());
            let b = assess(&policy, &account(tier, more), &context(more), more.start());
            prop_assert!(a.effective_tier >= tier && b.effective_tier >= tier);
            prop_assert!(b.effective_tier >= a.effective_tier);
            prop_assert!(b.requirements(&policy).at_least_as_strict_as(&a.requirements(&policy)));
            prop_assert!(a.requirements(&policy).at_least_as_strict_as(&policy.requirements(tier)));
            prop_assert!(b.excluded_contacts.is_superset(&a.excluded_contacts));
            Ok(())
        })
        .unwrap();
}

#[test]
fn higher_tiers_are_at_least_as_strict() {
    let policy = PolicyConfig::default();
    for (lower, higher) in
        [(AccountTier::Standard, AccountTier::Privileged), (AccountTier::Privileged, AccountTier::Highest)]
    {
        assert!(policy.requirements(higher).at_least_as_strict_as(&policy.requirements(lower)));
    }
}

fn tier_policy() -> impl Strategy<Value = resetdesk::policy::TierPolicy> {
    let factors = [
        Method::SecurityAnswers,
        Method::EmployeeRecord,
        Method::Totp,
        Method::OneTimeCode,
        Method::Callback,
        Method::GovernmentId,
    ];
    (1..4u8, proptest::array::uniform6(any::<bool>()), any::<bool>(), any::<bool>(), any::<bool>(), 0..120u32).prop_map(
        move |(min_factors, pick, manager_approval, government_id, co_signature, cooling_off_minutes)| {
            resetdesk::policy::TierPolicy {
                min_factors,
                factor_methods: factors.iter().zip(pick).filter(|(_, p)| *p).map(|(m, _)| *m).collect(),
                manager_approval,
                government_id,
                co_signature,
                cooling_off_minutes,
            }
        },
    )
}

#[test]
fn requirements_stay_monotone_under_any_configuration() {
    // Even a configuration that validation would refuse cannot make escalation lower
    // a requirement: requirements are combined with those of every lower tier.
    runner()
        .run(
            &(tier_policy(), tier_policy(), tier_policy(), account_tier(), signals(), signals()),
            |(st, pr, hi, tier, s, extra)| {
                let policy = PolicyConfig { standard: st, privileged: pr, highest: hi, ..PolicyConfig::default() };
                let r = |t| policy.requirements(t);
                prop_assert!(r(AccountTier::Privileged).at_least_as_strict_as(&r(AccountTier::Standard)));
                prop_assert!(r(AccountTier::Highest).at_least_as_strict_as(&r(AccountTier::Privileged)));
                let more = s.union(extra);
                let mut same_time = s;
                same_time.outside_hours = more.outside_hours;
                let a = assess(&policy, &account(tier, same_time), &context(same_time), more.start());
                let b = assess(&policy, &account(tier, more), &context(more), more.start());
                prop_assert!(b.requirements(&policy).at_least_as_strict_as(&a.requirements(&policy)));
                Ok(())
            },
        )
        .unwrap();
}

#[test]
fn bad_input_never_panics() {
    use resetdesk::secret::Secret;
    use resetdesk::verification::{employee_record, government_id, totp};
    use resetdesk::workflow::input::parse_ui_action;
    let text = "(?s).{0,64}|[\\x00-\\x{10FFFF}]{0,8}|\\{\"action\":\"[a-z_]{0,20}\"(,\"[a-z_]{1,12}\":(\"[^\"]{0,10}\"|[0-9]{1,3}|true|null|\\{\\}))?\\}";
    let acc = account(AccountTier::Standard, Signals::default());
    runner()
        .run(&(text, text, text), |(a, b, c)| {
            let _ = parse_ui_action(&a);
            let _ = employee_record::check(&acc, &a, &b);
            let inspection = IdInspection {
                document_type: DocumentType::DrivingLicence,
                issuing_authority: a.clone(),
                number_last4: b.clone(),
                expiry: c.clone(),
                name_matches_record: true,
                photo_matches_person: true,
                security_features_checked: true,
                template_and_format_ok: true,
                no_tampering: true,
            };
            let _ = government_id::check(&inspection, date!(2026 - 11 - 25));
            let _ = totp::verify(&Secret::new(a.clone()), &Secret::new(b.clone()), T0, Some(u64::MAX));
            let _ = resetdesk::password::check(&a, &[&b, &c]);
            let (mut s, _) = Session::open(
                &PolicyConfig::default(),
                open_request(AccountTier::Standard, AgentTier::Junior, Signals::default()),
            )
            .unwrap();
            let _ = s.handle(WorkflowEvent::EmployeeRecordGiven {
                at: T0,
                employee_id: a.clone(),
                date_of_hire: b.clone(),
            });
            let _ = s.handle(WorkflowEvent::Cancelled { at: T0, reason: c.clone() });
            Ok(())
        })
        .unwrap();
}
