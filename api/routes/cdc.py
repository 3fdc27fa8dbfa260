"""Change data capture health: commit-to-queue latency, throughput, publisher lag, dead letters.
For supervisors (JSON) and for Prometheus (``/metrics``, with the scrape key)."""

from __future__ import annotations

import asyncio
import hmac
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from pydantic import BaseModel

from api.auth import PROTECTED_RESPONSES, require
from api.deps import StoresDep
from api.errors import Unauthorized
from api.middleware import register_http_metrics
from dialler.agents.models import Agent
from dialler.agents.permissions import Permission
from dialler.cdc import metrics
from dialler.metrics import Families, floor_families

router = APIRouter(prefix="/cdc", tags=["cdc"], responses=PROTECTED_RESPONSES)
scrape = APIRouter(tags=["metrics"])


class CdcStatusRead(BaseModel):
    records_applied: int
    messages_refused: int
    commit_to_queue_p50_s: float | None
    commit_to_queue_p99_s: float | None
    records_per_s: float
    last_applied_at: float | None
    publisher_lag_s: float | None
    publisher_state: str | None
    publisher_last_event_at: str | None
    dlq_messages: int | None
    dlq_last_reason: str | None  # why the consumer last dead-lettered a record (its DLQ message says too)
    dlq_last_at: float | None


async def cdc_status(stores) -> CdcStatusRead:  # type: ignore[no-untyped-def]
    snap = await metrics.snapshot(stores.redis, stores.settings.redis_prefix)
    publisher = await stores.redis.hgetall(f"{stores.settings.redis_prefix}:cdc:publisher")
    try:
        sqs = stores.sqs()
        url = (await asyncio.to_thread(sqs.get_queue_url, QueueName=stores.settings.cdc_dlq_name))["QueueUrl"]
        attributes = await asyncio.to_thread(
            sqs.get_queue_attributes, QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"]
        )
        dlq: int | None = int(attributes["Attributes"]["ApproximateNumberOfMessages"])
        await stores.redis.set(f"{stores.settings.redis_prefix}:cdc:dlq_depth", dlq)
    except Exception:  # SQS down: the rest of the status is still worth showing
        dlq = None
    return CdcStatusRead(
        records_applied=snap.records_total,
        messages_refused=snap.invalid_total,
        commit_to_queue_p50_s=snap.p50_s,
        commit_to_queue_p99_s=snap.p99_s,
        records_per_s=snap.records_per_s,
        last_applied_at=snap.applied_at,
        publisher_lag_s=float(publisher["lag_s"]) if publisher.get("lag_s") else None,
        publisher_state=publisher.get("state"),
        publisher_last_event_at=publisher.get("last_event_at"),
        dlq_messages=dlq,
        dlq_last_reason=snap.dead_letter_reason,
        dlq_last_at=snap.dead_letter_at,
    )


@router.get("/status", response_model=CdcStatusRead)
async def status(
    stores: StoresDep, agent: Annotated[Agent, Depends(require(Permission.DASHBOARD_READ))]
) -> CdcStatusRead:
    """How fresh the queues are: latency from the source commit to the queue, lag, dead letters."""
    return await cdc_status(stores)


@scrape.get("/metrics", response_class=Response, responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}})
async def prometheus(request: Request, stores: StoresDep) -> Response:
    """Prometheus exposition. Authenticated with the scrape key (``Authorization: Bearer <metrics_token>``),
    not an agent's token: scrapers are not people."""
    expected = f"Bearer {stores.settings.metrics_token.get_secret_value()}"
    if not hmac.compare_digest(request.headers.get("Authorization", "").encode("latin-1"), expected.encode()):
        raise Unauthorized("A valid metrics scrape key is required.")
    registry = CollectorRegistry()
    registry.register(metrics.RedisCdcCollector(stores.settings.redis_url, stores.settings.redis_prefix))  # type: ignore[arg-type]
    # The floor (queues, calls, callbacks) and the API's requests: dialler/metrics.py, api/middleware.py.
    floor = await floor_families(postgres=stores.postgres, redis=stores.redis, settings=stores.settings)
    registry.register(Families(floor))  # type: ignore[arg-type]
    register_http_metrics(registry)
    body = await asyncio.to_thread(generate_latest, registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
