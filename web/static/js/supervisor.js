// The supervisor dashboard. GET /dashboard every 2 s with If-None-Match: a 304 (no body) unless a
// number on the screen changed; time in state ticks here, from each agent's `since`.
// Why polling and not a stream: see api/routes/dashboard.py.

import * as api from "./api.js";
import {
  $,
  announce,
  DISPOSITION_LABELS,
  QUEUE_LABELS,
  STATE_LABELS,
  badge,
  boot,
  busy,
  clockTime,
  duration,
  errorText,
  fill,
  h,
  label,
  noteServerTime,
  orNa,
  percent,
  secondsSince,
  showError,
  start,
  ukTime,
  words,
} from "./ui.js";

const EVERY_MS = 2000;
const SHORT_QUEUE = { callbacks: "Callbacks", unsigned: "Unsigned", outstanding_requests: "Outstanding" };
const STATE_ORDER = ["on_call", "wrap_up", "reserved", "available", "break", "offline"];

let me = null;
let latest = null;

function external(href, text, description) {
  return h("a", { href, target: "_blank", rel: "noopener noreferrer", title: description, "aria-label": `${text}: ${description}` }, text);
}

function kpi(key, title, value, sub, tone = "") {
  return h(
    "li",
    { class: `kpi ${tone}`, id: `kpi-${key}` },
    h("span", { class: "kpi-label" }, title),
    h("strong", { class: "kpi-value" }, value),
    h("span", { class: "kpi-sub" }, sub || "\u00a0"),
  );
}

function renderKpis(d) {
  const o = d.outcomes_today;
  const a = d.abandoned_24h;
  const c = d.callbacks;
  const cdc = d.cdc;
  const r = d.last_rebuild;
  fill(
    $("#kpis"),
    kpi("calls", "Calls today", o ? String(o.total) : "n/a", o ? `${o.contacts} reached` : ""),
    kpi("contact-rate", "Contact rate", o ? percent(o.contact_rate) : "n/a", "today"),
    kpi(
      "abandoned",
      "Abandoned (24 h)",
      a ? percent(a.rate) : "n/a",
      a ? `${a.abandoned} of ${a.answered} answered` : "",
      a && a.rate !== null && a.rate > 0.03 ? "bad" : "",
    ),
    kpi("callbacks-due", "Callbacks due", c ? String(c.due_now) : "n/a", c ? `${c.upcoming_today} more later today` : ""),
    kpi("callbacks-missed", "Missed today", c ? String(c.missed_today) : "n/a", c ? `${c.completed_today} completed` : "", c && c.missed_today ? "warn" : ""),
    kpi(
      "cdc-lag",
      "CDC lag",
      cdc.lag_s === null ? "n/a" : `${cdc.lag_s.toFixed(1)} s`,
      cdc.publisher_state ? `publisher ${cdc.publisher_state}` : "publisher not reporting",
      cdc.lag_s !== null && cdc.lag_s > 5 ? "warn" : "",
    ),
    kpi(
      "dlq",
      "Dead letters",
      orNa(cdc.dlq_messages),
      cdc.dlq_messages && cdc.dlq_last_reason ? `last: ${cdc.dlq_last_reason}` : "CDC dead-letter queue",
      cdc.dlq_messages ? "warn" : "",
    ),
    // A fill of empty queues (fresh install, flushed Redis) is not drift: amber only when CDC missed something.
    r && r.fill
      ? kpi("drift", "Last rebuild", "Filled", `empty queues filled ${ukTime(r.finished_at || r.started_at)}`)
      : kpi("drift", "Last rebuild drift", r ? String(r.drift_total) : "n/a", r ? ukTime(r.finished_at || r.started_at) : "no rebuild yet", r && r.drift_total ? "warn" : ""),
  );
}

