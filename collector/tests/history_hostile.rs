//! The history services against bad and hostile input, on the real
//! `resetdesk-collector` process (SQLite and PostgreSQL): `POST /history` without or
//! with a wrong desk key, oversized, malformed or over-wide; report links unknown,
//! malformed, reused, expired, with an oversized body, with markup in the account
//! field, and floods of them. And the account index itself: caught up from the
//! stored records after a stop between storing and indexing, idempotent.

#[path = "../../tests/audit_support/mod.rs"]
mod audit_support;
#[path = "pg_support/mod.rs"]
mod pg_support;
#[path = "process_support/mod.rs"]
mod process_support;

use audit_support::{Pki, SoftSigner};
use process_support::{Collector, DeskLog};
use resetdesk::account_events::report_token_sha256;
use resetdesk::audit::{AuditLog, DirectoryOutcome, Event, EventType};
use resetdesk::upstream::history::{check_answer, HistoryRequest, SignedHistory};
use resetdesk_collector::history::store::HistoryStore;
use resetdesk_collector::history::{answer, catch_up};
use resetdesk_collector::ingest::Collector as InProcess;
use resetdesk_collector::note::LogKey;
use resetdesk_collector::store::{LogStore, PgStore, SqliteStore};

const HTML_ACCOUNT: &str = "<script>alert(1)</script>\"'&x";

fn token(n: u8) -> String {
    format!("{:032x}", 0xfeed_0000_0000_0000_0000_0000_0000_0000_u128 + u128::from(n))
}

/// A desk log with a done reset of each `(account, token)`, the token's hash in the
/// outcome's facts as the desk puts it.
fn desk_log(pki: &Pki, resets: &[(&str, String)]) -> DeskLog {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.sqlite");
    let mut alice = SoftSigner::from_seed("alice", 1);
    let now = time::OffsetDateTime::now_utc;
    let mut log = AuditLog::open(&db).unwrap();
    log.heartbeat(EventType::Login, &serde_json::json!({"agent": "alice"}), &mut alice, now()).unwrap();
    for (k, (account, token)) in resets.iter().enumerate() {
        let facts = serde_json::json!({
            "request_id": format!("req-{k}"),
            "target": {"username": account},
            "steps": [],
        });
        let i = log.append(&Event::reset_intent(&facts).unwrap(), &mut alice, now()).unwrap();
        let mut done = facts.clone();
        done["report_sha256"] = report_token_sha256(token).into();
        let outcome = Event::reset_outcome(i.intent_ref(), &DirectoryOutcome::Done, &done).unwrap();
        log.append(&outcome, &mut alice, now()).unwrap();
    }
    drop(log);
    DeskLog { _dir: dir, db, certs: vec![pki.issue(&alice)] }
}

fn report_url(c: &Collector, token: &str) -> String {
    c.url(&format!("/report/{token}"))
}

fn history_request(usernames: &[&str]) -> HistoryRequest {
    HistoryRequest { usernames: usernames.iter().map(|u| (*u).to_owned()).collect(), since_ms: 0, nonce: "00ff".into() }
}

fn post_history(c: &Collector, key: Option<&str>, body: Vec<u8>) -> (u16, String) {
    let mut req = c.client.post(c.url("/history")).header("Content-Type", "application/json").body(body);
    if let Some(k) = key {
        req = req.header("Authorization", format!("Bearer {k}"));
    }
    let r = req.send().unwrap();
    (r.status().as_u16(), r.text().unwrap())
}

fn not_me_alerts(c: &Collector) -> usize {
    c.alerts().iter().filter(|(k, _)| k == "not-me-report").count()
}

