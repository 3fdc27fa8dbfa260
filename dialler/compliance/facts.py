"""The one loader of the compliance gate's facts: the customer's record from the replica, and from
PostgreSQL the do-not-call list, opt-outs, and the contact history per customer and per number.

Set-based: the batch rebuild reads a whole id range with :func:`number_facts` and
:func:`customer_attempts` (and the record from its own range query, the same columns); the paths
that ask for one customer (callback, dial, SMS, explain) use :func:`load`, built on the same reads.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from sqlalchemy import bindparam, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from dialler.compliance.gate import ContactFacts
from dialler.compliance.gates import NUMBER_IN_CALL_RETRY
from dialler.queues.phones import normalise_phone

__all__ = [
    "NumberFacts",
    "customer_attempts",
    "flagged_vulnerable",
    "is_opted_out",
    "load",
    "load_for_text",
    "number_facts",
]

WEEK = timedelta(days=7)


@dataclass(frozen=True)
class NumberFacts:
    """What the dialler's own database knows about a set of numbers."""

    attempts: dict[str, tuple[datetime, ...]] = field(default_factory=dict)  # voice, last 7 days, oldest first
    abandoned_at: dict[str, datetime] = field(default_factory=dict)  # last abandoned call, within the cool-off
    do_not_call: frozenset[str] = frozenset()
    opted_out: frozenset[str] = frozenset()
    busy_until: dict[str, datetime] = field(default_factory=dict)  # a call to the number is under way


# Per number: attempts of the last week (the caps and gap count per number too: two customers who
# share a number share its limits) and the last abandoned call inside the cool-off (Ofcom's 72 h).
_NUMBER_ATTEMPTS = text(
    "SELECT phone_e164,"
    " array_agg(attempted_at ORDER BY attempted_at) FILTER (WHERE channel = 'voice' AND attempted_at >= :week),"
    " MAX(attempted_at) FILTER (WHERE abandoned AND attempted_at >= :cooloff)"
    " FROM contact_attempts WHERE attempted_at >= LEAST(:week, :cooloff) AND phone_e164 = ANY(:phones)"
    " GROUP BY phone_e164"
)
# Calls under way: a session's dial began (its carrier attempt is written before the request, see
# dialler.outbound.attempts) and its call has not ended. Open sessions only, a handful at any time.
# A session stranded with its call never ended holds the number at most LIVE_CALL_LIMIT (by
# PostgreSQL's clock, which dated the attempt: the compliance clock may be a business clock).
_CALLS_UNDER_WAY = text(
    "SELECT s.phone_e164 FROM call_sessions s JOIN carrier_attempts a ON a.key = 'dial:' || s.id::text"
    " WHERE s.closed_at IS NULL AND s.ended_at IS NULL AND s.phone_e164 = ANY(:phones)"
    " AND a.started_at >= now() - CAST(:limit AS interval) AND s.id IS DISTINCT FROM CAST(:dialling AS uuid)"
)
LIVE_CALL_LIMIT = timedelta(hours=4)  # past the longest call a session allows (max_call_s, 3 h)
_DNC = text("SELECT phone_e164 FROM do_not_call WHERE phone_e164 = ANY(:phones)")
_OPT_OUT = text("SELECT phone_e164 FROM opt_outs WHERE phone_e164 = ANY(:phones)")


async def number_facts(
    conn: AsyncConnection,
    *,
    now: datetime,
    phones: Sequence[str],
    cooloff: timedelta = timedelta(hours=72),
    dialling_session: str | None = None,
) -> NumberFacts:
    """``dialling_session``: the session about to dial, whose own call under way (a retried dial)
    does not hold its number against itself."""
    phone_list = list(phones)
    if not phone_list:
        return NumberFacts()
    attempts: dict[str, tuple[datetime, ...]] = {}
    abandoned: dict[str, datetime] = {}
    rows = await conn.execute(_NUMBER_ATTEMPTS, {"week": now - WEEK, "cooloff": now - cooloff, "phones": phone_list})
    for phone, recent, last_abandoned in rows:
        if recent:
            attempts[phone] = tuple(recent)
        if last_abandoned is not None:
            abandoned[phone] = last_abandoned
    dnc = frozenset((await conn.execute(_DNC, {"phones": phone_list})).scalars())
    opted = frozenset((await conn.execute(_OPT_OUT, {"phones": phone_list})).scalars())
    under_way = await conn.execute(
        _CALLS_UNDER_WAY, {"phones": phone_list, "limit": LIVE_CALL_LIMIT, "dialling": dialling_session}
    )
    busy = {phone: now + NUMBER_IN_CALL_RETRY for phone in under_way.scalars()}
    return NumberFacts(attempts, abandoned, dnc, opted, busy)


_CUSTOMER_ATTEMPTS = """
SELECT user_id, COUNT(*),
       array_agg(attempted_at ORDER BY attempted_at) FILTER (WHERE attempted_at >= :since)
FROM contact_attempts WHERE channel = 'voice' AND {filter} GROUP BY user_id
"""


async def customer_attempts(
    conn: AsyncConnection,
    *,
    now: datetime,
    lo_hi: tuple[int, int] | None = None,
    user_ids: Sequence[int] | None = None,
) -> tuple[dict[int, tuple[datetime, ...]], dict[int, int]]:
    """Per customer: voice attempts of the last 7 days (oldest first) and the count of all time."""
    params: dict[str, object]
    if lo_hi is not None:
        where, params = "user_id BETWEEN :lo AND :hi", {"lo": lo_hi[0], "hi": lo_hi[1]}
    else:
        where, params = "user_id = ANY(:ids)", {"ids": list(user_ids or [])}
    attempts: dict[int, tuple[datetime, ...]] = {}
    totals: dict[int, int] = {}
    rows = await conn.execute(text(_CUSTOMER_ATTEMPTS.format(filter=where)), {**params, "since": now - WEEK})
    for user_id, total, recent in rows:
        totals[user_id] = total
        attempts[user_id] = tuple(recent or ())
    return attempts, totals


