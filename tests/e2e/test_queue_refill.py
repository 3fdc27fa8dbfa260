"""Queues lost from their store come back at once, not at the next scheduled rebuild (chaos finding 3).

Redis flushed or replaced: CDC and outcomes put back only the customers they touch, so without a
rebuild a quiet floor is told nobody is callable for up to the rebuild interval (15 minutes)."""

from __future__ import annotations

import httpx
import pytest
from temporalio.client import Client
from temporalio.worker import Worker

from devstack.seed import seed_replica
from dialler.queues.runtime import queue_engine
from dialler.runtime import Stores
from tests.support.call_sessions import start_available
from tests.support.live_api import eventually
from tests.support.redis import unlink_prefix
from workflows import queue_rebuild_client

pytestmark = pytest.mark.e2e
NEXT_CALL = "/api/v1/agents/me/next-call"


async def test_queues_flushed_from_redis_are_refilled_when_an_agent_finds_them_empty(
    http: httpx.AsyncClient, temporal_client: Client, worker: Worker, stores: Stores, replica_url: str
) -> None:
    await seed_replica(replica_url, users=60, seed=21)
    await queue_rebuild_client.run_rebuild(temporal_client, stores.settings, trigger="schedule")
    engine = queue_engine(stores)
    built = await engine.depths()
    assert built["unsigned"] > 0 and not await engine.lost()

    await unlink_prefix(stores.redis, stores.settings.redis_prefix)  # FLUSHALL, of this test's keys only
    agent = await start_available(http, "priya@rmc.example")
    first = await http.post(NEXT_CALL, headers=agent)
    again = await http.post(NEXT_CALL, headers=agent)  # a second agent's ask meanwhile: still one refill

    assert first.status_code == 200, first.text
    assert first.json()["customer"] is None and "being refilled" in first.json()["reason"]
    assert again.status_code == 200 and again.json()["customer"] is None

    async def refilled() -> bool:
        return not await engine.lost()

    await eventually(refilled, within=30)
    assert await engine.depths() == built  # every customer back where the last rebuild put them
    offered = await http.post(NEXT_CALL, headers=agent)
    assert offered.status_code == 200 and offered.json()["customer"] is not None, offered.text
    refills = [
        w
        async for w in temporal_client.list_workflows(
            f"WorkflowId = '{queue_rebuild_client.refill_workflow_id(stores.settings)}'"
        )
    ]
    assert len([w for w in refills if w.task_queue == stores.settings.temporal_task_queue]) == 1
