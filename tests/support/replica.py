"""Replica databases for tests: the contract's tables on the test MariaDB."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine


async def create_replica_database(server_url: str, name: str) -> str:
    """An empty database with the contract's tables, on the test MariaDB. Returns its URL."""
    from dialler.replica.schema import create_replica_tables

    admin = create_async_engine(server_url)
    async with admin.begin() as conn:
        await conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
        await conn.execute(text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
    await admin.dispose()
    url = server_url.rstrip("/") + f"/{name}"
    writer = create_async_engine(url)
    async with writer.begin() as conn:
        await create_replica_tables(conn)
    await writer.dispose()
    return url
