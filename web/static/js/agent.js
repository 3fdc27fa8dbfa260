// The agent workspace: status, next call, the call itself, the customer, the outcome, callbacks.
//
// The server is the truth: the screen polls GET /agents/me/live about once a second with
// If-None-Match (a 304 costs no body) and redraws from what it says. Clicks only ask
// (next call, dial, hang up, outcome); the call session's workflow decides, so a reload or a
// second tab never loses a call or an outcome.

import * as api from "./api.js";
import {
  $,
  DISPOSITION_LABELS,
  QUEUE_LABELS,
  STATE_LABELS,
  announce,
  badge,
  boot,
  busy,
  duration,
  fill,
  h,
  label,
  noteServerTime,
  secondsSince,
  serverNow,
  showError,
  start,
  ukDate,
  ukTime,
  words,
} from "./ui.js";
import { setupSms } from "./sms.js";

const LIVE_EVERY_MS = 1000;
const CALLBACKS_EVERY_MS = 30_000;
const CALL_STATES = ["reserved", "on_call", "wrap_up"];
const LIVE_CALL = ["dialing", "ringing", "in_progress"];
const RETURNED_QUEUE = "inbound"; // the queue of a returned call's session (the customer rang us)
const CALL_STATE_TEXT = {
  reserved: "Reserved for you — ready to call",
  dialing: "Dialling…",
  ringing: "Ringing…",
  in_progress: "Connected",
  ended: "Call ended",
  wrap_up: "Wrap-up",
  closed: "Closed",
};
const END_TEXT = {
  completed: "the call ended",
  busy: "the line was busy",
  no_answer: "nobody answered",
  failed: "the call could not be placed",
  canceled: "the call was cancelled",
  abandoned: "abandoned (no agent in time)",
};
// The outcome a line's result already tells (the agent confirms it with Save): busy, no answer, and
// voicemail when the carrier's answering-machine detection said a machine answered.
const OUTCOME_OF_LINE = { busy: "busy", no_answer: "no_answer", machine: "voicemail" };

function lineOutcome(call) {
  if (call.answered_by && call.answered_by.startsWith("machine")) return OUTCOME_OF_LINE.machine;
  return OUTCOME_OF_LINE[call.end_reason] || null;
}

const S = {
  me: null,
  config: null,
  presence: null,
  call: null,
  callUnavailable: false,
  customer: null,
  customerFor: null,
  customerLoading: null,
  offered: null,
  connectedAt: null,
  dialAsked: new Set(),
  slots: [],
  slotsNextFrom: null,
  slotsLoadedAt: 0,
  live: null,
  voice: null,
  sms: null,
  rules: new Map(),
  pacingPaused: null, // the server's reason, after a click on "Next call", while every queue is at its ceiling
};

// --- status ---------------------------------------------------------------------------------------

function renderStatus() {
  const p = S.presence;
  if (!p) return;
  const inState = secondsSince(p.since);
  fill(
    $("#status-now"),
    badge(p.state),
    p.reason ? h("span", { class: "reason" }, words(p.reason)) : null,
    h("span", { class: "since", id: "status-since" }, p.since ? `for ${duration(inState)}` : ""),
  );
  const can = new Set(p.can_set);
  $("#set-available").disabled = !can.has("available") || p.state === "available";
  $("#set-break").disabled = !can.has("break");
  $("#break-reason").disabled = !can.has("break");
  $("#set-offline").disabled = !can.has("offline") || p.state === "offline";
  $("#set-available").textContent = p.state === "break" ? "Back from break" : "Available";
}

async function setPresence(state, button) {
  showError($("#status-error"), null);
  const body = { state };
  if (state === "break") body.reason = $("#break-reason").value;
  await busy(button, async () => {
    try {
      await api.put("/agents/me/presence", body);
      S.live.now();
    } catch (error) {
      showError($("#status-error"), error);
    }
  });
}

// --- the call -------------------------------------------------------------------------------------