function renderBoard(d) {
  const board = d.agents;
  if (!board) {
    fill($("#board-rows"), h("tr", {}, h("td", { colspan: "5", class: "empty" }, "Agent states are not available right now.")));
    fill($("#board-counts"), "");
    return;
  }
  fill(
    $("#board-counts"),
    STATE_ORDER.filter((s) => board.counts[s]).map((s) => h("span", { class: `count state-${s}` }, `${board.counts[s]} ${label(STATE_LABELS, s).toLowerCase()}`)),
  );
  const rows = board.items.map((a) =>
    h(
      "tr",
      { dataset: { agentId: String(a.agent_id), state: a.state } },
      h("td", {}, external(a.temporal_url, a.display_name, "call sessions in the Temporal UI"), h("span", { class: "hint role" }, ` ${a.role}`)),
      h("td", { class: "state-cell" }, badge(a.state), a.reason ? h("span", { class: "reason" }, ` ${words(a.reason)}`) : null),
      h("td", { class: "in-state", dataset: { since: a.since || "" } }, duration(secondsSince(a.since))),
      h(
        "td",
        { class: "customer-cell" },
        a.user_id ? external(a.customer_temporal_url, a.customer_name ? `${a.customer_name} (#${a.user_id})` : `#${a.user_id}`, "this customer's workflows in the Temporal UI") : "—",
      ),
      h("td", { class: "queues-cell" }, a.queues.map((q) => SHORT_QUEUE[q] || q).join(", ") || "—"),
    ),
  );
  fill($("#board-rows"), rows.length ? rows : h("tr", {}, h("td", { colspan: "5", class: "empty" }, "No active agents.")));
}

// Ofcom's abandoned rate per queue over 24 h against the queue's ceiling (api: /pacing/queues); a
// paused queue gets a row of its own saying why its progressive dialling stopped.
function pacingCell(p) {
  if (!p) return h("td", { class: "num pacing" }, "n/a");
  return h(
    "td",
    { class: `num pacing${p.state === "paused" ? " bad" : ""}`, title: `${p.abandoned} abandoned, ${p.live_answered} put through, ${p.machine} machines` },
    h("span", { class: "rate" }, percent(p.rate)),
    h("span", { class: "ceiling hint" }, `max ${percent(p.ceiling)}`),
  );
}

function renderQueues(d) {
  const rows = [];
  for (const q of d.queues) {
    rows.push(
      h(
        "tr",
        { dataset: { queue: q.queue } },
        h("th", { scope: "row" }, external(q.temporal_url, label(QUEUE_LABELS, q.queue), "this queue's call sessions in the Temporal UI")),
        h("td", { class: "num depth" }, orNa(q.depth)),
        h("td", { class: "num" }, orNa(q.taken_15m)),
        h("td", { class: "num" }, orNa(q.drain_per_hour)),
        pacingCell(q.pacing),
      ),
    );
    if (q.pacing && q.pacing.state === "paused") {
      rows.push(h("tr", { class: "pacing-paused", dataset: { pausedQueue: q.queue } }, h("td", { colspan: "5", class: "reason bad", role: "status" }, q.pacing.reason)));
    }
  }
  fill($("#queue-rows"), rows);
}

// Pacing controls per queue (api: /pacing/queues): mode, ceiling and maximum ratio, the pacer started
// and stopped, and what it decided last — the live ratio, the 24 h rate against the ceiling, and why
// it is tapered or paused. The forms are drawn once and refreshed only where the supervisor is not typing.
const PACING_EVERY_MS = 2000;
const MODES = ["preview", "progressive", "predictive"];
let canManagePacing = false;
let pacingPoll = null;

