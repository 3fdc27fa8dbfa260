"""The worker keeps its schedules in place: the queue rebuild's and the recording retention's."""

from __future__ import annotations

import contextlib
from datetime import timedelta

from temporalio.client import Client, ScheduleActionStartWorkflow
from temporalio.service import RPCError

from dialler.config import Settings
from workers.registry import (
    DEPTH_SCHEDULE_ID,
    PURGE_SCHEDULE_ID,
    REBUILD_SCHEDULE_ID,
    RETENTION_SCHEDULE_ID,
    ROLLUP_SCHEDULE_ID,
    ensure_schedules,
)


async def test_the_retention_schedule_is_created_beside_the_rebuild_and_follows_its_setting(
    temporal_client: Client, settings: Settings
) -> None:
    try:
        await ensure_schedules(temporal_client, settings.model_copy(update={"recording_purge_interval_s": 7200}))
        retention = await temporal_client.get_schedule_handle(RETENTION_SCHEDULE_ID).describe()
        action = retention.schedule.action
        assert isinstance(action, ScheduleActionStartWorkflow) and action.workflow == "RecordingRetentionWorkflow"
        assert retention.schedule.spec.intervals[0].every == timedelta(hours=2)

        # Run again (a restarted worker) with another interval: updated in place, not duplicated.
        await ensure_schedules(temporal_client, settings)
        retention = await temporal_client.get_schedule_handle(RETENTION_SCHEDULE_ID).describe()
        assert retention.schedule.spec.intervals[0].every == timedelta(seconds=settings.recording_purge_interval_s)
    finally:
        # Every schedule ensure_schedules made: one left behind would be "already running" for a later
        # test that creates it and expects its first run at once.
        for schedule_id in (
            REBUILD_SCHEDULE_ID,
            DEPTH_SCHEDULE_ID,
            ROLLUP_SCHEDULE_ID,
            RETENTION_SCHEDULE_ID,
            PURGE_SCHEDULE_ID,
        ):
            with contextlib.suppress(RPCError):  # not created: nothing to remove
                await temporal_client.get_schedule_handle(schedule_id).delete()
