"""Magic links: one-time, expiring, stored as a hash, bound to a customer and what they must do."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from dialler.comms import magic_links
from dialler.comms.errors import (
    CustomerNotFound,
    InvalidMagicLinkTarget,
    MagicLinkExpired,
    MagicLinkNotFound,
    MagicLinkUsed,
)
from dialler.comms.models import MagicLink
from dialler.runtime import Stores
from tests.support.replica_customers import add_customer

NOW = datetime.now(UTC)


async def _issue(stores: Stores, workflow_id: str = "magic-link-1", ttl: timedelta = timedelta(hours=72)) -> str:
    async with stores.sessions() as session:
        _, token = await magic_links.issue(
            session=session,
            workflow_id=workflow_id,
            user_id=1,
            purpose="upload",
            target=magic_links.LinkTarget(10, 100, "bank_statement"),
            agent_id=None,
            now=NOW,
            ttl=ttl,
        )
        await session.commit()
    return token


async def _consume(stores: Stores, token: str, at: datetime = NOW) -> magic_links.VerifiedLink:
    async with stores.sessions() as session:
        try:
            return await magic_links.consume(session=session, token=token, now=at)
        finally:
            await session.commit()


async def test_a_link_verifies_once_then_fails_as_used(stores: Stores) -> None:
    token = await _issue(stores)

    verified = await _consume(stores, token, NOW + timedelta(minutes=5))

    assert (verified.user_id, verified.purpose, verified.claim_id, verified.requirement_id) == (1, "upload", 10, 100)
    with pytest.raises(MagicLinkUsed):
        await _consume(stores, token, NOW + timedelta(minutes=6))


async def test_a_link_fails_after_expiry(stores: Stores) -> None:
    token = await _issue(stores, ttl=timedelta(hours=1))

    with pytest.raises(MagicLinkExpired):
        await _consume(stores, token, NOW + timedelta(hours=1))


async def test_a_tampered_or_unknown_token_is_not_found(stores: Stores) -> None:
    token = await _issue(stores)
    tampered = ("B" if token[0] != "B" else "C") + token[1:]

    for bad in (tampered, token[:-1], token + "A", "", "../../etc/passwd", token.replace(token[5], "%")):
        with pytest.raises(MagicLinkNotFound):
            await _consume(stores, bad)
    assert (await _consume(stores, token)).user_id == 1  # the real one still works


async def test_only_the_hash_is_stored_and_tokens_are_long_and_random(stores: Stores) -> None:
    token = await _issue(stores)
    other = await _issue(stores, "magic-link-2")

    async with stores.postgres.connect() as conn:
        stored = (await conn.execute(text("SELECT * FROM magic_links"))).all()
    assert token not in repr(stored) and other not in repr(stored)
    assert {row.token_hash for row in stored} == {magic_links.token_hash(token), magic_links.token_hash(other)}
    assert len(token) == 43 and token != other  # 32 random bytes, URL-safe
    assert magic_links.link_url("https://portal.example.co.uk/", token) == f"https://portal.example.co.uk/m/{token}"


async def test_issuing_again_for_the_same_workflow_replaces_the_unsent_token(stores: Stores) -> None:
    first = await _issue(stores)
    second = await _issue(stores)

    with pytest.raises(MagicLinkNotFound):
        await _consume(stores, first)
    assert (await _consume(stores, second)).user_id == 1
    async with stores.sessions() as session:
        assert len((await session.scalars(select(MagicLink))).all()) == 1


async def test_two_concurrent_clicks_one_wins(stores: Stores) -> None:
    token = await _issue(stores)

    results = await asyncio.gather(*(_consume(stores, token) for _ in range(5)), return_exceptions=True)

    assert sum(isinstance(r, magic_links.VerifiedLink) for r in results) == 1
    assert sum(isinstance(r, MagicLinkUsed) for r in results) == 4


async def test_targets_are_checked_against_the_replica(stores: Stores, replica_writer: AsyncEngine) -> None:
    unsigned = await add_customer(replica_writer, 1)
    signed = await add_customer(replica_writer, 2, signed=True, phone="07700 900124")
    replica = stores.replica

    sign = await magic_links.validate_target(
        replica=replica, user_id=1, purpose="sign", claim_id=unsigned.claim_id, requirement_id=None
    )
    upload = await magic_links.validate_target(
        replica=replica, user_id=2, purpose="upload", claim_id=None, requirement_id=signed.requirement_id
    )
    assert sign == magic_links.LinkTarget(unsigned.claim_id, None, None)
    assert upload == magic_links.LinkTarget(signed.claim_id, signed.requirement_id, "bank_statement")

    refusals = [
        dict(user_id=2, purpose="sign", claim_id=None, requirement_id=None),  # already signed
        dict(user_id=1, purpose="sign", claim_id=signed.claim_id, requirement_id=None),  # someone else's claim
        dict(user_id=1, purpose="upload", claim_id=None, requirement_id=None),  # upload what?
        dict(user_id=1, purpose="upload", claim_id=None, requirement_id=signed.requirement_id),  # not theirs
        dict(user_id=1, purpose="upload", claim_id=signed.claim_id, requirement_id=unsigned.requirement_id),
        dict(user_id=1, purpose="frame", claim_id=None, requirement_id=None),
    ]
    for refusal in refusals:
        with pytest.raises(InvalidMagicLinkTarget):
            await magic_links.validate_target(replica=replica, **refusal)  # type: ignore[arg-type]
    with pytest.raises(CustomerNotFound):
        await magic_links.validate_target(
            replica=replica, user_id=9, purpose="sign", claim_id=None, requirement_id=None
        )
    async with replica_writer.begin() as conn:
        await conn.execute(text("UPDATE claim_requirements SET status = 'COMPLETED' WHERE id = :id"), {"id": 200})
    with pytest.raises(InvalidMagicLinkTarget, match="not pending"):
        await magic_links.validate_target(
            replica=replica, user_id=2, purpose="upload", claim_id=None, requirement_id=200
        )
