//! Verification failures at the desk: each counted failure is a signed record as it
//! happens, so abandoning a session does not erase it; the third within the window
//! locks verification in the directory, flags the account, writes the lockout record
//! and tells the security team. A TOTP code accepted once is refused in a later
//! session. Needs `scripts/pcscd.sh start`; holds the reader lock.

mod cli_support;
mod desk_support;

use desk_support::{at_desk, at_desk_on, totp_json, Backend};
use resetdesk::audit::EventType;
use resetdesk::desk::DeskError;
use resetdesk::directory::Directory;
use resetdesk::policy::RiskRule;
use resetdesk::verification::{FailReason, Verdict};
use resetdesk::workflow::{Decision, Phase, Refusal};
use time::OffsetDateTime;
use virtual_yubikey::lock_readers;

const WRONG_ANSWERS: &str =
    r#"{"action":"security_answers","answers":[{"question":0,"answer":"Rex"},{"question":1,"answer":"Paris"}]}"#;

#[test]
fn three_failures_lock_verification_flag_the_account_and_tell_security() {
    three_failures_lock(Backend::Embedded);
}

/// The same on OpenLDAP: the lock and the flag are ResetDesk's own (the side store),
/// the account in slapd is untouched.
#[test]
fn three_failures_lock_verification_on_slapd_and_the_account_there_is_untouched() {
    three_failures_lock(Backend::Slapd);
}

fn three_failures_lock(backend: Backend) {
    let _lock = lock_readers();
    let Some((site, card, mut alice, mut desk)) = at_desk_on(backend, "alice", "246810") else { return };
    let identity = alice.identity().clone();
    let now = OffsetDateTime::now_utc();

    let (mut run, _) = desk.start_reset(&identity, alice.signer().unwrap(), "cchen", Default::default(), now).unwrap();
    for _ in 0..2 {
        let reply = desk.apply_ui_json(&mut run, WRONG_ANSWERS, alice.signer().unwrap(), now).unwrap();
        assert!(matches!(reply.decisions.as_slice(), [Decision::NeedSteps { .. }]), "{:?}", reply.decisions);
    }
    let types: Vec<EventType> = site.records().iter().map(|r| r.0).collect();
    assert_eq!(
        types,
        [EventType::VerificationFailed, EventType::VerificationFailed],
        "each failure is on record at once"
    );
    assert!(site.backend().entry("cchen").unwrap().verification_locked_until.is_none());

    let reply = desk.apply_ui_json(&mut run, WRONG_ANSWERS, alice.signer().unwrap(), now).unwrap();
    assert_eq!(run.phase(), Phase::LockedOut);
    assert!(reply.decisions.iter().any(|d| matches!(d, Decision::LockVerification { .. })));
    let account = site.backend().entry("cchen").unwrap();
    let until = account.verification_locked_until.expect("verification locked in the directory");
    assert!(until > now && account.flagged, "{account:?}");
    let records = site.records();
    let last = records.last().unwrap();
    assert_eq!(last.0, EventType::Lockout);
    let failed_steps =
        last.1["steps"].as_array().unwrap().iter().filter(|s| s["verdict"]["result"] == "failed").count();
    assert_eq!(failed_steps, 3);
    assert!(site
        .outbox()
        .iter()
        .any(|m| m.recipient == "security@example.com" && m.subject.contains("Verification locked")));
    site.assert_untouched("cchen");

    // A new request for the account is refused while the lock holds, and recorded.
    let (run2, reply) = desk.start_reset(&identity, alice.signer().unwrap(), "cchen", Default::default(), now).unwrap();
    assert_eq!(run2.phase(), Phase::Refused);
    assert!(reply.decisions.iter().any(|d| matches!(d, Decision::Refuse { refusal: Refusal::Locked { .. }, .. })));
    assert_eq!(site.records().last().unwrap().0, EventType::Refusal);
    assert!(site.verify_audit_cli().0);
    drop(alice);
    card.remove().unwrap();
}

