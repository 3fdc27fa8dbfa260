"""Set-based reads of everything the queue rules need about a set of customers.

One query per store for a whole id range (the batch rebuild) or id list (change data capture), so
that both paths feed the same rules with the same facts. No per-customer query anywhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import bindparam, text
from sqlalchemy.ext.asyncio import AsyncConnection

from dialler.queues.eligibility import ACTIVE_CLAIM_STATUSES, CustomerFacts

# Soft-deleted claims and requirements never count; a requirement counts only on an active claim.
_REPLICA_FACTS = """
SELECT u.id, u.status, u.is_enabled, u.deleted_at IS NOT NULL AS deleted,
       u.current_signature_file_id IS NOT NULL AS signed, u.phone_number,
       COALESCE(c.active_claims, 0) AS active_claims, c.oldest_claim_at,
       COALESCE(r.pending, 0) AS pending_requirements
FROM users u
LEFT JOIN (
    SELECT user_id, COUNT(*) AS active_claims, MIN(created_at) AS oldest_claim_at
    FROM claims
    WHERE deleted_at IS NULL AND status IN :active AND {claim_filter}
    GROUP BY user_id
) c ON c.user_id = u.id
LEFT JOIN (
    SELECT cl.user_id, COUNT(*) AS pending
    FROM claim_requirements cr JOIN claims cl ON cl.id = cr.claim_id
    WHERE cr.deleted_at IS NULL AND cr.status = 'PENDING'
      AND cl.deleted_at IS NULL AND cl.status IN :active AND {claim_filter_cl}
    GROUP BY cl.user_id
) r ON r.user_id = u.id
WHERE {user_filter}
"""


def _replica_query(by_range: bool):  # type: ignore[no-untyped-def]
    if by_range:
        filters = {
            "claim_filter": "user_id BETWEEN :lo AND :hi",
            "claim_filter_cl": "cl.user_id BETWEEN :lo AND :hi",
            "user_filter": "u.id BETWEEN :lo AND :hi",
        }
        return text(_REPLICA_FACTS.format(**filters)).bindparams(bindparam("active", expanding=True))
    filters = {
        "claim_filter": "user_id IN :ids",
        "claim_filter_cl": "cl.user_id IN :ids",
        "user_filter": "u.id IN :ids",
    }
    return text(_REPLICA_FACTS.format(**filters)).bindparams(
        bindparam("active", expanding=True), bindparam("ids", expanding=True)
    )


_BY_RANGE = _replica_query(by_range=True)
_BY_IDS = _replica_query(by_range=False)


def _facts(row: Sequence[object]) -> CustomerFacts:
    (user_id, status, enabled, deleted, signed, phone, active_claims, oldest, pending) = row
    return CustomerFacts(
        user_id=int(user_id),  # type: ignore[call-overload]
        status=str(status),
        is_enabled=bool(enabled),
        deleted=bool(deleted),
        signed=bool(signed),
        phone_raw=phone,  # type: ignore[arg-type]
        active_claims=int(active_claims),  # type: ignore[call-overload]
        pending_requirements=int(pending),  # type: ignore[call-overload]
        oldest_active_claim_at=oldest.replace(tzinfo=UTC) if isinstance(oldest, datetime) else None,
    )


async def replica_facts_for_range(conn: AsyncConnection, lo: int, hi: int) -> list[CustomerFacts]:
    result = await conn.execute(_BY_RANGE, {"lo": lo, "hi": hi, "active": list(ACTIVE_CLAIM_STATUSES)})
    return [_facts(row) for row in result.all()]


async def replica_facts_for_ids(conn: AsyncConnection, user_ids: Sequence[int]) -> list[CustomerFacts]:
    if not user_ids:
        return []
    result = await conn.execute(_BY_IDS, {"ids": list(user_ids), "active": list(ACTIVE_CLAIM_STATUSES)})
    return [_facts(row) for row in result.all()]


async def replica_id_bounds(conn: AsyncConnection) -> tuple[int, int] | None:
    lo, hi = (await conn.execute(text("SELECT MIN(id), MAX(id) FROM users"))).one()
    return None if lo is None else (int(lo), int(hi))


@dataclass(frozen=True)
class DiallerFacts:
    """What the dialler's own database knows about a set of customers."""

    attempts: dict[int, tuple[datetime, ...]] = field(default_factory=dict)  # last 7 days, oldest first
    attempts_total: dict[int, int] = field(default_factory=dict)
    abandoned_at: dict[str, datetime] = field(default_factory=dict)  # by E.164 number, last 72 h+
    do_not_call: frozenset[str] = frozenset()
    opted_out: frozenset[str] = frozenset()
    callbacks: dict[int, LiveCallback] = field(default_factory=dict)


@dataclass(frozen=True)
class LiveCallback:
    user_id: int
    due_at: datetime
    status: str
    owner_agent_id: int | None


_ATTEMPTS = """
SELECT user_id, COUNT(*),
       array_agg(attempted_at ORDER BY attempted_at) FILTER (WHERE attempted_at >= :since)
FROM contact_attempts WHERE channel = 'voice' AND {filter} GROUP BY user_id
"""
_ABANDONED = text(
    "SELECT phone_e164, MAX(attempted_at) FROM contact_attempts "
    "WHERE abandoned AND attempted_at >= :since AND phone_e164 = ANY(:phones) GROUP BY phone_e164"
)
_DNC = text("SELECT phone_e164 FROM do_not_call WHERE phone_e164 = ANY(:phones)")
_OPT_OUT = text("SELECT phone_e164 FROM opt_outs WHERE phone_e164 = ANY(:phones)")
_CALLBACKS = """
SELECT user_id, due_at, status, owner_agent_id FROM callbacks
WHERE status IN ('scheduled', 'due', 'open') AND {filter}
"""


async def dialler_facts(
    conn: AsyncConnection,
    *,
    now: datetime,
    phones: Sequence[str],
    lo_hi: tuple[int, int] | None = None,
    user_ids: Sequence[int] | None = None,
    abandoned_window: timedelta = timedelta(hours=72),
) -> DiallerFacts:
    """Contact history, do-not-call, opt-outs and due callbacks for an id range or an id list."""
    params: dict[str, object]
    if lo_hi is not None:
        where, params = "user_id BETWEEN :lo AND :hi", {"lo": lo_hi[0], "hi": lo_hi[1]}
    else:
        where, params = "user_id = ANY(:ids)", {"ids": list(user_ids or [])}
    attempts: dict[int, tuple[datetime, ...]] = {}
    totals: dict[int, int] = {}
    rows = await conn.execute(text(_ATTEMPTS.format(filter=where)), {**params, "since": now - timedelta(days=7)})
    for user_id, total, recent in rows:
        totals[user_id] = total
        attempts[user_id] = tuple(recent or ())
    phone_list = list(phones)
    abandoned_rows = await conn.execute(_ABANDONED, {"since": now - abandoned_window, "phones": phone_list})
    abandoned: dict[str, datetime] = dict(abandoned_rows.all())  # type: ignore[arg-type]
    dnc = frozenset((await conn.execute(_DNC, {"phones": phone_list})).scalars())
    opted = frozenset((await conn.execute(_OPT_OUT, {"phones": phone_list})).scalars())
    callbacks = {
        row.user_id: LiveCallback(row.user_id, row.due_at, row.status, row.owner_agent_id)
        for row in await conn.execute(text(_CALLBACKS.format(filter=where)), params)
    }
    return DiallerFacts(attempts, totals, abandoned, dnc, opted, callbacks)
