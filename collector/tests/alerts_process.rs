//! The anomaly rules and alerts on the real `resetdesk-collector` process, on SQLite
//! and on PostgreSQL: a scripted scenario of two desks' logs (records signed with the
//! test PKI's software keys, timestamps and facts chosen to trip each rule) raises
//! every rule; each alert is listed by `GET /alerts` with the records it stands on
//! and receipts that verify with the collector's key (the desk's fetch), and by
//! `resetdesk-collector alerts`; each alert is mailed to the security address through
//! a real aiosmtpd, and a mail server that is down blocks nothing and is retried.
//! Hostile input to `GET /alerts`: no or wrong key, bad `after`, floods, paging.

#[path = "../../tests/audit_support/mod.rs"]
mod audit_support;
#[path = "../../tests/desk_support/mod.rs"]
mod desk_support;
mod pg_support;
#[path = "process_support/mod.rs"]
mod process_support;
#[path = "../../tests/tls_support/mod.rs"]
mod tls_support;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use audit_support::{Pki, SoftSigner};
use process_support::{bin, Collector, DeskLog};
use resetdesk::audit::record::entry_hash;
use resetdesk::audit::{AuditLog, DirectoryOutcome, Event, EventType};
use resetdesk::upstream::alerts::{checked, fetch_alerts, AlertList, AlertsError, SecurityAlert};
use serde_json::json;
use time::OffsetDateTime;

const PHONE: &str = "+44 20 7946 0000";

/// Reset facts in the workflow's shape (agent, target and tier, the steps with the
/// contact point used, the hand-off).
fn facts(agent: &str, target: &str, tier: &str, contact: &str) -> serde_json::Value {
    json!({
        "kind": "intent",
        "request_id": format!("req-{target}"),
        "agent": {"username": agent, "tier": "senior", "key_id": "00"},
        "target": {"username": target, "base_tier": tier, "effective_tier": tier, "department": "Finance"},
        "steps": [{"at": "2026-01-01T00:00:00Z", "method": "callback", "verdict": "passed",
                   "detail": {"detail": "contact", "label": "mobile", "value": contact}}],
        "handoff": {"channel": {"channel": "customer-window"}, "agent_may_view": false, "agent_view_reason": null},
        "outcome": {"outcome": "pending"}
    })
}

/// A desk log being written: its signers and the time its records are dated.
struct Script {
    dir: tempfile::TempDir,
    log: AuditLog,
    certs: Vec<Vec<u8>>,
}

impl Script {
    fn new(pki: &Pki, signers: &[&SoftSigner]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(&dir.path().join("audit.sqlite")).unwrap();
        Script { dir, log, certs: signers.iter().map(|s| pki.issue(s)).collect() }
    }

    fn login(&mut self, who: &mut SoftSigner, at: OffsetDateTime) -> u64 {
        let session = json!({"agent": who.name, "workstation": "desk"});
        self.log.heartbeat(EventType::Login, &session, who, at).unwrap().seq
    }

    /// A reset the directory accepted: its intent and outcome; the outcome's seq.
    fn reset(&mut self, who: &mut SoftSigner, target: &str, tier: &str, contact: &str, at: OffsetDateTime) -> u64 {
        let f = facts(&who.name, target, tier, contact);
        let i = self.log.append(&Event::reset_intent(&f).unwrap(), who, at).unwrap();
        let o = Event::reset_outcome(i.intent_ref(), &DirectoryOutcome::Done, &f).unwrap();
        self.log.append(&o, who, at + time::Duration::seconds(5)).unwrap().seq
    }

    fn set_contact(&mut self, admin: &mut SoftSigner, target: &str, at: OffsetDateTime) -> u64 {
        let f = json!({"action": "set-contact", "kind": "phone", "label": "mobile", "value": "+1 555 0100",
                       "target": {"username": target}, "reason": "caller asked", "by": admin.name});
        self.log.append(&Event::new(EventType::AdminAction, &f).unwrap(), admin, at).unwrap().seq
    }

