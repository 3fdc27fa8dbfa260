"""Engine and session factories. Built by each process at start-up, never at import time."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Dialect, ExceptionContext
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from dialler.config import Settings
from dialler.errors import DEPENDENCY_ATTR, Dependency

# Bound parameters are phone numbers, SMS bodies and notes: an error's text (which reaches logs, and
# Temporal activity failures) and SQL logging show "[SQL parameters hidden ...]" instead of them.
PRIVATE: dict[str, object] = {"hide_parameters": True}


def create_postgres_engine(settings: Settings, **kwargs: object) -> AsyncEngine:
    # No pre-ping: it costs a round trip per checkout; pool_recycle and retries handle stale connections.
    options: dict[str, object] = {"pool_size": 10, "max_overflow": 20, "pool_recycle": 1800, **PRIVATE}
    options.update(kwargs)
    return name_failures(create_async_engine(settings.postgres_url, **options), "postgres")


def create_replica_engine(settings: Settings, **kwargs: object) -> AsyncEngine:
    """The main app's replica. Read-only by construction: every connection is READ ONLY for its whole
    session (set once when it connects, not per transaction), so a stray write fails in the database,
    not just by convention."""
    options: dict[str, object] = {"pool_size": 10, "max_overflow": 20, "pool_recycle": 1800, **PRIVATE}
    options.update(kwargs)
    engine = name_failures(create_async_engine(settings.replica_url, **options), "replica")

    @event.listens_for(engine.sync_engine, "connect")
    def _read_only(dbapi_connection, _record):  # type: ignore[no-untyped-def]
        cursor = dbapi_connection.cursor()
        cursor.execute("SET SESSION TRANSACTION READ ONLY")
        cursor.close()

    return engine


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


def name_failures(engine: AsyncEngine, dependency: Dependency) -> AsyncEngine:
    """Mark this engine's connection failures with the database they belong to (see
    :data:`dialler.errors.DEPENDENCY_ATTR`), so the API answers 503 naming it rather than 500.

    Any failure to open a connection counts (refused, timed out, bad credentials: the database cannot be
    used); after that only what the dialect itself calls a disconnect does, so a deadlock or a constraint
    violation is never reported as a database that is down. The exception is tagged, not replaced."""

    @event.listens_for(engine.sync_engine, "do_connect")
    def _connect(dialect: Dialect, _record: Any, cargs: Any, cparams: Any) -> Any:
        try:
            return dialect.connect(*cargs, **cparams)
        except Exception as exc:
            setattr(exc, DEPENDENCY_ATTR, dependency)
            raise

    @event.listens_for(engine.sync_engine, "handle_error")
    def _error(context: ExceptionContext) -> None:
        if context.is_disconnect or context.connection is None:
            for exc in (context.sqlalchemy_exception, context.original_exception):
                if exc is not None:
                    setattr(exc, DEPENDENCY_ATTR, dependency)

    return engine
