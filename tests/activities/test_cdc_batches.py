"""Transient is not poison, even when the store's error is one nobody classified: a batch whose every
record fails alike is retried, never dead-lettered (Redis out of memory answers each write with the same
error); a record that fails on its own is still dead-lettered alone, its neighbours applied."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from redis.exceptions import ResponseError

from activities.cdc import CdcActivities, _Item
from dialler.cdc.apply import BatchFailedAlike, is_transient
from dialler.cdc.records import ChangeRecord
from dialler.runtime import Stores
from tests.support.change_records import change

OOM = "OOM command not allowed when used memory > 'maxmemory'."


class FailingStore(CdcActivities):
    """The real consumer, with its store answering the records of ``failing`` (user ids) with ``error``."""

    def __init__(self, stores: Stores, failing: set[int], error: Exception) -> None:
        super().__init__(stores)
        self.failing, self.error = failing, error

    async def _apply(self, records: Sequence[ChangeRecord]) -> tuple[list[ChangeRecord], set[int]]:
        if any(r.data["id"] in self.failing for r in records):
            raise self.error
        return await super()._apply(records)


def items(*user_ids: int) -> list[_Item]:
    return [_Item(change(u, 100 + u), {}, f"m{u}") for u in user_ids]


async def test_a_batch_whose_every_record_fails_alike_is_retried_not_dead_lettered(
    stores: Stores, replica_url: str
) -> None:
    consumer = FailingStore(stores, failing={1, 2, 3}, error=ResponseError(OOM))

    with pytest.raises(BatchFailedAlike) as failed:
        await consumer._apply_each(items(1, 2, 3))

    assert is_transient(failed.value)  # held and retried by ingest_batch, like a store that is down


async def test_a_record_failing_on_its_own_is_dead_lettered_alone_and_its_neighbours_applied(
    stores: Stores, replica_url: str
) -> None:
    consumer = FailingStore(stores, failing={2}, error=ResponseError("WRONGTYPE Operation against a key"))

    applied, customers, poison = await consumer._apply_each(items(1, 2, 3))

    assert [r.data["id"] for r in applied] == [1, 3] and customers == 2
    assert [p.message_id for p in poison] == ["m2"] and "WRONGTYPE" in poison[0].reason
