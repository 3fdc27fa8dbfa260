"""Steps of a journey over the live API, shared by the end-to-end tests."""

from __future__ import annotations

import secrets

import httpx

from dialler.config import Settings
from dialler.integrations.twilio_voice import sign
from tests.support.live_api import eventually

INBOUND = "/api/v1/webhooks/twilio/sms-inbound"


async def in_state(http: httpx.AsyncClient, headers: dict[str, str], session_id: str, state: str) -> bool:
    response = await http.get(f"/api/v1/calls/{session_id}", headers=headers)
    return bool(response.status_code == 200 and response.json()["state"] == state)


async def talk_then_hang_up(http: httpx.AsyncClient, headers: dict[str, str], session_id: str) -> None:
    """Dial, see the (emulated) customer answer, hang up, and see the session in wrap-up."""
    assert (await http.post(f"/api/v1/calls/{session_id}/dial", headers=headers)).status_code == 202
    await eventually(lambda: in_state(http, headers, session_id, "in_progress"))
    assert (await http.post(f"/api/v1/calls/{session_id}/hangup", headers=headers)).status_code == 202
    await eventually(lambda: in_state(http, headers, session_id, "wrap_up"))


async def text_in(http: httpx.AsyncClient, settings: Settings, phone: str, body: str) -> httpx.Response:
    """An inbound text as Twilio posts it: form-encoded, signed over our public URL."""
    params = {
        "AccountSid": settings.twilio_account_sid,
        "MessageSid": "SM" + secrets.token_hex(16),
        "From": phone,
        "To": settings.caller_id,
        "Body": body,
        "NumSegments": "1",
    }
    url = settings.public_base_url.rstrip("/") + INBOUND
    return await http.post(INBOUND, data=params, headers={"X-Twilio-Signature": sign(settings, url, params)})
