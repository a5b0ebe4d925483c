//! The people around a bench reset, scripted through the adapters a person would use:
//! the requester's answers and codes, the ID the agent inspects (the checklist the
//! screen sends), the manager who answers the approval message from the outbox through
//! the approval inbox (as `resetdesk approval answer` does), and the second agent who
//! logs in with their card in the other reader and co-signs (as the app's co-sign
//! dialog does). Every step goes through [`Desk`]'s UI actions; each is clocked.

use std::path::Path;
use std::time::{Duration, Instant};

use resetdesk::desk::approval::ApprovalInbox;
use resetdesk::desk::outbox::Outbox;
use resetdesk::desk::{Desk, Reply, ResetRun};
use resetdesk::login::{login, AgentIdentity, AgentSession};
use resetdesk::policy::{Method, Missing};
use resetdesk::secret::Secret;
use resetdesk::verification::totp;
use resetdesk::workflow::{Decision, Phase};
use time::{Duration as TimeDuration, OffsetDateTime};

use crate::fail;

/// The bench accounts' security answers.
pub const PET: &str = "Benchmark";
pub const CITY: &str = "Springfield";

/// A step of a reset as the bench clocks it (around the desk calls it makes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Open,
    SecurityAnswers,
    Totp,
    Callback,
    IdInspection,
    ManagerApproval,
    CoSignature,
    Reset,
}

impl Step {
    pub const ALL: [Step; 8] = [
        Self::Open,
        Self::SecurityAnswers,
        Self::Totp,
        Self::Callback,
        Self::IdInspection,
        Self::ManagerApproval,
        Self::CoSignature,
        Self::Reset,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Self::Open => "open the request (history, notifications)",
            Self::SecurityAnswers => "security answers",
            Self::Totp => "TOTP",
            Self::Callback => "callback to the number on file",
            Self::IdInspection => "ID inspection (checklist)",
            Self::ManagerApproval => "manager approval (request, answer, poll)",
            Self::CoSignature => "co-signature (login, second card signs)",
            Self::Reset => "reset (intent, directory, outcome)",
        }
    }
}

/// Bench-side clocks: by step, and the work done outside the desk by the other people.
#[derive(Debug, Clone, Copy, Default)]
pub struct StepTimes {
    pub by_step: [Duration; Step::ALL.len()],
    /// The manager's side: reading the approval message, answering through the inbox.
    pub manager_side: Duration,
    /// The co-signer's login with their card (PIN, slot-9a challenge, directory).
    pub co_signer_login: Duration,
}

impl StepTimes {
    fn add(&mut self, step: Step, took: Duration) {
        // `Step::ALL` lists every variant: the position is always found.
        if let Some(i) = Step::ALL.iter().position(|s| *s == step) {
            self.by_step[i] += took;
        }
    }
}

/// The second agent's card: the reader it is in and its PIN.
pub struct CoSignerCard {
    pub reader: String,
    pub pin: Secret,
}

/// The scripted people of every reset of a run, and the clocks.
pub struct People {
    outbox: Outbox,
    inbox: ApprovalInbox,
    co_signer: Option<CoSignerCard>,
    /// Who the co-signer's card logged in as, once it did.
    co_signer_username: Option<String>,
    pub times: StepTimes,
}

fn wants_step(missing: &[Missing], m: Method) -> bool {
    missing.iter().any(|x| matches!(x, Missing::Step { method } if *method == m))
}

fn wants(missing: &[Missing], m: Method) -> bool {
    wants_step(missing, m)
        || missing.iter().any(|x| matches!(x, Missing::Factors { choose_from, .. } if choose_from.contains(&m)))
}

/// The checklist of a genuine passport, inspected today, as the screen sends it.
fn id_inspection_json(today: OffsetDateTime) -> String {
    let expiry = (today + TimeDuration::days(5 * 365)).date();
    serde_json::json!({"action": "id_inspection", "inspection": {
        "document_type": "passport", "issuing_authority": "Germany", "number_last4": "B3N7",
        "expiry": expiry.to_string(), "name_matches_record": true, "photo_matches_person": true,
        "security_features_checked": true, "template_and_format_ok": true, "no_tampering": true}})
    .to_string()
}

