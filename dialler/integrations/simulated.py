"""Telephony without Twilio: calls and SMS that "happen" inside this process.

:class:`SimulatedTelephony` implements :class:`~dialler.integrations.twilio.Telephony` and, for each
call or SMS, posts the webhooks Twilio would post — same form fields, same ``X-Twilio-Signature``
(HMAC with ``twilio_auth_token``), same order — to the URLs it was given. The product therefore runs
through its real webhook code path end to end without a Twilio account (``make run``, e2e tests).

What happens to a call is decided by a :class:`CallScript`, looked up by the dialled number:

1. an explicit override (``script.override("+447700900123", CallPlan(outcome=CallOutcome.BUSY))``),
   for tests that need a given outcome;
2. otherwise a rule on the number's last digit (``CallScript.standard()``: ``…7`` no-answer,
   ``…8`` busy, ``…9`` voicemail; every other digit answers), so demo data gives a realistic mix;
3. otherwise the script's default plan (``CallScript()``: every call answers).

An answered call behaves as on Twilio: the simulator fetches ``twiml_url`` (a signed POST, as
Twilio does on answer) and keeps the TwiML it got in :attr:`SimulatedCall.twiml`. A document with
``<Dial>`` keeps the call up until :meth:`~SimulatedTelephony.hangup` or the plan's ``talk_s``; a
document without one (the abandoned-call message, ``<Say>``/``<Hangup>``) "plays" for ``play_s`` and
the call completes; a fetch that fails (connection error, 4xx/5xx) ends it too, as Twilio's
"application error" does. :meth:`~SimulatedTelephony.redirect` swaps the TwiML of a live call. With
``machine_detection`` the asynchronous AMD verdict (``AnsweredBy``) is posted to the status URL, as
the real client asks Twilio to do. An SMS posts ``queued`` → ``sent`` → ``delivered`` (or
``undelivered`` for numbers in ``script.undeliverable``); numbers in ``script.unsubscribed`` get 21610.

Limits: calls live in the process that placed them (hang up from the same worker process; an unknown
sid is logged and ignored), and callbacks are posted once, in order, unless the plan asks for
duplicates. Nothing about a customer is sent anywhere but to the given callback URLs.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import re
import time
from collections import OrderedDict
from collections.abc import Coroutine, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from email.utils import format_datetime
from enum import StrEnum
from typing import Any, Final, TypeVar

import httpx

from dialler.config import Settings, TelephonyMode
from dialler.integrations.masking import mask_phone
from dialler.integrations.twilio import SmsSent, Telephony, TelephonyError, TwilioTelephony
from dialler.integrations.twilio_voice import sign

__all__ = [
    "CallOutcome",
    "CallPlan",
    "CallScript",
    "SimulatedCall",
    "SimulatedSms",
    "SimulatedTelephony",
    "SmsPlan",
    "telephony_for",
]

log = logging.getLogger(__name__)

API_VERSION: Final = "2010-04-01"
# How many finished calls and messages are kept, so that a retried request with the same
# idempotency key still finds its sid (and tests can inspect what happened).
HISTORY_SIZE: Final = 10_000
_E164: Final = re.compile(r"^\+[1-9]\d{6,14}$")

V = TypeVar("V")


class CallOutcome(StrEnum):
    ANSWERED = "answered"  # a person answers; AnsweredBy=human under AMD
    MACHINE = "machine"  # voicemail answers; AnsweredBy=machine_start under AMD
    NO_ANSWER = "no-answer"
    BUSY = "busy"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class CallPlan:
    """What one simulated call does, and how fast. Times are seconds."""

    outcome: CallOutcome = CallOutcome.ANSWERED
    initiated_s: float = 0.05  # place_call → the line rings (or is busy, or fails)
    ring_s: float = 1.0  # "ringing" → answer, or → no-answer / busy
    talk_s: float = 600.0  # longest a connected call lasts before the customer hangs up
    amd_s: float = 0.5  # answer → AMD verdict (only when machine_detection is on)
    play_s: float = 0.5  # how long TwiML without <Dial> takes to "play" before the call ends
    fetch_twiml: bool = True  # fetch twiml_url on answer, as Twilio does
    duplicate_callbacks: bool = False  # post every status callback twice (tests of dedup)


@dataclass(frozen=True, slots=True)
class SmsPlan:
    delivered: bool = True  # False: "undelivered" with ``error_code``
    sent_s: float = 0.2
    delivered_s: float = 0.5
    error_code: int = 30003  # Twilio: unreachable destination handset


class CallScript:
    """Chooses a :class:`CallPlan` / :class:`SmsPlan` per number: override → last digit → default.

    ``override`` / ``undeliverable`` / ``unsubscribed`` are mutable registries for tests; the rest is
    fixed at construction.
    """

    def __init__(
        self,
        default: CallPlan | None = None,
        *,
        by_last_digit: Mapping[str, CallPlan] | None = None,
        sms: SmsPlan | None = None,
        undeliverable: Iterable[str] = (),
        unsubscribed: Iterable[str] = (),
    ) -> None:
        self.default = default or CallPlan()
        self.by_last_digit: dict[str, CallPlan] = dict(by_last_digit or {})
        self.sms = sms or SmsPlan()
        self.overrides: dict[str, CallPlan] = {}
        self.undeliverable: set[str] = set(undeliverable)  # SMS end "undelivered"
        self.unsubscribed: set[str] = set(unsubscribed)  # SMS refused with 21610, as after STOP

    @classmethod
    def standard(cls, default: CallPlan | None = None) -> CallScript:
        """The demo mix: numbers ending 7 ring out, 8 are busy, 9 reach voicemail; others answer."""
        base = default or CallPlan()
        return cls(
            base,
            by_last_digit={
                "7": replace(base, outcome=CallOutcome.NO_ANSWER, ring_s=max(base.ring_s, 3.0)),
                "8": replace(base, outcome=CallOutcome.BUSY),
                "9": replace(base, outcome=CallOutcome.MACHINE, talk_s=min(base.talk_s, 30.0)),
            },
        )

    def override(self, number: str, plan: CallPlan) -> None:
        self.overrides[number] = plan

    def plan_for(self, number: str) -> CallPlan:
        if number in self.overrides:
            return self.overrides[number]
        last = number[-1:] if number[-1:].isdigit() else ""
        return self.by_last_digit.get(last, self.default)

    def sms_plan_for(self, number: str) -> SmsPlan:
        return replace(self.sms, delivered=False) if number in self.undeliverable else self.sms


@dataclass(eq=False)
class SimulatedCall:
    sid: str
    to: str
    from_: str
    twiml_url: str
    status_callback: str
    machine_detection: bool
    plan: CallPlan
    status: str = "queued"
    answered_at: float | None = None
    duration_s: int = 0
    callbacks: list[dict[str, str]] = field(default_factory=list)  # as posted, in order
    twiml: list[str] = field(default_factory=list)  # every TwiML document fetched
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    _hangup: asyncio.Event = field(default_factory=asyncio.Event)
    _redirect: asyncio.Event = field(default_factory=asyncio.Event)
    _redirect_url: str | None = None
    _sequence: int = 0


@dataclass(eq=False)
class SimulatedSms:
    sid: str
    to: str
    from_: str
    body: str
    status_callback: str
    plan: SmsPlan
    status: str = "queued"
    callbacks: list[dict[str, str]] = field(default_factory=list)
    done: asyncio.Event = field(default_factory=asyncio.Event)


class SimulatedTelephony:
    """:class:`Telephony` with no Twilio: see the module docstring for how calls unfold."""

    def __init__(self, settings: Settings, http: httpx.AsyncClient, script: CallScript | None = None) -> None:
        self._settings = settings
        self._http = http
        self.script = script or CallScript()
        self.calls: OrderedDict[str, SimulatedCall] = OrderedDict()
        self.messages: OrderedDict[str, SimulatedSms] = OrderedDict()
        self._tasks: set[asyncio.Task[None]] = set()

    # --- Telephony -----------------------------------------------------------------------------

    async def place_call(
        self,
        *,
        to: str,
        from_: str,
        twiml_url: str,
        status_callback: str,
        machine_detection: bool,
        idempotency_key: str,
    ) -> str:
        sid = _sid("CA", f"call:{idempotency_key}")
        if sid in self.calls:  # a retried activity: the same call, not a second one
            return sid
        _check_e164(to, "place call")
        call = SimulatedCall(
            sid=sid,
            to=to,
            from_=from_,
            twiml_url=twiml_url,
            status_callback=status_callback,
            machine_detection=machine_detection,
            plan=self.script.plan_for(to),
        )
        _remember(self.calls, sid, call)
        self._spawn(self._run_call(call))
        log.info("simulated call %s to %s: %s", sid, mask_phone(to), call.plan.outcome)
        return sid

    async def find_call(self, *, to: str, from_: str, since: datetime, exclude: frozenset[str]) -> str | None:
        # The simulated carrier lives in this process: another process's calls died with it, and a
        # re-dial here with the same idempotency key is the same call (its sid derives from the key).
        return None

    async def find_sms(self, *, to: str, since: datetime, digest: str) -> SmsSent | None:
        return None

    async def hangup(self, call_sid: str) -> None:
        call = self.calls.get(call_sid)
        if call is None:
            log.warning("hangup of unknown simulated call %s (placed by another process?)", call_sid)
            return
        call._hangup.set()

    async def redirect(self, call_sid: str, *, twiml_url: str) -> None:
        call = self.calls.get(call_sid)
        if call is None:
            raise TelephonyError(f"redirect call: no call {call_sid}", code=20404, status=404, retryable=False)
        if call.ended.is_set():
            raise TelephonyError(
                "redirect call: Call is not in-progress. Cannot redirect.",
                code=21220,
                status=400,
                retryable=False,
            )
        call._redirect_url = twiml_url
        call._redirect.set()

    async def send_sms(self, *, to: str, body: str, status_callback: str, idempotency_key: str) -> SmsSent:
        sid = _sid("SM", f"sms:{idempotency_key}")
        if (known := self.messages.get(sid)) is not None:
            return SmsSent(sid=sid, status=known.status)
        _check_e164(to, "send SMS")
        if to in self.script.unsubscribed:
            raise TelephonyError(
                "send SMS: Attempt to send to unsubscribed recipient", code=21610, status=400, retryable=False
            )
        sms = SimulatedSms(
            sid=sid,
            to=to,
            from_=self._settings.caller_id,
            body=body,
            status_callback=status_callback,
            plan=self.script.sms_plan_for(to),
        )
        _remember(self.messages, sid, sms)
        self._spawn(self._run_sms(sms))
        log.info("simulated SMS %s to %s", sid, mask_phone(to))
        return SmsSent(sid=sid, status="queued")

    async def aclose(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        # A task cancelled before it first ran never reached its own clean-up.
        for call in self.calls.values():
            call.ended.set()
        for sms in self.messages.values():
            sms.done.set()

    # --- For tests and the demo ------------------------------------------------------------------

    async def wait_ended(self, call_sid: str, within_s: float = 10.0) -> SimulatedCall:
        """The call once its final status callback has been posted."""
        call = self.calls[call_sid]
        await asyncio.wait_for(call.ended.wait(), within_s)
        return call

    async def wait_sms_done(self, sid: str, within_s: float = 10.0) -> SimulatedSms:
        sms = self.messages[sid]
        await asyncio.wait_for(sms.done.wait(), within_s)
        return sms

    # --- The call, step by step ----------------------------------------------------------------

    async def _run_call(self, call: SimulatedCall) -> None:
        plan = call.plan
        try:
            # Twilio reports "initiated" only to those who ask (twilio.CALL_STATUS_EVENTS does not).
            if await self._pause(call, plan.initiated_s):
                return await self._end(call, "canceled")
            if plan.outcome is CallOutcome.FAILED:
                return await self._end(call, "failed")
            if plan.outcome is CallOutcome.BUSY:
                # A busy line never rings.
                if await self._pause(call, plan.ring_s / 2):
                    return await self._end(call, "canceled")
                return await self._end(call, "busy")
            await self._status(call, "ringing")
            if await self._pause(call, plan.ring_s):
                return await self._end(call, "canceled")
            if plan.outcome is CallOutcome.NO_ANSWER:
                return await self._end(call, "no-answer")
            await self._talk(call)
        except asyncio.CancelledError:
            call.ended.set()
            raise

    async def _talk(self, call: SimulatedCall) -> None:
        plan = call.plan
        call.answered_at = time.monotonic()
        await self._status(call, "in-progress")
        if call.machine_detection:
            self._spawn(self._post_amd(call))
        deadline = call.answered_at + plan.talk_s
        url: str | None = call._redirect_url or call.twiml_url
        call._redirect.clear()
        while True:
            keeps_line = True
            if url and plan.fetch_twiml:
                document = await self._fetch_twiml(call, url)
                # No <Dial>: the message plays and the call ends. A failed fetch ends it too — Twilio
                # says "an application error has occurred" and hangs up.
                keeps_line = document is not None and "<Dial" in document
            wait = deadline - time.monotonic() if keeps_line else min(plan.play_s, deadline - time.monotonic())
            event = await self._wait_event(call, max(wait, 0.0), redirects=True)
            if event == "redirect":
                url = call._redirect_url
                call._redirect.clear()
                continue
            return await self._end(call, "completed")

    async def _post_amd(self, call: SimulatedCall) -> None:
        # Twilio posts the asynchronous AMD verdict to AsyncAmdStatusCallback (we give it the status
        # URL): no CallStatus, just the verdict.
        await asyncio.sleep(call.plan.amd_s)
        if call.ended.is_set():
            return
        params = {
            "AccountSid": self._settings.twilio_account_sid,
            "CallSid": call.sid,
            "AnsweredBy": _answered_by(call),
            "MachineDetectionDuration": str(int(call.plan.amd_s * 1000)),
        }
        await self._post(call.status_callback, params, call.callbacks, call.plan.duplicate_callbacks)

    async def _end(self, call: SimulatedCall, status: str) -> None:
        if call.answered_at is not None:
            call.duration_s = math.ceil(time.monotonic() - call.answered_at)
        await self._status(call, status)
        call.ended.set()
        log.info("simulated call %s ended: %s after %ss", call.sid, status, call.duration_s)

    async def _status(self, call: SimulatedCall, status: str) -> None:
        call.status = status
        params = self._call_params(call)
        params["CallbackSource"] = "call-progress-events"
        params["SequenceNumber"] = str(call._sequence)
        params["Timestamp"] = _rfc2822_now()
        call._sequence += 1
        if status in {"completed", "busy", "no-answer", "failed", "canceled"}:
            params["CallDuration"] = str(call.duration_s)
            params["Duration"] = str(math.ceil(call.duration_s / 60))
        await self._post(call.status_callback, params, call.callbacks, call.plan.duplicate_callbacks)

    async def _fetch_twiml(self, call: SimulatedCall, url: str) -> str | None:
        params = self._call_params(call)
        response = await self._send(url, params)
        if response is None:
            return None
        call.twiml.append(response.text)
        return response.text

    def _call_params(self, call: SimulatedCall) -> dict[str, str]:
        params = {
            "AccountSid": self._settings.twilio_account_sid,
            "ApiVersion": API_VERSION,
            "CallSid": call.sid,
            "CallStatus": call.status,
            "Called": call.to,
            "Caller": call.from_,
            "Direction": "outbound-api",
            "From": call.from_,
            "To": call.to,
        }
        if call.machine_detection and call.answered_at is not None and call.status != "in-progress":
            params["AnsweredBy"] = _answered_by(call)
        return params

    # --- The SMS ---------------------------------------------------------------------------------

    async def _run_sms(self, sms: SimulatedSms) -> None:
        try:
            await self._sms_status(sms, "queued")
            await asyncio.sleep(sms.plan.sent_s)
            await self._sms_status(sms, "sent")
            await asyncio.sleep(sms.plan.delivered_s)
            await self._sms_status(sms, "delivered" if sms.plan.delivered else "undelivered")
        finally:
            sms.done.set()

    async def _sms_status(self, sms: SimulatedSms, status: str) -> None:
        sms.status = status
        params = {
            "AccountSid": self._settings.twilio_account_sid,
            "ApiVersion": API_VERSION,
            "From": sms.from_,
            "To": sms.to,
            "MessageSid": sms.sid,
            "SmsSid": sms.sid,
            "MessageStatus": status,
            "SmsStatus": status,
        }
        if status == "undelivered":
            params["ErrorCode"] = str(sms.plan.error_code)
        await self._post(sms.status_callback, params, sms.callbacks, duplicate=False)

    # --- Plumbing --------------------------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        # Keep a reference: the event loop holds tasks weakly, and an unreferenced task can vanish.
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _pause(self, call: SimulatedCall, seconds: float) -> bool:
        """Sleep, unless hung up first. True when the call was hung up."""
        return await self._wait_event(call, seconds, redirects=False) == "hangup"

    async def _wait_event(self, call: SimulatedCall, seconds: float, *, redirects: bool) -> str | None:
        """Wait up to ``seconds`` for a hangup (or a redirect): "hangup", "redirect" or None."""
        if call._hangup.is_set():
            return "hangup"
        waiters = [asyncio.ensure_future(call._hangup.wait())]
        if redirects:
            # Before answer a redirect only changes which TwiML is fetched on answer.
            waiters.append(asyncio.ensure_future(call._redirect.wait()))
        try:
            done, _ = await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
        if not done:
            return None
        # Hangup wins over a redirect that arrived in the same instant.
        return "hangup" if call._hangup.is_set() else "redirect"

    async def _post(self, url: str, params: dict[str, str], record: list[dict[str, str]], duplicate: bool) -> None:
        record.append(dict(params))
        for _ in range(2 if duplicate else 1):
            await self._send(url, params)

    async def _send(self, url: str, params: dict[str, str]) -> httpx.Response | None:
        headers = {
            "X-Twilio-Signature": sign(self._settings, url, params),
            # Twilio's own idempotency header for webhooks: the same event always carries the same token.
            "I-Twilio-Idempotency-Token": hashlib.sha256(repr(sorted(params.items())).encode()).hexdigest()[:32],
            "User-Agent": "TwilioProxy/1.1",
        }
        try:
            response = await self._http.post(url, data=params, headers=headers)
        except httpx.HTTPError as exc:
            # Twilio does not retry a failed status callback either; the session's timeouts cover it.
            log.warning("simulated webhook to %s failed: %s", url, type(exc).__name__)
            return None
        if response.status_code >= 400:
            log.warning("simulated webhook to %s answered %s", url, response.status_code)
            return None
        return response


def _answered_by(call: SimulatedCall) -> str:
    return "machine_start" if call.plan.outcome is CallOutcome.MACHINE else "human"


def _sid(prefix: str, key: str) -> str:
    """A well-formed Twilio sid (prefix + 32 lowercase hex) derived from the idempotency key."""
    return prefix + hashlib.sha256(key.encode()).hexdigest()[:32]


def _check_e164(number: str, operation: str) -> None:
    if not _E164.match(number):
        # The same code and retryability Twilio gives, so callers handle both modes alike.
        raise TelephonyError(f"{operation}: Invalid 'To' Phone Number", code=21211, status=400, retryable=False)


def _remember(history: OrderedDict[str, V], key: str, value: V) -> None:
    history[key] = value
    while len(history) > HISTORY_SIZE:
        history.popitem(last=False)


def _rfc2822_now() -> str:
    return format_datetime(datetime.now(UTC))


def telephony_for(settings: Settings, http: httpx.AsyncClient, script: CallScript | None = None) -> Telephony:
    """The :class:`Telephony` for ``settings.telephony_mode``. ``http`` carries the simulator's
    webhooks; ``script`` defaults to :meth:`CallScript.standard` (the demo mix)."""
    if settings.telephony_mode == TelephonyMode.TWILIO:
        return TwilioTelephony(settings)
    return SimulatedTelephony(settings, http, script or CallScript.standard())
