// The compliance officer's desk: the review queue (filter, acknowledge, resolve), a customer's
// recordings (played through a short-lived signed link: the <audio> element cannot send the bearer
// token, and the browser never sees a Twilio URL), the do-not-call list and the TPS/CTPS upload.
// Supervisors see the same page; the actions their role lacks are refused by the API and hidden here.

import * as api from "./api.js";
import { $, boot, busy, duration, fill, h, showError, start, ukTime, words } from "./ui.js";

let me = null;
const can = (permission) => me && me.permissions.includes(permission);
// The compliance users an item can be assigned to (the API refuses anyone else), loaded once.
let assignees = [];

// --- review queue ---------------------------------------------------------------------------------

function reviewQuery() {
  const params = new URLSearchParams();
  const kind = $("#review-kind").value;
  const status = $("#review-status").value;
  if (kind) params.set("kind", kind);
  if (status) params.set("status", status);
  if ($("#review-due-soon").checked) params.set("due_soon", "true");
  return params.toString();
}

function reviewRow(item) {
  const due = item.final_response_due_at ? ukTime(item.final_response_due_at) : "—";
  const actions = [];
  if (can("reviews:manage") && item.status === "open") {
    actions.push(
      h("button", { type: "button", class: "small", onclick: (e) => busy(e.currentTarget, () => act(item.id, "acknowledge")) }, "Acknowledge"),
    );
  }
  if (can("reviews:manage") && item.status !== "closed") {
    actions.push(...assignControl(item));
    actions.push(h("button", { type: "button", class: "small", onclick: () => askResolution(item.id) }, "Resolve"));
    actions.push(h("button", { type: "button", class: "small", onclick: () => askClose(item) }, "Close customer"));
  }
  if (can("customer_flags:manage")) {
    actions.push(h("button", { type: "button", class: "small", onclick: () => askFlag(item.user_id, true) }, "Mark vulnerable"));
    actions.push(h("button", { type: "button", class: "small", onclick: () => askFlag(item.user_id, false) }, "Clear vulnerable"));
  }
  actions.push(
    h("button", { type: "button", class: "small", onclick: () => findRecordings(item.user_id) }, "Recordings"),
  );
  return h(
    "tr",
    { dataset: { reviewId: item.id, kind: item.kind }, class: item.final_response_overdue ? "overdue" : "" },
    h("td", {}, `#${item.id}`),
    h("td", {}, words(item.kind)),
    h("td", {}, String(item.user_id)),
    h("td", {}, ukTime(item.created_at)),
    h("td", {}, words(item.status)),
    h("td", {}, item.final_response_overdue ? `${due} (overdue)` : due),
    h("td", {}, item.notes || ""),
    h("td", {}, h("div", { class: "button-row" }, actions)),
  );
}

async function loadDeadlines() {
  // DISP 1.6: warn before a complaint's 8-week final-response deadline passes.
  try {
    const soon = await api.get("/compliance/reviews?kind=complaint&due_soon=true&limit=200");
    const late = soon.items.filter((i) => i.final_response_overdue).length;
    // Each one named, so the officer knows which to answer first.
    const named = soon.items.map(
      (i) =>
        `#${i.id} (customer ${i.user_id}) ` +
        (i.final_response_overdue ? `overdue since ${ukTime(i.final_response_due_at)}` : `due ${ukTime(i.final_response_due_at)}`),
    );
    const alert = $("#deadline-alert");
    alert.hidden = soon.items.length === 0;
    alert.textContent = soon.items.length
      ? `${soon.items.length} complaint(s) need a final response within 7 days` +
        (late ? `, ${late} already overdue` : "") +
        `: ${named.join("; ")}.`
      : "";
  } catch (error) {
    showError($("#reviews-error"), error);
  }
}

async function loadReviews() {
  loadDeadlines();
  try {
    const page = await api.get(`/compliance/reviews?${reviewQuery()}`);
    fill($("#review-rows"), page.items.length ? page.items.map(reviewRow) : h("tr", {}, h("td", { colspan: 8 }, "Nothing to review.")));
    showError($("#reviews-error"), null);
  } catch (error) {
    showError($("#reviews-error"), error);
  }
}

async function act(id, action, body) {
  try {
    await api.post(`/compliance/reviews/${id}/${action}`, body);
    await loadReviews();
  } catch (error) {
    showError($("#reviews-error"), error);
  }
}

