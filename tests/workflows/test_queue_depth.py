"""Queue depth sampling: the one-minute schedule starts the workflow, which writes every queue's depth
into PostgreSQL for the minute (a retried or repeated sample of the same minute rewrites, not adds)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from sqlalchemy import text
from temporalio.client import Client, ScheduleIntervalSpec
from temporalio.worker import Worker

from activities.reports import ReportActivities
from dialler.queues.engine import QueueEntry
from dialler.queues.runtime import queue_engine
from dialler.reports.depth import SampleInput
from dialler.runtime import Stores
from workers.registry import DEPTH_SCHEDULE_ID, _ensure_schedule, depth_schedule
from workflows.queue_depth import QueueDepthSampleWorkflow


async def rows(stores: Stores) -> list[tuple[str, int]]:
    async with stores.postgres.connect() as conn:
        found = await conn.execute(text("SELECT queue, depth FROM queue_depth_samples ORDER BY sampled_at, queue"))
        return [(r.queue, int(r.depth)) for r in found]


async def test_the_schedule_samples_every_queue_each_minute(
    temporal_client: Client, stores: Stores, worker: Worker
) -> None:
    engine = queue_engine(stores)
    for user in (1, 2, 3):
        await engine.upsert(QueueEntry(user_id=user, queue="unsigned", score=float(user)))
    await engine.upsert(QueueEntry(user_id=9, queue="callbacks", score=1.0))
    schedule = depth_schedule(stores.settings)
    assert schedule.spec.intervals == [ScheduleIntervalSpec(every=timedelta(minutes=1))]

    await _ensure_schedule(temporal_client, DEPTH_SCHEDULE_ID, schedule, trigger_now=True)  # first run at once
    try:
        for _ in range(100):
            if await rows(stores):
                break
            await asyncio.sleep(0.1)
        assert sorted(await rows(stores)) == [("callbacks", 1), ("outstanding_requests", 0), ("unsigned", 3)]
    finally:
        await temporal_client.get_schedule_handle(DEPTH_SCHEDULE_ID).delete()


async def test_a_repeated_sample_of_the_same_minute_rewrites_it(
    temporal_client: Client, stores: Stores, worker: Worker
) -> None:
    engine = queue_engine(stores)
    await engine.upsert(QueueEntry(user_id=1, queue="unsigned", score=1.0))
    sample = ReportActivities(stores).sample_queue_depth
    at = datetime(2026, 10, 25, 1, 30, 17, tzinfo=UTC)

    await sample(SampleInput(sampled_at=at))
    await engine.upsert(QueueEntry(user_id=2, queue="unsigned", score=2.0))
    await sample(SampleInput(sampled_at=at + timedelta(seconds=30)))

    assert ("unsigned", 2) in await rows(stores) and len(await rows(stores)) == 3
    await temporal_client.execute_workflow(
        QueueDepthSampleWorkflow.run, id="depth-test", task_queue=stores.settings.temporal_task_queue
    )
    assert len(await rows(stores)) == 6  # a new minute: a new row per queue
