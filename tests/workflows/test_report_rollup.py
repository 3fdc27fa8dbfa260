"""The report rollup: the hourly schedule rolls every closed UK day up (the reports then read the
rollup for those days), a rerun adds nothing, and a call ending after its day was rolled is counted."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import text
from temporalio.client import Client, ScheduleIntervalSpec
from temporalio.worker import Worker

from dialler.calls.models import CallSession
from dialler.reports import queries, rollups
from dialler.reports.periods import period
from dialler.runtime import Stores
from workers.registry import ROLLUP_SCHEDULE_ID, _ensure_schedule, rollup_schedule
from workflows.report_rollup import ReportRollupWorkflow


async def add_call(stores: Stores, started: datetime) -> None:
    async with stores.postgres.begin() as conn:
        await conn.execute(
            CallSession.__table__.insert().values(
                id=uuid.uuid4(),
                workflow_id="call-1",
                user_id=1,
                queue="unsigned",
                phone_e164="+447700900000",
                status="closed",
                started_at=started,
                closed_at=started,
            )
        )


async def rolled_calls(stores: Stores) -> int:
    async with stores.postgres.connect() as conn:
        found = await conn.scalar(
            text("SELECT coalesce(sum(n), 0) FROM report_counts WHERE grain = 'queue' AND measure = 'calls'")
        )
        return int(found or 0)


async def test_the_schedule_rolls_closed_days_and_a_rerun_adds_nothing(
    temporal_client: Client, stores: Stores, worker: Worker
) -> None:
    three_days_ago = datetime.now(UTC) - timedelta(days=3)
    await add_call(stores, three_days_ago)
    await add_call(stores, datetime.now(UTC) - timedelta(minutes=5))  # today: open, not rolled
    schedule = rollup_schedule(stores.settings)
    assert schedule.spec.intervals == [ScheduleIntervalSpec(every=timedelta(hours=1))]

    await _ensure_schedule(temporal_client, ROLLUP_SCHEDULE_ID, schedule, trigger_now=True)
    try:
        for _ in range(150):
            if await rolled_calls(stores):
                break
            await asyncio.sleep(0.1)
        assert await rolled_calls(stores) == 1
    finally:
        await temporal_client.get_schedule_handle(ROLLUP_SCHEDULE_ID).delete()

    await temporal_client.execute_workflow(
        ReportRollupWorkflow.run, id="rollup-again", task_queue=stores.settings.temporal_task_queue
    )
    assert await rolled_calls(stores) == 1

    # The hourly report over both days reads the rolled day and today's raw rows: both calls.
    day = rollups.uk_day(three_days_ago)
    async with stores.postgres.connect() as conn:
        hours = await queries.hourly_report(conn, period(day, rollups.uk_day(datetime.now(UTC))))
    assert sum(h.calls for h in hours) == 2


async def test_a_call_ending_after_its_day_was_rolled_is_counted(stores: Stores) -> None:
    started = datetime.now(UTC) - timedelta(days=2)
    day = rollups.uk_day(started)
    async with stores.postgres.begin() as conn:
        await rollups.roll_day(conn, day, at=datetime.now(UTC))
    await add_call(stores, started)  # a late row in a rolled day: not in the rollup yet
    p = period(day)
    async with stores.postgres.connect() as conn:
        assert sum(h.calls for h in await queries.hourly_report(conn, p)) == 0

    async with stores.postgres.begin() as conn:  # what finish_session does as the call ends
        await rollups.reroll_if_rolled(conn, [started, datetime.now(UTC)], at=datetime.now(UTC))
    async with stores.postgres.connect() as conn:
        assert sum(h.calls for h in await queries.hourly_report(conn, p)) == 1
