"""Returned calls (journey 7): a customer rings the number we call from.

Answered from PostgreSQL and Redis only, inside Twilio's webhook (no worker in the way, so a caller
is never left in silence): the caller is identified by the normalised number, the agent who last
called them is rung if they are free, else any free agent assigned to their queue, else any free
agent (a vulnerable caller only ever a trained one); out of hours or with nobody free they hear the
opening hours. Every returned call is a row here (the record of contact, not an attempt), and the
agent it was routed to sees it on /agents/me/live."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from redis.asyncio import Redis
from sqlalchemy import BigInteger, DateTime, ForeignKey, Index, String, and_, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import Mapped, mapped_column

from dialler import clock
from dialler.agents.models import Agent
from dialler.agents.presence import PresenceState, presence_key
from dialler.calls.models import CallSession
from dialler.calls.returned import (
    RETURNED_QUEUE,
    InboundCallInput,
    OpenReturnedSession,
    ReturnedCallStep,
    returned_session_id,
)
from dialler.comms.service import customers_with_phone
from dialler.compliance import facts as compliance_facts
from dialler.compliance.gate import shared_hours
from dialler.compliance.gates import CallingRules, agent_may_take
from dialler.config import Settings
from dialler.db.base import Base
from dialler.queues.phones import normalise_phone
from dialler.queues.runtime import queue_engine
from dialler.runtime import Stores

# How long after it was routed a returned call stays on the agent's screen (the ring plus a margin)
# when its workflow never says that it ended (Temporal was away).
SCREEN_POP_S = 120
# How long the agent's phone rings for a returned call before the caller hears the opening hours.
RING_TIMEOUT_S = 15
# No returned call is on anybody's screen after this, whatever its rows say.
MAX_RETURNED_CALL_H = 12


class InboundCall(Base):
    """One call a customer (or an unknown number) made to us, and where it went."""

    __tablename__ = "inbound_calls"
    __table_args__ = (Index("ix_inbound_calls_agent_received", "agent_id", "received_at"),)

    call_sid: Mapped[str] = mapped_column(String(64), primary_key=True)
    from_e164: Mapped[str | None] = mapped_column(String(16))
    user_id: Mapped[int | None] = mapped_column(BigInteger, index=True)
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id"))
    # routed_last_agent | routed_queue | routed_any | out_of_hours | nobody_free
    outcome: Mapped[str] = mapped_column(String(24))
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # Written by the call's InboundCallWorkflow: the agent took it / the ring or the conversation ended.
    answered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


@dataclass(frozen=True, slots=True)
class Routing:
    user_id: int | None
    agent_id: int | None
    outcome: str


def device_key(settings: Settings, agent_id: int) -> str:
    # The same key api/routes/voice.py's device-ready heartbeat sets.
    return f"{settings.redis_prefix}:device:{agent_id}"


async def device_ready(redis: Redis, settings: Settings, agent_id: int) -> bool:
    """The agent's browser phone is registered: its page's heartbeat is fresher than
    ``device_ready_ttl_s`` (the pacer's snapshot reads the same key, ``dialler.pacing.floor``)."""
    return bool(await redis.exists(device_key(settings, agent_id)))


async def _free(redis: Redis, settings: Settings, agent_id: int) -> bool:
    """Available (not reserved, on a call or on a break) with a connected browser phone."""
    state, device = (
        await redis.hget(presence_key(settings, agent_id), "state"),
        await device_ready(redis, settings, agent_id),
    )
    if not device or state is None:
        return False
    state = state.decode() if isinstance(state, bytes) else state
    return bool(state == PresenceState.AVAILABLE.value)


async def _connected_agents(redis: Redis, settings: Settings) -> list[int]:
    prefix = f"{settings.redis_prefix}:device:"
    found: list[int] = []
    async for key in redis.scan_iter(match=prefix + "*", count=500):
        tail = (key.decode() if isinstance(key, bytes) else key)[len(prefix) :]
        if tail.isdigit():
            found.append(int(tail))
    return sorted(found)


# The agent who last called them, and the queue they were called from: our calls, not their returned
# ones (a returned call's session is filed under the ``inbound`` queue, which is nobody's queue).
_LAST_CALLED = text(
    "SELECT agent_id, queue FROM call_sessions WHERE user_id = :u AND agent_id IS NOT NULL"
    f" AND queue <> '{RETURNED_QUEUE}' ORDER BY started_at DESC LIMIT 1"
)


@dataclass(frozen=True, slots=True)
class _Candidate:
    agent_id: int
    queues: tuple[str, ...]
    trained_vulnerable: bool


async def _candidates(postgres: AsyncEngine, agent_ids: list[int]) -> list[_Candidate]:
    """The active agents among ``agent_ids``, in id order, with what routing needs to know of them."""
    if not agent_ids:
        return []
    async with postgres.connect() as conn:
        rows = await conn.execute(
            select(Agent.id, Agent.queues, Agent.trained_vulnerable)
            .where(Agent.id.in_(agent_ids), Agent.active.is_(True))
            .order_by(Agent.id)
        )
    return [_Candidate(int(r.id), tuple(r.queues or ()), bool(r.trained_vulnerable)) for r in rows]


async def _customer_queue(stores: Stores, user_id: int, last_called_queue: str | None) -> str | None:
    """The queue the customer is in now (the queue engine), else the one we last called them from."""
    position = await queue_engine(stores).position(user_id)
    return position[0] if position is not None else last_called_queue


async def route(*, stores: Stores, from_: str, at: datetime) -> Routing:
    """Who takes this call (``agent_id`` None: nobody — out of hours or nobody free). ``at`` is the
    real instant; the hours are judged on the business clock.

    In order: the agent who last called them, else an agent assigned to the customer's queue, else
    any agent; each free, and for a vulnerable customer trained (the gate's rule, which binds a
    returned call as much as one we make)."""
    settings, redis = stores.settings, stores.redis
    e164 = normalise_phone(from_).e164
    users = await customers_with_phone(replica=stores.replica, phone=e164) if e164 else []
    user_id = users[0] if users else None
    if not shared_hours(at + clock.offset(settings), CallingRules.from_settings(settings)).allowed:
        return Routing(user_id, None, "out_of_hours")
    last_agent, customer_queue, vulnerable = None, None, False
    if user_id is not None:
        async with stores.postgres.connect() as conn:
            last = (await conn.execute(_LAST_CALLED, {"u": user_id})).one_or_none()
        last_agent = None if last is None else int(last.agent_id)
        customer_queue = await _customer_queue(stores, user_id, None if last is None else str(last.queue))
        known = await compliance_facts.load(
            replica=stores.replica, postgres=stores.postgres, user_ids=[user_id], now=at
        )
        vulnerable = user_id in known and known[user_id].vulnerable
    connected = await _connected_agents(redis, settings)
    may_take = [
        c
        for c in await _candidates(stores.postgres, sorted({*connected, *([last_agent] if last_agent else [])}))
        if agent_may_take(vulnerable, c.trained_vulnerable)
    ]
    tiers = (
        ("routed_last_agent", [c for c in may_take if c.agent_id == last_agent]),
        ("routed_queue", [c for c in may_take if customer_queue is not None and customer_queue in c.queues]),
        ("routed_any", [c for c in may_take if c.agent_id in connected]),
    )
    for outcome, tier in tiers:
        for candidate in tier:
            if await _free(redis, settings, candidate.agent_id):
                return Routing(user_id, candidate.agent_id, outcome)
    return Routing(user_id, None, "nobody_free")


async def record(postgres: AsyncEngine, *, call_sid: str, from_: str, routing: Routing, at: datetime) -> None:
    """The returned call's row (Twilio's retry of the same webhook changes nothing)."""
    row = {
        "call_sid": call_sid,
        "from_e164": normalise_phone(from_).e164,
        "user_id": routing.user_id,
        "agent_id": routing.agent_id,
        "outcome": routing.outcome,
        "received_at": at,
    }
    async with postgres.begin() as conn:
        await conn.execute(insert(InboundCall).values(row).on_conflict_do_nothing(index_elements=["call_sid"]))


async def ringing_for(postgres: AsyncEngine, agent_id: int, now: datetime) -> InboundCall | None:
    """The returned call routed to the agent that is on their screen: ringing (for at most
    SCREEN_POP_S when its workflow never says it ended), in conversation, or in wrap-up until its
    session is closed with an outcome."""
    session_open = (
        select(CallSession.id)
        .where(CallSession.twilio_call_sid == InboundCall.call_sid, CallSession.closed_at.is_(None))
        .exists()
    )
    live = and_(
        InboundCall.ended_at.is_(None),
        or_(InboundCall.answered_at.is_not(None), InboundCall.received_at > now - timedelta(seconds=SCREEN_POP_S)),
    )
    async with postgres.connect() as conn:
        row = (
            await conn.execute(
                select(InboundCall)
                .where(
                    InboundCall.agent_id == agent_id,
                    InboundCall.received_at > now - timedelta(hours=MAX_RETURNED_CALL_H),
                    or_(live, session_open),
                )
                .order_by(InboundCall.received_at.desc())
                .limit(1)
            )
        ).one_or_none()
    if row is None:
        return None
    return InboundCall(**{c: getattr(row, c) for c in row._fields})


async def open_returned_session_of(postgres: AsyncEngine, agent_id: int) -> CallSession | None:
    """The agent's open returned-call session (answered, not yet closed with an outcome)."""
    async with postgres.connect() as conn:
        row = (
            await conn.execute(
                select(CallSession)
                .where(
                    CallSession.agent_id == agent_id,
                    CallSession.queue == RETURNED_QUEUE,
                    CallSession.closed_at.is_(None),
                )
                .order_by(CallSession.started_at.desc())
                .limit(1)
            )
        ).one_or_none()
    return None if row is None else CallSession(**{c: getattr(row, c) for c in row._fields})


async def find(postgres: AsyncEngine, call_sid: str) -> InboundCall | None:
    async with postgres.connect() as conn:
        row = (await conn.execute(select(InboundCall).where(InboundCall.call_sid == call_sid))).one_or_none()
    return None if row is None else InboundCall(**{c: getattr(row, c) for c in row._fields})


def workflow_input(call: InboundCall, settings: Settings) -> InboundCallInput | None:
    """What the call's InboundCallWorkflow starts from (None: nobody was rung, nothing to follow)."""
    if call.agent_id is None:
        return None
    return InboundCallInput(
        call_sid=call.call_sid,
        session_id=returned_session_id(call.call_sid),
        agent_id=call.agent_id,
        user_id=call.user_id,
        routing=call.outcome,
        received_at=call.received_at,
        ring_timeout_s=RING_TIMEOUT_S,
        wrap_up_timeout_s=settings.wrap_up_timeout_s,
    )


async def open_returned_session(postgres: AsyncEngine, *, call: OpenReturnedSession) -> bool:
    """The returned call's session, once the agent has answered: a call session like any other
    (the outcome API, reports and recordings find it), filed under the ``inbound`` queue. False when
    the customer already has an open session (a colleague holds them): the call goes on, without
    an outcome of its own. Idempotent."""
    async with postgres.begin() as conn:
        phone = await conn.scalar(select(InboundCall.from_e164).where(InboundCall.call_sid == call.call_sid))
        await conn.execute(
            insert(CallSession)
            .values(
                id=uuid.UUID(call.session_id),
                workflow_id=call.workflow_id,
                user_id=call.user_id,
                agent_id=call.agent_id,
                queue=RETURNED_QUEUE,
                phone_e164=phone or "",
                lease_token=None,
                status="in_progress",
                twilio_call_sid=call.call_sid,
                progressive=False,
                started_at=call.started_at,
                answered_at=call.answered_at,
            )
            .on_conflict_do_nothing()
        )
        mine = await conn.scalar(select(CallSession.id).where(CallSession.id == uuid.UUID(call.session_id)))
    return mine is not None


async def record_step(postgres: AsyncEngine, step: ReturnedCallStep) -> None:
    """The returned call's progress on its row and its session's (each write idempotent)."""
    call_values: dict[str, object] = {}
    session_values: dict[str, object] = {"status": step.state, "updated_at": step.at}
    if step.state == "in_progress":
        call_values["answered_at"] = step.at
    if step.state in ("ended", "closed"):
        call_values["ended_at"] = step.at
        session_values.update(ended_at=step.at, end_reason=step.end_reason)
    async with postgres.begin() as conn:
        for column, value in call_values.items():
            await conn.execute(
                update(InboundCall)
                .where(InboundCall.call_sid == step.call_sid, getattr(InboundCall, column).is_(None))
                .values({column: value})
            )
        if step.session_id is not None:
            await conn.execute(
                update(CallSession)
                .where(CallSession.id == uuid.UUID(step.session_id), CallSession.closed_at.is_(None))
                .values(**session_values)
            )


def opening_hours_text(settings: Settings) -> str:
    """The opening hours in words, from the calling hours (the one home of both)."""
    rules = CallingRules.from_settings(settings)
    opening, closing = rules.weekday_hours
    words = f"Monday to Friday from {opening:%H:%M} to {closing:%H:%M}"
    if rules.saturday_hours is not None:
        words += f", and Saturday from {rules.saturday_hours[0]:%H:%M} to {rules.saturday_hours[1]:%H:%M}"
    return words + ", except bank holidays"
