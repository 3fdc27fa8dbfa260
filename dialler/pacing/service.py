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

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy import select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from dialler.errors import Invalid
from dialler.pacing.abandon_rate import (
    DEFAULT_CEILING,
    WINDOW,
    PacingVerdict,
    RateInputs,
    abandon_rate,
    validate_ceiling,
    verdict,
)
from dialler.pacing.predictive import PacingMode
from dialler.queues.keys import QUEUES
from dialler.queues.models import QueueSetting

__all__ = [
    "DEFAULT_MAX_RATIO",
    "PacingSettings",
    "ceilings",
    "queue_pacing",
    "rate_inputs",
    "set_ceiling",
    "set_pacing",
    "verdicts",
]

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


async def rate_inputs(
    postgres: AsyncEngine, *, now: datetime, amd_on: bool, window: timedelta = WINDOW
) -> dict[str, RateInputs]:
    """Every queue's counts over the 24 h (or ``window``) ending at ``now`` (a queue with no call: zeros)."""
    async with postgres.connect() as conn:
        rows = (await conn.execute(_INPUTS, {"since": now - window, "now": now})).all()
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


DEFAULT_MAX_RATIO = Decimal("3")
"""Predictive's most calls ringing per expected free agent when a queue has none set."""
MAX_RATIO_LIMIT = Decimal("5")


@dataclass(frozen=True)
class PacingSettings:
    """A queue's pacing as supervisors set it: the mode and predictive's maximum ratio."""

    queue: str
    mode: PacingMode
    max_ratio: Decimal


async def queue_pacing(postgres: AsyncEngine) -> dict[str, PacingSettings]:
    """Every queue's pacing: as set, else preview (agents dial) with the default maximum ratio."""
    async with postgres.connect() as conn:
        rows = (await conn.execute(select(QueueSetting.queue, QueueSetting.pacing_mode, QueueSetting.max_ratio))).all()
    stored = {r.queue: r for r in rows}
    found: dict[str, PacingSettings] = {}
    for q in QUEUES:
        row = stored.get(q)
        mode = PacingMode(row.pacing_mode) if row is not None and row.pacing_mode else PacingMode.PREVIEW
        ratio = Decimal(row.max_ratio) if row is not None and row.max_ratio is not None else DEFAULT_MAX_RATIO
        found[q] = PacingSettings(q, mode, ratio)
    return found


def validate_max_ratio(value: Decimal | float | str) -> Decimal:
    try:
        ratio = Decimal(str(value))
    except ArithmeticError:
        raise Invalid("The maximum ratio must be a number from 1 to 5.") from None
    if not ratio.is_finite() or ratio < 1 or ratio > MAX_RATIO_LIMIT:
        raise Invalid(
            f"The maximum ratio must be from 1 to {MAX_RATIO_LIMIT} calls ringing per free agent; {value} was asked.",
            {"max_ratio": str(value)},
        )
    return ratio.quantize(Decimal("0.01"))


async def set_pacing(
    session: AsyncSession,
    *,
    queue: str,
    mode: PacingMode | None,
    max_ratio: Decimal | float | str | None,
    agent_id: int | None,
    now: datetime,
) -> None:
    """Store a queue's pacing mode and/or maximum ratio in the caller's transaction (None: unchanged)."""
    if queue not in QUEUES:
        raise ValueError(f"unknown queue {queue!r}")
    values: dict[str, object] = {"updated_at": now, "updated_by_agent_id": agent_id}
    if mode is not None:
        values["pacing_mode"] = PacingMode(mode).value
    if max_ratio is not None:
        values["max_ratio"] = validate_max_ratio(max_ratio)
    statement = insert(QueueSetting).values(queue=queue, **values)
    statement = statement.on_conflict_do_update(index_elements=["queue"], set_=values)
    await session.execute(statement)