    fn done(self) -> DeskLog {
        let db = self.dir.path().join("audit.sqlite");
        drop(self.log);
        DeskLog { _dir: self.dir, db, certs: self.certs }
    }
}

/// `[anomaly]` for the scenario: small limits, business hours 10:00-14:00 at an offset
/// that makes the collector's now 12:00 local, every day; heartbeats every second.
fn anomaly_config(now: OffsetDateTime) -> String {
    let minute_utc = i32::from(now.hour()) * 60 + i32::from(now.minute());
    let offset = 720 - minute_utc;
    let sign = if offset < 0 { '-' } else { '+' };
    let offset = format!("{sign}{:02}:{:02}", offset.abs() / 60, offset.abs() % 60);
    format!(
        "\n[anomaly.agent_privileged_resets]\nmax = 2\nwindow_minutes = 60\n\
         [anomaly.account_resets]\nmax = 2\nwindow_minutes = 60\n\
         [anomaly.shared_contact]\nmin_accounts = 2\nwindow_days = 1\n\
         [anomaly.business_hours]\nstart = \"10:00\"\nend = \"14:00\"\nutc_offset = \"{offset}\"\n\
         days = [\"mon\", \"tue\", \"wed\", \"thu\", \"fri\", \"sat\", \"sun\"]\n\
         [anomaly.heartbeat]\nmax_silence_seconds = 600\ncheck_every_seconds = 1\n\
         [anomaly.contact_after_reset]\nwithin_minutes = 30\n"
    )
}

fn security_mail(port: u16, ca: &Path) -> String {
    format!(
        "\n[security_mail]\nhost = \"127.0.0.1\"\nport = {port}\nsecurity = \"starttls\"\nca_file = \"{}\"\n\
         from = \"ResetDesk collector <collector@example.org>\"\nto = \"security@example.org\"\n\
         retry_first_seconds = 1\nretry_max_seconds = 2\npoll_seconds = 1\n",
        ca.display()
    )
}

/// Stop `c`, add `text` to its config, start it again.
fn reconfigure(c: &mut Collector, text: &str) {
    c.kill();
    let path = c.dir.path().join("collector.toml");
    let mut config = std::fs::read_to_string(&path).unwrap();
    config.push_str(text);
    std::fs::write(&path, config).unwrap();
    c.restart();
}

/// The two desks' logs of the scenario, and the seqs that should trip each rule.
struct Scenario {
    east: DeskLog,
    west: DeskLog,
    /// East: the reset outside business hours; alice's three privileged resets; the
    /// three resets of jdoe; the admin's set-contact on jdoe.
    night: u64,
    privileged: [u64; 3],
    jdoe: [u64; 3],
    contact_change: u64,
    east_login: u64,
    /// West: bob's reset that used the phone number alice's first privileged reset used.
    west_shared: u64,
}

fn scenario(pki: &Pki, now: OffsetDateTime) -> Scenario {
    let mut alice = SoftSigner::from_seed("alice", 1);
    let mut bob = SoftSigner::from_seed("bob", 2);
    let mut root = SoftSigner::from_seed("root", 3);
    let minutes = |m: i64| now - time::Duration::minutes(m);
    let mut east = Script::new(pki, &[&alice, &root]);
    let east_login = east.login(&mut alice, now - time::Duration::hours(5));
    // 07:00 local: outside 10:00-14:00.
    let night =
        east.reset(&mut alice, "night<b>owl</b>", "standard", "night@example.org", now - time::Duration::hours(5));
    let privileged = [
        east.reset(&mut alice, "p1", "privileged", PHONE, minutes(50)),
        east.reset(&mut alice, "p3", "highest", "p3@example.org", minutes(48)),
        east.reset(&mut alice, "p4", "privileged", "p4@example.org", minutes(46)),
    ];
    let jdoe = [
        east.reset(&mut alice, "jdoe", "standard", "jdoe@example.org", minutes(40)),
        east.reset(&mut alice, "jdoe", "standard", "jdoe@example.org", minutes(38)),
        east.reset(&mut alice, "jdoe", "standard", "JDoe@Example.org", minutes(36)),
    ];
    let contact_change = east.set_contact(&mut root, "jdoe", minutes(30));
    let mut west = Script::new(pki, &[&bob]);
    west.login(&mut bob, minutes(45));
    let west_shared = west.reset(&mut bob, "p2", "standard", "+44 (20) 7946-0000", minutes(44));
    Scenario { east: east.done(), west: west.done(), night, privileged, jdoe, contact_change, east_login, west_shared }
}

