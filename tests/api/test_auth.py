from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import jwt
import pytest
from sqlalchemy import select

from dialler.agents.models import RefreshToken, Role
from dialler.agents.tokens import encode_access_token
from dialler.config import Settings
from dialler.runtime import Stores
from tests.support.api_agents import DEFAULT_PASSWORD, LoginAs, MakeAgent
from tests.support.audit import audit_rows

LOGIN = "/api/v1/auth/login"
REFRESH = "/api/v1/auth/refresh"
LOGOUT = "/api/v1/auth/logout"
ME = "/api/v1/auth/me"


# Login ------------------------------------------------------------------------------------------


async def test_login_returns_short_lived_pinned_access_token_and_refresh_token(
    client: httpx.AsyncClient, make_agent: MakeAgent, settings: Settings
) -> None:
    agent = await make_agent(Role.SUPERVISOR, email="Sam.Clarke@RMC.example")

    response = await client.post(LOGIN, json={"email": " sam.clarke@rmc.example ", "password": DEFAULT_PASSWORD})

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "bearer"
    assert 0 < body["expires_in"] <= 900
    claims = jwt.decode(
        body["access_token"],
        settings.jwt_secret.get_secret_value(),
        algorithms=["HS256"],
        audience=settings.jwt_audience,
        issuer=settings.jwt_issuer,
    )
    assert claims["sub"] == str(agent.id) and claims["role"] == "supervisor"
    assert {"iss", "aud", "exp", "iat", "jti"} <= set(claims)
    assert claims["exp"] - claims["iat"] == settings.access_token_ttl_s
    assert jwt.get_unverified_header(body["access_token"])["alg"] == "HS256"
    assert body["refresh_token"].startswith("rt_")

    me = await client.get(ME, headers={"Authorization": f"Bearer {body['access_token']}"})
    assert me.status_code == 200
    assert me.json()["id"] == agent.id
    assert "audit:read" in me.json()["permissions"] and "agents:admin" not in me.json()["permissions"]
    assert "password" not in me.text and "$argon2" not in me.text


async def test_refresh_token_is_stored_only_as_a_digest(
    client: httpx.AsyncClient, login_as: LoginAs, stores: Stores
) -> None:
    signed_in = await login_as()

    async with stores.sessions() as session:
        jtis = list((await session.scalars(select(RefreshToken.jti))).all())

    assert len(jtis) == 1 and signed_in.refresh_token not in jtis and len(jtis[0]) == 64


async def test_wrong_password_unknown_email_and_disabled_account_get_the_same_answer(
    client: httpx.AsyncClient, make_agent: MakeAgent, stores: Stores
) -> None:
    await make_agent(email="tom@rmc.example")
    await make_agent(email="gone@rmc.example", active=False)

    answers = [
        await client.post(LOGIN, json={"email": "tom@rmc.example", "password": "not-the-password"}),
        await client.post(LOGIN, json={"email": "nobody@rmc.example", "password": "not-the-password"}),
        await client.post(LOGIN, json={"email": "gone@rmc.example", "password": DEFAULT_PASSWORD}),
        await client.post(LOGIN, json={"email": "not an email", "password": "x"}),
    ]

    assert {a.status_code for a in answers} == {401}
    assert len({a.text for a in answers}) == 1
    assert answers[0].json()["error"]["code"] == "invalid_credentials"
    assert answers[0].headers["WWW-Authenticate"] == "Bearer"


async def test_failed_and_successful_logins_are_audited_without_password_or_full_email(
    client: httpx.AsyncClient, make_agent: MakeAgent, stores: Stores
) -> None:
    agent = await make_agent(email="priya@rmc.example")

    await client.post(LOGIN, json={"email": "priya@rmc.example", "password": "wrong-password-123"})
    await client.post(LOGIN, json={"email": "priya@rmc.example", "password": DEFAULT_PASSWORD})

    (failed,) = await audit_rows(stores, "auth.login_failed")
    assert failed.subject_id == str(agent.id) and failed.actor_agent_id is None
    assert failed.details["reason"] == "bad_password"
    assert failed.details["email_masked"] == "p***@rmc.example"
    assert "priya@" not in str(failed.details) and "wrong-password" not in str(failed.details)
    assert failed.request_id and str(failed.client_ip) == "127.0.0.1"
    (ok,) = await audit_rows(stores, "auth.login")
    assert ok.actor_agent_id == agent.id and ok.request_id


