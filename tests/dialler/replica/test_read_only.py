"""The dialler never writes to the main app's replica: its engine refuses writes in the database."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from dialler.config import Settings
from dialler.db.engines import create_replica_engine


async def test_the_replica_engine_reads_but_every_write_fails_in_the_database(
    make_database, settings: Settings
) -> None:
    url = await make_database()
    engine = create_replica_engine(settings.model_copy(update={"replica_url": url}), pool_size=1, max_overflow=0)
    try:
        async with engine.connect() as conn:
            assert await conn.scalar(text("SELECT 1")) == 1
            with pytest.raises(OperationalError, match="READ ONLY"):
                await conn.execute(text("CREATE TABLE stray (id INT)"))
        # The same pooled connection, in a later transaction, is still read-only.
        async with engine.connect() as conn:
            with pytest.raises(OperationalError, match="READ ONLY"):
                await conn.execute(text("CREATE TABLE stray (id INT)"))
    finally:
        await engine.dispose()
