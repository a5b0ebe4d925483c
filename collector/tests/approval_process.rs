//! Manager approval by link against the real `resetdesk-collector` process, on SQLite
//! and on PostgreSQL: a desk registers a request with its desk key, the manager opens
//! `/approve/<token>` with a plain HTTP client, approves or denies once, and the desk
//! fetches the signed decision. Hostile input: wrong, expired and reused tokens,
//! another desk's request, HTML in the fields the page shows, oversized bodies, and
//! floods past the per-client and overall rate limits. The whole loop with a desk on
//! the virtual card (pcscd), its approval mail through a real aiosmtpd, is at the end.

#[path = "../../tests/audit_support/mod.rs"]
mod audit_support;
#[path = "../../tests/desk_support/mod.rs"]
mod desk_support;
#[path = "pg_support/mod.rs"]
mod pg_support;
#[path = "process_support/mod.rs"]
mod process_support;
#[path = "../../tests/tls_support/mod.rs"]
mod tls_support;

use std::path::PathBuf;
use std::time::Duration;

use process_support::Collector;
use resetdesk::audit::CollectorKeys;
use resetdesk::upstream::approval_wire::{ApprovalStatus, DecisionStatement};
use sha2::{Digest, Sha256};

/// Which database the collector runs on.
#[derive(Clone, Copy)]
enum Db {
    Sqlite,
    Postgres,
}

/// A collector with `[approval]` settings; the PostgreSQL database outlives it.
struct Running {
    c: Collector,
    _db: Option<pg_support::PgDatabase>,
}

/// A collector on `db` with `approval` (TOML lines of `[approval]`); `None`: no
/// PostgreSQL here (skip, outside CI).
fn collector(db: Db, approval: &str) -> Option<Running> {
    let pki = audit_support::Pki::new(1);
    let (database, pg) = match db {
        Db::Sqlite => ("collector.db".to_owned(), None),
        Db::Postgres => {
            let pg = pg_support::PgDatabase::create()?;
            (pg.url.clone(), Some(pg))
        }
    };
    let mut c = Collector::start_on(&pki.ca_pem(), 4 * 1024 * 1024, &database);
    if !approval.is_empty() {
        c.kill();
        let config = c.dir.path().join("collector.toml");
        let mut text = std::fs::read_to_string(&config).unwrap();
        text.push_str(&format!("\n[approval]\n{approval}\n"));
        std::fs::write(&config, text).unwrap();
        c.restart();
    }
    Some(Running { c, _db: pg })
}

/// A test of `scenario` on SQLite and one on PostgreSQL.
macro_rules! on_both {
    ($sqlite:ident, $postgres:ident, $scenario:ident) => {
        #[test]
        fn $sqlite() {
            $scenario(Db::Sqlite);
        }

        #[test]
        fn $postgres() {
            $scenario(Db::Postgres);
        }
    };
}

/// A collector on `db` with `approval` settings and a desk key for `desk-1`.
fn with_desk(db: Db, approval: &str) -> Option<(Running, Desk)> {
    let running = collector(db, approval)?;
    let desk = Desk::of(&running.c, "desk-1");
    Some((running, desk))
}

fn token(n: u8) -> String {
    hex::encode([n; 16])
}

fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

fn registration(request_id: &str, token: &str) -> serde_json::Value {
    serde_json::json!({
        "request_id": request_id,
        "token_sha256": sha256_hex(token),
        "manager": "dgarcia",
        "address": "dgarcia@example.com",
        "agent": "alice",
        "agent_name": "Alice <script>alert('agent')</script>",
        "agent_employee_id": "E-1\" onmouseover=\"x",
        "account": "jsmith",
        "account_name": "Jordan <img src=x onerror=alert(1)> Smith",
        "reasons": ["<b>privileged</b> & sensitive", "</dd><form action=https://evil.test>"],
    })
}

struct Desk {
    key: String,
}

impl Desk {
    fn of(c: &Collector, name: &str) -> Self {
        let path = c.add_desk_key(name);
        Self { key: std::fs::read_to_string(path).unwrap().trim().to_owned() }
    }

