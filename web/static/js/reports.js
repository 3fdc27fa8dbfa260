// The Reports page: a period of UK days, five charts (each with a table view for screen readers and
// for copying), messaging numbers, refused dials, and CSV downloads of every report.
//
// Charts are drawn by Chart.js, vendored at /static/vendor/chartjs (a classic script that defines
// window.Chart; loaded before this module). Every chart's canvas is role="img" with a label saying
// what it shows; the same numbers are in the table under it.

import * as api from "./api.js";
import { $, QUEUE_LABELS, boot, duration, errorText, fill, h, label, percent, start, ukTime } from "./ui.js";

const charts = new Map(); // id -> Chart, destroyed before a redraw
const COLOURS = {
  today: "#1f5fbf",
  todayContacts: "#2e8b57",
  lastWeek: "#9db7e0",
  lastWeekContacts: "#a8d5b8",
  ceiling: "#b3261e",
  target: "#d99a00",
  rate: "#1f5fbf",
  callbacks: "#7b4fb0",
  unsigned: "#1f5fbf",
  outstanding_requests: "#2e8b57",
  available: "#2e8b57",
  reserved: "#9db7e0",
  on_call: "#1f5fbf",
  wrap_up: "#7b4fb0",
  break: "#d99a00",
};
const TIME_PARTS = [
  ["available_s", "Available", "available"],
  ["reserved_s", "Reserved", "reserved"],
  ["on_call_s", "On call", "on_call"],
  ["wrap_up_s", "Wrap-up", "wrap_up"],
  ["break_s", "Break", "break"],
];

let offsetMs = 0;
let period = null; // {from, to} ISO dates

// --- dates (UK calendar days on the business clock) ------------------------------------------------

function ukToday() {
  const parts = new Intl.DateTimeFormat("en-CA", { timeZone: "Europe/London", year: "numeric", month: "2-digit", day: "2-digit" });
  return parts.format(new Date(Date.now() + offsetMs));
}

function addDays(iso, days) {
  const at = new Date(`${iso}T12:00:00Z`);
  at.setUTCDate(at.getUTCDate() + days);
  return at.toISOString().slice(0, 10);
}

function ukDay(iso) {
  const [y, m, d] = iso.split("-");
  return `${d}/${m}/${y}`;
}

function quick(kind) {
  const today = ukToday();
  if (kind === "yesterday") return { from: addDays(today, -1), to: addDays(today, -1) };
  if (kind === "last-week") {
    // Monday to Sunday of the week before this one.
    const weekday = (new Date(`${today}T12:00:00Z`).getUTCDay() + 6) % 7; // Monday 0
    const monday = addDays(today, -weekday - 7);
    return { from: monday, to: addDays(monday, 6) };
  }
  if (kind === "last-30") return { from: addDays(today, -29), to: today };
  return { from: today, to: today };
}

const query = (p, extra = {}) => "?" + new URLSearchParams({ from: p.from, to: p.to, ...extra }).toString();

// --- building blocks -----------------------------------------------------------------------------

function table(caption, headers, rows) {
  return h(
    "table",
    { class: "data" },
    h("caption", {}, caption),
    h("thead", {}, h("tr", {}, headers.map((t, i) => h("th", { scope: "col", class: i ? "num" : null }, t)))),
    h("tbody", {}, rows.map((r) => h("tr", {}, r.map((c, i) => (i ? h("td", { class: "num" }, c) : h("th", { scope: "row" }, c)))))),
  );
}

/** A chart card: heading, a labelled canvas, and its numbers as a table in a disclosure. */
function figure(id, title, description, config, tableEl) {
  const canvas = h("canvas", { id: `chart-${id}`, role: "img", "aria-label": `${title}: ${description}` });
  const card = h(
    "section",
    { class: "card chart-card", "aria-labelledby": `title-${id}`, id: `figure-${id}` },
    h("h2", { id: `title-${id}` }, title),
    h("p", { class: "hint" }, description),
    h("div", { class: "chart-box" }, canvas),
    h("details", { class: "table-view" }, h("summary", {}, "Table view"), h("div", { class: "scroll" }, tableEl)),
  );
  if (charts.has(id)) charts.get(id).destroy();
  $("#charts").append(card);
  if (window.Chart) {
    charts.set(id, new window.Chart(canvas, { ...config, options: { responsive: true, maintainAspectRatio: false, animation: false, ...config.options } }));
  } else {
    canvas.replaceWith(h("p", { class: "error" }, "The chart library did not load; the table below has the numbers."));
  }
  return card;
}

