from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from api.deps import StoresDep, temporal_or_none
from dialler import health

router = APIRouter(prefix="/health", tags=["health"])


class DependencyRead(BaseModel):
    name: str
    up: bool
    latency_ms: float
    error: str | None = None


class HealthRead(BaseModel):
    status: str
    dependencies: list[DependencyRead]


@router.get("", response_model=HealthRead, responses={503: {"model": HealthRead}})
async def get_health(request: Request, stores: StoresDep) -> JSONResponse:
    """Every dependency, up or down with its latency. 503 when any is down. No authentication:
    load balancers and the run script call it."""

    def sqs_check() -> object:
        return stores.sqs().get_queue_url(QueueName=stores.settings.cdc_queue_name)

    probes = await health.check_all(
        postgres=stores.postgres,
        replica=stores.replica,
        redis=stores.redis,
        temporal=await temporal_or_none(request),
        sqs_check=lambda: asyncio.to_thread(sqs_check),
    )
    body = HealthRead(
        status="up" if all(p.up for p in probes) else "down",
        dependencies=[DependencyRead(name=p.name, up=p.up, latency_ms=p.latency_ms, error=p.error) for p in probes],
    )
    return JSONResponse(body.model_dump(), status_code=200 if body.status == "up" else 503)
