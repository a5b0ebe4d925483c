// ResetDesk web view: renders the state the core returns; decides nothing itself.
// - Text from the core (reader names, errors, names) goes in with textContent, never as HTML.
// - The PIN is read from its field, the field is cleared, and the value is handed to
//   the core in one call; it is not stored anywhere in this page.

const tauri = window.__TAURI__;

const $ = (id) => document.getElementById(id);

const LEAD_NO_KEY = "ResetDesk is locked. Insert your YubiKey to log in. " +
  "The session locks again the moment the key is removed.";
const LEAD_KEY_INSERTED = "Your key is inserted. Enter its PIN to log in.";

const TIER_LABELS = { junior: "Junior agent", senior: "Senior agent", admin: "Administrator" };

/** The last states the core reported. */
let readers = null;      // ReaderStatus: { state: "no-service" | "no-readers" | "readers", readers? }
let session = { state: "locked", reason: null, message: null }; // SessionView
let loginBusy = false;
/** The reset screens' state, as the core last returned it (ResetScreen). */
let screen = { view: null, notice: null, warnings: [], progress: [], parked: [] };
/** Which agent view is up when no reset is on screen: "home" or "intake". */
let page = "home";
/** The account picked for intake (an AccountCard). */
let picked = null;
let lastView = null;
/** The verification method whose form is open (one at a time). */
let selectedMethod = null;
let pickedByAgent = false;
let busy = false;
let sync = { configured: false, synced: false, text: "not configured on this desk" }; // SyncLine, refreshed every 5 s

/** Create an element with an optional class name and text. */
function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function stateLine(icon, title, detail) {
  const wrap = document.createDocumentFragment();
  const line = el("p", "state-line");
  const glyph = el("span", "state-icon", icon);
  glyph.setAttribute("aria-hidden", "true");
  line.append(glyph, el("strong", null, title));
  wrap.append(line);
  if (detail) wrap.append(el("p", "state-detail", detail));
  return wrap;
}

const readersWithCard = () =>
  readers && readers.state === "readers" ? readers.readers.filter((r) => r.card_present) : [];

function renderReaderPanel() {
  const box = $("reader-status");
  box.replaceChildren();
  box.dataset.state = readers.state;
  switch (readers.state) {
    case "no-service":
      box.append(stateLine("⛔", "Smart-card service not running",
        "ResetDesk cannot see any key because the PC/SC service (pcscd) is not running. " +
        "Ask IT support to start it."));
      break;
    case "no-readers":
      box.append(stateLine("⚠", "No reader connected", "Plug your YubiKey into a USB port."));
      break;
    case "readers": {
      const list = el("ul", "reader-list");
      list.id = "reader-list";
      for (const r of readers.readers) {
        const item = el("li", "reader");
        item.dataset.card = r.card_present ? "present" : "empty";
        item.dataset.virtual = String(r.is_virtual);
        item.append(el("span", "reader-name", r.name));
        item.append(el("span", "reader-card", r.card_present ? "✔ Key inserted" : "○ No key"));
        if (r.is_virtual) item.append(el("span", "badge badge-virtual", "Virtual reader — demo only"));
        list.append(item);
      }
      box.append(list);
      break;
    }
    default:
      box.append(stateLine("?", "Unknown reader state", String(readers.state)));
  }
}

/** One radio per reader holding a card, into `box` (emptied first); `previous` stays picked. */
function readerRadios(box, cards, name, idPrefix, previous) {
  box.replaceChildren();
  cards.forEach((r, i) => {
    const id = `${idPrefix}-${i}`;
    const input = el("input");
    Object.assign(input, { type: "radio", name, id, value: r.name });
    input.checked = previous ? r.name === previous : i === 0;
    const label = el("label", "radio-label", r.name);
    label.htmlFor = id;
    if (r.is_virtual) label.append(el("span", "badge badge-virtual", "Virtual — demo only"));
    const row = el("div", "radio-row");
    row.append(input, label);
    box.append(row);
  });
}

/** The key choice of the login form: one radio per reader holding a card. */
function renderLoginReaders(cards) {
  const options = $("login-reader-options");
  const previous = options.querySelector("input:checked")?.value;
  readerRadios(options, cards, "reader", "reader-option", previous);
  if (!options.querySelector("input:checked") && options.firstElementChild) {
    options.querySelector("input").checked = true;
  }
}


const TIER_NAMES = { standard: "Standard", privileged: "Privileged", highest: "Highest privilege" };
const STATE_TEXT = { verified: "✔ Verified", failed: "✖ Failed", pending: "… Waiting", "not-yet": "○ Not yet" };
const CHANNEL_TEXT = { "walk-up": "in person", phone: "by phone", email: "by e-mail" };
const KIND_TEXT = { knowledge: "knowledge", possession: "possession", "in-person": "in person", approval: "approval" };

const invoke = (cmd, args) => tauri.core.invoke(cmd, args);

function announce(id, text) {
  const box = $(id);
  box.textContent = "";
  // A fresh text node, so screen readers announce it even when it repeats.
  setTimeout(() => { box.textContent = text; }, 30);
}

function failureText(failure) {
  return failure && failure.message ? failure.message : String(failure);
}

/** Show `message` next to the form that caused it (or hide it with null). */
function formError(form, message) {
  let box = form.querySelector(":scope > .form-error.inline");
  if (!box) {
    box = el("p", "form-error inline");
    box.setAttribute("role", "alert");
    box.id = `${form.id}-error`;
    form.append(box);
  }
  box.hidden = !message;
  box.textContent = message ?? "";
  const first = form.querySelector("input, select");
  if (first) {
    if (message) first.setAttribute("aria-describedby", box.id);
    first.setAttribute("aria-invalid", message ? "true" : "false");
  }
}

function tierBadge(tier) {
  const b = el("span", `badge badge-tier tier-${tier}`, TIER_NAMES[tier] ?? tier);
  return b;
}