const hourLabel = (iso) => ukTime(iso, { withDay: false });
const pct = (v) => (v === null || v === undefined ? null : Math.round(v * 10000) / 100);

// --- the charts ----------------------------------------------------------------------------------

async function callsPerHour(day) {
  const lastWeek = addDays(day, -7);
  const [now, before] = await Promise.all([
    api.get(`/reports/hourly${query({ from: day, to: day })}`),
    api.get(`/reports/hourly${query({ from: lastWeek, to: lastWeek })}`),
  ]);
  const labels = now.hours.map((r) => hourLabel(r.hour));
  const at = (rows, i, key) => (rows[i] ? rows[i][key] : null);
  figure(
    "hourly",
    "Calls and contacts per hour",
    `${ukDay(day)} against the same weekday a week before (${ukDay(lastWeek)}), by hour of the UK day.`,
    {
      type: "bar",
      data: {
        labels,
        datasets: [
          { label: `Calls ${ukDay(day)}`, data: now.hours.map((r) => r.calls), backgroundColor: COLOURS.today },
          { label: `Contacts ${ukDay(day)}`, data: now.hours.map((r) => r.contacts), backgroundColor: COLOURS.todayContacts },
          { label: `Calls ${ukDay(lastWeek)}`, data: labels.map((_, i) => at(before.hours, i, "calls")), backgroundColor: COLOURS.lastWeek },
          { label: `Contacts ${ukDay(lastWeek)}`, data: labels.map((_, i) => at(before.hours, i, "contacts")), backgroundColor: COLOURS.lastWeekContacts },
        ],
      },
      options: { scales: { y: { beginAtZero: true, title: { display: true, text: "Calls" } } } },
    },
    table(
      "Calls and contacts per hour",
      ["Hour (UK)", `Calls ${ukDay(day)}`, `Contacts ${ukDay(day)}`, `Calls ${ukDay(lastWeek)}`, `Contacts ${ukDay(lastWeek)}`],
      now.hours.map((r, i) => [labels[i], r.calls, r.contacts, at(before.hours, i, "calls") ?? "—", at(before.hours, i, "contacts") ?? "—"]),
    ),
  );
}

async function abandonedLast24h(day) {
  const report = (await api.get(`/reports/compliance${query({ from: addDays(day, -1), to: day })}`)).report;
  const end = day === ukToday() ? Date.now() : Date.parse(report.hours.length ? report.hours[report.hours.length - 1].hour : Date.now());
  const byHour = new Map();
  for (const row of report.hours) {
    const at = Date.parse(row.hour);
    if (at > end || at <= end - 24 * 3600 * 1000) continue;
    const sum = byHour.get(row.hour) || { answered: 0, abandoned: 0 };
    sum.answered += row.answered_24h;
    sum.abandoned += row.abandoned_24h;
    byHour.set(row.hour, sum);
  }
  const hours = [...byHour.keys()].sort();
  const rates = hours.map((k) => (byHour.get(k).answered ? byHour.get(k).abandoned / byHour.get(k).answered : null));
  figure(
    "abandoned",
    "Abandoned rate, rolling 24 hours",
    `All queues, hour by hour over the 24 hours to ${ukDay(day)}, against the Ofcom ceiling (${percent(report.ceiling)}) and our target (${percent(report.target)}).`,
    {
      type: "line",
      data: {
        labels: hours.map(hourLabel),
        datasets: [
          { label: "Abandoned rate (24 h), %", data: rates.map(pct), borderColor: COLOURS.rate, backgroundColor: COLOURS.rate, spanGaps: true },
          { label: "Ofcom ceiling, %", data: hours.map(() => report.ceiling * 100), borderColor: COLOURS.ceiling, borderDash: [6, 4], pointRadius: 0 },
          { label: "Target, %", data: hours.map(() => report.target * 100), borderColor: COLOURS.target, borderDash: [2, 3], pointRadius: 0 },
        ],
      },
      options: { scales: { y: { beginAtZero: true, title: { display: true, text: "%" } } } },
    },
    table(
      "Abandoned rate, rolling 24 hours",
      ["Hour (UK)", "Answered (24 h)", "Abandoned (24 h)", "Rate"],
      hours.map((k, i) => [hourLabel(k), byHour.get(k).answered, byHour.get(k).abandoned, percent(rates[i])]),
    ),
  );
}