#[test]
fn an_abandoned_failure_still_counts_and_a_used_totp_code_is_refused_later() {
    let _lock = lock_readers();
    let (site, card, mut bob, mut desk) = at_desk("bob", "246810");
    let identity = bob.identity().clone();
    let now = OffsetDateTime::now_utc();

    // One wrong answer, then the session is simply dropped (no cancel, no record by the engine).
    let (mut run, _) = desk.start_reset(&identity, bob.signer().unwrap(), "rpatel", Default::default(), now).unwrap();
    desk.apply_ui_json(&mut run, WRONG_ANSWERS, bob.signer().unwrap(), now).unwrap();
    // A TOTP code passes in the same session...
    let totp = totp_json("rpatel", now);
    let reply = desk.apply_ui_json(&mut run, &totp, bob.signer().unwrap(), now).unwrap();
    assert!(run.status().passed.contains(&resetdesk::policy::Method::Totp), "{:?}", reply.decisions);
    drop(run);

    // The next session sees the earlier failure (risk escalation) ...
    let (mut run, reply) =
        desk.start_reset(&identity, bob.signer().unwrap(), "rpatel", Default::default(), now).unwrap();
    let escalated = reply.decisions.iter().any(|d| match d {
        Decision::Escalated { escalations } => escalations.iter().any(|e| e.rule == RiskRule::EarlierFailures),
        _ => false,
    });
    assert!(escalated, "{:?}", reply.decisions);
    // ... and refuses the same TOTP code as a replay, which is recorded as a failure.
    desk.apply_ui_json(&mut run, &totp, bob.signer().unwrap(), now).unwrap();
    let records = site.records();
    let last = records.last().unwrap();
    assert_eq!(last.0, EventType::VerificationFailed);
    let verdict: Verdict = serde_json::from_value(last.1["steps"][0]["verdict"].clone()).unwrap();
    assert_eq!(verdict, Verdict::Failed(FailReason::CodeReused));

    // Bad input is not a failure and changes nothing.
    let before = site.records().len();
    let err = desk.apply_ui_json(
        &mut run,
        r#"{"action":"employee_record","employee_id":"x","date_of_hire":"yesterday"}"#,
        bob.signer().unwrap(),
        now,
    );
    assert!(matches!(err, Err(DeskError::Workflow(_) | DeskError::Input(_))), "{err:?}");
    assert_eq!(site.records().len(), before);
    assert!(site.verify_audit_cli().0);
    drop(bob);
    card.remove().unwrap();
}

/// Item 4 of the hardening issue: two sessions opened in parallel on one account share
/// one lockout count. Each reads the other's failures afresh before every step, so
/// together they get max_failures (3) guesses: the third failure, in either session,
/// locks verification; the other session then locks out at its next step, whatever
/// it brings (a right answer included), and resets nothing.
#[test]
fn parallel_sessions_on_one_account_share_the_lockout_count() {
    let _lock = lock_readers();
    let (site, card, mut alice, mut desk) = at_desk("alice", "246810");
    let identity = alice.identity().clone();
    let t0 = OffsetDateTime::now_utc();
    // Each step a second later (the history counts a step once per request, time, method).
    let at = |s: i64| t0 + time::Duration::seconds(s);
    assert_eq!(site.config.policy.lockout.max_failures, 3);

    let (mut a, _) = desk.start_reset(&identity, alice.signer().unwrap(), "cchen", Default::default(), at(0)).unwrap();
    // Session b runs on a second desk over the same data directory (its own audit log
    // connection), as a second workstation would.
    let mut desk_b = site.desk();
    let (mut b, _) =
        desk_b.start_reset(&identity, alice.signer().unwrap(), "cchen", Default::default(), at(0)).unwrap();
    desk.apply_ui_json(&mut a, WRONG_ANSWERS, alice.signer().unwrap(), at(1)).unwrap();
    desk_b.apply_ui_json(&mut b, WRONG_ANSWERS, alice.signer().unwrap(), at(2)).unwrap();
    assert!(site.directory().entry("cchen").unwrap().verification_locked_until.is_none());
    let reply = desk.apply_ui_json(&mut a, WRONG_ANSWERS, alice.signer().unwrap(), at(3)).unwrap();
    assert_eq!(a.phase(), Phase::LockedOut, "the third failure of the two sessions together locks");
    assert!(reply.decisions.iter().any(|d| matches!(d, Decision::LockVerification { .. })));
    assert!(site.directory().entry("cchen").unwrap().verification_locked_until.is_some());

    // Session b's next step is the right answers: it is not evaluated, b locks out.
    let reply =
        desk_b.apply_ui_json(&mut b, &desk_support::answers_json("cchen"), alice.signer().unwrap(), at(4)).unwrap();
    assert_eq!(b.phase(), Phase::LockedOut, "{:?}", reply.decisions);
    assert!(!b.status().passed.contains(&resetdesk::policy::Method::SecurityAnswers));
    let failures = site.records().iter().filter(|r| r.0 == EventType::VerificationFailed).count();
    assert_eq!(failures, 2, "a's first and b's failure were recorded as they happened");
    site.assert_untouched("cchen");
    assert!(site.verify_audit_cli().0);
    drop(alice);
    card.remove().unwrap();
}

