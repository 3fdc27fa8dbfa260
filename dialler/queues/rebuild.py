"""The batch rebuild's messages (workflow and activity inputs/outputs) and its service functions.

The rebuild is the batch half of the CDC + batch hybrid: a full, set-based recompute of every queue
from the replica and the dialler's own data, written to staging keys and swapped in atomically.
:func:`stage_range` is one range's work; the worker runs it in its rebuild pool's processes
(:mod:`dialler.queues.rebuild_pool`), several ranges at once."""

from __future__ import annotations

import asyncio
import functools
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from dialler.compliance.gates import CallingRules
from dialler.config import Settings
from dialler.queues import facts as facts_
from dialler.queues.engine import QueueEngine
from dialler.queues.phones import normalise_phone
from dialler.queues.placement import Decision, decide_all
from dialler.runtime import Stores

DEFAULT_CHUNK = 25_000


@dataclass(frozen=True)
class RebuildInput:
    trigger: str = "schedule"  # schedule | cli | supervisor | cdc (the publisher after a source reset) | refill
    chunk_size: int = DEFAULT_CHUNK
    requested_by_agent_id: int | None = None


@dataclass(frozen=True)
class RebuildPlan:
    run_id: str
    ranges: list[tuple[int, int]]
    # No rebuild had been swapped in (a fresh install, a flushed Redis): this one fills the queues,
    # and what it adds is not drift. False in histories recorded before it existed.
    fill: bool = False


@dataclass(frozen=True)
class StageRangeInput:
    run_id: str
    lo: int
    hi: int


@dataclass(frozen=True)
class StageRangeResult:
    queued: dict[str, int] = field(default_factory=dict)
    not_queued: dict[str, int] = field(default_factory=dict)  # reason code -> count
    deferred: int = 0  # queued with a not-before time (attempt limits, gap, cool-off)
    seconds: dict[str, float] = field(default_factory=dict)  # wall time per phase, where it was staged


@dataclass(frozen=True)
class SwapResult:
    drift: dict[str, dict[str, int]]
    dirty_user_ids: list[int]
    leased: int


@dataclass(frozen=True)
class RecomputeInput:
    user_ids: list[int]


@dataclass(frozen=True)
class RecomputeResult:
    queued: int
    removed: int


@dataclass(frozen=True)
class RebuildReport:
    run_id: str
    trigger: str
    started_at: datetime
    finished_at: datetime
    counts: dict[str, int]
    not_queued: dict[str, int]
    deferred: int
    drift: dict[str, dict[str, int]]
    reapplied: int
    fill: bool = False  # filled empty queues (see RebuildPlan.fill): ``drift`` is then empty

    @property
    def drift_total(self) -> int:
        return sum(d.get("added", 0) + d.get("removed", 0) + d.get("rescored", 0) for d in self.drift.values())

    def summary(self) -> str:
        seconds = (self.finished_at - self.started_at).total_seconds()
        counts = ", ".join(f"{q}={n}" for q, n in sorted(self.counts.items()))
        drift = "; ".join(
            f"{q}: +{d.get('added', 0)} -{d.get('removed', 0)} ~{d.get('rescored', 0)}"
            for q, d in sorted(self.drift.items())
        )
        if self.fill:
            return f"rebuild {self.run_id} ({self.trigger}) in {seconds:.1f} s: {counts}; filled empty queues"
        return (
            f"rebuild {self.run_id} ({self.trigger}) in {seconds:.1f} s: {counts}; drift {self.drift_total} ({drift})"
        )