function renderCall() {
  const call = S.call;
  const p = S.presence;
  const state = call ? call.state : null;
  const holding = Boolean(call) || (p && CALL_STATES.includes(p.state));
  $("#next-call").disabled = !p || p.state !== "available" || holding;
  $("#dial").disabled = state !== "reserved" || S.dialAsked.has(call.session_id);
  $("#hangup").disabled = !LIVE_CALL.includes(state);
  if (S.voice) S.voice.sync(call);

  const lines = [];
  if (call) {
    let text = CALL_STATE_TEXT[state] || words(state);
    if (state === "in_progress") text += ` · ${duration(S.connectedAt ? (serverNow() - S.connectedAt) / 1000 : 0)}`;
    lines.push(h("p", { class: `call-line call-${state}`, id: "call-state-text" }, text));
    // Nothing automated plays before the agent (Ofcom's 2 seconds): the recording notice is their first line.
    if (LIVE_CALL.includes(state) && S.config.recording_notice) {
      lines.push(h("p", { class: "hint", id: "say-first" }, `Say first: "${S.config.recording_notice}"`));
    }
    if (call.queue === RETURNED_QUEUE) lines.push(h("p", { class: "hint", id: "returned-call-note" }, "A returned call: the customer rang us."));
    const facts = [`Queue: ${label(QUEUE_LABELS, call.queue)}`];
    if (call.end_reason) facts.push(`Result: ${END_TEXT[call.end_reason] || words(call.end_reason)}`);
    if (state !== "reserved") facts.push(call.answered ? "Answered" : "Not answered");
    lines.push(h("p", { class: "hint" }, facts.join(" · ")));
    if (call.refusal) lines.push(...whyNotNow(call.refusal.reasons, call.refusal.next_allowed_at, "call-refusal"));
    if (call.wrap_up_deadline && ["ended", "wrap_up"].includes(state)) {
      const left = (Date.parse(call.wrap_up_deadline) - serverNow()) / 1000;
      lines.push(h("p", { class: "hint", id: "wrap-up-left" }, `Save the outcome within ${duration(left)}`));
    }
  } else if (S.inbound) {
    lines.push(...returnedCallPop(S.inbound));
  } else if (S.callUnavailable) {
    lines.push(h("p", { class: "call-line" }, "Call state unavailable for a moment; your clicks still count."));
  } else {
    lines.push(h("p", { class: "call-line call-idle", id: "call-state-text" }, "No call"));
  }
  fill($("#call-state"), lines);
}

// A customer ringing us back, routed to this agent: who it is and how our last call ended, before
// they answer (the customer's claims fill the customer panel at the same time).
function returnedCallPop(inbound) {
  const customer = inbound.customer;
  const who = customer ? `${customer.first_name} ${customer.last_name}` : "An unknown number";
  const last = customer && customer.recent_attempts.length ? customer.recent_attempts[0] : null;
  return [
    h("p", { class: "call-line call-ringing", id: "returned-call" }, `${who} is calling you back — answer your phone`),
    ...(S.voice && S.voice.ringing()
      ? [h("button", { type: "button", id: "answer-returned-call", class: "primary", onclick: () => S.voice.answer() }, "Answer")]
      : []),
    h(
      "p",
      { class: "hint", id: "returned-call-last" },
      last ? `Our last call: ${label(DISPOSITION_LABELS, last.result)}, ${ukTime(last.attempted_at)}` : "No earlier call on record.",
    ),
  ];
}

function onInboundChange(previous, inbound) {
  if (inbound && (!previous || previous.call_sid !== inbound.call_sid)) {
    const who = inbound.customer ? `${inbound.customer.first_name} ${inbound.customer.last_name}` : "an unknown number";
    announce(`Returned call from ${who}`, { toast: true });
  }
  // The caller's context while it rings and for the whole call (no lease names a returned call's customer).
  if (inbound && inbound.customer && (!S.call || S.call.user_id === inbound.user_id)) {
    if (S.customerFor !== inbound.user_id) showCustomer(inbound.customer);
  }
}

