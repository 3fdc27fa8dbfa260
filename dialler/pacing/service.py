"""The abandoned rate's inputs read from PostgreSQL, each queue's ceiling, and the verdicts.

What counts, per queue (``call_sessions.queue``), over the sessions started in the rolling 24 h that
ends at ``now`` (a real instant of the business clock, ``dialler.clock.instant``):

* **abandoned**: the session's attempt is ``abandoned`` — written at the answer by the web process
  when no agent was on within 2 s (``dialler.calls.answered.record_abandoned``), preview or progressive;
* **machine**: answered by a machine — AMD's verdict (attempt ``voicemail``,
  ``record_voicemail``) or an agent's ``voicemail`` outcome on a call that was answered;
* **live answered**: answered (``answered_at``) and neither abandoned nor a machine.

Preview calls count too: Ofcom's rate is per campaign, and a preview call whose agent does not pick
up within 2 s is abandoned like any other.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from dialler.pacing.abandon_rate import (
    DEFAULT_CEILING,
    WINDOW,
    PacingVerdict,
    RateInputs,
    abandon_rate,
    validate_ceiling,
    verdict,
)
from dialler.queues.keys import QUEUES
from dialler.queues.models import QueueSetting

__all__ = ["ceilings", "rate_inputs", "set_ceiling", "verdicts"]

_INPUTS = text(
    """
    SELECT s.queue,
           count(*) FILTER (WHERE a.abandoned) AS abandoned,
           count(*) FILTER (WHERE NOT coalesce(a.abandoned, false) AND (a.result = 'voicemail'
                            OR (s.answered_at IS NOT NULL AND o.disposition = 'voicemail'))) AS machine,
           count(*) FILTER (WHERE s.answered_at IS NOT NULL AND NOT coalesce(a.abandoned, false)
                            AND coalesce(a.result, '') <> 'voicemail'
                            AND coalesce(o.disposition, '') <> 'voicemail') AS live_answered
      FROM call_sessions s
      LEFT JOIN contact_attempts a ON a.call_session_id = s.id
      LEFT JOIN call_outcomes o ON o.call_session_id = s.id
     WHERE s.started_at > :since AND s.started_at <= :now
     GROUP BY s.queue
    """
)


async def rate_inputs(postgres: AsyncEngine, *, now: datetime, amd_on: bool) -> dict[str, RateInputs]:
    """Every queue's counts over the 24 h ending at ``now`` (a queue with no call: zeros)."""
    async with postgres.connect() as conn:
        rows = (await conn.execute(_INPUTS, {"since": now - WINDOW, "now": now})).all()
    found = {
        r.queue: RateInputs(
            abandoned=int(r.abandoned), live_answered=int(r.live_answered), machine=int(r.machine), amd_on=amd_on
        )
        for r in rows
    }
    return {q: found.get(q, RateInputs(abandoned=0, live_answered=0, machine=0, amd_on=amd_on)) for q in QUEUES}


async def ceilings(postgres: AsyncEngine) -> dict[str, Decimal]:
    """Every queue's ceiling: the one set, else the default (1 %)."""
    async with postgres.connect() as conn:
        rows = (await conn.execute(select(QueueSetting.queue, QueueSetting.abandon_rate_ceiling))).all()
    stored = {r.queue: r.abandon_rate_ceiling for r in rows if r.abandon_rate_ceiling is not None}
    return {q: Decimal(stored[q]) if q in stored else DEFAULT_CEILING for q in QUEUES}


async def verdicts(postgres: AsyncEngine, *, now: datetime, amd_on: bool) -> dict[str, PacingVerdict]:
    """Each queue's rate against its ceiling, now: open, or paused with the reason."""
    inputs = await rate_inputs(postgres, now=now, amd_on=amd_on)
    limits = await ceilings(postgres)
    return {q: verdict(q, abandon_rate(inputs[q]), limits[q]) for q in QUEUES}


async def set_ceiling(
    session: AsyncSession, *, queue: str, ceiling: Decimal | float | str, agent_id: int | None, now: datetime
) -> Decimal:
    """Store a queue's ceiling (validated: never above Ofcom's 3 %) in the caller's transaction; the
    value stored."""
    if queue not in QUEUES:
        raise ValueError(f"unknown queue {queue!r}")
    value = validate_ceiling(ceiling)
    statement = insert(QueueSetting).values(
        queue=queue, abandon_rate_ceiling=value, updated_at=now, updated_by_agent_id=agent_id
    )
    statement = statement.on_conflict_do_update(
        index_elements=["queue"],
        set_={"abandon_rate_ceiling": value, "updated_at": now, "updated_by_agent_id": agent_id},
    )
    await session.execute(statement)
    return value
