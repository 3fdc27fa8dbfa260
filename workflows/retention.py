"""RetentionWorkflow: one run of the retention purge, started daily by the ``retention-purge``
Schedule. The cut-offs are taken from the workflow's clock, so a retried activity purges the same."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.retention import RetentionActivities
    from dialler.customers.retention import PurgeInput, RetentionInput, RetentionReport


@workflow.defn
class RetentionWorkflow:
    @workflow.run
    async def run(self, input: RetentionInput) -> RetentionReport:
        return await workflow.execute_activity_method(
            RetentionActivities.purge_expired,
            PurgeInput(as_of=workflow.now(), sms_body_days=input.sms_body_days, notes_days=input.notes_days),
            start_to_close_timeout=timedelta(minutes=10),
            retry_policy=RetryPolicy(initial_interval=timedelta(seconds=5), maximum_attempts=10),
        )