# Access tokens ----------------------------------------------------------------------------------


async def test_expired_access_token_is_refused(
    client: httpx.AsyncClient, make_agent: MakeAgent, settings: Settings
) -> None:
    agent = await make_agent()
    past = datetime.now(UTC) - timedelta(hours=1)
    token, _ = encode_access_token(settings=settings, agent_id=agent.id, role=agent.role, family_id="f", now=past)

    response = await client.get(ME, headers={"Authorization": f"Bearer {token}"})

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_token"


@pytest.mark.parametrize("tamper", ["none_alg", "other_audience", "other_issuer", "other_secret", "garbage"])
async def test_forged_access_tokens_are_refused(
    client: httpx.AsyncClient, make_agent: MakeAgent, settings: Settings, tamper: str
) -> None:
    agent = await make_agent(Role.ADMIN)
    now = int(datetime.now(UTC).timestamp())
    claims = {
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "iat": now,
        "exp": now + 300,
        "sub": str(agent.id),
        "role": "admin",
        "jti": "j",
        "sid": "s",
        "typ": "access",
    }
    secret = settings.jwt_secret.get_secret_value()
    if tamper == "none_alg":
        token = jwt.encode(claims, None, algorithm="none")  # type: ignore[arg-type]
    elif tamper == "other_audience":
        token = jwt.encode({**claims, "aud": "someone-else"}, secret, algorithm="HS256")
    elif tamper == "other_issuer":
        token = jwt.encode({**claims, "iss": "someone-else"}, secret, algorithm="HS256")
    elif tamper == "other_secret":
        token = jwt.encode(claims, "x" * 64, algorithm="HS256")
    else:
        token = "not-a-jwt"

    response = await client.get(ME, headers={"Authorization": f"Bearer {token}"})

    assert response.status_code == 401


async def test_missing_or_non_bearer_authorization_is_401(client: httpx.AsyncClient) -> None:
    assert (await client.get(ME)).status_code == 401
    assert (await client.get(ME, headers={"Authorization": "Basic dG9tOnB3"})).status_code == 401


# Refresh rotation -------------------------------------------------------------------------------


async def test_refresh_rotates_the_refresh_token(client: httpx.AsyncClient, login_as: LoginAs) -> None:
    signed_in = await login_as()

    first = await client.post(REFRESH, json={"refresh_token": signed_in.refresh_token})

    assert first.status_code == 200, first.text
    rotated = first.json()
    assert rotated["refresh_token"] != signed_in.refresh_token
    assert (await client.get(ME, headers={"Authorization": f"Bearer {rotated['access_token']}"})).status_code == 200
    second = await client.post(REFRESH, json={"refresh_token": rotated["refresh_token"]})
    assert second.status_code == 200
    # The sign-in keeps its original end: rotation does not extend it.
    assert second.json()["refresh_expires_in"] <= rotated["refresh_expires_in"]


async def test_reusing_a_rotated_refresh_token_revokes_the_whole_family(
    client: httpx.AsyncClient, login_as: LoginAs, stores: Stores
) -> None:
    victim = await login_as()
    other_sign_in = await client.post(LOGIN, json={"email": victim.agent.email, "password": DEFAULT_PASSWORD})
    rotated = (await client.post(REFRESH, json={"refresh_token": victim.refresh_token})).json()

    reuse = await client.post(REFRESH, json={"refresh_token": victim.refresh_token})

    assert reuse.status_code == 401
    assert reuse.json()["error"]["code"] == "refresh_token_reused"
    # Every token of the family is dead: the successor, and the access tokens issued in it.
    assert (await client.post(REFRESH, json={"refresh_token": rotated["refresh_token"]})).status_code == 401
    for token in (victim.access_token, rotated["access_token"]):
        assert (await client.get(ME, headers={"Authorization": f"Bearer {token}"})).status_code == 401
    # Another sign-in of the same agent is a different family and lives on.
    other = other_sign_in.json()
    assert (await client.get(ME, headers={"Authorization": f"Bearer {other['access_token']}"})).status_code == 200
    (entry,) = await audit_rows(stores, "auth.refresh_reused")
    assert entry.subject_id == str(victim.agent.id)