/// Item 7 of the hardening issue: the flag a lockout sets lapses after `flag_days`
/// (default 30) past the lock. While it holds, a junior agent cannot reset the account
/// (the flag raises the tier); after it, they can again.
#[test]
fn a_lockout_flag_lapses_and_a_junior_agent_may_reset_again() {
    flag_lapses(Backend::Embedded);
}

#[test]
fn a_lockout_flag_lapses_on_slapd_too() {
    flag_lapses(Backend::Slapd);
}

fn flag_lapses(backend: Backend) {
    let _lock = lock_readers();
    let Some((site, card, mut alice, mut desk)) = at_desk_on(backend, "alice", "246810") else { return };
    let identity = alice.identity().clone();
    lock_out(&mut desk, &mut alice, "cchen");
    let account = site.backend().entry("cchen").unwrap();
    let (until, flag_until) = (account.verification_locked_until.unwrap(), account.flagged_until.unwrap());
    assert_eq!(flag_until, until + time::Duration::days(i64::from(site.config.policy.lockout.flag_days)));

    let flagged = |reply: &resetdesk::desk::Reply| {
        reply.decisions.iter().any(|d| match d {
            Decision::Escalated { escalations } => escalations.iter().any(|e| e.rule == RiskRule::FlaggedAccount),
            Decision::Refuse { explanation, .. } => explanation.contains("junior"),
            _ => false,
        })
    };
    // The lock is over, the flag holds: a junior agent is refused (the tier went up).
    let later = until + time::Duration::days(1);
    let (run, reply) =
        desk.start_reset(&identity, alice.signer().unwrap(), "cchen", Default::default(), later).unwrap();
    assert_eq!(run.phase(), Phase::Refused, "{:?}", reply.decisions);
    assert!(flagged(&reply), "{:?}", reply.decisions);
    // The flag lapsed: the junior agent may verify the holder again.
    let lapsed = flag_until + time::Duration::minutes(1);
    let (run, reply) =
        desk.start_reset(&identity, alice.signer().unwrap(), "cchen", Default::default(), lapsed).unwrap();
    assert_eq!(run.phase(), Phase::Verifying, "{:?}", reply.decisions);
    assert!(!flagged(&reply), "{:?}", reply.decisions);
    drop(alice);
    card.remove().unwrap();
}

/// The rules that fired when a request for `target` opened (or the refusal, if any).
fn opened(
    site: &desk_support::Site,
    card: &virtual_yubikey::VirtualCard,
    pin: &str,
    target: &str,
) -> (Phase, Vec<RiskRule>) {
    let mut agent = site.login(card, pin);
    let identity = agent.identity().clone();
    let mut desk = site.desk();
    let (run, reply) = desk
        .start_reset(&identity, agent.signer().unwrap(), target, Default::default(), OffsetDateTime::now_utc())
        .unwrap();
    let rules = reply
        .decisions
        .iter()
        .flat_map(|d| match d {
            Decision::Escalated { escalations } => escalations.iter().map(|e| e.rule).collect(),
            _ => vec![],
        })
        .collect();
    (run.phase(), rules)
}

