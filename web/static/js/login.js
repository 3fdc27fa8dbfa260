// The sign-in page: exchanges email and password for tokens, then opens the agent's screen.

import * as api from "./api.js";
import { $, busy, errorText, homeOf } from "./ui.js";

const SCREENS = ["/agent", "/supervisor", "/compliance", "/admin"];

function destination(me) {
  const next = new URLSearchParams(location.search).get("next");
  return SCREENS.includes(next) ? next : homeOf(me);
}

async function goOn() {
  const me = await api.get("/auth/me");
  location.replace(destination(me));
}

function showError(message) {
  const el = $("#login-error");
  el.hidden = !message;
  el.textContent = message || "";
}

async function submit(event) {
  event.preventDefault();
  const email = $("#email").value.trim();
  const password = $("#password").value;
  if (!email || !password) {
    showError("Enter your email and password.");
    (email ? $("#password") : $("#email")).focus();
    return;
  }
  showError(null);
  await busy($("#sign-in"), async () => {
    try {
      await api.signIn(email, password);
      await goOn();
    } catch (error) {
      const message =
        error instanceof api.ApiError && error.status === 401
          ? "That email and password do not match an active account."
          : error instanceof api.ApiError && error.status === 429
            ? "Too many attempts. Wait a few minutes and try again."
            : errorText(error);
      showError(message);
      $("#password").select();
    }
  });
}

function main() {
  const notice = api.takeNotice();
  if (notice) {
    $("#login-notice").hidden = false;
    $("#login-notice").textContent = notice;
  }
  $("#login-form").addEventListener("submit", submit);
  if (api.signedIn()) goOn().catch(() => {});
}

main();
