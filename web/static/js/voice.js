// The agent's browser phone in `twilio` mode: the Twilio Voice JS SDK (vendored, loaded only here)
// against Twilio, or, in development against the local Twilio emulator, emulator_device.js (the same
// Device/Call interface over the emulator's device API). One flow either way.
//
// How a call flows: the agent presses Call -> the API asks the call session to dial -> Twilio rings
// the customer -> on answer our TwiML bridges the customer to this browser (<Client>agent_<id>) ->
// the Device receives that call and, because the agent asked for it, accepts it. Hang up
// disconnects here and tells the session. The access token is renewed before it expires
// (tokenWillExpire); while registered the browser reports itself ready every third of the heartbeat's
// life (config.device_ready_every_s: the queues' pacers dial only for agents whose phone is ready),
// and says it has gone when the page closes or the phone unregisters. A call the dialler placed for
// this agent (its caller id is ours; a customer ringing us back shows their own) is taken at once
// while the page says the agent takes placed calls: the customer must hear them within 2 seconds.

import * as api from "./api.js";
import { announce, fill, h } from "./ui.js";

const SDK = "/static/vendor/twilio-voice-sdk/twilio.min.js";
const READY_EVERY_MS_DEFAULT = 5_000;
const EXPECT_FOR_MS = 120_000;
const HANGUP_WAIT_MS = 1000;
const SETTLE_MS = 5000;
// How long a call nobody asked for rings here before it is refused, unless the page knows it for a
// customer ringing us back (the live view shows a returned call within a poll or two).
const UNASKED_GRACE_MS = 5000;

function loadSdk() {
  if (window.Twilio && window.Twilio.Device) return Promise.resolve(window.Twilio);
  return new Promise((resolve, reject) => {
    const script = document.createElement("script");
    script.src = SDK;
    script.onload = () => (window.Twilio && window.Twilio.Device ? resolve(window.Twilio) : reject(new Error("Twilio SDK did not load")));
    script.onerror = () => reject(new Error("The phone software could not be loaded."));
    document.head.append(script);
  });
}

/** The Device constructor for this server: Twilio's, or the emulator adapter's in development. */
async function deviceFactory(config) {
  if (config.phone_emulator_url) {
    const { Device } = await import("./emulator_device.js");
    return (token, options) => new Device(token, { ...options, emulatorUrl: config.phone_emulator_url });
  }
  const Twilio = await loadSdk();
  return (token, options) => new Twilio.Device(token, options);
}

