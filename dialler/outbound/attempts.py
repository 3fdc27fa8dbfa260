"""The record that makes a call or a text happen once, whichever worker retries it.

Twilio's REST API has no idempotency key for Calls or Messages: a request whose answer is lost (the
worker killed after Twilio accepted, or before the sid was stored) leaves no trace on our side, and
asking again rings the customer a second time. So, for each call or text:

1. :func:`exclusive` — one try at a time per key (a PostgreSQL advisory lock held by the try's own
   transaction: a killed worker's connection drops and frees it at once; a slow try that is still
   alive keeps it, and the other try waits for a later retry instead of racing it to the carrier).
2. :func:`find` — an earlier try that began a request and never recorded its end is reconciled with
   the carrier (calls or messages to that number since the request began, see
   :meth:`dialler.integrations.twilio.Telephony.find_call`); if the carrier has it, it is adopted.
3. :func:`begin` — otherwise the attempt is written and committed (its own transaction) *before* the
   request, so that a crash at any later point leaves the evidence a retry needs.
4. :func:`settle` — the sid, once the carrier answers.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Final

from sqlalchemy import func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from dialler.outbound.models import CarrierAttempt

__all__ = [
    "CLOCK_SKEW",
    "AttemptBusy",
    "begin",
    "body_digest",
    "dial_key",
    "exclusive",
    "find",
    "settle",
    "sms_key",
]

# How far the carrier's clock may be behind PostgreSQL's: a call the carrier dates this much before our
# record of the request still counts as that request's. Short, so a previous call to the same number
# is not mistaken for this one (calls whose sids belong to other sessions are excluded as well).
CLOCK_SKEW: Final = timedelta(seconds=60)
# The first key of the two-key advisory lock: this module's namespace ("ONCE").
_LOCK_NAMESPACE: Final = 0x4F4E4345


class AttemptBusy(RuntimeError):
    """Another try of the same call or text is under way (its worker is alive and holds the lock)."""


def dial_key(session_id: str) -> str:
    return f"dial:{session_id}"


def sms_key(message_id: int) -> str:
    return f"sms:{message_id}"


def body_digest(body: str) -> str:
    return hashlib.sha256(body.encode()).hexdigest()


@asynccontextmanager
async def exclusive(engine: AsyncEngine, key: str) -> AsyncIterator[None]:
    """Hold the key's lock for the block, or raise :class:`AttemptBusy` at once. ``engine`` is
    ``Stores.carrier_locks``: the block uses the main pool, and must not wait on its own."""
    async with engine.begin() as conn:
        held = await conn.scalar(
            text("SELECT pg_try_advisory_xact_lock(:ns, hashtext(:key))"), {"ns": _LOCK_NAMESPACE, "key": key}
        )
        if not held:
            raise AttemptBusy(f"another try of {key.split(':', 1)[0]} request {key} is under way")
        yield


async def find(engine: AsyncEngine, key: str) -> CarrierAttempt | None:
    async with engine.connect() as conn:
        row = (await conn.execute(select(CarrierAttempt).where(CarrierAttempt.key == key))).one_or_none()
    return None if row is None else CarrierAttempt(**row._mapping)


async def begin(engine: AsyncEngine, key: str, *, channel: str, digest: str | None = None) -> datetime:
    """Record (and commit) that a request is about to be sent; returns when, by PostgreSQL's clock."""
    async with engine.begin() as conn:
        started = await conn.scalar(
            insert(CarrierAttempt)
            .values(key=key, channel=channel, started_at=func.now(), body_digest=digest)
            .on_conflict_do_update(
                index_elements=["key"],
                set_={"started_at": func.now(), "requests": CarrierAttempt.requests + 1, "body_digest": digest},
            )
            .returning(CarrierAttempt.started_at)
        )
    assert started is not None
    return started


async def settle(engine: AsyncEngine, key: str, sid: str) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            update(CarrierAttempt)
            .where(CarrierAttempt.key == key, CarrierAttempt.sid.is_(None))
            .values(sid=sid, settled_at=func.now())
        )
