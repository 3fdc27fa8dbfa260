"""The long-lived clients a process needs, opened once at start-up and closed at shutdown."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from temporalio.client import Client

from dialler.config import Settings
from dialler.db.engines import create_postgres_engine, create_replica_engine, session_factory
from dialler.integrations.sqs import sqs_client


@dataclass
class Stores:
    settings: Settings
    postgres: AsyncEngine
    replica: AsyncEngine
    redis: Redis
    sessions: async_sessionmaker[AsyncSession]
    _sqs: Any = field(default=None, repr=False)

    @classmethod
    def open(cls, settings: Settings) -> Stores:
        # Engines and the Redis pool connect lazily: opening them cannot fail on a down service.
        postgres = create_postgres_engine(settings)
        return cls(
            settings=settings,
            postgres=postgres,
            replica=create_replica_engine(settings),
            # Reads may wait behind a large rebuild pipeline: a generous timeout, not redis-py's 5 s.
            redis=Redis.from_url(
                settings.redis_url, decode_responses=True, socket_connect_timeout=2, socket_timeout=30
            ),
            sessions=session_factory(postgres),
        )

    async def close(self) -> None:
        await asyncio.gather(self.postgres.dispose(), self.replica.dispose(), self.redis.aclose())

    def sqs(self) -> Any:
        # One boto3 client per process (they are thread-safe and slow to build); blocking: call its
        # methods through asyncio.to_thread.
        if self._sqs is None:
            self._sqs = sqs_client(self.settings)
        return self._sqs


async def connect_temporal(settings: Settings) -> Client:
    return await Client.connect(settings.temporal_address, namespace=settings.temporal_namespace)


async def preflight(settings: Settings) -> list[str]:
    """One line per dependency that does not answer, naming the service and its URL (password masked)."""
    from dialler.config import mask_url
    from dialler.health import check_all

    stores = Stores.open(settings)
    try:
        try:
            temporal: Client | None = await asyncio.wait_for(connect_temporal(settings), 5)
        except Exception:
            temporal = None
        probes = await check_all(
            postgres=stores.postgres,
            replica=stores.replica,
            redis=stores.redis,
            temporal=temporal,
            sqs_check=lambda: asyncio.to_thread(stores.sqs().get_queue_url, QueueName=settings.cdc_queue_name),
        )
    finally:
        await stores.close()
    where = {
        "postgres": ("PostgreSQL", mask_url(settings.postgres_url)),
        "replica": ("MySQL replica", mask_url(settings.replica_url)),
        "redis": ("Redis", mask_url(settings.redis_url)),
        "temporal": ("Temporal", settings.temporal_address),
        "sqs": ("SQS", settings.sqs_endpoint_url or "AWS"),
    }
    return [f"{where[p.name][0]} at {where[p.name][1]} is unreachable: {p.error}" for p in probes if not p.up]
