from __future__ import annotations

import httpx
from sqlalchemy import select

from dialler.agents.models import Agent, Role
from dialler.audit.models import AuditEntry
from dialler.runtime import Stores
from tests.support.api_agents import DEFAULT_PASSWORD, LoginAs

AGENTS = "/api/v1/agents"
NEW = {
    "email": "New.Starter@RMC.example",
    "display_name": "New Starter",
    "password": "a-long-enough-password",
    "role": "agent",
    "queues": ["unsigned", "callbacks", "unsigned"],
    "trained_vulnerable": True,
}


def assert_no_secrets(response: httpx.Response) -> None:
    text = response.text.lower()
    assert "password" not in text and "$argon2" not in text and "a-long-enough" not in text


async def audit(stores: Stores, action: str) -> list[AuditEntry]:
    async with stores.sessions() as session:
        query = select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.id)
        return list((await session.scalars(query)).all())


async def test_admin_creates_an_agent_who_can_then_sign_in(
    client: httpx.AsyncClient, login_as: LoginAs, stores: Stores
) -> None:
    admin = await login_as(Role.ADMIN)

    created = await client.post(AGENTS, json=NEW, headers=admin.headers)

    assert created.status_code == 201, created.text
    assert_no_secrets(created)
    body = created.json()
    assert body["email"] == "new.starter@rmc.example"
    assert body["queues"] == ["unsigned", "callbacks"]
    assert body["trained_vulnerable"] is True and body["active"] is True and body["role"] == "agent"
    login = await client.post("/api/v1/auth/login", json={"email": NEW["email"], "password": NEW["password"]})
    assert login.status_code == 200
    (entry,) = await audit(stores, "agent.created")
    assert entry.actor_agent_id == admin.agent.id and entry.subject_id == str(body["id"])
    assert "a-long-enough" not in str(entry.details)


async def test_create_refuses_duplicate_email_weak_password_and_unknown_fields(
    client: httpx.AsyncClient, login_as: LoginAs
) -> None:
    admin = await login_as(Role.ADMIN)
    assert (await client.post(AGENTS, json=NEW, headers=admin.headers)).status_code == 201

    duplicate = await client.post(AGENTS, json={**NEW, "email": "NEW.starter@rmc.example"}, headers=admin.headers)
    weak = await client.post(
        AGENTS, json={**NEW, "email": "b@rmc.example", "password": "pw-xyzzy"}, headers=admin.headers
    )
    bad_queue = await client.post(
        AGENTS, json={**NEW, "email": "c@rmc.example", "queues": ["vip"]}, headers=admin.headers
    )
    nul = await client.post(
        AGENTS, json={**NEW, "email": "d@rmc.example", "display_name": "a\x00b"}, headers=admin.headers
    )

    assert duplicate.status_code == 409 and duplicate.json()["error"]["code"] == "email_already_used"
    assert weak.status_code == 422 and weak.json()["error"]["details"][0]["field"] == "body.password"
    assert "xyzzy" not in weak.text  # validation errors never echo the input
    assert bad_queue.status_code == 422
    assert nul.status_code == 422


async def test_list_and_get_agents_never_show_passwords(client: httpx.AsyncClient, login_as: LoginAs) -> None:
    supervisor = await login_as(Role.SUPERVISOR)
    admin = await login_as(Role.ADMIN)

    page = await client.get(AGENTS, params={"limit": 1, "offset": 0}, headers=supervisor.headers)
    one = await client.get(f"{AGENTS}/{admin.agent.id}", headers=supervisor.headers)
    admins = await client.get(AGENTS, params={"role": "admin"}, headers=supervisor.headers)

    assert page.status_code == 200 and page.json()["total"] == 2 and len(page.json()["items"]) == 1
    assert one.status_code == 200 and one.json()["email"] == admin.agent.email
    assert [a["id"] for a in admins.json()["items"]] == [admin.agent.id]
    for response in (page, one, admins):
        assert_no_secrets(response)
    assert (await client.get(f"{AGENTS}/999999", headers=supervisor.headers)).status_code == 404


