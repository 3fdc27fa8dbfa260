"""Report activities: the one-minute queue depth sample (idempotent: an upsert keyed by minute and queue)
and the hourly rollup of closed days (idempotent: a day's rows are deleted and written again)."""

from __future__ import annotations

from temporalio import activity

from dialler.queues.runtime import queue_engine
from dialler.reports.depth import SampleInput, SampleResult, record_depths
from dialler.reports.rollups import RollupInput, RollupResult, roll_closed_days
from dialler.runtime import Stores


class ReportActivities:
    def __init__(self, stores: Stores) -> None:
        self.stores = stores

    @activity.defn
    async def sample_queue_depth(self, input: SampleInput) -> SampleResult:
        depths = await queue_engine(self.stores).depths()
        return await record_depths(self.stores.postgres, input.sampled_at, depths)

    @activity.defn
    async def roll_report_days(self, input: RollupInput) -> RollupResult:
        days = await roll_closed_days(self.stores.postgres, now=input.now, back_days=input.back_days)
        return RollupResult(days=days)
