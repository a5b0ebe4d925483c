// The customer-facing window: shows what the core hands it (once), in large type,
// and clears it on the core's signal or after the time the core gives. Decides nothing.
const tauri = window.__TAURI__;
const $ = (id) => document.getElementById(id);

let clearTimer = null;
/** Bumped by every clear: a take still in flight when the screen is cleared is dropped. */
let generation = 0;
let countdown = null;

const SPELL = { upper: "capital", lower: "small", digit: "digit" };

/** "A b 7" read as "capital A, small b, digit 7": no guessing between look-alikes. */
function spelled(text) {
  return [...text].map((c) => {
    if (/[A-Z]/.test(c)) return `${SPELL.upper} ${c}`;
    if (/[a-z]/.test(c)) return `${SPELL.lower} ${c}`;
    if (/[0-9]/.test(c)) return `${SPELL.digit} ${c}`;
    if (c === " ") return "space";
    return `“${c}”`;
  }).join(", ");
}

function clearScreen() {
  generation += 1;
  $("shown-secret").textContent = "";
  $("shown-spelled").textContent = "";
  $("shown-hint").textContent = "";
  $("shown").hidden = true;
  $("idle").hidden = false;
  $("customer").dataset.state = "idle";
  clearTimeout(clearTimer);
  clearInterval(countdown);
}

function show(item) {
  const password = item.kind === "temporary-password";
  $("shown-title").textContent = password ? "Your temporary password" : "Your verification code";
  // Groups of four, for reading and typing; the spaces are not part of it.
  $("shown-secret").replaceChildren(...(item.secret.match(/.{1,4}/g) ?? []).map((g) => {
    const span = document.createElement("span");
    span.className = "group";
    span.textContent = g;
    return span;
  }));
  $("shown-spelled").textContent = spelled(item.secret);
  $("shown-hint").textContent = password
    ? "Shown in groups of four: type it without spaces at your next login. You will be asked to choose a new password at once."
    : `Demo: this code stands in for a message to ${item.for_contact ?? "your registered address"}. Read it to the agent.`;
  $("shown").hidden = false;
  $("idle").hidden = true;
  $("customer").dataset.state = item.kind;
  let left = item.clear_after_seconds;
  $("shown-seconds").textContent = String(left);
  clearInterval(countdown);
  countdown = setInterval(() => { left -= 1; $("shown-seconds").textContent = String(Math.max(0, left)); }, 1000);
  clearTimeout(clearTimer);
  clearTimer = setTimeout(clearScreen, item.clear_after_seconds * 1000);
}

async function take() {
  const asked = generation;
  try {
    const item = await tauri.core.invoke("customer_take");
    if (item && asked === generation) show(item);
  } catch (e) {
    clearScreen();
  }
}

async function start() {
  if (!tauri) return;
  // The core's signals come through a channel of this window's own; it may not listen
  // to the app's events.
  const signals = new tauri.core.Channel();
  signals.onmessage = async (signal) => {
    if (signal.state === "clear") { clearScreen(); return; }
    await take();
  };
  await tauri.core.invoke("customer_subscribe", { onSignal: signals });
  // Opened (again) after the signal was sent — the window had been closed: take what
  // waits, if anything.
  await take();
}

start();