fn wait_until<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(t) = f() {
            return t;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn by_kind<'a>(alerts: &'a [SecurityAlert], kind: &str) -> Vec<&'a SecurityAlert> {
    alerts.iter().filter(|a| a.kind == kind).collect()
}

/// The (log id hex, seq, entry hash hex) of records `seqs` of `log`.
fn refs(log: &DeskLog, seqs: &[u64]) -> Vec<(String, u64, String)> {
    let records = log.records();
    let id = hex::encode(log.log_id());
    seqs.iter().map(|&s| (id.clone(), s, hex::encode(entry_hash(&records[s as usize - 1].record)))).collect()
}

fn cited(a: &SecurityAlert) -> Vec<(String, u64, String)> {
    a.records.iter().map(|r| (r.log_id.clone(), r.seq, r.entry_hash.clone())).collect()
}

/// Rows of the alert mail queue: (alert id, attempts, sent, last error).
fn mail_queue(c: &Collector) -> Vec<(i64, i64, bool, Option<String>)> {
    const SQL: &str = "SELECT alert_id, attempts, sent_ms IS NOT NULL, last_error FROM alert_mail ORDER BY alert_id";
    if c.on_postgres() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        return rt.block_on(async {
            let (client, conn) = tokio_postgres::connect(&c.database, tokio_postgres::NoTls).await.unwrap();
            tokio::spawn(conn);
            let rows = client.query(SQL, &[]).await.unwrap();
            rows.iter().map(|r| (r.get(0), i64::from(r.get::<_, i32>(1)), r.get(2), r.get(3))).collect()
        });
    }
    let db = c.db();
    let mut s = db.prepare(SQL).unwrap();
    s.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))).unwrap().map(Result::unwrap).collect()
}

