// Admin: agent accounts — list, create, edit (role, queues, vulnerable training, progressive mode),
// reset a password, disable and enable. Everything goes through /api/v1/agents (audited there).

import * as api from "./api.js";
import { $, QUEUE_LABELS, announce, boot, busy, fill, h, label, showError, start } from "./ui.js";

const PAGE = 50;
let me = null;
let offset = 0;
let editing = null; // the agent being edited, or null for a new one

function yesNo(value) {
  return value ? "Yes" : "No";
}

function row(agent) {
  const toggle = h(
    "button",
    { type: "button", class: `small ${agent.active ? "danger-outline" : ""}`, "aria-label": `${agent.active ? "Disable" : "Enable"} ${agent.display_name}` },
    agent.active ? "Disable" : "Enable",
  );
  toggle.addEventListener("click", () => setActive(agent, toggle));
  return h(
    "tr",
    { dataset: { agentId: String(agent.id) }, class: agent.active ? "" : "inactive" },
    h("th", { scope: "row" }, agent.display_name),
    h("td", {}, agent.email),
    h("td", { class: "role" }, agent.role),
    h("td", {}, agent.queues.map((q) => label(QUEUE_LABELS, q)).join(", ") || "—"),
    h("td", {}, yesNo(agent.trained_vulnerable)),
    h("td", {}, yesNo(agent.progressive_mode)),
    h("td", {}, h("span", { class: agent.active ? "tag tag-ok" : "tag" }, agent.active ? "Active" : "Disabled")),
    h(
      "td",
      { class: "actions" },
      h("button", { type: "button", class: "small", "aria-label": `Edit ${agent.display_name}`, onclick: () => openDialog(agent) }, "Edit"),
      agent.id === me.id ? null : [" ", toggle], // the server refuses disabling oneself
    ),
  );
}

async function load() {
  showError($("#list-error"), null);
  const active = $("#show-disabled").checked ? "" : "&active=true";
  try {
    const page = await api.get(`/agents?limit=${PAGE}&offset=${offset}${active}`);
    fill($("#agent-rows"), page.items.length ? page.items.map(row) : h("tr", {}, h("td", { colspan: "8", class: "empty" }, "No agents.")));
    const last = Math.min(page.total, offset + page.items.length);
    $("#page-info").textContent = page.total ? `${offset + 1}–${last} of ${page.total}` : "";
    $("#prev-page").disabled = offset === 0;
    $("#next-page").disabled = last >= page.total;
  } catch (error) {
    showError($("#list-error"), error);
  }
}

// Two clicks to disable: the first arms the button, the second (within 5 s) confirms.
async function setActive(agent, button) {
  if (agent.active && button.dataset.armed !== "yes") {
    button.dataset.armed = "yes";
    button.textContent = "Confirm disable";
    announce(`Press again to disable ${agent.display_name}. Their sign-ins end at once.`);
    setTimeout(() => {
      if (button.isConnected && button.dataset.armed === "yes") {
        button.dataset.armed = "";
        button.textContent = "Disable";
      }
    }, 5000);
    return;
  }
  await busy(button, async () => {
    try {
      await api.post(`/agents/${agent.id}/${agent.active ? "disable" : "enable"}`);
      announce(`${agent.display_name} ${agent.active ? "disabled" : "enabled"}.`, { toast: true, tone: "ok" });
      await load();
    } catch (error) {
      showError($("#list-error"), error);
    }
  });
}

function form() {
  return $("#agent-form");
}

function openDialog(agent = null) {
  editing = agent;
  const f = form();
  f.reset();
  showError($("#form-error"), null);
  $("#dialog-title").textContent = agent ? `Edit ${agent.display_name}` : "New agent";
  $("#password-label").textContent = agent ? "New password" : "Password";
  $("#password-help").textContent = agent ? "Leave empty to keep the current password. A new one ends their sign-ins." : "";
  $("#password-help").hidden = !agent;
  $("#f-password").required = !agent;
  if (agent) {
    $("#f-name").value = agent.display_name;
    $("#f-email").value = agent.email;
    $("#f-role").value = agent.role;
    $("#f-role").disabled = agent.id === me.id; // the server refuses an admin's own role change
    for (const box of f.querySelectorAll('input[name="queues"]')) box.checked = agent.queues.includes(box.value);
    $("#f-vulnerable").checked = agent.trained_vulnerable;
    $("#f-progressive").checked = agent.progressive_mode;
  } else {
    $("#f-role").disabled = false;
  }
  $("#agent-dialog").showModal();
  $("#f-name").focus();
}

function values() {
  const f = form();
  return {
    display_name: $("#f-name").value.trim(),
    email: $("#f-email").value.trim(),
    role: $("#f-role").value,
    queues: [...f.querySelectorAll('input[name="queues"]:checked')].map((b) => b.value),
    trained_vulnerable: $("#f-vulnerable").checked,
    progressive_mode: $("#f-progressive").checked,
  };
}

function detailText(error) {
  if (error instanceof api.ApiError && Array.isArray(error.details) && error.details.length) {
    const names = { display_name: "Name", email: "Email", password: "Password", new_password: "Password", queues: "Queues" };
    return error.details.map((d) => `${names[String(d.field).split(".").pop()] || d.field}: ${d.message}`).join(" ");
  }
  return null;
}

async function save(event) {
  event.preventDefault();
  const data = values();
  const password = $("#f-password").value;
  const problem = !data.display_name
    ? ["#f-name", "Enter a name."]
    : !data.email || !$("#f-email").checkValidity()
      ? ["#f-email", "Enter a valid email address."]
      : (!editing || password) && password.length < 12
        ? ["#f-password", "The password needs at least 12 characters."]
        : null;
  if (problem) {
    showError($("#form-error"), new Error(problem[1]));
    $(problem[0]).focus();
    return;
  }
  await busy($("#save-agent"), async () => {
    try {
      if (editing) {
        const changed = {};
        for (const [key, value] of Object.entries(data)) {
          if (JSON.stringify(value) !== JSON.stringify(editing[key])) changed[key] = value;
        }
        if (editing.id === me.id) delete changed.role;
        if (Object.keys(changed).length) await api.patch(`/agents/${editing.id}`, changed);
        if (password) await api.put(`/agents/${editing.id}/password`, { new_password: password });
        announce(`${data.display_name} saved.`, { toast: true, tone: "ok" });
      } else {
        await api.post("/agents", { ...data, password });
        announce(`${data.display_name} created.`, { toast: true, tone: "ok" });
      }
      $("#agent-dialog").close();
      await load();
    } catch (error) {
      const detail = detailText(error);
      showError($("#form-error"), detail ? new Error(detail) : error);
    }
  });
}

async function main() {
  const booted = await boot("agents:admin");
  if (!booted) return;
  me = booted.me;
  $("#new-agent").addEventListener("click", () => openDialog(null));
  $("#cancel-dialog").addEventListener("click", () => $("#agent-dialog").close());
  form().addEventListener("submit", save);
  $("#show-disabled").addEventListener("change", () => {
    offset = 0;
    load();
  });
  $("#prev-page").addEventListener("click", () => {
    offset = Math.max(0, offset - PAGE);
    load();
  });
  $("#next-page").addEventListener("click", () => {
    offset += PAGE;
    load();
  });
  await load();
}

start(main);
