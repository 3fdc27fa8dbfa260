"""Queue activities: the rebuild's steps and the per-customer recompute that CDC also uses.

Every activity is idempotent: staging is keyed by the run id, the swap refuses a run that is no
longer in progress, upserts and removals converge, and the report insert ignores a duplicate."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable
from dataclasses import asdict
from datetime import UTC, datetime
from typing import TypeVar

from sqlalchemy.dialects.postgresql import insert
from temporalio import activity
from temporalio.exceptions import ApplicationError

from dialler.calls.leases import free_stranded_agents, reclaim_open_sessions
from dialler.queues import rebuild
from dialler.queues.engine import RebuildNotActive
from dialler.queues.facts import replica_id_bounds
from dialler.queues.models import QueueRebuild
from dialler.queues.rebuild import (
    RebuildPlan,
    RebuildReport,
    RecomputeInput,
    RecomputeResult,
    StageRangeInput,
    StageRangeResult,
    SwapResult,
    recompute,
)
from dialler.queues.rebuild_pool import RebuildPool
from dialler.queues.runtime import last_rebuild_key, queue_engine
from dialler.runtime import Stores

HEARTBEAT_EVERY_S = 2.0
T = TypeVar("T")


async def heartbeating(work: Awaitable[T]) -> T:
    """Await work done elsewhere (another process) while telling Temporal this activity is alive."""
    task = asyncio.ensure_future(work)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=HEARTBEAT_EVERY_S)
            if done:
                return task.result()
            activity.heartbeat()
    finally:
        task.cancel()  # if we were cancelled: drops a range still queued for a process


class QueueActivities:
    def __init__(self, stores: Stores, rebuild_pool: RebuildPool | None = None) -> None:
        """Without a pool, ranges are staged in this process (one at a time, on this event loop)."""
        self.stores = stores
        self.pool = rebuild_pool
        self.engine = queue_engine(stores)

    @activity.defn
    async def plan_rebuild(self, input: rebuild.RebuildInput) -> RebuildPlan:
        run_id = str(activity.info().workflow_id)
        # Leases follow sessions: an open session whose lease Redis lost is leased again before the
        # rebuild stages, so the swap keeps its customer with its agent instead of queueing them;
        # and an agent left reserved/on a call with neither is freed.
        now = datetime.now(UTC)
        async with self.stores.sessions() as session:
            reclaimed = await reclaim_open_sessions(session, self.engine, now)
            freed = await free_stranded_agents(session, self.stores.redis, self.stores.settings, now)
        if reclaimed.reclaimed or reclaimed.refused or freed:
            activity.logger.warning(
                "before rebuild: %d leases re-taken from open sessions, %d refused, %d stranded agents freed",
                reclaimed.reclaimed,
                reclaimed.refused,
                len(freed),
            )
        fill = await self.engine.unfilled()
        await self.engine.begin_rebuild(run_id)
        async with self.stores.replica.connect() as conn:
            bounds = await replica_id_bounds(conn)
        ranges = [] if bounds is None else rebuild.split_ranges(*bounds, input.chunk_size)
        return RebuildPlan(run_id=run_id, ranges=ranges, fill=fill)

    @activity.defn
    async def stage_range(self, input: StageRangeInput) -> StageRangeResult:
        now = datetime.now(UTC)
        if self.pool is None:
            return await rebuild.stage_range(self.stores, self.engine, input, now=now)
        # If this activity is cancelled, the process still finishes the range: staging is idempotent.
        return await heartbeating(self.pool.stage(input, now=now))

    @activity.defn
    async def swap_rebuild(self, run_id: str) -> SwapResult:
        try:
            drift = await self.engine.swap(run_id, now=datetime.now(UTC).timestamp())
        except RebuildNotActive as exc:
            # A newer rebuild took over (or this one's marker expired): its staging is not ours to swap.
            raise ApplicationError(str(exc), type="RebuildSuperseded", non_retryable=True) from exc
        return SwapResult(
            drift={
                q: {"added": d.added, "removed": d.removed, "rescored": d.rescored} for q, d in drift.queues.items()
            },
            dirty_user_ids=list(drift.dirty_user_ids),
            leased=len(drift.leased_user_ids),
        )

    @activity.defn
    async def recompute_users(self, input: RecomputeInput) -> RecomputeResult:
        """Re-derive the queue placement of these customers from fresh facts and apply it."""
        return await recompute(self.stores, self.engine, input.user_ids)

    @activity.defn
    async def record_rebuild(self, report: RebuildReport) -> None:
        values = {
            "workflow_id": report.run_id,
            "trigger": report.trigger,
            "started_at": report.started_at,
            "finished_at": report.finished_at,
            "counts": {
                "queued": report.counts,
                "not_queued": report.not_queued,
                "deferred": report.deferred,
                "fill": report.fill,
            },
            "drift": report.drift,
        }
        async with self.stores.postgres.begin() as conn:
            await conn.execute(
                insert(QueueRebuild).values(**values).on_conflict_do_nothing(index_elements=["workflow_id"])
            )
        summary = {**asdict(report), "drift_total": report.drift_total}
        await self.stores.redis.set(last_rebuild_key(self.stores), json.dumps(summary, default=str))