_FLAGGED_VULNERABLE = "SELECT user_id FROM customer_flags WHERE flag = 'vulnerable' AND cleared_at IS NULL AND {filter}"


async def flagged_vulnerable(
    conn: AsyncConnection, *, lo_hi: tuple[int, int] | None = None, user_ids: Sequence[int] | None = None
) -> frozenset[int]:
    """Customers the dialler itself holds as vulnerable (an agent's outcome or the compliance desk),
    whatever the replica's ``users.status`` says: the gate counts either."""
    params: dict[str, object]
    if lo_hi is not None:
        where, params = "user_id BETWEEN :lo AND :hi", {"lo": lo_hi[0], "hi": lo_hi[1]}
    else:
        where, params = "user_id = ANY(:ids)", {"ids": list(user_ids or [])}
    return frozenset((await conn.execute(text(_FLAGGED_VULNERABLE.format(filter=where)), params)).scalars())


# The record, with the soft delete: a deleted customer is "deleted" to every path, never "not found".
_RECORD = text(
    "SELECT id, status, is_enabled, deleted_at IS NOT NULL AS deleted, postcode, phone_number,"
    " TIMESTAMPDIFF(SECOND, '1970-01-01', updated_at) AS updated_at FROM users WHERE id IN :ids"
).bindparams(bindparam("ids", expanding=True))


async def load(
    *,
    replica: AsyncEngine,
    postgres: AsyncEngine,
    user_ids: Sequence[int],
    now: datetime,
    cooloff: timedelta = timedelta(hours=72),
    booked_callback: bool = False,
    dialling_session: str | None = None,
) -> dict[int, ContactFacts]:
    """The gate's facts for these customers (absent: no such customer in the replica).

    ``booked_callback``: the contact asked about is the callback the customer booked.
    ``dialling_session``: the session about to dial them (see :func:`number_facts`)."""
    ids = sorted(set(user_ids))
    if not ids:
        return {}
    async with replica.connect() as conn:
        records = (await conn.execute(_RECORD, {"ids": ids})).all()
    numbers = {r.id: normalise_phone(r.phone_number) for r in records}
    phones = sorted({n.e164 for n in numbers.values() if n.e164})
    async with postgres.connect() as conn:
        known = await number_facts(conn, now=now, phones=phones, cooloff=cooloff, dialling_session=dialling_session)
        attempts, totals = await customer_attempts(conn, now=now, user_ids=ids)
        flagged = await flagged_vulnerable(conn, user_ids=ids)
    found: dict[int, ContactFacts] = {}
    for r in records:
        number = numbers[r.id]
        phone = number.e164
        found[r.id] = ContactFacts(
            user_id=r.id,
            phone_e164=phone,
            status=str(r.status),
            deleted=bool(r.deleted),
            enabled=bool(r.is_enabled),
            postcode=r.postcode,
            phone_problem=None if phone else number.reason_text,
            do_not_call=phone in known.do_not_call,
            opted_out=phone in known.opted_out,
            attempts=_utc(attempts.get(r.id, ())),
            number_attempts=_utc(known.attempts.get(phone, ())) if phone else (),
            last_abandoned_at=known.abandoned_at.get(phone) if phone else None,
            booked_callback=booked_callback,
            flagged_vulnerable=r.id in flagged,
            number_busy_until=known.busy_until.get(phone) if phone else None,
            versions={
                "replica_users_updated_at": None if r.updated_at is None else int(r.updated_at),
                "attempts_7d": len(attempts.get(r.id, ())),
                "attempts_total": totals.get(r.id, 0),
                "number_attempts_7d": len(known.attempts.get(phone, ())) if phone else 0,
            },
        )
    return found


async def load_for_text(
    conn: AsyncConnection, *, phone: str, now: datetime, user_id: int | None = None, replica: AsyncEngine | None = None
) -> ContactFacts:
    """The facts of a text to ``phone`` (on the caller's connection, inside its transaction): the
    number's opt-out and do-not-call, and the customer's record when we know whose number it is."""
    known = await number_facts(conn, now=now, phones=[phone])
    facts = ContactFacts(
        user_id=user_id, phone_e164=phone, do_not_call=phone in known.do_not_call, opted_out=phone in known.opted_out
    )
    if user_id is None or replica is None:
        return facts
    async with replica.connect() as rconn:
        record = (await rconn.execute(_RECORD, {"ids": [user_id]})).one_or_none()
    if record is None:  # gone from the replica: nobody to text on their behalf
        return replace(facts, deleted=True)
    return replace(
        facts,
        status=str(record.status),
        deleted=bool(record.deleted),
        enabled=bool(record.is_enabled),
        postcode=record.postcode,
        versions={"replica_users_updated_at": None if record.updated_at is None else int(record.updated_at)},
    )


async def is_opted_out(conn: AsyncConnection, *, phone: str) -> bool:
    """Whether a STOP stands on ``phone`` (the fact; whether a text may go is :func:`gate.check`'s)."""
    return bool((await conn.execute(_OPT_OUT, {"phones": [phone]})).first())


def _utc(instants: tuple[datetime, ...]) -> tuple[datetime, ...]:
    return tuple(t if t.tzinfo is not None else t.replace(tzinfo=UTC) for t in instants)
