// The REST client of every screen: sign-in, silent token refresh, one error shape.
//
// Tokens live in memory and in sessionStorage (per tab, gone when the tab closes; never localStorage,
// never a cookie — except, for supervisors and admins, an HttpOnly copy of the access token scoped to
// /codec, for the Temporal UI's codec requests). The access token is refreshed a minute before it expires; the server rotates the
// refresh token on every use. A 401 gets one refresh and one retry; if that fails the tab goes back
// to the sign-in page.
//
// A tab opened from another (or duplicated) starts with a copy of the same sign-in. Rotation makes a
// refresh token single-use and the server ends the whole sign-in when a used one comes back, so tabs
// sharing a sign-in refresh one at a time (a Web Lock) and hand the new pair to each other
// (BroadcastChannel): whichever tab refreshes first, the others adopt its tokens instead of
// presenting the retired one.

const STORE = "rmc.session";
const NOTICE = "rmc.notice";
const REFRESH_MARGIN_MS = 60_000;
const MIN_DELAY_MS = 5_000;
export const API = "/api/v1";

export class ApiError extends Error {
  constructor(status, code, message, details = null) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details;
  }
}

let session = load();
if (session && session.accessExp > Date.now()) shareWithCodec(session.access);
let refreshing = null;
let timer = null;
const channel = "BroadcastChannel" in window ? new BroadcastChannel("rmc.auth") : null;
let otherTab = null; // {previous, done: Promise, settle} while another tab refreshes our sign-in

if (channel) {
  channel.onmessage = ({ data }) => {
    if (!data || !session || data.previous !== session.refresh) return;
    if (data.type === "refreshing" && !otherTab) {
      let settle;
      const done = new Promise((resolve) => {
        settle = resolve;
      });
      otherTab = { previous: data.previous, done, settle };
      return;
    }
    if (data.type === "rotated") {
      session = data.session;
      sessionStorage.setItem(STORE, JSON.stringify(session));
      schedule();
    }
    if ((data.type === "rotated" || data.type === "failed") && otherTab) {
      otherTab.settle();
      otherTab = null;
    }
  };
}

function exclusively(work) {
  return navigator.locks ? navigator.locks.request("rmc.auth.refresh", work) : work();
}

function load() {
  try {
    const raw = JSON.parse(sessionStorage.getItem(STORE) || "null");
    return raw && raw.refresh && raw.refreshExp > Date.now() ? raw : null;
  } catch {
    return null;
  }
}

function store(tokens) {
  const now = Date.now();
  session = {
    access: tokens.access_token,
    accessExp: now + tokens.expires_in * 1000,
    refresh: tokens.refresh_token,
    refreshExp: now + tokens.refresh_expires_in * 1000,
  };
  sessionStorage.setItem(STORE, JSON.stringify(session));
  schedule();
  shareWithCodec(session.access);
}

/** Supervisors and admins: the Temporal UI's codec requests carry this sign-in (an HttpOnly cookie
 * for /codec only, renewed with each token; api/routes/codec.py), so that UI shows payloads decoded. */
function shareWithCodec(access) {
  let role = null;
  try {
    role = JSON.parse(atob(access.split(".")[1].replace(/-/g, "+").replace(/_/g, "/"))).role;
  } catch {
    return;
  }
  if (role !== "supervisor" && role !== "admin") return;
  // keepalive: the sign-in page moves on to the screen at once; the request must outlive it.
  fetch("/codec/session", {
    method: "POST",
    headers: { Authorization: `Bearer ${access}` },
    cache: "no-store",
    keepalive: true,
  }).catch(() => {});
}

function forget() {
  session = null;
  clearTimeout(timer);
  sessionStorage.removeItem(STORE);
}

function schedule() {
  clearTimeout(timer);
  if (!session) return;
  const delay = Math.max(MIN_DELAY_MS, session.accessExp - Date.now() - REFRESH_MARGIN_MS);
  timer = setTimeout(() => refresh().catch(() => {}), delay);
}

// Background tabs throttle timers: catch up as soon as the tab is seen again.
document.addEventListener("visibilitychange", () => {
  if (document.visibilityState === "visible" && session && session.accessExp - Date.now() < REFRESH_MARGIN_MS) {
    refresh().catch(() => {});
  }
});

async function errorOf(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    /* not JSON: a proxy's page */
  }
  const e = body && body.error;
  return new ApiError(
    response.status,
    e ? e.code : "http_" + response.status,
    e ? e.message : `The server answered ${response.status}.`,
    e ? e.details : null,
  );
}

export function signedIn() {
  return session !== null;
}

export async function signIn(email, password) {
  const response = await fetch(`${API}/auth/login`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ email, password }),
    cache: "no-store",
  });
  if (!response.ok) throw await errorOf(response);
  store(await response.json());
}

/** One refresh at a time (across this browser's tabs); every caller waiting gets the same result. */
export function refresh() {
  if (!session) return Promise.reject(new ApiError(401, "unauthorized", "Not signed in."));
  if (!refreshing) {
    const before = session.refresh;
    refreshing = exclusively(async () => {
      if (!session) throw new ApiError(401, "unauthorized", "Not signed in.");
      if (session.refresh !== before) return; // another tab rotated our shared sign-in meanwhile
      if (otherTab && otherTab.previous === before) {
        // It announced its refresh before taking the lock we now hold: its result is on the way.
        await Promise.race([otherTab.done, new Promise((resolve) => setTimeout(resolve, 5000))]);
        if (session && session.refresh !== before) return;
      }
      if (channel) channel.postMessage({ type: "refreshing", previous: before });
      let response;
      try {
        response = await fetch(`${API}/auth/refresh`, {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ refresh_token: before }),
          cache: "no-store",
        });
      } catch (error) {
        if (channel) channel.postMessage({ type: "failed", previous: before });
        throw error;
      }
      if (!response.ok) {
        if (channel) channel.postMessage({ type: "failed", previous: before });
        throw await errorOf(response);
      }
      store(await response.json());
      if (channel) channel.postMessage({ type: "rotated", previous: before, session });
    }).finally(() => {
      refreshing = null;
    });
  }
  return refreshing;
}

