// Texts to the customer on screen: magic links (sign, upload a pending document), a template or free
// text, and the conversation. Shown only when the server has the SMS routes (GET /ui/config lists
// them), so no screen ever probes a missing route.
//
// The thread is reloaded when the agent's live state says it changed (`sms` in GET /agents/me/live,
// polled with If-None-Match), not on a timer of its own.

import * as api from "./api.js";
import { $, announce, busy, fill, h, showError, ukTime, words } from "./ui.js";

const ROUTES = {
  thread: "GET /api/v1/sms/customers/{user_id}/messages",
  send: "POST /api/v1/sms/customers/{user_id}/messages",
  link: "POST /api/v1/sms/customers/{user_id}/magic-links",
  templates: "GET /api/v1/sms/templates",
};
const GSM = /^[\n\r A-Za-z0-9@£$¥èéùìòÇØøÅå_ÆæßÉ!"#%&'()*+,\-./:;<=>?¡ÄÖÑÜ§¿äöñüà^{}\\[~\]|€]*$/;

function segments(text) {
  if (!text) return { chars: 0, segments: 0, encoding: "GSM-7" };
  const gsm = GSM.test(text);
  const single = gsm ? 160 : 70;
  const multi = gsm ? 153 : 67;
  const chars = [...text].length;
  return { chars, segments: chars <= single ? 1 : Math.ceil(chars / multi), encoding: gsm ? "GSM-7" : "Unicode" };
}

export function setupSms({ config, card, body }) {
  const has = Object.fromEntries(Object.entries(ROUTES).map(([k, r]) => [k, config.sms_routes.includes(r)]));
  card.hidden = true;
  if (!has.thread && !has.send && !has.link) return null;

  let customer = null;
  let templates = null;
  let version;
  const base = () => `/sms/customers/${customer.user_id}`;

  const error = h("p", { class: "error", role: "alert", id: "sms-error", hidden: true });

  async function loadThread() {
    if (!customer || !has.thread) return;
    const forUser = customer.user_id;
    try {
      const thread = await api.get(`${base()}/messages?limit=50`);
      if (!customer || customer.user_id !== forUser) return;
      renderThread(thread);
    } catch (e) {
      showError(error, e);
    }
  }

  function renderThread(thread) {
    const box = $("#sms-thread", card);
    if (!box) return;
    const opted = thread.conversation && thread.conversation.opted_out;
    $("#sms-opted-out", card).hidden = !opted;
    fill(
      box,
      thread.items.length
        ? thread.items.map((m) =>
            h(
              "li",
              { class: `sms sms-${m.direction}` },
              h("span", { class: "sms-body" }, m.body),
              h("span", { class: "hint" }, `${m.direction === "inbound" ? "Customer" : "Sent"} · ${ukTime(m.created_at)} · ${words(m.status)}`),
            ),
          )
        : h("li", { class: "empty" }, "No texts with this customer yet."),
    );
    box.scrollTop = box.scrollHeight;
  }

  async function send(button, payload, what) {
    showError(error, null);
    await busy(button, async () => {
      try {
        await api.post(`${base()}/messages`, payload);
        announce(`${what} sent`, { toast: true, tone: "ok" });
        const text = $("#sms-text", card);
        if (text && payload.text) {
          text.value = "";
          text.dispatchEvent(new Event("input"));
        }
        setTimeout(loadThread, 800);
      } catch (e) {
        showError(error, e);
      }
    });
  }

  async function link(button, payload, what) {
    showError(error, null);
    await busy(button, async () => {
      try {
        await api.post(`${base()}/magic-links`, payload);
        announce(`${what} sent by text`, { toast: true, tone: "ok" });
        setTimeout(loadThread, 1500);
      } catch (e) {
        showError(error, e);
      }
    });
  }

  function linkButtons() {
    if (!has.link) return null;
    const buttons = [];
    if (!customer.signed) {
      buttons.push(
        h("button", { type: "button", class: "small", id: "send-sign-link", onclick: (e) => link(e.currentTarget, { purpose: "sign" }, "Signing link") }, "Send signing link"),
      );
    }
    // Each button names its claim (lender and requirement): two claims can both need a questionnaire.
    const lenders = new Map(customer.claims.map((c) => [c.id, c.lender]));
    for (const r of customer.pending_requirements) {
      const what = `${lenders.get(r.claim_id) || "claim"}: ${words(r.type)}`;
      buttons.push(
        h(
          "button",
          {
            type: "button",
            class: "small",
            "data-requirement-id": String(r.id),
            onclick: (e) => link(e.currentTarget, { purpose: "upload", requirement_id: r.id }, `Upload link (${what})`),
          },
          `Upload link · ${what}`,
        ),
      );
    }
    if (!buttons.length) return null;
    return h("div", { class: "sms-links" }, h("h3", {}, "Magic links"), h("div", { class: "button-row" }, buttons));
  }

  function composer() {
    if (!has.send) return null;
    const text = h("textarea", { id: "sms-text", rows: "2", maxlength: "918", "aria-describedby": "sms-count" });
    const count = h("span", { class: "hint", id: "sms-count" }, "0 characters");
    text.addEventListener("input", () => {
      const s = segments(text.value);
      count.textContent = `${s.chars} characters · ${s.segments} text${s.segments === 1 ? "" : "s"} · ${s.encoding}`;
    });
    const sendText = h("button", { type: "button", class: "small primary", id: "sms-send" }, "Send text");
    sendText.addEventListener("click", () => {
      const value = text.value.trim();
      if (!value) {
        showError(error, new Error("Write the text first."));
        text.focus();
        return;
      }
      send(sendText, { text: value }, "Text");
    });
    const templatePicker = h("select", { id: "sms-template" });
    const sendTemplate = h("button", { type: "button", class: "small", id: "sms-send-template" }, "Send");
    sendTemplate.addEventListener("click", () => {
      if (templatePicker.value) send(sendTemplate, { template: templatePicker.value }, "Text");
    });
    const templateRow = h(
      "div",
      { class: "sms-template-row", id: "sms-template-row", hidden: true },
      h("label", { for: "sms-template" }, "Template"),
      templatePicker,
      sendTemplate,
    );
    if (has.templates) {
      (templates ? Promise.resolve(templates) : api.get("/sms/templates"))
        .then((list) => {
          templates = list;
          if (!list.length) return;
          fill(templatePicker, list.map((t) => h("option", { value: t.name, title: t.text }, words(t.name))));
          templateRow.hidden = false;
        })
        .catch(() => {});
    }
    return h(
      "div",
      { class: "sms-compose" },
      templateRow,
      h("div", { class: "field" }, h("label", { for: "sms-text" }, "Text message"), text),
      h("div", { class: "button-row sms-send-row" }, sendText, count),
    );
  }

  return {
    show(next) {
      customer = next;
      version = undefined; // not compared yet: show() loads the thread itself
      card.hidden = !customer;
      if (!customer) {
        fill(body);
        return;
      }
      fill(
        body,
        h("p", { class: "notice", id: "sms-opted-out", hidden: true }, "This customer opted out of texts (STOP)."),
        linkButtons(),
        // The composer above the thread: at 1366x768 it stays on screen while the thread scrolls in its box.
        composer(),
        error,
        has.thread ? h("ul", { class: "sms-thread", id: "sms-thread", "aria-label": "Text conversation", tabindex: "0" }) : null,
      );
      loadThread();
    },
    /** The `sms` part of the live state: reload the thread when it changed. */
    sync(state) {
      if (!customer) return;
      const next = state ? `${state.conversation_id}:${state.messages}:${state.changed_at}:${state.unread_count}` : null;
      if (version === undefined) {
        version = next;
      } else if (next !== version) {
        version = next;
        loadThread();
      }
    },
  };
}
