"""QueueRebuildWorkflow: a full, set-based recompute of every queue, swapped in atomically.

Started by a Temporal Schedule (every 15 minutes by default) and on demand. Fans out one activity per
id range, swaps the staged queues in, re-applies the customers that changed through CDC meanwhile,
and returns (and records) the counts and the drift against the live queues."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.queues import QueueActivities
    from dialler.queues.rebuild import (
        RebuildInput,
        RebuildPlan,
        RebuildReport,
        RecomputeInput,
        StageRangeInput,
        StageRangeResult,
    )

# Named timeouts and retries: a range is ~25k customers, seconds of work; the swap is one script.
STAGE_TIMEOUT = timedelta(minutes=2)
STAGE_HEARTBEAT = timedelta(seconds=20)  # a range waits in a process of the worker, heartbeating
STEP_TIMEOUT = timedelta(seconds=60)
RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), backoff_coefficient=2.0, maximum_attempts=5)
MAX_PARALLEL_RANGES = 4  # in flight at once; each worker stages them on its processes
SLIDING_WINDOW = "rebuild-sliding-window"


@workflow.defn
class QueueRebuildWorkflow:
    @workflow.run
    async def run(self, input: RebuildInput) -> RebuildReport:
        started = workflow.now()
        plan = await workflow.execute_activity_method(
            QueueActivities.plan_rebuild, input, start_to_close_timeout=STEP_TIMEOUT, retry_policy=RETRY
        )
        results = await self._stage_all(plan)
        swap = await workflow.execute_activity_method(
            QueueActivities.swap_rebuild, plan.run_id, start_to_close_timeout=STEP_TIMEOUT, retry_policy=RETRY
        )
        if swap.dirty_user_ids:
            await workflow.execute_activity_method(
                QueueActivities.recompute_users,
                RecomputeInput(swap.dirty_user_ids),
                start_to_close_timeout=STEP_TIMEOUT,
                retry_policy=RETRY,
            )
        counts: dict[str, int] = {}
        not_queued: dict[str, int] = {}
        for r in results:
            for q, n in r.queued.items():
                counts[q] = counts.get(q, 0) + n
            for reason, n in r.not_queued.items():
                not_queued[reason] = not_queued.get(reason, 0) + n
        report = RebuildReport(
            run_id=plan.run_id,
            trigger=input.trigger,
            started_at=started,
            finished_at=workflow.now(),
            counts=counts,
            not_queued=not_queued,
            deferred=sum(r.deferred for r in results),
            # Into empty queues everything is "added": that is the fill, not something CDC missed.
            drift={} if plan.fill else swap.drift,
            reapplied=len(swap.dirty_user_ids),
            fill=plan.fill,
        )
        await workflow.execute_activity_method(
            QueueActivities.record_rebuild, report, start_to_close_timeout=STEP_TIMEOUT, retry_policy=RETRY
        )
        return report

    async def _stage_all(self, plan: RebuildPlan) -> list[StageRangeResult]:
        def stage(lo: int, hi: int) -> Awaitable[StageRangeResult]:
            return workflow.execute_activity_method(
                QueueActivities.stage_range,
                StageRangeInput(plan.run_id, lo, hi),
                start_to_close_timeout=STAGE_TIMEOUT,
                heartbeat_timeout=STAGE_HEARTBEAT,
                retry_policy=RETRY,
            )

        if not workflow.patched(SLIDING_WINDOW):
            # Histories recorded before the sliding window: batches of MAX_PARALLEL_RANGES.
            results: list[StageRangeResult] = []
            for i in range(0, len(plan.ranges), MAX_PARALLEL_RANGES):
                results += await asyncio.gather(*(stage(lo, hi) for lo, hi in plan.ranges[i : i + MAX_PARALLEL_RANGES]))
            return results
        # A sliding window: a range starts as soon as any other finishes, so no worker process waits
        # for the slowest range of a batch.
        window = asyncio.Semaphore(MAX_PARALLEL_RANGES)

        async def staged(lo: int, hi: int) -> StageRangeResult:
            async with window:
                return await stage(lo, hi)

        return list(await asyncio.gather(*(staged(lo, hi) for lo, hi in plan.ranges)))
