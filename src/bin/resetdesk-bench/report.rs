//! The bench's printed report: where the time went by adapter (the desk's stage times
//! and the other people's work outside it), by step, per reset, and the ratios.

use std::time::Duration;

use resetdesk::desk::StageTimes;
use resetdesk::directory::PasswordCheck;
use resetdesk::login::AgentIdentity;
use resetdesk::tier::AccountTier;

use crate::script::{Step, StepTimes};

/// What a bench run measured, for [`print`].
pub struct Measured<'a> {
    pub tier: AccountTier,
    pub identity: &'a AgentIdentity,
    pub reader: &'a str,
    /// The co-signer and the reader of their card (highest tier).
    pub co_signer: Option<(&'a str, &'a str)>,
    /// The tier's cooling-off the policy configures, when the bench shortened it to 0.
    pub cooling_off_shortened: Option<time::Duration>,
    pub data_dir: &'a std::path::Path,
    pub login_took: Duration,
    pub whole: Duration,
    pub per_reset: &'a [Duration],
    pub stages: &'a StageTimes,
    pub steps: &'a StepTimes,
    pub check: Option<PasswordCheck>,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn table(rows: &[(&str, Duration)], whole: Duration, n: f64) {
    for (name, d) in rows {
        println!(
            "{name:<44} {:>10.1} {:>14.2} {:>6.1}%",
            ms(*d),
            ms(*d) / n,
            100.0 * d.as_secs_f64() / whole.as_secs_f64().max(1e-9)
        );
    }
}

pub fn print(m: &Measured<'_>) {
    let (t, s, whole) = (m.stages, m.steps, m.whole);
    let n = m.per_reset.len().max(1) as f64;
    println!(
        "resetdesk-bench: {} complete resets of {}-tier accounts by {} ({}) with the card in {:?}{}; data dir {}",
        m.per_reset.len(),
        m.tier,
        m.identity.username,
        m.identity.tier.as_str(),
        m.reader,
        if m.identity.is_virtual { " [virtual token]" } else { "" },
        m.data_dir.display()
    );
    if let Some((who, reader)) = m.co_signer {
        println!("co-signer: {who} with the card in {reader:?}, logging in for each co-signature as at the desk");
    }
    if s.manager_side > Duration::ZERO {
        println!("manager approval: the manager answers with the code from the approval message in the outbox (approval inbox)");
    }
    if let Some(configured) = m.cooling_off_shortened {
        println!(
            "cooling-off: shortened from {} min to 0 by the bench's policy (the holder's time to object is waiting, not desk work)",
            configured.whole_minutes()
        );
    }
    println!("login (once, not in the totals): {:.1} ms", ms(m.login_took));
    let others = s.manager_side + s.co_signer_login;
    let accounted = t.token + t.audit_store + t.directory + t.engine + t.history + t.notifier + others;
    let mut rows = vec![
        ("token (PIN verify + 9c signature)", t.token),
        ("audit store (commit, fsync)", t.audit_store),
        ("directory (incl. argon2id of the password)", t.directory),
        ("engine + answer/TOTP checks (argon2id)", t.engine),
        ("history (audit store scan)", t.history),
        ("notifier (outbox)", t.notifier),
    ];
    if s.co_signer_login > Duration::ZERO {
        rows.push(("co-signer's login (PIN, 9a, directory)", s.co_signer_login));
    }
    if s.manager_side > Duration::ZERO {
        rows.push(("manager's side (outbox read, answer)", s.manager_side));
    }
    rows.push(("desk glue (the rest)", whole.saturating_sub(accounted)));
    rows.push(("whole", whole));
    println!("{:<44} {:>10} {:>14} {:>7}", "stage", "total ms", "per reset ms", "share");
    table(&rows, whole, n);
    let steps: Vec<(&str, Duration)> = Step::ALL
        .iter()
        .zip(s.by_step)
        .filter(|(_, d)| *d > Duration::ZERO)
        .map(|(step, d)| (step.label(), d))
        .collect();
    println!("{:<44} {:>10} {:>14} {:>7}", "by step", "total ms", "per reset ms", "share");
    table(&steps, whole, n);
    let mut sorted = m.per_reset.to_vec();
    sorted.sort();
    if let (Some(first), Some(last)) = (sorted.first(), sorted.last()) {
        println!(
            "per reset: min {:.1} ms, median {:.1} ms, max {:.1} ms",
            ms(*first),
            ms(sorted[sorted.len() / 2]),
            ms(*last)
        );
    }
    println!(
        "records appended: {} ({:.1} per reset); throughput {:.2} resets/s",
        t.records,
        f64::from(t.records) / n,
        n / whole.as_secs_f64().max(1e-9)
    );
    let floor = t.token + t.audit_store;
    println!(
        "ratio whole / (token + fsync): {:.2}x (goal <= 1.2x)",
        whole.as_secs_f64() / floor.as_secs_f64().max(1e-9)
    );
    if s.co_signer_login > Duration::ZERO {
        // The second agent's login is card work too (PIN, slot-9a challenge).
        println!(
            "ratio whole / (token + fsync + co-signer's login): {:.2}x",
            whole.as_secs_f64() / (floor + s.co_signer_login).as_secs_f64().max(1e-9)
        );
    }
    // argon2id of the answers and of the new password is deliberate work (memory-hard
    // hashing), not overhead: the same ratio without the stages that carry it.
    let without_argon2 = whole.saturating_sub(t.engine + t.directory);
    println!(
        "ratio without the argon2id stages (engine, directory) / (token + fsync): {:.2}x",
        without_argon2.as_secs_f64() / floor.as_secs_f64().max(1e-9)
    );
    match m.check {
        Some(c) => println!("last temporary password: valid {}, must change {}", c.valid, c.must_change),
        None => println!("no reset run"),
    }
    println!("check the log: resetdesk audit verify --data-dir {}", m.data_dir.display());
}
