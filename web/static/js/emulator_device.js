// The browser phone against the local Twilio emulator (development only): the part of the Twilio
// Voice JS SDK's Device and Call that voice.js uses, over the emulator's device API
// (devstack/twilio_emulator/device_api.py) instead of Twilio's signalling socket and WebRTC. voice.js
// runs the same flow on either; /ui/config names the emulator only outside production.
//
// Device(token, options): register() / unregister() / destroy() / updateToken(token) / state;
// events "registered", "unregistered", "incoming" (Call), "error" (TwilioError-like {code, message}),
// "tokenWillExpire" (options.tokenRefreshMs before the token's exp), "destroyed".
// Call: parameters, customParameters, status(), accept(), reject(), disconnect(), mute(bool),
// isMuted(); events "accept", "reject", "cancel", "disconnect", "mute", "error".
// No audio flows: the emulator has none; its timeline records when the agent came on the line.

const RETRY_MS = 1000;

class Emitter {
  constructor() {
    this._listeners = new Map();
  }

  on(event, listener) {
    if (!this._listeners.has(event)) this._listeners.set(event, new Set());
    this._listeners.get(event).add(listener);
    return this;
  }

  off(event, listener) {
    this._listeners.get(event)?.delete(listener);
    return this;
  }

  emit(event, ...args) {
    for (const listener of [...(this._listeners.get(event) || [])]) {
      try {
        listener(...args);
      } catch (error) {
        console.error(error); // a listener's bug must not stop the phone
      }
    }
  }
}

function phoneError(code, message) {
  const error = new Error(message);
  error.code = code;
  error.description = message;
  return error;
}

function expiryMs(token) {
  try {
    const payload = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(payload)).exp * 1000;
  } catch {
    return null;
  }
}

export class Call extends Emitter {
  constructor(device, callSid, parameters) {
    super();
    this._device = device;
    this._status = "pending";
    this._muted = false;
    this.parameters = { ...parameters, CallSid: callSid };
    this.customParameters = new Map();
  }

  get sid() {
    return this.parameters.CallSid;
  }

  status() {
    return this._status;
  }

  isMuted() {
    return this._muted;
  }

  async accept() {
    if (this._status !== "pending") return;
    this._status = "connecting";
    try {
      await this._device._send("POST", `/calls/${this.sid}/accept`);
      this._status = "open";
      this.emit("accept", this);
    } catch (error) {
      this._close();
      this.emit("error", error);
    }
  }

  reject() {
    if (this._status !== "pending") return;
    this._close();
    this.emit("reject");
    this._device._send("POST", `/calls/${this.sid}/reject`).catch(() => {}); // already gone: nothing to refuse
  }

  /** Returns when the emulator has it (Twilio's returns nothing; voice.js waits on either). */
  disconnect() {
    if (this._status === "closed") return Promise.resolve();
    const wasPending = this._status === "pending";
    this._close();
    const sent = this._device._send("POST", `/calls/${this.sid}/${wasPending ? "reject" : "disconnect"}`).catch(() => {});
    this.emit("disconnect", this);
    return sent;
  }

  mute(shouldMute = true) {
    if (this._muted === Boolean(shouldMute) || this._status === "closed") return;
    this._muted = Boolean(shouldMute);
    this._device._send("POST", `/calls/${this.sid}/mute`, { muted: this._muted }).catch(() => {});
    this.emit("mute", this._muted, this);
  }

  // From the emulator: the far end ended it while it rang (cancel) or after it was answered.
  _remote(type) {
    if (this._status === "closed") return;
    const ringing = this._status === "pending";
    this._close();
    if (type === "cancel" || ringing) this.emit("cancel");
    else this.emit("disconnect", this);
  }

  _close() {
    this._status = "closed";
    this._device._calls.delete(this.sid);
  }
}

export class Device extends Emitter {
  constructor(token, options = {}) {
    super();
    if (!options.emulatorUrl) throw new Error("emulatorUrl is required");
    this._base = `${options.emulatorUrl.replace(/\/$/, "")}/device/v1`;
    this._token = token;
    this._refreshMs = options.tokenRefreshMs ?? 10_000;
    this._deviceId = null;
    this._after = 0;
    this._polling = null;
    this._abort = null;
    this._expiryTimer = null;
    this._calls = new Map();
    this.state = "unregistered";
    this._scheduleExpiry();
  }

