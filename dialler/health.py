"""Dependency probes: one per store, each returning up/down with its latency and a one-line reason.

Used by ``GET /api/v1/health`` and by the run script's start-up checks."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client


@dataclass(frozen=True)
class Probe:
    name: str
    up: bool
    latency_ms: float
    error: str | None = None


async def probe(name: str, check: Callable[[], Awaitable[object]], timeout_s: float = 2.0) -> Probe:
    started = time.perf_counter()
    try:
        await asyncio.wait_for(check(), timeout_s)
    except Exception as exc:  # a probe reports any failure as "down"; it never raises
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return Probe(name, False, _ms(started), f"{type(exc).__name__}: {reason}"[:300])
    return Probe(name, True, _ms(started))


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)


async def _select_one(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))


async def check_all(
    *,
    postgres: AsyncEngine,
    replica: AsyncEngine,
    redis: Redis,
    temporal: Client | None,
    sqs_check: Callable[[], Awaitable[object]],
) -> list[Probe]:
    async def temporal_check() -> None:
        if temporal is None:
            raise ConnectionError("not connected (the last attempt failed; retried on use)")
        await temporal.service_client.check_health()

    async def redis_check() -> None:
        await redis.ping()

    return list(
        await asyncio.gather(
            probe("postgres", lambda: _select_one(postgres)),
            probe("replica", lambda: _select_one(replica)),
            probe("redis", redis_check),
            probe("temporal", temporal_check),
            probe("sqs", sqs_check),
        )
    )
