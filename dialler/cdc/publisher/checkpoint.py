"""The checkpoint in PostgreSQL: the binlog position after the last transaction SQS accepted, the
server that position belongs to, and a queue rebuild asked for but not yet started."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncEngine

from dialler.cdc.models import BinlogCheckpoint
from dialler.cdc.publisher.common import BinlogPosition


@dataclass(frozen=True)
class Checkpoint:
    position: BinlogPosition
    source_server: str | None  # None: written before the source was recorded
    rebuild_requested: str | None  # why a rebuild is owed; None when none is


async def load_checkpoint_record(engine: AsyncEngine, name: str) -> Checkpoint | None:
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                select(
                    BinlogCheckpoint.log_file,
                    BinlogCheckpoint.log_pos,
                    BinlogCheckpoint.source_server,
                    BinlogCheckpoint.rebuild_requested,
                ).where(BinlogCheckpoint.name == name)
            )
        ).first()
    if row is None:
        return None
    return Checkpoint(BinlogPosition(row.log_file, row.log_pos), row.source_server, row.rebuild_requested)


async def load_checkpoint(engine: AsyncEngine, name: str) -> BinlogPosition | None:
    record = await load_checkpoint_record(engine, name)
    return None if record is None else record.position


async def save_checkpoint(
    engine: AsyncEngine,
    name: str,
    position: BinlogPosition,
    *,
    source_server: str | None = None,
    rebuild_requested: str | None = None,
) -> None:
    """Upsert the position. ``source_server`` is written when given (kept otherwise);
    ``rebuild_requested`` is written when given (a pending request is never cleared here: see
    :func:`clear_rebuild_request`)."""
    values: dict[str, Any] = {
        "log_file": position.log_file,
        "log_pos": position.log_pos,
        "updated_at": datetime.now(UTC),
    }
    if source_server is not None:
        values["source_server"] = source_server
    if rebuild_requested is not None:
        values["rebuild_requested"] = rebuild_requested
    statement = pg_insert(BinlogCheckpoint).values(name=name, **values)
    statement = statement.on_conflict_do_update(index_elements=[BinlogCheckpoint.name], set_=values)
    async with engine.begin() as conn:
        await conn.execute(statement)


async def clear_rebuild_request(engine: AsyncEngine, name: str, reason: str) -> None:
    """The rebuild asked for ``reason`` has been started: forget that request (not a newer one)."""
    async with engine.begin() as conn:
        await conn.execute(
            update(BinlogCheckpoint)
            .where(BinlogCheckpoint.name == name, BinlogCheckpoint.rebuild_requested == reason)
            .values(rebuild_requested=None)
        )


async def delete_checkpoint(engine: AsyncEngine, name: str) -> None:
    async with engine.begin() as conn:
        await conn.execute(delete(BinlogCheckpoint).where(BinlogCheckpoint.name == name))
