"""A fake Twilio REST API: the real ``twilio`` SDK talks to it over HTTP and cannot tell.

It answers in Twilio's JSON shapes (resources and errors), checks HTTP basic auth like Twilio
(account sid + auth token, or API key sid + secret), validates the parameters Twilio rejects most
often, and records every request so tests can assert on exactly what the SDK sent::

    fake = FakeTwilio.for_settings(settings).start()      # or: with FakeTwilio(...) as fake:
    settings = settings.model_copy(update={"twilio_api_base_url": fake.url})
    ...
    [req] = fake.requests_to("Calls.json")
    assert req.param("To") == "+447700900123"
    fake.stop()

Knobs: ``fail_next(n, status=500)`` (the next n requests fail), ``delay_next(n, seconds)`` (to force
client timeouts), ``unsubscribed`` (numbers that get 21610 on Messages). Served by uvicorn in a
background thread on a free port (:class:`BackgroundServer`, reusable for any ASGI app).
"""

from __future__ import annotations

import asyncio
import base64
import math
import re
import secrets
import socket
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any, Self
from urllib.parse import parse_qsl

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from dialler.config import Settings

API_VERSION = "2010-04-01"
_E164 = re.compile(r"^\+[1-9]\d{6,14}$")
_ENDED = {"completed", "busy", "no-answer", "failed", "canceled"}
# GSM 03.38 basic set; the extension set costs two septets per character.
_GSM_BASIC = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM_EXTENDED = set("^{}\\[~]|€\f")


class BackgroundServer:
    """An ASGI app served by uvicorn on 127.0.0.1 in a daemon thread; ``url`` once started."""

    def __init__(self, app: Any) -> None:
        self._app = app
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.url = ""

    def start(self) -> Self:
        # Bind first and hand uvicorn the socket: no window in which another process takes the port.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        config = uvicorn.Config(
            self._app,
            log_level="warning",
            access_log=False,
            lifespan="off",
            loop="asyncio",
            timeout_graceful_shutdown=1,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name=f"uvicorn-{port}", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("background uvicorn server did not start")
            time.sleep(0.01)
        self.url = f"http://127.0.0.1:{port}"
        return self

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)
        self._server = self._thread = None


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    params: dict[str, list[str]]  # form body and query string; repeated keys keep every value
    auth: tuple[str, str] | None  # HTTP basic credentials as sent
    headers: dict[str, str]

    def param(self, name: str) -> str | None:
        values = self.params.get(name)
        return values[0] if values else None

    def param_all(self, name: str) -> list[str]:
        return list(self.params.get(name, []))


@dataclass
class _Knobs:
    fail: list[tuple[int, int, str]] = field(default_factory=list)  # (status, code, message) per request
    delay: list[float] = field(default_factory=list)


