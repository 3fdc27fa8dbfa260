"""The browser phone's side of the emulator (``/device/v1``): what the Twilio Voice SDK does over
its signalling socket, as plain HTTP for ``web/static/js/emulator_device.js``.

Every request carries the product's access token (``Authorization: Bearer …``), checked as Twilio
checks it (``devices.check_token``); the identity is the token's, so a browser can answer only
calls to its own ``client:<identity>``. The browser calls the emulator directly, as the SDK calls
Twilio, so these routes answer CORS for the allowed origins (the product's UI).

=========================================  =====================================================
``POST /device/v1/registrations``          register → ``device_id`` (a newer one replaces it)
``DELETE /device/v1/registrations/{id}``   unregister (``Device.destroy``; a closed tab)
``GET …/registrations/{id}/events?after``  long poll (the heartbeat): ``incoming`` (``call_sid``,
                                           ``parameters``), ``cancel``, ``disconnect``,
                                           ``unregistered``; ``registered`` false with
                                           ``reason`` replaced / destroyed / unknown
                                           (forgotten by a restart: register again)
``POST /device/v1/calls/{sid}/accept``     ``Call.accept`` (the agent is on the line)
``POST /device/v1/calls/{sid}/reject``     ``Call.reject`` (``DialCallStatus`` busy)
``POST /device/v1/calls/{sid}/disconnect`` ``Call.disconnect`` (the agent hangs up)
``POST /device/v1/calls/{sid}/mute``       ``Call.mute`` (``{"muted": true}``; on the timeline)
=========================================  =====================================================
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from devstack.twilio_emulator.devices import HEARTBEAT_GRACE_S, POLL_WAIT_S, TokenRefused, check_token
from devstack.twilio_emulator.engine import Emulator

__all__ = ["PREFIX", "DeviceCors", "device_router"]

PREFIX = "/device/v1"
# Without --cors-origin: a UI served from this machine (any port), as a development stack serves it.
_LOOPBACK_ORIGIN = re.compile(r"^http://(127\.0\.0\.1|localhost|\[::1\])(:\d{1,5})?$")
_CORS_HEADERS = {
    "Access-Control-Allow-Methods": "GET, POST, DELETE, OPTIONS",
    "Access-Control-Allow-Headers": "Authorization, Content-Type",
    "Access-Control-Max-Age": "600",
}


class DeviceCors:
    """CORS for the device API only (the REST API and the control API stay same-origin): an allowed
    origin gets its preflight answered and its responses readable. No cookies are involved (the
    access token travels in a header), so no credentials are allowed."""

    def __init__(self, app: ASGIApp, origins: Sequence[str] = ()) -> None:
        self.app = app
        self.origins = frozenset(o.rstrip("/") for o in origins)

    def allowed(self, origin: str) -> bool:
        return origin in self.origins if self.origins else bool(_LOOPBACK_ORIGIN.match(origin))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(PREFIX + "/"):
            await self.app(scope, receive, send)
            return
        origin = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"origin"), None)
        allowed = origin is not None and self.allowed(origin)
        if scope["method"] == "OPTIONS":
            headers = [(b"vary", b"Origin")]
            if allowed:
                assert origin is not None
                headers += [(b"access-control-allow-origin", origin.encode())]
                headers += [(k.lower().encode(), v.encode()) for k, v in _CORS_HEADERS.items()]
            await send({"type": "http.response.start", "status": 204 if allowed else 403, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
            return

        async def send_with_cors(message: Any) -> None:
            if message["type"] == "http.response.start" and allowed:
                assert origin is not None
                message["headers"] = [
                    *message.get("headers", []),
                    (b"access-control-allow-origin", origin.encode()),
                    (b"vary", b"Origin"),
                ]
            await send(message)

        await self.app(scope, receive, send_with_cors)


def _refused(status: int, code: int, message: str) -> JSONResponse:
    return JSONResponse({"code": code, "message": message, "status": status}, status_code=status)


def device_router(em: Emulator) -> APIRouter:
    router = APIRouter(prefix=PREFIX)

    def identity_of(request: Request) -> str | JSONResponse:
        """The token's identity, or Twilio's refusal (401 with its access-token error code)."""
        header = request.headers.get("authorization", "")
        try:
            if not header.lower().startswith("bearer "):
                raise TokenRefused(20101, "Access Token missing")
            return check_token(header[7:].strip(), account_sid=em.account_sid, api_keys=em.api_keys)
        except TokenRefused as exc:
            return _refused(401, exc.code, str(exc))

    @router.post("/registrations")
    async def register(request: Request) -> Response:
        identity = identity_of(request)
        if isinstance(identity, JSONResponse):
            return identity
        device = em.browsers.register(identity)
        body = {
            "device_id": device.device_id,
            "identity": identity,
            "poll_wait_s": POLL_WAIT_S,
            "heartbeat_grace_s": HEARTBEAT_GRACE_S,
        }
        return JSONResponse(body, status_code=201)

    @router.delete("/registrations/{device_id}")
    async def unregister(device_id: str, request: Request) -> Response:
        identity = identity_of(request)
        if isinstance(identity, JSONResponse):
            return identity
        device = em.browsers.get(identity, device_id)
        if device is not None:
            device.end("destroyed")
        return Response(status_code=204)

    @router.get("/registrations/{device_id}/events")
    async def events(device_id: str, request: Request, after: int = 0) -> Response:
        identity = identity_of(request)
        if isinstance(identity, JSONResponse):
            return identity
        device = em.browsers.get(identity, device_id)
        if device is None:
            # Not an error status: the emulator restarted or was reset, and the browser registers again.
            return JSONResponse({"events": [], "registered": False, "reason": "unknown"})
        if device.destroyed:
            return JSONResponse({"events": device.since(after), "registered": False, "reason": device.gone_reason})
        device.polling += 1
        found: list[dict[str, Any]] = []
        try:
            deadline = time.monotonic() + POLL_WAIT_S
            # In short steps, so that a browser that has gone is noticed within a second.
            while time.monotonic() < deadline and not device.destroyed:
                found = await device.wait(after, min(1.0, deadline - time.monotonic()))
                if found or await request.is_disconnected():
                    break
        finally:
            device.polling -= 1
            device.last_seen = time.monotonic()
        return JSONResponse({"events": found, "registered": not device.destroyed, "reason": device.gone_reason})

    @router.post("/calls/{sid}/{action}")
    async def act(sid: str, action: str, request: Request) -> Response:
        identity = identity_of(request)
        if isinstance(identity, JSONResponse):
            return identity
        leg = em.calls.get(sid)
        if leg is None or leg.to != f"client:{identity}":
            return _refused(404, 31404, "No such call to this device.")
        if action in {"accept", "reject"}:
            if leg.decision is None or leg.decision.done() or leg.ended.is_set():
                return _refused(409, 31486, "The call is no longer ringing.")
            leg.decision.set_result(action)
        elif action == "disconnect":
            em.hangup(leg, by="agent")
        elif action == "mute":
            raw = await request.body()
            muted = bool((await request.json()).get("muted", True)) if raw else True
            leg.timeline.add("agent_muted" if muted else "agent_unmuted", leg.label)
        else:
            return _refused(404, 31404, f"Unknown call action {action}.")
        return JSONResponse({"call_sid": sid, "status": leg.status})

    return router
