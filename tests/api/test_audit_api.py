from __future__ import annotations

import httpx

from dialler.agents.models import Role
from tests.support.api_agents import LoginAs

AUDIT = "/api/v1/audit"


async def test_supervisor_pages_through_the_audit_log_newest_first(
    client: httpx.AsyncClient, login_as: LoginAs
) -> None:
    sam = await login_as(Role.SUPERVISOR)
    for _ in range(3):
        await client.post("/api/v1/auth/login", json={"email": "ghost@rmc.example", "password": "nope-nope-nope"})

    first = await client.get(AUDIT, params={"limit": 2}, headers=sam.headers)
    second = await client.get(
        AUDIT, params={"limit": 2, "before_id": first.json()["next_before_id"]}, headers=sam.headers
    )
    failed = await client.get(AUDIT, params={"action": "auth.login_failed"}, headers=sam.headers)

    assert first.status_code == 200
    ids = [e["id"] for e in first.json()["items"] + second.json()["items"]]
    assert ids == sorted(ids, reverse=True) and len(ids) == 4
    assert len(failed.json()["items"]) == 3 and failed.json()["next_before_id"] is None
    entry = failed.json()["items"][0]
    assert entry["details"]["email_masked"] == "g***@rmc.example"
    assert entry["client_ip"] == "127.0.0.1" and entry["request_id"]


async def test_an_agent_cannot_read_the_audit_log_and_the_attempt_is_recorded(
    client: httpx.AsyncClient, login_as: LoginAs
) -> None:
    agent = await login_as(Role.AGENT)
    sam = await login_as(Role.SUPERVISOR)

    denied = await client.get(AUDIT, headers=agent.headers)

    assert denied.status_code == 403
    assert denied.json()["error"] == {
        "code": "forbidden",
        "message": "Your role does not allow this.",
        "details": {"missing_permissions": ["audit:read"]},
    }
    entries = (await client.get(AUDIT, params={"action": "auth.access_denied"}, headers=sam.headers)).json()
    (entry,) = entries["items"]
    assert entry["actor_agent_id"] == agent.agent.id
    assert entry["details"] == {"missing": ["audit:read"], "method": "GET", "path": AUDIT}
    assert entry["request_id"] == denied.headers["X-Request-ID"]