async def test_role_change_is_audited_with_permissions_granted(
    client: httpx.AsyncClient, login_as: LoginAs, stores: Stores
) -> None:
    admin = await login_as(Role.ADMIN)
    agent = await login_as(Role.AGENT)

    changed = await client.patch(
        f"{AGENTS}/{agent.agent.id}",
        json={"role": "supervisor", "queues": ["callbacks"], "progressive_mode": True, "display_name": None},
        headers=admin.headers,
    )

    assert changed.status_code == 200, changed.text
    assert changed.json()["role"] == "supervisor" and changed.json()["progressive_mode"] is True
    assert changed.json()["display_name"] == agent.agent.display_name  # null means "leave as is"
    (role_change,) = await audit(stores, "agent.role_changed")
    assert role_change.actor_agent_id == admin.agent.id
    assert role_change.details["from"] == "agent" and role_change.details["to"] == "supervisor"
    assert "audit:read" in role_change.details["granted"] and role_change.details["revoked"] == []
    # The new role applies to the agent's existing token at once: roles are read per request.
    assert (await client.get("/api/v1/audit", headers=agent.headers)).status_code == 200


async def test_an_admin_cannot_demote_or_disable_themselves(client: httpx.AsyncClient, login_as: LoginAs) -> None:
    admin = await login_as(Role.ADMIN)

    demote = await client.patch(f"{AGENTS}/{admin.agent.id}", json={"role": "agent"}, headers=admin.headers)
    disable = await client.post(f"{AGENTS}/{admin.agent.id}/disable", headers=admin.headers)

    assert demote.status_code == 409 and disable.status_code == 409
    assert demote.json()["error"]["code"] == "self_lockout"


async def test_disabled_agent_cannot_sign_in_or_use_old_tokens(
    client: httpx.AsyncClient, login_as: LoginAs, stores: Stores
) -> None:
    admin = await login_as(Role.ADMIN)
    agent = await login_as(Role.AGENT)
    await client.put("/api/v1/agents/me/presence", json={"state": "available"}, headers=agent.headers)

    disabled = await client.post(f"{AGENTS}/{agent.agent.id}/disable", headers=admin.headers)

    assert disabled.status_code == 200 and disabled.json()["active"] is False
    assert (await client.get("/api/v1/auth/me", headers=agent.headers)).status_code == 401
    assert (await client.post("/api/v1/auth/refresh", json={"refresh_token": agent.refresh_token})).status_code == 401
    login = await client.post("/api/v1/auth/login", json={"email": agent.agent.email, "password": DEFAULT_PASSWORD})
    assert login.status_code == 401 and login.json()["error"]["code"] == "invalid_credentials"
    board = await client.get("/api/v1/agents/presence", headers=admin.headers)
    assert agent.agent.id not in [row["agent_id"] for row in board.json()["items"]]
    assert len(await audit(stores, "agent.disabled")) == 1

    enabled = await client.post(f"{AGENTS}/{agent.agent.id}/enable", headers=admin.headers)
    assert enabled.status_code == 200 and enabled.json()["active"] is True
    again = await client.post("/api/v1/auth/login", json={"email": agent.agent.email, "password": DEFAULT_PASSWORD})
    assert again.status_code == 200
    async with stores.sessions() as session:
        assert (await session.get(Agent, agent.agent.id)).active is True  # type: ignore[union-attr]


async def test_password_reset_replaces_the_password_and_ends_sessions(
    client: httpx.AsyncClient, login_as: LoginAs, stores: Stores
) -> None:
    admin = await login_as(Role.ADMIN)
    agent = await login_as(Role.AGENT)
    url = f"{AGENTS}/{agent.agent.id}/password"

    weak = await client.put(url, json={"new_password": "too-short"}, headers=admin.headers)
    reset = await client.put(url, json={"new_password": "brand-new-password-42"}, headers=admin.headers)

    assert weak.status_code == 422
    assert reset.status_code == 204 and reset.content == b""
    assert (await client.get("/api/v1/auth/me", headers=agent.headers)).status_code == 401
    old = await client.post("/api/v1/auth/login", json={"email": agent.agent.email, "password": DEFAULT_PASSWORD})
    new = await client.post(
        "/api/v1/auth/login", json={"email": agent.agent.email, "password": "brand-new-password-42"}
    )
    assert old.status_code == 401 and new.status_code == 200
    (entry,) = await audit(stores, "agent.password_reset")
    assert "brand-new" not in str(entry.details)
