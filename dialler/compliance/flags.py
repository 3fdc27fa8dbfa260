"""The dialler's own flags on a customer (today: vulnerable), which the compliance gate and the queues
read beside the replica's ``users.status`` (:func:`dialler.compliance.facts.flagged_vulnerable`).

An agent's ``vulnerable_flagged`` outcome sets the flag in the session's finishing transaction
(:func:`flag_vulnerable_on_outcome`); the compliance desk sets or clears it (:func:`set_vulnerable`,
audited). The caller re-places the customer afterwards, so the queues follow at once.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Final

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import Insert, insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from dialler.audit.service import AuditContext, record_ctx
from dialler.compliance.models import CustomerFlag
from dialler.errors import Invalid

VULNERABLE: Final = "vulnerable"
REASON_MAX = 2000


def _upsert_set(user_id: int, source: str, agent_id: int | None, session_id: uuid.UUID | None, at: datetime) -> Insert:
    stmt = insert(CustomerFlag).values(
        user_id=user_id,
        flag=VULNERABLE,
        source=source,
        set_at=at,
        set_by_agent_id=agent_id,
        call_session_id=session_id,
    )
    # A flag that stands keeps its first setting (a retried activity changes nothing); a cleared one is
    # set afresh.
    return stmt.on_conflict_do_update(
        index_elements=["user_id", "flag"],
        set_={
            "source": stmt.excluded.source,
            "set_at": stmt.excluded.set_at,
            "set_by_agent_id": stmt.excluded.set_by_agent_id,
            "call_session_id": stmt.excluded.call_session_id,
            "cleared_at": None,
            "cleared_by_agent_id": None,
        },
        where=CustomerFlag.cleared_at.is_not(None),
    )


async def flag_vulnerable_on_outcome(
    conn: AsyncConnection, *, user_id: int, agent_id: int | None, session_id: uuid.UUID, at: datetime
) -> None:
    """The agent's flag, on the finishing step's transaction (idempotent)."""
    await conn.execute(_upsert_set(user_id, "agent", agent_id, session_id, at))


async def current(session: AsyncSession, user_id: int) -> CustomerFlag | None:
    return await session.scalar(
        select(CustomerFlag).where(CustomerFlag.user_id == user_id, CustomerFlag.flag == VULNERABLE)
    )


async def set_vulnerable(
    session: AsyncSession, ctx: AuditContext, user_id: int, *, vulnerable: bool, reason: str, at: datetime
) -> bool:
    """The compliance desk marks the customer vulnerable or clears the flag, with a reason (audited).
    Returns whether anything changed."""
    why = reason.strip()
    if not why:
        raise Invalid("Say why the flag is set or cleared.")
    if len(why) > REASON_MAX:
        raise Invalid(f"A reason is limited to {REASON_MAX} characters.")
    flag = await current(session, user_id)
    standing = flag is not None and flag.cleared_at is None
    if vulnerable == standing:
        return False
    if vulnerable:
        await session.execute(_upsert_set(user_id, "compliance", ctx.actor_agent_id, None, at))
    else:
        assert flag is not None
        flag.cleared_at = at
        flag.cleared_by_agent_id = ctx.actor_agent_id
    await record_ctx(
        ctx,
        session=session,
        action="customer.vulnerable_set" if vulnerable else "customer.vulnerable_cleared",
        subject_type="customer",
        subject_id=user_id,
        details={"reason": why},
    )
    await session.commit()
    return True
