//! Benchmarks of the reset engine. Prints measured values against the goals; asserts
//! nothing about time. Run: `cargo bench --bench engine`.
//!
//! - engine decision latency per event (goal: p99 < 1 ms)
//! - temporary-password generation with blocklist check (goal: p99 < 5 ms; the first
//!   call also parses the bundled lists, which shows in `max`)

#[path = "../tests/fixtures/mod.rs"]
mod fixtures;

use std::hint::black_box;
use std::time::{Duration as StdDuration, Instant};

use resetdesk::password::{self, PasswordSpec};
use resetdesk::policy::{
    ActingAgent, Channel, PasswordPolicy, PasswordStyle, PolicyConfig, RequestContext, StatedDetails,
};
use resetdesk::secret::Secret;
use resetdesk::tier::{AccountTier, AgentTier};
use resetdesk::verification::callback::CallbackReport;
use resetdesk::verification::{totp, Verdict};
use resetdesk::workflow::{ContactKind, ContactRef, OpenRequest, Session, WorkflowEvent};
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

const T0: OffsetDateTime = datetime!(2026-11-25 10:00 UTC);

fn request() -> OpenRequest {
    OpenRequest {
        request_id: "bench".into(),
        at: T0,
        agent: ActingAgent {
            username: "alice".into(),
            employee_id: "E-alice".into(),
            tier: AgentTier::Senior,
            groups: vec![],
            key_id: [1; 32],
        },
        account: fixtures::jane_doe(AccountTier::Standard),
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
    }
}

/// A full standard reset: the events after open.
fn events() -> Vec<WorkflowEvent> {
    let at = T0 + Duration::minutes(1);
    vec![
        WorkflowEvent::SecurityAnswersChecked { at, verdict: Verdict::Passed },
        WorkflowEvent::EmployeeRecordGiven { at, employee_id: "E1234".into(), date_of_hire: "2019-03-04".into() },
        WorkflowEvent::CodeRequested { at, to: ContactRef { kind: ContactKind::Email, index: 0 } },
        WorkflowEvent::CodeChecked { at, verdict: Verdict::Passed },
        WorkflowEvent::CallbackRequested { at },
        WorkflowEvent::CallbackReported {
            at,
            report: CallbackReport { reached_account_holder: true, holder_confirmed_request: true },
        },
        WorkflowEvent::ResetRequested { at },
        WorkflowEvent::IntentRecorded { at, seq: 1, entry_hash: [0; 32] },
        WorkflowEvent::DirectoryResult { at, result: Ok(()) },
    ]
}

fn percentile(sorted: &[StdDuration], p: f64) -> StdDuration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Print mean, p50, p99 and max, and the p99 against the goal.
fn report(name: &str, mut samples: Vec<StdDuration>, goal: StdDuration) {
    samples.sort();
    let mean = samples.iter().sum::<StdDuration>() / samples.len() as u32;
    let (p50, p99, max) = (percentile(&samples, 0.50), percentile(&samples, 0.99), samples[samples.len() - 1]);
    let verdict = if p99 < goal { "meets goal" } else { "MISSES goal" };
    println!(
        "{name:<48} n={:<6} mean={:>9.1?} p50={:>9.1?} p99={:>9.1?} max={:>9.1?}  goal p99 < {:?}: {verdict}",
        samples.len(),
        mean,
        p50,
        p99,
        max,
        goal
    );
}

/// Any failure aborts the benchmark with its error: the numbers would be meaningless.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let policy = PolicyConfig::default();
    let rounds = 2_000;

    // Engine: time each call, open included.
    let mut open_samples = Vec::with_capacity(rounds);
    let mut event_samples = Vec::with_capacity(rounds * 9);
    for _ in 0..rounds {
        let req = request();
        let evs = events();
        let start = Instant::now();
        let (mut session, d) = Session::open(&policy, req)?;
        open_samples.push(start.elapsed());
        black_box(d);
        for ev in evs {
            let start = Instant::now();
            let d = session.handle(ev)?;
            event_samples.push(start.elapsed());
            black_box(d);
        }
    }
    println!("ResetDesk engine benchmarks ({} rounds; release build recommended)", rounds);
    report("engine: Session::open (risk + requirements)", open_samples, StdDuration::from_millis(1));
    report("engine: decision latency per event", event_samples, StdDuration::from_millis(1));

    // Temporary passwords with blocklist and context check.
    let context = ["jdoe", "Jane Doe", "E1234", "Example Corp"];
    for style in [PasswordStyle::Characters, PasswordStyle::Passphrase] {
        let spec = PasswordSpec::from_policy(&PasswordPolicy { style, ..PasswordPolicy::default() });
        let mut samples = Vec::with_capacity(rounds);
        for _ in 0..rounds {
            let start = Instant::now();
            let p = password::generate(&spec, &context)?;
            samples.push(start.elapsed());
            black_box(p);
        }
        report(&format!("password: generate + blocklist ({style:?})"), samples, StdDuration::from_millis(5));
    }

    // For scale: TOTP verification (the adapter runs it before the engine sees a verdict).
    let key = Secret::from("3132333435363738393031323334353637383930");
    let mut samples = Vec::with_capacity(rounds);
    for i in 0..rounds {
        let start = Instant::now();
        let r = totp::verify(&key, &Secret::from("123456"), T0 + Duration::seconds(i as i64), None);
        samples.push(start.elapsed());
        black_box(r.ok());
    }
    report("verification: TOTP check (3 steps)", samples, StdDuration::from_millis(1));
    Ok(())
}