/// Item 7 of the hardening issue: the admin actions, each a signed record by the
/// admin's card before the directory changes. A junior agent cannot; an admin clears
/// the lockout (the failures before it stop counting) and the flag, so a junior agent
/// may verify the holder again; a contact point set now counts as recently changed.
#[test]
fn an_admin_clears_a_lockout_and_a_flag_and_sets_a_contact_point_each_signed() {
    use virtual_yubikey::{VirtualCard, READER_1_PORT};
    let _lock = lock_readers();
    let (site, card, mut alice, mut desk) = at_desk("alice", "246810");
    let carol_card = VirtualCard::insert(READER_1_PORT).unwrap();
    site.enrol(&carol_card, "carol", "135791");
    lock_out(&mut desk, &mut alice, "cchen");
    drop((alice, desk));
    assert_eq!(opened(&site, &card, "246810", "cchen").0, Phase::Refused, "locked");

    let dir = site.dir.path().to_str().unwrap().to_owned();
    let admin = |action: &str, reader: &str, pin: &str, extra: &[&str]| {
        let mut args = vec!["admin", action, "--data-dir", &dir, "--reader", reader, "--user", "cchen"];
        args.extend_from_slice(&["--reason", "holder called from the office, verified in person"]);
        args.extend_from_slice(extra);
        cli_support::resetdesk(&args, &format!("{pin}\n"))
    };
    let (code, _, err) = admin("clear-lockout", card.reader_name(), "246810", &[]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("only an admin agent"), "{err}");
    assert!(site.directory().entry("cchen").unwrap().verification_locked_until.is_some());

    for action in ["clear-lockout", "unflag"] {
        let (code, out, err) = admin(action, carol_card.reader_name(), "135791", &[]);
        assert_eq!(code, 0, "{action}: {out}{err}");
        let (record, payload) = site.audit_records().pop().unwrap();
        assert_eq!(record.event_type, EventType::AdminAction);
        assert_eq!(
            (payload["facts"]["action"].as_str(), payload["facts"]["by"].as_str()),
            (Some(action), Some("carol"))
        );
    }
    let account = site.directory().entry("cchen").unwrap();
    assert_eq!((account.verification_locked_until, account.flagged), (None, false), "{account:?}");
    let (phase, rules) = opened(&site, &card, "246810", "cchen");
    assert_eq!(phase, Phase::Verifying, "a junior agent may verify the holder again");
    assert!(!rules.contains(&RiskRule::EarlierFailures), "the failures before the clearing stop counting: {rules:?}");

    let extra = ["--kind", "phone", "--label", "mobile", "--value", "+1 555 0100"];
    let (code, out, err) = admin("set-contact", carol_card.reader_name(), "135791", &extra);
    assert_eq!(code, 0, "{out}{err}");
    let account = site.directory().entry("cchen").unwrap();
    let mobile = account.phones.iter().find(|p| p.label == "mobile").unwrap();
    assert_eq!(mobile.value, "+1 555 0100");
    assert!(OffsetDateTime::now_utc() - mobile.changed_at.unwrap() < time::Duration::minutes(5), "stamped now");
    assert!(opened(&site, &card, "246810", "cchen").1.contains(&RiskRule::RecentContactChange));
    assert!(site.verify_audit_cli().0);
    card.remove().unwrap();
    carol_card.remove().unwrap();
}

/// Three wrong answers for `target`, a second apart, in one session: locked out.
fn lock_out(desk: &mut resetdesk::desk::Desk, agent: &mut resetdesk::login::AgentSession, target: &str) {
    let identity = agent.identity().clone();
    let t0 = OffsetDateTime::now_utc();
    let (mut run, _) = desk.start_reset(&identity, agent.signer().unwrap(), target, Default::default(), t0).unwrap();
    for i in 0..3 {
        desk.apply_ui_json(&mut run, WRONG_ANSWERS, agent.signer().unwrap(), t0 + time::Duration::seconds(i)).unwrap();
    }
    assert_eq!(run.phase(), Phase::LockedOut);
}