function assignControl(item) {
  const picker = h(
    "select",
    { "aria-label": `Assign review #${item.id} to` },
    // Unassigned until someone is chosen: a name shown by default would read as an assignment.
    h("option", { value: "", selected: item.assignee_agent_id == null }, "Unassigned"),
    assignees.map((a) => h("option", { value: a.id, selected: a.id === item.assignee_agent_id }, a.display_name)),
  );
  const assign = (e) => {
    if (picker.value) busy(e.currentTarget, () => act(item.id, "assign", { assignee_agent_id: Number(picker.value) }));
  };
  return [picker, h("button", { type: "button", class: "small", disabled: !assignees.length, onclick: assign }, "Assign")];
}

async function loadAssignees() {
  try {
    const page = await api.get("/agents?role=compliance&active=true&limit=200");
    assignees = page.items;
  } catch (error) {
    showError($("#reviews-error"), error);
  }
}

function askResolution(id) {
  const form = $("#resolve-form");
  form.hidden = false;
  form.dataset.reviewId = String(id);
  $("#resolve-id").textContent = `#${id}`;
  $("#resolve-text").focus();
}

function askFlag(userId, vulnerable) {
  const form = $("#flag-form");
  form.hidden = false;
  form.dataset.userId = String(userId);
  form.dataset.vulnerable = vulnerable ? "1" : "0";
  $("#flag-action").textContent = vulnerable ? "Mark vulnerable:" : "Clear the vulnerable flag of";
  $("#flag-customer").textContent = String(userId);
  $("#flag-reason").focus();
}

function askClose(item) {
  const form = $("#close-form");
  form.hidden = false;
  form.dataset.reviewId = String(item.id);
  $("#close-customer").textContent = String(item.user_id);
  $("#close-reason").focus();
}

function askRemove(phone) {
  const form = $("#dnc-remove-form");
  form.hidden = false;
  form.dataset.phone = phone;
  $("#dnc-remove-number").textContent = phone;
  $("#dnc-remove-reason").focus();
}

// --- recordings -----------------------------------------------------------------------------------

async function findRecordings(userId) {
  $("#recordings-customer").value = String(userId);
  try {
    const list = await api.get(`/recordings?user_id=${encodeURIComponent(userId)}`);
    fill(
      $("#recording-rows"),
      list.items.length
        ? list.items.map((r) =>
            h(
              "tr",
              { dataset: { sid: r.sid } },
              h("td", {}, ukTime(r.created_at)),
              h("td", { class: "num" }, r.duration_s === null ? "—" : duration(r.duration_s)),
              h("td", {}, r.claim_ids.join(", ")),
              h(
                "td",
                {},
                r.media_url
                  ? h("button", { type: "button", class: "small", onclick: (e) => busy(e.currentTarget, () => play(r)) }, "Play")
                  : "deleted (retention)",
              ),
            ),
          )
        : h("tr", {}, h("td", { colspan: 4 }, "No recordings for this customer.")),
    );
    showError($("#recordings-error"), null);
  } catch (error) {
    showError($("#recordings-error"), error);
  }
}

async function play(recording) {
  try {
    // Issuing the link is the audited play; the player then asks for ranges through it as it seeks.
    const link = await api.post(`/recordings/${recording.sid}/play-link`);
    const player = $("#player");
    player.src = link.url;
    player.dataset.sid = recording.sid;
    $("#now-playing").textContent = `Recording of ${ukTime(recording.created_at)}`;
    await player.play().catch(() => {}); // autoplay may be refused: the controls are there
  } catch (error) {
    showError($("#recordings-error"), error);
  }
}

// --- do not call ----------------------------------------------------------------------------------

async function loadDnc() {
  const find = $("#dnc-find").value.trim();
  try {
    const page = await api.get(`/compliance/do-not-call${find ? `?number=${encodeURIComponent(find)}` : ""}`);
    fill(
      $("#dnc-rows"),
      page.items.length
        ? page.items.map((e) =>
            h(
              "tr",
              { dataset: { phone: e.phone_e164 } },
              h("td", {}, e.phone_e164),
              h("td", {}, e.source),
              h("td", {}, e.reason || ""),
              h("td", {}, ukTime(e.created_at)),
              h("td", {}, h("button", { type: "button", class: "small", onclick: () => askRemove(e.phone_e164) }, "Remove")),
            ),
          )
        : h("tr", {}, h("td", { colspan: 5 }, "No numbers.")),
    );
    showError($("#dnc-error"), null);
  } catch (error) {
    showError($("#dnc-error"), error);
  }
}