/** An account card (search result, intake, reset header): facts, no verification answers. */
function accountCard(card) {
  const wrap = document.createDocumentFragment();
  const top = el("p", "account-line");
  top.append(el("strong", "account-name", card.display_name), " ", el("span", "account-user", card.username), " ", tierBadge(card.tier));
  if (card.agent_tier) top.append(" ", el("span", "badge badge-agent", `${TIER_LABELS[card.agent_tier] ?? card.agent_tier}`));
  if (card.flagged) top.append(" ", el("span", "badge badge-flag", "Flagged"));
  if (card.locked_until) top.append(" ", el("span", "badge badge-flag", "Verification locked"));
  wrap.append(top);
  wrap.append(el("p", "account-meta", `${card.department} · ${card.location}`));
  if (card.risk_flags.length) {
    const list = el("ul", "risk-flags");
    list.setAttribute("aria-label", "Risk signals");
    for (const f of card.risk_flags) list.append(el("li", null, `⚠ ${f}`));
    wrap.append(list);
  } else {
    wrap.append(el("p", "account-meta", "No risk signals on this desk's record."));
  }
  return wrap;
}

function renderResults(cards) {
  const list = $("search-results");
  list.replaceChildren();
  cards.forEach((card, i) => {
    const item = el("li", "result");
    item.dataset.username = card.username;
    const body = el("div", "result-body");
    body.append(accountCard(card));
    const pick = el("button", "button-primary", "Select");
    pick.type = "button";
    pick.id = `pick-${i}`;
    pick.setAttribute("aria-label", `Select ${card.display_name} (${card.username})`);
    pick.addEventListener("click", () => { picked = card; page = "intake"; render(); });
    item.append(body, pick);
    list.append(item);
  });
}

function renderParked() {
  const list = $("parked-list");
  list.replaceChildren();
  $("parked-panel").hidden = screen.parked.length === 0;
  for (const p of screen.parked) {
    const item = el("li", "result");
    item.dataset.requestId = p.request_id;
    const left = Math.max(0, Math.round((Date.parse(p.earliest_reset) - Date.now()) / 1000));
    const body = el("div", "result-body");
    body.append(el("p", "account-line", `${p.display_name} (${p.username}) `));
    body.firstChild.append(tierBadge(p.effective_tier));
    body.append(el("p", "countdown", left > 0 ? `Due in ${fmtDuration(left)}` : "Due now"));
    const resume = el("button", left > 0 ? "button-secondary" : "button-primary", "Resume");
    resume.type = "button";
    resume.setAttribute("aria-label", `Resume the reset of ${p.display_name}`);
    resume.addEventListener("click", () => act(() => invoke("resume_reset", { requestId: p.request_id })));
    item.append(body, resume);
    list.append(item);
  }
}

function fmtDuration(seconds) {
  const m = Math.floor(seconds / 60), s = seconds % 60;
  return m > 0 ? `${m} min ${String(s).padStart(2, "0")} s` : `${s} s`;
}

function renderHome(entering) {
  const a = session.agent;
  $("agent-name").textContent = a.display_name;
  $("agent-username").textContent = a.username;
  $("agent-tier").textContent = TIER_LABELS[a.tier] ?? a.tier;
  $("agent-key").textContent = `serial ${a.serial} in “${a.reader}”`;
  $("agent-cert").textContent = new Date(a.certificate_expires).toLocaleString();
  $("view-home").dataset.tier = a.tier;
  const notes = $("home-notices");
  notes.replaceChildren(...(session.notices ?? []).map((n) => el("li", null, n)));
  notes.hidden = !(session.notices ?? []).length;
  renderParked();
  if (entering) $("search-query").focus();
}

function renderIntake(entering) {
  $("intake-name").textContent = picked.display_name;
  $("intake-account").replaceChildren(accountCard(picked));
  if (entering) {
    $("intake-form").reset();
    $("intake-channel-error").hidden = true;
    $("intake-error").hidden = true;
    $("channel-walk-up").focus();
  }
}

const METHOD_FORMS = ["security-answers", "employee-record", "totp", "one-time-code", "callback", "manager-approval", "government-id", "co-signature"];

function renderAnswers(view) {
  const box = $("answers-fields");
  if (box.dataset.for === view.request_id) return;
  box.dataset.for = view.request_id;
  box.replaceChildren();
  view.questions.forEach((q, i) => {
    const label = el("label", "field wide");
    label.append(el("span", "field-label", q));
    const input = el("input");
    Object.assign(input, { id: `answer-${i}`, maxLength: 256, autocomplete: "off", spellcheck: false });
    input.dataset.question = String(i);
    label.append(input);
    box.append(label);
  });
}

function renderContacts(view) {
  const box = $("code-contact-options");
  const previous = box.querySelector("input:checked")?.value;
  box.replaceChildren();
  const all = [...view.emails, ...view.phones];
  let firstUsable = null;
  all.forEach((c) => {
    const value = `${c.kind}:${c.index}`;
    const id = `contact-${c.kind}-${c.index}`;
    const input = el("input");
    Object.assign(input, { type: "radio", name: "contact", id, value, disabled: c.use !== "usable" });
    if (c.use === "usable" && !firstUsable) firstUsable = input;
    if (previous === value && !input.disabled) input.checked = true;
    const label = el("label", null, `${c.label}: ${c.masked}`);
    label.htmlFor = id;
    if (c.use === "changed-recently") label.append(el("span", "why-not", " — changed recently, may not be used"));
    if (c.use === "already-used") label.append(el("span", "why-not", " — already used in this request"));
    const row = el("div", "radio-row");
    row.append(input, label);
    box.append(row);
  });
  if (!box.querySelector("input:checked") && firstUsable) firstUsable.checked = true;
  $("code-send").disabled = !firstUsable;
}

/** Radios for the readers holding a card other than the agent's own (the second
 *  reader), or `waiting` when there is none; true when there is one. */
function renderOtherReaders(boxId, name, waiting) {
  const box = $(boxId);
  const own = session.agent?.reader;
  const others = readersWithCard().filter((r) => r.name !== own);
  const previous = box.querySelector("input:checked")?.value;
  if (!others.length) {
    box.replaceChildren(el("p", "hint", waiting));
    return false;
  }
  readerRadios(box, others, name, name, previous);
  return true;
}

function renderCoSignReaders() {
  renderOtherReaders("cosign-readers", "cosign-reader", "Waiting for the second agent's YubiKey in the other reader…");
}

const STRENGTH_TEXT = { fair: "fair", strong: "strong", superior: "superior" };

