"""The batch rebuild over a generated dataset puts exactly the right customers in each queue."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client
from temporalio.worker import Worker

from devstack.seed import seed_replica
from dialler import dashboard
from dialler.agents.models import Agent
from dialler.agents.presence import Initiator, PresenceState, get_presence, set_presence
from dialler.calls.models import CallSession, ContactAttempt
from dialler.compliance.models import DoNotCall
from dialler.queues.rebuild import RebuildInput, RebuildReport
from dialler.queues.runtime import queue_engine
from dialler.runtime import Stores
from tests.support.queue_oracle import expected_queues
from tests.support.redis import unlink_prefix
from workflows.queue_rebuild import QueueRebuildWorkflow


async def run_rebuild(client: Client, stores: Stores, trigger: str = "test") -> RebuildReport:
    return await client.execute_workflow(
        QueueRebuildWorkflow.run,
        RebuildInput(trigger=trigger, chunk_size=700),
        id=f"queue-rebuild-{uuid.uuid4().hex[:8]}",
        task_queue=stores.settings.temporal_task_queue,
    )


async def test_rebuild_puts_exactly_the_right_customers_in_each_queue(
    temporal_client: Client, worker: Worker, stores: Stores, replica_url: str
) -> None:
    await seed_replica(replica_url, users=3_000, seed=7)
    expected = await expected_queues(stores.replica)
    # The dialler's own data takes some of them out: a do-not-call number.
    barred_user, barred_phone = next(iter(expected["unsigned"].items()))
    async with stores.sessions() as session:
        session.add(DoNotCall(phone_e164=barred_phone, source="customer", reason="asked not to be called"))
        await session.commit()

    report = await run_rebuild(temporal_client, stores)

    engine = queue_engine(stores)
    unsigned = await engine.snapshot("unsigned")
    outstanding = await engine.snapshot("outstanding_requests")
    # Do-not-call is per number: everyone sharing that number is out (the seed reuses drama numbers).
    barred = {u for q in expected.values() for u, phone in q.items() if phone == barred_phone}
    assert barred_user in barred
    assert set(unsigned) == set(expected["unsigned"]) - barred
    assert set(outstanding) == set(expected["outstanding_requests"]) - barred
    assert report.counts == {"unsigned": len(unsigned), "outstanding_requests": len(outstanding)}
    assert report.not_queued["do_not_call"] >= 1
    assert report.fill and report.drift == {}  # the live queues were empty: a fill, not drift


async def test_second_rebuild_reports_zero_drift_and_a_change_as_drift(
    temporal_client: Client, worker: Worker, stores: Stores, replica_url: str, replica_writer: AsyncEngine
) -> None:
    await seed_replica(replica_url, users=1_500, seed=11)
    await run_rebuild(temporal_client, stores)

    again = await run_rebuild(temporal_client, stores)
    assert again.drift_total == 0 and not again.fill

    expected = await expected_queues(stores.replica)
    signer = min(expected["unsigned"])
    async with replica_writer.begin() as conn:  # the customer signs in the portal; CDC is not running
        await conn.execute(
            text("UPDATE users SET current_signature_file_id = 1, updated_at = NOW() WHERE id = :id"),
            {"id": signer},
        )

    third = await run_rebuild(temporal_client, stores)
    assert third.drift["unsigned"]["removed"] == 1 and not third.fill
    assert signer not in await queue_engine(stores).snapshot("unsigned")


async def test_recent_attempts_defer_a_customer_until_the_gap_has_passed(
    temporal_client: Client, worker: Worker, stores: Stores, replica_url: str
) -> None:
    await seed_replica(replica_url, users=500, seed=3)
    expected = await expected_queues(stores.replica)
    user_id, phone = next(iter(expected["unsigned"].items()))
    called_at = datetime.now(UTC) - timedelta(minutes=30)
    async with stores.sessions() as session:
        session.add(ContactAttempt(user_id=user_id, phone_e164=phone, result="no_answer", attempted_at=called_at))
        await session.commit()

    await run_rebuild(temporal_client, stores)

    engine = queue_engine(stores)
    assert user_id in await engine.snapshot("unsigned")  # still queued, but not offered yet
    not_before = await stores.redis.hget(engine.keys.not_before, str(user_id))
    assert not_before is not None
    assert float(not_before) >= (called_at + timedelta(hours=4)).timestamp() - 1


async def test_rebuild_report_is_recorded_for_the_dashboard(
    temporal_client: Client, worker: Worker, stores: Stores, replica_url: str
) -> None:
    await seed_replica(replica_url, users=200, seed=5)

    report = await run_rebuild(temporal_client, stores, trigger="supervisor")

    async with stores.postgres.connect() as conn:
        row = (
            await conn.execute(
                text("SELECT trigger, drift FROM queue_rebuilds WHERE workflow_id = :id"),
                {"id": report.run_id},
            )
        ).one()
    assert row.trigger == "supervisor"
    assert row.drift == report.drift


async def test_a_fill_of_empty_queues_is_not_drift_and_the_board_stays_calm(
    temporal_client: Client, worker: Worker, stores: Stores, replica_url: str, replica_writer: AsyncEngine
) -> None:
    """A fresh install's first rebuild, and the first after Redis lost the queues, fill them: the board
    shows "filled", not thousands of drift in amber. Drift is reported when CDC really missed a change."""
    await seed_replica(replica_url, users=600, seed=13)

    first = await run_rebuild(temporal_client, stores, trigger="startup")
    board = await dashboard.last_rebuild(postgres=stores.postgres, settings=stores.settings)
    assert first.fill and first.drift_total == 0 and sum(first.counts.values()) > 100
    assert board is not None and board.fill and board.drift_total == 0

    # CDC misses a change (it is not running here): the next rebuild finds it and says so.
    expected = await expected_queues(stores.replica)
    signer = min(expected["unsigned"])
    async with replica_writer.begin() as conn:
        await conn.execute(
            text("UPDATE users SET current_signature_file_id = 1, updated_at = NOW() WHERE id = :id"), {"id": signer}
        )
    missed = await run_rebuild(temporal_client, stores)
    board = await dashboard.last_rebuild(postgres=stores.postgres, settings=stores.settings)
    assert not missed.fill and missed.drift["unsigned"]["removed"] == 1
    assert board is not None and not board.fill and board.drift_total == missed.drift_total > 0

    # Redis is flushed (here: this test's keys): the queues are empty again and the next rebuild fills them.
    keys = [key async for key in stores.redis.scan_iter(match=f"{stores.settings.redis_prefix}*", count=1000)]
    await stores.redis.unlink(*keys)
    refill = await run_rebuild(temporal_client, stores)
    board = await dashboard.last_rebuild(postgres=stores.postgres, settings=stores.settings)
    assert refill.fill and refill.drift == {} and refill.counts == missed.counts
    assert board is not None and board.fill and board.drift_total == 0


async def test_a_rebuild_keeps_an_open_sessions_customer_leased_and_frees_a_stranded_agent(
    temporal_client: Client, worker: Worker, stores: Stores, replica_url: str
) -> None:
    """Redis lost its leases (flushed) while a call was open: the rebuild used to queue that customer
    again (every agent then got them, and a 409). It re-takes the lease from the open session first.
    An agent left reserved with neither a lease nor an open session (an API crash between the two)
    becomes available."""
    await seed_replica(replica_url, users=300, seed=11)
    await run_rebuild(temporal_client, stores)
    engine = queue_engine(stores)
    settings = stores.settings
    now = datetime.now(UTC)
    async with stores.sessions() as session:
        caller = Agent(email="caller@rmc.example", display_name="Caller", password_hash="x", role="agent")
        stranded = Agent(email="stranded@rmc.example", display_name="Stranded", password_hash="x", role="agent")
        session.add_all([caller, stranded])
        await session.commit()
        for agent in (caller, stranded):
            await set_presence(
                session=session,
                redis=stores.redis,
                settings=settings,
                agent_id=agent.id,
                target=PresenceState.AVAILABLE,
                now=now,
            )
        lease = await engine.next_call(
            agent_id=caller.id, queues=["unsigned"], trained_vulnerable=True, now=now.timestamp()
        )
        assert lease is not None
        session.add(
            CallSession(
                id=uuid.uuid4(),
                workflow_id=f"call-{lease.user_id}",
                user_id=lease.user_id,
                agent_id=caller.id,
                queue="unsigned",
                phone_e164="+447700900123",
                lease_token=lease.token,
                status="in_progress",
                started_at=now,
            )
        )
        await session.commit()
        await set_presence(
            session=session,
            redis=stores.redis,
            settings=settings,
            agent_id=stranded.id,
            target=PresenceState.RESERVED,
            now=now,
            by=Initiator.SYSTEM,
        )
    await unlink_prefix(stores.redis, engine.keys.root)  # Redis lost the leases (and the queues)

    await run_rebuild(temporal_client, stores)

    assert await engine.position(lease.user_id) is None  # not queued for anyone else
    held = await engine.lease_of(lease.user_id)
    assert held is not None and (held.agent_id, held.token) == (caller.id, lease.token)
    async with stores.sessions() as session:
        assert (
            await get_presence(session=session, redis=stores.redis, settings=settings, agent_id=stranded.id)
        ).state == (PresenceState.AVAILABLE)
