// ResetDesk web view: renders the state the core returns; decides nothing itself.
// All text from the core (reader names, errors) is inserted with textContent, never as HTML.

const tauri = window.__TAURI__;

const $ = (id) => document.getElementById(id);

/** Create an element with optional class names and text. */
function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function stateLine(icon, title, detail) {
  const wrap = document.createDocumentFragment();
  const line = el("p", "state-line");
  line.append(el("span", "state-icon", icon));
  line.lastChild.setAttribute("aria-hidden", "true");
  line.append(el("strong", null, title));
  wrap.append(line);
  if (detail) wrap.append(el("p", "state-detail", detail));
  return wrap;
}

/** Render a `ReaderStatus` from the core: { state: "no-service" | "no-readers" | "readers", readers? }. */
function renderReaders(status) {
  const box = $("reader-status");
  box.replaceChildren();
  box.dataset.state = status.state;
  let virtualCardInserted = false;

  switch (status.state) {
    case "no-service":
      box.append(stateLine("⛔", "Smart-card service not running",
        "ResetDesk cannot see any key because the PC/SC service (pcscd) is not running. " +
        "Ask IT support to start it."));
      break;
    case "no-readers":
      box.append(stateLine("⚠", "No reader connected",
        "Plug your YubiKey into a USB port."));
      break;
    case "readers": {
      const list = el("ul", "reader-list");
      list.id = "reader-list";
      for (const r of status.readers) {
        const item = el("li", "reader");
        item.dataset.card = r.card_present ? "present" : "empty";
        item.dataset.virtual = String(r.is_virtual);
        item.append(el("span", "reader-name", r.name));
        const card = el("span", "reader-card",
          r.card_present ? "✔ Key inserted" : "○ No key");
        item.append(card);
        if (r.is_virtual) {
          item.append(el("span", "badge badge-virtual", "Virtual reader — demo only"));
          if (r.card_present) virtualCardInserted = true;
        }
        list.append(item);
      }
      box.append(list);
      break;
    }
    default:
      box.append(stateLine("?", "Unknown reader state", String(status.state)));
  }
  $("virtual-banner").hidden = !virtualCardInserted;
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

async function start() {
  if (!tauri || !tauri.core || !tauri.event) {
    renderFatal("This page must run inside the ResetDesk application.");
    return;
  }
  const { invoke } = tauri.core;

  // Listen first, then ask: a change pushed meanwhile is newer than the answer.
  let pushed = false;
  await tauri.event.listen("reader-status", (event) => {
    pushed = true;
    renderReaders(event.payload);
  });

  try {
    renderAppInfo(await invoke("app_info"));
    const status = await invoke("reader_status");
    if (!pushed) renderReaders(status);
  } catch (e) {
    renderFatal(String(e));
  }
}

start();
