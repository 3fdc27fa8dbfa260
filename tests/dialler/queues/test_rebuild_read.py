"""The rebuild's range read gives exactly the facts of the change-data path's read of the same ids:
soft-deleted and closed claims, stale PENDING requirements on closed or deleted claims, customers
without claims (the generated data has all of them)."""

from __future__ import annotations

from devstack.seed import seed_replica
from dialler.queues import facts
from dialler.runtime import Stores


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
