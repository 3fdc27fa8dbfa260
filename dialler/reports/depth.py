"""Queue depth sampling: one row per queue per minute, for "customers waiting over the day".

Sampled by QueueDepthSampleWorkflow on a one-minute Temporal Schedule. The sample's minute comes from
the workflow (its start time, truncated), so a retried activity rewrites the same rows."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine


@dataclass(frozen=True)
class SampleInput:
    sampled_at: datetime  # truncated to the minute


@dataclass(frozen=True)
class SampleResult:
    queues: int
    waiting: int  # customers in every queue together


def minute(at: datetime) -> datetime:
    return at.replace(second=0, microsecond=0)


_UPSERT = text(
    "INSERT INTO queue_depth_samples (sampled_at, queue, depth) VALUES (:sampled_at, :queue, :depth)"
    " ON CONFLICT (sampled_at, queue) DO UPDATE SET depth = EXCLUDED.depth"
)


async def record_depths(postgres: AsyncEngine, sampled_at: datetime, depths: Mapping[str, int]) -> SampleResult:
    at = minute(sampled_at)
    rows = [{"sampled_at": at, "queue": q, "depth": int(n)} for q, n in depths.items()]
    if rows:
        async with postgres.begin() as conn:
            await conn.execute(_UPSERT, rows)
    return SampleResult(queues=len(rows), waiting=sum(int(n) for n in depths.values()))
