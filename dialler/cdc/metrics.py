"""Change-data-capture metrics, kept in Redis so that every process (worker replicas that apply,
API replicas that serve ``/metrics`` and the dashboard) sees one set of numbers."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from redis import Redis as SyncRedis
from redis.asyncio import Redis

# Commit-to-queue latency buckets (seconds): the target is p99 <= 1 s.
BUCKETS = (0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0, 30.0)
RECENT = 2000  # latencies kept for exact recent percentiles (dashboard, benchmark)


def key(prefix: str) -> str:
    return f"{prefix}:cdc:consumer"


def recent_key(prefix: str) -> str:
    return f"{prefix}:cdc:latency:recent"


def bucket_field(latency_s: float) -> str:
    return next((f"le_{b}" for b in BUCKETS if latency_s <= b), "le_inf")


async def observe(
    redis: Redis, prefix: str, *, latencies: Sequence[float], invalid: int = 0, last_reason: str | None = None
) -> None:
    pipe = redis.pipeline(transaction=False)
    # Counted per bucket here, a few commands per batch: a command per record cost more than the apply.
    buckets = Counter(bucket_field(latency) for latency in latencies)
    for field, count in buckets.items():
        pipe.hincrby(key(prefix), field, count)
    if latencies:
        pipe.hincrbyfloat(key(prefix), "latency_sum", sum(latencies))
        pipe.hincrby(key(prefix), "records_total", len(latencies))
        stamp = f"{time.time():.3f}"
        # The newest RECENT only: the list keeps no more, and a bulk change can bring 100,000 at once.
        pipe.lpush(recent_key(prefix), *(f"{stamp}:{latency:.4f}" for latency in latencies[-RECENT:]))
        pipe.ltrim(recent_key(prefix), 0, RECENT - 1)
    if invalid:
        pipe.hincrby(key(prefix), "invalid_total", invalid)
    if last_reason:
        pipe.hset(key(prefix), mapping={"dead_letter_reason": last_reason, "dead_letter_at": f"{time.time():.3f}"})
    pipe.hset(key(prefix), "applied_at", f"{time.time():.3f}")
    await pipe.execute()


@dataclass(frozen=True)
class Snapshot:
    records_total: int
    invalid_total: int
    p50_s: float | None
    p99_s: float | None
    records_per_s: float  # over the recent window
    applied_at: float | None
    dead_letter_reason: str | None = None  # why the consumer last dead-lettered a record
    dead_letter_at: float | None = None


def percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def snapshot(redis: Redis, prefix: str) -> Snapshot:
    fields = await redis.hgetall(key(prefix))  # type: ignore[misc]
    raw: list[str] = await redis.lrange(recent_key(prefix), 0, -1)  # type: ignore[misc,assignment]
    recent = [r.split(":") for r in raw]
    stamps = [float(r[0]) for r in recent]
    latencies = [float(r[1]) for r in recent]
    window = (max(stamps) - min(stamps)) if len(stamps) > 1 else 0.0
    return Snapshot(
        records_total=int(fields.get("records_total", 0)),
        invalid_total=int(fields.get("invalid_total", 0)),
        p50_s=percentile(latencies, 0.5),
        p99_s=percentile(latencies, 0.99),
        records_per_s=round(len(stamps) / window, 1) if window else 0.0,
        applied_at=float(fields["applied_at"]) if "applied_at" in fields else None,
        dead_letter_reason=fields.get("dead_letter_reason"),  # type: ignore[arg-type]
        dead_letter_at=float(fields["dead_letter_at"]) if "dead_letter_at" in fields else None,
    )


# The families RedisCdcCollector exports (lag and dead letters once the publisher and the DLQ check
# have reported); the alert rules and the dashboard are checked against them.
FAMILIES = (
    "dialler_cdc_commit_to_queue_seconds",
    "dialler_cdc_records",
    "dialler_cdc_invalid_messages",
    "dialler_cdc_publisher_lag_seconds",
    "dialler_cdc_dlq_messages",
)


class RedisCdcCollector:
    """A Prometheus collector reading the shared counters (the API registers one for ``/metrics``)."""

    def __init__(self, redis_url: str, prefix: str, dlq_depth: Iterable[int] | None = None) -> None:
        self.redis = SyncRedis.from_url(redis_url, decode_responses=True, socket_timeout=1)
        self.prefix = prefix

    def collect(self) -> Iterator[object]:
        try:
            fields = self.redis.hgetall(key(self.prefix))
            publisher = self.redis.hgetall(f"{self.prefix}:cdc:publisher")
            dlq = self.redis.get(f"{self.prefix}:cdc:dlq_depth")
        except Exception:  # metrics never fail a scrape because Redis blinked
            return
        buckets, cumulative = [], 0
        for bound in BUCKETS:
            cumulative += int(fields.get(f"le_{bound}", 0))  # type: ignore[union-attr]
            buckets.append((str(bound), cumulative))
        cumulative += int(fields.get("le_inf", 0))  # type: ignore[union-attr]
        buckets.append(("+Inf", cumulative))
        histogram = HistogramMetricFamily(
            "dialler_cdc_commit_to_queue_seconds", "From the source commit to the queue update"
        )
        histogram.add_metric([], buckets, float(fields.get("latency_sum", 0)))  # type: ignore[union-attr]
        yield histogram
        yield CounterMetricFamily("dialler_cdc_records", "Change records applied", value=cumulative)
        yield CounterMetricFamily(
            "dialler_cdc_invalid_messages",
            "Change records the consumer dead-lettered (or bodies, when unreadable)",
            value=int(fields.get("invalid_total", 0)),  # type: ignore[union-attr]
        )
        if publisher.get("lag_s") is not None:  # type: ignore[union-attr]
            yield GaugeMetricFamily(
                "dialler_cdc_publisher_lag_seconds",
                "Binlog publisher lag",
                value=float(publisher["lag_s"]),  # type: ignore[index]
            )
        if dlq is not None:
            yield GaugeMetricFamily("dialler_cdc_dlq_messages", "Messages in the dead-letter queue", value=int(dlq))  # type: ignore[arg-type]