/** The document kinds the core offers, with the strength the core derives. */
function renderDocuments(view) {
  const select = $("id-type");
  if (select.dataset.for !== view.request_id) {
    select.dataset.for = view.request_id;
    const choose = el("option", null, "Choose…");
    choose.value = "";
    select.replaceChildren(choose, ...view.id_documents.map((d) => {
      const o = el("option", null, `${d.label} (${STRENGTH_TEXT[d.strength] ?? d.strength})`);
      o.value = d.document_type;
      return o;
    }));
  }
  const picked = view.id_documents.find((d) => d.document_type === select.value);
  const line = $("id-strength");
  line.textContent = picked
    ? (picked.sufficient
      ? `Evidence strength: ${STRENGTH_TEXT[picked.strength]} — enough for this check.`
      : `Evidence strength: ${STRENGTH_TEXT[picked.strength]} — too weak on its own: ask for a government photo ID.`)
    : "";
  line.dataset.sufficient = picked ? String(picked.sufficient) : "";
  const submit = $("form-government-id").querySelector("button[type=submit]");
  submit.disabled = !!picked && !picked.sufficient;
}

function headingFor(view) {
  switch (view.phase) {
    case "succeeded": return "Password reset";
    case "refused": return "No reset";
    case "locked-out": return "Verification locked";
    case "cancelled": return "Request ended";
    case "directory-failed": return "The directory refused the reset";
    case "outcome-pending": return "Outcome not signed yet";
    default: return view.ready ? "Ready to reset" : "Verify the requester";
  }
}

/** The element that should get the focus on this reset screen. */
function resetFocusTarget(view) {
  if (view.refusal || view.phase === "cancelled" || view.phase === "directory-failed") return $("refusal-done");
  if (view.phase === "succeeded") return view.handoff_waiting ? $("show-customer") : $("handoff-done");
  if (view.phase === "outcome-pending") return $("retry-outcome");
  if (view.ready) return view.cooling_off_seconds > 0 ? $("park-reset") : $("confirm-reset");
  for (const m of METHOD_FORMS) {
    const form = $(`form-${m}`);
    if (form.hidden) continue;
    const field = [...form.querySelectorAll("input:not([disabled]), select, button:not([disabled])")]
      .find((e) => e.offsetParent !== null && e.type !== "radio" && e.type !== "checkbox");
    if (field) return field;
  }
  return $("reset-title");
}

function renderReset(entering) {
  const v = screen.view;
  const verifying = v.phase === "verifying";
  $("reset-heading").textContent = headingFor(v);
  $("reset-name").textContent = v.account.display_name;
  $("reset-account").replaceChildren(accountCard(v.account));
  $("view-reset").dataset.phase = v.phase;

  const t = $("tier-line");
  t.replaceChildren("Account ", tierBadge(v.base_tier));
  if (v.effective_tier !== v.base_tier) t.append(" treated as ", tierBadge(v.effective_tier));
  t.append(el("span", "tier-facts", `${v.factors_passed} of ${v.min_factors} factors · ${CHANNEL_TEXT[v.channel] ?? v.channel}`));
  const esc = $("escalation-list");
  esc.replaceChildren(...v.escalations.map((e) => el("li", null, `▲ ${e.reason}`)));
  esc.hidden = v.escalations.length === 0;
  $("missing-line").textContent = v.missing.length
    ? `Still required: ${v.missing.join("; ")}.`
    : "Every required step has passed.";
  $("failure-line").textContent = `Failed verifications counting toward the lockout: ${v.failures.count} of ${v.failures.max} ` +
    `(then verification is locked for ${v.failures.wait_minutes} min and the security team is told).`;
  $("failure-line").dataset.count = String(v.failures.count);

  // The core says which steps are worth offering and what comes next.
  const offered = v.steps.filter((s) => s.useful).map((s) => s.method);
  if (!pickedByAgent || !offered.includes(selectedMethod)) {
    selectedMethod = v.next_method;
    pickedByAgent = false;
  }
  const list = $("step-list");
  list.replaceChildren();
  for (const step of v.steps) {
    const li = el("li", "step");
    li.dataset.method = step.method;
    li.dataset.state = step.state;
    li.append(el("span", "step-state", STATE_TEXT[step.state] ?? step.state));
    if (verifying && offered.includes(step.method)) {
      const use = el("button", "step-name step-pick", step.name);
      use.type = "button";
      use.setAttribute("aria-pressed", String(step.method === selectedMethod));
      use.addEventListener("click", () => {
        selectedMethod = step.method;
        pickedByAgent = true;
        renderReset(false);
        resetFocusTarget(screen.view).focus();
      });
      li.append(use);
    } else {
      li.append(el("span", "step-name", step.name));
    }
    const tags = [];
    tags.push(KIND_TEXT[step.kind] ?? step.kind);
    if (step.required) tags.push("required");
    else if (step.counts_as_factor) tags.push("counts as a factor");
    if (step.attempts) tags.push(`${step.attempts} attempt(s)`);
    li.append(el("span", "step-tags", tags.join(" · ")));
    if (step.advice) li.append(el("span", "step-advice", step.advice));
    list.append(li);
  }
  $("steps-panel").hidden = !verifying && v.steps.every((s) => s.state === "not-yet");

  const stateOf = Object.fromEntries(v.steps.map((s) => [s.method, s.state]));
  for (const m of METHOD_FORMS) {
    const form = $(`form-${m}`);
    const shown = verifying && m === selectedMethod;
    form.hidden = !shown;
    form.dataset.state = stateOf[m] ?? "";
  }
  if (!$("form-security-answers").hidden) renderAnswers(v);
  if (!$("form-one-time-code").hidden) {
    renderContacts(v);
    $("code-sent").hidden = !v.code_sent_to;
    $("code-sent").textContent = v.code_sent_to ? `A code was sent to ${v.code_sent_to}. Ask the requester to read it to you.` : "";
  }
  if (!$("form-government-id").hidden) renderDocuments(v);
  if (!$("form-callback").hidden) {
    $("callback-script").hidden = !v.callback;
    $("callback-start").hidden = !!v.callback;
    if (v.callback) {
      $("callback-number").textContent = v.callback.number;
      $("callback-label").textContent = v.callback.label;
      $("callback-steps").replaceChildren(...v.callback.script.map((line) => el("li", null, line)));
    }
  }
  if (!$("form-manager-approval").hidden && v.manager) {
    const states = {
      "not-asked": "not asked yet", pending: `asked at ${v.manager.asked_at ?? "their registered address"}; waiting for the answer`,
      approved: "approved", denied: "denied",
      "needs-collector": `approval needs the collector, which cannot be reached now (${v.manager.needs_collector ?? "no answer"}); ask again when it is back`,
    };
    $("manager-line").textContent = `${v.manager.display_name}: ${states[v.manager.state] ?? v.manager.state}.`;
    $("manager-line").dataset.state = v.manager.state;
    $("manager-request").hidden = v.manager.state === "pending";
  }
  if (!$("form-co-signature").hidden) {
    const tier = TIER_LABELS[v.co_signer_min_tier] ?? v.co_signer_min_tier;
    // (The form is offered only once everything else has passed: the core's rule.)
    $("cosign-who").textContent = `Who may co-sign: an agent of tier “${tier}” or higher, with their own enrolled YubiKey — ` +
      "never you, the account holder or their manager. Everything else has passed: the co-signer approves the whole verification.";
    renderCoSignReaders();
  }

  const confirm = $("confirm-panel");
  confirm.hidden = !(verifying && v.ready);
  if (!confirm.hidden) {
    const wait = v.cooling_off_seconds;
    $("confirm-text").textContent = wait > 0
      ? `Cooling-off: the account holder and manager were told; the reset can go ahead in ${fmtDuration(wait)}. Park it and serve the next person meanwhile.`
      : `Reset the password of ${v.account.display_name} (${v.account.username})? A temporary password is generated; they must change it at the next login. ` +
        (v.channel === "walk-up" ? "It is shown on the customer screen, never on yours." : "It goes to a registered channel not used for verification.");
    $("confirm-reset").disabled = wait > 0;
  }

  $("outcome-panel").hidden = v.phase !== "outcome-pending";

  const done = $("done-panel");
  done.hidden = v.phase !== "succeeded";
  if (!done.hidden) {
    const labels = screen.progress.length ? screen.progress.map((p) => `✔ ${p.label}`) : ["✔ Intent signed, directory updated, outcome signed, holder notified"];
    labels.push(`${sync.synced ? "✔" : "○"} Sync to the audit collector: ${sync.text}`);
    $("progress-list").replaceChildren(...labels.map((l) => el("li", null, l)));
    $("handoff-line").textContent = v.handoff === "customer-window"
      ? (v.handoff_waiting ? "The temporary password is ready for the customer screen. It never appears on yours." : "The password was sent to the customer screen. Confirm the hand-off when they have it.")
      : "The temporary password went to a registered channel not used for verification.";
    $("show-customer").hidden = !v.handoff_waiting;
  }

  const refusal = $("refusal-panel");
  const ended = v.refusal || v.phase === "cancelled" || v.phase === "directory-failed";
  refusal.hidden = !ended;
  if (ended) {
    $("refusal-heading").textContent = headingFor(v);
    $("refusal-text").textContent = v.refusal?.explanation ?? v.directory_error ?? "The request was ended and recorded.";
    const next = [];
    if (v.refusal?.hand_to) next.push(`Hand the request to a ${TIER_LABELS[v.refusal.hand_to] ?? v.refusal.hand_to}.`);
    if (v.refusal?.come_in_person) next.push("Ask the requester to come to the desk in person.");
    $("refusal-next").textContent = next.join(" ");
    $("refusal-next").hidden = next.length === 0;
  }
  $("reset-actions").hidden = !verifying;
  $("park-reset").hidden = !verifying;
  if (!verifying) { $("cancel-form").hidden = true; $("fraud-form").hidden = true; }
  if (screen.notice) announce("reset-status", screen.notice);
  if (entering) {
    const target = resetFocusTarget(v);
    target.focus();
  }
}