fn every_rule_is_raised_listed_with_receipts_and_mailed(mut c: Collector) {
    if !tls_support::aiosmtpd_available() {
        return;
    }
    let pki = Pki::new(5);
    let now = OffsetDateTime::now_utc();
    // The mail server is down at first: alerts wait in the queue, ingest goes on.
    let mail_dir = tempfile::tempdir().unwrap();
    let mail_pki = tls_support::pki(mail_dir.path());
    let port = tls_support::free_port();
    reconfigure(&mut c, &format!("{}{}", anomaly_config(now), security_mail(port, &mail_pki.ca)));
    let s = scenario(&pki, now);
    let east_n = s.east.records().len();
    c.accept(&s.east, 0..east_n);
    c.accept(&s.west, 0..s.west.records().len());
    // A desk's seq going backwards inside a batch: refused, and an alert of that kind.
    let recs = s.east.records();
    let swapped = vec![recs[1].clone(), recs[0].clone()];
    let (status, e) = c.refuse(resetdesk_collector::wire::encode_batch(&s.east.log_id(), &s.east.certs, &swapped));
    assert_eq!((status, e.error.as_str()), (409, "seq_backwards"));

    let key = c.add_desk_key("desk-east");
    let client = c.desk_client(Some(key.clone()));
    // The heartbeat watch runs every second: both desks' last presence records are
    // older than 600 s (east's by 5 h, west's by 45 min).
    let alerts = wait_until("the heartbeat alerts", || {
        let a = fetch_alerts(&client, &c.trusted(), 0).unwrap();
        (by_kind(&a, "heartbeat_missing").len() == 2).then_some(a)
    });
    let kinds: BTreeSet<&str> = alerts.iter().map(|a| a.kind.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "account_reset_often",
            "agent_privileged_resets",
            "contact_changed_after_reset",
            "heartbeat_missing",
            "reset_outside_hours",
            "seq_backwards",
            "shared_contact_point",
        ]
        .into_iter()
        .collect(),
        "{alerts:#?}"
    );

    // Each alert names the records it stands on; every receipt checked (fetch_alerts)
    // and covering the current tree.
    let size = c.tree_size();
    for a in &alerts {
        for r in &a.records {
            assert_eq!(r.tree_size, Some(size), "{a:?}");
        }
    }
    let night = by_kind(&alerts, "reset_outside_hours");
    assert_eq!(night.len(), 1, "only the reset dated 07:00 local: {night:?}");
    assert_eq!(cited(night[0]), refs(&s.east, &[s.night]));
    assert!(night[0].reason.contains("at 07:0"), "{}", night[0].reason);
    let agent = by_kind(&alerts, "agent_privileged_resets");
    assert_eq!(agent.len(), 1);
    assert_eq!(cited(agent[0]), refs(&s.east, &s.privileged));
    assert!(agent[0].reason.contains("agent alice reset 3 privileged"), "{}", agent[0].reason);
    let often = by_kind(&alerts, "account_reset_often");
    assert_eq!(often.len(), 1);
    assert_eq!(cited(often[0]), refs(&s.east, &s.jdoe));
    let shared = by_kind(&alerts, "shared_contact_point");
    // The phone (east's p1, west's p2) across desks; jdoe's address is one account.
    assert_eq!(shared.len(), 1, "{shared:?}");
    let mut expected = refs(&s.east, &s.privileged[..1]);
    expected.extend(refs(&s.west, &[s.west_shared]));
    assert_eq!(cited(shared[0]), expected);
    assert!(shared[0].reason.contains("+442079460000") && shared[0].reason.contains("p1, p2"), "{}", shared[0].reason);
    let change = by_kind(&alerts, "contact_changed_after_reset");
    assert_eq!(change.len(), 1);
    let mut expected = refs(&s.east, &s.jdoe);
    expected.extend(refs(&s.east, &[s.contact_change]));
    assert_eq!(cited(change[0]), expected);
    let silent = by_kind(&alerts, "heartbeat_missing");
    let mut silent_cited: Vec<_> = silent.iter().flat_map(|a| cited(a)).collect();
    silent_cited.sort();
    let mut expected = refs(&s.east, &[s.east_login]);
    expected.extend(refs(&s.west, &[1]));
    expected.sort();
    assert_eq!(silent_cited, expected);
    let backwards = by_kind(&alerts, "seq_backwards");
    assert_eq!((backwards.len(), backwards[0].log_id.clone()), (1, Some(hex::encode(s.east.log_id()))));

    // What the desk checks: a receipt under a key it does not trust, or moved to
    // another record, makes the answer unusable.
    let token = std::fs::read_to_string(&key).unwrap();
    let raw = c.client.get(c.url("/alerts")).bearer_auth(token.trim()).send().unwrap().text().unwrap();
    let list: AlertList = serde_json::from_str(&raw).unwrap();
    let body = list.alerts.into_iter().find(|a| a.kind == "agent_privileged_resets").unwrap();
    assert!(checked(body.clone(), &c.trusted()).is_ok());
    let err = checked(body.clone(), &resetdesk::audit::CollectorKeys::default()).unwrap_err();
    assert!(matches!(err, AlertsError::BadReceipt { .. }), "{err}");
    let mut moved = body.clone();
    moved.records[0].entry_hash = moved.records[1].entry_hash.clone();
    let err = checked(moved, &c.trusted()).unwrap_err();
    assert!(err.to_string().contains("for another record"), "{err}");
    let mut bent = body;
    let proof = bent.records[0].receipt.as_mut().unwrap()["inclusion"].as_array_mut().unwrap();
    proof.swap(0, 1);
    assert!(checked(bent, &c.trusted()).is_err());

    // Paging by id: after the third alert, the rest.
    let later = fetch_alerts(&client, &c.trusted(), alerts[2].id).unwrap();
    assert_eq!(later, alerts[3..]);

    // The CLI lists the same for the security team, as text and as the JSON body.
    let config = c.dir.path().join("collector.toml");
    let mut cli = bin();
    cli.args(["alerts", "--config"]).arg(&config);
    if c.on_postgres() {
        cli.args(["--database", &c.database]);
    }
    let out = cli.output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    for a in &alerts {
        assert!(text.contains(&format!("#{} ", a.id)) && text.contains(&a.reason), "{text}");
    }
    assert!(text.contains(&format!("record {} seq {}", hex::encode(s.east.log_id()), s.night)), "{text}");
    let out = cli.args(["--json", "--after", &alerts[5].id.to_string()]).output().unwrap();
    let list: AlertList = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        list.alerts.iter().map(|a| a.id).collect::<Vec<_>>(),
        alerts[6..].iter().map(|a| a.id).collect::<Vec<_>>()
    );
    let ids: Vec<u64> = alerts.iter().map(|a| a.id).collect();

    // The mail server was down: every alert is queued, tried and kept for a retry.
    let tried = wait_until("failed mail attempts", || {
        let q = mail_queue(&c);
        (q.len() == ids.len() && q.iter().all(|(_, attempts, sent, _)| *attempts >= 1 && !sent)).then_some(q)
    });
    assert!(tried.iter().all(|(_, _, _, e)| e.as_deref().is_some_and(|e| !e.is_empty())), "{tried:?}");
    // Ingest went on meanwhile.
    let more = DeskLog::write(&pki, 1);
    c.accept(&more, 0..3);

    // Up: each alert arrives once, to the security address, with its records.
    let server = tls_support::MailServer::start(port, &mail_pki, &mail_dir.path().join("maildir"));
    let mails = wait_until("the alert mails", || {
        let q = mail_queue(&c);
        q.iter().all(|(_, _, sent, _)| *sent).then(|| server.messages())
    });
    let total = mail_queue(&c).len();
    assert_eq!(total, ids.len(), "the later desk raised nothing");
    assert!(mails.iter().all(|(rcpt, _)| rcpt == "security@example.org"), "{mails:?}");
    // Each alert in exactly one mail; the backlog of the east batch's four came as one
    // digest (more than three due at once).
    for id in &ids {
        let with = mails.iter().filter(|(_, m)| m.contains(&format!("Alert {id} ("))).count();
        assert_eq!(with, 1, "alert {id} in {with} mails");
    }
    assert!(mails.len() < total, "{} mails for {total} alerts", mails.len());
    assert!(mails.iter().any(|(_, m)| m.contains("[ResetDesk alerts ")), "a digest");
    let agent_mail = mails
        .iter()
        .find(|(_, m)| m.contains(&format!("Alert {} (", agent[0].id)))
        .unwrap_or_else(|| panic!("no mail for alert {}: {mails:?}", agent[0].id));
    assert!(agent_mail.1.contains("One agent reset many privileged accounts"), "{}", agent_mail.1);
    for (_, seq, hash) in refs(&s.east, &s.privileged) {
        assert!(agent_mail.1.contains(&format!("{seq} {hash}")), "{}", agent_mail.1);
    }
    // Account names become text in the HTML part, never markup.
    let night_mail = mails.iter().find(|(_, m)| m.contains(&format!("Alert {} (", night[0].id))).unwrap();
    assert!(night_mail.1.contains("night&lt;b&gt;owl&lt;/b&gt;"), "{}", night_mail.1);
    assert_eq!(night_mail.1.matches("night<b>owl</b>").count(), 1, "only in the text part: {}", night_mail.1);
}