    fn register(&self, c: &Collector, body: &serde_json::Value) -> (u16, String) {
        self.post_raw(c, serde_json::to_vec(body).unwrap())
    }

    fn post_raw(&self, c: &Collector, body: Vec<u8>) -> (u16, String) {
        let r = c.client.post(c.url("/approvals")).bearer_auth(&self.key).body(body).send().unwrap();
        (r.status().as_u16(), r.text().unwrap())
    }

    fn status(&self, c: &Collector, request_id: &str) -> (u16, String) {
        let r = c.client.get(c.url(&format!("/approvals/{request_id}"))).bearer_auth(&self.key).send().unwrap();
        (r.status().as_u16(), r.text().unwrap())
    }

    fn decided(&self, c: &Collector, request_id: &str) -> DecisionStatement {
        let (code, body) = self.status(c, request_id);
        assert_eq!(code, 200, "{body}");
        let ApprovalStatus::Decided { note } = serde_json::from_str(&body).unwrap() else { panic!("{body}") };
        let mut keys = CollectorKeys::default();
        keys.add_verifier_key(&c.vkey).unwrap();
        DecisionStatement::parse(&keys.verify_note_text(&note).unwrap()).unwrap()
    }
}

struct Page {
    status: u16,
    csp: String,
    text: String,
}

fn open_page(c: &Collector, token: &str) -> Page {
    let r = c.client.get(c.url(&format!("/approve/{token}"))).send().unwrap();
    let status = r.status().as_u16();
    let csp = r.headers().get("content-security-policy").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    Page { status, csp, text: r.text().unwrap() }
}

fn answer(c: &Collector, token: &str, decision: &str) -> (u16, String) {
    let r = c
        .client
        .post(c.url(&format!("/approve/{token}")))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("decision={decision}"))
        .send()
        .unwrap();
    (r.status().as_u16(), r.text().unwrap())
}

fn alert_kinds(c: &Collector) -> Vec<String> {
    c.alerts().into_iter().map(|(kind, _)| kind).collect()
}

// ----- the page, approval once, another desk -----

fn approved_once(db: Db) {
    let Some((running, desk)) = with_desk(db, "") else { return };
    let c = &running.c;
    let t = token(1);
    let (code, body) = desk.register(c, &registration("req-0001", &t));
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("expires_at"), "{body}");
    let (code, body) = desk.status(c, "req-0001");
    assert_eq!((code, body.contains("\"pending\"")), (200, true), "{body}");

    let page = open_page(c, &t);
    assert_eq!(page.status, 200, "{}", page.text);
    assert!(page.csp.starts_with("default-src 'none'") && !page.csp.contains("unsafe"), "{}", page.csp);
    // Every field is shown, as text: no markup from the desk gets through.
    for shown in [
        "Alice &lt;script&gt;alert(&#39;agent&#39;)&lt;/script&gt;",
        "Jordan &lt;img src=x onerror=alert(1)&gt; Smith",
        "&lt;b&gt;privileged&lt;/b&gt; &amp; sensitive",
        "&lt;/dd&gt;&lt;form action=https://evil.test&gt;",
        "E-1&quot; onmouseover=&quot;x",
        "desk-1",
        "jsmith",
    ] {
        assert!(page.text.contains(shown), "{shown} not in {}", page.text);
    }
    for markup in ["<script", "<img", "<b>", "evil.test>", "\" onmouseover"] {
        assert!(!page.text.contains(markup), "{markup} in {}", page.text);
    }
    assert_eq!(page.text.matches("<form").count(), 1, "one form: Approve / Deny");
    assert!(page.text.contains(&format!("action=\"/approve/{t}\"")), "{}", page.text);

    // A wrong token, or no token, is refused; the right one works once.
    assert_eq!(open_page(c, &token(2)).status, 404);
    assert_eq!(answer(c, &token(2), "approve").0, 404);
    assert_eq!(answer(c, &t, "maybe").0, 400);
    let (code, text) = answer(c, &t, "approve");
    assert_eq!(code, 200, "{text}");
    assert!(text.contains("Approved"), "{text}");
    let (code, text) = answer(c, &t, "deny");
    assert_eq!(code, 409, "reused: {text}");
    assert_eq!(open_page(c, &t).status, 409, "answered");

    let decision = desk.decided(c, "req-0001");
    assert!(decision.approved);
    assert_eq!(decision.token_sha256.to_vec(), Sha256::digest(t.as_bytes()).to_vec());
    assert_eq!((decision.manager.as_str(), decision.address.as_str()), ("dgarcia", "dgarcia@example.com"));
    assert_eq!((decision.request_id.as_str(), decision.desk.as_str()), ("req-0001", "desk-1"));

    // Another desk neither sees the request nor can take it over; that is an alert.
    let other = Desk::of(c, "desk-2");
    assert_eq!(other.status(c, "req-0001").0, 404);
    let (code, body) = other.register(c, &registration("req-0001", &token(3)));
    assert_eq!(code, 409, "{body}");
    assert!(alert_kinds(c).contains(&"approval-refused".to_owned()));
    // Without a desk key there is no service.
    let r = c.client.get(c.url("/approvals/req-0001")).send().unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert_eq!(desk.decided(c, "req-0001"), decision, "the decision stands");
}

