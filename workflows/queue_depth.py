"""QueueDepthSampleWorkflow: one sample of every queue's depth into PostgreSQL, started every minute by
the ``queue-depth-sample`` schedule (workers/registry.py). Short-lived: one activity, then done."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.reports import ReportActivities
    from dialler.reports.depth import SampleInput, SampleResult, minute

# A sample that cannot be taken within the minute is worthless: the next run takes the next one.
TIMEOUT = timedelta(seconds=20)
RETRY = RetryPolicy(maximum_attempts=3, initial_interval=timedelta(seconds=1))


@workflow.defn
class QueueDepthSampleWorkflow:
    @workflow.run
    async def run(self) -> SampleResult:
        # The workflow's start time names the sample: deterministic on replay, the same on a retry.
        return await workflow.execute_activity_method(
            ReportActivities.sample_queue_depth,
            SampleInput(sampled_at=minute(workflow.now())),
            start_to_close_timeout=TIMEOUT,
            retry_policy=RETRY,
        )
