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

A dial also holds its number (:func:`hold_number`) from the compliance gate's last check until its
attempt is recorded: two customers who share a number, offered to two agents at the same moment, are
then dialled one after the other, and the second dial's gate sees the first call under way
(``dialler.compliance.facts``) and refuses it: never two live calls to one number.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Final

from sqlalchemy import func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from dialler.outbound.models import CarrierAttempt

__all__ = [
    "CLOCK_SKEW",
    "AttemptBusy",
    "begin",
    "body_digest",
    "dial_key",
    "exclusive",
    "find",
    "hold_number",
    "settle",
    "sms_key",
]

# How far the carrier's clock may be behind PostgreSQL's: a call the carrier dates this much before our
# record of the request still counts as that request's. Short, so a previous call to the same number
# is not mistaken for this one (calls whose sids belong to other sessions are excluded as well).
CLOCK_SKEW: Final = timedelta(seconds=60)
# The first key of the two-key advisory lock: this module's namespace ("ONCE").
_LOCK_NAMESPACE: Final = 0x4F4E4345
# The number's lock ("LINE"), and how long a dial waits for another dial to the same number to be
# recorded (a few milliseconds, or a carrier request: seconds at worst).
_NUMBER_NAMESPACE: Final = 0x4C494E45
NUMBER_WAIT: Final = "10s"


class AttemptBusy(RuntimeError):
    """Another try of the same call or text is under way (its worker is alive and holds the lock),
    or another dial to the same number did not finish recording itself in time."""


def dial_key(session_id: str) -> str:
    return f"dial:{session_id}"


def sms_key(message_id: int) -> str:
    return f"sms:{message_id}"


def body_digest(body: str) -> str:
    return hashlib.sha256(body.encode()).hexdigest()


@asynccontextmanager
async def exclusive(engine: AsyncEngine, key: str) -> AsyncIterator[AsyncConnection]:
    """Hold the key's lock for the block, or raise :class:`AttemptBusy` at once. ``engine`` is
    ``Stores.carrier_locks``: the block uses the main pool, and must not wait on its own. Yields the
    lock's connection, for :func:`hold_number` (a second lock connection per dial could exhaust that
    pool with dials each waiting for their second)."""
    async with engine.begin() as conn:
        held = await conn.scalar(
            text("SELECT pg_try_advisory_xact_lock(:ns, hashtext(:key))"), {"ns": _LOCK_NAMESPACE, "key": key}
        )
        if not held:
            raise AttemptBusy(f"another try of {key.split(':', 1)[0]} request {key} is under way")
        yield conn


async def hold_number(lock: AsyncConnection, phone: str) -> None:
    """Hold ``phone`` for the rest of ``lock``'s transaction (the connection :func:`exclusive` yields),
    waiting up to :data:`NUMBER_WAIT` for another dial to it; :class:`AttemptBusy` if it does not end."""
    await lock.execute(text(f"SET LOCAL lock_timeout = '{NUMBER_WAIT}'"))
    try:
        await lock.execute(
            text("SELECT pg_advisory_xact_lock(:ns, hashtext(:phone))"), {"ns": _NUMBER_NAMESPACE, "phone": phone}
        )
    except DBAPIError as exc:
        if "lock timeout" not in str(exc).lower():
            raise
        raise AttemptBusy(f"another dial to the number held it for over {NUMBER_WAIT}") from None


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