// "Why not now / next allowed at": the compliance gate's own reasons (the dial refused at the last
// moment), the same strings GET /queues/customers/{id}/explain returns.
function whyNotNow(reasons, nextAllowedAt, id) {
  const lines = [h("p", { class: "call-line call-refused", id }, "Not called: the compliance check refused this call")];
  for (const reason of reasons || []) lines.push(h("p", { class: "hint why-not-now" }, `Why not now: ${reason}`));
  lines.push(
    h(
      "p",
      { class: "hint", id: `${id}-next` },
      nextAllowedAt ? `Next allowed at ${ukTime(nextAllowedAt)}` : "Not allowed again by time alone",
    ),
  );
  return lines;
}

function onCallChange(previous, call) {
  if (call && call.state === "in_progress" && (!previous || previous.state !== "in_progress")) {
    S.connectedAt = serverNow();
    announce("Call connected");
  }
  if (call && call.refusal && !(previous && previous.refusal)) {
    announce(`Call not placed: ${call.refusal.reasons.join("; ")}`);
  }
  if (call && previous && LIVE_CALL.includes(previous.state) && !LIVE_CALL.includes(call.state)) {
    announce(`Call ended: ${END_TEXT[call.end_reason] || "ended"}. Record the outcome.`);
    S.focusOutcome = true; // once the form is enabled (after this redraw)
  }
  // Once per call, whether or not a poll caught it dialling (a busy line ends within a second).
  if (call && !LIVE_CALL.includes(call.state) && call.end_reason && S.lineOutcomeOf !== call.session_id) {
    S.lineOutcomeOf = call.session_id;
    S.preselect = lineOutcome(call);
  }
  if (!call) S.connectedAt = null;
  const dialled = previous && (LIVE_CALL.includes(previous.state) || S.dialAsked.has(previous.session_id));
  if (!call && dialled) void explainUnplaced(previous.session_id);
}

// A dial the compliance rules refused at the last moment closes its session at once (no call rang, so
// no outcome fits): the closed call still says why, and from when the customer may be called.
async function explainUnplaced(sessionId) {
  let closed = null;
  try {
    closed = await api.get(`/calls/${encodeURIComponent(sessionId)}`);
  } catch {
    return; // the next call is what matters; the refusal stays on the supervisor's explain
  }
  if (!closed || !closed.refusal) return;
  const text = `Call not placed: ${closed.refusal.reasons.join("; ")}`;
  $("#next-call-message").textContent = closed.refusal.next_allowed_at
    ? `${text}. Next allowed at ${ukTime(closed.refusal.next_allowed_at)}.`
    : text;
  announce(text);
}

async function nextCall(button) {
  showError($("#call-error"), null);
  $("#next-call-message").textContent = "";
  await busy(button, async () => {
    try {
      // In progressive mode the session dials as soon as it is offered, and the customer may answer
      // before this request returns: the phone takes the bridge when it rings.
      if (S.voice && S.me && S.me.progressive_mode) S.voice.expect(null);
      const offered = await api.post("/agents/me/next-call");
      S.pacingPaused = null; // answered: not (or no longer) paused
      if (!offered.customer) {
        const until = offered.until ? ` Next allowed at ${ukTime(offered.until)}.` : "";
        $("#next-call-message").textContent = (offered.reason || "Nobody to call right now.") + until;
        return;
      }
      S.offered = offered;
      showCustomer(offered.customer);
      announce(`Next customer: ${offered.customer.first_name} ${offered.customer.last_name}`);
      S.live.now();
    } catch (error) {
      if (pacingPause(error)) return;
      showError($("#call-error"), error);
    }
  });
  renderCall();
}