on_both!(
    an_approval_is_shown_escaped_recorded_once_and_signed_on_sqlite,
    an_approval_is_shown_escaped_recorded_once_and_signed_on_postgres,
    approved_once
);

// ----- a denial ends the request -----

fn denied(db: Db) {
    let Some((running, desk)) = with_desk(db, "") else { return };
    let c = &running.c;
    let t = token(4);
    assert_eq!(desk.register(c, &registration("req-0002", &t)).0, 200);
    let (code, text) = answer(c, &t, "deny");
    assert_eq!(code, 200, "{text}");
    assert!(text.contains("Denied"), "{text}");
    assert!(!desk.decided(c, "req-0002").approved);
    let alerts = c.alerts();
    let (_, reason) = alerts.iter().find(|(kind, _)| kind == "approval-denied").expect("an alert for security");
    assert!(reason.contains("req-0002") && reason.contains("jsmith") && reason.contains("dgarcia"), "{reason}");
    // The request has ended: the desk cannot ask again under it.
    let (code, body) = desk.register(c, &registration("req-0002", &token(5)));
    assert_eq!(code, 409, "{body}");
    assert!(body.contains("approval_denied"), "{body}");
    assert_eq!(open_page(c, &token(5)).status, 404);
}

on_both!(
    a_denial_ends_the_request_and_alerts_security_on_sqlite,
    a_denial_ends_the_request_and_alerts_security_on_postgres,
    denied
);

// ----- an expired link -----

fn expired(db: Db) {
    let Some((running, desk)) = with_desk(db, "ttl_seconds = 1") else { return };
    let c = &running.c;
    let t = token(6);
    assert_eq!(desk.register(c, &registration("req-0003", &t)).0, 200);
    std::thread::sleep(Duration::from_millis(1300));
    let page = open_page(c, &t);
    assert_eq!(page.status, 410, "{}", page.text);
    assert!(page.text.contains("expired"), "{}", page.text);
    assert_eq!(answer(c, &t, "approve").0, 410);
    let (code, body) = desk.status(c, "req-0003");
    assert_eq!((code, body.contains("\"expired\"")), (200, true), "{body}");
    // Asking again gives a new link that works; the old one stays dead.
    let t2 = token(7);
    assert_eq!(desk.register(c, &registration("req-0003", &t2)).0, 200);
    assert_eq!(open_page(c, &t).status, 404);
    assert_eq!(answer(c, &t2, "approve").0, 200);
}

on_both!(an_expired_link_records_nothing_on_sqlite, an_expired_link_records_nothing_on_postgres, expired);

// ----- hostile registrations and bodies -----