fn hostile(database: &str) {
    let pki = Pki::new(1);
    let mut c = Collector::start_on(&pki.ca_pem(), 4 * 1024 * 1024, database);
    let key_file = c.add_desk_key("desk-h");
    let key = std::fs::read_to_string(&key_file).unwrap().trim().to_owned();
    let log = desk_log(&pki, &[(HTML_ACCOUNT, token(1)), ("jsmith", token(2)), ("bob", token(3))]);
    c.accept(&log, 0..log.records().len());

    // POST /history: only for desks, only well-formed and bounded.
    let good = serde_json::to_vec(&history_request(&["jsmith"])).unwrap();
    assert_eq!(post_history(&c, None, good.clone()).0, 401, "no desk key");
    assert_eq!(post_history(&c, Some(&"0".repeat(64)), good.clone()).0, 401, "a wrong desk key");
    let oversized = c.oversized_status(|client| {
        client
            .post(c.url("/history"))
            .bearer_auth(&key)
            .header("Content-Type", "application/json")
            .body(vec![b' '; 100 * 1024])
    });
    assert_eq!(oversized, 413, "oversized");
    assert_eq!(post_history(&c, Some(&key), b"{\"usernames\": 7}".to_vec()).0, 400, "malformed");
    let wide: Vec<String> = (0..101).map(|k| format!("u{k}")).collect();
    let wide: Vec<&str> = wide.iter().map(String::as_str).collect();
    let (status, _) = post_history(&c, Some(&key), serde_json::to_vec(&history_request(&wide)).unwrap());
    assert_eq!(status, 400, "more usernames than a page");
    let control = serde_json::to_vec(&history_request(&["a\u{7}b"])).unwrap();
    assert_eq!(post_history(&c, Some(&key), control).0, 400, "control characters");
    // The good one: signed by the collector's key, and only by it.
    let request = history_request(&["JSmith", HTML_ACCOUNT]);
    let (status, body) = post_history(&c, Some(&key), serde_json::to_vec(&request).unwrap());
    assert_eq!(status, 200, "{body}");
    let signed: SignedHistory = serde_json::from_str(&body).unwrap();
    let answer = check_answer(&signed, &c.trusted(), &request).unwrap();
    let jsmith = answer.accounts.iter().find(|a| a.username == "jsmith").unwrap();
    assert_eq!(jsmith.events.len(), 1, "one reset: {jsmith:?}");
    assert!(jsmith.flag.is_none());
    let other_dir = tempfile::tempdir().unwrap();
    let other_vkey = LogKey::create(&other_dir.path().join("other.key"), process_support::ORIGIN).unwrap();
    let mut other_key = resetdesk::audit::CollectorKeys::default();
    other_key.add_verifier_key(&other_vkey).unwrap();
    assert!(check_answer(&signed, &other_key, &request).is_err(), "another key's answer is not taken");
    let mut replayed = request.clone();
    replayed.nonce = "abcd".into();
    assert!(check_answer(&signed, &c.trusted(), &replayed).is_err(), "an answer to another request");

    // Report links: unknown and malformed tell nothing; the page escapes the account.
    for bad in [token(9), "short".to_owned(), "%3Cscript%3Ealert(1)%3C%2Fscript%3E".to_owned(), token(1).to_uppercase()]
    {
        let r = c.client.get(report_url(&c, &bad)).send().unwrap();
        assert_eq!(r.status(), 404, "{bad}");
        assert!(!r.text().unwrap().contains("<script"), "{bad}");
    }
    let page = c.client.get(report_url(&c, &token(1))).send().unwrap();
    assert_eq!(page.status(), 200);
    let headers = page.headers().clone();
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    assert!(headers["content-security-policy"].to_str().unwrap().contains("default-src 'none'"));
    assert_eq!(headers["referrer-policy"], "no-referrer");
    assert_eq!(headers["cache-control"], "no-store");
    let html = page.text().unwrap();
    assert!(!html.contains("<script") && !html.contains("\"'&x"), "{html}");
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;&quot;&#39;&amp;x"), "{html}");

    // An oversized report body is refused and reports nothing.
    let url = report_url(&c, &token(1));
    assert_eq!(c.oversized_status(|client| client.post(&url).body(vec![b'x'; 64 * 1024])), 413);
    assert_eq!(not_me_alerts(&c), 0);
    // One report per link.
    assert_eq!(c.client.post(report_url(&c, &token(1))).send().unwrap().status(), 200);
    assert_eq!(c.client.post(report_url(&c, &token(1))).send().unwrap().status(), 410);
    assert_eq!(not_me_alerts(&c), 1);
    let (_, body) = post_history(&c, Some(&key), serde_json::to_vec(&request).unwrap());
    let answer = check_answer(&serde_json::from_str(&body).unwrap(), &c.trusted(), &request).unwrap();
    let flagged = answer.accounts.iter().find(|a| a.username == HTML_ACCOUNT.to_lowercase()).unwrap();
    assert_eq!(flagged.flag.as_ref().map(|f| f.tier), Some(resetdesk::tier::AccountTier::Highest));

    // Expired: links of resets older than report_valid_hours work no more.
    c.kill();
    let config = c.dir.path().join("collector.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str("\n[history]\nreport_valid_hours = 0\nreport_requests_per_minute = 60\n");
    std::fs::write(&config, text).unwrap();
    c.restart();
    let expired = c.client.get(report_url(&c, &token(2))).send().unwrap();
    assert_eq!(expired.status(), 410);
    assert!(expired.text().unwrap().contains("expired"));
    assert_eq!(c.client.post(report_url(&c, &token(2))).send().unwrap().status(), 410);
    assert_eq!(not_me_alerts(&c), 1, "an expired link reports nothing");

    // Floods: one link gets a tenth of the minute's budget, all links the budget.
    let statuses: Vec<u16> =
        (0..10).map(|_| c.client.get(report_url(&c, &token(3))).send().unwrap().status().as_u16()).collect();
    assert!(statuses.iter().filter(|s| **s == 429).count() >= 3, "{statuses:?}");
    let flood: Vec<u16> =
        (10..80).map(|k| c.client.get(report_url(&c, &token(k))).send().unwrap().status().as_u16()).collect();
    assert!(flood.contains(&429), "{flood:?}");
    let limited = c.client.post(report_url(&c, &token(3))).send().unwrap();
    assert_eq!(limited.status(), 429);
    assert_eq!(not_me_alerts(&c), 1, "a refused request reports nothing");
    // The desk services are not behind the pages' limit.
    assert_eq!(post_history(&c, Some(&key), serde_json::to_vec(&request).unwrap()).0, 200);
}

#[test]
fn history_and_report_endpoints_refuse_hostile_input_on_sqlite() {
    hostile("collector.db");
}

#[test]
fn history_and_report_endpoints_refuse_hostile_input_on_postgres() {
    let Some(db) = pg_support::PgDatabase::create() else { return };
    hostile(&db.url);
}

/// Records stored but not indexed (the process stopped in between) are indexed by
/// the next catch-up, once.
fn index_catches_up<S: LogStore + HistoryStore>(store: S) {
    let pki = Pki::new(1);
    let dir = tempfile::tempdir().unwrap();
    let key_path = dir.path().join("log.key");
    LogKey::create(&key_path, "collector.test/resetdesk").unwrap();
    let key = LogKey::load(&key_path, "collector.test/resetdesk").unwrap();
    let mut c = InProcess::open(store, &pki.ca_pem(), key, 100).unwrap();
    let log = desk_log(&pki, &[("jsmith", token(1)), ("bob", token(2))]);
    c.ingest(&log.batch(0..log.records().len()), 0).unwrap();
    assert_eq!(c.store().index_mark().unwrap(), 0, "Collector::ingest alone does not index");
    let request = history_request(&["jsmith", "bob"]);
    let size = catch_up(c.store_mut()).unwrap();
    assert_eq!(size, 5);
    assert_eq!(c.store().index_mark().unwrap(), 5);
    let first = answer(c.store(), c.key(), &request, size, 0).unwrap();
    // Rows written again (a crash after the rows, before the mark moved): no row twice.
    let accounts = ["jsmith".to_owned(), "bob".to_owned()];
    let rows = c.store().account_rows(&accounts, 0).unwrap();
    assert_eq!(rows.len(), 2);
    c.store_mut().add_index_rows(&rows, 5).unwrap();
    assert_eq!(c.store().account_rows(&accounts, 0).unwrap(), rows);
    assert_eq!(c.store().index_leaves(0, 5).unwrap().len(), 5);
    let again = catch_up(c.store_mut()).unwrap();
    let second = answer(c.store(), c.key(), &request, again, 0).unwrap();
    assert_eq!(first.answer, second.answer);
    let parsed: resetdesk::upstream::history::HistoryAnswer = serde_json::from_str(&second.answer).unwrap();
    assert!(parsed.accounts.iter().all(|a| a.events.len() == 1), "{parsed:?}");
}

#[test]
fn the_account_index_catches_up_from_stored_records_once_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    index_catches_up(SqliteStore::open(&dir.path().join("c.db")).unwrap());
}