/// The approval code in the newest approval message of `request_id` to `address`.
fn approval_code(outbox: &Outbox, request_id: &str, address: &str) -> Result<Secret, String> {
    let messages = outbox.messages().map_err(fail("reading the outbox"))?;
    let message = messages
        .iter()
        .rev()
        .find(|m| m.request_id == request_id && m.recipient == address && m.subject.starts_with("Approval needed"))
        .ok_or_else(|| format!("no approval message to {address} in the outbox"))?;
    let code = message
        .body
        .lines()
        .find(|l| l.starts_with("Approval code"))
        .and_then(|l| l.split_whitespace().last())
        .ok_or("the approval message carries no approval code")?;
    Ok(Secret::new(code.to_owned()))
}

impl People {
    pub fn new(data_dir: &Path, co_signer: Option<CoSignerCard>) -> Result<Self, String> {
        Ok(Self {
            outbox: Outbox::open(data_dir).map_err(fail("outbox"))?,
            inbox: ApprovalInbox::open(data_dir).map_err(fail("approval inbox"))?,
            co_signer,
            co_signer_username: None,
            times: StepTimes::default(),
        })
    }

    /// The co-signer who logged in and the reader of their card, once one did.
    pub fn co_signer(&self) -> Option<(&str, &str)> {
        Some((self.co_signer_username.as_deref()?, self.co_signer.as_ref()?.reader.as_str()))
    }

