"""RecordingRetentionWorkflow: started by a Temporal Schedule (daily by default), deletes the
recordings whose retention has run out, batch by batch (CMCOB 2.3.6: ≥ 12 months after the claim
ends; the rule is :mod:`dialler.recordings.service`'s)."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.recordings import RecordingActivities
    from dialler.recordings.messages import PurgeInput

PURGE_TIMEOUT = timedelta(minutes=10)
PURGE_HEARTBEAT = timedelta(seconds=60)
RETRY = RetryPolicy(initial_interval=timedelta(seconds=5), backoff_coefficient=2.0, maximum_attempts=5)
MAX_BATCHES = 50  # per run; the next run carries on


@workflow.defn
class RecordingRetentionWorkflow:
    @workflow.run
    async def run(self, input: PurgeInput) -> int:
        deleted = 0
        for _ in range(MAX_BATCHES):
            result = await workflow.execute_activity_method(
                RecordingActivities.purge_expired_recordings,
                input,
                start_to_close_timeout=PURGE_TIMEOUT,
                heartbeat_timeout=PURGE_HEARTBEAT,
                retry_policy=RETRY,
            )
            deleted += result.deleted
            if not result.more:
                break
        return deleted
