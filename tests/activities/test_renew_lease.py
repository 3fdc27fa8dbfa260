"""The session's periodic lease renewal re-takes a lease Redis lost, for an open session only."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from temporalio.testing import ActivityEnvironment

from activities.calls import CallActivities
from dialler.agents.models import Agent
from dialler.calls.messages import RenewLeaseInput
from dialler.calls.models import CallSession
from dialler.queues.engine import QueueEntry
from dialler.queues.runtime import queue_engine
from dialler.runtime import Stores
from tests.support.redis import unlink_prefix


async def test_renewal_re_takes_a_lost_lease_for_an_open_session_and_not_for_a_closed_one(
    stores: Stores, telephony
) -> None:  # type: ignore[no-untyped-def]
    engine = queue_engine(stores)
    now = datetime.now(UTC)
    await engine.upsert_many([QueueEntry(user_id=41, queue="unsigned", score=1.0)])
    async with stores.sessions() as session:
        agent = Agent(email="renew@rmc.example", display_name="Renew", password_hash="x", role="agent")
        session.add(agent)
        await session.commit()
        lease = await engine.next_call(
            agent_id=agent.id, queues=["unsigned"], trained_vulnerable=True, now=now.timestamp()
        )
        assert lease is not None
        call = CallSession(
            id=uuid.uuid4(),
            workflow_id="call-41",
            user_id=41,
            agent_id=agent.id,
            queue="unsigned",
            phone_e164="+447700900141",
            lease_token=lease.token,
            status="in_progress",
            started_at=now,
        )
        session.add(call)
        await session.commit()
    await unlink_prefix(stores.redis, engine.keys.root)  # Redis lost the lease
    await engine.upsert(QueueEntry(user_id=41, queue="unsigned", score=1.0))  # and CDC queued them again

    activities = CallActivities(stores, telephony)
    renew = RenewLeaseInput(user_id=41, lease_token=lease.token)
    assert await ActivityEnvironment().run(activities.renew_lease, renew) is True
    held = await engine.lease_of(41)
    assert held is not None and (held.agent_id, held.token, held.session_id) == (agent.id, lease.token, str(call.id))
    assert await engine.position(41) is None

    # A closed session does not: its lease stays gone.
    async with stores.sessions() as session:
        (await session.get(CallSession, call.id)).closed_at = now  # type: ignore[union-attr]
        await session.commit()
    await unlink_prefix(stores.redis, engine.keys.root)
    assert await ActivityEnvironment().run(activities.renew_lease, renew) is False
    assert await engine.lease_of(41) is None