#[test]
fn every_rule_is_raised_listed_with_receipts_and_mailed_on_sqlite() {
    let pki = Pki::new(5);
    every_rule_is_raised_listed_with_receipts_and_mailed(Collector::start(&pki));
}

#[test]
fn every_rule_is_raised_listed_with_receipts_and_mailed_on_postgres() {
    let Some(db) = pg_support::PgDatabase::create() else { return };
    let pki = Pki::new(5);
    every_rule_is_raised_listed_with_receipts_and_mailed(Collector::start_on(&pki.ca_pem(), 4 * 1024 * 1024, &db.url));
    drop(db);
}

#[test]
fn alerts_answer_only_desks_refuse_bad_queries_and_page_through_a_flood() {
    let pki = Pki::new(6);
    let mut c = Collector::start(&pki);
    let mail_dir = tempfile::tempdir().unwrap();
    let mail_pki = tls_support::pki(mail_dir.path());
    let port = tls_support::free_port();
    let server = tls_support::aiosmtpd_available()
        .then(|| tls_support::MailServer::start(port, &mail_pki, &mail_dir.path().join("maildir")));
    if server.is_some() {
        reconfigure(&mut c, &security_mail(port, &mail_pki.ca));
    }
    // A flood of garbage posts: each refusal is an alert (more than one page of them).
    for _ in 0..130 {
        assert_eq!(c.refuse(b"<script>alert(1)</script>".to_vec()).1.error, "malformed_body");
    }
    let key_file = c.add_desk_key("desk-east");
    let key = std::fs::read_to_string(&key_file).unwrap().trim().to_owned();
    let get = |path: &str, auth: Option<String>| {
        let mut r = c.client.get(c.url(path));
        if let Some(a) = auth {
            r = r.header("Authorization", a);
        }
        let r = r.send().unwrap();
        (r.status().as_u16(), r.text().unwrap())
    };
    // No key, a wrong key, a key in the wrong scheme: 401 before anything is read.
    for auth in [None, Some(format!("Bearer {}", "0".repeat(64))), Some(format!("Basic {key}"))] {
        let (status, body) = get("/alerts?after=banana", auth);
        assert_eq!(status, 401, "{body}");
        assert!(body.contains("unauthenticated"), "{body}");
    }
    let bearer = || Some(format!("Bearer {key}"));
    for bad in ["?after=-1", "?after=1e9", "?after=99999999999999999999999", "?after=", "?limit=5", "?after=1&after=2"]
    {
        let (status, body) = get(&format!("/alerts{bad}"), bearer());
        assert_eq!(status, 400, "{bad}: {body}");
        let e: resetdesk_collector::wire::ErrorBody = serde_json::from_str(&body).unwrap();
        assert_eq!(e.error, "bad_request");
    }
    // One page is at most 100 alerts; the desk's fetch follows `more`.
    let (status, body) = get("/alerts", bearer());
    assert_eq!(status, 200);
    let page: AlertList = serde_json::from_str(&body).unwrap();
    assert_eq!((page.alerts.len(), page.more), (100, true));
    let all = fetch_alerts(&c.desk_client(Some(key_file.clone())), &c.trusted(), 0).unwrap();
    assert_eq!(all.len(), 130);
    assert!(all.iter().all(|a| a.kind == "malformed_body" && a.records.is_empty()));
    assert_eq!(all.windows(2).filter(|w| w[0].id >= w[1].id).count(), 0, "oldest first, each once");
    let (status, body) = get(&format!("/alerts?after={}", all[129].id), bearer());
    assert_eq!((status, serde_json::from_str::<AlertList>(&body).unwrap().alerts.len()), (200, 0));
    // A flood of unauthenticated requests changes nothing; the desk is still answered.
    for _ in 0..200 {
        assert_eq!(get("/alerts", None).0, 401);
    }
    assert_eq!(fetch_alerts(&c.desk_client(Some(key_file)), &c.trusted(), 0).unwrap().len(), 130);
    // The security mailbox gets every alert, in digests, not 130 mails.
    if let Some(server) = server {
        let mails = wait_until("the flood's mails", || {
            let q = mail_queue(&c);
            (q.len() == 130 && q.iter().all(|(_, _, sent, _)| *sent)).then(|| server.messages())
        });
        for a in &all {
            let with = mails.iter().filter(|(_, m)| m.contains(&format!("Alert {} (", a.id))).count();
            assert_eq!(with, 1, "alert {} in {with} mails", a.id);
        }
        assert!(mails.len() <= 20, "{} mails for 130 alerts", mails.len());
    }
}