export function setupVoice({
  status,
  mute,
  onError,
  config,
  isReturnedCall = () => false,
  takesPlacedCalls = () => false,
  onRinging = () => {},
}) {
  const readyEveryMs = config.device_ready_every_s ? config.device_ready_every_s * 1000 : READY_EVERY_MS_DEFAULT;
  let device = null;
  let current = null; // the active Twilio Call
  let ringing = null; // a call the agent did not ask for, held while the page decides (a returned call)
  let registered = false;
  let expecting = null; // {sessionId, until}
  let heartbeat = null;

  const show = (text, tone = "info") => {
    status.hidden = false;
    status.className = `device device-${tone}`;
    fill(status, h("span", { class: "device-dot", "aria-hidden": "true" }), " ", text);
  };

  const fail = (error) => {
    const code = error && error.code ? ` (code ${error.code})` : "";
    const text = (error && (error.description || error.message)) || "Unknown phone error";
    show(`Phone problem: ${text}${code}`, "error");
    onError(new Error(`Phone problem: ${text}${code}`));
  };

  const setMute = () => {
    const muted = Boolean(current && current.isMuted());
    mute.setAttribute("aria-pressed", String(muted));
    mute.textContent = muted ? "Unmute" : "Mute";
    mute.disabled = !current;
  };

  mute.hidden = false;
  mute.addEventListener("click", () => {
    if (!current) return;
    current.mute(!current.isMuted());
    setMute();
    announce(current.isMuted() ? "Microphone muted" : "Microphone on");
  });

  async function token() {
    const answer = await api.get("/voice/token");
    return answer.token;
  }

  async function connect() {
    show("Connecting your phone…");
    try {
      const makeDevice = await deviceFactory(config);
      device = makeDevice(await token(), {
        closeProtection: "A call is in progress: leaving will end it.",
        codecPreferences: ["opus", "pcmu"],
        tokenRefreshMs: 60_000,
      });
      device.on("registered", () => {
        registered = true;
        show("Phone ready", "ok");
        ready();
        clearInterval(heartbeat);
        heartbeat = setInterval(ready, readyEveryMs);
      });
      device.on("unregistered", () => {
        registered = false;
        clearInterval(heartbeat); // the readiness lapses with the last heartbeat, in seconds (another tab may hold it)
        show("Phone offline", "warn");
      });
      device.on("error", fail);
      device.on("tokenWillExpire", async () => {
        try {
          device.updateToken(await token());
        } catch (error) {
          fail(error);
        }
      });
      device.on("incoming", incoming);
      await device.register();
    } catch (error) {
      fail(error);
    }
  }

  function ready() {
    api.post("/voice/device-ready").catch(() => {});
  }

  // keepalive: still sent while the page closes, so progressive mode stops counting on this browser
  // at once rather than when the last heartbeat runs out.
  function gone() {
    api.call("/voice/device-ready", { method: "DELETE", keepalive: true }).catch(() => {});
  }

  window.addEventListener("pagehide", () => {
    if (!device) return;
    gone();
    device.destroy();
  });

  function incoming(call) {
    if (expecting && Date.now() <= expecting.until) {
      take(call);
      return;
    }
    const placed = config.caller_id && call.parameters && call.parameters.From === config.caller_id;
    if (placed && !current && takesPlacedCalls()) {
      take(call); // a customer the dialler rang for this agent has answered: put through at once
      return;
    }
    // Not asked for: a customer ringing us back is answered by the agent (the screen-pop is on the
    // page); anything else is refused once the page has had a moment to learn of a returned call.
    ringing = call;
    show("Incoming call", "warn");
    const gone = () => {
      if (ringing === call) ringing = null;
      onRinging();
    };
    call.on("cancel", gone);
    call.on("disconnect", gone);
    call.on("reject", gone);
    setTimeout(() => {
      if (ringing === call && !isReturnedCall()) {
        ringing = null;
        call.reject();
        show(registered ? "Phone ready" : "Phone offline", registered ? "ok" : "warn");
      }
      onRinging();
    }, UNASKED_GRACE_MS);
    onRinging();
  }

  function take(call) {
    current = call;
    call.on("accept", () => {
      show("On the phone", "ok");
      setMute();
    });
    call.on("disconnect", () => {
      current = null;
      setMute();
      show(registered ? "Phone ready" : "Phone offline", registered ? "ok" : "warn");
    });
    call.on("cancel", () => {
      current = null;
      setMute();
    });
    call.on("error", fail);
    call.on("warning", (name) => show(`Call quality warning: ${name}`, "warn"));
    call.on("warning-cleared", () => show("On the phone", "ok"));
    call.accept();
  }

  connect();

  return {
    ready: () => registered,
    /** A call the agent did not ask for is ringing here (a returned call, to answer with a click). */
    ringing: () => ringing !== null,
    /** The agent answers the call ringing here. */
    answer() {
      if (!ringing) return;
      const call = ringing;
      ringing = null;
      take(call);
    },
    /** The agent asked for a call (sessionId, or null while the next customer is being taken). */
    expect(sessionId) {
      expecting = { sessionId, at: Date.now(), until: Date.now() + EXPECT_FOR_MS };
    },
    /** Hangs up this browser's leg; resolves once it has gone out (at most HANGUP_WAIT_MS), so that the
     * phone, not the session's hang-up of the whole call, ends the agent's side first. */
    hangup() {
      if (!current) return Promise.resolve();
      const sent = Promise.resolve(current.disconnect());
      return Promise.race([sent, new Promise((resolve) => setTimeout(resolve, HANGUP_WAIT_MS))]);
    },
    /** Follows the session: once it has ended, no audio may stay open. */
    sync(call) {
      // A live update requested before the agent asked may still say "no call": only a later one counts.
      const settling = !call && expecting && Date.now() - expecting.at <= SETTLE_MS;
      if (settling) return;
      if (call && call.progressive && call.state !== "closed" && (!expecting || expecting.sessionId !== call.session_id)) {
        this.expect(call.session_id);
      }
      if ((!call || !["dialing", "ringing", "in_progress"].includes(call.state)) && current) {
        current.disconnect();
      }
      if (!call) expecting = null;
      setMute();
    },
  };
}
