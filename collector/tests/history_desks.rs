//! Cross-desk history and "this wasn't me" with real processes: the real
//! `resetdesk-collector` binary (SQLite and PostgreSQL) and two desks, each with its
//! own data directory and audit log, driven through `resetdesk::desk::Desk` with a
//! virtual PIV card (pcscd + vpcd) and synced by the desk's own sync driver.
//!
//! - the same caller failing verification at desk A, then at desk B, meets one
//!   lockout at B;
//! - a reset at A is reported through the link in the holder's mail: the alert names
//!   the reset's records with their entry hashes and receipts, the link works once,
//!   and the next reset at B needs the highest tier;
//! - with the collector down, desk B shows "cross-desk history unavailable" and
//!   requires more, never less; a session that saw another desk's failures keeps
//!   counting them.
//!
//! Needs `scripts/pcscd.sh start` (holds the reader lock) and, for the PostgreSQL
//! runs, `scripts/postgres.sh` (skipped without it outside CI).

#[path = "../../tests/audit_support/mod.rs"]
mod audit_support;
#[path = "../../tests/desk_support/mod.rs"]
mod desk_support;
#[path = "pg_support/mod.rs"]
mod pg_support;
#[path = "process_support/mod.rs"]
mod process_support;

use std::path::{Path, PathBuf};

use desk_support::{answers_json, employee_record_json, totp_json};
use process_support::{drain, Collector};
use resetdesk::audit::EventType;
use resetdesk::config::Config;
use resetdesk::desk::outbox::Outbox;
use resetdesk::desk::Desk;
use resetdesk::login::{login, AgentSession};
use resetdesk::policy::RiskRule;
use resetdesk::secret::Secret;
use resetdesk::tier::AccountTier;
use resetdesk::upstream::SyncDriver;
use resetdesk::workflow::Phase;
use time::OffsetDateTime;
use virtual_yubikey::{lock_readers, VirtualCard, READER_0_PORT};

const PIN: &str = "246810";
const WRONG_ANSWERS: &str =
    r#"{"action":"security_answers","answers":[{"question":0,"answer":"Rex"},{"question":1,"answer":"Paris"}]}"#;

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

