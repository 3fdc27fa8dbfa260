"""Throw-away MySQL databases for the replica tests.

Deliberately small and local: the shared test harness will replace these fixtures.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from sqlalchemy import make_url
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

SERVER_URL = os.environ.get("DIALLER_TEST_MYSQL_URL", "mysql+aiomysql://root@127.0.0.1:3306/")

MakeDatabase = Callable[[], Awaitable[str]]


@pytest.fixture(scope="module")
async def make_database() -> AsyncIterator[MakeDatabase]:
    """Create uniquely named empty databases (``t_seed_<uuid8>``); all are dropped after the module."""
    server = create_async_engine(SERVER_URL, poolclass=NullPool)
    names: list[str] = []

    async def make() -> str:
        name = f"t_seed_{uuid.uuid4().hex[:8]}"
        async with server.connect() as conn:
            await conn.exec_driver_sql(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
        names.append(name)
        return make_url(SERVER_URL).set(database=name).render_as_string(hide_password=False)

    yield make
    async with server.connect() as conn:
        for name in names:
            await conn.exec_driver_sql(f"DROP DATABASE IF EXISTS `{name}`")
    await server.dispose()


@pytest.fixture(scope="module")
async def replica_url(make_database: MakeDatabase) -> str:
    """One empty database shared by the tests of a module."""
    return await make_database()
