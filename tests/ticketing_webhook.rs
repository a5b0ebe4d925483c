//! The ticketing webhook on real components: a local HTTPS receiver (python3's
//! http.server behind ssl, its certificate issued by a CA the test makes) writes each
//! request it gets to a folder; the desk queues a summary after a real reset with a
//! ticket number from intake, and the outbox sender posts it. Checked: the ServiceNow
//! and Jira body shapes, the auth header from its file, no temporary password, answer
//! or code in any body, a receiver that is down and then up gets the update later,
//! and a receiver whose certificate another CA issued gets nothing.
//!
//! The reset test needs `scripts/pcscd.sh start` and holds the reader lock.

mod desk_support;
mod tls_support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use desk_support::{answers_json, at_desk};
use resetdesk::config::{Config, TicketTemplate, TicketingConfig, WebhookMethod};
use resetdesk::desk::outbox::{Notifier, Outbox, OutboxChannel, TicketUpdate};
use resetdesk::desk::sender::{Backoff, OutboxSender};
use resetdesk::desk::ticketing::TicketSummary;
use resetdesk::desk::webhook::WebhookSink;
use resetdesk::desk::StartRequest;
use resetdesk::policy::StatedDetails;
use resetdesk::secret::Secret;
use resetdesk::workflow::Phase;
use time::OffsetDateTime;
use tls_support::{free_port, pki, Listening, TestPki};
use virtual_yubikey::lock_readers;

const PYTHON: &str = "/usr/bin/python3";