// Set by signOut: the page is on its way to the sign-in screen, and a poll that finds the sign-in gone
// meanwhile must not send it there again as "session ended elsewhere" (with ?next=).
let signingOut = false;

export function toSignIn(message) {
  if (signingOut) return;
  forget();
  if (message) sessionStorage.setItem(NOTICE, message);
  const next = location.pathname === "/" ? "" : `?next=${encodeURIComponent(location.pathname)}`;
  location.assign(`/${next}`);
}

export function takeNotice() {
  const notice = sessionStorage.getItem(NOTICE);
  sessionStorage.removeItem(NOTICE);
  return notice;
}

export async function signOut() {
  const token = session && session.refresh;
  signingOut = true;
  forget();
  if (token) {
    try {
      await fetch(`${API}/auth/logout`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ refresh_token: token }),
        cache: "no-store",
        keepalive: true,
      });
    } catch {
      /* signed out locally either way */
    }
  }
  location.assign("/");
}

async function send(path, { method = "GET", body, raw, rawType, etag, signal, keepalive = false } = {}) {
  if (!session) {
    toSignIn();
    throw new ApiError(401, "unauthorized", "Not signed in.");
  }
  if (session.accessExp - Date.now() < MIN_DELAY_MS) {
    await refresh().catch(() => {});
  }
  const attempt = () => {
    const headers = { Authorization: `Bearer ${session ? session.access : ""}` };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    // A file as it is (a TPS list): streamed by the server, never read into JSON here.
    if (raw !== undefined) headers["Content-Type"] = rawType || "application/octet-stream";
    if (etag) headers["If-None-Match"] = etag;
    return fetch(API + path, {
      method,
      headers,
      body: raw !== undefined ? raw : body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
      signal,
      keepalive, // a request that must outlive the page (sent from pagehide)
    });
  };
  let response = await attempt();
  if (response.status === 401) {
    try {
      await refresh();
    } catch {
      toSignIn("Your session has ended. Please sign in again.");
      throw new ApiError(401, "unauthorized", "Your session has ended.");
    }
    response = await attempt();
    if (response.status === 401) {
      toSignIn("Your session has ended. Please sign in again.");
      throw new ApiError(401, "unauthorized", "Your session has ended.");
    }
  }
  return response;
}

/** JSON of a successful answer (null for 204); throws ApiError otherwise. */
export async function call(path, options = {}) {
  const response = await send(path, options);
  if (!response.ok) throw await errorOf(response);
  return response.status === 204 ? null : response.json();
}

export const get = (path, options) => call(path, options);

/** A file from the API (e.g. a CSV export) as {blob, filename}; throws ApiError otherwise. */
export async function download(path) {
  const response = await send(path);
  if (!response.ok) throw await errorOf(response);
  const disposition = response.headers.get("Content-Disposition") || "";
  const match = /filename="([^"]+)"/.exec(disposition);
  return { blob: await response.blob(), filename: match ? match[1] : "export.csv" };
}
export const post = (path, body, options = {}) => call(path, { ...options, method: "POST", body });
export const put = (path, body, options = {}) => call(path, { ...options, method: "PUT", body });
export const patch = (path, body, options = {}) => call(path, { ...options, method: "PATCH", body });

/** A conditional GET: {changed: false} on 304, else {changed: true, data, etag}. */
export async function conditional(path, etag, options = {}) {
  const response = await send(path, { ...options, etag });
  if (response.status === 304) return { changed: false, etag };
  if (!response.ok) throw await errorOf(response);
  return { changed: true, data: await response.json(), etag: response.headers.get("ETag") };
}

/**
 * Polls `path` every `everyMs` with If-None-Match and calls `onData(data)` when it changed.
 * Pauses while the tab is hidden (resumes at once when seen). Returns {stop, now}.
 */
export function poll(path, everyMs, onData, onError = () => {}) {
  let etag = null;
  let handle = null;
  let stopped = false;
  let running = false;
  let again = false;
  const tick = async () => {
    clearTimeout(handle);
    if (stopped) return;
    if (document.visibilityState === "hidden") {
      handle = setTimeout(tick, everyMs);
      return;
    }
    if (running) {
      again = true; // asked for fresh data while a request was in flight: ask again after it
      return;
    }
    running = true;
    try {
      const result = await conditional(path, etag);
      if (result.changed) {
        etag = result.etag;
        onData(result.data);
      }
      onError(null);
    } catch (error) {
      if (!(error instanceof ApiError && error.status === 401)) onError(error);
    } finally {
      running = false;
      if (!stopped) handle = setTimeout(tick, again ? 0 : everyMs);
      again = false;
    }
  };
  const onVisible = () => {
    if (document.visibilityState === "visible") tick();
  };
  document.addEventListener("visibilitychange", onVisible);
  tick();
  return {
    stop() {
      stopped = true;
      clearTimeout(handle);
      document.removeEventListener("visibilitychange", onVisible);
    },
    now: tick,
    reset() {
      etag = null;
      tick();
    },
  };
}

if (session) schedule();