function currentPage() {
  if (session.state !== "active") return "lock";
  if (page === "audit" || page === "admin") return page;
  if (screen.view) return "reset";
  return page;
}

const CHECK_TEXT = { verified: "✔ verified", failed: "✖ FAILED", "not-checked": "– not checked" };

function renderAudit(data) {
  const summary = data.verified
    ? `✔ All ${data.total_records} records verify (signatures, chain, co-signatures). ${data.open_intents.length} open intent(s). Sync: ${data.sync}.`
    : `✖ The log does not verify: ${data.first_problem}. Sync: ${data.sync}.`;
  $("audit-summary").textContent = summary;
  $("audit-summary").dataset.verified = String(data.verified);
  const body = $("audit-rows");
  body.replaceChildren();
  for (const r of data.rows) {
    const tr = el("tr");
    tr.dataset.check = r.check.state;
    const cells = [String(r.seq), r.timestamp_ms ? new Date(r.timestamp_ms).toLocaleString() : "?", r.kind.replaceAll("_", " "),
      r.agent ?? "", r.target ?? "", r.outcome ?? "", r.cosigned ? "✔ yes" : "",
      r.check.state === "failed" ? `✖ ${r.check.problem}` : (CHECK_TEXT[r.check.state] ?? r.check.state), r.receipted ? "✔" : "–"];
    for (const c of cells) tr.append(el("td", null, c));
    body.append(tr);
  }
}

async function loadAudit() {
  const filter = { event_type: $("audit-type").value || null, text: $("audit-text").value.trim() || null };
  try {
    renderAudit(await invoke("audit_page", { filter }));
  } catch (failure) {
    $("audit-summary").textContent = failureText(failure);
  }
}

function showPage(next) {
  page = next;
  $("nav-desk").setAttribute("aria-current", next === "audit" || next === "admin" ? "false" : "page");
  $("nav-audit").setAttribute("aria-current", next === "audit" ? "page" : "false");
  $("nav-admin").setAttribute("aria-current", next === "admin" ? "page" : "false");
  render();
  if (next === "audit") { loadAudit(); $("audit-title").focus(); }
  if (next === "admin") { loadAdmin(); $("admin-title").focus(); }
}

const METHOD_NAMES = {
  "security-answers": "security questions", "employee-record": "employee data", totp: "authenticator",
  "one-time-code": "one-time code", callback: "callback", "government-id": "ID in person",
};