#[test]
fn two_instances_on_one_postgres_share_the_rules_memory_across_desks() {
    let Some(db) = pg_support::PgDatabase::create() else { return };
    let pki = Pki::new(8);
    let now = OffsetDateTime::now_utc();
    let mut a = Collector::start_on(&pki.ca_pem(), 4 * 1024 * 1024, &db.url);
    reconfigure(&mut a, &anomaly_config(now));
    let mut b = a.sibling();
    reconfigure(&mut b, &anomaly_config(now));
    // Alice resets privileged accounts at two desks; each desk's log goes to another
    // instance. Neither instance saw more than two of them itself.
    let mut alice = SoftSigner::from_seed("alice", 1);
    let minutes = |m: i64| now - time::Duration::minutes(m);
    let mut east = Script::new(&pki, &[&alice]);
    east.login(&mut alice, minutes(20));
    let first = east.reset(&mut alice, "p1", "privileged", "p1@example.org", minutes(19));
    let mut west = Script::new(&pki, &[&alice]);
    west.login(&mut alice, minutes(15));
    let second = west.reset(&mut alice, "p2", "privileged", "p2@example.org", minutes(14));
    let third = west.reset(&mut alice, "p3", "highest", "p3@example.org", minutes(12));
    let (east, west) = (east.done(), west.done());
    a.accept(&east, 0..3);
    b.accept(&west, 0..5);
    for c in [&a, &b] {
        let key = c.add_desk_key("desk-east");
        let alerts = fetch_alerts(&c.desk_client(Some(key)), &c.trusted(), 0).unwrap();
        let agent = by_kind(&alerts, "agent_privileged_resets");
        assert_eq!(agent.len(), 1, "{alerts:#?}");
        let mut expected = refs(&east, &[first]);
        expected.extend(refs(&west, &[second, third]));
        assert_eq!(cited(agent[0]), expected);
    }
    // Carol resets two privileged accounts at each of two desks at once, each batch
    // on another instance: neither batch is over the limit, both together are. The
    // rule fires once (the database decides who fires).
    let mut carol = SoftSigner::from_seed("carol", 4);
    let mut burst = |first: u32| {
        let mut log = Script::new(&pki, &[&carol]);
        log.login(&mut carol, minutes(10 + i64::from(first))); // two desk logs, not one
        for k in first..first + 2 {
            log.reset(&mut carol, &format!("q{k}"), "privileged", "q@example.org", minutes(9));
        }
        log.done()
    };
    let (one, two) = (burst(1), burst(3));
    std::thread::scope(|scope| {
        scope.spawn(|| a.accept(&one, 0..5));
        scope.spawn(|| b.accept(&two, 0..5));
    });
    let key = a.add_desk_key("desk-north");
    let alerts = fetch_alerts(&a.desk_client(Some(key)), &a.trusted(), 0).unwrap();
    let carols: Vec<_> =
        by_kind(&alerts, "agent_privileged_resets").into_iter().filter(|x| x.reason.contains("agent carol")).collect();
    assert_eq!(carols.len(), 1, "{alerts:#?}");
    assert!(carols[0].records.len() >= 3, "{:?}", carols[0]);
    drop((a, b, db));
}