fn hostile(db: Db) {
    let Some((running, desk)) = with_desk(db, "") else { return };
    let c = &running.c;
    let bad = |field: &str, value: serde_json::Value| {
        let mut body = registration("req-0004", &token(8));
        body[field] = value;
        let (code, text) = desk.register(c, &body);
        assert_eq!(code, 400, "{field}: {text}");
        assert!(text.contains(field), "{field}: {text}");
    };
    bad("account", "<script>".into());
    bad("manager", "dgarcia\"><b>".into());
    bad("request_id", "../../etc/passwd".into());
    bad("address", "x@evil.test>\r\nBcc: all@example.com".into());
    bad("account_name", "x".repeat(301).into());
    bad("agent_name", "line\nbreak".into());
    bad("token_sha256", "00".into());
    bad("reasons", serde_json::json!(vec!["r"; 17]));
    let mut extra = registration("req-0004", &token(8));
    extra["admin"] = true.into();
    assert_eq!(desk.register(c, &extra).0, 400, "unknown fields are refused");
    assert_eq!(desk.post_raw(c, b"{not json".to_vec()).0, 400);
    let oversized = c
        .oversized_status(|client| client.post(c.url("/approvals")).bearer_auth(&desk.key).body(vec![b' '; 64 * 1024]));
    assert_eq!(oversized, 413, "oversized");
    let url = c.url("/approve/00112233445566778899aabbccddeeff");
    assert_eq!(c.oversized_status(|client| client.post(&url).body(vec![b'a'; 64 * 1024])), 413);

    // One token hash for two requests is refused.
    assert_eq!(desk.register(c, &registration("req-0005", &token(9))).0, 200);
    let (code, body) = desk.register(c, &registration("req-0006", &token(9)));
    assert_eq!(code, 409, "{body}");
    assert!(body.contains("token_reused"), "{body}");
    // Links that are no token at all.
    for path in ["/approve/short", "/approve/%3Cscript%3E", &format!("/approve/{}0", token(9))] {
        let r = c.client.get(c.url(path)).send().unwrap();
        assert_eq!(r.status().as_u16(), 404, "{path}");
        assert!(!r.text().unwrap().contains("<script>"), "{path}");
    }
    // Nothing was stored for the refused requests.
    assert_eq!(desk.status(c, "req-0004").0, 404);
}

on_both!(
    hostile_registrations_and_bodies_are_refused_on_sqlite,
    hostile_registrations_and_bodies_are_refused_on_postgres,
    hostile
);

// ----- floods -----

fn flood(db: Db) {
    let limits = "per_client = { burst = 5, per_minute = 1 }\noverall = { burst = 8, per_minute = 1 }";
    let Some((running, desk)) = with_desk(db, limits) else { return };
    let c = &running.c;
    let t = token(10);
    assert_eq!(desk.register(c, &registration("req-0007", &t)).0, 200);
    // One client guessing tokens gets its burst, then 429 with Retry-After.
    for k in 0..5u8 {
        assert_eq!(open_page(c, &token(100 + k)).status, 404);
    }
    let r = c.client.get(c.url(&format!("/approve/{}", token(120)))).send().unwrap();
    assert_eq!(r.status().as_u16(), 429);
    let retry: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    assert_eq!(open_page(c, &t).status, 429, "the right token too, while over the limit");
    assert_eq!(answer(c, &t, "approve").0, 429, "posts count as well");
    // Another client has its own bucket, until all clients together meet the overall limit.
    let other = process_support::client_from(&c.dir.path().join("tls/ca.pem"), Some([127, 0, 0, 2].into()));
    let get = |path: String| other.get(c.url(&path)).send().unwrap().status().as_u16();
    assert_eq!(get(format!("/approve/{t}")), 200);
    assert_eq!(get(format!("/approve/{}", token(121))), 404);
    assert_eq!(get(format!("/approve/{}", token(122))), 404);
    assert_eq!(get(format!("/approve/{t}")), 429, "8 requests in all");
    // Nothing was decided by the flood.
    let (_, body) = desk.status(c, "req-0007");
    assert!(body.contains("\"pending\""), "{body}");
}