async function depthOverDay(day) {
  const { samples } = await api.get(`/reports/queue-depth${query({ from: day, to: day })}`);
  const times = [...new Set(samples.map((s) => s.at))].sort();
  const queues = [...new Set(samples.map((s) => s.queue))];
  const value = new Map(samples.map((s) => [`${s.queue} ${s.at}`, s.depth]));
  figure(
    "depth",
    "Queue depth over the day",
    `Customers waiting in each queue on ${ukDay(day)}, sampled every minute.`,
    {
      type: "line",
      data: {
        labels: times.map(hourLabel),
        datasets: queues.map((q) => ({
          label: label(QUEUE_LABELS, q),
          data: times.map((t) => value.get(`${q} ${t}`) ?? null),
          borderColor: COLOURS[q] || "#555",
          backgroundColor: COLOURS[q] || "#555",
          pointRadius: 0,
        })),
      },
      options: { scales: { y: { beginAtZero: true, title: { display: true, text: "Customers waiting" } } } },
    },
    table(
      "Queue depth over the day",
      ["Time (UK)", ...queues.map((q) => label(QUEUE_LABELS, q))],
      times.map((t) => [hourLabel(t), ...queues.map((q) => value.get(`${q} ${t}`) ?? "—")]),
    ),
  );
}

function agentTime(agents) {
  figure(
    "agents",
    "Agent time split",
    `Time in each state per agent, ${ukDay(period.from)} to ${ukDay(period.to)} (hours).`,
    {
      type: "bar",
      data: {
        labels: agents.map((a) => a.display_name),
        datasets: TIME_PARTS.map(([key, text, colour]) => ({
          label: text,
          data: agents.map((a) => Math.round((a[key] / 3600) * 100) / 100),
          backgroundColor: COLOURS[colour],
        })),
      },
      options: { indexAxis: "y", scales: { x: { stacked: true, title: { display: true, text: "Hours" } }, y: { stacked: true } } },
    },
    table(
      "Agent time split",
      ["Agent", "Logged in", ...TIME_PARTS.map(([, text]) => text), "Calls", "Contacts", "Calls / h"],
      agents.map((a) => [
        a.display_name,
        duration(a.logged_in_s),
        ...TIME_PARTS.map(([key]) => duration(a[key])),
        a.calls,
        a.contacts,
        a.calls_per_hour ?? "—",
      ]),
    ),
  );
}

function conversion(report) {
  const queues = report.queues;
  figure(
    "conversion",
    "Conversion per queue",
    `Customers called ${ukDay(period.from)} to ${ukDay(period.to)} who signed or sent documents within ${report.conversion_days} days (%).`,
    {
      type: "bar",
      data: {
        labels: queues.map((q) => label(QUEUE_LABELS, q.queue)),
        datasets: [
          { label: "Conversion, %", data: queues.map((q) => pct(q.conversion_rate)), backgroundColor: COLOURS.today },
          { label: "Contact rate, %", data: queues.map((q) => pct(q.contact_rate)), backgroundColor: COLOURS.todayContacts },
        ],
      },
      options: { scales: { y: { beginAtZero: true, max: 100, title: { display: true, text: "%" } } } },
    },
    table(
      "Conversion per queue",
      ["Queue", "Attempts", "Contact rate", "Customers called", "Signatures", "Documents", "Conversion"],
      queues.map((q) => [
        label(QUEUE_LABELS, q.queue),
        q.attempts,
        percent(q.contact_rate),
        q.customers_called,
        q.signatures,
        q.documents,
        percent(q.conversion_rate),
      ]),
    ),
  );
}