// The server refuses progressive calls while the abandoned rate of every queue this agent works is at
// its ceiling (Ofcom; api 409 progressive_paused): say why.
function pacingPause(error) {
  if (!error || error.code !== "progressive_paused") return false;
  const first = !S.pacingPaused;
  S.pacingPaused = error.message;
  if (first) announce(error.message);
  showError($("#call-error"), error);
  dialerTick();
  return true;
}

async function dial(button) {
  const call = S.call;
  if (!call || call.state !== "reserved") return;
  showError($("#call-error"), null);
  if (S.voice && !S.voice.ready()) {
    showError($("#call-error"), new Error("Your phone is not connected yet: wait for “Phone ready” (see below)."));
    return;
  }
  S.dialAsked.add(call.session_id);
  await busy(button, async () => {
    try {
      if (S.voice) S.voice.expect(call.session_id);
      await api.post(`/calls/${encodeURIComponent(call.session_id)}/dial`);
      announce("Dialling");
      S.live.now();
    } catch (error) {
      S.dialAsked.delete(call.session_id);
      showError($("#call-error"), error);
    }
  });
  renderCall();
}

async function hangUp(button) {
  const call = S.call;
  if (!call) return;
  showError($("#call-error"), null);
  await busy(button, async () => {
    try {
      if (S.voice) await S.voice.hangup();
      await api.post(`/calls/${encodeURIComponent(call.session_id)}/hangup`);
      S.live.now();
    } catch (error) {
      showError($("#call-error"), error);
    }
  });
  renderCall();
}

// The dialler, not this page, places progressive and predictive calls: a queue's pacer (started by a
// supervisor) rings customers for agents who are available with their phone ready, and bridges the
// customer who answers to this browser phone. The page only says whether it is ready: voice.js beats
// /voice/device-ready while the phone is registered, and a closed tab or a dropped phone stops being
// dialled for within seconds (the heartbeat's short life). Preview stays a click: Next call, then Call.
function phoneReady() {
  return Boolean(S.voice && S.voice.ready());
}

/** Whether a call the dialler placed may be put through to this agent now (voice.js takes it at once). */
function takesPlacedCalls() {
  const p = S.presence;
  // on_call: a progressive call's session puts the agent on the call as it dials, before the answer.
  return Boolean(p && ["available", "reserved", "on_call"].includes(p.state) && !S.inbound);
}

function dialerTick() {
  if (!S.voice) return;
  const p = S.presence;
  let text = "";
  let paused = false;
  if (!p || p.state !== "available" || S.call) {
    text = p && p.state !== "available" && !S.call ? "The dialler rings customers for you only while you are available." : "";
  } else if (!phoneReady()) {
    text = "Your phone is not connected: the dialler does not ring customers for you.";
  } else if (S.pacingPaused) {
    text = S.pacingPaused;
    paused = true;
  } else {
    text = "Ready: when your queue's dialler runs, it rings customers for you. Or take one with Next call.";
  }
  $("#progressive").hidden = !text; // on a call the panel gives its room to the call and the customer
  $("#progressive-text").classList.toggle("progressive-paused", paused);
  $("#progressive-text").textContent = text;
}

// --- the customer ---------------------------------------------------------------------------------

function section(title, body, id) {
  return h("section", { class: "customer-section", "aria-labelledby": id }, h("h3", { id }, title), body);
}

function table(caption, headers, rows, empty) {
  if (!rows.length) return h("p", { class: "empty" }, empty);
  return h(
    "table",
    { class: "data" },
    h("caption", { class: "visually-hidden" }, caption),
    h("thead", {}, h("tr", {}, headers.map((x) => h("th", { scope: "col" }, x)))),
    h("tbody", {}, rows.map((cells) => h("tr", {}, cells.map((c) => h("td", {}, c))))),
  );
}

