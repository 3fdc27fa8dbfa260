"""The rebuild's range read gives exactly the facts of the change-data path's read of the same ids:
soft-deleted and closed claims, stale PENDING requirements on closed or deleted claims, customers
without claims (the generated data has all of them). And the batched read (a thousand customers a
row) gives exactly the facts of the row-per-customer read it replaced, whatever the text holds."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from devstack.seed import seed_replica
from dialler.queues import facts
from dialler.queues.eligibility import ACTIVE_CLAIM_STATUSES, CustomerFacts
from dialler.runtime import Stores

# The read as it was before the batched one: one row per customer, its fields unit-separated (the
# phone last, marked). The reference the batched read is held to.
_ROW_PER_CUSTOMER = """
SELECT CONCAT_WS(CHAR(31),
       u.id, u.status, u.is_enabled, u.deleted_at IS NOT NULL, u.current_signature_file_id IS NOT NULL,
       COUNT(DISTINCT c.id), COALESCE(TIMESTAMPDIFF(SECOND, '1970-01-01', MIN(c.created_at)), ''), COUNT(r.id),
       COALESCE(TIMESTAMPDIFF(SECOND, '1970-01-01', u.updated_at), ''),
       IF(u.postcode IS NULL, 'N', CONCAT('P', REPLACE(u.postcode, CHAR(31), ''))),
       IF(u.phone_number IS NULL, 'N', CONCAT('P', u.phone_number)))
FROM users u
LEFT JOIN claims c ON c.user_id = u.id AND c.deleted_at IS NULL AND c.status IN ({active})
LEFT JOIN claim_requirements r ON r.claim_id = c.id AND r.deleted_at IS NULL AND r.status = 'PENDING'
WHERE u.id BETWEEN %(lo)s AND %(hi)s
GROUP BY u.id
""".format(active=", ".join(f"'{status}'" for status in ACTIVE_CLAIM_STATUSES))


async def row_per_customer(conn: AsyncConnection, lo: int, hi: int) -> list[CustomerFacts]:
    raw = await conn.get_raw_connection()
    async with raw.driver_connection.cursor() as cursor:  # type: ignore[union-attr]
        await cursor.execute(_ROW_PER_CUSTOMER, {"lo": lo, "hi": hi})
        rows = await cursor.fetchall()
    out = []
    for (row,) in rows:
        user_id, status, enabled, deleted, signed, claims, oldest, pending, updated, postcode, phone = row.split(
            "\x1f", 10
        )
        out.append(
            CustomerFacts(
                user_id=int(user_id),
                status=status,
                is_enabled=enabled == "1",
                deleted=deleted == "1",
                signed=signed == "1",
                phone_raw=None if phone == "N" else phone[1:],
                active_claims=int(claims),
                pending_requirements=int(pending),
                oldest_active_claim_at=datetime.fromtimestamp(int(oldest), UTC) if oldest else None,
                postcode=None if postcode == "N" else postcode[1:],
                updated_at=int(updated) if updated else None,
            )
        )
    return out


async def test_range_read_equals_the_ids_read(stores: Stores, replica_url: str) -> None:
    await seed_replica(replica_url, users=2_000, seed=23)
    async with stores.replica.connect() as conn:
        by_range = await facts.replica_facts_for_range(conn, 1, 2_000)
        by_ids = await facts.replica_facts_for_ids(conn, list(range(1, 2_001)))
        head = await facts.replica_facts_for_range(conn, 1, 700)

    assert len(by_range) == 2_000
    assert sorted(by_range, key=lambda f: f.user_id) == sorted(by_ids, key=lambda f: f.user_id)
    assert sorted(f.user_id for f in head) == list(range(1, 701))
    # the data exercises every rule of the read
    assert any(f.deleted for f in by_range) and any(not f.is_enabled for f in by_range)
    assert any(f.active_claims == 0 for f in by_range) and any(f.pending_requirements > 1 for f in by_range)


async def test_the_batched_read_equals_the_row_per_customer_read(
    stores: Stores, replica_url: str, replica_writer: AsyncEngine
) -> None:
    await seed_replica(replica_url, users=3_500, seed=5)  # 4 rows of up to 1,000 customers
    # Text that a separator-based encoding must survive: separators, NULLs, empty, non-ASCII.
    odd = {
        11: ("active", "07700\x1e900011", "EH1 1AA"),
        12: ("Active ", "\x1f07700900012", "\x1fBT1"),
        13: ("active\x1e", "+44 7700 900013", None),
        14: ("vulnerable", None, ""),
        15: ("active", "", "KW15\x1e1AA"),
        16: ("actïve", "０7700 900016 ☎", "ÉH1"),
    }
    async with replica_writer.begin() as conn:
        for user_id, (status, phone, postcode) in odd.items():
            await conn.execute(
                text("UPDATE users SET status = :s, phone_number = :p, postcode = :c WHERE id = :id"),
                {"s": status, "p": phone, "c": postcode, "id": user_id},
            )
    async with stores.replica.connect() as conn:
        batched = await facts.replica_facts_for_range(conn, 1, 3_500)
        by_ids = await facts.replica_facts_for_ids(conn, [3_499, *odd, 1])
        reference = await row_per_customer(conn, 1, 3_500)

    by_id = {f.user_id: f for f in batched}
    assert len(batched) == len(by_id) == 3_500
    for user_id, (status, phone, postcode) in odd.items():
        assert (by_id[user_id].status, by_id[user_id].phone_raw, by_id[user_id].postcode) == (status, phone, postcode)
    assert sorted(by_ids, key=lambda f: f.user_id) == [by_id[u] for u in sorted([3_499, *odd, 1])]
    # The old read dropped a unit separator from the postcode; everything else it read alike.
    mangled = {12}
    assert [f for f in reference if f.user_id not in mangled] == [
        by_id[f.user_id] for f in reference if f.user_id not in mangled
    ]