async function loadAdmin() {
  $("admin-error").hidden = true;
  let v;
  try {
    v = await invoke("admin_view");
  } catch (failure) {
    $("admin-error").textContent = failureText(failure);
    $("admin-error").hidden = false;
    return;
  }
  $("admin-mode").textContent = v.mode === "production" ? "production" : "demo installation";
  const agentsFor = (tier) => (v.agents_by_tier.find(([t]) => t === tier)?.[1] ?? [])
    .map((a) => TIER_LABELS[a] ?? a).join(", ");
  const yes = (b) => (b ? "required" : "–");
  $("admin-policy-rows").replaceChildren(...["standard", "privileged", "highest"].map((tier) => {
    const t = v.policy[tier];
    const tr = el("tr");
    for (const c of [TIER_NAMES[tier], String(t.min_factors), t.factor_methods.map((m) => METHOD_NAMES[m] ?? m).join(", "),
      yes(t.manager_approval), yes(t.government_id), yes(t.co_signature), t.cooling_off_minutes ? `${t.cooling_off_minutes} min` : "none", agentsFor(tier)]) {
      tr.append(el("td", null, c));
    }
    return tr;
  }));
  const l = v.policy.lockout;
  $("admin-lockout").textContent = `Lockout: ${l.max_failures} failed verifications within ${l.window_minutes} min lock verification for ${l.wait_minutes} min and alert the security team.`;
  $("admin-keys").replaceChildren(...v.keys.map((k) => {
    const tr = el("tr");
    for (const c of [k.username, String(k.serial), k.slot, new Date(k.enrolled_at).toLocaleString(),
      k.is_virtual ? "virtual — demo only" : (k.attested ? "YubiKey, attested" : "YubiKey, not attested"),
      k.revoked_at ? `revoked ${new Date(k.revoked_at).toLocaleString()}: ${k.revoked_reason ?? ""}` : "active"]) {
      tr.append(el("td", null, c));
    }
    return tr;
  }));
  renderRevocableKeys(v.keys);
  renderEnrolReaders();
  loadAlerts();
  $("admin-intents").replaceChildren(...v.open_intents.map((i) =>
    el("li", "result", `#${i.seq} ${new Date(i.timestamp_ms).toLocaleString()}: reset ${i.request_id} of ${i.target} by ${i.agent}`)));
  $("admin-intents-none").hidden = v.open_intents.length > 0;
  $("admin-reconcile").hidden = v.open_intents.length === 0;
}

/** The collector's security alerts, newest first, each with the records it stands on. */
async function loadAlerts() {
  const unavailable = $("admin-alerts-unavailable");
  let v;
  try {
    v = await invoke("alerts_view", { after: 0 });
  } catch (failure) {
    v = { alerts: [], unavailable: failureText(failure) };
  }
  unavailable.hidden = !v.unavailable;
  unavailable.textContent = v.unavailable ? `Alerts unavailable: ${v.unavailable}` : "";
  $("admin-alerts-none").hidden = Boolean(v.unavailable) || v.alerts.length > 0;
  const short = (hex) => (hex ? hex.slice(0, 12) : "");
  $("admin-alerts").replaceChildren(...[...v.alerts].reverse().map((a) => {
    const li = el("li", "alert-item");
    li.append(el("strong", null, a.title), el("span", "hint", ` ${new Date(a.at_ms).toLocaleString()} · ${a.kind}`));
    li.append(el("p", null, a.reason));
    if (a.log_id) li.append(el("p", "hint", `Desk log ${short(a.log_id)}`));
    if (a.records.length) {
      const ul = el("ul", "notice-list");
      for (const r of a.records) {
        const receipt = r.leaf_index === null || r.leaf_index === undefined
          ? "no receipt yet" : `receipt checked: leaf ${r.leaf_index} of tree ${r.tree_size}`;
        ul.append(el("li", null, `Record ${r.seq} of desk log ${short(r.log_id)} (${short(r.entry_hash)}): ${receipt}`));
      }
      li.append(ul);
    }
    return li;
  }));
}

/** The revocation choice: one option per agent and card with an active key. */
function renderRevocableKeys(keys) {
  const select = $("revoke-key");
  const previous = select.value;
  const seen = new Map();
  for (const k of keys.filter((k) => !k.revoked_at)) {
    const value = `${k.username}|${k.serial}`;
    if (!seen.has(value)) seen.set(value, `${k.username} — card ${k.serial}${k.is_virtual ? " (virtual)" : ""}`);
  }
  const choose = el("option", null, seen.size ? "Choose…" : "No active key");
  choose.value = "";
  select.replaceChildren(choose, ...[...seen].map(([value, text]) => {
    const o = el("option", null, text);
    o.value = value;
    return o;
  }));
  if (seen.has(previous)) select.value = previous;
}

/** The readers the key to enrol can be in: any with a card but the admin's own. */
function renderEnrolReaders() {
  const any = renderOtherReaders("enrol-readers", "enrol-reader", "Waiting for the key to enrol in the other reader…");
  $("enrol-submit").disabled = !any;
}

/** Run a key command from `form`; show what it did, or why not next to the form. */
async function keyCommand(form, command, args, secretFields) {
  const button = form.querySelector("button[type=submit]");
  button.disabled = true;
  formError(form, null);
  try {
    const reply = await invoke(command, args);
    const done = $("admin-done");
    done.textContent = reply.done;
    done.hidden = false;
    form.reset();
    await loadAdmin();
    return true;
  } catch (failure) {
    formError(form, failureText(failure));
    return false;
  } finally {
    for (const id of secretFields) $(id).value = "";
    button.disabled = false;
    if (form.id === "enrol-form") renderEnrolReaders();
  }
}