function showCustomer(customer) {
  S.customer = customer;
  S.customerFor = customer ? customer.user_id : null;
  const body = $("#customer-body");
  if (!customer) {
    const ready = S.presence && S.presence.state === "available";
    fill(
      body,
      h(
        "p",
        { class: "empty", id: "customer-empty" },
        ready ? "No customer yet. Press " : "No customer yet. Set yourself available and press ",
        h("strong", {}, "Next call"),
        ready ? " for the next one." : ".",
      ),
    );
    if (S.sms) S.sms.show(null);
    return;
  }
  const claims = new Map(customer.claims.map((c) => [c.id, c]));
  fill(
    body,
    h(
      "div",
      { class: "customer-head" },
      h("p", { class: "customer-name", id: "customer-name" }, `${customer.first_name} ${customer.last_name}`),
      h(
        "p",
        { class: "customer-tags" },
        h("span", { class: customer.signed ? "tag tag-ok" : "tag tag-warn" }, customer.signed ? "Signed" : "No signature yet"),
        h("span", { class: "tag" }, `Customer #${customer.user_id}`),
        customer.status ? h("span", { class: "tag" }, words(customer.status)) : null,
      ),
      h(
        "dl",
        { class: "facts" },
        h("dt", {}, "Phone"),
        h("dd", {}, customer.phone_masked || "—"),
        h("dt", {}, "Date of birth"),
        h("dd", {}, ukDate(customer.date_of_birth)),
        h("dt", {}, "Postcode"),
        h("dd", {}, customer.postcode || "—"),
      ),
    ),
    customer.open_callback
      ? h(
          "p",
          { class: "notice", id: "open-callback" },
          `Open callback: ${ukTime(customer.open_callback.due_at)} (${words(customer.open_callback.status)})`,
        )
      : null,
    section(
      `Claims (${customer.claims.length})`,
      table(
        "Claims",
        ["Lender", "Type", "Status"],
        customer.claims.map((c) => [c.lender, words(c.type), h("span", { class: c.active ? "" : "muted" }, words(c.status))]),
        "No claims.",
      ),
      "claims-title",
    ),
    section(
      `Pending requirements (${customer.pending_requirements.length})`,
      table(
        "Pending requirements",
        ["Requirement", "Claim", "Reason"],
        customer.pending_requirements.map((r) => [words(r.type), claims.get(r.claim_id)?.lender || `#${r.claim_id}`, r.reason || "—"]),
        "Nothing pending.",
      ),
      "requirements-title",
    ),
    section(
      "Contact history",
      table(
        "Contact history",
        ["When", "Result"],
        customer.recent_attempts.map((a) => [ukTime(a.attempted_at), label(DISPOSITION_LABELS, a.result)]),
        "Never contacted.",
      ),
      "history-title",
    ),
    section(
      "Customer notes",
      customer.notes.length
        ? h("ul", { class: "notes" }, customer.notes.map((n) => h("li", {}, h("span", { class: "hint" }, ukTime(n.created_at)), " ", n.body)))
        : h("p", { class: "empty" }, "No notes."),
      "notes-title",
    ),
  );
  if (S.sms) S.sms.show(customer);
}

async function ensureCustomer() {
  const call = S.call;
  if (!call || S.customerFor === call.user_id || S.customerLoading === call.user_id) return;
  if (call.queue === RETURNED_QUEUE) return; // its customer comes with the returned call (onInboundChange)
  if (S.offered && S.offered.customer && S.offered.customer.user_id === call.user_id) {
    showCustomer(S.offered.customer);
    return;
  }
  S.customerLoading = call.user_id;
  try {
    showCustomer(await api.get("/agents/me/customer"));
  } catch (error) {
    showError($("#call-error"), error);
  } finally {
    S.customerLoading = null;
  }
}

// --- outcome --------------------------------------------------------------------------------------

