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

/** The key choice of the login form: one radio per reader holding a card. */
function renderLoginReaders(cards) {
  const options = $("login-reader-options");
  const previous = options.querySelector("input:checked")?.value;
  options.replaceChildren();
  cards.forEach((r, i) => {
    const id = `reader-option-${i}`;
    const input = el("input");
    Object.assign(input, { type: "radio", name: "reader", id, value: r.name });
    input.checked = previous ? r.name === previous : i === 0;
    const label = el("label", "radio-label", r.name);
    label.htmlFor = id;
    if (r.is_virtual) label.append(el("span", "badge badge-virtual", "Virtual — demo only"));
    const row = el("div", "radio-row");
    row.append(input, label);
    options.append(row);
  });
  if (!options.querySelector("input:checked") && options.firstElementChild) {
    options.querySelector("input").checked = true;
  }
}

function render() {
  const active = session.state === "active";
  const cards = readersWithCard();
  const wasHome = !$("view-home").hidden;
  const formWasHidden = $("login-form").hidden;

  $("view-lock").hidden = active;
  $("view-home").hidden = !active;

  if (active) {
    const a = session.agent;
    $("agent-name").textContent = a.display_name;
    $("agent-username").textContent = a.username;
    $("agent-tier").textContent = TIER_LABELS[a.tier] ?? a.tier;
    $("agent-key").textContent = `serial ${a.serial} in “${a.reader}”`;
    $("agent-cert").textContent = new Date(a.certificate_expires).toLocaleString();
    $("view-home").dataset.tier = a.tier;
    if (!wasHome) $("home-title").focus();
  } else {
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
    if (wasHome) $("lock-title").focus();
  }

  const virtualInUse = active
    ? session.agent.is_virtual
    : cards.some((r) => r.is_virtual);
  $("virtual-banner").hidden = !virtualInUse;
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
  const { invoke } = tauri.core;
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

/** Tell the core the agent is active (idle lock), at most every 2 s. */
let lastActivity = 0;
function noteActivity() {
  if (session.state !== "active") return;
  const now = Date.now();
  if (now - lastActivity < 2000) return;
  lastActivity = now;
  tauri.core.invoke("activity").catch(() => {});
}

async function start() {
  if (!tauri || !tauri.core || !tauri.event) {
    renderFatal("This page must run inside the ResetDesk application.");
    return;
  }
  const { invoke } = tauri.core;

  // Listen first, then ask: a change pushed meanwhile is newer than the answer.
  let readersPushed = false;
  let sessionPushed = false;
  await tauri.event.listen("reader-status", (event) => {
    readersPushed = true;
    readers = event.payload;
    render();
  });
  await tauri.event.listen("session", (event) => {
    sessionPushed = true;
    session = event.payload;
    render();
  });

  $("login-form").addEventListener("submit", submitLogin);
  $("lock-button").addEventListener("click", () => invoke("lock_session").catch(() => {}));
  document.addEventListener("keydown", noteActivity);
  document.addEventListener("pointerdown", noteActivity);

  try {
    renderAppInfo(await invoke("app_info"));
    const [status, view] = await Promise.all([invoke("reader_status"), invoke("session_state")]);
    if (!readersPushed) readers = status;
    if (!sessionPushed) session = view;
    render();
  } catch (e) {
    renderFatal(String(e));
  }
}

start();