class FakeTwilio:
    """Calls (create, fetch, update) and Messages (create, fetch) of API 2010-04-01."""

    def __init__(
        self,
        *,
        account_sid: str,
        auth_token: str,
        api_key_sid: str | None = None,
        api_key_secret: str | None = None,
    ) -> None:
        self.account_sid = account_sid
        self._credentials = {(account_sid, auth_token)}
        if api_key_sid and api_key_secret:
            self._credentials.add((api_key_sid, api_key_secret))
        self.requests: list[RecordedRequest] = []
        self.calls: dict[str, dict[str, Any]] = {}
        self.messages: dict[str, dict[str, Any]] = {}
        self.unsubscribed: set[str] = set()
        self._knobs = _Knobs()
        self._lock = threading.Lock()
        self._server = BackgroundServer(self._build_app())

    @classmethod
    def for_settings(cls, settings: Settings) -> FakeTwilio:
        return cls(
            account_sid=settings.twilio_account_sid,
            auth_token=settings.twilio_auth_token.get_secret_value(),
            api_key_sid=settings.twilio_api_key_sid,
            api_key_secret=settings.twilio_api_key_secret.get_secret_value(),
        )

    # --- Lifecycle and knobs ---------------------------------------------------------------------

    @property
    def url(self) -> str:
        return self._server.url

    def start(self) -> Self:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self.calls.clear()
            self.messages.clear()
            self.unsubscribed.clear()
            self._knobs = _Knobs()

    def fail_next(
        self, count: int = 1, *, status: int = 500, code: int = 20500, message: str = "Internal Server Error"
    ) -> None:
        with self._lock:
            self._knobs.fail.extend([(status, code, message)] * count)

    def delay_next(self, count: int = 1, *, seconds: float) -> None:
        with self._lock:
            self._knobs.delay.extend([seconds] * count)

    def requests_to(self, path_suffix: str, method: str = "POST") -> list[RecordedRequest]:
        return [r for r in self.requests if r.method == method and r.path.endswith(path_suffix)]

    # --- The app ---------------------------------------------------------------------------------

    def _build_app(self) -> FastAPI:
        app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
        base = f"/{API_VERSION}/Accounts/{{account}}"

        @app.post(base + "/Calls.json")
        async def create_call(account: str, request: Request) -> JSONResponse:
            req, early = await self._intake(request, account)
            return early or self._create_call(req)

        @app.get(base + "/Calls/{sid}.json")
        async def fetch_call(account: str, sid: str, request: Request) -> JSONResponse:
            _, early = await self._intake(request, account)
            return early or self._found(self.calls.get(sid), request)

        @app.post(base + "/Calls/{sid}.json")
        async def update_call(account: str, sid: str, request: Request) -> JSONResponse:
            req, early = await self._intake(request, account)
            return early or self._update_call(sid, req)

        @app.post(base + "/Messages.json")
        async def create_message(account: str, request: Request) -> JSONResponse:
            req, early = await self._intake(request, account)
            return early or self._create_message(req)

        @app.get(base + "/Messages/{sid}.json")
        async def fetch_message(account: str, sid: str, request: Request) -> JSONResponse:
            _, early = await self._intake(request, account)
            return early or self._found(self.messages.get(sid), request)

        @app.api_route("/{rest:path}", methods=["GET", "POST", "DELETE"])
        async def anything_else(rest: str, request: Request) -> JSONResponse:
            await self._record(request)
            return _error(404, 20404, f"The requested resource /{rest} was not found")

        return app

    async def _record(self, request: Request) -> RecordedRequest:
        # Parsed by hand: Starlette's form parser needs python-multipart, and Twilio only sends
        # application/x-www-form-urlencoded.
        body = (await request.body()).decode()
        params: dict[str, list[str]] = {}
        for key, value in [*request.query_params.multi_items(), *parse_qsl(body, keep_blank_values=True)]:
            params.setdefault(key, []).append(value)
        recorded = RecordedRequest(
            method=request.method,
            path=request.url.path,
            params=params,
            auth=_basic_auth(request.headers.get("authorization")),
            headers=dict(request.headers),
        )
        with self._lock:
            self.requests.append(recorded)
        return recorded

    async def _intake(self, request: Request, account: str) -> tuple[RecordedRequest, JSONResponse | None]:
        """Record, apply the knobs, authenticate: the request, or the error response to send."""
        recorded = await self._record(request)
        with self._lock:
            delay = self._knobs.delay.pop(0) if self._knobs.delay else 0.0
            failure = self._knobs.fail.pop(0) if self._knobs.fail else None
        if delay:
            await asyncio.sleep(delay)
        if failure is not None:
            return recorded, _error(*failure)
        if recorded.auth not in self._credentials:
            response = _error(401, 20003, "Authenticate")
            response.headers["WWW-Authenticate"] = 'Basic realm="Twilio API"'
            return recorded, response
        if account != self.account_sid:
            return recorded, _error(404, 20404, f"The requested resource {request.url.path} was not found")
        return recorded, None

    def _found(self, resource: dict[str, Any] | None, request: Request) -> JSONResponse:
        if resource is None:
            return _error(404, 20404, f"The requested resource {request.url.path} was not found")
        return JSONResponse(resource)

    def _create_call(self, req: RecordedRequest) -> JSONResponse:
        to, from_ = req.param("To") or "", req.param("From") or ""
        if not _callable(to):
            return _error(400, 21211, f"Invalid 'To' Phone Number: {to}")
        if not from_:
            return _error(400, 21213, "No 'From' number is specified")
        if not _callable(from_):
            return _error(400, 21212, f"Invalid 'From' Phone Number: {from_}")
        if not (req.param("Url") or req.param("Twiml") or req.param("ApplicationSid")):
            return _error(400, 21205, "Url parameter is required.")
        sid = "CA" + secrets.token_hex(16)
        now = _now()
        call = {
            "sid": sid,
            "account_sid": self.account_sid,
            "annotation": None,
            "answered_by": None,
            "api_version": API_VERSION,
            "caller_name": None,
            "date_created": now,
            "date_updated": now,
            "direction": "outbound-api",
            "duration": None,
            "end_time": None,
            "forwarded_from": None,
            "from": from_,
            "from_formatted": from_,
            "group_sid": None,
            "parent_call_sid": None,
            "phone_number_sid": "PN" + secrets.token_hex(16),
            "price": None,
            "price_unit": "USD",
            "queue_time": "0",
            "start_time": None,
            "status": "queued",
            "to": to,
            "to_formatted": to,
            "trunk_sid": None,
            "uri": f"/{API_VERSION}/Accounts/{self.account_sid}/Calls/{sid}.json",
            "subresource_uris": {
                name: f"/{API_VERSION}/Accounts/{self.account_sid}/Calls/{sid}/{resource}.json"
                for name, resource in [
                    ("notifications", "Notifications"),
                    ("recordings", "Recordings"),
                    ("payments", "Payments"),
                    ("events", "Events"),
                    ("siprec", "Siprec"),
                    ("streams", "Streams"),
                    ("transcriptions", "Transcriptions"),
                    ("user_defined_message_subscriptions", "UserDefinedMessageSubscriptions"),
                    ("user_defined_messages", "UserDefinedMessages"),
                ]
            },
        }
        with self._lock:
            self.calls[sid] = call
        return JSONResponse(call, status_code=201)

    def _update_call(self, sid: str, req: RecordedRequest) -> JSONResponse:
        call = self.calls.get(sid)
        if call is None:
            return _error(404, 20404, f"The requested resource {req.path} was not found")
        status = req.param("Status")
        if (req.param("Url") or req.param("Twiml")) and call["status"] in _ENDED:
            return _error(400, 21220, "Call is not in-progress. Cannot redirect.")
        if status is not None:
            if status not in {"completed", "canceled"}:
                return _error(400, 21218, f"Invalid Status: {status}")
            if call["status"] not in _ENDED:
                # Like Twilio: an unanswered call that is ended never connected, so it is "canceled".
                answered = call["status"] == "in-progress"
                call["status"] = "completed" if answered and status == "completed" else "canceled"
                call["end_time"] = _now()
        call["date_updated"] = _now()
        return JSONResponse(call)

    def _create_message(self, req: RecordedRequest) -> JSONResponse:
        to, from_ = req.param("To") or "", req.param("From") or ""
        body = req.param("Body") or ""
        if not _E164.match(to):
            return _error(400, 21211, f"The 'To' number {to} is not a valid phone number.")
        if not from_ and not req.param("MessagingServiceSid"):
            return _error(400, 21603, "A 'From' or 'MessagingServiceSid' parameter is required to send a message")
        if not body and not req.param("MediaUrl"):
            return _error(400, 21602, "Message body is required.")
        if len(body) > 1600:
            return _error(400, 21617, "The concatenated message body exceeds the 1600 character limit.")
        if to in self.unsubscribed:
            return _error(400, 21610, "Attempt to send to unsubscribed recipient")
        sid = "SM" + secrets.token_hex(16)
        now = _now()
        message = {
            "sid": sid,
            "account_sid": self.account_sid,
            "api_version": API_VERSION,
            "body": body,
            "date_created": now,
            "date_sent": None,
            "date_updated": now,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": from_ or None,
            "messaging_service_sid": req.param("MessagingServiceSid"),
            "num_media": "0",
            "num_segments": str(sms_segments(body)),
            "price": None,
            "price_unit": "USD",
            "status": "queued",
            "to": to,
            "uri": f"/{API_VERSION}/Accounts/{self.account_sid}/Messages/{sid}.json",
            "subresource_uris": {"media": f"/{API_VERSION}/Accounts/{self.account_sid}/Messages/{sid}/Media.json"},
        }
        with self._lock:
            self.messages[sid] = message
        return JSONResponse(message, status_code=201)