function pacerLine(q) {
  const p = q.pacer;
  const rate = `24 h abandoned ${percent(q.rate)} of max ${percent(q.ceiling)}`;
  if (!p) return { text: `Pacer stopped · ${rate}`, reason: "", tone: "" };
  const d = p.decision;
  if (!d) return { text: `Pacer starting · ${rate}`, reason: "", tone: "" };
  const shown = d.paused ? "paused" : d.governed;
  const tone = d.paused ? "bad" : d.governed !== d.requested ? "warn" : "ok";
  const text = `Running · ${shown} · ratio ${d.ratio.toFixed(2)} · ${d.ready} ready, ${d.in_flight} ringing, ${d.calls} placed · answer rate ${percent(d.answer_probability)} · ${rate}`;
  return { text, reason: d.reason, tone, mode: shown };
}

function pacingForm(q) {
  const id = (name) => `pacing-${q.queue}-${name}`;
  const field = (name, text, input) => h("label", { for: id(name), class: "pacing-field" }, text, input);
  const disabled = !canManagePacing;
  const form = h(
    "form",
    { class: "pacing-form", dataset: { pacingQueue: q.queue }, "aria-label": `${label(QUEUE_LABELS, q.queue)} pacing` },
    h("h3", {}, label(QUEUE_LABELS, q.queue)),
    h(
      "div",
      { class: "pacing-fields" },
      field("mode", "Mode", h("select", { id: id("mode"), name: "mode", disabled }, MODES.map((m) => h("option", { value: m }, words(m))))),
      field("ceiling", "Ceiling %", h("input", { id: id("ceiling"), name: "ceiling", type: "number", min: "0", step: "0.1", required: true, disabled })),
      field("ratio", "Max ratio", h("input", { id: id("ratio"), name: "max_ratio", type: "number", step: "0.1", required: true, disabled })),
    ),
    h(
      "div",
      { class: "actions" },
      h("button", { type: "submit", class: "small", disabled }, "Save"),
      h("button", { type: "button", class: "small pacer-toggle", disabled }, "Start pacer"),
    ),
    h("p", { class: "pacer-status", role: "status" }),
    h("p", { class: "pacer-reason hint" }),
  );
  form.elements.mode.value = q.mode;
  form.elements.ceiling.value = String(Math.round(q.ceiling * 10000) / 100);
  form.elements.max_ratio.value = String(q.max_ratio);
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    savePacing(form, q.queue);
  });
  form.querySelector(".pacer-toggle").addEventListener("click", (e) => togglePacer(e.currentTarget, q.queue));
  return form;
}

function renderPacing(data) {
  const host = $("#pacing");
  for (const q of data.queues) {
    let form = host.querySelector(`form[data-pacing-queue="${q.queue}"]`);
    if (!form) {
      form = pacingForm(q);
      host.append(form);
    }
    const line = pacerLine(q);
    const status = form.querySelector(".pacer-status");
    status.textContent = line.text;
    status.className = `pacer-status ${line.tone}`;
    form.dataset.pacerMode = line.mode || "stopped";
    const reason = form.querySelector(".pacer-reason");
    reason.textContent = line.reason ? `Why: ${line.reason}` : "";
    reason.className = `pacer-reason hint ${line.tone === "ok" ? "" : line.tone}`;
    const toggle = form.querySelector(".pacer-toggle");
    toggle.textContent = q.pacer ? "Stop pacer" : "Start pacer";
    toggle.dataset.running = q.pacer ? "1" : "";
    if (!form.contains(document.activeElement) && !form.dataset.dirty) {
      form.elements.mode.value = q.mode;
      form.elements.ceiling.value = String(Math.round(q.ceiling * 10000) / 100);
      form.elements.max_ratio.value = String(q.max_ratio);
    }
  }
}

async function savePacing(form, queue) {
  showError($("#pacing-error"), null);
  const body = {
    mode: form.elements.mode.value,
    ceiling: Number(form.elements.ceiling.value) / 100,
    max_ratio: Number(form.elements.max_ratio.value),
  };
  await busy(form.querySelector('button[type="submit"]'), async () => {
    try {
      await api.put(`/pacing/queues/${encodeURIComponent(queue)}/settings`, body);
      delete form.dataset.dirty;
      announce(`${label(QUEUE_LABELS, queue)} pacing saved`, { toast: true, tone: "ok" });
      if (pacingPoll) pacingPoll.now();
    } catch (error) {
      showError($("#pacing-error"), error);
    }
  });
}

