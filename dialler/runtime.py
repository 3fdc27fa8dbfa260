"""The long-lived clients a process needs, opened once at start-up and closed at shutdown."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from temporalio.client import Client
from temporalio.runtime import Runtime
from temporalio.service import TLSConfig

from dialler.config import Settings
from dialler.db.engines import create_postgres_engine, create_replica_engine, session_factory
from dialler.errors import DependencyUnavailable
from dialler.integrations.sqs import sqs_client
from dialler.security.codec import data_converter

log = logging.getLogger("dialler.runtime")


@dataclass
class Stores:
    settings: Settings
    postgres: AsyncEngine
    replica: AsyncEngine
    redis: Redis
    sessions: async_sessionmaker[AsyncSession]
    # The connections that hold a call's or a text's lock while the carrier is asked (outbound.attempts):
    # a pool of their own, so that a try holding one never waits on a try waiting for one.
    carrier_locks: AsyncEngine
    _sqs: Any = field(default=None, repr=False)

    @classmethod
    def open(cls, settings: Settings) -> Stores:
        # Engines and the Redis pool connect lazily: opening them cannot fail on a down service.
        postgres = create_postgres_engine(settings)
        return cls(
            settings=settings,
            postgres=postgres,
            replica=create_replica_engine(settings),
            # A Redis that stops answering must fail the request quickly (503), not hold it for 30 s.
            redis=Redis.from_url(
                settings.redis_url,
                decode_responses=True,
                socket_connect_timeout=settings.redis_timeout_s,
                socket_timeout=settings.redis_timeout_s,
            ),
            sessions=session_factory(postgres),
            carrier_locks=create_postgres_engine(settings, pool_size=2, max_overflow=18),
        )

    async def close(self) -> None:
        await asyncio.gather(
            self.postgres.dispose(), self.carrier_locks.dispose(), self.replica.dispose(), self.redis.aclose()
        )

    def sqs(self) -> Any:
        # One boto3 client per process (they are thread-safe and slow to build); blocking: call its
        # methods through asyncio.to_thread.
        if self._sqs is None:
            self._sqs = sqs_client(self.settings)
        return self._sqs


def temporal_connect_options(settings: Settings, runtime: Runtime | None = None) -> dict[str, Any]:
    """The keyword arguments of ``Client.connect`` for these settings: the one place that turns the
    TLS, mTLS and API-key settings into connection options (worker, API and CLI all connect through
    :func:`connect_temporal`). Certificate files are read here, so a missing file fails at start-up."""
    tls: bool | TLSConfig = False
    if settings.temporal_tls_server_ca or settings.temporal_tls_client_cert or settings.temporal_tls_server_name:
        tls = TLSConfig(
            server_root_ca_cert=_read(settings.temporal_tls_server_ca),
            domain=settings.temporal_tls_server_name,
            client_cert=_read(settings.temporal_tls_client_cert),
            client_private_key=_read(settings.temporal_tls_client_key),
        )
    elif settings.temporal_tls_enabled:
        tls = True  # the system's CA roots: Temporal Cloud's certificates are publicly signed
    api_key = settings.temporal_api_key.get_secret_value() if settings.temporal_api_key else None
    options: dict[str, Any] = {
        "target_host": settings.temporal_address,
        "namespace": settings.temporal_namespace,
        "tls": tls,
        "api_key": api_key or None,
    }
    if runtime is not None:
        options["runtime"] = runtime
    return options


def _read(path: Path | None) -> bytes | None:
    return None if path is None else path.read_bytes()


async def connect_temporal(settings: Settings, runtime: Runtime | None = None) -> Client:
    # Every process's client encrypts payloads (dialler.security.codec): nothing personal in histories.
    return await Client.connect(**temporal_connect_options(settings, runtime), data_converter=data_converter(settings))


class TemporalConnector:
    """One Temporal client for the process, connected when first needed; start-up only tries.

    A process that started while Temporal was down keeps serving what does not need it and connects
    by itself once Temporal answers: each use retries (at most once per ``temporal_reconnect_interval_s``)
    and fails meanwhile with :class:`DependencyUnavailable`. A lock makes concurrent requests share one
    attempt instead of opening a connection each. Once connected, the SDK's client reconnects by itself
    after later outages (calls made meanwhile fail with ``RPCError`` UNAVAILABLE, a 503 too)."""

    def __init__(
        self,
        settings: Settings,
        *,
        connect: Callable[[Settings], Awaitable[Client]] | None = None,
        on_connect: Callable[[Client], None] | None = None,
    ) -> None:
        self._settings = settings
        self._connect = connect or connect_temporal
        self._on_connect = on_connect
        self._client: Client | None = None
        self._lock = asyncio.Lock()
        self._failed_at: float | None = None

    @property
    def client(self) -> Client | None:
        """The client if connected, without trying to connect."""
        return self._client

    async def get(self) -> Client:
        if self._client is not None:
            return self._client
        asked = time.monotonic()
        async with self._lock:
            if self._client is not None:
                return self._client
            failed_at = self._failed_at
            if failed_at is not None and (
                failed_at >= asked or time.monotonic() - failed_at < self._settings.temporal_reconnect_interval_s
            ):
                raise self._unavailable()  # an attempt just failed (perhaps while this request waited)
            try:
                client = await asyncio.wait_for(
                    self._connect(self._settings), self._settings.temporal_connect_timeout_s
                )
            except Exception as exc:
                self._failed_at = time.monotonic()
                log.warning("Temporal at %s is unreachable: %s", self._settings.temporal_address, type(exc).__name__)
                raise self._unavailable() from exc
            self._client, self._failed_at = client, None
            log.info("connected to Temporal at %s", self._settings.temporal_address)
            if self._on_connect is not None:
                self._on_connect(client)
            return client

    async def get_or_none(self) -> Client | None:
        try:
            return await self.get()
        except DependencyUnavailable:
            return None

    def _unavailable(self) -> DependencyUnavailable:
        return DependencyUnavailable(dependency="temporal", retry_after_s=self._settings.dependency_retry_after_s)


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
