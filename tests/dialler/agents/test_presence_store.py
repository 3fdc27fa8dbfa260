"""set_presence / list_presence against the real PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import pytest

from dialler.agents.errors import AgentNotFound, PresenceTransitionRefused
from dialler.agents.models import Agent
from dialler.agents.presence import (
    Initiator,
    PresenceState,
    get_presence,
    list_presence,
    presence_history,
    presence_key,
    set_presence,
)
from dialler.config import Settings
from dialler.queues.engine import AgentNotAvailable, QueueEngine, QueueEntry
from dialler.runtime import Stores

S = PresenceState
T0 = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


async def new_agent(stores: Stores, name: str = "Priya") -> int:
    async with stores.sessions() as session:
        agent = Agent(email=f"{name.lower()}@rmc.example", display_name=name, password_hash="x", role="agent")
        session.add(agent)
        await session.commit()
        return agent.id


async def move(stores: Stores, settings: Settings, agent_id: int, target: S, at: datetime, **kw: object):  # type: ignore[no-untyped-def]
    async with stores.sessions() as session:
        return await set_presence(
            session=session,
            redis=stores.redis,
            settings=settings,
            agent_id=agent_id,
            target=target,
            now=at,
            **kw,
        )


async def history(stores: Stores, agent_id: int) -> list[tuple[str, str | None, datetime, datetime | None]]:
    async with stores.sessions() as session:
        stints = await presence_history(session=session, agent_id=agent_id)
    return [(s.state.value, s.reason, s.started_at, s.ended_at) for s in stints]


async def test_a_call_cycle_writes_one_history_row_per_stint_and_mirrors_redis(
    stores: Stores, settings: Settings
) -> None:
    agent_id = await new_agent(stores)
    minute = timedelta(minutes=1)
    system = {"by": Initiator.SYSTEM}

    await move(stores, settings, agent_id, S.AVAILABLE, T0)
    await move(stores, settings, agent_id, S.RESERVED, T0 + minute, **system)
    await move(stores, settings, agent_id, S.ON_CALL, T0 + 2 * minute, **system)
    await move(stores, settings, agent_id, S.WRAP_UP, T0 + 5 * minute, **system)
    cached = await stores.redis.hgetall(presence_key(settings, agent_id))  # type: ignore[misc]
    await move(stores, settings, agent_id, S.AVAILABLE, T0 + 6 * minute, **system)

    assert cached == {
        "state": "wrap_up",
        "reason": "",
        "since": f"{(T0 + 5 * minute).timestamp():.3f}",
    }
    assert await history(stores, agent_id) == [
        ("available", None, T0, T0 + minute),
        ("reserved", None, T0 + minute, T0 + 2 * minute),
        ("on_call", None, T0 + 2 * minute, T0 + 5 * minute),
        ("wrap_up", None, T0 + 5 * minute, T0 + 6 * minute),
        ("available", None, T0 + 6 * minute, None),
    ]
    async with stores.sessions() as session:
        now = await get_presence(session=session, redis=stores.redis, settings=settings, agent_id=agent_id)
    assert (now.state, now.user_id, now.since) == (S.AVAILABLE, None, T0 + 6 * minute)
    assert now.seconds_in_state(T0 + 10 * minute) == 240


async def test_a_refused_or_repeated_change_writes_nothing(stores: Stores, settings: Settings) -> None:
    agent_id = await new_agent(stores)
    await move(stores, settings, agent_id, S.AVAILABLE, T0)

    again = await move(stores, settings, agent_id, S.AVAILABLE, T0 + timedelta(minutes=1))
    with pytest.raises(PresenceTransitionRefused):
        await move(stores, settings, agent_id, S.ON_CALL, T0 + timedelta(minutes=2), by=Initiator.SYSTEM)
    with pytest.raises(AgentNotFound):
        await move(stores, settings, 999_999, S.AVAILABLE, T0)

    assert again.since == T0
    assert await history(stores, agent_id) == [("available", None, T0, None)]


async def test_concurrent_changes_of_one_agent_are_serialised(stores: Stores, settings: Settings) -> None:
    """An agent's "break" click racing the system's next-call: exactly one wins, the other is refused."""
    agent_id = await new_agent(stores)
    await move(stores, settings, agent_id, S.AVAILABLE, T0)
    at = T0 + timedelta(minutes=1)

    results = await asyncio.gather(
        move(stores, settings, agent_id, S.BREAK, at, reason="lunch"),
        move(stores, settings, agent_id, S.RESERVED, at, by=Initiator.SYSTEM),
        return_exceptions=True,
    )

    assert sorted(type(r).__name__ for r in results) == ["Presence", "PresenceTransitionRefused"]
    rows = await history(stores, agent_id)
    assert len(rows) == 2 and [r[3] is None for r in rows] == [False, True]
    winner = next(r for r in results if not isinstance(r, Exception))
    assert await stores.redis.hget(presence_key(settings, agent_id), "state") == winner.state.value  # type: ignore[union-attr,misc]


async def test_list_presence_rebuilds_missing_cache_entries_from_postgres(stores: Stores, settings: Settings) -> None:
    priya, tom = await new_agent(stores, "Priya"), await new_agent(stores, "Tom")
    await move(stores, settings, priya, S.AVAILABLE, T0)
    await move(stores, settings, tom, S.AVAILABLE, T0)
    await move(stores, settings, tom, S.BREAK, T0 + timedelta(minutes=3), reason="training")
    await stores.redis.delete(presence_key(settings, priya), presence_key(settings, tom))

    async with stores.sessions() as session:
        rows = await list_presence(session=session, redis=stores.redis, settings=settings)

    states = {r.display_name: (r.presence.state, r.presence.reason, r.presence.since) for r in rows}
    assert states == {
        "Priya": (S.AVAILABLE, None, T0),
        "Tom": (S.BREAK, "training", T0 + timedelta(minutes=3)),
    }
    assert await stores.redis.hget(presence_key(settings, tom), "reason") == "training"  # type: ignore[misc]


# --- who holds whom: the lease, and nothing else ----------------------------------------------------


def engine_of(stores: Stores, settings: Settings) -> QueueEngine:
    return QueueEngine(stores.redis, prefix=settings.redis_prefix, lease_ttl_s=settings.lease_ttl_s)


async def presence_of(stores: Stores, settings: Settings, agent_id: int):  # type: ignore[no-untyped-def]
    async with stores.sessions() as session:
        return await get_presence(session=session, redis=stores.redis, settings=settings, agent_id=agent_id)


async def test_a_lease_is_the_reservation_and_ending_it_frees_the_agent_with_nothing_to_undo(
    stores: Stores, settings: Settings
) -> None:
    """Next-call writes no presence: the lease alone makes the agent reserved (for its customer), so
    a lease whose session never starts (the API died) frees the agent by expiring, or by being given
    back in one step, and nothing can disagree with it."""
    agent_id = await new_agent(stores)
    await move(stores, settings, agent_id, S.AVAILABLE, datetime.now(UTC))
    engine = engine_of(stores, settings)
    await engine.upsert(QueueEntry(user_id=4242, queue="unsigned", score=1.0))
    now = time.time()

    offer = await engine.next_call_detailed(
        agent_id=agent_id,
        queues=["unsigned"],
        trained_vulnerable=True,
        now=now,
        session_id="s-1",
        presence_key=presence_key(settings, agent_id),
    )

    assert offer.lease is not None and offer.lease.session_id == "s-1"
    assert (await engine.lease_of_agent(agent_id)).session_id == "s-1"  # type: ignore[union-attr]
    reserved = await presence_of(stores, settings, agent_id)
    assert (reserved.state, reserved.user_id) == (S.RESERVED, 4242)
    assert await stores.redis.hget(presence_key(settings, agent_id), "state") == "available"  # type: ignore[misc]
    with pytest.raises(PresenceTransitionRefused, match="reserved for you"):
        await move(stores, settings, agent_id, S.BREAK, datetime.now(UTC), reason="lunch")

    await engine.give_back(user_id=4242, token=offer.lease.token, now=time.time())

    freed = await presence_of(stores, settings, agent_id)
    assert (freed.state, freed.user_id) == (S.AVAILABLE, None)
    assert await engine.position(4242) == ("unsigned", 1.0)  # back exactly where it was
    # An expired lease holds nobody either, reaped or not.
    stale = await engine.next_call(agent_id=agent_id, queues=["unsigned"], trained_vulnerable=True, now=now - 3600)
    assert stale is not None
    assert (await presence_of(stores, settings, agent_id)).state is S.AVAILABLE


async def test_a_break_click_racing_a_next_call_never_leaves_an_agent_on_break_holding_a_customer(
    stores: Stores, settings: Settings
) -> None:
    engine = engine_of(stores, settings)
    for round_ in range(6):
        agent_id = await new_agent(stores, f"Racer{round_}")
        await move(stores, settings, agent_id, S.AVAILABLE, datetime.now(UTC))
        await engine.upsert(QueueEntry(user_id=5000 + round_, queue="unsigned", score=1.0))

        results = await asyncio.gather(
            move(stores, settings, agent_id, S.BREAK, datetime.now(UTC), reason="lunch"),
            engine.next_call_detailed(
                agent_id=agent_id,
                queues=["unsigned"],
                trained_vulnerable=True,
                now=time.time(),
                session_id=f"s-{round_}",
                presence_key=presence_key(settings, agent_id),
            ),
            return_exceptions=True,
        )

        on_break, offer = results
        now = await presence_of(stores, settings, agent_id)
        if isinstance(offer, AgentNotAvailable):
            assert now.state is S.BREAK and await engine.lease_of_agent(agent_id) is None
        else:
            assert isinstance(on_break, PresenceTransitionRefused), on_break
            assert not isinstance(offer, BaseException) and offer.lease is not None
            assert (now.state, now.user_id) == (S.RESERVED, offer.lease.user_id)