class Laps:
    """Wall time per phase of a piece of work, in seconds: ``lap("phase")`` ends the current phase."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._last = time.perf_counter()

    def __call__(self, phase: str) -> None:
        now = time.perf_counter()
        self.seconds[phase] = self.seconds.get(phase, 0.0) + now - self._last
        self._last = now


def split_ranges(lo: int, hi: int, chunk: int) -> list[tuple[int, int]]:
    return [(start, min(start + chunk - 1, hi)) for start in range(lo, hi + 1, chunk)]


async def decisions_for(
    *,
    replica: AsyncEngine,
    postgres: AsyncEngine,
    now: datetime,
    settings: Settings,
    lo_hi: tuple[int, int] | None = None,
    user_ids: list[int] | None = None,
    laps: Laps | None = None,
) -> list[Decision]:
    """Where each customer of an id range (or id list) belongs, from two set-based reads, under the
    calling rules and callback timings of ``settings``."""
    lap = laps or Laps()
    rules = CallingRules.from_settings(settings)
    place = functools.partial(
        decide_all,
        now=now,
        rules=rules,
        callback_grace=timedelta(seconds=settings.callback_grace_s),
        callback_prepare=timedelta(seconds=settings.callback_prepare_s),
    )
    async with replica.connect() as conn:
        if lo_hi is not None:
            customer_facts = await facts_.replica_facts_for_range(conn, *lo_hi)
        else:
            customer_facts = await facts_.replica_facts_for_ids(conn, user_ids or [])
    lap("replica")

    def callable_phones() -> list[str]:
        return sorted({p for f in customer_facts if (p := normalise_phone(f.phone_raw).e164)})

    phones = callable_phones() if len(customer_facts) < 200 else await asyncio.to_thread(callable_phones)
    lap("phones")
    async with postgres.connect() as conn:
        known = await facts_.dialler_facts(
            conn, now=now, phones=phones, lo_hi=lo_hi, user_ids=user_ids, abandoned_window=rules.abandoned_cooloff
        )
    lap("dialler_facts")
    if len(customer_facts) < 200:
        decisions = place(customer_facts, known)
    else:
        # Thousands of decisions are CPU work: off the event loop, so that heartbeats keep their slots.
        decisions = await asyncio.to_thread(place, customer_facts, known)
    lap("placement")
    return decisions


def tally(decisions: list[Decision]) -> StageRangeResult:
    queued: Counter[str] = Counter()
    not_queued: Counter[str] = Counter()
    deferred = 0
    for d in decisions:
        if d.entry is None:
            not_queued[d.reason] += 1
        else:
            queued[d.entry.queue] += 1
            deferred += d.entry.not_before is not None
    return StageRangeResult(dict(queued), dict(not_queued), deferred)


async def apply_decisions(engine: QueueEngine, decisions: list[Decision]) -> RecomputeResult:
    """Bring the live queues in line with fresh decisions (customers under lease keep their lease)."""
    entries = [d.entry for d in decisions if d.entry is not None]
    gone = [d.user_id for d in decisions if d.entry is None]
    await engine.upsert_many(entries)
    await engine.remove_many(gone)
    return RecomputeResult(queued=len(entries), removed=len(gone))


async def stage_range(
    stores: Stores, engine: QueueEngine, input: StageRangeInput, *, now: datetime
) -> StageRangeResult:
    """Place every customer of an id range and write them to the run's staging (idempotent)."""
    settings = stores.settings
    laps = Laps()
    decisions = await decisions_for(
        replica=stores.replica,
        postgres=stores.postgres,
        now=now,
        settings=settings,
        lo_hi=(input.lo, input.hi),
        laps=laps,
    )
    await engine.stage_many(input.run_id, [d.entry for d in decisions if d.entry is not None])
    laps("redis_staging")
    return replace(tally(decisions), seconds=laps.seconds)


def epoch(now: datetime | None = None) -> float:
    return now.timestamp() if now is not None else time.time()


async def recompute(
    stores: Stores, engine: QueueEngine, user_ids: list[int], *, laps: Laps | None = None
) -> RecomputeResult:
    """Place these customers afresh with the same rules as the rebuild (CDC, callbacks, outcomes)."""
    settings = stores.settings
    decisions = await decisions_for(
        replica=stores.replica,
        postgres=stores.postgres,
        now=datetime.now(UTC),
        settings=settings,
        user_ids=user_ids,
        laps=laps,
    )
    result = await apply_decisions(engine, decisions)
    vanished = sorted(set(user_ids) - {d.user_id for d in decisions})  # hard-deleted upstream
    await engine.remove_many(vanished)
    if laps is not None:
        laps("queue_write")
    return RecomputeResult(queued=result.queued, removed=result.removed + len(vanished))