function render() {
  const active = session.state === "active";
  const cards = readersWithCard();
  const now = currentPage();
  const previous = lastView;
  lastView = now;
  const formWasHidden = $("login-form").hidden;

  $("view-lock").hidden = now !== "lock";
  $("view-home").hidden = now !== "home";
  $("view-intake").hidden = now !== "intake";
  $("view-reset").hidden = now !== "reset";
  $("view-audit").hidden = now !== "audit";
  $("view-admin").hidden = now !== "admin";
  $("nav-admin").hidden = !(active && session.agent.tier === "admin");
  $("app-nav").hidden = !active;
  document.body.dataset.page = now;

  if (now === "home") renderHome(previous !== "home");
  else if (now === "intake") renderIntake(previous !== "intake");
  else if (now === "reset") renderReset(previous !== "reset" || screen.refocus);
  else if (now === "admin") renderEnrolReaders();
  screen.refocus = false;

  if (now === "lock") {
    const reason = $("lock-reason");
    reason.hidden = !session.message;
    reason.textContent = session.message ?? "";
    reason.dataset.reason = session.reason ?? "";

    if (readers) renderReaderPanel();
    const showForm = cards.length > 0;
    $("login-form").hidden = !showForm;
    $("lock-title").textContent = showForm ? "Enter your PIN" : "Insert your YubiKey";
    $("lock-lead").textContent = showForm ? LEAD_KEY_INSERTED : LEAD_NO_KEY;
    if (showForm) {
      renderLoginReaders(cards);
      if (formWasHidden) $("pin").focus();
    } else {
      $("login-error").hidden = true;
    }
    if (previous && previous !== "lock") $("lock-title").focus();
    // Nothing of a reset survives a lock on screen.
    screen = { view: null, notice: null, warnings: [], progress: [], parked: [] };
    $("search-results").replaceChildren();
    $("search-query").value = "";
    picked = null;
    page = "home";
  }

  const virtualInUse = active
    ? session.agent.is_virtual
    : cards.some((r) => r.is_virtual);
  $("virtual-banner").hidden = !virtualInUse;
  renderIdleWarning();
}

function renderAppInfo(info) {
  const parts = [];
  if (info.organisation) parts.push(info.organisation);
  if (info.mode === "demo") parts.push("Demo installation");
  if (info.mode === "production") parts.push("Production");
  $("install-info").textContent = parts.join(" · ");
  if (info.config_error) {
    $("config-error-text").textContent = info.config_error;
    $("config-error").hidden = false;
  }
}

function renderFatal(message) {
  const box = $("reader-status");
  box.replaceChildren(stateLine("⛔", "ResetDesk cannot reach its core", message));
  box.dataset.state = "error";
}

function showLoginError(failure) {
  const box = $("login-error");
  box.textContent = failure && failure.message ? failure.message : String(failure);
  box.dataset.triesLeft = failure && failure.tries_left != null ? String(failure.tries_left) : "";
  box.hidden = false;
}

async function submitLogin(event) {
  event.preventDefault();
  if (loginBusy) return;
  const reader = $("login-reader-options").querySelector("input:checked")?.value;
  const pinField = $("pin");
  if (!reader) return;

  loginBusy = true;
  $("login-button").disabled = true;
  $("login-error").hidden = true;
  $("login-progress").textContent = "Checking your key…";
  try {
    // The value goes straight into the call; the field is emptied before the answer.
    const pending = invoke("login", { reader, pin: pinField.value });
    pinField.value = "";
    await pending;
    // Ask again rather than trust the answer: the core may already have locked the new
    // session (key pulled, idle) and said so in an event that overtook the answer.
    session = await invoke("session_state");
    if (session.state === "active") screen = await invoke("reset_screen");
    render();
  } catch (failure) {
    showLoginError(failure);
    pinField.focus();
  } finally {
    loginBusy = false;
    $("login-button").disabled = false;
    $("login-progress").textContent = "";
  }
}


/** Tell the core the agent is active (idle lock), at most every 2 s unless the warning shows. */
let lastActivity = 0;
function noteActivity() {
  if (session.state !== "active") return;
  const now = Date.now();
  if (now - lastActivity < 2000 && $("idle-warning").hidden) return;
  lastActivity = now;
  invoke("activity").then((view) => { if (view) { session = view; renderIdleWarning(); } }).catch(() => {});
}

function renderIdleWarning() {
  const box = $("idle-warning");
  const at = session.state === "active" && session.idle_lock_at ? Date.parse(session.idle_lock_at) : null;
  const left = at ? Math.ceil((at - Date.now()) / 1000) : null;
  const show = left !== null && left <= 60 && left >= 0;
  if (show) $("idle-seconds").textContent = String(left);
  box.hidden = !show;
}

/** Run a reset command; show its screen or its error. */
async function act(call, form) {
  if (busy) return;
  busy = true;
  document.body.dataset.busy = "true";
  if (form) formError(form, null);
  $("reset-error").hidden = true;
  try {
    const next = await call();
    const before = screen.view;
    screen = next;
    // Move the focus when the step changed (so the next field is where the agent types).
    screen.refocus = !before || !next.view || before.request_id !== next.view.request_id ||
      before.phase !== next.view.phase || before.ready !== next.view.ready ||
      JSON.stringify(before.steps.map((s) => s.state)) !== JSON.stringify(next.view.steps.map((s) => s.state)) ||
      (!!before.callback) !== (!!next.view.callback);
    render();
    return true;
  } catch (failure) {
    const message = failureText(failure);
    if (form) {
      formError(form, message);
      form.querySelector("input:not([type=radio]):not([type=checkbox]), select")?.focus();
    } else {
      $("reset-error").textContent = message;
      $("reset-error").hidden = false;
    }
    return false;
  } finally {
    busy = false;
    document.body.dataset.busy = "false";
  }
}

/** Send one UiAction (the core parses it strictly). */
const action = (obj) => () => invoke("reset_action", { action: JSON.stringify(obj) });

function clearInputs(form) {
  for (const input of form.querySelectorAll("input")) {
    if (input.type === "checkbox" || input.type === "radio") input.checked = false;
    else input.value = "";
  }
}