function buildOutcomeForm() {
  const options = $("#disposition-options");
  for (const rule of S.config.dispositions) {
    S.rules.set(rule.code, rule);
    const id = `disposition-${rule.code}`;
    options.append(
      h(
        "div",
        { class: "option" },
        h("input", { type: "radio", name: "disposition", id, value: rule.code, required: true }),
        h("label", { for: id }, label(DISPOSITION_LABELS, rule.code)),
      ),
    );
  }
  options.addEventListener("change", onDispositionChange);
  $("#outcome-notes").addEventListener("input", () => {
    $("#notes-count").textContent = `${$("#outcome-notes").value.length} / 2000`;
  });
  $("#callback-day").addEventListener("change", renderTimes);
  $("#more-days").addEventListener("click", (e) => busy(e.currentTarget, () => loadSlots(true)));
  $("#outcome-form").addEventListener("submit", submitOutcome);
}

function chosen() {
  const input = document.querySelector('input[name="disposition"]:checked');
  return input ? S.rules.get(input.value) : null;
}

function onDispositionChange() {
  const rule = chosen();
  const wantsTime = Boolean(rule && rule.needs_callback_time);
  $("#callback-fields").hidden = !wantsTime;
  const needsNote = Boolean(rule && rule.needs_note);
  $("#notes-required").hidden = !needsNote;
  $("#outcome-notes").required = needsNote;
  $("#outcome-notes").setAttribute("aria-required", String(needsNote));
  showError($("#outcome-error"), null);
  if (wantsTime && (!S.slots.length || Date.now() - S.slotsLoadedAt > 60_000)) loadSlots(false);
}

async function loadSlots(more) {
  const from = more && S.slotsNextFrom ? `&from=${encodeURIComponent(S.slotsNextFrom)}` : "";
  try {
    const page = await api.get(`/callbacks/slots?count=192${from}`);
    S.slots = more ? S.slots.concat(page.slots) : page.slots;
    S.slotsNextFrom = page.next_from;
    S.slotsLoadedAt = Date.now();
    renderDays();
  } catch (error) {
    showError($("#outcome-error"), error);
  }
}

function dayOf(slot) {
  return slot.local.slice(0, 10);
}

function renderDays() {
  const select = $("#callback-day");
  const keep = select.value;
  const days = [];
  for (const slot of S.slots) if (!days.some((d) => d.key === dayOf(slot))) days.push({ key: dayOf(slot), text: slot.label.slice(0, 10) });
  fill(select, days.map((d) => h("option", { value: d.key }, d.text)));
  if (days.some((d) => d.key === keep)) select.value = keep;
  renderTimes();
}

function renderTimes() {
  const select = $("#callback-time");
  const keep = select.value;
  const day = $("#callback-day").value;
  const slots = S.slots.filter((s) => dayOf(s) === day);
  fill(
    select,
    h("option", { value: "" }, "Choose a time"),
    slots.map((s) => h("option", { value: s.at }, s.local.slice(11, 16))),
  );
  if (slots.some((s) => s.at === keep)) select.value = keep;
}

function renderOutcomeState() {
  const call = S.call;
  const state = call ? call.state : null;
  const open = Boolean(call) && state !== "closed";
  $("#disposition-set").disabled = !open;
  $("#outcome-notes").disabled = !open;
  const live = LIVE_CALL.includes(state);
  $("#save-outcome").disabled = !open || live;
  for (const input of document.querySelectorAll('input[name="disposition"]')) {
    const rule = S.rules.get(input.value);
    const needsAnswer = rule.needs_answered_call && !(call && call.answered) && !live;
    // "No answer", "voicemail", "busy": only once a call was dialled (never rung: nothing to report).
    const needsDial = rule.needs_dialled_call && !(call && call.end_reason && call.queue !== RETURNED_QUEUE);
    input.disabled = needsAnswer || needsDial;
    if (needsDial && input.checked) input.checked = false;
    if (needsAnswer && input.checked) input.checked = false;
  }
  let hint = "The form opens when you hold a customer.";
  if (state === "reserved") hint = "Not calling this customer? Record why, e.g. wrong number.";
  else if (live) hint = "Hang up to save the outcome.";
  else if (state === "ended" || state === "wrap_up") hint = "Choose the outcome and save it.";
  $("#outcome-hint").textContent = hint;
}

