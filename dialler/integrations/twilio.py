"""Placing calls and sending SMS: the :class:`Telephony` interface and its one implementation.

:class:`TwilioTelephony` is the real ``twilio`` SDK, and the product has no other telephony. Its REST
base can be pointed elsewhere (``twilio_api_base_url``): in development and tests, at the Twilio
emulator (``devstack/twilio_emulator``, its own process), which answers in Twilio's wire format and
posts Twilio's signed webhooks, so every call and text takes the production code path.

Callers (activities) get a :class:`TelephonyError` for every failure and decide on retries with
``is_retryable``: Temporal retries an activity only when retrying can help.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Protocol, TypeVar
from urllib.parse import urlsplit, urlunsplit

import requests
from twilio.base.exceptions import TwilioRestException, TwilioServiceException
from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client

from dialler.config import Settings
from dialler.integrations.masking import mask_phone, mask_phones_in

__all__ = [
    "CALL_STATUS_EVENTS",
    "CarrierCall",
    "RebasedHttpClient",
    "SmsSent",
    "Telephony",
    "TelephonyError",
    "TwilioTelephony",
    "twilio_client",
]

log = logging.getLogger(__name__)

# The progress events the call session acts on, so that it sees ringing and answer as they happen
# (Twilio sends only ``completed`` unless asked). Not ``initiated``: the session is already dialling
# when Calls.create returns, and each callback costs a request, a signal and a workflow task.
CALL_STATUS_EVENTS: Final = ("ringing", "answered", "completed")
# Twilio answers in well under a second; a request that takes longer than this is treated as lost
# (retryable) rather than left to block an activity slot.
DEFAULT_TIMEOUT_S: Final = 15.0
# Twilio's REST API has no idempotency key for Calls or Messages. What keeps a retry (on any worker)
# from ringing or texting twice is the durable record and reconciliation in dialler.outbound.attempts;
# this memo only spares a same-process retry a round trip. Bounded: it is a memo, not state.
# How many of the latest calls or texts to one number reconciliation reads (newest first).
RECONCILE_PAGE: Final = 50
IDEMPOTENCY_MEMO_SIZE: Final = 10_000
# "Call is not in-progress" and "not found": the call has already ended, which is what hangup wants.
_ALREADY_ENDED_CODES: Final = frozenset({21220, 20404})
_ANSWERED_LEG: Final = frozenset({"in-progress", "completed"})
# 429 Too Many Requests is Twilio saying "later", not "never".
_RETRYABLE_4XX: Final = frozenset({408, 429})

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class SmsSent:
    sid: str
    status: str


@dataclass(frozen=True, slots=True)
class CarrierCall:
    """A call as the carrier has it now: ``status`` is Twilio's CallStatus (queued, ringing,
    in-progress, completed, busy, no-answer, failed, canceled), ``duration_s`` its length once it
    has ended, ``answered_by`` the answering-machine verdict when detection ran."""

    sid: str
    status: str
    duration_s: int | None = None
    answered_by: str | None = None


class TelephonyError(Exception):
    """A failed Twilio operation. ``str()`` never contains a secret or a whole phone number.

    ``code`` is Twilio's error code when Twilio answered (e.g. 21211 invalid number, 21610 recipient
    unsubscribed, 20003 authentication), ``status`` the HTTP status; both are ``None`` when Twilio
    could not be reached.
    """

    def __init__(self, message: str, *, code: int | None, status: int | None, retryable: bool) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status
        self.retryable = retryable

    @property
    def is_retryable(self) -> bool:
        return self.retryable

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only constructor: teach pickle (multiprocessing, some test runners) to rebuild it.
        return (_rebuild_error, (self.message, self.code, self.status, self.retryable))


def _rebuild_error(message: str, code: int | None, status: int | None, retryable: bool) -> TelephonyError:
    return TelephonyError(message, code=code, status=status, retryable=retryable)


class Telephony(Protocol):
    """Outbound calls and SMS. Every method is safe to retry with the same ``idempotency_key``."""

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
        """Start an outbound call to ``to`` (E.164); Twilio fetches ``twiml_url`` on answer.

        Returns the call sid."""
        ...

    async def find_call(self, *, to: str, from_: str, since: datetime, exclude: frozenset[str]) -> str | None:
        """The sid of the earliest call to ``to`` from ``from_`` the carrier created at or after ``since``,
        other than those in ``exclude``; None when it has none (a request that never reached it)."""
        ...

    async def find_sms(self, *, to: str, since: datetime, digest: str) -> SmsSent | None:
        """The earliest text to ``to`` from our number created at or after ``since`` whose body's SHA-256
        is ``digest``; None when the carrier has none."""
        ...

    async def fetch_call(self, call_sid: str) -> CarrierCall | None:
        """The call as the carrier has it now (what its status callbacks would have said); None when
        the carrier has no such call."""
        ...

    async def agent_put_through(self, call_sid: str) -> bool:
        """Whether an agent's phone answered the call's bridge: one of its child legs (``<Dial><Client>``)
        was answered. False when none was, or the carrier has no such call."""
        ...

    async def hangup(self, call_sid: str) -> None:
        """End the call whatever its state. A call that has already ended is not an error."""
        ...

    async def redirect(self, call_sid: str, *, twiml_url: str) -> None:
        """Make a live call fetch and run new TwiML (e.g. the abandoned-call message)."""
        ...

    async def replace_twiml(self, call_sid: str, twiml: str) -> None:
        """Make a live call run this TwiML now, whatever it was doing (a ``<Dial>`` still ringing ends)."""
        ...

    async def send_sms(self, *, to: str, body: str, status_callback: str, idempotency_key: str) -> SmsSent:
        """Queue an SMS to ``to`` (E.164); delivery status arrives at ``status_callback``."""
        ...

    async def aclose(self) -> None:
        """Release connections and background work."""
        ...


class RebasedHttpClient(TwilioHttpClient):
    """Sends every Twilio request to another scheme and host (the Twilio emulator in development and tests).

    The SDK builds absolute ``https://<product>.twilio.com/...`` URLs per product; rewriting at the
    HTTP layer covers Calls, Messages and any other resource, which ``client.api.base_url`` does not.
    A path in ``base_url`` is kept as a prefix.
    """

    def __init__(self, base_url: str, *, timeout: float = DEFAULT_TIMEOUT_S) -> None:
        super().__init__(timeout=timeout)
        base = urlsplit(base_url)
        if not base.scheme or not base.netloc:
            raise ValueError("twilio_api_base_url must be an absolute URL such as http://127.0.0.1:4010")
        self._scheme = base.scheme
        self._netloc = base.netloc
        self._prefix = base.path.rstrip("/")

    def rebase(self, url: str) -> str:
        parts = urlsplit(url)
        return urlunsplit(parts._replace(scheme=self._scheme, netloc=self._netloc, path=self._prefix + parts.path))

    def request(  # type: ignore[override]
        self,
        method: str,
        url: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
        allow_redirects: bool = False,
    ) -> Response:
        return super().request(
            method,
            self.rebase(url),
            params=params,
            data=data,
            headers=headers,
            auth=auth,
            timeout=timeout,
            allow_redirects=allow_redirects,
        )


def twilio_client(settings: Settings, *, timeout: float = DEFAULT_TIMEOUT_S) -> Client:
    """A REST client authenticated with the API key (Twilio's advice for servers; the auth token
    is only used to check webhook signatures), rebased when ``twilio_api_base_url`` is set."""
    http_client: TwilioHttpClient
    if settings.twilio_api_base_url:
        http_client = RebasedHttpClient(settings.twilio_api_base_url, timeout=timeout)
    else:
        http_client = TwilioHttpClient(timeout=timeout)
    if settings.twilio_api_key_sid:
        username, password = settings.twilio_api_key_sid, settings.twilio_api_key_secret.get_secret_value()
    else:
        username, password = settings.twilio_account_sid, settings.twilio_auth_token.get_secret_value()
    return Client(
        username=username,
        password=password,
        account_sid=settings.twilio_account_sid,
        http_client=http_client,
    )


class TwilioTelephony:
    """:class:`Telephony` on the real Twilio SDK. The SDK blocks, so each call runs in a thread."""

    def __init__(self, settings: Settings, *, timeout: float = DEFAULT_TIMEOUT_S) -> None:
        self._settings = settings
        self._client = twilio_client(settings, timeout=timeout)
        self._memo: OrderedDict[str, str] = OrderedDict()

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
        key = f"call:{idempotency_key}"
        if (known := self._memo.get(key)) is not None:
            return known
        amd: dict[str, str] = {}
        if machine_detection:
            # Asynchronous AMD: the customer hears the agent at once while detection runs; the verdict
            # (AnsweredBy) is posted to the same status webhook. Synchronous AMD would keep a human in
            # silence for seconds, which counts against the 2-second abandoned-call rule.
            amd = {
                "machine_detection": "Enable",
                "async_amd": "true",
                "async_amd_status_callback": status_callback,
                "async_amd_status_callback_method": "POST",
            }
        # What Twilio plays when it cannot fetch ``twiml_url`` at the answer: the information message,
        # from outside the API, rather than its own apology to a customer left with nobody.
        fallback: dict[str, str] = {}
        if self._settings.voice_fallback_url:
            fallback = {"fallback_url": self._settings.voice_fallback_url, "fallback_method": "POST"}
        call = await self._run(
            "place call",
            lambda: self._client.calls.create(
                to=to,
                from_=from_,
                url=twiml_url,
                method="POST",
                status_callback=status_callback,
                status_callback_event=list(CALL_STATUS_EVENTS),
                status_callback_method="POST",
                **amd,
                **fallback,
            ),
        )
        sid = str(call.sid)
        self._remember(key, sid)
        log.info("placed call %s to %s (amd=%s)", sid, mask_phone(to), machine_detection)
        return sid

    async def find_call(self, *, to: str, from_: str, since: datetime, exclude: frozenset[str]) -> str | None:
        # Twilio cannot filter calls on their creation time (StartTime is empty until a queued call is
        # dialled), so the newest calls to the number are read and filtered here.
        calls = await self._run("list calls", lambda: self._client.calls.list(to=to, from_=from_, limit=RECONCILE_PAGE))
        # Only calls placed through the REST API (a browser phone's call to the number is a child leg).
        ours = [
            c
            for c in calls
            if c.direction == "outbound-api"
            and c.date_created is not None
            and c.date_created >= since
            and c.sid not in exclude
        ]
        if not ours:
            return None
        earliest = min(ours, key=lambda c: c.date_created)
        log.info("found call %s to %s placed by an earlier try", earliest.sid, mask_phone(to))
        return str(earliest.sid)

    async def find_sms(self, *, to: str, since: datetime, digest: str) -> SmsSent | None:
        messages = await self._run(
            "list messages",
            lambda: self._client.messages.list(to=to, from_=self._settings.caller_id, limit=RECONCILE_PAGE),
        )
        ours = [
            m
            for m in messages
            if m.date_created is not None
            and m.date_created >= since
            and hashlib.sha256((m.body or "").encode()).hexdigest() == digest
        ]
        if not ours:
            return None
        earliest = min(ours, key=lambda m: m.date_created)
        log.info("found SMS %s to %s sent by an earlier try", earliest.sid, mask_phone(to))
        return SmsSent(sid=str(earliest.sid), status=str(earliest.status))

    async def fetch_call(self, call_sid: str) -> CarrierCall | None:
        try:
            call = await self._run("fetch call", lambda: self._client.calls(call_sid).fetch())
        except TelephonyError as exc:
            if exc.status == 404:
                return None
            raise
        # Only the status and its facts: the resource also names both numbers, which stay here.
        duration = str(call.duration or "")
        return CarrierCall(
            sid=str(call.sid),
            status=str(call.status),
            duration_s=int(duration) if duration.isdigit() else None,
            answered_by=str(call.answered_by) if call.answered_by else None,
        )

    async def agent_put_through(self, call_sid: str) -> bool:
        legs = await self._run(
            "list call legs", lambda: self._client.calls.list(parent_call_sid=call_sid, limit=RECONCILE_PAGE)
        )
        # A client leg that was answered is in progress or completed; one that rang out is no-answer,
        # busy, canceled or failed. Customers' numbers are never clients.
        return any(str(leg.to or "").startswith("client:") and str(leg.status) in _ANSWERED_LEG for leg in legs)

    async def hangup(self, call_sid: str) -> None:
        try:
            # ``completed`` ends a call in any state; ``canceled`` would leave an answered call up.
            await self._run("hang up", lambda: self._client.calls(call_sid).update(status="completed"))
        except TelephonyError as exc:
            if exc.code not in _ALREADY_ENDED_CODES:
                raise
            log.info("hangup of %s: already ended (code %s)", call_sid, exc.code)
            return
        log.info("hung up call %s", call_sid)

    async def redirect(self, call_sid: str, *, twiml_url: str) -> None:
        await self._run("redirect call", lambda: self._client.calls(call_sid).update(url=twiml_url, method="POST"))
        log.info("redirected call %s", call_sid)

    async def replace_twiml(self, call_sid: str, twiml: str) -> None:
        await self._run("replace call TwiML", lambda: self._client.calls(call_sid).update(twiml=twiml))
        log.info("replaced the TwiML of call %s", call_sid)

    async def send_sms(self, *, to: str, body: str, status_callback: str, idempotency_key: str) -> SmsSent:
        key = f"sms:{idempotency_key}"
        if (known := self._memo.get(key)) is not None:
            return SmsSent(sid=known, status="queued")
        message = await self._run(
            "send SMS",
            lambda: self._client.messages.create(
                to=to, from_=self._settings.caller_id, body=body, status_callback=status_callback
            ),
        )
        sent = SmsSent(sid=str(message.sid), status=str(message.status))
        self._remember(key, sent.sid)
        log.info("sent SMS %s to %s (%s)", sent.sid, mask_phone(to), sent.status)
        return sent

    async def aclose(self) -> None:
        session = getattr(self._client.http_client, "session", None)
        if session is not None:
            session.close()

    def _remember(self, key: str, sid: str) -> None:
        self._memo[key] = sid
        self._memo.move_to_end(key)
        while len(self._memo) > IDEMPOTENCY_MEMO_SIZE:
            self._memo.popitem(last=False)

    async def _run(self, operation: str, fn: Callable[[], T]) -> T:
        error: TelephonyError | None = None
        try:
            return await asyncio.to_thread(fn)
        except (TwilioRestException, TwilioServiceException) as exc:
            error = _from_twilio(operation, exc)
        except requests.Timeout:
            error = TelephonyError(
                f"{operation}: Twilio did not answer in time", code=None, status=None, retryable=True
            )
        except requests.ConnectionError:
            error = TelephonyError(f"{operation}: Twilio could not be reached", code=None, status=None, retryable=True)
        # Raised outside the ``except`` blocks so the SDK exception is not chained: its text quotes
        # the rejected phone number and would travel with the error into logs and Temporal history.
        assert error is not None
        raise error


def _from_twilio(operation: str, exc: TwilioRestException | TwilioServiceException) -> TelephonyError:
    status = int(exc.status) if exc.status is not None else None
    code = int(exc.code) if exc.code is not None else None
    detail = (exc.detail or exc.title) if isinstance(exc, TwilioServiceException) else exc.msg
    retryable = status is None or status >= 500 or status in _RETRYABLE_4XX
    message = f"{operation}: Twilio {status} error {code}: {mask_phones_in(str(detail or ''))}"
    return TelephonyError(message, code=code, status=status, retryable=retryable)


TWILIO_API_BASE: Final = "https://api.twilio.com"


def recording_media_url(settings: Settings, recording_sid: str) -> str:
    """The media of a recording on the account's REST API (rebased like every other request). It is
    fetched server-side with the account's credentials, never handed to a browser."""
    base = (settings.twilio_api_base_url or TWILIO_API_BASE).rstrip("/")
    return f"{base}/2010-04-01/Accounts/{settings.twilio_account_sid}/Recordings/{recording_sid}.wav"