on_both!(
    floods_meet_the_per_client_and_overall_limits_on_sqlite,
    floods_meet_the_per_client_and_overall_limits_on_postgres,
    flood
);

// ----- the desk's channel: only its token, only the collector's key -----

mod channel {
    use super::*;
    use resetdesk::desk::approval::{ApprovalChannel, ApprovalContext, ApprovalError, Issued};
    use resetdesk::desk::collector_approval::CollectorApprovals;
    use resetdesk::secret::Secret;

    fn issued() -> Issued {
        Issued { request_id: "req-0100".into(), manager: "dgarcia".into(), address: "dgarcia@example.com".into() }
    }

    fn about() -> ApprovalContext {
        ApprovalContext {
            agent: "alice".into(),
            agent_name: "Alice Example".into(),
            account: "jsmith".into(),
            account_name: "Jordan Smith".into(),
            reasons: vec!["privileged account".into()],
            ..Default::default()
        }
    }

    /// A desk's channel to `c` with `key_file`, trusting `keys`, in a data directory of its own.
    fn channel(
        c: &Collector,
        key_file: &std::path::Path,
        keys: CollectorKeys,
    ) -> (tempfile::TempDir, CollectorApprovals) {
        let dir = tempfile::tempdir().unwrap();
        let ch = CollectorApprovals::new(c.desk_client(Some(key_file.to_owned())), keys, dir.path()).unwrap();
        (dir, ch)
    }

    fn token_of(ch: &CollectorApprovals, t: &Secret) -> String {
        ch.answer_link(t).unwrap().rsplit('/').next().unwrap().to_owned()
    }

    fn only_its_token(db: Db) {
        let Some(running) = collector(db, "") else { return };
        let c = &running.c;
        let key = c.add_desk_key("desk-1");
        let now = time::OffsetDateTime::now_utc();

        // The approval works through the channel: pending, then the signed answer, once.
        let (_a_dir, mut a) = channel(c, &key, c.trusted());
        let first = a.issue(&issued(), &about(), now).unwrap();
        assert!(first.expires_at > now + time::Duration::minutes(29), "the collector's 30 minutes");
        assert_eq!(a.take_answer("req-0100").unwrap(), None, "pending");
        let t1 = token_of(&a, &first.token);
        assert_eq!(answer(c, &t1, "approve").0, 200);
        let response = a.take_answer("req-0100").unwrap().expect("the decision");
        assert!(response.approved);
        assert_eq!((response.approver.as_str(), response.via_address.as_str()), ("dgarcia", "dgarcia@example.com"));
        assert!(response.decision_note.unwrap().contains("resetdesk-approval-decision/v1"));
        assert_eq!(a.take_answer("req-0100").unwrap(), None, "taken once");

        // Desk A asks again; meanwhile another data directory with the same desk key
        // registers the request under its own token, and the manager answers that one:
        // A refuses a decision for a token it did not issue.
        a.issue(&issued(), &about(), now).unwrap();
        let (_b_dir, mut b) = channel(c, &key, c.trusted());
        let other = b.issue(&issued(), &about(), now).unwrap();
        assert_eq!(answer(c, &token_of(&b, &other.token), "approve").0, 200);
        let refused = a.take_answer("req-0100");
        assert!(matches!(&refused, Err(ApprovalError::BadDecision(why)) if why.contains("token")), "{refused:?}");

        // A decision signed by a key the desk does not trust is refused.
        let stranger = Collector::start(&audit_support::Pki::new(2));
        let (_c_dir, mut untrusting) = channel(c, &key, stranger.trusted());
        let mut asked = issued();
        asked.request_id = "req-0101".into();
        let t = untrusting.issue(&asked, &about(), now).unwrap();
        assert_eq!(answer(c, &token_of(&untrusting, &t.token), "deny").0, 200);
        let refused = untrusting.take_answer("req-0101");
        assert!(matches!(refused, Err(ApprovalError::BadDecision(_))), "{refused:?}");
    }

