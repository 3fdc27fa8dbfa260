"""The checkpoint in PostgreSQL: the binlog position after the last transaction SQS accepted."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncEngine

from dialler.cdc.models import BinlogCheckpoint
from dialler.cdc.publisher.common import BinlogPosition


async def load_checkpoint(engine: AsyncEngine, name: str) -> BinlogPosition | None:
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                select(BinlogCheckpoint.log_file, BinlogCheckpoint.log_pos).where(BinlogCheckpoint.name == name)
            )
        ).first()
    return None if row is None else BinlogPosition(row.log_file, row.log_pos)


async def save_checkpoint(engine: AsyncEngine, name: str, position: BinlogPosition) -> None:
    values = {"log_file": position.log_file, "log_pos": position.log_pos, "updated_at": datetime.now(UTC)}
    statement = pg_insert(BinlogCheckpoint).values(name=name, **values)
    statement = statement.on_conflict_do_update(index_elements=[BinlogCheckpoint.name], set_=values)
    async with engine.begin() as conn:
        await conn.execute(statement)


async def delete_checkpoint(engine: AsyncEngine, name: str) -> None:
    async with engine.begin() as conn:
        await conn.execute(delete(BinlogCheckpoint).where(BinlogCheckpoint.name == name))
