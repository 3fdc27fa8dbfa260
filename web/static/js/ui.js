// Shared pieces of the screens: building DOM safely, formatting times in UK time, the page header,
// announcements for screen readers, and the boot sequence (who is signed in, what may they see).

import * as api from "./api.js";

/** h("p", {class: "x", onclick: fn}, "text", child): text is always a text node, never HTML. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else if (key === "class") el.className = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (value === true) el.setAttribute(key, "");
    else el.setAttribute(key, String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replaces the children of `el`. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

export const $ = (selector, root = document) => root.querySelector(selector);

// --- time -----------------------------------------------------------------------------------------

let zone = "Europe/London";
let clockOffsetMs = 0; // demo/test stacks shift the compliance clock (see dialler/clock.py)
let serverSkewMs = 0; // server clock - this browser's clock

export function setClock({ offsetS = 0, timezone } = {}) {
  clockOffsetMs = offsetS * 1000;
  if (timezone) zone = timezone;
}

export function noteServerTime(iso) {
  const at = Date.parse(iso);
  if (!Number.isNaN(at)) serverSkewMs = at - Date.now();
}

export const serverNow = () => Date.now() + serverSkewMs;

function fmt(options) {
  return new Intl.DateTimeFormat("en-GB", { timeZone: zone, ...options });
}

/**
 * A real instant shown as the customer's wall clock (UK). A demo or test stack that shifts the
 * compliance clock (calling hours) shows times on that shifted clock, as the callback picker does;
 * in production the shift is zero.
 */
export function ukTime(iso, { withDay = true } = {}) {
  if (!iso) return "—";
  const at = new Date(Date.parse(iso) + clockOffsetMs);
  const options = withDay
    ? { weekday: "short", day: "2-digit", month: "short", hour: "2-digit", minute: "2-digit" }
    : { hour: "2-digit", minute: "2-digit" };
  return fmt(options).format(at);
}

/** A date-only or date-time value as a plain date (e.g. a date of birth). */
export function ukDate(value) {
  if (!value) return "—";
  const at = value.length === 10 ? new Date(`${value}T12:00:00Z`) : new Date(value);
  return fmt({ day: "2-digit", month: "short", year: "numeric" }).format(at);
}

/**
 * Time of day of a real instant (default: now, on the server's clock), for "checked at" labels: on
 * the same shifted clock as every other time on the screen (see ukTime), or a demo's board reads
 * 01:38 beside callbacks due at 10:15.
 */
export function clockTime(ms = serverNow()) {
  return fmt({ hour: "2-digit", minute: "2-digit", second: "2-digit" }).format(new Date(ms + clockOffsetMs));
}

export function duration(seconds) {
  if (seconds === null || seconds === undefined || Number.isNaN(seconds)) return "—";
  const s = Math.max(0, Math.floor(seconds));
  const hours = Math.floor(s / 3600);
  const minutes = Math.floor((s % 3600) / 60);
  const rest = String(s % 60).padStart(2, "0");
  return hours ? `${hours}h ${String(minutes).padStart(2, "0")}m` : `${minutes}:${rest}`;
}

export function secondsSince(iso) {
  return iso ? (serverNow() - Date.parse(iso)) / 1000 : null;
}

export const percent = (ratio) => (ratio === null || ratio === undefined ? "n/a" : `${(ratio * 100).toFixed(1)}%`);
export const orNa = (value, suffix = "") => (value === null || value === undefined ? "n/a" : `${value}${suffix}`);

// --- words ----------------------------------------------------------------------------------------

export const STATE_LABELS = {
  offline: "Offline",
  available: "Available",
  reserved: "Reserved",
  on_call: "On a call",
  wrap_up: "Wrap-up",
  break: "On break",
};

export const QUEUE_LABELS = {
  callbacks: "Callbacks",
  unsigned: "Unsigned",
  outstanding_requests: "Outstanding requests",
  inbound: "Returned calls",
};

export const DISPOSITION_LABELS = {
  signed_on_call: "Signed on the call",
  docs_promised: "Documents promised",
  callback_requested: "Callback requested",
  not_interested: "Not interested",
  wrong_number: "Wrong number",
  no_answer: "No answer",
  voicemail: "Voicemail",
  busy: "Busy",
  do_not_call: "Do not call",
  deceased: "Deceased",
  vulnerable_flagged: "Vulnerable customer",
  complaint: "Complaint",
  no_outcome: "No outcome (timed out)",
};

export const words = (code) => (code ? String(code).replaceAll("_", " ") : "");
export const label = (table, code) => table[code] || words(code);

