//! Verification failures at the desk: each counted failure is a signed record as it
//! happens, so abandoning a session does not erase it; the third within the window
//! locks verification in the directory, flags the account, writes the lockout record
//! and tells the security team. A TOTP code accepted once is refused in a later
//! session. Needs `scripts/pcscd.sh start`; holds the reader lock.

mod desk_support;

use desk_support::{at_desk, totp_json};
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
    let _lock = lock_readers();
    let (site, card, mut alice, mut desk) = at_desk("alice", "246810");
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
    assert!(site.directory().account("cchen").unwrap().verification_locked_until.is_none());

    let reply = desk.apply_ui_json(&mut run, WRONG_ANSWERS, alice.signer().unwrap(), now).unwrap();
    assert_eq!(run.phase(), Phase::LockedOut);
    assert!(reply.decisions.iter().any(|d| matches!(d, Decision::LockVerification { .. })));
    let account = site.directory().account("cchen").unwrap();
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
    let (mut b, _) = desk.start_reset(&identity, alice.signer().unwrap(), "cchen", Default::default(), at(0)).unwrap();
    desk.apply_ui_json(&mut a, WRONG_ANSWERS, alice.signer().unwrap(), at(1)).unwrap();
    desk.apply_ui_json(&mut b, WRONG_ANSWERS, alice.signer().unwrap(), at(2)).unwrap();
    assert!(site.directory().account("cchen").unwrap().verification_locked_until.is_none());
    let reply = desk.apply_ui_json(&mut a, WRONG_ANSWERS, alice.signer().unwrap(), at(3)).unwrap();
    assert_eq!(a.phase(), Phase::LockedOut, "the third failure of the two sessions together locks");
    assert!(reply.decisions.iter().any(|d| matches!(d, Decision::LockVerification { .. })));
    assert!(site.directory().account("cchen").unwrap().verification_locked_until.is_some());

    // Session b's next step is the right answers: it is not evaluated, b locks out.
    let reply =
        desk.apply_ui_json(&mut b, &desk_support::answers_json("cchen"), alice.signer().unwrap(), at(4)).unwrap();
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
    let _lock = lock_readers();
    let (site, card, mut alice, mut desk) = at_desk("alice", "246810");
    let identity = alice.identity().clone();
    let t0 = OffsetDateTime::now_utc();
    let (mut run, _) = desk.start_reset(&identity, alice.signer().unwrap(), "cchen", Default::default(), t0).unwrap();
    for i in 0..3 {
        desk.apply_ui_json(&mut run, WRONG_ANSWERS, alice.signer().unwrap(), t0 + time::Duration::seconds(i)).unwrap();
    }
    assert_eq!(run.phase(), Phase::LockedOut);
    let account = site.directory().account("cchen").unwrap();
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