  get calls() {
    return [...this._calls.values()];
  }

  get token() {
    return this._token;
  }

  updateToken(token) {
    this._token = token;
    this._scheduleExpiry();
  }

  async register() {
    this.state = "registering";
    let answer;
    try {
      answer = await this._send("POST", "/registrations");
    } catch (error) {
      this.state = "unregistered";
      throw error;
    }
    this._deviceId = answer.device_id;
    this._after = 0;
    this.state = "registered";
    this.emit("registered");
    this._polling = this._poll(this._deviceId);
  }

  async unregister() {
    const id = this._deviceId;
    this._stop();
    if (id) await this._send("DELETE", `/registrations/${id}`, undefined, { keepalive: true }).catch(() => {});
    this._unregistered();
  }

  destroy() {
    for (const call of this.calls) call.disconnect();
    const id = this._deviceId;
    this._stop();
    clearTimeout(this._expiryTimer);
    // keepalive: also sent while the page is being closed (the emulator then stops ringing it at once).
    if (id) this._send("DELETE", `/registrations/${id}`, undefined, { keepalive: true }).catch(() => {});
    this._unregistered();
    this.state = "destroyed";
    this.emit("destroyed");
  }

  _stop() {
    this._deviceId = null;
    if (this._abort) this._abort.abort();
  }

  _unregistered() {
    if (this.state === "registered") {
      this.state = "unregistered";
      this.emit("unregistered");
    }
  }

  _lost() {
    this.state = "unregistered";
    this.emit("unregistered");
  }

  _scheduleExpiry() {
    clearTimeout(this._expiryTimer);
    const exp = expiryMs(this._token);
    if (exp === null) return;
    this._expiryTimer = setTimeout(() => this.emit("tokenWillExpire", this), Math.max(0, exp - Date.now() - this._refreshMs));
  }

  async _send(method, path, body, { keepalive = false, signal } = {}) {
    const headers = { Authorization: `Bearer ${this._token}` };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(this._base + path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
      keepalive,
      signal,
    });
    if (response.status === 204) return null;
    const data = await response.json().catch(() => ({}));
    if (!response.ok) throw phoneError(data.code || 31000, data.message || `The phone service answered ${response.status}.`);
    return data;
  }

  // The long poll is both the event channel and the heartbeat: while it runs, this browser is there.
  async _poll(id) {
    while (this._deviceId === id) {
      this._abort = new AbortController();
      try {
        const answer = await this._send("GET", `/registrations/${id}/events?after=${this._after}`, undefined, {
          signal: this._abort.signal,
        });
        for (const event of answer.events) {
          this._after = Math.max(this._after, event.seq);
          this._event(event);
        }
        if (!answer.registered && answer.reason === "unknown" && this._deviceId === id) {
          // The emulator forgot this registration (restarted or reset): register again, as the SDK
          // reconnects to Twilio on its own.
          this._deviceId = null;
          this.register().catch((failed) => {
            this._lost();
            this.emit("error", failed);
          });
          return;
        }
        if (!answer.registered) {
          this._deviceId = null;
          this._unregistered(); // replaced by a newer registration of this agent (another tab)
          return;
        }
      } catch (error) {
        if (this._deviceId !== id) return; // stopped on purpose
        if (error.code === 20104 || error.code === 20101) {
          this._deviceId = null;
          this._unregistered();
          this.emit("error", error);
          return;
        }
        await new Promise((resolve) => setTimeout(resolve, RETRY_MS)); // the network blinked: try again
      }
    }
  }

  _event(event) {
    if (event.type === "incoming") {
      const call = new Call(this, event.call_sid, event.parameters || {});
      this._calls.set(call.sid, call);
      this.emit("incoming", call);
    } else if (event.type === "cancel" || event.type === "disconnect") {
      this._calls.get(event.call_sid)?._remote(event.type);
    } else if (event.type === "unregistered") {
      this._deviceId = null;
      this._unregistered();
    }
  }
}
