"""What the publisher reports: Prometheus metrics and the status hash in Redis."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

from dialler.cdc.publisher.common import BinlogPosition
from dialler.config import Settings


class PublisherMetrics:
    """Prometheus metrics in their own registry (one publisher per registry; tests run several)."""

    def __init__(self, registry: CollectorRegistry, lag: Callable[[], float]) -> None:
        self.registry = registry
        self.records = Counter("dialler_cdc_publisher_records", "Row changes accepted by SQS", registry=registry)
        self.messages = Counter("dialler_cdc_publisher_messages", "SQS messages sent", registry=registry)
        self.message_bytes = Counter("dialler_cdc_publisher_message_bytes", "Bytes sent to SQS", registry=registry)
        self.send_errors = Counter("dialler_cdc_publisher_send_errors", "Failed SQS sends (retried)", registry=registry)
        self.checkpoint_errors = Counter(
            "dialler_cdc_publisher_checkpoint_errors", "Failed checkpoint writes (retried)", registry=registry
        )
        self.binlog_reconnects = Counter(
            "dialler_cdc_publisher_binlog_reconnects",
            "Binlog stream reconnections after an error",
            registry=registry,
        )
        self.source_resets = Counter(
            "dialler_cdc_publisher_source_resets",
            "Checkpoints dropped because the replica is another server or no longer has the position "
            "(capture restarted at the binlog's end and a full queue rebuild requested)",
            ["reason"],
            registry=registry,
        )
        self.rebuilds_requested = Counter(
            "dialler_cdc_publisher_rebuilds_requested",
            "Queue rebuilds the publisher started after a source reset",
            registry=registry,
        )
        self.send_seconds = Histogram(
            "dialler_cdc_publisher_send_seconds",
            "SQS send latency",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=registry,
        )
        self.batch_records = Histogram(
            "dialler_cdc_publisher_batch_records",
            "Records per SQS message",
            buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000),
            registry=registry,
        )
        self.lag = Gauge(
            "dialler_cdc_publisher_lag_seconds",
            "Now minus the commit time of the last binlog event read; 0 when caught up and all sent",
            registry=registry,
        )
        self.lag.set_function(lag)
        self.last_event = Gauge(
            "dialler_cdc_publisher_last_event_timestamp_seconds",
            "Commit time of the last event read",
            registry=registry,
        )
        self.checkpoint_pos = Gauge(
            "dialler_cdc_publisher_checkpoint_log_position", "Checkpointed binlog position", registry=registry
        )
        self.checkpoint_time = Gauge(
            "dialler_cdc_publisher_checkpoint_timestamp_seconds",
            "When the checkpoint was last written",
            registry=registry,
        )
        self.checkpoint = Info("dialler_cdc_publisher_checkpoint", "Checkpointed binlog coordinates", registry=registry)


@dataclass(frozen=True)
class PublisherStatus:
    state: str  # starting | running | stopped | failed
    last_event_at: datetime | None
    lag_s: float
    published_total: int
    messages_total: int
    send_errors_total: int
    checkpoint: BinlogPosition | None
    checkpoint_at: datetime | None

    def as_redis_hash(self) -> dict[str, str]:
        return {
            "state": self.state,
            "last_event_at": self.last_event_at.isoformat() if self.last_event_at else "",
            "lag_s": f"{self.lag_s:.3f}",
            "published_total": str(self.published_total),
            "messages_total": str(self.messages_total),
            "send_errors_total": str(self.send_errors_total),
            "checkpoint": str(self.checkpoint) if self.checkpoint else "",
            "checkpoint_at": self.checkpoint_at.isoformat() if self.checkpoint_at else "",
            "updated_at": datetime.now(UTC).isoformat(),
        }


def status_key(settings: Settings) -> str:
    return f"{settings.redis_prefix}:cdc:publisher"
