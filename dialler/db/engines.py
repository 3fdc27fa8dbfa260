"""Engine and session factories. Built by each process at start-up, never at import time."""

from __future__ import annotations

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from dialler.config import Settings


def create_postgres_engine(settings: Settings, **kwargs: object) -> AsyncEngine:
    # No pre-ping: it costs a round trip per checkout; pool_recycle and retries handle stale connections.
    options: dict[str, object] = {"pool_size": 10, "max_overflow": 20, "pool_recycle": 1800}
    options.update(kwargs)
    return create_async_engine(settings.postgres_url, **options)


def create_replica_engine(settings: Settings, **kwargs: object) -> AsyncEngine:
    """The main app's replica. Read-only by construction: every connection is READ ONLY for its whole
    session (set once when it connects, not per transaction), so a stray write fails in the database,
    not just by convention."""
    options: dict[str, object] = {"pool_size": 10, "max_overflow": 20, "pool_recycle": 1800}
    options.update(kwargs)
    engine = create_async_engine(settings.replica_url, **options)

    @event.listens_for(engine.sync_engine, "connect")
    def _read_only(dbapi_connection, _record):  # type: ignore[no-untyped-def]
        cursor = dbapi_connection.cursor()
        cursor.execute("SET SESSION TRANSACTION READ ONLY")
        cursor.close()

    return engine


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)