async def test_unknown_refresh_token_is_401(client: httpx.AsyncClient) -> None:
    for token in ("rt_nope", "nope", "x" * 200):
        assert (await client.post(REFRESH, json={"refresh_token": token})).status_code in (401, 422)


# Logout -----------------------------------------------------------------------------------------


async def test_logout_revokes_the_sign_in_at_once(client: httpx.AsyncClient, login_as: LoginAs, stores: Stores) -> None:
    signed_in = await login_as()
    await client.put("/api/v1/agents/me/presence", json={"state": "available"}, headers=signed_in.headers)

    response = await client.post(LOGOUT, json={"refresh_token": signed_in.refresh_token})

    assert response.status_code == 204
    assert (await client.post(REFRESH, json={"refresh_token": signed_in.refresh_token})).status_code == 401
    assert (await client.get(ME, headers=signed_in.headers)).status_code == 401
    assert len(await audit_rows(stores, "auth.logout")) == 1
    # Signing out of the last session takes an available agent offline.
    again = await client.post(LOGIN, json={"email": signed_in.agent.email, "password": DEFAULT_PASSWORD})
    headers = {"Authorization": f"Bearer {again.json()['access_token']}"}
    assert (await client.get("/api/v1/agents/me/presence", headers=headers)).json()["state"] == "offline"
    # Logging out twice, or with a token that never existed, says nothing.
    assert (await client.post(LOGOUT, json={"refresh_token": signed_in.refresh_token})).status_code == 204
    assert (await client.post(LOGOUT, json={"refresh_token": "rt_unknown"})).status_code == 204


# Rate limit -------------------------------------------------------------------------------------


async def test_login_is_rate_limited_per_account_even_for_the_right_password(
    client: httpx.AsyncClient, make_agent: MakeAgent, settings: Settings, stores: Stores
) -> None:
    await make_agent(email="target@rmc.example")
    await make_agent(email="bystander@rmc.example")
    for _ in range(settings.login_max_attempts):
        bad = await client.post(LOGIN, json={"email": "target@rmc.example", "password": "guess-guess-guess"})
        assert bad.status_code == 401

    blocked = await client.post(LOGIN, json={"email": "target@rmc.example", "password": DEFAULT_PASSWORD})
    unknown = [
        await client.post(LOGIN, json={"email": "ghost@rmc.example", "password": "guess-guess-guess"})
        for _ in range(settings.login_max_attempts + 1)
    ][-1]

    assert blocked.status_code == 429
    assert blocked.json()["error"]["code"] == "too_many_login_attempts"
    assert 0 < int(blocked.headers["Retry-After"]) <= settings.login_window_s
    # An unknown account is limited exactly the same way: the 429 reveals nothing.
    assert unknown.status_code == 429
    assert unknown.json()["error"]["message"] == blocked.json()["error"]["message"]
    # Other accounts from the same address are not affected.
    ok = await client.post(LOGIN, json={"email": "bystander@rmc.example", "password": DEFAULT_PASSWORD})
    assert ok.status_code == 200
    assert len(await audit_rows(stores, "auth.login_rate_limited")) == 2


async def test_login_is_rate_limited_per_client_address(
    client: httpx.AsyncClient, make_agent: MakeAgent, settings: Settings
) -> None:
    from dialler.agents.ratelimit import address_limit

    await make_agent(email="victim@rmc.example")
    for n in range(address_limit(settings)):
        bad = await client.post(LOGIN, json={"email": f"spray{n}@rmc.example", "password": "guess-guess-guess"})
        assert bad.status_code == 401

    blocked = await client.post(LOGIN, json={"email": "victim@rmc.example", "password": DEFAULT_PASSWORD})

    assert blocked.status_code == 429


async def test_successful_logins_do_not_use_up_the_address_allowance(
    client: httpx.AsyncClient, make_agent: MakeAgent, settings: Settings
) -> None:
    from dialler.agents.ratelimit import address_limit

    agent = await make_agent()
    for _ in range(address_limit(settings) + 2):  # a whole floor behind one NAT address
        ok = await client.post(LOGIN, json={"email": agent.email, "password": DEFAULT_PASSWORD})
        assert ok.status_code == 200