    on_both!(
        a_desk_accepts_decisions_only_for_its_token_under_the_collectors_key_on_sqlite,
        a_desk_accepts_decisions_only_for_its_token_under_the_collectors_key_on_postgres,
        only_its_token
    );

    fn expired_for_the_desk(db: Db) {
        let Some(running) = collector(db, "ttl_seconds = 1") else { return };
        let c = &running.c;
        let key = c.add_desk_key("desk-1");
        let (_dir, mut ch) = channel(c, &key, c.trusted());
        ch.issue(&issued(), &about(), time::OffsetDateTime::now_utc()).unwrap();
        std::thread::sleep(Duration::from_millis(1300));
        assert!(matches!(ch.take_answer("req-0100"), Err(ApprovalError::Expired)));
    }

    on_both!(
        an_expired_link_is_an_error_for_the_desk_on_sqlite,
        an_expired_link_is_an_error_for_the_desk_on_postgres,
        expired_for_the_desk
    );
}

// ----- the whole loop: a desk on the virtual card, mail through aiosmtpd -----

mod desk_loop {
    use super::*;
    use resetdesk::config::{CollectorConfig, SmtpConfig, SmtpSecurity};
    use resetdesk::desk::approval::ApprovalError;
    use resetdesk::desk::DeskError;
    use resetdesk::workflow::Decision;
    use time::OffsetDateTime;
    use tls_support::{aiosmtpd_available, free_port, pki, MailServer};

    struct Loop {
        site: desk_support::Site,
        mail: MailServer,
        _tls: tempfile::TempDir,
    }

    /// A site whose standard accounts need the manager's approval, mailing through
    /// aiosmtpd, with `[collector]` set to `c` and `desk_key`.
    fn site_for(c: &Collector, desk_key: PathBuf) -> Loop {
        let tls = tempfile::tempdir().unwrap();
        let test_pki = pki(tls.path());
        let port = free_port();
        let mail = MailServer::start(port, &test_pki, &tls.path().join("maildir"));
        let mut site = desk_support::site();
        site.config.policy.standard.manager_approval = true;
        site.config.smtp = SmtpConfig {
            host: "127.0.0.1".into(),
            port,
            security: SmtpSecurity::Starttls,
            from: "ResetDesk <resetdesk@example.com>".into(),
            ca_file: Some(test_pki.ca.clone()),
            ..SmtpConfig::default()
        };
        site.config.collector = CollectorConfig {
            url: c.base_url(),
            verifier_key: Some(c.vkey.clone()),
            ca_file: Some(c.dir.path().join("tls/ca.pem")),
            desk_key_file: Some(desk_key),
            ..Default::default()
        };
        Loop { site, mail, _tls: tls }
    }

