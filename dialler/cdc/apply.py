"""Applying change records: which customers they touch, whether they are news, and re-placing those
customers with the queue rules the batch rebuild uses (``dialler.queues.rebuild.recompute``).

A change record only says *who* changed. Placement always reads the replica's current rows, so a
duplicated or reordered record converges to the same state. Row versions (``updated_at``, then the
binlog position) skip records older than one already applied, and a record newer than the replica's
row means the replica lags the source: the batch is retried rather than applied to stale data.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from redis import exceptions as redis_errors
from redis.asyncio import Redis
from sqlalchemy import bindparam, text
from sqlalchemy import exc as sa_errors
from sqlalchemy.ext.asyncio import AsyncEngine

from dialler.cdc.records import ChangeRecord, InvalidRecord, row_version
from dialler.customers.context import forget
from dialler.queues.engine import QueueEngine
from dialler.queues.rebuild import Laps, recompute
from dialler.reports.conversions import record_conversions
from dialler.runtime import Stores


class ReplicaBehind(Exception):
    """The replica has not yet caught up with a change that was already published: try again later."""


class DependencyDown(Exception):
    """The replica, PostgreSQL or Redis does not answer: wait, do not receive change events."""


DEPENDENCY_TIMEOUT_S = 5.0


async def dependencies_ready(replica: AsyncEngine, postgres: AsyncEngine, redis: Redis) -> None:
    """Raise DependencyDown unless every store applying a change needs answers now. Asked before
    receiving: a message received while one is down only comes back, and SQS counts every receive
    towards the dead-letter queue."""

    async def ping_sql(engine: AsyncEngine) -> None:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def ping_redis() -> None:
        await redis.ping()  # type: ignore[misc]

    checks = {"MySQL replica": ping_sql(replica), "PostgreSQL": ping_sql(postgres)}
    checks["Redis"] = ping_redis()
    for name, check in checks.items():
        try:
            await asyncio.wait_for(check, DEPENDENCY_TIMEOUT_S)
        except Exception as exc:
            for pending in checks.values():
                pending.close()  # the checks not awaited yet (closing an awaited one is a no-op)
            raise DependencyDown(f"{name} unavailable: {type(exc).__name__}: {str(exc)[:200]}") from None


class BatchFailedAlike(Exception):
    """Every record of a batch, applied one by one, failed with the same error: the fault is in a store
    (a server error the classification above does not know), not in the records, so it is retried."""


_TRANSIENT = (
    BatchFailedAlike,
    ReplicaBehind,
    DependencyDown,
    sa_errors.OperationalError,
    sa_errors.InterfaceError,
    sa_errors.TimeoutError,
    redis_errors.ConnectionError,
    redis_errors.TimeoutError,
    redis_errors.BusyLoadingError,
    OSError,  # includes ConnectionError and TimeoutError (asyncio's too)
)


def is_transient(exc: BaseException) -> bool:
    """An error that says "not now" (a store down or behind), not "never" (a bad record): the change
    is retried, not dead-lettered."""
    if isinstance(exc, sa_errors.DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, _TRANSIENT)


@dataclass(frozen=True)
class Touched:
    user_ids: set[int]
    fresh: list[ChangeRecord]  # records newer than any applied before, per row


def _int(record: ChangeRecord, column: str) -> int:
    value = record.data.get(column)
    if not isinstance(value, int):
        raise InvalidRecord(f"{record.table} change without an integer {column} (got {value!r})")
    return value


def versions_key(prefix: str) -> str:
    return f"{prefix}:cdc:rowver"


_SET_IF_NEWER = """
local applied = 0
for i = 1, #ARGV, 2 do
  local current = redis.call('HGET', KEYS[1], ARGV[i])
  if (not current) or current < ARGV[i + 1] then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]); applied = applied + 1
  end
