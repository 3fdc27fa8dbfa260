"""The emulator's state and the life of each call, SMS and recording.

Everything lives in one asyncio event loop (uvicorn's) and in memory. Each call leg has one
**runner** task: it rings, answers (or not) as the far end's script says, executes TwiML, and on the
way out posts the final status callback. Hanging a leg up — the REST API, the customer's script, a
``<Hangup>``, the other party of a bridge — cancels its runner; the runner's clean-up then reports
the end exactly once. A redirect cancels only the TwiML being executed and starts on the new one.

Webhooks are posted per leg, in order, by a sender task (Twilio does not hold the call up while it
posts a status callback); TwiML fetches and ``<Dial action>`` requests are awaited because the call
needs their answer. Every webhook is signed as Twilio signs it: ``X-Twilio-Signature`` is
base64(HMAC-SHA1(auth token, URL + each POST parameter name and value, sorted by name)).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import logging
import math
import re
import secrets
import time
import xml.etree.ElementTree as ET
from collections import deque
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any, Final
from urllib.parse import urlencode, urljoin

import httpx

from devstack.twilio_emulator.devices import BrowserDevice, BrowserDevices
from devstack.twilio_emulator.scripts import Behaviour, DeviceAction, Scripts, SmsFate
from devstack.twilio_emulator.timeline import Timeline

log = logging.getLogger("twilio_emulator")

API_VERSION: Final = "2010-04-01"
E164: Final = re.compile(r"^\+[1-9]\d{6,14}$")
ENDED: Final = frozenset({"completed", "busy", "no-answer", "failed", "canceled"})
# Twilio's status callback events and the CallStatus each reports.
_EVENT_OF_STATUS: Final = {"initiated": "initiated", "ringing": "ringing", "in-progress": "answered"}
WEBHOOK_LOG_SIZE: Final = 2000
_APPLICATION_ERROR: Final = "We are sorry, an application error has occurred. Goodbye."


def sign(auth_token: str, url: str, params: dict[str, str]) -> str:
    """Twilio's ``X-Twilio-Signature`` for a POST of ``params`` to ``url`` (for GET: params empty)."""
    payload = url + "".join(k + params[k] for k in sorted(params))
    digest = hmac.new(auth_token.encode(), payload.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def now_rfc2822() -> str:
    return format_datetime(datetime.now(UTC))


def rfc2822(moment: datetime | None) -> str | None:
    return None if moment is None else format_datetime(moment)


@dataclass
class Knobs:
    speech_rate: float = 0.06  # seconds per word of <Say>
    play_s: float = 0.5  # how long one <Play> lasts
    time_scale: float = 1.0  # multiplies <Pause length>
    webhook_timeout_s: float = 15.0  # Twilio waits up to 15 s for TwiML
    # Twilio's own apology is spoken at its own pace, whatever ``speech_rate`` compresses ours to: a
    # customer who met it was on the line for seconds with nobody there.
    application_error_s: float = 3.5
    # Twilio "always adds a 5 second timeout buffer to outgoing calls": a <Dial timeout="1"> rings for
    # up to 6 s. 0 (exact) unless a test sets Twilio's 5, so the product's own 2 s guard is what holds.
    dial_timeout_pad_s: float = 0.0


@dataclass(frozen=True)
class Fault:
    """What the next REST request gets instead of its answer: a delay (a slow Twilio, for client
    timeouts), then an error document (an outage, a rate limit) unless ``status`` is None."""

    delay_s: float = 0.0
    status: int | None = 500
    code: int = 20500
    message: str = "Internal Server Error"


@dataclass(frozen=True)
class RestRequest:
    """One REST request as the emulator received it (the key or account sid it authenticated as;
    never the secret)."""

    method: str
    path: str
    params: dict[str, list[str]]
    auth_user: str | None

    def to_json(self) -> dict[str, Any]:
        return {"method": self.method, "path": self.path, "params": self.params, "auth_user": self.auth_user}


@dataclass
class NumberConfig:
    """What Twilio's IncomingPhoneNumber would hold: where inbound calls and SMS are posted."""

    voice_url: str | None = None
    sms_url: str | None = None
    status_callback: str | None = None


@dataclass(eq=False)
class Recording:
    sid: str
    call_sid: str
    source: str  # DialVerb, OutboundAPI
    channels: int
    start_time: datetime
    duration_s: int
    status: str = "completed"
    date_created: datetime = field(default_factory=lambda: datetime.now(UTC))


@dataclass(eq=False)
class Leg:
    sid: str
    to: str
    from_: str
    direction: str  # outbound-api, outbound-dial, inbound
    timeline: Timeline
    label: str = "customer"  # how it appears on the timeline: customer, agent, number
    parent_sid: str | None = None
    status: str = "queued"
    date_created: datetime = field(default_factory=lambda: datetime.now(UTC))
    start_time: datetime | None = None
    end_time: datetime | None = None
    answered_mono: float | None = None
    answered_by: str | None = None
    status_callback: str | None = None
    status_callback_method: str = "POST"
    status_events: frozenset[str] = frozenset({"completed"})
    sequence: int = 0
    final_status: str | None = None  # decided by the runner (busy, no-answer, failed)
    end_by: str | None = None  # who ended it, for the timeline
    requested_end: str | None = None  # completed / canceled from the REST API
    pending_source: tuple[str, str, str] | None = None  # a redirect waiting to run: (kind, value, method)
    fallback: tuple[str, str] | None = None  # FallbackUrl and its method: run once when the Url's TwiML fails
    runner: asyncio.Task[None] | None = None
    exec_task: asyncio.Task[None] | None = None
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    answered: asyncio.Event = field(default_factory=asyncio.Event)
    decision: asyncio.Future[str] | None = None  # manual devices: "accept" / "reject"
    outbox: asyncio.Queue[tuple[str, str, dict[str, str]] | None] = field(default_factory=asyncio.Queue)
    sender: asyncio.Task[None] | None = None
    twiml: list[str] = field(default_factory=list)
    record: dict[str, Any] | None = None  # Record=true on Calls.create: recording options
    hangup_logged: bool = False
    extra_params: dict[str, str] = field(default_factory=dict)  # a browser call's custom parameters
    silenced: bool = False  # dropped by a reset: report nothing more
    twiml_base: str = ""  # resolves relative URLs in inline TwiML

    _duration: int = 0  # seconds from answer to end, once ended

    @property
    def duration_s(self) -> int:
        if self.answered_mono is None:
            return 0
        return self._duration if self.ended.is_set() else math.ceil(time.monotonic() - self.answered_mono)


@dataclass(eq=False)
class Message:
    sid: str
    to: str
    from_: str
    body: str
    status_callback: str | None
    fate: SmsFate
    segments: int
    messaging_service_sid: str | None = None
    status: str = "queued"
    direction: str = "outbound-api"
    error_code: int | None = None
    date_created: datetime = field(default_factory=lambda: datetime.now(UTC))
    date_sent: datetime | None = None
    date_updated: datetime = field(default_factory=lambda: datetime.now(UTC))


class TwimlError(Exception):
    """The TwiML could not be fetched or parsed: Twilio's "application error"."""


class Emulator:
    def __init__(
        self,
        *,
        account_sid: str,
        auth_token: str,
        public_url: str,
        api_keys: dict[str, str] | None = None,
        default_voice_url: str | None = None,
        default_sms_url: str | None = None,
        demo_rules: bool = True,
    ) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.public_url = public_url.rstrip("/")
        self.credentials = {(account_sid, auth_token), *(api_keys or {}).items()}
        self.api_keys = dict(api_keys or {})  # sid -> secret: they sign REST requests and access tokens
        self.browsers = BrowserDevices()
        self.scripts = Scripts(demo_rules=demo_rules)
        self._demo_rules = demo_rules
        self.knobs = Knobs()
        self.default_numbers = NumberConfig(voice_url=default_voice_url, sms_url=default_sms_url)
        self.numbers: dict[str, NumberConfig] = {}
        # TwiML Bins (Twilio hosts a document at a URL of its own): account configuration, like the
        # numbers' defaults, so a reset between tests keeps them.
        self.twiml_bins: dict[str, str] = {}
        self.calls: dict[str, Leg] = {}
        self.messages: dict[str, Message] = {}
        self.recordings: dict[str, Recording] = {}
        self.webhooks: deque[dict[str, Any]] = deque(maxlen=WEBHOOK_LOG_SIZE)  # the latest, for debugging
        self.requests: deque[RestRequest] = deque(maxlen=WEBHOOK_LOG_SIZE)  # REST requests, the latest
        self.faults: deque[Fault] = deque()  # for the next REST requests, in order
        self._tasks: set[asyncio.Task[Any]] = set()
        self._http: httpx.AsyncClient | None = None
        # "calls" / "messages" → seconds the answer to the next create waits, once it has been created:
        # a crash test's window "Twilio accepted, the caller has not heard back".
        self.held_answers: dict[str, float] = {}

    # --- lifecycle -------------------------------------------------------------------------------

    @property
    def http(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient(follow_redirects=False)
        return self._http

    async def reset(self) -> None:
        """Forget every call, message, recording and script; drop what is still running.

        Calls in flight are silenced first: no last status callback from the previous test may reach
        the next test's webhooks."""
        for leg in self.calls.values():
            leg.silenced = True
        while self._tasks:
            tasks = list(self._tasks)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        self.calls.clear()
        self.messages.clear()
        self.recordings.clear()
        self.webhooks.clear()
        self.requests.clear()
        self.faults.clear()
        self.numbers.clear()
        self.scripts.reset()
        self.browsers.reset()
        self.scripts.demo_rules = self._demo_rules
        self.knobs = Knobs()
        self.held_answers.clear()

    async def aclose(self) -> None:
        await self.reset()
        if self._http is not None:
            await self._http.aclose()

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        # The loop holds tasks weakly: keep a reference until each is done.
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def number_config(self, number: str) -> NumberConfig:
        return self.numbers.get(number, self.default_numbers)

    # --- webhooks --------------------------------------------------------------------------------

    def _signed_headers(self, url: str, params: dict[str, str]) -> dict[str, str]:
        return {
            "X-Twilio-Signature": sign(self.auth_token, url, params),
            "I-Twilio-Idempotency-Token": hashlib.sha256(repr(sorted(params.items())).encode()).hexdigest()[:32],
            "User-Agent": "TwilioProxy/1.1",
        }

    async def request(self, url: str, params: dict[str, str], method: str = "POST") -> httpx.Response | None:
        """A signed webhook; None when it could not be delivered or answered 4xx/5xx."""
        if method.upper() == "GET":
            full = url + ("&" if "?" in url else "?") + urlencode(params)
            headers, data, target = self._signed_headers(full, {}), None, full
        else:
            headers, data, target = self._signed_headers(url, params), params, url
        entry: dict[str, Any] = {"url": url, "method": method.upper(), "params": dict(params), "status": None}
        self.webhooks.append(entry)
        try:
            response = await self.http.request(
                method.upper(), target, data=data, headers=headers, timeout=self.knobs.webhook_timeout_s
            )
        except httpx.HTTPError as exc:
            log.warning("webhook %s failed: %s", url, type(exc).__name__)
            entry["status"] = type(exc).__name__
            return None
        entry["status"] = response.status_code
        if response.status_code >= 400:
            log.warning("webhook %s answered %s", url, response.status_code)
            return None
        return response

    def post_later(self, leg: Leg, url: str, params: dict[str, str], method: str = "POST") -> None:
        """Queue a webhook on the leg's sender: posted in order, without holding the call up."""
        if leg.silenced:
            return
        leg.outbox.put_nowait((url, method, params))
        if leg.sender is None or leg.sender.done():
            leg.sender = self.spawn(self._send_outbox(leg))

    async def _send_outbox(self, leg: Leg) -> None:
        while True:
            item = await leg.outbox.get()
            if item is None:
                return
            url, method, params = item
            await self.request(url, params, method)
            if leg.outbox.empty() and leg.ended.is_set():
                return

    # --- calls: REST -----------------------------------------------------------------------------

    def new_leg(self, *, to: str, from_: str, direction: str, timeline: Timeline | None = None, **kw: Any) -> Leg:
        leg = Leg(
            sid="CA" + secrets.token_hex(16),
            to=to,
            from_=from_,
            direction=direction,
            timeline=timeline or Timeline(),
            **kw,
        )
        self.calls[leg.sid] = leg
        return leg

    def create_call(self, params: dict[str, list[str]]) -> Leg:
        one = _first(params)
        events = frozenset(e for value in params.get("StatusCallbackEvent", []) for e in value.split())
        leg = self.new_leg(
            to=one["To"],
            from_=one["From"],
            direction="outbound-api",
            status_callback=one.get("StatusCallback"),
            status_callback_method=one.get("StatusCallbackMethod", "POST"),
            status_events=events or frozenset({"completed"}),
        )
        if one.get("Twiml"):
            leg.pending_source = ("twiml", one["Twiml"], "POST")
        else:
            leg.pending_source = ("url", one["Url"], one.get("Method", "POST"))
        if one.get("FallbackUrl"):
            leg.fallback = (one["FallbackUrl"], one.get("FallbackMethod", "POST"))
        if one.get("Record", "").lower() == "true":
            leg.record = {
                "channels": 2 if one.get("RecordingChannels") == "dual" else 1,
                "callback": one.get("RecordingStatusCallback"),
                "method": one.get("RecordingStatusCallbackMethod", "POST"),
                "events": {e for v in params.get("RecordingStatusCallbackEvent", []) for e in v.split()}
                or {"completed"},
            }
        amd = None
        if one.get("MachineDetection") in {"Enable", "DetectMessageEnd"}:
            amd = {
                "mode": one["MachineDetection"],
                "async": one.get("AsyncAmd", "false").lower() == "true",
                "callback": one.get("AsyncAmdStatusCallback"),
                "method": one.get("AsyncAmdStatusCallbackMethod", "POST"),
            }
        timeout = float(one.get("Timeout", "60"))
        leg.runner = self.spawn(self._life(leg, self._run_outbound(leg, amd, timeout)))
        return leg

    def update_call(self, leg: Leg, params: dict[str, list[str]]) -> None:
        one = _first(params)
        if one.get("Twiml") or one.get("Url"):
            source = (
                ("twiml", one["Twiml"], "POST") if one.get("Twiml") else ("url", one["Url"], one.get("Method", "POST"))
            )
            self.redirect(leg, source)
        if one.get("Status") in {"completed", "canceled"}:
            self.hangup(leg, by="api", requested=one["Status"])

    def redirect(self, leg: Leg, source: tuple[str, str, str]) -> None:
        leg.pending_source = source
        leg.timeline.add("redirect", leg.label, source=source[0])
        if leg.answered_mono is not None and leg.exec_task is not None and not leg.exec_task.done():
            leg.exec_task.cancel()

    def hangup(self, leg: Leg, *, by: str, requested: str | None = None) -> None:
        if leg.status in ENDED or leg.ended.is_set():
            return
        if requested == "canceled" and leg.answered_mono is not None:
            return  # Twilio: "canceled" only ends a call that has not been answered
        leg.end_by = leg.end_by or by
        leg.requested_end = requested
        self._log_hangup(leg)  # now, when it happens: the clean-up of a bridge comes after
        if leg.runner is not None:
            leg.runner.cancel()

    # --- calls: the life of a leg ----------------------------------------------------------------

    async def _life(self, leg: Leg, body: Coroutine[Any, Any, None]) -> None:
        try:
            await body
        except asyncio.CancelledError:
            pass  # hung up: hangup() said by whom
        except Exception:
            log.exception("call %s failed inside the emulator", leg.sid)
            leg.final_status = leg.final_status or "failed"
        if not leg.silenced:
            await self._finish(leg)

    async def _finish(self, leg: Leg) -> None:
        if leg.exec_task is not None and not leg.exec_task.done():
            leg.exec_task.cancel()
        if leg.answered_mono is not None:
            leg._duration = math.ceil(time.monotonic() - leg.answered_mono)
            status = "completed"
        elif leg.final_status is not None:
            status = leg.final_status
        else:
            status = "canceled" if leg.requested_end or leg.end_by else "failed"
        self._log_hangup(leg, status)
        leg.end_time = datetime.now(UTC)
        self._status(leg, status)
        leg.timeline.add("ended", leg.label, status=status)
        if leg.record is not None and leg.answered_mono is not None:
            self._make_recording(leg, "OutboundAPI", leg.record, leg._duration, leg.start_time or leg.end_time)
        leg.ended.set()
        leg.outbox.put_nowait(None)
        if leg.sender is None or leg.sender.done():
            leg.sender = self.spawn(self._send_outbox(leg))

    def _log_hangup(self, leg: Leg, status: str = "completed") -> None:
        if not leg.hangup_logged:
            leg.hangup_logged = True
            leg.timeline.add(
                "hangup", leg.label, by=leg.end_by or ("end-of-twiml" if status == "completed" else status)
            )

    def call_params(self, leg: Leg) -> dict[str, str]:
        params = {
            "AccountSid": self.account_sid,
            "ApiVersion": API_VERSION,
            "CallSid": leg.sid,
            "CallStatus": leg.status,
            "Called": leg.to,
            "Caller": leg.from_,
            "Direction": leg.direction,
            "From": leg.from_,
            "To": leg.to,
        }
        if leg.parent_sid:
            params["ParentCallSid"] = leg.parent_sid
        if leg.answered_by:
            params["AnsweredBy"] = leg.answered_by
        return params

    def _status(self, leg: Leg, status: str) -> None:
        """Move the leg to ``status`` and post its status callback if that event was asked for."""
        if status != "initiated":
            leg.status = status
        event = _EVENT_OF_STATUS.get(status, "completed")
        if not leg.status_callback or event not in leg.status_events:
            return
        params = self.call_params(leg)
        params["CallStatus"] = status
        params["CallbackSource"] = "call-progress-events"
        params["SequenceNumber"] = str(leg.sequence)
        params["Timestamp"] = now_rfc2822()
        leg.sequence += 1
        if status in ENDED:
            params["CallDuration"] = str(leg._duration)
            params["Duration"] = str(math.ceil(leg._duration / 60))
        self.post_later(leg, leg.status_callback, params, leg.status_callback_method)

    def _answer(self, leg: Leg) -> None:
        leg.answered_mono = time.monotonic()
        leg.start_time = leg.start_time or datetime.now(UTC)
        leg.timeline.add("answered", leg.label)
        self._status(leg, "in-progress")
        leg.answered.set()

    async def _run_outbound(self, leg: Leg, amd: dict[str, Any] | None, ring_timeout_s: float) -> None:
        script = self.scripts.customer(leg.to)
        leg.start_time = datetime.now(UTC)
        self._status(leg, "initiated")
        await asyncio.sleep(0.02)
        if script.behaviour is Behaviour.FAILED:
            leg.final_status = "failed"
            return
        if script.behaviour is Behaviour.BUSY:
            await asyncio.sleep(script.answer_after_s)
            leg.final_status = "busy"
            return
        self._status(leg, "ringing")
        leg.timeline.add("ringing", leg.label)
        if script.behaviour is Behaviour.NO_ANSWER or script.answer_after_s >= ring_timeout_s:
            await asyncio.sleep(min(script.answer_after_s, ring_timeout_s))
            leg.final_status = "no-answer"
            return
        await asyncio.sleep(script.answer_after_s)
        self._answer(leg)
        if script.hangup_after_s is not None:
            self.spawn(self._hangup_after(leg, script.hangup_after_s, "customer"))
        if amd is not None:
            verdict = script.amd_verdict.value
            if amd["mode"] == "Enable" and verdict.startswith("machine_end"):
                verdict = "machine_start"  # only DetectMessageEnd waits for the end of the greeting
            if amd["async"]:
                self.spawn(self._async_amd(leg, amd, verdict, script.amd_after_s))
            else:
                await asyncio.sleep(script.amd_after_s)  # synchronous AMD: the caller waits in silence
                leg.answered_by = verdict
                leg.timeline.add("amd", leg.label, answered_by=verdict)
        await self._run_twiml(leg)

    async def _async_amd(self, leg: Leg, amd: dict[str, Any], verdict: str, after_s: float) -> None:
        await asyncio.sleep(after_s)
        if leg.ended.is_set():
            return
        leg.answered_by = verdict
        leg.timeline.add("amd", leg.label, answered_by=verdict)
        if amd["callback"]:
            params = {
                "AccountSid": self.account_sid,
                "CallSid": leg.sid,
                "AnsweredBy": verdict,
                "MachineDetectionDuration": str(int(after_s * 1000)),
            }
            self.post_later(leg, amd["callback"], params, amd["method"])

    async def _hangup_after(self, leg: Leg, seconds: float, by: str) -> None:
        await asyncio.sleep(seconds)
        self.hangup(leg, by=by)

    # --- TwiML ---------------------------------------------------------------------------------------

    async def _run_twiml(self, leg: Leg) -> None:
        """Execute TwiML until the document ends; a redirect restarts on the new source."""
        while leg.pending_source is not None:
            source, leg.pending_source = leg.pending_source, None
            task = asyncio.get_running_loop().create_task(self._execute(leg, source))
            leg.exec_task = task
            try:
                await asyncio.wait({task})
            except asyncio.CancelledError:
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
                raise
            if task.cancelled():
                continue  # a redirect: pending_source holds the new TwiML
            task.result()
        if leg.end_by is None:
            leg.end_by = "end-of-twiml"

    async def _fetch(self, leg: Leg, url: str, method: str, extra: dict[str, str] | None = None) -> ET.Element:
        params = {**leg.extra_params, **self.call_params(leg), **(extra or {})}
        leg.timeline.add("twiml", leg.label, url=url)
        response = await self.request(url, params, method)
        if response is None:
            raise TwimlError(f"fetching {url} failed")
        return self._parse(leg, response.text)

    def _parse(self, leg: Leg, text: str) -> ET.Element:
        leg.twiml.append(text)
        try:
            root = ET.fromstring(text.strip())
        except ET.ParseError as exc:
            raise TwimlError(f"invalid TwiML: {exc}") from None
        if root.tag != "Response":
            raise TwimlError("TwiML root is not <Response>")
        return root

    async def _execute(self, leg: Leg, source: tuple[str, str, str]) -> None:
        kind, value, method = source
        try:
            try:
                doc: ET.Element | None = (
                    await self._fetch(leg, value, method) if kind == "url" else self._parse(leg, value)
                )
                base = value if kind == "url" else leg.twiml_base
                while doc is not None:
                    doc, base = await self._verbs(leg, doc, base)
            except TwimlError as exc:
                fallback, leg.fallback = leg.fallback, None
                if fallback is None or kind != "url":
                    raise
                # Twilio runs the FallbackUrl's TwiML instead, telling it what failed (error 11200).
                log.warning("call %s: %s; running the fallback", leg.sid, exc)
                leg.timeline.add("fallback", leg.label, url=fallback[0])
                doc = await self._fetch(leg, fallback[0], fallback[1], {"ErrorCode": "11200", "ErrorUrl": value})
                base = fallback[0]
                while doc is not None:
                    doc, base = await self._verbs(leg, doc, base)
        except TwimlError as exc:
            # Twilio apologises and hangs up: speech the customer hears, so it is on the timeline.
            log.warning("call %s: application error: %s", leg.sid, exc)
            await self._apologise(leg)
            leg.end_by = "application-error"

    async def _verbs(self, leg: Leg, doc: ET.Element, base: str) -> tuple[ET.Element | None, str]:
        """Run the verbs of one document: the next document to run (Redirect, Dial action) or None."""
        for verb in doc:
            if verb.tag == "Say":
                loops = int(verb.get("loop", "1")) or 1
                for _ in range(loops):
                    await self._speak(leg, (verb.text or "").strip())
            elif verb.tag == "Play":
                loops = int(verb.get("loop", "1")) or 1
                for _ in range(loops):
                    url = (verb.text or "").strip()
                    leg.timeline.add("play_start", leg.label, url=url)
                    await asyncio.sleep(self.knobs.play_s)
                    leg.timeline.add("play_end", leg.label, url=url)
            elif verb.tag == "Pause":
                seconds = float(verb.get("length", "1")) * self.knobs.time_scale
                leg.timeline.add("pause_start", leg.label, length=float(verb.get("length", "1")))
                await asyncio.sleep(seconds)
                leg.timeline.add("pause_end", leg.label)
            elif verb.tag == "Hangup":
                leg.end_by = "twiml"
                return None, base
            elif verb.tag == "Reject":
                leg.end_by = "twiml"
                if leg.answered_mono is None:
                    leg.final_status = "busy" if verb.get("reason") == "busy" else "no-answer"
                return None, base
            elif verb.tag == "Redirect":
                url = urljoin(base, (verb.text or "").strip())
                return await self._fetch(leg, url, verb.get("method", "POST")), url
            elif verb.tag == "Dial":
                after = await self._dial(leg, verb, base)
                if after is not None:
                    return after
            else:
                leg.timeline.add("unsupported", leg.label, verb=verb.tag)
        return None, base

    async def _speak(self, leg: Leg, text: str) -> None:
        leg.timeline.add("say_start", leg.label, text=text)
        await asyncio.sleep(max(1, len(text.split())) * self.knobs.speech_rate)
        leg.timeline.add("say_end", leg.label, text=text)

    async def _apologise(self, leg: Leg) -> None:
        leg.timeline.add("say_start", leg.label, text=_APPLICATION_ERROR)
        await asyncio.sleep(self.knobs.application_error_s)
        leg.timeline.add("say_end", leg.label, text=_APPLICATION_ERROR)

    # --- <Dial> ----------------------------------------------------------------------------------------

    async def _dial(self, leg: Leg, verb: ET.Element, base: str) -> tuple[ET.Element | None, str] | None:
        timeout = float(verb.get("timeout", "30")) + self.knobs.dial_timeout_pad_s
        time_limit = float(verb.get("timeLimit", "14400"))
        action = verb.get("action")
        caller_id = verb.get("callerId") or leg.from_
        nouns: list[tuple[str, str, ET.Element]] = []
        for element in verb:
            target = (element.text or "").strip()
            if element.tag == "Client":
                identity = (element.findtext("Identity") or target).strip()
                nouns.append(("client", identity, element))
            elif element.tag == "Number":
                nouns.append(("number", target, element))
        if not nouns and (verb.text or "").strip():
            nouns.append(("number", (verb.text or "").strip(), verb))
        legs: list[Leg] = []
        for kind, target, noun in nouns:
            to = f"client:{target}" if kind == "client" else target
            events = frozenset((noun.get("statusCallbackEvent") or "completed").split())
            child = self.new_leg(
                to=to,
                from_=caller_id,
                direction="outbound-dial",
                timeline=leg.timeline,
                label="agent" if kind == "client" else "number",
                parent_sid=leg.sid,
                status_callback=noun.get("statusCallback"),
                status_callback_method=noun.get("statusCallbackMethod", "POST"),
                status_events=events,
            )
            leg.timeline.add("dial", child.label, to=to, call_sid=child.sid)
            body = self._run_device(child, target) if kind == "client" else self._run_number(child)
            child.runner = self.spawn(self._life(child, body))
            legs.append(child)
        dial_started = time.monotonic()
        connected: Leg | None = None
        bridged_at: float | None = None
        extra: dict[str, str] = {}
        url = urljoin(base, action) if action else None
        method = verb.get("method", "POST")
        interrupted = False  # the caller hung up, or the call was redirected
        try:
            connected = await self._first_answer(legs, timeout)
            if connected is not None:
                bridged_at = time.monotonic()
                leg.timeline.add("person_connected", connected.label, call_sid=connected.sid)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(connected.ended.wait(), time_limit)
        except asyncio.CancelledError:
            interrupted = True
            raise
        finally:
            caller_gone = leg.end_by is not None
            if connected is not None:
                by = connected.end_by or ("caller" if caller_gone else "redirect" if interrupted else "time-limit")
                leg.timeline.add("bridge_ended", connected.label, by=by)
            for child in legs:
                if not child.ended.is_set():
                    if child.answered_mono is None and child.final_status is None:
                        # Rung out by the <Dial> timeout, or dropped because the caller went or was redirected.
                        child.final_status = "canceled" if interrupted else "no-answer"
                        if not interrupted:
                            leg.timeline.add("agent_no_answer" if child.label == "agent" else "no_answer", child.label)
                    self.hangup(child, by="caller" if caller_gone else "dial")
            extra = self._dial_result(leg, verb, legs, connected, dial_started, bridged_at)
            if caller_gone and url is not None:
                # Twilio still requests the action when the caller hangs up; what it returns is ignored.
                self.post_later(leg, url, {**self.call_params(leg), "CallStatus": "completed", **extra}, method)
        if url is None or leg.end_by is not None:
            return None
        return await self._fetch(leg, url, method, extra), url

    def _dial_result(
        self,
        leg: Leg,
        verb: ET.Element,
        legs: list[Leg],
        connected: Leg | None,
        dial_started: float,
        bridged_at: float | None,
    ) -> dict[str, str]:
        """The parameters Twilio adds to the <Dial action> request; makes the recording if asked."""
        record = verb.get("record", "do-not-record")
        duration = 0 if bridged_at is None else math.ceil(time.monotonic() - bridged_at)
        extra = {"DialCallStatus": _dial_status(legs, connected), "DialCallDuration": str(duration)}
        if legs:
            extra["DialCallSid"] = (connected or legs[0]).sid
        if connected is not None:
            extra["DialBridged"] = "true"
        if record.startswith("record-from") and (connected is not None or "ringing" in record):
            start_mono = dial_started if "ringing" in record else (bridged_at or dial_started)
            options = {
                "channels": 2 if record.endswith("dual") else 1,
                "callback": verb.get("recordingStatusCallback"),
                "method": verb.get("recordingStatusCallbackMethod", "POST"),
                "events": set((verb.get("recordingStatusCallbackEvent") or "completed").split()),
            }
            seconds = math.ceil(time.monotonic() - start_mono)
            recording = self._make_recording(leg, "DialVerb", options, seconds, datetime.now(UTC))
            extra.update(
                RecordingSid=recording.sid,
                RecordingUrl=self.recording_url(recording),
                RecordingDuration=str(recording.duration_s),
            )
        return extra

    async def _first_answer(self, legs: list[Leg], ring_timeout_s: float) -> Leg | None:
        """The first leg to answer within the <Dial> timeout (the others are hung up by the caller)."""
        deadline = time.monotonic() + ring_timeout_s
        pending = {asyncio.ensure_future(self._answered_or_ended(child)): child for child in legs}
        try:
            while pending:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                done, _ = await asyncio.wait(pending, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
                if not done:
                    return None
                for fut in done:
                    child = pending.pop(fut)
                    if fut.result():
                        return child
            return None
        finally:
            for fut in pending:
                fut.cancel()

    async def _answered_or_ended(self, leg: Leg) -> bool:
        answered = asyncio.ensure_future(leg.answered.wait())
        ended = asyncio.ensure_future(leg.ended.wait())
        try:
            await asyncio.wait({answered, ended}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            answered.cancel()
            ended.cancel()
        return leg.answered.is_set() and not leg.ended.is_set()

    async def _run_device(self, leg: Leg, identity: str) -> None:
        browser = self.browsers.of(identity)
        if browser is not None:  # a browser registered this identity: it, not a script, decides
            await self._ring_browser(leg, identity, browser)
            return
        script = self.scripts.device(identity)
        leg.start_time = datetime.now(UTC)
        self._status(leg, "initiated")
        if not script.registered:
            leg.timeline.add("agent_offline", leg.label, identity=identity)
            await asyncio.sleep(0.05)
            leg.final_status = "no-answer"
            return
        self._status(leg, "ringing")
        leg.timeline.add("agent_ringing", leg.label, identity=identity)
        if script.action is DeviceAction.MANUAL:
            leg.decision = asyncio.get_running_loop().create_future()
            choice = await leg.decision
        elif script.action is DeviceAction.IGNORE:
            await asyncio.Event().wait()  # until the <Dial> timeout hangs it up
            return
        else:
            await asyncio.sleep(script.accept_after_s)
            choice = script.action.value
        if choice == "reject":
            leg.timeline.add("agent_rejected", leg.label, identity=identity)
            leg.final_status = "busy"
            leg.end_by = "agent"
            return
        leg.timeline.add("agent_answered", leg.label, identity=identity)
        self._answer_child(leg)
        if script.hangup_after_s is not None:
            await asyncio.sleep(script.hangup_after_s)
            leg.end_by = "agent"
            return
        await asyncio.Event().wait()  # connected until either side hangs up

    async def _ring_browser(self, leg: Leg, identity: str, browser: BrowserDevice) -> None:
        """Ring a registered browser phone: it accepts, rejects or hangs up through the device API
        (``device_api.py``); a browser that stops polling is gone, and so is its call."""
        leg.start_time = datetime.now(UTC)
        self._status(leg, "initiated")
        if not browser.online:
            leg.timeline.add("agent_offline", leg.label, identity=identity, device="browser")
            await asyncio.sleep(0.05)
            leg.final_status = "no-answer"
            return
        self._status(leg, "ringing")
        leg.timeline.add("agent_ringing", leg.label, identity=identity, device="browser")
        leg.decision = asyncio.get_running_loop().create_future()
        browser.call_sid = leg.sid
        params = {"CallSid": leg.sid, "AccountSid": self.account_sid, "From": leg.from_, "To": leg.to}
        browser.push("incoming", call_sid=leg.sid, parameters=params)
        try:
            if await leg.decision == "reject":
                leg.timeline.add("agent_rejected", leg.label, identity=identity, device="browser")
                leg.final_status = "busy"
                leg.end_by = "agent"
                return
            leg.timeline.add("agent_answered", leg.label, identity=identity, device="browser")
            self._answer_child(leg)
            # Connected until either side hangs up, or the browser goes (its liveness is time-based).
            while True:
                await asyncio.sleep(0.25)
                if not browser.online:
                    break
            leg.timeline.add("agent_device_gone", leg.label, identity=identity)
            leg.end_by = "agent"
        finally:
            if browser.call_sid == leg.sid:
                browser.call_sid = None
            # What the SDK tells the browser when the other side ends it (ignored for a call it ended).
            browser.push("disconnect" if leg.answered_mono is not None else "cancel", call_sid=leg.sid)

    async def _run_number(self, leg: Leg) -> None:
        script = self.scripts.customer(leg.to)
        leg.start_time = datetime.now(UTC)
        self._status(leg, "initiated")
        if script.behaviour is Behaviour.FAILED:
            leg.final_status = "failed"
            return
        if script.behaviour is Behaviour.BUSY:
            await asyncio.sleep(script.answer_after_s)
            leg.final_status = "busy"
            return
        self._status(leg, "ringing")
        await asyncio.sleep(script.answer_after_s)
        if script.behaviour is Behaviour.NO_ANSWER:
            await asyncio.Event().wait()  # rings until the <Dial> timeout
        self._answer_child(leg)
        if script.hangup_after_s is not None:
            await asyncio.sleep(script.hangup_after_s)
            leg.end_by = "number"
            return
        await asyncio.Event().wait()

    def _answer_child(self, leg: Leg) -> None:
        leg.answered_mono = time.monotonic()
        leg.start_time = datetime.now(UTC)
        self._status(leg, "in-progress")
        leg.answered.set()

    # --- recordings ------------------------------------------------------------------------------------

    def recording_url(self, recording: Recording) -> str:
        return f"{self.public_url}/{API_VERSION}/Accounts/{self.account_sid}/Recordings/{recording.sid}"

    def _make_recording(
        self, leg: Leg, source: str, options: dict[str, Any], seconds: int, start: datetime
    ) -> Recording:
        recording = Recording(
            sid="RE" + secrets.token_hex(16),
            call_sid=leg.sid,
            source=source,
            channels=int(options["channels"]),
            start_time=start,
            duration_s=max(1, seconds),
        )
        self.recordings[recording.sid] = recording
        leg.timeline.add("recording", leg.label, sid=recording.sid, duration=recording.duration_s)
        if options.get("callback") and "completed" in options["events"]:
            params = {
                "AccountSid": self.account_sid,
                "CallSid": leg.sid,
                "RecordingSid": recording.sid,
                "RecordingUrl": self.recording_url(recording),
                "RecordingStatus": "completed",
                "RecordingDuration": str(recording.duration_s),
                "RecordingChannels": str(recording.channels),
                "RecordingStartTime": format_datetime(start),
                "RecordingSource": source,
                "RecordingTrack": "both",
                "ErrorCode": "0",
            }
            self.post_later(leg, options["callback"], params, options.get("method", "POST"))
        return recording

    # --- inbound ---------------------------------------------------------------------------------------

    def inbound_call(
        self,
        *,
        from_: str,
        to: str,
        url: str | None,
        hangup_after_s: float | None,
        params: dict[str, str] | None = None,
    ) -> Leg:
        """A call into one of our numbers — or, with ``from_="client:<identity>"``, a call placed by an
        agent's browser phone (``Device.connect``; ``params`` are its custom parameters, posted with the
        TwiML request as Twilio posts them to the TwiML App's voice URL)."""
        config = self.number_config(to)
        voice_url = url or config.voice_url
        if not voice_url:
            raise ValueError(f"no voice URL configured for {to}")
        leg = self.new_leg(
            to=to,
            from_=from_,
            direction="inbound",
            status_callback=config.status_callback,
            status_events=frozenset({"initiated", "ringing", "answered", "completed"}),
            label="agent" if from_.startswith("client:") else "customer",
        )
        leg.extra_params = dict(params or {})
        leg.pending_source = ("url", voice_url, "POST")
        leg.runner = self.spawn(self._life(leg, self._run_inbound(leg, hangup_after_s)))
        return leg

    async def _run_inbound(self, leg: Leg, hangup_after_s: float | None) -> None:
        leg.start_time = datetime.now(UTC)
        leg.status = "ringing"
        leg.timeline.add("ringing", leg.label)
        # Twilio answers an inbound call when it starts executing TwiML (unless it is <Reject>).
        source = leg.pending_source
        assert source is not None
        leg.pending_source = None
        try:
            doc = await self._fetch(leg, source[1], source[2])
        except TwimlError:
            self._answer(leg)
            await self._apologise(leg)
            leg.end_by = "application-error"
            return
        if len(doc) and doc[0].tag == "Reject":
            leg.final_status = "busy" if doc[0].get("reason") == "busy" else "no-answer"
            leg.end_by = "twiml"
            return
        self._answer(leg)
        if hangup_after_s is not None:
            self.spawn(self._hangup_after(leg, hangup_after_s, "customer"))
        # Run the document already fetched (kept once in leg.twiml), resolving its URLs against the voice URL.
        leg.pending_source = ("twiml", leg.twiml.pop(), "POST")
        leg.twiml_base = source[1]
        await self._run_twiml(leg)

    async def inbound_sms(self, *, from_: str, to: str, body: str, url: str | None) -> tuple[Message, int | None]:
        config = self.number_config(to)
        sms_url = url or config.sms_url
        if not sms_url:
            raise ValueError(f"no SMS URL configured for {to}")
        message = Message(
            sid="SM" + secrets.token_hex(16),
            to=to,
            from_=from_,
            body=body,
            status_callback=None,
            fate=SmsFate.DELIVERED,
            segments=sms_segments(body),
            status="received",
            direction="inbound",
        )
        self.messages[message.sid] = message
        params = {
            "AccountSid": self.account_sid,
            "ApiVersion": API_VERSION,
            "MessageSid": message.sid,
            "SmsMessageSid": message.sid,
            "SmsSid": message.sid,
            "SmsStatus": "received",
            "From": from_,
            "To": to,
            "Body": body,
            "NumMedia": "0",
            "NumSegments": str(message.segments),
        }
        response = await self.request(sms_url, params)
        return message, None if response is None else response.status_code

    # --- messages --------------------------------------------------------------------------------------

    def create_message(self, params: dict[str, list[str]]) -> Message:
        one = _first(params)
        body = one.get("Body", "")
        message = Message(
            sid="SM" + secrets.token_hex(16),
            to=one["To"],
            from_=one.get("From", ""),
            body=body,
            status_callback=one.get("StatusCallback"),
            fate=self.scripts.customer(one["To"]).sms,
            segments=sms_segments(body),
            messaging_service_sid=one.get("MessagingServiceSid"),
        )
        self.messages[message.sid] = message
        self.spawn(self._run_sms(message))
        return message

    async def _run_sms(self, message: Message) -> None:
        for status, delay in (
            ("sent", 0.1),
            ("delivered" if message.fate is SmsFate.DELIVERED else "undelivered", 0.2),
        ):
            await asyncio.sleep(delay)
            message.status = status
            message.date_updated = datetime.now(UTC)
            if status == "sent":
                message.date_sent = message.date_updated
            if status == "undelivered":
                message.error_code = 30003
            if message.status_callback:
                params = {
                    "AccountSid": self.account_sid,
                    "ApiVersion": API_VERSION,
                    "From": message.from_,
                    "To": message.to,
                    "MessageSid": message.sid,
                    "SmsSid": message.sid,
                    "MessageStatus": status,
                    "SmsStatus": status,
                }
                if message.error_code is not None:
                    params["ErrorCode"] = str(message.error_code)
                await self.request(message.status_callback, params)


def _dial_status(legs: list[Leg], connected: Leg | None) -> str:
    if connected is not None:
        return "completed"
    statuses = {child.final_status or child.status for child in legs}
    if statuses == {"busy"}:
        return "busy"
    if statuses == {"failed"}:
        return "failed"
    return "no-answer"


def _first(params: dict[str, list[str]]) -> dict[str, str]:
    return {k: v[0] for k, v in params.items() if v}


# GSM 03.38 basic set; the extension set costs two septets per character.
_GSM_BASIC: Final = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM_EXTENDED: Final = set("^{}\\[~]|€\f")


def sms_segments(body: str) -> int:
    """Segments Twilio bills for ``body``: GSM-7 (160, or 153 per part) unless any character needs
    UCS-2 (70, or 67 per part, counted in UTF-16 code units)."""
    if all(ch in _GSM_BASIC or ch in _GSM_EXTENDED for ch in body):
        septets = sum(2 if ch in _GSM_EXTENDED else 1 for ch in body)
        return 1 if septets <= 160 else math.ceil(septets / 153)
    units = len(body.encode("utf-16-le")) // 2
    return 1 if units <= 70 else math.ceil(units / 67)