function wireForms() {
  $("search-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const query = $("search-query").value.trim();
    $("search-error").hidden = true;
    try {
      const cards = await invoke("search_accounts", { query });
      renderResults(cards);
      announce("search-status", cards.length ? `${cards.length} account(s) found.` : "No account found. Check the spelling, or search by employee ID or e-mail.");
      if (cards.length) $("pick-0").focus();
    } catch (failure) {
      $("search-error").textContent = failureText(failure);
      $("search-error").hidden = false;
    }
  });

  $("intake-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const channel = $("intake-form").querySelector("input[name=channel]:checked")?.value;
    $("intake-channel-error").hidden = !!channel;
    $("intake-error").hidden = true;
    if (!channel) { $("channel-walk-up").focus(); return; }
    const val = (id) => $(id).value.trim() || null;
    const intake = {
      channel, name: val("intake-stated-name"), department: val("intake-department"), manager: val("intake-manager"),
      location: val("intake-location"), reason: val("intake-reason"), ticket: val("intake-ticket"),
    };
    const ok = await act(() => invoke("start_reset", { username: picked.username, intake }));
    if (!ok) {
      $("intake-error").textContent = $("reset-error").textContent;
      $("intake-error").hidden = false;
    }
  });
  $("intake-back").addEventListener("click", () => { page = "home"; render(); });

  $("form-security-answers").addEventListener("submit", (e) => {
    e.preventDefault();
    const form = e.currentTarget;
    const answers = [...form.querySelectorAll("input[data-question]")]
      .filter((i) => i.value !== "")
      .map((i) => ({ question: Number(i.dataset.question), answer: i.value }));
    const call = action({ action: "security_answers", answers });
    clearInputs(form);
    act(call, form);
  });
  $("form-employee-record").addEventListener("submit", (e) => {
    e.preventDefault();
    const form = e.currentTarget;
    const call = action({ action: "employee_record", employee_id: $("employee-id").value, date_of_hire: $("employee-hired").value });
    clearInputs(form);
    act(call, form);
  });
  $("form-totp").addEventListener("submit", (e) => {
    e.preventDefault();
    const form = e.currentTarget;
    const call = action({ action: "totp", code: $("totp-code").value });
    clearInputs(form);
    act(call, form);
  });
  $("code-send").addEventListener("click", () => {
    const form = $("form-one-time-code");
    const picked = form.querySelector("input[name=contact]:checked")?.value;
    if (!picked) { formError(form, "Choose an address or number on file."); return; }
    const [kind, index] = picked.split(":");
    act(action({ action: "request_code", to: { kind, index: Number(index) } }), form).then(() => $("code-entry").focus());
  });
  $("form-one-time-code").addEventListener("submit", (e) => {
    e.preventDefault();
    const form = e.currentTarget;
    const call = action({ action: "enter_code", code: $("code-entry").value });
    $("code-entry").value = "";
    act(call, form);
  });
  $("callback-start").addEventListener("click", () => act(action({ action: "request_callback" }), $("form-callback")));
  $("form-callback").addEventListener("submit", (e) => {
    e.preventDefault();
    const form = e.currentTarget;
    if (form.querySelector("#callback-script").hidden) { $("callback-start").click(); return; }
    const report = { reached_account_holder: $("callback-reached").checked, holder_confirmed_request: $("callback-confirmed").checked };
    clearInputs(form);
    act(action({ action: "callback_result", report }), form);
  });
  $("form-manager-approval").addEventListener("submit", (e) => {
    e.preventDefault();
    act(action({ action: "request_manager_approval" }), e.currentTarget);
  });
  $("id-type").addEventListener("change", () => { if (screen.view) renderDocuments(screen.view); });
  $("form-government-id").addEventListener("submit", (e) => {
    e.preventDefault();
    const form = e.currentTarget;
    const inspection = {
      document_type: $("id-type").value,
      issuing_authority: $("id-issuer").value,
      number_last4: $("id-last4").value,
      expiry: $("id-expiry").value,
      name_matches_record: $("id-name").checked,
      photo_matches_person: $("id-photo").checked,
      security_features_checked: $("id-features").checked,
      template_and_format_ok: $("id-template").checked,
      no_tampering: $("id-untampered").checked,
    };
    act(action({ action: "id_inspection", inspection }), form).then((ok) => { if (ok) { form.reset(); } });
  });
  $("form-co-signature").addEventListener("submit", (e) => {
    e.preventDefault();
    const form = e.currentTarget;
    const reader = form.querySelector("input[name=cosign-reader]:checked")?.value;
    if (!reader) { formError(form, "The second agent's YubiKey is not in a reader yet."); return; }
    if (busy) { formError(form, "Another step is still running; try again in a moment."); return; }
    const pin = $("cosign-pin").value;
    $("cosign-pin").value = "";
    act(() => invoke("co_sign", { reader, pin }), form);
  });

  $("confirm-reset").addEventListener("click", () => {
    // The steps arrive live ("reset-progress") while the card signs and the directory answers.
    $("live-progress").replaceChildren();
    $("live-status").textContent = "Resetting… touch your YubiKey if it blinks.";
    act(action({ action: "request_reset" })).finally(() => { $("live-status").textContent = ""; });
  });
  $("retry-outcome").addEventListener("click", () => act(() => invoke("retry_outcome")));
  $("show-customer").addEventListener("click", () => act(() => invoke("show_to_customer")).then((ok) => { if (ok) $("handoff-done").focus(); }));
  const nextCustomer = () => act(() => invoke("next_customer")).then((ok) => {
    if (ok) { page = "home"; picked = null; $("search-results").replaceChildren(); $("search-query").value = ""; render(); $("search-query").focus(); }
  });
  $("handoff-done").addEventListener("click", nextCustomer);
  $("refusal-done").addEventListener("click", nextCustomer);
  $("park-reset").addEventListener("click", () => act(() => invoke("park_reset")).then((ok) => { if (ok) { page = "home"; render(); } }));

  const toggle = (button, form) => {
    const open = form.hidden;
    form.hidden = !open;
    button.setAttribute("aria-expanded", String(open));
    if (open) form.querySelector("input").focus();
  };
  $("cancel-reset").addEventListener("click", () => toggle($("cancel-reset"), $("cancel-form")));
  $("fraud-reset").addEventListener("click", () => toggle($("fraud-reset"), $("fraud-form")));
  $("cancel-form").addEventListener("submit", (e) => {
    e.preventDefault();
    act(action({ action: "cancel", reason: $("cancel-reason").value }), e.currentTarget).then((ok) => { if (ok) $("cancel-form").hidden = true; });
  });
  $("fraud-form").addEventListener("submit", (e) => {
    e.preventDefault();
    act(action({ action: "suspected_fraud", note: $("fraud-note").value }), e.currentTarget).then((ok) => { if (ok) $("fraud-form").hidden = true; });
  });

  $("shortcuts-button").addEventListener("click", openShortcuts);
  $("nav-desk").addEventListener("click", () => showPage("home"));
  $("nav-audit").addEventListener("click", () => showPage("audit"));
  $("nav-admin").addEventListener("click", () => showPage("admin"));
  $("admin-reconcile").addEventListener("click", async () => {
    const box = $("admin-reconciled");
    try {
      const notes = await invoke("reconcile_now");
      box.replaceChildren(...notes.map((n) => el("li", null, n)));
    } catch (failure) {
      box.replaceChildren(el("li", null, failureText(failure)));
    }
    box.hidden = false;
    loadAdmin();
  });
  $("enrol-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const form = e.currentTarget;
    const reader = $("enrol-readers").querySelector("input:checked")?.value;
    if (!reader) { formError(form, "Insert the key to enrol into the other reader first."); return; }
    if (!$("enrol-agent").value.trim()) { formError(form, "Enter the agent's directory username."); $("enrol-agent").focus(); return; }
    keyCommand(form, "enrol_key", {
      form: {
        reader,
        username: $("enrol-agent").value,
        ca_passphrase: $("enrol-ca").value,
        new_pin: $("enrol-pin").value,
        new_puk: $("enrol-puk").value,
        current_pin: $("enrol-current-pin").value,
        current_puk: $("enrol-current-puk").value,
      },
    }, ["enrol-ca", "enrol-pin", "enrol-puk", "enrol-current-pin", "enrol-current-puk"]);
  });
  $("revoke-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const form = e.currentTarget;
    const [agent, serial] = $("revoke-key").value.split("|");
    if (!agent) { formError(form, "Choose the key to revoke."); $("revoke-key").focus(); return; }
    if (!$("revoke-reason").value.trim()) { formError(form, "Say why the key is revoked (lost, left the team, …)."); $("revoke-reason").focus(); return; }
    keyCommand(form, "revoke_key", { agent, serial: Number(serial), reason: $("revoke-reason").value }, []);
  });
  $("audit-filter").addEventListener("submit", (e) => { e.preventDefault(); loadAudit(); });
  $("audit-export").addEventListener("click", async () => {
    const box = $("audit-exported");
    try {
      const out = await invoke("audit_export");
      box.textContent = `Exported ${out.records} records and ${out.certificates} certificate(s) to ${out.folder}. ` +
        "Check it with `resetdesk audit verify --export FOLDER`, or with openssl alone (README).";
    } catch (failure) {
      box.textContent = failureText(failure);
    }
    box.hidden = false;
  });
  $("shortcuts-close").addEventListener("click", closeShortcuts);
}

