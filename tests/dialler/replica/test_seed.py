"""The replica data generator against a real MySQL/MariaDB: counts, determinism and a realistic mix."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from devstack import seed as seed_module
from devstack.seed import (
    ACTIVE_CLAIM_STATUSES,
    CLOSED_CLAIM_STATUSES,
    SeedReport,
    seed_replica,
)
from dialler.replica.schema import create_replica_tables

USERS = 2_000
TABLES = ("users", "claims", "claim_requirements")
JUNK_PHONES = ("12345", "n/a", "", "none", "0", "07700 9001", "000000000000", "tbc", "call after 6pm")
# Ofcom numbers reserved for drama, as national significant numbers with the leading 0.
DRAMA_PREFIXES = (
    "07700900",
    *(f"0{area}4960" for area in (113, 114, 115, 116, 117, 118, 121, 131, 141, 151, 161)),
    "01914980",
    "02079460",
    "02920180",
    "02896496",
)

MakeDatabase = Callable[[], Awaitable[str]]


async def _fetch(url: str, sql: str) -> list[tuple[Any, ...]]:
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            # No parameters here: double the % that the driver would read as placeholders.
            return [tuple(row) for row in await conn.exec_driver_sql(sql.replace("%", "%%"))]
    finally:
        await engine.dispose()


async def _scalar(url: str, sql: str) -> Any:
    return (await _fetch(url, sql))[0][0]


async def _checksums(url: str) -> list[int]:
    rows = await _fetch(url, f"CHECKSUM TABLE {', '.join(TABLES)}")
    return [checksum for _, checksum in rows]


@pytest.fixture(scope="module")
async def seeded(replica_url: str) -> tuple[str, SeedReport]:
    report = await seed_replica(replica_url, users=USERS, seed=42)
    return replica_url, report


async def test_seed_writes_exact_counts_with_ids_from_one(seeded: tuple[str, SeedReport]) -> None:
    url, report = seeded

    assert (report.users, report.claims, report.requirements, report.skipped) == (2_000, 6_000, 8_000, False)
    assert report.seconds > 0
    for table, n in zip(TABLES, (2_000, 6_000, 8_000), strict=True):
        assert await _fetch(url, f"SELECT COUNT(*), COUNT(DISTINCT id), MIN(id), MAX(id) FROM {table}") == [
            (n, n, 1, n)
        ]


async def test_every_row_points_at_an_existing_parent(seeded: tuple[str, SeedReport]) -> None:
    url, _ = seeded

    orphan_claims = "SELECT COUNT(*) FROM claims c LEFT JOIN users u ON u.id = c.user_id WHERE u.id IS NULL"
    orphan_requirements = (
        "SELECT COUNT(*) FROM claim_requirements r LEFT JOIN claims c ON c.id = r.claim_id WHERE c.id IS NULL"
    )
    assert await _scalar(url, orphan_claims) == 0
    assert await _scalar(url, orphan_requirements) == 0


async def test_timestamps_are_consistent_and_before_the_reference_date(
    seeded: tuple[str, SeedReport],
) -> None:
    url, _ = seeded

    for table in TABLES:
        assert await _scalar(url, f"SELECT MAX(updated_at) < '2026-11-01' FROM {table}") == 1
        assert await _scalar(url, f"SELECT COUNT(*) FROM {table} WHERE updated_at < created_at") == 0
        assert await _scalar(url, f"SELECT COUNT(*) FROM {table} WHERE deleted_at <> updated_at") == 0
    later_than_parent = (
        "SELECT COUNT(*) FROM claims c JOIN users u ON u.id = c.user_id WHERE c.created_at < u.created_at",
        "SELECT COUNT(*) FROM claim_requirements r JOIN claims c ON c.id = r.claim_id "
        "WHERE r.created_at < c.created_at",
    )
    for sql in later_than_parent:
        assert await _scalar(url, sql) == 0


async def test_users_mix_is_realistic(seeded: tuple[str, SeedReport]) -> None:
    url, _ = seeded
    [stats] = await _fetch(
        url,
        "SELECT AVG(current_signature_file_id IS NULL), SUM(deleted_at IS NOT NULL), "
        "SUM(status = 'deceased'), SUM(status = 'vulnerable'), SUM(status = 'inactive'), "
        "SUM(is_enabled = 0), SUM(email_address LIKE '%@%.%'), SUM(postcode IS NOT NULL) FROM users",
    )
    unsigned, deleted, deceased, vulnerable, inactive, disabled, emails, postcodes = stats

    assert 0.29 <= unsigned <= 0.39
    assert 10 <= deleted <= 80  # ~2%
    assert 5 <= deceased <= 45  # ~1%
    assert 30 <= vulnerable <= 100  # ~3%
    assert inactive > 0 and disabled > 0
    assert emails > 0.9 * USERS and postcodes > 0.95 * USERS
    statuses = {s for (s,) in await _fetch(url, "SELECT DISTINCT status FROM users")}
    assert statuses == {"active", "inactive", "deceased", "vulnerable"}


async def test_postcodes_have_uk_shape(seeded: tuple[str, SeedReport]) -> None:
    url, _ = seeded
    postcodes = [p for (p,) in await _fetch(url, "SELECT postcode FROM users WHERE postcode IS NOT NULL")]

    shaped = [p for p in postcodes if re.fullmatch(r"[A-Z]{1,2}\d{1,2} \d[A-Z]{2}", p)]
    loose = [p for p in postcodes if re.fullmatch(r"[A-Za-z]{1,2}\d{1,2} ?\d[A-Za-z]{2}", p)]
    assert len(loose) == len(postcodes)  # all UK-shaped, some typed loosely
    assert 0.9 * len(postcodes) < len(shaped) < len(postcodes)


async def test_phones_are_messy_but_never_a_real_number(seeded: tuple[str, SeedReport]) -> None:
    url, _ = seeded
    phones = [p for (p,) in await _fetch(url, "SELECT phone_number FROM users")]

    junk = [p for p in phones if p is None or p in JUNK_PHONES]
    assert 0.015 * USERS <= len(junk) <= 0.05 * USERS  # ~3%
    assert None in phones and "" in phones
    for shape in (
        r"07700 900\d{3}",
        r"\+447700900\d{3}",
        r"447700900\d{3}",
        r"0161 496 0\d{3}",
        r"\(020\) 7946 0\d{3}",
    ):
        assert any(re.fullmatch(shape, p) for p in phones if p), shape

    # Whatever the format, every number that could be dialled is in an Ofcom drama range.
    for phone in phones:
        digits = re.sub(r"\D", "", phone or "")
        if digits.startswith("44"):
            digits = "0" + digits[2:].removeprefix("0")
        elif len(digits) == 10 and digits.startswith("7"):
            digits = "0" + digits
        if len(digits) == 11:
            assert digits.startswith(DRAMA_PREFIXES), phone


async def test_claims_mix_active_and_closed_across_uk_lenders(seeded: tuple[str, SeedReport]) -> None:
    url, _ = seeded
    by_status = dict(await _fetch(url, "SELECT status, COUNT(*) FROM claims GROUP BY status"))
    types = {t for (t,) in await _fetch(url, "SELECT DISTINCT type FROM claims")}
    lenders = {name for (name,) in await _fetch(url, "SELECT DISTINCT lender FROM claims")}

    assert set(by_status) == {*ACTIVE_CLAIM_STATUSES, *CLOSED_CLAIM_STATUSES}
    closed = sum(by_status[s] for s in CLOSED_CLAIM_STATUSES)
    assert 0.15 * 3 * USERS < closed < 0.5 * 3 * USERS
    assert types == {"motor_finance", "irresponsible_lending", "plevin", "packaged_bank_account"}
    assert {"Black Horse", "MotoNovo", "Vanquis", "Provident", "Lloyds", "Barclays"} <= lenders
    assert await _scalar(url, "SELECT SUM(deleted_at IS NOT NULL) FROM claims") > 0


async def test_requirements_have_statuses_and_reasons(seeded: tuple[str, SeedReport]) -> None:
    url, _ = seeded
    rows = await _fetch(
        url, "SELECT status, COUNT(*), COUNT(reason) FROM claim_requirements GROUP BY status ORDER BY status"
    )

    counts = {status: (n, with_reason) for status, n, with_reason in rows}
    assert set(counts) == {"PENDING", "COMPLETED", "REJECTED", "CANCELLED"}
    for status, (n, with_reason) in counts.items():
        assert n > 0
        assert with_reason == (n if status in ("PENDING", "REJECTED") else 0), status
    assert await _scalar(url, "SELECT SUM(deleted_at IS NOT NULL) FROM claim_requirements") > 0
    assert await _scalar(url, "SELECT COUNT(*) FROM claim_requirements WHERE reason LIKE '%''%'") > 0


async def test_both_call_queues_have_customers(seeded: tuple[str, SeedReport]) -> None:
    url, _ = seeded
    active = ", ".join(f"'{s}'" for s in ACTIVE_CLAIM_STATUSES)
    live_user = "u.deleted_at IS NULL AND u.status = 'active' AND u.is_enabled = 1"
    unsigned = await _scalar(
        url,
        f"SELECT COUNT(DISTINCT u.id) FROM users u JOIN claims c ON c.user_id = u.id "
        f"WHERE {live_user} AND u.current_signature_file_id IS NULL "
        f"AND c.deleted_at IS NULL AND c.status IN ({active})",
    )
    outstanding = await _scalar(
        url,
        f"SELECT COUNT(DISTINCT u.id) FROM users u JOIN claims c ON c.user_id = u.id "
        f"JOIN claim_requirements r ON r.claim_id = c.id "
        f"WHERE {live_user} AND u.current_signature_file_id IS NOT NULL AND c.deleted_at IS NULL "
        f"AND c.status IN ({active}) AND r.deleted_at IS NULL AND r.status = 'PENDING'",
    )

    assert 0.15 * USERS < unsigned < 0.4 * USERS
    assert 0.2 * USERS < outstanding < 0.7 * USERS


async def test_only_if_empty_skips_a_populated_replica(seeded: tuple[str, SeedReport]) -> None:
    url, _ = seeded
    before = await _checksums(url)

    report = await seed_replica(url, users=10, seed=99)

    assert report.skipped
    assert (report.users, report.claims, report.requirements) == (0, 0, 0)
    assert await _checksums(url) == before


async def test_same_seed_gives_the_same_rows_whatever_the_batch_size(
    seeded: tuple[str, SeedReport], make_database: MakeDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, _ = seeded
    other = await make_database()
    # Many small statements: exercises the pipelined path and proves batching does not shift the data.
    monkeypatch.setattr(seed_module, "BATCH_ROWS", 333)

    await seed_replica(other, users=USERS, seed=42)

    assert await _checksums(other) == await _checksums(url)


async def test_different_seed_gives_different_rows(seeded: tuple[str, SeedReport], make_database: MakeDatabase) -> None:
    url, _ = seeded
    other = await make_database()

    await seed_replica(other, users=USERS, seed=7)

    mine, theirs = await _checksums(url), await _checksums(other)
    assert all(a != b for a, b in zip(mine, theirs, strict=True))


async def test_reseeding_without_only_if_empty_replaces_the_data(make_database: MakeDatabase) -> None:
    url = await make_database()
    await seed_replica(url, users=300, seed=1)
    first = await _checksums(url)

    report = await seed_replica(url, users=300, seed=1, only_if_empty=False)

    assert not report.skipped and report.users == 300
    assert await _checksums(url) == first


async def test_creates_a_missing_database(make_database: MakeDatabase) -> None:
    url = await make_database()
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            await conn.exec_driver_sql("DROP DATABASE IF EXISTS `" + url.rsplit("/", 1)[1] + "`")
    finally:
        await engine.dispose()

    report = await seed_replica(url, users=50)

    assert report.users == 50 and await _scalar(url, "SELECT COUNT(*) FROM users") == 50


async def test_unknown_columns_added_by_the_main_app_do_not_break_seeding(
    make_database: MakeDatabase,
) -> None:
    url = await make_database()
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.begin() as conn:
            await create_replica_tables(conn)
            await conn.exec_driver_sql(
                "ALTER TABLE users ADD COLUMN marketing_opt_in TINYINT(1) NULL, "
                "ADD COLUMN referrer VARCHAR(50) NOT NULL DEFAULT 'web'"
            )
            await conn.exec_driver_sql("ALTER TABLE claims ADD COLUMN reference VARCHAR(20) NULL")
    finally:
        await engine.dispose()

    report = await seed_replica(url, users=200)

    assert (report.users, report.claims, report.requirements) == (200, 600, 800)
    assert await _scalar(url, "SELECT COUNT(*) FROM users WHERE referrer = 'web'") == 200
