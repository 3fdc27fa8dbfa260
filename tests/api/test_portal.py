"""The portal's verify endpoint: API-key authenticated, consumes a magic link once, clear errors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import text

from dialler.comms import magic_links
from dialler.config import Settings
from dialler.runtime import Stores

VERIFY = "/api/v1/portal/magic-links/verify"


async def _issue(stores: Stores, *, ttl: timedelta = timedelta(hours=72), now: datetime | None = None) -> str:
    async with stores.sessions() as session:
        _, token = await magic_links.issue(
            session=session,
            workflow_id=f"magic-link-7-sign-{datetime.now(UTC).timestamp()}",
            user_id=7,
            purpose="sign",
            target=magic_links.LinkTarget(70, None, None),
            agent_id=None,
            now=now or datetime.now(UTC),
            ttl=ttl,
        )
        await session.commit()
    return token


def _key(settings: Settings) -> dict[str, str]:
    return {"X-Portal-Key": settings.portal_api_key.get_secret_value()}


async def test_verify_once_then_used(client: httpx.AsyncClient, stores: Stores, settings: Settings) -> None:
    token = await _issue(stores)

    first = await client.post(VERIFY, json={"token": token}, headers=_key(settings))
    again = await client.post(VERIFY, json={"token": token}, headers=_key(settings))

    assert first.status_code == 200, first.text
    body = first.json()
    assert (body["user_id"], body["purpose"], body["claim_id"], body["requirement_id"]) == (7, "sign", 70, None)
    assert again.status_code == 409 and again.json()["error"]["code"] == "magic_link_used"
    async with stores.postgres.connect() as conn:
        audited = await conn.scalar(text("SELECT count(*) FROM audit_log WHERE action = 'magic_link.used'"))
    assert audited == 1


async def test_expired_and_tampered_tokens(client: httpx.AsyncClient, stores: Stores, settings: Settings) -> None:
    expired = await _issue(stores, ttl=timedelta(hours=1), now=datetime.now(UTC) - timedelta(hours=2))
    valid = await _issue(stores)
    tampered = valid[:-1] + ("A" if valid[-1] != "A" else "B")

    gone = await client.post(VERIFY, json={"token": expired}, headers=_key(settings))
    forged = await client.post(VERIFY, json={"token": tampered}, headers=_key(settings))
    junk = await client.post(VERIFY, json={"token": "not a token"}, headers=_key(settings))

    assert gone.status_code == 410 and gone.json()["error"]["code"] == "magic_link_expired"
    assert forged.status_code == 404 and forged.json()["error"]["code"] == "magic_link_not_found"
    assert junk.status_code == 404
    assert (await client.post(VERIFY, json={"token": valid}, headers=_key(settings))).status_code == 200


async def test_a_missing_or_wrong_key_is_refused_and_consumes_nothing(
    client: httpx.AsyncClient, stores: Stores, settings: Settings
) -> None:
    token = await _issue(stores)

    missing = await client.post(VERIFY, json={"token": token})
    wrong = await client.post(VERIFY, json={"token": token}, headers={"X-Portal-Key": "guess"})
    bearer = await client.post(VERIFY, json={"token": token}, headers={"Authorization": "Bearer x"})

    for refused in (missing, wrong, bearer):
        assert refused.status_code == 401 and refused.json()["error"]["code"] == "invalid_portal_key"
    assert (await client.post(VERIFY, json={"token": token}, headers=_key(settings))).status_code == 200


async def test_verify_validates_its_body(client: httpx.AsyncClient, settings: Settings) -> None:
    response = await client.post(VERIFY, json={"token": "x" * 500}, headers=_key(settings))

    assert response.status_code == 422
