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
browser click can strand a customer or lose an outcome. One owner per move: ``reserved`` is the
queue engine's lease (next-call takes it, for an available agent, in one atomic step; the API never
writes presence for a call), and on_call / wrap_up / available-again are the call session's. The
system may also perform every agent transition (sign-out, account disabled). Repeating the current
state is a no-op for offline, available and an unchanged break; repeating reserved / on_call /
wrap_up is refused. A second next-call for an agent who already holds a customer is refused by the
engine (the agent's lease).

Storage: Redis holds the current state in ``<queue root>:presence:<agent id>`` (state, reason, since
epoch), beside the queue engine's keys (same hash slot: one script may read both), and changes it by
compare-and-set; PostgreSQL keeps the history, one appended ``agent_presence_events`` row per stint (a
stint ends where the next starts), for time-in-state reports. If Redis loses an entry, the agent's
latest row restores it. Neither a change nor a read takes a database lock.

Who holds whom is recorded once, in the lease (agent, customer, session): a presence's ``user_id``
is read from it, and a stored ``available`` with a live lease *is* ``reserved`` (``effective``). So
a crash anywhere after next-call leaves nothing to undo by hand: a lease nobody uses expires, and the
agent is available again by that alone.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from redis.asyncio import Redis
from sqlalchemy import func, select, text, tuple_
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from dialler.agents.errors import AgentNotFound, InvalidPresenceReason, PresenceTransitionRefused
from dialler.agents.models import Agent, PresenceEvent
from dialler.config import Settings
from dialler.queues.keys import QueueKeys


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
    return f"{QueueKeys(settings.redis_prefix).root}:presence:{agent_id}"


def _to_hash(presence: Presence) -> dict[Any, Any]:  # redis-py's Mapping type is invariant in str
    return {
        "state": presence.state.value,
        "reason": presence.reason or "",
        "since": "" if presence.since is None else f"{presence.since.timestamp():.3f}",
    }


def _from_hash(agent_id: int, fields: Mapping[Any, Any]) -> Presence | None:
    try:
        state = PresenceState(fields["state"])
        since = datetime.fromtimestamp(float(fields["since"]), UTC) if fields.get("since") else None
    except (KeyError, ValueError):
        return None  # missing or from an older layout: rebuilt from PostgreSQL
    return Presence(agent_id, state, fields.get("reason") or None, since)


def effective(stored: Presence, held_user_id: int | None) -> Presence:
    """The presence as it is, given the customer the agent's live lease holds (None: no lease).
    An available agent holding a lease is reserved for that customer; a call state names the
    customer of the lease; nothing else names one."""
    if held_user_id is None:
        return stored
    if stored.state is _S.AVAILABLE:
        return Presence(stored.agent_id, _S.RESERVED, None, stored.since, held_user_id)
    if stored.state in CALL_STATES:
        return Presence(stored.agent_id, stored.state, stored.reason, stored.since, held_user_id)
    return stored


# The customers the agents' live leases hold (an expired lease not yet reaped holds nobody). Time is
# the caller's wall clock, as the engine's: leases are stamped with it.
_HELD = """
local out = {}
for i = 3, #ARGV do
  local user = redis.call('HGET', KEYS[1], ARGV[i])
  local held = ''
  if user then
    local f = redis.call('HMGET', ARGV[1] .. user, 'agent', 'expires_at')
    if f[1] == ARGV[i] and f[2] and tonumber(f[2]) > tonumber(ARGV[2]) then held = user end
  end
  out[#out + 1] = held
end
return out
"""


async def held_customers(redis: Redis, settings: Settings, agent_ids: Sequence[int]) -> dict[int, int]:
    """agent id -> the customer their live lease holds, for those who hold one."""
    if not agent_ids:
        return {}
    keys = QueueKeys(settings.redis_prefix)
    found = await redis.eval(  # type: ignore[misc]
        _HELD, 1, keys.lease_agents, keys.lease_prefix, repr(time.time()), *(str(a) for a in agent_ids)
    )
    return {a: int(u) for a, u in zip(agent_ids, found, strict=True) if u}


def _from_row(agent_id: int, row: PresenceEvent | None) -> Presence:
    if row is None:
        return Presence(agent_id, PresenceState.OFFLINE, None, None)
    return Presence(agent_id, PresenceState(row.state), row.reason, row.started_at)


# Moves the state only if it is still the one the change was validated against (state and since)
# and the agent still holds the lease it held then (ARGV[6], '' for none; an expired one holds
# nobody): a racing change, or a next-call leasing a customer to the agent meanwhile, makes the loser
# re-read and re-validate, so two changes never both pass. KEYS[2] is the engine's lease_agents.
_MOVE = """
local cur = redis.call('HMGET', KEYS[1], 'state', 'since')
if cur[1] ~= ARGV[1] or cur[2] ~= ARGV[2] then return 0 end
local held = redis.call('HGET', KEYS[2], ARGV[8]) or ''
if held ~= '' then
  local f = redis.call('HMGET', ARGV[7] .. held, 'agent', 'expires_at')
  if f[1] ~= ARGV[8] or not f[2] or tonumber(f[2]) <= tonumber(ARGV[9]) then held = '' end
end
if held ~= ARGV[6] then return 0 end
redis.call('HSET', KEYS[1], 'state', ARGV[3], 'reason', ARGV[4], 'since', ARGV[5])
redis.call('HDEL', KEYS[1], 'user_id')
return 1
"""
# Repairs a missing (flushed) or unreadable entry from the history, unless a change got there first.
_REPAIR = """
if (redis.call('HGET', KEYS[1], 'state') or '') == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[1], 'state', ARGV[2], 'reason', ARGV[3], 'since', ARGV[4])
end
return redis.call('HGETALL', KEYS[1])
"""
_ATTEMPTS = 8


async def _latest_rows(session: AsyncSession, agent_ids: Iterable[int]) -> dict[int, PresenceEvent]:
    ids = list(agent_ids)
    if not ids:
        return {}
    latest = (
        select(PresenceEvent.agent_id, func.max(PresenceEvent.started_at))
        .where(PresenceEvent.agent_id.in_(ids))
        .group_by(PresenceEvent.agent_id)
    )
    rows = await session.scalars(
        select(PresenceEvent)
        .where(tuple_(PresenceEvent.agent_id, PresenceEvent.started_at).in_(latest))
        .order_by(PresenceEvent.id)
    )
    return {row.agent_id: row for row in rows}


async def _repair(redis: Redis, key: str, found: Mapping[Any, Any], presence: Presence) -> dict[Any, Any]:
    fields = _to_hash(presence)
    return _pairs(
        await redis.eval(  # type: ignore[misc]
            _REPAIR,
            1,
            key,
            found.get("state") or "",
            fields["state"],
            fields["reason"],
            fields["since"],
        )
    )


def _pairs(flat: Sequence[Any]) -> dict[Any, Any]:
    return dict(zip(flat[::2], flat[1::2], strict=True))


async def _current(session: AsyncSession, redis: Redis, settings: Settings, agent_id: int) -> tuple[Presence, dict]:
    """The agent's stored presence and the Redis fields it was read from (repaired from the history
    if missing). The ``_REPAIR`` guard compares the state field only: an empty string when absent."""
    key = presence_key(settings, agent_id)
    fields = await redis.hgetall(key)  # type: ignore[misc]
    presence = _from_hash(agent_id, fields)
    if presence is None:
        latest = (await _latest_rows(session, [agent_id])).get(agent_id)
        fields = await _repair(redis, key, fields, _from_row(agent_id, latest))
        presence = _from_hash(agent_id, fields)
        assert presence is not None
    return presence, fields


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
) -> Presence:
    """Moves one agent to ``target``; returns the new (or unchanged) presence.

    The change is validated against the effective presence (a live lease makes an available agent
    reserved) and made by compare-and-set on the stored state and the lease, so an agent's click and
    the system's next-call cannot both pass validation against the same old state: the loser re-reads
    and is validated again. The stint is then appended to the history in PostgreSQL and the session
    committed: pass a session with no pending work of the caller's. Raises :class:`AgentNotFound`,
    :class:`PresenceTransitionRefused` or :class:`InvalidPresenceReason` (and then changes nothing).
    """
    key = presence_key(settings, agent_id)
    keys = QueueKeys(settings.redis_prefix)
    now = now.replace(microsecond=now.microsecond // 1000 * 1000)  # Redis keeps milliseconds
    for _ in range(_ATTEMPTS):
        stored, fields = await _current(session, redis, settings, agent_id)
        held = (await held_customers(redis, settings, [agent_id])).get(agent_id)
        current = effective(stored, held)
        change = transition(
            current.state,
            target,
            reason,
            break_reasons=settings.break_reasons,
            by=by,
            current_reason=current.reason,
        )
        if not change.changed:
            return current
        started = now
        if current.since is not None:  # strictly after the stint it ends (API replicas' clocks differ a little)
            started = max(now, current.since + timedelta(milliseconds=1))
        presence = Presence(agent_id, target, change.reason, started)
        new = _to_hash(presence)
        moved = await redis.eval(  # type: ignore[misc]
            _MOVE,
            2,
            key,
            keys.lease_agents,
            fields["state"],
            fields["since"],
            new["state"],
            new["reason"],
            new["since"],
            "" if held is None else str(held),
            keys.lease_prefix,
            str(agent_id),
            repr(time.time()),
        )
        if moved:
            await _append_history(session, redis, key, presence)
            return effective(presence, held if target in CALL_STATES else None)
    raise PresenceTransitionRefused(
        "Your status is changing too quickly; try again.", current.state.value, target.value
    )


async def _append_history(session: AsyncSession, redis: Redis, key: str, presence: Presence) -> None:
    """One row per stint, append-only: a stint ends where the agent's next one starts (see
    :func:`presence_history`), so rows never need updating and their order is their start time. The
    history feeds reports and the current state is in Redis: the row is committed without waiting for
    the disk flush (``synchronous_commit`` off for this transaction, set in the same statement); a
    crash between the move and this row loses that row of history, never the state."""
    statement = text(
        "INSERT INTO agent_presence_events (agent_id, state, reason, started_at)"
        " SELECT :agent, :state, :reason, :started FROM (SELECT set_config('synchronous_commit', 'off', true)) s"
    )
    values = {"agent": presence.agent_id, "state": presence.state.value, "reason": presence.reason}
    try:
        await session.execute(statement, values | {"started": presence.since})
        await session.commit()
    except IntegrityError:  # no such agent (the foreign key): undo the state just set
        await session.rollback()
        await redis.delete(key)
        raise AgentNotFound(presence.agent_id) from None


async def get_presence(*, session: AsyncSession, redis: Redis, settings: Settings, agent_id: int) -> Presence:
    stored, _ = await _current(session, redis, settings, agent_id)
    return effective(stored, (await held_customers(redis, settings, [agent_id])).get(agent_id))


@dataclass(frozen=True)
class Stint:
    state: PresenceState
    reason: str | None
    started_at: datetime
    ended_at: datetime | None  # None: the current one


async def presence_history(*, session: AsyncSession, agent_id: int) -> list[Stint]:
    """An agent's stints in order, each ending where the next starts (for time-in-state reports)."""
    ended = func.lead(PresenceEvent.started_at).over(order_by=(PresenceEvent.started_at, PresenceEvent.id))
    query = (
        select(PresenceEvent.state, PresenceEvent.reason, PresenceEvent.started_at, ended)
        .where(PresenceEvent.agent_id == agent_id)
        .order_by(PresenceEvent.started_at, PresenceEvent.id)
    )
    return [
        Stint(PresenceState(state), reason, start, end) for state, reason, start, end in await session.execute(query)
    ]


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
    if missing:  # rare: Redis was flushed
        rows = await _latest_rows(session, missing)
        for agent_id in missing:
            key = presence_key(settings, agent_id)
            fields = await _repair(redis, key, await redis.hgetall(key), _from_row(agent_id, rows.get(agent_id)))  # type: ignore[misc]
            states[agent_id] = _from_hash(agent_id, fields) or _from_row(agent_id, rows.get(agent_id))
    held = await held_customers(redis, settings, [a.id for a in agents])
    return [
        AgentPresence(a.id, a.display_name, a.role, list(a.queues), effective(states[a.id], held.get(a.id)))
        for a in agents
    ]
