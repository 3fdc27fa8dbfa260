"""Outcomes kept for their session (table ``received_outcomes``): the API writes the agent's outcome
here, committed, before it answers; the session takes it, by the Update or from here when it resumes.
So an outcome answered 2xx is never lost to a worker that was away when it was posted.

One outcome per session (the session id is the key): the same outcome posted again is the same
request (idempotent); a different one is refused as already recorded. An outcome the session
refused is withdrawn by the API, unless the session has already claimed it (then it is applied)."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import datetime

from sqlalchemy import Update, delete, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from dialler.calls.messages import OutcomeInput, ReceivedOutcomeRead
from dialler.calls.models import ReceivedOutcome
from dialler.calls.outcomes import OutcomeRefused


async def keep(*, session: AsyncSession, session_id: str, outcome: OutcomeInput, at: datetime) -> bool:
    """Keep the outcome for the session (the caller commits). True if this call stored it; False if
    the same outcome was already kept (a repeat). Raises OutcomeRefused for a different one."""
    stored = await session.scalar(
        insert(ReceivedOutcome)
        .values(
            call_session_id=uuid.UUID(session_id),
            agent_id=outcome.agent_id,
            disposition=outcome.disposition,
            notes=outcome.notes,
            callback_at=outcome.callback_at,
            received_at=at,
        )
        .on_conflict_do_nothing(index_elements=["call_session_id"])
        .returning(ReceivedOutcome.call_session_id)
    )
    if stored is not None:
        return True
    if await is_kept(session=session, session_id=session_id, outcome=outcome):
        return False
    raise OutcomeRefused("OutcomeAlreadyRecorded", "the outcome of this call is already recorded")


async def is_kept(*, session: AsyncSession, session_id: str, outcome: OutcomeInput) -> bool:
    """This very outcome is kept for the session (a repeat of the request that kept it)."""
    kept = await session.get(ReceivedOutcome, uuid.UUID(session_id), populate_existing=True)
    if kept is None:
        return False
    if kept.claimed_at is not None and kept.notes is None:  # applied: its notes live in call_outcomes only
        return _as_outcome(kept) == replace(outcome, notes=None)
    return _as_outcome(kept) == outcome


async def withdraw(*, session: AsyncSession, session_id: str) -> bool:
    """Withdraw a kept outcome the session refused (the caller commits). False when the session has
    claimed it meanwhile: then it is being applied, and the agent is told so."""
    gone = await session.scalar(
        delete(ReceivedOutcome)
        .where(ReceivedOutcome.call_session_id == uuid.UUID(session_id), ReceivedOutcome.claimed_at.is_(None))
        .returning(ReceivedOutcome.call_session_id)
    )
    return gone is not None


async def is_claimed(*, session: AsyncSession, session_id: str) -> bool:
    claimed = await session.scalar(
        select(ReceivedOutcome.claimed_at).where(ReceivedOutcome.call_session_id == uuid.UUID(session_id))
    )
    return claimed is not None


async def claim(conn: AsyncConnection, *, session_id: str, at: datetime) -> ReceivedOutcomeRead | None:
    """The session takes its kept outcome (idempotent: a retry gets the same one, claimed once)."""
    row = (
        await conn.execute(
            _claiming(session_id, at).returning(
                ReceivedOutcome.agent_id,
                ReceivedOutcome.disposition,
                ReceivedOutcome.notes,
                ReceivedOutcome.callback_at,
                ReceivedOutcome.received_at,
            )
        )
    ).first()
    if row is None:
        return None
    outcome = OutcomeInput(
        agent_id=row.agent_id, disposition=row.disposition, notes=row.notes, callback_at=row.callback_at
    )
    return ReceivedOutcomeRead(outcome, row.received_at)


async def mark_claimed(conn: AsyncConnection, *, session_id: str, disposition: str, at: datetime) -> None:
    """In the transaction that applies the session's outcome: the kept one it is (the Update brought
    it) can no longer be withdrawn. One kept too late for a session closing without it stays
    unclaimed: the API withdraws it and tells the agent the call has finished. The notes are blanked:
    from now on they live in ``call_outcomes`` alone, where retention and erasure find them."""
    await conn.execute(_claiming(session_id, at).where(ReceivedOutcome.disposition == disposition).values(notes=None))


def _claiming(session_id: str, at: datetime) -> Update:
    return (
        update(ReceivedOutcome)
        .where(ReceivedOutcome.call_session_id == uuid.UUID(session_id))
        .values(claimed_at=func.coalesce(ReceivedOutcome.claimed_at, at))
    )


def _as_outcome(row: ReceivedOutcome) -> OutcomeInput:
    return OutcomeInput(
        agent_id=row.agent_id, disposition=row.disposition, notes=row.notes, callback_at=row.callback_at
    )
