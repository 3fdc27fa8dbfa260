"""Alembic, driven from code: ``dialler migrate`` and the test harness both call :func:`upgrade`."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


def alembic_config(postgres_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", postgres_url.replace("%", "%%"))
    return config


def upgrade_sync(postgres_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(postgres_url), revision)


async def upgrade(postgres_url: str, revision: str = "head") -> None:
    # env.py runs its own event loop, which cannot nest inside a running one.
    await asyncio.to_thread(upgrade_sync, postgres_url, revision)
