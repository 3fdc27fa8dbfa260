"""ReportRollupWorkflow: roll up the report counts of every closed UK day not rolled yet, started every
hour by the ``report-rollup`` schedule (workers/registry.py). One activity; a day is rolled in one
transaction by the definition the reports read raw rows with (dialler/reports/rollups.py), so a retry
or an overlapping run rewrites the same rows."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.reports import ReportActivities
    from dialler.reports.rollups import RollupInput, RollupResult

# A first run on a year of history rolls hundreds of days (about a second each at 20 000 calls a day).
TIMEOUT = timedelta(minutes=30)
RETRY = RetryPolicy(maximum_attempts=3, initial_interval=timedelta(seconds=10))


@workflow.defn
class ReportRollupWorkflow:
    @workflow.run
    async def run(self) -> RollupResult:
        # The start time decides which days are closed: the same on replay and on a retry.
        return await workflow.execute_activity_method(
            ReportActivities.roll_report_days,
            RollupInput(now=workflow.now()),
            start_to_close_timeout=TIMEOUT,
            retry_policy=RETRY,
        )