async function togglePacer(button, queue) {
  showError($("#pacing-error"), null);
  const action = button.dataset.running ? "stop" : "start";
  await busy(button, async () => {
    try {
      await api.post(`/pacing/queues/${encodeURIComponent(queue)}/${action}`);
      announce(`${label(QUEUE_LABELS, queue)} pacer ${action === "start" ? "started" : "stopping"}`, { toast: true, tone: "ok" });
      if (pacingPoll) pacingPoll.now();
    } catch (error) {
      showError($("#pacing-error"), error);
    }
  });
}

function renderOutcomes(d) {
  const o = d.outcomes_today;
  if (!o) return fill($("#outcomes"), h("p", { class: "empty" }, "n/a"));
  const entries = Object.entries(o.by_disposition).sort((x, y) => y[1] - x[1]);
  if (!entries.length) return fill($("#outcomes"), h("p", { class: "empty" }, "No calls recorded yet today."));
  const top = Math.max(...entries.map((e) => e[1]));
  const list = h(
    "ul",
    { class: "bars" },
    entries.map(([code, n]) => {
      const bar = h("span", { class: "bar", "aria-hidden": "true" });
      bar.style.setProperty("--share", `${Math.round((n / top) * 100)}%`);
      return h("li", { dataset: { disposition: code } }, h("span", { class: "bar-label" }, label(DISPOSITION_LABELS, code)), bar, h("span", { class: "bar-value" }, String(n)));
    }),
  );
  return fill($("#outcomes"), list);
}

function agentName(d, id) {
  const found = d.agents && d.agents.items.find((a) => a.agent_id === id);
  return found ? found.display_name : id ? `agent #${id}` : "any agent";
}

function renderCallbacks(d) {
  const c = d.callbacks;
  if (!c) return fill($("#callbacks"), h("p", { class: "empty" }, "n/a"));
  const list = (rows, empty) =>
    rows.length
      ? h(
          "ul",
          { class: "callback-list" },
          rows.map((r) =>
            h(
              "li",
              {},
              h("span", { class: "when" }, ukTime(r.due_at)),
              " ",
              external(r.temporal_url, `#${r.user_id}`, "this callback's workflow in the Temporal UI"),
              " ",
              h("span", { class: `tag tag-${r.status}` }, words(r.status)),
              h("span", { class: "hint" }, ` ${agentName(d, r.owner_agent_id)}`),
            ),
          ),
        )
      : h("p", { class: "empty" }, empty);
  return fill(
    $("#callbacks"),
    h(
      "dl",
      { class: "facts facts-inline" },
      h("dt", {}, "Due now"),
      h("dd", { id: "callbacks-due-now" }, String(c.due_now)),
      h("dt", {}, "Later today"),
      h("dd", {}, String(c.upcoming_today)),
      h("dt", {}, "Missed today"),
      h("dd", { id: "callbacks-missed-today" }, String(c.missed_today)),
      h("dt", {}, "Completed today"),
      h("dd", {}, String(c.completed_today)),
    ),
    h("h3", {}, "Due now"),
    list(c.due, "None due."),
    h("h3", {}, "Missed today"),
    list(c.missed, "None missed."),
  );
}