end
return applied
"""


def check(records: Iterable[ChangeRecord]) -> None:
    """Refuse a record the consumer cannot use (it then goes to the dead-letter queue)."""
    for record in records:
        _int(record, "id")
        if record.table == "claims":
            _int(record, "user_id")
        elif record.table == "claim_requirements":
            _int(record, "claim_id")


async def fresh_records(redis: Redis, prefix: str, records: Sequence[ChangeRecord]) -> list[ChangeRecord]:
    """Drop records that are not newer than the version already applied to their row, and repeats of
    a record within the batch (a redelivered message: each change is applied and counted once)."""
    if not records:
        return []
    fields = [f"{r.table}:{r.id}" for r in records]
    stored: list[str | None] = await redis.hmget(versions_key(prefix), fields)  # type: ignore[assignment]
    fresh: list[ChangeRecord] = []
    seen: set[tuple[str, str]] = set()
    for record, field, known in zip(records, fields, stored, strict=True):
        version = row_version(record).key()
        if (known is None or version > known) and (field, version) not in seen:
            seen.add((field, version))
            fresh.append(record)
    return fresh


async def remember_versions(redis: Redis, prefix: str, records: Sequence[ChangeRecord]) -> None:
    args: list[str] = []
    for record in records:
        args += [f"{record.table}:{record.id}", row_version(record).key()]
    if args:
        await redis.eval(_SET_IF_NEWER, 1, versions_key(prefix), *args)  # type: ignore[misc]


_CLAIM_OWNERS = text("SELECT id, user_id FROM claims WHERE id IN :ids").bindparams(bindparam("ids", expanding=True))


async def touched_users(replica: AsyncEngine, records: Sequence[ChangeRecord]) -> set[int]:
    """Every customer whose queue placement a record may change (both owners when a row moved)."""
    users: set[int] = set()
    claims: set[int] = set()
    for record in records:
        if record.table == "users":
            users.add(record.id)
        elif record.table == "claims":
            users.add(_int(record, "user_id"))
            if record.before and isinstance(record.before.get("user_id"), int):
                users.add(record.before["user_id"])
        elif record.table == "claim_requirements":
            claims.add(_int(record, "claim_id"))
            if record.before and isinstance(record.before.get("claim_id"), int):
                claims.add(record.before["claim_id"])
    if claims:
        async with replica.connect() as conn:
            users |= {row.user_id for row in await conn.execute(_CLAIM_OWNERS, {"ids": sorted(claims)})}
    return users


_CHECK_CHUNK = 5000


async def ensure_replica_caught_up(replica: AsyncEngine, records: Sequence[ChangeRecord]) -> None:
    """Raise ReplicaBehind when the replica's row is older than the change (DMS reads the source,
    the dialler reads a replica: the event can overtake the replica)."""
    latest: dict[tuple[str, int], datetime] = {}
    for record in records:
        if record.operation != "delete" and record.updated_at is not None:
            row = (record.table, record.id)
            # The newest change of each row, whatever order the batch's messages came in.
            if row not in latest or record.updated_at > latest[row]:
                latest[row] = record.updated_at
    by_table: dict[str, list[tuple[int, datetime]]] = {}
    for (table, row_id), wanted in latest.items():
        by_table.setdefault(table, []).append((row_id, wanted))
    async with replica.connect() as conn:
        for table, rows in by_table.items():
            for start in range(0, len(rows), _CHECK_CHUNK):
                # Only the rows that are behind come back (normally none): reading every row's version
                # back cost more than the recompute once a batch held thousands of changes.
                values = ",".join(
                    f"({int(row_id)},'{wanted:%Y-%m-%d %H:%M:%S.%f}')"
                    for row_id, wanted in rows[start : start + _CHECK_CHUNK]
                )
                query = text(
                    f"WITH v (id, ts) AS (VALUES {values}) SELECT t.id FROM {table} t JOIN v ON t.id = v.id"  # noqa: S608 (known table; ints and formatted date-times)
                    " WHERE t.updated_at < CAST(v.ts AS DATETIME(6)) LIMIT 1"
                )
                behind = (await conn.execute(query)).first()
                if behind is not None:
                    raise ReplicaBehind(f"{table} {behind[0]} is older on the replica than in the change")


@dataclass(frozen=True)
class Applied:
    fresh: list[ChangeRecord]  # the records that were news (the others were older than one applied)
    user_ids: set[int]  # the customers re-placed, once each however many of their rows changed


async def apply_records(
    stores: Stores, engine: QueueEngine, records: Sequence[ChangeRecord], laps: Laps | None = None
) -> Applied:
    """Apply a batch of change records: one recompute per customer touched, however many changes
    the batch holds for them (placement reads the replica's current rows, so the last state wins),
    with a fixed number of round trips per batch whatever its size. Idempotent: running it again
    re-places the same customers from the same rows. ``laps`` collects the wall time per phase."""
    lap = laps or Laps()
    prefix = stores.settings.redis_prefix
    fresh = await fresh_records(stores.redis, prefix, records)
    lap("versions_read")
    await ensure_replica_caught_up(stores.replica, fresh)
    lap("replica_check")
    # Before the versions are remembered: a batch retried after a failure here records them then.
    await record_conversions(stores.postgres, stores.replica, fresh)
    lap("conversions")
    users = sorted(await touched_users(stores.replica, fresh))
    lap("owners")
    if users:
        await recompute(stores, engine, users, laps=lap)
        await forget(stores.redis, prefix, users)  # agents see the fresh data
        lap("forget")
    await remember_versions(stores.redis, prefix, fresh)
    lap("versions_write")
    return Applied(fresh, set(users))
