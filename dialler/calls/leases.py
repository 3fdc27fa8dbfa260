"""Leases follow sessions (JOURNEYS §9): the lease in Redis is the one record of who holds whom,
but Redis can lose it (flushed, failed over) and it can lapse (the worker or Temporal down longer
than the TTL) while the call session in PostgreSQL is still open. These re-derive the lease from
the open session, fenced by the session's own token and agent, and free agents left in a call state
with neither a lease nor an open session."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from redis.asyncio import Redis
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from dialler.agents.errors import PresenceTransitionRefused
from dialler.agents.presence import (
    Initiator,
    PresenceState,
    get_presence,
    held_customers,
    list_presence,
    set_presence,
)
from dialler.calls.models import CallSession
from dialler.config import Settings
from dialler.queues.engine import QueueEngine, StaleLease

log = logging.getLogger("dialler.calls.leases")


@dataclass(frozen=True)
class ReclaimReport:
    renewed: int = 0
    reclaimed: int = 0
    refused: int = 0  # another agent holds the customer (the fence holds): logged


async def open_session_of(session: AsyncSession, user_id: int, token: int) -> CallSession | None:
    """The open call session that holds this customer with this lease token, if any."""
    return (
        await session.execute(
            select(CallSession).where(
                CallSession.user_id == user_id,
                CallSession.lease_token == token,
                CallSession.closed_at.is_(None),
                CallSession.agent_id.is_not(None),
            )
        )
    ).scalar_one_or_none()


async def open_session_of_user(session: AsyncSession, user_id: int) -> CallSession | None:
    """The customer's open call session, whoever holds it (at most one: ``uq_call_sessions_open_user``)."""
    return (
        await session.execute(
            select(CallSession).where(
                CallSession.user_id == user_id, CallSession.closed_at.is_(None), CallSession.agent_id.is_not(None)
            )
        )
    ).scalar_one_or_none()


async def reclaim_for(engine: QueueEngine, call: CallSession, now: datetime) -> str | None:
    """Re-take (or renew) an open session's lease; None when the fence refuses it."""
    assert call.agent_id is not None and call.lease_token is not None
    try:
        done = await engine.reclaim(
            user_id=call.user_id,
            agent_id=call.agent_id,
            token=call.lease_token,
            session_id=str(call.id),
            now=now.timestamp(),
        )
    except StaleLease as exc:
        log.warning("lease of session %s not reclaimed: %s", call.id, exc.reason)
        return None
    if done == "reclaimed":
        log.warning("lease of session %s re-taken for agent %s (it was lost or had lapsed)", call.id, call.agent_id)
    return done


async def reclaim_open_sessions(session: AsyncSession, engine: QueueEngine, now: datetime) -> ReclaimReport:
    """Every open session's lease, re-taken where missing. Run before a rebuild stages, so that the
    rebuild keeps those customers leased to their agent instead of queueing them."""
    calls = (
        (
            await session.execute(
                select(CallSession).where(
                    CallSession.closed_at.is_(None),
                    CallSession.agent_id.is_not(None),
                    CallSession.lease_token.is_not(None),
                )
            )
        )
        .scalars()
        .all()
    )
    counts = {"renewed": 0, "reclaimed": 0, None: 0}
    for call in calls:
        counts[await reclaim_for(engine, call, now)] += 1
    return ReclaimReport(renewed=counts["renewed"], reclaimed=counts["reclaimed"], refused=counts[None])


# The states only the dialler sets, and only a call holds an agent in: with neither a lease nor an
# open session behind them, nothing will ever move the agent on.
_CALL_STATES = (PresenceState.RESERVED, PresenceState.ON_CALL, PresenceState.WRAP_UP)


async def free_stranded_agents(
    session: AsyncSession, redis: Redis, settings: Settings, now: datetime, agent_ids: Sequence[int] | None = None
) -> list[int]:
    """Agents shown reserved, on a call or in wrap-up with no live lease and no open session (an API
    crash between "reserved" and "workflow started", a lost lease after the session closed, a Redis
    flush between a session's wrap-up and its close) become available, each with one audit line and
    the system's stint in the presence history. ``agent_ids``: only these (default: every agent)."""
    if agent_ids is None:
        listed = await list_presence(session=session, redis=redis, settings=settings)
        states = [(a.agent_id, a.presence.state) for a in listed]
    else:
        states = [
            (i, (await get_presence(session=session, redis=redis, settings=settings, agent_id=i)).state)
            for i in agent_ids
        ]
    was = {agent_id: state for agent_id, state in states if state in _CALL_STATES}
    stuck = list(was)
    if not stuck:
        return []
    held = await held_customers(redis, settings, stuck)
    in_session = set(
        (
            await session.execute(
                select(CallSession.agent_id).where(CallSession.agent_id.in_(stuck), CallSession.closed_at.is_(None))
            )
        )
        .scalars()
        .all()
    )
    await session.commit()  # set_presence commits its own work: start it from a clean session
    freed = []
    for agent_id in stuck:
        if agent_id in held or agent_id in in_session:
            continue
        # On a call, the way out is through wrap-up (the transition table's only exit from it).
        steps = [PresenceState.WRAP_UP, PresenceState.AVAILABLE] if was[agent_id] == PresenceState.ON_CALL else []
        try:
            for target in steps or [PresenceState.AVAILABLE]:
                await set_presence(
                    session=session,
                    redis=redis,
                    settings=settings,
                    agent_id=agent_id,
                    target=target,
                    now=now,
                    by=Initiator.SYSTEM,
                )
        except PresenceTransitionRefused:
            continue  # moved meanwhile (a new call): nothing stranded any more
        log.warning("agent %s was %s with no lease and no open call: made available", agent_id, was[agent_id].value)
        freed.append(agent_id)
    return freed
