"""The replica contract (``schema.sql``) as statements, and the DDL that creates it.

``schema.sql`` is a byte copy of ``replica-schema.sql``, the contract agreed with the main claims
app; it ships inside the package so that an installed dialler can still read it.

The product's replica engine (:func:`dialler.db.engines.create_replica_engine`) is read-only by
construction, so :func:`create_replica_tables` must be given a connection from a separate *writer*
engine (``mysql+aiomysql://...``). Only local development, tests and the data generator do that:
they play the main app's part. In production the main app owns these tables.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

from sqlalchemy.ext.asyncio import AsyncConnection

# The contract leaves storage options to the owner; utf8mb4 because names and addresses are
# typed by customers, and an explicit collation so the tables do not depend on server defaults.
TABLE_OPTIONS = "ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci"

_CREATE_TABLE = re.compile(r"^CREATE\s+TABLE\s+(?!IF\s+NOT\s+EXISTS\b)", re.IGNORECASE)
_TABLE_NAME = re.compile(r"^CREATE\s+TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?`?(\w+)`?", re.IGNORECASE)
# A column definition starts a line inside the parentheses; index lines start with a keyword.
_COLUMN_LINE = re.compile(r"^\s*`?(\w+)`?\s+[A-Za-z]")
_NOT_A_COLUMN = {"KEY", "INDEX", "UNIQUE", "PRIMARY", "CONSTRAINT", "FOREIGN", "FULLTEXT", "SPATIAL", "CHECK"}


def contract_sql() -> str:
    """The text of ``schema.sql`` exactly as shipped."""
    return resources.files(__package__).joinpath("schema.sql").read_text(encoding="utf-8")


def _strip_comments(sql: str) -> str:
    """Drop ``-- ...`` and ``# ...`` line comments, leaving quoted literals alone.

    A hand-rolled scan rather than a regex because the contract's comments themselves contain
    quotes (``'07700 900123'``) and its DEFAULTs are quoted literals.
    """
    out: list[str] = []
    i, n = 0, len(sql)
    quote: str | None = None
    while i < n:
        ch = sql[i]
        if quote:
            out.append(ch)
            if ch == "\\" and i + 1 < n:
                out.append(sql[i + 1])
                i += 2
                continue
            if ch == quote:
                quote = None
        elif ch in "'\"`":
            quote = ch
            out.append(ch)
        elif ch == "#" or (sql.startswith("--", i) and (i + 2 == n or sql[i + 2] in " \t\r\n")):
            end = sql.find("\n", i)
            i = n if end < 0 else end
            continue
        else:
            out.append(ch)
        i += 1
    return "".join(out)


def _split_statements(sql: str) -> list[str]:
    statements: list[str] = []
    current: list[str] = []
    quote: str | None = None
    for ch in sql:
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"`":
            quote = ch
        elif ch == ";":
            statements.append("".join(current))
            current = []
            continue
        current.append(ch)
    statements.append("".join(current))
    return statements


def _tidy(statement: str) -> str:
    lines = [line.rstrip() for line in statement.strip().splitlines()]
    return "\n".join(line for line in lines if line.strip())


@cache
def _parsed() -> tuple[str, ...]:
    statements = (_tidy(s) for s in _split_statements(_strip_comments(contract_sql())))
    return tuple(s for s in statements if _TABLE_NAME.match(s))


def contract_statements() -> list[str]:
    """The ``CREATE TABLE`` statements of the contract, comments stripped, without trailing ``;``."""
    return list(_parsed())


def contract_columns() -> dict[str, list[str]]:
    """Table name -> its contract column names, in contract order.

    The main app may add columns; anything reading the replica (queries, CDC events) should use
    this list rather than ``SELECT *`` so that unknown columns are ignored.
    """
    tables: dict[str, list[str]] = {}
    for statement in _parsed():
        name = _TABLE_NAME.match(statement)
        assert name is not None  # _parsed() keeps only CREATE TABLE statements
        body = statement[statement.index("(") + 1 : statement.rindex(")")]
        columns = []
        for line in body.splitlines():
            match = _COLUMN_LINE.match(line)
            if match and match.group(1).upper() not in _NOT_A_COLUMN:
                columns.append(match.group(1))
        tables[name.group(1)] = columns
    return tables


def replica_ddl() -> list[str]:
    """The contract statements as idempotent DDL with explicit storage options."""
    return [f"{_CREATE_TABLE.sub('CREATE TABLE IF NOT EXISTS ', s)} {TABLE_OPTIONS}" for s in _parsed()]


async def create_replica_tables(conn: AsyncConnection) -> None:
    """Create the contract tables if they do not exist (idempotent).

    ``conn`` must come from a writer engine (see the module docstring). Existing tables are left
    as they are, including any columns the main app has added.
    """
    for ddl in replica_ddl():
        await conn.exec_driver_sql(ddl)