    /// One complete reset of `username` by `agent`; the temporary password the desk
    /// handed over.
    pub fn reset(
        &mut self,
        desk: &mut Desk,
        agent: &mut AgentSession,
        identity: &AgentIdentity,
        username: &str,
    ) -> Result<Secret, String> {
        let t = Instant::now();
        let signer = agent.signer().map_err(fail("signer"))?;
        let (mut run, mut reply) = desk
            .start_reset(identity, signer, username, Default::default(), OffsetDateTime::now_utc())
            .map_err(fail("start"))?;
        self.times.add(Step::Open, t.elapsed());
        while !reply.status.missing.is_empty() && !run.phase().is_final() {
            reply = self.next_step(desk, &mut run, agent, username, &reply.status.missing)?;
        }
        let t = Instant::now();
        let signer = agent.signer().map_err(fail("signer"))?;
        let reply = desk
            .apply_ui_json(&mut run, r#"{"action":"request_reset"}"#, signer, OffsetDateTime::now_utc())
            .map_err(fail("reset"))?;
        self.times.add(Step::Reset, t.elapsed());
        if run.phase() != Phase::Succeeded {
            return Err(format!("the reset of {username} ended {:?}: {:?}", run.phase(), reply.decisions));
        }
        run.take_handoff_password().ok_or_else(|| "the desk handed over no password".to_string())
    }

    /// Play whatever the engine still needs, one step; the desk's reply after it.
    fn next_step(
        &mut self,
        desk: &mut Desk,
        run: &mut ResetRun,
        agent: &mut AgentSession,
        username: &str,
        missing: &[Missing],
    ) -> Result<Reply, String> {
        let now = OffsetDateTime::now_utc();
        let t = Instant::now();
        let (step, reply) = if wants(missing, Method::SecurityAnswers) {
            let json = serde_json::json!({"action": "security_answers", "answers": [
                {"question": 0, "answer": PET}, {"question": 1, "answer": CITY}]});
            (Step::SecurityAnswers, ui(desk, run, agent, &[json.to_string()], now)?)
        } else if wants(missing, Method::Totp) {
            let key = resetdesk::demo::demo_totp_key(username);
            let code = totp::hotp(&key, totp::step_at(now).map_err(fail("clock"))?, totp::DIGITS);
            let json = serde_json::json!({"action": "totp", "code": code.as_str()});
            (Step::Totp, ui(desk, run, agent, &[json.to_string()], now)?)
        } else if wants_step(missing, Method::GovernmentId) {
            (Step::IdInspection, ui(desk, run, agent, &[id_inspection_json(now)], now)?)
        } else if wants(missing, Method::Callback) {
            // The holder answers the number on file and confirms the request.
            let messages = [
                r#"{"action":"request_callback"}"#.to_owned(),
                r#"{"action":"callback_result","report":{"reached_account_holder":true,"holder_confirmed_request":true}}"#
                    .to_owned(),
            ];
            (Step::Callback, ui(desk, run, agent, &messages, now)?)
        } else if wants(missing, Method::GovernmentId) {
            (Step::IdInspection, ui(desk, run, agent, &[id_inspection_json(now)], now)?)
        } else if wants_step(missing, Method::ManagerApproval) {
            (Step::ManagerApproval, self.manager_approval(desk, run, agent, now)?)
        } else if wants_step(missing, Method::CoSignature) {
            (Step::CoSignature, self.co_sign(desk, run, agent, now)?)
        } else {
            return Err(format!("the bench has no script for the remaining steps: {missing:?}"));
        };
        self.times.add(step, t.elapsed());
        Ok(reply)
    }

    /// The agent asks for approval; the manager reads the message and answers with its
    /// code through the approval inbox; the desk picks the answer up.
    fn manager_approval(
        &mut self,
        desk: &mut Desk,
        run: &mut ResetRun,
        agent: &mut AgentSession,
        now: OffsetDateTime,
    ) -> Result<Reply, String> {
        let reply = ui(desk, run, agent, &[r#"{"action":"request_manager_approval"}"#.to_owned()], now)?;
        let address = reply
            .decisions
            .iter()
            .find_map(|d| match d {
                Decision::RequestManagerApproval { address, .. } => Some(address.clone()),
                _ => None,
            })
            .ok_or("the desk sent no approval request")?;
        let t = Instant::now();
        let code = approval_code(&self.outbox, run.request_id(), &address)?;
        self.inbox.answer(&code, true, now).map_err(fail("the manager's answer"))?;
        self.times.manager_side += t.elapsed();
        let signer = agent.signer().map_err(fail("signer"))?;
        desk.poll_manager_answer(run, signer, now)
            .map_err(fail("manager approval"))?
            .ok_or_else(|| "the manager's answer did not reach the desk".to_string())
    }

    /// The second agent logs in with their card and it signs the approval digest.
    fn co_sign(
        &mut self,
        desk: &mut Desk,
        run: &mut ResetRun,
        agent: &mut AgentSession,
        now: OffsetDateTime,
    ) -> Result<Reply, String> {
        let card = self.co_signer.as_ref().ok_or(
            "this reset needs a co-signature: give a second agent's card (--co-signer-reader NAME, or --virtual)",
        )?;
        let t = Instant::now();
        let pin = Secret::new(card.pin.expose().to_owned());
        let mut co_signer =
            login(desk.config(), desk.directory(), &card.reader, pin, now).map_err(fail("co-signer login"))?;
        self.times.co_signer_login += t.elapsed();
        self.co_signer_username = Some(co_signer.username().to_owned());
        let co = co_signer.signer().map_err(fail("co-signer's signer"))?;
        let signer = agent.signer().map_err(fail("signer"))?;
        desk.co_sign(run, co, signer, now).map_err(fail("co-signature"))
    }
}

/// Send the UI messages in order; the reply to the last.
fn ui(
    desk: &mut Desk,
    run: &mut ResetRun,
    agent: &mut AgentSession,
    messages: &[String],
    now: OffsetDateTime,
) -> Result<Reply, String> {
    let mut last = None;
    for json in messages {
        let signer = agent.signer().map_err(fail("signer"))?;
        last = Some(desk.apply_ui_json(run, json, signer, now).map_err(fail("verification step"))?);
    }
    last.ok_or_else(|| "no UI message to send".to_string())
}