async function main() {
  const booted = await boot("reviews:read");
  if (!booted) return;
  me = booted.me;
  for (const id of ["#review-kind", "#review-status", "#review-due-soon"]) $(id).addEventListener("change", loadReviews);
  $("#resolve-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const form = event.currentTarget;
    busy(form.querySelector("button"), async () => {
      await act(form.dataset.reviewId, "resolve", { resolution: $("#resolve-text").value });
      form.hidden = true;
      $("#resolve-text").value = "";
    });
  });
  $("#flag-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const form = event.currentTarget;
    busy(form.querySelector("button"), async () => {
      try {
        const flag = await api.put(`/compliance/customers/${form.dataset.userId}/vulnerable`, {
          vulnerable: form.dataset.vulnerable === "1",
          reason: $("#flag-reason").value,
        });
        form.hidden = true;
        $("#flag-reason").value = "";
        $("#tps-result").textContent = `Customer ${flag.user_id}: ${flag.vulnerable ? "vulnerable, trained agents only" : "vulnerable flag cleared"}.`;
      } catch (error) {
        showError($("#reviews-error"), error);
      }
    });
  });
  $("#close-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const form = event.currentTarget;
    busy(form.querySelector("button"), async () => {
      try {
        const closed = await api.post(`/compliance/reviews/${form.dataset.reviewId}/close-customer`, {
          reason: $("#close-reason").value,
        });
        form.hidden = true;
        $("#close-reason").value = "";
        $("#tps-result").textContent = `${closed.entry.phone_e164} listed (${closed.entry.source}); ${closed.customers_replaced} customer(s) left the queues.`;
        await loadDnc();
      } catch (error) {
        showError($("#reviews-error"), error);
      }
    });
  });
  $("#dnc-remove-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const form = event.currentTarget;
    busy(form.querySelector("button"), async () => {
      try {
        const removed = await api.post("/compliance/do-not-call/remove", {
          phone: form.dataset.phone,
          reason: $("#dnc-remove-reason").value,
        });
        form.hidden = true;
        $("#dnc-remove-reason").value = "";
        showError($("#dnc-error"), null);
        $("#tps-result").textContent = `${removed.entry.phone_e164} removed; ${removed.customers_replaced} customer(s) placed again.`;
        await loadDnc();
      } catch (error) {
        showError($("#dnc-error"), error);
      }
    });
  });
  $("#recordings-form").addEventListener("submit", (event) => {
    event.preventDefault();
    findRecordings($("#recordings-customer").value.trim());
  });
  $("#dnc-search").addEventListener("submit", (event) => {
    event.preventDefault();
    loadDnc();
  });
  $("#dnc-add").addEventListener("submit", (event) => {
    event.preventDefault();
    busy(event.currentTarget.querySelector("button[type=submit]"), async () => {
      try {
        const added = await api.post("/compliance/do-not-call", {
          phone: $("#dnc-number").value,
          reason: $("#dnc-reason").value,
          source: $("#dnc-source").value,
        });
        $("#dnc-number").value = "";
        $("#dnc-reason").value = "";
        $("#dnc-find").value = "";
        showError($("#dnc-error"), null);
        await loadDnc();
        $("#tps-result").textContent = added.changed
          ? `Listed; ${added.customers_replaced} customer(s) left the queues.`
          : "That number was already listed.";
      } catch (error) {
        showError($("#dnc-error"), error);
      }
    });
  });
  $("#tps-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const file = $("#tps-file").files[0];
    if (!file) return;
    busy(event.currentTarget.querySelector("button"), async () => {
      try {
        const result = await api.call("/compliance/do-not-call/tps", { method: "POST", raw: file, rawType: "text/csv" });
        const bad = result.invalid.map((i) => i.line).join(", ");
        $("#tps-result").textContent =
          `${result.loaded} numbers listed, ${result.already_listed} already listed, ${result.invalid_count} invalid` +
          (bad ? ` (lines ${bad})` : "") +
          `; ${result.customers_replaced} customer(s) left the queues.`;
        await loadDnc();
      } catch (error) {
        showError($("#dnc-error"), error);
      }
    });
  });
  if (can("reviews:manage")) await loadAssignees();
  await Promise.all([loadReviews(), loadDnc()]);
}

start(main);