def sms_segments(body: str) -> int:
    """Segments Twilio bills for ``body``: GSM-7 (160, or 153 per part) unless any character needs
    UCS-2 (70, or 67 per part, counted in UTF-16 code units)."""
    if all(ch in _GSM_BASIC or ch in _GSM_EXTENDED for ch in body):
        septets = sum(2 if ch in _GSM_EXTENDED else 1 for ch in body)
        return 1 if septets <= 160 else math.ceil(septets / 153)
    units = len(body.encode("utf-16-le")) // 2
    return 1 if units <= 70 else math.ceil(units / 67)


def _callable(number: str) -> bool:
    return bool(_E164.match(number)) or number.startswith(("client:", "sip:"))


def _error(status: int, code: int, message: str) -> JSONResponse:
    # Twilio's (legacy) error document, which the SDK turns into TwilioRestException.
    return JSONResponse(
        {
            "code": code,
            "message": message,
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status,
        },
        status_code=status,
    )


def _basic_auth(header: str | None) -> tuple[str, str] | None:
    if not header or not header.lower().startswith("basic "):
        return None
    try:
        user, _, password = base64.b64decode(header[6:]).decode().partition(":")
    except ValueError:
        return None
    return user, password


def _now() -> str:
    return format_datetime(datetime.now(UTC))