/// Answers each POST or PATCH with 201 and writes `{method, path, headers, body}` to `<dir>/<pid>-<n>.json`.
const RECEIVER: &str = r#"
import http.server, itertools, json, os, ssl, sys
port, cert, key, out = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
counter = itertools.count()
class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
        name = "%d-%d" % (os.getpid(), next(counter))
        tmp = os.path.join(out, "." + name)
        with open(tmp, "w") as f:
            json.dump({"method": self.command, "path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}, "body": body}, f)
        os.rename(tmp, os.path.join(out, name + ".json"))
        self.send_response(201)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")
    do_PATCH = do_POST
    def log_message(self, *args):
        pass
server = http.server.HTTPServer(("127.0.0.1", port), Handler)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(cert, key)
server.socket = context.wrap_socket(server.socket, server_side=True)
server.serve_forever()
"#;

/// The HTTPS receiver on a loopback port.
struct Receiver {
    _server: Listening,
    dir: PathBuf,
}

impl Receiver {
    fn start(port: u16, pki: &TestPki, dir: &Path) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let mut command = Command::new(PYTHON);
        command.args(["-c", RECEIVER, &port.to_string()]).arg(&pki.cert).arg(&pki.key).arg(dir);
        Self { _server: Listening::spawn(&mut command, port, "the receiver"), dir: dir.to_owned() }
    }

    /// Each request received: `{path, headers, body}`.
    fn requests(&self) -> Vec<serde_json::Value> {
        let mut names: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        names.sort();
        names.iter().map(|p| serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()).collect()
    }
}

fn ticketing(port: u16, path: &str, template: TicketTemplate, ca: &Path) -> TicketingConfig {
    TicketingConfig {
        url: format!("https://127.0.0.1:{port}{path}"),
        template,
        ca_file: Some(ca.to_owned()),
        ..TicketingConfig::default()
    }
}

fn sender(dir: &Path, config: &TicketingConfig, backoff: Backoff) -> OutboxSender {
    let hook = WebhookSink::from_config(config, resetdesk::config::Mode::Demo).unwrap().expect("a URL is set");
    OutboxSender::ticketing_only(Outbox::open(dir).unwrap(), hook, backoff)
}

#[test]
fn a_reset_with_a_ticket_posts_a_secret_free_servicenow_work_note_after_its_outcome() {
    let _lock = lock_readers();
    let (site, card, mut alice, _) = at_desk("alice", "246810");
    let work = tempfile::tempdir().unwrap();
    let pki = pki(work.path());
    let port = free_port();
    let receiver = Receiver::start(port, &pki, &work.path().join("received"));
    let auth = work.path().join("auth-header");
    std::fs::write(&auth, "Authorization: Basic cmVzZXRkZXNrOnMzY3JldA==\n").unwrap();
    let hook = TicketingConfig {
        auth_header_file: Some(auth),
        method: WebhookMethod::Patch,
        ..ticketing(port, "/api/now/table/incident/{ticket}", TicketTemplate::Servicenow, &pki.ca)
    };
    let config = Config { ticketing: hook.clone(), ..site.config.clone() };
    let mut desk = resetdesk::desk::Desk::open_embedded(config).unwrap();
    let identity = alice.identity().clone();
    let now = OffsetDateTime::now_utc;

    // nhassan at the desk, ticket INC0012345: answers and a one-time code (shown in-band
    // on this demo desk), then the reset.
    let stated = StatedDetails { ticket: Some("INC0012345".into()), ..StatedDetails::default() };
    let request = StartRequest { stated, ..StartRequest::default() };
    let (mut run, _) = desk.start_reset(&identity, alice.signer().unwrap(), "nhassan", request, now()).unwrap();
    desk.apply_ui_json(&mut run, &answers_json("nhassan"), alice.signer().unwrap(), now()).unwrap();
    let request_code = r#"{"action":"request_code","to":{"kind":"email","index":0}}"#;
    desk.apply_ui_json(&mut run, request_code, alice.signer().unwrap(), now()).unwrap();
    let code = run.take_in_band_secret().expect("the code").secret;
    let enter = Secret::new(serde_json::json!({"action": "enter_code", "code": code.expose()}).to_string());
    desk.apply_ui_secret_json(&mut run, enter, alice.signer().unwrap(), now()).unwrap();
    assert!(
        site.outbox().iter().all(|r| r.channel != OutboxChannel::Ticketing),
        "nothing is posted before the outcome"
    );
    let reply = desk.apply_ui_json(&mut run, r#"{"action":"request_reset"}"#, alice.signer().unwrap(), now()).unwrap();
    assert!(reply.warnings.is_empty(), "{reply:?}");
    assert_eq!(run.phase(), Phase::Succeeded);
    let password = run.take_handoff_password().unwrap();

    // A request ended on suspicion of fraud: its ticket hears "cancelled", not the
    // suspicion or the note (the caller may read the ticket). One without a ticket
    // number posts nothing.
    let fraud = r#"{"action":"suspected_fraud","note":"voice did not match the recording"}"#;
    let stated = StatedDetails { ticket: Some("INC0099999".into()), ..StatedDetails::default() };
    let request = StartRequest { stated, ..StartRequest::default() };
    let (mut suspect, _) = desk.start_reset(&identity, alice.signer().unwrap(), "hjansen", request, now()).unwrap();
    desk.apply_ui_json(&mut suspect, fraud, alice.signer().unwrap(), now()).unwrap();
    let (mut untracked, _) =
        desk.start_reset(&identity, alice.signer().unwrap(), "cchen", Default::default(), now()).unwrap();
    desk.apply_ui_json(&mut untracked, fraud, alice.signer().unwrap(), now()).unwrap();

    let rows: Vec<_> = site.outbox().into_iter().filter(|r| r.channel == OutboxChannel::Ticketing).collect();
    let tickets: Vec<&str> = rows.iter().map(|r| r.recipient.as_str()).collect();
    assert_eq!(tickets, ["INC0012345", "INC0099999"], "{rows:?}");
    let report = sender(site.dir.path(), &hook, Backoff::default()).drain_once(now()).unwrap();
    assert_eq!((report.sent, report.failed.len()), (2, 0), "{report:?}");

    let requests = receiver.requests();
    assert_eq!(requests.len(), 2);
    let on = |ticket: &str| {
        let path = format!("/api/now/table/incident/{ticket}");
        requests.iter().find(|r| r["path"] == path.as_str()).unwrap_or_else(|| panic!("{requests:?}")).clone()
    };
    let suspect_note = on("INC0099999")["body"].as_str().unwrap().to_owned();
    assert!(suspect_note.contains("hjansen cancelled"), "{suspect_note}");
    assert!(!suspect_note.contains("fraud") && !suspect_note.contains("voice did not match"), "{suspect_note}");
    let request = &on("INC0012345");
    assert_eq!(
        (request["method"].as_str(), request["path"].as_str()),
        (Some("PATCH"), Some("/api/now/table/incident/INC0012345"))
    );
    assert_eq!(request["headers"]["authorization"], "Basic cmVzZXRkZXNrOnMzY3JldA==");
    assert_eq!(request["headers"]["content-type"], "application/json");
    let raw = request["body"].as_str().unwrap();
    let body: serde_json::Value = serde_json::from_str(raw).unwrap();
    let note = body["work_notes"].as_str().unwrap();
    assert!(note.contains("password reset of nhassan succeeded") && note.contains("alice"), "{note}");
    assert!(note.contains("security-answers") && note.contains("one-time-code"), "{note}");
    assert_eq!(body["correlation_id"], run.request_id());
    let person = resetdesk::demo::DEMO_PEOPLE.iter().find(|p| p.username == "nhassan").unwrap();
    for secret in [password.expose(), code.expose(), person.pet, person.city] {
        assert!(!raw.contains(secret), "no secret in the body: {raw}");
    }
    assert!(site.outbox().iter().all(|r| r.delivered_at.is_some() || r.channel == OutboxChannel::Mail));
    drop(alice);
    card.remove().unwrap();
}

fn update(ticket: &str) -> TicketUpdate {
    let summary = TicketSummary {
        ticket: ticket.into(),
        request_id: "req-locked".into(),
        organisation: "Example Corp".into(),
        account: "cchen".into(),
        agent: "alice".into(),
        outcome: "locked-out".into(),
        detail: "verification locked until 2026-12-01T20:00:00Z".into(),
        verified_by: Vec::new(),
        at: "2026-12-01T16:00:00Z".into(),
    };
    TicketUpdate {
        ticket: summary.ticket.clone(),
        title: summary.title(),
        summary_json: serde_json::to_string(&summary).unwrap(),
        request_id: summary.request_id.clone(),
    }
}

#[test]
fn a_receiver_down_then_up_gets_the_jira_comment_later_and_one_another_ca_vouches_for_gets_nothing() {
    let work = tempfile::tempdir().unwrap();
    let pki = pki(work.path());
    let port = free_port();
    let hook = ticketing(port, "/rest/api/2/issue/{ticket}/comment", TicketTemplate::Jira, &pki.ca);
    let now = OffsetDateTime::now_utc();
    let mut queue = Outbox::open(work.path()).unwrap();
    queue.queue_ticket_update(&update("HD-42"), now).unwrap();

    let backoff = Backoff { first: Duration::from_secs(60), max: Duration::from_secs(600) };
    let mut sender = sender(work.path(), &hook, backoff);
    // Nobody listens yet.
    let report = sender.drain_once(now).unwrap();
    assert_eq!((report.sent, report.failed.len()), (0, 1), "{report:?}");
    let row = &queue.messages().unwrap()[0];
    assert_eq!((row.attempts, row.next_attempt_at), (1, Some(now.unix_timestamp() + 60)));
    assert!(row.last_error.as_deref().is_some_and(|e| e.contains("could not be reached")), "{row:?}");
    assert_eq!(sender.drain_once(now + time::Duration::seconds(30)).unwrap(), Default::default(), "not yet due");

    let receiver = Receiver::start(port, &pki, &work.path().join("received"));
    let report = sender.drain_once(now + time::Duration::seconds(60)).unwrap();
    assert_eq!((report.sent, report.failed.len()), (1, 0), "{report:?}");
    let requests = receiver.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(
        (requests[0]["method"].as_str(), requests[0]["path"].as_str()),
        (Some("POST"), Some("/rest/api/2/issue/HD-42/comment"))
    );
    let body: serde_json::Value = serde_json::from_str(requests[0]["body"].as_str().unwrap()).unwrap();
    assert_eq!(body.as_object().unwrap().keys().collect::<Vec<_>>(), ["body"], "Jira's comment shape");
    assert!(body["body"].as_str().unwrap().contains("password reset of cchen locked-out"), "{body}");
    assert!(queue.messages().unwrap()[0].delivered_at.is_some());
    assert_eq!(sender.drain_once(now + time::Duration::days(1)).unwrap().sent, 0, "posted once");

    // A sink that trusts another CA refuses this receiver's certificate: nothing arrives.
    let other_dir = tempfile::tempdir().unwrap();
    let other = tls_support::pki(other_dir.path());
    let wrong_ca = ticketing(port, "/rest/api/2/issue/{ticket}/comment", TicketTemplate::Jira, &other.ca);
    let other_queue = tempfile::tempdir().unwrap();
    Outbox::open(other_queue.path()).unwrap().queue_ticket_update(&update("HD-43"), now).unwrap();
    let report = self::sender(other_queue.path(), &wrong_ca, Backoff::default()).drain_once(now).unwrap();
    assert_eq!((report.sent, report.failed.len()), (0, 1), "{report:?}");
    assert!(report.failed[0].1.to_lowercase().contains("certificate"), "refused for its certificate: {report:?}");
    assert_eq!(receiver.requests().len(), 1, "nothing went to a server the CA did not vouch for");
}

#[test]
fn config_check_names_the_line_of_a_plain_http_ticketing_url() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("resetdesk.toml");
    std::fs::write(
        &file,
        "[ticketing]\ntemplate = \"jira\"\nurl = \"http://jira.example.com/rest/api/2/issue/{ticket}/comment\"\n",
    )
    .unwrap();
    let check = Command::new(env!("CARGO_BIN_EXE_resetdesk")).args(["config", "check", "--config"]).arg(&file).output();
    let check = check.unwrap();
    assert_eq!(check.status.code(), Some(2), "{check:?}");
    let err = String::from_utf8_lossy(&check.stderr);
    assert!(err.contains(&format!("{}:3: ticketing.url:", file.display())), "{err}");
}
