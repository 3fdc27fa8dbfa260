"""Neither engine puts bound values in an error's text or its SQL log: a failing insert of a phone
number says which statement failed, not whose number (the text reaches worker logs and Temporal
activity failures)."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, IntegrityError

from dialler.config import Settings
from dialler.db.engines import create_replica_engine
from dialler.runtime import Stores

PHONE = "+447700900123"


async def test_a_failing_insert_on_postgres_does_not_show_the_phone_number(
    stores: Stores, caplog: pytest.LogCaptureFixture
) -> None:
    insert = text("INSERT INTO opt_outs (phone_e164, keyword) VALUES (:p, :k)")
    async with stores.postgres.begin() as conn:
        await conn.execute(insert, {"p": PHONE, "k": "STOP"})
    caplog.set_level(logging.INFO, logger="sqlalchemy.engine")
    stores.postgres.echo = True  # even SQL logging, if someone turns it on, hides the values
    try:
        with pytest.raises(IntegrityError) as failed:
            async with stores.postgres.begin() as conn:
                await conn.execute(insert, {"p": PHONE, "k": "STOPALL"})
    finally:
        stores.postgres.echo = False

    assert "opt_outs" in str(failed.value) and "parameters hidden" in str(failed.value)
    assert PHONE not in str(failed.value)
    assert "INSERT INTO opt_outs" in caplog.text
    assert PHONE not in caplog.text


async def test_a_failing_statement_on_the_replica_does_not_show_its_values(
    replica_url: str, settings: Settings
) -> None:
    engine = create_replica_engine(settings.model_copy(update={"replica_url": replica_url}), pool_size=1)
    try:
        with pytest.raises(DBAPIError) as failed:
            async with engine.connect() as conn:
                await conn.execute(text("SELECT * FROM no_such_table WHERE mobile = :p"), {"p": PHONE})
    finally:
        await engine.dispose()

    assert "no_such_table" in str(failed.value)
    assert PHONE not in str(failed.value)
