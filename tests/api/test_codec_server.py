"""The codec server behind the Temporal UI: supervisors and admins get a history's payloads decoded
(each request audited without the contents), agents get 403, nobody signed in gets 401; the UI's
origin may call it from the browser with its Authorization and X-Namespace headers, others may not."""

from __future__ import annotations

import base64
import json

import httpx
import pytest
from sqlalchemy import select
from temporalio.api.common.v1 import Payload

from dialler.agents.models import Role
from dialler.audit.models import AuditEntry
from dialler.config import Settings
from dialler.runtime import Stores
from dialler.security.codec import data_converter
from tests.support.api_agents import LoginAs

NOTES = "Mrs Tregothnan on 07700 900123 wants a call after 6pm"
UI = "http://127.0.0.1:8233"


def as_json(payload: Payload) -> dict[str, object]:
    return {
        "metadata": {k: base64.b64encode(v).decode() for k, v in payload.metadata.items()},
        "data": base64.b64encode(payload.data).decode(),
    }


async def sealed_notes(settings: Settings) -> dict[str, object]:
    [payload] = await data_converter(settings).encode([{"notes": NOTES}])
    return {"payloads": [as_json(payload)]}


@pytest.mark.parametrize("role", [Role.SUPERVISOR, Role.ADMIN])
async def test_a_supervisor_or_admin_sees_the_notes_and_the_decode_is_audited(
    role: Role, client: httpx.AsyncClient, login_as: LoginAs, settings: Settings, stores: Stores
) -> None:
    who = await login_as(role)
    body = await sealed_notes(settings)
    assert NOTES not in json.dumps(body)

    response = await client.post("/codec/decode", json=body, headers=who.headers | {"X-Namespace": "default"})

    assert response.status_code == 200, response.text
    [decoded] = response.json()["payloads"]
    assert base64.b64decode(decoded["metadata"]["encoding"]) == b"json/plain"
    assert json.loads(base64.b64decode(decoded["data"])) == {"notes": NOTES}
    async with stores.sessions() as session:
        rows = (await session.scalars(select(AuditEntry).where(AuditEntry.action == "temporal.payloads_decoded"))).all()
    assert [(r.actor_agent_id, r.subject_id, r.details) for r in rows] == [
        (who.agent.id, "default", {"payloads": 1, "key_ids": ["dev-1"]})
    ]
    assert "07700" not in json.dumps([r.details for r in rows])


async def test_an_agent_is_refused_and_nobody_signed_in_is_unauthorised(
    client: httpx.AsyncClient, login_as: LoginAs, settings: Settings
) -> None:
    agent = await login_as(Role.AGENT)
    body = await sealed_notes(settings)

    refused = await client.post("/codec/decode", json=body, headers=agent.headers)
    anonymous = await client.post("/codec/decode", json=body)

    assert refused.status_code == 403 and NOTES not in refused.text
    assert anonymous.status_code == 401 and NOTES not in anonymous.text


async def test_encode_then_decode_round_trips_and_unknown_keys_are_refused_clearly(
    client: httpx.AsyncClient, login_as: LoginAs
) -> None:
    supervisor = await login_as(Role.SUPERVISOR)
    plain = {"payloads": [as_json(Payload(metadata={"encoding": b"json/plain"}, data=b'"hello"'))]}

    encoded = await client.post("/codec/encode", json=plain, headers=supervisor.headers)
    [sealed] = encoded.json()["payloads"]
    assert base64.b64decode(sealed["metadata"]["encoding"]) == b"binary/encrypted"
    decoded = await client.post("/codec/decode", json=encoded.json(), headers=supervisor.headers)
    assert decoded.json() == plain

    sealed["metadata"]["encryption-key-id"] = base64.b64encode(b"retired-2019").decode()
    unknown = await client.post("/codec/decode", json={"payloads": [sealed]}, headers=supervisor.headers)
    assert unknown.status_code == 422 and "retired-2019" in unknown.text


async def test_the_temporal_ui_origin_may_call_the_codec_from_the_browser_and_only_the_codec(
    client: httpx.AsyncClient,
) -> None:
    preflight = {
        "Origin": UI,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type,x-namespace",
    }
    allowed = await client.options("/codec/decode", headers=preflight)
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == UI
    assert allowed.headers["access-control-allow-credentials"] == "true"
    assert {"authorization", "x-namespace"} <= set(allowed.headers["access-control-allow-headers"].lower().split(", "))

    stranger = await client.options("/codec/decode", headers=preflight | {"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in stranger.headers
    elsewhere = await client.options("/api/v1/agents", headers=preflight)
    assert "access-control-allow-origin" not in elsewhere.headers


async def test_a_ui_without_sign_on_decodes_with_the_supervisor_codec_cookie_and_an_agents_is_refused(
    client: httpx.AsyncClient, login_as: LoginAs, settings: Settings
) -> None:
    supervisor = await login_as(Role.SUPERVISOR)
    agent = await login_as(Role.AGENT)
    body = await sealed_notes(settings)

    opened = await client.post("/codec/session", headers=supervisor.headers)
    assert opened.status_code == 204
    cookie = opened.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/codec" in cookie
    assert (await client.post("/codec/session", headers=agent.headers)).status_code == 403
    client.cookies.clear()

    # What the Temporal UI sends with "Include cross-origin credentials": the cookie, no Authorization.
    ui = {"Origin": UI, "X-Namespace": "default", "Cookie": f"dialler_codec={supervisor.access_token}"}
    decoded = await client.post("/codec/decode", json=body, headers=ui)
    assert decoded.status_code == 200 and decoded.headers["access-control-allow-origin"] == UI
    assert json.loads(base64.b64decode(decoded.json()["payloads"][0]["data"])) == {"notes": NOTES}

    as_agent = await client.post(
        "/codec/decode", json=body, headers=ui | {"Cookie": f"dialler_codec={agent.access_token}"}
    )
    assert as_agent.status_code == 403 and NOTES not in as_agent.text
    without = await client.post("/codec/decode", json=body, headers={"Origin": UI})
    assert without.status_code == 401
