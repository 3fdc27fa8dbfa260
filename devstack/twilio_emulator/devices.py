"""Browser phones registered with the emulator: the part of Twilio's Voice SDK signalling that an
agent's screen needs (``web/static/js/emulator_device.js`` speaks it).

A browser registers with the access token the product issues (``GET /api/v1/voice/token``), checked
as Twilio checks it: an HS256 JWT signed with the secret of one of the account's API keys (its
``iss``), for this account (``sub``), not expired, with a Voice grant that allows incoming calls; the
identity is the token's. From then on the browser long-polls for its events (``incoming``,
``cancel``, ``disconnect``); each poll is its heartbeat. A browser that stops polling — its tab
closed, its network gone — is offline :data:`HEARTBEAT_GRACE_S` after its last poll, as Twilio
drops a device whose signalling socket closed. A ``<Dial><Client>`` to an identity with a live
browser rings that browser (``engine._run_device``); to one whose browser has gone, nothing rings
(offline); identities that never registered a browser keep their script (``scripts.DeviceScript``).
"""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass, field
from typing import Any, Final

import jwt

__all__ = ["HEARTBEAT_GRACE_S", "BrowserDevice", "BrowserDevices", "TokenRefused", "check_token"]

# Between two polls a browser is away for a moment (the answer travels, the next request starts):
# only a longer silence means it has gone.
HEARTBEAT_GRACE_S: Final = 4.0
# How long one poll waits for an event before answering empty (the browser asks again at once).
POLL_WAIT_S: Final = 15.0


class TokenRefused(Exception):
    """Twilio's access-token errors: 20101 invalid, 20104 expired, 20106 no grant for this."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def check_token(token: str, *, account_sid: str, api_keys: dict[str, str]) -> str:
    """The identity of a valid Voice access token (see the module docstring); TokenRefused otherwise."""
    try:
        unverified = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        raise TokenRefused(20101, "Invalid Access Token") from None
    secret = api_keys.get(str(unverified.get("iss", "")))
    if secret is None:
        raise TokenRefused(20101, "Invalid Access Token issuer/subject")
    try:
        claims = jwt.decode(token, secret, algorithms=["HS256"], options={"require": ["exp", "iss", "sub"]})
    except jwt.ExpiredSignatureError:
        raise TokenRefused(20104, "Access Token expired or expiration date invalid") from None
    except jwt.PyJWTError:
        raise TokenRefused(20101, "Invalid Access Token signature") from None
    if claims["sub"] != account_sid:
        raise TokenRefused(20101, "Invalid Access Token issuer/subject")
    grants = claims.get("grants") or {}
    identity = grants.get("identity")
    voice = grants.get("voice") or {}
    if not identity or not (voice.get("incoming") or {}).get("allow"):
        raise TokenRefused(20106, "Invalid Access Token grants: no incoming Voice grant for an identity")
    return str(identity)


@dataclass(eq=False)
class BrowserDevice:
    identity: str
    device_id: str = field(default_factory=lambda: "DV" + secrets.token_hex(16))
    registered_at: float = field(default_factory=time.monotonic)
    last_seen: float = field(default_factory=time.monotonic)
    polling: int = 0  # polls in flight: a browser waiting on one is there
    destroyed: bool = False  # unregistered by the browser, or replaced by a newer registration
    gone_reason: str = ""  # "destroyed", "replaced", or "unknown" (forgotten by a reset)
    events: list[dict[str, Any]] = field(default_factory=list)
    seq: int = 0
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    call_sid: str | None = None  # the call ringing or connected on this browser

    @property
    def online(self) -> bool:
        if self.destroyed:
            return False
        return self.polling > 0 or time.monotonic() - self.last_seen <= HEARTBEAT_GRACE_S

    def end(self, reason: str) -> None:
        if not self.destroyed:
            self.destroyed, self.gone_reason = True, reason
            self.push("unregistered", reason=reason)

    def push(self, kind: str, **detail: Any) -> None:
        self.seq += 1
        self.events.append({"seq": self.seq, "type": kind, **detail})
        del self.events[:-100]  # a browser that reads nothing does not grow without bound
        self.changed.set()

    def since(self, after: int) -> list[dict[str, Any]]:
        return [e for e in self.events if e["seq"] > after]

    async def wait(self, after: int, seconds: float) -> list[dict[str, Any]]:
        """Events after ``after``, waiting up to ``seconds`` for one."""
        deadline = time.monotonic() + seconds
        while not self.since(after) and not self.destroyed:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), remaining)
            except TimeoutError:
                break
        return self.since(after)

    def to_json(self) -> dict[str, Any]:
        now = time.monotonic()
        return {
            "device_id": self.device_id,
            "online": self.online,
            "registered_s_ago": round(now - self.registered_at, 3),
            "last_seen_s_ago": round(now - self.last_seen, 3),
            "destroyed": self.destroyed,
            "call_sid": self.call_sid,
        }


class BrowserDevices:
    """The latest browser registration of each identity (a newer one replaces it, as a reload does)."""

    def __init__(self) -> None:
        self.by_identity: dict[str, BrowserDevice] = {}

    def register(self, identity: str) -> BrowserDevice:
        old = self.by_identity.get(identity)
        if old is not None:
            old.end("replaced")
        device = BrowserDevice(identity)
        self.by_identity[identity] = device
        return device

    def get(self, identity: str, device_id: str) -> BrowserDevice | None:
        device = self.by_identity.get(identity)
        return device if device is not None and device.device_id == device_id else None

    def of(self, identity: str) -> BrowserDevice | None:
        """The identity's browser, live or gone; None when it never registered one."""
        return self.by_identity.get(identity)

    def reset(self) -> None:
        for device in self.by_identity.values():
            # Forgotten, as by a restart: a poll waiting now answers "unknown", and the browser registers again.
            device.destroyed, device.gone_reason = True, "unknown"
            device.changed.set()
        self.by_identity.clear()
