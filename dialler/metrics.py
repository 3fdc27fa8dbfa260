"""Prometheus metrics of the floor, computed at scrape time from the stores that own each number
(the same definitions as the supervisor's dashboard, dialler/dashboard.py):

* queues (Redis): depth per queue, leases held per queue, leases past their expiry (an agent's
  browser or a worker died: the reaper should return them), and for the callbacks queue the age of
  the oldest callback waiting to be called (PostgreSQL: due or open since);
* calls (PostgreSQL, last 24 h): answered, abandoned, and the abandoned rate, the Ofcom measure;
  per queue (dialler.pacing), the rate with the answering-machine adjustment, the queue's ceiling,
  and 1 when its progressive dialling is paused because the rate reached the ceiling;
* callbacks (PostgreSQL): due now, late (still not called ``callback_grace_s`` after due), missed today.

Families carry no customer data: counts and ages only. Names are listed in :data:`FAMILIES`, which
the alert rules and the dashboard are checked against (tests/deploy/test_observability.py).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from prometheus_client.core import GaugeMetricFamily, Metric
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from dialler import clock
from dialler.config import Settings
from dialler.dashboard import abandoned_24h, day_start
from dialler.pacing import service as pacing
from dialler.pacing.abandon_rate import PacingVerdict
from dialler.queues.keys import QUEUES, QueueKeys

# The metric families this module exports, and those of the API, the worker (Temporal SDK) and CDC.
FLOOR_FAMILIES = (
    "dialler_queue_depth",
    "dialler_queue_leases",
    "dialler_queue_leases_expired",
    "dialler_queue_oldest_waiting_seconds",
    "dialler_calls_answered_24h",
    "dialler_calls_abandoned_24h",
    "dialler_calls_abandoned_rate_24h",
    "dialler_queue_abandoned_rate_24h",
    "dialler_queue_abandoned_ceiling",
    "dialler_queue_progressive_paused",
    "dialler_callbacks_due",
    "dialler_callbacks_late",
    "dialler_callbacks_missed_today",
    "dialler_floor_scrape_errors",
)


async def floor_families(*, postgres: AsyncEngine, redis: Redis, settings: Settings) -> list[Metric]:
    """Every floor family, now. A store that does not answer leaves its families out and counts in
    ``dialler_floor_scrape_errors`` (a scrape never fails because one store blinked)."""
    families: list[Metric] = []
    errors = GaugeMetricFamily(
        "dialler_floor_scrape_errors", "Stores that did not answer this scrape", labels=["store"]
    )
    try:
        families += await _queue_families(redis, settings)
    except Exception:
        errors.add_metric(["redis"], 1)
    try:
        families += await _postgres_families(postgres, settings)
    except Exception:
        errors.add_metric(["postgres"], 1)
    return [*families, errors]


async def _queue_families(redis: Redis, settings: Settings) -> list[Metric]:
    keys = QueueKeys(settings.redis_prefix)
    now = time.time()
    async with redis.pipeline(transaction=False) as pipe:
        for queue in QUEUES:
            pipe.zcard(keys.queue(queue))
        pipe.zrange(keys.lease_expiry, 0, -1, withscores=True)
        *depths, leases = await pipe.execute()
    async with redis.pipeline(transaction=False) as pipe:
        for user_id, _ in leases:
            pipe.hget(keys.lease(int(user_id)), "queue")
        lease_queues = await pipe.execute()
    depth = GaugeMetricFamily("dialler_queue_depth", "Customers waiting in each queue", labels=["queue"])
    held = GaugeMetricFamily(
        "dialler_queue_leases", "Customers offered to or on a call with an agent", labels=["queue"]
    )
    for queue, count in zip(QUEUES, depths, strict=True):
        depth.add_metric([queue], int(count))
        held.add_metric([queue], sum(1 for q in lease_queues if q == queue))
    expired = GaugeMetricFamily(
        "dialler_queue_leases_expired",
        "Leases past their expiry, not yet returned to the queue",
        value=sum(1 for _, expires_at in leases if expires_at < now),
    )
    return [depth, held, expired]


async def _postgres_families(postgres: AsyncEngine, settings: Settings) -> list[Metric]:
    now = datetime.now(UTC)
    abandoned = await abandoned_24h(postgres=postgres, now=now, amd_on=settings.answering_machine_detection)
    async with postgres.connect() as conn:
        row = (
            await conn.execute(
                text(
                    "SELECT count(*) FILTER (WHERE status IN ('due', 'open')) AS due,"
                    " count(*) FILTER (WHERE status IN ('due', 'open') AND due_at < :late) AS late,"
                    " count(*) FILTER (WHERE status = 'missed' AND updated_at >= :today) AS missed,"
                    " min(due_at) FILTER (WHERE status IN ('due', 'open')) AS oldest"
                    " FROM callbacks"
                ),
                {"late": now - timedelta(seconds=settings.callback_grace_s), "today": day_start(now, settings)},
            )
        ).one()
    oldest = GaugeMetricFamily(
        "dialler_queue_oldest_waiting_seconds",
        "How long the longest-waiting callable customer has waited (callbacks: since due)",
        labels=["queue"],
    )
    oldest.add_metric(["callbacks"], max(0.0, (now - row.oldest).total_seconds()) if row.oldest else 0.0)
    families: list[Metric] = [
        oldest,
        GaugeMetricFamily(
            "dialler_calls_answered_24h", "Calls answered by a person, last 24 h", value=abandoned.answered
        ),
        GaugeMetricFamily("dialler_calls_abandoned_24h", "Abandoned calls, last 24 h", value=abandoned.abandoned),
        GaugeMetricFamily("dialler_callbacks_due", "Callbacks due or open now", value=int(row.due)),
        GaugeMetricFamily(
            "dialler_callbacks_late", "Callbacks due for longer than the grace period", value=int(row.late)
        ),
        GaugeMetricFamily("dialler_callbacks_missed_today", "Callbacks missed today (UK day)", value=int(row.missed)),
    ]
    families += _pacing_families(
        await pacing.verdicts(postgres, now=clock.instant(), amd_on=settings.answering_machine_detection)
    )
    if abandoned.rate is not None:  # no answered calls: no rate (not 0, which would hide a silent floor)
        families.append(
            GaugeMetricFamily(
                "dialler_calls_abandoned_rate_24h",
                "Abandoned ÷ answered calls, last 24 h (Ofcom: at most 3 %)",
                value=abandoned.rate,
            )
        )
    return families


def _pacing_families(verdicts: dict[str, PacingVerdict]) -> list[Metric]:
    rate = GaugeMetricFamily(
        "dialler_queue_abandoned_rate_24h",
        "Ofcom's abandoned-call rate per queue, last 24 h (AMD-adjusted when AMD is on); absent with no live call",
        labels=["queue"],
    )
    ceiling = GaugeMetricFamily(
        "dialler_queue_abandoned_ceiling",
        "The abandoned rate at which a queue's progressive dialling pauses",
        labels=["queue"],
    )
    paused = GaugeMetricFamily(
        "dialler_queue_progressive_paused",
        "1 when a queue's progressive dialling is paused by its ceiling",
        labels=["queue"],
    )
    for queue, v in verdicts.items():
        if v.rate.rate is not None:
            rate.add_metric([queue], v.rate.rate)
        ceiling.add_metric([queue], float(v.ceiling))
        paused.add_metric([queue], 1.0 if v.paused else 0.0)
    return [rate, ceiling, paused]


class Families:
    """A collector of families computed beforehand (the floor is read asynchronously, collectors are not)."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        yield from self.families