    /// The approval link in the mail aiosmtpd received for `to`.
    fn link_in_mail(mail: &MailServer, to: &str) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let found = mail.messages().into_iter().find(|(rcpt, m)| rcpt == to && m.contains("/approve/"));
            if let Some((_, m)) = found {
                let at = m.find("https://localhost:").unwrap();
                return m[at..].split_whitespace().next().unwrap().to_owned();
            }
            assert!(std::time::Instant::now() < deadline, "no approval mail for {to}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn whole_loop(db: Db, approve: bool) {
        if !aiosmtpd_available() {
            return;
        }
        let Some(running) = collector(db, "") else { return };
        let c = running.c;
        let key = c.add_desk_key("desk-1");
        let _lock = virtual_yubikey::lock_readers();
        let lp = site_for(&c, key);
        let (site, mail) = (&lp.site, &lp.mail);
        let card = virtual_yubikey::VirtualCard::insert(virtual_yubikey::READER_0_PORT).unwrap();
        let mut alice = site.agent(&card, "alice", "246810");
        let mut desk = site.desk();
        let now = OffsetDateTime::now_utc;
        let mut run = desk_support::verified_run(&mut desk, &mut alice, "jsmith");
        let reply = desk
            .apply_ui_json(&mut run, r#"{"action":"request_manager_approval"}"#, alice.signer().unwrap(), now())
            .unwrap();
        let Some(Decision::RequestManagerApproval { address, .. }) = reply.decisions.first().cloned() else {
            panic!("{:?}", reply.decisions)
        };
        let link = link_in_mail(mail, &address);
        let token = link.rsplit('/').next().unwrap().to_owned();
        assert_eq!(token.len(), 32, "128 bits: {link}");
        assert_eq!(link, c.url(&format!("/approve/{token}")));
        // The link went out from memory: no outbox row holds it.
        assert!(site.outbox().iter().all(|m| !m.body.contains(&token)), "the token is not in the outbox");
        assert!(!site.all_stored_bytes().contains(&token), "nor anywhere the desk stores");
        assert!(desk.poll_manager_answer(&mut run, alice.signer().unwrap(), now()).unwrap().is_none());

        // The manager follows the link with a plain HTTP client.
        let page = c.client.get(&link).send().unwrap();
        assert_eq!(page.status().as_u16(), 200);
        let text = page.text().unwrap();
        assert!(text.contains("Jordan Smith") && text.contains("alice") && text.contains("desk-1"), "{text}");
        let decision = if approve { "approve" } else { "deny" };
        let r = c.client.post(&link).body(format!("decision={decision}")).send().unwrap();
        assert_eq!(r.status().as_u16(), 200);

        let reply = desk.poll_manager_answer(&mut run, alice.signer().unwrap(), now()).unwrap().expect("the answer");
        assert!(desk.poll_manager_answer(&mut run, alice.signer().unwrap(), now()).unwrap().is_none(), "taken once");
        let view = desk.reset_view(&run, now()).unwrap();
        let manager = view.manager.clone().expect("the manager step");
        if !approve {
            // The denial ends the request: a signed refusal record that carries the
            // collector's signed decision, and an alert for security at the collector.
            assert_eq!(manager.state, "denied");
            assert_eq!(view.phase, resetdesk::workflow::Phase::Refused, "{reply:?}");
            assert!(view.refusal.expect("the refusal").explanation.contains("manager denied"));
            assert!(alert_kinds(&c).contains(&"approval-denied".to_owned()));
            let records = site.records();
            let (_, facts) =
                records.iter().find(|(t, _)| *t == resetdesk::audit::EventType::Refusal).expect("the refusal record");
            let step = facts["steps"].as_array().unwrap().last().unwrap();
            let note = step["detail"]["signed_decision"].as_str().expect("the signed denial in the facts");
            assert!(note.contains("decision denied"), "{note}");
            let again = desk.apply_ui_json(
                &mut run,
                r#"{"action":"request_manager_approval"}"#,
                alice.signer().unwrap(),
                now(),
            );
            assert!(again.is_err(), "the request has ended: {again:?}");
            return;
        }
        assert_eq!(manager.state, "approved", "{reply:?}");
        desk.apply_ui_json(&mut run, r#"{"action":"request_reset"}"#, alice.signer().unwrap(), now()).unwrap();

        // The intent record carries the collector's signed decision, checkable offline.
        let records = site.records();
        let (_, facts) =
            records.iter().find(|(t, _)| *t == resetdesk::audit::EventType::ResetIntent).expect("the intent record");
        let note = facts["approvals"][0]["signed_decision"].as_str().expect("the signed decision in the facts");
        let mut keys = CollectorKeys::default();
        keys.add_verifier_key(&c.vkey).unwrap();
        let statement = DecisionStatement::parse(&keys.verify_note_text(note).unwrap()).unwrap();
        assert!(statement.approved);
        assert_eq!(statement.request_id, run.request_id());
        assert_eq!(hex::encode(statement.token_sha256), sha256_hex(&token));
        assert_eq!(statement.manager, "dgarcia");
        assert!(site.verify_audit().records > 0, "the log verifies");
    }

    #[test]
    fn a_desk_gets_the_managers_approval_by_link_and_records_it_on_sqlite() {
        whole_loop(Db::Sqlite, true);
    }

    #[test]
    fn a_desk_gets_the_managers_approval_by_link_and_records_it_on_postgres() {
        whole_loop(Db::Postgres, true);
    }

    #[test]
    fn a_managers_denial_by_link_ends_the_request_on_sqlite() {
        whole_loop(Db::Sqlite, false);
    }

    #[test]
    fn a_managers_denial_by_link_ends_the_request_on_postgres() {
        whole_loop(Db::Postgres, false);
    }

    #[test]
    fn a_demo_desk_without_smtp_keeps_the_link_in_its_outbox_and_it_works() {
        if !aiosmtpd_available() {
            return;
        }
        let Some(running) = collector(Db::Sqlite, "") else { return };
        let c = running.c;
        let key = c.add_desk_key("demo-desk");
        let _lock = virtual_yubikey::lock_readers();
        let lp = site_for(&c, key);
        let mut site = lp.site;
        // The demo's mail: no SMTP, the outbox (and its .eml files) only.
        site.config.smtp = SmtpConfig::default();
        let card = virtual_yubikey::VirtualCard::insert(virtual_yubikey::READER_0_PORT).unwrap();
        let mut alice = site.agent(&card, "alice", "246810");
        let mut desk = site.desk();
        let now = OffsetDateTime::now_utc;
        let mut run = desk_support::verified_run(&mut desk, &mut alice, "jsmith");
        desk.apply_ui_json(&mut run, r#"{"action":"request_manager_approval"}"#, alice.signer().unwrap(), now())
            .unwrap();
        let rows = site.outbox();
        let body = &rows.iter().find(|m| m.subject.contains("Approval needed")).expect("the approval mail").body;
        let at = body.find("https://localhost:").expect("the link in the demo's mail");
        let link = body[at..].split_whitespace().next().unwrap();
        assert_eq!(c.client.post(link).body("decision=approve").send().unwrap().status().as_u16(), 200);
        let reply = desk.poll_manager_answer(&mut run, alice.signer().unwrap(), now()).unwrap();
        assert!(reply.is_some(), "the demo's approval arrives");
        assert_eq!(desk.reset_view(&run, now()).unwrap().manager.unwrap().state, "approved");
    }

    #[test]
    fn without_the_collector_the_view_says_approval_needs_it() {
        if !aiosmtpd_available() {
            return;
        }
        // A fixed port, so the desk finds the collector again after its restart.
        let pki = audit_support::Pki::new(1);
        let listen = format!("127.0.0.1:{}", free_port());
        let mut c = Collector::prepare(&pki.ca_pem(), 4 * 1024 * 1024, &listen, None);
        c.restart();
        let key = c.add_desk_key("desk-1");
        let _lock = virtual_yubikey::lock_readers();
        let lp = site_for(&c, key);
        let (site, mail) = (&lp.site, &lp.mail);
        let card = virtual_yubikey::VirtualCard::insert(virtual_yubikey::READER_0_PORT).unwrap();
        let mut alice = site.agent(&card, "alice", "246810");
        let mut desk = site.desk();
        let now = OffsetDateTime::now_utc;
        let mut run = desk_support::verified_run(&mut desk, &mut alice, "jsmith");
        c.kill();
        let ask = r#"{"action":"request_manager_approval"}"#;
        let asked = desk.apply_ui_json(&mut run, ask, alice.signer().unwrap(), now());
        assert!(matches!(asked, Err(DeskError::Approval(ApprovalError::NeedsCollector(_)))), "{asked:?}");
        let view = desk.reset_view(&run, now()).unwrap();
        let manager = view.manager.expect("the manager step");
        assert_eq!(manager.state, "needs-collector");
        assert!(manager.needs_collector.unwrap().contains("approval needs the collector"));
        assert!(view.broken.is_none(), "the run goes on once the collector is back");
        assert!(mail.messages().is_empty(), "no link was mailed");

        // Back up: asking again registers the request and the screen says pending.
        c.restart();
        desk.apply_ui_json(&mut run, ask, alice.signer().unwrap(), now()).unwrap();
        let manager = desk.reset_view(&run, now()).unwrap().manager.unwrap();
        assert_eq!((manager.state, manager.needs_collector), ("pending", None));
    }
}
