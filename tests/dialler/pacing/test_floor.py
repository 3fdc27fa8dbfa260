"""The pacer's view of the floor against the real PostgreSQL and Redis: who is ready, and the
estimates its dialled calls give (per hour of day, machines counted as the agents meet them)."""

from __future__ import annotations

import dataclasses
import time
from datetime import UTC, datetime, timedelta

from dialler.agents.models import Agent
from dialler.agents.presence import PresenceState, set_presence
from dialler.calls.inbound import device_key
from dialler.pacing import floor
from dialler.queues.engine import QueueEntry
from dialler.queues.runtime import queue_engine
from dialler.runtime import Stores
from tests.support.pacing import seed_call

# A winter Wednesday: London is on GMT, so local hours are UTC hours.
TODAY = datetime(2026, 1, 14, tzinfo=UTC)


async def dialled(
    stores: Stores, *, at: datetime, people: int = 0, machines: int = 0, unanswered: int = 0, queue: str = "unsigned"
) -> None:
    """Calls the pacer placed at ``at``, as the product records them once closed."""
    for _ in range(people):
        await seed_call(stores, queue=queue, at=at, result="docs_promised", end_reason="completed")
    for _ in range(machines):
        await seed_call(stores, queue=queue, at=at, result="voicemail", end_reason="completed")
    for _ in range(unanswered):
        await seed_call(stores, queue=queue, at=at, answered=False, result="no_answer", end_reason="no-answer")


async def test_estimates_are_per_hour_of_day_falling_back_to_the_last_24_hours(stores: Stores) -> None:
    # Mornings answer far more than afternoons, yesterday and the day before.
    for days_ago in (1, 2):
        day = TODAY - timedelta(days=days_ago)
        await dialled(stores, at=day + timedelta(hours=10, minutes=20), people=20, unanswered=20)
        await dialled(stores, at=day + timedelta(hours=15, minutes=20), people=4, unanswered=36)

    morning = await floor.estimates(stores, "unsigned", TODAY + timedelta(hours=10, minutes=5))
    afternoon = await floor.estimates(stores, "unsigned", TODAY + timedelta(hours=15, minutes=5))

    # 80 calls each, after the configured 0.25 worth 10 calls: (2.5 + 40) / 90 and (2.5 + 8) / 90.
    assert abs(morning.answer_probability - 42.5 / 90) < 1e-6
    assert abs(afternoon.answer_probability - 10.5 / 90) < 1e-6
    # 18:00 was never dialled (fewer than 50 calls that hour): the last 24 h, both hours of yesterday.
    evening = await floor.estimates(stores, "unsigned", TODAY - timedelta(days=1) + timedelta(hours=18))
    assert abs(evening.answer_probability - (2.5 + 24) / 90) < 1e-6


async def test_a_machine_counts_as_an_answer_unless_detection_hangs_up_on_it(stores: Stores) -> None:
    at = TODAY + timedelta(hours=11, minutes=10)
    await dialled(stores, at=at, people=10, machines=20, unanswered=30)
    now = at + timedelta(minutes=30)

    amd_off = await floor.estimates(stores, "unsigned", now)  # the default: machines reach agents
    amd_on = dataclasses.replace(
        stores, settings=stores.settings.model_copy(update={"answering_machine_detection": True})
    )
    detected = await floor.estimates(amd_on, "unsigned", now)

    assert abs(amd_off.answer_probability - (2.5 + 30) / 70) < 1e-6
    assert abs(detected.answer_probability - (2.5 + 10) / 70) < 1e-6


async def test_ready_is_available_assigned_active_with_a_live_phone_and_no_customer(stores: Stores) -> None:
    settings = stores.settings
    names = ["ready", "inactive", "other_queue", "on_break", "no_phone", "holding"]
    ids: dict[str, int] = {}
    async with stores.sessions() as session:
        for name in names:
            agent = Agent(
                email=f"{name}@rmc.example",
                display_name=name,
                password_hash="x",
                queues=["callbacks"] if name == "other_queue" else ["unsigned"],
                active=name != "inactive",
            )
            session.add(agent)
            await session.flush()
            ids[name] = agent.id
        await session.commit()
    now = datetime.now(UTC)
    for name, agent_id in ids.items():
        async with stores.sessions() as session:
            await set_presence(
                session=session,
                redis=stores.redis,
                settings=settings,
                agent_id=agent_id,
                target=PresenceState.AVAILABLE,
                now=now,
            )
            if name == "on_break":
                await set_presence(
                    session=session,
                    redis=stores.redis,
                    settings=settings,
                    agent_id=agent_id,
                    target=PresenceState.BREAK,
                    now=now + timedelta(seconds=1),
                    reason="lunch",
                )
        if name != "no_phone":
            await stores.redis.set(device_key(settings, agent_id), "1", ex=settings.device_ready_ttl_s)
    engine = queue_engine(stores)
    await engine.upsert(QueueEntry(user_id=4242, queue="unsigned", score=1.0))
    lease = await engine.next_call(
        agent_id=ids["holding"], queues=["unsigned"], trained_vulnerable=False, now=time.time()
    )
    assert lease is not None

    assert await floor.ready_agents(stores, "unsigned") == [ids["ready"]]