function resetOutcome() {
  $("#outcome-form").reset();
  $("#callback-fields").hidden = true;
  $("#notes-required").hidden = true;
  $("#notes-count").textContent = "0 / 2000";
  showError($("#outcome-error"), null);
}

async function submitOutcome(event) {
  event.preventDefault();
  const call = S.call;
  const rule = chosen();
  const notes = $("#outcome-notes").value.trim();
  const problem = !call
    ? "There is no call to record."
    : !rule
      ? "Choose an outcome."
      : rule.needs_callback_time && !$("#callback-time").value
        ? "Choose a day and a time for the callback."
        : rule.needs_note && !notes
          ? "This outcome needs a note for the supervisor's review."
          : null;
  if (problem) {
    showError($("#outcome-error"), new Error(problem));
    (rule ? (rule.needs_callback_time && !$("#callback-time").value ? $("#callback-time") : $("#outcome-notes")) : $("#disposition-options input:not(:disabled)"))?.focus();
    return;
  }
  const body = { disposition: rule.code, notes: notes || null };
  if (rule.needs_callback_time) body.callback_at = $("#callback-time").value;
  await busy($("#save-outcome"), async () => {
    try {
      const saved = await api.post(`/calls/${encodeURIComponent(call.session_id)}/outcome`, body);
      const when = body.callback_at ? ` — callback ${ukTime(body.callback_at)}` : "";
      // Kept: the call's session was unreachable (a restart); it applies the outcome when it resumes.
      const later = saved && saved.kept ? " (it takes effect when the system catches up; you stay in wrap-up until then)" : "";
      announce(`Outcome saved: ${label(DISPOSITION_LABELS, rule.code)}${when}${later}`, { toast: true, tone: "ok" });
      $("#next-call-message").textContent = `Last call: ${label(DISPOSITION_LABELS, rule.code)}${when}.`;
      resetOutcome();
      S.offered = null;
      S.live.now();
      if (S.callbacks) [1000, 3000, 7000].forEach((ms) => setTimeout(() => S.callbacks.now(), ms));
    } catch (error) {
      showError($("#outcome-error"), error);
    }
  });
}

// --- my callbacks ---------------------------------------------------------------------------------

function renderCallbacks(mine) {
  const due = (mine.due || []).map((c) => c.user_id);
  const fresh = S.dueSeen ? due.filter((u) => !S.dueSeen.includes(u)) : [];
  if (fresh.length) announce(`Callback due: customer #${fresh.join(", #")}`, { toast: true });
  S.dueSeen = due;
  const groups = [
    ["due", "Due now", "No callbacks due."],
    ["upcoming", "Upcoming", "None booked."],
    ["missed", "Missed (7 days)", "None missed."],
  ];
  fill(
    $("#my-callbacks"),
    groups.map(([key, title, empty]) => {
      const items = mine[key] || [];
      return h(
        "div",
        { class: `callback-group callback-${key}`, id: `callbacks-${key}` },
        h("h3", {}, `${title} (${items.length})`),
        items.length
          ? h(
              "ul",
              { class: "callback-list" },
              items.map((c) =>
                h(
                  "li",
                  { dataset: { userId: String(c.user_id) } },
                  h("span", { class: "when" }, ukTime(c.due_at)),
                  " ",
                  h("span", {}, `Customer #${c.user_id}`),
                  " ",
                  h("span", { class: `tag tag-${c.status}` }, words(c.status)),
                ),
              ),
            )
          : h("p", { class: "empty" }, empty),
      );
    }),
  );
}

function setupCallbacks() {
  if (!S.config.features.callbacks_mine) {
    fill($("#my-callbacks"), h("p", { class: "empty" }, "Your callbacks will show here."));
    return;
  }
  $("#callbacks-refresh").hidden = false;
  $("#callbacks-refresh").addEventListener("click", () => S.callbacks.now());
  S.callbacks = api.poll("/callbacks/mine", CALLBACKS_EVERY_MS, renderCallbacks, (error) => {
    if (error) fill($("#my-callbacks"), h("p", { class: "error", role: "alert" }, "Callbacks could not be loaded."));
  });
}