#[test]
fn the_account_index_catches_up_from_stored_records_once_on_postgres() {
    let Some(db) = pg_support::PgDatabase::create() else { return };
    index_catches_up(PgStore::connect(&db.url).unwrap());
}

/// The handler's path indexes a batch from the rows its prechecks made (without
/// reading the leaves back): the same rows, and the same mark, as a catch-up from the
/// stored records gives.
fn rows_from_prechecks_are_those_of_catch_up<S: LogStore + HistoryStore>(fast: S, slow: S) {
    let pki = Pki::new(1);
    let dir = tempfile::tempdir().unwrap();
    let key_path = dir.path().join("log.key");
    LogKey::create(&key_path, "collector.test/resetdesk").unwrap();
    let open = |store| {
        InProcess::open(store, &pki.ca_pem(), LogKey::load(&key_path, "collector.test/resetdesk").unwrap(), 100)
            .unwrap()
    };
    let (mut fast, mut slow) = (open(fast), open(slow));
    let log = desk_log(&pki, &[("jsmith", token(1)), ("bob", token(2))]);
    let body = log.batch(0..log.records().len());
    let prepared = fast.prechecker().prepare(&body);
    resetdesk_collector::api::ingest_locked(&mut fast, &body, prepared, 0).unwrap();
    slow.ingest(&body, 0).unwrap();
    assert_eq!(slow.store().index_mark().unwrap(), 0);
    catch_up(slow.store_mut()).unwrap();
    let accounts = ["jsmith".to_owned(), "bob".to_owned()];
    let rows = fast.store().account_rows(&accounts, 0).unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows, slow.store().account_rows(&accounts, 0).unwrap());
    assert_eq!(fast.store().index_mark().unwrap(), slow.store().index_mark().unwrap());
}

#[test]
fn the_handlers_index_rows_are_those_of_a_catch_up_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    rows_from_prechecks_are_those_of_catch_up(
        SqliteStore::open(&dir.path().join("fast.db")).unwrap(),
        SqliteStore::open(&dir.path().join("slow.db")).unwrap(),
    );
}