def recording_credentials(settings: Settings) -> tuple[str, str]:
    """Basic auth for recording media: the API key (as for every other request) or the account."""
    if settings.twilio_api_key_sid:
        return settings.twilio_api_key_sid, settings.twilio_api_key_secret.get_secret_value()
    return settings.twilio_account_sid, settings.twilio_auth_token.get_secret_value()


async def redact_message_body(settings: Settings, message_sid: str) -> bool:
    """Blank a text's body at Twilio (``Body=""``, Twilio's redaction). False when Twilio no longer has
    the message. Idempotent: redacting a redacted body changes nothing."""
    client = twilio_client(settings)
    try:
        await asyncio.to_thread(lambda: client.messages(message_sid).update(body=""))
        return True
    except TwilioRestException as exc:
        if exc.status == 404:
            return False
        raise _from_twilio("redact message", exc) from None


async def delete_recording(settings: Settings, recording_sid: str) -> bool:
    """Delete a recording at Twilio. False when Twilio no longer has it (deleted before: a retry)."""
    client = twilio_client(settings)
    try:
        return bool(await asyncio.to_thread(lambda: client.recordings(recording_sid).delete()))
    except TwilioRestException as exc:
        if exc.status == 404:
            return False
        raise _from_twilio("delete recording", exc) from None
