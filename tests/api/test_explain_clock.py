"""Explaining a customer on a demo stack whose clock is shifted (the suite runs on one, pinned to a
weekday morning): the gap since the last call is judged in the same frame as calling hours, and
``until`` is the real instant the queue itself holds the customer until."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx

from devstack.seed import seed_replica
from dialler.agents.models import Role
from dialler.calls.models import ContactAttempt
from dialler.runtime import Stores
from tests.support.api_agents import LoginAs
from tests.support.queue_oracle import expected_queues


async def test_a_customer_called_half_an_hour_ago_waits_out_the_gap_whatever_the_demo_clock(
    client: httpx.AsyncClient, login_as: LoginAs, stores: Stores, replica_url: str
) -> None:
    assert stores.settings.clock_offset_s != 0  # the suite's shifted clock (tests/conftest.py)
    await seed_replica(replica_url, users=200, seed=3)
    user_id, phone = next(iter((await expected_queues(stores.replica))["unsigned"].items()))
    called_at = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=30)
    async with stores.sessions() as session:
        session.add(ContactAttempt(user_id=user_id, phone_e164=phone, result="no_answer", attempted_at=called_at))
        await session.commit()
    supervisor = await login_as(Role.SUPERVISOR)

    response = await client.get(f"/api/v1/queues/customers/{user_id}/explain", headers=supervisor.headers)

    assert response.status_code == 200, response.text
    found = response.json()
    assert found["queue"] == "unsigned" and not found["callable_now"], found
    assert found["blocking_rule"] == "min_gap", found
    gap = timedelta(seconds=stores.settings.min_gap_between_attempts_s)
    assert datetime.fromisoformat(found["until"]) == called_at + gap