/// Copy a desk's data directory without its audit log (a second desk of the same
/// organisation: same CA, directory and enrolled keys, its own log).
fn copy_desk(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("audit.sqlite") {
            continue;
        }
        let target = to.join(&name);
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_desk(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// `[collector]` of a desk using `c` with the key in `key_file`.
fn use_collector(config: &mut Config, c: &Collector, key_file: &Path) {
    config.collector.url = c.base_url();
    config.collector.verifier_key = Some(c.vkey.clone());
    config.collector.ca_file = Some(c.dir.path().join("tls/ca.pem"));
    config.collector.desk_key_file = Some(key_file.to_owned());
}

/// The desk's sync driver until every record has a receipt.
fn sync(config: &Config) {
    drain(&mut SyncDriver::from_config(config).unwrap().expect("a collector is configured"));
}

fn agent(config: &Config, card: &VirtualCard) -> AgentSession {
    let directory = resetdesk::directory::open(config).unwrap();
    login(config, directory.as_ref(), card.reader_name(), Secret::from(PIN), now()).unwrap()
}

struct TwoDesks {
    site: desk_support::Site,
    card: VirtualCard,
    _b_dir: tempfile::TempDir,
    a: Config,
    b: Config,
    a_key: PathBuf,
    b_key: PathBuf,
}

impl TwoDesks {
    /// Desk A (a fresh site with carol's card enrolled), the collector on its
    /// organisation CA (on `database`: SQLite by default), and desk B.
    fn start(database: Option<&str>) -> (Self, Collector) {
        let site = desk_support::site();
        let card = VirtualCard::insert(READER_0_PORT).unwrap();
        site.enrol(&card, "carol", PIN);
        let org_ca = std::fs::read_to_string(site.config.ca_cert_path()).unwrap();
        let c = Collector::start_on(&org_ca, 4 * 1024 * 1024, database.unwrap_or("collector.db"));
        let b_dir = tempfile::tempdir().unwrap();
        copy_desk(site.dir.path(), b_dir.path());
        let (a_key, b_key) = (c.add_desk_key("desk-a"), c.add_desk_key("desk-b"));
        let mut a = site.config.clone();
        use_collector(&mut a, &c, &a_key);
        let mut b = site.config.clone();
        b.data_dir = b_dir.path().to_owned();
        use_collector(&mut b, &c, &b_key);
        (Self { site, card, _b_dir: b_dir, a, b, a_key, b_key }, c)
    }

    /// Point both desks at `c` again (it restarted on another port).
    fn moved(&mut self, c: &Collector) {
        let (a_key, b_key) = (self.a_key.clone(), self.b_key.clone());
        use_collector(&mut self.a, c, &a_key);
        use_collector(&mut self.b, c, &b_key);
    }

    fn desk(config: &Config) -> Desk {
        Desk::open_configured(config.clone()).unwrap()
    }
}

/// A done reset of `target` at `desk` (answers, employee record, TOTP).
fn reset(desk: &mut Desk, carol: &mut AgentSession, site: &desk_support::Site, target: &str) {
    let identity = carol.identity().clone();
    let (mut run, _) = desk.start_reset(&identity, carol.signer().unwrap(), target, Default::default(), now()).unwrap();
    for step in [answers_json(target), employee_record_json(site, target), totp_json(target, now())] {
        desk.apply_ui_json(&mut run, &step, carol.signer().unwrap(), now()).unwrap();
    }
    desk.apply_ui_json(&mut run, r#"{"action":"request_reset"}"#, carol.signer().unwrap(), now()).unwrap();
    assert_eq!(run.phase(), Phase::Succeeded);
}

/// The "this wasn't me" link in the reset mail to `target`'s address.
fn report_link(config: &Config) -> String {
    let rows = Outbox::open(&config.data_dir).unwrap().messages().unwrap();
    let mail = rows.iter().find(|m| m.subject == "Your password was reset").expect("the reset mail");
    let at = mail.body.find("/report/").expect("a report link in the reset mail");
    let start = mail.body[..at].rfind("https://").unwrap();
    let end = mail.body[at..].find(char::is_whitespace).map_or(mail.body.len(), |e| at + e);
    mail.body[start..end].to_owned()
}

fn rules(run: &resetdesk::desk::ResetRun, desk: &Desk) -> Vec<(RiskRule, String)> {
    desk.reset_view(run, now()).unwrap().escalations.into_iter().map(|e| (e.rule, e.reason)).collect()
}

/// Two wrong answers for `target` at desk A, synced to the collector.
fn two_failures_at_a(desks: &TwoDesks, target: &str) {
    let mut desk_a = TwoDesks::desk(&desks.a);
    let mut carol = agent(&desks.a, &desks.card);
    let identity = carol.identity().clone();
    let (mut run, _) =
        desk_a.start_reset(&identity, carol.signer().unwrap(), target, Default::default(), now()).unwrap();
    for _ in 0..2 {
        desk_a.apply_ui_json(&mut run, WRONG_ANSWERS, carol.signer().unwrap(), now()).unwrap();
    }
    assert_eq!(run.phase(), Phase::Verifying, "two failures do not lock");
    sync(&desks.a);
}

fn two_desks(database: Option<&str>) {
    let _lock = lock_readers();
    let (mut desks, mut c) = TwoDesks::start(database);

    // 1. Two wrong answers for cchen at desk A, synced to the collector.
    two_failures_at_a(&desks, "cchen");

    // 2. At desk B, one more wrong answer for cchen locks: one lockout across desks.
    {
        let mut desk_b = TwoDesks::desk(&desks.b);
        let mut carol = agent(&desks.b, &desks.card);
        let identity = carol.identity().clone();
        let (mut run, _) =
            desk_b.start_reset(&identity, carol.signer().unwrap(), "cchen", Default::default(), now()).unwrap();
        let fired = rules(&run, &desk_b);
        assert!(
            fired.iter().any(|(r, why)| *r == RiskRule::EarlierFailures && why.starts_with("2 failed")),
            "desk B sees desk A's failures: {fired:?}"
        );
        desk_b.apply_ui_json(&mut run, WRONG_ANSWERS, carol.signer().unwrap(), now()).unwrap();
        assert_eq!(run.phase(), Phase::LockedOut, "the third failure, at another desk, locks");
        let cards = desk_b.search_accounts("cchen", now()).unwrap();
        assert_eq!(cards[0].recent_failures, 3, "{cards:?}");
    }
    sync(&desks.b);
    {
        // Synced, desk B's own failure is in both its log and the collector's answer:
        // still counted once.
        let desk_b = TwoDesks::desk(&desks.b);
        assert_eq!(desk_b.search_accounts("cchen", now()).unwrap()[0].recent_failures, 3);
    }

    // 3. A reset of jsmith at desk A; the holder reports it through the mail's link.
    {
        let mut desk_a = TwoDesks::desk(&desks.a);
        let mut carol = agent(&desks.a, &desks.card);
        reset(&mut desk_a, &mut carol, &desks.site, "jsmith");
    }
    let link = report_link(&desks.a);
    assert!(link.starts_with(&format!("{}/report/", c.base_url())), "{link}");
    // The signed outcome record carries the token's hash, never the token.
    let token = link.rsplit('/').next().unwrap().to_owned();
    let records = desks.site.records();
    let (_, facts) = records.iter().rev().find(|(t, _)| *t == EventType::ResetOutcome).expect("the outcome record");
    assert_eq!(facts["report_sha256"], resetdesk::account_events::report_token_sha256(&token));
    assert!(records.iter().all(|(_, f)| !f.to_string().contains(&token)), "no record holds the token");
    sync(&desks.a);
    let page = c.client.get(&link).send().unwrap();
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(csp.contains("default-src 'none'"), "{csp}");
    let html = page.text().unwrap();
    assert!(html.contains("jsmith") && html.contains("<form method=\"post\"") && !html.contains("<script"), "{html}");
    let reported = c.client.post(&link).send().unwrap();
    assert_eq!(reported.status(), 200);
    let alerts: Vec<(String, String)> = c.alerts().into_iter().filter(|(k, _)| k == "not-me-report").collect();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    let alert: serde_json::Value = serde_json::from_str(&alerts[0].1).unwrap();
    assert_eq!(alert["account"], "jsmith");
    let records = alert["records"].as_array().unwrap();
    let roles: Vec<&str> = records.iter().map(|r| r["role"].as_str().unwrap()).collect();
    assert_eq!(roles, ["outcome", "intent"], "{alert}");
    // Each record named with its entry hash and a receipt that proves it in the log.
    let leaves = c.leaf_rows();
    for r in records {
        let hash = r["entry_hash"].as_str().unwrap();
        let leaf = leaves.iter().find(|l| hex::encode(l.entry_hash) == hash).expect("the named record is logged");
        assert_eq!(r["receipt"]["leaf_index"].as_u64(), Some(leaf.leaf_index));
        assert!(r["receipt"]["checkpoint"].as_str().unwrap().contains("collector.test/resetdesk"));
    }
    // Admin agents see it at any desk, its records' receipts checked.
    let listed = resetdesk::upstream::alerts::fetch_configured(&desks.b.collector, 0).unwrap();
    let not_me = listed.iter().find(|a| a.kind == "not-me-report").expect("listed by GET /alerts");
    assert_eq!(not_me.title, "The account's holder reported a reset they did not ask for");
    assert_eq!(not_me.records.len(), 2);
    assert!(not_me.records.iter().all(|r| r.leaf_index.is_some()), "{not_me:?}");
    // Single use.
    assert_eq!(c.client.post(&link).send().unwrap().status(), 410);
    assert_eq!(c.client.get(&link).send().unwrap().status(), 410);
    assert_eq!(c.alerts().iter().filter(|(k, _)| k == "not-me-report").count(), 1);

    // 4. The next reset of jsmith at desk B needs the highest tier.
    {
        let mut desk_b = TwoDesks::desk(&desks.b);
        let mut carol = agent(&desks.b, &desks.card);
        let identity = carol.identity().clone();
        let (run, _) =
            desk_b.start_reset(&identity, carol.signer().unwrap(), "jsmith", Default::default(), now()).unwrap();
        let view = desk_b.reset_view(&run, now()).unwrap();
        assert_eq!(view.effective_tier, AccountTier::Highest, "{:?}", view.escalations);
        let fired = rules(&run, &desk_b);
        assert!(fired.iter().any(|(r, why)| *r == RiskRule::FlaggedAccount && why.contains("collector flags")));
        assert!(fired.iter().any(|(r, _)| *r == RiskRule::RecentReset), "desk A's reset counts at B: {fired:?}");
        assert!(view.account.flagged && view.account.risk_flags.iter().any(|f| f.contains("flagged by the collector")));
    }

    // 5. Two failures for obrien at desk A, synced; a session at desk B sees them, and
    // still counts them when the collector goes down in the middle of it.
    two_failures_at_a(&desks, "obrien");
    {
        let mut desk_b = TwoDesks::desk(&desks.b);
        let mut carol = agent(&desks.b, &desks.card);
        let identity = carol.identity().clone();
        let (mut run, _) =
            desk_b.start_reset(&identity, carol.signer().unwrap(), "obrien", Default::default(), now()).unwrap();
        assert!(rules(&run, &desk_b).iter().any(|(r, _)| *r == RiskRule::EarlierFailures));
        c.kill();
        desk_b.apply_ui_json(&mut run, WRONG_ANSWERS, carol.signer().unwrap(), now()).unwrap();
        assert_eq!(run.phase(), Phase::LockedOut, "what the collector said still counts while it is down");
    }

    // 6. The collector down: a new desk B says so and requires more, never less.
    {
        let mut desk_b = TwoDesks::desk(&desks.b);
        let mut carol = agent(&desks.b, &desks.card);
        let identity = carol.identity().clone();
        let (run, _) =
            desk_b.start_reset(&identity, carol.signer().unwrap(), "ykim", Default::default(), now()).unwrap();
        let fired = rules(&run, &desk_b);
        let unavailable: Vec<&String> =
            fired.iter().filter(|(r, _)| *r == RiskRule::CrossDeskHistoryUnavailable).map(|(_, why)| why).collect();
        assert_eq!(unavailable.len(), 2, "treated as a recent reset and a recent failure: {fired:?}");
        assert!(unavailable.iter().all(|w| w.contains("cross-desk history unavailable")));
        let view = desk_b.reset_view(&run, now()).unwrap();
        assert!(view.effective_tier > view.base_tier, "{view:?}");
        let card = &desk_b.search_accounts("ykim", now()).unwrap()[0];
        assert!(card.risk_flags.iter().any(|f| f.contains("cross-desk history unavailable")), "{card:?}");
    }
    c.restart();
    desks.moved(&c);
    {
        // Back up: the reason is gone.
        let mut desk_b = TwoDesks::desk(&desks.b);
        let mut carol = agent(&desks.b, &desks.card);
        let identity = carol.identity().clone();
        let (run, _) =
            desk_b.start_reset(&identity, carol.signer().unwrap(), "ykim", Default::default(), now()).unwrap();
        assert!(!rules(&run, &desk_b).iter().any(|(r, _)| *r == RiskRule::CrossDeskHistoryUnavailable));
    }
    // Desk A's log, the report hash in its outcome record, still verifies offline.
    let loaded = resetdesk::token::audit_keys::load(desks.site.dir.path(), None).unwrap();
    let store = resetdesk::audit::store::Store::open_read_only(&desks.a.data_dir.join("audit.sqlite")).unwrap();
    let summary = resetdesk::audit::verify_store(&store, &loaded.resolver, &[], &c.trusted(), &[]).unwrap();
    assert_eq!(summary.by_type.get("reset_outcome"), Some(&1), "{summary:?}");
    assert_eq!(summary.receipted_up_to, summary.head_seq);
    desks.card.remove().unwrap();
}

#[test]
fn two_desks_share_one_lockout_and_a_not_me_report_flags_the_account_on_sqlite() {
    two_desks(None);
}

#[test]
fn two_desks_share_one_lockout_and_a_not_me_report_flags_the_account_on_postgres() {
    let Some(db) = pg_support::PgDatabase::create() else { return };
    two_desks(Some(&db.url));
}