let focusBeforeDialog = null;
function openShortcuts() {
  focusBeforeDialog = document.activeElement;
  $("shortcuts").hidden = false;
  $("shortcuts-close").focus();
}
function closeShortcuts() {
  $("shortcuts").hidden = true;
  focusBeforeDialog?.focus();
}

function typing(target) {
  return target instanceof HTMLInputElement || target instanceof HTMLSelectElement || target instanceof HTMLTextAreaElement || target?.isContentEditable;
}

function onShortcut(e) {
  if (e.key === "Escape" && !$("shortcuts").hidden) { e.preventDefault(); closeShortcuts(); return; }
  if (session.state !== "active" || typing(e.target) || e.ctrlKey || e.altKey || e.metaKey) return;
  const page = currentPage();
  if (e.key === "?") { e.preventDefault(); openShortcuts(); }
  else if (e.key === "/" && page === "home") { e.preventDefault(); $("search-query").focus(); }
  else if (e.key === "p" && page === "reset" && !$("park-reset").hidden) { e.preventDefault(); $("park-reset").click(); }
  else if (e.key === "n" && page === "reset" && !$("done-panel").hidden) { e.preventDefault(); $("handoff-done").click(); }
}

/** The upstream sync's state, as the core words it; the done panel shows it. */
async function refreshSync() {
  try {
    const next = await invoke("sync_status");
    const changed = next.text !== sync.text;
    sync = next;
    if (changed && currentPage() === "reset" && !$("done-panel").hidden) renderReset(false);
  } catch (_) { /* keep the last state */ }
}

/** Once a second: countdowns (cooling-off, parked resets, idle warning); every 3 s
 * while the manager's answer is awaited, ask the core whether it arrived. */
let ticks = 0;
function tick() {
  renderIdleWarning();
  if (session.state !== "active") return;
  const v = screen.view;
  ticks += 1;
  if (ticks % 5 === 0) refreshSync();
  if (v && v.phase === "verifying" && v.manager?.state === "pending" && ticks % 3 === 0 && !busy) {
    act(() => invoke("reset_screen"));
  }
  if (v && v.ready && v.phase === "verifying" && v.cooling_off_seconds > 0) {
    v.cooling_off_seconds = Math.max(0, Math.round((Date.parse(v.earliest_reset) - Date.now()) / 1000));
    if (v.cooling_off_seconds === 0 && !busy) {
      // The wait is over by the desk's clock: ask the core, which decides.
      act(() => invoke("reset_screen")).then(() => announce("reset-status", "The cooling-off is over: the reset can go ahead."));
    } else {
      renderReset(false);
    }
  }
  if (currentPage() === "home" && screen.parked.length) renderParked();
}

async function start() {
  if (!tauri || !tauri.core || !tauri.event) {
    renderFatal("This page must run inside the ResetDesk application.");
    return;
  }

  // Listen first, then ask: a change pushed meanwhile is newer than the answer.
  let readersPushed = false;
  let sessionPushed = false;
  await tauri.event.listen("reset-progress", (event) => {
    $("live-progress").append(el("li", null, `✔ ${event.payload.label}`));
  });
  await tauri.event.listen("reader-status", (event) => {
    readersPushed = true;
    readers = event.payload;
    render();
  });
  await tauri.event.listen("session", async (event) => {
    sessionPushed = true;
    session = event.payload;
    render();
  });

  $("login-form").addEventListener("submit", submitLogin);
  $("lock-button").addEventListener("click", () => invoke("lock_session").catch(() => {}));
  wireForms();
  document.addEventListener("keydown", onShortcut);
  document.addEventListener("keydown", noteActivity);
  document.addEventListener("pointerdown", noteActivity);
  setInterval(tick, 1000);

  try {
    renderAppInfo(await invoke("app_info"));
    await refreshSync();
    const [status, view] = await Promise.all([invoke("reader_status"), invoke("session_state")]);
    if (!readersPushed) readers = status;
    if (!sessionPushed) session = view;
    render();
  } catch (e) {
    renderFatal(String(e));
  }
}

start();
