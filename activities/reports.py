"""Report activities: the one-minute queue depth sample (idempotent: an upsert keyed by minute and queue)."""

from __future__ import annotations

from temporalio import activity

from dialler.queues.runtime import queue_engine
from dialler.reports.depth import SampleInput, SampleResult, record_depths
from dialler.runtime import Stores


class ReportActivities:
    def __init__(self, stores: Stores) -> None:
        self.stores = stores

    @activity.defn
    async def sample_queue_depth(self, input: SampleInput) -> SampleResult:
        depths = await queue_engine(self.stores).depths()
        return await record_depths(self.stores.postgres, input.sampled_at, depths)