function messaging(report) {
  const kpi = (text, value) => h("li", { class: "kpi" }, h("span", { class: "kpi-label" }, text), h("span", { class: "kpi-value" }, value));
  fill(
    $("#messaging"),
    kpi("Texts sent", report.texts_sent),
    kpi("Delivered", report.texts_delivered),
    kpi("Failed", report.texts_failed),
    kpi("STOPs", report.stops),
    kpi("Links sent", report.links_sent),
    kpi("Links opened", report.links_opened),
    kpi("Links completed", report.links_completed),
  );
}

function refusals(report) {
  const rows = report.refusals.map((r) => h("tr", {}, h("td", {}, r.path), h("td", {}, r.reason.replaceAll("_", " ")), h("td", { class: "num" }, r.refused)));
  fill($("#refusals tbody"), rows.length ? rows : h("tr", {}, h("td", { colspan: 3 }, "No dial refused in this period.")));
}

// --- the page ------------------------------------------------------------------------------------

async function load(p) {
  period = p;
  $("#from").value = p.from;
  $("#to").value = p.to;
  const error = $("#reports-error");
  error.hidden = true;
  for (const chart of charts.values()) chart.destroy();
  charts.clear();
  fill($("#charts"));
  fill($("#period-label"), p.from === p.to ? ukDay(p.from) : `${ukDay(p.from)} to ${ukDay(p.to)}`);
  try {
    const [agents, queues, compliance, messages] = await Promise.all([
      api.get(`/reports/agents${query(p)}`),
      api.get(`/reports/queues${query(p)}`),
      api.get(`/reports/compliance${query(p)}`),
      api.get(`/reports/messaging${query(p)}`),
    ]);
    // One chart after another, in a fixed order on the page.
    await callsPerHour(p.to);
    await abandonedLast24h(p.to);
    await depthOverDay(p.to);
    agentTime(agents.agents);
    conversion(queues.report);
    messaging(messages.report);
    refusals(compliance.report);
    $("#main").dataset.loaded = `${p.from}/${p.to}`;
  } catch (e) {
    error.hidden = false;
    fill(error, errorText(e));
  }
}

async function downloadCsv(report, button) {
  button.setAttribute("aria-busy", "true");
  try {
    const { blob, filename } = await api.download(`/reports/${report}${query(period, { format: "csv" })}`);
    const link = h("a", { href: URL.createObjectURL(blob), download: filename, class: "visually-hidden" }, filename);
    document.body.append(link);
    link.click();
    setTimeout(() => {
      URL.revokeObjectURL(link.href);
      link.remove();
    }, 1000);
  } catch (e) {
    const error = $("#reports-error");
    error.hidden = false;
    fill(error, errorText(e));
  } finally {
    button.removeAttribute("aria-busy");
  }
}

start(async () => {
  const ready = await boot("reports:read");
  if (!ready) return;
  offsetMs = (ready.config.clock_offset_s || 0) * 1000;
  $("#period-form").addEventListener("submit", (event) => {
    event.preventDefault();
    load({ from: $("#from").value, to: $("#to").value || $("#from").value });
  });
  for (const button of document.querySelectorAll("[data-quick]")) {
    button.addEventListener("click", () => load(quick(button.dataset.quick)));
  }
  for (const button of document.querySelectorAll("[data-csv]")) {
    button.addEventListener("click", () => downloadCsv(button.dataset.csv, button));
  }
  const params = new URLSearchParams(location.search);
  await load(params.get("from") ? { from: params.get("from"), to: params.get("to") || params.get("from") } : quick("today"));
});
