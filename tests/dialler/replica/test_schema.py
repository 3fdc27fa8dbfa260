"""The replica contract tables: parsed from schema.sql and created exactly as the contract says."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from dialler.config import PROJECT_ROOT
from dialler.replica.schema import contract_columns, contract_sql, contract_statements, create_replica_tables

# The contract lives beside the repository (../shared), for developers and CI alike.
SHARED_CONTRACT = PROJECT_ROOT.parent / "shared" / "replica-schema.sql"
TABLES = ("users", "claims", "claim_requirements")

MakeDatabase = Callable[[], Awaitable[str]]


async def _fetch(url: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            return [tuple(row) for row in await conn.exec_driver_sql(sql, params)]
    finally:
        await engine.dispose()


async def _create(url: str) -> None:
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.begin() as conn:
            await create_replica_tables(conn)
    finally:
        await engine.dispose()


def _expected_columns(statement: str) -> list[tuple[str, str, str]]:
    """(name, MySQL column type, nullable) for each column line of a contract statement."""
    expected = []
    for line in statement.splitlines()[1:-1]:
        match = re.match(r"\s*(\w+)\s+(BIGINT UNSIGNED|VARCHAR\(\d+\)|DATE(?:TIME)?|TINYINT\(1\))(.*)", line)
        if match:
            name, kind, rest = match.groups()
            nullable = "NO" if "NOT NULL" in rest else "YES"
            expected.append((name, kind.lower(), nullable))
    return expected


def test_contract_statements_are_the_three_create_tables_without_comments() -> None:
    statements = contract_statements()

    assert [re.match(r"CREATE TABLE (\w+)", s).group(1) for s in statements] == list(TABLES)  # type: ignore[union-attr]
    for statement in statements:
        assert "--" not in statement
        assert not statement.rstrip().endswith(";")
    assert "DEFAULT 'active'" in statements[0]  # quoted literals survive comment stripping


def test_contract_columns_follow_the_contract_order() -> None:
    columns = contract_columns()

    assert list(columns) == list(TABLES)
    assert columns["claims"] == [
        "id",
        "user_id",
        "lender",
        "type",
        "status",
        "created_at",
        "updated_at",
        "deleted_at",
    ]
    assert columns["users"][0] == "id" and columns["users"][-1] == "deleted_at"
    assert len(columns["users"]) == 14


def test_packaged_schema_is_a_byte_copy_of_the_shared_contract() -> None:
    assert SHARED_CONTRACT.exists(), f"the replica contract is expected at {SHARED_CONTRACT}"
    assert contract_sql().encode() == SHARED_CONTRACT.read_bytes()


async def test_created_tables_match_the_contract_exactly(replica_url: str) -> None:
    await _create(replica_url)

    for statement in contract_statements():
        table = re.match(r"CREATE TABLE (\w+)", statement).group(1)  # type: ignore[union-attr]
        actual = await _fetch(
            replica_url,
            "SELECT column_name, column_type, is_nullable FROM information_schema.columns "
            "WHERE table_schema = DATABASE() AND table_name = %s ORDER BY ordinal_position",
            table,
        )
        # MariaDB shows a display width for BIGINT ("bigint(20) unsigned"); MySQL 8 does not.
        normalised = [(name, re.sub(r"^bigint\(\d+\)", "bigint", kind), null) for name, kind, null in actual]
        assert normalised == _expected_columns(statement), table


async def test_created_tables_have_the_contract_indexes_and_storage(replica_url: str) -> None:
    await _create(replica_url)

    indexes = await _fetch(
        replica_url,
        "SELECT table_name, index_name, GROUP_CONCAT(column_name ORDER BY seq_in_index) "
        "FROM information_schema.statistics WHERE table_schema = DATABASE() "
        "GROUP BY table_name, index_name",
    )
    assert set(indexes) == {
        ("claim_requirements", "PRIMARY", "id"),
        ("claim_requirements", "requirements_claim_status_idx", "claim_id,status"),
        ("claim_requirements", "requirements_updated_idx", "updated_at"),
        ("claims", "claims_updated_idx", "updated_at"),
        ("claims", "claims_user_status_idx", "user_id,status"),
        ("claims", "PRIMARY", "id"),
        ("users", "PRIMARY", "id"),
        ("users", "users_signature_idx", "current_signature_file_id"),
        ("users", "users_updated_idx", "updated_at"),
    }
    storage = await _fetch(
        replica_url,
        "SELECT engine, table_collation FROM information_schema.tables WHERE table_schema = DATABASE()",
    )
    assert {(engine, collation.split("_")[0]) for engine, collation in storage} == {("InnoDB", "utf8mb4")}


async def test_create_is_idempotent_and_keeps_rows_and_added_columns(make_database: MakeDatabase) -> None:
    url = await make_database()
    await _create(url)
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.begin() as conn:
            await conn.exec_driver_sql("ALTER TABLE users ADD COLUMN marketing_opt_in TINYINT(1) NULL")
            await conn.exec_driver_sql(
                "INSERT INTO users (first_name, last_name, created_at, updated_at) "
                "VALUES ('Ada', 'Lovelace', '2026-01-01', '2026-01-01')"
            )
    finally:
        await engine.dispose()

    await _create(url)
    await _create(url)

    assert await _fetch(url, "SELECT first_name FROM users") == [("Ada",)]
    columns = await _fetch(
        url,
        "SELECT COUNT(*) FROM information_schema.columns "
        "WHERE table_schema = DATABASE() AND table_name = 'users' AND column_name = 'marketing_opt_in'",
    )
    assert columns == [(1,)]