#[test]
fn the_admin_screen_shows_the_collectors_alerts_to_admins_only_and_says_why_when_it_cannot() {
    use resetdesk::desk::DeskError;
    use resetdesk::tier::AgentTier;
    let pki = Pki::new(7);
    let mut c = Collector::start(&pki);
    reconfigure(&mut c, &anomaly_config(OffsetDateTime::now_utc()));
    let s = scenario(&pki, OffsetDateTime::now_utc());
    c.accept(&s.east, 0..s.east.records().len());
    let site = desk_support::site();
    // A desk opens with its token registry (no key enrolled is needed here).
    drop(resetdesk::token::registry::TokenRegistry::open(site.dir.path()).unwrap());
    let collector = |key| resetdesk::config::CollectorConfig {
        url: c.base_url(),
        verifier_key: Some(c.vkey.clone()),
        ca_file: Some(c.dir.path().join("tls/ca.pem")),
        desk_key_file: key,
        ..Default::default()
    };
    let mut config = site.config.clone();
    config.collector = collector(Some(c.add_desk_key("desk-east")));
    let desk = resetdesk::desk::Desk::open_configured(config).unwrap();
    let view = desk.alerts_view(AgentTier::Admin, 0).unwrap();
    assert_eq!(view.unavailable, None);
    let agent = view.alerts.iter().find(|a| a.kind == "agent_privileged_resets").unwrap();
    assert_eq!(agent.title, "One agent reset many privileged accounts");
    assert!(agent.records.iter().all(|r| r.leaf_index.is_some() && r.tree_size == Some(c.tree_size())));
    assert_eq!(agent.records.iter().map(|r| r.seq).collect::<Vec<_>>(), s.privileged);
    // Only after an id: what is new since the screen last looked.
    let newer = desk.alerts_view(AgentTier::Admin, agent.id).unwrap();
    assert!(newer.alerts.iter().all(|a| a.id > agent.id) && newer.alerts.len() < view.alerts.len());
    assert!(matches!(desk.alerts_view(AgentTier::Senior, 0), Err(DeskError::AdminOnly)));

    // A key the collector does not know, or no collector: "unavailable" with the reason.
    let wrong = site.dir.path().join("wrong.key");
    std::fs::write(&wrong, "0".repeat(64)).unwrap();
    let mut config = site.config.clone();
    config.collector = collector(Some(wrong));
    let view = resetdesk::desk::Desk::open_configured(config).unwrap().alerts_view(AgentTier::Admin, 0).unwrap();
    assert!(view.alerts.is_empty());
    assert!(view.unavailable.as_deref().is_some_and(|u| u.contains("401")), "{view:?}");
    let view = site.desk().alerts_view(AgentTier::Admin, 0).unwrap();
    assert!(view.unavailable.as_deref().is_some_and(|u| u.contains("no collector")), "{view:?}");
}

#[test]
fn a_bad_anomaly_or_mail_section_stops_serve_and_says_what_to_fix() {
    let pki = Pki::new(10);
    let mut c = Collector::start(&pki);
    c.kill();
    let path = c.dir.path().join("collector.toml");
    let base = std::fs::read_to_string(&path).unwrap();
    for (section, says) in [
        ("[anomaly.business_hours]\nstart = \"8 o'clock\"\n", "is not a time of day"),
        ("[anomaly.account_resets]\nlimit = 3\n", "unknown field `limit`"),
        (
            "[security_mail]\nhost = \"127.0.0.1\"\nfrom = \"collector@example.org\"\nto = \"<script>\"\n",
            "[security_mail]",
        ),
        (
            "[security_mail]\nhost = \"127.0.0.1\"\nfrom = \"c@example.org\"\nto = \"s@example.org\"\nca_file = \"missing.pem\"\n",
            "missing.pem",
        ),
    ] {
        std::fs::write(&path, format!("{base}\n{section}")).unwrap();
        let out = bin().args(["serve", "--config"]).arg(&path).output().unwrap();
        assert!(!out.status.success(), "{section}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{section}: {err}");
    }
}
