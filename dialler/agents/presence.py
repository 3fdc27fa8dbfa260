"""Agent presence: where each agent is in the working day.

States and who may move an agent between them (``TRANSITIONS``):

===========  ===========  =========  =====================================================
from         to           by         why
===========  ===========  =========  =====================================================
offline      available    agent      starts work
available    offline      agent      signs off
available    break        agent      with a reason from ``settings.break_reasons``
break        available    agent      back from break
break        offline      agent      signs off from a break
break        break        agent      changes the break reason (a new stint)
available    reserved     system     next-call leased a customer to the agent
reserved     on_call      system     the call is being dialled / connected
reserved     wrap_up      system     the dial failed or nobody answered: an outcome is still due
reserved     available    system     the customer was released (skipped, lease expired)
on_call      wrap_up      system     the call ended
wrap_up      available    system     the outcome was recorded (or the wrap-up timed out)
wrap_up      break        system     the outcome was recorded with "break after"
wrap_up      offline      system     the outcome was recorded with "sign off after"
===========  ===========  =========  =====================================================

While a call session owns the agent (reserved, on_call, wrap_up) only the system moves them, so no
browser click can strand a customer or lose an outcome. The system may also perform every agent
transition (sign-out, account disabled). Repeating the current state is a no-op for offline,
available and an unchanged break; repeating reserved / on_call / wrap_up is refused, which is how a
second next-call for an agent who already holds a customer fails.

Storage: PostgreSQL holds the history (one ``agent_presence_events`` row per stint; the open row,
``ended_at IS NULL``, is the truth) and Redis mirrors the current state in
``<prefix>:presence:<agent id>`` (state, reason, since epoch, user_id) for the hot read paths. The
cache can be flushed: reads fall back to the open row and repair it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from redis.asyncio import Redis
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from dialler.agents.errors import AgentNotFound, InvalidPresenceReason, PresenceTransitionRefused
from dialler.agents.models import Agent, PresenceEvent
from dialler.config import Settings


class PresenceState(StrEnum):
    OFFLINE = "offline"
    AVAILABLE = "available"
    RESERVED = "reserved"
    ON_CALL = "on_call"
    WRAP_UP = "wrap_up"
    BREAK = "break"


class Initiator(StrEnum):
    AGENT = "agent"
    SYSTEM = "system"


_S = PresenceState
TRANSITIONS: Mapping[tuple[PresenceState, PresenceState], Initiator] = {
    (_S.OFFLINE, _S.AVAILABLE): Initiator.AGENT,
    (_S.AVAILABLE, _S.OFFLINE): Initiator.AGENT,
    (_S.AVAILABLE, _S.BREAK): Initiator.AGENT,
    (_S.BREAK, _S.AVAILABLE): Initiator.AGENT,
    (_S.BREAK, _S.OFFLINE): Initiator.AGENT,
    (_S.BREAK, _S.BREAK): Initiator.AGENT,
    (_S.AVAILABLE, _S.RESERVED): Initiator.SYSTEM,
    (_S.RESERVED, _S.ON_CALL): Initiator.SYSTEM,
    (_S.RESERVED, _S.WRAP_UP): Initiator.SYSTEM,
    (_S.RESERVED, _S.AVAILABLE): Initiator.SYSTEM,
    (_S.ON_CALL, _S.WRAP_UP): Initiator.SYSTEM,
    (_S.WRAP_UP, _S.AVAILABLE): Initiator.SYSTEM,
    (_S.WRAP_UP, _S.BREAK): Initiator.SYSTEM,
    (_S.WRAP_UP, _S.OFFLINE): Initiator.SYSTEM,
}

CALL_STATES = frozenset({_S.RESERVED, _S.ON_CALL, _S.WRAP_UP})
"""States owned by a call session: entered and left only by the system."""

_IDEMPOTENT = frozenset({_S.OFFLINE, _S.AVAILABLE, _S.BREAK})


@dataclass(frozen=True)
class Transition:
    current: PresenceState
    target: PresenceState
    reason: str | None
    changed: bool


def _refusal(current: PresenceState, target: PresenceState, by: Initiator) -> str:
    if by is Initiator.AGENT and current is _S.RESERVED:
        return "A customer is reserved for you: call them or release them first."
    if by is Initiator.AGENT and current is _S.ON_CALL:
        if target is _S.BREAK:
            return "You are on a call: finish the call and its wrap-up before going on a break."
        return "You are on a call: finish the call and its wrap-up first."
    if by is Initiator.AGENT and current is _S.WRAP_UP:
        return "Record the call outcome first; wrap-up ends when the outcome is saved."
    if target is _S.RESERVED and current is not _S.AVAILABLE:
        return f"Only an available agent can take a next call (you are {current.value})."
    if by is Initiator.AGENT and target is _S.RESERVED:
        return "A customer is reserved for you only by next call."
    if by is Initiator.AGENT and target in CALL_STATES:
        return f"The dialler moves you to {target.value} when a call needs it; it cannot be set by hand."
    if current is _S.OFFLINE and target is _S.BREAK:
        return "Set yourself available before going on a break."
    if current is target:
        return f"You are already {current.value}."
    return f"Cannot move from {current.value} to {target.value}."


def transition(
    current: PresenceState,
    target: PresenceState,
    reason: str | None,
    *,
    break_reasons: Sequence[str],
    by: Initiator = Initiator.AGENT,
    current_reason: str | None = None,
) -> Transition:
    """Validates one change. Pure: raises :class:`PresenceTransitionRefused` or
    :class:`InvalidPresenceReason` with a message meant for the agent."""
    reason = reason or None
    if target is _S.BREAK and reason not in break_reasons:
        raise InvalidPresenceReason(
            f"A break needs a reason, one of: {', '.join(break_reasons)}.", {"allowed": list(break_reasons)}
        )
    if target is not _S.BREAK and reason is not None:
        raise InvalidPresenceReason("Only a break takes a reason.")
    if current is target and current in _IDEMPOTENT and (current is not _S.BREAK or reason == current_reason):
        return Transition(current, target, reason, changed=False)
    allowed_by = TRANSITIONS.get((current, target))
    if allowed_by is None or (allowed_by is Initiator.SYSTEM and by is Initiator.AGENT):
        raise PresenceTransitionRefused(_refusal(current, target, by), current.value, target.value)
    return Transition(current, target, reason, changed=True)


def agent_targets(current: PresenceState) -> list[PresenceState]:
    """Where an agent may move themselves from ``current`` (for the UI's buttons)."""
    return [to for (frm, to), by in TRANSITIONS.items() if frm is current and by is Initiator.AGENT]


# Storage ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Presence:
    agent_id: int
    state: PresenceState
    reason: str | None
    since: datetime | None
    user_id: int | None = None

    def seconds_in_state(self, now: datetime) -> float | None:
        return None if self.since is None else max(0.0, (now - self.since).total_seconds())


def presence_key(settings: Settings, agent_id: int) -> str:
    return f"{settings.redis_prefix}:presence:{agent_id}"


def _to_hash(presence: Presence) -> dict[Any, Any]:  # redis-py's Mapping type is invariant in str
    return {
        "state": presence.state.value,
        "reason": presence.reason or "",
        "since": "" if presence.since is None else f"{presence.since.timestamp():.3f}",
        "user_id": "" if presence.user_id is None else str(presence.user_id),
    }


def _from_hash(agent_id: int, fields: Mapping[Any, Any]) -> Presence | None:
    try:
        state = PresenceState(fields["state"])
        since = datetime.fromtimestamp(float(fields["since"]), UTC) if fields.get("since") else None
        user_id = int(fields["user_id"]) if fields.get("user_id") else None
    except (KeyError, ValueError):
        return None  # missing or from an older layout: rebuilt from PostgreSQL
    return Presence(agent_id, state, fields.get("reason") or None, since, user_id)


def _from_row(agent_id: int, row: PresenceEvent | None) -> Presence:
    if row is None:
        return Presence(agent_id, PresenceState.OFFLINE, None, None)
    return Presence(agent_id, PresenceState(row.state), row.reason, row.started_at)


async def _open_rows(session: AsyncSession, agent_ids: Iterable[int]) -> dict[int, PresenceEvent]:
    ids = list(agent_ids)
    if not ids:
        return {}
    rows = await session.scalars(
        select(PresenceEvent)
        .where(PresenceEvent.agent_id.in_(ids), PresenceEvent.ended_at.is_(None))
        .order_by(PresenceEvent.agent_id, PresenceEvent.started_at)
    )
    return {row.agent_id: row for row in rows}  # the latest open stint wins


async def set_presence(
    *,
    session: AsyncSession,
    redis: Redis,
    settings: Settings,
    agent_id: int,
    target: PresenceState,
    reason: str | None = None,
    now: datetime,
    by: Initiator = Initiator.AGENT,
    user_id: int | None = None,
) -> Presence:
    """Moves one agent to ``target`` and commits; returns the new (or unchanged) presence.

    Changes of one agent are serialised by a lock on their ``agents`` row, so an agent's click and
    the system's next-call cannot both pass validation against the same old state. ``user_id`` is the
    customer a call state is about (kept in Redis only). Raises :class:`AgentNotFound`,
    :class:`PresenceTransitionRefused` or :class:`InvalidPresenceReason` (and then changes nothing).

    It owns the session's transaction (commits on success, rolls back on refusal): pass a session
    with no pending work of the caller's.
    """
    # The history feeds time-in-state reports and the current state lives in Redis: a crash may lose the
    # last fraction of a second of history, not worth a disk flush on every state change. Hence
    # synchronous_commit off for this transaction, set in the same round trip as the lock.
    locked = await session.scalar(
        select(Agent.id, func.set_config("synchronous_commit", "off", True))
        .where(Agent.id == agent_id)
        .with_for_update()
    )
    if locked is None:
        await session.rollback()
        raise AgentNotFound(agent_id)
    # Read after the lock, in a statement of its own: under READ COMMITTED it sees the stint a racing
    # change has just committed (a join in the locking statement would read it from the old snapshot).
    open_row = (await _open_rows(session, [agent_id])).get(agent_id)
    current = _from_row(agent_id, open_row)
    try:
        change = transition(
            current.state,
            target,
            reason,
            break_reasons=settings.break_reasons,
            by=by,
            current_reason=current.reason,
        )
    except (PresenceTransitionRefused, InvalidPresenceReason):
        await session.rollback()
        raise
    if not change.changed:
        await session.commit()  # nothing written; ends the lock without expiring the caller's objects
        return current
    if open_row is not None:
        now = max(now, open_row.started_at)  # API replicas' clocks may differ by a little
        open_row.ended_at = now
    session.add(PresenceEvent(agent_id=agent_id, state=target.value, reason=change.reason, started_at=now))
    await session.flush()
    presence = Presence(agent_id, target, change.reason, now, user_id if target in CALL_STATES else None)
    # Written while the row lock is held, so two changes reach Redis in the order they commit.
    await redis.hset(presence_key(settings, agent_id), mapping=_to_hash(presence))  # type: ignore[misc]
    await session.commit()
    return presence


async def get_presence(*, session: AsyncSession, redis: Redis, settings: Settings, agent_id: int) -> Presence:
    cached = _from_hash(agent_id, await redis.hgetall(presence_key(settings, agent_id)))  # type: ignore[misc]
    if cached is not None:
        return cached
    presence = _from_row(agent_id, (await _open_rows(session, [agent_id])).get(agent_id))
    await redis.hset(presence_key(settings, agent_id), mapping=_to_hash(presence))  # type: ignore[misc]
    return presence


@dataclass(frozen=True)
class AgentPresence:
    agent_id: int
    display_name: str
    role: str
    queues: list[str]
    presence: Presence


async def list_presence(*, session: AsyncSession, redis: Redis, settings: Settings) -> list[AgentPresence]:
    """Every active agent with their current presence (Redis, repaired from PostgreSQL if missing)."""
    agents = (
        await session.execute(
            select(Agent.id, Agent.display_name, Agent.role, Agent.queues)
            .where(Agent.active.is_(True))
            .order_by(Agent.display_name, Agent.id)
        )
    ).all()
    async with redis.pipeline(transaction=False) as pipe:
        for agent in agents:
            pipe.hgetall(presence_key(settings, agent.id))
        cached = await pipe.execute()
    found = {agent.id: _from_hash(agent.id, fields) for agent, fields in zip(agents, cached, strict=True)}
    states = {agent_id: presence for agent_id, presence in found.items() if presence is not None}
    missing = [agent_id for agent_id, presence in found.items() if presence is None]
    if missing:
        rows = await _open_rows(session, missing)
        async with redis.pipeline(transaction=False) as pipe:
            for agent_id in missing:
                states[agent_id] = _from_row(agent_id, rows.get(agent_id))
                pipe.hset(presence_key(settings, agent_id), mapping=_to_hash(states[agent_id]))
            await pipe.execute()
    return [AgentPresence(a.id, a.display_name, a.role, list(a.queues), states[a.id]) for a in agents]