// --- live state -----------------------------------------------------------------------------------

function onLive(live) {
  noteServerTime(live.at);
  const previous = S.call;
  // Screen readers hear state changes once (the ticking timers on screen are not live regions).
  if (S.presence && S.presence.state !== live.presence.state) announce(`Status: ${label(STATE_LABELS, live.presence.state)}`);
  S.presence = live.presence;
  S.call = live.call;
  S.callUnavailable = live.call_unavailable;
  const previousInbound = S.inbound;
  S.inbound = live.inbound || null;
  onCallChange(previous, S.call);
  if (S.call) ensureCustomer();
  else if (!S.inbound && !CALL_STATES.includes(S.presence.state)) showCustomer(null); // redraws the hint too
  onInboundChange(previousInbound, S.inbound);
  if (!S.call && previous) resetOutcome();
  if (S.sms) S.sms.sync(live.sms);
  renderStatus();
  renderCall();
  renderOutcomeState();
  if (S.preselect) {
    const input = document.querySelector(`input[name="disposition"][value="${S.preselect}"]:not(:disabled)`);
    S.preselect = null;
    if (input && !document.querySelector('input[name="disposition"]:checked')) {
      input.checked = true;
      onDispositionChange();
    }
  }
  if (S.focusOutcome) {
    S.focusOutcome = false;
    // The hang-up button just went disabled under the agent's focus: carry it to the outcome.
    if (!document.activeElement || document.activeElement === document.body || document.activeElement.disabled) {
      document.querySelector('input[name="disposition"]:checked:not(:disabled), input[name="disposition"]:not(:disabled)')?.focus();
    }
  }
}

function onLiveError(error) {
  const banner = $("#call-error");
  if (error) showError(banner, new Error("Lost touch with the server; retrying…"));
  else if (banner.textContent.startsWith("Lost touch")) showError(banner, null);
}

function everySecond() {
  if (S.presence && S.presence.since) {
    const since = $("#status-since");
    if (since) since.textContent = `for ${duration(secondsSince(S.presence.since))}`;
  }
  if (S.call && (S.call.state === "in_progress" || S.call.wrap_up_deadline)) renderCall();
  dialerTick();
}

async function main() {
  const booted = await boot("calls:work");
  if (!booted) return;
  Object.assign(S, booted);
  fill($("#break-reason"), S.config.break_reasons.map((r) => h("option", { value: r }, words(r))));
  buildOutcomeForm();
  $("#set-available").addEventListener("click", (e) => setPresence("available", e.currentTarget));
  $("#set-break").addEventListener("click", (e) => setPresence("break", e.currentTarget));
  $("#set-offline").addEventListener("click", (e) => setPresence("offline", e.currentTarget));
  $("#next-call").addEventListener("click", (e) => nextCall(e.currentTarget));
  $("#dial").addEventListener("click", (e) => dial(e.currentTarget));
  $("#hangup").addEventListener("click", (e) => hangUp(e.currentTarget));
  if (S.config.telephony_mode === "twilio") {
    // Twilio's SDK, or against the local emulator its adapter: voice.js runs the one flow on either.
    const { setupVoice } = await import("./voice.js");
    S.voice = setupVoice({
      status: $("#device-status"),
      mute: $("#mute"),
      onError: (error) => showError($("#call-error"), error),
      config: S.config,
      isReturnedCall: () => Boolean(S.inbound),
      takesPlacedCalls,
      onRinging: renderCall,
    });
  }
  S.sms = setupSms({ config: S.config, card: $("#sms-card"), body: $("#sms-body") });
  setupCallbacks();
  S.live = api.poll("/agents/me/live", LIVE_EVERY_MS, onLive, onLiveError);
  setInterval(everySecond, 1000);
}

start(main);