export function badge(state, text) {
  return h("span", { class: `badge state-${state}` }, text || label(STATE_LABELS, state));
}

// --- feedback -------------------------------------------------------------------------------------

/** Polite announcement for screen readers; with `toast`, also shown briefly on screen. */
export function announce(message, { toast = false, tone = "info" } = {}) {
  const live = $("#announcer");
  if (live) {
    live.textContent = "";
    setTimeout(() => {
      live.textContent = message;
    }, 30);
  }
  const toasts = $("#toasts");
  if (toast && toasts) {
    while (toasts.children.length >= 2) toasts.firstElementChild.remove();
    const item = h("div", { class: `toast toast-${tone}` }, message);
    toasts.append(item);
    setTimeout(() => item.remove(), 4000);
  }
}

export function errorText(error) {
  if (error instanceof api.ApiError) {
    // A dependency that is down (503 naming it): the server's message says which part, as is.
    if (error.status === 503 && error.details && error.details.dependency) return error.message;
    if (error.status === 0 || error.status >= 500) return `The server had a problem (${error.message}). Try again.`;
    return error.message;
  }
  if (error && error.name === "TypeError") return "The server cannot be reached. Check the connection.";
  return (error && error.message) || String(error);
}

/** Shows an error in an element with role="alert" (empties it when error is null). */
export function showError(el, error) {
  if (!el) return;
  el.hidden = !error;
  el.textContent = error ? errorText(error) : "";
}

/** Disables a button while `work` runs, so a double click does not send twice. */
export async function busy(button, work) {
  if (button.disabled) return undefined;
  button.disabled = true;
  button.setAttribute("aria-busy", "true");
  try {
    return await work();
  } finally {
    button.removeAttribute("aria-busy");
    button.disabled = false;
  }
}

// --- the page frame -------------------------------------------------------------------------------

const SCREENS = [
  { path: "/agent", text: "Agent workspace", permission: "calls:work" },
  { path: "/supervisor", text: "Supervisor", permission: "dashboard:read" },
  { path: "/reports", text: "Reports", permission: "reports:read" },
  { path: "/compliance", text: "Compliance", permission: "reviews:read" },
  { path: "/admin", text: "Admin", permission: "agents:admin" },
];

export function homeOf(me) {
  const by = { admin: "/admin", supervisor: "/supervisor", compliance: "/compliance" };
  return by[me.role] || "/agent";
}

function header(me) {
  const nav = h(
    "nav",
    { "aria-label": "Screens" },
    h(
      "ul",
      {},
      SCREENS.filter((s) => me.permissions.includes(s.permission)).map((s) =>
        h(
          "li",
          {},
          h("a", { href: s.path, "aria-current": location.pathname === s.path ? "page" : null }, s.text),
        ),
      ),
    ),
  );
  const out = h("button", { type: "button", class: "link-button", id: "sign-out", onclick: () => api.signOut() }, "Sign out");
  return [
    h("a", { class: "brand", href: homeOf(me) }, h("span", { class: "brand-mark", "aria-hidden": "true" }, "RMC"), " Dialler"),
    nav,
    h(
      "div",
      { class: "who" },
      h("span", { class: "who-name", id: "who-name" }, me.display_name),
      h("span", { class: "who-role" }, me.role),
      out,
    ),
  ];
}

/**
 * Signs the page in: loads the agent and the UI configuration, draws the header, and checks the
 * permission the screen needs. Returns {me, config} or null when the page must not render.
 */
export async function boot(permission) {
  if (!api.signedIn()) {
    api.toSignIn();
    return null;
  }
  const [me, config] = await Promise.all([api.get("/auth/me"), api.get("/ui/config")]);
  setClock({ offsetS: config.clock_offset_s, timezone: config.calling_timezone });
  fill($("#site-header"), header(me));
  if (permission && !me.permissions.includes(permission)) {
    fill(
      $("#main"),
      h(
        "section",
        { class: "card narrow" },
        h("h1", {}, "Not available to you"),
        h("p", {}, "Your role does not include this screen."),
        h("p", {}, h("a", { href: homeOf(me) }, "Go to your screen")),
      ),
    );
    return null;
  }
  return { me, config };
}

/** Runs `main` and reports an error that stopped the page from loading. */
export function start(main) {
  main().catch((error) => {
    if (error instanceof api.ApiError && error.status === 401) return; // already on the way to sign-in
    const target = $("#main");
    if (target) {
      fill(
        target,
        h("section", { class: "card narrow" }, h("h1", {}, "This screen could not load"), h("p", { role: "alert" }, errorText(error))),
      );
    }
  });
}