function renderSystem(d) {
  const cdc = d.cdc;
  const r = d.last_rebuild;
  const drift = r
    ? Object.entries(r.drift).map(([q, x]) => h("li", {}, `${label(QUEUE_LABELS, q)}: +${x.added || 0} −${x.removed || 0} ~${x.rescored || 0}`))
    : [];
  return fill(
    $("#system"),
    h(
      "dl",
      { class: "facts" },
      h("dt", {}, "CDC publisher"),
      h("dd", {}, cdc.publisher_state || "n/a"),
      h("dt", {}, "Lag"),
      h("dd", { id: "cdc-lag" }, cdc.lag_s === null ? "n/a" : `${cdc.lag_s.toFixed(2)} s`),
      h("dt", {}, "Last change seen"),
      h("dd", {}, cdc.last_event_at ? ukTime(cdc.last_event_at) : "n/a"),
      h("dt", {}, "Events published"),
      h("dd", {}, orNa(cdc.published_total)),
      h("dt", {}, "Dead letters"),
      h("dd", { id: "dlq" }, orNa(cdc.dlq_messages)),
      h("dt", {}, "Last rebuild"),
      h(
        "dd",
        { id: "last-rebuild" },
        r ? [external(r.temporal_url, ukTime(r.finished_at || r.started_at), "the rebuild's workflow in the Temporal UI"), r.fill ? ` (${r.trigger}), filled empty queues` : ` (${r.trigger}), drift ${r.drift_total}`] : "none yet",
      ),
    ),
    drift.length ? h("ul", { class: "drift" }, drift) : null,
  );
}

// A redraw replaces the rows: put the keyboard focus back on the same link of the same row.
function keepingFocus(draw) {
  const active = document.activeElement;
  const row = active && active.closest ? active.closest("tr[data-agent-id], tr[data-queue]") : null;
  const key = row && (row.dataset.agentId ? `tr[data-agent-id="${row.dataset.agentId}"]` : `tr[data-queue="${row.dataset.queue}"]`);
  const index = row ? [...row.querySelectorAll("a, button")].indexOf(active) : -1;
  draw();
  if (key && index >= 0) document.querySelector(key)?.querySelectorAll("a, button")[index]?.focus();
}

function render(d) {
  latest = d;
  noteServerTime(d.generated_at);
  keepingFocus(() => {
    renderKpis(d);
    renderBoard(d);
    renderQueues(d);
    renderOutcomes(d);
    renderCallbacks(d);
    renderSystem(d);
  });
}

function tick() {
  for (const cell of document.querySelectorAll("#board-rows td.in-state")) {
    if (cell.dataset.since) cell.textContent = duration(secondsSince(cell.dataset.since));
  }
}

async function rebuild(button) {
  $("#rebuild-message").textContent = "";
  await busy(button, async () => {
    try {
      const accepted = await api.post("/queues/rebuild");
      fill($("#rebuild-message"), "Rebuild started: ", external(accepted.temporal_url, "follow it in the Temporal UI", "the rebuild workflow"), ". The drift shows here when it ends.");
    } catch (error) {
      $("#rebuild-message").textContent = errorText(error);
    }
  });
}

async function main() {
  const booted = await boot("dashboard:read");
  if (!booted) return;
  me = booted.me;
  if (me.permissions.includes("rebuild:trigger")) {
    $("#rebuild").hidden = false;
    $("#rebuild").addEventListener("click", (e) => rebuild(e.currentTarget));
  }
  canManagePacing = me.permissions.includes("pacing:manage");
  $("#pacing").addEventListener("input", (e) => {
    const form = e.target.closest("form");
    if (form) form.dataset.dirty = "1";
  });
  pacingPoll = api.poll("/pacing/queues", PACING_EVERY_MS, renderPacing, (error) => {
    if (error) showError($("#pacing-error"), error);
  });
  api.poll("/dashboard", EVERY_MS, render, (error) => {
    const freshness = $("#freshness");
    if (error) {
      freshness.className = "freshness stale";
      freshness.textContent = `Connection problem — retrying (${errorText(error)})`;
      showError($("#dash-error"), latest ? null : error);
    } else {
      freshness.className = "freshness live";
      freshness.textContent = `Live · checked ${clockTime()}`;
      showError($("#dash-error"), null);
    }
  });
  setInterval(tick, 1000);
}

start(main);
